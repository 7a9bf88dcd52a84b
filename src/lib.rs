//! torrent-gateway: one binary that bridges HTTP, Nostr/Blossom and BitTorrent.
//!
//! In scope so far: the pure formats (`proto`: bencode, metainfo, magnet), parallel piece
//! hashing (`hash`), memory-mapped reads (`store`), torrent creation and recheck (`create`,
//! `verify`) and the command line (`cli`). Out of scope here: any network I/O, which lives in
//! the server modules added later. ARCHITECTURE.md has the map.

#![cfg_attr(test, deny(warnings))]

pub mod cli;
pub mod create;
pub mod hash;
pub mod proto;
pub mod store;
pub mod verify;
