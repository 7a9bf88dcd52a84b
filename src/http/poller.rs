//! The poller of one listener (`http-accept-<name>`): accepts under the caps (total, per
//! IP, accept rate) before anything is committed to a connection, parks idle and keep-alive
//! connections in one `mio::Poll` with only their socket and the bytes that arrived, hands a
//! connection to the workers once a complete request head (and a small body, or the first
//! part of a large one) is in, holds replies whose reader is slow or whose source is waiting,
//! and enforces the deadlines: header (slowloris), idle, slow reader, lingering close.
//!
//! Requests an [`EarlyRoute`] claims are started here instead, and their connection waits in
//! the poller until the answer comes back (see `early`).
//!
//! At the connection cap a new connection closes the longest-waiting connection that has no
//! request in progress, so a flood of idle sockets cannot lock out a real client.

use super::admission::Admission;
use super::conn::{canonical, Conn};
use super::early::{EarlyRoute, Later};
use super::pool::{Job, LayerStats, PoolState};
use super::respond::{self, Drive, Outgoing, Wake};
use super::router::{Method, Req};
use crate::proto::http::chunked::Decoder;
use crate::proto::http::head::{self, Framing, Head};
use crossbeam_channel::{Receiver, Sender};
use mio::{Events, Interest, Poll, Token};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const LISTENER: Token = Token(0);
pub const WAKER: Token = Token(1);
const FIRST_SLOT: usize = 2;

/// Body bytes buffered here before a request goes to a worker: small bodies arrive whole, so
/// a client that sends its body slowly holds no worker.
pub const PREBUFFER: usize = 16 * 1024;
/// How long a closing connection's unread input is read and dropped, so the reply is not
/// destroyed by a reset.
const LINGER_FOR: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// What workers send back.
pub enum Back {
    /// The reply is done; wait for the next request.
    Park(Conn),
    /// The reply waits for the socket to take more.
    Write(Conn, Outgoing),
    /// The reply waits for its source.
    WaitSource(Conn, Outgoing),
    /// A source has data for the connection with this id.
    Wake(u64),
    /// Close after reading what the client still sends, for a short while.
    Linger(Conn),
    /// The answer to a request the poller started (see `early`); None closes the connection.
    Answer(u64, Option<Outgoing>),
}

/// What the poller needs to start requests itself and hand out their [`Later`]s.
pub(super) struct Early {
    pub route: Arc<dyn EarlyRoute>,
    pub back: Sender<Back>,
    pub waker: Arc<mio::Waker>,
    pub notify: Arc<dyn Fn(u64) + Send + Sync>,
}

enum Phase {
    /// Waiting for the first byte of a request.
    Idle,
    /// Part of a head has arrived.
    Head,
    /// The head is in; buffering the start of the body.
    Body(Head),
    Writing(Outgoing),
    Source(Outgoing),
    /// A request the poller started waits for its answer; `readable`: the client sent
    /// something meanwhile (read once the answer is out).
    Early {
        readable: bool,
    },
    Linger(usize),
}

struct Slot {
    conn: Conn,
    phase: Phase,
    deadline: Instant,
    /// When this connection last started waiting, for eviction.
    since: Instant,
}

impl Slot {
    fn evictable(&self) -> bool {
        matches!(
            self.phase,
            Phase::Idle | Phase::Head | Phase::Body(_) | Phase::Linger(_)
        )
    }
}

struct Poller {
    poll: Poll,
    listener: Option<mio::net::TcpListener>,
    state: Arc<PoolState>,
    jobs: Sender<Job>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    /// Connections waiting for their source, by connection id.
    sourced: HashMap<u64, usize>,
    /// Connections waiting for an early request's answer, by connection id.
    answering: HashMap<u64, usize>,
    early: Option<Early>,
    admission: Admission,
    retry_accept: bool,
}

