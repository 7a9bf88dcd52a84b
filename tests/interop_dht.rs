//! The Mainline DHT against python3-libtorrent 2.0.8 nodes on 127.0.0.1 (no bootstrap hosts,
//! no tracker, no peer given by hand): the gateway's announce of an uploaded file reaches a
//! libtorrent node and is found by its `dht_get_peers`; a libtorrent announce stored by a
//! libtorrent node, and one stored by the gateway, are found by our `dht get-peers`; a
//! libtorrent client that knows only a bare magnet and the gateway's DHT node downloads the
//! stored file; our `download` of a bare magnet finds a libtorrent seeder through a
//! libtorrent DHT node alone. The same announces both ways with the npm `bittorrent-dht`
//! (webtorrent's DHT); libtorrent's BEP-51 sample_infohashes answered by the gateway. Also
//! `dht get-peers`'s exit codes. Every wait is a bounded poll.

mod support;

use serde_json::Value;
use std::net::SocketAddr;
use support::client::{self, assert_same_file};
use support::dht_gateway::{bare_magnet, cli_get_peers, dht_addr, dht_stats, random_ih};
use support::dht_nodes::DhtNode;
use support::seeders::{self, hex, LtTorrent};
use support::server::{upload, Server};
use support::tracker::eventually;
use support::{bytes, run, stderr, tempdir, write_file};

/// Longest a libtorrent helper lives (it also ends when the test drops it).
const LT_SECS: u64 = 240;

/// A gateway whose DHT node is on 127.0.0.1 and bootstraps from `nodes` only.
fn gateway(data: &std::path::Path, nodes: &[SocketAddr]) -> Server {
    let list: Vec<String> = nodes.iter().map(|a| format!("\"{a}\"")).collect();
    Server::start(data, &format!("[dht]\nbootstrap = [{}]\n", list.join(", ")))
}

/// Waits until the gateway's routing table holds at least `n` nodes.
fn gateway_knows(server: &Server, n: u64) -> bool {
    eventually(30, || {
        dht_stats(server).is_some_and(|s| s["nodes"].as_u64().unwrap_or(0) >= n)
    })
}

#[test]
fn libtorrent_finds_the_gateways_announce_of_an_uploaded_file() {
    let dir = tempdir();
    let mut lt = DhtNode::libtorrent(LT_SECS);
    let server = gateway(&dir.path().join("data"), &[lt.addr]);
    let g = dht_addr(&server);
    lt.add_node(g);
    assert!(gateway_knows(&server, 1), "{}", server.log());
    assert!(lt.wait_nodes(1, 30), "libtorrent never added the gateway");

    let up = upload(&server, "announced.bin", &bytes(300_000, 1));
    let ih = up["info_hash"].as_str().unwrap().to_string();
    let peer = format!("127.0.0.1:{}", server.peer.unwrap().port());
    // The gateway's announce_peer reached libtorrent, which accepted its token.
    let ann = lt.wait(60, |v| v["announce"] == ih.as_str());
    let ann = ann.unwrap_or_else(|| panic!("no announce from the gateway: {}", lt.events()));
    assert_eq!(ann["from"], peer.as_str(), "{ann}");
    // And libtorrent's own lookup finds the gateway's peer port under that info-hash.
    let found = lt.find_peers(&ih, 30, |p| p == peer);
    assert!(found.is_some(), "dht_get_peers: {}", lt.events());
    // The stats snapshot is taken once a second: the count shows up by the next one, in
    // /api/dht/stats and in /metrics.
    let counted = eventually(5, || {
        dht_stats(&server).is_some_and(|s| s["announces_sent"].as_u64() >= Some(1))
    });
    assert!(counted, "{:?}", dht_stats(&server));
    let announce_out = r#"tg_dht_queries_total{dir="out",method="announce_peer"}"#;
    assert!(metric(&server, announce_out) >= Some(1.0));
    assert!(metric(&server, "tg_dht_announces_sent_total") >= Some(1.0));
    assert!(metric(&server, "tg_dht_nodes") >= Some(1.0));
    assert_eq!(metric(&server, "tg_dht_announced_torrents"), Some(1.0));
}

