//! Message Stream Encryption (the obfuscated handshake libtorrent, qBittorrent and Transmission
//! try first): 768-bit Diffie-Hellman, RC4 streams keyed from the shared secret and the
//! info-hash, and both sides' handshakes as sans-IO state machines: [`Receiver`] (we were
//! dialed) here, [`Initiator`] (we dial) in `mse/initiator.rs`.
//!
//! The receiver selects plaintext for the payload whenever the peer offers it (the handshake
//! is still obfuscated), RC4 otherwise. Randomness (our private key, padding) comes from the
//! caller, so everything here is deterministic and testable.

use sha1::{Digest, Sha1};

mod initiator;
pub use initiator::{Initiator, SYNC_LIMIT};

const LIMBS: usize = 12;
type Limbs = [u64; LIMBS];

/// The MSE prime (768 bits), big-endian; the generator is 2.
const PRIME: [u8; 96] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xC9, 0x0F, 0xDA, 0xA2, 0x21, 0x68, 0xC2, 0x34,
    0xC4, 0xC6, 0x62, 0x8B, 0x80, 0xDC, 0x1C, 0xD1, 0x29, 0x02, 0x4E, 0x08, 0x8A, 0x67, 0xCC, 0x74,
    0x02, 0x0B, 0xBE, 0xA6, 0x3B, 0x13, 0x9B, 0x22, 0x51, 0x4A, 0x08, 0x79, 0x8E, 0x34, 0x04, 0xDD,
    0xEF, 0x95, 0x19, 0xB3, 0xCD, 0x3A, 0x43, 0x1B, 0x30, 0x2B, 0x0A, 0x6D, 0xF2, 0x5F, 0x14, 0x37,
    0x4F, 0xE1, 0x35, 0x6D, 0x6D, 0x51, 0xC2, 0x45, 0xE4, 0x85, 0xB5, 0x76, 0x62, 0x5E, 0x7E, 0xC6,
    0xF4, 0x4C, 0x42, 0xE9, 0xA6, 0x3A, 0x36, 0x21, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, 0x05, 0x63,
];
/// Longest padding either side may send.
pub const MAX_PAD: usize = 512;

/// The first 20 bytes of a plaintext handshake: length 19 and "BitTorrent protocol".
const PLAIN_PREFIX: &[u8; 20] = b"\x13BitTorrent protocol";

/// Tells a plaintext handshake from MSE by the first 20 bytes (as libtorrent does): `Some(true)`
/// plaintext, `Some(false)` MSE (as soon as a byte differs), `None` to wait for more. The first
/// byte alone would take the 1 in 256 MSE public keys that start with 0x13 for plaintext.
pub fn is_plaintext(prefix: &[u8]) -> Option<bool> {
    let n = prefix.len().min(PLAIN_PREFIX.len());
    if prefix[..n] != PLAIN_PREFIX[..n] {
        Some(false)
    } else if n == PLAIN_PREFIX.len() {
        Some(true)
    } else {
        None
    }
}
pub const KEY_LEN: usize = 96;
pub const CRYPTO_PLAIN: u32 = 1;
pub const CRYPTO_RC4: u32 = 2;

fn from_be(bytes: &[u8; 96]) -> Limbs {
    let mut l = [0u64; LIMBS];
    for (i, limb) in l.iter_mut().enumerate() {
        let end = 96 - 8 * i;
        *limb = u64::from_be_bytes(bytes[end - 8..end].try_into().expect("8 bytes"));
    }
    l
}

fn to_be(l: &Limbs) -> [u8; 96] {
    let mut out = [0u8; 96];
    for (i, limb) in l.iter().enumerate() {
        let end = 96 - 8 * i;
        out[end - 8..end].copy_from_slice(&limb.to_be_bytes());
    }
    out
}

fn geq(a: &Limbs, b: &Limbs) -> bool {
    for i in (0..LIMBS).rev() {
        if a[i] != b[i] {
            return a[i] > b[i];
        }
    }
    true
}

fn sub_assign(a: &mut Limbs, b: &Limbs) {
    let mut borrow = 0u64;
    for i in 0..LIMBS {
        let (d, b1) = a[i].overflowing_sub(b[i]);
        let (d, b2) = d.overflowing_sub(borrow);
        a[i] = d;
        borrow = u64::from(b1 | b2);
    }
}

