//! The `net` loop's work on the swarm as a whole rather than one socket: who may download
//! (the seeding choker, free slots), PEX, dialing leechers the tracker knows of, and settling
//! duplicate connections to one peer (libtorrent's rule, without last words for the loser).

use super::*;

impl Loop {
    /// Another live connection than `slot` that `pred` accepts.
    pub(super) fn find_conn(&self, slot: usize, pred: impl Fn(&Conn) -> bool) -> Option<usize> {
        self.conns
            .iter()
            .enumerate()
            .find(|(i, c)| *i != slot && c.as_ref().is_some_and(&pred))
            .map(|(i, _)| i)
    }

    /// Of two connections to one peer, the one to close (`slot` is the newer): libtorrent's
    /// rule when their directions differ (see `dialer::keep_on_duplicate`), else the newer.
    pub(super) fn loser(&self, slot: usize, other: usize) -> usize {
        let (Some(new), Some(old)) = (&self.conns[slot], &self.conns[other]) else {
            return slot;
        };
        if new.outgoing == old.outgoing {
            return slot;
        }
        let ours = self.listener.local_addr().map_or(0, |a| a.port());
        let theirs = if new.outgoing {
            new.addr.port()
        } else {
            old.addr.port()
        };
        match dialer::keep_on_duplicate(new.outgoing, ours, theirs) {
            dialer::Keep::Existing => slot,
            dialer::Keep::New => other,
        }
    }

    /// An incoming connection's listen address is now known: if we also dialed that address
    /// for the same torrent, one of the two goes. True if `slot` itself was closed.
    pub(super) fn settle_by_listen_addr(&mut self, slot: usize) -> bool {
        let Some(c) = self.conns[slot].as_ref() else {
            return true;
        };
        let (Some(listen), Some(ih)) = (c.listen, c.torrent.as_ref().map(|t| t.shape.info_hash))
        else {
            return false;
        };
        if !c.wire.is_established() {
            return false;
        }
        let other = self.find_conn(slot, |o| {
            o.outgoing
                && o.addr == listen
                && o.wire.is_established()
                && o.torrent.as_ref().is_some_and(|t| t.shape.info_hash == ih)
        });
        let Some(o) = other else {
            return false;
        };
        let loser = self.loser(slot, o);
        self.close_silently(loser, "duplicate connection to this peer");
        loser == slot
    }

    /// The handshake is done: count the peer, and settle a duplicate connection to it (by
    /// peer id, or by the listen address libtorrent's fresh peer ids hide it behind).
    pub(super) fn established(&mut self, slot: usize) {
        let now = Instant::now();
        let c = self.conns[slot].as_mut().expect("established connection");
        let Some(t) = c.torrent.clone() else {
            return;
        };
        let ih = t.shape.info_hash;
        let pid = c.wire.peer().peer_id;
        if c.half_open {
            c.half_open = false;
            self.half_open -= 1;
        }
        if c.outgoing {
            self.backoff.succeeded(c.addr, now);
        }
        if !self.peers.insert((ih, pid)) {
            let other = self.find_conn(slot, |o| {
                o.wire.is_established()
                    && o.wire.peer().peer_id == pid
                    && o.torrent.as_ref().is_some_and(|t| t.shape.info_hash == ih)
            });
            match other.map(|o| (o, self.loser(slot, o))) {
                Some((o, loser)) if loser == o => {
                    // The existing one goes (its counts with it); this one takes its place.
                    self.close_silently(o, "duplicate connection to this peer");
                    self.peers.insert((ih, pid));
                }
                _ => {
                    // Not counted yet, so `close` must not undo the other one's counts.
                    let c = self.conns[slot].as_mut().expect("established connection");
                    c.torrent = None;
                    return self.close_silently(slot, "already connected to this peer");
                }
            }
        } else if self.conns[slot].as_ref().is_some_and(|c| c.outgoing) {
            // libtorrent 1.2+ sends a fresh peer id per connection: the same peer may be
            // connected to us already, known by the listen port its handshake named.
            let addr = self.conns[slot].as_ref().expect("established").addr;
            let other = self.find_conn(slot, |o| {
                !o.outgoing
                    && o.listen == Some(addr)
                    && o.wire.is_established()
                    && o.torrent.as_ref().is_some_and(|t| t.shape.info_hash == ih)
            });
            if let Some(o) = other {
                let loser = self.loser(slot, o);
                if loser == slot {
                    self.peers.remove(&(ih, pid));
                    let c = self.conns[slot].as_mut().expect("established connection");
                    c.torrent = None;
                    return self.close_silently(slot, "duplicate connection to this peer");
                }
                self.close_silently(o, "duplicate connection to this peer");
            }
        }
        // An outgoing connection may complete after its idle torrent entry was evicted.
        let e = self.torrents.entry(ih).or_insert_with(|| Entry {
            torrent: Arc::clone(&t),
            peers: 0,
            uploaded: 0,
            blocks: 0,
            metadata_pieces: 0,
            idle_since: None,
        });
        e.peers += 1;
        e.idle_since = None;
        if self.accept_paused {
            self.accept();
        }
    }

