//! Our MSE initiator (`proto::bt::mse::Initiator`) against python3-libtorrent seeding with
//! encryption forced (`pe_forced` both ways, RC4 only), over a blocking TcpStream on
//! 127.0.0.1: the encrypted handshake, the BitTorrent handshake inside it, the seeder's
//! have-all/bitfield, and a block whose bytes match the file. The same seeder drops a
//! plaintext handshake and an MSE handshake that offers only a plaintext payload.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};
use support::peer::Peer;
use support::tracker::{lt_seed_with, make_torrent};
use torrent_gateway::proto::bt::mse::{self, Crypto, Done, Initiator, Rc4};
use torrent_gateway::proto::bt::peer_wire::{
    self, reserved, BlockRef, FrameLimits, Handshake, Message, HANDSHAKE_LEN,
};

const LEN: usize = 200_000;

/// A forced-RC4 libtorrent seeder of a fresh 200 kB file: (seeder, its address, info-hash,
/// the file's bytes).
fn encrypted_seeder(dir: &Path) -> (support::Reaped, SocketAddr, [u8; 20], Vec<u8>) {
    let (torrent, ih) = make_torrent(dir, "enc.bin", LEN, "http://127.0.0.1:1/announce");
    let data = std::fs::read(dir.join("data/enc.bin")).unwrap();
    let (seeder, port) = lt_seed_with("lt_seed.py", &torrent, &dir.join("data"), &["--encrypted"]);
    (seeder, SocketAddr::from(([127, 0, 0, 1], port)), ih, data)
}

fn our_handshake(ih: [u8; 20]) -> Vec<u8> {
    let mut bits = [0u8; 8];
    reserved::set(&mut bits, reserved::EXTENDED);
    reserved::set(&mut bits, reserved::FAST);
    let mut out = Vec::new();
    Handshake {
        reserved: bits,
        info_hash: ih,
        peer_id: *b"-TG0001-msemsemsemse",
    }
    .write(&mut out);
    out
}

/// Runs the initiator over `sock` until it is done; Err when the peer hangs up first.
fn mse_connect(sock: &mut TcpStream, mut init: Initiator) -> Result<Done, String> {
    sock.write_all(&init.start()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut chunk = [0u8; 4096];
    while Instant::now() < deadline {
        let n = match sock.read(&mut chunk) {
            Ok(0) => return Err("closed by the peer".into()),
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) => return Err(format!("closed by the peer: {e}")),
        };
        let mut out = Vec::new();
        let done = init
            .receive(&chunk[..n], &mut out)
            .map_err(|e| e.to_string())?;
        sock.write_all(&out).unwrap();
        if let Some(done) = done {
            return Ok(done);
        }
    }
    Err("no answer in 20 s".into())
}

/// A payload stream after the handshake: RC4 both ways.
struct Stream {
    sock: TcpStream,
    send: Box<Rc4>,
    recv: Box<Rc4>,
    buf: Vec<u8>,
}

impl Stream {
    fn send(&mut self, m: Message<'_>) {
        let mut out = Vec::new();
        peer_wire::write(&m, &mut out);
        self.send.apply(&mut out);
        self.sock.write_all(&out).unwrap();
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 65536];
        let n = self
            .sock
            .read(&mut chunk)
            .expect("the seeder keeps talking");
        assert!(n > 0, "the seeder closed the connection");
        let mut got = chunk[..n].to_vec();
        self.recv.apply(&mut got);
        self.buf.extend_from_slice(&got);
    }

    fn handshake(&mut self) -> Handshake {
        while self.buf.len() < HANDSHAKE_LEN {
            self.fill();
        }
        let hs = Handshake::parse(&self.buf).unwrap().expect("a handshake");
        self.buf.drain(..HANDSHAKE_LEN);
        hs
    }

    /// Reads messages until `pick` returns something.
    fn until<T>(&mut self, mut pick: impl FnMut(&Message<'_>) -> Option<T>) -> T {
        let lim = FrameLimits::for_torrent(LEN.div_ceil(65536) as u32, 1 << 20);
        for _ in 0..1000 {
            if let Some((m, n)) = peer_wire::parse_frame(&self.buf, &lim).unwrap() {
                let got = pick(&m);
                self.buf.drain(..n);
                if let Some(got) = got {
                    return got;
                }
            } else {
                self.fill();
            }
        }
        panic!("the awaited message never came");
    }
}

#[test]
fn our_initiator_talks_rc4_with_an_encrypted_only_libtorrent_seeder() {
    let dir = support::tempdir();
    let (_seeder, addr, ih, data) = encrypted_seeder(dir.path());
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let init = Initiator::new(
        support::bytes(20, 5).try_into().unwrap(),
        ih,
        support::bytes(100, 6),
        mse::CRYPTO_RC4 | mse::CRYPTO_PLAIN,
        our_handshake(ih),
    );
    let done = mse_connect(&mut sock, init).expect("the encrypted handshake completes");
    let Crypto::Rc4 { send, recv } = done.crypto else {
        panic!("libtorrent with allowed_enc_level rc4 selected plaintext");
    };
    let mut s = Stream {
        sock,
        send,
        recv,
        buf: done.payload,
    };
    let theirs = s.handshake();
    assert_eq!(theirs.info_hash, ih);
    assert!(reserved::has(&theirs.reserved, reserved::FAST));
    let pieces = s.until(|m| match m {
        Message::HaveAll => Some(u32::MAX),
        Message::Bitfield(b) => Some(b.iter().map(|x| x.count_ones()).sum()),
        _ => None,
    });
    assert!(pieces >= LEN.div_ceil(65536) as u32, "a seed: {pieces}");
    // Both directions really are RC4: ask for a block and compare it with the file.
    s.send(Message::Interested);
    s.until(|m| matches!(m, Message::Unchoke).then_some(()));
    let block = BlockRef {
        index: 1,
        begin: 16384,
        length: 16384,
    };
    s.send(Message::Request(block));
    let got = s.until(|m| match m {
        Message::Piece { index, begin, data } if *index == 1 && *begin == 16384 => {
            Some(data.to_vec())
        }
        _ => None,
    });
    assert_eq!(got, data[65536 + 16384..65536 + 32768]);
}

#[test]
fn the_encrypted_only_seeder_drops_plaintext() {
    let dir = support::tempdir();
    let (_seeder, addr, ih, _) = encrypted_seeder(dir.path());
    // A plaintext BitTorrent handshake.
    let mut p = Peer::connect(addr);
    p.send_handshake(ih, true);
    assert!(p.closed_within(15), "plaintext handshake accepted");
    // MSE offering only a plaintext payload: allowed_enc_level rc4 refuses it.
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let init = Initiator::new(
        support::bytes(20, 7).try_into().unwrap(),
        ih,
        Vec::new(),
        mse::CRYPTO_PLAIN,
        our_handshake(ih),
    );
    let err = mse_connect(&mut sock, init).err().expect("refused");
    assert!(err.contains("closed"), "{err}");
}
