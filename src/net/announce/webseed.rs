//! BEP-19 webseed GETs: one `Range: bytes=a-b` GET per part of an `engine::webseed::Request`
//! on the thread's keep-alive agent, the bytes handed on in torrent order in chunks while they
//! arrive (pad files as zeros), so hashing and writing overlap a long GET. A 206 must carry exactly the bytes asked for; a 200 that ignored
//! the range is read up to the range's end and the start skipped. Never more than the
//! requested bytes are kept.

use crate::engine::webseed::{retry_after, Failure, Part, Request, MAX_REQUEST_BYTES};
use std::io::{self, Read};
use std::time::Duration;

/// A read that gets no byte for this long fails the request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(20);
/// Seconds to wait after a 503/429 without a usable `Retry-After`.
pub const DEFAULT_RETRY_SECS: u64 = 30;

/// The thread's webseed agent (its connections are kept alive between GETs).
pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(super::CONNECT_TIMEOUT)
        .timeout_read(READ_TIMEOUT)
        .timeout_write(READ_TIMEOUT)
        .redirects(3)
        .max_idle_connections_per_host(2)
        .user_agent(super::user_agent())
        .build()
}

/// A GET's body is passed on while it arrives, never kept whole: one piece at a time (so the
/// engine can take it as the piece's buffer), or this much at a time for pieces longer than
/// [`MAX_CHUNK`].
pub const CHUNK: usize = 256 << 10;
/// The longest chunk handed on.
pub const MAX_CHUNK: usize = 4 << 20;

/// Fetches every part of `request`, handing its bytes to `emit` in order as they arrive:
/// `emit(torrent_offset, bytes)` in chunks (see [`MAX_CHUNK`]), so
/// together exactly `request.range`'s bytes (pad files as zeros). `emit` returns false to stop
/// early (the result is then an error). On an error the chunks already handed on stand.
/// Chunks end at piece boundaries where pieces are at most [`MAX_CHUNK`] long.
pub fn fetch(
    agent: &ureq::Agent,
    request: &Request,
    emit: &mut dyn FnMut(u64, Vec<u8>) -> bool,
) -> Result<(), Failure> {
    let len = request.range.end.saturating_sub(request.range.start);
    if len == 0 || len > MAX_REQUEST_BYTES {
        return Err(Failure::Other(format!("bad request length {len}")));
    }
    let mut out = Chunks::new(
        request.range.start,
        request.range.end,
        request.piece_length,
        emit,
    );
    for part in &request.parts {
        let plen = part.range.end.saturating_sub(part.range.start);
        let at = part.torrent_offset;
        if plen == 0 || at < out.pos() || at + plen > request.range.end {
            return Err(Failure::Other("part outside the request's range".into()));
        }
        out.zeros(at - out.pos())?;
        get_part(agent, part, &mut out)?;
    }
    out.zeros(request.range.end - out.pos())?;
    out.flush()
}

/// The request's bytes on their way out, one chunk at a time.
struct Chunks<'a> {
    /// Torrent offset of `buf[0]`.
    at: u64,
    end: u64,
    piece_length: u64,
    buf: Vec<u8>,
    filled: usize,
    emit: &'a mut dyn FnMut(u64, Vec<u8>) -> bool,
}