    /// Closes without last words: what the loser of a duplicate had queued (our bitfield,
    /// our extension handshake) must not reach the peer, which keeps the other connection.
    pub(super) fn close_silently(&mut self, slot: usize, why: &str) {
        if let Some(c) = self.conns[slot].as_mut() {
            let _ = c.wire.take_output();
        }
        self.close(slot, why, false);
    }

    /// Unchokes interested peers, those waiting longest first, while slots are free.
    pub(super) fn fill_slots(&mut self) {
        let unchoked = self
            .conns
            .iter()
            .flatten()
            .filter(|c| c.wire.is_established() && !c.wire.is_choking())
            .count();
        let free = self.config.upload_slots.saturating_sub(unchoked);
        if free == 0 {
            return;
        }
        let now = Instant::now();
        let mut waiting: Vec<(Instant, usize)> = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (i, c)))
            .filter(|(_, c)| {
                c.wire.is_established() && c.wire.is_choking() && c.wire.is_interested()
            })
            .map(|(i, c)| (c.last_unchoked, i))
            .collect();
        waiting.sort();
        for (_, slot) in waiting.into_iter().take(free) {
            let c = self.conns[slot].as_mut().expect("listed");
            c.wire.unchoke();
            c.last_unchoked = now;
            self.flush(slot);
        }
    }

    pub(super) fn rotate_chokes(&mut self) {
        // One choker over all torrents: slots are a property of our upload, not of a torrent.
        let cands: Vec<Candidate> = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (i, c)))
            .filter(|(_, c)| c.wire.is_established() && c.wire.is_interested())
            .map(|(i, c)| Candidate {
                id: i,
                rate: c.sent_period,
                last_unchoked: c.last_unchoked.duration_since(self.epoch).as_millis() as u64,
                unchoked: !c.wire.is_choking(),
            })
            .collect();
        // Everything here is seeding: slots go round, a turn lasting SEED_TURN.
        let now_ms = self.epoch.elapsed().as_millis() as u64;
        let turn = SEED_TURN.as_millis() as u64;
        let chosen = choker::round_robin(&cands, self.config.upload_slots, now_ms, turn);
        let now = Instant::now();
        for slot in 0..self.conns.len() {
            let Some(c) = self.conns[slot].as_mut() else {
                continue;
            };
            c.sent_period = 0;
            if !c.wire.is_established() {
                continue;
            }
            if chosen.contains(&slot) {
                if c.wire.is_choking() {
                    c.wire.unchoke();
                    c.last_unchoked = now;
                }
            } else if !c.wire.is_choking() {
                // Its wait for the next turn starts now.
                c.wire.choke();
                c.last_unchoked = now;
            }
            self.flush(slot);
        }
    }

    pub(super) fn send_pex(&mut self) {
        let mut by_torrent: HashMap<[u8; 20], Vec<SocketAddr>> = HashMap::new();
        // Peers we dialed ourselves are known reachable; incoming ones may not be.
        let mut reached: HashSet<SocketAddr> = HashSet::new();
        for c in self.conns.iter().flatten() {
            if let (Some(t), Some(l)) = (&c.torrent, c.listen) {
                if c.wire.is_established() {
                    by_torrent.entry(t.shape.info_hash).or_default().push(l);
                    if c.outgoing {
                        reached.insert(l);
                    }
                }
            }
        }
        for slot in 0..self.conns.len() {
            let Some(c) = self.conns[slot].as_mut() else {
                continue;
            };
            let Some(t) = &c.torrent else { continue };
            let current = by_torrent
                .get(&t.shape.info_hash)
                .map_or(&[][..], |v| &v[..]);
            let added: Vec<SocketAddr> = current
                .iter()
                .filter(|a| Some(**a) != c.listen && !c.pex_sent.contains(a))
                .take(MAX_PEX_PEERS)
                .copied()
                .collect();
            let dropped: Vec<SocketAddr> = c
                .pex_sent
                .iter()
                .filter(|a| !current.contains(a))
                .take(MAX_PEX_PEERS)
                .copied()
                .collect();
            if added.is_empty() && dropped.is_empty() {
                continue;
            }
            let reachable = added
                .iter()
                .filter(|a| reached.contains(a))
                .copied()
                .collect();
            let pex = Pex {
                added,
                dropped,
                reachable,
            };
            if c.wire.send_pex(&pex) {
                for a in &pex.dropped {
                    c.pex_sent.remove(a);
                }
                c.pex_sent.extend(pex.added.iter().copied());
                self.flush(slot);
            }
        }
    }

    /// Connects out to leechers the tracker knows of (Transmission 3 and other clients never
    /// dial loopback or private addresses they learn from a tracker, but accept ours).
    pub(super) fn dial_leechers(&mut self) {
        let Some(tracker) = self.deps.tracker.clone() else {
            return;
        };
        let room = self
            .config
            .max_outgoing
            .saturating_sub(self.outgoing)
            .min(self.config.max_connections.saturating_sub(self.count));
        if room == 0 {
            return;
        }
        let hosted = Arc::clone(&self.deps.hosted);
        let candidates = tracker
            .registry
            .leechers(4 * room + 16, |ih| hosted.read().contains(ih));
        let own = tracker.own_peer();
        let listen = self.listener.local_addr().ok();
        let now = Instant::now();
        let mut started = 0;
        for (ih, pid, addr) in candidates {
            if started >= room {
                break;
            }
            if Some(addr) == own
                || Some(addr) == listen
                || pid == self.settings.peer_id
                || self.peers.contains(&(ih, pid))
                || self.dialing.contains(&addr)
                || self.conns.iter().flatten().any(|c| {
                    !c.outgoing
                        && (c.listen == Some(addr) || (c.half_open && c.addr.ip() == addr.ip()))
                })
                || !self.backoff.ready(&addr, now)
                || self.per_ip.get(&addr.ip()).copied().unwrap_or(0)
                    >= self.config.max_connections_per_ip
            {
                continue;
            }
            self.backoff.attempt(addr, now);
            started += 1;
            match self.torrents.get(&ih) {
                Some(e) => {
                    let t = Arc::clone(&e.torrent);
                    self.dial(t, addr);
                }
                None => self.request_lookup(ih, Waiter::Dial(addr)),
            }
        }
    }

    pub(super) fn dial(&mut self, t: Arc<Torrent>, addr: SocketAddr) {
        if self.outgoing >= self.config.max_outgoing || self.count >= self.config.max_connections {
            return;
        }
        let sock = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(e) => {
                log::debug!("peer {addr}: connect: {e}");
                self.stats.dial_failures.add(1);
                self.backoff.failed(addr, Instant::now());
                return;
            }
        };
        self.stats.dialed.add(1);
        log::debug!(
            "peer {addr}: dialing for {}",
            crate::proto::hex::encode(&t.shape.info_hash)
        );
        let mut wire = PeerConn::outgoing(
            Arc::clone(&self.settings),
            Some(addr.ip()),
            Arc::clone(&t.shape),
        );
        if let Some(bits) = self.ours_for(&t.shape.info_hash) {
            wire.set_ours(bits);
        }
        let encrypt = self.encrypt_to.contains(&addr);
        if let Some(slot) = self.insert(sock, addr, wire, true, Some(Arc::clone(&t))) {
            // The handshake waits in the output until the connection completes; with MSE it
            // travels inside the obfuscated handshake (as IA).
            let c = self.conns[slot].as_mut().expect("inserted");
            let handshake = c.wire.take_output();
            if encrypt {
                let mut init = mse::Initiator::new(
                    random_bytes(),
                    t.shape.info_hash,
                    random_pad(),
                    mse::CRYPTO_RC4 | mse::CRYPTO_PLAIN,
                    handshake,
                );
                c.out.push_bytes(init.start());
                c.mse = Mse::Initiating(Box::new(init));
            } else {
                c.out.push_bytes(handshake);
            }
        }
    }

    /// An outgoing connection to a download's peer that the peer closed before its
    /// handshake may have refused plaintext: the next attempt uses MSE (and one that failed
    /// with MSE goes back to plaintext). Retried at once.
    pub(super) fn maybe_encrypt_next(&mut self, c: &Conn) {
        if !c.outgoing || c.connecting || !c.half_open {
            return;
        }
        let Some(t) = c.torrent.clone() else {
            return;
        };
        if !self.downloads.contains_key(&t.shape.info_hash) {
            return;
        }
        if matches!(c.mse, Mse::Initiating(_)) || self.encrypt_to.contains(&c.addr) {
            self.encrypt_to.remove(&c.addr);
            return;
        }
        if self.encrypt_to.len() >= 4096 {
            self.encrypt_to.clear();
        }
        self.encrypt_to.insert(c.addr);
        log::debug!("peer {}: closed before its handshake; trying MSE", c.addr);
        if !self.stop {
            self.dial(t, c.addr);
        }
    }
}
