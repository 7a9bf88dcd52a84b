//! Tests of the initiating MSE handshake: against our own [`Receiver`] (RC4 and plaintext,
//! the peer's bytes split at every boundary), and against a hand-written receiver that
//! misbehaves (wrong torrent, garbage, no sync, a method we did not offer, long PadD).

use super::super::{Receiver, CRYPTO_PLAIN, CRYPTO_RC4};
use super::*;

const IH: [u8; 20] = [3; 20];
const XA: [u8; 20] = [9; 20];

fn initiator(provide: u32) -> Initiator {
    Initiator::new(XA, IH, vec![0xee; 7], provide, b"our handshake".to_vec())
}

/// Runs a whole handshake against our receiver; returns both results and every byte the
/// receiver sent (its part of the handshake, then `after` sent through its payload stream).
fn against_receiver(provide: u32, after: &[u8]) -> (Done, Done, Vec<u8>) {
    let lookup = |h: &[u8; 20]| (*h == req2_hash(&IH)).then_some(IH);
    let mut a = initiator(provide);
    let mut b = Receiver::new([4u8; 20], vec![1, 2, 3, 4, 5]);
    let mut to_b = a.start();
    assert_eq!(to_b.len(), 96 + 7);
    let mut to_a = Vec::new();
    assert!(b.receive(&to_b, &mut to_a, &lookup).unwrap().is_none());
    let mut sent_by_b = to_a.clone();
    to_b.clear();
    assert!(a.receive(&to_a, &mut to_b).unwrap().is_none());
    to_a.clear();
    let mut done_b = b
        .receive(&to_b, &mut to_a, &lookup)
        .unwrap()
        .expect("B done");
    let mut tail = after.to_vec();
    if let Crypto::Rc4 { send, .. } = &mut done_b.crypto {
        send.apply(&mut tail);
    }
    to_a.extend_from_slice(&tail);
    sent_by_b.extend_from_slice(&to_a);
    let mut nothing = Vec::new();
    let done_a = a.receive(&to_a, &mut nothing).unwrap().expect("A done");
    assert!(nothing.is_empty(), "nothing more to send once done");
    (done_a, done_b, sent_by_b)
}

#[test]
fn handshakes_with_our_receiver_in_rc4_and_plaintext() {
    for (provide, want) in [
        (CRYPTO_RC4, CRYPTO_RC4),
        (CRYPTO_RC4 | CRYPTO_PLAIN, CRYPTO_PLAIN),
        (CRYPTO_PLAIN, CRYPTO_PLAIN),
    ] {
        let (mut a, mut b, _) = against_receiver(provide, b"their handshake");
        assert_eq!(a.info_hash, IH);
        assert_eq!(b.payload, b"our handshake", "IA reaches the receiver");
        assert_eq!(
            a.payload, b"their handshake",
            "B's payload comes out decrypted"
        );
        // The payload streams work both ways.
        let mut ab = b"piece data from A".to_vec();
        let mut ba = b"piece data from B".to_vec();
        match (&mut a.crypto, &mut b.crypto) {
            (Crypto::Rc4 { send: sa, recv: ra }, Crypto::Rc4 { send: sb, recv: rb }) => {
                assert_eq!(want, CRYPTO_RC4);
                sa.apply(&mut ab);
                assert_ne!(&ab, b"piece data from A");
                rb.apply(&mut ab);
                sb.apply(&mut ba);
                ra.apply(&mut ba);
            }
            (Crypto::Plain, Crypto::Plain) => assert_eq!(want, CRYPTO_PLAIN),
            _ => panic!("the two sides disagree"),
        }
        assert_eq!(ab, b"piece data from A");
        assert_eq!(ba, b"piece data from B");
    }
}

#[test]
fn the_peers_bytes_may_arrive_split_anywhere() {
    for provide in [CRYPTO_RC4, CRYPTO_RC4 | CRYPTO_PLAIN] {
        let (whole, _, input) = against_receiver(provide, b"their handshake");
        let mut reference = initiator(provide);
        reference.start();
        let mut want_out = Vec::new();
        reference.receive(&input, &mut want_out).unwrap().unwrap();
        let check = |chunks: &mut dyn Iterator<Item = &[u8]>| {
            let mut a = initiator(provide);
            a.start();
            let mut out = Vec::new();
            let mut done: Option<Done> = None;
            let mut after = Vec::new();
            for c in chunks {
                match &done {
                    // Past the handshake the stream is the caller's to decrypt.
                    Some(_) => after.extend_from_slice(c),
                    None => done = a.receive(c, &mut out).unwrap(),
                }
            }
            let mut done = done.expect("done at the end");
            if let Crypto::Rc4 { recv, .. } = &mut done.crypto {
                recv.apply(&mut after);
            }
            done.payload.extend_from_slice(&after);
            assert_eq!(done.payload, whole.payload);
            assert_eq!(out, want_out);
        };
        for k in 0..=input.len() {
            check(&mut [&input[..k], &input[k..]].into_iter());
        }
        check(&mut input.chunks(1));
    }
}

