//! The initiating side (we dial) of the MSE handshake, sans-IO: [`Initiator::start`] gives
//! Ya + PadA, [`Initiator::receive`] takes what the peer sends and returns the bytes to send
//! and, once the handshake is done, the agreed method with both RC4 states.
//!
//! ```text
//! start ──Ya,PadA──> PeerKey ──Yb (96 bytes)──> we send HASH('req1',S), HASH('req2',SKEY)
//!   xor HASH('req3',S), ENCRYPT(VC, crypto_provide, len(PadC)=0, len(IA), IA)
//!   ──> Sync (find ENCRYPT(VC) within PadB: 616 bytes from the start at most)
//!   ──> Select (crypto_select, len(PadD), PadD) ──> Done (the rest is payload)
//! ```
//!
//! Our BitTorrent handshake travels as IA, so the peer's handshake usually arrives with the
//! end of the MSE handshake and comes out in [`Done::payload`]. The private key and PadA come
//! from the caller; nothing here reads a clock or a random source.

use super::{
    hash, public_key, req2_hash, shared_secret, Crypto, Done, MseError, Rc4, CRYPTO_PLAIN,
    CRYPTO_RC4, KEY_LEN, MAX_PAD,
};

/// ENCRYPT(VC) must end within Yb (96) + PadB (512) + VC (8) bytes of the peer's first byte.
pub const SYNC_LIMIT: usize = KEY_LEN + MAX_PAD + 8;

enum State {
    /// `start` was not called yet.
    Idle,
    /// Waiting for Yb.
    PeerKey,
    /// Looking for ENCRYPT(VC) after PadB. `send` encrypted our step 3 (keyA), `recv` is a
    /// fresh keyB stream and `vc` is what an encrypted VC looks like under it.
    Sync {
        send: Box<Rc4>,
        recv: Box<Rc4>,
        vc: [u8; 8],
    },
    /// VC found; `recv` has decrypted it. Waiting for crypto_select, len(PadD) and PadD.
    Select {
        send: Box<Rc4>,
        recv: Box<Rc4>,
    },
    Closed,
}

/// The initiating side of the MSE handshake.
pub struct Initiator {
    state: State,
    private: [u8; 20],
    info_hash: [u8; 20],
    pad: Vec<u8>,
    provide: u32,
    initial_payload: Vec<u8>,
    buf: Vec<u8>,
    /// Bytes received after Yb and consumed while looking for VC (for the 616-byte limit).
    skipped: usize,
}

impl Initiator {
    /// `private`: 160 random bits; `pad`: PadA, up to 512 random bytes (cut there); `provide`:
    /// the methods we accept, [`CRYPTO_RC4`] and/or [`CRYPTO_PLAIN`] (the peer chooses);
    /// `initial_payload`: sent encrypted inside the handshake (IA), usually our BitTorrent
    /// handshake, at most 65535 bytes.
    pub fn new(
        private: [u8; 20],
        info_hash: [u8; 20],
        mut pad: Vec<u8>,
        provide: u32,
        initial_payload: Vec<u8>,
    ) -> Initiator {
        pad.truncate(MAX_PAD);
        Initiator {
            state: State::Idle,
            private,
            info_hash,
            pad,
            provide: provide & (CRYPTO_PLAIN | CRYPTO_RC4),
            initial_payload,
            buf: Vec::new(),
            skipped: 0,
        }
    }

    /// The first bytes to send: Ya and PadA. Only the first call returns them.
    pub fn start(&mut self) -> Vec<u8> {
        if !matches!(self.state, State::Idle) {
            return Vec::new();
        }
        self.state = State::PeerKey;
        let mut out = public_key(&self.private).to_vec();
        out.extend_from_slice(&self.pad);
        out
    }

