//! The connection layer on its own (`http::pool` with a test handler, real sockets on
//! 127.0.0.1): long responses and slow readers never hold a worker, pipelined and HTTP/1.0
//! requests, HEAD, `Expect: 100-continue`, bodies cut anywhere are errors, and requests an
//! early route claims wait in the poller for answers from other threads.

use crossbeam_channel::{Receiver, Sender};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use torrent_gateway::http::early::{EarlyRoute, Later};
use torrent_gateway::http::pool::{self, HttpPool, PoolLimits};
use torrent_gateway::http::respond::{Pull, Source, Wake};
use torrent_gateway::http::router::{Method, Reply, ReplyBody, Req};
use torrent_gateway::proto::http::head::HeadLimits;

fn limits(workers: usize) -> PoolLimits {
    PoolLimits {
        workers,
        max_connections: 256,
        max_connections_per_ip: 256,
        accept_rate: 10_000,
        accept_rate_per_ip: 10_000,
        header_timeout: Duration::from_secs(5),
        io_timeout: Duration::from_secs(5),
        min_body_bytes_per_sec: 1024,
        max_streams: 8,
        head: HeadLimits::default(),
        refusal_headers: "",
    }
}

/// A source fed by a channel: each message is a chunk, a closed channel ends the body.
struct ChannelSource {
    rx: Receiver<Vec<u8>>,
    waker: Arc<parking_lot::Mutex<Option<Wake>>>,
}

impl Source for ChannelSource {
    fn pull(&mut self, out: &mut Vec<u8>, _max: usize, wake: &Wake) -> Pull {
        match self.rx.try_recv() {
            Ok(chunk) => {
                out.extend_from_slice(&chunk);
                Pull::Data
            }
            Err(crossbeam_channel::TryRecvError::Empty) => {
                *self.waker.lock() = Some(wake.clone());
                // A message may have arrived between the check and storing the waker.
                if !self.rx.is_empty() {
                    wake.wake();
                }
                Pull::Pending
            }
            Err(crossbeam_channel::TryRecvError::Disconnected) => Pull::End,
        }
    }
}

/// The feeding end of a [`ChannelSource`].
struct Feed {
    tx: Option<Sender<Vec<u8>>>,
    waker: Arc<parking_lot::Mutex<Option<Wake>>>,
}

impl Feed {
    fn send(&self, chunk: &[u8]) {
        self.tx.as_ref().unwrap().send(chunk.to_vec()).unwrap();
        if let Some(w) = self.waker.lock().as_ref() {
            w.wake();
        }
    }

    fn end(&mut self) {
        self.tx = None;
        if let Some(w) = self.waker.lock().as_ref() {
            w.wake();
        }
    }
}

/// Starts a pool whose `/stream` requests take a source from `sources`, `/big` answers
/// 8 MiB, `/echo` echoes the body and everything else answers "ok".
fn start(workers: usize, sources: Receiver<ChannelSource>) -> HttpPool {
    start_with(limits(workers), sources)
}

fn start_with(limits: PoolLimits, sources: Receiver<ChannelSource>) -> HttpPool {
    let listener = pool::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let handler = Arc::new(move |req: &mut Req<'_>| match req.path {
        "/stream" => match sources.recv_timeout(Duration::from_secs(5)) {
            Ok(src) => Reply {
                status: 200,
                headers: vec![("Content-Type", "text/plain".into())],
                body: ReplyBody::Source(Box::new(src)),
            },
            Err(_) => Reply::error(500, "no source"),
        },
        "/big" => Reply::bytes(200, "application/octet-stream", vec![7u8; 8 << 20]),
        "/echo" => {
            let mut body = Vec::new();
            match req.body.read_to_end(&mut body) {
                Ok(_) => Reply::bytes(200, "application/octet-stream", body),
                Err(e) => Reply::error(400, format!("body: {e}")),
            }
        }
        _ => Reply::bytes(200, "text/plain", b"ok".to_vec()),
    });
    HttpPool::start("http-test", listener, limits, handler).unwrap()
}

