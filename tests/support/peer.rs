//! A minimal peer wire client for tests that need to misbehave on purpose: handshake,
//! framed messages, and "did the other side hang up?" with a bounded wait.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use torrent_gateway::proto::bt::peer_wire::{self, FrameLimits, Handshake, Message};

/// A different peer id for every connection (the gateway refuses a second connection from
/// the same peer id to the same torrent).
fn unique_peer_id() -> [u8; 20] {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut id = *b"-XX0001-000000000000";
    let digits = format!("{:012}", (std::process::id() as u64) << 20 | n);
    id[8..].copy_from_slice(&digits.as_bytes()[digits.len() - 12..]);
    id
}

pub struct Peer {
    pub sock: TcpStream,
    buf: Vec<u8>,
}

/// Messages as owned values (the parser borrows from the buffer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    Unchoke,
    Choke,
    HaveAll,
    Bitfield(usize),
    Piece {
        index: u32,
        begin: u32,
        data: Vec<u8>,
    },
    Reject,
    Extended(u8, Vec<u8>),
    Other(String),
}

impl Peer {
    pub fn connect(addr: SocketAddr) -> Peer {
        let sock = TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        sock.set_nodelay(true).unwrap();
        Peer {
            sock,
            buf: Vec::new(),
        }
    }

    /// Sends a handshake (fast and extension bits when `fast`) and reads the answer.
    pub fn handshake(addr: SocketAddr, info_hash: [u8; 20], fast: bool) -> Peer {
        let mut p = Peer::connect(addr);
        p.send_handshake(info_hash, fast);
        let theirs = p
            .read_handshake()
            .expect("the gateway answers the handshake");
        assert_eq!(theirs.info_hash, info_hash);
        p
    }

    pub fn send_handshake(&mut self, info_hash: [u8; 20], fast: bool) {
        let mut reserved = [0u8; 8];
        if fast {
            peer_wire::reserved::set(&mut reserved, peer_wire::reserved::FAST);
            peer_wire::reserved::set(&mut reserved, peer_wire::reserved::EXTENDED);
        }
        let mut out = Vec::new();
        Handshake {
            reserved,
            info_hash,
            peer_id: unique_peer_id(),
        }
        .write(&mut out);
        self.sock.write_all(&out).unwrap();
    }

    pub fn read_handshake(&mut self) -> Option<Handshake> {
        while self.buf.len() < peer_wire::HANDSHAKE_LEN {
            if !self.fill() {
                return None;
            }
        }
        let hs = Handshake::parse(&self.buf).ok()??;
        self.buf.drain(..peer_wire::HANDSHAKE_LEN);
        Some(hs)
    }

    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 65536];
        match self.sock.read(&mut chunk) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    pub fn send(&mut self, msg: Message<'_>) -> std::io::Result<()> {
        let mut out = Vec::new();
        peer_wire::write(&msg, &mut out);
        self.sock.write_all(&out)
    }

    /// The next message, or `None` when the connection ended.
    pub fn next(&mut self) -> Option<Got> {
        let lim = FrameLimits {
            bitfield: 1 << 20,
            extended: 1 << 20,
        };
        loop {
            // A bitfield of any length (the parser insists on the torrent's exact length).
            if self.buf.len() >= 5 && self.buf[4] == peer_wire::id::BITFIELD {
                let len = u32::from_be_bytes(self.buf[..4].try_into().unwrap()) as usize;
                if len <= 1 << 20 && self.buf.len() >= 4 + len {
                    self.buf.drain(..4 + len);
                    return Some(Got::Bitfield(len - 1));
                }
            }
            if let Ok(Some((m, n))) = peer_wire::parse_frame(&self.buf, &lim) {
                let got = match m {
                    Message::Unchoke => Got::Unchoke,
                    Message::Choke => Got::Choke,
                    Message::HaveAll => Got::HaveAll,
                    Message::Bitfield(b) => Got::Bitfield(b.len()),
                    Message::Piece { index, begin, data } => Got::Piece {
                        index,
                        begin,
                        data: data.to_vec(),
                    },
                    Message::Reject(_) => Got::Reject,
                    Message::Extended { id, payload } => Got::Extended(id, payload.to_vec()),
                    other => Got::Other(format!("{other:?}")),
                };
                self.buf.drain(..n);
                return Some(got);
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// Reads until `want` arrives (true) or the connection ends (false).
    pub fn wait_for(&mut self, want: impl Fn(&Got) -> bool) -> bool {
        while let Some(m) = self.next() {
            if want(&m) {
                return true;
            }
        }
        false
    }

    /// Whether the gateway closes the connection within `secs` (reading and discarding).
    pub fn closed_within(&mut self, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        self.sock
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut chunk = [0u8; 65536];
        while Instant::now() < deadline {
            match self.sock.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return true,
            }
        }
        false
    }
}
