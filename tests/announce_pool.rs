//! The `announce-N` pool against real servers on 127.0.0.1: our gateway's HTTP and UDP
//! tracker and opentracker (a second announce sees the first peer), webseed range GETs from
//! our gateway and from nginx (multi-file, pad file, a 404 for a missing file), and a tiny
//! server for a 503 with `Retry-After`, a 429 without, a short 206 and a 200 that ignores
//! `Range`.

mod support;

use crossbeam_channel::Receiver;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use support::server::{upload, Server};
use support::tracker::{eventually, free_port};
use support::{bytes, require_tool, tempdir, Reaped};
use torrent_gateway::engine::webseed::{self, Failure};
use torrent_gateway::net::announce::webseed as webseed_get;
use torrent_gateway::net::announce::{AnnouncePool, Done, Job};
use torrent_gateway::proto::bt::metainfo::{self, FileEntry, Info};
use torrent_gateway::proto::tracker::client::{Announce, Answer};
use torrent_gateway::proto::tracker::http::Event;

struct Pool {
    pool: Option<AnnouncePool>,
    done: Receiver<Done>,
}

impl Pool {
    fn new() -> Pool {
        let (tx, done) = crossbeam_channel::bounded(16);
        let pool = AnnouncePool::start(2, 8, tx, Arc::new(|| {})).unwrap();
        Pool {
            pool: Some(pool),
            done,
        }
    }

    fn run(&self, job: Job) -> Done {
        self.pool.as_ref().unwrap().submit(job).unwrap();
        self.done.recv_timeout(Duration::from_secs(30)).unwrap()
    }

    fn announce(&self, url: &str, info_hash: [u8; 20], peer: u8, port: u16) -> Answer {
        let mut peer_id = *b"-TG0100-testtesttest";
        peer_id[19] = peer;
        let announce = Announce {
            info_hash,
            peer_id,
            port,
            uploaded: 0,
            downloaded: 0,
            left: 1000,
            event: Event::Started,
            numwant: 50,
            key: u32::from(peer),
            tracker_id: None,
        };
        let job = Job::Tracker {
            key: 7,
            url: url.to_string(),
            announce,
        };
        match self.run(job) {
            Done::Tracker {
                key,
                url: u,
                result,
            } => {
                assert_eq!((key, u.as_str()), (7, url));
                result.unwrap_or_else(|e| panic!("{url}: {e}"))
            }
            other => panic!("{other:?}"),
        }
    }

    /// Announces two peers; the second must be told about the first.
    fn two_peers_meet(&self, url: &str, info_hash: [u8; 20]) {
        self.announce(url, info_hash, b'a', 7001);
        let second = self.announce(url, info_hash, b'b', 7002);
        let first: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        assert!(second.peers.contains(&first), "{url}: {second:?}");
        assert!(second.interval >= 30, "{url}: {second:?}");
    }

    fn fetch(
        &self,
        info: &Info,
        base: &str,
        range: std::ops::Range<u64>,
    ) -> Result<Vec<u8>, Failure> {
        let request = webseed::plan(info, base, 42, range.clone()).unwrap();
        self.pool
            .as_ref()
            .unwrap()
            .submit(Job::Webseed { key: 3, request })
            .unwrap();
        // The chunks arrive in order, each starting where the last ended.
        let mut bytes = Vec::new();
        loop {
            match self.done.recv_timeout(Duration::from_secs(30)).unwrap() {
                Done::WebseedData {
                    key,
                    id,
                    offset,
                    bytes: chunk,
                } => {
                    assert_eq!((key, id), (3, 42));
                    assert_eq!(offset, range.start + bytes.len() as u64);
                    assert!(chunk.len() <= webseed_get::MAX_CHUNK);
                    bytes.extend_from_slice(&chunk);
                }
                Done::Webseed { key, id, result } => {
                    assert_eq!((key, id), (3, 42));
                    return result.map(|()| bytes);
                }
                other => panic!("{other:?}"),
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.pool.take().unwrap().stop();
    }
}

/// An `Info` with these files (path, length, pad file).
fn info(name: &str, files: &[(&[&str], u64, bool)], piece_length: u64) -> Info {
    let mut offset = 0;
    let files: Vec<FileEntry> = files
        .iter()
        .map(|(path, length, padding)| {
            let f = FileEntry {
                path: path.iter().map(|s| s.to_string()).collect(),
                length: *length,
                offset,
                padding: *padding,
            };
            offset += length;
            f
        })
        .collect();
    Info {
        name: name.into(),
        piece_length,
        pieces: vec![[0; 20]; offset.div_ceil(piece_length) as usize],
        multi_file: files.len() > 1,
        files,
        private: false,
        source: None,
    }
}

#[test]
fn our_http_and_udp_tracker_introduce_the_second_peer_to_the_first() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("gw"), "[tracker]\nmode = \"open\"\n");
    let pool = Pool::new();
    pool.two_peers_meet(&format!("http://{}/announce", server.addr), [1; 20]);
    let udp = server.udp.expect("udp tracker");
    pool.two_peers_meet(&format!("udp://{udp}/announce"), [2; 20]);
    // The connection id is cached: a third announce needs no connect and still works.
    let third = pool.announce(&format!("udp://{udp}/announce"), [2; 20], b'c', 7003);
    assert_eq!(third.peers.len(), 2, "{third:?}");
    // A refusal comes back as the tracker's reason.
    let hosted = Server::start(&dir.path().join("gw2"), "");
    let job = Job::Tracker {
        key: 1,
        url: format!("http://{}/announce", hosted.addr),
        announce: Announce {
            info_hash: [9; 20],
            peer_id: [b'x'; 20],
            port: 1,
            uploaded: 0,
            downloaded: 0,
            left: 0,
            event: Event::Started,
            numwant: 1,
            key: 0,
            tracker_id: None,
        },
    };
    let Done::Tracker { result, .. } = pool.run(job) else {
        panic!()
    };
    assert!(result.unwrap_err().contains("not authorized"));
}

