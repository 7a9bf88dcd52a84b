//! Storage: the content store on disk (blobs, chunks, uploads in progress), the SQLite
//! metadata, and the memory maps both read through.

pub mod content;
pub mod db;
pub mod db_nostr;
pub mod mmap;
