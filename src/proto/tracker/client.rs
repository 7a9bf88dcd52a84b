//! The client side of HTTP tracker announces (BEP-3, 23, 7): the announce URL for a query,
//! and the answer parsed from its bencoded body, bounded, with every form trackers send:
//! compact IPv4 `peers`, compact `peers6`, the dictionary list form, `failure reason` and
//! `warning message`. Pure: the `announce-N` threads do the HTTP and feed the body in.

use crate::proto::bt::bencode::{self, Kind, Limits, Value};
use crate::proto::http::escape;
use crate::proto::tracker::http::Event;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Most peers taken from one answer.
pub const MAX_PEERS: usize = 1000;
/// Largest answer body read.
pub const MAX_BODY: usize = 256 * 1024;

/// What we tell the tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
    pub port: u16,
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
    pub event: Event,
    pub numwant: u32,
    pub key: u32,
    /// The `tracker id` an earlier answer gave, sent back.
    pub tracker_id: Option<String>,
}

/// What the tracker answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub interval: u32,
    pub min_interval: Option<u32>,
    pub complete: Option<u32>,
    pub incomplete: Option<u32>,
    pub peers: Vec<SocketAddr>,
    pub warning: Option<String>,
    pub tracker_id: Option<String>,
}

/// Why an answer gives no peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackerError {
    /// The tracker refused, with its reason.
    Failure(String),
    /// The body is not a tracker answer.
    Malformed(String),
}

impl std::fmt::Display for TrackerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrackerError::Failure(r) => write!(f, "tracker refused: {r}"),
            TrackerError::Malformed(r) => write!(f, "bad tracker answer: {r}"),
        }
    }
}

/// The announce URL: `base` (which may carry a query of its own, such as a passkey) plus
/// the announce parameters, raw bytes percent-encoded.
pub fn announce_url(base: &str, a: &Announce) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    let event = match a.event {
        Event::None => "",
        Event::Started => "&event=started",
        Event::Completed => "&event=completed",
        Event::Stopped => "&event=stopped",
    };
    let mut url = format!(
        "{base}{sep}info_hash={}&peer_id={}&port={}&uploaded={}&downloaded={}&left={}\
         &compact=1&numwant={}&key={:08x}{event}",
        escape::encode(&a.info_hash),
        escape::encode(&a.peer_id),
        a.port,
        a.uploaded,
        a.downloaded,
        a.left,
        a.numwant,
        a.key,
    );
    if let Some(id) = &a.tracker_id {
        url.push_str("&trackerid=");
        url.push_str(&escape::encode(id.as_bytes()));
    }
    url
}

fn text(v: Option<&Value<'_>>) -> Option<String> {
    v.and_then(Value::as_bytes)
        .map(|b| String::from_utf8_lossy(&b[..b.len().min(512)]).into_owned())
}

fn count(v: Option<&Value<'_>>) -> Option<u32> {
    v.and_then(Value::as_int)
        .and_then(|n| u32::try_from(n.max(0)).ok())
}