/// What a receiver would send: Yb, PadB, then ENCRYPT(VC, select, len(PadD), PadD) under
/// keyB for `ih`, then `payload` (encrypted when `select` is RC4).
fn fake_receiver(ya: &[u8], ih: &[u8; 20], pad_b: usize, select: u32, pad_d: usize) -> Vec<u8> {
    let xb = [0x55u8; 20];
    let mut out = public_key(&xb).to_vec();
    out.extend(std::iter::repeat_n(0xab, pad_b));
    let s = shared_secret(ya[..96].try_into().unwrap(), &xb);
    let mut enc = Rc4::new(&hash(&[b"keyB", &s, ih]));
    let mut tail = vec![0u8; 8];
    tail.extend_from_slice(&select.to_be_bytes());
    tail.extend_from_slice(&(pad_d as u16).to_be_bytes());
    tail.extend(std::iter::repeat_n(0, pad_d));
    let mut payload = b"payload".to_vec();
    enc.apply(&mut tail);
    if select == CRYPTO_RC4 {
        enc.apply(&mut payload);
    }
    out.extend_from_slice(&tail);
    out.extend_from_slice(&payload);
    out
}

fn run(provide: u32, input_of: impl Fn(&[u8]) -> Vec<u8>) -> Result<Option<Done>, MseError> {
    let mut a = initiator(provide);
    let ya = a.start();
    let mut out = Vec::new();
    a.receive(&input_of(&ya), &mut out)
}

#[test]
fn padding_up_to_the_limits_is_accepted() {
    let done = run(CRYPTO_RC4, |ya| {
        fake_receiver(ya, &IH, 512, CRYPTO_RC4, 512)
    })
    .unwrap()
    .unwrap();
    assert_eq!(done.payload, b"payload");
    assert!(matches!(done.crypto, Crypto::Rc4 { .. }));
    let done = run(CRYPTO_RC4 | CRYPTO_PLAIN, |ya| {
        fake_receiver(ya, &IH, 0, CRYPTO_PLAIN, 0)
    })
    .unwrap()
    .unwrap();
    assert_eq!(done.payload, b"payload", "plaintext payload is left alone");
}

#[test]
fn a_peer_that_breaks_the_rules_is_refused() {
    let err = |provide, input_of: &dyn Fn(&[u8]) -> Vec<u8>| match run(provide, input_of) {
        Err(MseError(why)) => why,
        Ok(r) => panic!("accepted: done={}", r.is_some()),
    };
    assert!(err(CRYPTO_RC4, &|ya| fake_receiver(ya, &IH, 513, CRYPTO_RC4, 0)).contains("616"));
    assert!(
        err(CRYPTO_RC4, &|ya| fake_receiver(ya, &IH, 0, CRYPTO_PLAIN, 0)).contains("did not offer")
    );
    assert!(err(CRYPTO_RC4, &|ya| fake_receiver(ya, &IH, 0, 3, 0)).contains("single"));
    assert!(err(CRYPTO_RC4, &|ya| fake_receiver(ya, &IH, 0, 0, 0)).contains("single"));
    assert!(err(CRYPTO_RC4, &|ya| fake_receiver(ya, &IH, 0, CRYPTO_RC4, 513)).contains("512"));
    // Keys derived from another torrent: VC never matches, given up after 616 bytes.
    assert!(err(CRYPTO_RC4, &|ya| {
        let mut v = fake_receiver(ya, &[4; 20], 0, CRYPTO_RC4, 0);
        v.resize(SYNC_LIMIT, 0);
        v
    })
    .contains("616"));
    assert!(err(0, &|_| vec![0; 96]).contains("no method"));
    let mut idle = initiator(CRYPTO_RC4);
    assert_eq!(
        idle.receive(&[0; 10], &mut Vec::new()).err().unwrap().0,
        "receive before start"
    );
}

#[test]
fn our_receiver_refuses_a_torrent_it_does_not_serve() {
    let lookup = |h: &[u8; 20]| (*h == req2_hash(&[8; 20])).then_some([8; 20]);
    let mut a = initiator(CRYPTO_RC4);
    let mut b = Receiver::new([4u8; 20], vec![]);
    let mut to_a = Vec::new();
    b.receive(&a.start(), &mut to_a, &lookup).unwrap();
    let mut to_b = Vec::new();
    assert!(a.receive(&to_a, &mut to_b).unwrap().is_none());
    assert_eq!(
        b.receive(&to_b, &mut Vec::new(), &lookup).err(),
        Some(MseError("unknown torrent"))
    );
}

#[test]
fn a_peer_that_never_syncs_is_given_up_on_after_616_bytes() {
    // Yb then zeros, one byte at a time: waiting up to byte 615, refused at byte 616.
    let mut garbage = crate::engine::Rng::new(77);
    let mut a = initiator(CRYPTO_RC4);
    a.start();
    let mut out = Vec::new();
    for i in 1..SYNC_LIMIT {
        let b = if i <= 96 { garbage.next_u64() as u8 } else { 0 };
        assert!(a.receive(&[b], &mut out).unwrap().is_none(), "byte {i}");
    }
    assert_eq!(out.len(), 20 + 20 + 16 + 13, "step 3 went out after Yb");
    assert!(a.receive(&[0], &mut out).is_err());
    assert!(a.receive(&[0], &mut out).is_err(), "stays closed");
    // Garbage in one big read is refused too, without panicking.
    let mut a = initiator(CRYPTO_RC4);
    a.start();
    let junk: Vec<u8> = (0..5000).map(|_| garbage.next_u64() as u8).collect();
    assert!(a.receive(&junk, &mut Vec::new()).is_err());
}
