//! Tracker helpers for the tests: announce queries, scrapes, bounded polling, free ports.

use super::server::request;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use torrent_gateway::proto::bt::bencode::{self, Value};
use torrent_gateway::proto::http::escape;

/// One HTTP announce path; `peer` picks the last byte of the peer_id.
pub fn announce_query(ih: &[u8; 20], peer: u8, port: u16, left: u64, event: &str) -> String {
    let mut peer_id = *b"-XX0001-000000000000";
    peer_id[19] = b'a'.wrapping_add(peer);
    format!(
        "/announce?info_hash={}&peer_id={}&port={port}&uploaded=0&downloaded=0&left={left}&compact=1{}",
        escape::encode(ih),
        escape::encode(&peer_id),
        if event.is_empty() { String::new() } else { format!("&event={event}") }
    )
}

/// (complete, incomplete, downloaded) from a scrape of the HTTP tracker at `base`.
pub fn scrape(base: SocketAddr, info_hash: &[u8; 20]) -> (i64, i64, i64) {
    let path = format!("/scrape?info_hash={}", escape::encode(info_hash));
    let resp = request(base, "GET", &path, &[], b"");
    assert_eq!(resp.status, 200);
    let v = bencode::decode(&resp.body).unwrap();
    let files = v.get("files").and_then(Value::as_dict).unwrap();
    let entry = files
        .iter()
        .find(|(k, _)| *k == info_hash)
        .map(|(_, e)| e)
        .unwrap_or_else(|| panic!("no entry in {}", String::from_utf8_lossy(&resp.body)));
    let n = |k| entry.get(k).and_then(Value::as_int).unwrap();
    (n("complete"), n("incomplete"), n("downloaded"))
}

/// Polls `cond` every 50 ms for at most `secs` seconds.
pub fn eventually(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

/// A port that was free a moment ago (for tools that cannot bind port 0 themselves).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
