//! The `net` loop's DHT part: the UDP socket (token [`DHT`]) feeds a [`crate::dht::Dht`],
//! whose datagrams go out as the socket takes them (dropped when it would block: UDP may
//! lose them anyway). Once a second the node ticks, and while lookups run their timers run
//! every 50 ms, so a lookup moves on after its adaptive timeout; every download and magnet asks
//! `get_peers` at start and every few minutes (found peers go to its peer list as
//! `Source::Dht`), downloads and stored torrents are announced with our peer port, and
//! deleted ones stop. `dht.dat` (node id and good nodes) is written off the loop thread.
//! A socket bound to `[::]` is dual-stack (BEP-32): datagrams from IPv4 nodes arrive as
//! `::ffff:a.b.c.d` (the node takes them as IPv4) and IPv4 destinations go out mapped.

use super::*;
use crate::dht::{persist, Dht};
use crate::engine::peers::Source;
use crate::net::DhtSetup;
use std::path::PathBuf;

/// The DHT socket's token (connection slots count up from 2 and never get here).
pub const DHT: Token = Token(usize::MAX - 1);
/// A download or magnet asks get_peers again this often.
const GET_PEERS_EVERY_MS: u64 = 5 * 60 * 1000;
/// Stored torrents are compared with the announced ones this often.
const HOSTED_SYNC_MS: u64 = 30_000;
/// `dht.dat` is written at most this often.
const SAVE_EVERY_MS: u64 = 10 * 60 * 1000;
/// While lookups run, their timers are run this often (the tick is once a second; a lookup
/// asks again after its adaptive timeout, 250 ms at the least).
const LOOKUP_TIMERS: Duration = Duration::from_millis(50);
/// Datagrams sent per pump at most (the rest wait for the next one).
const SEND_BATCH: usize = 512;

pub(super) struct DhtIo {
    sock: mio::net::UdpSocket,
    /// The socket is IPv6 (IPv4 destinations go out as mapped addresses when dual-stack).
    sock_v6: bool,
    node: Dht,
    state_file: Option<PathBuf>,
    /// Downloads and magnets: when they ask get_peers next.
    wanted: HashMap<[u8; 20], u64>,
    hosted: HashSet<[u8; 20]>,
    next_hosted_sync: u64,
    next_save: u64,
    /// When the lookups' timers run next.
    next_timers: u64,
}

