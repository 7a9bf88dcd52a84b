//! The extension side of [`PeerConn`]: BEP-10 handshakes, `ut_metadata` both ways (serving
//! our info dict; asking for pieces of the peer's), `ut_pex`, and magnet mode, where a
//! connection starts knowing only the info-hash. Until [`PeerConn::set_shape`] a magnet
//! connection keeps what the peer says of its pieces (a bitfield of any plausible length,
//! haves, have-all, have-none) without judging it; once the shape is known the kept state is
//! checked like a fresh bitfield and reported with the usual events.

use super::{Event, PeerConn, Phase, Settings, Shape, MAX_UNSENT};
use crate::proto::bt::peer_ext::{self, MetadataMsg, OurHandshake, Pex, METADATA_PIECE};
use crate::proto::bt::peer_wire::{self, bit, FrameLimits, Message};
use std::net::IpAddr;
use std::sync::Arc;

/// Most pieces a magnet peer's early bitfield or haves may name (a 16 MiB info dict holds
/// about 840,000 piece hashes).
pub const MAX_EARLY_PIECES: u32 = 1 << 20;
/// `ut_metadata` requests we keep unanswered at once on one connection.
pub const MAX_METADATA_ASKED: usize = 16;

/// How the peer last described its pieces before the shape was known.
#[derive(Debug, Clone)]
enum Base {
    Bits(Vec<u8>),
    All,
    Nothing,
}

/// A magnet peer's pieces as it told them before the shape was known.
#[derive(Debug, Default)]
pub(super) struct Early {
    base: Option<Base>,
    /// Haves since the base, as bits.
    haves: Vec<u8>,
}

/// What [`PeerConn::early_bitfield`] made of the front of the buffer.
pub(super) enum Frame {
    /// A bitfield of this many bytes (with its header) was kept.
    Taken(usize),
    /// Not complete yet, or the connection was closed.
    Incomplete,
    /// Not a bitfield: parse it as usual.
    Other,
}

/// Whether bits past the last piece are set (they must not be).
fn spare_bits_set(bits: &[u8], pieces: u32) -> bool {
    let spare = (bits.len() as u64 * 8).saturating_sub(pieces as u64) as u32;
    spare > 0 && spare < 8 && bits.last().is_some_and(|b| b & ((1u8 << spare) - 1) != 0)
}

impl PeerConn {
    /// A connection we open for a magnet link: only the info-hash is known. Our handshake
    /// goes first; once established we send have-none (with the fast extension) and our
    /// extension handshake without `metadata_size`. Call [`PeerConn::set_shape`] when the
    /// metadata is known (from this peer or another).
    pub fn outgoing_magnet(
        settings: Arc<Settings>,
        remote_ip: Option<IpAddr>,
        info_hash: [u8; 20],
    ) -> PeerConn {
        let mut c = PeerConn::incoming(settings, remote_ip);
        c.write_handshake(info_hash);
        c.limits = FrameLimits::for_torrent(0, METADATA_PIECE as u32);
        c.magnet = Some(info_hash);
        c.ours = Some(Vec::new());
        c
    }

