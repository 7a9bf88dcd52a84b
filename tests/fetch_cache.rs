//! The fetch-through piece cache and streams against python3-libtorrent seeders on
//! 127.0.0.1: the byte cap holds on disk while a file three times its size streams through,
//! evicted pieces come back identical when read again, a pinned torrent survives eviction
//! and a restart (served from the cache with its seeder gone), two streams of one torrent
//! at once both complete, and a client that hangs up frees its pieces at once (the engine's
//! `readers`/`wanted_pieces` in `GET /api/torrents/<ih>`), with `fetch.max_streams` giving
//! 503 + Retry-After meanwhile.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::seeders::{self, LtOptions, LtTorrent, Seeder};
use support::server::{request, Server};
use support::{tempdir, write_file};

const PIECE: u32 = 65536;
const CAP: u64 = 2 << 20;

/// Bytes on disk under `dir` (allocated blocks, so holes do not count).
fn disk_usage(dir: &Path) -> u64 {
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in entries.flatten() {
        let Ok(m) = e.metadata() else { continue };
        if m.is_dir() {
            total += disk_usage(&e.path());
        } else {
            total += m.blocks() * 512;
        }
    }
    total
}

/// A file of `len` bytes seeded by libtorrent; returns (info-hash hex, bytes, seeder).
fn seeded(
    dir: &Path,
    name: &str,
    len: usize,
    seed: u64,
    opts: LtOptions,
) -> (String, Vec<u8>, Seeder) {
    let data = dir.join(format!("{name}-data"));
    let file = write_file(&data, name, len, seed);
    let torrent = dir.join(format!("{name}.torrent"));
    let meta = seeders::lt_torrent(&file, &torrent, PIECE, &LtTorrent::default());
    let seeder = seeders::libtorrent(&torrent, &data, opts);
    (
        seeders::hex(&meta.info_hash),
        std::fs::read(&file).unwrap(),
        seeder,
    )
}

/// Joins a magnet with the seeder as `x.pe` and waits (bounded) until its files are known.
fn add_ready(gw: &Server, ih: &str, seeder: &Seeder) -> serde_json::Value {
    let magnet = format!("magnet:?xt=urn:btih:{ih}&x.pe={}", seeder.peer_arg());
    let r = request(gw.addr, "POST", "/api/torrents", &[], magnet.as_bytes());
    assert!(
        r.status == 201 || r.status == 202,
        "{} {}",
        r.status,
        r.text()
    );
    wait_for(gw, ih, 30, |v| v["state"] == "ready")
}

/// Polls `GET /api/torrents/<ih>` until `done` holds, at most `secs` seconds.
fn wait_for(
    gw: &Server,
    ih: &str,
    secs: u64,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        let v = gw.get(&format!("/api/torrents/{ih}")).json();
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < until, "gave up waiting: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn fetch_stats(gw: &Server) -> serde_json::Value {
    gw.get("/api/stats").json()["fetch"].clone()
}

