//! The `net` loop's downloading half: each download's [`engine::download::Download`] is fed
//! what its connections report (pieces, chokes, blocks, rejects, departures), and the
//! actions it returns are carried out here: requests and cancels on the wire, hash checks on
//! the rayon pool, writes on the `disk-N` threads, `have`s to every peer of the torrent,
//! peers dropped or banned. Each tick also dials peers from the download's peer list.
//!
//! [`engine::download::Download`]: crate::engine::download::Download

mod report;

use super::*;
use crate::engine::bitfield::Bitfield;
use crate::engine::download::{Action, Download};
use crate::engine::peers::{Observed, PeerList, Source};
use crate::engine::{PeerId, BLOCK};
use crate::net::download::{DownloadSpec, DownloadStatus};
use sha1::{Digest, Sha1};
use std::sync::atomic::Ordering;

/// Addresses kept per download.
const PEER_LIST_CAP: usize = 2000;

pub(super) struct Dl {
    pub(super) engine: Download,
    pub(super) torrent: Arc<Torrent>,
    pub(super) status: Arc<DownloadStatus>,
    pub(super) peers: PeerList,
    /// Engine peer ids to connection keys.
    pub(super) ids: HashMap<PeerId, u64>,
    pub(super) max_peers: usize,
    pub(super) complete: bool,
    /// Uploaded bytes when the download was added (the entry counts from earlier).
    pub(super) uploaded_base: u64,
    pub(super) trackers: crate::engine::trackers::Trackers,
    pub(super) webseeds: Vec<super::sources::WebSeed>,
    pub(super) info: Option<Arc<crate::proto::bt::metainfo::Info>>,
    pub(super) next_web_id: u64,
    pub(super) stream: bool,
    /// Fetch-through, pinned: fetched whole, outside the piece cache.
    pub(super) pinned: bool,
}

impl Loop {
    pub(super) fn add_download(&mut self, spec: DownloadSpec) {
        let t = spec.torrent;
        let ih = t.shape.info_hash;
        let shape = &t.shape;
        let layout = crate::engine::picker::Layout {
            piece_count: shape.pieces,
            piece_length: shape.piece_length as u32,
            total: shape.total,
        };
        let mut engine = Download::new(
            layout,
            spec.hashes,
            spec.have,
            &spec.priorities,
            spec.limits,
            super::super::random_u64(),
        );
        let mut peers = PeerList::new(PEER_LIST_CAP, None);
        for a in spec.peers {
            peers.add(a, Source::User);
        }
        let now = now_ms(self.epoch);
        let webseeds: Vec<super::sources::WebSeed> = spec
            .webseeds
            .iter()
            .filter(|_| spec.info.is_some())
            .map(|url| super::sources::WebSeed {
                url: url.clone(),
                id: engine.webseed_added(now),
                queue: Vec::new(),
                jobs: HashMap::new(),
                retry_at_ms: 0,
                choked: false,
                failures: 0,
            })
            .collect();
        if spec.pinned {
            engine.want_all();
        }
        let complete = engine.is_done();
        spec.status.complete.store(complete, Ordering::Release);
        spec.status.left.store(engine.left(), Ordering::Relaxed);
        *spec.status.have.lock() = engine.have().as_wire().to_vec();
        self.req2.insert(mse::req2_hash(&ih), ih);
        let e = self.torrents.entry(ih).or_insert_with(|| Entry {
            torrent: Arc::clone(&t),
            peers: 0,
            uploaded: 0,
            blocks: 0,
            metadata_pieces: 0,
            idle_since: None,
        });
        let uploaded_base = e.uploaded;
        log::info!(
            "download {}: {} pieces, {} to fetch, {} peers to try",
            crate::proto::hex::encode(&ih),
            shape.pieces,
            engine.left(),
            peers.len()
        );
        self.downloads.insert(
            ih,
            Dl {
                engine,
                torrent: t,
                status: spec.status,
                peers,
                ids: HashMap::new(),
                max_peers: spec.max_peers.max(1),
                complete,
                uploaded_base,
                trackers: crate::engine::trackers::Trackers::new(
                    spec.trackers,
                    super::super::random_u64(),
                ),
                webseeds,
                info: spec.info,
                next_web_id: 0,
                stream: spec.stream,
                pinned: spec.pinned,
            },
        );
        if spec.stream && !spec.pinned {
            // Pieces found on disk (a restart) count against the cache at once.
            if let Some(dl) = self.downloads.get(&ih) {
                for p in dl.engine.have().iter() {
                    let len = dl.engine.layout().piece_len(p);
                    self.cache.insert(&ih, p, len);
                }
            }
            self.cache_trim();
        }
        self.download_actions(ih);
        self.announce_due();
        self.dht_download_started(ih);
        self.dial_downloads();
    }

