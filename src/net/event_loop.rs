//! The peer wire event loop: accepts and dials connections, feeds their bytes to
//! [`PeerConn`] state machines, sends piece data the disk pool made resident, chokes and
//! unchokes, sends PEX, and enforces every cap and timeout. It never blocks: sockets are
//! non-blocking, disk work is a job, and timers are the poll timeout.
//!
//! Tokens: 0 the listener, 1 the waker, 2.. connection slots, `usize::MAX - 1` the DHT socket. A slot's generation travels
//! with its disk jobs so a result for a closed connection is dropped, never misdelivered.

use super::choker::{self, Candidate};
use super::dialer::{self, Backoff};
use super::disk::{Done, Job, Torrent};
use super::outbound::Outbound;
use super::stats::{NetStats, TorrentStats};
use super::{Command, Deps};
use crate::config::PeerConfig;
use crate::proto::bt::mse::{self, Rc4};
use crate::proto::bt::peer_conn::{Event, PeerConn, Settings};
use crate::proto::bt::peer_ext::{Pex, MAX_PEX_PEERS};
use crate::proto::bt::peer_wire;
use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use magnet::magnet_tiers;

mod cache;
mod dht;
mod housekeeping;
mod leech;
mod lookup;
mod magnet;
mod serve;
mod sources;
mod swarm;
mod wire_in;

pub const LISTENER: Token = Token(0);
pub const WAKER: Token = Token(1);
const FIRST_CONN: usize = 2;

/// Unsent control bytes past which a peer is taken not to read.
const MAX_CONTROL_BYTES: usize = 256 * 1024;
const TICK: Duration = Duration::from_secs(1);
const CHOKE_EVERY: Duration = Duration::from_secs(10);
/// A seeding turn: an unchoked peer keeps its slot this long before the ones waiting get it.
const SEED_TURN: Duration = Duration::from_secs(30);
const PEX_EVERY: Duration = Duration::from_secs(60);
const KEEPALIVE_EVERY: Duration = Duration::from_secs(60);
const DIAL_EVERY: Duration = Duration::from_secs(30);
/// How long after a leecher's announce we dial it (it may be connecting to us meanwhile).
const FRESH_LEECHER_DELAY: Duration = Duration::from_secs(3);
/// Torrents kept looked up with no connection, for peers that come back.
const IDLE_TORRENTS: usize = 64;
const CLIENT: &str = concat!("torrent-gateway/", env!("CARGO_PKG_VERSION"));

pub struct Channels {
    pub commands: Receiver<Command>,
    pub done: Receiver<Done>,
    /// For results produced off the disk threads (hash checks on the rayon pool).
    pub done_tx: Sender<Done>,
    pub wake: Arc<dyn Fn() + Send + Sync>,
    pub jobs: Sender<Job>,
}

struct Conn {
    sock: TcpStream,
    addr: SocketAddr,
    gen: u32,
    outgoing: bool,
    connecting: bool,
    half_open: bool,
    wire: PeerConn,
    out: Outbound,
    torrent: Option<Arc<Torrent>>,
    opened: Instant,
    last_recv: Instant,
    last_send: Instant,
    stalled_since: Option<Instant>,
    /// Piece bytes asked of the disk pool and not yet queued.
    reading: usize,
    /// Piece bytes sent since the last choke rotation.
    sent_period: u64,
    last_unchoked: Instant,
    writable: bool,
    /// Its listen address (ours to dial, or its address plus the `p` it told us).
    listen: Option<SocketAddr>,
    pex_sent: HashSet<SocketAddr>,
    /// The obfuscated handshake, while it runs (incoming connections only).
    mse: Mse,
    /// Its id in the download engine, for a connection of a torrent we download.
    dl: Option<crate::engine::PeerId>,
}

enum Mse {
    /// Not decided yet: the first 20 bytes tell plaintext from MSE (`mse::is_plaintext`);
    /// what arrived so far.
    Undecided(Vec<u8>),
    Running(Box<mse::Receiver>),
    /// We dialed with the obfuscated handshake (a peer that refused plaintext).
    Initiating(Box<mse::Initiator>),
    /// Handshake done or never used; `Some` decrypts what the peer sends (RC4 chosen).
    Off(Option<Box<Rc4>>),
}

