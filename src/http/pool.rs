//! A tiny_http server with a fixed pool of named worker threads, a bounded connection count
//! and idle/slow-client timeouts, and a graceful stop.
//!
//! tiny_http 0.12 spawns a thread per connection with no cap and has no timeouts, and its
//! accept loop stops for good on any accept error, including the EAGAIN that `SO_RCVTIMEO` on
//! a listening socket makes `accept` return on Linux. So the timeouts are not set on the
//! listener: a reaper thread looks at the process's own sockets on the listening port every
//! [`REAP_INTERVAL`] and shuts down those that are idle, too slow, or (idlest first) over the
//! connection cap. A shut-down socket wakes its tiny_http thread, which then exits; so the
//! thread count follows the cap within one interval. Workers also answer 503 with
//! `Retry-After` while the reaper counts more connections than the cap (tiny_http 0.12's own
//! `num_connections` is unimplemented and panics).

use super::reaper::{self, Reaper};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the reaper looks at connections.
pub const REAP_INTERVAL: Duration = Duration::from_millis(100);

/// Limits of one HTTP listener.
#[derive(Debug, Clone)]
pub struct PoolLimits {
    pub workers: usize,
    pub max_connections: usize,
    /// A connection with no traffic for this long is closed.
    pub io_timeout: Duration,
}

/// What a worker does with each request.
pub type Handler = Arc<dyn Fn(tiny_http::Request, &PoolState) + Send + Sync>;

/// What handlers may ask of the pool.
pub struct PoolState {
    pub server: Arc<tiny_http::Server>,
    /// The listening port.
    pub port: u16,
    pub limits: PoolLimits,
    stopping: AtomicBool,
    /// Open client connections, as the reaper last counted them.
    live: Arc<AtomicUsize>,
    reaped: Arc<AtomicU64>,
}

impl PoolState {
    /// True while more clients are connected than the cap allows.
    pub fn overloaded(&self) -> bool {
        self.connections() > self.limits.max_connections
    }

    pub fn connections(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Connections the reaper has closed for idleness or over the cap.
    pub fn reaped(&self) -> u64 {
        self.reaped.load(Ordering::Relaxed)
    }
}

/// A running pool.
pub struct HttpPool {
    pub addr: SocketAddr,
    state: Arc<PoolState>,
    workers: Vec<JoinHandle<()>>,
    reaper: Option<Reaper>,
}

/// Binds `addr` with a deep backlog, SO_REUSEADDR and TCP_NODELAY (Linux copies it to the
/// accepted sockets, which tiny_http gives us no other way to configure; without it the tail
/// of each response can wait for a delayed ACK, which costs milliseconds per webseed range).
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
    Ok(socket.into())
}

impl HttpPool {
    /// Starts `limits.workers` threads named `<name>-N` serving `listener` with `handler`.
    pub fn start(
        name: &str,
        listener: TcpListener,
        limits: PoolLimits,
        handler: Handler,
    ) -> io::Result<HttpPool> {
        let addr = listener.local_addr()?;
        let server = tiny_http::Server::from_listener(listener, None)
            .map_err(|e| io::Error::other(format!("{name}: {e}")))?;
        let reaper = reaper::start(
            &format!("{name}-reaper"),
            addr.port(),
            reaper::Policy {
                max_connections: limits.max_connections,
                idle: limits.io_timeout,
                interval: REAP_INTERVAL,
            },
        )?;
        let state = Arc::new(PoolState {
            server: Arc::new(server),
            port: addr.port(),
            limits: limits.clone(),
            stopping: AtomicBool::new(false),
            live: Arc::clone(&reaper.live),
            reaped: Arc::clone(&reaper.reaped),
        });
        let mut workers = Vec::with_capacity(limits.workers);
        for i in 0..limits.workers {
            let state = Arc::clone(&state);
            let handler = Arc::clone(&handler);
            workers.push(
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn(move || work(&state, &handler))?,
            );
        }
        Ok(HttpPool {
            addr,
            state,
            workers,
            reaper: Some(reaper),
        })
    }

    /// True if every worker is still running.
    pub fn healthy(&self) -> bool {
        self.workers.iter().all(|w| !w.is_finished())
    }

    pub fn state(&self) -> &Arc<PoolState> {
        &self.state
    }

    /// Stops taking requests, lets in-flight ones finish for up to `grace`, then closes the
    /// listener. Returns false if some worker was still busy when the grace ran out.
    pub fn stop(mut self, grace: Duration) -> bool {
        self.state.stopping.store(true, Ordering::SeqCst);
        self.state.server.unblock();
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
        if let Some(r) = self.reaper.take() {
            r.stop();
        }
        clean
    }
}

fn work(state: &PoolState, handler: &Handler) {
    while !state.stopping.load(Ordering::SeqCst) {
        match state.server.recv_timeout(Duration::from_millis(250)) {
            Ok(Some(request)) => {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    handler(request, state)
                }));
                if result.is_err() {
                    log::error!(
                        "a request handler panicked (the client got a 500 unless a reply was sent)"
                    );
                }
            }
            Ok(None) => {}
            Err(e) => {
                // tiny_http's accept loop has ended: nothing more will arrive.
                log::error!("http listener failed: {e}");
                return;
            }
        }
    }
}
