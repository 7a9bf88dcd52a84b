//! Tracker helpers for the tests: announce queries, scrapes, bounded polling, free ports,
//! torrents made with mktorrent and libtorrent seeders.

use super::server::request;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use torrent_gateway::proto::bt::bencode::{self, Value};
use torrent_gateway::proto::bt::metainfo;
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

/// Makes `dir/data/<name>` and a torrent of it announcing to `announce`, with mktorrent.
pub fn make_torrent(dir: &Path, name: &str, len: usize, announce: &str) -> (PathBuf, [u8; 20]) {
    let data = super::write_file(&dir.join("data"), name, len, len as u64);
    let torrent = dir.join(format!("{name}.torrent"));
    let out = Command::new(super::require_tool("mktorrent"))
        .args(["-l", "16", "-a", announce, "-o"])
        .arg(&torrent)
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info_hash = metainfo::parse(&std::fs::read(&torrent).unwrap())
        .unwrap()
        .info_hash;
    (torrent, info_hash)
}

/// Starts a libtorrent seeder of `torrent` over `save` (`script` in tests/py, e.g.
/// lt_seed.py) and waits for its "seeding PORT" line; returns it and the port.
pub fn lt_seed_with(
    script: &str,
    torrent: &Path,
    save: &Path,
    extra: &[&str],
) -> (super::Reaped, u16) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(script);
    let mut child = Command::new(super::python_with_libtorrent())
        .arg(script)
        .arg(torrent)
        .arg(save)
        .arg("120")
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.starts_with("seeding "),
        "seeder did not start: {line:?}"
    );
    let port = line.trim().rsplit(' ').next().unwrap().parse().unwrap();
    (super::Reaped(child), port)
}

/// A libtorrent seeder of `torrent` over `save` (tests/py/lt_seed.py).
pub fn lt_seed(torrent: &Path, save: &Path) -> super::Reaped {
    lt_seed_with("lt_seed.py", torrent, save, &[]).0
}
