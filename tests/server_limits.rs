//! Load shedding with real sockets: 1,000 connections that each started a request do not
//! stop a normal client and take no threads; idle and keep-alive connections are closed
//! after their timeouts.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use support::server::{upload, Server};
use support::*;

const MAX_CONNECTIONS: usize = 64;
const WORKERS: usize = 4;

#[test]
fn a_thousand_waiting_connections_do_not_starve_a_client() {
    raise_own_fd_limit();
    let tmp = tempdir();
    let config = format!(
        "[api]\nmax_connections = {MAX_CONNECTIONS}\nmax_connections_per_ip = {MAX_CONNECTIONS}\n\
         workers = {WORKERS}\nio_timeout_secs = 30\naccept_rate_per_ip = 10000\n"
    );
    let server = Server::start(&tmp.path().join("data"), &config);
    let fixed = server.threads();
    // Each sends half a request head and waits.
    let waiting: Vec<TcpStream> = (0..1000)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr).expect("connect");
            s.write_all(b"GET /api/health HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    // A normal client works while they are held, and no thread was added for them.
    let data = bytes(200_000, 41);
    let d = upload(&server, "while-busy.bin", &data);
    let got = server.get(&format!("/download/{}", d["sha256"].as_str().unwrap()));
    assert!(got.status == 200 && got.body == data);
    for _ in 0..10 {
        assert_eq!(server.get("/api/health").status, 200);
    }
    assert!(
        server.threads() <= fixed + 2,
        "threads {} (fixed {fixed})",
        server.threads()
    );
    // All but the cap's worth were closed by the server for newer ones (they read EOF).
    let mut closed = 0;
    for mut s in waiting {
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        // EOF (Ok) means the server closed it; a timeout (Err) means it is still open.
        if s.read_to_end(&mut Vec::new()).is_ok() {
            closed += 1;
        }
    }
    assert!(closed >= 1000 - MAX_CONNECTIONS, "only {closed} closed");
    let diag = server.get("/api/diagnostics").json();
    assert!(
        diag["api"]["layer"]["refused"]["evicted"].as_u64().unwrap() >= 900,
        "{diag}"
    );
}

#[test]
fn idle_and_keep_alive_connections_time_out() {
    let tmp = tempdir();
    let server = Server::start(
        &tmp.path().join("data"),
        "[api]\nio_timeout_secs = 1\nheader_timeout_secs = 1\n",
    );
    // A request head that never completes: 408, then the close.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /api/health HTTP/1.1\r\n").unwrap();
    let mut out = Vec::new();
    // A read timeout (10 s, well past the 1 s limit) fails the unwrap instead.
    s.read_to_end(&mut out).unwrap();
    assert!(
        out.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    // A keep-alive connection left idle after a reply is closed.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert!(!String::from_utf8_lossy(&out).contains("Connection: close"));
}
