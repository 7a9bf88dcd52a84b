//! The gateway's HTTP connection layer under abuse, over real sockets on 127.0.0.1: floods
//! of connections (from one address and from 200), slowloris on heads and bodies, hostile
//! request heads; threads and memory are sampled while it happens, and a normal client is
//! served throughout. Plus curl's `Expect: 100-continue` uploads and keep-alive.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::server::{raw_exchange, request_from, upload, Server};
use support::*;

const RSS_CAP: u64 = 32 << 20;

/// Peak threads and RSS of the server, sampled every 10 ms until stopped.
struct Sampler {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<(usize, u64)>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let (mut threads, mut rss) = (0usize, 0u64);
            while !flag.load(Ordering::SeqCst) {
                if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                    for line in status.lines() {
                        if let Some(v) = line.strip_prefix("Threads:") {
                            threads = threads.max(v.trim().parse().unwrap_or(0));
                        }
                        if let Some(v) = line.strip_prefix("VmRSS:") {
                            let kb: u64 =
                                v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
                            rss = rss.max(kb * 1024);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            (threads, rss)
        });
        Sampler { stop, handle }
    }

    fn finish(self) -> (usize, u64) {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().unwrap()
    }
}

/// Opens `n` connections as fast as it can, from `sources` local addresses in turn, each
/// sending the start of a request head; keeps them open until dropped.
fn flood(
    addr: SocketAddr,
    n: usize,
    sources: &[std::net::Ipv4Addr],
    opened: &AtomicUsize,
) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        let src = sources[i % sources.len()];
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.bind(&SocketAddr::new(src.into(), 0).into()).unwrap();
        if socket.connect(&addr.into()).is_err() {
            continue;
        }
        let mut s: TcpStream = socket.into();
        let _ = s.write_all(b"GET /api/health HTTP/1.1\r\nHost: localhost\r\n");
        held.push(s);
        opened.fetch_add(1, Ordering::SeqCst);
    }
    held
}