    /// Feeds bytes from the peer; appends what to send to `out`. Returns the result once the
    /// handshake is complete: the method the peer selected, both RC4 states (positioned for
    /// the payload stream) and any payload that followed, already decrypted.
    pub fn receive(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<Option<Done>, MseError> {
        self.buf.extend_from_slice(data);
        loop {
            match std::mem::replace(&mut self.state, State::Closed) {
                State::Idle => return Err(MseError("receive before start")),
                State::Closed => return Err(MseError("closed")),
                State::PeerKey => {
                    if self.buf.len() < KEY_LEN {
                        self.state = State::PeerKey;
                        return Ok(None);
                    }
                    if self.provide == 0 {
                        return Err(MseError("no method offered"));
                    }
                    if self.initial_payload.len() > u16::MAX as usize {
                        return Err(MseError("initial payload over 65535 bytes"));
                    }
                    let yb: [u8; KEY_LEN] = self.buf[..KEY_LEN].try_into().expect("96 bytes");
                    self.buf.drain(..KEY_LEN);
                    self.state = self.send_step3(&yb, out);
                }
                State::Sync { send, recv, vc } => {
                    match self.buf.windows(8).position(|w| w == vc) {
                        Some(at) if self.skipped + at + KEY_LEN + 8 <= SYNC_LIMIT => {
                            self.buf.drain(..at + 8);
                            self.state = State::Select { send, recv };
                        }
                        _ => {
                            // Keep the last 7 bytes: they may be the start of VC.
                            let keep = self.buf.len().min(7);
                            let drop = self.buf.len() - keep;
                            self.skipped += drop;
                            self.buf.drain(..drop);
                            if self.skipped + KEY_LEN + 8 > SYNC_LIMIT {
                                return Err(MseError("no verification constant within 616 bytes"));
                            }
                            self.state = State::Sync { send, recv, vc };
                            return Ok(None);
                        }
                    }
                }
                State::Select { send, mut recv } => {
                    // crypto_select (4), len(PadD) (2), PadD.
                    if self.buf.len() < 6 {
                        self.state = State::Select { send, recv };
                        return Ok(None);
                    }
                    let mut probe = (*recv).clone();
                    let mut head: [u8; 6] = self.buf[..6].try_into().expect("6 bytes");
                    probe.apply(&mut head);
                    let select = u32::from_be_bytes(head[..4].try_into().expect("4 bytes"));
                    if select != CRYPTO_PLAIN && select != CRYPTO_RC4 {
                        return Err(MseError("peer selected no single method"));
                    }
                    if select & self.provide == 0 {
                        return Err(MseError("peer selected a method we did not offer"));
                    }
                    let pad_d = u16::from_be_bytes([head[4], head[5]]) as usize;
                    if pad_d > MAX_PAD {
                        return Err(MseError("padding over 512 bytes"));
                    }
                    if self.buf.len() < 6 + pad_d {
                        self.state = State::Select { send, recv };
                        return Ok(None);
                    }
                    recv.apply(&mut self.buf[..6 + pad_d]);
                    let mut payload = self.buf.split_off(6 + pad_d);
                    self.buf = Vec::new();
                    let crypto = if select == CRYPTO_RC4 {
                        recv.apply(&mut payload);
                        Crypto::Rc4 { send, recv }
                    } else {
                        Crypto::Plain
                    };
                    return Ok(Some(Done {
                        info_hash: self.info_hash,
                        crypto,
                        payload,
                    }));
                }
            }
        }
    }

    /// Step 3, once Yb is known; returns the state that looks for the peer's VC.
    fn send_step3(&mut self, yb: &[u8; KEY_LEN], out: &mut Vec<u8>) -> State {
        let secret = shared_secret(yb, &self.private);
        out.extend_from_slice(&hash(&[b"req1", &secret]));
        let req3 = hash(&[b"req3", &secret]);
        out.extend(
            req2_hash(&self.info_hash)
                .iter()
                .zip(req3)
                .map(|(a, b)| a ^ b),
        );
        let mut send = Box::new(Rc4::new(&hash(&[b"keyA", &secret, &self.info_hash])));
        // VC, crypto_provide, len(PadC) = 0 (PadC is reserved; standard practice is none),
        // len(IA), IA.
        let mut step = vec![0u8; 8];
        step.extend_from_slice(&self.provide.to_be_bytes());
        step.extend_from_slice(&0u16.to_be_bytes());
        step.extend_from_slice(&(self.initial_payload.len() as u16).to_be_bytes());
        step.append(&mut self.initial_payload);
        send.apply(&mut step);
        out.extend_from_slice(&step);
        let mut recv = Box::new(Rc4::new(&hash(&[b"keyB", &secret, &self.info_hash])));
        let mut vc = [0u8; 8];
        recv.apply(&mut vc);
        State::Sync { send, recv, vc }
    }
}

#[cfg(test)]
#[path = "initiator_tests.rs"]
mod tests;
