//! torrent-gateway: one binary that bridges HTTP, Nostr/Blossom and BitTorrent.
//!
//! In scope so far: the pure formats (`proto`), parallel piece hashing (`hash`), storage
//! (`store`: mmap, content store, SQLite), the catalog of stored files (`catalog`), the HTTP
//! services (`http`, started by `server::run_server`: API, tracker, Blossom), the peer wire
//! (`net`), the tracker (`tracker`), Nostr keys and relay publishing (`nostr`), torrent
//! creation and recheck (`create`, `verify`) and the command line (`cli`). ARCHITECTURE.md has the map.

#![cfg_attr(test, deny(warnings))]

pub mod catalog;
pub mod cli;
pub mod config;
pub mod create;
pub mod dht;
pub mod engine;
pub mod fetch;
pub mod hash;
pub mod http;
pub mod net;
pub mod nostr;
pub mod proto;
pub mod server;
pub mod store;
pub mod tracker;
pub mod verify;

pub use server::{run_server, Running};
