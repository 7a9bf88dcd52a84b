//! The piece picker: which blocks a peer should be asked for next.
//!
//! Order, for a peer with the pieces in `has`:
//! 1. pieces with a deadline (a stream's reader), earliest first; the first few of them (the
//!    critical window, [`Picker::critical`]) are left to the caller, which hands their
//!    blocks one at a time ([`Picker::take_critical`]) to the peers that will deliver them
//!    soonest and may ask a second peer for a block a slow one holds;
//! 2. pieces already started, highest priority first, then the most complete (a fast peer
//!    asking for whole pieces skips those other peers are fetching);
//! 3. a new piece: random among the first `random_first` (so a new download has something to
//!    trade at once), then rarest first among the highest priority, random among equals;
//! 4. strict endgame: once no block is free anywhere, blocks other peers were asked for, at
//!    most [`MAX_DUP`] askers a block; the first copy to arrive cancels the others.
//!
//! Priority 0 means "not wanted" (unselected files). A piece whose blocks are all in waits
//! for its hash check (`pending`); a failed check frees its blocks for a second try.

use super::bitfield::Bitfield;
use super::{Block, PeerId, Rng, BLOCK};
use std::collections::{BTreeSet, HashMap};

/// Most peers asked for one block at once (endgame).
pub const MAX_DUP: usize = 2;
/// The default priority of a piece (1 lowest, 7 highest; 0 not wanted).
pub const DEFAULT_PRIORITY: u8 = 4;

/// Piece and block sizes of a torrent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub piece_count: u32,
    pub piece_length: u32,
    pub total: u64,
}

impl Layout {
    pub fn piece_len(&self, piece: u32) -> u32 {
        if piece + 1 == self.piece_count {
            (self.total - u64::from(piece) * u64::from(self.piece_length)) as u32
        } else {
            self.piece_length
        }
    }

    pub fn blocks(&self, piece: u32) -> u32 {
        self.piece_len(piece).div_ceil(BLOCK)
    }

    /// Bytes of `block` (the last block of the last piece may be short).
    pub fn block_len(&self, block: Block) -> u32 {
        let start = block.index * BLOCK;
        (self.piece_len(block.piece) - start).min(BLOCK)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    Free,
    Requested(Vec<PeerId>),
    Received(PeerId),
}

#[derive(Debug, Clone)]
struct Partial {
    slots: Vec<Slot>,
    received: u32,
}

/// What became of an arriving block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arrival {
    /// Kept. `complete`: the piece is whole and waits for its hash check. `cancel`: other
    /// peers asked for the same block (endgame) whose requests should be cancelled.
    Kept { complete: bool, cancel: Vec<PeerId> },
    /// Already had (a late endgame duplicate): drop it.
    Duplicate,
    /// Not a block of a piece being fetched.
    Unrequested,
}

pub struct Picker {
    layout: Layout,
    have: Bitfield,
    /// Whole, waiting for the hash check (or the disk).
    pending: Bitfield,
    availability: Vec<u32>,
    priority: Vec<u8>,
    deadlines: BTreeSet<(u64, u32)>,
    deadline_of: HashMap<u32, u64>,
    partial: HashMap<u32, Partial>,
    random_first: u32,
    rng: Rng,
    /// Pieces in progress at most (the caller's memory budget): past it only pieces already
    /// started (and deadline pieces) are handed out.
    max_in_progress: usize,
}

