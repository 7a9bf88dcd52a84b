//! The seeding side of one peer connection as a sans-IO state machine: bytes in, control
//! bytes and [`Event`]s out, block requests queued for the caller to read from storage.
//!
//! Phases: waiting for the peer's handshake -> waiting for the caller to find the torrent
//! (incoming connections) -> established -> closed. It validates everything the peer sends
//! (lengths, ranges, order, request counts, message floods) and answers what it can by itself
//! (bitfield or have-all, the extension handshake, `ut_metadata` pieces, rejects). Choking
//! decisions, piece data and timers belong to the caller; time comes in as a number.

use crate::proto::bt::peer_ext::{self, ExtHandshake, MetadataMsg, OurHandshake, Pex};
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
    /// An incoming peer named this torrent: call [`SeedConn::attach`] or close.
    Lookup([u8; 20]),
    /// The handshake is complete; the connection is established.
    Established,
    Interested(bool),
    /// New block requests are queued: see [`SeedConn::next_request`].
    Requests,
    /// The peer's extension handshake arrived (see [`SeedConn::peer`]).
    ExtHandshake,
    Pex(Pex),
    /// A `ut_metadata` piece was sent.
    MetadataServed,
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

pub struct SeedConn {
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
}

impl SeedConn {
    /// A connection the peer opened: we wait for its handshake.
    pub fn incoming(settings: Arc<Settings>, remote_ip: Option<IpAddr>) -> SeedConn {
        SeedConn {
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
        }
    }