struct Entry {
    torrent: Arc<Torrent>,
    peers: usize,
    uploaded: u64,
    blocks: u64,
    metadata_pieces: u64,
    idle_since: Option<Instant>,
}

/// Who waits for a torrent lookup.
enum Waiter {
    Conn(u64),
    Dial(SocketAddr),
}

pub struct Loop {
    poll: Poll,
    listener: TcpListener,
    config: PeerConfig,
    deps: Deps,
    ch: Channels,
    stats: Arc<NetStats>,
    settings: Arc<Settings>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    next_gen: u32,
    count: usize,
    half_open: usize,
    outgoing: usize,
    per_ip: HashMap<IpAddr, usize>,
    torrents: HashMap<[u8; 20], Entry>,
    lookups: HashMap<[u8; 20], Vec<Waiter>>,
    /// (info-hash, peer id) of established connections, to refuse duplicates.
    peers: HashSet<([u8; 20], [u8; 20])>,
    dialing: HashSet<SocketAddr>,
    backoff: Backoff,
    /// Connections whose requests wait for room in the disk queue.
    starved: HashSet<usize>,
    accept_paused: bool,
    epoch: Instant,
    next_tick: Instant,
    next_choke: Instant,
    next_pex: Instant,
    next_dial: Instant,
    scratch: Vec<u8>,
    /// HASH('req2', info-hash) of every stored torrent, for MSE handshakes.
    req2: HashMap<[u8; 20], [u8; 20]>,
    /// Torrents being downloaded (then seeded from the user's directory).
    downloads: HashMap<[u8; 20], leech::Dl>,
    /// Magnet links whose info dict is being fetched.
    magnets: HashMap<[u8; 20], magnet::Mg>,
    /// Verified pieces waiting for room in the disk queue (bounded by the engines' memory
    /// budgets: a piece here is still in progress for its engine).
    write_backlog: std::collections::VecDeque<Job>,
    /// Fetch-through pieces on disk under the cache's cap (see `cache.rs`).
    cache: crate::engine::cache::PieceCache,
    evict_log: cache::EvictLog,
    /// Tracker announces and webseed GETs (started with the first download).
    announce: Option<crate::net::announce::AnnouncePool>,
    announce_tx: Sender<crate::net::announce::Done>,
    announce_rx: Receiver<crate::net::announce::Done>,
    /// Peers to dial with MSE next time (they closed a plaintext attempt).
    encrypt_to: HashSet<SocketAddr>,
    /// The DHT node and its socket, once started.
    dht: Option<dht::DhtIo>,
    stop: bool,
}

/// Random bytes for MSE keys and padding (not secret beyond one connection's obfuscation).
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    for chunk in out.chunks_mut(8) {
        let r = super::random_u64().to_le_bytes();
        chunk.copy_from_slice(&r[..chunk.len()]);
    }
    out
}

/// MSE padding of a random length from 0 to 512 bytes (a fixed length is a fingerprint).
fn random_pad() -> Vec<u8> {
    let len = (super::random_u64() % (mse::MAX_PAD as u64 + 1)) as usize;
    random_bytes::<{ mse::MAX_PAD }>()[..len].to_vec()
}

fn now_ms(epoch: Instant) -> u64 {
    epoch.elapsed().as_millis() as u64
}

