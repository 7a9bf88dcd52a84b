//! The `net` thread: one mio event loop that owns the peer listener and every peer
//! connection and seeds the stored files (BEP-3, 6, 9, 10, 11). Other threads reach it
//! through a bounded command channel and one waker; piece reads go to the [`disk`] pool.
//!
//! The [`announce`] pool runs the client's blocking network jobs (tracker announces, webseed
//! GETs) on `announce-N` threads.
//!
//! [`Net::start`] spawns the loop and the disk threads; [`Net::notify`] tells it about files
//! stored and deleted and about leechers the tracker saw; [`Net::stop`] closes everything.

pub mod announce;
pub mod choker;
pub mod dialer;
pub mod disk;
pub mod download;
pub mod event_loop;
pub mod outbound;
pub mod stats;

use crate::catalog::HostedIndex;
use crate::config::PeerConfig;
use crate::store::content::ContentStore;
use crate::store::db::Db;
use crate::tracker::Tracker;
use crossbeam_channel::Sender;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Messages to the loop.
#[derive(Debug)]
pub enum Command {
    /// A file was stored: its torrent can be served (and leechers dialed).
    Added([u8; 20]),
    /// A file was deleted: close its connections.
    Removed {
        info_hash: [u8; 20],
        sha256: String,
    },
    /// The tracker saw a new leecher of a hosted torrent.
    Leecher,
    /// Download (then seed) a torrent.
    Download(Box<download::DownloadSpec>),
    /// Fetch a magnet's info dict (see `download::DownloadStatus::metadata`).
    Magnet(Box<download::MagnetSpec>),
    /// Reader `reader` wants these pieces of a download soon (most urgent first), instead of
    /// what it wanted before.
    Want {
        info_hash: [u8; 20],
        reader: u64,
        pieces: Vec<u32>,
    },
    /// The reader is gone (its stream closed): its priorities are released.
    Unwant {
        info_hash: [u8; 20],
        reader: u64,
    },
    /// Fetch a download whole and keep it out of the piece cache (fetch-through pin).
    Pin([u8; 20]),
    /// The fetch-through piece cache's byte cap (`fetch.cache_bytes`).
    CacheCap(u64),
    /// Forget a download (its files are the caller's to delete).
    Forget([u8; 20]),
    /// Peers for a download (from a tracker).
    Peers {
        info_hash: [u8; 20],
        peers: Vec<SocketAddr>,
    },
    /// Start the DHT node on a bound socket.
    Dht(Box<DhtSetup>),
    /// The bootstrap addresses, resolved off the loop.
    DhtBootstrap(Vec<SocketAddr>),
    Stop,
}

/// What the DHT node starts with (see [`Net::start_dht`]).
#[derive(Debug)]
pub struct DhtSetup {
    pub socket: std::net::UdpSocket,
    pub settings: crate::dht::Settings,
    /// Our id and known nodes from `dht.dat`, if any.
    pub id: Option<crate::proto::dht::NodeId>,
    pub known: Vec<crate::proto::dht::compact::CompactNode>,
    /// Where to save the id and good nodes (serve: `data/dht.dat`).
    pub state_file: Option<std::path::PathBuf>,
}

/// What the loop reads from the rest of the gateway.
pub struct Deps {
    /// The catalog's database and content store (None when only downloading).
    pub db: Option<Arc<Db>>,
    pub store: Option<Arc<ContentStore>>,
    pub hosted: HostedIndex,
    pub tracker: Option<Arc<Tracker>>,
}

/// A running peer wire service.
pub struct Net {
    pub addr: SocketAddr,
    pub peer_id: [u8; 20],
    pub stats: Arc<stats::NetStats>,
    commands: Sender<Command>,
    waker: Arc<mio::Waker>,
    alive: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    disk: Option<disk::DiskPool>,
}

