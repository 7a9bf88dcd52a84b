//! BEP-10 extension messages: the extension handshake (`m`, `v`, `reqq`, `yourip`, `p`,
//! `metadata_size`), BEP-9 `ut_metadata` requests/data/rejects and BEP-11 `ut_pex` peer lists.
//! Payloads only (the bytes after the extended message id); framing is in `peer_wire`.

use crate::proto::bt::bencode::{self, dict, Owned};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The ids we ask peers to use when they send us these extensions.
pub const OUR_UT_METADATA: u8 = 1;
pub const OUR_UT_PEX: u8 = 2;
/// Size of a metadata piece (BEP-9).
pub const METADATA_PIECE: usize = 16 * 1024;
/// Most peers read from one PEX message (BEP-11 caps a message at 50 added peers).
pub const MAX_PEX_PEERS: usize = 50;

/// What a peer says in its extension handshake.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtHandshake {
    /// The peer's id for `ut_metadata`, if it supports it.
    pub ut_metadata: Option<u8>,
    pub ut_pex: Option<u8>,
    pub metadata_size: Option<u64>,
    /// Its client name (`v`), cut to 64 bytes.
    pub client: Option<String>,
    pub reqq: Option<u32>,
    /// Its listen port (`p`).
    pub port: Option<u16>,
    /// The address it sees us at.
    pub yourip: Option<IpAddr>,
}

/// Why an extension payload was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtError(pub &'static str);

impl std::fmt::Display for ExtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

fn limits(input: usize) -> bencode::Limits {
    bencode::Limits {
        max_depth: 4,
        max_str_len: input,
        max_values: 512,
        max_input_bytes: input,
    }
}

fn ip_from(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?))),
        16 => Some(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(bytes).ok()?,
        ))),
        _ => None,
    }
}

fn small_int<T: TryFrom<i64>>(v: Option<&bencode::Value<'_>>) -> Option<T> {
    v.and_then(|v| v.as_int()).and_then(|i| T::try_from(i).ok())
}

impl ExtHandshake {
    /// Parses a handshake; unknown keys are ignored, ids of 0 mean "disabled" (BEP-10).
    pub fn parse(payload: &[u8]) -> Result<ExtHandshake, ExtError> {
        let mut h = ExtHandshake::default();
        h.merge(payload)?;
        Ok(h)
    }

    /// Applies a later extension handshake: only the keys it carries change (BEP-10), and an
    /// extension id of 0 in `m` turns that extension off.
    pub fn merge(&mut self, payload: &[u8]) -> Result<(), ExtError> {
        let v = bencode::decode_with(payload, limits(payload.len()))
            .map_err(|_| ExtError("extension handshake is not bencode"))?;
        if v.as_dict().is_none() {
            return Err(ExtError("extension handshake is not a dictionary"));
        }
        if let Some(m) = v.get("m") {
            for (name, slot) in [
                ("ut_metadata", &mut self.ut_metadata),
                ("ut_pex", &mut self.ut_pex),
            ] {
                if let Some(id) = m.get(name) {
                    *slot = small_int::<u8>(Some(id)).filter(|&i| i != 0);
                }
            }
        }
        if let Some(n) = v.get("metadata_size") {
            self.metadata_size = small_int(Some(n));
        }
        if let Some(c) = v.get("v").and_then(|v| v.as_bytes()) {
            self.client = Some(String::from_utf8_lossy(&c[..c.len().min(64)]).into_owned());
        }
        if let Some(q) = v.get("reqq") {
            self.reqq = small_int(Some(q));
        }
        if let Some(p) = v.get("p") {
            self.port = small_int::<u16>(Some(p)).filter(|&p| p != 0);
        }
        if let Some(ip) = v.get("yourip").and_then(|v| v.as_bytes()) {
            self.yourip = ip_from(ip);
        }
        Ok(())
    }
}

/// What we say in our extension handshake.
pub struct OurHandshake<'a> {
    pub client: &'a str,
    pub reqq: u32,
    pub port: Option<u16>,
    pub metadata_size: Option<u64>,
    /// The peer's address as we see it.
    pub yourip: Option<IpAddr>,
    pub pex: bool,
}