/// The flood with a sampler running and a normal client uploading and downloading in the
/// middle of it; asserts the thread count never passed the fixed set and RSS stayed under
/// the cap, during and after.
fn flood_test(sources: Vec<std::net::Ipv4Addr>) {
    raise_own_fd_limit();
    let tmp = tempdir();
    let server = Server::start(&tmp.path().join("data"), "");
    // Warm up the lazily started pools (rayon hashing) before counting the fixed threads.
    let warm = upload(&server, "warm.bin", &bytes(100_000, 1));
    let fixed = server.threads();
    let sampler = Sampler::start(server.pid());
    let opened = Arc::new(AtomicUsize::new(0));
    let flooder = {
        let opened = Arc::clone(&opened);
        let addr = server.addr;
        std::thread::spawn(move || flood(addr, 10_000, &sources, &opened))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while opened.load(Ordering::SeqCst) < 2_000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    // A normal client, from an address of its own (one flooding address is refused by its
    // own accept rate, whoever asks from it).
    let normal = Some("127.0.0.250".parse().unwrap());
    let data = bytes(300_000, 2);
    let put = request_from(
        normal,
        server.addr,
        "PUT",
        "/api/files/during-flood.bin",
        &[],
        &data,
    );
    assert_eq!(put.status, 201, "{}", put.text());
    let sha = put.json()["sha256"].as_str().unwrap().to_string();
    let got = request_from(
        normal,
        server.addr,
        "GET",
        &format!("/download/{sha}"),
        &[],
        b"",
    );
    assert!(got.status == 200 && got.body == data);
    assert!(
        opened.load(Ordering::SeqCst) < 10_000,
        "the normal client was served while the flood was still opening connections"
    );
    let held = flooder.join().unwrap();
    assert!(held.len() > 9_000, "only {} connections opened", held.len());
    drop(held);
    let again = server.get(&format!("/download/{}", warm["sha256"].as_str().unwrap()));
    assert_eq!(again.status, 200);
    assert_eq!(server.get("/api/health").status, 200);
    let (threads, rss) = sampler.finish();
    assert!(
        threads <= fixed,
        "threads reached {threads}, the fixed set is {fixed}"
    );
    assert!(rss < RSS_CAP, "RSS reached {} MiB", rss >> 20);
    let (rss_after, _) = server.rss();
    assert!(rss_after < RSS_CAP, "RSS after: {} MiB", rss_after >> 20);
    let diag = server.get("/api/diagnostics").json();
    let layer = &diag["api"]["layer"];
    // Every connection was seen, and the caps (accept rate, eviction at the connection
    // caps) did the shedding.
    let n = |v: &serde_json::Value| v.as_u64().unwrap();
    let r = &layer["refused"];
    let seen = n(&layer["accepted"]) + n(&r["accept_rate"]) + n(&r["per_ip"]) + n(&r["busy"]);
    assert!(seen > 9_000, "{layer}");
    assert!(n(&r["evicted"]) > 0, "{layer}");
}

#[test]
fn a_flood_of_ten_thousand_connections_from_one_address() {
    flood_test(vec![std::net::Ipv4Addr::LOCALHOST]);
}

#[test]
fn a_flood_from_two_hundred_addresses() {
    flood_test(
        (2..202)
            .map(|i| std::net::Ipv4Addr::new(127, 0, 0, i as u8))
            .collect(),
    );
}

#[test]
fn slowloris_heads_and_bodies_are_cut_at_their_deadline() {
    raise_own_fd_limit();
    let tmp = tempdir();
    let config = "[api]\nheader_timeout_secs = 2\nmax_connections = 4096\nmax_connections_per_ip = 4096\naccept_rate = 100000\naccept_rate_per_ip = 100000\n";
    let server = Server::start(&tmp.path().join("data"), config);
    let fixed = server.threads();
    let sampler = Sampler::start(server.pid());
    let mut slow: Vec<(TcpStream, &[u8])> = Vec::new();
    let head_drip: &[u8] =
        b"GET /api/health HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaa\r\n\r\n";
    let body_drip: &[u8] =
        b"PUT /api/files/slow.bin HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n";
    for i in 0..2000 {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.set_nonblocking(true).unwrap();
        if i % 2 == 0 {
            let _ = s.write_all(&head_drip[..1]);
            slow.push((s, &head_drip[1..]));
        } else {
            // The whole head, then the body a byte at a time.
            let _ = s.write_all(body_drip);
            slow.push((s, b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"));
        }
    }
    // Drip one byte a second to each until the server has closed them all (bounded).
    let started = Instant::now();
    let mut open: Vec<bool> = vec![true; slow.len()];
    let mut tick = 0usize;
    let mut normal_ok = 0;
    while open.iter().any(|&o| o) && started.elapsed() < Duration::from_secs(12) {
        for (k, (s, rest)) in slow.iter_mut().enumerate() {
            if !open[k] {
                continue;
            }
            let mut b = [0u8; 512];
            match s.read(&mut b) {
                Ok(0) => open[k] = false,
                Ok(_) => {
                    // 408 arrived; EOF follows.
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if let Some(&byte) = rest.get(tick) {
                        if s.write_all(&[byte]).is_err() {
                            open[k] = false;
                        }
                    }
                }
                Err(_) => open[k] = false,
            }
        }
        // Normal clients are unaffected meanwhile.
        let d = upload(
            &server,
            &format!("normal-{tick}.bin"),
            &bytes(50_000, tick as u64),
        );
        let got = server.get(&format!("/download/{}", d["sha256"].as_str().unwrap()));
        assert_eq!(got.status, 200);
        normal_ok += 1;
        tick += 1;
        std::thread::sleep(Duration::from_millis(1000));
    }
    let still = open.iter().filter(|&&o| o).count();
    assert_eq!(still, 0, "{still} slow connections were never cut");
    assert!(normal_ok >= 2);
    let (threads, rss) = sampler.finish();
    assert!(
        threads <= fixed + 2,
        "threads reached {threads} (fixed {fixed})"
    );
    assert!(rss < RSS_CAP, "RSS reached {} MiB", rss >> 20);
    let diag = server.get("/api/diagnostics").json();
    assert!(
        diag["api"]["layer"]["refused"]["header_timeout"]
            .as_u64()
            .unwrap()
            >= 2000,
        "{}",
        diag["api"]["layer"]
    );
}

#[test]
fn hostile_requests_get_a_clear_4xx_or_a_close() {
    let tmp = tempdir();
    let server = Server::start(&tmp.path().join("data"), "");
    let before = server.rss().0;
    let huge_header = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let many_headers: String = (0..10_000).map(|i| format!("X-{i}: v\r\n")).collect();
    let many_headers = format!("GET / HTTP/1.1\r\nHost: localhost\r\n{many_headers}\r\n");
    let long_line = format!(
        "GET /{} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "a".repeat(100_000)
    );
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "Content-Length 2^64-1",
            b"PUT /api/files/a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 18446744073709551615\r\n\r\nabc".to_vec(),
            413,
        ),
        (
            "negative Content-Length",
            b"PUT /api/files/a HTTP/1.1\r\nHost: localhost\r\nContent-Length: -5\r\n\r\nabc".to_vec(),
            400,
        ),
        (
            "duplicated Content-Length",
            b"PUT /api/files/a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc".to_vec(),
            400,
        ),
        (
            "Content-Length and chunked",
            b"PUT /api/files/a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_vec(),
            400,
        ),
        (
            "chunk size 2^64",
            b"PUT /api/files/a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\nabc".to_vec(),
            400,
        ),
        ("1 MB header line", huge_header.into_bytes(), 431),
        ("10,000 headers", many_headers.into_bytes(), 431),
        (
            "bad UTF-8 in the path",
            b"GET /api/files/\xff\xfe HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            400,
        ),
        ("100 KB request line", long_line.into_bytes(), 431),
        ("garbage", (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect(), 400),
        ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), 505),
    ];
    for (what, raw, status) in cases {
        let r = raw_exchange(server.addr, &raw, true);
        assert_eq!(r.status, status, "{what}: {:?}", r.text());
        assert!(r.header("X-Reason").is_some(), "{what}");
        assert_eq!(server.get("/api/health").status, 200, "after {what}");
    }
    let after = server.rss().0;
    assert!(
        after < before + (8 << 20),
        "RSS grew from {} to {} KiB",
        before >> 10,
        after >> 10
    );
    // Nothing was stored.
    assert_eq!(
        server.get("/api/files").json()["files"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn curl_uploads_with_expect_continue_and_reuses_connections() {
    let curl = require_tool("curl");
    let tmp = tempdir();
    let server = Server::start(&tmp.path().join("data"), "");
    let file = write_file(tmp.path(), "big.bin", 3 << 20, 5);
    let url = format!("http://{}/api/files/big.bin", server.addr);
    let out = std::process::Command::new(&curl)
        .args(["-sS", "-v", "--fail", "-H", "Expect: 100-continue", "-T"])
        .arg(&file)
        .arg(&url)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("HTTP/1.1 100 Continue"), "{stderr}");
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sha = d["sha256"].as_str().unwrap();
    // Two downloads in one curl run share one connection.
    let dl = format!("http://{}/download/{sha}", server.addr);
    let out = std::process::Command::new(&curl)
        .args(["-sS", "-v", "--fail", "-o"])
        .arg(tmp.path().join("one"))
        .arg(&dl)
        .arg("-o")
        .arg(tmp.path().join("two"))
        .arg(&dl)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("Re-using existing connection"), "{stderr}");
    let want = std::fs::read(&file).unwrap();
    assert_eq!(std::fs::read(tmp.path().join("one")).unwrap(), want);
    assert_eq!(std::fs::read(tmp.path().join("two")).unwrap(), want);
    // A refused upload with Expect gets its 413 before the body is sent.
    let small = Server::start(
        &tmp.path().join("data2"),
        "[api]\nmax_upload_bytes = 1000000\n",
    );
    let out = std::process::Command::new(&curl)
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Expect: 100-continue",
            "-T",
        ])
        .arg(&file)
        .arg(format!("http://{}/api/files/big.bin", small.addr))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "413");
}
