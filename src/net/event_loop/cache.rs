//! The `net` loop's side of the fetch-through piece cache (`engine::cache::PieceCache`): a
//! verified piece of an unpinned fetch-through download is counted before it is written,
//! and if it does not fit under `fetch.cache_bytes` the least recently used pieces that no
//! reader wants are evicted first. Eviction un-has the piece at once (the engine, the
//! readers' view in `DownloadStatus`, our bitfield on every connection of the torrent), then
//! a `disk-N` job punches the hole; only when that is done may the piece be fetched again,
//! so a late punch can never hit fresh data. Readers' requests touch the pieces they name.

use super::*;
use std::sync::atomic::Ordering;

impl Loop {
    /// A verified piece of a cached download goes to the disk: make room, then count it.
    pub(super) fn cache_room(&mut self, ih: [u8; 20], piece: u32) {
        let Some(dl) = self.downloads.get(&ih) else {
            return;
        };
        let len = dl.engine.layout().piece_len(piece);
        let downloads = &self.downloads;
        let victims = self.cache.victims(u64::from(len), |t, p| {
            downloads
                .get(t)
                .is_none_or(|d| d.pinned || d.engine.is_read(p))
        });
        for (t, p) in victims {
            self.evict(t, p);
        }
        if self.cache.used() + u64::from(len) > self.cache.cap() {
            log::debug!("piece cache: every cached piece is being read; over the cap for now");
        }
        self.cache.insert(&ih, piece, len);
        self.cache_gauge();
    }

    /// Brings the cache under its cap (after a restart, or a smaller cap).
    pub(super) fn cache_trim(&mut self) {
        let downloads = &self.downloads;
        let victims = self.cache.victims(0, |t, p| {
            downloads
                .get(t)
                .is_none_or(|d| d.pinned || d.engine.is_read(p))
        });
        for (t, p) in victims {
            self.evict(t, p);
        }
        self.cache_gauge();
    }

    fn evict(&mut self, ih: [u8; 20], piece: u32) {
        let Some(dl) = self.downloads.get_mut(&ih) else {
            return;
        };
        if !dl.engine.evict(piece) {
            return;
        }
        let Some(files) = dl.torrent.files.clone() else {
            return;
        };
        // Readers first see the piece gone, then the count move, and only then is the hole
        // punched (see `DownloadStatus::evictions`).
        *dl.status.have.lock() = dl.engine.have().as_wire().to_vec();
        dl.status.evictions.fetch_add(1, Ordering::SeqCst);
        self.stats.cache_evictions.add(1);
        let offset = u64::from(piece) * dl.torrent.shape.piece_length;
        let len = u64::from(dl.engine.layout().piece_len(piece));
        for c in self.conns.iter_mut().flatten() {
            if c.torrent.as_ref().is_some_and(|t| t.shape.info_hash == ih) {
                c.wire.lost(piece);
            }
        }
        let job = Job::Punch {
            info_hash: ih,
            files,
            piece,
            offset,
            len,
        };
        if let Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) =
            self.ch.jobs.try_send(job)
        {
            self.write_backlog.push_back(job);
        }
    }

    /// An evicted piece's hole is punched: it may be fetched again.
    pub(super) fn punched(&mut self, ih: [u8; 20], piece: u32, result: Result<(), String>) {
        if let Err(e) = result {
            log::warn!("piece cache: releasing piece {piece}: {e}");
        }
        if let Some(dl) = self.downloads.get_mut(&ih) {
            dl.engine.evicted(piece);
            self.download_actions(ih);
        }
    }

    /// Readers named these pieces: the cached ones are the most recently used now.
    pub(super) fn cache_touch(&mut self, ih: [u8; 20], pieces: &[u32]) {
        for &p in pieces {
            self.cache.touch(&ih, p);
        }
    }

    pub(super) fn cache_gauge(&self) {
        self.stats
            .cache_bytes
            .store(self.cache.used(), Ordering::Relaxed);
        self.stats
            .cache_cap
            .store(self.cache.cap(), Ordering::Relaxed);
    }
}