/// A sample of `/metrics` (the series name with its labels, exactly as printed).
fn metric(server: &Server, series: &str) -> Option<f64> {
    let text = server.get("/metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn libtorrent_downloads_a_stored_file_knowing_only_the_magnet_and_the_gateways_dht_node() {
    let dir = tempdir();
    let server = gateway(&dir.path().join("data"), &[]);
    let g = dht_addr(&server);
    let body = bytes((1 << 20) + 12_345, 2);
    let up = upload(&server, "via-dht.bin", &body);
    let ih = up["info_hash"].as_str().unwrap().to_string();

    let mut lt = DhtNode::libtorrent(LT_SECS);
    lt.add_node(g);
    assert!(lt.wait_nodes(1, 30), "libtorrent never added the gateway");
    let save = dir.path().join("lt-out");
    lt.send(&format!(
        "magnet {} {}",
        bare_magnet(&ih),
        save.to_str().unwrap()
    ));
    let done = lt.wait(120, |v| v["done"] == ih.as_str());
    let done = done.unwrap_or_else(|| panic!("libtorrent did not finish: {}", lt.stderr()));
    assert_eq!(done["bytes"], body.len() as u64);
    let got = std::fs::read(save.join("via-dht.bin")).unwrap();
    assert!(got == body, "libtorrent's copy differs");
    // The gateway answered libtorrent's get_peers: that was its only way to find us (the
    // stats snapshot is taken once a second).
    let asked = eventually(5, || {
        dht_stats(&server).is_some_and(|s| s["queries_in"]["get_peers"].as_u64() >= Some(1))
    });
    assert!(asked, "{:?}", dht_stats(&server));
}

#[test]
fn download_of_a_bare_magnet_finds_a_libtorrent_seeder_through_a_libtorrent_dht_node() {
    let dir = tempdir();
    let data = write_file(&dir.path().join("data"), "lt-dht.bin", (2 << 20) + 999, 3);
    let torrent = dir.path().join("lt-dht.torrent");
    let meta = seeders::lt_torrent(&data, &torrent, 65536, &LtTorrent::default());
    let ih = hex(&meta.info_hash);

    // A libtorrent DHT node, and a libtorrent seeder that knows only that node.
    let mut node = DhtNode::libtorrent(LT_SECS);
    let mut seed = DhtNode::libtorrent(LT_SECS);
    seed.add_node(node.addr);
    assert!(seed.wait_nodes(1, 30), "the seeder never added the node");
    seed.send(&format!(
        "seed {} {}",
        torrent.to_str().unwrap(),
        dir.path().join("data").to_str().unwrap()
    ));
    assert!(
        seed.wait(30, |v| v["seeding"] == ih.as_str()).is_some(),
        "{}",
        seed.stderr()
    );
    let ann = node.wait(60, |v| v["announce"] == ih.as_str());
    assert!(
        ann.is_some(),
        "the seeder never announced: {}",
        node.events()
    );

    let out = dir.path().join("out");
    let node_arg = node.addr.to_string();
    let run = client::download(
        dir.path(),
        &[
            &bare_magnet(&ih),
            "-o",
            out.to_str().unwrap(),
            "--json",
            "--timeout",
            "90",
            "--dht-bootstrap",
            &node_arg,
        ],
        150,
    );
    let s = run.assert_complete();
    assert_eq!(s["total_pieces"], meta.info.piece_count() as u64, "{run}");
    assert_same_file(&out.join("lt-dht.bin"), &data);
}

#[test]
fn dht_get_peers_finds_an_announce_a_libtorrent_node_stored() {
    let mut node = DhtNode::libtorrent(LT_SECS);
    let mut announcer = DhtNode::libtorrent(LT_SECS);
    announcer.add_node(node.addr);
    assert!(
        announcer.wait_nodes(1, 30),
        "the announcer never added the node"
    );
    let dir = tempdir();
    let ih = random_ih(4);
    // A magnet makes libtorrent announce it (2.0.8's Python dht_announce is broken).
    announcer.send(&format!(
        "magnet {} {}",
        bare_magnet(&ih),
        dir.path().to_str().unwrap()
    ));
    let ann = node.wait(60, |v| v["announce"] == ih.as_str());
    assert!(ann.is_some(), "no announce: {}", node.events());
    let (code, peers) = cli_get_peers(&ih, &[node.addr], 30);
    assert_eq!(code, Some(0), "{peers:?}");
    assert!(
        peers.contains(&announcer.addr.to_string()),
        "{peers:?} lacks {}",
        announcer.addr
    );
}

#[test]
fn the_gateway_stores_a_libtorrent_announce_that_dht_get_peers_finds() {
    let dir = tempdir();
    let server = gateway(&dir.path().join("data"), &[]);
    let g = dht_addr(&server);
    let mut lt = DhtNode::libtorrent(LT_SECS);
    lt.add_node(g);
    assert!(lt.wait_nodes(1, 30), "libtorrent never added the gateway");
    let ih = random_ih(5);
    lt.send(&format!(
        "magnet {} {}",
        bare_magnet(&ih),
        dir.path().join("lt").to_str().unwrap()
    ));
    // The gateway checked libtorrent's token and stored the peer.
    let stored = eventually(60, || {
        dht_stats(&server).is_some_and(|s| s["stored_peers"].as_u64() >= Some(1))
    });
    assert!(stored, "{:?}\n{}", dht_stats(&server), lt.stderr());
    let (code, peers) = cli_get_peers(&ih, &[g], 30);
    assert_eq!(code, Some(0), "{peers:?}");
    assert!(
        peers.contains(&lt.addr.to_string()),
        "{peers:?} lacks {}",
        lt.addr
    );
    // BEP-51: libtorrent's sample_infohashes to the gateway names the stored info-hash.
    lt.send(&format!("sample {g}"));
    let sample = lt.wait(30, |v| v.get("samples").is_some());
    let sample = sample.unwrap_or_else(|| panic!("no samples: {}", lt.stderr()));
    assert_eq!(sample["num"], 1, "{sample}");
    assert_eq!(sample["samples"], serde_json::json!([ih]), "{sample}");
}

#[test]
fn dht_get_peers_exit_codes() {
    let dir = tempdir();
    for bad in ["zz", "0123", &"g".repeat(40), "magnet:?dn=x"] {
        let o = run(dir.path(), &["dht", "get-peers", bad, "--timeout", "1"]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{bad}: {err}");
        assert_eq!(err.lines().count(), 1, "{bad}: {err}");
        assert!(err.starts_with("error: "), "{err}");
    }
    let o = run(
        dir.path(),
        &[
            "dht",
            "get-peers",
            &"a".repeat(40),
            "--bootstrap",
            "127.0.0.1",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // A node that never answers: nothing found by the timeout is exit 1, with an empty list.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let ih = random_ih(6);
    let (code, peers) = cli_get_peers(&ih, &[silent.local_addr().unwrap()], 2);
    assert_eq!(code, Some(1));
    assert!(peers.is_empty(), "{peers:?}");
    let mut buf = [0u8; 1500];
    silent.set_nonblocking(true).unwrap();
    // It was asked, over KRPC.
    let (n, _) = silent
        .recv_from(&mut buf)
        .expect("the node never queried the bootstrap");
    assert!(buf[..n].starts_with(b"d"), "{:?}", &buf[..n]);
}

#[test]
fn bittorrent_dht_takes_the_gateways_announce_and_finds_it() {
    let dir = tempdir();
    let mut js = DhtNode::bittorrent_dht();
    let server = gateway(&dir.path().join("data"), &[js.addr]);
    let g = dht_addr(&server);
    js.add_node(g);
    assert!(gateway_knows(&server, 1), "{}", server.log());
    assert!(
        js.wait_nodes(1, 30),
        "bittorrent-dht never added the gateway"
    );
    let up = upload(&server, "for-webtorrent.bin", &bytes(200_000, 7));
    let ih = up["info_hash"].as_str().unwrap().to_string();
    let peer = format!("127.0.0.1:{}", server.peer.unwrap().port());
    // bittorrent-dht checked the gateway's token and stored its peer port.
    let ann = js.wait(60, |v| v["announce"] == ih.as_str());
    let ann = ann.unwrap_or_else(|| panic!("no announce from the gateway: {}", js.events()));
    assert_eq!(ann["peer"], peer.as_str(), "{ann}");
    js.send(&format!("lookup {ih}"));
    let found = js.wait(30, |v| {
        v["info_hash"] == ih.as_str() && v["peer"] == peer.as_str()
    });
    assert!(found.is_some(), "lookup: {}", js.events());
}

#[test]
fn a_bittorrent_dht_announce_is_stored_by_the_gateway_and_found_by_dht_get_peers() {
    let dir = tempdir();
    let server = gateway(&dir.path().join("data"), &[]);
    let g = dht_addr(&server);
    let mut other = DhtNode::bittorrent_dht();
    let mut js = DhtNode::bittorrent_dht();
    js.add_node(g);
    js.add_node(other.addr);
    assert!(
        js.wait_nodes(2, 30),
        "bittorrent-dht never added both nodes"
    );
    let ih = random_ih(8);
    js.send(&format!("announce {ih} 6999"));
    let done = js.wait(60, |v| v["announced"] == ih.as_str());
    let done = done.unwrap_or_else(|| panic!("announce did not end: {}", js.events()));
    assert_eq!(done["error"], Value::Null, "{done}");
    // Both the gateway and the other bittorrent-dht node took it.
    let stored = eventually(10, || {
        dht_stats(&server).is_some_and(|s| s["stored_peers"].as_u64() >= Some(1))
    });
    assert!(stored, "{:?}", dht_stats(&server));
    assert!(other.wait(10, |v| v["announce"] == ih.as_str()).is_some());
    // Our lookup finds the announced port through either node.
    for node in [g, other.addr] {
        let (code, peers) = cli_get_peers(&ih, &[node], 30);
        assert_eq!(code, Some(0), "via {node}: {peers:?}");
        assert!(peers.contains(&"127.0.0.1:6999".to_string()), "{peers:?}");
    }
}
