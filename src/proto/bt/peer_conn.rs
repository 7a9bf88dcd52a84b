//! One peer connection, both directions, as a sans-IO state machine: bytes in, control
//! bytes and [`Event`]s out. Seeding: block requests are queued for the caller to read from
//! storage. Leeching: the caller says what it wants ([`PeerConn::set_interested`],
//! [`PeerConn::request`], [`PeerConn::cancel`], [`PeerConn::have`]) and gets the peer's
//! pieces, chokes, blocks and rejects back as events; the same connection does both.
//!
//! Phases: waiting for the peer's handshake -> waiting for the caller to find the torrent
//! (incoming connections) -> established -> closed. It validates everything the peer sends
//! (lengths, ranges, order, request counts, blocks nobody asked for, message floods) and
//! answers what it can by itself (our pieces, the extension handshake, `ut_metadata` pieces,
//! rejects). Choking decisions, piece picking, piece data and timers belong to the caller;
//! time comes in as a number.
//!
//! A magnet connection ([`PeerConn::outgoing_magnet`]) starts knowing only the info-hash: it
//! asks for `ut_metadata` pieces ([`PeerConn::request_metadata`]) and keeps the peer's
//! bitfield and haves until [`PeerConn::set_shape`] (in `peer_conn_ext.rs`, with the extension messages).

use crate::proto::bt::peer_ext::{ExtHandshake, Pex};
use crate::proto::bt::peer_wire::{
    self, bit, reserved, BlockRef, FrameLimits, Handshake, Message, HANDSHAKE_LEN, MAX_BLOCK,
};
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;

/// Messages that change nothing (keep-alives, repeats, unknown ids, rejected requests) a peer
/// may send per [`CHATTER_WINDOW_MS`] before it is disconnected for flooding.
pub const CHATTER_LIMIT: u32 = 500;
pub const CHATTER_WINDOW_MS: u64 = 10_000;
/// Bytes a peer may send before we know its torrent.
const MAX_EARLY_BYTES: usize = 64 * 1024;
/// Unsent control bytes (metadata pieces, rejects) past which a peer that keeps asking is
/// taken not to read: without it one burst of metadata requests could queue megabytes.
pub const MAX_UNSENT: usize = 256 * 1024;

/// What a seeder needs to know about a torrent.
#[derive(Debug)]
pub struct Shape {
    pub info_hash: [u8; 20],
    pub total: u64,
    pub piece_length: u64,
    pub pieces: u32,
    /// The bencoded info dict (served through `ut_metadata`).
    pub metadata: Arc<[u8]>,
}

impl Shape {
    pub fn new(info_hash: [u8; 20], total: u64, piece_length: u64, metadata: Arc<[u8]>) -> Shape {
        let pieces = if piece_length == 0 {
            0
        } else {
            total.div_ceil(piece_length).min(u32::MAX as u64) as u32
        };
        Shape {
            info_hash,
            total,
            piece_length,
            pieces,
            metadata,
        }
    }

    pub fn piece_size(&self, index: u32) -> u64 {
        let start = index as u64 * self.piece_length;
        self.piece_length.min(self.total.saturating_sub(start))
    }

    /// Whether a request lies inside the torrent and asks for 1 to 16 KiB.
    pub fn valid(&self, b: &BlockRef) -> bool {
        b.index < self.pieces
            && b.length > 0
            && b.length <= MAX_BLOCK
            && b.begin as u64 + b.length as u64 <= self.piece_size(b.index)
    }

    /// Byte offset of a block in the whole torrent.
    pub fn offset(&self, b: &BlockRef) -> u64 {
        b.index as u64 * self.piece_length + b.begin as u64
    }
}

/// Our side's fixed settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub peer_id: [u8; 20],
    pub client: &'static str,
    /// Most requests a peer may have queued with us (`reqq`).
    pub max_requests: u32,
    pub listen_port: Option<u16>,
    pub pex: bool,
}