    /// Whether `a` is our own listener: its address, or a loopback address with its port when
    /// it listens on every address (the DHT and trackers hand us back our own announces).
    pub(super) fn is_own_listener(&self, a: SocketAddr) -> bool {
        self.listener.local_addr().is_ok_and(|l| {
            l == a || (l.port() == a.port() && l.ip().is_unspecified() && a.ip().is_loopback())
        })
    }

    /// Adds addresses to a download's peer list (a tracker answer, PEX).
    pub(super) fn add_peers(&mut self, ih: [u8; 20], addrs: &[SocketAddr], source: Source) {
        let own: Vec<bool> = addrs.iter().map(|a| self.is_own_listener(*a)).collect();
        if let Some(dl) = self.downloads.get_mut(&ih) {
            for (&a, own) in addrs.iter().zip(own) {
                if !own && !dl.engine.is_banned(a) {
                    dl.peers.add(a, source);
                }
            }
        }
    }

    /// Our bitfield for a download's new connection (before its handshake completes).
    pub(super) fn ours_for(&self, ih: &[u8; 20]) -> Option<Vec<u8>> {
        self.downloads
            .get(ih)
            .map(|dl| dl.engine.have().as_wire().to_vec())
    }

    /// A connection of a download is established: the engine learns of it.
    pub(super) fn download_peer_added(&mut self, slot: usize) {
        let key = self.key(slot);
        let now = now_ms(self.epoch);
        let Some(c) = self.conns[slot].as_mut() else {
            return;
        };
        let Some(ih) = c.torrent.as_ref().map(|t| t.shape.info_hash) else {
            return;
        };
        let Some(dl) = self.downloads.get_mut(&ih) else {
            return;
        };
        if dl.engine.is_banned(c.addr) {
            return self.close(slot, "banned peer", false);
        }
        let id = dl.engine.peer_added(c.addr, now);
        c.dl = Some(id);
        dl.ids.insert(id, key);
        if let Some(l) = c.listen {
            dl.peers.connected(l);
        } else if c.outgoing {
            dl.peers.connected(c.addr);
        }
    }

    /// An incoming connection of a download told us its listen port: that address joins the
    /// peer list (once; a source that named it too keeps the better rank) as connected.
    pub(super) fn incoming_listens(&mut self, slot: usize) {
        let Some(c) = self.conns[slot].as_ref().filter(|c| !c.outgoing) else {
            return;
        };
        let (Some(l), Some(ih)) = (c.listen, c.torrent.as_ref().map(|t| t.shape.info_hash)) else {
            return;
        };
        if self.is_own_listener(l) {
            return;
        }
        if let Some(dl) = self.downloads.get_mut(&ih) {
            if !dl.engine.is_banned(l) && dl.peers.add(l, Source::Incoming) {
                dl.peers.connected(l);
            }
        }
    }

    /// What the engine measured of each connected peer goes to the peer list (its ranking).
    fn observe_peers(&mut self, ih: [u8; 20]) {
        let Some(dl) = self.downloads.get(&ih) else {
            return;
        };
        let keys: Vec<(PeerId, u64)> = dl.ids.iter().map(|(&id, &k)| (id, k)).collect();
        let mut addrs: Vec<(PeerId, SocketAddr)> = Vec::with_capacity(keys.len());
        for (id, key) in keys {
            let Some(slot) = self.by_key(key) else {
                continue;
            };
            let c = self.conns[slot].as_ref().expect("by key");
            if let Some(a) = if c.outgoing { Some(c.addr) } else { c.listen } {
                addrs.push((id, a));
            }
        }
        let Some(dl) = self.downloads.get_mut(&ih) else {
            return;
        };
        let rates = dl.engine.peer_rates();
        for (id, addr) in addrs {
            if let Some(r) = rates.iter().find(|r| r.id == id) {
                let seen = Observed {
                    rate: r.rate,
                    queue_ms: r.queue_ms,
                    hash_failures: r.hash_failures,
                };
                dl.peers.observe(addr, seen);
            }
        }
    }

    /// A download's connection closed.
    pub(super) fn download_peer_gone(&mut self, c: &Conn, failed: bool) {
        let Some(ih) = c.torrent.as_ref().map(|t| t.shape.info_hash) else {
            return;
        };
        let now = now_ms(self.epoch);
        let Some(dl) = self.downloads.get_mut(&ih) else {
            return;
        };
        if let Some(id) = c.dl {
            dl.ids.remove(&id);
            dl.engine.peer_gone(id);
        }
        let addr = if c.outgoing { Some(c.addr) } else { c.listen };
        if let Some(a) = addr {
            dl.peers.disconnected(a, failed, now);
        }
        self.download_actions(ih);
    }

