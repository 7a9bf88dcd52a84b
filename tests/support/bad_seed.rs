//! A deliberately misbehaving BitTorrent seeder for the client's bad-peer tests: plain BEP-3
//! (no fast extension, no extension protocol) on a std `TcpListener` thread on a loopback
//! address (127.0.0.1 unless told another 127.x),
//! one thread per connection, serving a torrent's data from a byte buffer. Its `Mode` picks
//! the misbehaviour: honest, one corrupt block of one piece every time, a bitfield that
//! claims pieces it never serves, unchoking but never answering, choking in the middle of a
//! request queue and dropping it, or sending blocks nobody asked for. It counts what it did
//! (`Stats`) so tests can assert the misbehaviour really happened. Stopped on drop.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use torrent_gateway::proto::bt::metainfo::Metainfo;
use torrent_gateway::proto::bt::peer_wire::{self, BlockRef, FrameLimits, Handshake, Message};

/// How the seeder misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Serves every request correctly.
    Honest,
    /// Serves correctly except the first block of `piece`, whose bytes are flipped every
    /// time it is sent.
    CorruptBlock { piece: u32 },
    /// Claims every piece but has only the even ones: requests for odd pieces are never
    /// answered (nor rejected).
    LyingBitfield,
    /// Unchokes, then never sends a block.
    NeverAnswers,
    /// Serves a few blocks, then chokes with requests still queued (dropping them), and
    /// unchokes again a little later; over and over.
    ChokeMidRequest,
    /// Right after unchoking sends blocks nobody asked for (garbage), then serves honestly.
    UnrequestedBlocks,
}

/// Blocks served between two chokes in [`Mode::ChokeMidRequest`].
const SERVE_BETWEEN_CHOKES: u32 = 6;
/// How long [`Mode::ChokeMidRequest`] stays choked.
const CHOKED_FOR: Duration = Duration::from_millis(300);
/// Unrequested blocks sent per connection in [`Mode::UnrequestedBlocks`].
const UNREQUESTED: u32 = 4;
/// Requests queued per connection; more are dropped (and counted).
const MAX_QUEUE: usize = 2048;
/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 64;

/// What the seeder did, summed over its connections.
#[derive(Debug, Default)]
pub struct Stats {
    pub connections: AtomicU64,
    pub requests: AtomicU64,
    /// Blocks sent in answer to a request (corrupt ones included).
    pub blocks_served: AtomicU64,
    /// Payload bytes sent in answer to requests (corrupt ones included).
    pub bytes_served: AtomicU64,
    pub corrupt_blocks: AtomicU64,
    /// Requests never answered (lying, never answering, dropped by a choke, over the cap).
    pub requests_dropped: AtomicU64,
    pub chokes: AtomicU64,
    pub unrequested_blocks: AtomicU64,
}

impl Stats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }
}

/// The torrent as the seeder sees it.
struct Shared {
    info_hash: [u8; 20],
    piece_length: u64,
    pieces: u32,
    data: Vec<u8>,
    mode: Mode,
    block_delay: Duration,
    stats: Arc<Stats>,
    stop: AtomicBool,
}

impl Shared {
    fn piece_len(&self, index: u32) -> u64 {
        let start = index as u64 * self.piece_length;
        (self.data.len() as u64 - start).min(self.piece_length)
    }

    fn has(&self, index: u32) -> bool {
        self.mode != Mode::LyingBitfield || index % 2 == 0
    }

    fn block(&self, b: BlockRef) -> Option<&[u8]> {
        let valid = b.index < self.pieces
            && b.length > 0
            && b.length <= peer_wire::MAX_BLOCK
            && b.begin as u64 + b.length as u64 <= self.piece_len(b.index);
        let start = (b.index as u64 * self.piece_length + b.begin as u64) as usize;
        valid.then(|| &self.data[start..start + b.length as usize])
    }
}

/// A running bad seeder; stopped (listener and connections closed) on drop.
pub struct BadSeed {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl BadSeed {
    /// Seeds `data` (the torrent's bytes in piece order, padding included) of `meta`.
    pub fn start(meta: &Metainfo, data: Vec<u8>, mode: Mode) -> BadSeed {
        Self::start_with(meta, data, mode, Duration::ZERO)
    }

    /// Like `start`, waiting `block_delay` before every block it sends (a slow peer).
    pub fn start_with(meta: &Metainfo, data: Vec<u8>, mode: Mode, block_delay: Duration) -> Self {
        Self::start_at(Ipv4Addr::LOCALHOST, meta, data, mode, block_delay)
    }