impl OurHandshake<'_> {
    pub fn encode(&self) -> Vec<u8> {
        let mut m = vec![("ut_metadata", Owned::Int(i64::from(OUR_UT_METADATA)))];
        if self.pex {
            m.push(("ut_pex", Owned::Int(i64::from(OUR_UT_PEX))));
        }
        let mut d = std::collections::BTreeMap::new();
        let mut put = |k: &str, v: Owned| {
            d.insert(k.as_bytes().to_vec(), v);
        };
        put(
            "m",
            Owned::Dict(
                m.into_iter()
                    .map(|(k, v)| (k.as_bytes().to_vec(), v))
                    .collect(),
            ),
        );
        put("v", Owned::str(self.client));
        put("reqq", Owned::Int(i64::from(self.reqq)));
        if let Some(p) = self.port {
            put("p", Owned::Int(i64::from(p)));
        }
        if let Some(size) = self.metadata_size {
            put("metadata_size", Owned::Int(size as i64));
        }
        if let Some(ip) = self.yourip {
            let bytes = match ip {
                IpAddr::V4(v4) => v4.octets().to_vec(),
                IpAddr::V6(v6) => v6.octets().to_vec(),
            };
            put("yourip", Owned::Bytes(bytes));
        }
        Owned::Dict(d).encode()
    }
}

/// A `ut_metadata` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataMsg<'a> {
    Request {
        piece: u32,
    },
    Data {
        piece: u32,
        total_size: u64,
        data: &'a [u8],
    },
    Reject {
        piece: u32,
    },
}

impl<'a> MetadataMsg<'a> {
    pub fn parse(payload: &'a [u8]) -> Result<MetadataMsg<'a>, ExtError> {
        let (v, used) = bencode::decode_prefix_with(payload, limits(payload.len()))
            .map_err(|_| ExtError("ut_metadata message is not bencode"))?;
        let piece =
            small_int::<u32>(v.get("piece")).ok_or(ExtError("ut_metadata without piece"))?;
        match v.get("msg_type").and_then(|t| t.as_int()) {
            Some(0) => Ok(MetadataMsg::Request { piece }),
            Some(1) => {
                let total_size: u64 = small_int(v.get("total_size"))
                    .filter(|&t| t > 0)
                    .ok_or(ExtError("ut_metadata data without total_size"))?;
                let data = &payload[used..];
                let start = piece as u64 * METADATA_PIECE as u64;
                if data.len() > METADATA_PIECE {
                    return Err(ExtError("ut_metadata piece over 16 KiB"));
                }
                if start >= total_size || data.len() as u64 > total_size - start {
                    return Err(ExtError("ut_metadata piece past total_size"));
                }
                Ok(MetadataMsg::Data {
                    piece,
                    total_size,
                    data,
                })
            }
            Some(2) => Ok(MetadataMsg::Reject { piece }),
            _ => Err(ExtError("unknown ut_metadata msg_type")),
        }
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            MetadataMsg::Request { piece } => out.extend_from_slice(
                &dict([
                    ("msg_type", Owned::Int(0)),
                    ("piece", Owned::Int(i64::from(*piece))),
                ])
                .encode(),
            ),
            MetadataMsg::Reject { piece } => out.extend_from_slice(
                &dict([
                    ("msg_type", Owned::Int(2)),
                    ("piece", Owned::Int(i64::from(*piece))),
                ])
                .encode(),
            ),
            MetadataMsg::Data {
                piece,
                total_size,
                data,
            } => {
                dict([
                    ("msg_type", Owned::Int(1)),
                    ("piece", Owned::Int(i64::from(*piece))),
                    ("total_size", Owned::Int(*total_size as i64)),
                ])
                .encode_into(out);
                out.extend_from_slice(data);
            }
        }
    }
}

/// The bytes of metadata piece `piece` of `metadata`, if it exists.
pub fn metadata_piece(metadata: &[u8], piece: u32) -> Option<&[u8]> {
    let start = (piece as usize).checked_mul(METADATA_PIECE)?;
    if start >= metadata.len() {
        return None;
    }
    Some(&metadata[start..(start + METADATA_PIECE).min(metadata.len())])
}

/// A `ut_pex` message: peers added and dropped since the last one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pex {
    pub added: Vec<SocketAddr>,
    pub dropped: Vec<SocketAddr>,
    /// Of `added`, those we connected to ourselves (flag 0x10, "reachable"); peers that only
    /// connected to us may sit behind a NAT and are sent without it.
    pub reachable: Vec<SocketAddr>,
}

