//! Counters of the peer wire service, written by the `net` thread and read by the HTTP API:
//! totals as atomics, and a per-torrent snapshot the loop refreshes every second.

use crate::hash::Counter;
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// One torrent's peers and transfer, as of the last snapshot.
#[derive(Debug, Clone, Default)]
pub struct TorrentStats {
    pub info_hash: [u8; 20],
    pub peers: usize,
    pub unchoked: usize,
    pub uploaded: u64,
    pub blocks: u64,
    pub metadata_pieces: u64,
    /// Set for a torrent being downloaded: payload bytes fetched and bytes still missing.
    pub download: Option<(u64, u64)>,
}

#[derive(Default)]
pub struct NetStats {
    pub connections: AtomicUsize,
    pub half_open: AtomicUsize,
    pub outgoing: AtomicUsize,
    pub unchoked: AtomicUsize,
    pub queued_bytes: AtomicUsize,
    pub accepted: Counter,
    pub dialed: Counter,
    pub dial_failures: Counter,
    /// Connections refused at accept (caps) or dropped for an unknown torrent.
    pub refused: Counter,
    /// Connections closed for breaking the protocol or its limits.
    pub protocol_errors: Counter,
    pub timeouts: Counter,
    pub bytes_up: Counter,
    pub bytes_down: Counter,
    pub blocks_served: Counter,
    pub blocks_rejected: Counter,
    pub disk_errors: Counter,
    /// The fetch-through piece cache: pieces evicted, bytes cached (pinned torrents not
    /// counted) and the cap.
    pub cache_evictions: Counter,
    pub cache_bytes: AtomicU64,
    pub cache_cap: AtomicU64,
    pub torrents: Mutex<Vec<TorrentStats>>,
    /// The DHT node's `/api/dht/stats` JSON as of the last tick (None: no DHT).
    pub dht: Mutex<Option<Value>>,
}

impl NetStats {
    pub fn get(&self, gauge: &AtomicUsize) -> usize {
        gauge.load(Ordering::Relaxed)
    }

    pub fn set(&self, gauge: &AtomicUsize, v: usize) {
        gauge.store(v, Ordering::Relaxed);
    }

    /// The JSON of `/api/p2p/stats` (torrents sorted by peers, at most `max_torrents`).
    pub fn to_json(&self, max_torrents: usize) -> Value {
        let mut torrents = self.torrents.lock().clone();
        torrents.sort_by(|a, b| b.peers.cmp(&a.peers).then(b.uploaded.cmp(&a.uploaded)));
        let list: Vec<Value> = torrents
            .iter()
            .take(max_torrents)
            .map(|t| {
                json!({
                    "info_hash": crate::proto::hex::encode(&t.info_hash),
                    "peers": t.peers,
                    "unchoked": t.unchoked,
                    "uploaded_bytes": t.uploaded,
                    "blocks_served": t.blocks,
                    "metadata_pieces_served": t.metadata_pieces,
                    "downloading": t.download.is_some_and(|d| d.1 > 0),
                    "downloaded_bytes": t.download.map(|d| d.0),
                    "left_bytes": t.download.map(|d| d.1),
                })
            })
            .collect();
        json!({
            "connections": self.get(&self.connections),
            "half_open": self.get(&self.half_open),
            "outgoing": self.get(&self.outgoing),
            "unchoked": self.get(&self.unchoked),
            "queued_bytes": self.get(&self.queued_bytes),
            "accepted": self.accepted.get(),
            "dialed": self.dialed.get(),
            "dial_failures": self.dial_failures.get(),
            "refused": self.refused.get(),
            "protocol_errors": self.protocol_errors.get(),
            "timeouts": self.timeouts.get(),
            "uploaded_bytes": self.bytes_up.get(),
            "downloaded_bytes": self.bytes_down.get(),
            "blocks_served": self.blocks_served.get(),
            "blocks_rejected": self.blocks_rejected.get(),
            "disk_errors": self.disk_errors.get(),
            "active_torrents": torrents.len(),
            "torrents": list,
        })
    }
}
