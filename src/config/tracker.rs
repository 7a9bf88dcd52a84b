//! The `[tracker]` section of the configuration (its keys are documented in
//! `config::DEFAULT_TOML`): modes, caps, the backend (memory or Redis) and the client-aware
//! interval policy of `[tracker.intervals]`, with their validation.

use super::{bad, ConfigError};
use serde::{Deserialize, Serialize};

/// How the tracker decides which info-hashes it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackerMode {
    Open,
    Hosted,
    Allowlist,
}

impl std::str::FromStr for TrackerMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "open" => Ok(TrackerMode::Open),
            "hosted" => Ok(TrackerMode::Hosted),
            "allowlist" => Ok(TrackerMode::Allowlist),
            _ => Err(format!("{s:?} is not one of open, hosted, allowlist")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerConfig {
    pub mode: TrackerMode,
    pub udp: bool,
    pub interval_secs: u32,
    pub min_interval_secs: u32,
    pub peer_timeout_secs: u32,
    pub numwant_default: usize,
    pub numwant_max: usize,
    pub max_torrents: usize,
    pub max_peers_per_torrent: usize,
    pub max_peers: usize,
    pub max_scrape_hashes: usize,
    pub full_scrape: bool,
    pub trust_ip_param: bool,
    pub proxy_header: String,
    pub trusted_proxies: Vec<std::net::IpAddr>,
    pub flush_secs: u64,
    pub backend: TrackerBackend,
    pub redis_url: String,
    pub redis_pool: usize,
    pub redis_timeout_ms: u64,
    pub intervals: Intervals,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            mode: TrackerMode::Hosted,
            udp: true,
            interval_secs: 1800,
            min_interval_secs: 300,
            peer_timeout_secs: 3900,
            numwant_default: 50,
            numwant_max: 200,
            max_torrents: 50_000,
            max_peers_per_torrent: 20_000,
            max_peers: 250_000,
            max_scrape_hashes: 74,
            full_scrape: false,
            trust_ip_param: false,
            proxy_header: String::new(),
            trusted_proxies: Vec::new(),
            flush_secs: 10,
            backend: TrackerBackend::Memory,
            redis_url: String::new(),
            redis_pool: 2,
            redis_timeout_ms: 500,
            intervals: Intervals::default(),
        }
    }
}

/// Where the tracker keeps its swarms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackerBackend {
    Memory,
    Redis,
}

/// Interval bounds for the clients whose peer id starts with `prefix`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IntervalRule {
    pub prefix: String,
    pub max_interval_secs: u32,
    #[serde(default)]
    pub min_interval_secs: Option<u32>,
}

/// `[tracker.intervals]`: the client-aware policy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Intervals {
    pub rules: Vec<IntervalRule>,
}

impl Default for Intervals {
    fn default() -> Self {
        let rule = |prefix: &str, max: u32, min: Option<u32>| IntervalRule {
            prefix: prefix.into(),
            max_interval_secs: max,
            min_interval_secs: min,
        };
        Intervals {
            rules: vec![rule("-TR", 1800, None), rule("-WW", 300, Some(60))],
        }
    }
}

