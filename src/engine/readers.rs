//! Who reads a fetch-through download, sans-IO: each reader (an HTTP stream) names the pieces
//! it wants soon, most urgent first, and replaces that list as it moves; a closed reader
//! drops its list at once. The download gives a piece the readers' top priority while any
//! reader wants it and its own base priority after, and the piece cache never evicts a
//! wanted piece. Capped: [`MAX_READERS`] readers, [`MAX_WANTED`] pieces each. Deadlines
//! come in two tiers ([`deadline`]): every reader's next piece before any reader's
//! readahead; a reader's readahead ([`Readahead`]) doubles while it reads on contiguously and
//! resets on a seek.

use std::collections::HashMap;

/// Readers of one download at most (past it the call is refused).
pub const MAX_READERS: usize = 1024;
/// Pieces one reader may want at once (the rest of its list is ignored).
pub const MAX_WANTED: usize = 1024;

/// Deadlines of readahead pieces start here, above every "next piece" deadline (those are
/// the time in milliseconds the reader asked, far below 2^40 ms, about 35 years), so each
/// reader's next piece is fetched before anyone's readahead.
pub const READAHEAD_TIER: u64 = 1 << 40;

/// The deadline of the `index`-th piece of a reader's list asked at `now_ms`: the first (the
/// piece under the reader) by time, the rest in the readahead tier by time and position.
pub fn deadline(index: usize, now_ms: u64) -> u64 {
    match index {
        0 => now_ms,
        i => READAHEAD_TIER + now_ms + i as u64,
    }
}

/// One reader's readahead window, in pieces: it doubles each time the reader moves on to the
/// next piece, up to `max`, and goes back to `min` when the reader jumps elsewhere (a seek).
#[derive(Debug, Clone)]
pub struct Readahead {
    min: u32,
    max: u32,
    window: u32,
    at: Option<u32>,
}

impl Readahead {
    pub fn new(min: u32, max: u32) -> Readahead {
        let max = max.max(1);
        let min = min.clamp(1, max);
        Readahead {
            min,
            max,
            window: min,
            at: None,
        }
    }

    /// Pieces after the current one asked for now.
    pub fn window(&self) -> u32 {
        self.window
    }

    /// The reader is at `piece`: the list to want, `piece` first, then the window, never at
    /// or past `end` (one past the last piece the reader needs).
    pub fn at(&mut self, piece: u32, end: u32) -> Vec<u32> {
        match self.at {
            Some(p) if p == piece => {}
            Some(p) if p.checked_add(1) == Some(piece) => {
                self.window = self.window.saturating_mul(2).min(self.max);
            }
            Some(_) => self.window = self.min,
            None => {}
        }
        self.at = Some(piece);
        let upto = piece.saturating_add(1).saturating_add(self.window).min(end);
        (piece..upto.max(piece.saturating_add(1).min(end))).collect()
    }
}

#[derive(Debug, Default)]
pub struct Readers {
    lists: HashMap<u64, Vec<u32>>,
    /// Readers that want each piece.
    count: HashMap<u32, u32>,
}

/// What a change did: pieces nobody wanted before and now someone does (`added`), and
/// pieces that no reader wants any more (`released`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Change {
    pub added: Vec<u32>,
    pub released: Vec<u32>,
}

impl Readers {
    /// Replaces `reader`'s list. `None` when there are already [`MAX_READERS`] others.
    pub fn set(&mut self, reader: u64, pieces: &[u32]) -> Option<Change> {
        if !self.lists.contains_key(&reader) && self.lists.len() >= MAX_READERS {
            return None;
        }
        let mut list: Vec<u32> = Vec::with_capacity(pieces.len().min(MAX_WANTED));
        for &p in pieces {
            if list.len() >= MAX_WANTED {
                break;
            }
            if !list.contains(&p) {
                list.push(p);
            }
        }
        let mut change = Change::default();
        for &p in &list {
            let c = self.count.entry(p).or_insert(0);
            *c += 1;
            if *c == 1 {
                change.added.push(p);
            }
        }
        if let Some(old) = self.lists.insert(reader, list) {
            change.released = self.drop_list(&old);
        }
        Some(change)
    }