/// A random 64-bit number from the standard library's per-process keys.
pub fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// Our peer id: Azureus style `-TG0100-` and 12 random printable bytes.
pub fn new_peer_id() -> [u8; 20] {
    let mut id = *b"-TG0100-000000000000";
    let (a, b) = (random_u64(), random_u64());
    const CHARS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    for (i, slot) in id[8..].iter_mut().enumerate() {
        let r = if i < 6 {
            a >> (i * 10)
        } else {
            b >> ((i - 6) * 10)
        };
        *slot = CHARS[(r % CHARS.len() as u64) as usize];
    }
    id
}

/// The DHT socket's receive buffer asked of the kernel.
pub const DHT_RECV_BUFFER: usize = 2 << 20;

impl Net {
    /// Binds the peer listener (non-blocking, SO_REUSEADDR).
    pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
        let domain = socket2::Domain::for_address(addr);
        let s = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
        s.set_reuse_address(true)?;
        if addr.is_ipv6() {
            let _ = s.set_only_v6(false);
        }
        s.bind(&addr.into())?;
        s.listen(1024)?;
        s.set_nonblocking(true)?;
        Ok(s.into())
    }

    /// Starts the disk threads and the loop on `listener`.
    pub fn start(
        listener: std::net::TcpListener,
        config: PeerConfig,
        deps: Deps,
    ) -> io::Result<Net> {
        let addr = listener.local_addr()?;
        let poll = mio::Poll::new()?;
        let waker = Arc::new(mio::Waker::new(poll.registry(), event_loop::WAKER)?);
        let (done_tx, done_rx) = crossbeam_channel::bounded(4096);
        let wake = {
            let w = Arc::clone(&waker);
            Arc::new(move || {
                let _ = w.wake();
            }) as Arc<dyn Fn() + Send + Sync>
        };
        let disk = disk::DiskPool::start(
            config.disk_threads,
            config.map_cache,
            4096,
            deps.db.clone(),
            deps.store.clone(),
            done_tx.clone(),
            Arc::clone(&wake),
        )?;
        let (commands, cmd_rx) = crossbeam_channel::bounded(1024);
        let stats = Arc::new(stats::NetStats::default());
        let peer_id = new_peer_id();
        let alive = Arc::new(AtomicBool::new(true));
        let mut lp = event_loop::Loop::new(
            poll,
            mio::net::TcpListener::from_std(listener),
            config,
            deps,
            event_loop::Channels {
                commands: cmd_rx,
                done: done_rx,
                done_tx,
                wake,
                jobs: disk.jobs.clone(),
            },
            Arc::clone(&stats),
            peer_id,
        )?;
        let flag = Arc::clone(&alive);
        let thread = std::thread::Builder::new()
            .name("net".into())
            .spawn(move || {
                lp.run();
                flag.store(false, Ordering::Relaxed);
            })?;
        Ok(Net {
            addr,
            peer_id,
            stats,
            commands,
            waker,
            alive,
            thread: Some(thread),
            disk: Some(disk),
        })
    }

    /// Hands a download to the loop (waits for room in the command queue).
    pub fn add_download(&self, spec: download::DownloadSpec) {
        let _ = self.commands.send(Command::Download(Box::new(spec)));
        let _ = self.waker.wake();
    }

    /// Asks the loop for a magnet's info dict (waits for room in the command queue).
    pub fn add_magnet(&self, spec: download::MagnetSpec) {
        let _ = self.commands.send(Command::Magnet(Box::new(spec)));
        let _ = self.waker.wake();
    }

    /// Binds the DHT's UDP socket (non-blocking) with a receive buffer of
    /// [`DHT_RECV_BUFFER`] (or the kernel's `rmem_max`, if lower): a burst from one flooder
    /// then waits for the rate limiter in the buffer instead of crowding out everyone
    /// else's datagrams at the kernel (212 KB, the usual default, holds ~200 small ones).
    ///
    /// `[::]` is bound dual-stack where the platform allows (IPV6_V6ONLY off: IPv4 nodes
    /// then arrive as `::ffff:a.b.c.d`); see [`Net::dht_families`].
    pub fn bind_dht(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
        let domain = socket2::Domain::for_address(addr);
        let s = socket2::Socket::new(domain, socket2::Type::DGRAM, None)?;
        let _ = s.set_recv_buffer_size(DHT_RECV_BUFFER);
        if addr.is_ipv6() && addr.ip().is_unspecified() {
            if let Err(e) = s.set_only_v6(false) {
                log::warn!("dht: {addr} stays IPv6-only (IPV6_V6ONLY: {e})");
            }
        }
        s.bind(&addr.into())?;
        s.set_nonblocking(true)?;
        Ok(s.into())
    }

    /// The address families a bound DHT socket reaches (BEP-32).
    pub fn dht_families(socket: &std::net::UdpSocket) -> crate::dht::Families {
        let only_v6 = socket2::SockRef::from(socket).only_v6().unwrap_or(true);
        match socket.local_addr() {
            Ok(a) => crate::dht::Families::of_socket(a, a.is_ipv6() && only_v6),
            Err(_) => crate::dht::Families::V4,
        }
    }

    /// Starts the DHT node in the loop; `bootstrap` (`host:port` strings) is resolved on a
    /// short-lived thread, never on the loop. A socket bound to a loopback address keeps
    /// only loopback address literals (no DNS, nothing sent off the machine).
    pub fn start_dht(&self, setup: DhtSetup, mut bootstrap: Vec<String>) {
        let families = Self::dht_families(&setup.socket);
        if setup
            .socket
            .local_addr()
            .is_ok_and(|a| a.ip().is_loopback())
        {
            bootstrap.retain(|b| b.parse::<SocketAddr>().is_ok_and(|a| a.ip().is_loopback()));
        }
        let _ = self.commands.send(Command::Dht(Box::new(setup)));
        let _ = self.waker.wake();
        let notifier = self.notifier();
        let spawned = std::thread::Builder::new()
            .name("dht-resolve".into())
            .spawn(move || {
                use std::net::ToSocketAddrs;
                let mut addrs = Vec::new();
                for host in &bootstrap {
                    match host.to_socket_addrs() {
                        Ok(found) => {
                            let fits = found.filter(|a| families.reaches(a));
                            addrs.extend(fits.take(4))
                        }
                        Err(e) => log::warn!("dht: bootstrap host {host}: {e}"),
                    }
                }
                if !addrs.is_empty() {
                    notifier.notify(Command::DhtBootstrap(addrs));
                }
            });
        if let Err(e) = spawned {
            log::warn!("dht: no thread to resolve the bootstrap hosts: {e}");
        }
    }

    /// Sends a command to the loop; dropped (with a debug line) if its queue is full.
    pub fn notify(&self, cmd: Command) {
        if let Err(e) = self.commands.try_send(cmd) {
            log::debug!("peer: command queue full, dropped {:?}", e.into_inner());
        }
        let _ = self.waker.wake();
    }

    /// A handle other threads can use to notify the loop.
    pub fn notifier(&self) -> Notifier {
        Notifier {
            commands: self.commands.clone(),
            waker: Arc::clone(&self.waker),
        }
    }

    /// False once the loop thread has ended unexpectedly.
    pub fn healthy(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    /// Closes every connection and ends the loop and the disk threads.
    pub fn stop(mut self) {
        let _ = self.commands.send(Command::Stop);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(d) = self.disk.take() {
            d.stop();
        }
    }
}

/// Sends commands to the loop from any thread.
#[derive(Clone)]
pub struct Notifier {
    commands: Sender<Command>,
    waker: Arc<mio::Waker>,
}

impl Notifier {
    pub fn notify(&self, cmd: Command) {
        let _ = self.commands.try_send(cmd);
        let _ = self.waker.wake();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn peer_ids_are_azureus_style_and_differ() {
        let a = super::new_peer_id();
        let b = super::new_peer_id();
        assert!(a.starts_with(b"-TG0100-"));
        assert!(a.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-'));
        assert_ne!(a, b);
    }
}
