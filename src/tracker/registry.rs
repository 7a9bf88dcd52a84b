//! The swarm registry: every tracked torrent's peers, in shards behind parking_lot mutexes.
//!
//! A peer that sends a `key` is identified by (peer_id, key, address family), so a client that
//! changes address stays one peer while a dual-stack client that announces one key from its
//! IPv4 and its IPv6 socket is two (as aquatic keeps separate IPv4 and IPv6 swarms); a peer
//! without a key is identified by (peer_id, address). Nobody can move
//! or stop another client's entry without its key. Each torrent's peers are a
//! [`Swarm`](super::swarm), 52 bytes a peer in two parallel arrays. Every table has a cap, and
//! refusing is a [`Refusal`] with a reason.

use super::swarm::Swarm;
use crate::proto::tracker::http::{Event, SwarmCounts};
use parking_lot::Mutex;
use std::cell::Cell;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};

const SHARDS: usize = 64;

pub(super) const SEED: u8 = 1;
pub(super) const COUNTED: u8 = 2;
pub(super) const V6: u8 = 4;
pub(super) const HAS_KEY: u8 = 8;

/// Caps and timing of the registry.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_torrents: usize,
    pub max_peers_per_torrent: usize,
    pub max_peers: usize,
    pub peer_timeout_secs: u32,
}

/// Why an announce was refused; the text is the tracker's failure reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotTracked,
    TooManyTorrents,
    SwarmFull,
    TooManyPeers,
    /// The shared backend (Redis) is down or slow.
    Unavailable,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::NotTracked => "Requested download is not authorized for use with this tracker",
            Refusal::TooManyTorrents => "tracker is full: too many torrents, try again later",
            Refusal::SwarmFull => "swarm is full: too many peers for this torrent",
            Refusal::TooManyPeers => "tracker is full: too many peers, try again later",
            Refusal::Unavailable => "tracker storage is unavailable, try again later",
        }
    }
}

/// Which address families of peers a client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
    Both,
    /// Both, the IPv4 peers first (an HTTP announce from IPv4: `numwant` is not spent on
    /// peers the client cannot reach while reachable ones are left).
    V4First,
    /// Both, the IPv6 peers first.
    V6First,
}

impl Family {
    /// Whether a peer of this family (`v6`) is handed out at all.
    pub fn admits(self, v6: bool) -> bool {
        match self {
            Family::V4 => !v6,
            Family::V6 => v6,
            _ => true,
        }
    }
}

/// Where an announce puts the peers it hands out.
pub trait PeerSink {
    /// Whether `take` reads peer ids (else they are zeros, and the registry reads less).
    const WANTS_ID: bool = true;
    fn take(&mut self, peer: &Peer);
}

impl PeerSink for Vec<Peer> {
    fn take(&mut self, peer: &Peer) {
        self.push(*peer);
    }
}

/// Compact peer entries (BEP-23 / BEP-15) appended straight to a buffer.
pub struct CompactPeers<'a>(pub &'a mut Vec<u8>);

impl PeerSink for CompactPeers<'_> {
    const WANTS_ID: bool = false;
    fn take(&mut self, peer: &Peer) {
        peer.write_compact(self.0);
    }
}

/// One announce, as the front ends hand it over.
#[derive(Debug, Clone)]
pub struct AnnounceIn {
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
    pub ip: IpAddr,
    pub port: u16,
    /// Bytes missing; `None` (unknown) counts as a leecher.
    pub left: Option<u64>,
    pub event: Event,
    pub key: Option<u32>,
    pub numwant: usize,
    pub family: Family,
    /// Seconds this client was told to wait at least between announces: a plain re-announce
    /// sooner than that is answered with counts only and counted (0: no such check).
    pub min_interval: u32,
}

/// A peer as an announce hands it out.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub id: [u8; 20],
    ip: [u8; 16],
    pub port: u16,
    flags: u8,
}

impl Peer {
    pub(super) fn new(id: [u8; 20], ip: [u8; 16], port: u16, flags: u8) -> Peer {
        Peer {
            id,
            ip,
            port,
            flags,
        }
    }

