//! One HTTP listener: its poller thread (`http-accept-<name>`, see `poller`) and a fixed pool
//! of named workers (`http-<name>-N`) that run the handler, write replies and hand
//! connections back. Threads are a fixed set: connections never get threads of their own,
//! and a connection reaches a worker only with a complete request head (and, for small
//! bodies, the body) already read.

use super::body::{self, BodyReader, Left};
use super::conn::{Census, Conn};
use super::early::EarlyRoute;
use super::poller::{self, Back};
use super::respond::{Drive, Outgoing, Wake};
use super::router::{Method, Reply, Req};
use crate::proto::http::head::{Framing, Head, HeadLimits};
use crossbeam_channel::{Receiver, Sender};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Limits of one HTTP listener.
#[derive(Debug, Clone)]
pub struct PoolLimits {
    pub workers: usize,
    /// Open connections at most; past it the longest-waiting idle one is closed for a new
    /// one, or the new one gets a 503 when none is idle.
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// New connections per second for the listener (burst of the same size); past it a 503.
    pub accept_rate: u32,
    /// The same per client address.
    pub accept_rate_per_ip: u32,
    /// A request head (and a small body) must arrive within this.
    pub header_timeout: Duration,
    /// Inactivity limit: idle keep-alive, body reads, slow readers.
    pub io_timeout: Duration,
    /// Request bodies slower than this on average after `header_timeout` are cut.
    pub min_body_bytes_per_sec: u64,
    /// Long responses (bodies produced over time) at once.
    pub max_streams: usize,
    pub head: HeadLimits,
    /// Extra header lines (each ending in CRLF) on the layer's own refusals, e.g. CORS.
    pub refusal_headers: &'static str,
}

/// What a worker does with each request.
pub type Handler = Arc<dyn Fn(&mut Req<'_>) -> Reply + Send + Sync>;

/// Counters and gauges of one listener, for `/metrics` and `/api/diagnostics`.
#[derive(Default)]
pub struct LayerStats {
    pub accepted: AtomicU64,
    /// Refused: the client address is at its connection cap.
    pub refused_per_ip: AtomicU64,
    pub refused_rate: AtomicU64,
    pub refused_busy: AtomicU64,
    pub evicted: AtomicU64,
    pub bad_heads: AtomicU64,
    pub header_timeouts: AtomicU64,
    pub io_timeouts: AtomicU64,
    pub requests: AtomicU64,
    pub parked: AtomicUsize,
    pub waiting_write: AtomicUsize,
    pub busy_workers: AtomicUsize,
    pub streams: Arc<AtomicUsize>,
    /// Workers reading a request body from the socket now.
    pub body_readers: Arc<AtomicUsize>,
}

impl LayerStats {
    /// The counters and gauges as JSON, for `/api/diagnostics`.
    pub fn to_json(&self) -> serde_json::Value {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let g = |a: &AtomicUsize| a.load(Ordering::Relaxed);
        serde_json::json!({
            "accepted": n(&self.accepted),
            "requests": n(&self.requests),
            "refused": {
                "per_ip": n(&self.refused_per_ip),
                "busy": n(&self.refused_busy),
                "accept_rate": n(&self.refused_rate),
                "evicted": n(&self.evicted),
                "bad_head": n(&self.bad_heads),
                "header_timeout": n(&self.header_timeouts),
                "io_timeout": n(&self.io_timeouts),
            },
            "parked": g(&self.parked),
            "waiting_write": g(&self.waiting_write),
            "streams": g(&self.streams),
            "body_readers": g(&self.body_readers),
            "busy_workers": g(&self.busy_workers),
        })
    }
}

/// What handlers and status pages may ask of a listener.
pub struct PoolState {
    /// The listening port.
    pub port: u16,
    pub limits: PoolLimits,
    pub stats: LayerStats,
    pub(super) census: Arc<Census>,
    pub(super) stopping: AtomicBool,
    /// Set once the workers are gone: the poller ends.
    pub(super) stopped: AtomicBool,
}

impl PoolState {
    pub fn connections(&self) -> usize {
        self.census.total()
    }

    /// True while the connection cap is reached.
    pub fn overloaded(&self) -> bool {
        self.connections() >= self.limits.max_connections
    }
}

/// What the workers share with the poller.
pub(super) struct Shared {
    pub state: Arc<PoolState>,
    pub back: Sender<Back>,
    pub waker: Arc<mio::Waker>,
    pub notify: Arc<dyn Fn(u64) + Send + Sync>,
    /// The job queue, to see whether other work waits.
    pub jobs: Receiver<Job>,
}

impl Shared {
    pub fn send_back(&self, b: Back) {
        if self.back.send(b).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

/// Work for a worker.
pub(super) enum Job {
    Request(Conn, Head),
    /// Write more of a reply whose socket (or source) is ready again.
    Resume(Conn, Outgoing),
}

/// A running listener.
pub struct HttpPool {
    pub addr: SocketAddr,
    state: Arc<PoolState>,
    workers: Vec<JoinHandle<()>>,
    poller: Option<JoinHandle<()>>,
    waker: Arc<mio::Waker>,
}

/// Binds `addr` with a deep backlog, SO_REUSEADDR, TCP_NODELAY (inherited by accepted
/// sockets) and TCP_DEFER_ACCEPT (connections that send nothing never reach accept).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_nodelay(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    set_defer_accept(&socket, 5);
    Ok(socket.into())
}

fn set_defer_accept(socket: &socket2::Socket, secs: i32) {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt with a valid descriptor and an int option value.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&secs as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        );
    }
}

