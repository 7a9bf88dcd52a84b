//! HTTP tracker messages (BEP-3, 23, 7, 48): announce and scrape query parsing, and the
//! bencoded announce, scrape and failure responses.
//!
//! `info_hash` and `peer_id` are raw bytes, percent-encoded; `+` is a literal byte, never a
//! space. Parsing decodes straight into fixed arrays and allocates nothing per parameter.

/// Announce `event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    None,
    Started,
    Completed,
    Stopped,
}

/// A parsed announce query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceQuery<'a> {
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
    pub port: u16,
    pub uploaded: u64,
    pub downloaded: u64,
    /// Bytes still missing; `None` when the client did not say (counted as a leecher).
    pub left: Option<u64>,
    pub event: Event,
    pub numwant: Option<u32>,
    pub compact: bool,
    pub no_peer_id: bool,
    /// The client's `key`, folded to 32 bits (see [`fold_key`]).
    pub key: Option<u32>,
    /// The raw `ip` parameter, still percent-encoded (used only if configured to trust it).
    pub ip: Option<&'a str>,
}

/// Decodes a percent-encoded value of exactly `N` bytes.
fn decode_exact<const N: usize>(raw: &str) -> Option<[u8; N]> {
    let b = raw.as_bytes();
    let mut out = [0u8; N];
    let (mut i, mut n) = (0, 0);
    while i < b.len() {
        if n == N {
            return None;
        }
        if b[i] == b'%' {
            let hi = crate::proto::hex::nibble(*b.get(i + 1)?)?;
            let lo = crate::proto::hex::nibble(*b.get(i + 2)?)?;
            out[n] = hi << 4 | lo;
            i += 3;
        } else {
            out[n] = b[i];
            i += 1;
        }
        n += 1;
    }
    (n == N).then_some(out)
}

/// A `key` as 32 bits: up to 8 hex digits are read as a number (what libtorrent, Transmission
/// and aria2 send); anything else is hashed (FNV-1a) so equal keys stay equal.
pub fn fold_key(raw: &str) -> u32 {
    if !raw.is_empty() && raw.len() <= 8 {
        if let Ok(v) = u32::from_str_radix(raw, 16) {
            return v;
        }
    }
    raw.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    })
}

fn number<T: std::str::FromStr>(name: &'static str, raw: &str) -> Result<T, String> {
    raw.parse()
        .map_err(|_| format!("{name} must be a non-negative integer"))
}

fn params(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// Parses an announce query string (without the `?`). The error is a failure reason.
pub fn parse_announce(query: &str) -> Result<AnnounceQuery<'_>, String> {
    let mut info_hash = None;
    let mut peer_id = None;
    let mut port = None;
    let mut q = AnnounceQuery {
        info_hash: [0; 20],
        peer_id: [0; 20],
        port: 0,
        uploaded: 0,
        downloaded: 0,
        left: None,
        event: Event::None,
        numwant: None,
        compact: true,
        no_peer_id: false,
        key: None,
        ip: None,
    };
    for (k, v) in params(query) {
        match k {
            "info_hash" if info_hash.is_none() => {
                info_hash = Some(decode_exact(v).ok_or("info_hash must be 20 bytes")?)
            }
            "peer_id" if peer_id.is_none() => {
                peer_id = Some(decode_exact(v).ok_or("peer_id must be 20 bytes")?)
            }
            "port" => port = Some(number::<u16>("port", v)?),
            "uploaded" => q.uploaded = number("uploaded", v)?,
            "downloaded" => q.downloaded = number("downloaded", v)?,
            "left" => q.left = Some(number("left", v)?),
            "event" => {
                q.event = match v {
                    "started" => Event::Started,
                    "completed" => Event::Completed,
                    "stopped" => Event::Stopped,
                    "" | "empty" | "paused" => Event::None,
                    _ => return Err("event must be started, completed, stopped or empty".into()),
                }
            }
            // Negative or garbage numwant is read as "the default", as clients expect.
            "numwant" => q.numwant = v.parse().ok(),
            "compact" => q.compact = v != "0",
            "no_peer_id" => q.no_peer_id = v == "1",
            "key" => q.key = Some(fold_key(v)),
            "ip" | "ipv4" if q.ip.is_none() => q.ip = Some(v),
            _ => {}
        }
    }
    q.info_hash = info_hash.ok_or("missing info_hash")?;
    q.peer_id = peer_id.ok_or("missing peer_id")?;
    q.port = port.ok_or("missing port")?;
    if q.port == 0 && q.event != Event::Stopped {
        return Err("port must be from 1 to 65535".into());
    }
    Ok(q)
}

