//! The tracker through `serve` over real sockets: modes and the allowlist API, response forms,
//! client addresses through a trusted proxy, caps, expiry, completed counts surviving a
//! restart and a kill -9, the UDP front end with good and hostile packets, the gateway's
//! own seed in hosted counts, and intervals by client with the too-fast cheap path.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;
use support::server::{request, upload, Server};
use support::tempdir;
use support::tracker::{announce_query, eventually, scrape};
use torrent_gateway::proto::bt::bencode::{self, Value};
use torrent_gateway::proto::tracker::udp::{AnnounceRequest, Request, Response, UdpEvent};
use torrent_gateway::proto::{hex, http::escape};
use torrent_gateway::store::db::Db;

fn announce(server: &Server, q: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let r = request(server.addr, "GET", q, headers, b"");
    assert_eq!(r.status, 200, "{q}");
    r.body
}

fn failure_of(body: &[u8]) -> Option<String> {
    let v = bencode::decode(body).unwrap();
    v.get("failure reason")
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn peers_of(body: &[u8], key: &str) -> Vec<u8> {
    let v = bencode::decode(body).unwrap();
    assert_eq!(failure_of(body), None);
    v.get(key)
        .and_then(Value::as_bytes)
        .map(<[u8]>::to_vec)
        .unwrap_or_default()
}

#[test]
fn hosted_mode_tracks_stored_files_only() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("gw"), "");
    let stranger = [7u8; 20];
    let body = announce(
        &server,
        &announce_query(&stranger, 0, 6881, 5, "started"),
        &[],
    );
    assert!(failure_of(&body).unwrap().contains("not authorized"));
    assert_eq!(scrape(server.addr, &stranger), (0, 0, 0));
    let desc = upload(&server, "clip.bin", &support::bytes(50_000, 1));
    let ih: [u8; 20] = hex::decode(desc["info_hash"].as_str().unwrap()).unwrap();
    let body = announce(&server, &announce_query(&ih, 0, 6881, 5, "started"), &[]);
    assert_eq!(failure_of(&body), None);
    let v = bencode::decode(&body).unwrap();
    assert_eq!(v.get("interval").and_then(Value::as_int), Some(1800));
    assert_eq!(v.get("min interval").and_then(Value::as_int), Some(300));
    // The gateway's own seed counts (the peer wire seeds every hosted torrent).
    assert_eq!(scrape(server.addr, &ih), (1, 1, 0));
    assert_eq!(v.get("complete").and_then(Value::as_int), Some(1));
    let sha = desc["sha256"].as_str().unwrap();
    assert_eq!(
        request(
            server.addr,
            "DELETE",
            &format!("/api/files/{sha}"),
            &[],
            b""
        )
        .status,
        200
    );
    let body = announce(&server, &announce_query(&ih, 1, 6882, 5, "started"), &[]);
    assert!(
        failure_of(&body).is_some(),
        "deleted files are no longer tracked"
    );
}

#[test]
fn allowlist_mode_and_its_api() {
    let dir = tempdir();
    let config = "[tracker]\nmode = \"allowlist\"\nmax_torrents = 1\n";
    let server = Server::start(&dir.path().join("gw"), config);
    let ih = [0x42u8; 20];
    let hexed = hex::encode(&ih);
    let q = announce_query(&ih, 0, 6881, 5, "started");
    assert!(failure_of(&announce(&server, &q, &[])).is_some());
    let path = format!("/api/tracker/allowlist/{hexed}");
    assert_eq!(server.put(&path, b"").status, 201);
    assert_eq!(server.put(&path, b"").status, 200);
    let other = format!("/api/tracker/allowlist/{}", hex::encode(&[0x43u8; 20]));
    let full = server.put(&other, b"");
    assert_eq!(full.status, 507, "the allowlist is capped at max_torrents");
    assert!(full.text().contains("allowlist is full"));
    let list = server.get("/api/tracker/allowlist").json();
    assert_eq!(list["mode"], "allowlist");
    assert_eq!(list["info_hashes"][0], hexed);
    assert_eq!(failure_of(&announce(&server, &q, &[])), None);
    assert_eq!(server.put("/api/tracker/allowlist/xyz", b"").status, 400);
    assert_eq!(request(server.addr, "DELETE", &path, &[], b"").status, 204);
    assert_eq!(request(server.addr, "DELETE", &path, &[], b"").status, 404);
    assert!(failure_of(&announce(&server, &q, &[])).is_some());
    assert_eq!(scrape(server.addr, &ih), (0, 0, 0));
    // The allowlist survives a restart.
    assert_eq!(server.put(&path, b"").status, 201);
    let server = server.restart();
    assert_eq!(failure_of(&announce(&server, &q, &[])), None);
}

