//! Wire and file formats, parsed and built as pure functions: no sockets, files, clocks or
//! threads here. Everything that does I/O calls into this module, so each format can be
//! unit-tested and fuzzed on its own. Grouped by protocol family: `bt` (BitTorrent: bencode,
//! metainfo, magnets, the peer wire and its state machine, MSE), `http` (request heads,
//! chunked bodies, Range, dates, media types, escaping, hosts and origins), `dht` (KRPC, node
//! ids, the routing table's rules, tokens, storage), `nostr` (events, auth, NIP-94, bech32,
//! base64), `tracker` (HTTP and UDP tracker messages, and the client's side of announcing),
//! `resp` (the Redis wire format the tracker's Redis backend speaks), and `hex` (hex and
//! base32), which they all use.

pub mod bt;
pub mod dht;
pub mod hex;
pub mod http;
pub mod nostr;
pub mod resp;
pub mod tracker;
