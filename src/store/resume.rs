//! Resume data for a download: the verified pieces and, for each file, the size and mtime it
//! had when they were recorded. Written atomically (temporary file, fsync, rename, fsync of
//! the directory) next to the download, so a crash leaves the old record or the new one,
//! never half of one. On start it is trusted only if every file still has the recorded size
//! and mtime; anything else (missing, stale, corrupt, another torrent's) means a recheck.
//!
//! Format: a bencoded dict `{"files": [[size, mtime], ...], "have": <bitfield bytes>,
//! "info_hash": <20 bytes>, "v": 1}`.

use crate::proto::bt::bencode::{self, Kind, Limits};
use crate::store::dirs;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// A file's size and modification time (nanoseconds since the epoch; 0 when absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    pub size: u64,
    pub mtime_ns: u64,
}

impl FileStamp {
    /// The stamp of `path` now (a missing file is size 0, mtime 0).
    pub fn of(path: &Path) -> FileStamp {
        match fs::metadata(path) {
            Ok(m) => FileStamp {
                size: m.len(),
                mtime_ns: m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos() as u64),
            },
            Err(_) => FileStamp {
                size: 0,
                mtime_ns: 0,
            },
        }
    }
}

/// What a resume file records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    pub info_hash: [u8; 20],
    /// Verified pieces, wire-order bits.
    pub have: Vec<u8>,
    pub files: Vec<FileStamp>,
}

impl Resume {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = b"d5:filesl".to_vec();
        for f in &self.files {
            out.extend_from_slice(format!("li{}ei{}ee", f.size, f.mtime_ns).as_bytes());
        }
        out.extend_from_slice(b"e4:have");
        out.extend_from_slice(format!("{}:", self.have.len()).as_bytes());
        out.extend_from_slice(&self.have);
        out.extend_from_slice(b"9:info_hash20:");
        out.extend_from_slice(&self.info_hash);
        out.extend_from_slice(b"1:vi1ee");
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Resume> {
        let limits = Limits {
            max_depth: 4,
            max_str_len: 16 << 20,
            max_values: 4_000_000,
            max_input_bytes: 64 << 20,
        };
        let v = bencode::decode_with(bytes, limits).ok()?;
        if v.get("v")?.as_int()? != 1 {
            return None;
        }
        let info_hash: [u8; 20] = v.get("info_hash")?.as_bytes()?.try_into().ok()?;
        let have = v.get("have")?.as_bytes()?.to_vec();
        let mut files = Vec::new();
        for f in v.get("files")?.as_list()? {
            let Kind::List(pair) = &f.kind else {
                return None;
            };
            let size = u64::try_from(pair.first()?.as_int()?).ok()?;
            let mtime_ns = u64::try_from(pair.get(1)?.as_int()?).ok()?;
            files.push(FileStamp { size, mtime_ns });
        }
        Some(Resume {
            info_hash,
            have,
            files,
        })
    }
}

/// The resume file of a download into `dir`.
pub fn path(dir: &Path, info_hash_hex: &str) -> PathBuf {
    dir.join(".torrent-gateway")
        .join(format!("{info_hash_hex}.resume"))
}

/// Writes `resume` to `path` atomically.
pub fn save(path: &Path, resume: &Resume) -> io::Result<()> {
    let dir = dirs::parent_of(path);
    dirs::create_dir_all_synced(dir)?;
    let tmp = path.with_extension("resume.tmp");
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&resume.encode())?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    dirs::fsync_dir(dir)
}

/// The verified pieces recorded for `info_hash`, if the record exists, parses, is for this
/// torrent and every file still has its recorded stamp (`now`, in file order).
pub fn load(path: &Path, info_hash: &[u8; 20], now: &[FileStamp]) -> Option<Vec<u8>> {
    let r = Resume::decode(&fs::read(path).ok()?)?;
    (r.info_hash == *info_hash && r.files == now).then_some(r.have)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_staleness() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("a.bin");
        fs::write(&data, b"hello").unwrap();
        let stamps = vec![
            FileStamp::of(&data),
            FileStamp::of(&tmp.path().join("missing")),
        ];
        assert_eq!(
            stamps[1],
            FileStamp {
                size: 0,
                mtime_ns: 0
            }
        );
        let r = Resume {
            info_hash: [3; 20],
            have: vec![0b1010_0000],
            files: stamps.clone(),
        };
        assert_eq!(Resume::decode(&r.encode()), Some(r.clone()));
        let p = path(tmp.path(), "03");
        save(&p, &r).unwrap();
        assert_eq!(load(&p, &[3; 20], &stamps), Some(vec![0b1010_0000]));
        assert_eq!(load(&p, &[4; 20], &stamps), None, "another torrent");
        // The file changed since: stale.
        fs::write(&data, b"hello, world").unwrap();
        let now = vec![FileStamp::of(&data), stamps[1]];
        assert_eq!(load(&p, &[3; 20], &now), None);
        // Corrupt records and leftovers of an interrupted save are ignored.
        fs::write(&p, b"d5:filesle").unwrap();
        assert_eq!(load(&p, &[3; 20], &stamps), None);
        assert!(!p.with_extension("resume.tmp").exists());
    }
}
