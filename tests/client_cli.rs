//! The `download` command's behaviour around a transfer: resuming after kill -9 (the second
//! run fetches less than what the first left verified on disk, counted by hashing the file),
//! bad input (a `../` path, a bad magnet hash: exit 2 and one clear line), an unreachable
//! tracker as the only source (exit 1 within `--timeout`), a full disk (exit 1, a clear line,
//! no piece claimed that is not on disk) and a swarm of three `--seed` clients and one gateway
//! seed in which every client uploads.

mod support;

use sha1::{Digest, Sha1};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::client::{self, assert_same_file, visible_files};
use support::seeders::{self, LtOptions, LtTorrent};
use support::server::Server;
use support::{tempdir, write_file};
use torrent_gateway::proto::bt::bencode::{dict, Owned};
use torrent_gateway::proto::bt::metainfo::Metainfo;

/// Pieces of `meta` whose bytes in `file` (a single-file download) hash right.
fn pieces_on_disk(meta: &Metainfo, file: &Path) -> Vec<usize> {
    let Ok(data) = std::fs::read(file) else {
        return Vec::new();
    };
    (0..meta.info.piece_count())
        .filter(|&i| {
            let r = meta.info.piece_range(i);
            let (s, e) = (r.start as usize, r.end as usize);
            e <= data.len() && Sha1::digest(&data[s..e]).as_slice() == meta.info.pieces[i]
        })
        .collect()
}

/// Bytes of the listed pieces.
fn piece_bytes(meta: &Metainfo, pieces: &[usize]) -> u64 {
    pieces
        .iter()
        .map(|&i| {
            let r = meta.info.piece_range(i);
            r.end - r.start
        })
        .sum()
}

#[test]
fn a_download_killed_half_way_resumes_without_fetching_again() {
    let dir = tempdir();
    let total = 4 << 20;
    let data = write_file(&dir.path().join("data"), "resume.bin", total, 21);
    let torrent = dir.path().join("resume.torrent");
    let meta = seeders::lt_torrent(&data, &torrent, 65536, &LtTorrent::default());
    // About 4 s for the whole file: time to see half of it and kill.
    let seed = seeders::libtorrent(
        &torrent,
        &dir.path().join("data"),
        LtOptions {
            encrypted: false,
            upload_limit: 1 << 20,
        },
    );
    let out = dir.path().join("out");
    let peer = seed.peer_arg();
    let args = [
        torrent.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--peer",
        &peer,
        "--json",
        "--timeout",
        "60",
    ];
    let mut first = client::spawn(dir.path(), &args);
    let half = first.wait_line(60, |v| v["progress"].as_f64().is_some_and(|p| p >= 0.5));
    let half = half.unwrap_or_else(|| panic!("never half way: {}", first.stderr()));
    first.signal(libc::SIGKILL);
    let killed = first.wait(10);
    assert!(killed.code().is_none(), "killed by a signal: {killed}");
    let progress = half["progress"].as_f64().unwrap();
    assert!(progress < 1.0, "the throttled seed was too fast: {killed}");

    // Counted, not guessed: what is verified on disk now.
    let verified = piece_bytes(&meta, &pieces_on_disk(&meta, &out.join("resume.bin")));
    let piece = meta.info.piece_length;
    // Nothing was reported complete that is not on disk.
    assert!(
        verified as f64 >= progress * total as f64 - 2.0 * piece as f64,
        "reported {progress}, on disk {verified}"
    );

    let second = client::download(dir.path(), &args, 120);
    let s = second.assert_complete();
    assert_same_file(&out.join("resume.bin"), &data);
    let downloaded = s["downloaded"].as_u64().unwrap();
    // Fetched at most what was missing, plus a little for endgame duplicates.
    assert!(
        downloaded + verified <= total as u64 + 2 * piece,
        "second run fetched {downloaded}, {verified} of {total} were on disk: {second}"
    );
    assert!(downloaded < total as u64 - verified + 2 * piece);
}

/// A torrent whose only file path climbs out of the download directory.
fn evil_torrent(dir: &Path) -> std::path::PathBuf {
    let piece = vec![0u8; 20];
    let info = dict([
        (
            "files",
            Owned::List(vec![dict([
                ("length", Owned::Int(5)),
                (
                    "path",
                    Owned::List(vec![Owned::str(".."), Owned::str("evil.txt")]),
                ),
            ])]),
        ),
        ("name", Owned::str("innocent")),
        ("piece length", Owned::Int(16384)),
        ("pieces", Owned::Bytes(piece)),
    ]);
    let t = dict([
        ("announce", Owned::str("http://127.0.0.1:1/announce")),
        ("info", info),
    ]);
    let path = dir.join("evil.torrent");
    std::fs::write(&path, t.encode()).unwrap();
    path
}

#[test]
fn bad_input_exits_2_with_one_clear_line() {
    let dir = tempdir();
    let out = dir.path().join("deep/out");
    std::fs::create_dir_all(&out).unwrap();
    let evil = evil_torrent(dir.path());
    let o = out.to_str().unwrap();
    let cases: [(&str, &[&str]); 3] = [
        (evil.to_str().unwrap(), &["path", ".."]),
        ("magnet:?xt=urn:btih:not-a-hash", &["magnet", "hash"]),
        ("magnet:?xt=urn:btih:0123456789abcdef", &["magnet", "hash"]),
    ];
    for (source, words) in cases {
        let run = client::download(dir.path(), &[source, "-o", o, "--timeout", "5"], 30);
        assert_eq!(run.code(), Some(2), "{source}: {run}");
        let lines = run.stderr_lines();
        assert_eq!(lines.len(), 1, "{source}: one line: {run}");
        let line = lines[0].to_lowercase();
        assert!(
            words.iter().any(|w| line.contains(w)),
            "{source}: {line:?} names none of {words:?}"
        );
        assert!(!line.contains("panicked"), "{line}");
    }
    // Nothing was written anywhere, above the output directory least of all.
    assert!(!dir.path().join("deep/evil.txt").exists());
    assert!(visible_files(&out).is_empty(), "{:?}", visible_files(&out));
}