#[test]
fn response_forms_numwant_and_no_self() {
    let dir = tempdir();
    let config =
        "[tracker]\nmode = \"open\"\nnumwant_default = 5\nnumwant_max = 5\ntrust_ip_param = true\nmin_interval_secs = 0\n";
    let server = Server::start(&dir.path().join("gw"), config);
    let ih = [1u8; 20];
    for peer in 0..8u8 {
        announce(
            &server,
            &announce_query(&ih, peer, 7000 + peer as u16, 5, "started"),
            &[],
        );
    }
    // An IPv6 peer, registered through the trusted `ip` parameter.
    let v6 = announce_query(&ih, 20, 7020, 5, "started") + "&ip=%3A%3A1";
    announce(&server, &v6, &[]);
    let body = announce(
        &server,
        &(announce_query(&ih, 0, 7000, 5, "") + "&numwant=100"),
        &[],
    );
    let v4 = peers_of(&body, "peers");
    let six = peers_of(&body, "peers6");
    assert_eq!(v4.len() % 6, 0);
    assert_eq!(six.len() % 18, 0);
    assert_eq!(
        v4.len() / 6 + six.len() / 18,
        5,
        "numwant capped at numwant_max"
    );
    assert!(
        !v4.chunks(6).any(|p| p[4..] == 7000u16.to_be_bytes()),
        "never handed its own address"
    );
    // The dictionary form, with and without peer ids.
    let q = announce_query(&ih, 0, 7000, 5, "").replace("compact=1", "compact=0");
    let body = announce(&server, &q, &[]);
    let v = bencode::decode(&body).unwrap();
    let list = v.get("peers").and_then(Value::as_list).unwrap();
    assert_eq!(list.len(), 5);
    for p in list {
        let ip = p.get("ip").and_then(Value::as_str).unwrap();
        assert!(ip == "127.0.0.1" || ip == "::1", "{ip}");
        assert_eq!(
            p.get("peer id").and_then(Value::as_bytes).unwrap().len(),
            20
        );
        assert!(p.get("port").and_then(Value::as_int).unwrap() > 7000);
    }
    let body = announce(&server, &(q + "&no_peer_id=1"), &[]);
    let v = bencode::decode(&body).unwrap();
    let list = v.get("peers").and_then(Value::as_list).unwrap();
    assert!(list.iter().all(|p| p.get("peer id").is_none()));
}

#[test]
fn proxy_header_only_from_trusted_proxies() {
    let dir = tempdir();
    let trusted = "[tracker]\nmode = \"open\"\nproxy_header = \"X-Forwarded-For\"\ntrusted_proxies = [\"127.0.0.1\"]\n";
    let untrusted = "[tracker]\nmode = \"open\"\nproxy_header = \"X-Forwarded-For\"\ntrusted_proxies = [\"10.9.9.9\"]\n";
    for (config, want) in [(trusted, [10, 1, 2, 3]), (untrusted, [127, 0, 0, 1])] {
        let server = Server::start(&dir.path().join(want[0].to_string()), config);
        let ih = [2u8; 20];
        let xff = [("X-Forwarded-For", "192.0.2.1, 10.1.2.3")];
        announce(&server, &announce_query(&ih, 0, 7000, 5, "started"), &xff);
        let body = announce(&server, &announce_query(&ih, 1, 7001, 5, "started"), &[]);
        assert_eq!(peers_of(&body, "peers")[..4], want);
    }
}

