//! The `net` loop's side of the fetch-through piece cache (`engine::cache::PieceCache`): a
//! verified piece of an unpinned fetch-through download is counted before it is written,
//! and if it does not fit under `fetch.cache_bytes` the least recently used pieces that no
//! reader wants are evicted first. Eviction un-has the piece at once (the engine, the
//! readers' view in `DownloadStatus`, our bitfield on every connection of the torrent), then
//! a `disk-N` job punches the hole; only when that is done may the piece be fetched again,
//! so a late punch can never hit fresh data. Readers' requests touch the pieces they name.
//! A block read for a peer while its piece was evicted is not sent (the read may have run
//! after the punch on another disk thread and seen zeros): every read carries the
//! [`EvictLog`]'s count from when it was asked, and a piece evicted since is refused.

use super::*;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;

/// Evictions remembered (a read older than all of them is refused whatever its piece).
const EVICT_LOG: usize = 4096;

/// The recent evictions in order, numbered.
#[derive(Debug, Default)]
pub(super) struct EvictLog {
    seq: u64,
    log: VecDeque<(u64, [u8; 20], u32)>,
}

impl EvictLog {
    /// Evictions so far.
    pub(super) fn seq(&self) -> u64 {
        self.seq
    }

    fn push(&mut self, ih: [u8; 20], piece: u32) {
        self.seq += 1;
        if self.log.len() >= EVICT_LOG {
            self.log.pop_front();
        }
        self.log.push_back((self.seq, ih, piece));
    }

    /// Whether `piece` of `ih` may have been evicted after the count was `seq`.
    pub(super) fn since(&self, seq: u64, ih: &[u8; 20], piece: u32) -> bool {
        if seq >= self.seq {
            return false;
        }
        if self.log.front().is_none_or(|f| f.0 > seq + 1) {
            return true;
        }
        self.log
            .iter()
            .rev()
            .take_while(|e| e.0 > seq)
            .any(|e| e.1 == *ih && e.2 == piece)
    }
}

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
        self.evict_log.push(ih, piece);
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

#[cfg(test)]
mod tests {
    use super::EvictLog;

    #[test]
    fn reads_older_than_an_eviction_of_their_piece_are_stale() {
        let mut log = EvictLog::default();
        let (a, b) = ([1u8; 20], [2u8; 20]);
        let before = log.seq();
        assert!(!log.since(before, &a, 3), "nothing evicted");
        log.push(a, 3);
        let mid = log.seq();
        log.push(b, 3);
        assert!(log.since(before, &a, 3));
        assert!(!log.since(mid, &a, 3), "asked after that eviction");
        assert!(!log.since(before, &a, 4), "another piece");
        assert!(log.since(mid, &b, 3) && !log.since(log.seq(), &b, 3));
        // Past the log's memory every older read is refused.
        for i in 0..super::EVICT_LOG as u32 {
            log.push(b, 100 + i);
        }
        assert!(log.since(before, &a, 9));
        assert!(!log.since(log.seq() - 1, &a, 9));
    }
}