#[test]
fn an_unreachable_tracker_as_the_only_source_fails_within_the_timeout() {
    let dir = tempdir();
    let data = write_file(&dir.path().join("data"), "lonely.bin", 100_000, 3);
    let torrent = dir.path().join("lonely.torrent");
    // Port 1 on loopback: nothing listens there.
    let meta = seeders::lt_torrent(
        &data,
        &torrent,
        16384,
        &LtTorrent {
            trackers: &["http://127.0.0.1:1/announce"],
            ..Default::default()
        },
    );
    let out = dir.path().join("out");
    let started = Instant::now();
    let run = client::download(
        dir.path(),
        &[
            torrent.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--timeout",
            "3",
        ],
        60,
    );
    let took = started.elapsed();
    assert_eq!(run.code(), Some(1), "{run}");
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(15),
        "{took:?}"
    );
    let last = run
        .stderr_lines()
        .last()
        .copied()
        .unwrap_or("")
        .to_lowercase();
    assert!(
        last.contains("3 s") && (last.contains("peer") || last.contains("progress")),
        "{last:?}: {run}"
    );
    assert!(pieces_on_disk(&meta, &out.join("lonely.bin")).is_empty());
}

/// A small tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// `None` when mounting is not allowed here (never acceptable in CI).
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        if !ok && std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("cannot mount a tmpfs at {} in CI", at.display());
        }
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_clearly_and_claims_nothing_it_did_not_write() {
    let dir = tempdir();
    let total = 3 << 20;
    let data = write_file(&dir.path().join("data"), "big.bin", total, 31);
    let torrent = dir.path().join("big.torrent");
    let meta = seeders::lt_torrent(&data, &torrent, 65536, &LtTorrent::default());
    let seed = seeders::libtorrent(&torrent, &dir.path().join("data"), LtOptions::default());
    let Some(disk) = Tmpfs::mount(&dir.path().join("small"), "1m") else {
        eprintln!("skipped: mount -t tmpfs is not permitted here");
        return;
    };
    let out = disk.0.clone();
    let run = client::download(
        dir.path(),
        &[
            torrent.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--peer",
            &seed.peer_arg(),
            "--json",
            "--timeout",
            "30",
        ],
        90,
    );
    assert_eq!(run.code(), Some(1), "{run}");
    let last = run
        .stderr_lines()
        .last()
        .copied()
        .unwrap_or("")
        .to_lowercase();
    assert!(
        last.contains("space") || last.contains("disk full"),
        "{last:?}: {run}"
    );
    let on_disk = pieces_on_disk(&meta, &out.join("big.bin"));
    assert!(on_disk.len() < meta.info.piece_count());
    if let Some(s) = run.lines.iter().rev().find(|v| v["summary"] == true) {
        assert_eq!(s["complete"], false, "{run}");
        let claimed = s["verified_pieces"].as_u64().unwrap() as usize;
        assert!(
            claimed <= on_disk.len(),
            "claimed {claimed} pieces, {} on disk",
            on_disk.len()
        );
    }
    for p in run.progress() {
        assert!(p["progress"].as_f64().unwrap() < 1.0, "{p}");
    }
}

/// The highest `uploaded` a client reported (progress lines and summary).
fn max_uploaded(lines: &[serde_json::Value]) -> u64 {
    lines
        .iter()
        .filter_map(|v| v["uploaded"].as_u64())
        .max()
        .unwrap_or(0)
}

#[test]
fn three_seeding_clients_and_one_gateway_exchange_pieces() {
    let dir = tempdir();
    let server = Server::start(
        &dir.path().join("gw"),
        "[storage]\npiece_length_bytes = 262144\nblob_threshold_bytes = 1000000\n",
    );
    let body = support::bytes(48 << 20, 41);
    let f = seeders::gateway_file(&server, dir.path(), "swarm.bin", &body);
    let outs: Vec<_> = (0..3).map(|i| dir.path().join(format!("c{i}"))).collect();
    let mut clients: Vec<_> = outs
        .iter()
        .map(|o| {
            client::spawn(
                dir.path(),
                &[
                    f.torrent.to_str().unwrap(),
                    "-o",
                    o.to_str().unwrap(),
                    "--seed",
                    "--json",
                    "--timeout",
                    "120",
                ],
            )
        })
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let done = c.wait_line(150, |v| v["progress"].as_f64().is_some_and(|p| p >= 1.0));
        assert!(done.is_some(), "client {i} never completed: {}", c.stderr());
    }
    // Once everyone has everything nothing more moves: what each uploaded is final.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && clients.iter().any(|c| max_uploaded(&c.lines()) == 0) {
        std::thread::sleep(Duration::from_millis(100));
    }
    for c in &clients {
        c.signal(libc::SIGINT);
    }
    let runs: Vec<_> = clients.into_iter().map(|c| c.wait(30)).collect();
    for (i, (run, out)) in runs.iter().zip(&outs).enumerate() {
        assert_eq!(run.code(), Some(0), "client {i}: {run}");
        assert_eq!(std::fs::read(out.join("swarm.bin")).unwrap(), body, "{i}");
        let up = max_uploaded(&run.lines);
        let down = run
            .lines
            .iter()
            .filter_map(|v| v["downloaded"].as_u64())
            .max()
            .unwrap_or(0);
        eprintln!("client {i}: downloaded {down} uploaded {up}");
        assert!(up > 0, "client {i} uploaded nothing: {run}");
    }
}