    /// A seeder at `addr` that is not in any swarm (the gateway itself).
    pub fn seed(addr: std::net::SocketAddr) -> Peer {
        let (ip, v6) = ip_bytes(addr.ip());
        Peer {
            id: [0; 20],
            ip,
            port: addr.port(),
            flags: v6 | SEED,
        }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::new(self.ip(), self.port)
    }

    pub fn ip(&self) -> IpAddr {
        if self.flags & V6 != 0 {
            IpAddr::V6(Ipv6Addr::from(self.ip))
        } else {
            let [a, b, c, d] = self.ip[..4].try_into().expect("4 bytes");
            IpAddr::V4(Ipv4Addr::new(a, b, c, d))
        }
    }

    pub fn is_v6(&self) -> bool {
        self.flags & V6 != 0
    }

    pub fn is_seed(&self) -> bool {
        self.flags & SEED != 0
    }

    /// Appends the compact form: 4 or 16 address bytes and the port, big-endian.
    pub fn write_compact(&self, out: &mut Vec<u8>) {
        let n = if self.is_v6() { 16 } else { 4 };
        out.extend_from_slice(&self.ip[..n]);
        out.extend_from_slice(&self.port.to_be_bytes());
    }
}

/// The identity of an announcer as bytes (peer_id, then a tag with the family, then the key
/// or the address and port): the Redis backend's set member.
pub(crate) fn ident_bytes(a: &AnnounceIn) -> [u8; 39] {
    let (ip, v6) = ip_bytes(a.ip);
    let who = Ident::new(a.peer_id, a.key, &ip, a.port, v6);
    let mut out = [0u8; 39];
    out[..20].copy_from_slice(&who.id);
    out[20..].copy_from_slice(&who.rest);
    out
}

/// Who a peer is: (peer_id, key) when it sent a key, else (peer_id, address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Ident {
    pub(super) id: [u8; 20],
    /// A tag byte, then the key or the address and port.
    rest: [u8; 19],
}

impl Ident {
    pub(super) fn new(
        id: [u8; 20],
        key: Option<u32>,
        ip: &[u8; 16],
        port: u16,
        flags: u8,
    ) -> Ident {
        let mut rest = [0u8; 19];
        match key {
            Some(k) => {
                rest[0] = 1 | (flags & V6);
                rest[1..5].copy_from_slice(&k.to_be_bytes());
            }
            None => {
                rest[0] = 2 | (flags & V6);
                rest[1..17].copy_from_slice(ip);
                rest[17..].copy_from_slice(&port.to_be_bytes());
            }
        }
        Ident { id, rest }
    }

    /// (key, address, port, family flag) back out of the packed form.
    pub(super) fn parts(&self) -> (Option<u32>, [u8; 16], u16, u8) {
        let r = &self.rest;
        if r[0] & 1 == 1 {
            let key = u32::from_be_bytes([r[1], r[2], r[3], r[4]]);
            return (Some(key), [0; 16], 0, r[0] & V6);
        }
        let ip: [u8; 16] = r[1..17].try_into().expect("16 bytes");
        (None, ip, u16::from_be_bytes([r[17], r[18]]), r[0] & V6)
    }
}

fn ip_bytes(ip: IpAddr) -> ([u8; 16], u8) {
    match ip {
        IpAddr::V4(v4) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&v4.octets());
            (b, 0)
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => ip_bytes(IpAddr::V4(v4)),
            None => (v6.octets(), V6),
        },
    }
}

type Shard = HashMap<[u8; 20], Swarm>;

pub struct Registry {
    shards: Box<[Mutex<Shard>]>,
    limits: Limits,
    torrents: AtomicUsize,
    peers: AtomicUsize,
    /// Re-announces sooner than the client's minimum interval (answered with counts only).
    pub too_fast: crate::hash::Counter,
    /// Keys the peers' tags (a client cannot pick an identity that collides with others').
    tags: std::collections::hash_map::RandomState,
}

thread_local! {
    static RNG: Cell<u64> = Cell::new({
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(&h as *const _ as usize);
        h.finish() | 1
    });
}

/// A fast per-thread xorshift number, for where in a swarm handing out peers starts.
fn random() -> u64 {
    RNG.with(|c| {
        let mut x = c.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.set(x);
        x
    })
}

