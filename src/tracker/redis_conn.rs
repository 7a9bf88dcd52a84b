//! One Redis connection of a lane, speaking RESP2 ([`crate::proto::resp`]) on its own TCP or
//! Unix socket. The redis crate parses the URL (`redis://[user:password@]host:port/db`,
//! `redis+unix:///path?db=N`); this side connects with a deadline, authenticates, selects
//! the database, and then exchanges whole pipelines: one write, reads until every reply is
//! in, and the replies handed back as spans of one shared copy per batch, never parsed into
//! owned values.

use crate::proto::resp::{self, Reply};
use redis::{ConnectionAddr, ConnectionInfo};
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

/// Bytes of the read buffer (grown while a batch's replies are bigger, shrunk after).
const READ_CHUNK: usize = 64 * 1024;

/// Replies to one request's commands: spans of a buffer shared with the rest of its batch.
#[derive(Debug, Clone)]
pub struct Replies {
    buf: Arc<Vec<u8>>,
    spans: Vec<(u32, u32)>,
}

impl Replies {
    /// How many replies there are.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Reply `i` (a missing one reads as an error reply).
    pub fn get(&self, i: usize) -> Reply<'_> {
        match self.spans.get(i) {
            Some(&(a, b)) => resp::read(&self.buf[a as usize..b as usize]),
            None => Reply::Error(b"missing reply"),
        }
    }

    /// Every reply, in order.
    pub fn iter(&self) -> impl Iterator<Item = Reply<'_>> {
        (0..self.len()).map(|i| self.get(i))
    }
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// A connection to Redis.
pub struct Conn {
    stream: Stream,
    buf: Vec<u8>,
}

impl Conn {
    /// Connects to `info`'s Redis within `timeout` (also every later read and write's limit),
    /// then authenticates and selects the database it names.
    pub fn open(info: &ConnectionInfo, timeout: Duration) -> io::Result<Conn> {
        let stream = match &info.addr {
            ConnectionAddr::Tcp(host, port) => {
                let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
                let mut found = None;
                for addr in (host.as_str(), *port).to_socket_addrs()? {
                    match TcpStream::connect_timeout(&addr, timeout) {
                        Ok(s) => {
                            found = Some(s);
                            break;
                        }
                        Err(e) => last = e,
                    }
                }
                let s = found.ok_or(last)?;
                s.set_nodelay(true)?;
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                Stream::Tcp(s)
            }
            ConnectionAddr::Unix(path) => {
                let s = UnixStream::connect(path)?;
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                Stream::Unix(s)
            }
            #[allow(unreachable_patterns)]
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "rediss:// (TLS) is not built in",
                ))
            }
        };
        let mut conn = Conn {
            stream,
            buf: vec![0; READ_CHUNK],
        };
        let r = &info.redis;
        let mut hello = Vec::new();
        let mut count = 0;
        if let Some(pw) = &r.password {
            match &r.username {
                Some(user) => resp::command(&mut hello, &[b"AUTH", user.as_bytes(), pw.as_bytes()]),
                None => resp::command(&mut hello, &[b"AUTH", pw.as_bytes()]),
            }
            count += 1;
        }
        if r.db != 0 {
            resp::command(&mut hello, &[b"SELECT", r.db.to_string().as_bytes()]);
            count += 1;
        }
        if count > 0 {
            let replies = conn.exchange(&hello, &[count])?;
            let refused = replies[0].iter().find_map(|r| r.error());
            if let Some(e) = refused {
                return Err(io::Error::new(io::ErrorKind::PermissionDenied, e));
            }
        }
        Ok(conn)
    }

    /// Sends `packed` (the commands of several requests, `counts[i]` for request i) as one
    /// write and returns each request's replies.
    pub fn exchange(&mut self, packed: &[u8], counts: &[usize]) -> io::Result<Vec<Replies>> {
        match &mut self.stream {
            Stream::Tcp(s) => s.write_all(packed)?,
            Stream::Unix(s) => s.write_all(packed)?,
        }
        let total: usize = counts.iter().sum();
        let mut ends = Vec::with_capacity(total);
        // `buf` stays zeroed up to its length; `filled` bytes of it are this batch's.
        let mut at = 0;
        let mut filled = 0;
        while ends.len() < total {
            // Take every complete reply already read.
            while ends.len() < total {
                match resp::reply_len(&self.buf[at..filled]) {
                    Ok(Some(n)) => {
                        at += n;
                        ends.push(at);
                    }
                    Ok(None) => break,
                    Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
                }
            }
            if ends.len() == total {
                break;
            }
            if self.buf.len() - filled < READ_CHUNK / 4 {
                self.buf.resize(self.buf.len() + READ_CHUNK, 0);
            }
            let got = match &mut self.stream {
                Stream::Tcp(s) => s.read(&mut self.buf[filled..]),
                Stream::Unix(s) => s.read(&mut self.buf[filled..]),
            };
            match got {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "redis closed the connection",
                    ))
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if at != filled {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "redis sent more replies than asked for",
            ));
        }
        let buf = Arc::new(self.buf[..at].to_vec());
        // A batch with big replies grew the buffer: back to its usual size.
        if self.buf.len() > 16 * READ_CHUNK {
            self.buf = vec![0; READ_CHUNK];
        }
        let mut out = Vec::with_capacity(counts.len());
        let mut start = 0;
        let mut k = 0;
        for &n in counts {
            let spans = (k..k + n)
                .map(|i| {
                    let end = ends[i];
                    let span = (start as u32, end as u32);
                    start = end;
                    span
                })
                .collect();
            k += n;
            out.push(Replies {
                buf: Arc::clone(&buf),
                spans,
            });
        }
        Ok(out)
    }
}
