//! The gateway seeding over the peer wire to real clients on 127.0.0.1, from its peer port
//! alone (the torrents they get have no webseed): python3-libtorrent with the peer added by
//! hand, aria2c finding us through our tracker, Transmission (which never dials loopback
//! peers) downloading because we dial it, and libtorrent from a bare magnet link through
//! ut_metadata. Each gets a small blob, a multi-chunk file and one whose last piece is short.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use support::server::{upload, Server};
use support::tracker::eventually;
use support::{bytes, tempdir};
use torrent_gateway::proto::bt::bencode;
use torrent_gateway::proto::bt::metainfo::{self, TorrentExtras};

/// Small pieces and a low chunk threshold, so small files span several chunk files.
const CONFIG: &str = "[storage]\npiece_length_bytes = 262144\nblob_threshold_bytes = 1000000\n";

/// (name, length): a blob of one short piece, a chunked file of whole pieces, a chunked
/// file whose last piece is short.
const FILES: [(&str, usize); 3] = [
    ("small.txt", 50_000),
    ("whole.bin", 4 * 262_144),
    ("ragged.bin", 2_500_007),
];

struct Stored {
    name: &'static str,
    data: Vec<u8>,
    /// The torrent without webseeds, announcing to our tracker.
    torrent: PathBuf,
    magnet_xt: String,
}

/// Uploads the three files and writes their torrents without `url-list` into `dir`.
fn store_files(server: &Server, dir: &Path) -> Vec<Stored> {
    FILES
        .iter()
        .enumerate()
        .map(|(i, &(name, len))| {
            let data = bytes(len, 40 + i as u64);
            let d = upload(server, name, &data);
            let sha = d["sha256"].as_str().unwrap();
            let t = server.get(&format!("/api/files/{sha}/torrent"));
            assert_eq!(t.status, 200);
            let doc = bencode::decode(&t.body).unwrap();
            let info = doc.get("info").unwrap().raw;
            let announce = doc.get("announce").unwrap().as_str().unwrap().to_string();
            let bare = metainfo::build_torrent(
                info,
                &TorrentExtras {
                    trackers: &[announce],
                    webseeds: &[],
                    comment: None,
                    created_by: None,
                    creation_date: None,
                },
            );
            assert!(!String::from_utf8_lossy(&bare).contains("url-list"));
            let torrent = dir.join(format!("{name}.torrent"));
            std::fs::write(&torrent, bare).unwrap();
            Stored {
                name,
                data,
                torrent,
                magnet_xt: format!("magnet:?xt=urn:btih:{}", d["info_hash"].as_str().unwrap()),
            }
        })
        .collect()
}

fn peer_of(server: &Server) -> SocketAddr {
    server.peer.expect("the peer wire is on by default")
}

fn same_bytes(path: &Path, want: &[u8]) -> bool {
    std::fs::read(path).is_ok_and(|got| got == want)
}

/// Served piece data as the gateway counts it.
fn uploaded(server: &Server) -> u64 {
    server.get("/api/p2p/stats").json()["uploaded_bytes"]
        .as_u64()
        .unwrap()
}

#[test]
fn libtorrent_downloads_from_our_peer_port() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("gw"), CONFIG);
    let files = store_files(&server, dir.path());
    let peer = peer_of(&server).to_string();
    for f in &files {
        let save = dir.path().join("lt");
        support::python(
            "lt_download.py",
            &[
                f.torrent.to_str().unwrap(),
                save.to_str().unwrap(),
                "60",
                &peer,
            ],
        );
        assert!(same_bytes(&save.join(f.name), &f.data), "{}", f.name);
    }
    let total: usize = FILES.iter().map(|f| f.1).sum();
    assert!(uploaded(&server) >= total as u64, "{}", uploaded(&server));
    // No webseed was involved.
    let stats = server.get("/api/stats").json();
    assert_eq!(stats["served"]["webseed_bytes"], 0, "{stats}");
}

#[test]
fn aria2c_finds_us_through_our_tracker_and_downloads() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("gw"), CONFIG);
    let files = store_files(&server, dir.path());
    for f in &files {
        let out = dir.path().join("aria");
        let o = support::aria2c(&f.torrent, &out);
        assert!(o.status.success(), "{}: {o:?}", f.name);
        assert!(same_bytes(&out.join(f.name), &f.data), "{}", f.name);
    }
    let stats = server.get("/api/stats").json();
    assert_eq!(stats["served"]["webseed_bytes"], 0, "{stats}");
}

#[test]
fn transmission_downloads_because_we_dial_it() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("gw"), CONFIG);
    let files = store_files(&server, dir.path());
    for f in &files {
        let out = dir.path().join(format!("tr-{}", f.name));
        std::fs::create_dir_all(&out).unwrap();
        let home = dir.path().join(format!("tr-home-{}", f.name));
        let _tr = support::transmission_cli(&f.torrent, &out, &home);
        let target = out.join(f.name);
        assert!(
            eventually(90, || same_bytes(&target, &f.data)),
            "{}: transmission did not finish; p2p stats {}",
            f.name,
            server.get("/api/p2p/stats").text()
        );
    }
    let stats = server.get("/api/p2p/stats").json();
    assert!(stats["dialed"].as_u64().unwrap() >= 3, "{stats}");
}

#[test]
fn libtorrent_fetches_metadata_and_data_from_a_bare_magnet() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("gw"), CONFIG);
    let files = store_files(&server, dir.path());
    let peer = peer_of(&server).to_string();
    for f in &files {
        let save = dir.path().join("magnet");
        let out = support::python(
            "lt_magnet.py",
            &[&f.magnet_xt, save.to_str().unwrap(), "60", &peer],
        );
        assert!(out.contains(f.name), "{out}");
        assert!(same_bytes(&save.join(f.name), &f.data), "{}", f.name);
    }
    // The per-torrent figures are a snapshot taken every second.
    let served = || -> u64 {
        server.get("/api/p2p/stats").json()["torrents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["metadata_pieces_served"].as_u64().unwrap())
            .sum()
    };
    assert!(eventually(10, || served() >= 3), "{}", served());
}
