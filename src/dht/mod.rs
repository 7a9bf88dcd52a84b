//! The Mainline DHT node (BEP-5) as a sans-IO state machine: [`Dht`] is fed datagrams
//! ([`Dht::receive`]) and the time ([`Dht::tick`], milliseconds on any monotonic scale), and
//! hands back datagrams to send ([`Dht::poll_send`]) and the peers its lookups found
//! ([`Dht::take_found`]). It holds no socket, reads no clock and starts no thread; the `net`
//! loop owns the UDP socket (`net::event_loop::dht`). The pure parts (KRPC, routing table,
//! tokens, storage) are `proto::dht`; this module adds what needs state over time:
//! transactions and their timeouts, iterative lookups ([`lookup`]), answering queries
//! ([`serve`]), the announce schedule, bootstrap and re-bootstrap with back-off, a per-IP
//! inbound rate limit and an outbound query budget. Every queue and map is capped.
//!
//! BEP-32: IPv4 and IPv6 nodes live in two routing tables under one node id ([`tables`]);
//! [`Families`] says which the socket reaches (a `[::]` socket may reach both). Addresses
//! come in canonical (an IPv4-mapped `::ffff:a.b.c.d` is taken as IPv4) and go out as the
//! node names them: the I/O side maps IPv4 back for a dual-stack socket ([`wire_addr`]).

pub mod items;
pub mod lookup;
pub mod persist;
pub mod ratelimit;
pub mod sample;
mod serve;
mod tables;
#[cfg(test)]
mod testnet;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_v6;
mod traversal;

use crate::proto::dht::compact::{canonical, CompactNode};
use crate::proto::dht::krpc::{self, Body, Message, Method};
use crate::proto::dht::node_id::{self, IpVotes};
use crate::proto::dht::routing::{self, Contact, Failed, Table};
use crate::proto::dht::storage::{Limits, Storage};
use crate::proto::dht::tokens::Tokens;
use crate::proto::dht::NodeId;
use lookup::{Kind, Lookup};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
pub use tables::{wire_addr, Families};

/// A query unanswered this long has failed (a lookup moves on sooner: [`Dht::rto`]).
pub const QUERY_TIMEOUT_MS: u64 = 2_000;
/// A lookup's query counts as a failed try after this many smoothed round trips...
const RTO_RTTS: u64 = 4;
/// ...but never sooner than this, nor later than this.
const RTO_MIN_MS: u64 = 250;
const RTO_MAX_MS: u64 = 1_500;
/// Lookups running at once.
pub const MAX_LOOKUPS: usize = 64;
/// Transactions in flight.
const MAX_PENDING: usize = 2048;
/// Datagrams waiting for the socket.
const MAX_OUT: usize = 4096;
/// Found-peer batches waiting for [`Dht::take_found`].
const MAX_FOUND: usize = 1024;
/// Torrents we announce.
pub const MAX_ANNOUNCED: usize = 20_000;
/// Re-announce every 15 minutes plus up to 15 minutes of jitter.
const REANNOUNCE_MS: u64 = 15 * 60 * 1000;
/// An announce that reached nobody is tried again this soon.
const EMPTY_RETRY_MS: u64 = 10_000;
/// Refresh the table (a lookup of our own id) this often.
const REFRESH_MS: u64 = 15 * 60 * 1000;
/// Buckets unchanged this long (seconds) get a lookup of an id in them (BEP-5).
const STALE_BUCKET_SECS: u64 = 15 * 60;
/// Stale buckets are looked for this often.
const STALE_CHECK_MS: u64 = 60_000;
/// Bucket refresh lookups started at once at most.
const MAX_BUCKET_REFRESHES: usize = 8;
/// Below this many nodes the table is taken to be empty and we bootstrap again.
const MIN_NODES: usize = routing::K;
/// Our client version (`v`): "TG" and version 0.1.
const VERSION: &[u8] = b"TG\x00\x01";
/// Nodes (one per /24 or /64) whose `ip` reports are kept to learn our external IP.
const IP_VOTERS: usize = 32;
/// Agreeing reports (a strict majority of those kept) before we take an external IP as ours
/// and, when it is global, take a BEP-42 id for it.
const IP_MIN_VOTES: usize = 5;