fn source_pair() -> (ChannelSource, Feed) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let waker = Arc::new(parking_lot::Mutex::new(None));
    (
        ChannelSource {
            rx,
            waker: Arc::clone(&waker),
        },
        Feed {
            tx: Some(tx),
            waker,
        },
    )
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Reads until `needle` has arrived (or EOF); returns everything read.
fn read_until(s: &mut TcpStream, needle: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    while !out.windows(needle.len()).any(|w| w == needle) {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

fn get_ok(addr: SocketAddr) -> bool {
    let mut s = connect(addr);
    s.write_all(b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out.starts_with(b"HTTP/1.1 200") && out.ends_with(b"\r\n\r\nok")
}

#[test]
fn waiting_streams_hold_no_worker() {
    let (src_tx, src_rx) = crossbeam_channel::unbounded();
    let pool = start(2, src_rx);
    // Six streams (three times the workers) wait for data at once.
    let mut feeds = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..6 {
        let (src, feed) = source_pair();
        src_tx.send(src).unwrap();
        feeds.push(feed);
        let mut c = connect(pool.addr);
        c.write_all(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let head = read_until(&mut c, b"\r\n\r\n");
        assert!(
            String::from_utf8_lossy(&head).contains("Transfer-Encoding: chunked"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        clients.push(c);
    }
    // Every stream is waiting, and ordinary requests are still served.
    for _ in 0..5 {
        assert!(get_ok(pool.addr));
    }
    let state = pool.state();
    assert_eq!(
        state
            .stats
            .streams
            .load(std::sync::atomic::Ordering::SeqCst),
        6
    );
    // Data flows to each as it is fed; the end is the last chunk.
    for (i, feed) in feeds.iter_mut().enumerate() {
        feed.send(format!("part-{i}-a;").as_bytes());
        feed.send(format!("part-{i}-b;").as_bytes());
        feed.end();
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let body = read_until(c, b"0\r\n\r\n");
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains(&format!("part-{i}-a;")), "{text}");
        assert!(text.contains(&format!("part-{i}-b;")), "{text}");
        assert!(text.ends_with("0\r\n\r\n"), "{text}");
    }
    // Past max_streams, a stream is refused with 503 rather than queued.
    let mut held = Vec::new();
    for _ in 0..8 {
        let (src, feed) = source_pair();
        src_tx.send(src).unwrap();
        held.push(feed);
        let mut c = connect(pool.addr);
        c.write_all(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        read_until(&mut c, b"\r\n\r\n");
        clients.push(c);
    }
    let (src, _feed) = source_pair();
    src_tx.send(src).unwrap();
    let mut c = connect(pool.addr);
    c.write_all(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let head = read_until(&mut c, b"\r\n\r\n");
    assert!(
        head.starts_with(b"HTTP/1.1 503"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    assert!(pool.stop(Duration::from_secs(2)));
}

#[test]
fn readers_that_never_read_hold_no_worker() {
    let (_tx, rx) = crossbeam_channel::unbounded();
    let pool = start(1, rx);
    // Four clients ask for 8 MiB each and never read: the one worker must come free.
    let stalled: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut c = connect(pool.addr);
            c.write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            c
        })
        .collect();
    for _ in 0..5 {
        assert!(get_ok(pool.addr));
    }
    // A reader that reads gets every byte.
    let mut c = connect(pool.addr);
    c.write_all(b"GET /big HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out).unwrap();
    let at = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(out.len() - at, 8 << 20);
    drop(stalled);
    assert!(pool.stop(Duration::from_secs(2)));
}

#[test]
fn pipelining_http10_head_and_keep_alive() {
    let (_tx, rx) = crossbeam_channel::unbounded();
    let pool = start(2, rx);
    let mut c = connect(pool.addr);
    c.write_all(
        b"GET /a HTTP/1.1\r\nHost: t\r\n\r\nHEAD /b HTTP/1.1\r\nHost: t\r\n\r\n\
          PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello\
          GET /c HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 4, "{text}");
    // HEAD announces the length but sends no body: the bodies are ok, hello, ok.
    assert_eq!(text.matches("\r\n\r\nok").count(), 2, "{text}");
    assert!(text.contains("\r\n\r\nhello"), "{text}");
    assert!(
        text.ends_with("Connection: close\r\n\r\nok") || text.ends_with("ok"),
        "{text}"
    );

    // HTTP/1.0 closes after the reply unless asked to keep alive.
    let mut c = connect(pool.addr);
    c.write_all(b"GET /a HTTP/1.0\r\n\r\n").unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out).unwrap();
    assert!(out.starts_with(b"HTTP/1.1 200") && out.ends_with(b"ok"));
    let mut c = connect(pool.addr);
    c.write_all(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    let first = read_until(&mut c, b"ok");
    assert!(String::from_utf8_lossy(&first).contains("Connection: keep-alive"));
    c.write_all(b"GET /a HTTP/1.0\r\n\r\n").unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out).unwrap();
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "a second request on the same connection"
    );
    assert!(pool.stop(Duration::from_secs(2)));
}

#[test]
fn expect_continue_and_cut_bodies() {
    let (_tx, rx) = crossbeam_channel::unbounded();
    let pool = start(2, rx);
    // 100 Continue comes before the body is sent, then the final reply.
    let mut c = connect(pool.addr);
    c.write_all(
        b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let interim = read_until(&mut c, b"\r\n\r\n");
    assert_eq!(interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.write_all(b"abcd").unwrap();
    let reply = read_until(&mut c, b"abcd");
    assert!(reply.starts_with(b"HTTP/1.1 200"));

    // A chunked body cut anywhere, and a short Content-Length body, are errors.
    let chunked = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    for cut in [0, 1, 3, 5, 9, 10, 12, 20, chunked.len() - 2] {
        let mut c = connect(pool.addr);
        c.write_all(b"PUT /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap();
        c.write_all(&chunked[..cut]).unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        assert!(
            out.starts_with(b"HTTP/1.1 400"),
            "cut at {cut}: {}",
            String::from_utf8_lossy(&out)
        );
    }
    let mut c = connect(pool.addr);
    c.write_all(b"PUT /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    c.write_all(chunked).unwrap();
    let reply = read_until(&mut c, b"hello world");
    assert!(reply.starts_with(b"HTTP/1.1 200"));
    let mut c = connect(pool.addr);
    c.write_all(b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        .unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    assert!(
        out.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert!(pool.stop(Duration::from_secs(2)));
}

#[test]
fn large_bodies_sent_too_slowly_are_cut_and_free_the_worker() {
    let (_tx, rx) = crossbeam_channel::unbounded();
    let mut l = limits(1);
    l.header_timeout = Duration::from_secs(1);
    let pool = start_with(l, rx);
    let mut c = connect(pool.addr);
    c.write_all(b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n")
        .unwrap();
    // One byte every 200 ms: far below 1 KiB/s.
    let started = std::time::Instant::now();
    let mut cut = false;
    for _ in 0..50 {
        if c.write_all(b"x").is_err() {
            cut = true;
            break;
        }
        c.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut b = [0u8; 256];
        match c.read(&mut b) {
            Ok(_) => {
                cut = true;
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                cut = true;
                break;
            }
        }
    }
    assert!(cut, "a body at 5 bytes/s was never cut");
    assert!(started.elapsed() < Duration::from_secs(9));
    // The single worker is free again.
    assert!(get_ok(pool.addr));
    assert!(pool.stop(Duration::from_secs(2)));
}

#[test]
fn uploads_in_progress_never_take_the_last_worker() {
    let (_tx, rx) = crossbeam_channel::unbounded();
    let pool = start(2, rx);
    let head = b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n";
    let part = vec![b'a'; 20_000];
    // The first upload is under way: its worker waits for the rest of the body.
    let mut first = connect(pool.addr);
    first.write_all(head).unwrap();
    first.write_all(&part).unwrap();
    // Wait (bounded) until a worker reads it.
    let state = pool.state();
    for _ in 0..200 {
        if state
            .stats
            .body_readers
            .load(std::sync::atomic::Ordering::SeqCst)
            == 1
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        state
            .stats
            .body_readers
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    // A second one is refused at once rather than taking the last worker...
    let mut second = connect(pool.addr);
    second.write_all(head).unwrap();
    second.write_all(&part).unwrap();
    let refused = read_until(&mut second, b"\r\n\r\n");
    assert!(
        refused.starts_with(b"HTTP/1.1 503"),
        "{}",
        String::from_utf8_lossy(&refused)
    );
    assert!(String::from_utf8_lossy(&refused).contains("Retry-After: 2"));
    // ...which still serves ordinary requests.
    assert!(get_ok(pool.addr));
    // The first upload completes.
    first.write_all(&vec![b'a'; 80_000]).unwrap();
    let reply = read_until(&mut first, b"\r\n\r\n");
    assert!(
        reply.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    assert!(pool.stop(Duration::from_secs(2)));
}

/// An early route over `/early`: `?now` is answered at once, `?drop` never (its `Later` is
/// dropped), anything else is handed to the test through `held`, to answer when it likes.
struct TestEarly {
    held: Sender<(String, Later)>,
}

impl EarlyRoute for TestEarly {
    fn claims(&self, method: Method, path: &str) -> bool {
        method == Method::Get && path == "/early"
    }

    fn start(&self, req: &mut Req<'_>, later: Later) {
        match req.query {
            "now" => later.answer(Reply::bytes(200, "text/plain", b"now".to_vec())),
            "drop" => drop(later),
            q => self.held.send((q.to_string(), later)).unwrap(),
        }
    }
}

#[test]
fn early_requests_wait_in_the_poller_and_hold_no_worker() {
    let (held_tx, held) = crossbeam_channel::unbounded();
    let listener = pool::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let handler = Arc::new(|_: &mut Req<'_>| Reply::bytes(200, "text/plain", b"ok".to_vec()));
    let early: Arc<dyn EarlyRoute> = Arc::new(TestEarly { held: held_tx });
    let pool =
        HttpPool::start_with_early("http-test", listener, limits(1), handler, Some(early)).unwrap();

    // More waiting early requests than workers: the one worker still serves others.
    let mut waiting: Vec<TcpStream> = (0..4).map(|_| connect(pool.addr)).collect();
    for (i, c) in waiting.iter_mut().enumerate() {
        write!(c, "GET /early?w{i} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    }
    let mut laters: Vec<(String, Later)> = (0..4)
        .map(|_| held.recv_timeout(Duration::from_secs(10)).unwrap())
        .collect();
    // Read before any worker has run here: held requests never reached one. (After a
    // request, the worker lowers the count only once its reply is written, so the client
    // may see the reply first.)
    assert_eq!(pool.state().stats.busy_workers.load(Ordering::Relaxed), 0);
    assert!(
        get_ok(pool.addr),
        "the worker is free while early requests wait"
    );
    // Answered from other threads, in any order; each connection then takes more requests.
    laters.sort_by(|a, b| b.0.cmp(&a.0));
    for (q, later) in laters {
        std::thread::spawn(move || {
            later.answer(Reply::bytes(200, "text/plain", q.into_bytes()));
        });
    }
    for (i, c) in waiting.iter_mut().enumerate() {
        let out = read_until(c, format!("w{i}").as_bytes());
        assert!(out.starts_with(b"HTTP/1.1 200"), "{i}");
        c.write_all(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        assert!(
            read_until(c, b"ok").ends_with(b"ok"),
            "keep-alive after an early answer"
        );
    }

    // Pipelined: an early request held, one answered at once, one for a worker; the
    // answers keep the requests' order.
    let mut c = connect(pool.addr);
    c.write_all(
        b"GET /early?first HTTP/1.1\r\nHost: t\r\n\r\nGET /early?now HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let (q, later) = held.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(q, "first");
    later.answer(Reply::bytes(200, "text/plain", b"first".to_vec()));
    let mut out = Vec::new();
    c.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out);
    let (a, b, x) = (
        text.find("\r\n\r\nfirst"),
        text.find("\r\n\r\nnow"),
        text.rfind("\r\n\r\nok"),
    );
    assert!(a < b && b < x && a.is_some(), "{text}");

    // A request whose answer is given up closes its connection; others are unaffected.
    let mut c = connect(pool.addr);
    c.write_all(b"GET /early?drop HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    assert!(out.is_empty(), "closed without an answer");
    // POST is not claimed: a worker answers it as before.
    let mut c = connect(pool.addr);
    c.write_all(
        b"POST /early HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out).unwrap();
    assert!(out.ends_with(b"\r\n\r\nok"));
    assert!(pool.stop(Duration::from_secs(2)));
}
