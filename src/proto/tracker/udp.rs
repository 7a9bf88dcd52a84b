//! UDP tracker packets (BEP-15, BEP-41 options): parse and build requests and responses.
//!
//! Parsing borrows from the packet and never allocates; building appends to a caller's
//! buffer. Both directions exist for both sides, so every message round-trips in tests and
//! the client side can reuse them.

/// The magic `protocol_id` of a connect request.
pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;
pub const ACTION_CONNECT: u32 = 0;
pub const ACTION_ANNOUNCE: u32 = 1;
pub const ACTION_SCRAPE: u32 = 2;
pub const ACTION_ERROR: u32 = 3;
/// Most info-hashes one scrape packet may carry (BEP-15).
pub const MAX_SCRAPE_HASHES: usize = 74;
/// Length of an announce request before any BEP-41 options.
pub const ANNOUNCE_LEN: usize = 98;
/// Largest request accepted: an announce with a full set of options, or a scrape.
pub const MAX_REQUEST_LEN: usize = 1500;

/// Announce `event` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpEvent {
    None,
    Completed,
    Started,
    Stopped,
}

impl UdpEvent {
    fn from_u32(v: u32) -> Option<UdpEvent> {
        Some(match v {
            0 => UdpEvent::None,
            1 => UdpEvent::Completed,
            2 => UdpEvent::Started,
            3 => UdpEvent::Stopped,
            _ => return None,
        })
    }

    fn code(self) -> u32 {
        match self {
            UdpEvent::None => 0,
            UdpEvent::Completed => 1,
            UdpEvent::Started => 2,
            UdpEvent::Stopped => 3,
        }
    }
}

/// An announce request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceRequest<'a> {
    pub connection_id: u64,
    pub transaction_id: u32,
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
    pub downloaded: u64,
    pub left: u64,
    pub uploaded: u64,
    pub event: UdpEvent,
    /// IPv4 address the client asks to be listed at (0: the packet's source).
    pub ip: u32,
    pub key: u32,
    /// -1 asks for the tracker's default.
    pub num_want: i32,
    pub port: u16,
    /// BEP-41 options, unparsed (see [`url_data`]).
    pub options: &'a [u8],
}

/// A request packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    Connect {
        transaction_id: u32,
    },
    Announce(AnnounceRequest<'a>),
    Scrape {
        connection_id: u64,
        transaction_id: u32,
        /// 20-byte info-hashes back to back (at most [`MAX_SCRAPE_HASHES`]).
        hashes: &'a [u8],
    },
}

/// Why a request could not be parsed. `transaction_id` is set when the packet was long
/// enough to carry one, so the sender can be told with an error packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    pub transaction_id: Option<u32>,
    pub reason: &'static str,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn hash_at(b: &[u8], at: usize) -> [u8; 20] {
    b[at..at + 20].try_into().expect("20 bytes")
}

