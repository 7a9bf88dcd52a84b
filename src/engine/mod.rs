//! The download engine: per-torrent state that decides what to fetch from whom, fed events
//! (a peer's bitfield, a block arrived, a piece hashed, a peer gone) and returning decisions
//! (blocks to request, requests to cancel, peers to ban). Sans-IO and clock-free: no sockets,
//! files, threads or time here, so every rule is unit-tested on its own; the `net` loop and
//! the `download` command drive it.
//!
//! - `picker`: which blocks to request next (deadlines for streaming, partial pieces first,
//!   random first pieces, rarest first with random tie-breaks, priorities, strict endgame).
//! - `smart_ban`: which peers sent the bad blocks of a piece that failed its hash check, found
//!   once the piece passes.
//! - `bitfield`: the compact piece sets both use.
//! - `trackers`: a torrent's tracker tiers (BEP-12): which announce is due, back-off, events.
//! - `webseed`: BEP-19 planning, a range of the torrent to ranged GETs per file.
//! - `metadata`: BEP-9 metadata for magnets, from several peers, checked against the
//!   info-hash before use.
//! - `readers`: fetch-through readers and the pieces each wants soon; `cache`: the piece
//!   cache's LRU order and byte count under its cap.

pub mod bitfield;
pub mod cache;
pub mod download;
pub mod metadata;
pub mod peers;
pub mod picker;
pub mod readers;
pub mod smart_ban;
pub mod trackers;
pub mod webseed;

/// A peer as the engine knows it: a small number the caller assigns (its connection slot).
pub type PeerId = u32;

/// A block: 16 KiB of a piece (the last block of the last piece may be shorter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Block {
    pub piece: u32,
    /// The block's index within its piece (offset / `BLOCK`).
    pub index: u32,
}

/// The block size every client requests.
pub const BLOCK: u32 = 16 * 1024;

/// A small deterministic generator (xorshift64*), seeded by the caller, for tie-breaks.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}