fn compact(addrs: &[SocketAddr], v6: bool) -> Owned {
    let mut out = Vec::new();
    for a in addrs.iter().take(MAX_PEX_PEERS) {
        match (a, v6) {
            (SocketAddr::V4(a), false) => out.extend_from_slice(&a.ip().octets()),
            (SocketAddr::V6(a), true) => out.extend_from_slice(&a.ip().octets()),
            _ => continue,
        }
        out.extend_from_slice(&a.port().to_be_bytes());
    }
    Owned::Bytes(out)
}

/// Compact peers into `out`; with `flags`, those flagged reachable (0x10) into `reachable`.
fn uncompact(
    bytes: Option<&bencode::Value<'_>>,
    width: usize,
    out: &mut Vec<SocketAddr>,
    flags: Option<(&[u8], &mut Vec<SocketAddr>)>,
) {
    let Some(bytes) = bytes.and_then(|b| b.as_bytes()) else {
        return;
    };
    let (flags, mut reachable) = match flags {
        Some((f, r)) => (f, Some(r)),
        None => (&[][..], None),
    };
    for (i, entry) in bytes
        .chunks_exact(width + 2)
        .take(MAX_PEX_PEERS)
        .enumerate()
    {
        if let Some(ip) = ip_from(&entry[..width]) {
            let port = u16::from_be_bytes([entry[width], entry[width + 1]]);
            if port != 0 {
                let addr = SocketAddr::new(ip, port);
                out.push(addr);
                if flags.get(i).is_some_and(|f| f & 0x10 != 0) {
                    if let Some(r) = reachable.as_mut() {
                        r.push(addr);
                    }
                }
            }
        }
    }
}

impl Pex {
    pub fn parse(payload: &[u8]) -> Result<Pex, ExtError> {
        let v = bencode::decode_with(payload, limits(payload.len()))
            .map_err(|_| ExtError("ut_pex message is not bencode"))?;
        if v.as_dict().is_none() {
            return Err(ExtError("ut_pex message is not a dictionary"));
        }
        let mut pex = Pex::default();
        let flags = |key: &str| v.get(key).and_then(|f| f.as_bytes()).unwrap_or_default();
        let (f4, f6) = (flags("added.f"), flags("added6.f"));
        uncompact(
            v.get("added"),
            4,
            &mut pex.added,
            Some((f4, &mut pex.reachable)),
        );
        uncompact(
            v.get("added6"),
            16,
            &mut pex.added,
            Some((f6, &mut pex.reachable)),
        );
        uncompact(v.get("dropped"), 4, &mut pex.dropped, None);
        uncompact(v.get("dropped6"), 16, &mut pex.dropped, None);
        Ok(pex)
    }

