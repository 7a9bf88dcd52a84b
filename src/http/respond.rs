//! Replies on the wire: the head built from a [`Reply`], small bodies in the same write as
//! the head, stored data written straight from its memory maps, and bodies produced over
//! time ([`Source`], for streams that wait for data). A reply is an [`Outgoing`] that a worker
//! drives until the socket stops taking bytes; then the poller holds it until the socket is
//! writable (or the source has data) and a worker drives it on, so a slow reader never
//! holds a worker.

use super::conn::Conn;
use super::router::{Reply, ReplyBody};
use crate::store::content::Body;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Bodies up to this size go out in the same write as the head.
const COALESCE: usize = 64 * 1024;
/// Bytes read from a `Read` body per step.
const STREAM_STEP: usize = 64 * 1024;

/// A body produced over time, such as a stream of pieces as they arrive from a swarm.
pub trait Source: Send {
    /// Appends up to `max` ready bytes to `out`. On [`Pull::Pending`] the source must call
    /// `wake.wake()` once more bytes are ready (or it has ended or failed).
    fn pull(&mut self, out: &mut Vec<u8>, max: usize, wake: &Wake) -> Pull;
}

/// A reply that becomes known later (a stream waiting for its torrent's metadata or first
/// piece, bounded by its own deadline).
pub trait Deferred: Send {
    /// The reply, once known. On `None` the reply must call `wake.wake()` when it should be
    /// asked again.
    fn poll(&mut self, wake: &Wake) -> Option<Reply>;
}

/// What [`Source::pull`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pull {
    /// Bytes were appended.
    Data,
    Pending,
    End,
    /// The body cannot be completed: the connection is closed.
    Failed,
}

/// Tells the poller that a waiting long response can go on.
#[derive(Clone)]
pub struct Wake {
    pub(super) id: u64,
    pub(super) woken: Arc<AtomicBool>,
    pub(super) notify: Arc<dyn Fn(u64) + Send + Sync>,
}

impl Wake {
    pub(super) fn new(id: u64, out: &Outgoing, notify: &Arc<dyn Fn(u64) + Send + Sync>) -> Wake {
        Wake {
            id,
            woken: Arc::clone(&out.woken),
            notify: Arc::clone(notify),
        }
    }

    pub fn wake(&self) {
        if !self.woken.swap(true, Ordering::AcqRel) {
            (self.notify)(self.id);
        }
    }
}

pub(super) enum OutBody {
    None,
    Bytes(Vec<u8>, usize),
    Mapped(Body),
    Read(Box<dyn Read + Send>, u64, Vec<u8>, usize),
    Source {
        source: Box<dyn Source>,
        pending: Vec<u8>,
        at: usize,
        ended: bool,
    },
    /// Nothing is known yet, not even the head.
    Deferred(Box<dyn Deferred>),
}

/// A reply being written.
pub struct Outgoing {
    head: Vec<u8>,
    head_at: usize,
    body: OutBody,
    /// Close the connection once written.
    pub close: bool,
    /// Bytes of body written so far.
    pub sent: u64,
    /// A source's bytes go out in chunks (HTTP/1.1), else delimited by the close.
    chunked: bool,
    /// Set by [`Wake::wake`]; the poller checks it when the reply comes to wait.
    pub(super) woken: Arc<AtomicBool>,
    /// Counts this reply among the listener's long responses while it lives.
    stream: Option<StreamGuard>,
    /// How the reply was asked for (a deferred one builds its head later).
    head_only: bool,
    minor: u8,
}

