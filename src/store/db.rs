//! SQLite metadata: opening (WAL), migrations from `schema.sql` by `PRAGMA user_version`, and
//! the queries the gateway needs. One connection behind a mutex: every query is an indexed
//! lookup or a short transaction, so serializing them costs less than a pool would.

use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::path::Path;

/// The schema, applied block by block (`-- version N`).
const SCHEMA: &str = include_str!("../../schema.sql");

/// How a file's bytes are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// One file `blobs/ab/cd/<sha256>`.
    Blob,
    /// Piece-sized files `chunks/<sha256>/<index>`.
    Chunked,
}

impl Storage {
    pub fn as_str(self) -> &'static str {
        match self {
            Storage::Blob => "blob",
            Storage::Chunked => "chunked",
        }
    }
}

/// A stored file and its torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    pub sha256: String,
    pub name: String,
    pub size: u64,
    pub content_type: String,
    pub storage: Storage,
    pub created_at: i64,
    pub info_hash: String,
    pub piece_length: u64,
}

/// Counts by storage kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub files: u64,
    pub bytes: u64,
}

pub struct Db {
    pub(super) conn: Mutex<Connection>,
}

pub type Result<T> = rusqlite::Result<T>;

const FILE_COLUMNS: &str = "f.sha256, f.name, f.size, f.content_type, f.storage, f.created_at, \
                            t.info_hash, t.piece_length";

pub(super) fn file_from_row(row: &Row<'_>) -> Result<FileRecord> {
    let storage: String = row.get(4)?;
    Ok(FileRecord {
        sha256: row.get(0)?,
        name: row.get(1)?,
        size: row.get::<_, i64>(2)? as u64,
        content_type: row.get(3)?,
        storage: if storage == "chunked" {
            Storage::Chunked
        } else {
            Storage::Blob
        },
        created_at: row.get(5)?,
        info_hash: row.get(6)?,
        piece_length: row.get::<_, i64>(7)? as u64,
    })
}

/// Splits `schema.sql` into `(version, sql)` blocks.
fn migrations() -> Vec<(u32, String)> {
    let mut out: Vec<(u32, String)> = Vec::new();
    for line in SCHEMA.lines() {
        if let Some(v) = line.strip_prefix("-- version ") {
            out.push((v.trim().parse().expect("schema.sql version"), String::new()));
        } else if let Some((_, sql)) = out.last_mut() {
            sql.push_str(line);
            sql.push('\n');
        }
    }
    out
}