impl Loop {
    pub fn new(
        poll: Poll,
        mut listener: TcpListener,
        config: PeerConfig,
        deps: Deps,
        ch: Channels,
        stats: Arc<NetStats>,
        peer_id: [u8; 20],
    ) -> io::Result<Loop> {
        let (announce_tx, announce_rx) = crossbeam_channel::bounded(1024);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let port = listener.local_addr()?.port();
        let now = Instant::now();
        let settings = Arc::new(Settings {
            peer_id,
            client: CLIENT,
            max_requests: config.max_requests,
            listen_port: Some(port),
            pex: true,
        });
        Ok(Loop {
            backoff: Backoff::new(
                Duration::from_secs(config.connect_backoff_secs),
                4 * config.max_connections + 1024,
            ),
            poll,
            listener,
            config,
            deps,
            ch,
            stats,
            settings,
            conns: Vec::new(),
            free: Vec::new(),
            next_gen: 1,
            count: 0,
            half_open: 0,
            outgoing: 0,
            per_ip: HashMap::new(),
            torrents: HashMap::new(),
            lookups: HashMap::new(),
            peers: HashSet::new(),
            dialing: HashSet::new(),
            starved: HashSet::new(),
            accept_paused: false,
            epoch: now,
            next_tick: now + TICK,
            next_choke: now + CHOKE_EVERY,
            next_pex: now + PEX_EVERY,
            next_dial: now + Duration::from_secs(2),
            scratch: vec![0; 256 * 1024],
            req2: HashMap::new(),
            downloads: HashMap::new(),
            magnets: HashMap::new(),
            write_backlog: std::collections::VecDeque::new(),
            cache: crate::engine::cache::PieceCache::new(u64::MAX),
            evict_log: cache::EvictLog::default(),
            announce: None,
            announce_tx,
            announce_rx,
            encrypt_to: HashSet::new(),
            dht: None,
            stop: false,
        })
    }

    fn key(&self, slot: usize) -> u64 {
        let gen = self.conns[slot].as_ref().map_or(0, |c| c.gen);
        ((slot as u64) << 32) | gen as u64
    }

    fn by_key(&mut self, key: u64) -> Option<usize> {
        let slot = (key >> 32) as usize;
        let gen = key as u32;
        match self.conns.get(slot) {
            Some(Some(c)) if c.gen == gen => Some(slot),
            _ => None,
        }
    }

