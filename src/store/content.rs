//! The content store on disk: blobs `blobs/ab/cd/<sha256>`, chunked files
//! `chunks/<sha256>/<index>` (chunk i is piece i), uploads in progress under `tmp/`.
//!
//! An upload streams into `tmp/` while SHA-256 and the SHA-1 piece hashes are computed in the
//! same pass (the two on both cores) and writeback to disk starts as data arrives; it is made
//! durable (fsync, or one syncfs for chunk files) and only then renamed into place; the caller
//! records it in SQLite afterwards. A crash therefore leaves either nothing in place, a
//! complete file that no record names (removed by [`ContentStore::sweep`] at start-up), or a
//! complete recorded file. Reads map one chunk at a time, as the writer reaches it.

use super::dirs::{create_dir_all_synced, fsync_dir};
use super::mmap::MappedFile;
use crate::proto::hex;
use sha1::{Digest, Sha1};
use sha2::Sha256;
use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::db::Storage;

/// Size of the blocks an upload is read and hashed in.
const INGEST_BLOCK: usize = 1 << 20;
/// Written bytes after which writeback to disk is started, so the final fsync finds most
/// data already on its way and the disk works while the upload is still arriving.
const WRITEBACK_EVERY: u64 = 8 << 20;

pub struct ContentStore {
    root: PathBuf,
    piece_length: u64,
    blob_threshold: u64,
    next_upload: AtomicU64,
}

/// A finished upload, still under `tmp/`.
#[derive(Debug)]
pub struct Ingested {
    pub sha256: String,
    pub size: u64,
    pub pieces: Vec<[u8; 20]>,
    pub storage: Storage,
    tmp: TmpPath,
}

/// Why an upload stopped.
#[derive(Debug)]
pub enum IngestError {
    /// The body was longer than allowed.
    TooLarge,
    /// The body was shorter than its declared length (or the client went away).
    Truncated {
        got: u64,
        expected: u64,
    },
    Io(io::Error),
}

impl std::fmt::Display for IngestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IngestError::TooLarge => write!(f, "body exceeds the upload limit"),
            IngestError::Truncated { got, expected } => {
                write!(f, "body ended after {got} of {expected} bytes")
            }
            IngestError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// A path under `tmp/` removed on drop unless it was moved into place.
#[derive(Debug)]
struct TmpPath(Option<PathBuf>);

impl Drop for TmpPath {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_dir_all(&p).or_else(|_| fs::remove_file(&p));
        }
    }
}

impl ContentStore {
    /// Creates the directory layout under `root`.
    pub fn open(root: &Path, piece_length: u64, blob_threshold: u64) -> io::Result<ContentStore> {
        for sub in ["blobs", "chunks", "tmp"] {
            create_dir_all_synced(&root.join(sub))?;
        }
        Ok(ContentStore {
            root: root.to_path_buf(),
            piece_length,
            blob_threshold,
            next_upload: AtomicU64::new(0),
        })
    }

