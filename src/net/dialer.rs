//! Back-off for addresses we connect out to: a failed address waits `base * 2^failures`
//! (at most 32 times the base) before the next attempt. The table is capped; when full the
//! entries whose wait is over are dropped first.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub struct Backoff {
    entries: HashMap<SocketAddr, (u32, Instant)>,
    base: Duration,
    cap: usize,
}

impl Backoff {
    pub fn new(base: Duration, cap: usize) -> Backoff {
        Backoff {
            entries: HashMap::new(),
            base,
            cap: cap.max(1),
        }
    }

    /// Whether `addr` may be tried now.
    pub fn ready(&self, addr: &SocketAddr, now: Instant) -> bool {
        self.entries.get(addr).is_none_or(|(_, next)| now >= *next)
    }

    /// An attempt is starting: until it ends, the address waits at least one base period.
    pub fn attempt(&mut self, addr: SocketAddr, now: Instant) {
        self.make_room(now);
        let e = self.entries.entry(addr).or_insert((0, now));
        e.1 = now + self.base;
    }

    /// The attempt failed (refused, timed out, closed before the handshake).
    pub fn failed(&mut self, addr: SocketAddr, now: Instant) {
        self.make_room(now);
        let e = self.entries.entry(addr).or_insert((0, now));
        e.0 = (e.0 + 1).min(5);
        e.1 = now + self.base * (1 << e.0);
    }

    /// The peer spoke the protocol: the next attempt (after it goes away) waits one base.
    pub fn succeeded(&mut self, addr: SocketAddr, now: Instant) {
        self.entries.insert(addr, (0, now + self.base));
    }

    fn make_room(&mut self, now: Instant) {
        if self.entries.len() < self.cap {
            return;
        }
        self.entries.retain(|_, (_, next)| *next > now);
        if self.entries.len() >= self.cap {
            if let Some(k) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, n))| *n)
                .map(|(k, _)| *k)
            {
                self.entries.remove(&k);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Which of two connections to one peer survives (libtorrent's rule, `peer_list.cpp`
/// `new_connection`, which the remote applies too, so both sides close the same one): the
/// outgoing connection of the side with the lower listen port; on a tie, the existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Existing,
    New,
}

/// `new_is_outgoing`: the new connection is ours (the existing one is then theirs).
pub fn keep_on_duplicate(new_is_outgoing: bool, our_port: u16, their_port: u16) -> Keep {
    use std::cmp::Ordering::*;
    match (our_port.cmp(&their_port), new_is_outgoing) {
        (Equal, _) => Keep::Existing,
        // Our port is lower: our outgoing connection is the one to keep.
        (Less, true) | (Greater, false) => Keep::New,
        (Less, false) | (Greater, true) => Keep::Existing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_double_the_wait_and_the_table_is_capped() {
        let base = Duration::from_secs(10);
        let mut b = Backoff::new(base, 2);
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let t0 = Instant::now();
        assert!(b.ready(&a, t0));
        b.attempt(a, t0);
        assert!(!b.ready(&a, t0 + Duration::from_secs(9)));
        b.failed(a, t0);
        assert!(!b.ready(&a, t0 + Duration::from_secs(19)));
        assert!(b.ready(&a, t0 + Duration::from_secs(20)));
        for _ in 0..10 {
            b.failed(a, t0);
        }
        assert!(b.ready(&a, t0 + base * 32));
        assert!(!b.ready(&a, t0 + base * 31));
        for port in 2..10 {
            b.failed(SocketAddr::new(a.ip(), port), t0);
        }
        assert!(b.len() <= 2);
    }

    #[test]
    fn both_sides_keep_the_same_duplicate() {
        // We listen on 6881, the peer on 51413: our outgoing connection stays, whichever came
        // first; the peer, applying the same rule with the ports swapped, agrees.
        assert_eq!(keep_on_duplicate(true, 6881, 51413), Keep::New);
        assert_eq!(keep_on_duplicate(false, 6881, 51413), Keep::Existing);
        assert_eq!(keep_on_duplicate(true, 51413, 6881), Keep::Existing);
        assert_eq!(keep_on_duplicate(false, 51413, 6881), Keep::New);
        assert_eq!(keep_on_duplicate(true, 7000, 7000), Keep::Existing);
    }
}
