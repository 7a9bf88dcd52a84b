//! Tests of DHT storage: the BEP-44 test vectors (signed buffers, targets, signatures),
//! mutable puts with `seq` and `cas` rules using keys signed here, the item cap and expiry,
//! and peers per info-hash with their caps, jittered expiry, families and BEP-51 samples.

use super::*;
use crate::proto::hex;
use ed25519_dalek::{Signer, SigningKey};

const PK: &str = "77ff84905a91936367c01360803104f92432fcd904a43511876df5cdf3e7e548";
const SIG1: &str = "305ac8aeb6c9c151fa120f120ea2cfb923564e11552d06a5d856091e5e853cff1260d3f39e4999684aa92eb73ffd136e6f4f3ecbfda0ce53a1608ecd7ae21f01";
const SIG2: &str = "6834284b6b24c3204eb2fea824d82f88883a3d95e8b4a21b8c0ded553d17d17ddf9a8a7104b1258f30bed3787e6cb896fca78c58f8e03b5f18f14951a87d9a08";
const V: &[u8] = b"12:Hello World!";

fn id(hex_id: &str) -> NodeId {
    NodeId(hex::decode::<20>(hex_id).expect("hex"))
}

#[test]
fn bep44_vectors() {
    let k = hex::decode::<32>(PK).expect("pk");
    let sig1 = hex::decode::<64>(SIG1).expect("sig");
    let sig2 = hex::decode::<64>(SIG2).expect("sig");
    assert_eq!(signed_bytes(b"", 1, V), b"3:seqi1e1:v12:Hello World!");
    assert_eq!(
        signed_bytes(b"foobar", 1, V),
        b"4:salt6:foobar3:seqi1e1:v12:Hello World!"
    );
    assert_eq!(
        mutable_target(&k, b""),
        id("4a533d47ec9c7d95b1ad75f576cffc641853b750")
    );
    assert_eq!(
        mutable_target(&k, b"foobar"),
        id("411eba73b6f087ca51a3795d9c8c938d365e32c1")
    );
    assert_eq!(
        immutable_target(V),
        id("e5f96f6f38320f0f33959cb4d3d656452117aadb")
    );
    assert!(verify(&k, &sig1, b"", 1, V));
    assert!(verify(&k, &sig2, b"foobar", 1, V));
    assert!(!verify(&k, &sig1, b"foobar", 1, V));
    assert!(!verify(&k, &sig1, b"", 2, V));
    assert!(!verify(&k, &sig1, b"", 1, b"12:Hello World?"));

    let mut s = Storage::new(Limits::default());
    let put = MutablePut {
        k,
        sig: sig2,
        seq: 1,
        cas: None,
        salt: b"foobar",
    };
    let target = s.put_mutable(&put, V, 0).expect("vector put");
    assert_eq!(target, id("411eba73b6f087ca51a3795d9c8c938d365e32c1"));
    let item = s.get(&target, 1).expect("stored");
    assert_eq!(item.v, V);
    assert_eq!(item.mutable.as_ref().map(|m| m.seq), Some(1));
    assert_eq!(s.put_immutable(V, 0), Ok(immutable_target(V)));
    assert_eq!(s.item_count(), 2);
}

struct Key(SigningKey);

impl Key {
    fn put<'a>(&self, salt: &'a [u8], seq: i64, cas: Option<i64>, v: &[u8]) -> MutablePut<'a> {
        let sig = self.0.sign(&signed_bytes(salt, seq, v)).to_bytes();
        MutablePut {
            k: self.0.verifying_key().to_bytes(),
            sig,
            seq,
            cas,
            salt,
        }
    }
}

#[test]
fn seq_never_goes_back_and_cas_is_checked() {
    let key = Key(SigningKey::from_bytes(&[42; 32]));
    let mut s = Storage::new(Limits::default());
    let t = s
        .put_mutable(&key.put(b"", 5, None, b"i5e"), b"i5e", 0)
        .expect("first");
    // cas is ignored when nothing is stored yet, checked afterwards.
    assert_eq!(
        s.put_mutable(&key.put(b"", 6, Some(4), b"i6e"), b"i6e", 1),
        Err(PutError::CasMismatch)
    );
    assert_eq!(
        s.put_mutable(&key.put(b"", 4, None, b"i4e"), b"i4e", 1),
        Err(PutError::SeqTooOld)
    );
    assert_eq!(PutError::SeqTooOld.code(), 302);
    assert_eq!(
        s.put_mutable(&key.put(b"", 5, None, b"i9e"), b"i9e", 1),
        Err(PutError::SeqTooOld),
        "same seq, another value"
    );
    assert_eq!(
        s.put_mutable(&key.put(b"", 5, None, b"i5e"), b"i5e", 1),
        Ok(t)
    );
    assert_eq!(
        s.put_mutable(&key.put(b"", 6, Some(5), b"i6e"), b"i6e", 2),
        Ok(t)
    );
    assert_eq!(s.get(&t, 3).map(|i| i.v.clone()), Some(b"i6e".to_vec()));
    // A signature over other bytes, or from another key, is refused.
    let mut forged = key.put(b"", 7, None, b"i7e");
    assert_eq!(
        s.put_mutable(&forged, b"i8e", 3),
        Err(PutError::BadSignature)
    );
    forged.k = Key(SigningKey::from_bytes(&[1; 32]))
        .0
        .verifying_key()
        .to_bytes();
    assert_eq!(
        s.put_mutable(&forged, b"i7e", 3),
        Err(PutError::BadSignature)
    );
    assert_eq!(PutError::BadSignature.code(), 206);
    // Salts make separate items under one key.
    let salted = s
        .put_mutable(&key.put(b"x", 1, None, b"i1e"), b"i1e", 3)
        .expect("salted");
    assert_ne!(salted, t);
    let long_salt = [b's'; 65];
    assert_eq!(
        s.put_mutable(&key.put(&long_salt, 1, None, b"i1e"), b"i1e", 3),
        Err(PutError::SaltTooBig)
    );
}