/// Node settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// One node per IP and per /24 in a bucket, rate limits per IP; false for loopback
    /// testnets (then per address, and per IP at a multiple: [`ratelimit`]).
    pub restrict_ips: bool,
    /// Datagrams one IP may send per second before it is blocked for a minute.
    pub inbound_per_sec: u32,
    /// Queries we may send per second (bursts up to twice that).
    pub outbound_per_sec: u32,
    pub limits: Limits,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            restrict_ips: true,
            inbound_per_sec: 100,
            outbound_per_sec: 250,
            limits: Limits::default(),
        }
    }
}

/// Counters for `/api/dht/stats`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Stats {
    pub queries_in: HashMap<&'static str, u64>,
    pub queries_out: HashMap<&'static str, u64>,
    pub responses_in: u64,
    pub errors_in: u64,
    pub timeouts: u64,
    pub malformed: u64,
    pub rate_limited: u64,
    pub budget_deferred: u64,
    pub send_dropped: u64,
    pub lookups_started: u64,
    pub lookups_done: u64,
    /// Sum of the finished lookups' durations (for the mean).
    pub lookup_ms_total: u64,
    pub announces_sent: u64,
    pub bootstraps: u64,
    /// Times our id was replaced by a BEP-42 id for a newly learned external IP.
    pub id_changes: u64,
}

/// A finished lookup: its target and the closest nodes that answered (closest first).
#[derive(Debug, Clone)]
pub struct Completed {
    pub target: [u8; 20],
    pub closest: Vec<CompactNode>,
    pub peers: usize,
    pub ms: u64,
    /// What an item lookup found.
    pub item: Option<items::FoundItem>,
}

/// What an outstanding transaction was for.
#[derive(Debug, Clone, Copy)]
enum Purpose {
    Ping,
    Lookup(u64),
    /// A lookup's query to a bootstrap address (no id known).
    Seed(u64),
    Announce,
    /// A BEP-44 put of the item with this target.
    Put([u8; 20]),
    /// A BEP-51 sample_infohashes we asked ([`sample`]).
    Sample,
}

#[derive(Debug)]
struct Pending {
    addr: SocketAddr,
    id: Option<NodeId>,
    sent: u64,
    purpose: Purpose,
    /// Its lookup already counted it as a failed try (an answer is still taken).
    soft: bool,
    /// A lookup's second or later try of this node.
    retry: bool,
}

#[derive(Debug, Clone, Copy)]
struct Announced {
    port: u16,
    next: u64,
}

/// The DHT node.
pub struct Dht {
    id: NodeId,
    settings: Settings,
    /// IPv4 nodes.
    table: Table,
    /// IPv6 nodes (BEP-32): same id, same rules.
    table6: Table,
    /// The families our socket reaches.
    families: Families,
    tokens: Tokens,
    storage: Storage,
    rng: u64,
    next_tid: u16,
    pending: HashMap<u16, Pending>,
    out: VecDeque<(SocketAddr, Vec<u8>)>,
    lookups: Vec<Lookup>,
    next_lookup: u64,
    found: VecDeque<([u8; 20], Vec<SocketAddr>)>,
    completed: VecDeque<Completed>,
    announced: HashMap<[u8; 20], Announced>,
    bootstrap: Vec<SocketAddr>,
    next_bootstrap: u64,
    bootstrap_backoff: u64,
    next_refresh: u64,
    /// A lookup of our own id finished: the buckets short of nodes get a lookup each.
    refresh_buckets: bool,
    next_stale_check: u64,
    rates: ratelimit::Limiter,
    budget: f64,
    budget_at: u64,
    now: u64,
    /// Smoothed round-trip time of answered queries (ms).
    srtt: u64,
    /// How often a lookup's retry is answered (moving average): high on a lossy network,
    /// near 0 where unanswered nodes are simply gone ([`Dht::lookup_tries`]).
    retry_ok: f64,
    /// Our IPv4 and IPv6 addresses as others reach us, when known: get_peers answers for
    /// the torrents we announce include us.
    own_ip: Option<IpAddr>,
    own_ip6: Option<IpAddr>,
    /// Our external IPv4 and IPv6 address as the `ip` fields of responses report it (BEP-42).
    votes: IpVotes,
    votes6: IpVotes,
    /// BEP-44 puts we make, by target.
    puts: HashMap<[u8; 20], items::Putting>,
    /// Answers to our sample_infohashes queries, until [`Dht::take_samples`].
    samples: VecDeque<sample::Sampled>,
    pub stats: Stats,
}

