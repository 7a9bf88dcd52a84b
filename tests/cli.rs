//! The command line as a user runs it: create, info, verify, exit codes and one-line errors,
//! and a corpus of hostile torrent files and magnet links that must each get a clear error.

mod support;

use std::path::Path;
use support::*;

/// Asserts a failed run: the exit code, and one `error:` line on stderr containing `needle`.
fn check_error(dir: &Path, args: &[&str], code: i32, needle: &str) {
    let o = run(dir, args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: one line expected: {err}");
    assert!(err.starts_with("error: "), "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn create_info_verify_and_a_flipped_byte() {
    let tmp = tempdir();
    let dir = tmp.path();
    write_file(dir, "album/one.bin", 100_000, 1);
    write_file(dir, "album/two.bin", 50_000, 2);
    let out = run_ok(
        dir,
        &[
            "create",
            "album",
            "--piece-length",
            "32K",
            "--tracker",
            "http://127.0.0.1:1/announce",
            "--tracker",
            "udp://127.0.0.1:2",
            "--webseed",
            "http://127.0.0.1:3/ws/",
            "--private",
            "--comment",
            "hello",
            "--source",
            "TEST",
            "--threads",
            "2",
        ],
    );
    let hash = out.lines().next().unwrap();
    assert!(dir.join("album.torrent").is_file(), "default output name");

    let info = info_json(dir, "album.torrent");
    assert_eq!(info["info_hash"], hash);
    assert_eq!(info["name"], "album");
    assert_eq!(info["piece_length"], 32_768);
    assert_eq!(info["piece_count"], 5);
    assert_eq!(info["total_size"], 150_000);
    assert_eq!(info["private"], true);
    assert_eq!(info["source"], "TEST");
    assert_eq!(info["comment"], "hello");
    assert!(info["creation_date"].as_i64().unwrap() > 1_600_000_000);
    assert_eq!(
        info["trackers"],
        serde_json::json!(["http://127.0.0.1:1/announce", "udp://127.0.0.1:2"])
    );
    assert_eq!(
        info["webseeds"],
        serde_json::json!(["http://127.0.0.1:3/ws/"])
    );
    assert_eq!(info["files"][1]["path"], "two.bin");
    assert_eq!(info["files"][1]["length"], 50_000);

    let human = run_ok(dir, &["info", "album.torrent"]);
    assert!(
        human.contains(hash) && human.contains("one.bin") && human.contains("private:      yes")
    );

    // The magnet it printed describes the same torrent.
    let magnet = out.lines().nth(1).unwrap();
    let from_magnet = info_json(dir, magnet);
    assert_eq!(from_magnet["info_hash"], hash);
    assert_eq!(from_magnet["name"], "album");
    assert_eq!(from_magnet["total_size"], 150_000);
    assert_eq!(from_magnet["trackers"], info["trackers"]);

    let ok = run_ok(dir, &["verify", "album.torrent", "album"]);
    assert!(ok.starts_with("ok: 5 pieces"), "{ok}");
    // The parent directory works too, as a download client lays the data out.
    run_ok(dir, &["verify", "album.torrent", "."]);

    // Flip one byte at offset 100_000 + 30_000 = 130_000: piece 3 (98_304..131_072), which
    // spans the end of one.bin and the start of two.bin.
    let two = dir.join("album/two.bin");
    let mut data = std::fs::read(&two).unwrap();
    data[30_000] ^= 0x01;
    std::fs::write(&two, &data).unwrap();
    let o = run(dir, &["verify", "album.torrent", "album"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(stdout(&o), "piece 3 bad: one.bin, two.bin\n");
    assert!(stderr(&o).contains("1 of 5 pieces failed"));

    // A missing file names the file and fails the pieces it covered.
    std::fs::remove_file(dir.join("album/one.bin")).unwrap();
    let o = run(dir, &["verify", "album.torrent", "album"]);
    assert_eq!(o.status.code(), Some(1));
    let text = stdout(&o);
    assert!(text.starts_with("file one.bin: missing\n"), "{text}");
    assert!(text.contains("piece 0 bad: one.bin\n"), "{text}");
}

#[test]
fn single_file_created_without_date_is_reproducible() {
    let tmp = tempdir();
    let dir = tmp.path();
    write_file(dir, "f.bin", 40_000, 3);
    let a = run_ok(dir, &["create", "f.bin", "-o", "a.torrent", "--no-date"]);
    let b = run_ok(dir, &["create", "f.bin", "-o", "b.torrent", "--no-date"]);
    assert_eq!(a, b);
    assert_eq!(
        std::fs::read(dir.join("a.torrent")).unwrap(),
        std::fs::read(dir.join("b.torrent")).unwrap()
    );
    let info = info_json(dir, "a.torrent");
    assert_eq!(info["creation_date"], serde_json::Value::Null);
    // Automatic piece length: 40 KB fits 1000 pieces of 16 KiB.
    assert_eq!(info["piece_length"], 16_384);
    assert_eq!(info["files"][0]["path"], "f.bin");
    run_ok(dir, &["verify", "a.torrent", "f.bin"]);
    run_ok(dir, &["verify", "a.torrent", "."]);
}

#[test]
fn bad_usage_and_bad_input_exit_2_with_one_line() {
    let tmp = tempdir();
    let dir = tmp.path();
    write_file(dir, "f.bin", 1000, 4);
    check_error(
        dir,
        &["create", "nope"],
        2,
        "nope: no such file or directory",
    );
    check_error(
        dir,
        &["create", "f.bin", "--piece-length", "1000"],
        2,
        "power of two",
    );
    check_error(dir, &["create", "f.bin", "--threads", "0"], 2, "--threads");
    check_error(
        dir,
        &["create", "f.bin", "--tracker", "nonsense"],
        2,
        "not a URL",
    );
    check_error(dir, &["info", "missing.torrent"], 2, "missing.torrent");
    check_error(
        dir,
        &["info", "magnet:?xt=urn:btih:123"],
        2,
        "bad magnet link",
    );
    check_error(
        dir,
        &["info", "f.bin"],
        2,
        "bad torrent file f.bin: bencode:",
    );
    run_ok(dir, &["create", "f.bin", "-o", "f.torrent"]);
    check_error(dir, &["verify", "f.torrent", "nowhere"], 2, "nowhere");
    // Truncated torrent: the error names the offset where the input ended.
    let bytes = std::fs::read(dir.join("f.torrent")).unwrap();
    std::fs::write(dir.join("cut.torrent"), &bytes[..bytes.len() - 10]).unwrap();
    check_error(
        dir,
        &["info", "cut.torrent"],
        2,
        "bad torrent file cut.torrent: bencode: unexpected end of input",
    );
    // Cut after a complete value the error is at the very end of the input.
    let whole_value_end = bytes.len() - 1;
    std::fs::write(dir.join("cut2.torrent"), &bytes[..whole_value_end]).unwrap();
    let at = format!("unexpected end of input at byte {whole_value_end}");
    check_error(dir, &["info", "cut2.torrent"], 2, &at);

    let o = run(dir, &["create"]);
    assert_eq!(o.status.code(), Some(2), "missing positional is bad usage");
    let o = run(dir, &["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(dir, &["--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("create"));
}

#[test]
fn output_to_a_closed_pipe_is_quiet() {
    let tmp = tempdir();
    let dir = tmp.path();
    write_file(dir, "f.bin", 1000, 5);
    run_ok(dir, &["create", "f.bin"]);
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("'{}' info f.torrent | head -c 1 >/dev/null", bin()))
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(status.status.success());
    assert!(!stderr(&status).contains("panicked"), "{}", stderr(&status));
}

/// Hostile torrent files: each must be refused with a clear error, never a panic.
#[test]
fn hostile_torrents_get_clear_errors() {
    let tmp = tempdir();
    let dir = tmp.path();
    let p20 = "a".repeat(20);
    let good_info = format!("d6:lengthi5e4:name1:x12:piece lengthi16384e6:pieces20:{p20}e");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "unexpected end of input at byte 0"),
        ("not a dict", b"i1e".to_vec(), "must be a dictionary"),
        ("no info", b"de".to_vec(), "missing `info`"),
        (
            "info is a list",
            b"d4:infolee".to_vec(),
            "`info` must be a dictionary, found a list",
        ),
        (
            "name is an int",
            format!("d4:infod6:lengthi5e4:namei1e12:piece lengthi16384e6:pieces20:{p20}ee")
                .into_bytes(),
            "`info.name` must be a string",
        ),
        (
            "billion-byte string",
            b"d4:infod4:name1000000000:xee".to_vec(),
            "in a string of 1000000000 bytes at byte 14",
        ),
        (
            "deep nesting",
            format!("d4:info{}", "l".repeat(100_000)).into_bytes(),
            "nesting too deep",
        ),
        (
            "path traversal",
            format!(
                "d4:infod5:filesld6:lengthi5e4:pathl2:..6:passwdeee4:name1:x\
                 12:piece lengthi16384e6:pieces20:{p20}ee"
            )
            .into_bytes(),
            "\"..\" component",
        ),
        (
            "absolute path",
            format!(
                "d4:infod5:filesld6:lengthi5e4:pathl0:3:etceee4:name1:x\
                 12:piece lengthi16384e6:pieces20:{p20}ee"
            )
            .into_bytes(),
            "empty component",
        ),
        (
            "huge piece count claimed",
            format!("d4:infod6:lengthi1152921504606846976e4:name1:x12:piece lengthi16384e6:pieces20:{p20}ee")
                .into_bytes(),
            "need 70368744177664",
        ),
        (
            "non-canonical integer",
            format!("d4:infod6:lengthi05e4:name1:x12:piece lengthi16384e6:pieces20:{p20}ee")
                .into_bytes(),
            "non-canonical",
        ),
        (
            "trailing garbage",
            format!("d4:info{good_info}eJUNK").into_bytes(),
            "trailing data",
        ),
        (
            "zero piece length",
            format!("d4:infod6:lengthi5e4:name1:x12:piece lengthi0e6:pieces20:{p20}ee")
                .into_bytes(),
            "power of two",
        ),
    ];
    for (what, bytes, needle) in cases {
        let path = dir.join("hostile.torrent");
        std::fs::write(&path, &bytes).unwrap();
        let o = run(dir, &["info", "hostile.torrent"]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{what}: {err}");
        assert!(err.contains(needle), "{what}: {err:?} lacks {needle:?}");
        assert_eq!(err.lines().count(), 1, "{what}: {err}");
    }
    // The well-formed base case is accepted, so the cases above fail for their own reason.
    std::fs::write(dir.join("good.torrent"), format!("d4:info{good_info}e")).unwrap();
    run_ok(dir, &["info", "good.torrent"]);
}

/// Every truncation of a real torrent is refused cleanly.
#[test]
fn every_truncation_is_refused() {
    let tmp = tempdir();
    let dir = tmp.path();
    write_file(dir, "d/a", 50_000, 6);
    write_file(dir, "d/b/c", 20_000, 7);
    run_ok(dir, &["create", "d", "--tracker", "http://127.0.0.1:1/a"]);
    let bytes = std::fs::read(dir.join("d.torrent")).unwrap();
    for cut in 0..bytes.len() {
        let err = torrent_gateway::proto::bt::metainfo::parse(&bytes[..cut]).unwrap_err();
        assert!(!err.to_string().is_empty());
    }
    assert!(torrent_gateway::proto::bt::metainfo::parse(&bytes).is_ok());
}

#[test]
fn nostr_verify_checks_events_signed_elsewhere() {
    let dir = tempdir();
    let secret = "5e".repeat(32);
    let good = support::nostr::sign(
        &secret,
        1,
        1_700_000_000,
        &serde_json::json!([["t", "x"]]),
        "hi",
    );
    let mut bad = good.clone();
    bad["content"] = serde_json::json!("changed");
    let ok_file = dir.path().join("ok.jsonl");
    std::fs::write(&ok_file, format!("{good}\n{good}\n")).unwrap();
    let out = run(dir.path(), &["nostr-verify", ok_file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("2 events, 2 valid, 0 invalid"),
        "{}",
        stdout(&out)
    );
    let bad_file = dir.path().join("bad.jsonl");
    std::fs::write(&bad_file, format!("{good}\n{bad}\n")).unwrap();
    let out = run(dir.path(), &["nostr-verify", bad_file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("line 2"), "{}", stderr(&out));
    let junk = dir.path().join("junk.jsonl");
    std::fs::write(&junk, "{not json\n").unwrap();
    let out = run(dir.path(), &["nostr-verify", junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
}
