//! A blob uploaded through Blossom (signed by nostr-tools) is a torrent: python3-libtorrent
//! downloads it from the magnet link in its descriptor, and aria2c through the webseed (with
//! the peer wire off, so the webseed is the only source), both byte-identical.

mod support;

use serde_json::Value;
use sha2::{Digest, Sha256};
use support::nostr::blossom_auth;
use support::server::{request, Server};
use support::{bytes, tempdir};

const ALICE: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const STORAGE: &str = "[storage]\npiece_length_bytes = 262144\nblob_threshold_bytes = 1000000\n";

/// Uploads through Blossom; returns the descriptor.
fn put(server: &Server, data: &[u8]) -> Value {
    let sha: String = Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let r = request(
        server.blossom.unwrap(),
        "PUT",
        "/upload",
        &[
            ("Authorization", &blossom_auth(ALICE, "upload", &[&sha])),
            ("Content-Type", "application/octet-stream"),
        ],
        data,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()
}

fn nip94<'a>(d: &'a Value, name: &str) -> &'a str {
    d["nip94"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t[0] == name)
        .and_then(|t| t[1].as_str())
        .unwrap()
}

#[test]
fn libtorrent_downloads_a_blossom_blob_from_its_magnet() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("gw"), STORAGE);
    for (len, seed) in [(50_000, 1), (2_500_007, 2)] {
        let data = bytes(len, seed);
        let d = put(&server, &data);
        let magnet = nip94(&d, "magnet");
        let save = dir.path().join(format!("lt-{seed}"));
        let peer = server.peer.unwrap().to_string();
        let out = support::python(
            "lt_magnet.py",
            &[magnet, save.to_str().unwrap(), "60", &peer],
        );
        let name = format!("{}.bin", d["sha256"].as_str().unwrap());
        assert!(out.contains(&name), "{out}");
        let got = std::fs::read(save.join(&name)).unwrap();
        assert!(got == data, "libtorrent's copy of {len} bytes differs");
    }
}

#[test]
fn aria2c_downloads_a_blossom_blob_through_its_webseed() {
    let dir = tempdir();
    let config = format!("{STORAGE}[peer]\nenabled = false\n");
    let server = Server::start(&dir.path().join("gw"), &config);
    for (len, seed) in [(50_000, 3), (2_500_007, 4)] {
        let data = bytes(len, seed);
        let d = put(&server, &data);
        let torrent_url = d["torrent"].as_str().unwrap();
        let path = torrent_url
            .split_once("/api/")
            .map(|(_, p)| format!("/api/{p}"))
            .unwrap();
        let t = server.get(&path);
        assert_eq!(t.status, 200);
        let torrent = dir.path().join(format!("{seed}.torrent"));
        std::fs::write(&torrent, &t.body).unwrap();
        let out = dir.path().join(format!("aria-{seed}"));
        let o = support::aria2c(&torrent, &out);
        assert!(o.status.success(), "aria2c: {o:?}");
        let name = format!("{}.bin", d["sha256"].as_str().unwrap());
        let got = std::fs::read(out.join(&name)).unwrap();
        assert!(got == data, "aria2c's copy of {len} bytes differs");
    }
    let stats = server.get("/api/stats").json();
    assert!(
        stats["served"]["webseed_requests"].as_u64().unwrap() > 0,
        "{stats}"
    );
}