impl Db {
    /// Opens (creating) the database and applies pending migrations.
    pub fn open(path: &Path) -> Result<Db> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a commit is on disk before the client hears 201 (NORMAL could lose the last
        // commits on power loss after the data itself was made durable).
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "cache_size", -2000)?; // 2 MB page cache
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let current: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (version, sql) in migrations() {
            if version > current {
                let tx = conn.transaction()?;
                tx.execute_batch(&sql)?;
                tx.pragma_update(None, "user_version", version)?;
                tx.commit()?;
            }
        }
        Ok(Db {
            conn: Mutex::new(conn),
        })
    }

    pub fn schema_version(&self) -> Result<u32> {
        self.conn
            .lock()
            .pragma_query_value(None, "user_version", |r| r.get(0))
    }

    /// Inserts a file held by the API (no owner).
    pub fn insert(&self, rec: &FileRecord, info_bytes: &[u8]) -> Result<bool> {
        self.insert_held(rec, info_bytes, None)
    }

    /// Inserts a file and its torrent in one transaction, held by the API (`owner` None) or
    /// owned by a Nostr pubkey. Returns false if the sha256 exists.
    pub fn insert_held(
        &self,
        rec: &FileRecord,
        info_bytes: &[u8],
        owner: Option<&str>,
    ) -> Result<bool> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let added = tx.execute(
            "INSERT OR IGNORE INTO files
             (sha256, name, size, content_type, storage, created_at, api_held)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                rec.sha256,
                rec.name,
                rec.size as i64,
                rec.content_type,
                rec.storage.as_str(),
                rec.created_at,
                owner.is_none()
            ],
        )?;
        if added == 0 {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO torrents (info_hash, sha256, info_bytes, piece_length) VALUES (?1, ?2, ?3, ?4)",
            params![rec.info_hash, rec.sha256, info_bytes, rec.piece_length as i64],
        )?;
        if let Some(pubkey) = owner {
            tx.execute(
                "INSERT INTO blob_owners (sha256, pubkey, added_at) VALUES (?1, ?2, ?3)",
                params![rec.sha256, pubkey, rec.created_at],
            )?;
        }
        tx.commit()?;
        Ok(true)
    }

    pub fn by_sha256(&self, sha256: &str) -> Result<Option<FileRecord>> {
        self.one_file("f.sha256", sha256)
    }

    pub fn by_info_hash(&self, info_hash: &str) -> Result<Option<FileRecord>> {
        self.one_file("t.info_hash", info_hash)
    }

    /// The file whose `column` (a fixed column name, never input) equals `key`.
    fn one_file(&self, column: &'static str, key: &str) -> Result<Option<FileRecord>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {FILE_COLUMNS} FROM files f JOIN torrents t ON t.sha256 = f.sha256
             WHERE {column} = ?1"
        ))?;
        stmt.query_row([key], file_from_row).optional()
    }

    pub fn info_bytes(&self, sha256: &str) -> Result<Option<Vec<u8>>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached("SELECT info_bytes FROM torrents WHERE sha256 = ?1")?;
        stmt.query_row([sha256], |r| r.get(0)).optional()
    }

    /// Newest first; `after` is the `(created_at, sha256)` of the last item already seen.
    pub fn list(&self, limit: usize, after: Option<(i64, &str)>) -> Result<Vec<FileRecord>> {
        let conn = self.conn.lock();
        let (at, sha) = after.unwrap_or((i64::MAX, ""));
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {FILE_COLUMNS} FROM files f JOIN torrents t ON t.sha256 = f.sha256
             WHERE (f.created_at, f.sha256) < (?1, ?2) OR ?3
             ORDER BY f.created_at DESC, f.sha256 DESC LIMIT ?4"
        ))?;
        let rows = stmt.query_map(
            params![at, sha, after.is_none(), limit as i64],
            file_from_row,
        )?;
        rows.collect()
    }

    /// Deletes a file and its torrent; false if it was not there.
    pub fn delete(&self, sha256: &str) -> Result<bool> {
        let conn = self.conn.lock();
        Ok(conn.execute("DELETE FROM files WHERE sha256 = ?1", [sha256])? > 0)
    }

    /// Every stored sha256 with its storage kind (for the start-up sweep).
    pub fn all(&self) -> Result<Vec<(String, Storage)>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare("SELECT sha256, storage FROM files")?;
        let rows = stmt.query_map([], |r| {
            let s: String = r.get(1)?;
            Ok((
                r.get(0)?,
                if s == "chunked" {
                    Storage::Chunked
                } else {
                    Storage::Blob
                },
            ))
        })?;
        rows.collect()
    }

    /// File counts and bytes for blobs and for chunked files.
    pub fn totals(&self) -> Result<(Totals, Totals)> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT storage, COUNT(*), COALESCE(SUM(size), 0) FROM files GROUP BY storage",
        )?;
        let mut blob = Totals::default();
        let mut chunked = Totals::default();
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        for row in rows {
            let (kind, files, bytes) = row?;
            let t = Totals {
                files: files as u64,
                bytes: bytes as u64,
            };
            if kind == "chunked" {
                chunked = t;
            } else {
                blob = t;
            }
        }
        Ok((blob, chunked))
    }

    /// Every stored torrent's info-hash.
    pub fn info_hashes(&self) -> Result<Vec<String>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare("SELECT info_hash FROM torrents")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect()
    }

    /// The tracker's persisted completed-download counts, largest first, at most `limit`.
    pub fn tracker_downloads(&self, limit: usize) -> Result<Vec<(String, u64)>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(
            "SELECT info_hash, downloaded FROM tracker_downloads ORDER BY downloaded DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        rows.collect()
    }

    /// Adds completed-download counts, in one transaction.
    pub fn add_tracker_downloads(&self, deltas: &[(String, u64)]) -> Result<()> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO tracker_downloads (info_hash, downloaded) VALUES (?1, ?2)
                 ON CONFLICT (info_hash) DO UPDATE SET downloaded = downloaded + excluded.downloaded",
            )?;
            for (hash, n) in deltas {
                stmt.execute(params![hash, *n as i64])?;
            }
        }
        tx.commit()
    }

    /// The tracker allowlist, oldest first.
    pub fn allowlist(&self) -> Result<Vec<String>> {
        let conn = self.conn.lock();
        let mut stmt =
            conn.prepare("SELECT info_hash FROM tracker_allowlist ORDER BY added_at, info_hash")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect()
    }

    /// Adds to the allowlist; false if it was there.
    pub fn allow(&self, info_hash: &str, at: i64) -> Result<bool> {
        let conn = self.conn.lock();
        Ok(conn.execute(
            "INSERT OR IGNORE INTO tracker_allowlist (info_hash, added_at) VALUES (?1, ?2)",
            params![info_hash, at],
        )? > 0)
    }

    /// Removes from the allowlist; false if it was not there.
    pub fn disallow(&self, info_hash: &str) -> Result<bool> {
        let conn = self.conn.lock();
        Ok(conn.execute(
            "DELETE FROM tracker_allowlist WHERE info_hash = ?1",
            [info_hash],
        )? > 0)
    }

    /// A trivial query, for health checks.
    pub fn ping(&self) -> Result<()> {
        self.conn.lock().query_row("SELECT 1", [], |_| Ok(()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small blob record for query tests.
    pub(crate) fn record(sha: &str, at: i64) -> FileRecord {
        FileRecord {
            sha256: sha.into(),
            name: format!("{sha}.bin"),
            size: 10,
            content_type: "application/octet-stream".into(),
            storage: Storage::Blob,
            created_at: at,
            info_hash: format!("ih{sha}"),
            piece_length: 16384,
        }
    }

    #[test]
    fn insert_lookup_list_delete_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.db");
        let db = Db::open(&path).unwrap();
        assert!(db.insert(&record("a", 1), b"d1:ai1ee").unwrap());
        assert!(
            !db.insert(&record("a", 5), b"x").unwrap(),
            "same content again"
        );
        for (sha, at) in [("b", 2), ("c", 2), ("d", 3)] {
            db.insert(&record(sha, at), b"de").unwrap();
        }
        assert_eq!(db.by_info_hash("iha").unwrap().unwrap().sha256, "a");
        assert_eq!(db.info_bytes("a").unwrap().unwrap(), b"d1:ai1ee");
        let page1 = db.list(2, None).unwrap();
        let names: Vec<_> = page1.iter().map(|r| r.sha256.as_str()).collect();
        assert_eq!(names, ["d", "c"]);
        let last = page1.last().unwrap();
        let page2 = db.list(2, Some((last.created_at, &last.sha256))).unwrap();
        let names: Vec<_> = page2.iter().map(|r| r.sha256.as_str()).collect();
        assert_eq!(names, ["b", "a"]);
        assert!(db.delete("b").unwrap());
        assert!(!db.delete("b").unwrap());
        assert_eq!(
            db.by_info_hash("ihb").unwrap(),
            None,
            "torrent row cascades"
        );
        drop(db);
        let db = Db::open(&path).unwrap();
        assert_eq!(db.all().unwrap().len(), 3);
        assert_eq!(
            db.totals().unwrap().0,
            Totals {
                files: 3,
                bytes: 30
            }
        );
        assert_eq!(db.schema_version().unwrap(), 4);
        let deltas = [("aa".to_string(), 2), ("bb".to_string(), 1)];
        db.add_tracker_downloads(&deltas).unwrap();
        db.add_tracker_downloads(&deltas[..1]).unwrap();
        assert_eq!(
            db.tracker_downloads(10).unwrap(),
            vec![("aa".to_string(), 4), ("bb".to_string(), 1)]
        );
        assert!(db.allow("cc", 1).unwrap());
        assert!(!db.allow("cc", 2).unwrap());
        assert_eq!(db.allowlist().unwrap(), ["cc"]);
        assert!(db.disallow("cc").unwrap());
        assert!(!db.disallow("cc").unwrap());
    }
}
