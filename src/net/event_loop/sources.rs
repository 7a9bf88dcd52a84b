//! The `net` loop's network sources for downloads that are not peer connections: tracker
//! announces and webseed GETs, both run on the `announce-N` pool ([`crate::net::announce`])
//! and answered here. A webseed is a peer of the download engine that has every piece (less
//! the files it answered 404 for) and is never choked but by a `503`: the blocks the engine
//! asks of it are merged into contiguous ranges of at least [`MIN_WEB_BYTES`] where the
//! engine has that much to ask, at most [`WEB_JOBS`] GETs in flight per seed.

use super::leech::Dl;
use super::*;
use crate::engine::trackers::{AnnounceEvent, Outcome};
use crate::engine::webseed::{self, Failure};
use crate::engine::PeerId;
use crate::net::announce::{self, AnnouncePool};
use crate::proto::bt::peer_wire::BlockRef;
use crate::proto::tracker::client::Announce;
use crate::proto::tracker::http::Event as TrackerEvent;

/// Concurrent GETs per webseed.
pub(super) const WEB_JOBS: usize = 4;
/// The smallest GET worth making when more is wanted.
pub(super) const MIN_WEB_BYTES: u64 = 1 << 20;
/// Failures after which a webseed is given up.
const WEB_MAX_FAILURES: u32 = 8;
/// Peers asked of a tracker.
const NUMWANT: u32 = 80;
/// Threads of the announce pool and its queue.
const ANNOUNCE_THREADS: usize = 4;
const ANNOUNCE_QUEUE: usize = 256;

/// One webseed of a download.
pub(super) struct WebSeed {
    pub(super) url: String,
    pub(super) id: PeerId,
    /// Blocks the engine asked for, not yet in a GET.
    pub(super) queue: Vec<BlockRef>,
    /// GETs in flight by request id.
    pub(super) jobs: HashMap<u64, WebJob>,
    /// Busy (503) or failing: no GET before this time.
    pub(super) retry_at_ms: u64,
    pub(super) choked: bool,
    pub(super) failures: u32,
}

/// One GET in flight: the blocks it carries not yet handed to the engine, in torrent order,
/// and the start of a block cut by a chunk boundary.
#[derive(Default)]
pub(super) struct WebJob {
    blocks: std::collections::VecDeque<BlockRef>,
    carry: Vec<u8>,
    carry_at: u64,
}

/// The key naming a download in pool jobs: its info-hash's first 8 bytes.
pub(super) fn key_of(ih: &[u8; 20]) -> u64 {
    u64::from_be_bytes(ih[..8].try_into().expect("8 bytes"))
}

impl Loop {
    /// The pool, started on first use.
    fn pool(&mut self) -> Option<&AnnouncePool> {
        if self.announce.is_none() {
            match AnnouncePool::start(
                ANNOUNCE_THREADS,
                ANNOUNCE_QUEUE,
                self.announce_tx.clone(),
                Arc::clone(&self.ch.wake),
            ) {
                Ok(p) => self.announce = Some(p),
                Err(e) => {
                    log::error!("download: cannot start the announce threads: {e}");
                    return None;
                }
            }
        }
        self.announce.as_ref()
    }

    fn ih_of_key(&self, key: u64) -> Option<[u8; 20]> {
        self.downloads
            .keys()
            .chain(self.magnets.keys())
            .find(|ih| key_of(ih) == key)
            .copied()
    }

    /// Starts the announces that are due, for every download.
    pub(super) fn announce_due(&mut self) {
        let now = now_ms(self.epoch);
        let port = self.listener.local_addr().map_or(0, |a| a.port());
        let peer_id = self.settings.peer_id;
        let mut jobs = Vec::new();
        for (ih, dl) in self.downloads.iter_mut() {
            let uploaded = self.torrents.get(ih).map_or(0, |e| e.uploaded);
            for due in dl.trackers.due(now) {
                jobs.push(announce::Job::Tracker {
                    key: key_of(ih),
                    url: due.url,
                    announce: Announce {
                        info_hash: *ih,
                        peer_id,
                        port,
                        uploaded: uploaded.saturating_sub(dl.uploaded_base),
                        downloaded: dl.engine.counters().downloaded,
                        left: dl.engine.left(),
                        event: match due.event {
                            AnnounceEvent::Started => TrackerEvent::Started,
                            AnnounceEvent::Regular => TrackerEvent::None,
                            AnnounceEvent::Completed => TrackerEvent::Completed,
                            AnnounceEvent::Stopped => TrackerEvent::Stopped,
                        },
                        numwant: NUMWANT,
                        key: key_of(ih) as u32,
                        tracker_id: None,
                    },
                });
            }
        }
        for (ih, mg) in self.magnets.iter_mut() {
            for due in mg.trackers.due(now) {
                jobs.push(announce::Job::Tracker {
                    key: key_of(ih),
                    url: due.url,
                    announce: Announce {
                        info_hash: *ih,
                        peer_id,
                        port,
                        uploaded: 0,
                        downloaded: 0,
                        // Not known yet; a leecher all the same.
                        left: 1,
                        event: match due.event {
                            AnnounceEvent::Started => TrackerEvent::Started,
                            _ => TrackerEvent::None,
                        },
                        numwant: NUMWANT,
                        key: key_of(ih) as u32,
                        tracker_id: None,
                    },
                });
            }
        }
        self.submit_all(jobs);
    }

