//! The one validated configuration of `serve`: defaults, then the TOML file, then flags.
//!
//! Every key has a documented default in [`DEFAULT_TOML`] (what `serve --print-config`
//! prints; a test keeps it equal to `Config::default()`), units are the last word of a key's
//! name, unknown keys are errors, and [`Config::validate`] names the key that is wrong. The
//! defaults fit a 64 MB box.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

mod fetch;
mod tracker;
pub use fetch::FetchConfig;
pub use tracker::{IntervalRule, Intervals, TrackerBackend, TrackerConfig, TrackerMode};

/// The annotated default configuration (`src/config/default.toml`).
pub const DEFAULT_TOML: &str = include_str!("config/default.toml");

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub data_dir: PathBuf,
    pub api: ApiConfig,
    pub storage: StorageConfig,
    pub rate_limit: RateLimitConfig,
    pub tracker: TrackerConfig,
    pub peer: PeerConfig,
    pub blossom: BlossomConfig,
    pub nostr: NostrConfig,
    pub dht: DhtConfig,
    pub fetch: FetchConfig,
}

/// The Blossom server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlossomConfig {
    pub enabled: bool,
    pub addr: String,
    pub public_url: String,
    pub workers: usize,
    pub max_connections: usize,
    pub auth_upload: bool,
    pub auth_get: bool,
    pub auth_list: bool,
    pub upload_pubkeys: Vec<String>,
    pub clock_skew_secs: i64,
    pub auth_max_lifetime_secs: i64,
    pub mirror_allow_private: bool,
    pub mirror_timeout_secs: u64,
    pub max_reports: usize,
}

impl Default for BlossomConfig {
    fn default() -> Self {
        BlossomConfig {
            enabled: true,
            addr: "0.0.0.0:8082".into(),
            public_url: String::new(),
            workers: 4,
            max_connections: 128,
            auth_upload: true,
            auth_get: false,
            auth_list: false,
            upload_pubkeys: Vec::new(),
            clock_skew_secs: 60,
            auth_max_lifetime_secs: 3600,
            mirror_allow_private: false,
            mirror_timeout_secs: 60,
            max_reports: 10_000,
        }
    }
}

/// The gateway's Nostr identity and relays.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NostrConfig {
    pub secret_key: String,
    pub relays: Vec<String>,
    pub retry_min_secs: u64,
    pub retry_max_secs: u64,
    pub max_outbox: usize,
    pub timeout_secs: u64,
}

impl Default for NostrConfig {
    fn default() -> Self {
        NostrConfig {
            secret_key: String::new(),
            relays: Vec::new(),
            retry_min_secs: 5,
            retry_max_secs: 900,
            max_outbox: 10_000,
            timeout_secs: 10,
        }
    }
}

/// The Mainline DHT node (`[dht]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DhtConfig {
    pub enabled: bool,
    /// UDP listen address: `0.0.0.0:P` IPv4, `[::]:P` dual-stack where the platform allows
    /// (IPv4 and IPv6 nodes, BEP-32), another IPv6 address IPv6 only.
    pub addr: String,
    /// `host:port` nodes to join the network through (resolved off the loop).
    pub bootstrap: Vec<String>,
    /// One node per IP and /24 per bucket, rate limits per IP (lifted by itself when `addr` is
    /// a loopback address, where every node shares one IP); false only for private testnets.
    pub restrict_ips: bool,
    /// Datagrams one IP may send per second before it is blocked for a minute.
    pub inbound_per_sec: u32,
    /// Queries the node may send per second.
    pub outbound_per_sec: u32,
}

/// The usual public bootstrap nodes.
pub fn default_dht_bootstrap() -> Vec<String> {
    [
        "router.bittorrent.com:6881",
        "dht.transmissionbt.com:6881",
        "router.utorrent.com:6881",
        "dht.libtorrent.org:25401",
    ]
    .map(String::from)
    .to_vec()
}

impl Default for DhtConfig {
    fn default() -> Self {
        DhtConfig {
            enabled: true,
            addr: "0.0.0.0:6883".into(),
            bootstrap: default_dht_bootstrap(),
            restrict_ips: true,
            inbound_per_sec: 100,
            outbound_per_sec: 250,
        }
    }
}