#[test]
fn opentracker_over_http_and_udp() {
    let dir = tempdir();
    let (ih_http, ih_udp) = ([0x5a; 20], [0xa5; 20]);
    let ot_dir = dir.path().join("ot");
    std::fs::create_dir_all(&ot_dir).unwrap();
    let whitelist = format!("{}\n{}\n", "5a".repeat(20), "a5".repeat(20));
    std::fs::write(ot_dir.join("whitelist"), whitelist).unwrap();
    let port = free_port();
    let child = Command::new(require_tool("opentracker"))
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-P",
            &port.to_string(),
        ])
        .arg("-d")
        .arg(&ot_dir)
        .args(["-u", "nobody", "-w", "whitelist"])
        .current_dir(&ot_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _ot = Reaped(child);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(eventually(10, || std::net::TcpStream::connect(addr).is_ok()));
    // opentracker reads its whitelist on a thread of its own after it listens: wait until it
    // knows the torrent (a `stopped` announce, so no peer is left in the swarm).
    let knows = || {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(addr) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
        let q = format!(
            "GET /announce?info_hash={}&peer_id=-TG0000-readycheck00&port=9&left=0&event=stopped HTTP/1.0\r\n\r\n",
            "Z".repeat(20)
        );
        let mut answer = Vec::new();
        s.write_all(q.as_bytes()).is_ok()
            && s.read_to_end(&mut answer).is_ok()
            && !answer.is_empty()
            && !String::from_utf8_lossy(&answer).contains("not authorized")
    };
    assert!(
        eventually(10, knows),
        "opentracker never loaded its whitelist"
    );
    let pool = Pool::new();
    pool.two_peers_meet(&format!("http://{addr}/announce"), ih_http);
    pool.two_peers_meet(&format!("udp://{addr}/announce"), ih_udp);
}

#[test]
fn webseed_ranges_from_our_gateway() {
    let dir = tempdir();
    let config = "[storage]\npiece_length_bytes = 262144\n";
    let server = Server::start(&dir.path().join("gw"), config);
    let data = bytes(2 * 262_144 + 12_345, 5);
    let desc = upload(&server, "clip%20one.bin", &data);
    let sha = desc["sha256"].as_str().unwrap();
    let t = server.get(&format!("/api/files/{sha}/torrent"));
    let meta = metainfo::parse(&t.body).unwrap();
    let base = &meta.url_list[0];
    let pool = Pool::new();
    for pieces in [0..1, 2..3, 0..3, 1..3] {
        let range = webseed::piece_bytes(&meta.info, pieces.clone());
        let got = pool.fetch(&meta.info, base, range.clone()).unwrap();
        assert!(
            got == data[range.start as usize..range.end as usize],
            "{pieces:?}"
        );
    }
}

/// nginx, stopped with SIGTERM on drop: its master then ends its workers (a SIGKILL would
/// orphan them, and they would keep every inherited descriptor open).
struct Nginx(std::process::Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGTERM);
        }
        let _ = self.0.wait();
    }
}

/// Runs nginx serving `root` on a free port; returns it and the port.
fn nginx(dir: &Path, root: &Path) -> (Nginx, u16) {
    let port = free_port();
    let conf = dir.join("nginx.conf");
    let d = dir.display();
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 64; }}\nhttp {{ access_log off; sendfile on;\n\
             client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;\n\
             uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;\n\
             server {{ listen 127.0.0.1:{port}; root {}; }} }}\n",
            root.display()
        ),
    )
    .unwrap();
    let child = Command::new(require_tool("nginx"))
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let child = Nginx(child);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    assert!(
        eventually(10, || std::net::TcpStream::connect(addr).is_ok()),
        "nginx did not start"
    );
    (child, port)
}

