//! The Redis tracker backend through `serve` with real clients: two gateway processes on one
//! private redis-server share swarms (a libtorrent seeder announcing to one, an aria2c
//! leecher that knows only the other), give the same counts as the memory backend for one
//! announce sequence, and ride out Redis being killed and restarted.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use support::redis::Redis;
use support::server::{request, upload, Server};
use support::tempdir;
use support::tracker::{announce_query, eventually, lt_seed, make_torrent, scrape};
use torrent_gateway::proto::bt::bencode::{self, Value};
use torrent_gateway::proto::tracker::udp::{AnnounceRequest, Request, Response, UdpEvent};

fn redis_config(redis: &Redis) -> String {
    format!(
        "[tracker]\nmode = \"open\"\nbackend = \"redis\"\nredis_url = \"{}\"\nmin_interval_secs = 0\n",
        redis.url()
    )
}

const MEMORY: &str = "[tracker]\nmode = \"open\"\nmin_interval_secs = 0\n";

/// (complete, incomplete, failure reason) of an HTTP announce.
fn announce(addr: SocketAddr, q: &str) -> (i64, i64, Option<String>) {
    let r = request(addr, "GET", q, &[], b"");
    assert_eq!(r.status, 200);
    let v = bencode::decode(&r.body).unwrap();
    let n = |k| v.get(k).and_then(Value::as_int).unwrap_or(-1);
    let failure = v
        .get("failure reason")
        .and_then(Value::as_str)
        .map(str::to_string);
    (n("complete"), n("incomplete"), failure)
}

#[test]
fn two_gateways_on_one_redis_bring_a_libtorrent_seeder_and_an_aria2c_leecher_together() {
    let dir = tempdir();
    let redis = Redis::start();
    let gw1 = Server::start(&dir.path().join("gw1"), &redis_config(&redis));
    let gw2 = Server::start(&dir.path().join("gw2"), &redis_config(&redis));
    // One data file, two torrents differing only in the announce URL (same info dict).
    let (seed_torrent, ih) = make_torrent(
        dir.path(),
        "film.bin",
        (3 << 20) + 4321,
        &format!("http://{}/announce", gw1.addr),
    );
    let leech_dir = dir.path().join("l");
    std::fs::create_dir_all(leech_dir.join("data")).unwrap();
    std::fs::copy(
        dir.path().join("data/film.bin"),
        leech_dir.join("data/film.bin"),
    )
    .unwrap();
    let (leech_torrent, ih2) = make_torrent(
        &leech_dir,
        "film.bin",
        (3 << 20) + 4321,
        &format!("http://{}/announce", gw2.addr),
    );
    assert_eq!(ih, ih2, "the same info dict");
    let _seeder = lt_seed(&seed_torrent, &dir.path().join("data"));
    assert!(
        eventually(30, || scrape(gw2.addr, &ih).0 == 1),
        "the seeder's announce to gw1 is not seen through gw2: {:?}",
        scrape(gw2.addr, &ih)
    );
    let out = dir.path().join("aria2");
    let o = support::aria2c(&leech_torrent, &out);
    assert!(
        o.status.success(),
        "aria2c failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        std::fs::read(out.join("film.bin")).unwrap(),
        std::fs::read(dir.path().join("data/film.bin")).unwrap()
    );
    assert!(eventually(10, || scrape(gw1.addr, &ih) == (1, 0, 0)));
    assert_eq!(scrape(gw1.addr, &ih), scrape(gw2.addr, &ih));
    let http = |gw: &Server| gw.get("/api/stats").json()["tracker"]["announces"]["http"].clone();
    assert!(http(&gw1).as_u64().unwrap() >= 1, "the seeder used gw1");
    assert!(http(&gw2).as_u64().unwrap() >= 2, "aria2c used gw2");
    assert_eq!(gw1.get("/api/stats").json()["tracker"]["backend"], "redis");
}