impl Registry {
    pub fn new(limits: Limits) -> Registry {
        Registry {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::new())).collect(),
            limits,
            torrents: AtomicUsize::new(0),
            peers: AtomicUsize::new(0),
            too_fast: Default::default(),
            tags: Default::default(),
        }
    }

    /// Info-hashes are SHA-1 output: their first bytes pick the shard. (Someone who crafts
    /// hashes for one shard only makes that shard's lock busier; the maps inside use keyed
    /// hashing.)
    fn shard(&self, info_hash: &[u8; 20]) -> &Mutex<Shard> {
        let h = u16::from_le_bytes([info_hash[0], info_hash[1]]) as usize;
        &self.shards[h % SHARDS]
    }

    pub fn torrents(&self) -> usize {
        self.torrents.load(Ordering::Relaxed)
    }

    pub fn peers(&self) -> usize {
        self.peers.load(Ordering::Relaxed)
    }

    /// Records an announce and appends up to `numwant` other peers to `out`.
    pub fn announce(
        &self,
        a: &AnnounceIn,
        now: u32,
        out: &mut impl PeerSink,
    ) -> Result<SwarmCounts, Refusal> {
        let (ip, v6) = ip_bytes(a.ip);
        let seed = a.left == Some(0) || (a.left.is_none() && a.event == Event::Completed);
        let mut flags = v6 | if seed { SEED } else { 0 };
        if a.key.is_some() {
            flags |= HAS_KEY;
        }
        let mut shard = self.shard(&a.info_hash).lock();
        let swarm = match shard.get_mut(&a.info_hash) {
            Some(s) => s,
            None if a.event == Event::Stopped => return Ok(SwarmCounts::default()),
            None => {
                if self.torrents() >= self.limits.max_torrents {
                    return Err(Refusal::TooManyTorrents);
                }
                self.torrents.fetch_add(1, Ordering::Relaxed);
                shard.entry(a.info_hash).or_default()
            }
        };
        let who = Ident::new(a.peer_id, a.key, &ip, a.port, flags);
        let tag = self.tags.hash_one(who) as u32;
        let me = match swarm.find(&who, tag) {
            Some(i) => {
                let old = swarm.flags(i);
                let was_seed = old & SEED != 0;
                if a.event == Event::None
                    && was_seed == seed
                    && now.saturating_sub(swarm.seen(i)) < a.min_interval
                {
                    // The cheap path: no write, no peers.
                    self.too_fast.add(1);
                    return Ok(swarm.counts());
                }
                if a.event == Event::Stopped {
                    swarm.remove(i);
                    self.peers.fetch_sub(1, Ordering::Relaxed);
                    return Ok(swarm.counts());
                }
                swarm.update(i, &ip, a.port, flags | (old & COUNTED), now);
                if was_seed != seed {
                    if seed {
                        swarm.seeders += 1;
                    } else {
                        swarm.seeders -= 1;
                    }
                }
                i
            }
            None => {
                if a.event == Event::Stopped {
                    return Ok(swarm.counts());
                }
                if swarm.len() >= self.limits.max_peers_per_torrent {
                    return Err(Refusal::SwarmFull);
                }
                if self.peers() >= self.limits.max_peers {
                    return Err(Refusal::TooManyPeers);
                }
                self.peers.fetch_add(1, Ordering::Relaxed);
                swarm.push(&who, tag, &ip, a.port, flags, now)
            }
        };
        if a.event == Event::Completed && swarm.flags(me) & COUNTED == 0 {
            swarm.set_flags(me, swarm.flags(me) | COUNTED);
            swarm.downloaded += 1;
            swarm.unsaved += 1;
        }
        let start = || random() as usize;
        swarm.select(me, a.numwant, a.family, seed, start, out);
        Ok(swarm.counts())
    }

    /// Seeders, leechers and completed downloads of one torrent (zeros if untracked).
    pub fn scrape(&self, info_hash: &[u8; 20]) -> SwarmCounts {
        self.shard(info_hash)
            .lock()
            .get(info_hash)
            .map(Swarm::counts)
            .unwrap_or_default()
    }

    /// Every tracked torrent's counts, at most `max`, sorted by info-hash.
    pub fn scrape_all(&self, max: usize) -> Vec<([u8; 20], SwarmCounts)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock();
            let room = max.saturating_sub(out.len());
            out.extend(shard.iter().take(room).map(|(h, s)| (*h, s.counts())));
        }
        out.sort_unstable_by_key(|f| f.0);
        out
    }

    /// Restores a persisted completed-download count (at start-up).
    pub fn preload(&self, info_hash: [u8; 20], downloaded: u64) -> bool {
        let mut shard = self.shard(&info_hash).lock();
        if !shard.contains_key(&info_hash) {
            if self.torrents() >= self.limits.max_torrents {
                return false;
            }
            self.torrents.fetch_add(1, Ordering::Relaxed);
        }
        shard.entry(info_hash).or_default().downloaded = downloaded;
        true
    }

    /// Completed downloads counted since the last call, per torrent (to persist).
    pub fn take_unsaved(&self) -> Vec<([u8; 20], u64)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            for (h, s) in shard.lock().iter_mut() {
                if s.unsaved > 0 {
                    out.push((*h, std::mem::take(&mut s.unsaved)));
                }
            }
        }
        out
    }

    /// Puts back counts that could not be persisted.
    pub fn return_unsaved(&self, counts: &[([u8; 20], u64)]) {
        for (h, n) in counts {
            if let Some(s) = self.shard(h).lock().get_mut(h) {
                s.unsaved += n;
            }
        }
    }

    /// Drops peers not seen for the timeout, and torrents left with nothing worth keeping:
    /// no peers and no completed count, or (when `pressure`) no peers at all. Returns
    /// (peers, torrents) removed.
    pub fn sweep(&self, now: u32, pressure: bool) -> (usize, usize) {
        let timeout = self.limits.peer_timeout_secs;
        let (mut peers, mut torrents) = (0, 0);
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            shard.retain(|_, s| {
                peers += s.expire(now, timeout);
                let keep = !s.is_empty() || s.unsaved > 0 || (s.downloaded > 0 && !pressure);
                torrents += usize::from(!keep);
                keep
            });
        }
        self.peers.fetch_sub(peers, Ordering::Relaxed);
        self.torrents.fetch_sub(torrents, Ordering::Relaxed);
        (peers, torrents)
    }

    /// Leechers of the torrents `wanted` accepts, as (info-hash, peer id, address): at most
    /// `max`, from a random shard on, so repeated calls reach every swarm.
    pub fn leechers(
        &self,
        max: usize,
        wanted: impl Fn(&[u8; 20]) -> bool,
    ) -> Vec<([u8; 20], [u8; 20], std::net::SocketAddr)> {
        // From a random shard and a random point of each swarm, at most a quarter of `max`
        // per swarm: one big swarm cannot crowd out the others, and repeated calls do not
        // hand out the same first leechers.
        let mut out = Vec::new();
        let per_swarm = (max / 4).max(1);
        let start = random() as usize % SHARDS;
        for i in 0..SHARDS {
            let shard = self.shards[(start + i) % SHARDS].lock();
            for (h, s) in shard.iter() {
                if s.len() as u32 == s.seeders || !wanted(h) {
                    continue;
                }
                let from = random() as usize % s.len().max(1);
                for (id, addr) in s.leechers(from, per_swarm) {
                    if out.len() >= max {
                        return out;
                    }
                    out.push((*h, id, addr));
                }
            }
        }
        out
    }

    /// Forgets one torrent (it stopped being allowed).
    pub fn remove(&self, info_hash: &[u8; 20]) {
        if let Some(s) = self.shard(info_hash).lock().remove(info_hash) {
            self.peers.fetch_sub(s.len(), Ordering::Relaxed);
            self.torrents.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// (seeders, leechers) over every torrent.
    pub fn totals(&self) -> (u64, u64) {
        let (mut seeds, mut all) = (0u64, 0u64);
        for shard in self.shards.iter() {
            for s in shard.lock().values() {
                seeds += s.seeders as u64;
                all += s.len() as u64;
            }
        }
        (seeds, all - seeds)
    }
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
