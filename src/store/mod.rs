//! Storage: memory-mapped access to content on disk (later also the blob and chunk stores and
//! the SQLite metadata).

pub mod mmap;