impl<'a> Request<'a> {
    /// Parses a request packet.
    pub fn parse(p: &'a [u8]) -> Result<Request<'a>, RequestError> {
        let fail = |tid, reason| {
            Err(RequestError {
                transaction_id: tid,
                reason,
            })
        };
        if p.len() < 16 {
            return fail(None, "packet too short");
        }
        let connection_id = u64_at(p, 0);
        let action = u32_at(p, 8);
        let tid = u32_at(p, 12);
        if p.len() > MAX_REQUEST_LEN {
            return fail(Some(tid), "packet too long");
        }
        match action {
            ACTION_CONNECT if connection_id == PROTOCOL_ID => Ok(Request::Connect {
                transaction_id: tid,
            }),
            ACTION_CONNECT => fail(Some(tid), "bad protocol id"),
            ACTION_ANNOUNCE => {
                if p.len() < ANNOUNCE_LEN {
                    return fail(Some(tid), "announce too short");
                }
                let Some(event) = UdpEvent::from_u32(u32_at(p, 80)) else {
                    return fail(Some(tid), "unknown event");
                };
                Ok(Request::Announce(AnnounceRequest {
                    connection_id,
                    transaction_id: tid,
                    info_hash: hash_at(p, 16),
                    peer_id: hash_at(p, 36),
                    downloaded: u64_at(p, 56),
                    left: u64_at(p, 64),
                    uploaded: u64_at(p, 72),
                    event,
                    ip: u32_at(p, 84),
                    key: u32_at(p, 88),
                    num_want: u32_at(p, 92) as i32,
                    port: u16_at(p, 96),
                    options: &p[ANNOUNCE_LEN..],
                }))
            }
            ACTION_SCRAPE => {
                let body = &p[16..];
                if body.is_empty() || body.len() % 20 != 0 {
                    return fail(Some(tid), "scrape must carry whole 20-byte info-hashes");
                }
                if body.len() / 20 > MAX_SCRAPE_HASHES {
                    return fail(Some(tid), "scrape of more than 74 info-hashes");
                }
                Ok(Request::Scrape {
                    connection_id,
                    transaction_id: tid,
                    hashes: body,
                })
            }
            _ => fail(Some(tid), "unknown action"),
        }
    }

    /// Appends the packet's bytes.
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Request::Connect { transaction_id } => {
                out.extend_from_slice(&PROTOCOL_ID.to_be_bytes());
                out.extend_from_slice(&ACTION_CONNECT.to_be_bytes());
                out.extend_from_slice(&transaction_id.to_be_bytes());
            }
            Request::Announce(a) => {
                out.extend_from_slice(&a.connection_id.to_be_bytes());
                out.extend_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
                out.extend_from_slice(&a.transaction_id.to_be_bytes());
                out.extend_from_slice(&a.info_hash);
                out.extend_from_slice(&a.peer_id);
                out.extend_from_slice(&a.downloaded.to_be_bytes());
                out.extend_from_slice(&a.left.to_be_bytes());
                out.extend_from_slice(&a.uploaded.to_be_bytes());
                out.extend_from_slice(&a.event.code().to_be_bytes());
                out.extend_from_slice(&a.ip.to_be_bytes());
                out.extend_from_slice(&a.key.to_be_bytes());
                out.extend_from_slice(&a.num_want.to_be_bytes());
                out.extend_from_slice(&a.port.to_be_bytes());
                out.extend_from_slice(a.options);
            }
            Request::Scrape {
                connection_id,
                transaction_id,
                hashes,
            } => {
                out.extend_from_slice(&connection_id.to_be_bytes());
                out.extend_from_slice(&ACTION_SCRAPE.to_be_bytes());
                out.extend_from_slice(&transaction_id.to_be_bytes());
                out.extend_from_slice(hashes);
            }
        }
    }
}

/// The BEP-41 URLData of an announce's options, concatenated. Unknown option types are
/// skipped by their length byte; a truncated option ends the list.
pub fn url_data(options: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < options.len() {
        match options[i] {
            0 => break,
            1 => i += 1,
            kind => {
                let Some(&len) = options.get(i + 1) else {
                    break;
                };
                let Some(data) = options.get(i + 2..i + 2 + len as usize) else {
                    break;
                };
                if kind == 2 {
                    out.extend_from_slice(data);
                }
                i += 2 + len as usize;
            }
        }
    }
    out
}

/// A `udp://host:port/path?query` tracker URL split into host, port and the path with its
/// query (the BEP-41 URLData), or `None` when it is not one. IPv6 hosts are bracketed.
pub fn split_url(url: &str) -> Option<(&str, u16, &str)> {
    let rest = url
        .get(..6)
        .filter(|s| s.eq_ignore_ascii_case("udp://"))
        .map(|_| &url[6..])?;
    let at = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(at);
    let (host, port) = authority.rsplit_once(':')?;
    let host = match host.strip_prefix('[') {
        Some(h) => h.strip_suffix(']')?,
        None if host.contains(':') => return None,
        None => host,
    };
    let port: u16 = port.parse().ok().filter(|&p| p != 0)?;
    (!host.is_empty()).then_some((host, port, path))
}

