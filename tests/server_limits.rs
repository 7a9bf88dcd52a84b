//! Load shedding: 1,000 idle connections do not stop a normal client, and the server's
//! thread count comes back under its cap; idle connections are closed after the timeout.

mod support;

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::server::{upload, Server};
use support::*;

const MAX_CONNECTIONS: usize = 64;
const WORKERS: usize = 4;

fn raise_own_fd_limit() {
    // SAFETY: getrlimit/setrlimit with a valid struct; raising the soft limit to the hard one.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

#[test]
fn a_thousand_idle_connections_do_not_starve_a_client() {
    raise_own_fd_limit();
    let tmp = tempdir();
    let config = format!(
        "[api]\nmax_connections = {MAX_CONNECTIONS}\nworkers = {WORKERS}\nio_timeout_secs = 30\n"
    );
    let server = Server::start(&tmp.path().join("data"), &config);
    // Threads: the pool's workers, one per admitted connection, and a fixed few (main,
    // accept loop, reaper, tiny_http's spare pool threads, rayon).
    let cap = MAX_CONNECTIONS + WORKERS + 16;
    let idle: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(server.addr).expect("connect"))
        .collect();

    // Within a bounded time the excess is shed and the thread count is under the cap.
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.threads() > cap {
        assert!(
            Instant::now() < deadline,
            "threads stayed at {}",
            server.threads()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A normal client works while the idle connections are held.
    let data = bytes(200_000, 41);
    let d = upload(&server, "while-busy.bin", &data);
    let got = server.get(&format!("/download/{}", d["sha256"].as_str().unwrap()));
    assert!(got.status == 200 && got.body == data);
    for _ in 0..10 {
        assert!(
            server.threads() <= cap,
            "threads {} over {cap}",
            server.threads()
        );
        assert_eq!(server.get("/api/health").status, 200);
    }
    // Most idle connections were closed by the server (they read EOF).
    let mut closed = 0;
    for mut s in idle {
        s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        let mut b = [0u8; 1];
        if matches!(s.read(&mut b), Ok(0)) {
            closed += 1;
        }
    }
    assert!(closed >= 1000 - MAX_CONNECTIONS, "only {closed} closed");
    let diag = server.get("/api/diagnostics").json();
    assert!(
        diag["process"]["threads"].as_u64().unwrap() <= cap as u64,
        "{diag}"
    );
}

#[test]
fn idle_connections_time_out() {
    let tmp = tempdir();
    let server = Server::start(&tmp.path().join("data"), "[api]\nio_timeout_secs = 1\n");
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut b = [0u8; 1];
    // A read timeout (10 s, well past the 1 s idle limit) fails the unwrap instead.
    assert_eq!(
        s.read(&mut b).unwrap(),
        0,
        "the server closed the idle connection"
    );
}
