//! One torrent's download, sans-IO: fed what its peers do (pieces they have, chokes, blocks,
//! rejects, departures), hash results and finished writes, and a clock reading on each tick;
//! returns [`Action`]s for the caller to carry out (requests, cancels, interest, a piece to
//! verify, a verified piece to write, a `have` to broadcast, a peer to drop).
//!
//! - Requests: each unchoked peer gets about [`QUEUE_SECS`] of data in flight at its
//!   measured rate (libtorrent's `request_queue_time`), at least a few blocks, at most its
//!   `reqq` and ours; a snubbed peer (nothing for [`Limits::request_timeout_ms`] while it
//!   owed us blocks) gets one, and what it owed goes to others. The critical pieces under
//!   readers go first, block by block, to the peers with the shortest expected queue time,
//!   and a slow peer's blocks of them are asked of a faster one too (`requests`).
//! - Memory: blocks live in piece buffers until the piece is whole; no new piece starts
//!   while [`Limits::max_buffered`] bytes of pieces are in progress (arriving, hashing or
//!   waiting for the disk), so a slow disk stops requests instead of growing memory.
//! - Bad data: a piece that fails its check is fetched again and its senders are remembered
//!   ([`SmartBan`]); when it passes, exactly the peers whose blocks differed are banned by
//!   address until the download ends. A peer that alone sent [`SOLE_FAILURES`] bad pieces
//!   is banned too.
//! - A piece counts as had only once it is verified *and* written.
//! - Fetch-through: readers ([`Download::want`]) lift the pieces under them to the top
//!   priority with deadlines, and give them back ([`Download::unwant`]) when they move or
//!   close; a piece someone started is finished. A had piece can be un-had
//!   ([`Download::evict`], then [`Download::evicted`] once its bytes are gone) and is fetched
//!   again when a reader asks.

use super::bitfield::Bitfield;
use super::picker::{Arrival, Layout, Picker};
use super::readers::Readers;
use super::smart_ban::{BlockRecord, SmartBan};
use super::{Block, PeerId, BLOCK};
use crate::proto::bt::peer_wire::BlockRef;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};

/// Seconds of data a peer should have in flight at its rate.
pub const QUEUE_SECS: u64 = 3;
/// Requests a peer gets before its rate is known.
const START_QUEUE: usize = 16;
/// Fewest requests in flight for a peer that is not snubbed.
const MIN_QUEUE: usize = 4;
/// Pieces a peer may be the only sender of and fail before it is banned.
pub const SOLE_FAILURES: u32 = 2;
/// Blocks in flight to a webseed at least (1 MiB: one GET is worth its round trip).
const WEB_MIN_QUEUE: usize = 64;
/// Blocks in flight to a webseed at most (16 MiB: several GETs of a few MiB each; the memory
/// budget of pieces in progress still applies).
const WEB_MAX_QUEUE: usize = 1024;
/// Gone peers remembered for smart ban (their address, to ban later).
const GONE_KEPT: usize = 4096;

/// The engine's caps.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Our cap on requests in flight to one peer.
    pub max_requests: usize,
    /// Bytes of pieces in progress at most (at least two pieces are always allowed).
    pub max_buffered: u64,
    /// A peer that owes blocks and sends nothing for this long is snubbed.
    pub request_timeout_ms: u64,
    /// Blocks nobody asked for a peer may send before it is dropped.
    pub max_unrequested: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_requests: 500,
            max_buffered: 16 << 20,
            request_timeout_ms: 20_000,
            max_unrequested: 64,
        }
    }
}

/// What the caller must do.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Interested(PeerId, bool),
    Request(PeerId, BlockRef),
    Cancel(PeerId, BlockRef),
    /// Hash this whole piece; `blocks`: also return each block's SHA-1 (for smart ban).
    Verify {
        piece: u32,
        data: Vec<u8>,
        blocks: bool,
    },
    /// This piece passed: write it, then call [`Download::written`].
    Write {
        piece: u32,
        data: Vec<u8>,
    },
    /// Tell every peer we have this piece now.
    Have(u32),
    Close(PeerId, String),
    /// Every wanted piece is verified and written.
    Complete,
}

/// Counters for progress displays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Payload bytes received in blocks we kept.
    pub downloaded: u64,
    /// Payload bytes received and thrown away (duplicates, failed pieces, unrequested).
    pub wasted: u64,
    pub failed_pieces: u32,
    /// Critical blocks asked of a second peer because the first was slow, late or snubbed.
    pub taken_over: u64,
}