    /// A connection we open to a peer of `shape`'s torrent: our handshake goes first.
    pub fn outgoing(
        settings: Arc<Settings>,
        remote_ip: Option<IpAddr>,
        shape: Arc<Shape>,
    ) -> SeedConn {
        let mut c = SeedConn::incoming(settings, remote_ip);
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
                    match &self.shape {
                        Some(shape) if shape.info_hash != hs.info_hash => {
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
        let shape = Arc::clone(self.shape.as_ref().expect("established with a torrent"));
        if self.peer.fast {
            peer_wire::write(&Message::HaveAll, &mut self.out);
        } else {
            peer_wire::write(
                &Message::Bitfield(&peer_wire::full_bitfield(shape.pieces)),
                &mut self.out,
            );
        }
        if self.peer.extended {
            let ours = OurHandshake {
                client: self.settings.client,
                reqq: self.settings.max_requests,
                port: self.settings.listen_port,
                metadata_size: Some(shape.metadata.len() as u64),
                yourip: self.remote_ip,
                pex: self.settings.pex,
            }
            .encode();
            peer_wire::write(
                &Message::Extended {
                    id: 0,
                    payload: &ours,
                },
                &mut self.out,
            );
        }
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
        let shape = Arc::clone(self.shape.as_ref().expect("established with a torrent"));
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
                if self.choking {
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
                self.check_seed(events);
            }
            Message::HaveAll | Message::HaveNone if !self.peer.fast => {
                self.close("fast-extension message without the fast extension", events)
            }
            Message::HaveAll => {
                self.peer.have = shape.pieces;
                self.check_seed(events);
            }
            Message::HaveNone => {
                self.peer.have = 0;
                self.peer_bits.clear();
            }
            Message::Extended { id, payload } => self.extended(id, payload, now_ms, events),
            Message::Port(_) => {}
            _ => self.chatter(now_ms, events),
        }
    }

    fn check_seed(&mut self, events: &mut Vec<Event>) {
        if self.peer_is_seed() {
            self.close("peer is a seed too", events);
        }
    }

    fn extended(&mut self, id: u8, payload: &[u8], now_ms: u64, events: &mut Vec<Event>) {
        match id {
            0 => match ExtHandshake::parse(payload) {
                Ok(h) => {
                    self.peer.ext = h;
                    events.push(Event::ExtHandshake);
                    self.chatter(now_ms, events);
                }
                Err(e) => self.close(e.to_string(), events),
            },
            peer_ext::OUR_UT_METADATA => {
                self.chatter(now_ms, events);
                if self.out.len() > MAX_UNSENT {
                    return self.close("peer asks for metadata but does not read it", events);
                }
                let reply = match MetadataMsg::parse(payload) {
                    Err(e) => return self.close(e.to_string(), events),
                    Ok(MetadataMsg::Request { piece }) => piece,
                    Ok(_) => return,
                };
                let Some(their_id) = self.peer.ext.ut_metadata else {
                    return self.close("ut_metadata request before announcing it", events);
                };
                let metadata = Arc::clone(&self.shape.as_ref().expect("established").metadata);
                let mut body = Vec::new();
                match peer_ext::metadata_piece(&metadata, reply) {
                    Some(data) => {
                        MetadataMsg::Data {
                            piece: reply,
                            total_size: metadata.len() as u64,
                            data,
                        }
                        .write(&mut body);
                        events.push(Event::MetadataServed);
                    }
                    None => MetadataMsg::Reject { piece: reply }.write(&mut body),
                }
                peer_wire::write(
                    &Message::Extended {
                        id: their_id,
                        payload: &body,
                    },
                    &mut self.out,
                );
            }
            peer_ext::OUR_UT_PEX if self.settings.pex => {
                self.chatter(now_ms, events);
                match Pex::parse(payload) {
                    Ok(p) => events.push(Event::Pex(p)),
                    Err(e) => self.close(e.to_string(), events),
                }
            }
            _ => self.chatter(now_ms, events),
        }
    }

    /// The next queued request to read from storage; it counts as in flight until
    /// [`SeedConn::served`].
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

    /// Sends a PEX message if the peer speaks ut_pex.
    pub fn send_pex(&mut self, pex: &Pex) -> bool {
        let Some(id) = self.peer.ext.ut_pex.filter(|_| self.settings.pex) else {
            return false;
        };
        if self.phase != Phase::Established {
            return false;
        }
        peer_wire::write(
            &Message::Extended {
                id,
                payload: &pex.encode(),
            },
            &mut self.out,
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::bt::peer_wire::parse_frame;

    fn settings() -> Arc<Settings> {
        Arc::new(Settings {
            peer_id: *b"-TG0001-aaaaaaaaaaaa",
            client: "test",
            max_requests: 4,
            listen_port: Some(6881),
            pex: true,
        })
    }

    fn shape() -> Arc<Shape> {
        // 3 pieces of 32 KiB, the last one 10 bytes.
        Arc::new(Shape::new(
            [1; 20],
            2 * 32768 + 10,
            32768,
            Arc::from(vec![b'x'; 20000]),
        ))
    }

    fn handshake(fast: bool, ext: bool) -> Vec<u8> {
        let mut r = [0u8; 8];
        if fast {
            reserved::set(&mut r, reserved::FAST);
        }
        if ext {
            reserved::set(&mut r, reserved::EXTENDED);
        }
        let mut out = Vec::new();
        Handshake {
            reserved: r,
            info_hash: [1; 20],
            peer_id: [2; 20],
        }
        .write(&mut out);
        out
    }

    fn msg(m: Message<'_>) -> Vec<u8> {
        let mut v = Vec::new();
        peer_wire::write(&m, &mut v);
        v
    }

    fn frames(bytes: &[u8]) -> Vec<Message<'_>> {
        let lim = FrameLimits::for_torrent(3, 20000);
        let mut at = 0;
        let mut out = Vec::new();
        while let Some((m, n)) = parse_frame(&bytes[at..], &lim).unwrap() {
            out.push(m);
            at += n;
        }
        assert_eq!(at, bytes.len());
        out
    }

    /// An established incoming connection and what it said after the handshake.
    fn established(fast: bool, ext: bool) -> (SeedConn, Vec<u8>) {
        let mut c = SeedConn::incoming(settings(), Some("127.0.0.1".parse().unwrap()));
        let mut ev = Vec::new();
        c.receive(&handshake(fast, ext), 0, &mut ev);
        assert_eq!(ev, vec![Event::Lookup([1; 20])]);
        ev.clear();
        c.attach(shape(), 0, &mut ev);
        assert_eq!(ev, vec![Event::Established]);
        let out = c.take_output();
        assert_eq!(
            &out[..HANDSHAKE_LEN - 20],
            &handshake(true, true)[..HANDSHAKE_LEN - 20]
        );
        (c, out[HANDSHAKE_LEN..].to_vec())
    }

    #[test]
    fn greets_with_bitfield_or_have_all_and_extension_handshake() {
        let (_, out) = established(false, false);
        assert_eq!(frames(&out), vec![Message::Bitfield(&[0xe0])]);
        let (c, out) = established(true, true);
        let f = frames(&out);
        assert_eq!(f[0], Message::HaveAll);
        let Message::Extended { id: 0, payload } = f[1] else {
            panic!("{f:?}")
        };
        let h = ExtHandshake::parse(payload).unwrap();
        assert_eq!(h.metadata_size, Some(20000));
        assert_eq!(h.reqq, Some(4));
        assert_eq!(c.peer().peer_id, [2; 20]);
    }

    #[test]
    fn serves_requests_only_when_unchoked_and_within_reqq() {
        let (mut c, _) = established(true, false);
        let mut ev = Vec::new();
        let b = BlockRef {
            index: 2,
            begin: 0,
            length: 10,
        };
        c.receive(&msg(Message::Interested), 1, &mut ev);
        assert_eq!(ev, vec![Event::Interested(true)]);
        ev.clear();
        c.receive(&msg(Message::Request(b)), 1, &mut ev);
        assert_eq!(frames(&c.take_output()), vec![Message::Reject(b)], "choked");
        c.unchoke();
        assert_eq!(frames(&c.take_output()), vec![Message::Unchoke]);
        for begin in 0..6 {
            let b = BlockRef {
                index: 0,
                begin: begin * 16,
                length: 16,
            };
            c.receive(&msg(Message::Request(b)), 2, &mut ev);
        }
        assert_eq!(ev, vec![Event::Requests]);
        assert_eq!(c.requests(), 4);
        assert_eq!(frames(&c.take_output()).len(), 2, "two over reqq rejected");
        let first = c.next_request().unwrap();
        assert_eq!(first.begin, 0);
        c.served();
        // A cancel of a queued request rejects it (fast extension).
        let second = BlockRef {
            index: 0,
            begin: 16,
            length: 16,
        };
        c.receive(&msg(Message::Cancel(second)), 3, &mut ev);
        assert_eq!(frames(&c.take_output()), vec![Message::Reject(second)]);
        c.choke();
        let out = c.take_output();
        assert_eq!(frames(&out).len(), 3, "choke plus two rejects");
        assert_eq!(c.requests(), 0);
    }

    #[test]
    fn out_of_range_request_closes() {
        for b in [
            BlockRef {
                index: 3,
                begin: 0,
                length: 1,
            },
            BlockRef {
                index: 2,
                begin: 0,
                length: 11,
            },
            BlockRef {
                index: 0,
                begin: 0,
                length: 0,
            },
            BlockRef {
                index: 0,
                begin: u32::MAX,
                length: 16,
            },
        ] {
            let (mut c, _) = established(false, false);
            let mut ev = Vec::new();
            c.receive(&msg(Message::Request(b)), 0, &mut ev);
            assert!(matches!(ev.last(), Some(Event::Close(_))), "{b:?}");
            assert!(c.is_closed());
        }
    }

    #[test]
    fn hostile_input_closes() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (msg(Message::Have(3)), "have"),
            (msg(Message::Bitfield(&[0x01])), "spare"),
            (msg(Message::HaveAll), "seed"),
            (vec![0xff; 8], "limit"),
            ([0, 0, 0, 2, 4, 0].to_vec(), "cannot be"),
            (vec![0; 4 * (CHATTER_LIMIT as usize + 1)], "flood"),
        ];
        for (bytes, why) in cases {
            let (mut c, _) = established(true, true);
            let mut ev = Vec::new();
            c.receive(&bytes, 0, &mut ev);
            match ev.last() {
                Some(Event::Close(r)) => assert!(r.contains(why), "{why}: {r}"),
                other => panic!("{why}: {other:?}"),
            }
        }
        let mut c = SeedConn::incoming(settings(), None);
        let mut ev = Vec::new();
        c.receive(b"GET / HTTP/1.1\r\n", 0, &mut ev);
        assert!(matches!(&ev[..], [Event::Close(_)]));
    }