#[test]
fn bad_announces_get_failure_reasons() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("gw"), "[tracker]\nmode = \"open\"\n");
    let ih = [3u8; 20];
    let good = announce_query(&ih, 0, 7000, 5, "started");
    for (q, why) in [
        ("/announce".to_string(), "missing info_hash"),
        (
            "/announce?info_hash=abc&peer_id=x&port=1".into(),
            "info_hash must be 20 bytes",
        ),
        (good.replace("port=7000", "port=99999"), "port must be"),
        (
            good.replace("event=started", "event=bogus"),
            "event must be",
        ),
        (good.replace("left=5", "left=-5"), "left must be"),
        (
            good.replace("peer_id=", "peer_id=%zz"),
            "peer_id must be 20 bytes",
        ),
    ] {
        let reason = failure_of(&announce(&server, &q, &[])).unwrap_or_default();
        assert!(reason.contains(why), "{q}: {reason:?}");
    }
    let post = request(server.addr, "POST", &good, &[], b"");
    assert_eq!(post.status, 405);
    let body = request(server.addr, "GET", "/scrape", &[], b"").body;
    assert!(failure_of(&body)
        .unwrap()
        .contains("full scrape is disabled"));
    let many: String = (0..75u8)
        .map(|i| format!("info_hash={}&", escape::encode(&[i; 20])))
        .collect();
    let body = request(server.addr, "GET", &format!("/scrape?{many}"), &[], b"").body;
    assert!(failure_of(&body).unwrap().contains("more than 74"));
    let stats = server.get("/api/stats").json();
    assert!(stats["tracker"]["bad_requests"].as_u64().unwrap() >= 7);
}

#[test]
fn caps_full_scrape_and_expiry() {
    let dir = tempdir();
    let config = "[tracker]\nmode = \"open\"\nmax_torrents = 2\nmax_peers_per_torrent = 2\n\
                  full_scrape = true\ninterval_secs = 1\nmin_interval_secs = 1\npeer_timeout_secs = 1\n";
    let server = Server::start(&dir.path().join("gw"), config);
    let (a, b, c) = ([0xa0u8; 20], [0xb0u8; 20], [0xc0u8; 20]);
    announce(&server, &announce_query(&a, 0, 7000, 5, "started"), &[]);
    announce(&server, &announce_query(&a, 1, 7001, 0, "started"), &[]);
    let full = failure_of(&announce(
        &server,
        &announce_query(&a, 2, 7002, 5, "started"),
        &[],
    ));
    assert!(full.unwrap().contains("swarm is full"));
    announce(&server, &announce_query(&b, 0, 7000, 5, "started"), &[]);
    let over = failure_of(&announce(
        &server,
        &announce_query(&c, 0, 7000, 5, "started"),
        &[],
    ));
    assert!(over.unwrap().contains("too many torrents"));
    let body = request(server.addr, "GET", "/scrape", &[], b"").body;
    let v = bencode::decode(&body).unwrap();
    let files = v.get("files").and_then(Value::as_dict).unwrap();
    let keys: Vec<&[u8]> = files.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, [&a[..], &b[..]]);
    // Silent peers expire and their torrents go with them.
    assert!(
        eventually(15, || server.get("/api/stats").json()["tracker"]
            ["torrents"]
            == 0),
        "{}",
        server.get("/api/stats").text()
    );
    assert_eq!(scrape(server.addr, &a), (0, 0, 0));
}