impl<'a> Chunks<'a> {
    fn new(
        start: u64,
        end: u64,
        piece_length: u64,
        emit: &'a mut dyn FnMut(u64, Vec<u8>) -> bool,
    ) -> Chunks<'a> {
        let mut c = Chunks {
            at: start,
            end,
            piece_length,
            buf: Vec::new(),
            filled: 0,
            emit,
        };
        c.fresh();
        c
    }

    fn pos(&self) -> u64 {
        self.at + self.filled as u64
    }

    /// A zeroed buffer for the next chunk: to the next piece boundary (or [`CHUNK`] bytes
    /// when pieces are long), never past the request's end.
    fn fresh(&mut self) {
        let p = self.piece_length;
        let next = if p > 0 && p <= MAX_CHUNK as u64 {
            (self.at / p + 1) * p
        } else {
            self.at + CHUNK as u64
        };
        let n = (next.min(self.end) - self.at) as usize;
        self.buf = vec![0; n];
        self.filled = 0;
    }

    /// Hands on a full buffer.
    fn full(&mut self) -> Result<(), Failure> {
        if self.filled < self.buf.len() {
            return Ok(());
        }
        self.flush()?;
        self.fresh();
        Ok(())
    }

    /// Hands on what is filled.
    fn flush(&mut self) -> Result<(), Failure> {
        if self.filled == 0 {
            return Ok(());
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.truncate(self.filled);
        let at = self.at;
        self.at += self.filled as u64;
        self.filled = 0;
        if (self.emit)(at, buf) {
            Ok(())
        } else {
            Err(Failure::Other("stopped".into()))
        }
    }

    /// `n` zero bytes (a pad file, or the gap before a part).
    fn zeros(&mut self, mut n: u64) -> Result<(), Failure> {
        while n > 0 {
            // Buffers start zeroed: skipping is writing zeros.
            let k = ((self.buf.len() - self.filled) as u64).min(n);
            self.filled += k as usize;
            n -= k;
            self.full()?;
        }
        Ok(())
    }

    /// Up to `n` bytes from `r`; the bytes read (fewer when the body ends).
    fn read_from(&mut self, r: &mut impl Read, n: u64) -> Result<u64, Failure> {
        let mut got = 0;
        while got < n {
            let room = ((self.buf.len() - self.filled) as u64).min(n - got) as usize;
            let k = match r.read(&mut self.buf[self.filled..self.filled + room]) {
                Ok(0) => break,
                Ok(k) => k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Failure::Other(format!("reading the webseed: {e}"))),
            };
            self.filled += k;
            got += k as u64;
            self.full()?;
        }
        Ok(got)
    }
}

fn get_part(agent: &ureq::Agent, part: &Part, out: &mut Chunks) -> Result<(), Failure> {
    let (start, end) = (part.range.start, part.range.end);
    let response = agent
        .get(&part.url)
        .set("Range", &format!("bytes={start}-{}", end - 1))
        .call();
    let response = match response {
        Ok(r) => r,
        Err(ureq::Error::Status(code, r)) => {
            return Err(match code {
                404 | 410 => Failure::Missing(part.file),
                429 | 503 => Failure::Retry(
                    r.header("Retry-After")
                        .and_then(retry_after)
                        .unwrap_or(DEFAULT_RETRY_SECS),
                ),
                _ => Failure::Other(format!("webseed answered HTTP {code}")),
            })
        }
        Err(ureq::Error::Transport(t)) => {
            return Err(Failure::Other(format!("webseed unreachable: {t}")))
        }
    };
    let length: Option<u64> = response
        .header("Content-Length")
        .and_then(|v| v.trim().parse().ok());
    let status = response.status();
    let skip = match status {
        206 => {
            let first = response
                .header("Content-Range")
                .and_then(|v| v.trim().strip_prefix("bytes "))
                .and_then(|v| v.split_once('-'))
                .and_then(|(a, _)| a.trim().parse::<u64>().ok());
            if first.is_some_and(|f| f != start) {
                return Err(Failure::Other(format!(
                    "webseed sent a range starting at {} for {start}",
                    first.unwrap_or(0)
                )));
            }
            if length.is_some_and(|l| l != end - start) {
                return Err(Failure::Other(format!(
                    "webseed sent {} bytes for a range of {}",
                    length.unwrap_or(0),
                    end - start
                )));
            }
            0
        }
        200 => {
            if length.is_some_and(|l| l < end) {
                return Err(Failure::Other(format!(
                    "webseed file is {} bytes, shorter than {end}",
                    length.unwrap_or(0)
                )));
            }
            start
        }
        _ => return Err(Failure::Other(format!("webseed answered HTTP {status}"))),
    };
    let io_err = |e: io::Error| Failure::Other(format!("reading the webseed: {e}"));
    let mut reader = response.into_reader();
    let skipped = io::copy(&mut (&mut reader).take(skip), &mut io::sink()).map_err(io_err)?;
    let want = end - start;
    let got = out.read_from(&mut reader, want)?;
    if skipped != skip || got != want {
        return Err(Failure::Other(format!(
            "webseed body ended after {} of {} bytes",
            skipped + got,
            skip + want
        )));
    }
    // A 206 must end here. Seeing its end also hands the connection back to the agent; the
    // rest of a 200 is never read (the connection is closed instead).
    if status == 206 && reader.read(&mut [0u8; 1]).map_err(io_err)? > 0 {
        return Err(Failure::Other(format!(
            "webseed sent more than the {want} bytes asked for"
        )));
    }
    Ok(())
}
