//! BEP-44 items as a client: a get lookup keeps the valid item with the highest `seq` it is
//! answered (an immutable `v` must hash to the target; a mutable one must hash with its key
//! and salt to the target and carry a good ed25519 signature), and a put is a get lookup
//! followed by `put` to the closest nodes that gave write tokens, whose answers are counted.
//! Signing a mutable item from an ed25519 seed is here too (for the CLI).

use super::lookup::{Kind, Lookup};
use super::{Dht, Purpose};
use crate::proto::dht::krpc::{self, Method, MutablePut, Put, Response};
use crate::proto::dht::routing;
use crate::proto::dht::storage::{self, MutableItem};
use crate::proto::dht::NodeId;

/// Puts remembered at once (the oldest is forgotten past this).
const MAX_PUTS: usize = 64;

/// An item found by a get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundItem {
    /// The bencoded value.
    pub v: Vec<u8>,
    /// Key, signature and `seq` of a mutable item.
    pub mutable: Option<MutableItem>,
}

/// An item to put: the bencoded value, and for a mutable item its signed part and salt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutItem {
    pub v: Vec<u8>,
    pub mutable: Option<(MutableItem, Vec<u8>)>,
}

impl PutItem {
    /// The item's target: SHA-1 of `v` (immutable) or of the key and salt (mutable).
    pub fn target(&self) -> NodeId {
        match &self.mutable {
            None => storage::immutable_target(&self.v),
            Some((m, salt)) => storage::mutable_target(&m.k, salt),
        }
    }
}

/// A put in progress: the item and how the nodes answered.
#[derive(Debug, Clone)]
pub struct Putting {
    item: PutItem,
    /// Nodes the put went to, nodes that stored it, nodes that refused it (KRPC error).
    pub sent: u32,
    pub stored: u32,
    pub refused: u32,
    /// The lookup before the put has finished.
    pub lookup_done: bool,
    /// For a mutable put whose `seq` follows the DHT's: the key seed to sign it again with
    /// once the lookup has seen the highest `seq` held.
    seed: Option<[u8; 32]>,
}

impl Putting {
    pub fn salt(&self) -> &[u8] {
        self.item.mutable.as_ref().map_or(&[], |(_, s)| s)
    }

    /// The `seq` a mutable item went out with.
    pub fn seq(&self) -> Option<i64> {
        self.item.mutable.as_ref().map(|(m, _)| m.seq)
    }
}

/// The item in a get response, if it is valid for `target` (and `salt`).
pub fn check(target: &NodeId, salt: &[u8], r: &Response<'_>) -> Option<FoundItem> {
    let v = r.value?;
    if v.len() > krpc::MAX_V_BYTES || !krpc::valid_item_value(v) {
        return None;
    }
    match (r.k, r.sig, r.seq) {
        (Some(k), Some(sig), Some(seq)) => {
            let ok = storage::mutable_target(&k, salt) == *target
                && seq >= 0
                && storage::verify(&k, &sig, salt, seq, v);
            ok.then(|| FoundItem {
                v: v.to_vec(),
                mutable: Some(MutableItem { k, sig, seq }),
            })
        }
        _ => (storage::immutable_target(v) == *target).then(|| FoundItem {
            v: v.to_vec(),
            mutable: None,
        }),
    }
}

/// The ed25519 public key of a 32-byte seed (the secret key as most libraries keep it).
pub fn public_key(seed: &[u8; 32]) -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(seed)
        .verifying_key()
        .to_bytes()
}

/// A mutable item signed with the key of `seed`.
pub fn sign(seed: &[u8; 32], salt: &[u8], seq: i64, v: &[u8]) -> MutableItem {
    use ed25519_dalek::Signer;
    let key = ed25519_dalek::SigningKey::from_bytes(seed);
    let sig = key.sign(&storage::signed_bytes(salt, seq, v)).to_bytes();
    MutableItem {
        k: key.verifying_key().to_bytes(),
        sig,
        seq,
    }
}