/// Montgomery arithmetic modulo the MSE prime.
struct Mont {
    p: Limbs,
    n0: u64,
    r1: Limbs,
    r2: Limbs,
}

impl Mont {
    fn new() -> Mont {
        let p = from_be(&PRIME);
        // p[0]^-1 mod 2^64 by Newton's iteration; n0 = -p^-1.
        let mut inv = 1u64;
        for _ in 0..7 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(p[0].wrapping_mul(inv)));
        }
        let double = |a: &mut Limbs| {
            let carry = a[LIMBS - 1] >> 63;
            for i in (1..LIMBS).rev() {
                a[i] = (a[i] << 1) | (a[i - 1] >> 63);
            }
            a[0] <<= 1;
            if carry == 1 || geq(a, &p) {
                sub_assign(a, &p);
            }
        };
        let mut r = [0u64; LIMBS];
        r[0] = 1;
        for _ in 0..768 {
            double(&mut r);
        }
        let r1 = r;
        for _ in 0..768 {
            double(&mut r);
        }
        Mont {
            p,
            n0: inv.wrapping_neg(),
            r1,
            r2: r,
        }
    }

    fn mul(&self, a: &Limbs, b: &Limbs) -> Limbs {
        let p = &self.p;
        let mut t = [0u64; LIMBS + 2];
        for &bi in b.iter() {
            let mut c: u128 = 0;
            for j in 0..LIMBS {
                let s = t[j] as u128 + (a[j] as u128) * (bi as u128) + c;
                t[j] = s as u64;
                c = s >> 64;
            }
            let s = t[LIMBS] as u128 + c;
            t[LIMBS] = s as u64;
            t[LIMBS + 1] = (s >> 64) as u64;
            let m = t[0].wrapping_mul(self.n0);
            let s = t[0] as u128 + (m as u128) * (p[0] as u128);
            let mut c = s >> 64;
            for j in 1..LIMBS {
                let s = t[j] as u128 + (m as u128) * (p[j] as u128) + c;
                t[j - 1] = s as u64;
                c = s >> 64;
            }
            let s = t[LIMBS] as u128 + c;
            t[LIMBS - 1] = s as u64;
            let s2 = t[LIMBS + 1] as u128 + (s >> 64);
            t[LIMBS] = s2 as u64;
            t[LIMBS + 1] = 0;
        }
        let mut r: Limbs = t[..LIMBS].try_into().expect("12 limbs");
        if t[LIMBS] != 0 || geq(&r, p) {
            sub_assign(&mut r, p);
        }
        r
    }

    /// base^exp mod p, `exp` big-endian.
    fn pow(&self, base: &Limbs, exp: &[u8]) -> Limbs {
        let mut b = *base;
        if geq(&b, &self.p) {
            sub_assign(&mut b, &self.p);
        }
        let bm = self.mul(&b, &self.r2);
        let mut acc = self.r1;
        for byte in exp {
            for bit in (0..8).rev() {
                acc = self.mul(&acc, &acc);
                if byte >> bit & 1 == 1 {
                    acc = self.mul(&acc, &bm);
                }
            }
        }
        let mut one = [0u64; LIMBS];
        one[0] = 1;
        self.mul(&acc, &one)
    }
}

/// The Montgomery constants, computed once (1,536 modular doublings).
fn mont() -> &'static Mont {
    static MONT: std::sync::OnceLock<Mont> = std::sync::OnceLock::new();
    MONT.get_or_init(Mont::new)
}

/// Our public key for private key `x`: 2^x mod p.
pub fn public_key(x: &[u8]) -> [u8; KEY_LEN] {
    let mut g = [0u64; LIMBS];
    g[0] = 2;
    to_be(&mont().pow(&g, x))
}

/// The shared secret S = y^x mod p.
pub fn shared_secret(y: &[u8; KEY_LEN], x: &[u8]) -> [u8; KEY_LEN] {
    to_be(&mont().pow(&from_be(y), x))
}

/// RC4 with the first 1024 bytes of keystream discarded (as MSE requires).
#[derive(Clone)]
pub struct Rc4 {
    s: [u8; 256],
    i: u8,
    j: u8,
}