impl Picker {
    pub fn new(layout: Layout, have: Bitfield, seed: u64) -> Picker {
        let n = layout.piece_count as usize;
        Picker {
            layout,
            pending: Bitfield::new(layout.piece_count),
            have,
            availability: vec![0; n],
            priority: vec![DEFAULT_PRIORITY; n],
            deadlines: BTreeSet::new(),
            deadline_of: HashMap::new(),
            partial: HashMap::new(),
            random_first: 4,
            rng: Rng::new(seed),
            max_in_progress: usize::MAX,
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    /// True when every wanted piece has passed its hash check.
    pub fn is_done(&self) -> bool {
        (0..self.layout.piece_count).all(|i| self.priority[i as usize] == 0 || self.have.get(i))
    }

    /// Wanted pieces not yet had.
    pub fn wanted_left(&self) -> u32 {
        (0..self.layout.piece_count)
            .filter(|&i| self.priority[i as usize] > 0 && !self.have.get(i))
            .count() as u32
    }

    /// Caps the pieces in progress (see the `max_in_progress` field).
    pub fn set_max_in_progress(&mut self, n: usize) {
        self.max_in_progress = n.max(1);
    }

    /// Pieces started and not yet had (in memory somewhere: arriving, hashing or writing).
    pub fn in_progress(&self) -> usize {
        self.partial.len()
    }

    /// Whether `piece` is wanted (priority above 0) and not had yet.
    pub fn wants(&self, piece: u32) -> bool {
        piece < self.layout.piece_count
            && self.priority[piece as usize] > 0
            && !self.have.get(piece)
    }

    pub fn set_priority(&mut self, piece: u32, priority: u8) {
        if let Some(p) = self.priority.get_mut(piece as usize) {
            *p = priority.min(7);
        }
    }

    /// Gives `piece` a deadline (smaller is sooner) or removes it.
    pub fn set_deadline(&mut self, piece: u32, deadline: Option<u64>) {
        if let Some(old) = self.deadline_of.remove(&piece) {
            self.deadlines.remove(&(old, piece));
        }
        if let Some(d) = deadline.filter(|_| piece < self.layout.piece_count) {
            self.deadlines.insert((d, piece));
            self.deadline_of.insert(piece, d);
        }
    }

    /// Pieces with a deadline, soonest first.
    pub fn by_deadline(&self) -> Vec<u32> {
        self.deadlines.iter().map(|&(_, p)| p).collect()
    }

    /// A peer announced these pieces (its bitfield), or one more (`have`).
    pub fn peer_has(&mut self, pieces: &Bitfield) {
        for i in pieces.iter() {
            self.availability[i as usize] += 1;
        }
    }

    pub fn peer_has_one(&mut self, piece: u32) {
        if let Some(a) = self.availability.get_mut(piece as usize) {
            *a += 1;
        }
    }

    /// A peer is gone: its pieces no longer count and its requests are free again.
    pub fn peer_gone(&mut self, peer: PeerId, pieces: &Bitfield) {
        for i in pieces.iter() {
            let a = &mut self.availability[i as usize];
            *a = a.saturating_sub(1);
        }
        for part in self.partial.values_mut() {
            for slot in &mut part.slots {
                release(slot, peer);
            }
        }
    }

    /// A request will not be answered (rejected, timed out, choked): the block is free again
    /// unless another peer has it requested too.
    pub fn request_failed(&mut self, peer: PeerId, block: Block) {
        if let Some(slot) = self.slot_mut(block) {
            release(slot, peer);
        }
    }

    /// Up to `max` blocks for `peer` to ask for. `whole`: a fast peer that should get whole
    /// pieces of its own rather than share pieces others are fetching.
    pub fn pick(&mut self, peer: PeerId, has: &Bitfield, max: usize, whole: bool) -> Vec<Block> {
        self.pick_after(peer, has, max, whole, None)
    }

    /// [`Picker::pick`], but a new piece is the one after `after` (and the next after it)
    /// while that one can be fetched: a webseed's requests then form long contiguous ranges.
    pub fn pick_after(
        &mut self,
        peer: PeerId,
        has: &Bitfield,
        max: usize,
        whole: bool,
        after: Option<u32>,
    ) -> Vec<Block> {
        self.pick_excluding(peer, has, max, whole, after, &[])
    }

    /// [`Picker::pick_after`], leaving out the pieces in `exclude` (the critical window, which
    /// [`Picker::take_critical`] hands out to the peers that deliver soonest) except in
    /// endgame.
    pub fn pick_excluding(
        &mut self,
        peer: PeerId,
        has: &Bitfield,
        max: usize,
        whole: bool,
        mut after: Option<u32>,
        exclude: &[u32],
    ) -> Vec<Block> {
        let mut out = Vec::new();
        let deadline: Vec<u32> = self
            .deadlines
            .iter()
            .map(|&(_, p)| p)
            .filter(|p| !exclude.contains(p))
            .collect();
        for piece in deadline {
            if out.len() >= max {
                return out;
            }
            if self.fetchable(piece, has) {
                self.start(piece);
                self.take_free(piece, peer, max, &mut out);
            }
        }
        let mut started: Vec<(u8, u32, u32)> = self
            .partial
            .iter()
            .filter(|(&p, part)| {
                has.get(p)
                    && !exclude.contains(&p)
                    && self.priority[p as usize] > 0
                    && !self.pending.get(p)
                    && part.slots.contains(&Slot::Free)
                    && (!whole || part.slots.iter().all(|s| own_or_free(s, peer)))
            })
            .map(|(&p, part)| (self.priority[p as usize], part.received, p))
            .collect();
        started.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
        for (_, _, piece) in started {
            if out.len() >= max {
                return out;
            }
            self.take_free(piece, peer, max, &mut out);
        }
        while out.len() < max && self.partial.len() < self.max_in_progress {
            // The run goes on within the priority it started in.
            let next = after.and_then(|a| {
                let n = a.checked_add(1).filter(|&n| n < self.layout.piece_count)?;
                (self.fetchable(n, has)
                    && !exclude.contains(&n)
                    && !self.partial.contains_key(&n)
                    && self.priority[n as usize] >= self.priority[a as usize])
                    .then_some(n)
            });
            let Some(piece) = next.or_else(|| self.choose_new(has, exclude)) else {
                break;
            };
            after = Some(piece);
            self.start(piece);
            self.take_free(piece, peer, max, &mut out);
        }
        if out.len() < max && !self.any_free() {
            self.endgame(peer, has, max, &mut out);
        }
        out
    }

    /// The critical window: the first `n` pieces with a deadline still to fetch (not had,
    /// not whole and waiting for a check), soonest first.
    pub fn critical(&self, n: usize) -> Vec<u32> {
        self.deadlines
            .iter()
            .map(|&(_, p)| p)
            .filter(|&p| !self.have.get(p) && !self.pending.get(p) && self.priority[p as usize] > 0)
            .take(n)
            .collect()
    }

    /// One block of the critical `piece` for `peer` (which has it): a free block first;
    /// failing that, a takeover: a block every requester of which is in `slow` (slow, late
    /// or snubbed peers; empty: no takeover, no scan), that `peer` has not asked for and
    /// fewer than [`MAX_DUP`] have.
    /// The second copy is a duplicate request; whichever copy arrives first cancels the
    /// other ([`Arrival::Kept`]). `Some((block, taken_over))`.
    pub fn take_critical(
        &mut self,
        piece: u32,
        peer: PeerId,
        has: &Bitfield,
        slow: &[PeerId],
    ) -> Option<(Block, bool)> {
        if !self.fetchable(piece, has) {
            return None;
        }
        self.start(piece);
        let part = self.partial.get_mut(&piece)?;
        if let Some(i) = part.slots.iter().position(|s| *s == Slot::Free) {
            part.slots[i] = Slot::Requested(vec![peer]);
            return Some((
                Block {
                    piece,
                    index: i as u32,
                },
                false,
            ));
        }
        if slow.is_empty() {
            return None;
        }
        for (i, slot) in part.slots.iter_mut().enumerate() {
            let block = Block {
                piece,
                index: i as u32,
            };
            if let Slot::Requested(peers) = slot {
                if peers.len() < MAX_DUP
                    && !peers.contains(&peer)
                    && peers.iter().all(|h| slow.contains(h))
                {
                    peers.push(peer);
                    return Some((block, true));
                }
            }
        }
        None
    }

    /// A block arrived from `peer`.
    pub fn received(&mut self, peer: PeerId, block: Block) -> Arrival {
        if self.have.get(block.piece) {
            return Arrival::Duplicate;
        }
        let Some(part) = self.partial.get_mut(&block.piece) else {
            return Arrival::Unrequested;
        };
        let Some(slot) = part.slots.get_mut(block.index as usize) else {
            return Arrival::Unrequested;
        };
        let cancel = match slot {
            Slot::Received(_) => return Arrival::Duplicate,
            Slot::Free => Vec::new(),
            Slot::Requested(peers) => peers.iter().copied().filter(|&p| p != peer).collect(),
        };
        *slot = Slot::Received(peer);
        part.received += 1;
        let complete = part.received as usize == part.slots.len();
        if complete {
            self.pending.set(block.piece);
        }
        Arrival::Kept { complete, cancel }
    }

    /// Who sent each block of a whole piece (for smart ban), in block order.
    pub fn senders(&self, piece: u32) -> Vec<Option<PeerId>> {
        self.partial.get(&piece).map_or_else(Vec::new, |part| {
            part.slots
                .iter()
                .map(|s| match s {
                    Slot::Received(p) => Some(*p),
                    _ => None,
                })
                .collect()
        })
    }

    /// The hash check of a whole piece: passed (it is had now) or failed (fetched again).
    pub fn hashed(&mut self, piece: u32, ok: bool) {
        self.pending.clear(piece);
        if ok {
            self.have.set(piece);
            self.partial.remove(&piece);
            self.set_deadline(piece, None);
        } else if let Some(part) = self.partial.get_mut(&piece) {
            for s in &mut part.slots {
                *s = Slot::Free;
            }
            part.received = 0;
        }
    }

    /// Whether `piece` has blocks in flight or received (started, not yet had).
    pub fn started(&self, piece: u32) -> bool {
        self.partial.contains_key(&piece)
    }

    /// A had piece leaves the disk (the piece cache evicts it): not had, and not fetched
    /// again until [`Picker::evicted`] says its bytes are gone.
    pub fn evict(&mut self, piece: u32) -> bool {
        if piece >= self.layout.piece_count || !self.have.get(piece) {
            return false;
        }
        self.have.clear(piece);
        self.pending.set(piece);
        true
    }

    /// An evicted piece's bytes are released: it may be fetched again.
    pub fn evicted(&mut self, piece: u32) {
        if piece < self.layout.piece_count
            && !self.have.get(piece)
            && !self.partial.contains_key(&piece)
        {
            self.pending.clear(piece);
        }
    }

    /// Peers with an outstanding request for `block`.
    pub fn requesters(&self, block: Block) -> Vec<PeerId> {
        match self
            .partial
            .get(&block.piece)
            .and_then(|p| p.slots.get(block.index as usize))
        {
            Some(Slot::Requested(peers)) => peers.clone(),
            _ => Vec::new(),
        }
    }

    fn slot_mut(&mut self, block: Block) -> Option<&mut Slot> {
        self.partial
            .get_mut(&block.piece)?
            .slots
            .get_mut(block.index as usize)
    }

    fn fetchable(&self, piece: u32, has: &Bitfield) -> bool {
        piece < self.layout.piece_count
            && has.get(piece)
            && !self.have.get(piece)
            && !self.pending.get(piece)
            && self.priority[piece as usize] > 0
    }

    fn start(&mut self, piece: u32) {
        let blocks = self.layout.blocks(piece) as usize;
        self.partial.entry(piece).or_insert_with(|| Partial {
            slots: vec![Slot::Free; blocks],
            received: 0,
        });
    }

    fn take_free(&mut self, piece: u32, peer: PeerId, max: usize, out: &mut Vec<Block>) {
        let Some(part) = self.partial.get_mut(&piece) else {
            return;
        };
        for (i, slot) in part.slots.iter_mut().enumerate() {
            if out.len() >= max {
                return;
            }
            if *slot == Slot::Free {
                *slot = Slot::Requested(vec![peer]);
                out.push(Block {
                    piece,
                    index: i as u32,
                });
            }
        }
    }

    /// A piece not yet started that `has` offers: random while we have few, else rarest
    /// first among the highest priority, random among equals.
    fn choose_new(&mut self, has: &Bitfield, exclude: &[u32]) -> Option<u32> {
        let early = self.have.count() < self.random_first;
        let mut best: Option<(u8, u32)> = None;
        let mut chosen = None;
        let mut ties = 0u64;
        for piece in has.iter() {
            if !self.fetchable(piece, has)
                || self.partial.contains_key(&piece)
                || exclude.contains(&piece)
            {
                continue;
            }
            let key = if early {
                (0, 0)
            } else {
                (
                    self.priority[piece as usize],
                    u32::MAX - self.availability[piece as usize],
                )
            };
            match best {
                Some(b) if key < b => continue,
                Some(b) if key == b => {
                    ties += 1;
                    if self.rng.below(ties) == 0 {
                        chosen = Some(piece);
                    }
                }
                _ => {
                    best = Some(key);
                    ties = 1;
                    chosen = Some(piece);
                }
            }
        }
        chosen
    }

    fn any_free(&self) -> bool {
        if self.partial.values().any(|p| p.slots.contains(&Slot::Free)) {
            return true;
        }
        (0..self.layout.piece_count).any(|i| {
            self.priority[i as usize] > 0
                && !self.have.get(i)
                && !self.pending.get(i)
                && !self.partial.contains_key(&i)
        })
    }

    fn endgame(&mut self, peer: PeerId, has: &Bitfield, max: usize, out: &mut Vec<Block>) {
        let mut pieces: Vec<u32> = self
            .partial
            .keys()
            .copied()
            .filter(|&p| self.fetchable(p, has))
            .collect();
        pieces.sort_unstable();
        for piece in pieces {
            let part = self.partial.get_mut(&piece).expect("listed above");
            for (i, slot) in part.slots.iter_mut().enumerate() {
                if out.len() >= max {
                    return;
                }
                if let Slot::Requested(peers) = slot {
                    if peers.len() < MAX_DUP && !peers.contains(&peer) {
                        peers.push(peer);
                        out.push(Block {
                            piece,
                            index: i as u32,
                        });
                    }
                }
            }
        }
    }
}

fn own_or_free(slot: &Slot, peer: PeerId) -> bool {
    match slot {
        Slot::Free => true,
        Slot::Requested(peers) => peers.iter().all(|&p| p == peer),
        Slot::Received(_) => true,
    }
}

fn release(slot: &mut Slot, peer: PeerId) {
    if let Slot::Requested(peers) = slot {
        peers.retain(|&p| p != peer);
        if peers.is_empty() {
            *slot = Slot::Free;
        }
    }
}

#[cfg(test)]
#[path = "picker_tests.rs"]
mod tests;
