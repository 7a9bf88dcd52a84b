//! The `net` loop's magnet links: before a magnet becomes a download, its info dict is
//! fetched from peers (BEP-9 `ut_metadata`) by an [`engine::metadata::MetadataFetch`], which
//! spreads the 16 KiB pieces over the peers that have them and checks the whole against the
//! info-hash before anyone uses it. Peers come from `--peer`, the magnet's `x.pe` and its
//! trackers (`tr`). Once the dict is verified it goes to the caller through the status, the
//! metadata connections close, and the caller adds the download, which dials again.
//!
//! [`engine::metadata::MetadataFetch`]: crate::engine::metadata::MetadataFetch

use super::*;
use crate::engine::metadata::MetadataFetch;
use crate::engine::peers::{PeerList, Source};
use crate::engine::trackers::Trackers;
use crate::net::download::{DownloadStatus, MagnetSpec};
use crate::proto::bt::peer_conn::Shape;
use std::sync::atomic::Ordering;

const PEER_LIST_CAP: usize = 2000;

pub(super) struct Mg {
    pub(super) fetch: MetadataFetch,
    /// Stands for the torrent on its connections until the info dict is known.
    pub(super) placeholder: Arc<Torrent>,
    pub(super) peers: PeerList,
    pub(super) trackers: Trackers,
    pub(super) status: Arc<DownloadStatus>,
    pub(super) max_peers: usize,
}

impl Loop {
    pub(super) fn add_magnet(&mut self, spec: MagnetSpec) {
        let ih = spec.info_hash;
        let mut peers = PeerList::new(PEER_LIST_CAP, None);
        for a in spec.peers {
            peers.add(a, Source::User);
        }
        let placeholder = Arc::new(Torrent {
            shape: Arc::new(Shape::new(ih, 0, 0, Arc::from(Vec::new()))),
            sha256: String::new(),
            storage: crate::store::db::Storage::Blob,
            files: None,
        });
        log::info!(
            "magnet {}: fetching the metadata, {} peers to try",
            crate::proto::hex::encode(&ih),
            peers.len()
        );
        self.magnets.insert(
            ih,
            Mg {
                fetch: MetadataFetch::new(ih),
                placeholder,
                peers,
                trackers: Trackers::new(spec.trackers, super::super::random_u64()),
                status: spec.status,
                max_peers: spec.max_peers.max(1),
            },
        );
        self.announce_due();
        self.dial_magnets();
    }

    /// True if `slot` is a connection fetching a magnet's metadata.
    pub(super) fn is_magnet_conn(&self, slot: usize) -> Option<[u8; 20]> {
        let c = self.conns.get(slot)?.as_ref()?;
        let ih = c.torrent.as_ref()?.shape.info_hash;
        (c.torrent.as_ref()?.shape.pieces == 0 && self.magnets.contains_key(&ih)).then_some(ih)
    }

    /// Events of a metadata connection. True if handled.
    pub(super) fn magnet_event(&mut self, slot: usize, ev: &Event) -> bool {
        let Some(ih) = self.is_magnet_conn(slot) else {
            return false;
        };
        let key = self.key(slot);
        let Some(mg) = self.magnets.get_mut(&ih) else {
            return false;
        };
        let c = self.conns[slot].as_mut().expect("checked");
        match ev {
            Event::ExtHandshake => {
                if let Some(size) = c.wire.peer_metadata_size() {
                    mg.fetch.peer_size(key, size);
                }
            }
            Event::Metadata { piece, total, data } => {
                match mg.fetch.on_data(key, *piece, *total, data) {
                    Some(Ok(info)) => {
                        log::info!(
                            "magnet {}: metadata verified ({} bytes)",
                            crate::proto::hex::encode(&ih),
                            info.len()
                        );
                        *mg.status.metadata.lock() = Some(info);
                        mg.status.metadata_ready.store(true, Ordering::Release);
                        mg.status.wake_all();
                        self.magnet_done(ih);
                        return true;
                    }
                    Some(Err(e)) => log::info!("magnet: {e}"),
                    None => {}
                }
            }
            Event::MetadataRejected(p) => mg.fetch.on_reject(key, *p),
            Event::Established => {
                if let Some(l) = c.listen {
                    mg.peers.connected(l);
                }
                return false;
            }
            Event::Pex(p) => {
                for a in &p.added {
                    mg.peers.add(*a, Source::Pex);
                }
            }
            _ => return false,
        }
        self.magnet_requests(slot);
        true
    }

