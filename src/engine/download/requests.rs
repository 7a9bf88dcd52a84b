//! Which peer is asked for which blocks. Two passes each time requests are topped up:
//!
//! 1. The critical window (the first [`CRITICAL_PIECES`] pieces with a deadline, the ones
//!    readers wait for): each free block goes to the peer with the shortest expected queue
//!    time, the bytes already asked of it plus this block over its measured rate (its peak
//!    rate while it sends nothing, the swarm's average before it has sent anything), the way
//!    libtorrent's time-critical requests do it. A peer more than [`SLOW_FACTOR`] times
//!    slower than the fastest one that has the piece is left out, and critical requests may
//!    go past a peer's usual queue target up to its hard cap (its `reqq` and ours), so a
//!    full queue at a fast peer does not send the piece to a slow one. When a critical piece
//!    has no free block left, a block held only by a slow peer (that much slower than the
//!    one asking, snubbed, or unanswered for [`LATE_MS`]) is asked of the faster peer too: a
//!    takeover, at most [`MAX_DUP`](crate::engine::picker::MAX_DUP) askers a block, and the
//!    copy that arrives first cancels the other.
//! 2. Every other piece, per peer, as the picker orders them (other deadlines, partial
//!    pieces, rarest first), up to about [`QUEUE_SECS`](super::QUEUE_SECS) of data at its
//!    rate.

use super::{Action, Download, Peer, MIN_QUEUE, QUEUE_SECS, START_QUEUE};
use super::{WEB_MAX_QUEUE, WEB_MIN_QUEUE};
use crate::engine::{PeerId, BLOCK};
use crate::proto::bt::peer_wire::BlockRef;

/// Pieces with a deadline handed out by expected queue time (the rest by the picker).
pub const CRITICAL_PIECES: usize = 16;
/// A peer this many times slower than another gets no critical block the other can fetch,
/// and its critical blocks may be asked of the faster one too.
pub const SLOW_FACTOR: u64 = 4;
/// A critical block unanswered this long may be asked of another peer.
pub const LATE_MS: u64 = 2 * QUEUE_SECS * 1000;

/// One peer as the critical pass sees it.
struct Candidate {
    id: PeerId,
    /// Estimated bytes per second (never 0).
    rate: u64,
    /// Bytes asked and not yet received.
    queued: u64,
    /// Requests it may still take (its hard cap less what is in flight).
    room: usize,
}

impl Candidate {
    /// Milliseconds until a block asked now would have arrived.
    fn queue_ms(&self) -> u64 {
        (self.queued + u64::from(BLOCK)).saturating_mul(1000) / self.rate
    }
}

/// A peer's rate for planning: measured, else its peak, else `average`.
fn estimate(p: &Peer, average: u64) -> u64 {
    if p.rate > 0 {
        p.rate
    } else if p.peak > 0 {
        p.peak
    } else {
        average
    }
    .max(1)
}

