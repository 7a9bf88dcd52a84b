//! Who reads a fetch-through download, sans-IO: each reader (an HTTP stream) names the pieces
//! it wants soon, most urgent first, and replaces that list as it moves; a closed reader
//! drops its list at once. The download gives a piece the readers' top priority while any
//! reader wants it and its own base priority after, and the piece cache never evicts a
//! wanted piece. Capped: [`MAX_READERS`] readers, [`MAX_WANTED`] pieces each.

use std::collections::HashMap;

/// Readers of one download at most (past it the call is refused).
pub const MAX_READERS: usize = 1024;
/// Pieces one reader may want at once (the rest of its list is ignored).
pub const MAX_WANTED: usize = 1024;

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