/// What happened, for the caller to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An incoming peer named this torrent: call [`PeerConn::attach`] or close.
    Lookup([u8; 20]),
    /// The handshake is complete; the connection is established.
    Established,
    Interested(bool),
    /// New block requests are queued: see [`PeerConn::next_request`].
    Requests,
    /// The peer's extension handshake arrived (see [`PeerConn::peer`]).
    ExtHandshake,
    Pex(Pex),
    /// A `ut_metadata` piece was sent.
    MetadataServed,
    /// A `ut_metadata` piece we asked for arrived (at most 16 KiB; `total` is the size the
    /// peer gives for the whole info dict).
    Metadata {
        piece: u32,
        total: u64,
        data: Vec<u8>,
    },
    /// The peer refused a `ut_metadata` piece we asked for.
    MetadataRejected(u32),
    /// The peer has one more piece.
    PeerHave(u32),
    /// The peer announced its pieces anew (bitfield, have-all, have-none): see
    /// [`PeerConn::peer_bits`].
    PeerBitfield,
    /// The peer choked us. `dropped`: our requests it will not answer (without the fast
    /// extension a choke discards them; with it the peer rejects each).
    Choked {
        dropped: Vec<BlockRef>,
    },
    Unchoked,
    /// A block we asked for arrived.
    Block {
        block: BlockRef,
        data: Vec<u8>,
    },
    /// The peer refused one of our requests (BEP-6 reject).
    Rejected(BlockRef),
    /// A block nobody asked for (counted as chatter; the caller may hold it against the peer).
    Unrequested(BlockRef),
    /// Close the connection, for this reason.
    Close(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Handshake,
    Lookup,
    Established,
    Closed,
}

/// What we know about the remote peer.
#[derive(Debug, Clone, Default)]
pub struct PeerInfo {
    pub peer_id: [u8; 20],
    pub fast: bool,
    pub extended: bool,
    pub ext: ExtHandshake,
    /// Pieces the peer says it has.
    pub have: u32,
}

pub struct PeerConn {
    phase: Phase,
    settings: Arc<Settings>,
    remote_ip: Option<IpAddr>,
    /// Set for outgoing connections (we know the torrent from the start).
    shape: Option<Arc<Shape>>,
    limits: FrameLimits,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    peer: PeerInfo,
    peer_bits: Vec<u8>,
    choking: bool,
    interested: bool,
    /// Requests while choked since the last choke.
    choked_requests: u32,
    queue: VecDeque<BlockRef>,
    in_flight: u32,
    chatter: u32,
    window_start: u64,
    /// The pieces we have, in wire order; None: every piece (a stored file we seed).
    ours: Option<Vec<u8>>,
    am_interested: bool,
    peer_choking: bool,
    /// Our requests the peer has not answered yet, oldest first.
    asked: VecDeque<BlockRef>,
    /// A magnet connection: the info-hash, while the torrent's shape may still be unknown.
    magnet: Option<[u8; 20]>,
    /// What a magnet peer said of its pieces before the shape was known.
    early: ext::Early,
    /// `ut_metadata` pieces we asked for and the peer has not answered.
    metadata_asked: Vec<u32>,
}

impl PeerConn {
    /// A connection the peer opened: we wait for its handshake.
    pub fn incoming(settings: Arc<Settings>, remote_ip: Option<IpAddr>) -> PeerConn {
        PeerConn {
            phase: Phase::Handshake,
            settings,
            remote_ip,
            shape: None,
            limits: FrameLimits::for_torrent(0, 0),
            inbuf: Vec::new(),
            out: Vec::new(),
            peer: PeerInfo::default(),
            peer_bits: Vec::new(),
            choking: true,
            interested: false,
            choked_requests: 0,
            queue: VecDeque::new(),
            in_flight: 0,
            chatter: 0,
            window_start: 0,
            ours: None,
            am_interested: false,
            peer_choking: true,
            asked: VecDeque::new(),
            magnet: None,
            early: ext::Early::default(),
            metadata_asked: Vec::new(),
        }
    }

    /// Which pieces we have (wire-order bits), for a torrent we are still downloading; must
    /// be called before the connection is established (we send it then).
    pub fn set_ours(&mut self, bits: Vec<u8>) {
        self.ours = Some(bits);
    }

    /// The peer's pieces in wire order (empty until it said, or after have-none; all ones
    /// for have-all).
    pub fn peer_bits(&self) -> &[u8] {
        &self.peer_bits
    }

    pub fn peer_has(&self, piece: u32) -> bool {
        bit(&self.peer_bits, piece)
    }

    pub fn is_peer_choking(&self) -> bool {
        self.peer_choking
    }

    pub fn am_interested(&self) -> bool {
        self.am_interested
    }