pub(super) fn run(
    poll: Poll,
    mut listener: mio::net::TcpListener,
    state: Arc<PoolState>,
    jobs: Sender<Job>,
    back: Receiver<Back>,
    early: Option<Early>,
) {
    if let Err(e) = poll
        .registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
    {
        log::error!("http listener: {e}");
        return;
    }
    let admission = Admission::new(
        state.limits.accept_rate,
        state.limits.accept_rate_per_ip,
        state.limits.max_connections * 4,
        Instant::now(),
    );
    let mut p = Poller {
        poll,
        listener: Some(listener),
        state,
        jobs,
        slots: Vec::new(),
        free: Vec::new(),
        sourced: HashMap::new(),
        answering: HashMap::new(),
        early,
        admission,
        retry_accept: false,
    };
    let mut events = Events::with_capacity(256);
    let mut last_sweep = Instant::now();
    loop {
        let timeout = if p.retry_accept {
            Duration::from_millis(50)
        } else {
            Duration::from_millis(250)
        };
        if let Err(e) = p.poll.poll(&mut events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                log::error!("http poller: {e}");
                return;
            }
        }
        for ev in events.iter() {
            match ev.token() {
                LISTENER => p.accept(),
                WAKER => {}
                Token(t) => p.ready(t - FIRST_SLOT),
            }
        }
        if p.retry_accept {
            p.retry_accept = false;
            p.accept();
        }
        while let Ok(b) = back.try_recv() {
            p.back(b);
        }
        let now = Instant::now();
        if now.duration_since(last_sweep) >= Duration::from_millis(200) {
            last_sweep = now;
            p.sweep(now);
        }
        if p.state.stopping.load(Ordering::SeqCst) {
            if let Some(mut l) = p.listener.take() {
                let _ = p.poll.registry().deregister(&mut l);
            }
            p.close_idle();
            if p.state.stopped.load(Ordering::SeqCst) {
                return;
            }
        }
    }
}

