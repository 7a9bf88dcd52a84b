//! Fetch-through: torrents the gateway joins on request (a magnet, a .torrent, an info-hash)
//! to stream their files over HTTP while the swarm holds them. Each one is a download on the
//! `net` loop with nothing wanted until a reader asks ([`Reader::want`], released when the
//! reader is dropped), into `data/cache/<info-hash>/` in the torrent's own layout; what it
//! fetched is seeded while it is there, under the piece cache's byte cap
//! (`fetch.cache_bytes`, evicted least recently used by the loop). A pinned torrent is
//! fetched whole and kept. A magnet waits for its info dict ([`Fetcher::refresh`] turns it
//! into a download once the loop has verified it). The list survives a restart
//! ([`persist`]): every listed torrent is resumed, its cached pieces rechecked. Capped at
//! `fetch.max_torrents` torrents and `fetch.max_streams` readers.

mod persist;

use crate::config::FetchConfig;
use crate::engine::bitfield::Bitfield;
use crate::engine::download::Limits;
use crate::net::disk::Torrent;
use crate::net::download::{DownloadSpec, DownloadStatus, MagnetSpec};
use crate::net::{Command, Notifier};
use crate::proto::bt::magnet::Magnet;
use crate::proto::bt::metainfo::{self, Metainfo};
use crate::proto::hex;
use crate::store::files::TorrentFiles;
use crate::store::layout::Layout;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Peers per fetched torrent.
const MAX_PEERS: usize = 40;
/// Readahead under a reader at most.
const MAX_READAHEAD: u64 = 32 << 20;

/// Where a fetched torrent stands.
pub enum State {
    /// Waiting for the info dict from the swarm.
    Metadata,
    /// After a restart: its cached pieces are being rechecked.
    Checking,
    Ready {
        meta: Arc<Metainfo>,
        files: Arc<TorrentFiles>,
    },
    Failed(String),
}

impl State {
    pub fn name(&self) -> &'static str {
        match self {
            State::Metadata => "metadata",
            State::Checking => "checking",
            State::Ready { .. } => "ready",
            State::Failed(_) => "failed",
        }
    }
}

pub struct Fetched {
    pub info_hash: [u8; 20],
    pub status: Arc<DownloadStatus>,
    pub state: Mutex<State>,
    pub added: Instant,
    pub pinned: AtomicBool,
    /// The sources (trackers, webseeds, `x.pe`) for the download and for the record.
    magnet: Magnet,
}

/// The piece cache's counters as readers see them.
#[derive(Default)]
pub struct CacheCounters {
    /// A reader came to a piece that was on disk already.
    pub hits: AtomicU64,
    /// It had to wait for the swarm.
    pub misses: AtomicU64,
}

pub struct Fetcher {
    net: Notifier,
    cache: PathBuf,
    pub config: FetchConfig,
    torrents: Mutex<HashMap<[u8; 20], Arc<Fetched>>>,
    next_reader: AtomicU64,
    streams: Arc<AtomicUsize>,
    pub counters: CacheCounters,
}

/// Why a torrent cannot be added.
pub struct Refused {
    pub status: u16,
    pub reason: String,
}

fn refused(status: u16, reason: impl Into<String>) -> Refused {
    Refused {
        status,
        reason: reason.into(),
    }
}

/// One stream's hold on a download: the pieces it wants now, released when it is dropped;
/// also its place among `fetch.max_streams`.
pub struct Reader {
    net: Notifier,
    info_hash: [u8; 20],
    id: u64,
    streams: Arc<AtomicUsize>,
}