impl HttpPool {
    /// Starts the poller `http-accept-<name>` and `limits.workers` workers `<name>-N`.
    pub fn start(
        name: &str,
        listener: TcpListener,
        limits: PoolLimits,
        handler: Handler,
    ) -> io::Result<HttpPool> {
        HttpPool::start_with_early(name, listener, limits, handler, None)
    }

    /// [`HttpPool::start`], the requests `early` claims started by the poller itself.
    pub fn start_with_early(
        name: &str,
        listener: TcpListener,
        limits: PoolLimits,
        handler: Handler,
        early: Option<Arc<dyn EarlyRoute>>,
    ) -> io::Result<HttpPool> {
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let state = Arc::new(PoolState {
            port: addr.port(),
            limits: limits.clone(),
            stats: LayerStats::default(),
            census: Arc::new(Census::default()),
            stopping: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        });
        let (jobs_tx, jobs_rx) = crossbeam_channel::bounded::<Job>(limits.max_connections + 16);
        let (back_tx, back_rx) = crossbeam_channel::unbounded::<Back>();
        let poll = mio::Poll::new()?;
        let waker = Arc::new(mio::Waker::new(poll.registry(), poller::WAKER)?);
        let notify: Arc<dyn Fn(u64) + Send + Sync> = {
            let back = back_tx.clone();
            let waker = Arc::clone(&waker);
            Arc::new(move |id| {
                if back.send(Back::Wake(id)).is_ok() {
                    let _ = waker.wake();
                }
            })
        };
        let early = early.map(|route| poller::Early {
            route,
            back: back_tx.clone(),
            waker: Arc::clone(&waker),
            notify: Arc::clone(&notify),
        });
        let shared = Arc::new(Shared {
            state: Arc::clone(&state),
            back: back_tx,
            waker: Arc::clone(&waker),
            notify,
            jobs: jobs_rx.clone(),
        });
        let short = name.strip_prefix("http-").unwrap_or(name);
        let poller = {
            let state = Arc::clone(&state);
            let listener = mio::net::TcpListener::from_std(listener);
            std::thread::Builder::new()
                .name(format!("http-accept-{short}"))
                .spawn(move || poller::run(poll, listener, state, jobs_tx, back_rx, early))?
        };
        let mut workers = Vec::with_capacity(limits.workers);
        for i in 0..limits.workers {
            let shared = Arc::clone(&shared);
            let handler = Arc::clone(&handler);
            let jobs = jobs_rx.clone();
            workers.push(
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn(move || work(&shared, &handler, &jobs))?,
            );
        }
        Ok(HttpPool {
            addr,
            state,
            workers,
            poller: Some(poller),
            waker,
        })
    }

    /// True if every thread is still running.
    pub fn healthy(&self) -> bool {
        self.workers.iter().all(|w| !w.is_finished())
            && self.poller.as_ref().is_some_and(|p| !p.is_finished())
    }

    pub fn state(&self) -> &Arc<PoolState> {
        &self.state
    }

