//! The connection reaper: closes idle and excess client connections of one listening port,
//! which tiny_http cannot do itself (see `pool`).
//!
//! Every pass lists this process's socket descriptors, keeps the connected TCP sockets whose
//! local port is the listener's, reads each one's last-activity times from `TCP_INFO`, and
//! `shutdown`s those idle for longer than the policy allows, then the idlest ones while more
//! remain than the cap. Shutting down (not closing) leaves the descriptor to its owner: the
//! blocked read or write in the owning tiny_http thread returns, and the thread ends.

use std::io;
use std::mem::size_of;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// What the reaper enforces.
#[derive(Debug, Clone)]
pub struct Policy {
    pub max_connections: usize,
    pub idle: Duration,
    pub interval: Duration,
}

/// A running reaper thread.
pub struct Reaper {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
    /// Connections shut down so far.
    pub reaped: Arc<AtomicU64>,
    /// Live connections counted by the last pass (what stays open after it).
    pub live: Arc<AtomicUsize>,
}

impl Reaper {
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.thread().unpark();
        let _ = self.handle.join();
    }
}

pub fn start(name: &str, port: u16, policy: Policy) -> io::Result<Reaper> {
    let stop = Arc::new(AtomicBool::new(false));
    let reaped = Arc::new(AtomicU64::new(0));
    let live = Arc::new(AtomicUsize::new(0));
    let (s, r, l) = (Arc::clone(&stop), Arc::clone(&reaped), Arc::clone(&live));
    let handle = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let (n, open) = reap_once(port, &policy);
                l.store(open, Ordering::Relaxed);
                if n > 0 {
                    log::debug!("reaper closed {n} connections on port {port}");
                    r.fetch_add(n as u64, Ordering::Relaxed);
                }
                std::thread::park_timeout(policy.interval);
            }
        })?;
    Ok(Reaper {
        stop,
        handle,
        reaped,
        live,
    })
}

/// One pass; returns how many connections were shut down and how many stay open.
pub fn reap_once(port: u16, policy: &Policy) -> (usize, usize) {
    let mut conns: Vec<(RawFd, u32)> = client_sockets(port)
        .into_iter()
        .filter_map(|fd| idle_ms(fd).map(|ms| (fd, ms)))
        .collect();
    let idle_limit = policy.idle.as_millis().min(u32::MAX as u128) as u32;
    let mut closed = 0;
    conns.retain(|&(fd, ms)| {
        if ms >= idle_limit {
            shut(fd);
            closed += 1;
            false
        } else {
            true
        }
    });
    if conns.len() > policy.max_connections {
        conns.sort_unstable_by_key(|&(_, ms)| std::cmp::Reverse(ms));
        let excess = conns.len() - policy.max_connections;
        for &(fd, _) in &conns[..excess] {
            shut(fd);
            closed += 1;
        }
        conns.drain(..excess);
    }
    (closed, conns.len())
}

fn shut(fd: RawFd) {
    // SAFETY: shutdown on a descriptor number has no memory effects; at worst the number was
    // reused for another socket since it was inspected and that connection is shed instead.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

/// True if the connection from `peer` to local `port` is no longer established: the client
/// hung up (CLOSE_WAIT), the reaper shut it down (FIN_WAIT), or it is gone altogether.
///
/// tiny_http's chunked decoder reports a body cut off mid-chunk as a normal end, but such an
/// end can only come from a closed connection, while a complete body leaves the connection
/// established until the response is sent: this tells the two apart. (A client that sends
/// a whole chunked body and then half-closes its side is read as cut off too.)
pub fn peer_gone(port: u16, peer: std::net::SocketAddr) -> bool {
    let Some(fd) = client_sockets(port)
        .into_iter()
        .find(|&fd| peer_addr(fd) == Some(peer))
    else {
        return true;
    };
    tcp_info(fd).is_none_or(|info| info.tcpi_state != TCP_ESTABLISHED)
}

/// Descriptors of connected TCP sockets whose local port is `port`.
fn client_sockets(port: u16) -> Vec<RawFd> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let fd: RawFd = e.file_name().to_str()?.parse().ok()?;
        let target = std::fs::read_link(e.path()).ok()?;
        target
            .to_str()?
            .starts_with("socket:")
            .then_some(fd)
            .filter(|&fd| local_port(fd) == Some(port) && has_peer(fd))
    })
    .collect()
}

