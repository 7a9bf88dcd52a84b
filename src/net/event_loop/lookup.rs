//! Which torrent a connection is for: a download's, a hosted torrent already looked up, or one
//! the disk pool looks up in the catalog (one job per info-hash, however many connections and
//! dials wait for it). A connection is attached to its torrent once it is known, or closed.

use super::*;

impl Loop {
    pub(super) fn lookup(&mut self, slot: usize, ih: [u8; 20]) {
        if let Some(dl) = self.downloads.get(&ih) {
            let t = Arc::clone(&dl.torrent);
            return self.attach(slot, t);
        }
        if !self.deps.hosted.read().contains(&ih) {
            self.stats.refused.add(1);
            return self.close(slot, "unknown info-hash", false);
        }
        if let Some(e) = self.torrents.get(&ih) {
            let t = Arc::clone(&e.torrent);
            return self.attach(slot, t);
        }
        let key = self.key(slot);
        self.request_lookup(ih, Waiter::Conn(key));
    }

    pub(super) fn request_lookup(&mut self, ih: [u8; 20], waiter: Waiter) {
        let waiting = self.lookups.entry(ih).or_default();
        waiting.push(waiter);
        if waiting.len() == 1 {
            if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
                self.ch.jobs.try_send(Job::Lookup { info_hash: ih })
            {
                // Busy disk: the waiters are dropped (connections close, dials retry later).
                let waiters = self.lookups.remove(&ih).unwrap_or_default();
                self.lookup_done(ih, None, waiters);
            }
        }
    }

    pub(super) fn lookup_done(
        &mut self,
        ih: [u8; 20],
        torrent: Option<Arc<Torrent>>,
        waiters: Vec<Waiter>,
    ) {
        let torrent = torrent.filter(|_| self.deps.hosted.read().contains(&ih));
        if let Some(t) = &torrent {
            self.torrents.entry(ih).or_insert_with(|| Entry {
                torrent: Arc::clone(t),
                peers: 0,
                uploaded: 0,
                blocks: 0,
                metadata_pieces: 0,
                idle_since: Some(Instant::now()),
            });
        }
        for w in waiters {
            match (w, &torrent) {
                (Waiter::Conn(key), Some(t)) => {
                    if let Some(slot) = self.by_key(key) {
                        self.attach(slot, Arc::clone(t));
                    }
                }
                (Waiter::Conn(key), None) => {
                    if let Some(slot) = self.by_key(key) {
                        self.close(slot, "torrent not found", false);
                    }
                }
                (Waiter::Dial(addr), Some(t)) => self.dial(Arc::clone(t), addr),
                (Waiter::Dial(..), None) => {}
            }
        }
    }

    pub(super) fn attach(&mut self, slot: usize, t: Arc<Torrent>) {
        let now = now_ms(self.epoch);
        let mut events = Vec::new();
        let ours = self.ours_for(&t.shape.info_hash);
        let Some(c) = self.conns[slot].as_mut() else {
            return;
        };
        if let Some(bits) = ours {
            c.wire.set_ours(bits);
        }
        c.torrent = Some(Arc::clone(&t));
        c.wire.attach(Arc::clone(&t.shape), now, &mut events);
        self.on_events(slot, events);
        self.pump(slot);
        self.flush(slot);
    }
}
