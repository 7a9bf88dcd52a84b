//! The Mainline DHT's pure parts (BEP-5 with BEP-32, 42, 43, 44 and 51): KRPC messages over
//! the crate's strict bencode, node ids and their BEP-42 binding to IPs, the routing-table
//! logic, write tokens and the storage of peers and BEP-44 items. Nothing here does I/O or
//! reads a clock: time, randomness and secrets are passed in, so the node that drives these
//! from the `net` loop (`src/dht/`) can be tested without sockets.

pub mod compact;
pub mod krpc;
pub mod node_id;
pub mod routing;
pub mod storage;
pub mod tokens;

pub use node_id::NodeId;
