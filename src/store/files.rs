//! A download's files on disk: created (with their folders) in the torrent's own layout
//! before the first byte arrives, written with `pwrite` by the `disk-N` threads and read back
//! with `pread` to seed. Byte ranges of the concatenated data go through
//! [`Layout::spans`], so BEP-47 padding is never written (it reads as zeros) and the bytes of
//! unwanted files that shared pieces carry go to the hidden parts file, not a visible one.
//! The fetch-through cache releases an evicted piece's bytes with [`TorrentFiles::punch`].

use crate::engine::bitfield::Bitfield;
use crate::proto::bt::metainfo::Metainfo;
use crate::store::layout::{Dest, Layout};
use crate::store::resume::FileStamp;
use parking_lot::Mutex;
use rayon::prelude::*;
use sha1::{Digest, Sha1};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

pub struct TorrentFiles {
    layout: Layout,
    parts: PathBuf,
    /// Open handles, one per torrent file (None: padding or unwanted). Never changed after
    /// `create`, so the `disk-N` threads write one torrent's files at once.
    handles: Vec<Option<File>>,
    /// Opened on the first write of an unwanted file's bytes.
    parts_file: Mutex<Option<Arc<File>>>,
    /// Held across each write: buffered writes to one file serialize in the kernel anyway, and
    /// there a waiting writer spins on the inode lock (seen as 5% of a download's CPU); here it
    /// sleeps. Reads (seeding) never wait for it.
    writing: Mutex<()>,
}