    pub fn encode(&self) -> Vec<u8> {
        let flags_of = |v6: bool| {
            Owned::Bytes(
                self.added
                    .iter()
                    .filter(|a| a.is_ipv6() == v6)
                    .take(MAX_PEX_PEERS)
                    .map(|a| if self.reachable.contains(a) { 0x10 } else { 0 })
                    .collect(),
            )
        };
        let (flags, flags6) = (flags_of(false), flags_of(true));
        dict([
            ("added", compact(&self.added, false)),
            ("added.f", flags),
            ("added6", compact(&self.added, true)),
            ("added6.f", flags6),
            ("dropped", compact(&self.dropped, false)),
            ("dropped6", compact(&self.dropped, true)),
        ])
        .encode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_round_trip() {
        let ours = OurHandshake {
            client: "torrent-gateway/0.1",
            reqq: 500,
            port: Some(6881),
            metadata_size: Some(1234),
            yourip: Some("127.0.0.1".parse().unwrap()),
            pex: true,
        }
        .encode();
        let back = ExtHandshake::parse(&ours).unwrap();
        assert_eq!(back.ut_metadata, Some(OUR_UT_METADATA));
        assert_eq!(back.ut_pex, Some(OUR_UT_PEX));
        assert_eq!(back.metadata_size, Some(1234));
        assert_eq!(back.client.as_deref(), Some("torrent-gateway/0.1"));
        assert_eq!(back.reqq, Some(500));
        assert_eq!(back.port, Some(6881));
        assert_eq!(back.yourip, Some("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn handshake_tolerates_odd_values() {
        let h = ExtHandshake::parse(b"d1:md11:ut_metadatai0e6:ut_pexi300ee1:pi70000e1:v3:abce")
            .unwrap();
        assert_eq!(h.ut_metadata, None, "0 disables");
        assert_eq!(h.ut_pex, None, "300 is not an id");
        assert_eq!(h.port, None);
        assert!(ExtHandshake::parse(b"li1ee").is_err());
        assert!(ExtHandshake::parse(b"d1:m").is_err());
    }

    #[test]
    fn metadata_messages() {
        for m in [
            MetadataMsg::Request { piece: 2 },
            MetadataMsg::Reject { piece: 0 },
            MetadataMsg::Data {
                piece: 1,
                total_size: 20000,
                data: b"xyz",
            },
        ] {
            let mut buf = Vec::new();
            m.write(&mut buf);
            assert_eq!(MetadataMsg::parse(&buf).unwrap(), m);
        }
        assert!(MetadataMsg::parse(b"d8:msg_typei7e5:piecei0ee").is_err());
        // Data: at most 16 KiB, inside total_size, which must be there and positive.
        let data = |piece: u32, total: u64, len: usize| {
            let mut buf = Vec::new();
            let bytes = vec![7u8; len];
            MetadataMsg::Data {
                piece,
                total_size: total,
                data: &bytes,
            }
            .write(&mut buf);
            MetadataMsg::parse(&buf).map(|m| match m {
                MetadataMsg::Data { data, .. } => data.len(),
                _ => usize::MAX,
            })
        };
        assert_eq!(data(0, 40_000, METADATA_PIECE), Ok(METADATA_PIECE));
        assert_eq!(data(2, 40_000, 7232), Ok(7232));
        assert!(data(0, 40_000, METADATA_PIECE + 1).is_err(), "over 16 KiB");
        assert!(data(2, 40_000, 7233).is_err(), "past the end");
        assert!(data(3, 40_000, 1).is_err(), "no such piece");
        assert!(data(0, 0, 0).is_err());
        assert!(MetadataMsg::parse(b"d8:msg_typei1e5:piecei0ee").is_err());
        assert!(MetadataMsg::parse(b"d8:msg_typei1e5:piecei0e10:total_sizei-5ee").is_err());
        assert!(MetadataMsg::parse(b"d8:msg_typei0ee").is_err());
        let meta = vec![1u8; METADATA_PIECE + 10];
        assert_eq!(metadata_piece(&meta, 0).unwrap().len(), METADATA_PIECE);
        assert_eq!(metadata_piece(&meta, 1).unwrap().len(), 10);
        assert_eq!(metadata_piece(&meta, 2), None);
        assert_eq!(metadata_piece(&meta, u32::MAX), None);
    }

    #[test]
    fn pex_round_trip() {
        let pex = Pex {
            added: vec![
                "1.2.3.4:5".parse().unwrap(),
                "[::1]:7".parse().unwrap(),
                "5.6.7.8:9".parse().unwrap(),
            ],
            dropped: vec!["9.9.9.9:9".parse().unwrap()],
            reachable: vec!["5.6.7.8:9".parse().unwrap()],
        };
        let back = Pex::parse(&pex.encode()).unwrap();
        assert_eq!(back.added.len(), 3);
        assert_eq!(back.dropped, pex.dropped);
        assert_eq!(
            back.reachable, pex.reachable,
            "only the peer we reached is flagged 0x10"
        );
        // A ragged tail and port 0 are skipped.
        let odd = Pex::parse(b"d5:added8:\x01\x02\x03\x04\x00\x00\x05\x06e").unwrap();
        assert!(odd.added.is_empty());
    }

    #[test]
    fn a_later_handshake_changes_only_its_keys() {
        let mut h =
            ExtHandshake::parse(b"d1:md11:ut_metadatai3e6:ut_pexi2ee1:pi6881e1:v4:teste").unwrap();
        h.merge(b"d1:md6:ut_pexi0eee").unwrap();
        assert_eq!(h.ut_metadata, Some(3), "kept");
        assert_eq!(h.ut_pex, None, "turned off by id 0");
        assert_eq!(h.port, Some(6881), "kept");
        h.merge(b"d4:reqqi250ee").unwrap();
        assert_eq!((h.reqq, h.client.as_deref()), (Some(250), Some("test")));
        assert!(h.merge(b"le").is_err());
    }
}
