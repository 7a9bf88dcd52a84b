//! Peer wire messages (BEP-3, BEP-6 fast extension, BEP-10 framing): the handshake and the
//! length-prefixed messages, parsed from and written to byte buffers.
//!
//! [`parse_frame`] takes the front of a receive buffer and returns one message borrowing from
//! it, "need more bytes", or an error. Lengths are checked against [`FrameLimits`] as soon as
//! the 4-byte prefix and the id are in, so a hostile length never makes anyone buffer it.

/// The protocol string of the handshake.
pub const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";
/// Handshake size: length byte, protocol, reserved, info-hash, peer id.
pub const HANDSHAKE_LEN: usize = 68;
/// The largest block anyone may request (BEP-3 clients use 16 KiB).
pub const MAX_BLOCK: u32 = 16 * 1024;

/// Reserved bits this implementation understands.
pub mod reserved {
    /// BEP-10 extension protocol: byte 5, bit 0x10.
    pub const EXTENDED: (usize, u8) = (5, 0x10);
    /// BEP-6 fast extension: byte 7, bit 0x04.
    pub const FAST: (usize, u8) = (7, 0x04);
    /// BEP-5 DHT port message: byte 7, bit 0x01.
    pub const DHT: (usize, u8) = (7, 0x01);

    pub fn has(bits: &[u8; 8], (byte, mask): (usize, u8)) -> bool {
        bits[byte] & mask != 0
    }

    pub fn set(bits: &mut [u8; 8], (byte, mask): (usize, u8)) {
        bits[byte] |= mask;
    }
}

/// The 68-byte handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    pub reserved: [u8; 8],
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
}

/// Why a handshake or message is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// The first bytes are not `\x13BitTorrent protocol`.
    BadProtocol,
    /// A length prefix over the limit for its message id.
    TooLong { id: Option<u8>, len: u32 },
    /// A message whose length does not fit its id.
    BadLength { id: u8, len: u32 },
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::BadProtocol => write!(f, "not a BitTorrent handshake"),
            WireError::TooLong { id: Some(id), len } => {
                write!(f, "message {id} of {len} bytes is over the limit")
            }
            WireError::TooLong { id: None, len } => {
                write!(f, "length prefix {len} is over the limit")
            }
            WireError::BadLength { id, len } => {
                write!(f, "message {id} cannot be {len} bytes long")
            }
        }
    }
}

impl Handshake {
    /// Checks as much of a handshake as has arrived: `Err` as soon as the protocol string is
    /// wrong, `Ok(None)` while incomplete.
    pub fn parse(buf: &[u8]) -> Result<Option<Handshake>, WireError> {
        let head = buf.len().min(20);
        let mut want = [0u8; 20];
        want[0] = 19;
        want[1..].copy_from_slice(PROTOCOL);
        if buf[..head] != want[..head] {
            return Err(WireError::BadProtocol);
        }
        if buf.len() < HANDSHAKE_LEN {
            return Ok(None);
        }
        Ok(Some(Handshake {
            reserved: buf[20..28].try_into().expect("8 bytes"),
            info_hash: buf[28..48].try_into().expect("20 bytes"),
            peer_id: buf[48..68].try_into().expect("20 bytes"),
        }))
    }

    /// The info-hash, once the first 48 bytes are in (a seeder can look it up before the
    /// peer id arrives; some clients wait for our handshake before sending theirs in full).
    pub fn peek_info_hash(buf: &[u8]) -> Option<[u8; 20]> {
        buf.get(28..48).map(|s| s.try_into().expect("20 bytes"))
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(19);
        out.extend_from_slice(PROTOCOL);
        out.extend_from_slice(&self.reserved);
        out.extend_from_slice(&self.info_hash);
        out.extend_from_slice(&self.peer_id);
    }
}

/// A block: piece index, offset in the piece, length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockRef {
    pub index: u32,
    pub begin: u32,
    pub length: u32,
}

/// Message ids.
pub mod id {
    pub const CHOKE: u8 = 0;
    pub const UNCHOKE: u8 = 1;
    pub const INTERESTED: u8 = 2;
    pub const NOT_INTERESTED: u8 = 3;
    pub const HAVE: u8 = 4;
    pub const BITFIELD: u8 = 5;
    pub const REQUEST: u8 = 6;
    pub const PIECE: u8 = 7;
    pub const CANCEL: u8 = 8;
    pub const PORT: u8 = 9;
    pub const SUGGEST: u8 = 13;
    pub const HAVE_ALL: u8 = 14;
    pub const HAVE_NONE: u8 = 15;
    pub const REJECT: u8 = 16;
    pub const ALLOWED_FAST: u8 = 17;
    pub const EXTENDED: u8 = 20;
}