impl TorrentFiles {
    /// Creates the folders and every wanted file at its full length (sparse), so that a later
    /// write cannot fail on a path. `parts`: where bytes of unwanted files go.
    pub fn create(layout: Layout, parts: PathBuf) -> io::Result<TorrentFiles> {
        let n = layout.info().files.len();
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            if !layout.is_wanted(i) {
                handles.push(None);
                continue;
            }
            let path = layout.path(i);
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).map_err(|e| with_path(e, dir))?;
            }
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| with_path(e, &path))?;
            let len = layout.info().files[i].length;
            if f.metadata()?.len() != len {
                f.set_len(len).map_err(|e| with_path(e, &path))?;
            }
            handles.push(Some(f));
        }
        Ok(TorrentFiles {
            layout,
            parts,
            handles,
            parts_file: Mutex::new(None),
            writing: Mutex::new(()),
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Writes `data` at torrent offset `at`.
    pub fn write(&self, at: u64, data: &[u8]) -> io::Result<()> {
        let _writing = self.writing.lock();
        let end = at + data.len() as u64;
        for span in self.layout.spans(at..end) {
            let bytes = &data[span.within.start as usize..span.within.end as usize];
            match span.dest {
                Dest::File { index, offset } => {
                    let f = self.handles[index]
                        .as_ref()
                        .ok_or_else(|| io::Error::other("write to a file not opened"))?;
                    f.write_all_at(bytes, offset)
                        .map_err(|e| with_path(e, &self.layout.path(index)))?;
                }
                Dest::Parts { offset } => {
                    let mut parts = self.parts_file.lock();
                    if parts.is_none() {
                        if let Some(dir) = self.parts.parent() {
                            fs::create_dir_all(dir)?;
                        }
                        *parts = Some(Arc::new(
                            OpenOptions::new()
                                .read(true)
                                .write(true)
                                .create(true)
                                .truncate(false)
                                .open(&self.parts)
                                .map_err(|e| with_path(e, &self.parts))?,
                        ));
                    }
                    let f = Arc::clone(parts.as_ref().expect("opened above"));
                    drop(parts);
                    f.write_all_at(bytes, offset)
                        .map_err(|e| with_path(e, &self.parts))?;
                }
            }
        }
        Ok(())
    }

    /// Reads `len` bytes at torrent offset `at` (padding reads as zeros).
    pub fn read(&self, at: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut out = vec![0u8; len];
        for span in self.layout.spans(at..at + len as u64) {
            let buf = &mut out[span.within.start as usize..span.within.end as usize];
            match span.dest {
                Dest::File { index, offset } => {
                    let f = self.handles[index]
                        .as_ref()
                        .ok_or_else(|| io::Error::other("read of a file not opened"))?;
                    f.read_exact_at(buf, offset)?;
                }
                Dest::Parts { offset } => {
                    let f = self
                        .parts_file
                        .lock()
                        .clone()
                        .ok_or_else(|| io::Error::other("parts file not written yet"))?;
                    f.read_exact_at(buf, offset)?;
                }
            }
        }
        Ok(out)
    }

    /// Releases the disk blocks under `len` bytes at torrent offset `at` (they read as zeros
    /// after): `fallocate(PUNCH_HOLE | KEEP_SIZE)`, so file sizes stay.
    pub fn punch(&self, at: u64, len: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let hole = |f: &File, offset: u64, n: u64| -> io::Result<()> {
            // SAFETY: fallocate on an open descriptor with in-range offsets; no memory is
            // passed.
            let r = unsafe {
                libc::fallocate(
                    f.as_raw_fd(),
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    offset as libc::off_t,
                    n as libc::off_t,
                )
            };
            if r == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        };
        for span in self.layout.spans(at..at + len) {
            let n = span.within.end - span.within.start;
            match span.dest {
                Dest::File { index, offset } => {
                    if let Some(f) = self.handles[index].as_ref() {
                        hole(f, offset, n).map_err(|e| with_path(e, &self.layout.path(index)))?;
                    }
                }
                Dest::Parts { offset } => {
                    if let Some(f) = self.parts_file.lock().clone() {
                        hole(&f, offset, n).map_err(|e| with_path(e, &self.parts))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Flushes every file to disk.
    pub fn sync(&self) -> io::Result<()> {
        for f in self.handles.iter().flatten() {
            f.sync_all()?;
        }
        if let Some(f) = self.parts_file.lock().clone() {
            f.sync_all()?;
        }
        Ok(())
    }

    /// Size and mtime of every torrent file (unwanted and padding ones as absent), for resume.
    pub fn stamps(&self) -> Vec<FileStamp> {
        (0..self.layout.info().files.len())
            .map(|i| {
                if self.layout.is_wanted(i) {
                    FileStamp::of(&self.layout.path(i))
                } else {
                    FileStamp {
                        size: 0,
                        mtime_ns: 0,
                    }
                }
            })
            .collect()
    }
}

fn with_path(e: io::Error, path: &std::path::Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Hashes every wanted piece already on disk (no usable resume data), on the rayon pool;
/// `priorities` None: every piece is wanted (fetch-through's cache after a restart).
pub fn recheck(meta: &Metainfo, files: &TorrentFiles, priorities: Option<&[u8]>) -> Bitfield {
    let info = &meta.info;
    let good: Vec<u32> = (0..info.piece_count())
        .into_par_iter()
        .filter(|&p| priorities.is_none_or(|pr| pr[p] > 0))
        .filter(|&p| {
            let r = info.piece_range(p);
            files
                .read(r.start, (r.end - r.start) as usize)
                .is_ok_and(|d| Sha1::digest(&d).as_slice() == info.pieces[p])
        })
        .map(|p| p as u32)
        .collect();
    let mut bits = Bitfield::new(info.piece_count() as u32);
    for p in good {
        bits.set(p);
    }
    log::info!("recheck: {} of {} pieces on disk", bits.count(), bits.len());
    bits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::bt::metainfo::{self, NewInfo};

    fn info(files: &[(Vec<String>, u64)]) -> metainfo::Info {
        let total: u64 = files.iter().map(|f| f.1).sum();
        let pieces = vec![[0u8; 20]; total.div_ceil(16384) as usize];
        let bytes = metainfo::build_info(&NewInfo {
            name: "top",
            piece_length: 16384,
            pieces: &pieces,
            files: Some(files),
            single_length: 0,
            private: false,
            source: None,
        });
        metainfo::parse_info_bytes(&bytes).unwrap()
    }

    #[test]
    fn writes_land_in_the_layout_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let i = info(&[
            (vec!["a".into(), "x.bin".into()], 10_000),
            (vec!["empty".into()], 0),
            (vec!["b.bin".into()], 30_000),
        ]);
        let layout = Layout::new(dir.path(), i, None).unwrap();
        let files = TorrentFiles::create(layout, dir.path().join(".p")).unwrap();
        assert!(
            dir.path().join("top/empty").exists(),
            "empty files are made"
        );
        let data: Vec<u8> = (0..40_000u32).map(|i| (i % 253) as u8).collect();
        files.write(0, &data[..16384]).unwrap();
        files.write(16384, &data[16384..]).unwrap();
        assert_eq!(files.read(5_000, 20_000).unwrap(), &data[5_000..25_000]);
        files.sync().unwrap();
        assert_eq!(
            fs::read(dir.path().join("top/a/x.bin")).unwrap(),
            &data[..10_000]
        );
        assert_eq!(
            fs::read(dir.path().join("top/b.bin")).unwrap(),
            &data[10_000..]
        );
        assert_eq!(files.stamps()[2].size, 30_000);
    }

    #[test]
    fn a_punched_range_reads_as_zeros_and_frees_its_blocks() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let i = info(&[(vec!["big.bin".into()], 4 << 20)]);
        let layout = Layout::new(dir.path(), i, None).unwrap();
        let files = TorrentFiles::create(layout, dir.path().join(".p")).unwrap();
        let data = vec![0x5au8; 4 << 20];
        files.write(0, &data).unwrap();
        files.sync().unwrap();
        let path = dir.path().join("top/big.bin");
        let blocks = || fs::metadata(&path).unwrap().blocks() * 512;
        let before = blocks();
        assert!(before >= 4 << 20, "written: {before} bytes on disk");
        files.punch(1 << 20, 2 << 20).unwrap();
        let after = blocks();
        assert!(
            after + (2 << 20) <= before,
            "{before} -> {after} bytes on disk"
        );
        let back = files.read(0, 4 << 20).unwrap();
        assert_eq!(&back[..1 << 20], &data[..1 << 20]);
        assert!(back[1 << 20..3 << 20].iter().all(|&b| b == 0));
        assert_eq!(&back[3 << 20..], &data[3 << 20..]);
        assert_eq!(fs::metadata(&path).unwrap().len(), 4 << 20, "size kept");
    }

    #[test]
    fn unwanted_bytes_go_to_the_parts_file() {
        let dir = tempfile::tempdir().unwrap();
        let i = info(&[(vec!["a".into()], 10_000), (vec!["b".into()], 10_000)]);
        let layout = Layout::new(dir.path(), i, Some(vec![false, true])).unwrap();
        let parts = dir.path().join("hidden/x.parts");
        let files = TorrentFiles::create(layout, parts.clone()).unwrap();
        files.write(0, &[7u8; 16384]).unwrap();
        assert!(
            !dir.path().join("top/a").exists(),
            "unwanted file never made"
        );
        assert_eq!(fs::read(&parts).unwrap().len(), 10_000);
        assert_eq!(
            fs::read(dir.path().join("top/b")).unwrap()[..6384],
            [7u8; 6384]
        );
    }
}
