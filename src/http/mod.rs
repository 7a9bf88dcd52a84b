//! The HTTP services: our own connection layer (`pool` with its `poller` and workers,
//! `conn`, `body` framing, `respond`), one router, and the handlers for the files API, downloads and webseed, the HTTP tracker, and operator status
//! endpoints.

pub mod admission;
pub mod api;
pub mod blossom;
pub mod body;
pub mod conn;
pub mod dht_metrics;
pub mod download;
pub mod early;
pub mod mirror;
pub mod overview;
pub mod poller;
pub mod pool;
pub mod ratelimit;
pub mod respond;
pub mod router;
pub mod stats;
pub mod status;
pub mod stream;
pub mod torrents;
pub mod tracker;
pub mod ui;