impl Poller {
    fn accept(&mut self) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: the pending connection stays queued; try again
                    // shortly instead of spinning or giving up on the listener.
                    log::warn!("accept failed: {e}");
                    self.retry_accept = true;
                    return;
                }
            }
        }
    }

    fn admit(&mut self, mut stream: mio::net::TcpStream, peer: std::net::SocketAddr) {
        let state = Arc::clone(&self.state);
        let stats = &state.stats;
        let limits = &state.limits;
        let now = Instant::now();
        if self.state.stopping.load(Ordering::SeqCst) {
            return;
        }
        let ip = canonical(peer.ip());
        if self.admission.admit(ip, now).is_err() {
            stats.refused_rate.fetch_add(1, Ordering::Relaxed);
            refuse(
                &mut stream,
                503,
                "too many new connections",
                limits.refusal_headers,
            );
            return;
        }
        if self.state.census.of_ip(ip) as usize >= limits.max_connections_per_ip
            && !self.evict(|c| canonical(c.peer.ip()) == ip)
        {
            stats.refused_per_ip.fetch_add(1, Ordering::Relaxed);
            refuse(
                &mut stream,
                503,
                "too many connections from this address",
                limits.refusal_headers,
            );
            return;
        }
        if self.state.census.total() >= limits.max_connections && !self.evict(|_| true) {
            stats.refused_busy.fetch_add(1, Ordering::Relaxed);
            refuse(
                &mut stream,
                503,
                "too many connections, try again shortly",
                limits.refusal_headers,
            );
            return;
        }
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let conn = Conn::new(stream, peer, &self.state.census);
        let deadline = now + limits.header_timeout;
        // The request usually came with the connection (TCP_DEFER_ACCEPT): read it now, so
        // it reaches a worker before later arrivals could evict it.
        if let Some(i) = self.insert(conn, Phase::Idle, deadline, Interest::READABLE) {
            self.ready(i);
        }
    }

    /// Closes the longest-waiting evictable connection that `pick` selects.
    fn evict(&mut self, pick: impl Fn(&Conn) -> bool) -> bool {
        let victim = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)))
            .filter(|(_, s)| s.evictable() && pick(&s.conn))
            .min_by_key(|(_, s)| s.since)
            .map(|(i, _)| i);
        match victim {
            Some(i) => {
                self.remove(i);
                self.state.stats.evicted.fetch_add(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    fn insert(
        &mut self,
        mut conn: Conn,
        phase: Phase,
        deadline: Instant,
        interest: Interest,
    ) -> Option<usize> {
        let i = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut conn.stream, Token(i + FIRST_SLOT), interest)
        {
            log::debug!("registering a connection: {e}");
            self.free.push(i);
            return None;
        }
        self.gauge(&phase, 1);
        self.slots[i] = Some(Slot {
            conn,
            phase,
            deadline,
            since: Instant::now(),
        });
        Some(i)
    }

    fn gauge(&self, phase: &Phase, up: isize) {
        gauge(&self.state.stats, phase, up);
    }

    /// Takes a connection out of the poller (deregistered) with its phase.
    fn take(&mut self, i: usize) -> Option<Slot> {
        let mut slot = self.slots.get_mut(i)?.take()?;
        let _ = self.poll.registry().deregister(&mut slot.conn.stream);
        self.free.push(i);
        self.gauge(&slot.phase, -1);
        match slot.phase {
            Phase::Source(_) => drop(self.sourced.remove(&slot.conn.id)),
            Phase::Early { .. } => drop(self.answering.remove(&slot.conn.id)),
            _ => {}
        }
        Some(slot)
    }

    fn remove(&mut self, i: usize) {
        drop(self.take(i));
    }

    fn dispatch(&mut self, job: Job) {
        if let Err(e) = self.jobs.try_send(job) {
            // Cannot happen while the queue holds max_connections jobs; shed if it does.
            log::warn!("http job queue full, closing a connection");
            drop(e);
        }
    }

    fn ready(&mut self, i: usize) {
        let Some(Some(slot)) = self.slots.get_mut(i) else {
            return;
        };
        match &mut slot.phase {
            Phase::Writing(_) => {
                if let Some(slot) = self.take(i) {
                    if let Phase::Writing(out) = slot.phase {
                        self.dispatch(Job::Resume(slot.conn, out));
                    }
                }
            }
            Phase::Source(_) => {
                // The client sent something or went away while its stream waits. Gone (end
                // of stream or an error): the reply is dropped now, so what it held (a
                // stream's piece priorities) is released at once; bytes (a pipelined
                // request) stay for later.
                let mut probe = [0u8; 1];
                let gone = match slot.conn.stream.peek(&mut probe) {
                    Ok(n) => n == 0,
                    Err(e) => !matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ),
                };
                if gone {
                    self.remove(i);
                }
            }
            Phase::Early { readable } => *readable = true,
            Phase::Linger(read) => {
                let mut scratch = [0u8; 8192];
                loop {
                    match slot.conn.stream.read(&mut scratch) {
                        Ok(0) => return self.remove(i),
                        Ok(n) => {
                            *read += n;
                            if *read > LINGER_BYTES {
                                return self.remove(i);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                        Err(_) => return self.remove(i),
                    }
                }
            }
            Phase::Idle | Phase::Head | Phase::Body(_) => {
                let cap = self.state.limits.head.max_bytes + PREBUFFER;
                let mut eof = false;
                loop {
                    match slot.conn.fill(cap) {
                        Ok(0) if slot.conn.buf.len() >= cap => break,
                        Ok(0) => {
                            eof = true;
                            break;
                        }
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => return self.remove(i),
                    }
                }
                self.progress(i, eof);
            }
        }
    }

    /// Parses what a parked connection has buffered and hands it on when it is ready.
    /// After `eof` (the client closed its side) a complete head is handed on with what
    /// body there is (the handler may refuse it unread; a read reports the cut), and
    /// anything less is closed.
    fn progress(&mut self, i: usize, eof: bool) {
        let limits = self.state.limits.clone();
        let Some(Some(slot)) = self.slots.get_mut(i) else {
            return;
        };
        if matches!(slot.phase, Phase::Idle | Phase::Head) {
            if slot.conn.buf.is_empty() {
                if eof {
                    self.remove(i);
                }
                return;
            }
            match head::parse(&slot.conn.buf, &limits.head) {
                Ok(None) if eof => return self.remove(i),
                Ok(None) => {
                    if matches!(slot.phase, Phase::Idle) {
                        slot.phase = Phase::Head;
                        slot.deadline = Instant::now() + limits.header_timeout;
                    }
                    return;
                }
                Ok(Some((head, n))) => {
                    slot.conn.buf.drain(..n);
                    slot.phase = Phase::Body(head);
                    slot.deadline = Instant::now() + limits.header_timeout;
                }
                Err(e) => {
                    self.state.stats.bad_heads.fetch_add(1, Ordering::Relaxed);
                    let reply = respond::plain(e.status, e.reason, limits.refusal_headers);
                    let _ = slot.conn.stream.write(&reply);
                    return self.linger(i);
                }
            }
        }
        let Phase::Body(head) = &slot.phase else {
            return;
        };
        if !eof && !body_ready(head, &slot.conn.buf) {
            return;
        }
        if self.start_early(i) {
            return;
        }
        if let Some(slot) = self.take(i) {
            if let Phase::Body(head) = slot.phase {
                self.dispatch(Job::Request(slot.conn, head));
            }
        }
    }

    /// Half-closes and reads what the client still sends for a short while, then closes.
    fn linger(&mut self, i: usize) {
        if let Some(slot) = self.take(i) {
            self.start_linger(slot.conn);
        }
    }

    fn start_linger(&mut self, mut conn: Conn) {
        let _ = conn.stream.flush();
        let _ = conn.stream.shutdown(std::net::Shutdown::Write);
        conn.buf = Vec::new();
        let deadline = Instant::now() + LINGER_FOR;
        self.insert(conn, Phase::Linger(0), deadline, Interest::READABLE);
    }

    /// Starts slot `i`'s request here if the early route claims it (a request without a
    /// body); the connection then waits in [`Phase::Early`] for its answer.
    fn start_early(&mut self, i: usize) -> bool {
        let Some(early) = &self.early else {
            return false;
        };
        let Some(Some(slot)) = self.slots.get_mut(i) else {
            return false;
        };
        let Phase::Body(head) = &slot.phase else {
            return false;
        };
        let method = Method::parse(&head.method);
        let (path, query) = head.target.split_once('?').unwrap_or((&head.target, ""));
        if head.framing != Framing::None
            || head.expect_continue
            || self.state.stopping.load(Ordering::Relaxed)
            || !early.route.claims(method, path)
        {
            return false;
        }
        self.state.stats.requests.fetch_add(1, Ordering::Relaxed);
        slot.conn.served += 1;
        let later = Later {
            id: slot.conn.id,
            close: !head.keep_alive,
            minor: head.minor,
            back: early.back.clone(),
            waker: Arc::clone(&early.waker),
            answered: false,
        };
        let mut empty = io::empty();
        let mut req = Req {
            method,
            path,
            query,
            headers: head.headers.clone(),
            remote: Some(slot.conn.peer),
            body: &mut empty,
            body_len: None,
            chunked: false,
        };
        let route = Arc::clone(&early.route);
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            route.start(&mut req, later)
        }))
        .is_err()
        {
            log::error!("an early request handler panicked");
        }
        // Waiting for the answer counts with the replies being written.
        gauge(&self.state.stats, &slot.phase, -1);
        slot.phase = Phase::Early { readable: false };
        gauge(&self.state.stats, &slot.phase, 1);
        slot.deadline = Instant::now() + self.state.limits.io_timeout * 3;
        self.answering.insert(slot.conn.id, i);
        true
    }

    /// Writes an early request's answer; the connection then waits for its next request.
    fn answered(&mut self, id: u64, out: Option<Outgoing>) {
        let Some(i) = self.answering.get(&id).copied() else {
            return;
        };
        let Some(mut out) = out else {
            return self.remove(i);
        };
        let (Some(early), Some(Some(slot))) = (&self.early, self.slots.get_mut(i)) else {
            return;
        };
        let wake = Wake::new(id, &out, &early.notify);
        match out.drive(&mut slot.conn, &wake) {
            Ok(Drive::Done) if out.close || self.state.stopping.load(Ordering::SeqCst) => {
                self.linger(i)
            }
            Ok(Drive::Done) => {
                let Phase::Early { readable } = slot.phase else {
                    return;
                };
                self.answering.remove(&id);
                gauge(&self.state.stats, &slot.phase, -1);
                slot.phase = Phase::Idle;
                gauge(&self.state.stats, &slot.phase, 1);
                let now = Instant::now();
                slot.deadline = now + self.state.limits.io_timeout;
                slot.since = now;
                if readable || !slot.conn.buf.is_empty() {
                    // A pipelined or next request may already be here.
                    self.ready(i);
                } else {
                    slot.conn.shrink();
                }
            }
            Ok(Drive::Blocked | Drive::SourcePending) => {
                // A slow reader: a worker writes the rest as for any reply.
                if let Some(slot) = self.take(i) {
                    self.dispatch(Job::Resume(slot.conn, out));
                }
            }
            Err(e) => {
                log::debug!("writing a reply failed: {e}");
                self.remove(i);
            }
        }
    }

    fn back(&mut self, b: Back) {
        let stopping = self.state.stopping.load(Ordering::SeqCst);
        let io_timeout = self.state.limits.io_timeout;
        let now = Instant::now();
        match b {
            Back::Park(mut conn) => {
                if stopping {
                    return;
                }
                conn.shrink();
                let has_bytes = !conn.buf.is_empty();
                let slot = self.insert(conn, Phase::Idle, now + io_timeout, Interest::READABLE);
                if let Some(i) = slot.filter(|_| has_bytes) {
                    // A pipelined request may already be complete.
                    self.progress(i, false);
                }
            }
            Back::Write(conn, out) => {
                self.insert(
                    conn,
                    Phase::Writing(out),
                    now + io_timeout,
                    Interest::WRITABLE,
                );
            }
            Back::WaitSource(conn, out) => {
                if out.woken.load(Ordering::Acquire) {
                    return self.dispatch(Job::Resume(conn, out));
                }
                let id = conn.id;
                let deadline = now + io_timeout * 3;
                if let Some(i) = self.insert(conn, Phase::Source(out), deadline, Interest::READABLE)
                {
                    self.sourced.insert(id, i);
                }
            }
            Back::Wake(id) => {
                if let Some(i) = self.sourced.get(&id).copied() {
                    if let Some(slot) = self.take(i) {
                        if let Phase::Source(out) = slot.phase {
                            self.dispatch(Job::Resume(slot.conn, out));
                        }
                    }
                }
            }
            Back::Linger(conn) => self.start_linger(conn),
            Back::Answer(id, out) => self.answered(id, out),
        }
    }

    fn sweep(&mut self, now: Instant) {
        let expired: Vec<usize> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().filter(|s| s.deadline <= now).map(|_| i))
            .collect();
        for i in expired {
            let Some(mut slot) = self.take(i) else {
                continue;
            };
            let stats = &self.state.stats;
            match slot.phase {
                Phase::Head | Phase::Body(_) => {
                    stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                    let reply = respond::plain(
                        408,
                        "request not received in time",
                        self.state.limits.refusal_headers,
                    );
                    discard_input(&mut slot.conn.stream);
                    let _ = slot.conn.stream.write(&reply);
                }
                Phase::Writing(_) | Phase::Source(_) | Phase::Early { .. } => {
                    stats.io_timeouts.fetch_add(1, Ordering::Relaxed);
                }
                Phase::Idle | Phase::Linger(_) => {}
            }
        }
    }

    fn close_idle(&mut self) {
        let idle: Vec<usize> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.as_ref()
                    .filter(|s| matches!(s.phase, Phase::Idle | Phase::Head | Phase::Linger(_)))
                    .map(|_| i)
            })
            .collect();
        for i in idle {
            self.remove(i);
        }
    }
}

