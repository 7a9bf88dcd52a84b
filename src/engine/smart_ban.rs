//! Smart ban: when a piece fails its hash check, the SHA-1 of each of its blocks and who sent
//! it are kept; when the piece later passes (fetched again, maybe from others), the blocks
//! whose kept hash differs from the good data's name exactly the peers that sent bad data.
//! An honest peer that only shared a piece with a liar is never banned. Bounded: the oldest
//! failed piece is forgotten past the cap.

use super::PeerId;
use std::collections::{HashMap, VecDeque};

/// Failed pieces remembered at most.
pub const MAX_PIECES: usize = 64;

/// Who sent a block and the SHA-1 of what they sent (None: nobody, or not kept).
pub type BlockRecord = Option<(PeerId, [u8; 20])>;

#[derive(Debug, Default)]
pub struct SmartBan {
    failed: HashMap<u32, Vec<BlockRecord>>,
    order: VecDeque<u32>,
}

impl SmartBan {
    /// A piece failed: `blocks[i]` is who sent block i and the SHA-1 of what they sent.
    /// A second failure keeps the first record's entries and adds the new senders' ones only
    /// where the first had none, so both liars can be named.
    pub fn piece_failed(&mut self, piece: u32, blocks: Vec<BlockRecord>) {
        match self.failed.get_mut(&piece) {
            Some(kept) => {
                for (k, b) in kept.iter_mut().zip(blocks) {
                    if k.is_none() {
                        *k = b;
                    }
                }
            }
            None => {
                if self.order.len() >= MAX_PIECES {
                    if let Some(old) = self.order.pop_front() {
                        self.failed.remove(&old);
                    }
                }
                self.failed.insert(piece, blocks);
                self.order.push_back(piece);
            }
        }
    }

    /// The piece passed with these block hashes: the peers whose earlier blocks differed.
    pub fn piece_passed(&mut self, piece: u32, good: &[[u8; 20]]) -> Vec<PeerId> {
        let Some(kept) = self.failed.remove(&piece) else {
            return Vec::new();
        };
        self.order.retain(|&p| p != piece);
        let mut bad: Vec<PeerId> = kept
            .iter()
            .zip(good)
            .filter_map(|(k, g)| k.filter(|(_, h)| h != g).map(|(peer, _)| peer))
            .collect();
        bad.sort_unstable();
        bad.dedup();
        bad
    }

    pub fn remembered(&self) -> usize {
        self.failed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_peer_whose_block_differed_is_named() {
        let mut s = SmartBan::default();
        let good = [[1u8; 20], [2; 20], [3; 20]];
        // Peer 7 sent a bad block 1; peers 5 and 6 sent good blocks 0 and 2.
        s.piece_failed(
            4,
            vec![Some((5, good[0])), Some((7, [9; 20])), Some((6, good[2]))],
        );
        assert_eq!(s.piece_passed(4, &good), vec![7]);
        assert_eq!(
            s.piece_passed(4, &good),
            Vec::<PeerId>::new(),
            "forgotten once used"
        );
    }

    #[test]
    fn bounded() {
        let mut s = SmartBan::default();
        for p in 0..(MAX_PIECES as u32 + 10) {
            s.piece_failed(p, vec![Some((1, [0; 20]))]);
        }
        assert_eq!(s.remembered(), MAX_PIECES);
        assert!(
            s.piece_passed(0, &[[1; 20]]).is_empty(),
            "the oldest was forgotten"
        );
        assert_eq!(s.piece_passed(MAX_PIECES as u32 + 9, &[[1; 20]]), vec![1]);
    }
}