#[test]
fn completed_counts_survive_restart_and_kill9() {
    let dir = tempdir();
    let data = dir.path().join("gw");
    let server = Server::start(&data, "[tracker]\nmode = \"open\"\nflush_secs = 1\n");
    let ih = [9u8; 20];
    for peer in 0..3 {
        announce(
            &server,
            &announce_query(&ih, peer, 7000, 0, "completed"),
            &[],
        );
    }
    assert_eq!(scrape(server.addr, &ih), (3, 0, 3));
    // Written in batches: wait for the batch to reach SQLite, then kill -9.
    let db = Db::open(&data.join("gateway.db")).unwrap();
    assert!(eventually(10, || db.tracker_downloads(10).unwrap()
        == vec![(hex::encode(&ih), 3)]));
    let server = server.restart();
    assert_eq!(
        scrape(server.addr, &ih),
        (0, 0, 3),
        "peers are gone, the count is not"
    );
    announce(&server, &announce_query(&ih, 7, 7007, 0, "completed"), &[]);
    // A graceful stop flushes the last batch.
    assert_eq!(server.terminate(), Some(0));
    assert_eq!(
        db.tracker_downloads(10).unwrap(),
        vec![(hex::encode(&ih), 4)]
    );
}

fn udp_roundtrip(sock: &UdpSocket, to: SocketAddr, packet: &[u8]) -> Vec<u8> {
    sock.send_to(packet, to).unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = sock.recv_from(&mut buf).expect("an answer");
    buf[..n].to_vec()
}

#[test]
fn udp_tracker_answers_and_survives_hostile_packets() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("gw"), "[tracker]\nmode = \"open\"\n");
    let to = server.udp.unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut p = Vec::new();
    Request::Connect { transaction_id: 1 }.write(&mut p);
    let Some(Response::Connect { connection_id, .. }) =
        Response::parse(&udp_roundtrip(&sock, to, &p), 6)
    else {
        panic!("no connect answer")
    };
    let announce = |cid: u64, peer: u8, port: u16| {
        let mut p = Vec::new();
        Request::Announce(AnnounceRequest {
            connection_id: cid,
            transaction_id: 2,
            info_hash: [5; 20],
            peer_id: [peer; 20],
            downloaded: 0,
            left: 10,
            uploaded: 0,
            event: UdpEvent::Started,
            ip: 0,
            key: 0,
            num_want: -1,
            port,
            options: &[
                1, 2, 9, b'/', b'a', b'n', b'n', b'o', b'u', b'n', b'c', b'e', 0,
            ],
        })
        .write(&mut p);
        p
    };
    udp_roundtrip(&sock, to, &announce(connection_id, 1, 7001));
    let answer = udp_roundtrip(&sock, to, &announce(connection_id, 2, 7002));
    let Some(Response::Announce {
        leechers, peers, ..
    }) = Response::parse(&answer, 6)
    else {
        panic!("{answer:?}")
    };
    assert_eq!((leechers, peers), (2, &[127, 0, 0, 1, 0x1b, 0x59][..]));
    // Hostile input: garbage, truncations, oversize, stale ids. The short ones get no
    // answer; the rest get error packets; the tracker keeps answering.
    let mut junk = vec![vec![0u8; 3], vec![0xff; 15], vec![0x41; 4000]];
    let good = announce(connection_id, 3, 7003);
    junk.extend((16..good.len()).step_by(7).map(|n| good[..n].to_vec()));
    for packet in &junk {
        sock.send_to(packet, to).unwrap();
    }
    let stale = udp_roundtrip(&sock, to, &announce(connection_id ^ 0xdead, 4, 7004));
    // Error answers to the junk may arrive first; read until the stale id's answer.
    let mut answers = vec![stale];
    while !matches!(Response::parse(answers.last().unwrap(), 6), Some(Response::Error { message, .. }) if message == b"connection id expired")
    {
        let mut buf = [0u8; 2048];
        let (n, _) = sock.recv_from(&mut buf).expect("an error answer");
        answers.push(buf[..n].to_vec());
    }
    let mut p = Vec::new();
    Request::Scrape {
        connection_id,
        transaction_id: 3,
        hashes: &[5u8; 20],
    }
    .write(&mut p);
    let answer = (0..100)
        .map(|_| udp_roundtrip(&sock, to, &p))
        .find(|a| matches!(Response::parse(a, 6), Some(Response::Scrape { .. })))
        .expect("a scrape answer");
    let Some(Response::Scrape { stats, .. }) = Response::parse(&answer, 6) else {
        unreachable!()
    };
    // Truncations past byte 98 only cut the BEP-41 options: those announces of peer 3 count.
    assert_eq!(stats, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3]);
    assert_eq!(server.get("/api/health").status, 200);
}