/// One message, borrowing its payload from the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u32),
    Bitfield(&'a [u8]),
    Request(BlockRef),
    Piece {
        index: u32,
        begin: u32,
        data: &'a [u8],
    },
    Cancel(BlockRef),
    Port(u16),
    Suggest(u32),
    HaveAll,
    HaveNone,
    Reject(BlockRef),
    AllowedFast(u32),
    Extended {
        id: u8,
        payload: &'a [u8],
    },
    /// An id this implementation does not know (ignored, within the size limits).
    Unknown {
        id: u8,
        len: u32,
    },
}

/// The largest payloads accepted, by kind.
#[derive(Debug, Clone, Copy)]
pub struct FrameLimits {
    /// Bytes of a bitfield: ceil(pieces / 8).
    pub bitfield: u32,
    /// Payload of an extended message (after the extended id).
    pub extended: u32,
}

impl FrameLimits {
    /// Limits for a torrent of `pieces` pieces whose info dict is `metadata` bytes: extended
    /// messages may carry one 16 KiB metadata piece (or the whole info dict when smaller) and
    /// 4 KiB of dictionary around it.
    pub fn for_torrent(pieces: u32, metadata: u32) -> FrameLimits {
        FrameLimits {
            bitfield: pieces.div_ceil(8),
            extended: 4096 + metadata.min(MAX_BLOCK),
        }
    }

    /// The longest length prefix any message may have.
    fn max_len(&self) -> u32 {
        (9 + MAX_BLOCK)
            .max(1 + self.bitfield)
            .max(2 + self.extended)
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().expect("4 bytes"))
}

/// Parses the message at the front of `buf`: `Ok(None)` until it is complete, then the
/// message and the bytes it used.
pub fn parse_frame<'a>(
    buf: &'a [u8],
    limits: &FrameLimits,
) -> Result<Option<(Message<'a>, usize)>, WireError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = be32(buf);
    if len == 0 {
        return Ok(Some((Message::KeepAlive, 4)));
    }
    if len > limits.max_len() {
        return Err(WireError::TooLong { id: None, len });
    }
    let Some(&msg_id) = buf.get(4) else {
        return Ok(None);
    };
    let fixed = |n: u32| {
        if len == n {
            Ok(())
        } else {
            Err(WireError::BadLength { id: msg_id, len })
        }
    };
    match msg_id {
        id::CHOKE
        | id::UNCHOKE
        | id::INTERESTED
        | id::NOT_INTERESTED
        | id::HAVE_ALL
        | id::HAVE_NONE => fixed(1)?,
        id::HAVE | id::SUGGEST | id::ALLOWED_FAST => fixed(5)?,
        id::REQUEST | id::CANCEL | id::REJECT => fixed(13)?,
        id::PORT => fixed(3)?,
        id::BITFIELD => fixed(1 + limits.bitfield)?,
        id::PIECE if len < 9 => return Err(WireError::BadLength { id: msg_id, len }),
        id::PIECE if len > 9 + MAX_BLOCK => {
            return Err(WireError::TooLong {
                id: Some(msg_id),
                len,
            })
        }
        id::EXTENDED if len < 2 => return Err(WireError::BadLength { id: msg_id, len }),
        id::EXTENDED if len > 2 + limits.extended => {
            return Err(WireError::TooLong {
                id: Some(msg_id),
                len,
            })
        }
        _ => {}
    }
    let total = 4 + len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    let p = &buf[5..total];
    let block = || BlockRef {
        index: be32(p),
        begin: be32(&p[4..]),
        length: be32(&p[8..]),
    };
    let msg = match msg_id {
        id::CHOKE => Message::Choke,
        id::UNCHOKE => Message::Unchoke,
        id::INTERESTED => Message::Interested,
        id::NOT_INTERESTED => Message::NotInterested,
        id::HAVE => Message::Have(be32(p)),
        id::BITFIELD => Message::Bitfield(p),
        id::REQUEST => Message::Request(block()),
        id::PIECE => Message::Piece {
            index: be32(p),
            begin: be32(&p[4..]),
            data: &p[8..],
        },
        id::CANCEL => Message::Cancel(block()),
        id::PORT => Message::Port(u16::from_be_bytes([p[0], p[1]])),
        id::SUGGEST => Message::Suggest(be32(p)),
        id::HAVE_ALL => Message::HaveAll,
        id::HAVE_NONE => Message::HaveNone,
        id::REJECT => Message::Reject(block()),
        id::ALLOWED_FAST => Message::AllowedFast(be32(p)),
        id::EXTENDED => Message::Extended {
            id: p[0],
            payload: &p[1..],
        },
        other => Message::Unknown { id: other, len },
    };
    Ok(Some((msg, total)))
}

