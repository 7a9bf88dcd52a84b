//! Crash safety: a stored file survives `kill -9`, and an upload killed halfway leaves no
//! record and no partial data after the restart.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::server::{files_under, upload, Server};
use support::*;

const CONFIG: &str = "[storage]\nblob_threshold_bytes = 1000000\npiece_length_bytes = 262144\n";

#[test]
fn stored_files_survive_kill_9() {
    let tmp = tempdir();
    let server = Server::start(&tmp.path().join("data"), CONFIG);
    let small = bytes(20_000, 31);
    let big = bytes(3_000_000, 32);
    let a = upload(&server, "a.bin", &small);
    let b = upload(&server, "b.bin", &big);
    let server = server.restart();
    let listed = server.get("/api/files").json();
    assert_eq!(listed["files"].as_array().unwrap().len(), 2);
    for (d, data) in [(&a, &small), (&b, &big)] {
        let sha = d["sha256"].as_str().unwrap();
        let got = server.get(&format!("/download/{sha}"));
        assert_eq!(got.status, 200);
        assert!(got.body == *data, "{sha} intact after kill -9");
        let again = server.get(&format!("/api/files/{sha}")).json();
        assert_eq!(
            again["info_hash"], d["info_hash"],
            "info-hash never changes"
        );
    }
}

#[test]
fn upload_killed_midway_leaves_nothing() {
    let tmp = tempdir();
    let mut server = Server::start(&tmp.path().join("data"), CONFIG);
    let total = 8_000_000usize;
    let mut s = TcpStream::connect(server.addr).unwrap();
    let head = format!(
        "PUT /api/files/partial.bin HTTP/1.1\r\nHost: localhost\r\nContent-Length: {total}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&bytes(3_000_000, 33)).unwrap();
    // Wait (bounded) until the server has written part of the upload to tmp/.
    let tmp_dir = server.data.join("tmp");
    let deadline = Instant::now() + Duration::from_secs(30);
    let written = || {
        files_under(&tmp_dir)
            .iter()
            .map(|p| p.metadata().map_or(0, |m| m.len()))
            .sum::<u64>()
    };
    while written() < 1_000_000 {
        assert!(Instant::now() < deadline, "upload never reached tmp/");
        std::thread::sleep(Duration::from_millis(10));
    }
    server.kill9();
    drop(s);
    assert!(
        !files_under(&tmp_dir).is_empty(),
        "the partial upload was on disk"
    );

    let server = server.restart();
    assert!(
        files_under(&tmp_dir).is_empty(),
        "start-up sweep removed it"
    );
    assert!(files_under(&server.data.join("chunks")).is_empty());
    assert!(files_under(&server.data.join("blobs")).is_empty());
    let listed = server.get("/api/files").json();
    assert_eq!(listed["files"].as_array().unwrap().len(), 0, "no record");
    let diag = server.get("/api/diagnostics").json();
    assert!(
        diag["startup_sweep"]["removed"].as_u64().unwrap() >= 1,
        "{diag}"
    );
}
