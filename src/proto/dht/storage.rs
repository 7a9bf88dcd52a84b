//! What a DHT node stores for others, with caps: peers announced per info-hash (BEP-5) and
//! BEP-44 items. Peers expire 30 to 45 minutes after their last announce (the caller passes a
//! random number for the jitter), at most [`Limits::max_peers_per_hash`] per info-hash (the
//! one expiring soonest makes room) and [`Limits::max_info_hashes`] info-hashes (new ones are
//! refused when full). Items live two hours after their last put. Immutable items are keyed
//! by the SHA-1 of `v`; mutable ones by the SHA-1 of `k` and the salt, and a put must carry a
//! valid ed25519 signature (checked with `ed25519-dalek`) over the BEP-44 buffer, a `seq` that
//! never goes backwards, and a matching `cas` when one is given. Time is passed in.

use super::krpc::{self, code, MutablePut};
use super::node_id::NodeId;
use ed25519_dalek::{Signature, VerifyingKey};
use sha1::{Digest, Sha1};
use std::collections::HashMap;
use std::net::SocketAddr;

/// A peer lives at least this long after its announce...
pub const PEER_TTL_SECS: u64 = 30 * 60;
/// ...plus up to this much jitter.
pub const PEER_TTL_JITTER_SECS: u64 = 15 * 60;
/// An item lives this long after its last put (BEP-44: "MAY expire in 2 hours").
pub const ITEM_TTL_SECS: u64 = 2 * 60 * 60;

/// Storage caps.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_info_hashes: usize,
    pub max_peers_per_hash: usize,
    pub max_items: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_info_hashes: 2_000,
            max_peers_per_hash: 500,
            max_items: 1_000,
        }
    }
}

/// The storage is at a cap and takes nothing new under this key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// Why a put was refused; [`PutError::code`] is the KRPC error to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutError {
    /// `v` is not one bencoded value.
    InvalidValue,
    ValueTooBig,
    SaltTooBig,
    BadSignature,
    /// `cas` differs from the stored `seq`.
    CasMismatch,
    /// `seq` is lower than the stored one, or equal with another value.
    SeqTooOld,
    /// At the item cap.
    Full,
}

impl PutError {
    pub fn code(&self) -> i64 {
        match self {
            PutError::InvalidValue => code::PROTOCOL,
            PutError::ValueTooBig => code::V_TOO_BIG,
            PutError::SaltTooBig => code::SALT_TOO_BIG,
            PutError::BadSignature => code::BAD_SIGNATURE,
            PutError::CasMismatch => code::CAS_MISMATCH,
            PutError::SeqTooOld => code::SEQ_TOO_OLD,
            PutError::Full => code::SERVER,
        }
    }
}

/// A stored BEP-44 item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The bencoded value as it was put.
    pub v: Vec<u8>,
    /// `None` for an immutable item.
    pub mutable: Option<MutableItem>,
    expires: u64,
}

/// The signed part of a mutable item (the salt is not sent back on get).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutableItem {
    pub k: [u8; 32],
    pub sig: [u8; 64],
    pub seq: i64,
}

#[derive(Debug, Clone, Copy)]
struct StoredPeer {
    addr: SocketAddr,
    expires: u64,
}

/// Peers and items held for the network.
#[derive(Debug, Clone, Default)]
pub struct Storage {
    limits: Limits,
    swarms: HashMap<NodeId, Vec<StoredPeer>>,
    items: HashMap<NodeId, Item>,
}

/// The key of an immutable item: SHA-1 of its bencoded `v`.
pub fn immutable_target(v: &[u8]) -> NodeId {
    NodeId(Sha1::digest(v).into())
}

/// The key of a mutable item: SHA-1 of the public key and the salt.
pub fn mutable_target(k: &[u8; 32], salt: &[u8]) -> NodeId {
    let mut h = Sha1::new();
    h.update(k);
    h.update(salt);
    NodeId(h.finalize().into())
}

/// The bytes a mutable item's signature covers (BEP-44): the salt (when not empty), `seq`,
/// then `v` as bencoded.
pub fn signed_bytes(salt: &[u8], seq: i64, v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(salt.len() + v.len() + 40);
    if !salt.is_empty() {
        out.extend_from_slice(format!("4:salt{}:", salt.len()).as_bytes());
        out.extend_from_slice(salt);
    }
    out.extend_from_slice(format!("3:seqi{seq}e1:v").as_bytes());
    out.extend_from_slice(v);
    out
}

/// Whether `sig` is `k`'s ed25519 signature of the item (strict verification: no small-order
/// keys, no non-canonical encodings).
pub fn verify(k: &[u8; 32], sig: &[u8; 64], salt: &[u8], seq: i64, v: &[u8]) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(k) else {
        return false;
    };
    let sig = Signature::from_bytes(sig);
    key.verify_strict(&signed_bytes(salt, seq, v), &sig).is_ok()
}

impl Storage {
    pub fn new(limits: Limits) -> Storage {
        Storage {
            limits,
            ..Storage::default()
        }
    }