/// One place among a listener's long responses, given back on drop.
struct StreamGuard(Arc<AtomicUsize>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How far a worker got with an [`Outgoing`].
#[derive(Debug, PartialEq, Eq)]
pub enum Drive {
    Done,
    /// The socket takes no more for now.
    Blocked,
    /// The source has nothing ready.
    SourcePending,
}

impl Outgoing {
    /// Builds the head (status line, the reply's headers, Server, Date, Content-Length or
    /// chunked framing for sources, Connection) and the body to follow. For HEAD requests
    /// (`head_only`) the body is dropped but its length still announced.
    pub fn new(reply: Reply, head_only: bool, close: bool, minor: u8) -> Outgoing {
        if let ReplyBody::Deferred(d) = reply.body {
            return Outgoing {
                head: Vec::new(),
                head_at: 0,
                body: OutBody::Deferred(d),
                close,
                sent: 0,
                chunked: false,
                woken: Arc::new(AtomicBool::new(false)),
                stream: None,
                head_only,
                minor,
            };
        }
        let status = reply.status;
        let no_body = head_only || status == 204 || status == 304 || (100..200).contains(&status);
        let is_source = matches!(reply.body, ReplyBody::Source(_));
        // A source of unknown length is sent chunked to HTTP/1.1 clients, and delimited by
        // closing the connection for HTTP/1.0 ones.
        let close = close || (is_source && minor == 0 && !no_body);
        let chunked = is_source && minor == 1 && !no_body;
        let mut head = Vec::with_capacity(256);
        let _ = write!(
            head,
            "HTTP/1.1 {status} {}\r\nServer: torrent-gateway\r\nDate: {}\r\n",
            reason_phrase(status),
            crate::proto::http::date::format(std::time::SystemTime::now())
        );
        for (k, v) in &reply.headers {
            if k.eq_ignore_ascii_case("Connection") || k.eq_ignore_ascii_case("Content-Length") {
                continue;
            }
            let _ = write!(head, "{k}: {v}\r\n");
        }
        if is_source {
            if chunked {
                head.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            }
        } else if status != 204 && status != 304 {
            let _ = write!(head, "Content-Length: {}\r\n", reply.body_len());
        }
        if close {
            head.extend_from_slice(b"Connection: close\r\n");
        } else if minor == 0 {
            head.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        head.extend_from_slice(b"\r\n");
        let body = match reply.body {
            _ if no_body => OutBody::None,
            ReplyBody::Empty => OutBody::None,
            ReplyBody::Bytes(b) if b.len() <= COALESCE => {
                head.extend_from_slice(&b);
                OutBody::None
            }
            ReplyBody::Bytes(b) => OutBody::Bytes(b, 0),
            ReplyBody::Mapped(m) => OutBody::Mapped(m),
            ReplyBody::Stream(r, n) => OutBody::Read(r, n, Vec::new(), 0),
            ReplyBody::Source(s) | ReplyBody::SizedSource(s, _) => OutBody::Source {
                source: s,
                pending: Vec::new(),
                at: 0,
                ended: false,
            },
            ReplyBody::Deferred(_) => unreachable!("returned above"),
        };
        Outgoing {
            head,
            head_at: 0,
            body,
            close,
            sent: 0,
            chunked,
            woken: Arc::new(AtomicBool::new(false)),
            stream: None,
            head_only,
            minor,
        }
    }

    /// Counts this reply in `streams` until it is dropped.
    pub(super) fn hold_stream(&mut self, streams: &Arc<AtomicUsize>) {
        streams.fetch_add(1, Ordering::Relaxed);
        self.stream = Some(StreamGuard(Arc::clone(streams)));
    }

    pub fn is_source(&self) -> bool {
        matches!(self.body, OutBody::Source { .. } | OutBody::Deferred(_))
    }

    /// Writes until done, blocked, or (for sources) nothing is ready.
    pub fn drive(&mut self, conn: &mut Conn, wake: &Wake) -> io::Result<Drive> {
        loop {
            if let OutBody::Deferred(d) = &mut self.body {
                wake.woken.store(false, Ordering::Release);
                let Some(reply) = d.poll(wake) else {
                    return Ok(Drive::SourcePending);
                };
                let next = Outgoing::new(reply, self.head_only, self.close, self.minor);
                self.head = next.head;
                self.head_at = 0;
                self.body = next.body;
                self.close = next.close;
                self.chunked = next.chunked;
                continue;
            }
            let chunked_framing = self.chunked;
            if self.head_at < self.head.len() {
                match write_once(conn, &self.head[self.head_at..])? {
                    Some(n) => self.head_at += n,
                    None => return Ok(Drive::Blocked),
                }
                if self.head_at == self.head.len() {
                    self.head = Vec::new();
                    self.head_at = 0;
                }
                continue;
            }
            let step = match &mut self.body {
                OutBody::None => return Ok(Drive::Done),
                OutBody::Deferred(_) => continue,
                OutBody::Bytes(b, at) => {
                    if *at == b.len() {
                        return Ok(Drive::Done);
                    }
                    let r = write_once(conn, &b[*at..])?;
                    if let Some(n) = r {
                        *at += n;
                    }
                    r
                }
                OutBody::Mapped(m) => {
                    if m.is_empty() {
                        return Ok(Drive::Done);
                    }
                    match m.write_some(&mut conn.stream) {
                        Ok(n) => Some(n),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => Some(0),
                        Err(e) => return Err(e),
                    }
                }
                OutBody::Read(r, left, buf, at) => {
                    if *at == buf.len() {
                        if *left == 0 {
                            return Ok(Drive::Done);
                        }
                        buf.resize((*left).min(STREAM_STEP as u64) as usize, 0);
                        let n = r.read(buf)?;
                        if n == 0 {
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "reply body shorter than announced",
                            ));
                        }
                        buf.truncate(n);
                        *left -= n as u64;
                        *at = 0;
                    }
                    let w = write_once(conn, &buf[*at..])?;
                    if let Some(n) = w {
                        *at += n;
                    }
                    w
                }
                OutBody::Source {
                    source,
                    pending,
                    at,
                    ended,
                } => {
                    if *at == pending.len() {
                        if *ended {
                            return Ok(Drive::Done);
                        }
                        pending.clear();
                        *at = 0;
                        let mut data = Vec::new();
                        wake.woken.store(false, Ordering::Release);
                        match source.pull(&mut data, STREAM_STEP, wake) {
                            Pull::Data if data.is_empty() => continue,
                            Pull::Data => {
                                frame(pending, &data, chunked_framing);
                            }
                            Pull::Pending => return Ok(Drive::SourcePending),
                            Pull::End => {
                                *ended = true;
                                if chunked_framing {
                                    pending.extend_from_slice(b"0\r\n\r\n");
                                }
                                continue;
                            }
                            Pull::Failed => return Err(io::Error::other("the body source failed")),
                        }
                    }
                    let w = write_once(conn, &pending[*at..])?;
                    if let Some(n) = w {
                        *at += n;
                    }
                    w
                }
            };
            match step {
                Some(n) => self.sent += n as u64,
                None => return Ok(Drive::Blocked),
            }
        }
    }
}

/// Appends `data` to `out`, as one chunk when `chunked`.
fn frame(out: &mut Vec<u8>, data: &[u8], chunked: bool) {
    if chunked {
        let _ = write!(out, "{:x}\r\n", data.len());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(data);
    }
}

/// One non-blocking write: `None` when the socket takes nothing now.
fn write_once(conn: &mut Conn, bytes: &[u8]) -> io::Result<Option<usize>> {
    loop {
        match conn.stream.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// A whole small reply of the layer's own (refusals), as bytes.
pub fn plain(status: u16, reason: &str, extra_headers: &str) -> Vec<u8> {
    let body = format!("{{\"error\":\"{reason}\"}}");
    format!(
        "HTTP/1.1 {status} {}\r\nServer: torrent-gateway\r\nContent-Type: application/json\r\nX-Reason: {reason}\r\n{extra_headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        reason_phrase(status),
        body.len()
    )
    .into_bytes()
}

pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => "Status",
    }
}
