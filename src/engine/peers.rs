//! A download's peer list: every address any source named (trackers, `--peer`, the magnet's
//! `x.pe`, the DHT, PEX, incoming connections by the listen port they told us), each once,
//! capped, and ranked for dialing, most significant first:
//! 1. fewest failed attempts (failed attempts also back off exponentially);
//! 2. the payload rate measured while it was connected (in powers of two, so noise does not
//!    reorder peers), faster first; never connected counts as slowest;
//! 3. trust: fewest pieces that failed their hash check with a block of its in them;
//! 4. the source: manual > tracker > DHT > incoming > PEX;
//! 5. the local network (loopback, private, link-local, unique-local) before the rest;
//! 6. the BEP-40 priority (CRC32-C of the two masked addresses), the tie-break on which all
//!    peers of a swarm agree.
//!
//! The loop feeds what the engine measures of connected peers ([`PeerList::observe`]: rate,
//! queue time, hash failures) once a tick; banned and connected peers are not dialed.
//! [`PeerList::ranked`] shows the order with a score (higher dials first) and its reasons.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// Where an address came from, most trusted first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// Named by the user (`--peer`, the magnet's `x.pe`).
    User,
    Tracker,
    Dht,
    Incoming,
    Pex,
}

impl Source {
    /// The name in the API (`manual`: `--peer` or the magnet's `x.pe`).
    pub fn name(self) -> &'static str {
        match self {
            Source::User => "manual",
            Source::Tracker => "tracker",
            Source::Dht => "dht",
            Source::Incoming => "incoming",
            Source::Pex => "pex",
        }
    }
}

/// One address as the dialer ranks it, for `GET /api/p2p/peers/<ih>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranked {
    pub addr: SocketAddr,
    pub source: Source,
    pub failures: u32,
    pub connected: bool,
    /// Milliseconds until it may be dialed again (0: now).
    pub retry_in_ms: u64,
    /// BEP-40 priority against our address (higher first among equals).
    pub priority: u32,
    /// Payload bytes per second last measured while connected (0: never measured).
    pub rate: u64,
    /// Milliseconds of requests queued at it at that rate (connected peers only).
    pub queue_ms: Option<u64>,
    /// Pieces with a block of its that failed their hash check.
    pub hash_failures: u32,
    /// On the local network (see [`is_local`]).
    pub local: bool,
    /// Higher dials first; the same order [`PeerList::candidates`] uses.
    pub score: u64,
}

impl Ranked {
    /// Why it ranks where it does, most significant first (built on demand, not in the loop).
    pub fn reasons(&self) -> Vec<String> {
        let mut reasons = vec![
            match self.failures {
                0 => "no failed attempts".to_string(),
                n => format!("{n} failed attempts (fewer rank first)"),
            },
            match self.rate {
                0 => "no payload rate measured yet (ranks after measured ones)".to_string(),
                r => format!("measured {} KiB/s payload (faster ranks first)", r / 1024),
            },
            match self.hash_failures {
                0 => "no hash failures".to_string(),
                n => format!("{n} pieces with its blocks failed the hash check (less trusted)"),
            },
            format!(
                "source {} (manual > tracker > dht > incoming > pex)",
                self.source.name()
            ),
            if self.local {
                "local network (ranks before remote among equals)".to_string()
            } else {
                "remote network".to_string()
            },
            format!("BEP-40 priority {:08x} (the tie-break)", self.priority),
        ];
        if let Some(q) = self.queue_ms {
            reasons.push(format!("{q} ms of requests queued at it"));
        }
        if self.connected {
            reasons.push("connected".into());
        } else if self.retry_in_ms > 0 {
            reasons.push(format!(
                "backing off for {} s",
                self.retry_in_ms.div_ceil(1000)
            ));
        }
        reasons
    }
}

#[derive(Debug, Clone)]
struct Entry {
    source: Source,
    failures: u32,
    next_try_ms: u64,
    connected: bool,
    priority: u32,
    rate: u64,
    queue_ms: Option<u64>,
    hash_failures: u32,
    local: bool,
}

