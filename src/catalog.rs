//! The catalog of stored files: upload (stream, hash, build the torrent, commit), lookup,
//! listing, delete, and each file's torrent, magnet link and URLs.
//!
//! Commits and deletes are serialized by one lock, so "is it stored already?", the rename
//! into place and the SQLite transaction act as one step; uploads themselves run in parallel.

use crate::config::Config;
use crate::proto::bt::magnet::Magnet;
use crate::proto::bt::metainfo::{self, NewInfo, TorrentExtras};
use crate::proto::{hex, http::escape, http::mime, nostr::nip94};
use crate::store::content::{Body, ContentStore, IngestError};
use crate::store::db::{Db, FileRecord};
use crate::store::db_nostr::Released;
use parking_lot::{Mutex, RwLock};
use serde_json::{json, Value};
use sha1::{Digest, Sha1};
use std::collections::HashSet;
use std::io::{self, Read};
use std::ops::Range;

/// Why an upload was refused.
#[derive(Debug)]
pub enum UploadError {
    TooLarge,
    Truncated(String),
    Empty,
    HashMismatch {
        expected: String,
        actual: String,
    },
    /// The body is not the blob the auth event names (its `x` tags).
    NotAuthorized(String),
    Io(io::Error),
    Db(rusqlite::Error),
}

impl std::fmt::Display for UploadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UploadError::TooLarge => write!(f, "upload exceeds the size limit"),
            UploadError::Truncated(m) => write!(f, "incomplete body: {m}"),
            UploadError::Empty => write!(f, "empty body"),
            UploadError::HashMismatch { expected, actual } => {
                write!(f, "X-SHA-256 is {expected} but the body hashes to {actual}")
            }
            UploadError::NotAuthorized(sha) => {
                write!(f, "auth event has no x tag for the uploaded blob {sha}")
            }
            UploadError::Io(e) => write!(f, "storage error: {e}"),
            UploadError::Db(e) => write!(f, "database error: {e}"),
        }
    }
}

/// How a body is to be stored.
#[derive(Debug, Clone, Copy, Default)]
pub struct UploadSpec<'a> {
    /// The file name in the torrent; None: `<sha256>.<ext>` from the content type.
    pub name: Option<&'a str>,
    /// None: guessed from the name.
    pub content_type: Option<&'a str>,
    /// The body must hash to this (409 otherwise).
    pub expected_sha256: Option<&'a str>,
    /// The body must be one of these (an auth event's `x` tags).
    pub auth_x: Option<&'a [String]>,
    /// A Nostr pubkey taking ownership; None: held by the API.
    pub owner: Option<&'a str>,
}

impl UploadError {
    /// The HTTP status for this refusal (5xx for our own failures).
    pub fn status(&self) -> u16 {
        match self {
            UploadError::TooLarge => 413,
            UploadError::Truncated(_) | UploadError::Empty => 400,
            UploadError::HashMismatch { .. } => 409,
            UploadError::NotAuthorized(_) => 401,
            UploadError::Io(_) | UploadError::Db(_) => 500,
        }
    }
}

/// What the start-up sweep found.
#[derive(Debug, Clone, Default)]
pub struct SweepReport {
    pub removed: usize,
    pub missing: Vec<String>,
}

/// The info-hashes of the stored torrents, shared with the tracker.
pub type HostedIndex = std::sync::Arc<RwLock<HashSet<[u8; 20]>>>;

/// A change to the set of stored files, for services that follow it (the peer wire).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added { info_hash: [u8; 20], sha256: String },
    Removed { info_hash: [u8; 20], sha256: String },
}

type Observer = Box<dyn Fn(Change) + Send + Sync>;

pub struct Catalog {
    db: std::sync::Arc<Db>,
    store: std::sync::Arc<ContentStore>,
    commit: Mutex<()>,
    observers: RwLock<Vec<Observer>>,
    /// The Blossom server's base URL, once it is bound.
    blossom_url: std::sync::OnceLock<String>,
    /// Info-hashes of the stored torrents, for lookups on hot paths (tracker, peer wire).
    hosted: HostedIndex,
    public_url: String,
    max_upload: u64,
}

