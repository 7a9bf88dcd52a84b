//! The node's inbound rate limit: datagrams per second counted per source IP (and, on a
//! loopback testnet where every node shares one IP, per source address too), a source past
//! its rate ignored for [`BLOCK_MS`]. On a real network the per-IP rate is
//! `Settings::inbound_per_sec`; with `restrict_ips` off each address gets that rate and the IP
//! as a whole [`SHARED_IP_FACTOR`] times it, so a flooder that sprays from many ports of one
//! IP is still blocked while the honest nodes sharing 127.0.0.1 keep their own budgets. The
//! table of sources is capped ([`MAX_ENTRIES`]); when it is full of live entries a new
//! source is refused (counted as rate-limited) rather than growing it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// Sources (IPs, plus addresses when per-address counting is on) remembered at most.
pub const MAX_ENTRIES: usize = 10_000;
/// A flooding source is ignored this long.
pub const BLOCK_MS: u64 = 60_000;
/// With `restrict_ips` off, one IP may send this many times the per-address rate.
pub const SHARED_IP_FACTOR: u32 = 16;

#[derive(Debug, Clone, Copy)]
struct Rate {
    window: u64,
    count: u32,
    blocked_until: u64,
}

impl Rate {
    fn live(&self, now: u64) -> bool {
        self.blocked_until > now || now.saturating_sub(self.window) < 1000
    }
}

/// Per-source inbound counters.
#[derive(Debug)]
pub struct Limiter {
    per_sec: u32,
    per_address: bool,
    rates: HashMap<SocketAddr, Rate>,
    /// When a full table was last swept: at most once a second, so a stream of new sources
    /// at a full table costs a lookup each, not a scan of the whole table each.
    last_sweep: Option<u64>,
    /// Sources blocked so far (each block counted once).
    pub blocks: u64,
}

impl Limiter {
    /// `per_address`: count each source address too (loopback testnets).
    pub fn new(per_sec: u32, per_address: bool) -> Limiter {
        Limiter {
            per_sec: per_sec.max(1),
            per_address,
            rates: HashMap::new(),
            last_sweep: None,
            blocks: 0,
        }
    }

    /// Sources tracked now.
    pub fn len(&self) -> usize {
        self.rates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rates.is_empty()
    }

    /// Sources blocked now.
    pub fn blocked(&self, now: u64) -> usize {
        self.rates
            .values()
            .filter(|r| r.blocked_until > now)
            .count()
    }

    /// Forgets the sources whose window passed and whose block ended.
    pub fn sweep(&mut self, now: u64) {
        self.rates.retain(|_, r| r.live(now));
    }

    /// Whether a datagram from `from` at `now` is within its rates (false: drop it).
    pub fn admit(&mut self, from: SocketAddr, now: u64) -> bool {
        let ip: IpAddr = from.ip();
        let ip_key = SocketAddr::new(ip, 0);
        if self.per_address {
            let shared = self.per_sec.saturating_mul(SHARED_IP_FACTOR);
            // The address first: one flooding port is blocked alone and does not spend the
            // budget its IP shares with honest neighbours; many ports together hit the IP's.
            (from.port() == 0 || self.count(from, self.per_sec, now))
                && self.count(ip_key, shared, now)
        } else {
            self.count(ip_key, self.per_sec, now)
        }
    }

    fn count(&mut self, key: SocketAddr, limit: u32, now: u64) -> bool {
        if !self.rates.contains_key(&key) && self.rates.len() >= MAX_ENTRIES {
            if self
                .last_sweep
                .is_none_or(|t| now.saturating_sub(t) >= 1000)
            {
                self.last_sweep = Some(now);
                self.sweep(now);
            }
            if self.rates.len() >= MAX_ENTRIES {
                return false;
            }
        }
        let r = self.rates.entry(key).or_insert(Rate {
            window: now,
            count: 0,
            blocked_until: 0,
        });
        if r.blocked_until > now {
            return false;
        }
        if now.saturating_sub(r.window) >= 1000 {
            r.window = now;
            r.count = 0;
        }
        r.count += 1;
        if r.count > limit {
            r.blocked_until = now + BLOCK_MS;
            self.blocks += 1;
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_ip_is_limited_whatever_its_ports() {
        let mut l = Limiter::new(10, true);
        // Each of 40 ports sends 5 a second: every address is within its rate, the IP is not.
        let mut admitted = 0;
        for port in 0..40u16 {
            for _ in 0..5 {
                if l.admit(a(&format!("127.0.0.2:{}", 1000 + port)), 100) {
                    admitted += 1;
                }
            }
        }
        assert_eq!(admitted, 10 * SHARED_IP_FACTOR as usize);
        assert!(!l.admit(a("127.0.0.2:9999"), 200), "the IP is blocked");
        assert!(l.admit(a("127.0.0.3:1000"), 200), "another IP is not");
        assert!(!l.admit(a("127.0.0.2:1000"), 100 + BLOCK_MS - 1));
        assert!(l.admit(a("127.0.0.2:1000"), 100 + BLOCK_MS + 1));
        assert_eq!(l.blocks, 1);
    }

    #[test]
    fn one_address_past_its_rate_is_blocked_alone() {
        let mut l = Limiter::new(10, true);
        let ok = (0..50).filter(|_| l.admit(a("127.0.0.1:5000"), 0)).count();
        assert_eq!(ok, 10);
        assert!(
            l.admit(a("127.0.0.1:5001"), 0),
            "a neighbour on the same IP"
        );
        let mut strict = Limiter::new(10, false);
        let ok = (0..50u16)
            .filter(|p| strict.admit(a(&format!("10.0.0.1:{}", 5000 + p)), 0))
            .count();
        assert_eq!(ok, 10, "per IP when restricted");
    }

    #[test]
    fn the_table_is_capped_and_swept() {
        let mut l = Limiter::new(1, false);
        for i in 0..MAX_ENTRIES as u32 + 50 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            l.admit(SocketAddr::from((ip, 1)), 0);
        }
        assert_eq!(l.len(), MAX_ENTRIES);
        assert!(!l.admit(a("11.0.0.1:1"), 10), "refused while full");
        assert!(l.admit(a("11.0.0.1:1"), 2_000), "swept a window later");
        assert_eq!(l.len(), 1);
    }
}