impl Download {
    pub(super) fn fill_all(&mut self) {
        let critical = self.request_critical(None);
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            self.fill_normal(id, &critical);
        }
    }

    /// Tops up one peer's requests: critical blocks it is the best candidate for among those
    /// it could take (every peer's were placed by the last full pass; this is the hot path,
    /// after each block), then the rest.
    pub(super) fn fill(&mut self, peer: PeerId) {
        let critical = self.request_critical(Some(peer));
        self.fill_normal(peer, &critical);
    }

    /// The average measured rate of the peers that have one (a default before any has).
    fn average_rate(&self) -> u64 {
        let (sum, n) = self
            .peers
            .values()
            .filter(|p| p.rate > 0)
            .fold((0u64, 0u64), |(s, n), p| (s + p.rate, n + 1));
        sum.checked_div(n).unwrap_or(u64::from(BLOCK))
    }

    /// Pass 1 (see the module text), for every peer or `only` one (the others still count
    /// for who is fastest). Returns the critical window, which pass 2 leaves out.
    fn request_critical(&mut self, only: Option<PeerId>) -> Vec<u32> {
        let critical = self.picker.critical(CRITICAL_PIECES);
        if critical.is_empty() {
            return critical;
        }
        let average = self.average_rate();
        let max_requests = self.limits.max_requests;
        let mut cands: Vec<Candidate> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.choking && p.interested && !p.snubbed)
            .map(|(&id, p)| {
                let cap = if p.web {
                    WEB_MAX_QUEUE
                } else {
                    p.reqq.min(max_requests)
                };
                Candidate {
                    id,
                    rate: estimate(p, average),
                    queued: p.asked.len() as u64 * u64::from(BLOCK),
                    room: cap.saturating_sub(p.asked.len()),
                }
            })
            .collect();
        let now = self.last_tick_ms;
        for &piece in &critical {
            let has = |c: &Candidate| self.peers.get(&c.id).is_some_and(|p| p.bits.get(piece));
            let fastest = cands
                .iter()
                .filter(|c| c.room > 0 && has(c))
                .map(|c| c.rate)
                .max()
                .unwrap_or(0);
            let mut eligible: Vec<usize> = (0..cands.len())
                .filter(|&i| {
                    let c = &cands[i];
                    only.is_none_or(|o| o == c.id)
                        && c.room > 0
                        && has(c)
                        && c.rate.saturating_mul(SLOW_FACTOR) > fastest
                })
                .collect();
            while let Some(k) = (0..eligible.len()).min_by_key(|&k| cands[eligible[k]].queue_ms()) {
                let c = &cands[eligible[k]];
                let (id, rate) = (c.id, c.rate);
                // Who this candidate may take blocks over from, worked out once (the
                // takeover scan is skipped when nobody is).
                let slow: Vec<PeerId> = self
                    .peers
                    .iter()
                    .filter(|&(&h, p)| {
                        h != id
                            && !p.asked.is_empty()
                            && (p.snubbed
                                || estimate(p, average).saturating_mul(SLOW_FACTOR) <= rate
                                // Answered in order: a peer whose oldest request is late
                                // delivers none of the later ones sooner.
                                || p.asked
                                    .front()
                                    .is_some_and(|&(_, at)| now.saturating_sub(at) >= LATE_MS))
                    })
                    .map(|(&h, _)| h)
                    .collect();
                let bits = &self.peers[&id].bits;
                let Some((block, taken_over)) = self.picker.take_critical(piece, id, bits, &slow)
                else {
                    eligible.swap_remove(k);
                    continue;
                };
                let len = self.layout.block_len(block);
                if taken_over {
                    self.counters.taken_over += 1;
                }
                let c = &mut cands[eligible[k]];
                c.queued += u64::from(len);
                c.room -= 1;
                if c.room == 0 {
                    eligible.swap_remove(k);
                }
                self.peers
                    .get_mut(&id)
                    .expect("a candidate")
                    .asked
                    .push_back((block, now));
                let r = BlockRef {
                    index: block.piece,
                    begin: block.index * BLOCK,
                    length: len,
                };
                self.out.push(Action::Request(id, r));
            }
        }
        critical
    }

    /// Pass 2 for one peer: up to its queue target, the critical window left out.
    fn fill_normal(&mut self, peer: PeerId, critical: &[u32]) {
        let budget = self
            .limits
            .max_buffered
            .max(2 * u64::from(self.layout.piece_length));
        let pieces = budget / u64::from(self.layout.piece_length.max(1));
        self.picker.set_max_in_progress(pieces as usize);
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.choking || !p.interested {
            return;
        }
        let target = if p.snubbed {
            1
        } else if p.rate == 0 {
            START_QUEUE
        } else {
            ((p.rate * QUEUE_SECS) / u64::from(BLOCK)) as usize
        }
        .max(if p.snubbed {
            1
        } else if p.web {
            WEB_MIN_QUEUE
        } else {
            MIN_QUEUE
        })
        .min(if p.web { WEB_MAX_QUEUE } else { p.reqq })
        .min(if p.web {
            WEB_MAX_QUEUE
        } else {
            self.limits.max_requests
        });
        if p.asked.len() >= target {
            return;
        }
        let whole = p.web || p.rate >= u64::from(self.layout.piece_length);
        let after = if p.web { p.last_piece } else { None };
        let picked = self.picker.pick_excluding(
            peer,
            &p.bits,
            target - p.asked.len(),
            whole,
            after,
            critical,
        );
        if p.web {
            p.last_piece = picked.last().map(|b| b.piece).or(p.last_piece);
        }
        let now = self.last_tick_ms;
        for b in picked {
            p.asked.push_back((b, now));
            let r = BlockRef {
                index: b.piece,
                begin: b.index * BLOCK,
                length: self.layout.block_len(b),
            };
            self.out.push(Action::Request(peer, r));
        }
    }
}