    #[test]
    fn requests_while_choked_are_tolerated_up_to_a_point() {
        let (mut c, _) = established(false, false);
        let mut ev = Vec::new();
        let b = msg(Message::Request(BlockRef {
            index: 0,
            begin: 0,
            length: 16,
        }));
        c.receive(&b.repeat(68), 0, &mut ev);
        assert!(ev.is_empty(), "a burst after a choke is a race");
        c.receive(&b, 0, &mut ev);
        assert!(matches!(ev.last(), Some(Event::Close(_))));
    }

    #[test]
    fn serves_metadata_pieces() {
        let (mut c, _) = established(true, true);
        let mut ev = Vec::new();
        let hs = OurHandshake {
            client: "x",
            reqq: 10,
            port: None,
            metadata_size: None,
            yourip: None,
            pex: false,
        }
        .encode();
        c.receive(
            &msg(Message::Extended {
                id: 0,
                payload: &hs,
            }),
            0,
            &mut ev,
        );
        for piece in [0u32, 1, 2] {
            let mut req = Vec::new();
            MetadataMsg::Request { piece }.write(&mut req);
            c.receive(
                &msg(Message::Extended {
                    id: peer_ext::OUR_UT_METADATA,
                    payload: &req,
                }),
                0,
                &mut ev,
            );
            let out = c.take_output();
            let f = frames(&out);
            let Message::Extended { id, payload } = f[0] else {
                panic!()
            };
            assert_eq!(id, peer_ext::OUR_UT_METADATA);
            match (piece, MetadataMsg::parse(payload).unwrap()) {
                (
                    0,
                    MetadataMsg::Data {
                        data, total_size, ..
                    },
                ) => {
                    assert_eq!((data.len(), total_size), (16384, 20000))
                }
                (1, MetadataMsg::Data { data, .. }) => assert_eq!(data.len(), 20000 - 16384),
                (2, MetadataMsg::Reject { piece: 2 }) => {}
                other => panic!("{other:?}"),
            }
        }
        assert!(!c.is_closed());
    }

