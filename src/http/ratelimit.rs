//! Per-client token buckets, one per route class, in a table capped at a configured number
//! of clients (the least recently seen are forgotten first). A client is an IPv4 address or
//! an IPv6 prefix (`rate_limit.ipv6_prefix_bits`, a /64 by default: one subscriber gets a
//! whole /64, so keying on full addresses would give it 2^64 buckets and let it evict
//! everyone else's). IPv4-mapped IPv6 addresses count as the IPv4 address.

use super::router::RouteClass;
use crate::config::RateLimitConfig;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// A token bucket: `rate` tokens a second up to `burst`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn full(burst: u32, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(burst),
            updated: now,
        }
    }

    /// Takes one token, or says how many seconds until one is there.
    fn take(&mut self, rate: u32, burst: u32, now: Instant) -> Result<(), u64> {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * f64::from(rate)).min(f64::from(burst));
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - self.tokens) / f64::from(rate)).ceil().max(1.0) as u64)
        }
    }
}

struct Entry {
    read: Bucket,
    write: Bucket,
    seen: Instant,
}

pub struct RateLimiter {
    cfg: RateLimitConfig,
    table: Mutex<HashMap<IpAddr, Entry>>,
}

impl RateLimiter {
    pub fn new(cfg: RateLimitConfig) -> RateLimiter {
        RateLimiter {
            cfg,
            table: Mutex::new(HashMap::new()),
        }
    }

    /// Admits a request, or returns the seconds to wait (for `Retry-After`).
    pub fn check(&self, ip: Option<IpAddr>, class: RouteClass) -> Result<(), u64> {
        self.check_at(ip, class, Instant::now())
    }

    fn check_at(&self, ip: Option<IpAddr>, class: RouteClass, now: Instant) -> Result<(), u64> {
        let Some(ip) = ip.map(crate::tracker::canonical) else {
            return Ok(());
        };
        if !self.cfg.enabled || (self.cfg.exempt_loopback && ip.is_loopback()) {
            return Ok(());
        }
        let ip = client_key(ip, self.cfg.ipv6_prefix_bits);
        let c = &self.cfg;
        let mut table = self.table.lock();
        if table.len() >= c.max_tracked_ips && !table.contains_key(&ip) {
            evict_oldest(&mut table, c.max_tracked_ips / 10 + 1);
        }
        let entry = table.entry(ip).or_insert_with(|| Entry {
            read: Bucket::full(c.read_burst, now),
            write: Bucket::full(c.write_burst, now),
            seen: now,
        });
        entry.seen = now;
        match class {
            RouteClass::Read => entry.read.take(c.read_per_sec, c.read_burst, now),
            RouteClass::Write => entry.write.take(c.write_per_sec, c.write_burst, now),
        }
    }

    pub fn tracked(&self) -> usize {
        self.table.lock().len()
    }
}

/// The bucket key of a (canonical) address: IPv4 as is, IPv6 cut to its first `bits` bits.
fn client_key(ip: IpAddr, bits: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let bits = u32::from(bits.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    }
}

fn evict_oldest(table: &mut HashMap<IpAddr, Entry>, count: usize) {
    let mut seen: Vec<Instant> = table.values().map(|e| e.seen).collect();
    let k = count.min(seen.len()).saturating_sub(1);
    let (_, cutoff, _) = seen.select_nth_unstable(k);
    let cutoff = *cutoff;
    table.retain(|_, e| e.seen > cutoff);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limiter(max_ips: usize) -> RateLimiter {
        RateLimiter::new(RateLimitConfig {
            enabled: true,
            exempt_loopback: true,
            read_per_sec: 2,
            read_burst: 3,
            write_per_sec: 1,
            write_burst: 1,
            max_tracked_ips: max_ips,
            ipv6_prefix_bits: 64,
        })
    }

    #[test]
    fn buckets_refill_and_loopback_is_exempt() {
        let l = limiter(100);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.check_at(Some(ip), RouteClass::Read, t0), Ok(()));
        }
        assert_eq!(l.check_at(Some(ip), RouteClass::Read, t0), Err(1));
        assert_eq!(l.check_at(Some(ip), RouteClass::Write, t0), Ok(()));
        assert_eq!(l.check_at(Some(ip), RouteClass::Write, t0), Err(1));
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(l.check_at(Some(ip), RouteClass::Read, t1), Ok(()));
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..100 {
            assert_eq!(l.check_at(Some(lo), RouteClass::Write, t0), Ok(()));
        }
    }

    #[test]
    fn ipv6_is_limited_per_64_and_mapped_ipv4_per_address() {
        let l = limiter(100);
        let t0 = Instant::now();
        // Fresh addresses from one /64 share one bucket.
        let burst: Vec<Result<(), u64>> = (1..=4u16)
            .map(|i| {
                let ip = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 7, i, 0, 0, i));
                l.check_at(Some(ip), RouteClass::Read, t0)
            })
            .collect();
        assert_eq!(burst, [Ok(()), Ok(()), Ok(()), Err(1)]);
        assert_eq!(l.tracked(), 1);
        let next: IpAddr = "2001:db8:0:8::1".parse().unwrap();
        assert_eq!(l.check_at(Some(next), RouteClass::Read, t0), Ok(()));
        // ::ffff:10.0.0.1 is 10.0.0.1, and mapped loopback is exempt.
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(l.check_at(Some(v4), RouteClass::Read, t0), Ok(()));
        }
        assert_eq!(l.check_at(Some(mapped), RouteClass::Read, t0), Err(1));
        let lo: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        for _ in 0..10 {
            assert_eq!(l.check_at(Some(lo), RouteClass::Read, t0), Ok(()));
        }
        assert_eq!(client_key(next, 128), next);
        assert_eq!(client_key(next, 0), IpAddr::V6(0.into()));
        assert_eq!(
            client_key("2001:db8:ffff::1".parse().unwrap(), 36),
            "2001:db8:f000::".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn table_is_capped() {
        let l = limiter(50);
        let t0 = Instant::now();
        for i in 0..1000u32 {
            let ip = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
            let _ = l.check_at(
                Some(ip),
                RouteClass::Read,
                t0 + Duration::from_millis(i.into()),
            );
        }
        assert!(l.tracked() <= 50, "{}", l.tracked());
    }
}
