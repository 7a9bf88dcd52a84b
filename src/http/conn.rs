//! One client connection as the connection layer moves it between the poller and the
//! workers: the non-blocking socket, the bytes read but not yet used, and a slot in the
//! per-IP table that is given back when the connection is dropped, wherever that happens.
//! Workers wait on the socket with `poll(2)` and a deadline, so no wait is unbounded.

use mio::net::TcpStream;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Open connections of one listener: the total and per client IP.
#[derive(Default)]
pub struct Census {
    pub total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    next_id: AtomicU64,
}

impl Census {
    pub fn of_ip(&self, ip: IpAddr) -> u32 {
        self.per_ip.lock().get(&ip).copied().unwrap_or(0)
    }

    pub fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    fn add(&self, ip: IpAddr) -> u64 {
        self.total.fetch_add(1, Ordering::Relaxed);
        *self.per_ip.lock().entry(ip).or_insert(0) += 1;
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn remove(&self, ip: IpAddr) {
        self.total.fetch_sub(1, Ordering::Relaxed);
        let mut map = self.per_ip.lock();
        if let Some(n) = map.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&ip);
            }
        }
    }
}

/// A client connection.
pub struct Conn {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    /// Unique per listener, for wake-ups of long responses.
    pub id: u64,
    /// Bytes read from the socket and not yet used (the start of the next request).
    pub buf: Vec<u8>,
    /// Requests served on this connection.
    pub served: u32,
    census: Arc<Census>,
}

impl Conn {
    pub fn new(stream: TcpStream, peer: SocketAddr, census: &Arc<Census>) -> Conn {
        let id = census.add(canonical(peer.ip()));
        Conn {
            stream,
            peer,
            id,
            buf: Vec::new(),
            served: 0,
            census: Arc::clone(census),
        }
    }

    /// Reads what is there into `buf`, at most `max` bytes in all. Ok(0) is end of stream.
    pub fn fill(&mut self, max: usize) -> io::Result<usize> {
        let mut scratch = [0u8; 8192];
        let room = max.saturating_sub(self.buf.len()).min(scratch.len());
        if room == 0 {
            return Ok(0);
        }
        let n = self.stream.read(&mut scratch[..room])?;
        self.buf.extend_from_slice(&scratch[..n]);
        Ok(n)
    }

    /// Writes all of `bytes`, waiting for the socket until `deadline`.
    pub fn write_all_until(&mut self, mut bytes: &[u8], deadline: Instant) -> io::Result<()> {
        while !bytes.is_empty() {
            match self.stream.write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.wait(libc::POLLOUT, deadline)?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Waits until the socket is ready for `events` (POLLIN, POLLOUT) or `deadline` passes
    /// (then `TimedOut`).
    pub fn wait(&self, events: libc::c_short, deadline: Instant) -> io::Result<()> {
        wait_fd(self.stream.as_raw_fd(), events, deadline)
    }

    /// Gives unused bytes back to the front of `buf`.
    pub fn unread(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            let mut v = bytes.to_vec();
            v.extend_from_slice(&self.buf);
            self.buf = v;
        }
    }

    /// Frees the read buffer's memory when it holds nothing.
    pub fn shrink(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > 0 {
            self.buf = Vec::new();
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.census.remove(canonical(self.peer.ip()));
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// `poll(2)` on one descriptor until `deadline`.
pub fn wait_fd(fd: i32, events: libc::c_short, deadline: Instant) -> io::Result<()> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        let mut pfd = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r > 0 {
            return Ok(());
        }
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}