impl DhtConfig {
    /// The node's settings.
    pub fn settings(&self) -> crate::dht::Settings {
        crate::dht::Settings {
            restrict_ips: self.restrict_ips,
            inbound_per_sec: self.inbound_per_sec.max(1),
            outbound_per_sec: self.outbound_per_sec.max(1),
            ..crate::dht::Settings::default()
        }
    }
}

/// The peer wire service.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PeerConfig {
    pub enabled: bool,
    pub addr: String,
    pub advertise_ip: String,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub max_half_open: usize,
    pub upload_slots: usize,
    pub max_requests: u32,
    pub max_queued_bytes: usize,
    pub handshake_timeout_secs: u64,
    pub idle_timeout_secs: u64,
    pub stall_timeout_secs: u64,
    pub max_outgoing: usize,
    pub connect_backoff_secs: u64,
    pub disk_threads: usize,
    pub map_cache: usize,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            enabled: true,
            addr: "0.0.0.0:6881".into(),
            advertise_ip: String::new(),
            max_connections: 500,
            max_connections_per_ip: 8,
            max_half_open: 64,
            upload_slots: 8,
            max_requests: 500,
            max_queued_bytes: 1 << 20,
            handshake_timeout_secs: 10,
            idle_timeout_secs: 210,
            stall_timeout_secs: 60,
            max_outgoing: 50,
            connect_backoff_secs: 30,
            disk_threads: 2,
            map_cache: 64,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    pub addr: String,
    pub public_url: String,
    pub workers: usize,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub accept_rate: u32,
    pub accept_rate_per_ip: u32,
    pub header_timeout_secs: u64,
    pub io_timeout_secs: u64,
    pub min_body_bytes_per_sec: u64,
    pub max_streams: usize,
    pub max_upload_bytes: u64,
    pub write_tokens: Vec<String>,
    pub nostr_pubkeys: Vec<String>,
    pub nostr_auth_window_secs: i64,
    pub loopback_writes: bool,
    pub shutdown_grace_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub blob_threshold_bytes: u64,
    pub piece_length_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub enabled: bool,
    pub exempt_loopback: bool,
    pub read_per_sec: u32,
    pub read_burst: u32,
    pub write_per_sec: u32,
    pub write_burst: u32,
    pub max_tracked_ips: usize,
    pub ipv6_prefix_bits: u8,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            api: ApiConfig::default(),
            storage: StorageConfig::default(),
            rate_limit: RateLimitConfig::default(),
            tracker: TrackerConfig::default(),
            peer: PeerConfig::default(),
            blossom: BlossomConfig::default(),
            nostr: NostrConfig::default(),
            dht: DhtConfig::default(),
            fetch: FetchConfig::default(),
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            addr: "0.0.0.0:9877".into(),
            public_url: String::new(),
            workers: 4,
            max_connections: 512,
            max_connections_per_ip: 32,
            accept_rate: 10_000,
            accept_rate_per_ip: 200,
            header_timeout_secs: 10,
            io_timeout_secs: 20,
            min_body_bytes_per_sec: 1024,
            max_streams: 64,
            max_upload_bytes: 16 << 30,
            write_tokens: Vec::new(),
            nostr_pubkeys: Vec::new(),
            nostr_auth_window_secs: 60,
            loopback_writes: true,
            shutdown_grace_secs: 10,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            blob_threshold_bytes: 100_000_000,
            piece_length_bytes: 2 << 20,
        }
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            enabled: true,
            exempt_loopback: true,
            read_per_sec: 100,
            read_burst: 400,
            write_per_sec: 5,
            write_burst: 20,
            max_tracked_ips: 10_000,
            ipv6_prefix_bits: 64,
        }
    }
}

/// A configuration problem, naming the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

pub(crate) fn bad(key: &str, why: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("`{key}` {why}"))
}