    pub fn piece_length(&self) -> u64 {
        self.piece_length
    }

    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        self.root
            .join("blobs")
            .join(&sha256[..2])
            .join(&sha256[2..4])
            .join(sha256)
    }

    pub fn chunk_dir(&self, sha256: &str) -> PathBuf {
        self.root.join("chunks").join(sha256)
    }

    fn tmp_path(&self) -> PathBuf {
        let n = self.next_upload.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("tmp")
            .join(format!("up-{}-{n}", std::process::id()))
    }

    /// Streams `body` into `tmp/`, hashing as it goes. `declared` is the Content-Length if
    /// known: it picks the storage kind up front and a shorter body is an error. Bodies of
    /// unknown length are written as a blob and split into chunks at the end if large.
    pub fn ingest(
        &self,
        body: &mut dyn Read,
        declared: Option<u64>,
        max: u64,
    ) -> Result<Ingested, IngestError> {
        if declared.is_some_and(|d| d > max) {
            return Err(IngestError::TooLarge);
        }
        let chunked = declared.is_some_and(|d| d >= self.blob_threshold);
        let tmp = TmpPath(Some(self.tmp_path()));
        let path = tmp.0.clone().expect("set above");
        let mut sink = if chunked {
            fs::create_dir(&path).map_err(IngestError::Io)?;
            Sink::Chunks {
                dir: path.clone(),
                file: None,
                index: 0,
                filled: 0,
                piece_length: self.piece_length,
            }
        } else {
            Sink::blob(File::create(&path).map_err(IngestError::Io)?)
        };

        let mut sha256 = Sha256::new();
        let mut pieces = PieceHasher::new(self.piece_length);
        let mut buf = vec![0u8; INGEST_BLOCK];
        let mut size: u64 = 0;
        loop {
            let n = read_full(body, &mut buf).map_err(|e| match declared {
                Some(expected) => IngestError::Truncated {
                    got: size,
                    expected,
                },
                None => IngestError::Io(e),
            })?;
            if n == 0 {
                break;
            }
            size += n as u64;
            if size > max || declared.is_some_and(|d| size > d) {
                return Err(IngestError::TooLarge);
            }
            let block = &buf[..n];
            let ((), written) = rayon::join(
                || sha256.update(block),
                || -> io::Result<()> {
                    pieces.update(block);
                    sink.write(block)
                },
            );
            written.map_err(IngestError::Io)?;
        }
        if let Some(expected) = declared {
            if size != expected {
                return Err(IngestError::Truncated {
                    got: size,
                    expected,
                });
            }
        }
        sink.finish().map_err(IngestError::Io)?;
        let mut storage = if chunked {
            Storage::Chunked
        } else {
            Storage::Blob
        };
        if !chunked && size >= self.blob_threshold {
            split_into_chunks(&path, self.piece_length).map_err(IngestError::Io)?;
            storage = Storage::Chunked;
        }
        Ok(Ingested {
            sha256: hex::encode(&sha256.finalize()),
            size,
            pieces: pieces.finish(),
            storage,
            tmp,
        })
    }

    /// Moves a finished upload into place (replacing leftovers of an earlier crash) and
    /// fsyncs the directories: every one created on the way (`blobs/ab/`, `blobs/ab/cd/`)
    /// into its parent, then the one that received it. The caller holds the commit lock and
    /// records it next.
    pub fn commit(&self, mut up: Ingested) -> io::Result<()> {
        let from = up.tmp.0.take().expect("not yet committed");
        let to = match up.storage {
            Storage::Blob => self.blob_path(&up.sha256),
            Storage::Chunked => self.chunk_dir(&up.sha256),
        };
        let parent = to.parent().expect("has a parent");
        create_dir_all_synced(parent)?;
        remove_any(&to)?;
        fs::rename(&from, &to)?;
        fsync_dir(parent)
    }

    /// Removes a stored file's data.
    pub fn remove(&self, sha256: &str, storage: Storage) -> io::Result<()> {
        match storage {
            Storage::Blob => remove_any(&self.blob_path(sha256)),
            Storage::Chunked => remove_any(&self.chunk_dir(sha256)),
        }
    }

    /// Start-up sweep: empties `tmp/` and removes data that no record names. Returns the
    /// number of entries removed and the sha256s whose data is missing.
    pub fn sweep(&self, known: &[(String, Storage)]) -> io::Result<(usize, Vec<String>)> {
        let mut removed = 0;
        for entry in fs::read_dir(self.root.join("tmp"))? {
            remove_any(&entry?.path())?;
            removed += 1;
        }
        let blobs: HashSet<&str> = known
            .iter()
            .filter(|(_, s)| *s == Storage::Blob)
            .map(|(h, _)| h.as_str())
            .collect();
        let chunked: HashSet<&str> = known
            .iter()
            .filter(|(_, s)| *s == Storage::Chunked)
            .map(|(h, _)| h.as_str())
            .collect();
        // blobs/ab/cd/<sha256>: anything else at any level is not ours to keep either.
        for a in subdirs(&self.root.join("blobs"), &mut removed)? {
            for b in subdirs(&a, &mut removed)? {
                for f in fs::read_dir(b)? {
                    let f = f?;
                    if !blobs.contains(f.file_name().to_string_lossy().as_ref()) {
                        remove_any(&f.path())?;
                        removed += 1;
                    }
                }
            }
        }
        for d in fs::read_dir(self.root.join("chunks"))? {
            let d = d?;
            if !chunked.contains(d.file_name().to_string_lossy().as_ref()) {
                remove_any(&d.path())?;
                removed += 1;
            }
        }
        let missing = known
            .iter()
            .filter(|(h, s)| match s {
                Storage::Blob => !self.blob_path(h).is_file(),
                Storage::Chunked => !self.chunk_dir(h).is_dir(),
            })
            .map(|(h, _)| h.clone())
            .collect();
        Ok((removed, missing))
    }

    /// The file holding byte `offset` of a stored file: its path, and the range of the
    /// stored file it holds (a blob holds it all; chunk `i` holds piece `i`).
    pub fn locate(
        &self,
        sha256: &str,
        storage: Storage,
        size: u64,
        offset: u64,
    ) -> (PathBuf, Range<u64>) {
        match storage {
            Storage::Blob => (self.blob_path(sha256), 0..size),
            Storage::Chunked => {
                let pl = self.piece_length;
                let index = offset / pl;
                let start = index * pl;
                (
                    self.chunk_dir(sha256).join(index.to_string()),
                    start..size.min(start + pl),
                )
            }
        }
    }

    /// The bytes `range` of a stored file, mapped lazily: a blob is mapped now (one
    /// mapping); of a chunked file only the first chunk the range touches is mapped now, the
    /// others are checked (present, right size) and each is mapped when the writer reaches
    /// it and unmapped once sent, so a response holds at most one chunk's mapping however
    /// long it is (a 16 GiB file is 8,192 chunks; `vm.max_map_count` is 65,530).
    pub fn read(
        &self,
        sha256: &str,
        storage: Storage,
        size: u64,
        range: Range<u64>,
    ) -> io::Result<Body> {
        let mut parts = Vec::new();
        match storage {
            Storage::Blob => {
                let path = self.blob_path(sha256);
                let map = MappedFile::open(&path)?;
                check_len(map.bytes().len() as u64, size)?;
                parts.push(Part {
                    path,
                    file_len: size,
                    range: range.start as usize..range.end as usize,
                    map: Some(map),
                });
            }
            Storage::Chunked => {
                let pl = self.piece_length;
                let dir = self.chunk_dir(sha256);
                let mut pos = range.start;
                while pos < range.end {
                    let index = pos / pl;
                    let chunk_start = index * pl;
                    let chunk_len = pl.min(size - chunk_start);
                    let path = dir.join(index.to_string());
                    let map = if parts.is_empty() {
                        let map = MappedFile::open(&path)?;
                        check_len(map.bytes().len() as u64, chunk_len)?;
                        Some(map)
                    } else {
                        check_len(fs::metadata(&path)?.len(), chunk_len)?;
                        None
                    };
                    let from = (pos - chunk_start) as usize;
                    let to = (range.end - chunk_start).min(chunk_len) as usize;
                    parts.push(Part {
                        path,
                        file_len: chunk_len,
                        range: from..to,
                        map,
                    });
                    pos = chunk_start + to as u64;
                }
            }
        }
        Ok(Body { parts, at: 0 })
    }
}

