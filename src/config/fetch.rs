//! The `[fetch]` section of the configuration (fetch-through: torrents joined on request and
//! streamed over HTTP; its keys are documented in `config::DEFAULT_TOML`): the piece cache's
//! byte cap on disk, the caps on torrents and streams, and the bounded wait for metadata and
//! pieces, with their validation.

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
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            cache_bytes: 2 << 30,
            max_torrents: 64,
            max_streams: 16,
            wait_secs: 30,
        }
    }
}

impl FetchConfig {
    /// `api_streams`: api.max_streams; `api_io_secs`: api.io_timeout_secs (a waiting long
    /// response is cut after three of those, so the wait must end sooner).
    pub fn validate(&self, api_streams: usize, api_io_secs: u64) -> Result<(), ConfigError> {
        if self.cache_bytes < 1 << 20 {
            return Err(bad("fetch.cache_bytes", "must be at least 1048576 (1 MiB)"));
        }
        if !(1..=10_000).contains(&self.max_torrents) {
            return Err(bad("fetch.max_torrents", "must be from 1 to 10000"));
        }
        if self.max_streams == 0 || self.max_streams > api_streams {
            return Err(bad(
                "fetch.max_streams",
                "must be from 1 to api.max_streams",
            ));
        }
        if self.wait_secs == 0 || self.wait_secs >= 3 * api_io_secs {
            return Err(bad(
                "fetch.wait_secs",
                "must be at least 1 and less than 3 x api.io_timeout_secs",
            ));
        }
        Ok(())
    }
}