    /// Feeds one connection event to its download. True if it was a download's event.
    pub(super) fn download_event(&mut self, slot: usize, ev: &Event) -> bool {
        let now = now_ms(self.epoch);
        let Some(c) = self.conns[slot].as_ref() else {
            return false;
        };
        let (Some(id), Some(ih)) = (c.dl, c.torrent.as_ref().map(|t| t.shape.info_hash)) else {
            return false;
        };
        let Some(dl) = self.downloads.get_mut(&ih) else {
            return false;
        };
        let e = &mut dl.engine;
        match ev {
            Event::PeerHave(p) => e.peer_have(id, *p),
            Event::PeerBitfield => {
                let n = e.layout().piece_count;
                let bits = c.wire.peer_bits();
                let bf = if bits.is_empty() {
                    Bitfield::new(n)
                } else {
                    match Bitfield::from_wire(bits, n) {
                        Some(b) => b,
                        None => Bitfield::full(n),
                    }
                };
                e.peer_bitfield(id, bf);
            }
            Event::Choked { dropped } => e.choked(id, dropped),
            Event::Unchoked => e.unchoked(id, now),
            Event::Block { block, data } => e.block(id, *block, data, now),
            Event::Rejected(b) => e.rejected(id, *b),
            Event::Unrequested(b) => e.unrequested(id, b.length),
            Event::ExtHandshake => {
                if let Some(q) = c.wire.peer().ext.reqq {
                    e.peer_reqq(id, q);
                }
                // The seeding side reads it too (the listen port).
                return false;
            }
            _ => return false,
        }
        self.download_actions(ih);
        true
    }

    /// Carries out what a download's engine decided, until it decides nothing more.
    pub(super) fn download_actions(&mut self, ih: [u8; 20]) {
        let mut touched = HashSet::new();
        for _ in 0..64 {
            let Some(dl) = self.downloads.get_mut(&ih) else {
                return;
            };
            let actions = dl.engine.take_actions();
            if actions.is_empty() {
                break;
            }
            for a in actions {
                self.download_action(ih, a, &mut touched);
            }
        }
        self.web_send(ih);
        for slot in touched {
            self.flush(slot);
        }
    }

    fn slot_of(&mut self, ih: &[u8; 20], id: PeerId) -> Option<usize> {
        let key = *self.downloads.get(ih)?.ids.get(&id)?;
        self.by_key(key)
    }

