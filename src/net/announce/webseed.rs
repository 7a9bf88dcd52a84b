//! BEP-19 webseed GETs: one `Range: bytes=a-b` GET per part of an `engine::webseed::Request`
//! on the thread's keep-alive agent, the bytes placed at their torrent offset in one buffer
//! (pad files stay zeros). A 206 must carry exactly the bytes asked for; a 200 that ignored
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

/// Fetches every part of `request`; the result is exactly `request.range`'s bytes.
pub fn fetch(agent: &ureq::Agent, request: &Request) -> Result<Vec<u8>, Failure> {
    let len = request.range.end.saturating_sub(request.range.start);
    if len == 0 || len > MAX_REQUEST_BYTES {
        return Err(Failure::Other(format!("bad request length {len}")));
    }
    let mut out = vec![0u8; len as usize];
    for part in &request.parts {
        let at = part.torrent_offset.checked_sub(request.range.start);
        let plen = part.range.end.saturating_sub(part.range.start);
        let slot = at
            .and_then(|at| out.get_mut(at as usize..(at + plen) as usize))
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Failure::Other("part outside the request's range".into()))?;
        get_part(agent, part, slot)?;
    }
    Ok(out)
}

fn get_part(agent: &ureq::Agent, part: &Part, slot: &mut [u8]) -> Result<(), Failure> {
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
    let got = read_full(&mut reader, slot).map_err(io_err)?;
    if skipped != skip || got != slot.len() {
        return Err(Failure::Other(format!(
            "webseed body ended after {} of {} bytes",
            skipped + got as u64,
            skip + slot.len() as u64
        )));
    }
    // A 206 must end here. Seeing its end also hands the connection back to the agent; the
    // rest of a 200 is never read (the connection is closed instead).
    if status == 206 && reader.read(&mut [0u8; 1]).map_err(io_err)? > 0 {
        return Err(Failure::Other(format!(
            "webseed sent more than the {} bytes asked for",
            slot.len()
        )));
    }
    Ok(())
}

/// Reads until `buf` is full or the body ends; the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
