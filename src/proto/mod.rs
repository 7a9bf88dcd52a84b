//! Wire and file formats, parsed and built as pure functions: no sockets, files, clocks or
//! threads here. Everything that does I/O calls into this module, so each format can be
//! unit-tested and fuzzed on its own.

pub mod base64;
pub mod bech32;
pub mod bencode;
pub mod dht;
pub mod hex;
pub mod http;
pub mod magnet;
pub mod metainfo;
pub mod mse;
pub mod nip94;
pub mod nostr;
pub mod nostr_auth;
pub mod peer_conn;
pub mod peer_ext;
pub mod peer_wire;
pub mod tracker_http;
pub mod tracker_udp;
pub mod url;