impl Rc4 {
    pub fn new(key: &[u8]) -> Rc4 {
        let mut s = [0u8; 256];
        for (i, v) in s.iter_mut().enumerate() {
            *v = i as u8;
        }
        let mut j = 0u8;
        for i in 0..256 {
            j = j.wrapping_add(s[i]).wrapping_add(key[i % key.len()]);
            s.swap(i, j as usize);
        }
        let mut rc4 = Rc4 { s, i: 0, j: 0 };
        rc4.apply(&mut [0u8; 1024]);
        rc4
    }

    /// Encrypts or decrypts in place.
    pub fn apply(&mut self, data: &mut [u8]) {
        for b in data {
            self.i = self.i.wrapping_add(1);
            self.j = self.j.wrapping_add(self.s[self.i as usize]);
            self.s.swap(self.i as usize, self.j as usize);
            let k =
                self.s[(self.s[self.i as usize].wrapping_add(self.s[self.j as usize])) as usize];
            *b ^= k;
        }
    }
}

fn hash(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// HASH('req2', info_hash): how an initiator names its torrent without revealing it.
pub fn req2_hash(info_hash: &[u8; 20]) -> [u8; 20] {
    hash(&[b"req2", info_hash])
}

/// The payload method agreed on.
pub enum Crypto {
    Plain,
    /// (ours to encrypt what we send, theirs to decrypt what we receive)
    Rc4 {
        send: Box<Rc4>,
        recv: Box<Rc4>,
    },
}

/// A finished handshake.
pub struct Done {
    pub info_hash: [u8; 20],
    pub crypto: Crypto,
    /// Payload that followed the handshake, decrypted: usually the BitTorrent handshake.
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MseError(pub &'static str);

impl std::fmt::Display for MseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "encrypted handshake: {}", self.0)
    }
}

enum State {
    PeerKey,
    Sync {
        secret: [u8; KEY_LEN],
    },
    Header {
        secret: [u8; KEY_LEN],
        info_hash: [u8; 20],
        recv: Box<Rc4>,
    },
    Closed,
}

/// The receiving side (we were dialed) of the MSE handshake.
pub struct Receiver {
    state: State,
    private: [u8; 20],
    pad: Vec<u8>,
    buf: Vec<u8>,
}

impl Receiver {
    /// `private`: 160 random bits; `pad`: up to 512 random bytes to send after our key.
    pub fn new(private: [u8; 20], mut pad: Vec<u8>) -> Receiver {
        pad.truncate(MAX_PAD);
        Receiver {
            state: State::PeerKey,
            private,
            pad,
            buf: Vec::new(),
        }
    }