impl TrackerConfig {
    /// (interval, min interval) told to the client with this peer id.
    pub fn intervals_for(&self, peer_id: &[u8; 20]) -> (u32, u32) {
        let rule = self
            .intervals
            .rules
            .iter()
            .find(|r| peer_id.starts_with(r.prefix.as_bytes()));
        match rule {
            None => (self.interval_secs, self.min_interval_secs),
            Some(r) => {
                let interval = self.interval_secs.min(r.max_interval_secs);
                let min = r.min_interval_secs.unwrap_or(self.min_interval_secs);
                (interval, min.min(interval))
            }
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let t = self;
        if t.interval_secs == 0 || t.min_interval_secs > t.interval_secs {
            return Err(bad(
                "tracker.min_interval_secs",
                "must be at most tracker.interval_secs, which must be positive",
            ));
        }
        if t.peer_timeout_secs < t.interval_secs {
            return Err(bad(
                "tracker.peer_timeout_secs",
                "must be at least tracker.interval_secs",
            ));
        }
        if t.numwant_max == 0 || t.numwant_default > t.numwant_max || t.numwant_max > 1000 {
            return Err(bad(
                "tracker.numwant_max",
                "must be from tracker.numwant_default (and 1) to 1000",
            ));
        }
        for (key, v) in [
            ("tracker.max_torrents", t.max_torrents),
            ("tracker.max_peers_per_torrent", t.max_peers_per_torrent),
            ("tracker.max_peers", t.max_peers),
        ] {
            if !(1..=100_000_000).contains(&v) {
                return Err(bad(key, "must be from 1 to 100000000"));
            }
        }
        if !(1..=1000).contains(&t.max_scrape_hashes) {
            return Err(bad("tracker.max_scrape_hashes", "must be from 1 to 1000"));
        }
        if t.flush_secs == 0 {
            return Err(bad("tracker.flush_secs", "must be positive"));
        }
        if t.proxy_header
            .contains(|c: char| !c.is_ascii_alphanumeric() && c != '-')
        {
            return Err(bad("tracker.proxy_header", "must be a header name"));
        }
        if self.backend == TrackerBackend::Redis
            && !(t.redis_url.starts_with("redis://") || t.redis_url.starts_with("unix://"))
        {
            return Err(bad(
                "tracker.redis_url",
                "must be a redis:// or unix:// URL when tracker.backend is \"redis\"",
            ));
        }
        if !(1..=64).contains(&t.redis_pool) {
            return Err(bad("tracker.redis_pool", "must be from 1 to 64"));
        }
        if !(10..=10_000).contains(&t.redis_timeout_ms) {
            return Err(bad("tracker.redis_timeout_ms", "must be from 10 to 10000"));
        }
        if t.intervals.rules.len() > 64 {
            return Err(bad("tracker.intervals.rules", "at most 64 rules"));
        }
        for r in &t.intervals.rules {
            if r.prefix.is_empty() || r.prefix.len() > 20 || r.max_interval_secs == 0 {
                return Err(bad(
                    "tracker.intervals.rules",
                    "each needs a prefix of 1 to 20 bytes and a positive max_interval_secs",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_rules_cap_by_prefix() {
        let t = TrackerConfig::default();
        let id = |p: &str| {
            let mut b = [b'0'; 20];
            b[..p.len()].copy_from_slice(p.as_bytes());
            b
        };
        assert_eq!(t.intervals_for(&id("-TR3000-")), (1800, 300));
        assert_eq!(t.intervals_for(&id("-WW0100-")), (300, 60));
        assert_eq!(t.intervals_for(&id("-LT2080-")), (1800, 300));
        let short = TrackerConfig {
            interval_secs: 120,
            min_interval_secs: 100,
            ..TrackerConfig::default()
        };
        assert_eq!(short.intervals_for(&id("-WW0100-")), (120, 60));
        assert_eq!(short.intervals_for(&id("-TR3000-")), (120, 100));
    }

    #[test]
    fn redis_settings_are_checked() {
        let mut t = TrackerConfig {
            backend: TrackerBackend::Redis,
            ..TrackerConfig::default()
        };
        assert!(t.validate().unwrap_err().0.contains("tracker.redis_url"));
        t.redis_url = "redis://127.0.0.1:6379/".into();
        t.validate().unwrap();
        t.redis_pool = 0;
        assert!(t.validate().unwrap_err().0.contains("tracker.redis_pool"));
        t.redis_pool = 4;
        t.intervals.rules.push(IntervalRule {
            prefix: String::new(),
            max_interval_secs: 1,
            min_interval_secs: None,
        });
        assert!(t.validate().unwrap_err().0.contains("intervals"));
    }
}