    pub fn run(&mut self) {
        let mut events = Events::with_capacity(1024);
        while !self.stop {
            let mut timeout = self.next_tick.saturating_duration_since(Instant::now());
            if let Some(wake) = self.dht_wake() {
                timeout = timeout.min(wake);
            }
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("peer: poll failed: {e}");
                    break;
                }
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    dht::DHT => self.dht_readable(),
                    Token(t) => {
                        let slot = t - FIRST_CONN;
                        if ev.is_writable() {
                            self.on_writable(slot);
                        }
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            self.on_readable(slot);
                        }
                    }
                }
            }
            self.commands();
            self.disk_results();
            self.announce_results();
            self.dht_pump();
            if Instant::now() >= self.next_tick {
                self.tick();
            }
        }
        self.announce_stopped();
        self.dht_save(true);
        let slots: Vec<usize> = (0..self.conns.len()).collect();
        for slot in slots {
            self.close(slot, "shutting down", false);
        }
    }

    // ---- connections -------------------------------------------------------------------

    fn accept(&mut self) {
        loop {
            if self.half_open >= self.config.max_half_open {
                self.accept_paused = true;
                return;
            }
            self.accept_paused = false;
            let (sock, addr) = match self.listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors and the like: try again on the next tick.
                    log::warn!("peer: accept failed: {e}");
                    self.accept_paused = true;
                    return;
                }
            };
            let ip = crate::tracker::canonical(addr.ip());
            if self.count >= self.config.max_connections {
                self.stats.refused.add(1);
                log::debug!("peer {addr}: refused, {} connections", self.count);
                continue;
            }
            if self.per_ip.get(&ip).copied().unwrap_or(0) >= self.config.max_connections_per_ip {
                self.stats.refused.add(1);
                log::debug!("peer {addr}: refused, too many connections from {ip}");
                continue;
            }
            self.stats.accepted.add(1);
            log::trace!("peer {addr}: accepted");
            let wire = PeerConn::incoming(Arc::clone(&self.settings), Some(ip));
            self.insert(sock, SocketAddr::new(ip, addr.port()), wire, false, None);
        }
    }

    fn insert(
        &mut self,
        mut sock: TcpStream,
        addr: SocketAddr,
        wire: PeerConn,
        outgoing: bool,
        torrent: Option<Arc<Torrent>>,
    ) -> Option<usize> {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let interest = if outgoing {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut sock, Token(slot + FIRST_CONN), interest)
        {
            log::warn!("peer {addr}: cannot register: {e}");
            self.free.push(slot);
            return None;
        }
        let _ = sock.set_nodelay(true);
        let now = Instant::now();
        self.next_gen = self.next_gen.wrapping_add(1).max(1);
        self.conns[slot] = Some(Conn {
            sock,
            addr,
            gen: self.next_gen,
            outgoing,
            connecting: outgoing,
            half_open: true,
            wire,
            out: Outbound::default(),
            torrent,
            opened: now,
            last_recv: now,
            last_send: now,
            stalled_since: None,
            reading: 0,
            sent_period: 0,
            last_unchoked: now,
            writable: outgoing,
            listen: outgoing.then_some(addr),
            pex_sent: HashSet::new(),
            mse: if outgoing {
                Mse::Off(None)
            } else {
                Mse::Undecided(Vec::new())
            },
            dl: None,
        });
        self.count += 1;
        self.half_open += 1;
        if outgoing {
            self.outgoing += 1;
            self.dialing.insert(addr);
        }
        *self.per_ip.entry(addr.ip()).or_insert(0) += 1;
        Some(slot)
    }

    /// Removes a connection. `failed_dial`: an outgoing attempt that never spoke the protocol.
    fn close(&mut self, slot: usize, why: &str, failed_dial: bool) {
        let Some(mut c) = self.conns.get_mut(slot).and_then(Option::take) else {
            return;
        };
        // Last words (a reject, a choke) go out if the socket takes them now.
        if !c.connecting {
            c.out.push_bytes(c.wire.take_output());
            let _ = c.out.write_to(&mut c.sock);
        }
        let _ = self.poll.registry().deregister(&mut c.sock);
        log::debug!("peer {}: closed: {why}", c.addr);
        self.download_peer_gone(&c, failed_dial || (c.outgoing && c.half_open));
        let key = ((slot as u64) << 32) | u64::from(c.gen);
        self.magnet_peer_gone(&c, key, failed_dial || (c.outgoing && c.half_open));
        self.free.push(slot);
        self.starved.remove(&slot);
        self.count -= 1;
        if c.half_open {
            self.half_open -= 1;
        }
        if c.outgoing {
            self.outgoing -= 1;
            self.dialing.remove(&c.addr);
            if failed_dial {
                self.stats.dial_failures.add(1);
                self.backoff.failed(c.addr, Instant::now());
            }
        }
        if let Some(n) = self.per_ip.get_mut(&c.addr.ip()) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&c.addr.ip());
            }
        }
        if let Some(t) = &c.torrent {
            if c.wire.is_established() {
                let ih = t.shape.info_hash;
                self.peers.remove(&(ih, c.wire.peer().peer_id));
                if let Some(e) = self.torrents.get_mut(&ih) {
                    e.peers -= 1;
                    if e.peers == 0 {
                        e.idle_since = Some(Instant::now());
                    }
                }
            }
        }
        if !c.wire.is_choking() {
            self.fill_slots();
        }
        if self.accept_paused {
            self.accept();
        }
        self.maybe_encrypt_next(&c);
    }

    fn on_readable(&mut self, slot: usize) {
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut events = Vec::new();
        let mut ended = None;
        let now = now_ms(self.epoch);
        if let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) {
            if c.connecting {
                self.scratch = scratch;
                return self.on_writable(slot);
            }
            loop {
                match c.sock.read(&mut scratch) {
                    Ok(0) => {
                        ended = Some("peer closed the connection".to_string());
                        break;
                    }
                    Ok(n) => {
                        log::trace!("peer {}: read {n} bytes", c.addr);
                        self.stats.bytes_down.add(n as u64);
                        c.last_recv = Instant::now();
                        // Built on the first MSE handshake, then kept in step by the
                        // Added/Removed commands; rebuilt if one was dropped.
                        let handshaking = matches!(c.mse, Mse::Undecided(_) | Mse::Running(_));
                        if handshaking
                            && self.req2.len()
                                != self.deps.hosted.read().len() + self.downloads.len()
                        {
                            self.req2 = self
                                .deps
                                .hosted
                                .read()
                                .iter()
                                .chain(self.downloads.keys())
                                .map(|ih| (mse::req2_hash(ih), *ih))
                                .collect();
                        }
                        let req2 = &self.req2;
                        let find = |h: &[u8; 20]| req2.get(h).copied();
                        if let Err(e) = c.take_in(&mut scratch[..n], now, &mut events, &find) {
                            ended = Some(e);
                            break;
                        }
                        if c.wire.is_closed() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        ended = Some(format!("read: {e}"));
                        break;
                    }
                }
            }
        }
        self.scratch = scratch;
        self.on_events(slot, events);
        if let Some(why) = ended {
            let failed = self.conns[slot]
                .as_ref()
                .is_some_and(|c| c.outgoing && c.half_open);
            self.close(slot, &why, failed);
            return;
        }
        self.pump(slot);
        self.flush(slot);
    }

    fn on_writable(&mut self, slot: usize) {
        let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if c.connecting {
            match (c.sock.take_error(), c.sock.peer_addr()) {
                (Ok(None), Ok(_)) => {
                    c.connecting = false;
                    log::debug!("peer {}: connected", c.addr);
                }
                (Ok(Some(e)) | Err(e), _) | (_, Err(e)) => {
                    if e.kind() == io::ErrorKind::NotConnected {
                        return; // still connecting
                    }
                    let why = format!("connect: {e}");
                    return self.close(slot, &why, true);
                }
            }
        }
        self.flush(slot);
    }

    fn on_events(&mut self, slot: usize, events: Vec<Event>) {
        for ev in events {
            if self.conns.get(slot).and_then(Option::as_ref).is_none() {
                return;
            }
            if self.magnet_event(slot, &ev) || self.download_event(slot, &ev) {
                continue;
            }
            match ev {
                Event::Lookup(ih) => self.lookup(slot, ih),
                Event::Established => {
                    self.established(slot);
                    if self.conns[slot]
                        .as_ref()
                        .is_some_and(|c| c.wire.is_established())
                    {
                        self.download_peer_added(slot);
                    }
                }
                Event::Interested(true) => self.fill_slots(),
                Event::Interested(false) => {
                    let c = self.conns[slot].as_mut().expect("checked");
                    if !c.wire.is_choking() {
                        c.wire.choke();
                        self.fill_slots();
                    }
                }
                Event::Requests => {}
                Event::ExtHandshake => {
                    let c = self.conns[slot].as_mut().expect("checked");
                    if !c.outgoing {
                        c.listen = c
                            .wire
                            .peer()
                            .ext
                            .port
                            .map(|p| SocketAddr::new(c.addr.ip(), p));
                        if self.settle_by_listen_addr(slot) {
                            return;
                        }
                        self.incoming_listens(slot);
                    }
                }
                Event::Pex(p) => {
                    log::trace!("peer {slot}: pex with {} peers", p.added.len());
                    let ih = self.conns[slot]
                        .as_ref()
                        .and_then(|c| c.torrent.as_ref())
                        .map(|t| t.shape.info_hash);
                    if let Some(ih) = ih.filter(|ih| self.downloads.contains_key(ih)) {
                        self.add_peers(ih, &p.added, crate::engine::peers::Source::Pex);
                    }
                }
                Event::MetadataServed => {
                    let c = self.conns[slot].as_ref().expect("checked");
                    if let Some(t) = &c.torrent {
                        if let Some(e) = self.torrents.get_mut(&t.shape.info_hash) {
                            e.metadata_pieces += 1;
                        }
                    }
                }
                // Seeding only (not a download's connection): nothing to act on.
                Event::PeerHave(_)
                | Event::PeerBitfield
                | Event::Choked { .. }
                | Event::Unchoked
                | Event::Block { .. }
                | Event::Rejected(_)
                | Event::Unrequested(_)
                | Event::Metadata { .. }
                | Event::MetadataRejected(_) => {}
                Event::Close(why) => {
                    self.stats.protocol_errors.add(1);
                    let failed = self.conns[slot]
                        .as_ref()
                        .is_some_and(|c| c.outgoing && c.half_open);
                    return self.close(slot, &why, failed);
                }
            }
        }
    }

    /// Hands queued requests to the disk pool while the peer's queue has room.
    fn pump(&mut self, slot: usize) {
        let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let Some(t) = c.torrent.clone() else {
            return;
        };
        let key = ((slot as u64) << 32) | c.gen as u64;
        while c.reading + c.out.data_bytes() < self.config.max_queued_bytes {
            if self.ch.jobs.is_full() {
                self.starved.insert(slot);
                return;
            }
            let Some(block) = c.wire.next_request() else {
                return;
            };
            c.reading += block.length as usize;
            let job = Job::Read {
                conn: key,
                torrent: Arc::clone(&t),
                block,
                seq: self.evict_log.seq(),
            };
            if self.ch.jobs.try_send(job).is_err() {
                c.reading -= block.length as usize;
                c.wire.failed(block);
                self.stats.blocks_rejected.add(1);
                self.starved.insert(slot);
                return;
            }
        }
    }

    /// Moves control output to the queue and writes what the socket takes.
    fn flush(&mut self, slot: usize) {
        let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        c.out.push_bytes(c.wire.take_output());
        if c.out.control_bytes() > MAX_CONTROL_BYTES {
            self.stats.protocol_errors.add(1);
            return self.close(slot, "peer does not read what we send", false);
        }
        if !c.connecting && !c.out.is_empty() {
            match c.out.write_to(&mut c.sock) {
                Ok((n, data)) => {
                    if n > 0 {
                        c.last_send = Instant::now();
                        c.stalled_since = None;
                        self.stats.bytes_up.add(n as u64);
                    }
                    if data > 0 {
                        c.sent_period += data as u64;
                        if let Some(t) = &c.torrent {
                            if let Some(e) = self.torrents.get_mut(&t.shape.info_hash) {
                                e.uploaded += data as u64;
                            }
                        }
                    }
                }
                Err(e) => {
                    let why = format!("write: {e}");
                    return self.close(slot, &why, false);
                }
            }
        }
        if !c.out.is_empty() && c.stalled_since.is_none() {
            c.stalled_since = Some(Instant::now());
        }
        let want = c.connecting || !c.out.is_empty();
        if want != c.writable {
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if let Err(e) =
                self.poll
                    .registry()
                    .reregister(&mut c.sock, Token(slot + FIRST_CONN), interest)
            {
                let why = format!("reregister: {e}");
                return self.close(slot, &why, false);
            }
            c.writable = want;
        }
        // Data left the queue: there may be room for more reads.
        if c.out.data_bytes() + c.reading < self.config.max_queued_bytes && c.wire.requests() > 0 {
            self.pump(slot);
        }
    }

    // ---- channels ----------------------------------------------------------------------

    fn disk_results(&mut self) {
        self.retry_writes();
        let mut touched = HashSet::new();
        while let Ok(done) = self.ch.done.try_recv() {
            match done {
                Done::Written {
                    info_hash,
                    piece,
                    result,
                } => self.written(info_hash, piece, result),
                Done::Punched {
                    info_hash,
                    piece,
                    result,
                } => self.punched(info_hash, piece, result),
                Done::Hashed {
                    info_hash,
                    piece,
                    data,
                    ok,
                    blocks,
                } => self.hashed(info_hash, piece, data, ok, blocks),
                Done::Lookup { info_hash, torrent } => {
                    let waiters = self.lookups.remove(&info_hash).unwrap_or_default();
                    self.lookup_done(info_hash, torrent, waiters);
                }
                Done::Read {
                    conn,
                    block,
                    seq,
                    result,
                } => {
                    if let Some(slot) = self.block_read(conn, block, seq, result) {
                        touched.insert(slot);
                    }
                }
            }
        }
        let starved: Vec<usize> = self.starved.drain().collect();
        for slot in touched.into_iter().chain(starved) {
            self.pump(slot);
            self.flush(slot);
        }
    }

    // ---- timers ------------------------------------------------------------------------
}
