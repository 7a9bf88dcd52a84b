//! The built-in tracker: one swarm [`registry`] shared by the HTTP front end
//! (`http::tracker`) and the UDP front end ([`udp`]), the policy of which info-hashes it
//! serves, its counters, and the [`maintenance`] thread that expires peers and persists
//! completed-download counts. The swarms live in this process ([`registry`], the default) or
//! in Redis ([`redis_swarms`], shared by several gateways); both answer alike.

pub mod maintenance;
pub mod redis_conn;
pub mod redis_lanes;
pub mod redis_swarms;
pub mod registry;
mod swarm;
pub mod udp;
pub mod udp_batch;

use crate::config::{TrackerBackend, TrackerConfig, TrackerMode};
use crate::hash::Counter;
use crate::proto::hex;
use crate::proto::tracker::http::Event;
use crate::proto::tracker::http::SwarmCounts;
use crate::store::db::Db;
use parking_lot::RwLock;
use redis_swarms::{Done, RedisSettings, RedisSwarms};
use registry::{AnnounceIn, Limits, Peer, PeerSink, Refusal, Registry};
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// IPv4-mapped IPv6 addresses (a dual-stack socket's IPv4 clients) as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Tells whether the gateway stores a torrent (the `hosted` mode's question).
pub type HostedFn = Box<dyn Fn(&[u8; 20]) -> bool + Send + Sync>;

/// Counters of the tracker's work.
#[derive(Default)]
pub struct TrackerStats {
    pub http_announces: Counter,
    pub udp_announces: Counter,
    pub http_scrapes: Counter,
    pub udp_scrapes: Counter,
    pub udp_connects: Counter,
    /// Announces refused with a failure reason (not allowed, caps, bad key).
    pub refused: Counter,
    /// Malformed HTTP queries and UDP packets (stale connection ids included) answered with
    /// an error.
    pub bad_requests: Counter,
    /// UDP packets dropped without an answer (too short to carry a transaction id).
    pub udp_dropped: Counter,
}

/// An announce the policy let through: as the swarm is asked (`numwant` less the gateway's
/// own seeder when that was handed out), and what [`Tracker::conclude`] needs.
struct Admitted {
    a: AnnounceIn,
    seeds_it: bool,
    hosted: bool,
}

