//! Piece hashing (SHA-1, v1) in parallel on the rayon pool over memory-mapped data, and SHA-256
//! of whole blobs for content addressing.
//!
//! The data of a torrent is a [`Content`]: its files laid end to end as slices of mappings,
//! zero runs (BEP-47 padding) and holes (missing or short files). A piece may span any number
//! of parts; a piece that touches a hole has no hash. Both hash crates pick the CPU's SHA
//! instructions at run time when it has them.

use rayon::prelude::*;
use sha1::{Digest, Sha1};
use sha2::Sha256;
use std::sync::atomic::{AtomicU64, Ordering};

/// One stretch of a torrent's concatenated data.
#[derive(Debug, Clone, Copy)]
pub enum Part<'a> {
    /// Bytes that are present.
    Data(&'a [u8]),
    /// A run of zero bytes that is not stored (padding files).
    Zeros(u64),
    /// Bytes that should be there but are not (missing or short files).
    Missing(u64),
}

impl Part<'_> {
    fn len(&self) -> u64 {
        match self {
            Part::Data(d) => d.len() as u64,
            Part::Zeros(n) | Part::Missing(n) => *n,
        }
    }
}

/// A torrent's data as a sequence of parts, addressed by offset.
#[derive(Debug, Default)]
pub struct Content<'a> {
    parts: Vec<Part<'a>>,
    /// `starts[i]` is the offset of `parts[i]`.
    starts: Vec<u64>,
    total: u64,
}

impl<'a> Content<'a> {
    pub fn new() -> Self {
        Content::default()
    }

    /// Appends a part; empty parts are skipped.
    pub fn push(&mut self, part: Part<'a>) {
        let len = part.len();
        if len > 0 {
            self.starts.push(self.total);
            self.parts.push(part);
            self.total += len;
        }
    }

    pub fn len(&self) -> u64 {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// SHA-1 of the bytes in `range`, or `None` when any of them is missing.
    pub fn sha1_of(&self, start: u64, end: u64) -> Option<[u8; 20]> {
        let mut hasher = Sha1::new();
        let mut i = self
            .starts
            .partition_point(|&s| s <= start)
            .saturating_sub(1);
        let mut pos = start;
        while pos < end {
            let part = self.parts.get(i)?;
            let part_start = self.starts[i];
            let from = pos - part_start;
            let to = (end - part_start).min(part.len());
            match part {
                Part::Data(d) => {
                    let bytes = &d[from as usize..to as usize];
                    hasher.update(bytes);
                }
                Part::Zeros(_) => {
                    const ZEROS: [u8; 16 << 10] = [0; 16 << 10];
                    let mut left = to - from;
                    while left > 0 {
                        let n = left.min(ZEROS.len() as u64);
                        hasher.update(&ZEROS[..n as usize]);
                        left -= n;
                    }
                }
                Part::Missing(_) => return None,
            }
            pos = part_start + to;
            i += 1;
        }
        Some(hasher.finalize().into())
    }
}

/// Hashes every piece of `content` on the current rayon pool. `progress` gets the byte count
/// of each piece as it finishes (from worker threads, in no particular order).
pub fn piece_hashes(
    content: &Content<'_>,
    piece_length: u64,
    progress: &(dyn Fn(u64) + Sync),
) -> Vec<Option<[u8; 20]>> {
    assert!(piece_length > 0, "piece length must be positive");
    let count = content.len().div_ceil(piece_length);
    (0..count)
        .into_par_iter()
        .map(|i| {
            let start = i * piece_length;
            let end = (start + piece_length).min(content.len());
            let hash = content.sha1_of(start, end);
            progress(end - start);
            hash
        })
        .collect()
}

/// Hashes pieces of a plain byte slice (every byte present).
pub fn piece_hashes_of(data: &[u8], piece_length: usize) -> Vec<[u8; 20]> {
    data.par_chunks(piece_length)
        .map(|chunk| Sha1::digest(chunk).into())
        .collect()
}

/// SHA-256 of a byte slice.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// A counter any thread may add to (hashing progress, HTTP statistics).
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_span_parts_zeros_and_holes() {
        let a = vec![1u8; 10_000];
        let b = vec![2u8; 30_000];
        let mut whole = a.clone();
        whole.extend(&b);
        whole.extend(vec![0u8; 5_000]);
        let mut c = Content::new();
        c.push(Part::Data(&a));
        c.push(Part::Data(&[]));
        c.push(Part::Data(&b));
        c.push(Part::Zeros(5_000));
        let hashes = piece_hashes(&c, 16_384, &|_| {});
        let expected = piece_hashes_of(&whole, 16_384);
        assert_eq!(hashes.len(), 3);
        for (h, e) in hashes.iter().zip(&expected) {
            assert_eq!(h.as_ref(), Some(e));
        }

        let mut holed = Content::new();
        holed.push(Part::Data(&a));
        holed.push(Part::Missing(30_000));
        holed.push(Part::Zeros(5_000));
        let hashes = piece_hashes(&holed, 16_384, &|_| {});
        assert_eq!(hashes[0], None);
        assert_eq!(hashes[1], None);
        assert_eq!(hashes[2], None, "piece 2 starts inside the hole");
    }

    #[test]
    fn progress_adds_up_to_the_total() {
        let data = vec![9u8; 100_000];
        let mut c = Content::new();
        c.push(Part::Data(&data));
        let counter = Counter::default();
        piece_hashes(&c, 16_384, &|n| counter.add(n));
        assert_eq!(counter.get(), 100_000);
    }
}