/// Unix time in seconds.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Catalog {
    /// Opens the database and content store under the data dir and sweeps leftovers.
    pub fn open(config: &Config, public_url: &str) -> Result<(Catalog, SweepReport), String> {
        let dir = &config.data_dir;
        crate::store::dirs::create_dir_all_synced(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let db_path = dir.join("gateway.db");
        let db = Db::open(&db_path).map_err(|e| format!("{}: {e}", db_path.display()))?;
        let store = ContentStore::open(
            dir,
            config.storage.piece_length_bytes,
            config.storage.blob_threshold_bytes,
        )
        .map_err(|e| format!("{}: {e}", dir.display()))?;
        let known = db.all().map_err(|e| format!("reading gateway.db: {e}"))?;
        let (removed, missing) = store
            .sweep(&known)
            .map_err(|e| format!("sweeping {}: {e}", dir.display()))?;
        for sha in &missing {
            log::warn!("data of stored file {sha} is missing");
        }
        if removed > 0 {
            log::info!("start-up sweep removed {removed} leftover entries");
        }
        let hosted = db
            .info_hashes()
            .map_err(|e| format!("reading gateway.db: {e}"))?
            .iter()
            .filter_map(|h| hex::decode::<20>(h))
            .collect();
        Ok((
            Catalog {
                db: std::sync::Arc::new(db),
                store: std::sync::Arc::new(store),
                commit: Mutex::new(()),
                observers: RwLock::new(Vec::new()),
                blossom_url: std::sync::OnceLock::new(),
                hosted: std::sync::Arc::new(RwLock::new(hosted)),
                public_url: public_url.to_string(),
                max_upload: config.api.max_upload_bytes,
            },
            SweepReport { removed, missing },
        ))
    }

    /// The info-hashes of the stored torrents (the tracker's `hosted` mode asks it).
    pub fn hosted_index(&self) -> HostedIndex {
        std::sync::Arc::clone(&self.hosted)
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The database, for threads that outlive a borrow (the tracker's maintenance).
    pub fn shared_db(&self) -> std::sync::Arc<Db> {
        std::sync::Arc::clone(&self.db)
    }

    /// The content store, for threads that read pieces (the peer wire's disk pool).
    pub fn shared_store(&self) -> std::sync::Arc<ContentStore> {
        std::sync::Arc::clone(&self.store)
    }

    /// Adds an observer told about every stored and deleted file (after the change, under
    /// the commit lock: observers must be quick).
    pub fn observe(&self, observer: Observer) {
        self.observers.write().push(observer);
    }

    fn notify(&self, change: Change) {
        for f in self.observers.read().iter() {
            f(change.clone());
        }
    }

    /// Sets the Blossom server's base URL (blob URLs in descriptors and events).
    pub fn set_blossom_url(&self, url: String) {
        let _ = self.blossom_url.set(url);
    }

    pub fn blossom_base(&self) -> Option<&str> {
        self.blossom_url.get().map(String::as_str)
    }

    pub fn max_upload(&self) -> u64 {
        self.max_upload
    }

    /// Stores a body under `name` for the API. Returns the record and whether it is new.
    /// The body reader reports a cut or malformed body as an error, never as its end.
    pub fn upload(
        &self,
        name: &str,
        body: &mut dyn Read,
        declared: Option<u64>,
        expected_sha256: Option<&str>,
    ) -> Result<(FileRecord, bool), UploadError> {
        let spec = UploadSpec {
            name: Some(name),
            expected_sha256,
            ..UploadSpec::default()
        };
        self.store_body(&spec, body, declared)
    }

    /// Stores a body as `spec` says (Blossom and the API both end here).
    pub fn store_body(
        &self,
        spec: &UploadSpec<'_>,
        body: &mut dyn Read,
        declared: Option<u64>,
    ) -> Result<(FileRecord, bool), UploadError> {
        let up = self
            .store
            .ingest(body, declared, self.max_upload)
            .map_err(|e| match e {
                IngestError::TooLarge => UploadError::TooLarge,
                e @ IngestError::Truncated { .. } => UploadError::Truncated(e.to_string()),
                IngestError::Io(e) => classify_body_error(e),
            })?;
        if up.size == 0 {
            return Err(UploadError::Empty);
        }
        if let Some(expected) = spec.expected_sha256 {
            if expected != up.sha256 {
                return Err(UploadError::HashMismatch {
                    expected: expected.to_string(),
                    actual: up.sha256.clone(),
                });
            }
        }
        if let Some(xs) = spec.auth_x {
            if !xs.iter().any(|x| x.eq_ignore_ascii_case(&up.sha256)) {
                return Err(UploadError::NotAuthorized(up.sha256.clone()));
            }
        }
        let content_type = spec
            .content_type
            .map(str::to_string)
            .unwrap_or_else(|| mime::from_name(spec.name.unwrap_or("")).to_string());
        let name = match spec.name {
            Some(n) => n.to_string(),
            None => match mime::extension_for(&content_type) {
                Some(ext) => format!("{}.{ext}", up.sha256),
                None => up.sha256.clone(),
            },
        };
        let name = name.as_str();
        let piece_length = self.store.piece_length();
        let info = metainfo::build_info(&NewInfo {
            name,
            piece_length,
            pieces: &up.pieces,
            files: None,
            single_length: up.size,
            private: false,
            source: None,
        });
        let record = FileRecord {
            sha256: up.sha256.clone(),
            name: name.to_string(),
            size: up.size,
            content_type,
            storage: up.storage,
            created_at: now_secs(),
            info_hash: hex::encode(&Sha1::digest(&info)),
            piece_length,
        };
        let _guard = self.commit.lock();
        if let Some(existing) = self.db.by_sha256(&record.sha256).map_err(UploadError::Db)? {
            self.db
                .hold(&existing.sha256, spec.owner, record.created_at)
                .map_err(UploadError::Db)?;
            return Ok((existing, false));
        }
        self.store.commit(up).map_err(UploadError::Io)?;
        self.db
            .insert_held(&record, &info, spec.owner)
            .map_err(UploadError::Db)?;
        if let Some(ih) = hex::decode::<20>(&record.info_hash) {
            self.hosted.write().insert(ih);
            self.notify(Change::Added {
                info_hash: ih,
                sha256: record.sha256.clone(),
            });
        }
        Ok((record, true))
    }

    /// Removes `owner`'s hold on a file; deletes the file when nothing holds it any more.
    pub fn release(&self, sha256: &str, owner: &str) -> Result<Released, UploadError> {
        let _guard = self.commit.lock();
        let released = self.db.release(sha256, owner).map_err(UploadError::Db)?;
        if released == Released::Orphaned {
            self.delete_locked(sha256)?;
        }
        Ok(released)
    }

    pub fn get(&self, sha256: &str) -> rusqlite::Result<Option<FileRecord>> {
        self.db.by_sha256(sha256)
    }

    pub fn by_info_hash(&self, info_hash: &str) -> rusqlite::Result<Option<FileRecord>> {
        self.db.by_info_hash(info_hash)
    }

    pub fn list(
        &self,
        limit: usize,
        after: Option<(i64, &str)>,
    ) -> rusqlite::Result<Vec<FileRecord>> {
        self.db.list(limit, after)
    }

    /// The API's delete: drops the API's hold; the file goes unless Blossom owners still
    /// hold it. None if there is no such file, else whether the data was removed.
    pub fn release_api(&self, sha256: &str) -> Result<Option<bool>, UploadError> {
        let _guard = self.commit.lock();
        match self.db.release_api(sha256).map_err(UploadError::Db)? {
            Some(true) => self.delete_locked(sha256).map(|_| Some(true)),
            other => Ok(other),
        }
    }

    /// Deletes a file for everyone: the record first (so it vanishes at once), then its data.
    pub fn delete(&self, sha256: &str) -> Result<bool, UploadError> {
        let _guard = self.commit.lock();
        self.delete_locked(sha256)
    }

    /// `delete` with the commit lock held.
    fn delete_locked(&self, sha256: &str) -> Result<bool, UploadError> {
        let Some(rec) = self.db.by_sha256(sha256).map_err(UploadError::Db)? else {
            return Ok(false);
        };
        self.db.delete(sha256).map_err(UploadError::Db)?;
        if let Some(ih) = hex::decode::<20>(&rec.info_hash) {
            self.hosted.write().remove(&ih);
            self.notify(Change::Removed {
                info_hash: ih,
                sha256: rec.sha256.clone(),
            });
        }
        // If this fails the data is an orphan that the next start-up sweep removes.
        if let Err(e) = self.store.remove(sha256, rec.storage) {
            log::warn!("removing data of {sha256}: {e}");
        }
        Ok(true)
    }

    /// Maps the bytes `range` of a stored file.
    pub fn read(&self, rec: &FileRecord, range: Range<u64>) -> io::Result<Body> {
        self.store.read(&rec.sha256, rec.storage, rec.size, range)
    }

    pub fn announce_url(&self) -> String {
        format!("{}/announce", self.public_url)
    }

    pub fn webseed_url(&self, rec: &FileRecord) -> String {
        format!(
            "{}/webseed/{}/{}",
            self.public_url,
            rec.info_hash,
            escape::encode(rec.name.as_bytes())
        )
    }

    pub fn magnet(&self, rec: &FileRecord) -> String {
        Magnet {
            info_hash: hex::decode::<20>(&rec.info_hash).unwrap_or_default(),
            name: Some(rec.name.clone()),
            trackers: vec![self.announce_url()],
            webseeds: vec![self.webseed_url(rec)],
            length: Some(rec.size),
            ..Magnet::default()
        }
        .to_uri()
    }

    /// The .torrent file: the stored info dict verbatim, our tracker and our webseed.
    pub fn torrent(&self, rec: &FileRecord) -> rusqlite::Result<Option<Vec<u8>>> {
        let Some(info) = self.db.info_bytes(&rec.sha256)? else {
            return Ok(None);
        };
        Ok(Some(metainfo::build_torrent(
            &info,
            &TorrentExtras {
                trackers: &[self.announce_url()],
                webseeds: &[self.webseed_url(rec)],
                comment: None,
                created_by: Some(concat!("torrent-gateway/", env!("CARGO_PKG_VERSION"))),
                creation_date: Some(rec.created_at),
            },
        )))
    }

    /// The blob's URL on the Blossom server (`<base>/<sha256>.<ext>`), or the API's download
    /// URL when Blossom is off.
    pub fn blob_url(&self, rec: &FileRecord) -> String {
        let Some(base) = self.blossom_base() else {
            return self.download_url(rec);
        };
        let ext = mime::extension_for(&rec.content_type)
            .map(str::to_string)
            .or_else(|| {
                rec.name
                    .rsplit_once('.')
                    .map(|(_, e)| e.to_ascii_lowercase())
                    .filter(|e| {
                        (1..=8).contains(&e.len()) && e.bytes().all(|b| b.is_ascii_alphanumeric())
                    })
            });
        match ext {
            Some(ext) => format!("{base}/{}.{ext}", rec.sha256),
            None => format!("{base}/{}", rec.sha256),
        }
    }

    pub fn download_url(&self, rec: &FileRecord) -> String {
        format!("{}/download/{}", self.public_url, rec.sha256)
    }

    /// The NIP-94 tags of a stored file (BUD-08 descriptors and the kind 1063 event).
    pub fn nip94_tags(&self, rec: &FileRecord) -> Vec<Vec<String>> {
        let url = self.blob_url(rec);
        let download = self.download_url(rec);
        let fallbacks: Vec<String> = if url == download {
            vec![]
        } else {
            vec![download]
        };
        nip94::tags(&nip94::FileMeta {
            url: &url,
            mime: &rec.content_type,
            sha256: &rec.sha256,
            size: rec.size,
            magnet: &self.magnet(rec),
            info_hash: &rec.info_hash,
            webseed: &self.webseed_url(rec),
            fallbacks: &fallbacks,
            name: &rec.name,
        })
    }

    /// The Blossom blob descriptor (BUD-02, with BUD-08's `nip94`), plus the torrent.
    pub fn blob_descriptor(&self, rec: &FileRecord, uploaded: i64) -> Value {
        json!({
            "url": self.blob_url(rec),
            "sha256": rec.sha256,
            "size": rec.size,
            "type": rec.content_type,
            "uploaded": uploaded,
            "nip94": self.nip94_tags(rec),
            "magnet": self.magnet(rec),
            "infohash": rec.info_hash,
            "torrent": format!("{}/api/files/{}/torrent", self.public_url, rec.sha256),
        })
    }

    /// The JSON descriptor of a stored file.
    pub fn descriptor(&self, rec: &FileRecord) -> Value {
        json!({
            "sha256": rec.sha256,
            "name": rec.name,
            "size": rec.size,
            "content_type": rec.content_type,
            "storage": rec.storage.as_str(),
            "info_hash": rec.info_hash,
            "magnet": self.magnet(rec),
            "torrent_url": format!("{}/api/files/{}/torrent", self.public_url, rec.sha256),
            "webseed_url": self.webseed_url(rec),
            "download_url": self.download_url(rec),
            "created_at": rec.created_at,
        })
    }
}

/// A body read error: the client's fault (bad chunked encoding, hang-up) or ours (disk).
fn classify_body_error(e: io::Error) -> UploadError {
    match e.kind() {
        io::ErrorKind::InvalidData
        | io::ErrorKind::InvalidInput
        | io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::TimedOut
        | io::ErrorKind::WouldBlock => UploadError::Truncated(e.to_string()),
        _ => UploadError::Io(e),
    }
}