    fn submit_all(&mut self, jobs: Vec<announce::Job>) {
        if jobs.is_empty() {
            return;
        }
        let Some(pool) = self.pool() else {
            return;
        };
        let mut refused = Vec::new();
        for job in jobs {
            if let Err(job) = pool.submit(job) {
                refused.push(job);
            }
        }
        for job in refused {
            match *job {
                announce::Job::Tracker { key, url, .. } => {
                    let now = now_ms(self.epoch);
                    if let Some(ih) = self.ih_of_key(key) {
                        let why = Err("announce queue full".to_string());
                        if let Some(dl) = self.downloads.get_mut(&ih) {
                            dl.trackers.done(&url, why, now);
                        } else if let Some(mg) = self.magnets.get_mut(&ih) {
                            mg.trackers.done(&url, why, now);
                        }
                    }
                }
                announce::Job::Webseed { key, request } => {
                    self.web_done(key, request.id, Err(Failure::Retry(1)));
                }
            }
        }
    }

    /// Results from the pool.
    pub(super) fn announce_results(&mut self) {
        while let Ok(done) = self.announce_rx.try_recv() {
            match done {
                announce::Done::Tracker { key, url, result } => {
                    let Some(ih) = self.ih_of_key(key) else {
                        continue;
                    };
                    let now = now_ms(self.epoch);
                    let peers = match &result {
                        Ok(a) => a.peers.clone(),
                        Err(_) => Vec::new(),
                    };
                    match &result {
                        Ok(a) => log::debug!("tracker {url}: {} peers", a.peers.len()),
                        Err(e) => log::info!("tracker {url}: {e}"),
                    }
                    let outcome = result.map(|a| Outcome {
                        interval_secs: a.interval,
                        min_interval_secs: a.min_interval,
                        peers: a.peers.len(),
                    });
                    if let Some(dl) = self.downloads.get_mut(&ih) {
                        dl.trackers.done(&url, outcome, now);
                    } else if self.magnets.contains_key(&ih) {
                        let own: Vec<bool> =
                            peers.iter().map(|a| self.is_own_listener(*a)).collect();
                        if let Some(mg) = self.magnets.get_mut(&ih) {
                            mg.trackers.done(&url, outcome, now);
                            for (a, own) in peers.iter().zip(own) {
                                if !own {
                                    mg.peers.add(*a, crate::engine::peers::Source::Tracker);
                                }
                            }
                        }
                    }
                    self.add_peers(ih, &peers, crate::engine::peers::Source::Tracker);
                    self.dial_downloads();
                    self.dial_magnets();
                }
                announce::Done::WebseedData {
                    key,
                    id,
                    offset,
                    bytes,
                } => self.web_data(key, id, offset, bytes),
                announce::Done::Webseed { key, id, result } => self.web_done(key, id, result),
            }
        }
    }

