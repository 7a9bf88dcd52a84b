//! Real BitTorrent clients download uploaded files through the gateway's BEP-19 webseed
//! alone (no peers; the tracker in the torrent is not running yet), byte-identical.

mod support;

use support::server::{upload, Server};
use support::*;

const CONFIG: &str = "[storage]\nblob_threshold_bytes = 1000000\npiece_length_bytes = 262144\n";

/// Uploads a blob and a multi-chunk file with a short last piece; returns (name, data, sha).
fn stored(server: &Server) -> Vec<(String, Vec<u8>, String)> {
    [
        ("blob.bin", 300_000usize, 21u64),
        ("chunked.bin", 5 * 262_144 + 12_345, 22),
    ]
    .into_iter()
    .map(|(name, len, seed)| {
        let data = bytes(len, seed);
        let d = upload(server, name, &data);
        let sha = d["sha256"].as_str().unwrap().to_string();
        let expected = if len > 1_000_000 { "chunked" } else { "blob" };
        assert_eq!(d["storage"], expected);
        (name.to_string(), data, sha)
    })
    .collect()
}

fn fetch_torrent(server: &Server, sha: &str, path: &std::path::Path) {
    let t = server.get(&format!("/api/files/{sha}/torrent"));
    assert_eq!(t.status, 200);
    std::fs::write(path, &t.body).unwrap();
}

#[test]
fn aria2c_downloads_through_the_webseed() {
    let tmp = tempdir();
    let server = Server::start(&tmp.path().join("data"), CONFIG);
    for (name, data, sha) in stored(&server) {
        let torrent = tmp.path().join(format!("{name}.torrent"));
        fetch_torrent(&server, &sha, &torrent);
        let out = tmp.path().join("aria2").join(&name);
        let o = support::aria2c(&torrent, &out);
        assert!(o.status.success(), "aria2c: {} {}", stdout(&o), stderr(&o));
        let got = std::fs::read(out.join(&name)).unwrap();
        assert!(got == data, "{name}: aria2c's copy differs");
    }
    let stats = server.get("/api/stats").json();
    assert!(
        stats["served"]["webseed_requests"].as_u64().unwrap() > 0,
        "{stats}"
    );
}

#[test]
fn libtorrent_downloads_through_the_webseed() {
    python_with_libtorrent();
    let tmp = tempdir();
    let server = Server::start(&tmp.path().join("data"), CONFIG);
    for (name, data, sha) in stored(&server) {
        let torrent = tmp.path().join(format!("{name}.torrent"));
        fetch_torrent(&server, &sha, &torrent);
        let out = tmp.path().join("lt");
        python(
            "lt_download.py",
            &[torrent.to_str().unwrap(), out.to_str().unwrap(), "120"],
        );
        let got = std::fs::read(out.join(&name)).unwrap();
        assert!(got == data, "{name}: libtorrent's copy differs");
    }
    let stats = server.get("/api/stats").json();
    assert!(
        stats["served"]["webseed_requests"].as_u64().unwrap() > 0,
        "{stats}"
    );
}