    /// Our requests not yet answered.
    pub fn asked(&self) -> usize {
        self.asked.len()
    }

    /// True when we lack nothing (we seed every piece).
    fn we_are_seed(&self) -> bool {
        match (&self.ours, &self.shape) {
            (None, _) => true,
            (Some(bits), Some(shape)) => {
                bits.iter().map(|b| b.count_ones()).sum::<u32>() >= shape.pieces
            }
            (Some(_), None) => false,
        }
    }

    /// Tells the peer whether we want something of it.
    pub fn set_interested(&mut self, yes: bool) {
        if self.phase != Phase::Established || self.am_interested == yes {
            return;
        }
        self.am_interested = yes;
        let m = if yes {
            Message::Interested
        } else {
            Message::NotInterested
        };
        peer_wire::write(&m, &mut self.out);
    }

    /// Asks the peer for a block. False (nothing sent) while it chokes us, before the
    /// connection is established, for a block outside the torrent or one already asked for.
    pub fn request(&mut self, b: BlockRef) -> bool {
        let valid = self.shape.as_ref().is_some_and(|s| s.valid(&b));
        if self.phase != Phase::Established
            || self.peer_choking
            || !valid
            || self.asked.contains(&b)
        {
            return false;
        }
        self.asked.push_back(b);
        peer_wire::write(&Message::Request(b), &mut self.out);
        true
    }

    /// Withdraws a request (endgame: another peer sent the block first).
    pub fn cancel(&mut self, b: BlockRef) {
        if let Some(i) = self.asked.iter().position(|q| *q == b) {
            self.asked.remove(i);
            if self.phase == Phase::Established {
                peer_wire::write(&Message::Cancel(b), &mut self.out);
            }
        }
    }

    /// We have a new piece: tell the peer (and remember it for a later bitfield).
    pub fn have(&mut self, piece: u32) {
        if self.shape.as_ref().is_none_or(|s| piece >= s.pieces) {
            return;
        }
        if let Some(bits) = self.ours.as_mut() {
            if let Some(byte) = bits.get_mut((piece / 8) as usize) {
                *byte |= 0x80 >> (piece % 8);
            }
        }
        if self.phase == Phase::Established {
            peer_wire::write(&Message::Have(piece), &mut self.out);
        }
    }

    /// We no longer have a piece (the fetch-through cache evicted it; the wire has no
    /// "un-have"): queued and later requests for it are refused ([`PeerConn::refuse_missing`]).
    pub fn lost(&mut self, piece: u32) {
        if let Some(bits) = self.ours.as_mut() {
            if let Some(byte) = bits.get_mut((piece / 8) as usize) {
                *byte &= !(0x80 >> (piece % 8));
            }
        }
        let (gone, kept): (Vec<BlockRef>, Vec<BlockRef>) =
            self.queue.drain(..).partition(|b| b.index == piece);
        self.queue = kept.into();
        for b in gone {
            self.refuse_missing(b);
        }
    }

    /// A request for a piece we do not have (any more) is never left unanswered: a reject
    /// (BEP-6) when the peer has the fast extension; else a choke, which by BEP-3 tells it
    /// every request of its is dropped (it asks again for the rest once unchoked).
    pub fn refuse_missing(&mut self, b: BlockRef) {
        if self.peer.fast {
            self.reject(b);
        } else {
            self.choke();
        }
    }

    /// A connection we open to a peer of `shape`'s torrent: our handshake goes first.
    pub fn outgoing(
        settings: Arc<Settings>,
        remote_ip: Option<IpAddr>,
        shape: Arc<Shape>,
    ) -> PeerConn {
        let mut c = PeerConn::incoming(settings, remote_ip);
        c.write_handshake(shape.info_hash);
        c.limits = FrameLimits::for_torrent(shape.pieces, shape.metadata.len() as u32);
        c.shape = Some(shape);
        c
    }

