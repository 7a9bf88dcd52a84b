//! A download as the rest of the program hands it to the `net` loop ([`DownloadSpec`]) and
//! watches it ([`DownloadStatus`], updated by the loop every tick and on every verified
//! piece, read by the `download` command's progress display and by `/api/p2p/stats`).

use super::disk::Torrent;
use crate::engine::bitfield::Bitfield;
use crate::engine::download::Limits;
use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Everything the loop needs to download (and then seed) one torrent.
pub struct DownloadSpec {
    /// The torrent's shape and its files in the user's directory (`files` is set).
    pub torrent: Arc<Torrent>,
    pub hashes: Vec<[u8; 20]>,
    /// Pieces already verified on disk.
    pub have: Bitfield,
    /// One per piece; 0 = not wanted.
    pub priorities: Vec<u8>,
    /// Addresses to try first (`--peer`, the magnet's `x.pe`).
    pub peers: Vec<SocketAddr>,
    /// Tracker tiers (BEP-12) and webseed URLs (BEP-19).
    pub trackers: Vec<Vec<String>>,
    pub webseeds: Vec<String>,
    /// The parsed info dict (webseed requests need the file list).
    pub info: Option<Arc<crate::proto::bt::metainfo::Info>>,
    pub max_peers: usize,
    pub limits: Limits,
    pub status: Arc<DownloadStatus>,
    /// Fetch-through: pieces are fetched when readers ask for them (see `Command::Want`),
    /// peers are kept while nothing is wanted.
    pub stream: bool,
    /// Fetch-through, pinned: every piece is fetched and none is evicted.
    pub pinned: bool,
}

/// A callback the loop runs once a piece is verified and written.
pub type PieceWaiter = Box<dyn FnOnce() + Send>;

/// Waiters kept per download at most (past it the oldest are woken early; they look again).
pub const MAX_WAITERS: usize = 4096;

impl std::fmt::Debug for DownloadSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DownloadSpec")
            .field("torrent", &self.torrent)
            .field("peers", &self.peers)
            .finish()
    }
}

impl std::fmt::Debug for MagnetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MagnetSpec")
            .field("info_hash", &crate::proto::hex::encode(&self.info_hash))
            .field("peers", &self.peers)
            .finish()
    }
}

/// Live numbers of a download, shared with the threads that display them.
#[derive(Default)]
pub struct DownloadStatus {
    /// Payload bytes received and kept (this run).
    pub downloaded: AtomicU64,
    /// Payload bytes received and thrown away (duplicates, failed pieces, unrequested).
    pub wasted: AtomicU64,
    /// Payload bytes sent to peers (this run).
    pub uploaded: AtomicU64,
    /// Bytes of wanted pieces still missing.
    pub left: AtomicU64,
    /// Pieces verified and on disk.
    pub verified: AtomicUsize,
    pub failed_pieces: AtomicUsize,
    pub peers: AtomicUsize,
    pub seeds: AtomicUsize,
    /// Addresses known to dial.
    pub known_peers: AtomicUsize,
    /// Every wanted piece is verified and written.
    pub complete: AtomicBool,
    /// A failure that ends the download (a disk write failed).
    pub error: Mutex<Option<String>>,
    /// Verified pieces, wire-order bits (for resume data).
    pub have: Mutex<Vec<u8>>,
    pub banned: Mutex<Vec<SocketAddr>>,
    /// Each tracker's last outcome (URL, text), for messages.
    pub trackers: Mutex<Vec<(String, String)>>,
    /// A magnet's verified info dict, once fetched (then `metadata_ready`).
    pub metadata: Mutex<Option<Vec<u8>>>,
    pub metadata_ready: AtomicBool,
    /// Readers waiting for pieces (fetch-through streams) until their deadlines;
    /// [`METADATA`] for the info dict.
    pub waiters: Mutex<Vec<(u32, Instant, PieceWaiter)>>,
    /// Pieces the piece cache evicted (a reader compares it around a read: a change means
    /// the bytes it read may be a hole).
    pub evictions: AtomicU64,
    /// Fetch-through readers with pieces wanted, and the distinct pieces they want.
    pub readers: AtomicUsize,
    pub wanted_pieces: AtomicUsize,
    /// Rates and the peer list, copied out by the loop once a tick.
    pub report: Mutex<Report>,
}