#[derive(Debug)]
struct Peer {
    addr: SocketAddr,
    bits: Bitfield,
    choking: bool,
    interested: bool,
    asked: VecDeque<(Block, u64)>,
    reqq: usize,
    /// Bytes per second, smoothed over ticks.
    rate: u64,
    /// The highest `rate` seen (the estimate while it sends nothing, e.g. unasked).
    peak: u64,
    period_bytes: u64,
    last_data_ms: u64,
    snubbed: bool,
    unrequested: u32,
    sole_failures: u32,
    /// Failed pieces it sent a block of (the peer list's trust).
    hash_failures: u32,
    /// A webseed: never banned, asked for whole pieces, at least [`WEB_MIN_QUEUE`] blocks.
    web: bool,
    /// A webseed's newest piece: the next one follows it where it can, so its GETs are long
    /// contiguous ranges rather than one piece each.
    last_piece: Option<u32>,
}

pub struct Download {
    layout: Layout,
    hashes: Vec<[u8; 20]>,
    limits: Limits,
    picker: Picker,
    peers: HashMap<PeerId, Peer>,
    next_id: PeerId,
    gone: VecDeque<(PeerId, SocketAddr)>,
    buffers: HashMap<u32, Vec<u8>>,
    /// Pieces verified and handed to the disk.
    writing: HashSet<u32>,
    ban: SmartBan,
    /// Banned addresses, and the IPs of those that are global (behind a loopback or private
    /// address there may be many honest peers, so only the address itself is banned).
    banned: HashSet<SocketAddr>,
    banned_ips: HashSet<IpAddr>,
    banned_addrs: Vec<SocketAddr>,
    counters: Counters,
    last_tick_ms: u64,
    complete_sent: bool,
    out: Vec<Action>,
    /// Each piece's priority when no reader wants it.
    base: Vec<u8>,
    readers: Readers,
}

impl Download {
    /// `have`: pieces already verified on disk; `priorities`: one per piece (0 = skip).
    pub fn new(
        layout: Layout,
        hashes: Vec<[u8; 20]>,
        have: Bitfield,
        priorities: &[u8],
        limits: Limits,
        seed: u64,
    ) -> Download {
        let mut picker = Picker::new(layout, have, seed);
        for (i, &p) in priorities.iter().enumerate() {
            picker.set_priority(i as u32, p);
        }
        Download {
            layout,
            hashes,
            limits,
            picker,
            peers: HashMap::new(),
            next_id: 1,
            gone: VecDeque::new(),
            buffers: HashMap::new(),
            writing: HashSet::new(),
            ban: SmartBan::default(),
            banned: HashSet::new(),
            banned_ips: HashSet::new(),
            banned_addrs: Vec::new(),
            counters: Counters::default(),
            last_tick_ms: 0,
            complete_sent: false,
            out: Vec::new(),
            base: (0..layout.piece_count as usize)
                .map(|i| priorities.get(i).copied().unwrap_or(0))
                .collect(),
            readers: Readers::default(),
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn have(&self) -> &Bitfield {
        self.picker.have()
    }

    pub fn picker_mut(&mut self) -> &mut Picker {
        &mut self.picker
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    pub fn is_done(&self) -> bool {
        self.picker.is_done() && self.writing.is_empty()
    }

    /// Bytes of wanted pieces not had yet.
    pub fn left(&self) -> u64 {
        (0..self.layout.piece_count)
            .filter(|&p| self.picker.wants(p))
            .map(|p| u64::from(self.layout.piece_len(p)))
            .sum()
    }

    pub fn is_banned(&self, addr: SocketAddr) -> bool {
        self.banned.contains(&addr) || self.banned_ips.contains(&addr.ip())
    }

    /// Addresses banned so far, in the order they were.
    pub fn banned(&self) -> &[SocketAddr] {
        &self.banned_addrs
    }

    /// Connected peers (webseeds not counted).
    pub fn peer_count(&self) -> usize {
        self.peers.values().filter(|p| !p.web).count()
    }

    /// Connected peers that have every piece.
    pub fn seed_count(&self) -> usize {
        self.peers
            .values()
            .filter(|p| !p.web && p.bits.is_full())
            .count()
    }

    /// Actions decided since the last call.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.out)
    }

    /// A connection is established; the returned id names it from now on.
    pub fn peer_added(&mut self, addr: SocketAddr, now_ms: u64) -> PeerId {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.peers.insert(
            id,
            Peer {
                addr,
                bits: Bitfield::new(self.layout.piece_count),
                choking: true,
                interested: false,
                asked: VecDeque::new(),
                reqq: self.limits.max_requests,
                rate: 0,
                peak: 0,
                period_bytes: 0,
                last_data_ms: now_ms,
                snubbed: false,
                unrequested: 0,
                sole_failures: 0,
                hash_failures: 0,
                web: false,
                last_piece: None,
            },
        );
        id
    }

    /// A webseed joins: it has every piece and does not choke until it fails.
    pub fn webseed_added(&mut self, now_ms: u64) -> PeerId {
        let id = self.peer_added(SocketAddr::from(([0, 0, 0, 0], 0)), now_ms);
        let n = self.layout.piece_count;
        if let Some(p) = self.peers.get_mut(&id) {
            p.web = true;
        }
        self.peer_bitfield(id, Bitfield::full(n));
        self.unchoked(id, now_ms);
        id
    }

    /// The pieces a peer has, as it told us.
    pub fn peer_pieces(&self, peer: PeerId) -> Option<Bitfield> {
        self.peers.get(&peer).map(|p| p.bits.clone())
    }

    /// The peer's extension handshake named its request queue size (`reqq`).
    pub fn peer_reqq(&mut self, peer: PeerId, reqq: u32) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.reqq = (reqq as usize).clamp(1, self.limits.max_requests);
        }
    }

