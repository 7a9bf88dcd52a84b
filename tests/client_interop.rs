//! Our `download` command against real seeders on 127.0.0.1, each run end to end and checked
//! byte for byte: python3-libtorrent, transmission-daemon, aria2c, our own gateway, nginx as
//! the only (web)seed, libtorrent and the webseed together, a mktorrent multi-file torrent
//! with nested folders and an empty file, a libtorrent torrent with BEP-47 pad files, a bare
//! magnet with `--peer`, a magnet whose only source is our tracker, an encrypted-only
//! libtorrent seeder, and `--files` picking one file of several.

mod support;

use std::path::{Path, PathBuf};
use support::client::{self, assert_same_file, assert_same_tree, visible_files, Finished};
use support::seeders::{self, LtOptions, LtTorrent};
use support::server::Server;
use support::{tempdir, write_file};
use torrent_gateway::proto::bt::metainfo::Metainfo;

/// Longest a test download may take before it is killed and the test fails.
const LIMIT_SECS: u64 = 120;

/// Runs `download SOURCE -o OUT --json --timeout 60 [--peer P]... EXTRA...` in `cwd`.
fn fetch(cwd: &Path, source: &str, out: &Path, peers: &[String], extra: &[&str]) -> Finished {
    let out = out.to_str().unwrap();
    let mut args = vec![source, "-o", out, "--json", "--timeout", "60"];
    for p in peers {
        args.extend(["--peer", p.as_str()]);
    }
    args.extend(extra);
    client::download(cwd, &args, LIMIT_SECS)
}

/// Payload bytes of the torrent's real files (pad files excluded).
fn real_bytes(meta: &Metainfo) -> u64 {
    meta.info
        .files
        .iter()
        .filter(|f| !f.padding)
        .map(|f| f.length)
        .sum()
}

/// Asserts a complete run that fetched at least the torrent's real bytes.
fn assert_fetched_all(run: &Finished, meta: &Metainfo) {
    let s = run.assert_complete();
    assert_eq!(s["total_pieces"], meta.info.piece_count() as u64, "{run}");
    let downloaded = s["downloaded"].as_u64().unwrap();
    assert!(downloaded >= real_bytes(meta), "{downloaded}: {run}");
}

/// `dir/data/<name>` of `len` bytes and a libtorrent torrent of it with no tracker.
fn one_file(dir: &Path, name: &str, len: usize, piece: u32) -> (PathBuf, PathBuf, Metainfo) {
    let data = write_file(&dir.join("data"), name, len, len as u64);
    let torrent = dir.join(format!("{name}.torrent"));
    let meta = seeders::lt_torrent(&data, &torrent, piece, &LtTorrent::default());
    (data, torrent, meta)
}

#[test]
fn downloads_from_a_libtorrent_seeder() {
    let dir = tempdir();
    let (data, torrent, meta) = one_file(dir.path(), "lt.bin", (3 << 20) + 5, 65536);
    let seed = seeders::libtorrent(&torrent, &dir.path().join("data"), LtOptions::default());
    let out = dir.path().join("out");
    let run = fetch(
        dir.path(),
        torrent.to_str().unwrap(),
        &out,
        &[seed.peer_arg()],
        &[],
    );
    assert_fetched_all(&run, &meta);
    assert_same_file(&out.join("lt.bin"), &data);
}

#[test]
fn downloads_from_a_transmission_seeder() {
    let dir = tempdir();
    let (data, torrent, meta) = one_file(dir.path(), "tr.bin", (2 << 20) + 77, 32768);
    let seed = seeders::transmission(&torrent, &dir.path().join("data"));
    let out = dir.path().join("out");
    let run = fetch(
        dir.path(),
        torrent.to_str().unwrap(),
        &out,
        &[seed.peer_arg()],
        &[],
    );
    assert_fetched_all(&run, &meta);
    assert_same_file(&out.join("tr.bin"), &data);
}

#[test]
fn downloads_from_an_aria2c_seeder() {
    let dir = tempdir();
    let (data, torrent, meta) = one_file(dir.path(), "aria.bin", (2 << 20) + 3, 65536);
    let seed = seeders::aria2c(&torrent, &dir.path().join("data"));
    let out = dir.path().join("out");
    let run = fetch(
        dir.path(),
        torrent.to_str().unwrap(),
        &out,
        &[seed.peer_arg()],
        &[],
    );
    assert_fetched_all(&run, &meta);
    assert_same_file(&out.join("aria.bin"), &data);
}

