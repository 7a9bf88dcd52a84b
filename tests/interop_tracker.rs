//! The built-in tracker with real clients on 127.0.0.1: a libtorrent seeder and an aria2c
//! leecher that know only our HTTP announce URL; two libtorrent sessions over our UDP
//! tracker, in two processes and in one; a dual-stack libtorrent seeder handed to an
//! IPv4-only peer on every announce; Transmission announcing (checked through scrape counts and a leecher it serves);
//! and the same announce sequence against opentracker giving the same counts.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use support::server::{request, Server};
use support::tracker::{announce_query, eventually, free_port, lt_seed, lt_seed_with};
use support::tracker::{make_torrent, scrape};
use support::{require_tool, tempdir, Reaped};
use torrent_gateway::proto::bt::bencode::{self, Value};

const OPEN: &str = "[tracker]\nmode = \"open\"\n";

/// Downloads `torrent` with libtorrent into `dir/leech` (it knows only the torrent's
/// trackers) and checks the bytes against `dir/data/<name>`.
fn lt_leech(torrent: &Path, dir: &Path, name: &str) {
    let save = dir.join("leech");
    support::python(
        "lt_download.py",
        &[torrent.to_str().unwrap(), save.to_str().unwrap(), "60"],
    );
    assert_eq!(
        std::fs::read(save.join(name)).unwrap(),
        std::fs::read(dir.join("data").join(name)).unwrap()
    );
}

#[test]
fn libtorrent_seeder_and_aria2c_leecher_meet_through_the_http_tracker() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("gw"), OPEN);
    let announce = format!("http://{}/announce", server.addr);
    let (torrent, ih) = make_torrent(dir.path(), "movie.bin", 3 << 20, &announce);
    let _seeder = lt_seed(&torrent, &dir.path().join("data"));
    assert!(
        eventually(30, || scrape(server.addr, &ih).0 == 1),
        "the seeder never announced: {:?}",
        scrape(server.addr, &ih)
    );
    let out = dir.path().join("aria2");
    let o = support::aria2c(&torrent, &out);
    assert!(
        o.status.success(),
        "aria2c failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        std::fs::read(out.join("movie.bin")).unwrap(),
        std::fs::read(dir.path().join("data/movie.bin")).unwrap()
    );
    // With --seed-time=0 aria2c goes from started straight to stopped (left=0), never sending
    // `completed`: the seeder remains and nothing counts as a completed download.
    assert!(
        eventually(10, || scrape(server.addr, &ih) == (1, 0, 0)),
        "{:?} {}",
        scrape(server.addr, &ih),
        server.log()
    );
    let stats = server.get("/api/stats").json();
    assert!(stats["tracker"]["announces"]["http"].as_u64().unwrap() >= 3);
}

#[test]
fn two_libtorrent_sessions_meet_through_the_udp_tracker() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("gw"), OPEN);
    let udp = server
        .udp
        .expect("UDP tracker address in the start-up line");
    assert_eq!(
        udp.port(),
        server.addr.port(),
        "same port number as the API"
    );
    let announce = format!("udp://{udp}/announce");
    let (torrent, ih) = make_torrent(dir.path(), "album.bin", (2 << 20) + 12_345, &announce);
    let _seeder = lt_seed(&torrent, &dir.path().join("data"));
    assert!(eventually(30, || scrape(server.addr, &ih).0 == 1));
    lt_leech(&torrent, dir.path(), "album.bin");
    assert!(eventually(10, || scrape(server.addr, &ih).2 == 1));
    let stats = server.get("/api/stats").json();
    let t = &stats["tracker"];
    assert!(t["announces"]["udp"].as_u64().unwrap() >= 2, "{t}");
    assert_eq!(t["announces"]["http"], 0, "{t}");
    assert!(t["udp_connects"].as_u64().unwrap() >= 2, "{t}");
}

#[test]
fn transmission_announces_and_serves_a_leecher_found_through_us() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("gw"), OPEN);
    let announce = format!("http://{}/announce", server.addr);
    let (torrent, ih) = make_torrent(dir.path(), "show.bin", (1 << 20) + 77, &announce);
    // transmission-cli checks the data it finds in -w and seeds it.
    let home = dir.path().join("tr-home");
    let _transmission = support::transmission_cli(&torrent, &dir.path().join("data"), &home);
    assert!(
        eventually(60, || scrape(server.addr, &ih).0 == 1),
        "transmission never announced as a seeder: {:?}",
        scrape(server.addr, &ih)
    );
    // A leecher that knows only our tracker finds Transmission through us and gets the data,
    // so Transmission's announce carried its real port and peer_id.
    lt_leech(&torrent, dir.path(), "show.bin");
    assert!(eventually(10, || scrape(server.addr, &ih).2 == 1));
}

