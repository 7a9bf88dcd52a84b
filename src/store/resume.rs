//! Resume data for a download: the verified pieces and, for each file, the size and mtime it
//! had when they were recorded. Written atomically (temporary file, fsync, rename, fsync of
//! the directory) next to the download, so a crash leaves the old record or the new one,
//! never half of one. On start it is trusted only if every file still has the recorded size
//! and mtime; anything else (missing, stale, corrupt, another torrent's) means a recheck.
//!
//! The data files are not fsynced for a record. Every piece it claims was written to the page
//! cache, which outlives the process (a crash or kill -9 loses nothing written), and only a
//! reboot can lose it: so each record names the kernel's boot id, and one from another boot is
//! trusted no more than a missing one. Where the boot id cannot be read, the caller syncs the
//! files first and the record carries no boot id (trusted across reboots, like one made after
//! a sync).
//!
//! Format: a bencoded dict `{"boot": <boot id>, "files": [[size, mtime], ...],
//! "have": <bitfield bytes>, "info_hash": <20 bytes>, "v": 1}` (`boot` optional).

use crate::proto::bt::bencode::{self, Kind, Limits};
use crate::store::dirs;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::UNIX_EPOCH;

/// The running kernel's boot id (`/proc/sys/kernel/random/boot_id`), read once; `None` where
/// there is none to read.
pub fn boot_id() -> Option<&'static str> {
    static ID: OnceLock<Option<String>> = OnceLock::new();
    ID.get_or_init(|| {
        let id = fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        let id = id.trim();
        (!id.is_empty() && id.len() <= 64).then(|| id.to_string())
    })
    .as_deref()
}

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
    /// The boot the record was made in, when its data was not synced (see the module doc).
    pub boot: Option<String>,
}

impl Resume {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = b"d".to_vec();
        if let Some(boot) = &self.boot {
            out.extend_from_slice(format!("4:boot{}:{boot}", boot.len()).as_bytes());
        }
        out.extend_from_slice(b"5:filesl");
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
        let boot = match v.get("boot") {
            Some(b) => Some(String::from_utf8(b.as_bytes()?.to_vec()).ok()?),
            None => None,
        };
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
            boot,
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
/// torrent, every file still has its recorded stamp (`now`, in file order) and, for an
/// unsynced record, it was made in this boot.
pub fn load(path: &Path, info_hash: &[u8; 20], now: &[FileStamp]) -> Option<Vec<u8>> {
    let r = Resume::decode(&fs::read(path).ok()?)?;
    let same_boot = r.boot.is_none() || r.boot.as_deref() == boot_id();
    (r.info_hash == *info_hash && r.files == now && same_boot).then_some(r.have)
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
            boot: None,
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

    #[test]
    fn unsynced_records_hold_for_this_boot_only() {
        let tmp = tempfile::tempdir().unwrap();
        let p = path(tmp.path(), "05");
        let this_boot = boot_id().map(str::to_string);
        assert!(this_boot.is_some(), "Linux has a boot id");
        let mut r = Resume {
            info_hash: [5; 20],
            have: vec![0xff],
            files: vec![],
            boot: this_boot,
        };
        assert_eq!(Resume::decode(&r.encode()), Some(r.clone()));
        save(&p, &r).unwrap();
        assert_eq!(load(&p, &[5; 20], &[]), Some(vec![0xff]));
        // Made in another boot: the page cache it relied on is gone, so it means a recheck.
        r.boot = Some("00000000-0000-0000-0000-000000000000".into());
        save(&p, &r).unwrap();
        assert_eq!(load(&p, &[5; 20], &[]), None);
    }
}