#[test]
fn a_hosted_torrent_scrapes_with_the_gateways_own_seed() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("gw"), "");
    let desc = upload(&server, "seeded.bin", &support::bytes(70_000, 3));
    let ih: [u8; 20] = hex::decode(desc["info_hash"].as_str().unwrap()).unwrap();
    // Before anybody announced, the gateway itself seeds it.
    assert_eq!(scrape(server.addr, &ih), (1, 0, 0));
    let to = server.udp.unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut p = Vec::new();
    Request::Connect { transaction_id: 1 }.write(&mut p);
    let Some(Response::Connect { connection_id, .. }) =
        Response::parse(&udp_roundtrip(&sock, to, &p), 6)
    else {
        panic!("no connect answer")
    };
    p.clear();
    Request::Scrape {
        connection_id,
        transaction_id: 4,
        hashes: &ih,
    }
    .write(&mut p);
    let answer = udp_roundtrip(&sock, to, &p);
    let Some(Response::Scrape { stats, .. }) = Response::parse(&answer, 6) else {
        panic!("no scrape answer")
    };
    let stats = torrent_gateway::proto::tracker::udp::read_scrape_stats(stats);
    assert!(stats[0].seeders >= 1, "{:?}", stats[0]);
    let body = announce(&server, &announce_query(&ih, 0, 6881, 5, "started"), &[]);
    let v = bencode::decode(&body).unwrap();
    assert_eq!(v.get("complete").and_then(Value::as_int), Some(1));
    assert_eq!(v.get("incomplete").and_then(Value::as_int), Some(1));
}

#[test]
fn intervals_follow_the_client_and_fast_reannounces_are_counted() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("gw"), "[tracker]\nmode = \"open\"\n");
    let ih = [0x31u8; 20];
    let query = |client: &str, event: &str| {
        let mut peer_id = *b"-XX0001-000000000000";
        peer_id[..client.len()].copy_from_slice(client.as_bytes());
        format!(
            "/announce?info_hash={}&peer_id={}&port=7100&uploaded=0&downloaded=0&left=5{}",
            escape::encode(&ih),
            escape::encode(&peer_id),
            if event.is_empty() {
                String::new()
            } else {
                format!("&event={event}")
            }
        )
    };
    let told = |body: &[u8]| {
        let v = bencode::decode(body).unwrap();
        let n = |k| v.get(k).and_then(Value::as_int).unwrap();
        (n("interval"), n("min interval"))
    };
    assert_eq!(
        told(&announce(&server, &query("-WW0100-", "started"), &[])),
        (300, 60)
    );
    assert_eq!(
        told(&announce(&server, &query("-TR3000-", "started"), &[])),
        (1800, 300)
    );
    assert_eq!(
        told(&announce(&server, &query("-LT2080-", "started"), &[])),
        (1800, 300)
    );
    // At once again, without an event: counts only, counted as too fast.
    let body = announce(&server, &query("-LT2080-", ""), &[]);
    assert_eq!(failure_of(&body), None);
    assert!(peers_of(&body, "peers").is_empty());
    let stats = server.get("/api/stats").json();
    assert_eq!(stats["tracker"]["too_fast"], 1, "{stats}");
    assert!(server
        .get("/metrics")
        .text()
        .contains("tg_tracker_too_fast_total 1"));
}