impl Config {
    /// Parses a TOML file's text; the error is one line naming the key or line.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let msg = e.message().replace('\n', " ");
            match line {
                Some(l) => ConfigError(format!("line {l}: {msg}")),
                None => ConfigError(msg),
            }
        })
    }

    /// Checks every value; the error names the first bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.api_addr()?;
        let api = &self.api;
        if !(1..=256).contains(&api.workers) {
            return Err(bad("api.workers", "must be from 1 to 256"));
        }
        if api.max_connections < api.workers || api.max_connections > 65_536 {
            return Err(bad(
                "api.max_connections",
                "must be at least api.workers and at most 65536",
            ));
        }
        if api.io_timeout_secs == 0 || api.io_timeout_secs > 3600 {
            return Err(bad("api.io_timeout_secs", "must be from 1 to 3600"));
        }
        if api.header_timeout_secs == 0 || api.header_timeout_secs > 600 {
            return Err(bad("api.header_timeout_secs", "must be from 1 to 600"));
        }
        if api.max_connections_per_ip == 0 || api.max_connections_per_ip > api.max_connections {
            return Err(bad(
                "api.max_connections_per_ip",
                "must be from 1 to api.max_connections",
            ));
        }
        if api.accept_rate == 0 {
            return Err(bad("api.accept_rate", "must be at least 1"));
        }
        if api.accept_rate_per_ip == 0 || api.accept_rate_per_ip > api.accept_rate {
            return Err(bad(
                "api.accept_rate_per_ip",
                "must be from 1 to api.accept_rate",
            ));
        }
        if !(1..=65_536).contains(&api.max_streams) {
            return Err(bad("api.max_streams", "must be from 1 to 65536"));
        }
        let url = &api.public_url;
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return Err(bad("api.public_url", "must start with http:// or https://"));
        }
        if api.write_tokens.iter().any(|t| t.len() < 16) {
            return Err(bad(
                "api.write_tokens",
                "entries must be at least 16 characters",
            ));
        }
        let piece = self.storage.piece_length_bytes;
        if !piece.is_power_of_two() || !(16 << 10..=64 << 20).contains(&piece) {
            return Err(bad(
                "storage.piece_length_bytes",
                "must be a power of two from 16384 to 67108864",
            ));
        }
        if self.storage.blob_threshold_bytes == 0 {
            return Err(bad("storage.blob_threshold_bytes", "must be positive"));
        }
        let rl = &self.rate_limit;
        for (key, v) in [
            ("rate_limit.read_per_sec", rl.read_per_sec),
            ("rate_limit.read_burst", rl.read_burst),
            ("rate_limit.write_per_sec", rl.write_per_sec),
            ("rate_limit.write_burst", rl.write_burst),
        ] {
            if v == 0 {
                return Err(bad(key, "must be positive"));
            }
        }
        if !(1..=10_000_000).contains(&rl.max_tracked_ips) {
            return Err(bad(
                "rate_limit.max_tracked_ips",
                "must be from 1 to 10000000",
            ));
        }
        if !(32..=128).contains(&rl.ipv6_prefix_bits) {
            return Err(bad("rate_limit.ipv6_prefix_bits", "must be from 32 to 128"));
        }
        self.tracker.validate()?;
        self.fetch.validate()?;
        self.validate_peer()?;
        self.validate_nostr()
    }

    fn validate_nostr(&self) -> Result<(), ConfigError> {
        use crate::proto::nostr;
        let b = &self.blossom;
        self.blossom_addr()?;
        let url = &b.public_url;
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return Err(bad(
                "blossom.public_url",
                "must start with http:// or https://",
            ));
        }
        if !(1..=256).contains(&b.workers) {
            return Err(bad("blossom.workers", "must be from 1 to 256"));
        }
        if b.max_connections < b.workers || b.max_connections > 65_536 {
            return Err(bad(
                "blossom.max_connections",
                "must be at least blossom.workers and at most 65536",
            ));
        }
        for (key, keys) in [
            ("blossom.upload_pubkeys", &b.upload_pubkeys),
            ("api.nostr_pubkeys", &self.api.nostr_pubkeys),
        ] {
            if let Some(k) = keys.iter().find(|k| nostr::parse_pubkey(k).is_none()) {
                return Err(bad(key, format!("{k:?} is not a hex or npub public key")));
            }
        }
        if !b.auth_upload && !b.upload_pubkeys.is_empty() {
            return Err(bad(
                "blossom.upload_pubkeys",
                "needs blossom.auth_upload = true (without auth nobody can be told apart)",
            ));
        }
        if !(0..=3600).contains(&b.clock_skew_secs) {
            return Err(bad("blossom.clock_skew_secs", "must be from 0 to 3600"));
        }
        if !(60..=604_800).contains(&b.auth_max_lifetime_secs) {
            return Err(bad(
                "blossom.auth_max_lifetime_secs",
                "must be from 60 to 604800",
            ));
        }
        if !(1..=1_000_000).contains(&b.max_reports) {
            return Err(bad("blossom.max_reports", "must be from 1 to 1000000"));
        }
        if !(1..=3600).contains(&self.api.nostr_auth_window_secs) {
            return Err(bad("api.nostr_auth_window_secs", "must be from 1 to 3600"));
        }
        let n = &self.nostr;
        if !n.secret_key.is_empty() {
            nostr::Keys::parse(&n.secret_key).map_err(|e| bad("nostr.secret_key", e))?;
        }
        if let Some(r) = n
            .relays
            .iter()
            .find(|r| crate::nostr::relay::RelayUrl::parse(r).is_err())
        {
            return Err(bad(
                "nostr.relays",
                format!("{r:?} is not a ws:// or wss:// URL"),
            ));
        }
        for (key, v) in [
            ("blossom.mirror_timeout_secs", b.mirror_timeout_secs),
            ("nostr.retry_min_secs", n.retry_min_secs),
            ("nostr.retry_max_secs", n.retry_max_secs),
            ("nostr.timeout_secs", n.timeout_secs),
        ] {
            if !(1..=86_400).contains(&v) {
                return Err(bad(key, "must be from 1 to 86400"));
            }
        }
        if n.retry_max_secs < n.retry_min_secs {
            return Err(bad(
                "nostr.retry_max_secs",
                "must be at least nostr.retry_min_secs",
            ));
        }
        if !(1..=10_000_000).contains(&n.max_outbox) {
            return Err(bad("nostr.max_outbox", "must be from 1 to 10000000"));
        }
        Ok(())
    }

    pub fn blossom_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.blossom.addr.parse().map_err(|_| {
            bad(
                "blossom.addr",
                format!(
                    "{:?} is not an address like 0.0.0.0:8082",
                    self.blossom.addr
                ),
            )
        })
    }

    fn validate_peer(&self) -> Result<(), ConfigError> {
        let p = &self.peer;
        self.peer_addr()?;
        self.advertise_ip()?;
        for (key, v, max) in [
            ("peer.max_connections", p.max_connections, 100_000),
            (
                "peer.max_connections_per_ip",
                p.max_connections_per_ip,
                100_000,
            ),
            ("peer.max_half_open", p.max_half_open, 100_000),
            ("peer.upload_slots", p.upload_slots, 1000),
            ("peer.max_requests", p.max_requests as usize, 10_000),
            ("peer.disk_threads", p.disk_threads, 64),
            ("peer.map_cache", p.map_cache, 100_000),
            ("peer.max_outgoing", p.max_outgoing, 100_000),
        ] {
            if !(1..=max).contains(&v) {
                return Err(bad(key, format!("must be from 1 to {max}")));
            }
        }
        if p.max_queued_bytes < 16 << 10 || p.max_queued_bytes > 1 << 30 {
            return Err(bad(
                "peer.max_queued_bytes",
                "must be from 16384 to 1073741824",
            ));
        }
        for (key, v) in [
            ("peer.handshake_timeout_secs", p.handshake_timeout_secs),
            ("peer.idle_timeout_secs", p.idle_timeout_secs),
            ("peer.stall_timeout_secs", p.stall_timeout_secs),
            ("peer.connect_backoff_secs", p.connect_backoff_secs),
        ] {
            if !(1..=86_400).contains(&v) {
                return Err(bad(key, "must be from 1 to 86400"));
            }
        }
        Ok(())
    }

    pub fn peer_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.peer.addr.parse().map_err(|_| {
            bad(
                "peer.addr",
                format!("{:?} is not an address like 0.0.0.0:6881", self.peer.addr),
            )
        })
    }

    /// The configured address to advertise, if any.
    pub fn advertise_ip(&self) -> Result<Option<std::net::IpAddr>, ConfigError> {
        let ip = self.peer.advertise_ip.trim();
        if ip.is_empty() {
            return Ok(None);
        }
        ip.parse()
            .map(Some)
            .map_err(|_| bad("peer.advertise_ip", format!("{ip:?} is not an IP address")))
    }

    /// The effective configuration as JSON with secrets masked (write tokens, the Nostr
    /// secret key), for the web UI's settings page.
    pub fn masked_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(tokens) = v["api"]["write_tokens"].as_array_mut() {
            for t in tokens.iter_mut() {
                *t = serde_json::Value::from("********");
            }
        }
        if !self.nostr.secret_key.is_empty() {
            v["nostr"]["secret_key"] = serde_json::Value::from("********");
        }
        // A Redis URL may carry a password: redis://user:secret@host.
        if let Some((scheme, rest)) = self.tracker.redis_url.split_once("://") {
            if let Some((_, host)) = rest.rsplit_once('@') {
                v["tracker"]["redis_url"] =
                    serde_json::Value::from(format!("{scheme}://********@{host}"));
            }
        }
        v
    }

    /// The connection layer's limits for the API listener.
    pub fn api_pool_limits(&self) -> crate::http::pool::PoolLimits {
        self.pool_limits(self.api.workers, self.api.max_connections, "")
    }

    /// The Blossom listener's: its own workers and connection cap, the API's timeouts and
    /// per-client caps, CORS on the layer's own refusals.
    pub fn blossom_pool_limits(&self) -> crate::http::pool::PoolLimits {
        self.pool_limits(
            self.blossom.workers,
            self.blossom.max_connections,
            "Access-Control-Allow-Origin: *\r\n",
        )
    }

    fn pool_limits(
        &self,
        workers: usize,
        max_connections: usize,
        refusal_headers: &'static str,
    ) -> crate::http::pool::PoolLimits {
        let api = &self.api;
        crate::http::pool::PoolLimits {
            workers,
            max_connections,
            max_connections_per_ip: api.max_connections_per_ip.min(max_connections),
            accept_rate: api.accept_rate,
            accept_rate_per_ip: api.accept_rate_per_ip,
            header_timeout: Duration::from_secs(api.header_timeout_secs),
            io_timeout: Duration::from_secs(api.io_timeout_secs),
            min_body_bytes_per_sec: api.min_body_bytes_per_sec,
            max_streams: api.max_streams,
            head: crate::proto::http::head::HeadLimits::default(),
            refusal_headers,
        }
    }

    pub fn api_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.api.addr.parse().map_err(|_| {
            bad(
                "api.addr",
                format!("{:?} is not an address like 0.0.0.0:9877", self.api.addr),
            )
        })
    }

    /// The public base URL without a trailing slash, for the address actually bound.
    pub fn public_url_for(&self, bound: SocketAddr) -> String {
        base_url(&self.api.public_url, bound)
    }

    /// The Blossom server's base URL without a trailing slash, for the address bound.
    pub fn blossom_url_for(&self, bound: SocketAddr) -> String {
        base_url(&self.blossom.public_url, bound)
    }
}

/// A configured base URL, or one made from the bound address.
fn base_url(configured: &str, bound: SocketAddr) -> String {
    if !configured.is_empty() {
        return configured.trim_end_matches('/').to_string();
    }
    let host = match bound.ip() {
        ip if ip.is_unspecified() && bound.is_ipv4() => "127.0.0.1".to_string(),
        ip if ip.is_unspecified() => "[::1]".to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        ip => ip.to_string(),
    };
    format!("http://{host}:{}", bound.port())
}

#[cfg(test)]
mod tests;