    /// Feeds received bytes; appends what to send to `out`. Returns the result once the
    /// handshake is complete. `torrent` maps HASH('req2', info-hash) to a torrent we serve.
    pub fn receive(
        &mut self,
        data: &[u8],
        out: &mut Vec<u8>,
        torrent: &dyn Fn(&[u8; 20]) -> Option<[u8; 20]>,
    ) -> Result<Option<Done>, MseError> {
        self.buf.extend_from_slice(data);
        loop {
            match std::mem::replace(&mut self.state, State::Closed) {
                State::Closed => return Err(MseError("closed")),
                State::PeerKey => {
                    if self.buf.len() < KEY_LEN {
                        self.state = State::PeerKey;
                        return Ok(None);
                    }
                    let y: [u8; KEY_LEN] = self.buf[..KEY_LEN].try_into().expect("96 bytes");
                    self.buf.drain(..KEY_LEN);
                    out.extend_from_slice(&public_key(&self.private));
                    out.extend_from_slice(&self.pad);
                    self.state = State::Sync {
                        secret: shared_secret(&y, &self.private),
                    };
                }
                State::Sync { secret } => {
                    let req1 = hash(&[b"req1", &secret]);
                    let Some(at) = self.buf.windows(20).position(|w| w == req1) else {
                        if self.buf.len() > MAX_PAD + 20 {
                            return Err(MseError("no synchronisation hash within 532 bytes"));
                        }
                        self.state = State::Sync { secret };
                        return Ok(None);
                    };
                    if self.buf.len() < at + 40 {
                        self.state = State::Sync { secret };
                        return Ok(None);
                    }
                    let req3 = hash(&[b"req3", &secret]);
                    let mut req2 = [0u8; 20];
                    for (i, b) in req2.iter_mut().enumerate() {
                        *b = self.buf[at + 20 + i] ^ req3[i];
                    }
                    let info_hash = torrent(&req2).ok_or(MseError("unknown torrent"))?;
                    self.buf.drain(..at + 40);
                    let recv = Box::new(Rc4::new(&hash(&[b"keyA", &secret, &info_hash])));
                    self.state = State::Header {
                        secret,
                        info_hash,
                        recv,
                    };
                }
                State::Header {
                    secret,
                    info_hash,
                    recv,
                } => {
                    // VC (8), crypto_provide (4), len(PadC) (2), PadC, len(IA) (2), IA.
                    let mut probe = (*recv).clone();
                    let mut head = self.buf.get(..14).map(<[u8]>::to_vec).unwrap_or_default();
                    if head.len() < 14 {
                        self.state = State::Header {
                            secret,
                            info_hash,
                            recv,
                        };
                        return Ok(None);
                    }
                    probe.apply(&mut head);
                    if head[..8] != [0u8; 8] {
                        return Err(MseError("bad verification constant"));
                    }
                    let provide = u32::from_be_bytes(head[8..12].try_into().expect("4 bytes"));
                    let pad_c = u16::from_be_bytes([head[12], head[13]]) as usize;
                    if pad_c > MAX_PAD {
                        return Err(MseError("padding over 512 bytes"));
                    }
                    if self.buf.len() < 14 + pad_c + 2 {
                        self.state = State::Header {
                            secret,
                            info_hash,
                            recv,
                        };
                        return Ok(None);
                    }
                    let mut rest = self.buf[14..14 + pad_c + 2].to_vec();
                    probe.apply(&mut rest);
                    let ia_len = u16::from_be_bytes([rest[pad_c], rest[pad_c + 1]]) as usize;
                    let header = 14 + pad_c + 2;
                    if self.buf.len() < header + ia_len {
                        self.state = State::Header {
                            secret,
                            info_hash,
                            recv,
                        };
                        return Ok(None);
                    }
                    let mut recv = Box::new(probe);
                    let mut payload = self.buf[header..header + ia_len].to_vec();
                    recv.apply(&mut payload);
                    let select = if provide & CRYPTO_PLAIN != 0 {
                        CRYPTO_PLAIN
                    } else if provide & CRYPTO_RC4 != 0 {
                        CRYPTO_RC4
                    } else {
                        return Err(MseError("no method we support offered"));
                    };
                    let mut send = Box::new(Rc4::new(&hash(&[b"keyB", &secret, &info_hash])));
                    let mut reply = [0u8; 14];
                    reply[8..12].copy_from_slice(&select.to_be_bytes());
                    send.apply(&mut reply);
                    out.extend_from_slice(&reply);
                    let mut tail = self.buf[header + ia_len..].to_vec();
                    self.buf = Vec::new();
                    let crypto = if select == CRYPTO_RC4 {
                        recv.apply(&mut tail);
                        Crypto::Rc4 { send, recv }
                    } else {
                        Crypto::Plain
                    };
                    payload.extend_from_slice(&tail);
                    return Ok(Some(Done {
                        info_hash,
                        crypto,
                        payload,
                    }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diffie_hellman_agrees() {
        let a = [7u8; 20];
        let b = [0xa5u8; 20];
        let ya = public_key(&a);
        let yb = public_key(&b);
        assert_ne!(ya, yb);
        assert_eq!(shared_secret(&yb, &a), shared_secret(&ya, &b));
        // 2^1 = 2 and 2^0 = 1: the arithmetic is exact at the edges.
        let mut two = [0u8; 96];
        two[95] = 2;
        assert_eq!(public_key(&[1]), two);
        let mut one = [0u8; 96];
        one[95] = 1;
        assert_eq!(public_key(&[0]), one);
        // 2^768 mod p = 2^768 - p (p is just under 2^768).
        let mut expect = [0u8; 96];
        let mut borrow = 0i32;
        for i in (0..96).rev() {
            let v = -(PRIME[i] as i32) - borrow;
            expect[i] = v.rem_euclid(256) as u8;
            borrow = i32::from(v < 0);
        }
        assert_eq!(public_key(&[3, 0]), expect);
    }

    #[test]
    fn rc4_known_answer() {
        // Plain RC4("Key", "Plaintext") = BBF316E8D940AF0AD3; check through a stream that
        // discarded 1024 bytes by comparing two instances instead.
        let mut a = Rc4::new(b"Key");
        let mut b = Rc4::new(b"Key");
        let mut data = *b"Plaintext";
        a.apply(&mut data);
        assert_ne!(&data, b"Plaintext");
        b.apply(&mut data);
        assert_eq!(&data, b"Plaintext");
    }

    /// The initiator's side, as a test would write it, against our receiver.
    #[test]
    fn a_full_handshake_with_plaintext_and_rc4() {
        for provide in [CRYPTO_PLAIN | CRYPTO_RC4, CRYPTO_RC4] {
            let ih = [3u8; 20];
            let xa = [9u8; 20];
            let mut rx = Receiver::new([4u8; 20], vec![1, 2, 3]);
            let lookup = |h: &[u8; 20]| (*h == req2_hash(&ih)).then_some(ih);
            let mut out = Vec::new();
            let mut first = public_key(&xa).to_vec();
            first.extend_from_slice(&[0xee; 10]); // PadA
            assert!(rx.receive(&first, &mut out, &lookup).unwrap().is_none());
            let yb: [u8; 96] = out[..96].try_into().unwrap();
            assert_eq!(&out[96..], &[1, 2, 3]);
            let s = shared_secret(&yb, &xa);
            let mut msg = hash(&[b"req1", &s]).to_vec();
            let req3 = hash(&[b"req3", &s]);
            msg.extend(req2_hash(&ih).iter().zip(req3).map(|(a, b)| a ^ b));
            let mut enc = Rc4::new(&hash(&[b"keyA", &s, &ih]));
            let mut tail = vec![0u8; 8];
            tail.extend_from_slice(&provide.to_be_bytes());
            tail.extend_from_slice(&2u16.to_be_bytes());
            tail.extend_from_slice(&[0, 0]);
            tail.extend_from_slice(&5u16.to_be_bytes());
            tail.extend_from_slice(b"hello");
            enc.apply(&mut tail);
            msg.extend_from_slice(&tail);
            let mut more = b" world".to_vec();
            if provide == CRYPTO_RC4 {
                enc.apply(&mut more);
            }
            msg.extend_from_slice(&more);
            out.clear();
            // Byte by byte, to exercise every partial state; what follows the handshake is
            // the caller's to decrypt.
            let mut done = None;
            let mut after = Vec::new();
            for b in &msg {
                if done.is_some() {
                    after.push(*b);
                } else if let Some(d) = rx.receive(&[*b], &mut out, &lookup).unwrap() {
                    done = Some(d);
                }
            }
            let mut done = done.expect("handshake completes");
            assert_eq!(done.info_hash, ih);
            if let Crypto::Rc4 { recv, .. } = &mut done.crypto {
                recv.apply(&mut after);
            }
            done.payload.extend_from_slice(&after);
            assert_eq!(done.payload, b"hello world");
            let mut dec = Rc4::new(&hash(&[b"keyB", &s, &ih]));
            let mut reply = out.clone();
            dec.apply(&mut reply);
            assert_eq!(&reply[..8], &[0u8; 8]);
            let select = u32::from_be_bytes(reply[8..12].try_into().unwrap());
            match (provide, done.crypto) {
                (3, Crypto::Plain) => assert_eq!(select, CRYPTO_PLAIN),
                (2, Crypto::Rc4 { .. }) => assert_eq!(select, CRYPTO_RC4),
                _ => panic!("wrong method"),
            }
        }
    }

    #[test]
    fn bad_handshakes_fail() {
        let lookup = |_: &[u8; 20]| None;
        let mut rx = Receiver::new([4u8; 20], vec![]);
        let mut out = Vec::new();
        assert!(rx.receive(&[0u8; 96], &mut out, &lookup).unwrap().is_none());
        assert!(
            rx.receive(&[0u8; 600], &mut out, &lookup).is_err(),
            "no sync"
        );
    }

    #[test]
    fn plaintext_is_told_from_mse_by_twenty_bytes() {
        assert_eq!(is_plaintext(b"\x13BitTorrent protocol\0\0"), Some(true));
        assert_eq!(is_plaintext(b"\x13BitTor"), None, "wait for more");
        // An MSE public key that happens to start with 0x13.
        assert_eq!(is_plaintext(b"\x13\x9a\x01"), Some(false));
        assert_eq!(is_plaintext(b"\x42"), Some(false));
    }
}