/// Parses an announce answer body.
pub fn parse_answer(body: &[u8]) -> Result<Answer, TrackerError> {
    if body.len() > MAX_BODY {
        return Err(TrackerError::Malformed(format!(
            "{} bytes, more than {MAX_BODY}",
            body.len()
        )));
    }
    let limits = Limits {
        max_depth: 8,
        max_str_len: MAX_BODY,
        max_values: 4 * MAX_PEERS + 64,
        max_input_bytes: MAX_BODY,
    };
    let v =
        bencode::decode_with(body, limits).map_err(|e| TrackerError::Malformed(e.to_string()))?;
    if v.as_dict().is_none() {
        return Err(TrackerError::Malformed("not a dictionary".into()));
    }
    if let Some(reason) = text(v.get("failure reason")) {
        return Err(TrackerError::Failure(reason));
    }
    let interval = count(v.get("interval"))
        .ok_or_else(|| TrackerError::Malformed("no interval".into()))?
        .clamp(30, 86_400);
    let mut peers = Vec::new();
    match v.get("peers").map(|p| &p.kind) {
        Some(Kind::Bytes(b)) => {
            if b.len() % 6 != 0 {
                return Err(TrackerError::Malformed(format!(
                    "compact peers of {} bytes",
                    b.len()
                )));
            }
            for c in b.chunks(6).take(MAX_PEERS) {
                let ip = Ipv4Addr::new(c[0], c[1], c[2], c[3]);
                peers.push(SocketAddr::new(
                    IpAddr::V4(ip),
                    u16::from_be_bytes([c[4], c[5]]),
                ));
            }
        }
        Some(Kind::List(list)) => {
            for p in list.iter().take(MAX_PEERS) {
                let ip = text(p.get("ip")).and_then(|s| s.parse::<IpAddr>().ok());
                let port = p
                    .get("port")
                    .and_then(Value::as_int)
                    .and_then(|n| u16::try_from(n).ok());
                if let (Some(ip), Some(port)) = (ip, port) {
                    peers.push(SocketAddr::new(ip, port));
                }
            }
        }
        None => {}
        Some(_) => {
            return Err(TrackerError::Malformed(
                "peers is neither a string nor a list".into(),
            ))
        }
    }
    if let Some(b) = v.get("peers6").and_then(Value::as_bytes) {
        if b.len() % 18 != 0 {
            return Err(TrackerError::Malformed(format!(
                "compact peers6 of {} bytes",
                b.len()
            )));
        }
        for c in b.chunks(18).take(MAX_PEERS.saturating_sub(peers.len())) {
            let mut a = [0u8; 16];
            a.copy_from_slice(&c[..16]);
            peers.push(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(a)),
                u16::from_be_bytes([c[16], c[17]]),
            ));
        }
    }
    // Port 0 cannot be dialed.
    peers.retain(|p| p.port() != 0);
    Ok(Answer {
        interval,
        min_interval: count(v.get("min interval")),
        complete: count(v.get("complete")),
        incomplete: count(v.get("incomplete")),
        peers,
        warning: text(v.get("warning message")),
        tracker_id: text(v.get("tracker id")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::tracker::http::{self as server, DictPeer, Peers, SwarmCounts};

    fn announce() -> Announce {
        Announce {
            info_hash: *b"\x01+ %&=?abcdefghijklm",
            peer_id: *b"-TG0001-aaaaaaaaaaaa",
            port: 6881,
            uploaded: 1,
            downloaded: 2,
            left: 3,
            event: Event::Started,
            numwant: 50,
            key: 0xdead_beef,
            tracker_id: Some("t 1".into()),
        }
    }

    #[test]
    fn the_url_is_what_our_tracker_parses() {
        let url = announce_url("http://t.example/announce?passkey=x", &announce());
        assert!(url.starts_with("http://t.example/announce?passkey=x&info_hash="));
        assert!(url.ends_with("&trackerid=t%201"), "{url}");
        let query = url.split_once('?').unwrap().1;
        let q = server::parse_announce(query).unwrap();
        assert_eq!(q.info_hash, announce().info_hash);
        assert_eq!(q.peer_id, announce().peer_id);
        assert_eq!((q.port, q.left, q.event), (6881, Some(3), Event::Started));
        assert_eq!(q.key, Some(0xdead_beef));
    }

    #[test]
    fn compact_dict_and_v6_answers() {
        let counts = SwarmCounts {
            complete: 2,
            incomplete: 5,
            downloaded: 9,
        };
        let v4 = [127, 0, 0, 1, 0x1a, 0xe1, 10, 0, 0, 2, 0, 0];
        let mut v6 = [0u8; 18];
        v6[15] = 1;
        v6[16] = 0x1a;
        v6[17] = 0xe2;
        let body = server::announce_response(
            counts,
            1800,
            300,
            &Peers::Compact { v4: &v4, v6: &v6 },
            "tid",
        );
        let a = parse_answer(&body).unwrap();
        assert_eq!(a.interval, 1800);
        assert_eq!(a.min_interval, Some(300));
        assert_eq!((a.complete, a.incomplete), (Some(2), Some(5)));
        assert_eq!(
            a.peers,
            vec![
                "127.0.0.1:6881".parse().unwrap(),
                "[::1]:6882".parse().unwrap()
            ],
            "the port-0 peer is dropped"
        );
        assert_eq!(a.tracker_id.as_deref(), Some("tid"));
        let dict = [DictPeer {
            ip: "10.1.2.3".parse().unwrap(),
            port: 51413,
            peer_id: Some([7; 20]),
        }];
        let a = parse_answer(&server::announce_response(
            counts,
            60,
            30,
            &Peers::Dict(&dict),
            "x",
        ))
        .unwrap();
        assert_eq!(a.peers, vec!["10.1.2.3:51413".parse().unwrap()]);
    }

    #[test]
    fn failures_and_garbage() {
        assert_eq!(
            parse_answer(&server::failure("unregistered torrent")),
            Err(TrackerError::Failure("unregistered torrent".into()))
        );
        for bad in [
            &b"not bencode"[..],
            b"le",
            b"d5:peers3:abce",
            b"d8:intervali60e5:peers5:abcdee",
            b"d8:intervali60e6:peers67:abcdefe",
            b"d8:intervali60e5:peersi3ee",
        ] {
            assert!(
                matches!(parse_answer(bad), Err(TrackerError::Malformed(_))),
                "{bad:?}"
            );
        }
        let huge = vec![b'x'; MAX_BODY + 1];
        assert!(parse_answer(&huge).is_err());
        // An interval of 0 is raised to 30 s rather than hammering the tracker.
        assert_eq!(
            parse_answer(b"d8:intervali0e5:peers0:e").unwrap().interval,
            30
        );
    }
}