/// The info-hashes of a scrape query (none: a full scrape), at most `max`.
pub fn parse_scrape(query: &str, max: usize) -> Result<Vec<[u8; 20]>, String> {
    let mut out = Vec::new();
    for (k, v) in params(query) {
        if k == "info_hash" {
            if out.len() == max {
                return Err(format!("scrape of more than {max} info_hashes"));
            }
            out.push(decode_exact(v).ok_or("info_hash must be 20 bytes")?);
        }
    }
    Ok(out)
}

/// Counts for one torrent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SwarmCounts {
    pub complete: u32,
    pub incomplete: u32,
    pub downloaded: u64,
}

/// A peer as the dictionary form lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DictPeer {
    pub ip: std::net::IpAddr,
    pub port: u16,
    pub peer_id: Option<[u8; 20]>,
}

/// Peers in a response: compact strings (6 bytes per IPv4 peer, 18 per IPv6 peer) or the
/// dictionary form.
pub enum Peers<'a> {
    Compact { v4: &'a [u8], v6: &'a [u8] },
    Dict(&'a [DictPeer]),
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(s);
}

fn put_int(out: &mut Vec<u8>, key: &str, v: u64) {
    put_str(out, key.as_bytes());
    out.push(b'i');
    out.extend_from_slice(v.to_string().as_bytes());
    out.push(b'e');
}

/// Builds an announce response (keys in sorted order, as bencode requires).
pub fn announce_response(
    counts: SwarmCounts,
    interval: u32,
    min_interval: u32,
    peers: &Peers<'_>,
    tracker_id: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    out.push(b'd');
    put_int(&mut out, "complete", counts.complete as u64);
    put_int(&mut out, "downloaded", counts.downloaded);
    put_int(&mut out, "incomplete", counts.incomplete as u64);
    put_int(&mut out, "interval", interval as u64);
    put_int(&mut out, "min interval", min_interval as u64);
    match peers {
        Peers::Compact { v4, v6 } => {
            put_str(&mut out, b"peers");
            put_str(&mut out, v4);
            if !v6.is_empty() {
                put_str(&mut out, b"peers6");
                put_str(&mut out, v6);
            }
        }
        Peers::Dict(list) => {
            put_str(&mut out, b"peers");
            out.push(b'l');
            for p in list.iter() {
                out.push(b'd');
                put_str(&mut out, b"ip");
                put_str(&mut out, p.ip.to_string().as_bytes());
                if let Some(id) = &p.peer_id {
                    put_str(&mut out, b"peer id");
                    put_str(&mut out, id);
                }
                put_int(&mut out, "port", p.port as u64);
                out.push(b'e');
            }
            out.push(b'e');
        }
    }
    put_str(&mut out, b"tracker id");
    put_str(&mut out, tracker_id.as_bytes());
    out.push(b'e');
    out
}

/// Builds a scrape response; `files` must be sorted by info-hash and free of duplicates.
pub fn scrape_response(files: &[([u8; 20], SwarmCounts)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + files.len() * 80);
    out.extend_from_slice(b"d5:filesd");
    for (hash, c) in files {
        put_str(&mut out, hash);
        out.push(b'd');
        put_int(&mut out, "complete", c.complete as u64);
        put_int(&mut out, "downloaded", c.downloaded);
        put_int(&mut out, "incomplete", c.incomplete as u64);
        out.push(b'e');
    }
    out.extend_from_slice(b"ee");
    out
}