    /// Like `start_with`, listening on loopback address `ip` (any 127.x.y.z), so that peers
    /// look like distinct hosts to a client that bans or limits by IP.
    pub fn start_at(
        ip: Ipv4Addr,
        meta: &Metainfo,
        data: Vec<u8>,
        mode: Mode,
        block_delay: Duration,
    ) -> Self {
        assert!(ip.is_loopback(), "{ip} is not a loopback address");
        assert_eq!(
            data.len() as u64,
            meta.info.total_length(),
            "the data must be the whole torrent"
        );
        let listener = TcpListener::bind((ip, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let shared = Arc::new(Shared {
            info_hash: meta.info_hash,
            piece_length: meta.info.piece_length,
            pieces: meta.info.piece_count() as u32,
            data,
            mode,
            block_delay,
            stats: Arc::clone(&stats),
            stop: AtomicBool::new(false),
        });
        let sh = Arc::clone(&shared);
        let accept = std::thread::spawn(move || accept_loop(listener, sh));
        BadSeed {
            addr,
            stats,
            shared,
            accept: Some(accept),
        }
    }

    pub fn bytes_served(&self) -> u64 {
        self.stats.bytes_served.load(Relaxed)
    }

    /// `--peer` argument for the download command.
    pub fn peer_arg(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for BadSeed {
    fn drop(&mut self) {
        self.shared.stop.store(true, Relaxed);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

/// The torrent's bytes in piece order from its files under `root` (the directory holding
/// the single file, or the torrent's folder's parent), pad files as zeros.
pub fn torrent_data(meta: &Metainfo, root: &Path) -> Vec<u8> {
    let mut out = Vec::with_capacity(meta.info.total_length() as usize);
    for f in &meta.info.files {
        if f.padding {
            out.resize(out.len() + f.length as usize, 0);
            continue;
        }
        let mut path = root.to_path_buf();
        if meta.info.multi_file {
            path.push(&meta.info.name);
        }
        path.extend(&f.path);
        out.extend_from_slice(&std::fs::read(&path).unwrap());
    }
    out
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let live: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
    while !shared.stop.load(Relaxed) {
        match listener.accept() {
            Ok((sock, _)) => {
                let mut live = live.lock().unwrap();
                live.retain(|h| !h.is_finished());
                if live.len() >= MAX_CONNECTIONS {
                    continue;
                }
                shared.stats.connections.fetch_add(1, Relaxed);
                let sh = Arc::clone(&shared);
                live.push(std::thread::spawn(move || {
                    let _ = serve(sock, &sh);
                }));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    for h in live.lock().unwrap().drain(..) {
        let _ = h.join();
    }
}

/// One connection's state.
struct Conn<'a> {
    sock: TcpStream,
    sh: &'a Shared,
    buf: Vec<u8>,
    out: Vec<u8>,
    queue: VecDeque<BlockRef>,
    choked: bool,
    /// When a choked [`Mode::ChokeMidRequest`] connection unchokes again.
    unchoke_at: Option<Instant>,
    served_since_unchoke: u32,
    /// Pieces this connection has asked for (unrequested blocks avoid them).
    requested: Vec<bool>,
}

fn serve(sock: TcpStream, sh: &Shared) -> std::io::Result<()> {
    sock.set_nodelay(true)?;
    sock.set_read_timeout(Some(Duration::from_millis(50)))?;
    sock.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut c = Conn {
        sock,
        sh,
        buf: Vec::new(),
        out: Vec::new(),
        queue: VecDeque::new(),
        choked: true,
        unchoke_at: None,
        served_since_unchoke: 0,
        requested: vec![false; sh.pieces as usize],
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.buf.len() < peer_wire::HANDSHAKE_LEN {
        if Instant::now() > deadline || !c.fill()? {
            return Ok(());
        }
    }
    match Handshake::parse(&c.buf) {
        Ok(Some(h)) if h.info_hash == sh.info_hash => {}
        _ => return Ok(()),
    }
    c.buf.drain(..peer_wire::HANDSHAKE_LEN);
    let mut peer_id = *b"-BS0001-000000000000";
    let n = format!(
        "{:012}",
        std::process::id() as u64 * 1000 + c.sock.local_addr()?.port() as u64
    );
    peer_id[8..].copy_from_slice(&n.as_bytes()[n.len() - 12..]);
    Handshake {
        reserved: [0; 8],
        info_hash: sh.info_hash,
        peer_id,
    }
    .write(&mut c.out);
    // Every mode claims every piece (the lying one too).
    let bits = peer_wire::full_bitfield(sh.pieces);
    peer_wire::write(&Message::Bitfield(&bits), &mut c.out);
    c.flush()?;
    let limits = FrameLimits {
        bitfield: sh.pieces.div_ceil(8),
        extended: 1 << 20,
    };
    while !sh.stop.load(Relaxed) {
        loop {
            let (unchoke, req, cancel, used) = match peer_wire::parse_frame(&c.buf, &limits) {
                Ok(Some((m, used))) => match m {
                    Message::Interested => (true, None, None, used),
                    Message::Request(b) => (false, Some(b), None, used),
                    Message::Cancel(b) => (false, None, Some(b), used),
                    _ => (false, None, None, used),
                },
                Ok(None) => break,
                Err(_) => return Ok(()),
            };
            c.buf.drain(..used);
            if unchoke && c.choked && c.unchoke_at.is_none() {
                c.unchoke()?;
            }
            if let Some(b) = req {
                c.request(b)?;
            }
            if let Some(b) = cancel {
                c.queue.retain(|q| *q != b);
            }
        }
        if let Some(at) = c.unchoke_at {
            if Instant::now() >= at {
                c.unchoke_at = None;
                c.unchoke()?;
            }
        }
        c.serve_queue()?;
        if !c.fill()? {
            return Ok(());
        }
    }
    Ok(())
}

impl Conn<'_> {
    /// Reads what is there: false when the peer hung up.
    fn fill(&mut self) -> std::io::Result<bool> {
        let mut chunk = [0u8; 16384];
        match self.sock.read(&mut chunk) {
            Ok(0) => Ok(false),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(true),
            Err(e) => Err(e),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.sock.write_all(&self.out)?;
        self.out.clear();
        Ok(())
    }

    fn unchoke(&mut self) -> std::io::Result<()> {
        self.choked = false;
        self.served_since_unchoke = 0;
        peer_wire::write(&Message::Unchoke, &mut self.out);
        if self.sh.mode == Mode::UnrequestedBlocks {
            self.send_unrequested();
        }
        self.flush()
    }

    /// Garbage blocks of pieces this connection has not asked for.
    fn send_unrequested(&mut self) {
        let mut sent = 0;
        for index in (0..self.sh.pieces).rev() {
            if sent == UNREQUESTED {
                break;
            }
            if self.requested[index as usize] {
                continue;
            }
            let length = (self.sh.piece_len(index) as u32).min(peer_wire::MAX_BLOCK);
            let b = BlockRef {
                index,
                begin: 0,
                length,
            };
            let garbage: Vec<u8> = self.sh.block(b).unwrap().iter().map(|x| !x).collect();
            peer_wire::write(
                &Message::Piece {
                    index,
                    begin: 0,
                    data: &garbage,
                },
                &mut self.out,
            );
            self.sh.stats.unrequested_blocks.fetch_add(1, Relaxed);
            sent += 1;
        }
    }

    fn request(&mut self, b: BlockRef) -> std::io::Result<()> {
        let st = &self.sh.stats;
        st.requests.fetch_add(1, Relaxed);
        if self.sh.block(b).is_none() {
            // An invalid request: a real peer would close, so do we.
            return Err(ErrorKind::InvalidData.into());
        }
        self.requested[b.index as usize] = true;
        let answer = !self.choked
            && self.sh.has(b.index)
            && self.sh.mode != Mode::NeverAnswers
            && self.queue.len() < MAX_QUEUE;
        if answer {
            self.queue.push_back(b);
        } else {
            st.requests_dropped.fetch_add(1, Relaxed);
        }
        Ok(())
    }

    fn serve_queue(&mut self) -> std::io::Result<()> {
        while let Some(b) = self.queue.pop_front() {
            if self.sh.mode == Mode::ChokeMidRequest
                && self.served_since_unchoke >= SERVE_BETWEEN_CHOKES
            {
                // Choke with this request and the rest of the queue outstanding.
                let dropped = self.queue.len() as u64 + 1;
                self.queue.clear();
                self.sh.stats.requests_dropped.fetch_add(dropped, Relaxed);
                self.sh.stats.chokes.fetch_add(1, Relaxed);
                self.choked = true;
                self.unchoke_at = Some(Instant::now() + CHOKED_FOR);
                peer_wire::write(&Message::Choke, &mut self.out);
                return self.flush();
            }
            if !self.sh.block_delay.is_zero() {
                std::thread::sleep(self.sh.block_delay);
            }
            let data = self.sh.block(b).expect("checked on arrival");
            let corrupt = matches!(self.sh.mode, Mode::CorruptBlock { piece } if piece == b.index)
                && b.begin == 0;
            peer_wire::write_piece_header(b.index, b.begin, b.length, &mut self.out);
            if corrupt {
                self.out.extend(data.iter().map(|x| x ^ 0xa5));
                self.sh.stats.corrupt_blocks.fetch_add(1, Relaxed);
            } else {
                self.out.extend_from_slice(data);
            }
            self.sh.stats.blocks_served.fetch_add(1, Relaxed);
            self.sh
                .stats
                .bytes_served
                .fetch_add(b.length as u64, Relaxed);
            self.served_since_unchoke += 1;
            self.flush()?;
        }
        Ok(())
    }
}
