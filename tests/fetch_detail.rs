//! A fetched torrent's detail and peer list against a real python3-libtorrent seeder of a
//! two-file torrent (the gateway given only the magnet with `x.pe`): after streaming the
//! second file, `GET /api/torrents/<ih>` shows the bytes verified per file (the second
//! whole, the first at most the piece they share), a down rate measured from the transfer,
//! and the seeder among the `manual` peers; `GET /api/p2p/peers/<ih>` lists it first in the
//! dial order, connected, no failures, with every piece, a score and the reasons (local
//! network, no hash failures, the payload rate measured).

mod support;

use std::time::Duration;
use support::seeders::{self, LtOptions, LtTorrent};
use support::server::{request, Server};
use support::tempdir;

const PIECE: u32 = 65536;
const A: usize = (2 << 20) + 5;
const B: usize = (3 << 20) + 7;

/// Polls `f` every 50 ms for at most `secs` until it returns Some.
fn eventually<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn detail_and_peer_list_of_a_fetched_torrent() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let pack = seeders::make_tree(&data.join("pack"), &[("a.bin", A), ("b.bin", B)]);
    let torrent = dir.path().join("pack.torrent");
    let meta = seeders::lt_torrent(&pack, &torrent, PIECE, &LtTorrent::default());
    let seed = seeders::libtorrent(&torrent, &data, LtOptions::default());
    let gw = Server::start(&dir.path().join("gw"), "");
    let ih = seeders::hex(&meta.info_hash);
    let magnet = format!("magnet:?xt=urn:btih:{ih}&x.pe={}", seed.peer_arg());
    let r = request(gw.addr, "POST", "/api/torrents", &[], magnet.as_bytes());
    assert!(r.status == 201 || r.status == 202, "{}", r.text());
    let ready = eventually(15, || {
        let v = gw.get(&format!("/api/torrents/{ih}")).json();
        (v["state"] == "ready").then_some(v)
    })
    .expect("no metadata from the seeder");
    let files = ready["files"].as_array().unwrap();
    assert_eq!(files.len(), 2, "{ready}");
    let b_index = files
        .iter()
        .find(|f| f["path"].as_str().unwrap().ends_with("b.bin"))
        .unwrap()["index"]
        .as_u64()
        .unwrap();

    // Stream the second file whole.
    let want = std::fs::read(pack.join("b.bin")).unwrap();
    let r = gw.get(&format!("/stream/{ih}/{b_index}"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.body == want, "the streamed file differs");

    // Per-file progress: the second whole, the first at most the piece they share.
    let v = gw.get(&format!("/api/torrents/{ih}")).json();
    for f in v["files"].as_array().unwrap() {
        let (len, got) = (
            f["length"].as_u64().unwrap(),
            f["verified_bytes"].as_u64().unwrap(),
        );
        if f["index"] == b_index {
            assert_eq!(got, len, "{f}");
        } else {
            assert!(got < u64::from(PIECE) && got < len, "{f}");
        }
    }
    // A down rate measured from the transfer, and the seeder among the manual peers.
    let v = eventually(10, || {
        let v = gw.get(&format!("/api/torrents/{ih}")).json();
        let fast = v["rates"]["down_bytes_per_sec"].as_u64().unwrap_or(0) > 0;
        let seen = v["peers_by_source"]["manual"]["connected"] == 1;
        (fast && seen).then_some(v)
    })
    .unwrap_or_else(|| panic!("{}", gw.get(&format!("/api/torrents/{ih}")).text()));
    assert!(v["rates"]["up_bytes_per_sec"].is_u64(), "{v}");
    assert_eq!(v["peers_by_source"]["manual"]["known"], 1, "{v}");
    for other in ["tracker", "dht", "pex", "webseed"] {
        assert_eq!(v["peers_by_source"][other]["known"], 0, "{other}: {v}");
    }

    // The peer list: the seeder, first, connected, with every piece and its reasons.
    let r = gw.get(&format!("/api/p2p/peers/{ih}"));
    assert_eq!(r.status, 200, "{}", r.text());
    let list = r.json();
    let p = &list["peers"][0];
    assert_eq!(p["addr"], seed.peer_arg(), "{list}");
    assert_eq!(p["source"], "manual");
    assert_eq!(p["state"], "connected");
    assert_eq!(p["failures"], 0);
    assert_eq!(p["rank"], 1);
    assert_eq!(
        p["pieces"].as_u64().unwrap(),
        meta.info.piece_count() as u64
    );
    assert!(p["score"].as_u64().unwrap() > 0, "{p}");
    assert!(p["rate_down_bytes_per_sec"].is_u64(), "{p}");
    let reasons: Vec<&str> = p["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("manual"))
            && reasons.iter().any(|r| r.contains("BEP-40")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("local network")),
        "loopback is the local network: {reasons:?}"
    );
    assert_eq!(p["local_network"], true, "{p}");
    assert_eq!(p["hash_failures"], 0, "{p}");
    // The rate the engine measured is remembered by the list and ranks the peer.
    let p = eventually(10, || {
        let list = gw.get(&format!("/api/p2p/peers/{ih}")).json();
        let p = list["peers"][0].clone();
        (p["measured_rate_bytes_per_sec"].as_u64().unwrap_or(0) > 0).then_some(p)
    })
    .unwrap_or_else(|| panic!("{}", gw.get(&format!("/api/p2p/peers/{ih}")).text()));
    assert!(
        p["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().contains("KiB/s payload")),
        "{p}"
    );
    // Unknown and malformed info-hashes.
    assert_eq!(
        gw.get(&format!("/api/p2p/peers/{}", "ab".repeat(20)))
            .status,
        404
    );
    assert_eq!(gw.get("/api/p2p/peers/xyz").status, 400);
}