    fn download_action(&mut self, ih: [u8; 20], a: Action, touched: &mut HashSet<usize>) {
        match a {
            Action::Interested(id, yes) => {
                if let Some(slot) = self.slot_of(&ih, id) {
                    let c = self.conns[slot].as_mut().expect("by key");
                    c.wire.set_interested(yes);
                    touched.insert(slot);
                }
            }
            Action::Request(id, r) => {
                if let Some(slot) = self.slot_of(&ih, id) {
                    let c = self.conns[slot].as_mut().expect("by key");
                    c.wire.request(r);
                    touched.insert(slot);
                } else {
                    self.web_request(ih, id, r);
                }
            }
            Action::Cancel(id, r) => {
                if let Some(slot) = self.slot_of(&ih, id) {
                    let c = self.conns[slot].as_mut().expect("by key");
                    c.wire.cancel(r);
                    touched.insert(slot);
                } else {
                    self.web_cancel(ih, id, r);
                }
            }
            Action::Close(id, why) => {
                if let Some(slot) = self.slot_of(&ih, id) {
                    touched.remove(&slot);
                    self.close(slot, &why, false);
                }
            }
            Action::Verify {
                piece,
                data,
                blocks,
            } => {
                let Some(expected) = self
                    .downloads
                    .get(&ih)
                    .and_then(|d| d.engine.piece_hash(piece))
                else {
                    return;
                };
                let done = self.ch.done_tx.clone();
                let wake = Arc::clone(&self.ch.wake);
                rayon::spawn(move || {
                    let ok = Sha1::digest(&data).as_slice() == expected;
                    let blocks = (blocks || !ok).then(|| {
                        data.chunks(BLOCK as usize)
                            .map(|c| Sha1::digest(c).into())
                            .collect()
                    });
                    let _ = done.send(Done::Hashed {
                        info_hash: ih,
                        piece,
                        data,
                        ok,
                        blocks,
                    });
                    wake();
                });
            }
            Action::Write { piece, data } => {
                if self
                    .downloads
                    .get(&ih)
                    .is_some_and(|d| d.stream && !d.pinned)
                {
                    self.cache_room(ih, piece);
                }
                let Some(dl) = self.downloads.get(&ih) else {
                    return;
                };
                let Some(files) = dl.torrent.files.clone() else {
                    return;
                };
                let offset = u64::from(piece) * dl.torrent.shape.piece_length;
                let job = Job::Write {
                    info_hash: ih,
                    files,
                    piece,
                    offset,
                    data,
                };
                if let Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) =
                    self.ch.jobs.try_send(job)
                {
                    self.write_backlog.push_back(job);
                }
            }
            Action::Have(piece) => {
                for (slot, c) in self.conns.iter_mut().enumerate() {
                    let Some(c) = c else { continue };
                    if c.torrent.as_ref().is_some_and(|t| t.shape.info_hash == ih) {
                        c.wire.have(piece);
                        touched.insert(slot);
                    }
                }
                if let Some(dl) = self.downloads.get(&ih) {
                    *dl.status.have.lock() = dl.engine.have().as_wire().to_vec();
                    dl.status.verified.fetch_add(1, Ordering::Relaxed);
                    dl.status.left.store(dl.engine.left(), Ordering::Relaxed);
                    dl.status.wake_piece(piece);
                }
            }
            Action::Complete => {
                if let Some(dl) = self.downloads.get_mut(&ih) {
                    dl.complete = true;
                    dl.trackers.completed();
                    log::info!("download {}: complete", crate::proto::hex::encode(&ih));
                    self.update_status(ih);
                    if let Some(dl) = self.downloads.get(&ih) {
                        dl.status.complete.store(true, Ordering::Release);
                    }
                }
            }
        }
    }

    /// Reader `reader` needs these pieces: they go first (deadlines in the given order).
    pub(super) fn want(&mut self, ih: [u8; 20], reader: u64, pieces: &[u32]) {
        let now = now_ms(self.epoch);
        let Some(dl) = self.downloads.get_mut(&ih) else {
            return;
        };
        if !dl.engine.want(reader, pieces, now) {
            log::debug!("download: too many readers, one ignored");
        }
        self.cache_touch(ih, pieces);
        self.download_actions(ih);
        self.dial_downloads();
    }

    /// The reader closed: what it alone wanted is released.
    pub(super) fn unwant(&mut self, ih: [u8; 20], reader: u64) {
        if let Some(dl) = self.downloads.get_mut(&ih) {
            dl.engine.unwant(reader);
            self.update_status(ih);
            self.download_actions(ih);
        }
    }

    /// Fetch the whole torrent and keep it (out of the piece cache).
    pub(super) fn pin(&mut self, ih: [u8; 20]) {
        let Some(dl) = self.downloads.get_mut(&ih) else {
            return;
        };
        dl.pinned = true;
        dl.complete = false;
        dl.status.complete.store(false, Ordering::Release);
        dl.engine.want_all();
        self.cache.remove_torrent(&ih);
        self.cache_gauge();
        self.download_actions(ih);
        self.dial_downloads();
    }

    /// Drops a download: its connections close.
    pub(super) fn forget_download(&mut self, ih: [u8; 20]) {
        if let Some(mg) = self.magnets.get(&ih) {
            // Still fetching the info dict: stop that.
            mg.status.wake_all();
            self.magnet_done(ih);
        }
        if let Some(dl) = self.downloads.remove(&ih) {
            // Readers waiting for pieces look again (and find the torrent gone).
            dl.status.wake_all();
            self.cache.remove_torrent(&ih);
            self.cache_gauge();
            self.torrents.remove(&ih);
            self.req2.remove(&mse::req2_hash(&ih));
            let slots: Vec<usize> = (0..self.conns.len())
                .filter(|&s| {
                    self.conns[s]
                        .as_ref()
                        .and_then(|c| c.torrent.as_ref())
                        .is_some_and(|t| t.shape.info_hash == ih)
                })
                .collect();
            for slot in slots {
                self.close(slot, "the download was removed", false);
            }
        }
    }

    /// Retries writes the disk queue had no room for.
    pub(super) fn retry_writes(&mut self) {
        while let Some(job) = self.write_backlog.pop_front() {
            if let Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) =
                self.ch.jobs.try_send(job)
            {
                self.write_backlog.push_front(job);
                return;
            }
        }
    }

    pub(super) fn written(&mut self, ih: [u8; 20], piece: u32, result: Result<(), String>) {
        let Some(dl) = self.downloads.get_mut(&ih) else {
            return;
        };
        if let Err(e) = &result {
            self.cache.remove(&ih, piece);
            log::error!("download: writing piece {piece}: {e}");
            self.stats.disk_errors.add(1);
            let mut err = dl.status.error.lock();
            if err.is_none() {
                *err = Some(format!("writing piece {piece}: {e}"));
            }
        }
        dl.engine.written(piece, result.is_ok());
        self.download_actions(ih);
    }

    pub(super) fn hashed(
        &mut self,
        ih: [u8; 20],
        piece: u32,
        data: Vec<u8>,
        ok: bool,
        blocks: Option<Vec<[u8; 20]>>,
    ) {
        let Some(dl) = self.downloads.get_mut(&ih) else {
            return;
        };
        if !ok {
            log::info!("download: piece {piece} failed its hash check");
        }
        dl.engine.verified(piece, data, ok, blocks);
        self.download_actions(ih);
    }

    /// The once-a-second work of every download: timeouts, status, dialing.
    pub(super) fn tick_downloads(&mut self) {
        let now = now_ms(self.epoch);
        let ihs: Vec<[u8; 20]> = self.downloads.keys().copied().collect();
        let clock = Instant::now();
        for ih in ihs {
            if let Some(dl) = self.downloads.get_mut(&ih) {
                dl.engine.tick(now);
                dl.status.wake_expired(clock);
            }
            self.observe_peers(ih);
            self.download_actions(ih);
            self.update_status(ih);
            self.update_report(ih);
        }
        for mg in self.magnets.values() {
            mg.status.wake_expired(clock);
        }
        self.web_tick();
        self.announce_due();
        self.dial_downloads();
    }

    fn update_status(&mut self, ih: [u8; 20]) {
        let uploaded = self.torrents.get(&ih).map_or(0, |e| e.uploaded);
        let Some(dl) = self.downloads.get(&ih) else {
            return;
        };
        let s = &dl.status;
        let k = dl.engine.counters();
        s.downloaded.store(k.downloaded, Ordering::Relaxed);
        s.wasted.store(k.wasted, Ordering::Relaxed);
        s.failed_pieces
            .store(k.failed_pieces as usize, Ordering::Relaxed);
        s.uploaded
            .store(uploaded.saturating_sub(dl.uploaded_base), Ordering::Relaxed);
        s.peers.store(dl.engine.peer_count(), Ordering::Relaxed);
        s.seeds.store(dl.engine.seed_count(), Ordering::Relaxed);
        s.known_peers.store(dl.peers.len(), Ordering::Relaxed);
        s.left.store(dl.engine.left(), Ordering::Relaxed);
        let (readers, wanted) = dl.engine.reader_counts();
        s.readers.store(readers, Ordering::Relaxed);
        s.wanted_pieces.store(wanted, Ordering::Relaxed);
        *s.trackers.lock() = dl.trackers.status();
        let banned = dl.engine.banned();
        if s.banned.lock().len() != banned.len() {
            *s.banned.lock() = banned.to_vec();
        }
    }

    /// Dials peers of downloads that have room for more.
    pub(super) fn dial_downloads(&mut self) {
        let now = now_ms(self.epoch);
        let ihs: Vec<[u8; 20]> = self.downloads.keys().copied().collect();
        for ih in ihs {
            let conns = self
                .conns
                .iter()
                .flatten()
                .filter(|c| c.torrent.as_ref().is_some_and(|t| t.shape.info_hash == ih))
                .count();
            let room = self
                .config
                .max_outgoing
                .saturating_sub(self.outgoing)
                .min(self.config.max_half_open.saturating_sub(self.half_open));
            let Some(dl) = self.downloads.get_mut(&ih) else {
                continue;
            };
            if dl.complete && !dl.stream {
                continue;
            }
            let want = dl.max_peers.saturating_sub(conns).min(room);
            if want == 0 {
                continue;
            }
            let dialing = &self.dialing;
            let conns_ref = &self.conns;
            let engine = &dl.engine;
            let addrs = dl.peers.candidates(now, want, |a| {
                dialing.contains(a)
                    || engine.is_banned(*a)
                    || conns_ref.iter().flatten().any(|c| {
                        c.torrent.as_ref().is_some_and(|t| t.shape.info_hash == ih)
                            && (c.addr == *a || c.listen == Some(*a))
                    })
            });
            let t = Arc::clone(&dl.torrent);
            for a in addrs {
                self.dial(Arc::clone(&t), a);
            }
        }
    }
}