#[test]
fn item_values_caps_and_expiry() {
    let mut s = Storage::new(Limits {
        max_items: 2,
        ..Limits::default()
    });
    let big = format!("1000:{}", "a".repeat(1000));
    assert_eq!(
        s.put_immutable(big.as_bytes(), 0),
        Err(PutError::ValueTooBig)
    );
    assert_eq!(PutError::ValueTooBig.code(), 205);
    assert_eq!(s.put_immutable(b"i1", 0), Err(PutError::InvalidValue));
    assert_eq!(s.put_immutable(b"1:a1:b", 0), Err(PutError::InvalidValue));
    let a = s.put_immutable(b"1:a", 0).expect("a");
    s.put_immutable(b"1:b", 10).expect("b");
    assert_eq!(s.put_immutable(b"1:c", 20), Err(PutError::Full));
    assert_eq!(
        s.put_immutable(b"1:a", 20),
        Ok(a),
        "a refresh needs no room"
    );
    assert!(s.get(&a, 20 + ITEM_TTL_SECS - 1).is_some());
    assert!(s.get(&a, 20 + ITEM_TTL_SECS).is_none());
    assert!(
        s.put_immutable(b"1:c", 10 + ITEM_TTL_SECS).is_ok(),
        "b expired"
    );
    s.expire(30 + ITEM_TTL_SECS);
    assert_eq!(s.item_count(), 1);
}

fn peer(i: u32) -> SocketAddr {
    SocketAddr::from((i.to_be_bytes(), 6881))
}

#[test]
fn peers_expire_between_30_and_45_minutes() {
    let mut s = Storage::new(Limits::default());
    let ih = NodeId([1; 20]);
    for i in 0..100u32 {
        s.announce(ih, peer(i + 1), 0, u64::from(i) * 7919)
            .expect("room");
    }
    assert_eq!(s.peers(&ih, PEER_TTL_SECS - 1, false, 200, 0).len(), 100);
    let late = s.peers(&ih, PEER_TTL_SECS + 600, false, 200, 0).len();
    assert!(late > 0 && late < 100, "{late}");
    assert!(s
        .peers(&ih, PEER_TTL_SECS + PEER_TTL_JITTER_SECS + 1, false, 200, 0)
        .is_empty());
    // A re-announce refreshes without duplicating.
    s.announce(ih, peer(1), 3000, 0).expect("room");
    assert_eq!(
        s.peers(&ih, 3000 + PEER_TTL_SECS - 1, false, 200, 0),
        vec![peer(1)]
    );
    s.expire(3000 + PEER_TTL_SECS - 1);
    assert_eq!(s.peer_count(), 1);
    s.expire(3000 + PEER_TTL_SECS);
    assert_eq!(s.info_hash_count(), 0);
}

#[test]
fn peer_and_info_hash_caps() {
    let mut s = Storage::new(Limits {
        max_info_hashes: 3,
        max_peers_per_hash: 4,
        max_items: 1,
    });
    let ih = NodeId([1; 20]);
    for i in 0..10u32 {
        s.announce(ih, peer(i + 1), u64::from(i), 0).expect("room");
    }
    let mut got = s.peers(&ih, 10, false, 100, 0);
    got.sort();
    assert_eq!(
        got,
        (7..=10).map(peer).collect::<Vec<_>>(),
        "the soonest expiring left"
    );
    s.announce(NodeId([2; 20]), peer(1), 0, 0).expect("second");
    s.announce(NodeId([3; 20]), peer(1), 0, 0).expect("third");
    assert_eq!(s.announce(NodeId([4; 20]), peer(1), 1, 0), Err(Full));
    assert!(
        s.announce(NodeId([4; 20]), peer(1), PEER_TTL_SECS, 0)
            .is_ok(),
        "after expiry"
    );
    assert!(s.info_hash_count() <= 3);
    assert_eq!(s.peers(&ih, 10, false, 2, 1).len(), 2);
    let mut none = Storage::new(Limits {
        max_peers_per_hash: 0,
        ..Limits::default()
    });
    assert_eq!(none.announce(ih, peer(1), 0, 0), Err(Full));
    assert_eq!(none.info_hash_count(), 0);
}

#[test]
fn families_and_samples() {
    let mut s = Storage::new(Limits::default());
    let ih = NodeId([9; 20]);
    let v6: SocketAddr = "[2001:db8::1]:51413".parse().expect("addr");
    let mapped: SocketAddr = "[::ffff:192.0.2.9]:6881".parse().expect("addr");
    s.announce(ih, v6, 0, 0).expect("room");
    s.announce(ih, mapped, 0, 0).expect("room");
    assert_eq!(s.peers(&ih, 1, true, 10, 0), vec![v6]);
    assert_eq!(
        s.peers(&ih, 1, false, 10, 0),
        vec!["192.0.2.9:6881".parse::<SocketAddr>().expect("addr")]
    );
    for i in 0..30u8 {
        s.announce(NodeId([i; 20]), peer(1), 0, 0).expect("room");
    }
    let sample = s.sample(20, 7);
    assert_eq!(sample.len(), 20);
    let mut uniq = sample.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), 20);
    assert_eq!(s.sample(100, 3).len(), 30);
    assert!(Storage::default().sample(5, 1).is_empty());
}