#[test]
fn the_same_announces_give_opentracker_and_us_the_same_counts() {
    let dir = tempdir();
    let ih = [0x5au8; 20];
    let other = [0xa5u8; 20];
    // opentracker: whitelist only, chroots into -d and drops to -u when run as root.
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
    let ot: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(
        eventually(10, || std::net::TcpStream::connect(ot).is_ok()),
        "opentracker did not start"
    );
    let ours = Server::start(&dir.path().join("gw"), OPEN);
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
    for &(hash, peer, p, left, event) in steps {
        let q = announce_query(hash, peer, p, left, event);
        for addr in [ot, ours.addr] {
            let r = request(addr, "GET", &q, &[], b"");
            assert_eq!(r.status, 200, "{addr}{q}");
            assert!(
                !String::from_utf8_lossy(&r.body).contains("failure"),
                "{addr}: {}",
                String::from_utf8_lossy(&r.body)
            );
        }
    }
    for hash in [&ih, &other] {
        let theirs = scrape(ot, hash);
        let mine = scrape(ours.addr, hash);
        assert_eq!(
            mine, theirs,
            "ours vs opentracker (complete, incomplete, downloaded)"
        );
    }
    assert_eq!(scrape(ours.addr, &ih), (3, 1, 2));
}

#[test]
fn two_libtorrent_sessions_in_one_process_meet_through_the_udp_tracker() {
    // libtorrent keeps one connection id per tracker for the whole process, so the second
    // session announces with the id the first got, from another source port.
    let dir = tempdir();
    let server = Server::start(&dir.path().join("gw"), OPEN);
    let announce = format!("udp://{}/announce", server.udp.unwrap());
    let (torrent, ih) = make_torrent(dir.path(), "pair.bin", (1 << 20) + 999, &announce);
    let leech = dir.path().join("leech");
    support::python(
        "lt_two_sessions.py",
        &[
            torrent.to_str().unwrap(),
            dir.path().join("data").to_str().unwrap(),
            leech.to_str().unwrap(),
            "60",
        ],
    );
    assert_eq!(
        std::fs::read(leech.join("pair.bin")).unwrap(),
        std::fs::read(dir.path().join("data/pair.bin")).unwrap()
    );
    let stats = server.get("/api/stats").json();
    let t = &stats["tracker"];
    assert!(t["announces"]["udp"].as_u64().unwrap() >= 2, "{t}");
    assert!(scrape(server.addr, &ih).0 >= 1);
}

#[test]
fn a_dual_stack_libtorrent_seeder_reaches_an_ipv4_only_peer_on_every_announce() {
    let dir = tempdir();
    let config = "[tracker]\nmode = \"open\"\nmin_interval_secs = 0\n";
    let server = Server::start_dual_stack(&dir.path().join("gw"), config);
    let port = server.addr.port();
    let announce = format!("http://127.0.0.1:{port}/announce,http://[::1]:{port}/announce");
    let (torrent, ih) = make_torrent(dir.path(), "dual.bin", 300_000, &announce);
    let lt_port = free_port();
    let (_seeder, _) = lt_seed_with(
        "lt_seed_dual.py",
        &torrent,
        &dir.path().join("data"),
        &[&lt_port.to_string()],
    );
    // One seeder entry per address family (the same peer_id and key from both sockets).
    assert!(
        eventually(30, || scrape(server.addr, &ih).0 == 2),
        "{:?} {}",
        scrape(server.addr, &ih),
        server.log()
    );
    let announces = || {
        server.get("/api/stats").json()["tracker"]["announces"]["http"]
            .as_u64()
            .unwrap()
    };
    let want = [127, 0, 0, 1, (lt_port >> 8) as u8, lt_port as u8];
    for round in 0..8 {
        // Wait for libtorrent to announce again from both families.
        let before = announces();
        assert!(eventually(15, || announces() >= before + 2));
        let event = if round == 0 { "started" } else { "" };
        let q = announce_query(&ih, 50, 7000, 5, event);
        let r = request(server.addr, "GET", &q, &[], b"");
        let v = bencode::decode(&r.body).unwrap();
        let peers = v.get("peers").and_then(Value::as_bytes).unwrap_or_default();
        assert!(
            peers.chunks(6).any(|p| p == want),
            "round {round}: the IPv4 entry is missing: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(&peers[..6], want, "the requester's family comes first");
    }
}