/// The BEP-41 options carrying `url_data` (split into 255-byte URLData options, at most
/// 1024 bytes of it), then the end-of-options marker; empty for empty `url_data`.
pub fn url_data_options(url_data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if url_data.is_empty() {
        return out;
    }
    for chunk in url_data[..url_data.len().min(1024)].chunks(255) {
        out.push(2);
        out.push(chunk.len() as u8);
        out.extend_from_slice(chunk);
    }
    out.push(0);
    out
}

/// Seeders, completed downloads and leechers of one torrent, as scrape reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScrapeStats {
    pub seeders: u32,
    pub completed: u32,
    pub leechers: u32,
}

/// A response packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response<'a> {
    Connect {
        transaction_id: u32,
        connection_id: u64,
    },
    Announce {
        transaction_id: u32,
        interval: u32,
        leechers: u32,
        seeders: u32,
        /// Compact peers: 6 bytes each for IPv4 clients, 18 for IPv6 clients.
        peers: &'a [u8],
    },
    Scrape {
        transaction_id: u32,
        /// 12 bytes per torrent: seeders, completed, leechers.
        stats: &'a [u8],
    },
    Error {
        transaction_id: u32,
        message: &'a [u8],
    },
}

impl<'a> Response<'a> {
    /// Appends the packet's bytes.
    pub fn write(&self, out: &mut Vec<u8>) {
        let head = |out: &mut Vec<u8>, action: u32, tid: u32| {
            out.extend_from_slice(&action.to_be_bytes());
            out.extend_from_slice(&tid.to_be_bytes());
        };
        match self {
            Response::Connect {
                transaction_id,
                connection_id,
            } => {
                head(out, ACTION_CONNECT, *transaction_id);
                out.extend_from_slice(&connection_id.to_be_bytes());
            }
            Response::Announce {
                transaction_id,
                interval,
                leechers,
                seeders,
                peers,
            } => {
                head(out, ACTION_ANNOUNCE, *transaction_id);
                out.extend_from_slice(&interval.to_be_bytes());
                out.extend_from_slice(&leechers.to_be_bytes());
                out.extend_from_slice(&seeders.to_be_bytes());
                out.extend_from_slice(peers);
            }
            Response::Scrape {
                transaction_id,
                stats,
            } => {
                head(out, ACTION_SCRAPE, *transaction_id);
                out.extend_from_slice(stats);
            }
            Response::Error {
                transaction_id,
                message,
            } => {
                head(out, ACTION_ERROR, *transaction_id);
                out.extend_from_slice(message);
            }
        }
    }

