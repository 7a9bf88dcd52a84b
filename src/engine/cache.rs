//! The fetch-through piece cache's bookkeeping, sans-IO: which pieces of which torrents are
//! on disk under `data/cache/`, their bytes against the cap (`fetch.cache_bytes`), and the
//! order they were last used in. The `net` loop inserts a piece when it goes to the disk,
//! touches it when a reader asks for it, and before each write asks for [`PieceCache::victims`]:
//! the least recently used pieces that are not kept (a reader wants them), until the new
//! piece fits. Pinned torrents are not in it at all. Memory: about 60 bytes a cached piece
//! (a 2 GiB cache of 256 KiB pieces is 8,192 pieces, under 0.5 MB).

use std::collections::{BTreeSet, HashMap};

#[derive(Debug)]
pub struct PieceCache {
    cap: u64,
    used: u64,
    clock: u64,
    /// Small ids for info-hashes, so entries stay small.
    ids: HashMap<[u8; 20], u32>,
    hashes: HashMap<u32, [u8; 20]>,
    next_id: u32,
    /// (torrent id, piece) -> (last use, bytes).
    entries: HashMap<(u32, u32), (u64, u32)>,
    /// (last use, torrent id, piece), oldest first.
    order: BTreeSet<(u64, u32, u32)>,
}

impl PieceCache {
    pub fn new(cap: u64) -> PieceCache {
        PieceCache {
            cap,
            used: 0,
            clock: 0,
            ids: HashMap::new(),
            hashes: HashMap::new(),
            next_id: 0,
            entries: HashMap::new(),
            order: BTreeSet::new(),
        }
    }

    pub fn cap(&self) -> u64 {
        self.cap
    }

    pub fn set_cap(&mut self, cap: u64) {
        self.cap = cap;
    }

    /// Bytes of the pieces in the cache.
    pub fn used(&self) -> u64 {
        self.used
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, ih: &[u8; 20], piece: u32) -> bool {
        self.ids
            .get(ih)
            .is_some_and(|&t| self.entries.contains_key(&(t, piece)))
    }

    fn id(&mut self, ih: &[u8; 20]) -> u32 {
        if let Some(&t) = self.ids.get(ih) {
            return t;
        }
        let t = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.ids.insert(*ih, t);
        self.hashes.insert(t, *ih);
        t
    }

    /// A piece of `len` bytes is on disk now (or about to be): the most recently used.
    pub fn insert(&mut self, ih: &[u8; 20], piece: u32, len: u32) {
        let t = self.id(ih);
        self.clock += 1;
        if let Some((old, old_len)) = self.entries.insert((t, piece), (self.clock, len)) {
            self.order.remove(&(old, t, piece));
            self.used -= u64::from(old_len);
        }
        self.order.insert((self.clock, t, piece));
        self.used += u64::from(len);
    }

    /// A reader used the piece (if it is cached).
    pub fn touch(&mut self, ih: &[u8; 20], piece: u32) {
        let Some(&t) = self.ids.get(ih) else {
            return;
        };
        if let Some(e) = self.entries.get_mut(&(t, piece)) {
            self.order.remove(&(e.0, t, piece));
            self.clock += 1;
            e.0 = self.clock;
            self.order.insert((self.clock, t, piece));
        }
    }

    /// The piece left the disk (evicted, or its write failed).
    pub fn remove(&mut self, ih: &[u8; 20], piece: u32) {
        let Some(&t) = self.ids.get(ih) else {
            return;
        };
        if let Some((stamp, len)) = self.entries.remove(&(t, piece)) {
            self.order.remove(&(stamp, t, piece));
            self.used -= u64::from(len);
        }
    }

    /// Forgets a whole torrent (deleted, or pinned: its pieces are kept outside the cap).
    pub fn remove_torrent(&mut self, ih: &[u8; 20]) {
        let Some(t) = self.ids.remove(ih) else {
            return;
        };
        self.hashes.remove(&t);
        let pieces: Vec<u32> = self
            .entries
            .keys()
            .filter(|(tt, _)| *tt == t)
            .map(|&(_, p)| p)
            .collect();
        for p in pieces {
            if let Some((stamp, len)) = self.entries.remove(&(t, p)) {
                self.order.remove(&(stamp, t, p));
                self.used -= u64::from(len);
            }
        }
    }

    /// Pieces to evict, least recently used first, so that `need` more bytes fit under the
    /// cap; `keep` names pieces that must stay (a reader wants them). They leave the cache
    /// here. Fewer than needed when everything else is kept.
    pub fn victims(
        &mut self,
        need: u64,
        keep: impl Fn(&[u8; 20], u32) -> bool,
    ) -> Vec<([u8; 20], u32)> {
        let mut out = Vec::new();
        if self.used + need <= self.cap {
            return out;
        }
        let mut over = self.used + need - self.cap;
        let mut chosen = Vec::new();
        for &(stamp, t, p) in &self.order {
            if over == 0 {
                break;
            }
            let ih = self.hashes[&t];
            if keep(&ih, p) {
                continue;
            }
            let len = self.entries[&(t, p)].1;
            over = over.saturating_sub(u64::from(len));
            chosen.push((stamp, t, p, len));
            out.push((ih, p));
        }
        for (stamp, t, p, len) in chosen {
            self.order.remove(&(stamp, t, p));
            self.entries.remove(&(t, p));
            self.used -= u64::from(len);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 20] = [1; 20];
    const B: [u8; 20] = [2; 20];

    #[test]
    fn least_recently_used_go_first_and_kept_ones_stay() {
        let mut c = PieceCache::new(400);
        for p in 0..4 {
            c.insert(&A, p, 100);
        }
        assert_eq!(c.used(), 400);
        assert!(
            c.victims(0, |_, _| false).is_empty(),
            "at the cap, nothing to do"
        );
        c.touch(&A, 0);
        // Room for one more: piece 1 is the oldest now (0 was touched).
        assert_eq!(c.victims(100, |_, _| false), vec![(A, 1)]);
        c.insert(&B, 0, 100);
        // Two more, but 2 is kept (a reader is on it): 3 and 0 go.
        let v = c.victims(200, |ih, p| *ih == A && p == 2);
        assert_eq!(v, vec![(A, 3), (A, 0)]);
        assert_eq!(c.used(), 200);
        assert!(c.contains(&A, 2) && c.contains(&B, 0) && !c.contains(&A, 0));
        // Everything kept: fewer than needed, nothing lost.
        assert!(c.victims(10_000, |_, _| true).is_empty());
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn removal_and_reinsertion_keep_the_count() {
        let mut c = PieceCache::new(1000);
        c.insert(&A, 5, 300);
        c.insert(&A, 5, 300);
        assert_eq!((c.used(), c.len()), (300, 1));
        c.insert(&B, 1, 200);
        c.insert(&B, 2, 200);
        c.remove(&A, 5);
        c.remove(&A, 5);
        assert_eq!(c.used(), 400);
        c.remove_torrent(&B);
        assert!(c.is_empty() && c.used() == 0);
        c.touch(&B, 1);
        c.insert(&B, 1, 50);
        c.set_cap(40);
        assert_eq!(c.victims(0, |_, _| false), vec![(B, 1)]);
        assert_eq!(c.cap(), 40);
    }
}
