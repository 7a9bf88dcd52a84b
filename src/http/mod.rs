//! The HTTP services: a bounded tiny_http pool (`pool`, `reaper`), one router, and the
//! handlers for the files API, downloads and webseed, the HTTP tracker, and operator status
//! endpoints.

pub mod api;
pub mod blossom;
pub mod download;
pub mod mirror;
pub mod pool;
pub mod ratelimit;
pub mod reaper;
pub mod router;
pub mod stats;
pub mod status;
pub mod tracker;
