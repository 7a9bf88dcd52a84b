//! Storage: the content store on disk (blobs, chunks, uploads in progress), the SQLite
//! metadata, the memory maps both read through, and the data dir itself (its lock, durable
//! directory creation).

pub mod content;
pub mod db;
pub mod db_nostr;
pub mod dirs;
pub mod files;
pub mod layout;
pub mod mmap;
pub mod resume;