fn check_len(actual: u64, expected: u64) -> io::Result<()> {
    if actual == expected {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("stored data has {actual} bytes, expected {expected}"),
        ))
    }
}

/// Bounds one write so a slow client cannot pin a huge range in one call.
const MAX_WRITE: usize = 4 << 20;

/// One stored file's share of a response: the bytes `range` of the file at `path`, mapped
/// while they are being sent.
struct Part {
    path: PathBuf,
    file_len: u64,
    range: Range<usize>,
    map: Option<MappedFile>,
}

/// The bytes of a response, read straight from mappings: one part at a time is mapped (when
/// the writer reaches it) and unmapped as soon as it is sent.
pub struct Body {
    parts: Vec<Part>,
    at: usize,
}

impl Body {
    /// The unsent bytes of the current part (at most `max`), mapping it if needed; parts
    /// already sent are unmapped on the way. None once everything is sent.
    fn current(&mut self, max: usize) -> io::Result<Option<&[u8]>> {
        while let Some(part) = self.parts.get_mut(self.at) {
            if part.range.start < part.range.end {
                break;
            }
            part.map = None;
            self.at += 1;
        }
        let Some(part) = self.parts.get_mut(self.at) else {
            return Ok(None);
        };
        if part.map.is_none() {
            let map = MappedFile::open(&part.path)?;
            check_len(map.bytes().len() as u64, part.file_len)?;
            part.map = Some(map);
        }
        let map = part.map.as_ref().expect("mapped above");
        let end = part.range.end.min(part.range.start + max);
        Ok(Some(&map.bytes()[part.range.start..end]))
    }

    /// Marks `n` bytes of the current part sent, unmapping it when it is done.
    fn advance(&mut self, n: usize) {
        if let Some(part) = self.parts.get_mut(self.at) {
            part.range.start += n;
            if part.range.start >= part.range.end {
                part.map = None;
                self.at += 1;
            }
        }
    }

    /// Writes the remaining bytes straight from the mappings, in large writes: no
    /// intermediate buffer, so the kernel copies from the mapped pages.
    pub fn write_to(&mut self, out: &mut dyn Write) -> io::Result<()> {
        while let Some(bytes) = self.current(MAX_WRITE)? {
            out.write_all(bytes)?;
            let n = bytes.len();
            self.advance(n);
        }
        Ok(())
    }

    /// One `write` call from the current part (at most [`MAX_WRITE`] bytes): the bytes it
    /// took, 0 once everything is sent. A `WouldBlock` from a non-blocking socket comes back
    /// as the error, with nothing consumed, so the caller can wait and call again.
    pub fn write_some(&mut self, out: &mut dyn Write) -> io::Result<usize> {
        let Some(bytes) = self.current(MAX_WRITE)? else {
            return Ok(0);
        };
        let n = out.write(bytes)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        self.advance(n);
        Ok(n)
    }

