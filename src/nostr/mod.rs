//! The gateway's Nostr side: its key (`keys`), relay connections over websockets (`relay`),
//! and the `nostr` thread that delivers NIP-94 events from the SQLite outbox (`publisher`).

pub mod keys;
pub mod publisher;
pub mod relay;
