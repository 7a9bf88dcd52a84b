//! A request body as the handler reads it: framed by us (Content-Length or chunked, through
//! `proto::http::chunked`), read from the bytes the poller already buffered and then from the
//! socket with an inactivity deadline, `100 Continue` sent on the first read when the client
//! asked for it. A body cut anywhere is an error, never a short body; bytes past the body
//! (a pipelined request) go back to the connection.

use super::conn::Conn;
use crate::proto::http::chunked::Decoder;
use crate::proto::http::head::Framing;
use std::io::{self, Read};
use std::time::{Duration, Instant};

/// What the reader is left with after the handler returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Left {
    /// The body was read to its end (or there was none).
    Nothing,
    /// Bytes remain (known count, or unknown for chunked bodies).
    Unread(Option<u64>),
    /// The body failed (cut, malformed, timed out): the connection cannot be reused.
    Broken,
}

enum Frame {
    Length(u64),
    Chunked(Decoder),
}

pub struct BodyReader<'c> {
    conn: &'c mut Conn,
    frame: Frame,
    /// Bytes read past what the handler took (chunked framing reads ahead).
    buf: Vec<u8>,
    at: usize,
    expect_continue: bool,
    timeout: Duration,
    broken: bool,
    pace: Pace,
    progress: Progress,
}

/// The minimum average rate a body must arrive at once its grace period is over.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub grace: Duration,
    pub min_bytes_per_sec: u64,
}

struct Progress {
    started: Instant,
    bytes: u64,
}

impl<'c> BodyReader<'c> {
    pub fn new(
        conn: &'c mut Conn,
        framing: Framing,
        expect_continue: bool,
        timeout: Duration,
        pace: Pace,
    ) -> BodyReader<'c> {
        let frame = match framing {
            Framing::None => Frame::Length(0),
            Framing::Length(n) => Frame::Length(n),
            Framing::Chunked => Frame::Chunked(Decoder::new()),
        };
        let buf = std::mem::take(&mut conn.buf);
        BodyReader {
            conn,
            frame,
            buf,
            at: 0,
            expect_continue,
            timeout,
            broken: false,
            pace,
            progress: Progress {
                started: Instant::now(),
                bytes: 0,
            },
        }
    }

    /// Waits at most `t` for each read from now on (draining an unread body should not
    /// hold a worker for the full inactivity timeout).
    pub fn shorten_timeout(&mut self, t: Duration) {
        self.timeout = self.timeout.min(t);
    }

    /// True if `100 Continue` was wanted and not sent (the client may not send the body).
    pub fn continue_unsent(&self) -> bool {
        self.expect_continue
    }

    /// Hands unused bytes back to the connection and says what is left of the body.
    pub fn finish(self) -> Left {
        let left = if self.broken {
            Left::Broken
        } else {
            match &self.frame {
                Frame::Length(0) => Left::Nothing,
                Frame::Length(n) => Left::Unread(Some(*n)),
                Frame::Chunked(d) if d.is_done() => Left::Nothing,
                Frame::Chunked(_) => Left::Unread(None),
            }
        };
        let rest = self.buf[self.at..].to_vec();
        self.conn.unread(&rest);
        left
    }

    /// Reads into `buf` (from position `at`) when it is used up; Ok(false) at end of stream.
    fn refill(&mut self) -> io::Result<bool> {
        if self.at < self.buf.len() {
            return Ok(true);
        }
        self.buf.clear();
        self.at = 0;
        self.buf.resize(64 * 1024, 0);
        let n = self.read_socket_into_buf()?;
        self.buf.truncate(n);
        Ok(n > 0)
    }

    fn read_socket_into_buf(&mut self) -> io::Result<usize> {
        let mut tmp = std::mem::take(&mut self.buf);
        let r = self.read_socket(&mut tmp);
        self.buf = tmp;
        r
    }

    /// One read from the socket, waiting up to the inactivity timeout; past the grace
    /// period a body slower than the minimum rate is cut.
    fn read_socket(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let elapsed = self.progress.started.elapsed();
        if elapsed > self.pace.grace
            && (self.progress.bytes as f64)
                < elapsed.as_secs_f64() * self.pace.min_bytes_per_sec as f64
        {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the body arrives slower than the minimum rate",
            ));
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.conn.stream.read(out) {
                Ok(n) => {
                    self.progress.bytes += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.conn.wait(libc::POLLIN, deadline)?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn send_continue(&mut self) -> io::Result<()> {
        if self.expect_continue {
            self.expect_continue = false;
            let nothing = matches!(self.frame, Frame::Length(0));
            if !nothing && self.at == self.buf.len() {
                let deadline = Instant::now() + self.timeout;
                self.conn
                    .write_all_until(b"HTTP/1.1 100 Continue\r\n\r\n", deadline)?;
            }
        }
        Ok(())
    }

    fn read_inner(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        self.send_continue()?;
        match &mut self.frame {
            Frame::Length(0) => Ok(0),
            Frame::Length(left) => {
                let want = (*left).min(out.len() as u64) as usize;
                let n = if self.at < self.buf.len() {
                    let n = want.min(self.buf.len() - self.at);
                    out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
                    self.at += n;
                    n
                } else {
                    self.read_socket(&mut out[..want])?
                };
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the body ended before its Content-Length",
                    ));
                }
                if let Frame::Length(left) = &mut self.frame {
                    *left -= n as u64;
                }
                Ok(n)
            }
            Frame::Chunked(_) => loop {
                if let Frame::Chunked(d) = &self.frame {
                    if d.is_done() {
                        return Ok(0);
                    }
                }
                if !self.refill()? {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the chunked body was cut before its last chunk",
                    ));
                }
                let Frame::Chunked(d) = &mut self.frame else {
                    unreachable!("chunked frame")
                };
                let input = &self.buf[self.at..];
                let step = d
                    .step(input)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.0))?;
                let start = self.at;
                self.at += step.consumed;
                if let Some(r) = step.data {
                    let n = r.len().min(out.len());
                    out[..n].copy_from_slice(&self.buf[start + r.start..start + r.start + n]);
                    // Give back data the caller had no room for.
                    self.at -= r.len() - n;
                    if n < r.len() {
                        // The decoder counted those bytes as delivered; restore them.
                        d.give_back((r.len() - n) as u64);
                    }
                    if n > 0 {
                        return Ok(n);
                    }
                }
            },
        }
    }
}

impl Read for BodyReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.broken {
            return Err(io::Error::other("the request body already failed"));
        }
        let r = self.read_inner(out);
        if r.is_err() {
            self.broken = true;
        }
        r
    }
}

/// Reads and discards what is left of a small body, so the connection can be reused.
pub fn drain(reader: &mut BodyReader<'_>, max: u64) -> bool {
    let mut scratch = [0u8; 8192];
    let mut total = 0u64;
    loop {
        match reader.read(&mut scratch) {
            Ok(0) => return true,
            Ok(n) => {
                total += n as u64;
                if total > max {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
}