/// Appends `msg` in wire form. A `Piece` is written whole; use [`write_piece_header`] to send
/// the data from elsewhere.
pub fn write(msg: &Message<'_>, out: &mut Vec<u8>) {
    let simple = |out: &mut Vec<u8>, id: u8| {
        out.extend_from_slice(&1u32.to_be_bytes());
        out.push(id);
    };
    let with_u32 = |out: &mut Vec<u8>, id: u8, v: u32| {
        out.extend_from_slice(&5u32.to_be_bytes());
        out.push(id);
        out.extend_from_slice(&v.to_be_bytes());
    };
    let with_block = |out: &mut Vec<u8>, id: u8, b: &BlockRef| {
        out.extend_from_slice(&13u32.to_be_bytes());
        out.push(id);
        out.extend_from_slice(&b.index.to_be_bytes());
        out.extend_from_slice(&b.begin.to_be_bytes());
        out.extend_from_slice(&b.length.to_be_bytes());
    };
    match msg {
        Message::KeepAlive => out.extend_from_slice(&0u32.to_be_bytes()),
        Message::Choke => simple(out, id::CHOKE),
        Message::Unchoke => simple(out, id::UNCHOKE),
        Message::Interested => simple(out, id::INTERESTED),
        Message::NotInterested => simple(out, id::NOT_INTERESTED),
        Message::HaveAll => simple(out, id::HAVE_ALL),
        Message::HaveNone => simple(out, id::HAVE_NONE),
        Message::Have(i) => with_u32(out, id::HAVE, *i),
        Message::Suggest(i) => with_u32(out, id::SUGGEST, *i),
        Message::AllowedFast(i) => with_u32(out, id::ALLOWED_FAST, *i),
        Message::Request(b) => with_block(out, id::REQUEST, b),
        Message::Cancel(b) => with_block(out, id::CANCEL, b),
        Message::Reject(b) => with_block(out, id::REJECT, b),
        Message::Bitfield(bits) => {
            out.extend_from_slice(&(1 + bits.len() as u32).to_be_bytes());
            out.push(id::BITFIELD);
            out.extend_from_slice(bits);
        }
        Message::Piece { index, begin, data } => {
            write_piece_header(*index, *begin, data.len() as u32, out);
            out.extend_from_slice(data);
        }
        Message::Port(p) => {
            out.extend_from_slice(&3u32.to_be_bytes());
            out.push(id::PORT);
            out.extend_from_slice(&p.to_be_bytes());
        }
        Message::Extended { id: ext, payload } => {
            out.extend_from_slice(&(2 + payload.len() as u32).to_be_bytes());
            out.push(id::EXTENDED);
            out.push(*ext);
            out.extend_from_slice(payload);
        }
        Message::Unknown { .. } => {}
    }
}

/// The 13 bytes before a piece's data.
pub fn write_piece_header(index: u32, begin: u32, len: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(&(9 + len).to_be_bytes());
    out.push(id::PIECE);
    out.extend_from_slice(&index.to_be_bytes());
    out.extend_from_slice(&begin.to_be_bytes());
}

/// A bitfield with the first `pieces` bits set and the spare bits clear.
pub fn full_bitfield(pieces: u32) -> Vec<u8> {
    let mut bits = vec![0xffu8; pieces.div_ceil(8) as usize];
    let spare = bits.len() as u32 * 8 - pieces;
    if let Some(last) = bits.last_mut() {
        *last &= 0xffu8 << spare;
    }
    bits
}