fn xorshift(s: &mut u64) -> u64 {
    let mut x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    x
}

impl Dht {
    /// A node with id `id` (random from `seed` when None); `seed` drives every random choice.
    pub fn new(id: Option<NodeId>, settings: Settings, seed: u64, now_ms: u64) -> Dht {
        let mut rng = seed | 1;
        let mut random20 = || {
            let mut b = [0u8; 20];
            for c in b.chunks_mut(8) {
                let r = xorshift(&mut rng).to_le_bytes();
                c.copy_from_slice(&r[..c.len()]);
            }
            b
        };
        let id = id.unwrap_or_else(|| NodeId(random20()));
        let secret = random20();
        let table = tables::new_table(id, &settings);
        let table6 = tables::new_table(id, &settings);
        let rates = ratelimit::Limiter::new(settings.inbound_per_sec, !settings.restrict_ips);
        Dht {
            id,
            table,
            table6,
            families: Families::V4,
            rates,
            tokens: Tokens::new(secret, now_ms / 1000),
            storage: Storage::new(settings.limits),
            budget: 2.0 * settings.outbound_per_sec as f64,
            settings,
            rng,
            next_tid: (seed >> 16) as u16,
            pending: HashMap::new(),
            out: VecDeque::new(),
            lookups: Vec::new(),
            next_lookup: 1,
            found: VecDeque::new(),
            completed: VecDeque::new(),
            announced: HashMap::new(),
            bootstrap: Vec::new(),
            next_bootstrap: now_ms,
            bootstrap_backoff: 5_000,
            next_refresh: now_ms + REFRESH_MS,
            refresh_buckets: false,
            next_stale_check: now_ms + STALE_CHECK_MS,
            budget_at: now_ms,
            now: now_ms,
            srtt: RTO_MAX_MS / RTO_RTTS,
            retry_ok: 0.5,
            own_ip: None,
            own_ip6: None,
            votes: IpVotes::new(IP_VOTERS),
            votes6: IpVotes::new(IP_VOTERS),
            puts: HashMap::new(),
            samples: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    fn random(&mut self) -> u64 {
        xorshift(&mut self.rng)
    }

    fn random_id(&mut self) -> [u8; 20] {
        let mut b = [0u8; 20];
        for c in b.chunks_mut(8) {
            let r = self.random().to_le_bytes();
            c.copy_from_slice(&r[..c.len()]);
        }
        b
    }

    /// Sets the bootstrap addresses (resolved elsewhere) and bootstraps now.
    pub fn set_bootstrap(&mut self, addrs: Vec<SocketAddr>) {
        self.bootstrap = addrs;
        self.bootstrap.truncate(64);
        self.next_bootstrap = self.now;
        self.bootstrap_backoff = 5_000;
        self.maybe_bootstrap();
    }

    /// Asks a known node (from `dht.dat`) to join the table: it is pinged.
    pub fn add_node(&mut self, addr: SocketAddr) {
        self.query(addr, None, Method::Ping, Purpose::Ping);
    }

    /// Starts an iterative get_peers lookup of `ih` (none if one runs or too many do);
    /// peers come out of [`Dht::take_found`].
    pub fn get_peers(&mut self, ih: [u8; 20]) -> bool {
        self.start_lookup(NodeId(ih), Kind::GetPeers)
    }

    /// Starts a lookup of the nodes closest to `target` (results in [`Dht::take_completed`]).
    pub fn find_node(&mut self, target: [u8; 20]) -> bool {
        self.start_lookup(NodeId(target), Kind::FindNode)
    }

    /// Announces `ih` with `port` now and every 15-30 minutes until [`Dht::stop_announce`].
    pub fn announce(&mut self, ih: [u8; 20], port: u16) {
        if !self.announced.contains_key(&ih) && self.announced.len() >= MAX_ANNOUNCED {
            return;
        }
        self.announced.insert(
            ih,
            Announced {
                port,
                next: self.now,
            },
        );
    }

    /// Sets the IP others reach us at (the socket's, when it is not unspecified).
    pub fn set_own_ip(&mut self, ip: IpAddr) {
        let ip = ip.to_canonical();
        match ip {
            _ if ip.is_unspecified() => {}
            IpAddr::V4(_) => self.own_ip = Some(ip),
            IpAddr::V6(_) => self.own_ip6 = Some(ip),
        }
    }

    /// The port we announce `ih` with, if we do.
    pub fn announced_port(&self, ih: &[u8; 20]) -> Option<u16> {
        self.announced.get(ih).map(|a| a.port)
    }

    /// Our IPv4 address when known, else our IPv6 one.
    pub fn own_ip(&self) -> Option<IpAddr> {
        self.own_ip.or(self.own_ip6)
    }

    /// Our address in the family of `peer`, when known.
    pub fn own_ip_for(&self, peer: SocketAddr) -> Option<IpAddr> {
        match canonical(peer).is_ipv4() {
            true => self.own_ip,
            false => self.own_ip6,
        }
    }

    pub fn stop_announce(&mut self, ih: &[u8; 20]) {
        self.announced.remove(ih);
    }

    pub fn is_announced(&self, ih: &[u8; 20]) -> bool {
        self.announced.contains_key(ih)
    }

    pub fn announced_count(&self) -> usize {
        self.announced.len()
    }

    /// Inbound sources blocked so far, and tracked now (capped at [`ratelimit::MAX_ENTRIES`]).
    pub fn rate_blocks(&self) -> u64 {
        self.rates.blocks
    }

    pub fn rate_sources(&self) -> usize {
        self.rates.len()
    }

    pub fn lookups_running(&self) -> usize {
        self.lookups.len()
    }

    /// The next datagram to send.
    pub fn poll_send(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.out.pop_front()
    }

    /// Peers found since the last call, per info-hash.
    pub fn take_found(&mut self) -> Vec<([u8; 20], Vec<SocketAddr>)> {
        self.found.drain(..).collect()
    }

    /// Lookups finished since the last call.
    pub fn take_completed(&mut self) -> Vec<Completed> {
        self.completed.drain(..).collect()
    }

    // ---- time ------------------------------------------------------------------------

    /// Timeouts, token rotation, storage expiry, due announces, refresh and bootstrap.
    pub fn tick(&mut self, now_ms: u64) {
        self.now = self.now.max(now_ms);
        let secs = self.now / 1000;
        if self.tokens.rotation_due(secs) {
            let s = self.random_id();
            self.tokens.rotate(s, secs);
        }
        self.storage.expire(secs);
        self.lookup_timeouts();
        let timed_out: Vec<u16> = self
            .pending
            .iter()
            .filter(|(_, p)| self.now.saturating_sub(p.sent) >= QUERY_TIMEOUT_MS)
            .map(|(t, _)| *t)
            .collect();
        for t in timed_out {
            if let Some(p) = self.pending.remove(&t) {
                self.stats.timeouts += 1;
                if let Purpose::Sample = p.purpose {
                    self.sampled(p.addr, Err(None));
                }
                self.failed(p);
            }
        }
        self.rates.sweep(self.now);
        self.announce_due();
        if self.now >= self.next_refresh {
            self.next_refresh = self.now + REFRESH_MS;
            let own = self.id.0;
            self.find_node(own);
        }
        self.maybe_bootstrap();
        self.refresh();
        self.step_lookups();
    }

    fn announce_due(&mut self) {
        let now = self.now;
        let mut due: Vec<([u8; 20], u16)> = self
            .announced
            .iter()
            .filter(|(_, a)| a.next <= now)
            .map(|(ih, a)| (*ih, a.port))
            .collect();
        due.sort_unstable();
        // Bounded work per tick: a few lookups start, the rest wait for the next tick.
        for (ih, port) in due.into_iter().take(8) {
            if self.lookups.len() >= MAX_LOOKUPS / 2 || self.budget < 40.0 {
                break;
            }
            // A lookup of the same target may be running: then try again next tick.
            if self.start_lookup(NodeId(ih), Kind::Announce(port)) {
                let jitter = self.random() % REANNOUNCE_MS;
                if let Some(a) = self.announced.get_mut(&ih) {
                    a.next = now + REANNOUNCE_MS + jitter;
                }
            }
        }
    }

    // ---- outgoing --------------------------------------------------------------------

    fn spend(&mut self) -> bool {
        let rate = self.settings.outbound_per_sec as f64;
        let elapsed = self.now.saturating_sub(self.budget_at) as f64 / 1000.0;
        self.budget = (self.budget + elapsed * rate).min(2.0 * rate);
        self.budget_at = self.now;
        if self.budget >= 1.0 {
            self.budget -= 1.0;
            true
        } else {
            self.stats.budget_deferred += 1;
            false
        }
    }

    fn push_out(&mut self, to: SocketAddr, bytes: Vec<u8>) {
        if self.out.len() >= MAX_OUT {
            self.stats.send_dropped += 1;
            return;
        }
        self.out.push_back((to, bytes));
    }

    /// Sends a query if the budget and the transaction table allow.
    fn query(
        &mut self,
        to: SocketAddr,
        id: Option<NodeId>,
        method: Method<'_>,
        purpose: Purpose,
    ) -> bool {
        self.query_try(to, id, method, purpose, false)
    }

    /// [`Dht::query`]; `retry`: a lookup asks this node again (its answer, or its silence,
    /// feeds [`Dht::lookup_tries`]).
    fn query_try(
        &mut self,
        to: SocketAddr,
        id: Option<NodeId>,
        method: Method<'_>,
        purpose: Purpose,
        retry: bool,
    ) -> bool {
        let to = canonical(to);
        if self.pending.len() >= MAX_PENDING || !self.spend() {
            return false;
        }
        let mut tid = self.next_tid;
        while self.pending.contains_key(&tid) {
            tid = tid.wrapping_add(1);
        }
        self.next_tid = tid.wrapping_add(1);
        let t = tid.to_be_bytes();
        let name = method.name();
        let wants_nodes = matches!(
            method,
            Method::FindNode { .. } | Method::GetPeers { .. } | Method::Get { .. }
        );
        let mut msg = Message::query(&t, self.id, method);
        msg.version = Some(VERSION);
        // BEP-32: a dual-stack node asks for both families' nodes.
        if let (true, Body::Query(q)) = (wants_nodes && self.families.dual(), &mut msg.body) {
            q.want = krpc::Want { n4: true, n6: true };
        }
        let bytes = msg.encode();
        *self.stats.queries_out.entry(name).or_default() += 1;
        self.pending.insert(
            tid,
            Pending {
                addr: to,
                id,
                sent: self.now,
                purpose,
                soft: false,
                retry,
            },
        );
        self.push_out(to, bytes);
        true
    }

    fn failed(&mut self, p: Pending) {
        if !p.soft {
            self.try_failed(p.addr, p.id, p.purpose);
        }
    }

    /// A query to `addr` failed: its lookup asks again or moves on; the routing table counts
    /// a failure only once the lookup gives the node up (each retry is not one).
    fn try_failed(&mut self, addr: SocketAddr, id: Option<NodeId>, purpose: Purpose) {
        let now = self.now;
        let gave_up = match purpose {
            Purpose::Lookup(lid) | Purpose::Seed(lid) => {
                let seed = matches!(purpose, Purpose::Seed(_));
                let l = self.lookups.iter_mut().find(|l| l.id == lid);
                l.is_none_or(|l| l.failed(addr, seed, now))
            }
            _ => true,
        };
        if let (true, Some(id)) = (gave_up, id) {
            let secs = self.now / 1000;
            if let Failed::Evicted {
                replaced_by: Some(n),
            } = self.table_of_mut(addr).failed(&id, secs)
            {
                self.query(n.addr, Some(n.id), Method::Ping, Purpose::Ping);
            }
        }
        if let Purpose::Lookup(_) | Purpose::Seed(_) = purpose {
            self.step_lookups();
        }
    }

    // ---- incoming --------------------------------------------------------------------

    /// Handles one datagram from `from`.
    /// An IPv4-mapped `from` (a dual-stack socket) is taken as the IPv4 address it maps.
    pub fn receive(&mut self, from: SocketAddr, bytes: &[u8], now_ms: u64) {
        let from = canonical(from);
        self.now = self.now.max(now_ms);
        if !self.rates.admit(from, self.now) {
            self.stats.rate_limited += 1;
            return;
        }
        let msg = match krpc::parse(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.stats.malformed += 1;
                if let Some(reply) = e.reply() {
                    self.push_out(from, reply);
                }
                return;
            }
        };
        match &msg.body {
            Body::Query(q) => {
                *self.stats.queries_in.entry(q.method.name()).or_default() += 1;
                if !msg.ro {
                    self.heard(q.id, from, Contact::Query);
                }
                let reply = self.answer(from, &msg, q);
                self.push_out(from, reply);
            }
            Body::Response(r) => {
                self.stats.responses_in += 1;
                let Some(p) = self.take_pending(msg.t, from) else {
                    return;
                };
                if p.id.is_some_and(|id| id != r.id) {
                    // A different node at that address: the old one is gone.
                    self.failed(p);
                    return;
                }
                self.heard(r.id, from, Contact::Response);
                let rtt = self.now.saturating_sub(p.sent);
                self.srtt = (self.srtt * 7 + rtt) / 8;
                if p.retry {
                    self.retry_ok = self.retry_ok * 0.95 + 0.05;
                }
                if let Some(seen) = msg.ip {
                    self.external_ip_seen(from.ip(), seen.ip());
                }
                if let Purpose::Put(target) = p.purpose {
                    self.put_answered(target, true);
                }
                if let Purpose::Sample = p.purpose {
                    self.sampled(from, Ok(r));
                }
                if let Purpose::Lookup(lid) | Purpose::Seed(lid) = p.purpose {
                    let seed = matches!(p.purpose, Purpose::Seed(_));
                    self.lookup_response(lid, from, r, seed);
                }
            }
            Body::Error(e) => {
                self.stats.errors_in += 1;
                if let Some(p) = self.take_pending(msg.t, from) {
                    if let Purpose::Put(target) = p.purpose {
                        self.put_answered(target, false);
                    }
                    if let Purpose::Sample = p.purpose {
                        self.sampled(from, Err(Some(e.code)));
                    }
                    self.failed(p);
                }
            }
        }
    }

    fn take_pending(&mut self, t: &[u8], from: SocketAddr) -> Option<Pending> {
        let tid = u16::from_be_bytes(t.try_into().ok()?);
        let p = self.pending.get(&tid)?;
        if canonical(p.addr) != canonical(from) {
            return None;
        }
        self.pending.remove(&tid)
    }
}

/// IPs we never store as peers or nodes.
pub fn usable(addr: &SocketAddr) -> bool {
    addr.port() != 0
        && !addr.ip().is_unspecified()
        && !matches!(addr.ip(), IpAddr::V4(v) if v.is_broadcast())
}