    /// Tells every tracker we stop, waiting a little for the answers (bounded).
    pub(super) fn announce_stopped(&mut self) {
        let port = self.listener.local_addr().map_or(0, |a| a.port());
        let mut jobs = Vec::new();
        for (ih, dl) in self.downloads.iter_mut() {
            for url in dl.trackers.stopping() {
                jobs.push(announce::Job::Tracker {
                    key: key_of(ih),
                    url,
                    announce: Announce {
                        info_hash: *ih,
                        peer_id: self.settings.peer_id,
                        port,
                        uploaded: 0,
                        downloaded: dl.engine.counters().downloaded,
                        left: dl.engine.left(),
                        event: TrackerEvent::Stopped,
                        numwant: 0,
                        key: key_of(ih) as u32,
                        tracker_id: None,
                    },
                });
            }
        }
        let n = jobs.len();
        if n == 0 {
            return;
        }
        self.submit_all(jobs);
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut got = 0;
        while got < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if let Ok(announce::Done::Tracker { .. }) = self.announce_rx.recv_timeout(left) {
                got += 1;
            }
        }
        if let Some(p) = self.announce.take() {
            p.stop();
        }
    }

    /// Engine requests to a webseed peer: queued, then sent as GETs.
    pub(super) fn web_request(&mut self, ih: [u8; 20], id: PeerId, r: BlockRef) -> bool {
        let Some(dl) = self.downloads.get_mut(&ih) else {
            return false;
        };
        let Some(w) = dl.webseeds.iter_mut().find(|w| w.id == id) else {
            return false;
        };
        w.queue.push(r);
        true
    }

    pub(super) fn web_cancel(&mut self, ih: [u8; 20], id: PeerId, r: BlockRef) -> bool {
        let Some(dl) = self.downloads.get_mut(&ih) else {
            return false;
        };
        let Some(w) = dl.webseeds.iter_mut().find(|w| w.id == id) else {
            return false;
        };
        w.queue.retain(|q| *q != r);
        true
    }

    /// Turns queued webseed blocks into GETs (contiguous runs, in torrent order).
    pub(super) fn web_send(&mut self, ih: [u8; 20]) {
        let now = now_ms(self.epoch);
        let Some(dl) = self.downloads.get_mut(&ih) else {
            return;
        };
        let Some(info) = dl.info.clone() else {
            return;
        };
        let key = key_of(&ih);
        let plen = dl.torrent.shape.piece_length;
        let mut jobs = Vec::new();
        for w in dl.webseeds.iter_mut() {
            if w.choked || w.retry_at_ms > now || w.queue.is_empty() {
                continue;
            }
            w.queue
                .sort_by_key(|r| u64::from(r.index) * plen + u64::from(r.begin));
            w.queue.dedup();
            while w.jobs.len() < WEB_JOBS && !w.queue.is_empty() {
                // One run of contiguous blocks; the rest wait for the next GET.
                let mut run = vec![w.queue[0]];
                let mut end = offset(&w.queue[0], plen) + u64::from(w.queue[0].length);
                // Spread what is queued over the free GETs, none under MIN_WEB_BYTES.
                let free = WEB_JOBS - w.jobs.len();
                let share = w
                    .queue
                    .len()
                    .div_ceil(free)
                    .max((MIN_WEB_BYTES / u64::from(crate::engine::BLOCK)) as usize);
                for r in &w.queue[1..] {
                    if run.len() >= share || offset(r, plen) != end {
                        break;
                    }
                    end += u64::from(r.length);
                    run.push(*r);
                }
                w.queue.drain(..run.len());
                let start = offset(&run[0], plen);
                dl.next_web_id += 1;
                let rid = dl.next_web_id;
                match webseed::plan(&info, &w.url, rid, start..end) {
                    Ok(request) => {
                        let job = WebJob {
                            blocks: run.into(),
                            ..WebJob::default()
                        };
                        w.jobs.insert(rid, job);
                        jobs.push(announce::Job::Webseed { key, request });
                    }
                    Err(e) => {
                        log::warn!("webseed {}: {e}", w.url);
                        w.failures = WEB_MAX_FAILURES;
                    }
                }
            }
        }
        self.submit_all(jobs);
    }

    /// Bytes of a GET in flight: every block they complete goes to the engine now.
    fn web_data(&mut self, key: u64, rid: u64, at: u64, bytes: Vec<u8>) {
        let Some(ih) = self.ih_of_key(key) else {
            return;
        };
        let now = now_ms(self.epoch);
        let Some(dl) = self.downloads.get_mut(&ih) else {
            return;
        };
        let plen = dl.torrent.shape.piece_length;
        let Some(w) = dl.webseeds.iter_mut().find(|w| w.jobs.contains_key(&rid)) else {
            return;
        };
        let id = w.id;
        let Some(job) = w.jobs.get_mut(&rid) else {
            return;
        };
        // A block cut by the previous chunk's end is completed first.
        let (data, data_at) = if job.carry.is_empty() {
            (bytes, at)
        } else if job.carry_at + job.carry.len() as u64 == at {
            let mut joined = std::mem::take(&mut job.carry);
            joined.extend_from_slice(&bytes);
            (joined, job.carry_at)
        } else {
            return;
        };
        // A whole piece whose blocks are all this GET's next ones: the engine takes the buffer.
        let data = match whole_piece(&job.blocks, data_at, data.len(), plen) {
            Some(piece) => match dl.engine.piece(id, piece, data, now) {
                Ok(()) => {
                    job.blocks.retain(|r| r.index != piece);
                    return self.download_actions(ih);
                }
                Err(data) => data,
            },
            None => data,
        };
        let data_end = data_at + data.len() as u64;
        while let Some(r) = job.blocks.front().copied() {
            let start = offset(&r, plen);
            let end = start + u64::from(r.length);
            if start < data_at {
                job.blocks.pop_front();
                continue;
            }
            if end > data_end {
                if start < data_end {
                    job.carry = data[(start - data_at) as usize..].to_vec();
                    job.carry_at = start;
                }
                break;
            }
            let rel = (start - data_at) as usize;
            dl.engine
                .block(id, r, &data[rel..rel + r.length as usize], now);
            job.blocks.pop_front();
        }
        self.download_actions(ih);
    }

    fn web_done(&mut self, key: u64, rid: u64, result: Result<(), Failure>) {
        let Some(ih) = self.ih_of_key(key) else {
            return;
        };
        let now = now_ms(self.epoch);
        let Some(dl) = self.downloads.get_mut(&ih) else {
            return;
        };
        let Some(w) = dl.webseeds.iter_mut().find(|w| w.jobs.contains_key(&rid)) else {
            return;
        };
        let left: Vec<BlockRef> = w
            .jobs
            .remove(&rid)
            .map(|j| j.blocks.into())
            .unwrap_or_default();
        let id = w.id;
        match result {
            Ok(()) => {
                w.failures = 0;
                // Nothing is left of a GET that delivered its whole range.
                for r in left {
                    dl.engine.rejected(id, r);
                }
            }
            Err(f) => {
                log::info!("webseed {}: {f}", w.url);
                w.failures += 1;
                let wait = match &f {
                    Failure::Retry(s) => s.saturating_mul(1000),
                    _ => 5_000u64 << w.failures.min(6),
                };
                w.retry_at_ms = now + wait;
                w.choked = true;
                let mut dropped = left;
                dropped.append(&mut w.queue);
                let give_up = w.failures >= WEB_MAX_FAILURES;
                dl.engine.choked(id, &dropped);
                if let Failure::Missing(file) = f {
                    web_file_missing(dl, id, file);
                }
                if give_up {
                    log::warn!("webseed {}: giving up", w_url(dl, id));
                    dl.webseeds.retain(|w| w.id != id);
                    dl.engine.peer_gone(id);
                }
            }
        }
        self.download_actions(ih);
    }

    /// Unchokes webseeds whose wait is over.
    pub(super) fn web_tick(&mut self) {
        let now = now_ms(self.epoch);
        let ihs: Vec<[u8; 20]> = self.downloads.keys().copied().collect();
        for ih in ihs {
            let Some(dl) = self.downloads.get_mut(&ih) else {
                continue;
            };
            let ready: Vec<PeerId> = dl
                .webseeds
                .iter_mut()
                .filter(|w| w.choked && w.retry_at_ms <= now)
                .map(|w| {
                    w.choked = false;
                    w.id
                })
                .collect();
            for id in ready {
                dl.engine.unchoked(id, now);
            }
            self.download_actions(ih);
        }
    }
}