    /// Stores (or refreshes) `addr` for `info_hash`; `random` picks the expiry jitter.
    pub fn announce(
        &mut self,
        info_hash: NodeId,
        addr: SocketAddr,
        now: u64,
        random: u64,
    ) -> Result<(), Full> {
        let addr = super::compact::canonical(addr);
        if self.limits.max_peers_per_hash == 0 {
            return Err(Full);
        }
        let expires = now + PEER_TTL_SECS + random % (PEER_TTL_JITTER_SECS + 1);
        if !self.swarms.contains_key(&info_hash) && self.swarms.len() >= self.limits.max_info_hashes
        {
            self.expire(now);
            if self.swarms.len() >= self.limits.max_info_hashes {
                return Err(Full);
            }
        }
        let peers = self.swarms.entry(info_hash).or_default();
        if let Some(p) = peers.iter_mut().find(|p| p.addr == addr) {
            p.expires = expires;
            return Ok(());
        }
        peers.retain(|p| p.expires > now);
        if peers.len() >= self.limits.max_peers_per_hash {
            let soonest = (0..peers.len()).min_by_key(|&i| peers[i].expires);
            if let Some(i) = soonest {
                peers.swap_remove(i);
            }
        }
        peers.push(StoredPeer { addr, expires });
        Ok(())
    }

    /// Up to `max` live peers of `info_hash` of one family, from `start` (a random offset).
    pub fn peers(
        &self,
        info_hash: &NodeId,
        now: u64,
        v6: bool,
        max: usize,
        start: usize,
    ) -> Vec<SocketAddr> {
        let Some(peers) = self.swarms.get(info_hash) else {
            return Vec::new();
        };
        let n = peers.len();
        (0..n)
            .map(|i| &peers[(start.wrapping_add(i)) % n])
            .filter(|p| p.expires > now && p.addr.is_ipv6() == v6)
            .take(max)
            .map(|p| p.addr)
            .collect()
    }

    /// Drops expired peers, empty info-hashes and expired items.
    pub fn expire(&mut self, now: u64) {
        self.swarms.retain(|_, peers| {
            peers.retain(|p| p.expires > now);
            !peers.is_empty()
        });
        self.items.retain(|_, item| item.expires > now);
    }

    pub fn info_hash_count(&self) -> usize {
        self.swarms.len()
    }

    pub fn peer_count(&self) -> usize {
        self.swarms.values().map(Vec::len).sum()
    }

    pub fn item_count(&self) -> usize {
        self.items.len()
    }

    /// Up to `max` stored info-hashes for BEP-51, from offset `start` (a random number).
    pub fn sample(&self, max: usize, start: usize) -> Vec<NodeId> {
        let n = self.swarms.len();
        if n == 0 {
            return Vec::new();
        }
        let skip = start % n;
        let keys = self.swarms.keys();
        keys.clone()
            .skip(skip)
            .chain(keys.take(skip))
            .take(max)
            .copied()
            .collect()
    }

    fn room_for(&mut self, target: &NodeId, now: u64) -> Result<(), PutError> {
        if !self.items.contains_key(target) && self.items.len() >= self.limits.max_items {
            self.items.retain(|_, item| item.expires > now);
            if self.items.len() >= self.limits.max_items {
                return Err(PutError::Full);
            }
        }
        Ok(())
    }

    /// Stores an immutable item; returns its target.
    pub fn put_immutable(&mut self, v: &[u8], now: u64) -> Result<NodeId, PutError> {
        check_value(v)?;
        let target = immutable_target(v);
        self.room_for(&target, now)?;
        let item = Item {
            v: v.to_vec(),
            mutable: None,
            expires: now + ITEM_TTL_SECS,
        };
        self.items.insert(target, item);
        Ok(target)
    }

    /// Stores a mutable item after checking its signature, `cas` and `seq`; returns its target.
    pub fn put_mutable(
        &mut self,
        put: &MutablePut<'_>,
        v: &[u8],
        now: u64,
    ) -> Result<NodeId, PutError> {
        check_value(v)?;
        if put.salt.len() > krpc::MAX_SALT {
            return Err(PutError::SaltTooBig);
        }
        if put.seq < 0 || !verify(&put.k, &put.sig, put.salt, put.seq, v) {
            return Err(PutError::BadSignature);
        }
        let target = mutable_target(&put.k, put.salt);
        let expires = now + ITEM_TTL_SECS;
        if let Some(old) = self.items.get_mut(&target).filter(|i| i.expires > now) {
            let old_seq = old.mutable.as_ref().map_or(-1, |m| m.seq);
            if put.cas.is_some_and(|cas| cas != old_seq) {
                return Err(PutError::CasMismatch);
            }
            if put.seq < old_seq || (put.seq == old_seq && old.v != v) {
                return Err(PutError::SeqTooOld);
            }
            if put.seq == old_seq {
                old.expires = expires;
                return Ok(target);
            }
        }
        self.room_for(&target, now)?;
        let item = Item {
            v: v.to_vec(),
            mutable: Some(MutableItem {
                k: put.k,
                sig: put.sig,
                seq: put.seq,
            }),
            expires,
        };
        self.items.insert(target, item);
        Ok(target)
    }

    /// The live item under `target`.
    pub fn get(&self, target: &NodeId, now: u64) -> Option<&Item> {
        self.items.get(target).filter(|i| i.expires > now)
    }
}

fn check_value(v: &[u8]) -> Result<(), PutError> {
    if v.len() > krpc::MAX_V_BYTES {
        Err(PutError::ValueTooBig)
    } else if !krpc::valid_item_value(v) {
        Err(PutError::InvalidValue)
    } else {
        Ok(())
    }
}

#[cfg(test)]
#[path = "storage_tests.rs"]
mod tests;