    #[test]
    fn metadata_requests_cannot_queue_without_bound() {
        let (mut c, _) = established(true, true);
        let mut ev = Vec::new();
        let hs = OurHandshake {
            client: "x",
            reqq: 10,
            port: None,
            metadata_size: None,
            yourip: None,
            pex: false,
        }
        .encode();
        c.receive(
            &msg(Message::Extended {
                id: 0,
                payload: &hs,
            }),
            0,
            &mut ev,
        );
        let mut req = Vec::new();
        MetadataMsg::Request { piece: 0 }.write(&mut req);
        let one = msg(Message::Extended {
            id: peer_ext::OUR_UT_METADATA,
            payload: &req,
        });
        // Never taking the output: the 17th 16 KiB answer would pass the cap.
        c.receive(&one.repeat(100), 0, &mut ev);
        assert!(matches!(ev.last(), Some(Event::Close(r)) if r.contains("does not read")));
        assert!(c.take_output().len() <= MAX_UNSENT + 17_000);
    }

    #[test]
    fn outgoing_checks_the_answer() {
        let mut c = SeedConn::outgoing(settings(), None, shape());
        assert_eq!(c.take_output().len(), HANDSHAKE_LEN);
        let mut ev = Vec::new();
        let mut other = handshake(false, false);
        other[28] = 9;
        c.receive(&other, 0, &mut ev);
        assert!(matches!(ev.last(), Some(Event::Close(_))));
        let mut c = SeedConn::outgoing(settings(), None, shape());
        let mut ev = Vec::new();
        c.receive(&handshake(false, false), 0, &mut ev);
        assert_eq!(ev, vec![Event::Established]);
        assert!(c.is_established());
    }
}