#[test]
fn the_cache_cap_holds_while_a_file_three_times_its_size_streams() {
    let dir = tempdir();
    let len = 3 * CAP as usize + 12_345;
    let (ih, want, seeder) = seeded(dir.path(), "big.bin", len, 5, LtOptions::default());
    let gw = Server::start(
        &dir.path().join("gw"),
        &format!("[fetch]\ncache_bytes = {CAP}\nmax_streams = 2\nwait_secs = 20\n"),
    );
    add_ready(&gw, &ih, &seeder);
    let cache_dir = gw.data.join("cache").join(&ih);

    // Sample the disk usage while the whole file streams.
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (done, peak, cache_dir) = (Arc::clone(&done), Arc::clone(&peak), cache_dir.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                peak.fetch_max(disk_usage(&cache_dir), Ordering::AcqRel);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let r = gw.get(&format!("/stream/{ih}/0"));
    done.store(true, Ordering::Release);
    sampler.join().unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body == want, "the streamed file differs");
    // The cap plus one piece counted before its write and the files' own blocks.
    let peak = peak.load(Ordering::Acquire);
    let slack = u64::from(PIECE) + (64 << 10);
    assert!(
        peak <= CAP + slack,
        "{peak} bytes on disk under a {CAP}-byte cap"
    );
    let after = disk_usage(&cache_dir);
    assert!(
        after <= CAP + slack,
        "{after} bytes on disk after the stream"
    );
    let s = fetch_stats(&gw);
    let evictions = s["cache"]["evictions"].as_u64().unwrap();
    assert!(
        evictions * u64::from(PIECE) >= len as u64 - CAP - u64::from(PIECE),
        "{s}"
    );
    assert!(s["cache"]["bytes"].as_u64().unwrap() <= CAP, "{s}");
    let info = gw.get(&format!("/api/torrents/{ih}")).json();
    let cached = info["stats"]["cached_pieces"].as_u64().unwrap();
    assert!(cached * u64::from(PIECE) <= CAP, "{info}");
    assert_eq!(info["stats"]["readers"], 0, "{info}");

    // The start of the file was evicted: read again, it comes from the swarm, identical.
    let misses = s["cache"]["misses"].as_u64().unwrap();
    let r = request(
        gw.addr,
        "GET",
        &format!("/stream/{ih}/0"),
        &[("Range", "bytes=0-999999")],
        b"",
    );
    assert_eq!(r.status, 206);
    assert!(r.body == want[..1_000_000], "re-fetched bytes differ");
    let s2 = fetch_stats(&gw);
    assert!(s2["cache"]["misses"].as_u64().unwrap() > misses, "{s2}");
    // And now it is cached: the same range again is all hits.
    let hits = s2["cache"]["hits"].as_u64().unwrap();
    let misses = s2["cache"]["misses"].as_u64().unwrap();
    let r = request(
        gw.addr,
        "GET",
        &format!("/stream/{ih}/0"),
        &[("Range", "bytes=0-999999")],
        b"",
    );
    assert!(r.body == want[..1_000_000]);
    let s3 = fetch_stats(&gw);
    assert!(s3["cache"]["hits"].as_u64().unwrap() > hits, "{s3}");
    assert_eq!(s3["cache"]["misses"].as_u64().unwrap(), misses, "{s3}");
    let metrics = gw.get("/metrics").text();
    for name in [
        "tg_fetch_cache_requests_total{result=\"hit\"}",
        "tg_fetch_cache_evictions_total",
        "tg_fetch_cache_bytes{kind=\"cap\"} 2097152",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    assert!(disk_usage(&cache_dir) <= CAP + slack);
}

#[test]
fn a_pinned_torrent_survives_eviction_and_a_restart() {
    let dir = tempdir();
    let small = 1_500_000;
    let (pin_ih, pin_want, pin_seed) =
        seeded(dir.path(), "keep.bin", small, 7, LtOptions::default());
    let big = 3 * CAP as usize + 999;
    let (ih, want, seed) = seeded(dir.path(), "pass.bin", big, 8, LtOptions::default());
    let gw = Server::start(
        &dir.path().join("gw"),
        &format!("[fetch]\ncache_bytes = {CAP}\nmax_streams = 2\nwait_secs = 20\n"),
    );
    add_ready(&gw, &pin_ih, &pin_seed);
    let r = request(
        gw.addr,
        "POST",
        &format!("/api/torrents/{pin_ih}/pin"),
        &[],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["pinned"], true);
    let pieces = (small as u64).div_ceil(u64::from(PIECE));
    let v = wait_for(&gw, &pin_ih, 30, |v| v["stats"]["cached_pieces"] == pieces);
    assert_eq!(v["stats"]["complete"], true, "{v}");

    // A file three times the cap streams through the cache: the pinned one stays whole.
    add_ready(&gw, &ih, &seed);
    let r = gw.get(&format!("/stream/{ih}/0"));
    assert!(r.body == want, "the streamed file differs");
    assert!(fetch_stats(&gw)["cache"]["evictions"].as_u64().unwrap() > 0);
    let v = gw.get(&format!("/api/torrents/{pin_ih}")).json();
    assert_eq!(v["stats"]["cached_pieces"], pieces, "{v}");
    assert_eq!(v["stats"]["evicted_pieces"], 0, "{v}");

    // Its seeder goes away, the gateway restarts (SIGKILL): both torrents are listed again,
    // the pinned one rechecked whole and served from the cache alone.
    drop(pin_seed);
    let gw = gw.restart();
    let list = gw.get("/api/torrents").json();
    let listed: Vec<&str> = list["torrents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["info_hash"].as_str().unwrap())
        .collect();
    assert!(
        listed.contains(&pin_ih.as_str()) && listed.contains(&ih.as_str()),
        "{list}"
    );
    let v = wait_for(&gw, &pin_ih, 30, |v| v["state"] == "ready");
    assert_eq!(v["pinned"], true, "{v}");
    assert_eq!(v["stats"]["cached_pieces"], pieces, "{v}");
    let r = gw.get(&format!("/stream/{pin_ih}/0"));
    assert_eq!(r.status, 200);
    assert!(
        r.body == pin_want,
        "the pinned file differs after the restart"
    );
    let s = fetch_stats(&gw);
    assert_eq!(s["cache"]["misses"], 0, "all from the cache: {s}");
    // The unpinned one came back under the cap.
    assert!(s["cache"]["bytes"].as_u64().unwrap() <= CAP, "{s}");
    drop(seed);
}

#[test]
fn two_streams_of_one_torrent_at_once_both_complete() {
    let dir = tempdir();
    let len = (8 << 20) + 4321;
    let (ih, want, seeder) = seeded(dir.path(), "two.bin", len, 9, LtOptions::default());
    let gw = Server::start(&dir.path().join("gw"), "");
    add_ready(&gw, &ih, &seeder);
    let addr = gw.addr;
    let want = Arc::new(want);
    let ranges = [(0usize, 3 << 20), (5 << 20, len - 1)];
    let threads: Vec<_> = ranges
        .iter()
        .map(|&(a, b)| {
            let (ih, want) = (ih.clone(), Arc::clone(&want));
            std::thread::spawn(move || {
                let r = request(
                    addr,
                    "GET",
                    &format!("/stream/{ih}/0"),
                    &[("Range", &format!("bytes={a}-{b}"))],
                    b"",
                );
                assert_eq!(r.status, 206);
                assert!(r.body == want[a..=b], "bytes {a}-{b} differ");
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Nothing between the two ranges was needed: most of it was never fetched.
    let v = wait_for(&gw, &ih, 5, |v| v["stats"]["readers"] == 0);
    let pieces = v["pieces"].as_u64().unwrap();
    let cached = v["stats"]["cached_pieces"].as_u64().unwrap();
    assert!(cached < pieces, "{cached} of {pieces}");
    assert_eq!(v["stats"]["wanted_pieces"], 0, "{v}");
}

#[test]
fn a_client_that_hangs_up_frees_its_pieces_at_once() {
    let dir = tempdir();
    let len = 2 << 20;
    // A slow seeder (a piece every 2 s or so): the stream is waiting for its next piece when
    // the client leaves, so only noticing the hang-up frees it soon.
    let opts = LtOptions {
        upload_limit: 30_000,
        ..Default::default()
    };
    let (ih, want, seeder) = seeded(dir.path(), "slow.bin", len, 11, opts);
    let gw = Server::start(
        &dir.path().join("gw"),
        "[fetch]\nmax_streams = 1\nwait_secs = 20\n",
    );
    add_ready(&gw, &ih, &seeder);
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET /stream/{ih}/0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    // The head and the first bytes arrive.
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") || got.len() < 1000 {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed early");
        got.extend_from_slice(&buf[..n]);
    }
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    let body = &got[head_end..];
    assert_eq!(body, &want[..body.len()]);
    let v = wait_for(&gw, &ih, 10, |v| v["stats"]["readers"] == 1);
    assert!(v["stats"]["wanted_pieces"].as_u64().unwrap() > 0, "{v}");
    // fetch.max_streams = 1: a second stream is refused meanwhile.
    let r = gw.get(&format!("/stream/{ih}/0"));
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.header("Retry-After").is_some());
    assert!(r.text().contains("fetch.max_streams"), "{}", r.text());

    drop(s);
    let t0 = Instant::now();
    let v = wait_for(&gw, &ih, 5, |v| {
        v["stats"]["readers"] == 0 && v["stats"]["wanted_pieces"] == 0
    });
    let freed = t0.elapsed();
    // Before the next piece could arrive (and a failed write notice it), long before any
    // piece wait (20 s) or I/O timeout.
    assert!(freed < Duration::from_millis(1500), "{freed:?}");
    let pieces = v["pieces"].as_u64().unwrap();
    assert!(
        v["stats"]["cached_pieces"].as_u64().unwrap() < pieces,
        "the slow seeder cannot have sent it all: {v}"
    );
    assert_eq!(fetch_stats(&gw)["streams"], 0);
}