impl Reader {
    /// These pieces soon, most urgent first (replacing what it wanted before).
    pub fn want(&self, pieces: Vec<u32>) {
        self.net.notify(Command::Want {
            info_hash: self.info_hash,
            reader: self.id,
            pieces,
        });
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.net.notify(Command::Unwant {
            info_hash: self.info_hash,
            reader: self.id,
        });
        self.streams.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Fetcher {
    pub fn new(net: Notifier, cache: PathBuf, config: FetchConfig) -> Fetcher {
        net.notify(Command::CacheCap(config.cache_bytes));
        Fetcher {
            net,
            cache,
            config,
            torrents: Mutex::new(HashMap::new()),
            next_reader: AtomicU64::new(1),
            streams: Arc::new(AtomicUsize::new(0)),
            counters: CacheCounters::default(),
        }
    }

    /// How long a stream waits for metadata or a piece.
    pub fn wait(&self) -> Duration {
        Duration::from_secs(self.config.wait_secs)
    }

    /// Bytes a reader asks for ahead of itself at most: a share of the cache (so the windows
    /// of every stream fit in it), from two pieces to 32 MiB (a stream's window grows to it:
    /// `engine::readers::Readahead`).
    pub fn readahead(&self, piece_length: u64) -> u64 {
        let share = self.config.cache_bytes / (4 * self.config.max_streams.max(1) as u64);
        share.min(MAX_READAHEAD).max(2 * piece_length)
    }

    /// Streams open now.
    pub fn streams(&self) -> usize {
        self.streams.load(Ordering::Acquire)
    }

    /// A place for one more stream of `ih`, or None at `fetch.max_streams`.
    pub fn open_reader(&self, ih: [u8; 20]) -> Option<Reader> {
        let max = self.config.max_streams;
        self.streams
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(Reader {
            net: self.net.clone(),
            info_hash: ih,
            id: self.next_reader.fetch_add(1, Ordering::Relaxed),
            streams: Arc::clone(&self.streams),
        })
    }

    pub fn get(&self, ih: &[u8; 20]) -> Option<Arc<Fetched>> {
        let t = self.torrents.lock().get(ih).cloned()?;
        self.refresh(&t);
        Some(t)
    }

    pub fn list(&self) -> Vec<Arc<Fetched>> {
        let mut all: Vec<Arc<Fetched>> = self.torrents.lock().values().cloned().collect();
        all.sort_by_key(|t| t.added);
        for t in &all {
            self.refresh(t);
        }
        all
    }

    /// Joins a magnet's swarm (the info dict comes later).
    pub fn add_magnet(&self, m: Magnet) -> Result<Arc<Fetched>, Refused> {
        let (t, new) = self.insert(m.clone(), false)?;
        if new {
            persist::save_record(&self.cache, &t.info_hash, &m.to_uri(), false);
            self.join_magnet(&t);
        }
        Ok(t)
    }

    fn join_magnet(&self, t: &Fetched) {
        let m = &t.magnet;
        let peers: Vec<SocketAddr> = m.peers.iter().filter_map(|p| p.parse().ok()).collect();
        self.net.notify(Command::Magnet(Box::new(MagnetSpec {
            info_hash: m.info_hash,
            peers,
            trackers: crate::net::event_loop::magnet_tiers(&m.trackers),
            max_peers: MAX_PEERS,
            status: Arc::clone(&t.status),
        })));
    }

    /// Joins the swarm of a torrent file.
    pub fn add_torrent(&self, meta: Metainfo) -> Result<Arc<Fetched>, Refused> {
        let magnet = Magnet {
            info_hash: meta.info_hash,
            name: Some(meta.info.name.clone()),
            trackers: meta.tiers().into_iter().flatten().collect(),
            webseeds: meta.url_list.clone(),
            ..Default::default()
        };
        let (t, new) = self.insert(magnet, false)?;
        if new {
            let bits = Bitfield::new(meta.info.piece_count() as u32);
            let bytes = meta.info_bytes.clone();
            if let Err(e) = self.start(&t, meta, Vec::new(), bits) {
                self.torrents.lock().remove(&t.info_hash);
                return Err(e);
            }
            persist::save_record(&self.cache, &t.info_hash, &t.magnet.to_uri(), false);
            persist::save_info(&self.cache, &t.info_hash, &bytes);
        }
        Ok(t)
    }

    /// Fetch the torrent whole and keep it (exempt from eviction, kept across restarts).
    pub fn pin(&self, ih: &[u8; 20]) -> Option<Arc<Fetched>> {
        let t = self.get(ih)?;
        if !t.pinned.swap(true, Ordering::SeqCst) {
            persist::save_record(&self.cache, ih, &t.magnet.to_uri(), true);
            // A download not started yet is started pinned (see `start_with`).
            self.net.notify(Command::Pin(*ih));
        }
        Some(t)
    }

    /// Leaves a torrent's swarm and deletes what it cached.
    pub fn remove(&self, ih: &[u8; 20]) -> bool {
        let Some(t) = self.torrents.lock().remove(ih) else {
            return false;
        };
        self.net.notify(Command::Forget(*ih));
        persist::remove(&self.cache, &t.info_hash);
        let dir = self.cache.join(hex::encode(&t.info_hash));
        let _ = std::fs::remove_dir_all(dir);
        true
    }

    fn insert(&self, magnet: Magnet, pinned: bool) -> Result<(Arc<Fetched>, bool), Refused> {
        let ih = magnet.info_hash;
        let mut all = self.torrents.lock();
        if let Some(t) = all.get(&ih) {
            return Ok((Arc::clone(t), false));
        }
        let max = self.config.max_torrents;
        if all.len() >= max {
            return Err(refused(
                429,
                format!("already fetching {max} torrents (fetch.max_torrents); delete one first"),
            ));
        }
        let t = Arc::new(Fetched {
            info_hash: ih,
            status: Arc::new(DownloadStatus::default()),
            state: Mutex::new(State::Metadata),
            added: Instant::now(),
            pinned: AtomicBool::new(pinned),
            magnet,
        });
        all.insert(ih, Arc::clone(&t));
        Ok((t, true))
    }

    /// A magnet whose info dict the loop has verified becomes a download.
    pub fn refresh(&self, t: &Fetched) {
        if !matches!(*t.state.lock(), State::Metadata)
            || !t.status.metadata_ready.load(Ordering::Acquire)
        {
            return;
        }
        let Some(bytes) = t.status.metadata.lock().take() else {
            return;
        };
        let m = &t.magnet;
        let info = match metainfo::parse_info_bytes(&bytes) {
            Ok(i) => i,
            Err(e) => {
                *t.state.lock() = State::Failed(format!("the swarm's metadata is invalid: {e}"));
                return;
            }
        };
        persist::save_info(&self.cache, &t.info_hash, &bytes);
        let meta = Metainfo::from_magnet(t.info_hash, bytes, info, &m.trackers, &m.webseeds);
        let peers = m.peers.iter().filter_map(|p| p.parse().ok()).collect();
        let bits = Bitfield::new(meta.info.piece_count() as u32);
        if let Err(e) = self.start(t, meta, peers, bits) {
            *t.state.lock() = State::Failed(e.reason);
        }
    }

    /// The cache files of a torrent (created sparse where missing).
    fn files(&self, meta: &Metainfo) -> Result<Arc<TorrentFiles>, Refused> {
        let ih_hex = hex::encode(&meta.info_hash);
        let dir = self.cache.join(&ih_hex);
        let layout = Layout::new(&dir, meta.info.clone(), None)
            .map_err(|e| refused(400, format!("unsafe torrent: {e}")))?;
        Ok(Arc::new(
            TorrentFiles::create(layout, Layout::parts_path(&dir, &ih_hex))
                .map_err(|e| refused(500, format!("creating the cache files: {e}")))?,
        ))
    }

    /// Hands the download to the loop (`have`: pieces already verified in the cache).
    fn start(
        &self,
        t: &Fetched,
        meta: Metainfo,
        peers: Vec<SocketAddr>,
        have: Bitfield,
    ) -> Result<(), Refused> {
        let files = self.files(&meta)?;
        self.start_with(t, meta, files, peers, have);
        Ok(())
    }

    fn start_with(
        &self,
        t: &Fetched,
        meta: Metainfo,
        files: Arc<TorrentFiles>,
        peers: Vec<SocketAddr>,
        have: Bitfield,
    ) {
        let pieces = meta.info.piece_count() as u32;
        let torrent = Arc::new(Torrent::download(&meta, Arc::clone(&files)));
        let tiers = meta.tiers();
        *t.status.have.lock() = have.as_wire().to_vec();
        let pinned = t.pinned.load(Ordering::SeqCst);
        self.net.notify(Command::Download(Box::new(DownloadSpec {
            torrent,
            hashes: meta.info.pieces.clone(),
            have,
            priorities: vec![0; pieces as usize],
            peers,
            trackers: tiers,
            webseeds: meta.url_list.clone(),
            info: Some(Arc::new(meta.info.clone())),
            max_peers: MAX_PEERS,
            limits: Limits::default(),
            status: Arc::clone(&t.status),
            stream: true,
            pinned,
        })));
        if !pinned && t.pinned.load(Ordering::SeqCst) {
            // Pinned meanwhile: its Pin may have reached the loop before the download.
            self.net.notify(Command::Pin(t.info_hash));
        }
        *t.state.lock() = State::Ready {
            meta: Arc::new(meta),
            files,
        };
        // Streams that waited for the metadata (or the recheck) look again.
        t.status.wake_all();
    }

    /// After a restart: every torrent listed under `data/cache/` joins again; those whose
    /// info dict was kept are rechecked on a short-lived thread first, then resumed with
    /// the pieces found.
    pub fn resume(self: &Arc<Self>) {
        let records = persist::load(&self.cache, self.config.max_torrents);
        let mut checks = Vec::new();
        for r in records {
            let Ok((t, true)) = self.insert(r.magnet, r.pinned) else {
                continue;
            };
            match r.info {
                Some(bytes) => {
                    *t.state.lock() = State::Checking;
                    checks.push((t, bytes));
                }
                None => self.join_magnet(&t),
            }
        }
        if checks.is_empty() {
            return;
        }
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("fetch-resume".into())
            .spawn(move || {
                for (t, bytes) in checks {
                    me.recheck_and_start(&t, bytes);
                }
            });
        if let Err(e) = spawned {
            log::error!("fetch: starting the resume thread: {e}");
        }
    }

    fn recheck_and_start(&self, t: &Fetched, bytes: Vec<u8>) {
        let m = &t.magnet;
        let info = match metainfo::parse_info_bytes(&bytes) {
            Ok(i) => i,
            Err(e) => {
                *t.state.lock() = State::Failed(format!("the kept info dict is invalid: {e}"));
                return;
            }
        };
        let meta = Metainfo::from_magnet(t.info_hash, bytes, info, &m.trackers, &m.webseeds);
        let files = match self.files(&meta) {
            Ok(f) => f,
            Err(e) => {
                *t.state.lock() = State::Failed(e.reason);
                return;
            }
        };
        let have = crate::store::files::recheck(&meta, &files, None);
        log::info!(
            "fetch {}: resumed with {} of {} pieces{}",
            hex::encode(&t.info_hash),
            have.count(),
            have.len(),
            if t.pinned.load(Ordering::Acquire) {
                " (pinned)"
            } else {
                ""
            }
        );
        let peers = m.peers.iter().filter_map(|p| p.parse().ok()).collect();
        // Deleted while it was rechecked: it stays gone (a DELETE holds the same lock).
        let all = self.torrents.lock();
        if all
            .get(&t.info_hash)
            .is_some_and(|x| std::ptr::eq(Arc::as_ptr(x), t))
        {
            self.start_with(t, meta, files, peers, have);
        }
    }
}
