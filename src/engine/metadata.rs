//! BEP-9 metadata download for magnet links: which 16 KiB piece of the info dict to ask which
//! peer, and when the pieces are in, whether they hash to the info-hash. Pure: peers are
//! numbers, time comes in as milliseconds, the wire messages are `peer_conn`'s.
//!
//! - The size comes from the peers' extension handshakes (`metadata_size`): 0 and anything
//!   over [`MAX_METADATA`] is refused; when peers disagree the size most of them claim is
//!   fetched, and a size whose pieces failed the hash check yields to the others.
//! - Requests are spread over peers (each takes the lowest piece nobody is waiting for, and
//!   no more than its share of the pieces), at most [`MAX_OUTSTANDING`] per peer; a piece unanswered for [`REQUEST_TIMEOUT_MS`] goes to
//!   another peer (the late answer is still taken), a rejected piece is not asked of that
//!   peer again for [`REJECT_RETRY_MS`].
//! - A failed check blames every peer that sent a piece of it and starts again; after a
//!   failure each round is fetched from one peer alone (the least blamed), so the next failure
//!   pins down its sender. A peer blamed [`SUSPECT_FAILURES`] times is not asked again and is
//!   listed by [`MetadataFetch::suspects`]; once the check passes, the peers whose earlier
//!   pieces differ from the verified ones are listed too (and the others cleared).

use sha1::{Digest, Sha1};
use std::collections::BTreeMap;

/// The largest info dict we fetch.
pub const MAX_METADATA: u64 = 16 * 1024 * 1024;
/// A metadata piece (BEP-9); the last one may be shorter.
pub const PIECE: u64 = 16 * 1024;
/// Requests one peer may have unanswered.
pub const MAX_OUTSTANDING: usize = 3;
/// After this long without an answer a piece is asked of another peer.
pub const REQUEST_TIMEOUT_MS: u64 = 10_000;
/// A peer that rejected a piece is not asked for it again before this.
pub const REJECT_RETRY_MS: u64 = 30_000;
/// Failed checks a peer's pieces were part of before it is a suspect.
pub const SUSPECT_FAILURES: u32 = 2;
/// Peers tracked at once (the caller caps its peers far lower).
pub const MAX_PEERS: usize = 1024;
/// Pieces remembered from failed rounds (their hashes), to find the liars afterwards.
const MAX_HISTORY: usize = 4096;
/// Asks and rejects remembered per piece.
const MAX_ASKS: usize = 4;

#[derive(Debug, Clone)]
struct PeerEntry {
    size: u64,
    /// Arrival order, for deterministic tie-breaks.
    order: u64,
    /// Let a single-source round down (timed out or rejected).
    stalled: bool,
}

#[derive(Debug, Clone, Copy)]
struct Ask {
    peer: u64,
    at_ms: u64,
}

#[derive(Debug, Default)]
struct Piece {
    /// The bytes and who sent them, once in.
    have: Option<(u64, Vec<u8>)>,
    asks: Vec<Ask>,
    /// (peer, when it was asked) of peers that rejected this piece.
    rejected: Vec<Ask>,
}

/// A piece of a failed round: (size, piece, peer, SHA-1 of its bytes).
type Sent = (u64, u32, u64, [u8; 20]);

/// The metadata download of one torrent.
#[derive(Debug)]
pub struct MetadataFetch {
    info_hash: [u8; 20],
    peers: BTreeMap<u64, PeerEntry>,
    next_order: u64,
    /// The size being fetched and its pieces.
    size: Option<u64>,
    pieces: Vec<Piece>,
    /// Failed checks so far, per size.
    size_failures: BTreeMap<u64, u32>,
    failed_rounds: u32,
    /// After a failure: the one peer this round is fetched from.
    source: Option<u64>,
    blame: BTreeMap<u64, u32>,
    history: Vec<Sent>,
    liars: Vec<u64>,
    done: bool,
}

fn sha1(data: &[u8]) -> [u8; 20] {
    Sha1::digest(data).into()
}

impl MetadataFetch {
    pub fn new(info_hash: [u8; 20]) -> MetadataFetch {
        MetadataFetch {
            info_hash,
            peers: BTreeMap::new(),
            next_order: 0,
            size: None,
            pieces: Vec::new(),
            size_failures: BTreeMap::new(),
            failed_rounds: 0,
            source: None,
            blame: BTreeMap::new(),
            history: Vec::new(),
            liars: Vec::new(),
            done: false,
        }
    }