/// Whether bit `i` of a bitfield is set.
pub fn bit(bits: &[u8], i: u32) -> bool {
    bits.get((i / 8) as usize)
        .is_some_and(|b| b & (0x80 >> (i % 8)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIM: FrameLimits = FrameLimits {
        bitfield: 2,
        extended: 100,
    };

    fn round_trip(msg: Message<'_>) {
        let mut buf = Vec::new();
        write(&msg, &mut buf);
        let (back, used) = parse_frame(&buf, &LIM).unwrap().unwrap();
        assert_eq!(back, msg);
        assert_eq!(used, buf.len());
        // Every strict prefix is "not yet".
        for cut in 0..buf.len() {
            assert_eq!(
                parse_frame(&buf[..cut], &LIM),
                Ok(None),
                "{msg:?} cut at {cut}"
            );
        }
    }

    #[test]
    fn messages_round_trip() {
        let b = BlockRef {
            index: 3,
            begin: 16384,
            length: 16384,
        };
        for m in [
            Message::KeepAlive,
            Message::Choke,
            Message::Unchoke,
            Message::Interested,
            Message::NotInterested,
            Message::Have(7),
            Message::Bitfield(&[0xff, 0x80]),
            Message::Request(b),
            Message::Cancel(b),
            Message::Reject(b),
            Message::Piece {
                index: 1,
                begin: 0,
                data: b"abc",
            },
            Message::Port(6881),
            Message::Suggest(2),
            Message::HaveAll,
            Message::HaveNone,
            Message::AllowedFast(9),
            Message::Extended {
                id: 0,
                payload: b"de",
            },
        ] {
            round_trip(m);
        }
    }

    #[test]
    fn lengths_are_checked_before_the_body_arrives() {
        // 16 KiB + 9 is the biggest piece; one more byte is refused from the header alone.
        let mut buf = (9 + MAX_BLOCK + 1).to_be_bytes().to_vec();
        buf.push(id::PIECE);
        assert!(matches!(
            parse_frame(&buf, &LIM),
            Err(WireError::TooLong { .. })
        ));
        let huge = u32::MAX.to_be_bytes();
        assert!(parse_frame(&huge, &LIM).is_err());
        // An extended message over the metadata allowance.
        let mut ext = (2 + 101u32).to_be_bytes().to_vec();
        ext.push(id::EXTENDED);
        assert!(parse_frame(&ext, &LIM).is_err());
        // A have with the wrong length, a bitfield of the wrong size.
        let mut have = 6u32.to_be_bytes().to_vec();
        have.push(id::HAVE);
        assert_eq!(
            parse_frame(&have, &LIM),
            Err(WireError::BadLength {
                id: id::HAVE,
                len: 6
            })
        );
        let mut bf = 2u32.to_be_bytes().to_vec();
        bf.push(id::BITFIELD);
        assert!(parse_frame(&bf, &LIM).is_err());
        // Unknown ids are skipped whole.
        let mut unk = 3u32.to_be_bytes().to_vec();
        unk.extend_from_slice(&[99, 1, 2]);
        assert_eq!(
            parse_frame(&unk, &LIM),
            Ok(Some((Message::Unknown { id: 99, len: 3 }, 7)))
        );
    }

    #[test]
    fn handshake_is_checked_byte_by_byte() {
        let hs = Handshake {
            reserved: [0, 0, 0, 0, 0, 0x10, 0, 0x04],
            info_hash: [7; 20],
            peer_id: [9; 20],
        };
        let mut buf = Vec::new();
        hs.write(&mut buf);
        assert_eq!(buf.len(), HANDSHAKE_LEN);
        assert_eq!(Handshake::parse(&buf), Ok(Some(hs)));
        assert_eq!(Handshake::parse(&buf[..30]), Ok(None));
        assert_eq!(Handshake::peek_info_hash(&buf[..48]), Some([7; 20]));
        assert!(reserved::has(&hs.reserved, reserved::EXTENDED));
        assert!(reserved::has(&hs.reserved, reserved::FAST));
        assert!(!reserved::has(&hs.reserved, reserved::DHT));
        assert_eq!(
            Handshake::parse(b"GET / HTTP/1.1"),
            Err(WireError::BadProtocol)
        );
        assert_eq!(
            Handshake::parse(&[19, b'B', b'X']),
            Err(WireError::BadProtocol)
        );
    }

    #[test]
    fn bitfields() {
        assert_eq!(full_bitfield(9), vec![0xff, 0x80]);
        assert_eq!(full_bitfield(8), vec![0xff]);
        assert!(bit(&[0x80], 0) && !bit(&[0x80], 1) && !bit(&[0x80], 99));
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_never_overreads(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(Some((_, used))) = parse_frame(&data, &LIM) {
                prop_assert!(used <= data.len());
            }
            let _ = Handshake::parse(&data);
        }
    }
}
