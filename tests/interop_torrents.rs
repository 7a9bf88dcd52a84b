//! Torrent files against the real tools: our info-hashes equal mktorrent's for the same
//! content and piece length, python3-libtorrent reads every torrent we create the way we do,
//! and we read every torrent mktorrent and libtorrent create the way they do.

mod support;

use serde_json::Value;
use std::path::Path;
use support::*;

/// One input: a file or directory under the temp dir, and the piece length to use.
struct Case {
    name: &'static str,
    piece_log2: u32,
    files: &'static [(&'static str, usize)],
}

const CASES: &[Case] = &[
    Case {
        name: "single.bin",
        piece_log2: 18,
        files: &[("", 1 << 20)],
    },
    Case {
        name: "uneven.bin",
        piece_log2: 15,
        files: &[("", 1_000_003)],
    },
    Case {
        name: "with-empty",
        piece_log2: 15,
        files: &[("a.bin", 70_000), ("sub/empty.txt", 0), ("z.bin", 5)],
    },
    Case {
        name: "nested dir",
        piece_log2: 16,
        files: &[
            ("top.bin", 200_000),
            ("a/x.bin", 65_536),
            ("a/b/c/deep.bin", 123_457),
            ("a-b/next.bin", 3),
            ("z/name with space.txt", 10),
            ("z/ünïcode.txt", 99_999),
        ],
    },
];

/// Lays a case out under `dir` and returns its path.
fn make(dir: &Path, case: &Case) -> std::path::PathBuf {
    let root = dir.join(case.name);
    for (i, (rel, len)) in case.files.iter().enumerate() {
        let rel = if rel.is_empty() {
            case.name.to_string()
        } else {
            format!("{}/{rel}", case.name)
        };
        write_file(dir, &rel, *len, i as u64 + 1);
    }
    root
}

/// The fields libtorrent reports, in our `info --json` shape for comparison: paths below the
/// root (libtorrent prefixes multi-file paths with the torrent name).
fn lt_view(torrent: &Path) -> Value {
    let mut v: Value = serde_json::from_str(&python("lt_info.py", &[torrent.to_str().unwrap()]))
        .expect("lt_info json");
    let name = v["name"].as_str().unwrap().to_string();
    for f in v["files"].as_array_mut().unwrap() {
        let path = f["path"].as_str().unwrap();
        let rel = path
            .strip_prefix(&format!("{name}/"))
            .unwrap_or(path)
            .to_string();
        f["path"] = Value::String(rel);
    }
    v
}

/// Asserts that our reading of `torrent` matches libtorrent's on everything both report.
fn assert_same_reading(dir: &Path, torrent: &Path) {
    let ours = info_json(dir, torrent.to_str().unwrap());
    let theirs = lt_view(torrent);
    for key in [
        "info_hash",
        "name",
        "piece_length",
        "piece_count",
        "total_size",
        "files",
        "private",
        "trackers",
    ] {
        assert_eq!(ours[key], theirs[key], "{key} of {}", torrent.display());
    }
}

#[test]
fn info_hash_equals_mktorrent_and_libtorrent_agrees() {
    let mktorrent = require_tool("mktorrent");
    let tmp = tempdir();
    let dir = tmp.path();
    for case in CASES {
        let input = make(dir, case);
        let ours = dir.join(format!("{}.ours.torrent", case.name));
        let theirs = dir.join(format!("{}.mk.torrent", case.name));
        let piece = (1u64 << case.piece_log2).to_string();
        let out = run_ok(
            dir,
            &[
                "create",
                input.to_str().unwrap(),
                "-o",
                ours.to_str().unwrap(),
                "--piece-length",
                &piece,
                "--tracker",
                "http://127.0.0.1:1/announce",
            ],
        );
        let our_hash = out.lines().next().unwrap().to_string();
        assert_eq!(our_hash.len(), 40, "{out}");
        assert!(out
            .lines()
            .nth(1)
            .unwrap()
            .starts_with(&format!("magnet:?xt=urn:btih:{our_hash}")));

        let status = std::process::Command::new(&mktorrent)
            .args(["-l", &case.piece_log2.to_string(), "-a"])
            .arg("http://127.0.0.1:1/announce")
            .arg("-o")
            .arg(&theirs)
            .arg(&input)
            .output()
            .unwrap();
        assert!(status.status.success(), "mktorrent: {}", stderr(&status));

        let mk_by_libtorrent = lt_view(&theirs);
        assert_eq!(
            mk_by_libtorrent["info_hash"],
            our_hash.as_str(),
            "{}",
            case.name
        );
        assert_same_reading(dir, &ours);
        assert_same_reading(dir, &theirs);
        let expected_files = case.files.len();
        assert_eq!(
            info_json(dir, ours.to_str().unwrap())["files"]
                .as_array()
                .unwrap()
                .len(),
            expected_files
        );
        // The data we hashed verifies against both torrents.
        run_ok(
            dir,
            &["verify", ours.to_str().unwrap(), input.to_str().unwrap()],
        );
        run_ok(
            dir,
            &["verify", theirs.to_str().unwrap(), input.to_str().unwrap()],
        );
    }
}

#[test]
fn we_read_libtorrent_torrents_v1_and_hybrid_with_padding() {
    let tmp = tempdir();
    let dir = tmp.path();
    let case = &CASES[3];
    let input = make(dir, case);
    for mode in ["v1", "hybrid"] {
        let torrent = dir.join(format!("lt-{mode}.torrent"));
        python(
            "lt_create.py",
            &[
                input.to_str().unwrap(),
                "16384",
                torrent.to_str().unwrap(),
                mode,
            ],
        );
        assert_same_reading(dir, &torrent);
        let ours = info_json(dir, torrent.to_str().unwrap());
        if mode == "hybrid" {
            let padded = ours["files"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| f["padding"] == true)
                .count();
            assert!(padded > 0, "hybrid torrents pad files to piece boundaries");
        }
        // Padding files are zeros that are not on disk: the recheck still passes.
        let out = run_ok(
            dir,
            &["verify", torrent.to_str().unwrap(), input.to_str().unwrap()],
        );
        assert!(out.starts_with("ok: "), "{out}");
    }
}