impl Entry {
    /// The dial order: smaller first (see the module text).
    fn key(&self) -> (u32, u32, u32, Source, bool, u32) {
        (
            self.failures,
            u32::MAX - rate_bucket(self.rate),
            self.hash_failures,
            self.source,
            !self.local,
            u32::MAX - self.priority,
        )
    }

    /// A number that orders like [`Entry::key`], higher first: 3 bits of failures, 6 of
    /// rate, 4 of trust, 3 of source, 1 of local, 32 of BEP-40.
    fn score(&self) -> u64 {
        let fails = u64::from(MAX_FAILURES.saturating_sub(self.failures.min(MAX_FAILURES)));
        let rate = u64::from(rate_bucket(self.rate).min(63));
        let trust = 15 - u64::from(self.hash_failures.min(15));
        let source = 4 - self.source as u64;
        (fails << 46)
            | (rate << 40)
            | (trust << 36)
            | (source << 33)
            | (u64::from(self.local) << 32)
            | u64::from(self.priority)
    }
}

/// A rate in powers of two of KiB/s (0: none measured, 1: under 1 KiB/s).
fn rate_bucket(rate: u64) -> u32 {
    if rate == 0 {
        0
    } else {
        64 - (rate / 1024 + 1).leading_zeros()
    }
}

/// What the engine measured of a connected peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Observed {
    pub rate: u64,
    pub queue_ms: Option<u64>,
    pub hash_failures: u32,
}

/// Loopback, private, link-local or unique-local: a peer on our own network.
pub fn is_local(ip: IpAddr) -> bool {
    match crate::tracker::canonical(ip) {
        IpAddr::V4(v) => v.is_loopback() || v.is_private() || v.is_link_local(),
        IpAddr::V6(v) => {
            let s0 = v.segments()[0];
            v.is_loopback() || (s0 & 0xfe00) == 0xfc00 || (s0 & 0xffc0) == 0xfe80
        }
    }
}

pub struct PeerList {
    cap: usize,
    our_ip: Option<IpAddr>,
    peers: HashMap<SocketAddr, Entry>,
}

/// First retry after a failure; doubles per failure.
const BACKOFF_MS: u64 = 5_000;
const MAX_BACKOFF_MS: u64 = 10 * 60_000;
/// Failures after which an address is forgotten (unless the user named it).
const MAX_FAILURES: u32 = 6;