fn w_url(dl: &Dl, id: PeerId) -> String {
    dl.webseeds
        .iter()
        .find(|w| w.id == id)
        .map_or_else(String::new, |w| w.url.clone())
}

/// A webseed lacks a file: the pieces that touch it are no longer asked of it.
fn web_file_missing(dl: &mut Dl, id: PeerId, file: usize) {
    let Some(info) = dl.info.clone() else {
        return;
    };
    let Some(f) = info.files.get(file) else {
        return;
    };
    let plen = info.piece_length.max(1);
    let first = (f.offset / plen) as u32;
    let last = ((f.offset + f.length.max(1) - 1) / plen) as u32;
    let mut bits = dl
        .engine
        .peer_pieces(id)
        .unwrap_or_else(|| crate::engine::bitfield::Bitfield::full(dl.torrent.shape.pieces));
    for p in first..=last.min(dl.torrent.shape.pieces.saturating_sub(1)) {
        bits.clear(p);
    }
    dl.engine.peer_bitfield(id, bits);
}

/// The piece `len` bytes at torrent offset `at` are, when they are exactly one piece whose
/// blocks lead `blocks`.
fn whole_piece(
    blocks: &std::collections::VecDeque<BlockRef>,
    at: u64,
    len: usize,
    piece_length: u64,
) -> Option<u32> {
    let first = blocks.front()?;
    let piece = first.index;
    let covered: u64 = blocks
        .iter()
        .take_while(|r| r.index == piece)
        .map(|r| u64::from(r.length))
        .sum();
    (first.begin == 0 && at == offset(first, piece_length) && covered == len as u64)
        .then_some(piece)
}

fn offset(r: &BlockRef, piece_length: u64) -> u64 {
    u64::from(r.index) * piece_length + u64::from(r.begin)
}