#[test]
fn one_sequence_over_two_redis_gateways_counts_like_the_memory_backend() {
    let dir = tempdir();
    let redis = Redis::start();
    let gw1 = Server::start(&dir.path().join("gw1"), &redis_config(&redis));
    let gw2 = Server::start(&dir.path().join("gw2"), &redis_config(&redis));
    let mem = Server::start(&dir.path().join("mem"), MEMORY);
    let ih = [0x5au8; 20];
    let other = [0xa5u8; 20];
    // (torrent, peer, port, left, event)
    let steps: &[(&[u8; 20], u8, u16, u64, &str)] = &[
        (&ih, 0, 7000, 100, "started"),
        (&ih, 1, 7001, 100, "started"),
        (&ih, 2, 7002, 0, "started"),
        (&ih, 0, 7000, 50, ""),
        (&ih, 0, 7000, 0, "completed"),
        (&ih, 0, 7000, 0, "completed"),
        (&ih, 1, 7001, 40, "stopped"),
        (&ih, 3, 7003, 100, "started"),
        (&ih, 4, 7004, 100, "started"),
        (&ih, 3, 7003, 0, "completed"),
        (&ih, 5, 7005, 0, "stopped"),
        (&other, 0, 7000, 10, "started"),
        (&other, 1, 7001, 0, "completed"),
    ];
    for (i, &(hash, peer, port, left, event)) in steps.iter().enumerate() {
        let q = announce_query(hash, peer, port, left, event);
        // Alternate between the two Redis gateways: one swarm, whichever answers.
        let shared = if i % 2 == 0 { &gw1 } else { &gw2 };
        let a = announce(shared.addr, &q);
        let b = announce(mem.addr, &q);
        assert_eq!(a.2, None);
        assert_eq!(a, b, "step {i}: redis vs memory (complete, incomplete)");
    }
    for hash in [&ih, &other] {
        let m = scrape(mem.addr, hash);
        assert_eq!(scrape(gw1.addr, hash), m);
        assert_eq!(scrape(gw2.addr, hash), m);
    }
    assert_eq!(scrape(gw1.addr, &ih), (3, 1, 2));
}