    /// Asks a metadata connection for what the fetch wants of it.
    fn magnet_requests(&mut self, slot: usize) {
        let Some(ih) = self.is_magnet_conn(slot) else {
            return;
        };
        let key = self.key(slot);
        let now = now_ms(self.epoch);
        let Some(mg) = self.magnets.get_mut(&ih) else {
            return;
        };
        let c = self.conns[slot].as_mut().expect("checked");
        while let Some(piece) = mg.fetch.next_request(key, now) {
            if !c.wire.request_metadata(piece) {
                mg.fetch.on_reject(key, piece);
                break;
            }
        }
        self.flush(slot);
    }

    /// The metadata is in: its connections close (the download dials again).
    pub(super) fn magnet_done(&mut self, ih: [u8; 20]) {
        self.magnets.remove(&ih);
        let slots: Vec<usize> = self
            .conns
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                c.as_ref()
                    .and_then(|c| c.torrent.as_ref())
                    .is_some_and(|t| t.shape.info_hash == ih && t.shape.pieces == 0)
            })
            .map(|(i, _)| i)
            .collect();
        for slot in slots {
            self.close_silently(slot, "metadata fetched");
        }
        self.torrents.remove(&ih);
    }

    pub(super) fn magnet_peer_gone(&mut self, c: &Conn, key: u64, failed: bool) {
        let Some(t) = &c.torrent else {
            return;
        };
        let now = now_ms(self.epoch);
        if let Some(mg) = self.magnets.get_mut(&t.shape.info_hash) {
            mg.fetch.peer_gone(key);
            let addr = if c.outgoing { Some(c.addr) } else { c.listen };
            if let Some(a) = addr {
                mg.peers.disconnected(a, failed, now);
            }
        }
    }

    /// Dials peers of magnets that have room; re-asks idle connections (timeouts).
    pub(super) fn dial_magnets(&mut self) {
        let now = now_ms(self.epoch);
        let ihs: Vec<[u8; 20]> = self.magnets.keys().copied().collect();
        for ih in ihs {
            let slots: Vec<usize> = (0..self.conns.len())
                .filter(|&s| self.is_magnet_conn(s) == Some(ih))
                .collect();
            for &s in &slots {
                self.magnet_requests(s);
            }
            let room = self
                .config
                .max_outgoing
                .saturating_sub(self.outgoing)
                .min(self.config.max_half_open.saturating_sub(self.half_open));
            let Some(mg) = self.magnets.get_mut(&ih) else {
                continue;
            };
            let want = mg.max_peers.saturating_sub(slots.len()).min(room);
            if want == 0 {
                continue;
            }
            let dialing = &self.dialing;
            let addrs = mg.peers.candidates(now, want, |a| dialing.contains(a));
            let t = Arc::clone(&mg.placeholder);
            for a in addrs {
                self.dial_magnet(Arc::clone(&t), a);
            }
        }
    }

    fn dial_magnet(&mut self, t: Arc<Torrent>, addr: SocketAddr) {
        if self.outgoing >= self.config.max_outgoing || self.count >= self.config.max_connections {
            return;
        }
        let sock = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(e) => {
                log::debug!("peer {addr}: connect: {e}");
                self.backoff.failed(addr, Instant::now());
                return;
            }
        };
        self.stats.dialed.add(1);
        let wire = PeerConn::outgoing_magnet(
            Arc::clone(&self.settings),
            Some(addr.ip()),
            t.shape.info_hash,
        );
        if let Some(slot) = self.insert(sock, addr, wire, true, Some(t)) {
            let c = self.conns[slot].as_mut().expect("inserted");
            c.out.push_bytes(c.wire.take_output());
        }
    }
}

/// The magnet's `tr` trackers as tiers of one (the link gives no tiers).
pub fn magnet_tiers(trackers: &[String]) -> Vec<Vec<String>> {
    trackers.iter().map(|t| vec![t.clone()]).collect()
}