    /// The torrent of a magnet connection is known now: checks what the peer said of its
    /// pieces so far (a bitfield of the wrong length or a have past the end closes), reports
    /// it as [`Event::PeerBitfield`] / [`Event::PeerHave`], and sends a have for each piece we
    /// already have (set with [`PeerConn::set_ours`] before this call). Ignored on other
    /// connections and once the shape is set.
    pub fn set_shape(&mut self, shape: Arc<Shape>, now_ms: u64, events: &mut Vec<Event>) {
        let Some(ih) = self.magnet else { return };
        if self.phase == Phase::Closed || self.shape.is_some() {
            return;
        }
        if shape.info_hash != ih {
            return self.close("metadata of another torrent", events);
        }
        let pieces = shape.pieces;
        let need = pieces.div_ceil(8) as usize;
        let mut ours = self.ours.take().unwrap_or_default();
        ours.resize(need, 0);
        if let Some(last) = ours.last_mut() {
            if pieces % 8 != 0 {
                *last &= !(0xffu8 >> (pieces % 8));
            }
        }
        self.limits = FrameLimits::for_torrent(pieces, METADATA_PIECE as u32);
        self.shape = Some(shape);
        if self.phase != Phase::Established {
            // Still handshaking: `establish` sends our bitfield as on any connection.
            self.ours = Some(ours);
            return;
        }
        let early = std::mem::take(&mut self.early);
        match early.base {
            Some(Base::Bits(bits)) => {
                if bits.len() != need {
                    let why = format!("bitfield of {} bytes for {pieces} pieces", bits.len());
                    return self.close(why, events);
                }
                if spare_bits_set(&bits, pieces) {
                    return self.close("bitfield has spare bits set", events);
                }
                self.peer.have = bits.iter().map(|b| b.count_ones()).sum();
                self.peer_bits = bits;
                events.push(Event::PeerBitfield);
            }
            Some(Base::All) => {
                self.peer.have = pieces;
                self.peer_bits = peer_wire::full_bitfield(pieces);
                events.push(Event::PeerBitfield);
            }
            Some(Base::Nothing) => {
                self.peer.have = 0;
                self.peer_bits.clear();
                events.push(Event::PeerBitfield);
            }
            None => {}
        }
        for i in 0..early.haves.len() as u32 * 8 {
            if !bit(&early.haves, i) {
                continue;
            }
            if i >= pieces {
                return self.close(format!("have {i} of {pieces} pieces"), events);
            }
            if self.peer_bits.is_empty() {
                self.peer_bits = vec![0; need];
            }
            if !bit(&self.peer_bits, i) {
                self.peer_bits[(i / 8) as usize] |= 0x80 >> (i % 8);
                self.peer.have += 1;
                events.push(Event::PeerHave(i));
            }
        }
        for i in (0..pieces).filter(|&i| bit(&ours, i)) {
            peer_wire::write(&Message::Have(i), &mut self.out);
        }
        self.ours = Some(ours);
        self.check_seed(events);
        self.process(now_ms, events);
    }

    /// Asks the peer for `ut_metadata` piece `piece`. False (nothing sent) before the
    /// connection is established, when the peer did not announce `ut_metadata`, for a piece
    /// past its `metadata_size`, or with [`MAX_METADATA_ASKED`] requests unanswered.
    pub fn request_metadata(&mut self, piece: u32) -> bool {
        if self.phase != Phase::Established {
            return false;
        }
        let Some(id) = self.peer.ext.ut_metadata else {
            return false;
        };
        if let Some(size) = self.peer.ext.metadata_size {
            if piece as u64 * METADATA_PIECE as u64 >= size {
                return false;
            }
        }
        if !self.metadata_asked.contains(&piece) {
            if self.metadata_asked.len() >= MAX_METADATA_ASKED {
                return false;
            }
            self.metadata_asked.push(piece);
        }
        let mut body = Vec::new();
        MetadataMsg::Request { piece }.write(&mut body);
        peer_wire::write(&Message::Extended { id, payload: &body }, &mut self.out);
        true
    }

    /// The info dict size the peer announced in its extension handshake.
    pub fn peer_metadata_size(&self) -> Option<u64> {
        self.peer.ext.metadata_size
    }

    /// In magnet mode before the shape is known: keeps a bitfield frame of any length up to
    /// [`MAX_EARLY_PIECES`] bits, which `parse_frame` could not check.
    pub(super) fn early_bitfield(&mut self, buf: &[u8], events: &mut Vec<Event>) -> Frame {
        if buf.len() < 4 {
            return Frame::Other;
        }
        let len = u32::from_be_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
        if len == 0 {
            return Frame::Other;
        }
        match buf.get(4) {
            None => return Frame::Incomplete,
            Some(&id) if id != peer_wire::id::BITFIELD => return Frame::Other,
            Some(_) => {}
        }
        if len - 1 > MAX_EARLY_PIECES.div_ceil(8) as usize {
            self.close(format!("bitfield of {} bytes", len - 1), events);
            return Frame::Incomplete;
        }
        let Some(bits) = buf.get(5..4 + len) else {
            return Frame::Incomplete;
        };
        self.early = Early {
            base: Some(Base::Bits(bits.to_vec())),
            haves: Vec::new(),
        };
        Frame::Taken(4 + len)
    }