    /// Stops accepting, lets in-flight requests finish for up to `grace`, then stops.
    /// Returns false if some worker was still busy when the grace ran out.
    pub fn stop(mut self, grace: Duration) -> bool {
        self.state.stopping.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        let deadline = Instant::now() + grace;
        let mut clean = true;
        for w in self.workers.drain(..) {
            while !w.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if w.is_finished() {
                clean &= w.join().is_ok();
            } else {
                clean = false;
            }
        }
        self.state.stopped.store(true, Ordering::SeqCst);
        if let Some(p) = self.poller.take() {
            let _ = self.waker.wake();
            let _ = p.join();
        }
        clean
    }
}

fn work(shared: &Shared, handler: &Handler, jobs: &Receiver<Job>) {
    let stats = &shared.state.stats;
    loop {
        let job = match jobs.recv_timeout(Duration::from_millis(250)) {
            Ok(job) => job,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if shared.state.stopping.load(Ordering::SeqCst) {
                    return;
                }
                continue;
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        };
        stats.busy_workers.fetch_add(1, Ordering::Relaxed);
        run(shared, handler, job);
        stats.busy_workers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The most of an unread body drained to keep a connection alive, and how long each read of
/// it may wait (a client that holds its body back gets closed instead).
const DRAIN_MAX: u64 = 256 * 1024;
const DRAIN_WAIT: Duration = Duration::from_secs(1);
/// How long a worker waits for a slow socket before the poller takes the connection over.
const LINGER: Duration = Duration::from_millis(25);

/// How long an idle worker waits for the next request on a keep-alive connection before
/// handing it to the poller (only when no other job is waiting).
const NEXT_REQUEST_WAIT: Duration = Duration::from_millis(2);

/// Runs a job, and the connection's next requests while they come at once.
fn run(shared: &Shared, handler: &Handler, job: Job) {
    let mut next = Some(job);
    while let Some(job) = next.take() {
        let (conn, out) = match job {
            Job::Request(conn, head) => serve(shared, handler, conn, head),
            Job::Resume(conn, out) => (conn, out),
        };
        if let Some(conn) = push(shared, conn, out) {
            match next_request(shared, conn) {
                Next::Request(conn, head) => next = Some(Job::Request(conn, head)),
                Next::Park(conn) => shared.send_back(Back::Park(conn)),
                Next::Closed => {}
            }
        }
    }
}

enum Next {
    Request(Conn, Head),
    Park(Conn),
    Closed,
}

/// The next request of a keep-alive connection if it is (or within [`NEXT_REQUEST_WAIT`]
/// becomes) complete while nothing else waits for a worker; else the poller takes over.
fn next_request(shared: &Shared, mut conn: Conn) -> Next {
    let state = &shared.state;
    if !shared.jobs.is_empty() || state.stopping.load(Ordering::Relaxed) {
        return Next::Park(conn);
    }
    if conn.buf.is_empty() {
        if conn
            .wait(libc::POLLIN, Instant::now() + NEXT_REQUEST_WAIT)
            .is_err()
        {
            return Next::Park(conn);
        }
        let cap = state.limits.head.max_bytes + poller::PREBUFFER;
        loop {
            match conn.fill(cap) {
                Ok(0) if conn.buf.is_empty() => return Next::Closed,
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }
    match crate::proto::http::head::parse(&conn.buf, &state.limits.head) {
        Ok(Some((head, n))) if poller::body_ready(&head, &conn.buf[n..]) => {
            conn.buf.drain(..n);
            Next::Request(conn, head)
        }
        // Incomplete, or refused: the poller waits for the rest or answers the refusal.
        _ => Next::Park(conn),
    }
}

/// Runs one request; returns the connection and its reply to write.
fn serve(shared: &Shared, handler: &Handler, mut conn: Conn, head: Head) -> (Conn, Outgoing) {
    let state = &shared.state;
    state.stats.requests.fetch_add(1, Ordering::Relaxed);
    conn.served += 1;
    let method = Method::parse(&head.method);
    let (path, query) = head.target.split_once('?').unwrap_or((&head.target, ""));
    let remote = Some(conn.peer);
    let framing = head.framing;
    let body_len = match framing {
        Framing::Length(n) => Some(n),
        Framing::None | Framing::Chunked => None,
    };
    let chunked = framing == Framing::Chunked;
    let timeout = state.limits.io_timeout;
    let pace = body::Pace {
        grace: state.limits.header_timeout,
        min_bytes_per_sec: state.limits.min_body_bytes_per_sec,
    };
    // A body still to come from the socket holds this worker while it arrives: at most all
    // workers but one do that at once, so reads are always served.
    let streaming = match framing {
        Framing::None => false,
        Framing::Length(n) => (conn.buf.len() as u64) < n,
        Framing::Chunked => poller::chunked_complete(&conn.buf) != Some(true),
    };
    let _slot = match streaming.then(|| BodySlot::take(state)) {
        Some(None) => {
            state.stats.refused_busy.fetch_add(1, Ordering::Relaxed);
            let mut refusal = Reply::error(503, "too many uploads in progress, try again shortly")
                .header("Retry-After", "2");
            // The layer's own refusal headers (Blossom's CORS) go on this one too.
            for line in state.limits.refusal_headers.split("\r\n") {
                if let Some((k, v)) = line.split_once(": ") {
                    refusal = refusal.header(k, v);
                }
            }
            let out = Outgoing::new(refusal, method == Method::Head, true, head.minor);
            return (conn, out);
        }
        Some(Some(slot)) => Some(slot),
        None => None,
    };
    let mut reader = BodyReader::new(&mut conn, framing, head.expect_continue, timeout, pace);
    let reply = {
        let mut req = Req {
            method,
            path,
            query,
            headers: head.headers.clone(),
            remote,
            body: &mut reader,
            body_len,
            chunked,
        };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(&mut req))) {
            Ok(r) => r,
            Err(_) => {
                log::error!("a request handler panicked");
                Reply::error(500, "internal error")
            }
        }
    };
    let wants_close = reply
        .headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("Connection") && v.eq_ignore_ascii_case("close"));
    let mut close = !head.keep_alive || wants_close || state.stopping.load(Ordering::SeqCst);
    if !close && reader.continue_unsent() && framing != Framing::None {
        // The client waits for 100 Continue that will not come; it may still send the
        // body, so this connection cannot carry another request reliably.
        close = true;
    }
    reader.shorten_timeout(DRAIN_WAIT);
    if !close && !body::drain(&mut reader, DRAIN_MAX) {
        close = true;
    }
    let left = reader.finish();
    if left != Left::Nothing {
        close = true;
    }
    let mut out = Outgoing::new(reply, method == Method::Head, close, head.minor);
    if out.is_source() {
        if state.stats.streams.load(Ordering::Relaxed) >= state.limits.max_streams {
            let refusal = Reply::error(503, "too many long responses, try again shortly")
                .header("Retry-After", "2");
            out = Outgoing::new(refusal, method == Method::Head, close, head.minor);
        } else {
            out.hold_stream(&state.stats.streams);
        }
    }
    (conn, out)
}

/// One of the listener's places for a worker reading a body from the socket.
struct BodySlot(Arc<AtomicUsize>);

impl BodySlot {
    fn take(state: &PoolState) -> Option<BodySlot> {
        let max = state.limits.workers.saturating_sub(1).max(1);
        let readers = &state.stats.body_readers;
        readers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| BodySlot(Arc::clone(readers)))
    }
}

