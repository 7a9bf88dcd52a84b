//! The `[fetch]` section of the configuration (fetch-through: torrents joined on request and
//! streamed over HTTP; its keys are documented in `config::DEFAULT_TOML`): the piece cache's
//! byte cap on disk, the caps on torrents and streams, the bounded wait for metadata and
//! pieces, and the fetch of a .torrent by URL, with their validation.

use super::{bad, ConfigError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FetchConfig {
    /// Bytes of streamed pieces kept on disk under `data/cache/` (pinned torrents apart).
    pub cache_bytes: u64,
    pub max_torrents: usize,
    pub max_streams: usize,
    pub wait_secs: u64,
    /// The whole fetch of a .torrent named by URL.
    pub url_timeout_secs: u64,
    /// Such a URL may name loopback, private and link-local addresses.
    pub url_allow_private: bool,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            cache_bytes: 2 << 30,
            max_torrents: 64,
            max_streams: 16,
            wait_secs: 30,
            url_timeout_secs: 20,
            url_allow_private: false,
        }
    }
}

impl FetchConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cache_bytes < 1 << 20 {
            return Err(bad("fetch.cache_bytes", "must be at least 1048576 (1 MiB)"));
        }
        if !(1..=10_000).contains(&self.max_torrents) {
            return Err(bad("fetch.max_torrents", "must be from 1 to 10000"));
        }
        if !(1..=65_536).contains(&self.max_streams) {
            return Err(bad("fetch.max_streams", "must be from 1 to 65536"));
        }
        if !(1..=3600).contains(&self.wait_secs) {
            return Err(bad("fetch.wait_secs", "must be from 1 to 3600"));
        }
        if !(1..=600).contains(&self.url_timeout_secs) {
            return Err(bad("fetch.url_timeout_secs", "must be from 1 to 600"));
        }
        Ok(())
    }

    /// The values in force: at most `api_streams` (api.max_streams) streams, and a wait that
    /// ends before the connection layer cuts a waiting long response (three times
    /// `api_io_secs`, api.io_timeout_secs).
    pub fn effective(&self, api_streams: usize, api_io_secs: u64) -> FetchConfig {
        FetchConfig {
            max_streams: self.max_streams.min(api_streams).max(1),
            wait_secs: self
                .wait_secs
                .min((3 * api_io_secs).saturating_sub(1))
                .max(1),
            url_timeout_secs: self
                .url_timeout_secs
                .min((3 * api_io_secs).saturating_sub(1))
                .max(1),
            ..self.clone()
        }
    }
}