/// A UDP connect and announce: the leecher count, or the error packet's message.
fn udp_announce(sock: &UdpSocket, to: SocketAddr) -> Result<u32, String> {
    let mut buf = [0u8; 2048];
    let mut p = Vec::new();
    Request::Connect { transaction_id: 1 }.write(&mut p);
    sock.send_to(&p, to).unwrap();
    let n = sock.recv(&mut buf).unwrap();
    let Some(Response::Connect { connection_id, .. }) = Response::parse(&buf[..n], 6) else {
        panic!("no connect answer")
    };
    p.clear();
    Request::Announce(AnnounceRequest {
        connection_id,
        transaction_id: 2,
        info_hash: [9; 20],
        peer_id: [3; 20],
        downloaded: 0,
        left: 10,
        uploaded: 0,
        event: UdpEvent::Started,
        ip: 0,
        key: 0,
        num_want: -1,
        port: 7777,
        options: &[],
    })
    .write(&mut p);
    sock.send_to(&p, to).unwrap();
    let n = sock.recv(&mut buf).unwrap();
    match Response::parse(&buf[..n], 6) {
        Some(Response::Announce { leechers, .. }) => Ok(leechers),
        Some(Response::Error { message, .. }) => Err(String::from_utf8_lossy(message).into()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn redis_killed_and_restarted_under_a_running_gateway() {
    let dir = tempdir();
    let mut redis = Redis::start();
    let gw = Server::start(&dir.path().join("gw"), &redis_config(&redis));
    let ih = [0x77u8; 20];
    let q = announce_query(&ih, 1, 7001, 5, "started");
    assert_eq!(announce(gw.addr, &q), (0, 1, None));
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(udp_announce(&sock, gw.udp.unwrap()), Ok(1));

    redis.kill();
    let t = Instant::now();
    let (_, _, failure) = announce(gw.addr, &announce_query(&ih, 2, 7002, 5, "started"));
    assert!(
        failure
            .as_deref()
            .is_some_and(|f| f.contains("unavailable")),
        "{failure:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(3), "within the deadline");
    let e = udp_announce(&sock, gw.udp.unwrap()).unwrap_err();
    assert!(e.contains("unavailable"), "{e}");
    let scrape_reply = request(
        gw.addr,
        "GET",
        &format!(
            "/scrape?info_hash={}",
            torrent_gateway::proto::http::escape::encode(&ih)
        ),
        &[],
        b"",
    );
    assert!(String::from_utf8_lossy(&scrape_reply.body).contains("unavailable"));
    let health = gw.get("/api/health").json();
    assert_eq!(
        health["components"]["tracker"]["status"], "degraded",
        "{health}"
    );
    assert_eq!(health["components"]["database"]["status"], "ok");
    // Nothing else stops: uploads and downloads still work.
    let desc = upload(&gw, "still.bin", b"the gateway is otherwise fine");
    let sha = desc["sha256"].as_str().unwrap();
    assert_eq!(gw.get(&format!("/api/files/{sha}")).status, 200);

    redis.restart();
    let q2 = announce_query(&ih, 2, 7002, 5, "started");
    assert!(
        eventually(10, || announce(gw.addr, &q2).2.is_none()),
        "no recovery: {}",
        gw.log()
    );
    // The restarted Redis is empty: only the new announce is in the swarm.
    assert_eq!(scrape(gw.addr, &ih), (0, 1, 0));
    let health = gw.get("/api/health").json();
    assert_eq!(health["components"]["tracker"]["status"], "ok", "{health}");
}

/// HTTP announces on the Redis backend are answered by the API poller with a lane (no
/// worker): pipelined ones keep their order on one keep-alive connection, malformed ones get
/// their failure reason, the rate limit still applies, and /announce's other methods still
/// get 405 from the router.
#[test]
fn redis_announces_pipeline_fail_clearly_and_keep_the_rate_limit() {
    use std::io::{Read, Write};
    let dir = tempdir();
    let redis = Redis::start();
    let config = format!(
        "{}[rate_limit]\nexempt_loopback = false\nread_per_sec = 1\nread_burst = 6\n",
        redis_config(&redis)
    );
    let gw = Server::start(&dir.path().join("gw"), &config);
    let ih = [0x42; 20];
    let mut c = std::net::TcpStream::connect(gw.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut batch = String::new();
    for (peer, left) in [(1, 0), (2, 10), (3, 10)] {
        batch += &format!(
            "GET {} HTTP/1.1\r\nHost: t\r\n\r\n",
            announce_query(&ih, peer, 7000 + u16::from(peer), left, "started")
        );
    }
    batch += "GET /announce?info_hash=short HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    c.write_all(batch.as_bytes()).unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out).unwrap();
    // The answers, one after the other, each as long as its Content-Length says.
    let mut bodies: Vec<Value> = Vec::new();
    let mut rest = &out[..];
    while let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&rest[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse().ok())
            .expect("a Content-Length");
        let body = &rest[end + 4..end + 4 + len];
        bodies.push(bencode::decode(body).unwrap());
        rest = &rest[end + 4 + len..];
    }
    let counts: Vec<(i64, i64)> = bodies
        .iter()
        .take(3)
        .map(|v| {
            let n = |k| v.get(k).and_then(Value::as_int).unwrap_or(-1);
            (n("complete"), n("incomplete"))
        })
        .collect();
    assert_eq!(counts, [(1, 0), (1, 1), (1, 2)], "answers in request order");
    let last = bodies
        .get(3)
        .and_then(|v| v.get("failure reason")?.as_str());
    assert!(last.is_some_and(|r| r.contains("info_hash")), "{last:?}");
    // The burst of 6 is spent (4 above, and this one); then 429 with Retry-After.
    let statuses: Vec<u16> = (0..4)
        .map(|i| {
            request(
                gw.addr,
                "GET",
                &announce_query(&ih, 9, 7100 + i, 5, ""),
                &[],
                b"",
            )
            .status
        })
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    let r = request(
        gw.addr,
        "POST",
        &announce_query(&ih, 9, 7200, 5, ""),
        &[],
        b"",
    );
    // POST draws from the write bucket, untouched above: the router's 405.
    assert_eq!(r.status, 405);
}