pub struct Tracker {
    pub config: TrackerConfig,
    /// The swarms of the memory backend (empty with Redis).
    pub registry: Registry,
    /// The swarms of the Redis backend.
    pub redis: Option<Arc<RedisSwarms>>,
    pub stats: TrackerStats,
    hosted: HostedFn,
    allowlist: RwLock<HashSet<[u8; 20]>>,
    epoch: Instant,
    /// The gateway's own seeder, handed out for hosted torrents (set once the peer wire
    /// listens).
    own_peer: OnceLock<SocketAddr>,
    /// Told when a leecher of a hosted torrent starts (the peer wire connects out to it).
    leecher_hint: OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl Tracker {
    /// A tracker with its allowlist and completed counts loaded from `db`.
    pub fn open(config: TrackerConfig, hosted: HostedFn, db: &Db) -> Result<Tracker, String> {
        let allowlist = db
            .allowlist()
            .map_err(|e| e.to_string())?
            .iter()
            .filter_map(|h| hex::decode::<20>(h))
            .collect();
        let tracker = Tracker::new(config, hosted, allowlist)?;
        if tracker.redis.is_some() {
            return Ok(tracker);
        }
        let mut loaded = 0;
        let saved = db
            .tracker_downloads(tracker.config.max_torrents)
            .map_err(|e| e.to_string())?;
        for (hash, n) in saved {
            if let Some(ih) = hex::decode::<20>(&hash) {
                if tracker.permits(&ih) && tracker.registry.preload(ih, n) {
                    loaded += 1;
                }
            }
        }
        log::debug!("tracker: restored completed counts of {loaded} torrents");
        Ok(tracker)
    }

    /// A tracker with the configured backend (an unusable `redis_url` is the only error).
    pub fn new(
        config: TrackerConfig,
        hosted: HostedFn,
        allowlist: HashSet<[u8; 20]>,
    ) -> Result<Tracker, String> {
        let redis = match config.backend {
            TrackerBackend::Memory => None,
            TrackerBackend::Redis => Some(Arc::new(RedisSwarms::new(RedisSettings {
                url: config.redis_url.clone(),
                pool: config.redis_pool,
                timeout: std::time::Duration::from_millis(config.redis_timeout_ms),
                peer_timeout_secs: config.peer_timeout_secs,
                max_peers_per_torrent: config.max_peers_per_torrent,
            })?)),
        };
        let registry = Registry::new(Limits {
            max_torrents: config.max_torrents,
            max_peers_per_torrent: config.max_peers_per_torrent,
            max_peers: config.max_peers,
            peer_timeout_secs: config.peer_timeout_secs,
        });
        Ok(Tracker {
            config,
            registry,
            redis,
            stats: TrackerStats::default(),
            hosted,
            allowlist: RwLock::new(allowlist),
            epoch: Instant::now(),
            own_peer: OnceLock::new(),
            leecher_hint: OnceLock::new(),
        })
    }

    /// Re-announces answered from the cheap path (sooner than the client's min interval).
    pub fn too_fast(&self) -> u64 {
        self.registry.too_fast.get() + self.redis.as_ref().map_or(0, |r| r.too_fast.get())
    }

    /// The tracker's health: degraded while Redis is unreachable.
    pub fn health(&self) -> (bool, String) {
        match &self.redis {
            Some(r) => r.health(),
            None => (true, String::new()),
        }
    }

    /// Whether the gateway itself seeds this torrent (counted as one more seeder).
    fn self_seeds(&self, info_hash: &[u8; 20]) -> bool {
        self.own_peer.get().is_some() && (self.hosted)(info_hash)
    }

    /// Seconds since the tracker started (the registry's clock).
    pub fn now(&self) -> u32 {
        self.epoch.elapsed().as_secs() as u32
    }

    /// Whether this info-hash may be tracked in the configured mode.
    pub fn permits(&self, info_hash: &[u8; 20]) -> bool {
        match self.config.mode {
            TrackerMode::Open => true,
            TrackerMode::Hosted => (self.hosted)(info_hash),
            TrackerMode::Allowlist => {
                (self.hosted)(info_hash) || self.allowlist.read().contains(info_hash)
            }
        }
    }

    /// The number of peers to hand out for a requested `numwant`.
    pub fn numwant(&self, asked: Option<u32>) -> usize {
        asked
            .map_or(self.config.numwant_default, |n| n as usize)
            .min(self.config.numwant_max)
    }

    /// Hands out `addr` as a seeder of every hosted torrent (the gateway's peer wire).
    pub fn set_own_peer(&self, addr: SocketAddr) {
        let _ = self.own_peer.set(addr);
    }

    pub fn own_peer(&self) -> Option<SocketAddr> {
        self.own_peer.get().copied()
    }

    /// Sets what to call when a leecher of a hosted torrent announces `started`.
    pub fn on_leecher(&self, hint: Box<dyn Fn() + Send + Sync>) {
        let _ = self.leecher_hint.set(hint);
    }

    /// Checks the policy, records the announce and appends peers to `out`: the gateway's
    /// own seeder first for hosted torrents (to leechers of its address family), then others.
    pub fn announce(
        &self,
        a: &AnnounceIn,
        out: &mut impl PeerSink,
    ) -> Result<SwarmCounts, Refusal> {
        self.announce_at(a, self.now(), out)
    }

    /// [`Tracker::announce`] at a clock reading (`now`) the caller already has.
    pub fn announce_at(
        &self,
        a: &AnnounceIn,
        now: u32,
        out: &mut impl PeerSink,
    ) -> Result<SwarmCounts, Refusal> {
        let admitted = match self.admit(a, out) {
            Ok(admitted) => admitted,
            Err(refusal) => return self.conclude(None, Err(refusal)),
        };
        let result = match &self.redis {
            Some(r) => r.announce(&admitted.a, out),
            None => self.registry.announce(&admitted.a, now, out),
        };
        self.conclude(Some(&admitted), result)
    }

    /// [`Tracker::announce`] without waiting for Redis: `done` gets the outcome and the
    /// peers (the gateway's own seeder first) once, on a Redis lane's thread, or on this one
    /// at once when nothing needs Redis (the memory backend, a refusal, Redis known down).
    pub fn announce_later(self: &Arc<Self>, a: &AnnounceIn, done: Done) {
        let mut peers = Vec::new();
        let admitted = match self.admit(a, &mut peers) {
            Ok(admitted) => admitted,
            Err(refusal) => return done(self.conclude(None, Err(refusal)), peers),
        };
        let Some(redis) = &self.redis else {
            let result = self.registry.announce(&admitted.a, self.now(), &mut peers);
            return done(self.conclude(Some(&admitted), result), peers);
        };
        let me = Arc::clone(self);
        let asked = admitted.a.clone();
        redis.submit(
            &asked,
            Box::new(move |result, sampled| {
                let result = me.conclude(Some(&admitted), result);
                peers.extend(sampled);
                done(result, peers)
            }),
        );
    }

    /// The policy's part before the swarm is asked: whether the torrent is tracked here,
    /// and the gateway's own seeder (for hosted torrents, to leechers of its family) into
    /// `out` ahead of the others.
    fn admit(&self, a: &AnnounceIn, out: &mut impl PeerSink) -> Result<Admitted, Refusal> {
        if !self.permits(&a.info_hash) {
            return Err(Refusal::NotTracked);
        }
        let leecher = a.left != Some(0) && a.event != Event::Stopped;
        // Asked at most once per announce, and only when the gateway seeds or dials.
        let seeds_it = self.own_peer.get().is_some() && (self.hosted)(&a.info_hash);
        let hosted = leecher
            && (seeds_it
                || (self.own_peer.get().is_none()
                    && self.leecher_hint.get().is_some()
                    && (self.hosted)(&a.info_hash)));
        let mut numwant = a.numwant;
        if let Some(own) = self.own_peer.get() {
            let family_ok = a.family.admits(own.is_ipv6());
            let me = SocketAddr::new(a.ip, a.port) == *own;
            if hosted && numwant > 0 && family_ok && !me {
                out.take(&Peer::seed(*own));
                numwant -= 1;
            }
        }
        Ok(Admitted {
            a: AnnounceIn {
                numwant,
                ..a.clone()
            },
            seeds_it,
            hosted,
        })
    }

    /// The policy's part once the swarm answered: the gateway's own seed in the counts, the
    /// peer wire told of a new leecher of a hosted torrent, refusals counted.
    fn conclude(
        &self,
        admitted: Option<&Admitted>,
        mut result: Result<SwarmCounts, Refusal>,
    ) -> Result<SwarmCounts, Refusal> {
        if let (Some(adm), Ok(c)) = (admitted, &mut result) {
            c.complete += u32::from(adm.seeds_it);
            if adm.hosted && adm.a.event == Event::Started {
                if let Some(hint) = self.leecher_hint.get() {
                    hint();
                }
            }
        }
        if result.is_err() {
            self.stats.refused.add(1);
        }
        result
    }

    /// Counts for one torrent; zeros for torrents the tracker does not serve.
    pub fn scrape(&self, info_hash: &[u8; 20]) -> Result<SwarmCounts, Refusal> {
        Ok(self.scrape_many(std::slice::from_ref(info_hash))?[0])
    }

    /// Counts for several torrents (one Redis pipeline), the gateway's own seed included.
    pub fn scrape_many(&self, hashes: &[[u8; 20]]) -> Result<Vec<SwarmCounts>, Refusal> {
        let mut out = match &self.redis {
            Some(r) => r.scrape(hashes)?,
            None => hashes.iter().map(|h| self.registry.scrape(h)).collect(),
        };
        for (h, c) in hashes.iter().zip(out.iter_mut()) {
            if !self.permits(h) {
                *c = SwarmCounts::default();
            } else if self.self_seeds(h) {
                c.complete += 1;
            }
        }
        Ok(out)
    }

    /// Every tracked torrent's counts (memory backend; Redis has no full scrape), at most
    /// `max_torrents`, sorted by info-hash.
    pub fn scrape_all(&self) -> Vec<([u8; 20], SwarmCounts)> {
        let mut all = self.registry.scrape_all(self.config.max_torrents);
        all.retain(|(h, _)| self.permits(h));
        for (h, c) in all.iter_mut() {
            if self.self_seeds(h) {
                c.complete += 1;
            }
        }
        all
    }

    pub fn allowlisted(&self) -> Vec<[u8; 20]> {
        let mut v: Vec<_> = self.allowlist.read().iter().copied().collect();
        v.sort_unstable();
        v
    }

    /// Adds to the allowlist, in SQLite first. Returns whether it is new, or `None` when
    /// the allowlist already holds `max_torrents` entries (its cap).
    pub fn allow(&self, db: &Db, info_hash: [u8; 20]) -> rusqlite::Result<Option<bool>> {
        {
            let list = self.allowlist.read();
            if !list.contains(&info_hash) && list.len() >= self.config.max_torrents {
                return Ok(None);
            }
        }
        let added = db.allow(&hex::encode(&info_hash), crate::catalog::now_secs())?;
        self.allowlist.write().insert(info_hash);
        Ok(Some(added))
    }

    /// Removes from the allowlist and forgets the swarm unless still permitted.
    pub fn disallow(&self, db: &Db, info_hash: [u8; 20]) -> rusqlite::Result<bool> {
        let removed = db.disallow(&hex::encode(&info_hash))?;
        self.allowlist.write().remove(&info_hash);
        if !self.permits(&info_hash) {
            self.flush(db);
            self.registry.remove(&info_hash);
            if let Some(r) = &self.redis {
                let _ = r.remove(&info_hash);
            }
        }
        Ok(removed)
    }

    /// Writes completed-download counts gathered since the last flush to SQLite.
    /// (With Redis, also probes it while it is unreachable.)
    pub fn flush(&self, db: &Db) {
        if let Some(r) = &self.redis {
            r.probe();
        }
        let counts = self.registry.take_unsaved();
        if counts.is_empty() {
            return;
        }
        let rows: Vec<(String, u64)> = counts.iter().map(|(h, n)| (hex::encode(h), *n)).collect();
        if let Err(e) = db.add_tracker_downloads(&rows) {
            log::warn!("tracker: saving completed counts failed, will retry: {e}");
            self.registry.return_unsaved(&counts);
        }
    }

    /// Expires peers; under pressure (torrents near the cap) also forgets count-only torrents.
    pub fn sweep(&self) -> (usize, usize) {
        let pressure = self.registry.torrents() * 4 > self.config.max_torrents * 3;
        self.registry.sweep(self.now(), pressure)
    }
}
