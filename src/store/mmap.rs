//! Read-only memory maps of files: the one module that holds `unsafe` for mapping.
//!
//! A mapping reflects the file as it is on disk; if another process truncates the file while
//! it is mapped, touching the lost pages raises SIGBUS. Content the gateway stores is written
//! once and renamed into place, never truncated, so its maps are safe; for user files (`verify`)
//! the window is the same as any tool that maps them (mktorrent, libtorrent).

use memmap2::{Advice, Mmap, MmapOptions};
use std::fs::File;
use std::io;
use std::path::Path;

/// A read-only mapping of a whole file; empty files get no mapping (mmap rejects length 0).
pub struct MappedFile {
    map: Option<Mmap>,
}

impl MappedFile {
    /// Maps `path` read-only and tells the kernel it will be read sequentially.
    pub fn open(path: &Path) -> io::Result<MappedFile> {
        let file = File::open(path)?;
        Self::from_file(&file)
    }

    pub fn from_file(file: &File) -> io::Result<MappedFile> {
        let len = file.metadata()?.len();
        if len == 0 {
            return Ok(MappedFile { map: None });
        }
        // SAFETY: the map is read-only and private to this process; see the module note on
        // concurrent truncation, the only way the mapped bytes can become invalid.
        let map = unsafe { MmapOptions::new().map(file)? };
        // Advice only tunes read-ahead; failing to give it changes nothing else.
        let _ = map.advise(Advice::Sequential);
        Ok(MappedFile { map: Some(map) })
    }

    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// Makes the pages of `range` resident by reading one byte of each, so a later reader
    /// (the network loop) never waits for the disk. Returns the length of the range.
    pub fn prefault(&self, range: std::ops::Range<usize>) -> usize {
        const PAGE: usize = 4096;
        let bytes = &self.bytes()[range];
        let mut sum = 0u8;
        for i in (0..bytes.len()).step_by(PAGE) {
            sum = sum.wrapping_add(bytes[i]);
        }
        if let Some(last) = bytes.last() {
            sum = sum.wrapping_add(*last);
        }
        std::hint::black_box(sum);
        bytes.len()
    }
}