/// Counts a connection in (`up` > 0) or out of its phase's gauge.
fn gauge(stats: &LayerStats, phase: &Phase, up: isize) {
    let g = match phase {
        Phase::Writing(_) | Phase::Source(_) | Phase::Early { .. } => &stats.waiting_write,
        _ => &stats.parked,
    };
    if up > 0 {
        g.fetch_add(1, Ordering::Relaxed);
    } else {
        g.fetch_sub(1, Ordering::Relaxed);
    }
}

/// True when enough of the body is buffered for a worker to take the request: all of a
/// body of up to [`PREBUFFER`] bytes (so slow senders of small bodies hold no worker), and
/// at once for larger declared bodies (the handler may refuse them unread; reading them is
/// held to a minimum rate) or when the client waits for `100 Continue`.
pub(super) fn body_ready(head: &Head, buf: &[u8]) -> bool {
    if head.expect_continue || buf.len() >= PREBUFFER {
        return true;
    }
    match head.framing {
        Framing::None => true,
        Framing::Length(n) => n > PREBUFFER as u64 || buf.len() as u64 >= n,
        Framing::Chunked => chunked_complete(buf).unwrap_or(true),
    }
}

/// Whether `buf` holds a whole chunked body; None if it is malformed (the worker's reader
/// reports that).
pub(super) fn chunked_complete(buf: &[u8]) -> Option<bool> {
    let mut d = Decoder::new();
    let mut at = 0;
    while at < buf.len() && !d.is_done() {
        match d.step(&buf[at..]) {
            Ok(s) if s.consumed == 0 => break,
            Ok(s) => at += s.consumed,
            Err(_) => return None,
        }
    }
    Some(d.is_done())
}

/// Writes a short refusal to a fresh connection (its send buffer is empty) and closes it.
/// What the client already sent is read first (a bounded amount), so that closing sends a
/// FIN rather than a reset that could destroy the reply before the client reads it.
fn refuse(stream: &mut mio::net::TcpStream, status: u16, reason: &str, extra: &str) {
    discard_input(stream);
    let _ = stream.write(&respond::plain(status, reason, extra));
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

fn discard_input(stream: &mut mio::net::TcpStream) {
    let mut scratch = [0u8; 8192];
    for _ in 0..8 {
        match stream.read(&mut scratch) {
            Ok(n) if n > 0 => {}
            _ => return,
        }
    }
}