    pub fn peer_gone(&mut self, peer: PeerId) {
        let Some(p) = self.peers.remove(&peer) else {
            return;
        };
        self.picker.peer_gone(peer, &p.bits);
        if self.gone.len() >= GONE_KEPT {
            self.gone.pop_front();
        }
        self.gone.push_back((peer, p.addr));
        if !p.asked.is_empty() {
            self.fill_all();
        }
    }

    /// The peer announced all its pieces (bitfield, have-all or have-none).
    pub fn peer_bitfield(&mut self, peer: PeerId, bits: Bitfield) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if bits.len() != self.layout.piece_count {
            return;
        }
        self.picker.peer_gone(peer, &p.bits);
        self.picker.peer_has(&bits);
        p.bits = bits;
        // peer_gone above freed its requests: ask again.
        let asked: Vec<Block> = p.asked.drain(..).map(|(b, _)| b).collect();
        for b in asked {
            let r = self.block_ref(b);
            self.out.push(Action::Cancel(peer, r));
        }
        self.update_interest(peer);
        self.fill(peer);
    }

    pub fn peer_have(&mut self, peer: PeerId, piece: u32) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if piece >= self.layout.piece_count || !p.bits.set(piece) {
            return;
        }
        self.picker.peer_has_one(piece);
        if !p.interested && self.picker.wants(piece) {
            p.interested = true;
            self.out.push(Action::Interested(peer, true));
        }
        self.fill(peer);
    }

    /// The peer choked us; `dropped` are our requests it will not answer.
    pub fn choked(&mut self, peer: PeerId, dropped: &[BlockRef]) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        p.choking = true;
        let mut freed = false;
        for r in dropped {
            let b = to_block(r);
            if let Some(i) = p.asked.iter().position(|(a, _)| *a == b) {
                p.asked.remove(i);
                self.picker.request_failed(peer, b);
                freed = true;
            }
        }
        // Without the fast extension a choke drops every request.
        for (b, _) in p.asked.drain(..) {
            self.picker.request_failed(peer, b);
            freed = true;
        }
        if freed {
            self.fill_all();
        }
    }

    pub fn unchoked(&mut self, peer: PeerId, now_ms: u64) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.choking = false;
            p.last_data_ms = now_ms;
        }
        self.fill(peer);
    }

    pub fn rejected(&mut self, peer: PeerId, r: BlockRef) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let b = to_block(&r);
        if let Some(i) = p.asked.iter().position(|(a, _)| *a == b) {
            p.asked.remove(i);
            self.picker.request_failed(peer, b);
            self.fill_all();
        }
    }

    /// A block nobody asked for.
    pub fn unrequested(&mut self, peer: PeerId, length: u32) {
        self.counters.wasted += u64::from(length);
        if let Some(p) = self.peers.get_mut(&peer) {
            p.unrequested += 1;
            if p.unrequested > self.limits.max_unrequested {
                self.out
                    .push(Action::Close(peer, "sends blocks nobody asked for".into()));
            }
        }
    }

    /// A block arrived.
    pub fn block(&mut self, peer: PeerId, r: BlockRef, data: &[u8], now_ms: u64) {
        let b = to_block(&r);
        let expected = self.layout.block_len(b);
        if r.begin % BLOCK != 0
            || data.len() != expected as usize
            || b.piece >= self.layout.piece_count
        {
            return self.unrequested(peer, data.len() as u32);
        }
        if let Some(complete) = self.arrived(peer, b, now_ms) {
            let len = self.layout.piece_len(b.piece) as usize;
            let buf = self.buffers.entry(b.piece).or_insert_with(|| vec![0; len]);
            let at = r.begin as usize;
            buf[at..at + data.len()].copy_from_slice(data);
            if complete {
                let data = self.buffers.remove(&b.piece).unwrap_or_default();
                self.verify(b.piece, data);
            }
        }
        self.fill(peer);
    }

    /// A whole piece arrived at once (a webseed's GET): taken as the piece's buffer without a
    /// copy when every block of it is asked of this peer and none has arrived yet from anyone;
    /// otherwise handed back, to be given block by block.
    pub fn piece(
        &mut self,
        peer: PeerId,
        piece: u32,
        data: Vec<u8>,
        now_ms: u64,
    ) -> Result<(), Vec<u8>> {
        let whole = piece < self.layout.piece_count
            && data.len() == self.layout.piece_len(piece) as usize
            && !self.buffers.contains_key(&piece);
        let asked = |p: &Peer| {
            (0..self.layout.blocks(piece)).all(|index| {
                let b = Block { piece, index };
                p.asked.iter().any(|(a, _)| *a == b)
            })
        };
        if !whole || !self.peers.get(&peer).is_some_and(asked) {
            return Err(data);
        }
        let mut complete = false;
        for index in 0..self.layout.blocks(piece) {
            complete = self.arrived(peer, Block { piece, index }, now_ms) == Some(true);
        }
        if complete {
            self.verify(piece, data);
        } else {
            // Not reached (no block had arrived): keep what was accepted all the same.
            self.buffers.insert(piece, data);
        }
        self.fill(peer);
        Ok(())
    }

    /// Books one block of `peer`'s: Some(piece complete) when it is kept.
    fn arrived(&mut self, peer: PeerId, b: Block, now_ms: u64) -> Option<bool> {
        let len = self.layout.block_len(b);
        if let Some(p) = self.peers.get_mut(&peer) {
            if let Some(i) = p.asked.iter().position(|(a, _)| *a == b) {
                p.asked.remove(i);
            }
            p.period_bytes += u64::from(len);
            p.last_data_ms = now_ms;
            p.snubbed = false;
        }
        match self.picker.received(peer, b) {
            Arrival::Kept { complete, cancel } => {
                self.counters.downloaded += u64::from(len);
                for other in cancel {
                    if let Some(o) = self.peers.get_mut(&other) {
                        if let Some(i) = o.asked.iter().position(|(a, _)| *a == b) {
                            o.asked.remove(i);
                            let r = BlockRef {
                                index: b.piece,
                                begin: b.index * BLOCK,
                                length: len,
                            };
                            self.out.push(Action::Cancel(other, r));
                        }
                    }
                }
                Some(complete)
            }
            Arrival::Duplicate => {
                self.counters.wasted += u64::from(len);
                None
            }
            Arrival::Unrequested => {
                self.unrequested(peer, len);
                None
            }
        }
    }

    /// A complete piece goes to be hashed.
    fn verify(&mut self, piece: u32, data: Vec<u8>) {
        let blocks = self.ban.remembered() > 0;
        self.out.push(Action::Verify {
            piece,
            data,
            blocks,
        });
    }

    /// The expected SHA-1 of a piece.
    pub fn piece_hash(&self, piece: u32) -> Option<[u8; 20]> {
        self.hashes.get(piece as usize).copied()
    }

    /// A hash check ended. `blocks`: the SHA-1 of each block, when asked for or when the
    /// piece failed (the caller computes them then).
    pub fn verified(&mut self, piece: u32, data: Vec<u8>, ok: bool, blocks: Option<Vec<[u8; 20]>>) {
        if ok {
            if let Some(good) = &blocks {
                let bad = self.ban.piece_passed(piece, good);
                for peer in bad {
                    self.ban_peer(peer, "sent corrupt data (smart ban)");
                }
            }
            self.writing.insert(piece);
            self.out.push(Action::Write { piece, data });
            return;
        }
        let senders = self.picker.senders(piece);
        self.counters.failed_pieces += 1;
        self.counters.wasted += data.len() as u64;
        self.counters.downloaded = self.counters.downloaded.saturating_sub(data.len() as u64);
        let hashes = blocks.unwrap_or_default();
        let records: Vec<BlockRecord> = senders
            .iter()
            .enumerate()
            .map(|(i, s)| s.zip(hashes.get(i).copied()))
            .collect();
        let mut distinct: Vec<PeerId> = senders.iter().flatten().copied().collect();
        distinct.sort_unstable();
        distinct.dedup();
        self.ban.piece_failed(piece, records);
        self.picker.hashed(piece, false);
        for id in &distinct {
            if let Some(p) = self.peers.get_mut(id) {
                p.hash_failures += 1;
            }
        }
        if let [only] = distinct[..] {
            let sole = self.peers.get_mut(&only).map(|p| {
                p.sole_failures += 1;
                p.sole_failures
            });
            if sole.is_some_and(|n| n >= SOLE_FAILURES) {
                self.ban_peer(only, "sent only corrupt pieces");
            }
        }
        self.fill_all();
    }

    /// A verified piece is on disk (`Err`: the write failed, it is fetched again).
    pub fn written(&mut self, piece: u32, ok: bool) {
        if !self.writing.remove(&piece) {
            return;
        }
        self.picker.hashed(piece, ok);
        if ok {
            self.out.push(Action::Have(piece));
            for (&id, p) in &mut self.peers {
                if p.interested && !p.bits.iter().any(|i| self.picker.wants(i)) {
                    p.interested = false;
                    self.out.push(Action::Interested(id, false));
                }
            }
            if self.is_done() && !self.complete_sent {
                self.complete_sent = true;
                self.out.push(Action::Complete);
            }
        }
        self.fill_all();
    }

    /// Reader `reader` wants `pieces` soon, most urgent first (its earlier list is
    /// replaced): they get the top priority and deadlines in that order, and peers that
    /// have them become interesting. False when the download has too many readers.
    pub fn want(&mut self, reader: u64, pieces: &[u32], now_ms: u64) -> bool {
        let pieces: Vec<u32> = pieces
            .iter()
            .copied()
            .filter(|&p| p < self.layout.piece_count)
            .collect();
        let Some(change) = self.readers.set(reader, &pieces) else {
            return false;
        };
        for p in change.released {
            self.release(p);
        }
        for (i, &p) in pieces.iter().enumerate() {
            if !self.picker.have().get(p) {
                self.picker.set_priority(p, 7);
                self.picker
                    .set_deadline(p, Some(super::readers::deadline(i, now_ms)));
            }
        }
        self.interest_changed();
        true
    }

    /// The reader is gone: what only it wanted goes back to its base priority at once.
    pub fn unwant(&mut self, reader: u64) {
        let released = self.readers.remove(reader);
        if released.is_empty() {
            return;
        }
        for p in released {
            self.release(p);
        }
        self.interest_changed();
    }

    /// No reader wants `piece` any more: its deadline goes, its priority is the base one
    /// (a started piece is finished at the lowest priority rather than left half-fetched).
    fn release(&mut self, piece: u32) {
        self.picker.set_deadline(piece, None);
        let base = self.base[piece as usize];
        let p = if base == 0 && self.picker.started(piece) {
            1
        } else {
            base
        };
        self.picker.set_priority(piece, p);
    }

    fn interest_changed(&mut self) {
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            self.update_interest(id);
        }
        self.fill_all();
    }

    /// Wanted by some reader right now (the piece cache keeps those).
    pub fn is_read(&self, piece: u32) -> bool {
        self.readers.wants(piece)
    }

    /// Readers with pieces wanted, and the distinct pieces they want.
    pub fn reader_counts(&self) -> (usize, usize) {
        (self.readers.len(), self.readers.wanted())
    }

    /// Fetch every piece (a pinned torrent): the base priority of all is at least 1.
    pub fn want_all(&mut self) {
        for p in 0..self.layout.piece_count {
            let b = &mut self.base[p as usize];
            *b = (*b).max(1);
            if !self.readers.wants(p) {
                self.picker.set_priority(p, *b);
            }
        }
        self.complete_sent = false;
        self.interest_changed();
        if self.is_done() {
            self.complete_sent = true;
            self.out.push(Action::Complete);
        }
    }

    /// The piece cache takes a had piece off the disk: it is not had from now on, and not
    /// fetched again before [`Download::evicted`]. False (nothing done) when it is not had,
    /// or a reader wants it.
    pub fn evict(&mut self, piece: u32) -> bool {
        if self.readers.wants(piece) || !self.picker.evict(piece) {
            return false;
        }
        if self.base[piece as usize] > 0 {
            self.complete_sent = false;
        }
        true
    }

    /// An evicted piece's bytes are gone: fetched again when wanted.
    pub fn evicted(&mut self, piece: u32) {
        if piece >= self.layout.piece_count {
            return;
        }
        self.picker.evicted(piece);
        if !self.readers.wants(piece) {
            self.picker.set_priority(piece, self.base[piece as usize]);
        }
        self.interest_changed();
    }

    /// The once-a-second clock: rates, snubs and request timeouts.
    pub fn tick(&mut self, now_ms: u64) {
        let dt = now_ms.saturating_sub(self.last_tick_ms).max(1);
        self.last_tick_ms = now_ms;
        let timeout = self.limits.request_timeout_ms;
        let mut snubbed = Vec::new();
        for (&id, p) in &mut self.peers {
            let now_rate = p.period_bytes * 1000 / dt;
            p.rate = if p.rate == 0 {
                now_rate
            } else {
                (p.rate * 2 + now_rate) / 3
            };
            p.peak = p.peak.max(p.rate);
            p.period_bytes = 0;
            if !p.asked.is_empty() && now_ms.saturating_sub(p.last_data_ms) > timeout {
                snubbed.push(id);
            }
        }
        for id in snubbed {
            let p = self.peers.get_mut(&id).expect("listed");
            p.snubbed = true;
            p.last_data_ms = now_ms;
            for (b, _) in p.asked.drain(..) {
                self.picker.request_failed(id, b);
                let r = BlockRef {
                    index: b.piece,
                    begin: b.index * BLOCK,
                    length: self.layout.block_len(b),
                };
                self.out.push(Action::Cancel(id, r));
            }
        }
        self.fill_all();
    }

    fn ban_peer(&mut self, peer: PeerId, why: &str) {
        let addr = self
            .peers
            .get(&peer)
            .map(|p| p.addr)
            .or_else(|| self.gone.iter().find(|(id, _)| *id == peer).map(|g| g.1));
        let Some(addr) = addr else {
            return;
        };
        if self.peers.get(&peer).is_some_and(|p| p.web) {
            log::warn!("webseed: {why}");
            return;
        }
        if self.banned.insert(addr) {
            log::info!("peer {addr}: banned: {why}");
            self.banned_addrs.push(addr);
        }
        let whole_ip = is_global(addr.ip());
        if whole_ip {
            self.banned_ips.insert(addr.ip());
        }
        for (&id, p) in &self.peers {
            if p.addr == addr || (whole_ip && p.addr.ip() == addr.ip()) {
                self.out.push(Action::Close(id, format!("banned: {why}")));
            }
        }
    }

    fn update_interest(&mut self, peer: PeerId) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let want = p.bits.iter().any(|i| self.picker.wants(i));
        if want != p.interested {
            p.interested = want;
            self.out.push(Action::Interested(peer, want));
        }
    }

    fn block_ref(&self, b: Block) -> BlockRef {
        BlockRef {
            index: b.piece,
            begin: b.index * BLOCK,
            length: self.layout.block_len(b),
        }
    }
}

/// Not loopback, private, link-local or unspecified.
fn is_global(ip: IpAddr) -> bool {
    match crate::tracker::canonical(ip) {
        IpAddr::V4(v) => {
            !(v.is_loopback() || v.is_private() || v.is_link_local() || v.is_unspecified())
        }
        IpAddr::V6(v) => {
            !(v.is_loopback() || v.is_unspecified() || (v.segments()[0] & 0xfe00) == 0xfc00)
        }
    }
}

fn to_block(r: &BlockRef) -> Block {
    Block {
        piece: r.index,
        index: r.begin / BLOCK,
    }
}

mod report;
mod requests;
pub use report::PeerRate;
pub use requests::{CRITICAL_PIECES, LATE_MS, SLOW_FACTOR};

#[cfg(test)]
#[path = "download_tests.rs"]
mod tests;
