//! The `disk-N` threads: everything the network loop must not wait for. They look torrents
//! up in SQLite and make the pages of requested blocks resident, then hand back a [`Block`]
//! (a shared mapping and a range) that the loop writes straight to the socket.
//!
//! Jobs arrive on a bounded channel; results go back on another and wake the loop. Mapped
//! chunk and blob files are kept in a small LRU ([`MapCache`]), so a piece's 128 blocks map
//! their file once. For a torrent being downloaded ([`Torrent::files`]) they write verified
//! pieces with `pwrite` and read blocks back with `pread` to seed them.

use crate::proto::bt::peer_conn::Shape;
use crate::proto::bt::peer_wire::BlockRef;
use crate::proto::hex;
use crate::store::content::ContentStore;
use crate::store::db::{Db, Storage};
use crate::store::files::TorrentFiles;
use crate::store::mmap::MappedFile;
use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

/// A torrent the loop serves: a stored file, or a download (`files`).
pub struct Torrent {
    pub shape: Arc<Shape>,
    pub sha256: String,
    pub storage: Storage,
    /// Set for a torrent being downloaded: its files in the user's directory.
    pub files: Option<Arc<TorrentFiles>>,
}

impl Torrent {
    /// A torrent being downloaded into `files`.
    pub fn download(
        meta: &crate::proto::bt::metainfo::Metainfo,
        files: Arc<TorrentFiles>,
    ) -> Torrent {
        Torrent {
            shape: Arc::new(Shape::new(
                meta.info_hash,
                meta.info.total_length(),
                meta.info.piece_length,
                Arc::from(meta.info_bytes.clone()),
            )),
            sha256: String::new(),
            storage: Storage::Blob,
            files: Some(files),
        }
    }
}

impl std::fmt::Debug for Torrent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Torrent")
            .field("info_hash", &hex::encode(&self.shape.info_hash))
            .field("download", &self.files.is_some())
            .finish()
    }
}

/// Where a block's bytes live.
pub enum Bytes {
    /// A mapped stored file, made resident.
    Map(Arc<MappedFile>),
    /// Read from a download's files.
    Owned(Vec<u8>),
}

/// Bytes of a torrent ready to send.
pub struct Block {
    pub map: Bytes,
    pub range: Range<usize>,
}

impl Block {
    pub fn bytes(&self) -> &[u8] {
        match &self.map {
            Bytes::Map(m) => &m.bytes()[self.range.clone()],
            Bytes::Owned(v) => &v[self.range.clone()],
        }
    }
}

/// Work for the disk threads. `conn` names the connection that asked (slot and generation).
pub enum Job {
    Lookup {
        info_hash: [u8; 20],
    },
    Read {
        conn: u64,
        torrent: Arc<Torrent>,
        block: BlockRef,
        /// The loop's eviction count when asked (handed back in [`Done::Read`]).
        seq: u64,
    },
    /// Drop cached maps of a deleted file.
    Forget {
        sha256: String,
    },
    /// Write a verified piece of a download.
    Write {
        info_hash: [u8; 20],
        files: Arc<TorrentFiles>,
        piece: u32,
        offset: u64,
        data: Vec<u8>,
    },
    /// Release an evicted piece's bytes (the fetch-through cache): punch a hole.
    Punch {
        info_hash: [u8; 20],
        files: Arc<TorrentFiles>,
        piece: u32,
        offset: u64,
        len: u64,
    },
}

pub enum Done {
    /// `None`: the torrent is not stored (any more), or its record could not be read.
    Lookup {
        info_hash: [u8; 20],
        torrent: Option<Arc<Torrent>>,
    },
    Read {
        conn: u64,
        block: BlockRef,
        seq: u64,
        result: Result<Block, String>,
    },
    Written {
        info_hash: [u8; 20],
        piece: u32,
        result: Result<(), String>,
    },
    Punched {
        info_hash: [u8; 20],
        piece: u32,
        result: Result<(), String>,
    },
    /// A piece's hash check (from the rayon pool). `blocks`: each block's SHA-1, when asked
    /// for or when the check failed.
    Hashed {
        info_hash: [u8; 20],
        piece: u32,
        data: Vec<u8>,
        ok: bool,
        blocks: Option<Vec<[u8; 20]>>,
    },
}