impl PeerList {
    pub fn new(cap: usize, our_ip: Option<IpAddr>) -> PeerList {
        PeerList {
            cap: cap.max(1),
            our_ip,
            peers: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Adds an address (a known one keeps its record and takes the more trusted source).
    /// False when the list is full of better candidates.
    pub fn add(&mut self, addr: SocketAddr, source: Source) -> bool {
        if addr.port() == 0 || addr.ip().is_unspecified() || addr.ip().is_multicast() {
            return false;
        }
        if let Some(e) = self.peers.get_mut(&addr) {
            e.source = e.source.min(source);
            return true;
        }
        if self.peers.len() >= self.cap && !self.evict_for(source) {
            return false;
        }
        let priority = self
            .our_ip
            .map_or(0, |ours| bep40_priority(ours, addr.ip()));
        self.peers.insert(
            addr,
            Entry {
                source,
                failures: 0,
                next_try_ms: 0,
                connected: false,
                priority,
                rate: 0,
                queue_ms: None,
                hash_failures: 0,
                local: is_local(addr.ip()),
            },
        );
        true
    }

    /// Up to `n` addresses to dial now, best first; they count as tried.
    pub fn candidates(
        &mut self,
        now_ms: u64,
        n: usize,
        skip: impl Fn(&SocketAddr) -> bool,
    ) -> Vec<SocketAddr> {
        let mut ready: Vec<(&SocketAddr, &Entry)> = self
            .peers
            .iter()
            .filter(|(a, e)| !e.connected && e.next_try_ms <= now_ms && !skip(a))
            .collect();
        ready.sort_by_key(|(a, e)| (e.key(), **a));
        let chosen: Vec<SocketAddr> = ready.into_iter().take(n).map(|(a, _)| *a).collect();
        for a in &chosen {
            if let Some(e) = self.peers.get_mut(a) {
                // Not dialed again until this attempt ends one way or the other.
                e.next_try_ms = now_ms + MAX_BACKOFF_MS;
            }
        }
        chosen
    }

    /// The best `limit` addresses by the dial order, with a score that orders the same way.
    pub fn ranked(&self, now_ms: u64, limit: usize) -> Vec<Ranked> {
        let mut all: Vec<(&SocketAddr, &Entry)> = self.peers.iter().collect();
        all.sort_unstable_by_key(|(a, e)| (e.key(), **a));
        all.into_iter()
            .take(limit)
            .map(|(a, e)| Ranked {
                addr: *a,
                source: e.source,
                failures: e.failures,
                connected: e.connected,
                retry_in_ms: e.next_try_ms.saturating_sub(now_ms),
                priority: e.priority,
                rate: e.rate,
                queue_ms: e.queue_ms.filter(|_| e.connected),
                hash_failures: e.hash_failures,
                local: e.local,
                score: e.score(),
            })
            .collect()
    }

    /// What the engine measures of a connected peer (once a tick): its rate is remembered
    /// for the next time it is dialed, its hash failures for as long as it is listed.
    pub fn observe(&mut self, addr: SocketAddr, seen: Observed) {
        if let Some(e) = self.peers.get_mut(&addr) {
            if seen.rate > 0 {
                e.rate = seen.rate;
            }
            e.queue_ms = seen.queue_ms;
            e.hash_failures = e.hash_failures.max(seen.hash_failures);
        }
    }

    pub fn connected(&mut self, addr: SocketAddr) {
        if let Some(e) = self.peers.get_mut(&addr) {
            e.connected = true;
            e.failures = 0;
        }
    }

    /// A connection ended. `failed`: it never worked (refused, timed out, bad handshake).
    pub fn disconnected(&mut self, addr: SocketAddr, failed: bool, now_ms: u64) {
        let Some(e) = self.peers.get_mut(&addr) else {
            return;
        };
        e.connected = false;
        if failed {
            e.failures += 1;
            if e.failures >= MAX_FAILURES && e.source != Source::User {
                self.peers.remove(&addr);
                return;
            }
            let shift = (e.failures - 1).min(16);
            e.next_try_ms = now_ms + (BACKOFF_MS << shift).min(MAX_BACKOFF_MS);
        } else {
            e.next_try_ms = now_ms + BACKOFF_MS;
        }
    }

    pub fn remove_ip(&mut self, ip: IpAddr) {
        self.peers.retain(|a, _| a.ip() != ip);
    }

    /// Makes room for a `source` address by dropping the worst unconnected entry that is
    /// worse than it.
    fn evict_for(&mut self, source: Source) -> bool {
        let worst = self
            .peers
            .iter()
            .filter(|(_, e)| !e.connected)
            .max_by_key(|(_, e)| (e.failures, e.source))
            .map(|(a, e)| (*a, e.failures, e.source));
        match worst {
            Some((a, failures, s)) if failures > 0 || s > source => {
                self.peers.remove(&a);
                true
            }
            _ => false,
        }
    }
}

/// BEP-40: CRC32-C of the two addresses, masked (IPv4: /16 when the /16s differ, /24 when
/// only the /24s differ, the full address otherwise), lower one first.
pub fn bep40_priority(a: IpAddr, b: IpAddr) -> u32 {
    let (IpAddr::V4(a), IpAddr::V4(b)) = (a, b) else {
        let (a, b) = (ip_bytes(a), ip_bytes(b));
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        return crc32c(&[lo, hi].concat());
    };
    let (a, b) = (a.octets(), b.octets());
    let mask: [u8; 4] = if a[..2] != b[..2] {
        [0xff, 0xff, 0x55, 0x55]
    } else if a[..3] != b[..3] {
        [0xff, 0xff, 0xff, 0x55]
    } else {
        [0xff; 4]
    };
    let m = |x: [u8; 4]| {
        [
            x[0] & mask[0],
            x[1] & mask[1],
            x[2] & mask[2],
            x[3] & mask[3],
        ]
    };
    let (a, b) = (m(a), m(b));
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    crc32c(&[lo, hi].concat())
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    }
}

fn crc32c(data: &[u8]) -> u32 {
    crate::proto::dht::node_id::crc32c(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn each_address_once_and_capped() {
        let mut l = PeerList::new(2, None);
        assert!(l.add(a("1.1.1.1:1"), Source::Pex));
        assert!(l.add(a("1.1.1.1:1"), Source::Tracker));
        assert_eq!(l.len(), 1);
        assert!(l.add(a("2.2.2.2:1"), Source::Pex));
        assert!(l.add(a("3.3.3.3:1"), Source::User), "evicts a PEX entry");
        assert!(
            !l.add(a("4.4.4.4:1"), Source::Pex),
            "nothing worse to evict"
        );
        assert_eq!(l.len(), 2);
        assert!(!l.add(a("0.0.0.0:5"), Source::User));
    }

    #[test]
    fn ranked_matches_the_dial_order_with_reasons() {
        let mut l = PeerList::new(10, Some("10.0.0.1".parse().unwrap()));
        l.add(a("5.5.5.5:1"), Source::Pex);
        l.add(a("6.6.6.6:1"), Source::Tracker);
        l.add(a("7.7.7.7:1"), Source::Tracker);
        l.add(a("8.8.8.8:1"), Source::User);
        l.add(a("9.9.9.9:1"), Source::Dht);
        let failed = a("6.6.6.6:1");
        l.disconnected(failed, true, 0);
        let ranked = l.ranked(0, 10);
        assert_eq!(l.ranked(0, 2).len(), 2);
        assert_eq!(ranked.len(), 5);
        assert!(
            ranked.windows(2).all(|w| w[0].score > w[1].score),
            "{ranked:?}"
        );
        assert_eq!(ranked[0].addr, a("8.8.8.8:1"), "manual first");
        let last = ranked.last().unwrap();
        assert_eq!(
            (last.addr, last.failures),
            (failed, 1),
            "the failed one last"
        );
        assert!(last.retry_in_ms > 0 && last.reasons().iter().any(|r| r.contains("backing off")));
        assert!(ranked[0].reasons().iter().any(|r| r.contains("manual")));
        assert!(ranked[0].reasons().iter().any(|r| r.contains("BEP-40")));
        // The dialer picks in the same order (the failed one is not due yet).
        let order: Vec<SocketAddr> = ranked.iter().map(|r| r.addr).take(4).collect();
        assert_eq!(l.candidates(0, 10, |_| false), order);
    }

    #[test]
    fn ranking_follows_failures_rate_trust_source_local_then_bep40() {
        let mut l = PeerList::new(20, Some("100.64.0.1".parse().unwrap()));
        let seen = |rate, hash_failures| Observed {
            rate,
            queue_ms: Some(50),
            hash_failures,
        };
        // Each differs from the next in one criterion.
        let fast_pex = a("20.0.0.1:1");
        l.add(fast_pex, Source::Pex);
        l.observe(fast_pex, seen(4 << 20, 0));
        let fast_untrusted = a("20.0.0.2:1");
        l.add(fast_untrusted, Source::Tracker);
        l.observe(fast_untrusted, seen(4 << 20, 2));
        let slow = a("20.0.0.3:1");
        l.add(slow, Source::Tracker);
        l.observe(slow, seen(30_000, 0));
        let tracker = a("20.0.0.4:1");
        l.add(tracker, Source::Tracker);
        let local_dht = a("192.168.1.9:1");
        l.add(local_dht, Source::Dht);
        let dht = a("20.0.0.5:1");
        l.add(dht, Source::Dht);
        let pex_a = a("30.0.0.1:1");
        let pex_b = a("40.0.0.1:1");
        l.add(pex_a, Source::Pex);
        l.add(pex_b, Source::Pex);
        let failed_fast = a("20.0.0.6:1");
        l.add(failed_fast, Source::User);
        l.observe(failed_fast, seen(8 << 20, 0));
        l.disconnected(failed_fast, true, 0);
        // Noise within a power of two does not reorder: 4.0 and 4.5 MiB/s are equals.
        l.observe(fast_untrusted, seen(9 << 19, 2));
        let (hi, lo) = {
            let ours: IpAddr = "100.64.0.1".parse().unwrap();
            if bep40_priority(ours, pex_a.ip()) > bep40_priority(ours, pex_b.ip()) {
                (pex_a, pex_b)
            } else {
                (pex_b, pex_a)
            }
        };
        let ranked = l.ranked(0, 20);
        let order: Vec<SocketAddr> = ranked.iter().map(|r| r.addr).collect();
        assert_eq!(
            order,
            vec![
                fast_pex,
                fast_untrusted,
                slow,
                tracker,
                local_dht,
                dht,
                hi,
                lo,
                failed_fast
            ],
            "{ranked:#?}"
        );
        assert!(ranked.windows(2).all(|w| w[0].score > w[1].score));
        // The dialer uses the same order (the failed one backs off).
        assert_eq!(l.candidates(0, 20, |_| false), order[..8].to_vec());
        let why = |addr| {
            ranked
                .iter()
                .find(|r| r.addr == addr)
                .unwrap()
                .reasons()
                .join("; ")
        };
        assert!(why(fast_pex).contains("4096 KiB/s"), "{}", why(fast_pex));
        assert!(why(fast_untrusted).contains("2 pieces with its blocks failed"));
        assert!(why(local_dht).contains("local network"));
        assert!(why(tracker).contains("no payload rate measured"));
        assert!(is_local("::1".parse().unwrap()) && is_local("fd00::1".parse().unwrap()));
        assert!(!is_local("2001:db8::1".parse().unwrap()) && !is_local("8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn incoming_peers_join_the_list_once_by_their_listen_address() {
        let mut l = PeerList::new(10, None);
        let listen = a("20.0.0.1:6881");
        assert!(l.add(listen, Source::Incoming));
        l.connected(listen);
        // A tracker names the same address later: one entry, the better source.
        assert!(l.add(listen, Source::Tracker));
        assert_eq!(l.len(), 1);
        let r = &l.ranked(0, 10)[0];
        assert_eq!((r.source, r.connected), (Source::Tracker, true));
        assert!(
            l.candidates(0, 10, |_| false).is_empty(),
            "connected: not dialed"
        );
    }

    #[test]
    fn failures_back_off_and_rank_last() {
        let mut l = PeerList::new(10, None);
        l.add(a("1.1.1.1:1"), Source::Tracker);
        l.add(a("2.2.2.2:1"), Source::Tracker);
        let first = l.candidates(0, 1, |_| false)[0];
        l.disconnected(first, true, 0);
        let next = l.candidates(0, 5, |_| false);
        assert_eq!(next.len(), 1, "the failed one waits: {next:?}");
        assert_ne!(next[0], first);
        l.disconnected(next[0], false, 0);
        let later = l.candidates(60_000, 5, |_| false);
        assert_eq!(later[0], next[0], "fewer failures first");
        assert_eq!(later.len(), 2);
    }

    #[test]
    fn bep40_matches_the_spec_examples() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            bep40_priority(ip("123.213.32.10"), ip("98.76.54.32")),
            0xec2d7224
        );
        assert_eq!(
            bep40_priority(ip("123.213.32.10"), ip("123.213.32.234")),
            0x99568189
        );
    }
}