/// Most peers a [`Report`] lists (the download's peer list cap is usually lower).
pub const MAX_REPORTED_PEERS: usize = 200;

/// A download's rates and peers as the API shows them.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Payload bytes per second, smoothed over ticks.
    pub rate_down: u64,
    pub rate_up: u64,
    pub peers: Vec<PeerRow>,
    /// The last sample: when, bytes down, bytes up.
    pub sampled: Option<(Instant, u64, u64)>,
}

/// One peer of a download: from the peer list (ranked), the engine (rate) or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRow {
    /// `ip:port`, or a webseed's URL.
    pub addr: String,
    /// `manual`, `tracker`, `dht`, `incoming`, `pex` or `webseed`.
    pub source: &'static str,
    pub failures: u32,
    /// `connected`, `dialing`, `backoff`, `banned` or `known` (may be dialed).
    pub state: &'static str,
    /// Payload bytes per second from it.
    pub rate_down: u64,
    pub choking: bool,
    pub snubbed: bool,
    pub in_flight: usize,
    pub pieces: usize,
    /// Its place in the dial order (1 first) and the ranking behind it (reasons are built
    /// from it when asked); None for peers outside the list (webseeds, incoming).
    pub rank: Option<usize>,
    pub ranked: Option<crate::engine::peers::Ranked>,
}

/// The waiter "piece" that stands for a magnet's info dict.
pub const METADATA: u32 = u32::MAX;

/// A magnet link whose info dict the loop fetches from peers (BEP-9).
pub struct MagnetSpec {
    pub info_hash: [u8; 20],
    pub peers: Vec<SocketAddr>,
    pub trackers: Vec<Vec<String>>,
    pub max_peers: usize,
    pub status: Arc<DownloadStatus>,
}

impl DownloadStatus {
    /// Whether `piece` is verified and on disk.
    pub fn has(&self, piece: u32) -> bool {
        self.have
            .lock()
            .get((piece / 8) as usize)
            .is_some_and(|b| b & (0x80 >> (piece % 8)) != 0)
    }

    /// Runs `wake` once `piece` is had (at once if it already is), or at `deadline` (the
    /// loop's tick calls [`DownloadStatus::wake_expired`]). `METADATA`: once the magnet's
    /// info dict is in.
    pub fn wait_for(&self, piece: u32, deadline: Instant, wake: PieceWaiter) {
        let early = {
            let mut w = self.waiters.lock();
            let early = if w.len() >= MAX_WAITERS {
                Some(w.remove(0).2)
            } else {
                None
            };
            w.push((piece, deadline, wake));
            early
        };
        if let Some(f) = early {
            f();
        }
        let ready = if piece == METADATA {
            self.metadata_ready.load(Ordering::Acquire)
        } else {
            self.has(piece)
        };
        if ready {
            self.wake_piece(piece);
        }
    }

    /// Runs the waiters of `piece`.
    pub fn wake_piece(&self, piece: u32) {
        self.wake_where(|p, _| p == piece);
    }

    /// Runs the waiters whose deadline has passed.
    pub fn wake_expired(&self, now: Instant) {
        self.wake_where(|_, d| d <= now);
    }

    /// Runs every waiter (the download is gone, or the metadata arrived).
    pub fn wake_all(&self) {
        self.wake_where(|_, _| true);
    }

    fn wake_where(&self, pick: impl Fn(u32, Instant) -> bool) {
        let ready: Vec<PieceWaiter> = {
            let mut w = self.waiters.lock();
            let mut ready = Vec::new();
            let mut i = 0;
            while i < w.len() {
                if pick(w[i].0, w[i].1) {
                    ready.push(w.swap_remove(i).2);
                } else {
                    i += 1;
                }
            }
            ready
        };
        for f in ready {
            f();
        }
    }

    /// Pieces verified and on disk now.
    pub fn cached_pieces(&self) -> usize {
        self.have
            .lock()
            .iter()
            .map(|b| b.count_ones() as usize)
            .sum()
    }

    pub fn is_complete(&self) -> bool {
        self.complete.load(Ordering::Acquire)
    }

    pub fn error(&self) -> Option<String> {
        self.error.lock().clone()
    }

    pub fn get(&self, n: &AtomicU64) -> u64 {
        n.load(Ordering::Relaxed)
    }

    pub fn count(&self, n: &AtomicUsize) -> usize {
        n.load(Ordering::Relaxed)
    }
}