#[test]
fn downloads_from_our_gateway_by_peer_address() {
    let dir = tempdir();
    let server = Server::start(
        &dir.path().join("gw"),
        "[storage]\npiece_length_bytes = 262144\nblob_threshold_bytes = 1000000\n",
    );
    let body = support::bytes(2_500_007, 9);
    let f = seeders::gateway_file(&server, dir.path(), "gw.bin", &body);
    let meta = seeders::read_torrent(&f.torrent);
    let peer = server.peer.expect("peer wire on").to_string();
    let out = dir.path().join("out");
    let run = fetch(dir.path(), f.torrent.to_str().unwrap(), &out, &[peer], &[]);
    assert_fetched_all(&run, &meta);
    assert_eq!(std::fs::read(out.join("gw.bin")).unwrap(), body);
    let stats = server.get("/api/p2p/stats").json();
    assert!(
        stats["uploaded_bytes"].as_u64().unwrap() >= body.len() as u64,
        "{stats}"
    );
}

#[test]
fn downloads_from_a_webseed_alone() {
    let dir = tempdir();
    let www = dir.path().join("www");
    let data = write_file(&www, "web.bin", (3 << 20) + 11, 5);
    let nginx = seeders::nginx(&www, "/web.bin");
    let torrent = dir.path().join("web.torrent");
    let url = nginx.url();
    let meta = seeders::lt_torrent(
        &data,
        &torrent,
        65536,
        &LtTorrent {
            webseeds: &[&url],
            ..Default::default()
        },
    );
    let out = dir.path().join("out");
    let run = fetch(dir.path(), torrent.to_str().unwrap(), &out, &[], &[]);
    assert_fetched_all(&run, &meta);
    assert_same_file(&out.join("web.bin"), &data);
}

#[test]
fn downloads_from_a_libtorrent_peer_and_a_webseed_together() {
    let dir = tempdir();
    let data_dir = dir.path().join("data");
    let data = write_file(&data_dir, "both.bin", 6 << 20, 6);
    let nginx = seeders::nginx(&data_dir, "/both.bin");
    let torrent = dir.path().join("both.torrent");
    let url = nginx.url();
    let meta = seeders::lt_torrent(
        &data,
        &torrent,
        65536,
        &LtTorrent {
            webseeds: &[&url],
            ..Default::default()
        },
    );
    // Throttled, so the webseed has to carry part of the load.
    let seed = seeders::libtorrent(
        &torrent,
        &data_dir,
        LtOptions {
            encrypted: false,
            upload_limit: 2 << 20,
        },
    );
    let out = dir.path().join("out");
    let run = fetch(
        dir.path(),
        torrent.to_str().unwrap(),
        &out,
        &[seed.peer_arg()],
        &[],
    );
    assert_fetched_all(&run, &meta);
    assert_same_file(&out.join("both.bin"), &data);
}

/// A multi-file tree with nested folders and an empty file, under `root/<name>`.
fn tree(root: &Path, name: &str) -> PathBuf {
    seeders::make_tree(
        &root.join(name),
        &[
            ("top.bin", 200_000),
            ("a/x.bin", 65_536),
            ("a/b/c/deep.bin", 123_457),
            ("a/empty.txt", 0),
            ("z/name with space.txt", 10),
            ("z/last.bin", 99_999),
        ],
    )
}