    pub fn is_established(&self) -> bool {
        self.phase == Phase::Established
    }

    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }

    pub fn shape(&self) -> Option<&Arc<Shape>> {
        self.shape.as_ref()
    }

    pub fn is_choking(&self) -> bool {
        self.choking
    }

    pub fn is_interested(&self) -> bool {
        self.interested
    }

    /// Whether the peer has every piece (a seed has nothing to get from us).
    pub fn peer_is_seed(&self) -> bool {
        self.shape
            .as_ref()
            .is_some_and(|s| s.pieces > 0 && self.peer.have >= s.pieces)
    }

    /// Requests queued plus handed out and not yet served.
    pub fn requests(&self) -> usize {
        self.queue.len() + self.in_flight as usize
    }

    /// Bytes buffered from the peer but not yet parsed.
    pub fn buffered(&self) -> usize {
        self.inbuf.len()
    }

    /// Control bytes to send (handshake, messages); the caller sends them in order, before
    /// any piece it adds after this call.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    fn write_handshake(&mut self, info_hash: [u8; 20]) {
        let mut bits = [0u8; 8];
        reserved::set(&mut bits, reserved::EXTENDED);
        reserved::set(&mut bits, reserved::FAST);
        Handshake {
            reserved: bits,
            info_hash,
            peer_id: self.settings.peer_id,
        }
        .write(&mut self.out);
    }

    fn close(&mut self, why: impl Into<String>, events: &mut Vec<Event>) {
        if self.phase != Phase::Closed {
            self.phase = Phase::Closed;
            self.queue.clear();
            self.asked.clear();
            events.push(Event::Close(why.into()));
        }
    }

    /// Feeds bytes read from the socket.
    pub fn receive(&mut self, data: &[u8], now_ms: u64, events: &mut Vec<Event>) {
        if self.phase == Phase::Closed {
            return;
        }
        self.inbuf.extend_from_slice(data);
        self.process(now_ms, events);
        if self.inbuf.is_empty() && self.inbuf.capacity() > 64 * 1024 {
            self.inbuf = Vec::new();
        }
    }

    fn process(&mut self, now_ms: u64, events: &mut Vec<Event>) {
        if self.phase == Phase::Handshake {
            match Handshake::parse(&self.inbuf) {
                Err(e) => return self.close(e.to_string(), events),
                Ok(None) => return,
                Ok(Some(hs)) => {
                    self.inbuf.drain(..HANDSHAKE_LEN);
                    if hs.peer_id == self.settings.peer_id {
                        return self.close("connected to ourselves", events);
                    }
                    self.peer.peer_id = hs.peer_id;
                    self.peer.fast = reserved::has(&hs.reserved, reserved::FAST);
                    self.peer.extended = reserved::has(&hs.reserved, reserved::EXTENDED);
                    let ours = self.shape.as_ref().map(|s| s.info_hash).or(self.magnet);
                    match ours {
                        Some(ih) if ih != hs.info_hash => {
                            return self.close("peer answered with another info-hash", events)
                        }
                        Some(_) => self.establish(events),
                        None => {
                            self.phase = Phase::Lookup;
                            events.push(Event::Lookup(hs.info_hash));
                            return;
                        }
                    }
                }
            }
        }
        if self.phase == Phase::Lookup {
            if self.inbuf.len() > MAX_EARLY_BYTES {
                self.close("too many bytes before the torrent was found", events);
            }
            return;
        }
        let mut used = 0;
        while self.phase == Phase::Established {
            let buf = std::mem::take(&mut self.inbuf);
            if self.shape.is_none() {
                // A magnet peer's bitfield has a length we cannot check yet.
                match self.early_bitfield(&buf[used..], events) {
                    ext::Frame::Taken(n) => {
                        self.inbuf = buf;
                        used += n;
                        continue;
                    }
                    ext::Frame::Incomplete => {
                        self.inbuf = buf;
                        break;
                    }
                    ext::Frame::Other => {}
                }
            }
            let step = peer_wire::parse_frame(&buf[used..], &self.limits);
            match step {
                Err(e) => {
                    self.inbuf = buf;
                    return self.close(e.to_string(), events);
                }
                Ok(None) => {
                    self.inbuf = buf;
                    break;
                }
                Ok(Some((msg, n))) => {
                    self.handle(msg, now_ms, events);
                    self.inbuf = buf;
                    used += n;
                }
            }
        }
        self.inbuf.drain(..used.min(self.inbuf.len()));
    }

    /// The caller found the torrent an incoming peer asked for.
    pub fn attach(&mut self, shape: Arc<Shape>, now_ms: u64, events: &mut Vec<Event>) {
        if self.phase != Phase::Lookup {
            return;
        }
        self.write_handshake(shape.info_hash);
        self.limits = FrameLimits::for_torrent(shape.pieces, shape.metadata.len() as u32);
        self.shape = Some(shape);
        self.establish(events);
        self.process(now_ms, events);
    }

    fn establish(&mut self, events: &mut Vec<Event>) {
        self.phase = Phase::Established;
        let Some(shape) = self.shape.clone() else {
            // A magnet connection has nothing yet; what it gets goes out as haves.
            if self.peer.fast {
                peer_wire::write(&Message::HaveNone, &mut self.out);
            }
            self.send_ext_handshake(None);
            return events.push(Event::Established);
        };
        match &self.ours {
            None if self.peer.fast => peer_wire::write(&Message::HaveAll, &mut self.out),
            None => peer_wire::write(
                &Message::Bitfield(&peer_wire::full_bitfield(shape.pieces)),
                &mut self.out,
            ),
            Some(bits) if bits.iter().all(|&b| b == 0) && self.peer.fast => {
                peer_wire::write(&Message::HaveNone, &mut self.out)
            }
            // Without the fast extension a client with nothing may send no bitfield at all.
            Some(bits) if bits.iter().all(|&b| b == 0) => {}
            Some(bits) => {
                let bits = bits.clone();
                peer_wire::write(&Message::Bitfield(&bits), &mut self.out);
            }
        }
        self.send_ext_handshake(Some(shape.metadata.len() as u64));
        events.push(Event::Established);
    }

    fn chatter(&mut self, now_ms: u64, events: &mut Vec<Event>) {
        if now_ms.saturating_sub(self.window_start) >= CHATTER_WINDOW_MS {
            self.window_start = now_ms;
            self.chatter = 0;
        }
        self.chatter += 1;
        if self.chatter > CHATTER_LIMIT {
            self.close("flood of messages that change nothing", events);
        }
    }

    fn reject(&mut self, b: BlockRef) {
        if self.peer.fast {
            peer_wire::write(&Message::Reject(b), &mut self.out);
        }
    }

    fn handle(&mut self, msg: Message<'_>, now_ms: u64, events: &mut Vec<Event>) {
        // BEP-3 wants the bitfield (BEP-6: or have-all/none) as the first message, but
        // clients send the extension handshake, allowed-fast and interested first, and aria2c
        // follows have-none with a bitfield later: each replaces what we knew.
        let Some(shape) = self.shape.clone() else {
            return self.handle_early(msg, now_ms, events);
        };
        match msg {
            Message::Request(b) => {
                if !shape.valid(&b) {
                    self.reject(b);
                    return self.close(
                        format!(
                            "request outside the torrent: piece {} offset {} length {}",
                            b.index, b.begin, b.length
                        ),
                        events,
                    );
                }
                if self.ours.as_ref().is_some_and(|o| !bit(o, b.index)) {
                    // A piece we do not have (any more): refused, never read from disk.
                    self.refuse_missing(b);
                } else if self.choking {
                    self.reject(b);
                    self.choked_requests += 1;
                    if self.choked_requests > self.settings.max_requests + 64 {
                        self.close("requests while choked", events);
                    }
                } else if self.requests() >= self.settings.max_requests as usize {
                    self.reject(b);
                    self.chatter(now_ms, events);
                } else if self.queue.contains(&b) {
                    self.chatter(now_ms, events);
                } else {
                    self.queue.push_back(b);
                    if self.queue.len() == 1 {
                        events.push(Event::Requests);
                    }
                }
            }
            Message::Have(i) => {
                if i >= shape.pieces {
                    return self.close(format!("have {i} of {} pieces", shape.pieces), events);
                }
                if self.peer_bits.is_empty() {
                    self.peer_bits = vec![0; shape.pieces.div_ceil(8) as usize];
                }
                if bit(&self.peer_bits, i) {
                    self.chatter(now_ms, events);
                } else {
                    self.peer_bits[(i / 8) as usize] |= 0x80 >> (i % 8);
                    self.peer.have += 1;
                    events.push(Event::PeerHave(i));
                    self.check_seed(events);
                }
            }
            Message::Bitfield(bits) => {
                let spare = bits.len() as u32 * 8 - shape.pieces;
                if spare > 0 && bits.last().is_some_and(|b| b & ((1u8 << spare) - 1) != 0) {
                    return self.close("bitfield has spare bits set", events);
                }
                self.peer.have = bits.iter().map(|b| b.count_ones()).sum();
                self.peer_bits = bits.to_vec();
                events.push(Event::PeerBitfield);
                self.check_seed(events);
            }
            Message::HaveAll | Message::HaveNone if !self.peer.fast => {
                self.close("fast-extension message without the fast extension", events)
            }
            Message::HaveAll => {
                self.peer.have = shape.pieces;
                self.peer_bits = peer_wire::full_bitfield(shape.pieces);
                events.push(Event::PeerBitfield);
                self.check_seed(events);
            }
            Message::HaveNone => {
                self.peer.have = 0;
                self.peer_bits.clear();
                events.push(Event::PeerBitfield);
            }
            other => self.handle_common(other, now_ms, events),
        }
    }

    /// Messages that do not depend on the torrent's shape.
    fn handle_common(&mut self, msg: Message<'_>, now_ms: u64, events: &mut Vec<Event>) {
        match msg {
            Message::Cancel(b) => {
                if let Some(i) = self.queue.iter().position(|q| *q == b) {
                    self.queue.remove(i);
                    self.reject(b);
                } else {
                    self.chatter(now_ms, events);
                }
            }
            Message::Interested if !self.interested => {
                self.interested = true;
                events.push(Event::Interested(true));
            }
            Message::NotInterested if self.interested => {
                self.interested = false;
                events.push(Event::Interested(false));
            }
            Message::Choke => {
                if self.peer_choking {
                    return self.chatter(now_ms, events);
                }
                self.peer_choking = true;
                let dropped = if self.peer.fast {
                    Vec::new()
                } else {
                    self.asked.drain(..).collect()
                };
                events.push(Event::Choked { dropped });
            }
            Message::Unchoke => {
                if !self.peer_choking {
                    return self.chatter(now_ms, events);
                }
                self.peer_choking = false;
                events.push(Event::Unchoked);
            }
            Message::Piece { index, begin, data } => {
                let block = BlockRef {
                    index,
                    begin,
                    length: data.len() as u32,
                };
                match self.asked.iter().position(|q| *q == block) {
                    Some(i) => {
                        self.asked.remove(i);
                        events.push(Event::Block {
                            block,
                            data: data.to_vec(),
                        });
                    }
                    None => {
                        self.chatter(now_ms, events);
                        events.push(Event::Unrequested(block));
                    }
                }
            }
            Message::Reject(b) if self.peer.fast => match self.asked.iter().position(|q| *q == b) {
                Some(i) => {
                    self.asked.remove(i);
                    events.push(Event::Rejected(b));
                }
                None => self.chatter(now_ms, events),
            },
            Message::Extended { id, payload } => self.extended(id, payload, now_ms, events),
            Message::Port(_) => {}
            _ => self.chatter(now_ms, events),
        }
    }

    fn check_seed(&mut self, events: &mut Vec<Event>) {
        if self.peer_is_seed() && self.we_are_seed() {
            self.close("peer is a seed too", events);
        }
    }

    /// The next queued request to read from storage; it counts as in flight until
    /// [`PeerConn::served`].
    pub fn next_request(&mut self) -> Option<BlockRef> {
        let b = self.queue.pop_front()?;
        self.in_flight += 1;
        Some(b)
    }

    /// A request taken with `next_request` was sent (or dropped).
    pub fn served(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// A request taken with `next_request` could not be read: reject it.
    pub fn failed(&mut self, b: BlockRef) {
        self.served();
        self.reject(b);
    }

    pub fn choke(&mut self) {
        if self.choking || self.phase != Phase::Established {
            return;
        }
        self.choking = true;
        self.choked_requests = 0;
        peer_wire::write(&Message::Choke, &mut self.out);
        // With the fast extension a choke no longer cancels requests implicitly.
        for b in std::mem::take(&mut self.queue) {
            self.reject(b);
        }
    }

    pub fn unchoke(&mut self) {
        if !self.choking || self.phase != Phase::Established {
            return;
        }
        self.choking = false;
        peer_wire::write(&Message::Unchoke, &mut self.out);
    }

    pub fn keep_alive(&mut self) {
        peer_wire::write(&Message::KeepAlive, &mut self.out);
    }
}

#[path = "peer_conn_ext.rs"]
mod ext;
pub use ext::{MAX_EARLY_PIECES, MAX_METADATA_ASKED};

#[cfg(test)]
#[path = "peer_conn_tests.rs"]
mod tests;