    /// Parses a response packet; `peer_len` is 6 (IPv4) or 18 (IPv6).
    pub fn parse(p: &'a [u8], peer_len: usize) -> Option<Response<'a>> {
        if p.len() < 8 {
            return None;
        }
        let tid = u32_at(p, 4);
        match u32_at(p, 0) {
            ACTION_CONNECT if p.len() == 16 => Some(Response::Connect {
                transaction_id: tid,
                connection_id: u64_at(p, 8),
            }),
            ACTION_ANNOUNCE if p.len() >= 20 && (p.len() - 20) % peer_len == 0 => {
                Some(Response::Announce {
                    transaction_id: tid,
                    interval: u32_at(p, 8),
                    leechers: u32_at(p, 12),
                    seeders: u32_at(p, 16),
                    peers: &p[20..],
                })
            }
            ACTION_SCRAPE if (p.len() - 8) % 12 == 0 => Some(Response::Scrape {
                transaction_id: tid,
                stats: &p[8..],
            }),
            ACTION_ERROR => Some(Response::Error {
                transaction_id: tid,
                message: &p[8..],
            }),
            _ => None,
        }
    }
}

/// Appends one torrent's 12-byte scrape entry.
pub fn write_scrape_stats(out: &mut Vec<u8>, s: ScrapeStats) {
    out.extend_from_slice(&s.seeders.to_be_bytes());
    out.extend_from_slice(&s.completed.to_be_bytes());
    out.extend_from_slice(&s.leechers.to_be_bytes());
}

/// Reads the 12-byte scrape entries of a scrape response.
pub fn read_scrape_stats(stats: &[u8]) -> Vec<ScrapeStats> {
    stats
        .chunks_exact(12)
        .map(|c| ScrapeStats {
            seeders: u32_at(c, 0),
            completed: u32_at(c, 4),
            leechers: u32_at(c, 8),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn event() -> impl Strategy<Value = UdpEvent> {
        prop_oneof![
            Just(UdpEvent::None),
            Just(UdpEvent::Completed),
            Just(UdpEvent::Started),
            Just(UdpEvent::Stopped)
        ]
    }

    proptest! {
        #[test]
        fn connect_round_trips(tid in any::<u32>(), cid in any::<u64>()) {
            let mut buf = Vec::new();
            Request::Connect { transaction_id: tid }.write(&mut buf);
            prop_assert_eq!(Request::parse(&buf).unwrap(), Request::Connect { transaction_id: tid });
            buf.clear();
            let r = Response::Connect { transaction_id: tid, connection_id: cid };
            r.write(&mut buf);
            prop_assert_eq!(Response::parse(&buf, 6).unwrap(), r);
        }

        #[test]
        fn announce_round_trips(
            cid in any::<u64>(), tid in any::<u32>(), ih in any::<[u8; 20]>(),
            pid in any::<[u8; 20]>(), down in any::<u64>(), left in any::<u64>(),
            up in any::<u64>(), ev in event(), ip in any::<u32>(), key in any::<u32>(),
            want in any::<i32>(), port in any::<u16>(),
            options in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let req = Request::Announce(AnnounceRequest {
                connection_id: cid, transaction_id: tid, info_hash: ih, peer_id: pid,
                downloaded: down, left, uploaded: up, event: ev, ip, key, num_want: want,
                port, options: &options,
            });
            let mut buf = Vec::new();
            req.write(&mut buf);
            prop_assert_eq!(buf.len(), ANNOUNCE_LEN + options.len());
            prop_assert_eq!(Request::parse(&buf).unwrap(), req);
        }

        #[test]
        fn announce_response_round_trips(
            tid in any::<u32>(), interval in any::<u32>(), l in any::<u32>(), s in any::<u32>(),
            v6 in any::<bool>(), n in 0usize..50, fill in any::<u8>(),
        ) {
            let len = if v6 { 18 } else { 6 };
            let peers = vec![fill; n * len];
            let r = Response::Announce { transaction_id: tid, interval, leechers: l, seeders: s, peers: &peers };
            let mut buf = Vec::new();
            r.write(&mut buf);
            prop_assert_eq!(Response::parse(&buf, len).unwrap(), r);
        }

        #[test]
        fn scrape_round_trips(
            cid in any::<u64>(), tid in any::<u32>(),
            stats in proptest::collection::vec(any::<(u32, u32, u32)>(), 1..=74),
        ) {
            let hashes: Vec<u8> = stats.iter().flat_map(|s| {
                let mut h = [0u8; 20];
                h[..4].copy_from_slice(&s.0.to_be_bytes());
                h
            }).collect();
            let req = Request::Scrape { connection_id: cid, transaction_id: tid, hashes: &hashes };
            let mut buf = Vec::new();
            req.write(&mut buf);
            prop_assert_eq!(Request::parse(&buf).unwrap(), req);
            let mut body = Vec::new();
            let want: Vec<ScrapeStats> = stats.iter()
                .map(|&(seeders, completed, leechers)| ScrapeStats { seeders, completed, leechers })
                .collect();
            for s in &want {
                write_scrape_stats(&mut body, *s);
            }
            let r = Response::Scrape { transaction_id: tid, stats: &body };
            buf.clear();
            r.write(&mut buf);
            let back = Response::parse(&buf, 6).unwrap();
            prop_assert_eq!(&back, &r);
            let Response::Scrape { stats, .. } = back else { unreachable!() };
            prop_assert_eq!(read_scrape_stats(stats), want);
        }

        #[test]
        fn error_round_trips(tid in any::<u32>(), msg in proptest::collection::vec(any::<u8>(), 0..100)) {
            let r = Response::Error { transaction_id: tid, message: &msg };
            let mut buf = Vec::new();
            r.write(&mut buf);
            prop_assert_eq!(Response::parse(&buf, 6).unwrap(), r);
        }

        #[test]
        fn any_packet_parses_or_fails_cleanly(p in proptest::collection::vec(any::<u8>(), 0..2000)) {
            match Request::parse(&p) {
                Ok(_) => prop_assert!(p.len() >= 16),
                Err(e) => prop_assert!(e.transaction_id.is_some() || p.len() < 16),
            }
            let _ = url_data(&p);
        }
    }

    #[test]
    fn bad_packets_name_the_problem() {
        assert_eq!(Request::parse(&[0; 15]).unwrap_err().transaction_id, None);
        let mut p = Vec::new();
        Request::Connect { transaction_id: 7 }.write(&mut p);
        p[0] ^= 1;
        let e = Request::parse(&p).unwrap_err();
        assert_eq!((e.transaction_id, e.reason), (Some(7), "bad protocol id"));
        let mut p = vec![0u8; 16];
        p[11] = 9;
        assert_eq!(Request::parse(&p).unwrap_err().reason, "unknown action");
        p[11] = 1;
        assert_eq!(Request::parse(&p).unwrap_err().reason, "announce too short");
        p[11] = 2;
        p.extend_from_slice(&[0; 19]);
        assert!(Request::parse(&p).is_err(), "partial hash");
        let mut p = vec![0u8; 16 + 75 * 20];
        p[11] = 2;
        assert_eq!(Request::parse(&p).unwrap_err().reason, "packet too long");
        let mut p = vec![0u8; 16 + 74 * 20];
        p[11] = 2;
        assert!(Request::parse(&p).is_ok(), "74 hashes fit");
        let mut p = vec![0u8; ANNOUNCE_LEN];
        p[11] = 1;
        p[83] = 4;
        assert_eq!(Request::parse(&p).unwrap_err().reason, "unknown event");
    }

    #[test]
    fn client_urls_and_options() {
        assert_eq!(
            split_url("udp://t.example:6969/announce?k=1"),
            Some(("t.example", 6969, "/announce?k=1"))
        );
        assert_eq!(split_url("UDP://[::1]:80"), Some(("::1", 80, "")));
        assert_eq!(split_url("udp://h:1?x"), Some(("h", 1, "?x")));
        for bad in [
            "udp://h",
            "udp://h:0/",
            "udp://:5/",
            "udp://::1:5",
            "http://h:1/",
            "udp",
        ] {
            assert_eq!(split_url(bad), None, "{bad}");
        }
        let long = vec![b'a'; 300];
        let opts = url_data_options(&long);
        assert_eq!(url_data(&opts), long);
        assert_eq!(opts.len(), 300 + 5);
        assert!(url_data_options(b"").is_empty());
    }

    #[test]
    fn bep41_options() {
        // NOP, URLData "/ann", unknown type 9 with 2 bytes, URLData "?x", end, junk.
        let opts = [
            1, 2, 4, b'/', b'a', b'n', b'n', 9, 2, 0xff, 0xff, 2, 2, b'?', b'x', 0, 2, 9,
        ];
        assert_eq!(url_data(&opts), b"/ann?x");
        assert_eq!(
            url_data(&[2, 10, b'a']),
            b"",
            "truncated option ends the list"
        );
        assert_eq!(url_data(&[2]), b"");
    }
}