    /// Messages on a magnet connection before the shape is known.
    pub(super) fn handle_early(&mut self, msg: Message<'_>, now_ms: u64, events: &mut Vec<Event>) {
        match msg {
            Message::Request(b) => {
                // We have nothing to give yet (and choke the peer).
                self.reject(b);
                self.choked_requests += 1;
                if self.choked_requests > self.settings.max_requests + 64 {
                    self.close("requests while choked", events);
                }
            }
            Message::Have(i) => {
                if i >= MAX_EARLY_PIECES {
                    return self.close(format!("have {i} before the metadata"), events);
                }
                let byte = (i / 8) as usize;
                if self.early.haves.len() <= byte {
                    self.early.haves.resize(byte + 1, 0);
                }
                if bit(&self.early.haves, i) {
                    return self.chatter(now_ms, events);
                }
                self.early.haves[byte] |= 0x80 >> (i % 8);
            }
            Message::HaveAll | Message::HaveNone if !self.peer.fast => {
                self.close("fast-extension message without the fast extension", events)
            }
            Message::HaveAll | Message::HaveNone | Message::Bitfield(_) => {
                self.early = Early {
                    base: Some(match msg {
                        Message::HaveAll => Base::All,
                        Message::Bitfield(bits) => Base::Bits(bits.to_vec()),
                        _ => Base::Nothing,
                    }),
                    haves: Vec::new(),
                };
            }
            other => self.handle_common(other, now_ms, events),
        }
    }

    pub(super) fn extended(
        &mut self,
        id: u8,
        payload: &[u8],
        now_ms: u64,
        events: &mut Vec<Event>,
    ) {
        match id {
            0 => match self.peer.ext.merge(payload) {
                Ok(()) => {
                    events.push(Event::ExtHandshake);
                    self.chatter(now_ms, events);
                }
                Err(e) => self.close(e.to_string(), events),
            },
            peer_ext::OUR_UT_METADATA => match MetadataMsg::parse(payload) {
                Err(e) => self.close(e.to_string(), events),
                Ok(MetadataMsg::Request { piece }) => self.serve_metadata(piece, now_ms, events),
                Ok(MetadataMsg::Data {
                    piece,
                    total_size,
                    data,
                }) => match self.metadata_asked.iter().position(|&p| p == piece) {
                    Some(i) => {
                        self.metadata_asked.swap_remove(i);
                        events.push(Event::Metadata {
                            piece,
                            total: total_size,
                            data: data.to_vec(),
                        });
                    }
                    None => self.chatter(now_ms, events),
                },
                Ok(MetadataMsg::Reject { piece }) => {
                    match self.metadata_asked.iter().position(|&p| p == piece) {
                        Some(i) => {
                            self.metadata_asked.swap_remove(i);
                            events.push(Event::MetadataRejected(piece));
                        }
                        None => self.chatter(now_ms, events),
                    }
                }
            },
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

    /// Answers a `ut_metadata` request: the piece, or a reject when we have no such piece
    /// (or no metadata yet, on a magnet connection).
    fn serve_metadata(&mut self, piece: u32, now_ms: u64, events: &mut Vec<Event>) {
        self.chatter(now_ms, events);
        if self.out.len() > MAX_UNSENT {
            return self.close("peer asks for metadata but does not read it", events);
        }
        let Some(their_id) = self.peer.ext.ut_metadata else {
            return self.close("ut_metadata request before announcing it", events);
        };
        let metadata = self.shape.as_ref().map(|s| Arc::clone(&s.metadata));
        let mut body = Vec::new();
        match metadata
            .as_deref()
            .and_then(|m| Some((m, peer_ext::metadata_piece(m, piece)?)))
        {
            Some((all, data)) => {
                MetadataMsg::Data {
                    piece,
                    total_size: all.len() as u64,
                    data,
                }
                .write(&mut body);
                events.push(Event::MetadataServed);
            }
            None => MetadataMsg::Reject { piece }.write(&mut body),
        }
        peer_wire::write(
            &Message::Extended {
                id: their_id,
                payload: &body,
            },
            &mut self.out,
        );
    }

    pub(super) fn send_ext_handshake(&mut self, metadata_size: Option<u64>) {
        if !self.peer.extended {
            return;
        }
        let ours = OurHandshake {
            client: self.settings.client,
            reqq: self.settings.max_requests,
            port: self.settings.listen_port,
            metadata_size,
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