    /// The size being fetched (None until a peer named an acceptable one).
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// (pieces in, pieces in all) of the current round.
    pub fn progress(&self) -> (u32, u32) {
        let have = self.pieces.iter().filter(|p| p.have.is_some()).count();
        (have as u32, self.pieces.len() as u32)
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// A peer's `metadata_size`. False (the peer is not used) for 0, over 16 MiB, once done,
    /// or when too many peers are tracked.
    pub fn peer_size(&mut self, peer: u64, size: u64) -> bool {
        if self.done || size == 0 || size > MAX_METADATA {
            return false;
        }
        if !self.peers.contains_key(&peer) && self.peers.len() >= MAX_PEERS {
            return false;
        }
        let order = self.next_order;
        let e = self.peers.entry(peer).or_insert(PeerEntry {
            size,
            order,
            stalled: false,
        });
        if e.order == order {
            self.next_order += 1;
        }
        if e.size != size {
            e.size = size;
            self.drop_asks_of(peer);
        }
        self.refresh_size();
        true
    }

    fn suspect(&self, peer: u64) -> bool {
        self.blame
            .get(&peer)
            .is_some_and(|&b| b >= SUSPECT_FAILURES)
            || self.liars.contains(&peer)
    }

    /// The size to fetch: fewest failed checks, then most peers, then the one in progress,
    /// then the first named. Suspects do not vote.
    fn refresh_size(&mut self) {
        let mut votes: BTreeMap<u64, (u32, u64)> = BTreeMap::new();
        for (&peer, e) in &self.peers {
            if !self.suspect(peer) {
                let v = votes.entry(e.size).or_insert((0, e.order));
                v.0 += 1;
                v.1 = v.1.min(e.order);
            }
        }
        let best = votes
            .into_iter()
            .min_by_key(|&(size, (n, first))| {
                let failures = self.size_failures.get(&size).copied().unwrap_or(0);
                (failures, u32::MAX - n, Some(size) != self.size, first)
            })
            .map(|(size, _)| size);
        // With no voter left, keep what is in progress for peers that may come back.
        if best.is_some() && best != self.size {
            self.size = best;
            self.restart();
        }
    }

    fn restart(&mut self) {
        let n = self.size.map_or(0, |s| s.div_ceil(PIECE)) as usize;
        self.pieces = (0..n).map(|_| Piece::default()).collect();
        self.source = None;
    }

    fn drop_asks_of(&mut self, peer: u64) {
        for p in &mut self.pieces {
            p.asks.retain(|a| a.peer != peer);
        }
        if self.source == Some(peer) {
            self.source = None;
        }
    }

    /// After a failure only one peer serves a round: the least blamed that is not stalled.
    fn pick_source(&mut self) {
        if self.failed_rounds == 0 || self.source.is_some() {
            return;
        }
        self.source = self
            .peers
            .iter()
            .filter(|(&p, e)| Some(e.size) == self.size && !self.suspect(p))
            .min_by_key(|(p, e)| (e.stalled, self.blame.get(*p).copied().unwrap_or(0), e.order))
            .map(|(&p, _)| p);
        if let Some(p) = self.source.and_then(|p| self.peers.get_mut(&p)) {
            p.stalled = false;
        }
    }

    /// A single-source round whose source let a request time out moves on.
    fn check_source(&mut self, now_ms: u64) {
        let Some(src) = self.source else { return };
        let late = self.pieces.iter().any(|p| {
            p.have.is_none()
                && p.asks
                    .iter()
                    .any(|a| a.peer == src && now_ms.saturating_sub(a.at_ms) >= REQUEST_TIMEOUT_MS)
        });
        if late {
            if let Some(e) = self.peers.get_mut(&src) {
                e.stalled = true;
            }
            self.source = None;
        }
    }

    /// The piece to ask `peer` for now, if any (the caller sends the request).
    pub fn next_request(&mut self, peer: u64, now_ms: u64) -> Option<u32> {
        if self.done || self.suspect(peer) {
            return None;
        }
        if self.peers.get(&peer).map(|e| e.size) != self.size {
            return None;
        }
        self.check_source(now_ms);
        self.pick_source();
        if self.failed_rounds > 0 && self.source != Some(peer) {
            return None;
        }
        let live = |a: &Ask| now_ms.saturating_sub(a.at_ms) < REQUEST_TIMEOUT_MS;
        // Spread: no peer takes more than its share while others could help.
        let helpers = if self.failed_rounds > 0 {
            1
        } else {
            self.peers
                .iter()
                .filter(|(&p, e)| Some(e.size) == self.size && !self.suspect(p))
                .count()
                .max(1)
        };
        let share = self
            .pieces
            .len()
            .div_ceil(helpers)
            .clamp(1, MAX_OUTSTANDING);
        let outstanding = self
            .pieces
            .iter()
            .filter(|p| p.have.is_none() && p.asks.iter().any(|a| a.peer == peer && live(a)))
            .count();
        if outstanding >= share {
            return None;
        }
        // Fresh pieces first, then those others let time out, then our own timed-out ones.
        let (index, _) = self
            .pieces
            .iter()
            .enumerate()
            .filter(|(_, p)| p.have.is_none() && !p.asks.iter().any(live))
            .filter(|(_, p)| {
                !p.rejected
                    .iter()
                    .any(|r| r.peer == peer && now_ms.saturating_sub(r.at_ms) < REJECT_RETRY_MS)
            })
            .map(|(i, p)| {
                let rank = if p.asks.is_empty() {
                    0
                } else if p.asks.iter().all(|a| a.peer != peer) {
                    1
                } else {
                    2
                };
                (i, rank)
            })
            .min_by_key(|&(i, rank)| (rank, i))?;
        let asks = &mut self.pieces[index].asks;
        if asks.len() >= MAX_ASKS {
            asks.remove(0);
        }
        asks.push(Ask {
            peer,
            at_ms: now_ms,
        });
        Some(index as u32)
    }

    /// A piece arrived. `Some(Ok(info))` once every piece is in and the whole hashes to the
    /// info-hash; `Some(Err)` when it does not (the download starts over); `None` otherwise,
    /// including for pieces not asked of this peer, of another size or of the wrong length.
    pub fn on_data(
        &mut self,
        peer: u64,
        piece: u32,
        total: u64,
        data: &[u8],
    ) -> Option<Result<Vec<u8>, String>> {
        if self.done {
            return None;
        }
        let size = self.size?;
        let i = piece as usize;
        let p = self.pieces.get_mut(i)?;
        if p.have.is_some() || !p.asks.iter().any(|a| a.peer == peer) {
            return None;
        }
        p.asks.retain(|a| a.peer != peer);
        let want = PIECE.min(size - piece as u64 * PIECE);
        if total != size || data.len() as u64 != want {
            return None;
        }
        p.have = Some((peer, data.to_vec()));
        if self.pieces.iter().any(|p| p.have.is_none()) {
            return None;
        }
        let mut info = Vec::with_capacity(size as usize);
        for p in &self.pieces {
            info.extend_from_slice(&p.have.as_ref().expect("every piece is in").1);
        }
        if sha1(&info) == self.info_hash {
            self.done = true;
            self.find_liars(size, &info);
            self.pieces.clear();
            return Some(Ok(info));
        }
        Some(Err(self.fail(size)))
    }

    /// A failed check: blame the senders, remember what they sent, start over.
    fn fail(&mut self, size: u64) -> String {
        let mut senders = Vec::new();
        for (i, p) in self.pieces.iter().enumerate() {
            if let Some((peer, data)) = &p.have {
                if !senders.contains(peer) {
                    senders.push(*peer);
                }
                if self.history.len() < MAX_HISTORY {
                    self.history.push((size, i as u32, *peer, sha1(data)));
                }
            }
        }
        for &peer in &senders {
            if self.blame.len() < MAX_HISTORY || self.blame.contains_key(&peer) {
                *self.blame.entry(peer).or_insert(0) += 1;
            }
        }
        *self.size_failures.entry(size).or_insert(0) += 1;
        self.failed_rounds += 1;
        let size_before = self.size;
        self.refresh_size();
        if self.size == size_before {
            self.restart();
        }
        format!(
            "metadata from {} peer(s) does not match the info-hash",
            senders.len()
        )
    }

    /// Once verified: peers whose earlier pieces differ are liars, the others are cleared.
    fn find_liars(&mut self, size: u64, info: &[u8]) {
        let mut honest = Vec::new();
        for &(s, piece, peer, hash) in &self.history {
            let start = piece as usize * PIECE as usize;
            let good = &info[start..(start + PIECE as usize).min(info.len())];
            if s != size {
                continue;
            }
            if sha1(good) == hash {
                honest.push(peer);
            } else if !self.liars.contains(&peer) {
                self.liars.push(peer);
            }
        }
        for peer in honest {
            if !self.liars.contains(&peer) {
                self.blame.remove(&peer);
            }
        }
    }

    /// The peer refused to send `piece`.
    pub fn on_reject(&mut self, peer: u64, piece: u32) {
        let Some(p) = self.pieces.get_mut(piece as usize) else {
            return;
        };
        let Some(ask) = p.asks.iter().copied().find(|a| a.peer == peer) else {
            return;
        };
        p.asks.retain(|a| a.peer != peer);
        if p.rejected.len() >= MAX_ASKS {
            p.rejected.remove(0);
        }
        p.rejected.push(ask);
        if self.source == Some(peer) {
            if let Some(e) = self.peers.get_mut(&peer) {
                e.stalled = true;
            }
            self.source = None;
        }
    }

    /// The peer disconnected: its requests are free again (its blame is kept).
    pub fn peer_gone(&mut self, peer: u64) {
        self.peers.remove(&peer);
        self.drop_asks_of(peer);
        for p in &mut self.pieces {
            p.rejected.retain(|a| a.peer != peer);
        }
        self.refresh_size();
    }

    /// Peers that sent bad metadata: blamed in [`SUSPECT_FAILURES`] failed checks, or, once
    /// verified, shown to have sent pieces that differ.
    pub fn suspects(&self) -> Vec<u64> {
        let mut out: Vec<u64> = self
            .blame
            .iter()
            .filter(|(_, &b)| b >= SUSPECT_FAILURES)
            .map(|(&p, _)| p)
            .collect();
        for &p in &self.liars {
            if !out.contains(&p) {
                out.push(p);
            }
        }
        out.sort_unstable();
        out
    }
}

#[cfg(test)]
#[path = "metadata_tests.rs"]
mod tests;