impl Loop {
    /// Starts the node on the socket the caller bound.
    pub(super) fn dht_start(&mut self, setup: DhtSetup) {
        let now = now_ms(self.epoch);
        let families = crate::net::Net::dht_families(&setup.socket);
        let mut sock = mio::net::UdpSocket::from_std(setup.socket);
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut sock, DHT, Interest::READABLE)
        {
            log::error!("dht: registering the socket failed: {e}");
            return;
        }
        let mut node = Dht::new(setup.id, setup.settings, super::super::random_u64(), now);
        node.set_families(families);
        let local = sock.local_addr().ok();
        if let Some(a) = local {
            node.set_own_ip(a.ip());
        }
        for n in &setup.known {
            node.add_node(n.addr);
        }
        self.dht = Some(DhtIo {
            sock,
            sock_v6: local.is_some_and(|a| a.is_ipv6()),
            node,
            state_file: setup.state_file,
            wanted: HashMap::new(),
            hosted: HashSet::new(),
            next_hosted_sync: now,
            next_save: now + SAVE_EVERY_MS,
            next_timers: now,
        });
        self.dht_tick();
    }

    pub(super) fn dht_bootstrap(&mut self, addrs: Vec<SocketAddr>) {
        if let Some(d) = self.dht.as_mut() {
            d.node.set_bootstrap(addrs);
        }
    }

    /// A file was stored: its torrent is announced now (not at the next hosted sync).
    pub(super) fn dht_added(&mut self, ih: [u8; 20]) {
        let port = self.listener.local_addr().map_or(0, |a| a.port());
        if let Some(d) = self.dht.as_mut() {
            d.hosted.insert(ih);
            d.node.announce(ih, port);
        }
    }

    /// A download started: when it was a magnet until now, the peers the DHT found for the
    /// magnet went with its connections, so it asks get_peers again at the next tick.
    pub(super) fn dht_download_started(&mut self, ih: [u8; 20]) {
        if let Some(due) = self.dht.as_mut().and_then(|d| d.wanted.get_mut(&ih)) {
            *due = 0;
        }
    }

    /// Reads every datagram waiting on the socket.
    pub(super) fn dht_readable(&mut self) {
        let Some(d) = self.dht.as_mut() else { return };
        let now = now_ms(self.epoch);
        loop {
            match d.sock.recv_from(&mut self.scratch) {
                Ok((n, from)) => d.node.receive(from, &self.scratch[..n], now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ICMP errors surface here on some systems: the next datagram may be fine.
                Err(_) => break,
            }
        }
    }

    /// When the loop must wake for the DHT's lookup timers (while lookups run), if sooner
    /// than its tick.
    pub(super) fn dht_wake(&self) -> Option<Duration> {
        let d = self.dht.as_ref()?;
        (d.node.lookups_running() > 0).then_some(LOOKUP_TIMERS)
    }

    /// Runs the lookups' timers (at most every [`LOOKUP_TIMERS`]), sends queued datagrams
    /// and hands found peers to their downloads and magnets.
    pub(super) fn dht_pump(&mut self) {
        let now = now_ms(self.epoch);
        let Some(d) = self.dht.as_mut() else { return };
        if now >= d.next_timers {
            d.next_timers = now + LOOKUP_TIMERS.as_millis() as u64;
            d.node.lookup_timers(now);
        }
        for _ in 0..SEND_BATCH {
            let Some((to, bytes)) = d.node.poll_send() else {
                break;
            };
            let to = crate::dht::wire_addr(to, d.sock_v6);
            if let Err(e) = d.sock.send_to(&bytes, to) {
                if e.kind() == io::ErrorKind::WouldBlock {
                    d.node.stats.send_dropped += 1;
                }
            }
        }
        let found = d.node.take_found();
        if found.is_empty() {
            return;
        }
        for (ih, peers) in found {
            log::debug!(
                "dht: {} peers for {}",
                peers.len(),
                crate::proto::hex::encode(&ih)
            );
            let own: Vec<bool> = peers.iter().map(|a| self.is_own_listener(*a)).collect();
            if let Some(mg) = self.magnets.get_mut(&ih) {
                for (a, own) in peers.iter().zip(own) {
                    if !own {
                        mg.peers.add(*a, Source::Dht);
                    }
                }
            }
            self.add_peers(ih, &peers, Source::Dht);
        }
        self.dial_downloads();
        self.dial_magnets();
    }

    /// The once-a-second part: the node's timers, lookups for downloads, announces.
    pub(super) fn dht_tick(&mut self) {
        let now = now_ms(self.epoch);
        let port = self.listener.local_addr().map_or(0, |a| a.port());
        let torrents: Vec<[u8; 20]> = self
            .downloads
            .keys()
            .chain(self.magnets.keys())
            .copied()
            .collect();
        let hosted_sync = self.dht.as_ref().is_some_and(|d| now >= d.next_hosted_sync);
        let hosted: Option<HashSet<[u8; 20]>> =
            hosted_sync.then(|| self.deps.hosted.read().iter().copied().collect());
        let Some(d) = self.dht.as_mut() else { return };
        for ih in &torrents {
            match d.wanted.get(ih) {
                None => {
                    d.node.announce(*ih, port);
                    d.wanted.insert(*ih, now + GET_PEERS_EVERY_MS);
                }
                Some(&due) if due <= now => {
                    if d.node.get_peers(*ih) {
                        d.wanted.insert(*ih, now + GET_PEERS_EVERY_MS);
                    }
                }
                Some(_) => {}
            }
        }
        let gone: Vec<[u8; 20]> = d
            .wanted
            .keys()
            .filter(|ih| !torrents.contains(ih))
            .copied()
            .collect();
        for ih in gone {
            d.wanted.remove(&ih);
            if !d.hosted.contains(&ih) {
                d.node.stop_announce(&ih);
            }
        }
        if let Some(hosted) = hosted {
            d.next_hosted_sync = now + HOSTED_SYNC_MS;
            for ih in hosted.difference(&d.hosted) {
                d.node.announce(*ih, port);
            }
            for ih in d.hosted.difference(&hosted) {
                if !d.wanted.contains_key(ih) {
                    d.node.stop_announce(ih);
                }
            }
            d.hosted = hosted;
        }
        d.node.tick(now);
        let mut json = dht_json(&d.node);
        json["addr"] = serde_json::json!(d.sock.local_addr().ok().map(|a| a.to_string()));
        *self.stats.dht.lock() = Some(json);
        if now >= d.next_save {
            d.next_save = now + SAVE_EVERY_MS;
            self.dht_save(false);
        }
        self.dht_pump();
    }

    /// Writes `dht.dat` (on a short-lived thread unless `wait`).
    pub(super) fn dht_save(&mut self, wait: bool) {
        let Some(d) = self.dht.as_ref() else { return };
        let Some(path) = d.state_file.clone() else {
            return;
        };
        let nodes = d.node.good_nodes(persist::MAX_SAVED);
        if nodes.is_empty() {
            return;
        }
        let bytes = persist::encode(d.node.id(), &nodes);
        let write = move || {
            let tmp = path.with_extension("dat.tmp");
            let res = std::fs::write(&tmp, &bytes).and_then(|_| std::fs::rename(&tmp, &path));
            if let Err(e) = res {
                log::warn!("dht: writing {}: {e}", path.display());
            }
        };
        if wait {
            write();
        } else if let Err(e) = std::thread::Builder::new()
            .name("dht-save".into())
            .spawn(write)
        {
            log::warn!("dht: no thread to save the node table: {e}");
        }
    }
}