    /// Bytes not yet written or read.
    pub fn len(&self) -> u64 {
        self.parts.iter().map(|p| p.range.len() as u64).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Read for Body {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let Some(bytes) = self.current(out.len())? else {
            return Ok(0);
        };
        let n = bytes.len();
        out[..n].copy_from_slice(bytes);
        self.advance(n);
        Ok(n)
    }
}

/// Where upload bytes go.
enum Sink {
    Blob {
        file: File,
        written: u64,
        flushed: u64,
    },
    Chunks {
        dir: PathBuf,
        file: Option<File>,
        index: u64,
        filled: u64,
        piece_length: u64,
    },
}

impl Sink {
    fn blob(file: File) -> Sink {
        Sink::Blob {
            file,
            written: 0,
            flushed: 0,
        }
    }

    fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        match self {
            Sink::Blob {
                file,
                written,
                flushed,
            } => {
                file.write_all(data)?;
                *written += data.len() as u64;
                if *written - *flushed >= WRITEBACK_EVERY {
                    start_writeback(file, *flushed, *written - *flushed);
                    *flushed = *written;
                }
                Ok(())
            }
            Sink::Chunks {
                dir,
                file,
                index,
                filled,
                piece_length,
            } => {
                while !data.is_empty() {
                    if file.is_none() {
                        *file = Some(File::create(dir.join(index.to_string()))?);
                    }
                    let n = ((*piece_length - *filled) as usize).min(data.len());
                    file.as_mut().expect("opened above").write_all(&data[..n])?;
                    *filled += n as u64;
                    data = &data[n..];
                    if *filled == *piece_length {
                        let done = file.take().expect("open");
                        start_writeback(&done, 0, *piece_length);
                        *filled = 0;
                        *index += 1;
                    }
                }
                Ok(())
            }
        }
    }

    /// Makes everything written durable.
    fn finish(self) -> io::Result<()> {
        match self {
            Sink::Blob { file, .. } => file.sync_all(),
            Sink::Chunks { dir, file, .. } => {
                drop(file);
                // One filesystem sync covers every chunk file and the directory entries.
                sync_filesystem(&dir)
            }
        }
    }
}

/// Starts writing a range of a file back to disk without waiting for it (Linux); a hint
/// only, durability comes from the fsync at the end.
fn start_writeback(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: sync_file_range on a descriptor we own, with no memory arguments.
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                offset as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

/// Flushes the filesystem that holds `dir` (all chunk files of an upload at once).
fn sync_filesystem(dir: &Path) -> io::Result<()> {
    let handle = File::open(dir)?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: syncfs on a descriptor we own.
        if unsafe { libc::syncfs(handle.as_raw_fd()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        for entry in fs::read_dir(dir)? {
            File::open(entry?.path())?.sync_all()?;
        }
        handle.sync_all()
    }
}

/// SHA-1 per piece over a stream.
struct PieceHasher {
    piece_length: u64,
    current: Sha1,
    filled: u64,
    done: Vec<[u8; 20]>,
}

impl PieceHasher {
    fn new(piece_length: u64) -> Self {
        PieceHasher {
            piece_length,
            current: Sha1::new(),
            filled: 0,
            done: Vec::new(),
        }
    }

    fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let n = ((self.piece_length - self.filled) as usize).min(data.len());
            self.current.update(&data[..n]);
            self.filled += n as u64;
            data = &data[n..];
            if self.filled == self.piece_length {
                let h = std::mem::replace(&mut self.current, Sha1::new());
                self.done.push(h.finalize().into());
                self.filled = 0;
            }
        }
    }

    fn finish(mut self) -> Vec<[u8; 20]> {
        if self.filled > 0 {
            self.done.push(self.current.finalize().into());
        }
        self.done
    }
}

/// Reads until `buf` is full or the stream ends.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Turns a finished blob at `path` into a directory of chunk files at the same path.
fn split_into_chunks(path: &Path, piece_length: u64) -> io::Result<()> {
    let staging = path.with_extension("split");
    fs::create_dir(&staging)?;
    let mut src = File::open(path)?;
    let mut index = 0u64;
    loop {
        let mut chunk = File::create(staging.join(index.to_string()))?;
        let copied = io::copy(&mut (&mut src).take(piece_length), &mut chunk)?;
        if copied == 0 {
            drop(chunk);
            fs::remove_file(staging.join(index.to_string()))?;
            break;
        }
        chunk.sync_all()?;
        index += 1;
    }
    fsync_dir(&staging)?;
    fs::remove_file(path)?;
    fs::rename(&staging, path)
}

/// The subdirectories of `dir`; stray files in it are removed (and counted).
fn subdirs(dir: &Path, removed: &mut usize) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            out.push(entry.path());
        } else {
            remove_any(&entry.path())?;
            *removed += 1;
        }
    }
    Ok(out)
}

fn remove_any(path: &Path) -> io::Result<()> {
    let result = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
#[path = "content_tests.rs"]
mod tests;
