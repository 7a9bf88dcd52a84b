//! Write tokens (BEP-5): what get_peers and get answer with and announce_peer and put must
//! bring back. A token is a keyed hash of the querier's IP, so it only works from that IP, and
//! no per-querier state is kept. The secret rotates every [`ROTATE_SECS`] (5 minutes) and the
//! previous one stays valid for one more period, so a token lives between 5 and 10 minutes.
//! Secrets and time are passed in (the node draws secrets from the OS); validity is also
//! bounded by `now`, so a node that missed a rotation does not stretch a token's life.

use sha1::{Digest, Sha1};
use std::net::IpAddr;

/// Seconds between secret rotations.
pub const ROTATE_SECS: u64 = 5 * 60;
/// Bytes in a token we issue.
pub const TOKEN_LEN: usize = 8;
/// Bytes in a secret.
pub const SECRET_LEN: usize = 20;

/// The current and previous secrets.
#[derive(Clone)]
pub struct Tokens {
    current: [u8; SECRET_LEN],
    previous: Option<[u8; SECRET_LEN]>,
    rotated_at: u64,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("rotated_at", &self.rotated_at)
            .finish_non_exhaustive()
    }
}

fn token(secret: &[u8; SECRET_LEN], ip: IpAddr) -> [u8; TOKEN_LEN] {
    let mut h = Sha1::new();
    h.update(secret);
    match ip.to_canonical() {
        IpAddr::V4(v4) => h.update(v4.octets()),
        IpAddr::V6(v6) => h.update(v6.octets()),
    }
    let digest = h.finalize();
    let mut out = [0u8; TOKEN_LEN];
    out.copy_from_slice(&digest[..TOKEN_LEN]);
    out
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Tokens {
    /// Starts with `secret` at `now`.
    pub fn new(secret: [u8; SECRET_LEN], now: u64) -> Tokens {
        Tokens {
            current: secret,
            previous: None,
            rotated_at: now,
        }
    }

    /// Whether [`Tokens::rotate`] is due at `now`.
    pub fn rotation_due(&self, now: u64) -> bool {
        now.saturating_sub(self.rotated_at) >= ROTATE_SECS
    }

    /// Makes `secret` current; the current one becomes the previous one.
    pub fn rotate(&mut self, secret: [u8; SECRET_LEN], now: u64) {
        self.previous = Some(std::mem::replace(&mut self.current, secret));
        self.rotated_at = now;
    }

    /// The token for a querier at `ip`.
    pub fn issue(&self, ip: IpAddr) -> [u8; TOKEN_LEN] {
        token(&self.current, ip)
    }

    /// Whether `presented` is a token we issued to `ip` that is still valid at `now`.
    pub fn check(&self, ip: IpAddr, presented: &[u8], now: u64) -> bool {
        let age = now.saturating_sub(self.rotated_at);
        if age < 2 * ROTATE_SECS && same(&token(&self.current, ip), presented) {
            return true;
        }
        match &self.previous {
            Some(prev) if age < ROTATE_SECS => same(&token(prev, ip), presented),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn bound_to_the_ip() {
        let t = Tokens::new([1; SECRET_LEN], 0);
        let tok = t.issue(ip("192.0.2.1"));
        assert!(t.check(ip("192.0.2.1"), &tok, 1));
        assert!(
            t.check(ip("::ffff:192.0.2.1"), &tok, 1),
            "mapped is the same IP"
        );
        assert!(!t.check(ip("192.0.2.2"), &tok, 1));
        assert!(!t.check(ip("192.0.2.1"), &tok[..7], 1));
        assert!(!t.check(ip("192.0.2.1"), b"", 1));
        let v6 = t.issue(ip("2001:db8::1"));
        assert!(t.check(ip("2001:db8::1"), &v6, 1));
        assert_ne!(v6, tok);
    }

    #[test]
    fn previous_secret_stays_valid_for_one_period() {
        let mut t = Tokens::new([1; SECRET_LEN], 0);
        let a = ip("198.51.100.7");
        let old = t.issue(a);
        assert!(!t.rotation_due(ROTATE_SECS - 1));
        assert!(t.rotation_due(ROTATE_SECS));
        t.rotate([2; SECRET_LEN], ROTATE_SECS);
        assert!(t.check(a, &old, ROTATE_SECS + 10), "previous secret");
        let new = t.issue(a);
        assert_ne!(new, old);
        t.rotate([3; SECRET_LEN], 2 * ROTATE_SECS);
        assert!(!t.check(a, &old, 2 * ROTATE_SECS), "two rotations ago");
        assert!(t.check(a, &new, 2 * ROTATE_SECS));
        // Without rotations, nothing lives past two periods.
        assert!(!t.check(a, &new, 3 * ROTATE_SECS));
        let cur = t.issue(a);
        assert!(t.check(a, &cur, 4 * ROTATE_SECS - 1));
        assert!(!t.check(a, &cur, 4 * ROTATE_SECS));
    }
}
