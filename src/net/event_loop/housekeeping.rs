//! The `net` loop's housekeeping: commands from other threads (files stored and deleted,
//! leecher hints), the once-a-second tick (timeouts, keep-alives, choke rotation, PEX,
//! dialing), forgetting idle torrents, and the stats snapshot for `/api/p2p/stats`.

use super::*;

impl Loop {
    pub(super) fn commands(&mut self) {
        loop {
            match self.ch.commands.try_recv() {
                Ok(Command::Stop) | Err(TryRecvError::Disconnected) => {
                    self.stop = true;
                    return;
                }
                Ok(Command::Added(ih)) => {
                    self.dht_added(ih);
                    if !self.req2.is_empty() {
                        self.req2.insert(mse::req2_hash(&ih), ih);
                    }
                    self.next_dial = self.next_dial.min(Instant::now() + TICK);
                }
                Ok(Command::Leecher) => {
                    // A fresh leecher usually connects to us within a second or two of its
                    // announce: dialing it at once races that connection.
                    self.next_dial = self.next_dial.min(Instant::now() + FRESH_LEECHER_DELAY);
                    self.next_tick = self.next_tick.min(self.next_dial);
                }
                Ok(Command::Removed { info_hash, sha256 }) => self.removed(info_hash, sha256),
                Ok(Command::Download(spec)) => self.add_download(*spec),
                Ok(Command::Magnet(spec)) => self.add_magnet(*spec),
                Ok(Command::Dht(setup)) => self.dht_start(*setup),
                Ok(Command::DhtBootstrap(addrs)) => self.dht_bootstrap(addrs),
                Ok(Command::Want {
                    info_hash,
                    reader,
                    pieces,
                }) => self.want(info_hash, reader, &pieces),
                Ok(Command::Unwant { info_hash, reader }) => self.unwant(info_hash, reader),
                Ok(Command::Pin(ih)) => self.pin(ih),
                Ok(Command::CacheCap(cap)) => {
                    self.cache.set_cap(cap);
                    self.cache_trim();
                }
                Ok(Command::Forget(ih)) => self.forget_download(ih),
                Ok(Command::Peers { info_hash, peers }) => {
                    self.add_peers(info_hash, &peers, crate::engine::peers::Source::Tracker);
                    self.dial_downloads();
                }
                Err(TryRecvError::Empty) => return,
            }
        }
    }

    pub(super) fn removed(&mut self, ih: [u8; 20], sha256: String) {
        self.torrents.remove(&ih);
        self.req2.remove(&mse::req2_hash(&ih));
        let slots: Vec<usize> = self
            .conns
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                c.as_ref()
                    .and_then(|c| c.torrent.as_ref())
                    .is_some_and(|t| t.shape.info_hash == ih)
            })
            .map(|(i, _)| i)
            .collect();
        for slot in slots {
            self.close(slot, "the file was deleted", false);
        }
        let _ = self.ch.jobs.try_send(Job::Forget { sha256 });
    }

    pub(super) fn tick(&mut self) {
        let now = Instant::now();
        self.next_tick = now + TICK;
        let hs = Duration::from_secs(self.config.handshake_timeout_secs);
        let idle = Duration::from_secs(self.config.idle_timeout_secs);
        let stall = Duration::from_secs(self.config.stall_timeout_secs);
        let mut expired = Vec::new();
        for (slot, c) in self.conns.iter_mut().enumerate() {
            let Some(c) = c else { continue };
            let why = if c.half_open && now - c.opened > hs {
                Some("handshake timed out")
            } else if now - c.last_recv > idle {
                Some("idle timeout")
            } else if c.stalled_since.is_some_and(|s| now - s > stall) {
                Some("peer stopped reading")
            } else {
                None
            };
            if let Some(why) = why {
                expired.push((slot, why, c.outgoing && c.half_open));
            } else if c.wire.is_established() && now - c.last_send > KEEPALIVE_EVERY {
                c.wire.keep_alive();
                c.last_send = now;
            }
        }
        for (slot, why, failed) in expired {
            self.stats.timeouts.add(1);
            self.close(slot, why, failed);
        }
        if now >= self.next_choke {
            self.next_choke = now + CHOKE_EVERY;
            self.rotate_chokes();
        }
        if now >= self.next_pex {
            self.next_pex = now + PEX_EVERY;
            self.send_pex();
        }
        self.tick_downloads();
        self.dial_magnets();
        if now >= self.next_dial {
            self.next_dial = now + DIAL_EVERY;
            self.dial_leechers();
        }
        for slot in 0..self.conns.len() {
            if self.conns[slot]
                .as_ref()
                .is_some_and(|c| c.wire.has_output())
            {
                self.flush(slot);
            }
        }
        self.forget_idle_torrents();
        if self.accept_paused {
            self.accept();
        }
        self.dht_tick();
        self.snapshot();
    }

    pub(super) fn forget_idle_torrents(&mut self) {
        let idle = self
            .torrents
            .values()
            .filter(|e| e.idle_since.is_some())
            .count();
        let hosted = Arc::clone(&self.deps.hosted);
        let hosted = hosted.read();
        let downloads = &self.downloads;
        self.torrents
            .retain(|ih, e| e.peers > 0 || hosted.contains(ih) || downloads.contains_key(ih));
        if idle > IDLE_TORRENTS {
            let mut by_age: Vec<([u8; 20], Instant)> = self
                .torrents
                .iter()
                .filter_map(|(ih, e)| e.idle_since.map(|t| (*ih, t)))
                .collect();
            by_age.sort_by_key(|(_, t)| *t);
            for (ih, _) in by_age.iter().take(idle - IDLE_TORRENTS) {
                self.torrents.remove(ih);
            }
        }
    }

    pub(super) fn snapshot(&self) {
        let mut per: HashMap<[u8; 20], (usize, usize)> = HashMap::new();
        let mut unchoked = 0;
        let mut queued = 0;
        for c in self.conns.iter().flatten() {
            queued += c.out.data_bytes() + c.out.control_bytes() + c.reading;
            if let (Some(t), true) = (&c.torrent, c.wire.is_established()) {
                let e = per.entry(t.shape.info_hash).or_default();
                e.0 += 1;
                if !c.wire.is_choking() {
                    e.1 += 1;
                    unchoked += 1;
                }
            }
        }
        let list = self
            .torrents
            .iter()
            .map(|(ih, e)| {
                let (peers, unch) = per.get(ih).copied().unwrap_or_default();
                TorrentStats {
                    info_hash: *ih,
                    peers,
                    unchoked: unch,
                    uploaded: e.uploaded,
                    blocks: e.blocks,
                    metadata_pieces: e.metadata_pieces,
                    download: self
                        .downloads
                        .get(ih)
                        .map(|d| (d.engine.counters().downloaded, d.engine.left())),
                }
            })
            .collect();
        *self.stats.torrents.lock() = list;
        self.stats.set(&self.stats.connections, self.count);
        self.stats.set(&self.stats.half_open, self.half_open);
        self.stats.set(&self.stats.outgoing, self.outgoing);
        self.stats.set(&self.stats.unchoked, unchoked);
        self.stats.set(&self.stats.queued_bytes, queued);
    }
}