#[test]
fn webseed_multi_file_with_padding_and_a_missing_file_from_nginx() {
    let dir = tempdir();
    let www = dir.path().join("www");
    let (a, b) = (bytes(10_000, 1), bytes(40_000, 2));
    std::fs::create_dir_all(www.join("my torrent/sub dir")).unwrap();
    std::fs::write(www.join("my torrent/a.bin"), &a).unwrap();
    std::fs::write(www.join("my torrent/sub dir/b&c.bin"), &b).unwrap();
    // nginx workers drop to an unprivileged user when started as root: let them read.
    for p in ["", "www", "www/my torrent", "www/my torrent/sub dir"] {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.path().join(p);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for f in ["www/my torrent/a.bin", "www/my torrent/sub dir/b&c.bin"] {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.path().join(f);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let (_nginx, port) = nginx(dir.path(), &www);
    let t = info(
        "my torrent",
        &[
            (&["a.bin"], 10_000, false),
            (&[".pad", "6384"], 6_384, true),
            (&["sub dir", "b&c.bin"], 40_000, false),
            (&["missing.bin"], 5_000, false),
        ],
        16_384,
    );
    let pool = Pool::new();
    let base = format!("http://127.0.0.1:{port}/");
    let got = pool
        .fetch(&t, &base, webseed::piece_bytes(&t, 0..3))
        .unwrap();
    let mut want = a.clone();
    want.resize(16_384, 0);
    want.extend_from_slice(&b[..32_768]);
    assert!(
        got == want,
        "pieces 0-2 across a file, its padding and the next file"
    );
    let got = pool.fetch(&t, &base, 56_384..61_384).unwrap_err();
    assert_eq!(got, Failure::Missing(3));
    let tail = pool.fetch(&t, &base, 49_152..61_384);
    assert_eq!(
        tail,
        Err(Failure::Missing(3)),
        "one missing file fails the request"
    );
}

/// A one-request-per-connection HTTP server: `answer(path)` gives the whole response.
fn tiny_server(answer: fn(&str) -> Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split(' ').nth(1).unwrap_or("").to_string();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let _ = conn.write_all(&answer(&path));
        }
    });
    addr
}

fn body() -> Vec<u8> {
    bytes(100_000, 9)
}

fn answers(path: &str) -> Vec<u8> {
    let head = |status: &str, extra: &str, len: usize| {
        format!("HTTP/1.1 {status}\r\nContent-Length: {len}\r\nConnection: close\r\n{extra}\r\n")
            .into_bytes()
    };
    match path {
        "/busy" => head("503 Service Unavailable", "Retry-After: 7\r\n", 0),
        "/slow-down" => head("429 Too Many Requests", "", 0),
        "/short" => {
            let mut r = head(
                "206 Partial Content",
                "Content-Range: bytes 16384-32767/100000\r\n",
                100,
            );
            r.extend_from_slice(&[0; 100]);
            r
        }
        "/teapot" => head("418 I'm a teapot", "", 0),
        _ => {
            let mut r = head("200 OK", "", 100_000);
            r.extend_from_slice(&body());
            r
        }
    }
}

#[test]
fn webseed_statuses_and_a_server_that_ignores_range() {
    let addr = tiny_server(answers);
    let t = info("f.bin", &[(&["f.bin"], 100_000, false)], 16_384);
    let pool = Pool::new();
    let url = |p: &str| format!("http://{addr}{p}");
    let got = pool.fetch(&t, &url("/whole"), 16_384..49_152).unwrap();
    assert!(
        got == body()[16_384..49_152],
        "the 200's start is skipped and its end cut"
    );
    let got = pool.fetch(&t, &url("/whole"), 98_304..100_000).unwrap();
    assert!(got == body()[98_304..]);
    assert_eq!(
        pool.fetch(&t, &url("/busy"), 0..16_384),
        Err(Failure::Retry(7))
    );
    assert_eq!(
        pool.fetch(&t, &url("/slow-down"), 0..16_384),
        Err(Failure::Retry(30))
    );
    let short = pool.fetch(&t, &url("/short"), 16_384..32_768).unwrap_err();
    assert!(
        matches!(&short, Failure::Other(e) if e.contains("100 bytes")),
        "{short:?}"
    );
    let teapot = pool.fetch(&t, &url("/teapot"), 0..16_384).unwrap_err();
    assert!(
        matches!(&teapot, Failure::Other(e) if e.contains("418")),
        "{teapot:?}"
    );
}

#[test]
fn a_full_queue_hands_the_job_back() {
    let (tx, _done) = crossbeam_channel::bounded(1);
    // A listener that never accepts: connects succeed (the backlog), answers never come.
    let hold = TcpListener::bind("127.0.0.1:0").unwrap();
    let pool = AnnouncePool::start(1, 1, tx, Arc::new(|| {})).unwrap();
    let t = info("f.bin", &[(&["f.bin"], 100, false)], 16_384);
    let job = || Job::Webseed {
        key: 0,
        request: webseed::plan(
            &t,
            &format!("http://{}/x", hold.local_addr().unwrap()),
            0,
            0..100,
        )
        .unwrap(),
    };
    let mut refused = 0;
    for _ in 0..5 {
        if pool.submit(job()).is_err() {
            refused += 1;
        }
    }
    assert!(
        refused >= 3,
        "at most one running and one queued: {refused} refused"
    );
    drop(hold);
    pool.stop();
}
