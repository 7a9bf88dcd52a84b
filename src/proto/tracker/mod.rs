//! The trackers' formats: `http` (BEP-3/23/7/48 announce and scrape queries and their
//! bencoded answers), `udp` (BEP-15/41 packets, both directions) and `client` (the announcing
//! side over HTTP: announce URLs and the answers parsed).

pub mod client;
pub mod http;
pub mod udp;
