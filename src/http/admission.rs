//! Accept-rate limits of the connection layer: one token bucket for the listener (a guard
//! on the poller's own work) and one per client address in a table of bounded size, so one
//! client opening connections as fast as it can is refused without refusing the others.
//! Time is passed in, so the buckets are tested without a clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// A token bucket: `rate` tokens a second, at most `rate` held.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub fn full(rate: u32, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(rate),
            at: now,
        }
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, rate: u32, now: Instant) -> bool {
        let rate = f64::from(rate.max(1));
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// True if the bucket has refilled completely (its entry carries no information).
    fn is_full(&self, rate: u32, now: Instant) -> bool {
        let rate = f64::from(rate.max(1));
        self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * rate >= rate
    }
}

/// The listener's bucket and the per-address ones.
pub struct Admission {
    rate: u32,
    per_ip_rate: u32,
    max_ips: usize,
    all: Bucket,
    per_ip: HashMap<IpAddr, Bucket>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    ListenerRate,
    AddressRate,
}

impl Admission {
    pub fn new(rate: u32, per_ip_rate: u32, max_ips: usize, now: Instant) -> Admission {
        Admission {
            rate,
            per_ip_rate,
            max_ips: max_ips.max(16),
            all: Bucket::full(rate, now),
            per_ip: HashMap::new(),
        }
    }

    /// Decides on a new connection from `ip`.
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        if self.per_ip.len() >= self.max_ips && !self.per_ip.contains_key(&ip) {
            let rate = self.per_ip_rate;
            self.per_ip.retain(|_, b| !b.is_full(rate, now));
            if self.per_ip.len() >= self.max_ips {
                // Still full of busy addresses: forget half of them rather than grow.
                let drop: Vec<IpAddr> = self.per_ip.keys().step_by(2).copied().collect();
                for k in drop {
                    self.per_ip.remove(&k);
                }
            }
        }
        let rate = self.per_ip_rate;
        let bucket = self
            .per_ip
            .entry(ip)
            .or_insert_with(|| Bucket::full(rate, now));
        if !bucket.take(rate, now) {
            return Err(Refusal::AddressRate);
        }
        if !self.all.take(self.rate, now) {
            return Err(Refusal::ListenerRate);
        }
        Ok(())
    }

    pub fn tracked(&self) -> usize {
        self.per_ip.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn one_fast_address_does_not_refuse_another() {
        let t0 = Instant::now();
        let mut a = Admission::new(1000, 10, 100, t0);
        let fast: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        let admitted = (0..100).filter(|_| a.admit(fast, t0).is_ok()).count();
        assert_eq!(admitted, 10);
        assert_eq!(a.admit(fast, t0), Err(Refusal::AddressRate));
        assert!(a.admit(other, t0).is_ok());
        // A second later the fast one has ten more.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..100).filter(|_| a.admit(fast, t1).is_ok()).count(), 10);
    }

    #[test]
    fn the_listener_bucket_caps_everyone_together() {
        let t0 = Instant::now();
        let mut a = Admission::new(50, 10, 1000, t0);
        let ok = (0..200u32)
            .filter(|i| {
                let ip = IpAddr::from([10, 0, (i / 256) as u8, (i % 256) as u8]);
                a.admit(ip, t0).is_ok()
            })
            .count();
        assert_eq!(ok, 50);
    }

    #[test]
    fn the_address_table_stays_bounded() {
        let t0 = Instant::now();
        let mut a = Admission::new(1_000_000, 5, 64, t0);
        for i in 0..10_000u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            let _ = a.admit(ip, t0);
            assert!(a.tracked() <= 64);
        }
    }
}
