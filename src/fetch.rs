//! Fetch-through: torrents the gateway joins on request (a magnet, a .torrent, an info-hash)
//! to stream their files over HTTP while the swarm holds them. Each one is a download on the
//! `net` loop with nothing wanted until a reader asks (`Command::Want`), into
//! `data/cache/<info-hash>/` in the torrent's own layout; what it fetched is seeded while it
//! is there. A magnet waits for its info dict ([`Fetched::refresh`] turns it into a download
//! once the loop has verified it). Capped at [`MAX_TORRENTS`].

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
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Torrents joined at once at most.
pub const MAX_TORRENTS: usize = 64;
/// Peers per fetched torrent.
const MAX_PEERS: usize = 40;

/// Where a fetched torrent stands.
pub enum State {
    /// Waiting for the info dict from the swarm.
    Metadata,
    Ready {
        meta: Arc<Metainfo>,
        files: Arc<TorrentFiles>,
    },
    Failed(String),
}

pub struct Fetched {
    pub info_hash: [u8; 20],
    pub status: Arc<DownloadStatus>,
    pub state: Mutex<State>,
    pub added: Instant,
    /// The magnet's sources (for the download once the metadata is in).
    magnet: Option<Magnet>,
}

pub struct Fetcher {
    net: Notifier,
    cache: PathBuf,
    torrents: Mutex<HashMap<[u8; 20], Arc<Fetched>>>,
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

impl Fetcher {
    pub fn new(net: Notifier, cache: PathBuf) -> Fetcher {
        Fetcher {
            net,
            cache,
            torrents: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, ih: &[u8; 20]) -> Option<Arc<Fetched>> {
        let t = self.torrents.lock().get(ih).cloned()?;
        self.refresh(&t);
        Some(t)
    }

    pub fn list(&self) -> Vec<Arc<Fetched>> {
        let all: Vec<Arc<Fetched>> = self.torrents.lock().values().cloned().collect();
        for t in &all {
            self.refresh(t);
        }
        all
    }

    /// Joins a magnet's swarm (the info dict comes later).
    pub fn add_magnet(&self, m: Magnet) -> Result<Arc<Fetched>, Refused> {
        let (t, new) = self.insert(m.info_hash, Some(m.clone()))?;
        if new {
            let peers: Vec<SocketAddr> = m.peers.iter().filter_map(|p| p.parse().ok()).collect();
            self.net.notify(Command::Magnet(Box::new(MagnetSpec {
                info_hash: m.info_hash,
                peers,
                trackers: crate::net::event_loop::magnet_tiers(&m.trackers),
                max_peers: MAX_PEERS,
                status: Arc::clone(&t.status),
            })));
        }
        Ok(t)
    }

    /// Joins the swarm of a torrent file.
    pub fn add_torrent(&self, meta: Metainfo) -> Result<Arc<Fetched>, Refused> {
        let (t, new) = self.insert(meta.info_hash, None)?;
        if new {
            if let Err(e) = self.start(&t, meta, Vec::new()) {
                self.torrents.lock().remove(&t.info_hash);
                return Err(e);
            }
        }
        Ok(t)
    }

    /// Leaves a torrent's swarm and deletes what it cached.
    pub fn remove(&self, ih: &[u8; 20]) -> bool {
        let Some(t) = self.torrents.lock().remove(ih) else {
            return false;
        };
        self.net.notify(Command::Forget(*ih));
        let dir = self.cache.join(hex::encode(&t.info_hash));
        let _ = std::fs::remove_dir_all(dir);
        true
    }

    fn insert(
        &self,
        ih: [u8; 20],
        magnet: Option<Magnet>,
    ) -> Result<(Arc<Fetched>, bool), Refused> {
        let mut all = self.torrents.lock();
        if let Some(t) = all.get(&ih) {
            return Ok((Arc::clone(t), false));
        }
        if all.len() >= MAX_TORRENTS {
            return Err(refused(
                429,
                format!("already fetching {MAX_TORRENTS} torrents; delete one first"),
            ));
        }
        let t = Arc::new(Fetched {
            info_hash: ih,
            status: Arc::new(DownloadStatus::default()),
            state: Mutex::new(State::Metadata),
            added: Instant::now(),
            magnet,
        });
        all.insert(ih, Arc::clone(&t));
        Ok((t, true))
    }

    /// A magnet whose info dict the loop has verified becomes a download.
    fn refresh(&self, t: &Fetched) {
        if !matches!(*t.state.lock(), State::Metadata)
            || !t.status.metadata_ready.load(Ordering::Acquire)
        {
            return;
        }
        let Some(bytes) = t.status.metadata.lock().take() else {
            return;
        };
        let m = t.magnet.clone().unwrap_or_default();
        let info = match metainfo::parse_info_bytes(&bytes) {
            Ok(i) => i,
            Err(e) => {
                *t.state.lock() = State::Failed(format!("the swarm's metadata is invalid: {e}"));
                return;
            }
        };
        let meta = Metainfo::from_magnet(t.info_hash, bytes, info, &m.trackers, &m.webseeds);
        let peers = m.peers.iter().filter_map(|p| p.parse().ok()).collect();
        if let Err(e) = self.start(t, meta, peers) {
            *t.state.lock() = State::Failed(e.reason);
        }
    }

    /// Creates the cache files and hands the download to the loop.
    fn start(&self, t: &Fetched, meta: Metainfo, peers: Vec<SocketAddr>) -> Result<(), Refused> {
        let ih_hex = hex::encode(&meta.info_hash);
        let dir = self.cache.join(&ih_hex);
        let layout = Layout::new(&dir, meta.info.clone(), None)
            .map_err(|e| refused(400, format!("unsafe torrent: {e}")))?;
        let files = Arc::new(
            TorrentFiles::create(layout, Layout::parts_path(&dir, &ih_hex))
                .map_err(|e| refused(500, format!("creating the cache files: {e}")))?,
        );
        let pieces = meta.info.piece_count() as u32;
        let torrent = Arc::new(Torrent::download(&meta, Arc::clone(&files)));
        let tiers = meta.tiers();
        *t.status.have.lock() = Bitfield::new(pieces).as_wire().to_vec();
        self.net.notify(Command::Download(Box::new(DownloadSpec {
            torrent,
            hashes: meta.info.pieces.clone(),
            have: Bitfield::new(pieces),
            priorities: vec![0; pieces as usize],
            peers,
            trackers: tiers,
            webseeds: meta.url_list.clone(),
            info: Some(Arc::new(meta.info.clone())),
            max_peers: MAX_PEERS,
            limits: Limits::default(),
            status: Arc::clone(&t.status),
            stream: true,
        })));
        *t.state.lock() = State::Ready {
            meta: Arc::new(meta),
            files,
        };
        Ok(())
    }

    /// Asks the loop for `pieces`, most urgent first.
    pub fn want(&self, ih: [u8; 20], pieces: Vec<u32>) {
        self.net.notify(Command::Want {
            info_hash: ih,
            pieces,
        });
    }
}