/// A least-recently-used set of mapped files.
pub struct MapCache {
    maps: HashMap<PathBuf, (Arc<MappedFile>, u64)>,
    tick: u64,
    cap: usize,
}

impl MapCache {
    pub fn new(cap: usize) -> MapCache {
        MapCache {
            maps: HashMap::new(),
            tick: 0,
            cap: cap.max(1),
        }
    }

    pub fn get(&mut self, path: &PathBuf) -> Option<Arc<MappedFile>> {
        self.tick += 1;
        let tick = self.tick;
        self.maps.get_mut(path).map(|(m, t)| {
            *t = tick;
            Arc::clone(m)
        })
    }

    pub fn insert(&mut self, path: PathBuf, map: Arc<MappedFile>) {
        if self.maps.len() >= self.cap {
            if let Some(oldest) = self
                .maps
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(p, _)| p.clone())
            {
                self.maps.remove(&oldest);
            }
        }
        self.tick += 1;
        self.maps.insert(path, (map, self.tick));
    }

    pub fn forget(&mut self, sha256: &str) {
        self.maps
            .retain(|p, _| !p.to_string_lossy().contains(sha256));
    }

    pub fn len(&self) -> usize {
        self.maps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.maps.is_empty()
    }
}

struct Worker {
    db: Option<Arc<Db>>,
    store: Option<Arc<ContentStore>>,
    maps: Arc<Mutex<MapCache>>,
}

impl Worker {
    fn lookup(&self, info_hash: [u8; 20]) -> Option<Arc<Torrent>> {
        let hexed = hex::encode(&info_hash);
        let db = self.db.as_ref()?;
        let rec = match db.by_info_hash(&hexed) {
            Ok(Some(r)) => r,
            Ok(None) => return None,
            Err(e) => {
                log::warn!("peer: looking up {hexed}: {e}");
                return None;
            }
        };
        let info = match db.info_bytes(&rec.sha256) {
            Ok(Some(i)) => i,
            Ok(None) => return None,
            Err(e) => {
                log::warn!("peer: reading the info dict of {hexed}: {e}");
                return None;
            }
        };
        Some(Arc::new(Torrent {
            shape: Arc::new(Shape::new(
                info_hash,
                rec.size,
                rec.piece_length,
                Arc::from(info),
            )),
            sha256: rec.sha256,
            storage: rec.storage,
            files: None,
        }))
    }

    fn read(&self, t: &Torrent, b: &BlockRef) -> Result<Block, String> {
        let offset = t.shape.offset(b);
        if let Some(files) = &t.files {
            let data = files
                .read(offset, b.length as usize)
                .map_err(|e| e.to_string())?;
            return Ok(Block {
                range: 0..data.len(),
                map: Bytes::Owned(data),
            });
        }
        let store = self.store.as_ref().ok_or("no content store")?;
        let (path, holds) = store.locate(&t.sha256, t.storage, t.shape.total, offset);
        let cached = self.maps.lock().get(&path);
        let map = match cached {
            Some(m) => m,
            None => {
                let m = Arc::new(
                    MappedFile::open(&path).map_err(|e| format!("{}: {e}", path.display()))?,
                );
                if m.bytes().len() as u64 != holds.end - holds.start {
                    return Err(format!(
                        "{} has {} bytes, expected {}",
                        path.display(),
                        m.bytes().len(),
                        holds.end - holds.start
                    ));
                }
                self.maps.lock().insert(path, Arc::clone(&m));
                m
            }
        };
        let start = (offset - holds.start) as usize;
        let range = start..start + b.length as usize;
        if range.end > map.bytes().len() {
            return Err("block past the end of its file".into());
        }
        map.prefault(range.clone());
        Ok(Block {
            map: Bytes::Map(map),
            range,
        })
    }
}