    /// Drops `reader`'s list; returns the pieces nobody wants now.
    pub fn remove(&mut self, reader: u64) -> Vec<u32> {
        match self.lists.remove(&reader) {
            Some(old) => self.drop_list(&old),
            None => Vec::new(),
        }
    }

    fn drop_list(&mut self, old: &[u32]) -> Vec<u32> {
        let mut released = Vec::new();
        for p in old {
            if let Some(c) = self.count.get_mut(p) {
                *c -= 1;
                if *c == 0 {
                    self.count.remove(p);
                    released.push(*p);
                }
            }
        }
        released
    }

    pub fn wants(&self, piece: u32) -> bool {
        self.count.contains_key(&piece)
    }

    /// Readers with a list.
    pub fn len(&self) -> usize {
        self.lists.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }

    /// Distinct pieces some reader wants.
    pub fn wanted(&self) -> usize {
        self.count.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_replace_and_release() {
        let mut r = Readers::default();
        let c = r.set(1, &[3, 4, 5, 4]).unwrap();
        assert_eq!(c.added, vec![3, 4, 5]);
        assert!(c.released.is_empty());
        // A second reader shares 5: nothing is released when the first moves on.
        let c = r.set(2, &[5, 6]).unwrap();
        assert_eq!(c.added, vec![6]);
        let c = r.set(1, &[5, 7]).unwrap();
        assert_eq!(c.added, vec![7]);
        let mut rel = c.released;
        rel.sort_unstable();
        assert_eq!(rel, vec![3, 4]);
        assert_eq!((r.len(), r.wanted()), (2, 3));
        assert!(r.wants(5) && !r.wants(3));
        let mut rel = r.remove(2);
        rel.sort_unstable();
        assert_eq!(rel, vec![6]);
        assert!(r.wants(5), "reader 1 still wants 5");
        assert_eq!(r.remove(1).len(), 2);
        assert!(r.is_empty() && r.wanted() == 0);
        assert!(r.remove(9).is_empty());
    }

    #[test]
    fn readahead_grows_while_contiguous_and_resets_on_a_seek() {
        let mut r = Readahead::new(2, 16);
        assert_eq!(r.at(10, 100), vec![10, 11, 12]);
        assert_eq!(
            r.at(10, 100).len(),
            3,
            "the same piece again changes nothing"
        );
        assert_eq!(r.at(11, 100), (11..16).collect::<Vec<_>>(), "doubled to 4");
        assert_eq!(r.at(12, 100).len(), 1 + 8);
        assert_eq!(r.at(13, 100).len(), 1 + 16);
        assert_eq!(r.at(14, 100).len(), 1 + 16, "capped");
        assert_eq!(
            r.at(15, 20),
            (15..20).collect::<Vec<_>>(),
            "not past the end"
        );
        // A seek (backwards or forwards) starts small again.
        assert_eq!(r.at(50, 100), vec![50, 51, 52]);
        assert_eq!(r.window(), 2);
        r.at(51, 100);
        assert_eq!(r.at(3, 100), vec![3, 4, 5]);
        // The last piece alone; a window wider than the cap is clamped.
        assert_eq!(r.at(99, 100), vec![99]);
        assert_eq!(Readahead::new(40, 8).window(), 8);
    }

    #[test]
    fn every_next_piece_comes_before_any_readahead() {
        // Reader A asked at 0 ms, reader B an hour later: B's next piece still goes before
        // A's readahead, and A's next piece before B's (it asked first).
        let a: Vec<u64> = (0..8).map(|i| deadline(i, 0)).collect();
        let b: Vec<u64> = (0..8).map(|i| deadline(i, 3_600_000)).collect();
        assert!(a[0] < b[0]);
        assert!(b[0] < a[1] && a[1..].iter().all(|&d| d > b[0]));
        assert!(a.windows(2).all(|w| w[0] < w[1]) && b.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn caps_hold() {
        let mut r = Readers::default();
        for id in 0..MAX_READERS as u64 {
            assert!(r.set(id, &[1]).is_some());
        }
        assert!(r.set(u64::MAX, &[1]).is_none());
        assert!(r.set(0, &[2]).is_some(), "a known reader may still move");
        let long: Vec<u32> = (0..5000).collect();
        r.set(0, &long).unwrap();
        assert_eq!(r.wanted(), MAX_WANTED);
    }
}