/// The JSON of `/api/dht/stats`.
fn dht_json(d: &Dht) -> serde_json::Value {
    let buckets = |t: &crate::proto::dht::routing::Table| -> Vec<serde_json::Value> {
        t.bucket_sizes()
            .into_iter()
            .map(|(nodes, cached)| serde_json::json!({ "nodes": nodes, "replacements": cached }))
            .collect()
    };
    let st = &d.stats;
    serde_json::json!({
        "node_id": crate::proto::hex::encode(&d.id().0),
        "families": d.families().name(),
        "nodes": d.table().len() + d.table6().len(),
        "nodes4": d.table().len(),
        "buckets": buckets(d.table()),
        "nodes6": d.table6().len(),
        "buckets6": buckets(d.table6()),
        "stored_info_hashes": d.storage().info_hash_count(),
        "stored_peers": d.storage().peer_count(),
        "stored_items": d.storage().item_count(),
        "announced": d.announced_count(),
        "lookups_running": d.lookups_running(),
        "lookups_started": st.lookups_started,
        "lookups_done": st.lookups_done,
        "lookup_mean_ms": st.lookup_ms_total.checked_div(st.lookups_done),
        "lookup_ms_total": st.lookup_ms_total,
        "queries_in": st.queries_in,
        "queries_out": st.queries_out,
        "responses_in": st.responses_in,
        "errors_in": st.errors_in,
        "timeouts": st.timeouts,
        "malformed": st.malformed,
        "rate_limited": st.rate_limited,
        "rate_blocks": d.rate_blocks(),
        "rate_sources": d.rate_sources(),
        "budget_deferred": st.budget_deferred,
        "send_dropped": st.send_dropped,
        "announces_sent": st.announces_sent,
        "bootstraps": st.bootstraps,
    })
}