/// The disk threads.
pub struct DiskPool {
    pub jobs: Sender<Job>,
    maps: Arc<Mutex<MapCache>>,
    threads: Vec<JoinHandle<()>>,
}

impl DiskPool {
    /// Starts `threads` workers; results go to `done`, then `wake` is called.
    pub fn start(
        threads: usize,
        map_cache: usize,
        queue: usize,
        db: Option<Arc<Db>>,
        store: Option<Arc<ContentStore>>,
        done: Sender<Done>,
        wake: Arc<dyn Fn() + Send + Sync>,
    ) -> std::io::Result<DiskPool> {
        let (jobs, rx): (Sender<Job>, Receiver<Job>) = crossbeam_channel::bounded(queue);
        let maps = Arc::new(Mutex::new(MapCache::new(map_cache)));
        let mut handles = Vec::new();
        for n in 0..threads {
            let worker = Worker {
                db: db.clone(),
                store: store.clone(),
                maps: Arc::clone(&maps),
            };
            let rx = rx.clone();
            let done = done.clone();
            let wake = Arc::clone(&wake);
            handles.push(
                std::thread::Builder::new()
                    .name(format!("disk-{n}"))
                    .spawn(move || {
                        for job in rx {
                            let out = match job {
                                Job::Lookup { info_hash } => Done::Lookup {
                                    info_hash,
                                    torrent: worker.lookup(info_hash),
                                },
                                Job::Read {
                                    conn,
                                    torrent,
                                    block,
                                    seq,
                                } => Done::Read {
                                    conn,
                                    block,
                                    seq,
                                    result: worker.read(&torrent, &block),
                                },
                                Job::Forget { sha256 } => {
                                    worker.maps.lock().forget(&sha256);
                                    continue;
                                }
                                Job::Write {
                                    info_hash,
                                    files,
                                    piece,
                                    offset,
                                    data,
                                } => Done::Written {
                                    info_hash,
                                    piece,
                                    result: files.write(offset, &data).map_err(|e| e.to_string()),
                                },
                                Job::Punch {
                                    info_hash,
                                    files,
                                    piece,
                                    offset,
                                    len,
                                } => Done::Punched {
                                    info_hash,
                                    piece,
                                    result: files.punch(offset, len).map_err(|e| e.to_string()),
                                },
                            };
                            if done.send(out).is_err() {
                                break;
                            }
                            wake();
                        }
                    })?,
            );
        }
        Ok(DiskPool {
            jobs,
            maps,
            threads: handles,
        })
    }

    /// Mapped files currently cached.
    pub fn cached_maps(&self) -> usize {
        self.maps.lock().len()
    }

    /// Ends the workers once the queue is drained; the loop must have stopped first (it
    /// would otherwise keep reading results).
    pub fn stop(self) {
        drop(self.jobs);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_cache_evicts_the_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = MapCache::new(2);
        let mut paths = Vec::new();
        for i in 0..3 {
            let p = dir.path().join(format!("f{i}"));
            std::fs::write(&p, [i as u8; 10]).unwrap();
            paths.push(p);
        }
        let open = |p: &PathBuf| Arc::new(MappedFile::open(p).unwrap());
        cache.insert(paths[0].clone(), open(&paths[0]));
        cache.insert(paths[1].clone(), open(&paths[1]));
        assert!(cache.get(&paths[0]).is_some());
        cache.insert(paths[2].clone(), open(&paths[2]));
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&paths[1]).is_none(), "1 was least recently used");
        assert!(cache.get(&paths[0]).is_some());
        cache.forget("f0");
        assert!(cache.get(&paths[0]).is_none());
    }
}