impl Dht {
    /// Starts a get lookup of the item at `target` (`salt`: a mutable item's salt, to check
    /// answers against the target); its best item comes out in [`Dht::take_completed`].
    pub fn get_item(&mut self, target: [u8; 20], salt: &[u8]) -> bool {
        let seeds = self.thin_table_seeds();
        self.start_lookup_salted(NodeId(target), Kind::GetItem, &seeds, salt.to_vec())
    }

    /// Starts putting `item`: a get lookup, then `put` to the closest nodes with tokens.
    /// Returns its target (None if a lookup of it runs or too many do); see
    /// [`Dht::put_status`].
    pub fn put_item(&mut self, item: PutItem) -> Option<[u8; 20]> {
        self.start_put(item, None)
    }

    /// Puts `v` as the mutable item of `seed`'s key under `salt`, with a `seq` one above the
    /// highest the put's own get lookup sees (1 when none): one lookup, then the put.
    pub fn put_mutable_next(
        &mut self,
        seed: [u8; 32],
        salt: &[u8],
        v: Vec<u8>,
    ) -> Option<[u8; 20]> {
        let m = sign(&seed, salt, 1, &v);
        let item = PutItem {
            v,
            mutable: Some((m, salt.to_vec())),
        };
        self.start_put(item, Some(seed))
    }

    fn start_put(&mut self, item: PutItem, seed: Option<[u8; 32]>) -> Option<[u8; 20]> {
        let target = item.target();
        if self.puts.len() >= MAX_PUTS && !self.puts.contains_key(&target.0) {
            let done: Option<[u8; 20]> = self
                .puts
                .iter()
                .find(|(_, p)| p.lookup_done)
                .map(|(t, _)| *t);
            self.puts.remove(&done?);
        }
        let salt = item.mutable.as_ref().map_or(Vec::new(), |(_, s)| s.clone());
        self.puts.insert(
            target.0,
            Putting {
                item,
                sent: 0,
                stored: 0,
                refused: 0,
                lookup_done: false,
                seed,
            },
        );
        let seeds = self.thin_table_seeds();
        if self.start_lookup_salted(target, Kind::PutItem, &seeds, salt) {
            Some(target.0)
        } else {
            self.puts.remove(&target.0);
            None
        }
    }

    /// How a put is going.
    pub fn put_status(&self, target: &[u8; 20]) -> Option<&Putting> {
        self.puts.get(target)
    }

    pub(super) fn put_answered(&mut self, target: [u8; 20], stored: bool) {
        if let Some(p) = self.puts.get_mut(&target) {
            if stored {
                p.stored += 1;
            } else {
                p.refused += 1;
            }
        }
    }

    /// The lookup before a put finished: the item goes to the closest nodes with tokens.
    pub(super) fn finish_put(&mut self, l: &Lookup) {
        let Some(p) = self.puts.get_mut(&l.target.0) else {
            return;
        };
        p.lookup_done = true;
        let held = l
            .item
            .as_ref()
            .and_then(|i| i.mutable.as_ref())
            .map(|m| m.seq);
        if let (Some(seed), Some((m, salt)), Some(held)) = (p.seed, &mut p.item.mutable, held) {
            if held >= m.seq {
                *m = sign(&seed, salt, held + 1, &p.item.v);
            }
        }
        let item = p.item.clone();
        let target = l.target.0;
        let mut sent = 0;
        log::debug!(
            "dht: put {}: {} of {} answering nodes gave tokens",
            crate::proto::hex::encode(&target),
            l.tokens(routing::K).len(),
            l.closest_answered(routing::K).len()
        );
        for (node, token) in l.tokens(routing::K) {
            let mutable = item.mutable.as_ref().map(|(m, salt)| MutablePut {
                k: m.k,
                sig: m.sig,
                seq: m.seq,
                cas: None,
                salt,
            });
            let put = Method::Put(Put {
                token: &token,
                v: &item.v,
                mutable,
            });
            if self.query(node.addr, Some(node.id), put, Purpose::Put(target)) {
                sent += 1;
            }
        }
        if let Some(p) = self.puts.get_mut(&target) {
            p.sent = sent;
        }
    }
}