#[test]
fn downloads_a_mktorrent_multi_file_torrent_with_nested_folders_and_an_empty_file() {
    let dir = tempdir();
    let src = dir.path().join("src");
    let input = tree(&src, "album");
    let torrent = dir.path().join("album.torrent");
    let meta = seeders::mktorrent(&input, &torrent, 15, &[], &[]);
    let seed = seeders::libtorrent(&torrent, &src, LtOptions::default());
    let out = dir.path().join("out");
    let run = fetch(
        dir.path(),
        torrent.to_str().unwrap(),
        &out,
        &[seed.peer_arg()],
        &[],
    );
    assert_fetched_all(&run, &meta);
    assert_same_tree(&out.join("album"), &input);
    assert_eq!(
        std::fs::metadata(out.join("album/a/empty.txt"))
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn downloads_a_libtorrent_torrent_with_pad_files() {
    let dir = tempdir();
    let src = dir.path().join("src");
    let input = tree(&src, "padded");
    let torrent = dir.path().join("padded.torrent");
    let meta = seeders::lt_torrent(
        &input,
        &torrent,
        32768,
        &LtTorrent {
            pad_files: true,
            ..Default::default()
        },
    );
    assert!(meta.info.files.iter().any(|f| f.padding));
    let seed = seeders::libtorrent(&torrent, &src, LtOptions::default());
    let out = dir.path().join("out");
    let run = fetch(
        dir.path(),
        torrent.to_str().unwrap(),
        &out,
        &[seed.peer_arg()],
        &[],
    );
    assert_fetched_all(&run, &meta);
    assert_same_tree(&out.join("padded"), &input);
    // Pad files are never written.
    assert!(!out.join("padded/.pad").exists());
}

#[test]
fn downloads_a_bare_magnet_from_a_libtorrent_peer() {
    let dir = tempdir();
    let (data, torrent, meta) = one_file(dir.path(), "magnet.bin", (1 << 20) + 999, 32768);
    let seed = seeders::libtorrent(&torrent, &dir.path().join("data"), LtOptions::default());
    let out = dir.path().join("out");
    let magnet = seeders::magnet(&meta.info_hash, &[]);
    let run = fetch(dir.path(), &magnet, &out, &[seed.peer_arg()], &[]);
    assert_fetched_all(&run, &meta);
    assert_same_file(&out.join("magnet.bin"), &data);
}

#[test]
fn downloads_a_magnet_whose_only_source_is_our_tracker() {
    let dir = tempdir();
    let server = Server::start(
        &dir.path().join("gw"),
        "[storage]\npiece_length_bytes = 262144\nblob_threshold_bytes = 1000000\n",
    );
    let body = support::bytes(1_700_000, 11);
    let f = seeders::gateway_file(&server, dir.path(), "tracked.bin", &body);
    let meta = seeders::read_torrent(&f.torrent);
    let magnet = seeders::magnet(&meta.info_hash, &[&f.announce]);
    assert!(magnet.contains(&f.info_hash_hex), "{magnet}");
    let out = dir.path().join("out");
    let run = fetch(dir.path(), &magnet, &out, &[], &[]);
    assert_fetched_all(&run, &meta);
    assert_eq!(std::fs::read(out.join("tracked.bin")).unwrap(), body);
}

#[test]
fn downloads_from_an_encrypted_only_libtorrent_seeder() {
    let dir = tempdir();
    let (data, torrent, meta) = one_file(dir.path(), "secret.bin", (2 << 20) + 1, 65536);
    let seed = seeders::libtorrent(
        &torrent,
        &dir.path().join("data"),
        LtOptions {
            encrypted: true,
            upload_limit: 0,
        },
    );
    let out = dir.path().join("out");
    let run = fetch(
        dir.path(),
        torrent.to_str().unwrap(),
        &out,
        &[seed.peer_arg()],
        &[],
    );
    assert_fetched_all(&run, &meta);
    assert_same_file(&out.join("secret.bin"), &data);
}

/// `--files` takes the 0-based index of a file in torrent order (as `info --json` lists
/// them).
#[test]
fn files_selects_one_file_and_the_others_never_appear() {
    let dir = tempdir();
    let src = dir.path().join("src");
    // Sizes that are not piece multiples: the pieces at the boundaries hold bytes of the
    // unwanted neighbours too.
    let input = seeders::make_tree(
        &src.join("three"),
        &[
            ("first.bin", 300_001),
            ("mid/second.bin", 200_003),
            ("third.bin", 250_007),
        ],
    );
    let torrent = dir.path().join("three.torrent");
    let meta = seeders::mktorrent(&input, &torrent, 15, &[], &[]);
    let index = meta
        .info
        .files
        .iter()
        .position(|f| f.path == ["mid", "second.bin"])
        .unwrap();
    let seed = seeders::libtorrent(&torrent, &src, LtOptions::default());
    let out = dir.path().join("out");
    let sel = index.to_string();
    let run = fetch(
        dir.path(),
        torrent.to_str().unwrap(),
        &out,
        &[seed.peer_arg()],
        &["--files", &sel],
    );
    assert_eq!(run.code(), Some(0), "{run}");
    assert_eq!(run.summary()["complete"], true, "{run}");
    assert_eq!(
        visible_files(&out),
        vec![PathBuf::from("three/mid/second.bin")],
        "{run}"
    );
    assert_same_file(
        &out.join("three/mid/second.bin"),
        &input.join("mid/second.bin"),
    );
    // Only the pieces overlapping the wanted file were fetched: their neighbours' bytes in
    // the two boundary pieces, and a little slack for endgame duplicates.
    let downloaded = run.summary()["downloaded"].as_u64().unwrap();
    assert!(
        downloaded <= 200_003 + 4 * meta.info.piece_length,
        "{downloaded}"
    );
}
