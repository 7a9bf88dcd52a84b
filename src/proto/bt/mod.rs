//! BitTorrent's formats: bencode (strict, bounded, zero-copy), metainfo (v1 torrents),
//! magnet links, the peer wire (BEP-3/6 messages, BEP-10/9/11 extensions), the peer
//! connection state machine, and MSE (the encrypted handshake).

pub mod bencode;
pub mod magnet;
pub mod metainfo;
pub mod mse;
pub mod peer_conn;
pub mod peer_ext;
pub mod peer_wire;