fn local_port(fd: RawFd) -> Option<u16> {
    sock_addr(fd, libc::getsockname).map(|a| a.port())
}

fn has_peer(fd: RawFd) -> bool {
    peer_addr(fd).is_some()
}

fn peer_addr(fd: RawFd) -> Option<std::net::SocketAddr> {
    sock_addr(fd, libc::getpeername)
}

type AddrQuery = unsafe extern "C" fn(i32, *mut libc::sockaddr, *mut libc::socklen_t) -> i32;

/// The local or peer address of a socket (`getsockname` or `getpeername`).
fn sock_addr(fd: RawFd, query: AddrQuery) -> Option<std::net::SocketAddr> {
    // SAFETY: `addr` is a zeroed sockaddr_storage and `len` its size; the kernel writes at
    // most that, and the family field says which sockaddr type it holds.
    unsafe {
        let mut addr: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        if query(fd, &mut addr as *mut _ as *mut libc::sockaddr, &mut len) != 0 {
            return None;
        }
        match i32::from(addr.ss_family) {
            libc::AF_INET => {
                let a = &*(&addr as *const _ as *const libc::sockaddr_in);
                let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                Some((ip, u16::from_be(a.sin_port)).into())
            }
            libc::AF_INET6 => {
                let a = &*(&addr as *const _ as *const libc::sockaddr_in6);
                let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
                Some((ip, u16::from_be(a.sin6_port)).into())
            }
            _ => None,
        }
    }
}

/// `tcpi_state` of an established connection (linux/tcp_states.h).
const TCP_ESTABLISHED: u8 = 1;

/// Milliseconds since an established connection last received or sent data.
fn idle_ms(fd: RawFd) -> Option<u32> {
    let info = tcp_info(fd)?;
    // Only live connections count: shut-down ones wait for their owner to close them.
    (info.tcpi_state == TCP_ESTABLISHED)
        .then(|| info.tcpi_last_data_recv.min(info.tcpi_last_data_sent))
}

fn tcp_info(fd: RawFd) -> Option<libc::tcp_info> {
    // SAFETY: `info` is a zeroed tcp_info and `len` holds its size; the kernel writes at most that.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
        let ok = libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            &mut info as *mut _ as *mut libc::c_void,
            &mut len,
        ) == 0;
        ok.then_some(info)
    }
}

/// Raises the soft open-files limit to the hard limit (capped), since running out of
/// descriptors would stop tiny_http's accept loop for good. Returns the new soft limit.
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn sheds_idle_and_excess_connections() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let clients: Vec<TcpStream> = (0..5)
            .map(|_| TcpStream::connect(listener.local_addr().unwrap()).unwrap())
            .collect();
        let accepted: Vec<TcpStream> = (0..5).map(|_| listener.accept().unwrap().0).collect();
        let policy = Policy {
            max_connections: 3,
            idle: Duration::from_secs(3600),
            interval: Duration::from_millis(10),
        };
        assert_eq!(client_sockets(port).len(), 5, "accepted sockets are found");
        assert_eq!(reap_once(port, &policy), (2, 3), "two over the cap");
        let policy = Policy {
            idle: Duration::ZERO,
            ..policy
        };
        assert_eq!(reap_once(port, &policy), (3, 0), "the three left are idle");
        let again = reap_once(port, &policy);
        assert_eq!(again, (0, 0), "shut-down ones no longer count");
        // The shut-down sockets read EOF on the client side.
        let mut buf = [0u8; 1];
        for mut c in clients {
            assert_eq!(c.read(&mut buf).unwrap(), 0);
        }
        drop(accepted);
    }
}