impl Drop for BodySlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Writes a reply until it is done or the socket (or source) makes it wait. Returns the
/// connection when the reply is done and it stays open.
fn push(shared: &Shared, mut conn: Conn, mut out: Outgoing) -> Option<Conn> {
    let wake = Wake::new(conn.id, &out, &shared.notify);
    loop {
        match out.drive(&mut conn, &wake) {
            Ok(Drive::Done) => {
                if out.close {
                    shared.send_back(Back::Linger(conn));
                    return None;
                }
                return Some(conn);
            }
            Ok(Drive::Blocked) => {
                if conn.wait(libc::POLLOUT, Instant::now() + LINGER).is_err() {
                    shared.send_back(Back::Write(conn, out));
                    return None;
                }
            }
            Ok(Drive::SourcePending) => {
                shared.send_back(Back::WaitSource(conn, out));
                return None;
            }
            Err(e) => {
                log::debug!("writing a reply to {} failed: {e}", conn.peer);
                return None;
            }
        }
    }
}

/// Raises the soft open-files limit to the hard one (at most 65,536), so the connection caps
/// and not EMFILE decide who is refused. Returns the limit now in force.
pub fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        let want = lim.rlim_max.min(1 << 16);
        if lim.rlim_cur < want {
            lim.rlim_cur = want;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
        lim.rlim_cur
    }
}