/// Builds a failure response.
/// One compact peer (BEP-23: 4 address bytes and the port; BEP-7: 16 and the port).
pub fn parse_compact_peer(b: &[u8]) -> Option<std::net::SocketAddr> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let (ip, port) = match b.len() {
        6 => (
            IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])),
            [b[4], b[5]],
        ),
        18 => {
            let a: [u8; 16] = b[..16].try_into().ok()?;
            (IpAddr::V6(Ipv6Addr::from(a)), [b[16], b[17]])
        }
        _ => return None,
    };
    Some(std::net::SocketAddr::new(ip, u16::from_be_bytes(port)))
}

pub fn failure(reason: &str) -> Vec<u8> {
    let mut out = b"d".to_vec();
    put_str(&mut out, b"failure reason");
    put_str(&mut out, reason.as_bytes());
    out.push(b'e');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::bt::bencode::{self, Value};
    use crate::proto::http::escape;
    use proptest::prelude::*;

    fn query(ih: &[u8], pid: &[u8], rest: &str) -> String {
        format!(
            "info_hash={}&peer_id={}&{rest}",
            escape::encode(ih),
            escape::encode(pid)
        )
    }

    #[test]
    fn compact_peers_parse_back() {
        let v4 = parse_compact_peer(&[127, 0, 0, 1, 0x1a, 0xe1]).unwrap();
        assert_eq!(v4, "127.0.0.1:6881".parse().unwrap());
        let mut b = [0u8; 18];
        b[15] = 1;
        b[17] = 80;
        assert_eq!(parse_compact_peer(&b).unwrap(), "[::1]:80".parse().unwrap());
        assert_eq!(parse_compact_peer(&[1, 2, 3]), None);
    }

    #[test]
    fn announce_query_fields() {
        let q = query(
            &[0xab; 20],
            b"-TR3000-abcdefghijkl",
            "port=6881&uploaded=1&downloaded=2&left=3&event=started&numwant=20&compact=1&no_peer_id=1&key=DEADBEEF&ip=1.2.3.4",
        );
        let a = parse_announce(&q).unwrap();
        assert_eq!(a.info_hash, [0xab; 20]);
        assert_eq!(&a.peer_id, b"-TR3000-abcdefghijkl");
        assert_eq!(
            (a.port, a.uploaded, a.downloaded, a.left),
            (6881, 1, 2, Some(3))
        );
        assert_eq!(
            (a.event, a.numwant, a.compact),
            (Event::Started, Some(20), true)
        );
        assert_eq!(
            (a.no_peer_id, a.key, a.ip),
            (true, Some(0xdead_beef), Some("1.2.3.4"))
        );
    }

    #[test]
    fn plus_is_a_literal_byte() {
        let q = "info_hash=++++++++++++++++++++&peer_id=%2B%2b++++++++++++++++++&port=1";
        let a = parse_announce(q).unwrap();
        assert_eq!(a.info_hash, [b'+'; 20]);
        assert_eq!(a.peer_id, [b'+'; 20]);
    }

    #[test]
    fn bad_announces_get_reasons() {
        let ok = query(&[1; 20], &[2; 20], "port=1");
        assert!(parse_announce(&ok).is_ok());
        for (q, why) in [
            (
                "peer_id=aaaaaaaaaaaaaaaaaaaa&port=1".to_string(),
                "missing info_hash",
            ),
            (
                query(&[1; 19], &[2; 20], "port=1"),
                "info_hash must be 20 bytes",
            ),
            (
                query(&[1; 21], &[2; 20], "port=1"),
                "info_hash must be 20 bytes",
            ),
            (query(&[1; 20], &[2; 20], ""), "missing port"),
            (query(&[1; 20], &[2; 20], "port=70000"), "port must be"),
            (query(&[1; 20], &[2; 20], "port=0"), "port must be"),
            (query(&[1; 20], &[2; 20], "port=1&left=-1"), "left must be"),
            (
                query(&[1; 20], &[2; 20], "port=1&event=bogus"),
                "event must be",
            ),
            (
                "info_hash=%zz&peer_id=x&port=1".to_string(),
                "info_hash must be",
            ),
            (
                query(&[1; 20], &[2; 3], "port=1"),
                "peer_id must be 20 bytes",
            ),
        ] {
            let e = parse_announce(&q).unwrap_err();
            assert!(e.starts_with(why), "{q}: {e}");
        }
        let stop = query(&[1; 20], &[2; 20], "port=0&event=stopped");
        assert!(parse_announce(&stop).is_ok());
    }

    #[test]
    fn scrape_query() {
        let q = format!(
            "info_hash={}&info_hash={}",
            escape::encode(&[1; 20]),
            escape::encode(&[2; 20])
        );
        assert_eq!(parse_scrape(&q, 10).unwrap(), vec![[1; 20], [2; 20]]);
        assert!(parse_scrape(&q, 1).unwrap_err().contains("more than 1"));
        assert!(parse_scrape("", 5).unwrap().is_empty());
        assert!(parse_scrape("info_hash=abc", 5).is_err());
    }

    #[test]
    fn responses_are_valid_bencode() {
        let c = SwarmCounts {
            complete: 2,
            incomplete: 3,
            downloaded: 9,
        };
        let body = announce_response(
            c,
            1800,
            900,
            &Peers::Compact {
                v4: &[127, 0, 0, 1, 0x1a, 0xe1],
                v6: &[0; 18],
            },
            "tg",
        );
        let v = bencode::decode(&body).unwrap();
        assert_eq!(v.get("complete").and_then(Value::as_int), Some(2));
        assert_eq!(v.get("peers").and_then(Value::as_bytes).unwrap().len(), 6);
        assert_eq!(v.get("peers6").and_then(Value::as_bytes).unwrap().len(), 18);
        let list = [DictPeer {
            ip: "::1".parse().unwrap(),
            port: 80,
            peer_id: Some([b'x'; 20]),
        }];
        let body = announce_response(c, 1, 1, &Peers::Dict(&list), "tg");
        let v = bencode::decode(&body).unwrap();
        let peers = v.get("peers").unwrap().as_list().unwrap();
        assert_eq!(
            peers[0].get("ip").and_then(Value::as_bytes),
            Some(&b"::1"[..])
        );
        assert_eq!(peers[0].get("port").and_then(Value::as_int), Some(80));
        let body = scrape_response(&[([1; 20], c), ([2; 20], SwarmCounts::default())]);
        let v = bencode::decode(&body).unwrap();
        let files = v.get("files").unwrap();
        let one = &files
            .as_dict()
            .unwrap()
            .iter()
            .find(|(k, _)| *k == [1; 20])
            .unwrap()
            .1;
        assert_eq!(one.get("downloaded").and_then(Value::as_int), Some(9));
        let body = failure("nope");
        let v = bencode::decode(&body).unwrap();
        assert_eq!(
            v.get("failure reason").and_then(Value::as_bytes),
            Some(&b"nope"[..])
        );
    }

    proptest! {
        #[test]
        fn raw_bytes_round_trip(ih in any::<[u8; 20]>(), pid in any::<[u8; 20]>(), port in 1u16..) {
            let q = query(&ih, &pid, &format!("port={port}"));
            let a = parse_announce(&q).unwrap();
            prop_assert_eq!((a.info_hash, a.peer_id, a.port), (ih, pid, port));
        }

        #[test]
        fn any_query_parses_or_fails_cleanly(q in ".{0,200}") {
            let _ = parse_announce(&q);
            let _ = parse_scrape(&q, 74);
        }
    }
}
