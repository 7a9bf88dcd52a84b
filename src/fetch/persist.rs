//! The fetch-through list on disk, so a restart resumes it: per torrent a small record
//! `data/cache/<ih>.json` (`{"magnet": URI, "pinned": bool}`: its sources and pin flag) and,
//! once known, its verified info dict `data/cache/<ih>.info`. Each is written whole to a
//! temporary file, fsynced and renamed into place (then the directory fsynced), so a crash
//! leaves the old version or the new one. The cached pieces themselves are rechecked
//! against the info dict's hashes on the way back ([`recheck`]); a hole reads as zeros and
//! fails its check.

use crate::proto::bt::magnet::{self, Magnet};
use crate::proto::hex;
use sha1::{Digest, Sha1};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Largest record or info dict read back (an info dict is at most what a torrent may be).
const MAX_FILE: u64 = 16 << 20;

/// A torrent to resume.
pub struct Record {
    pub magnet: Magnet,
    pub pinned: bool,
    /// The info dict, when it was known (its SHA-1 is the info-hash: checked).
    pub info: Option<Vec<u8>>,
}

fn record_path(dir: &Path, ih: &[u8; 20]) -> PathBuf {
    dir.join(format!("{}.json", hex::encode(ih)))
}

fn info_path(dir: &Path, ih: &[u8; 20]) -> PathBuf {
    dir.join(format!("{}.info", hex::encode(ih)))
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename, fsync of the folder).
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
}

/// Keeps a torrent's sources and pin flag (errors are logged: the torrent still works,
/// it is only not resumed after a restart).
pub fn save_record(dir: &Path, ih: &[u8; 20], magnet: &str, pinned: bool) {
    let v = serde_json::json!({ "magnet": magnet, "pinned": pinned });
    if let Err(e) = write_atomic(&record_path(dir, ih), v.to_string().as_bytes()) {
        log::warn!("fetch: keeping the record of {}: {e}", hex::encode(ih));
    }
}

/// Keeps a torrent's verified info dict.
pub fn save_info(dir: &Path, ih: &[u8; 20], info: &[u8]) {
    if let Err(e) = write_atomic(&info_path(dir, ih), info) {
        log::warn!("fetch: keeping the info dict of {}: {e}", hex::encode(ih));
    }
}

pub fn remove(dir: &Path, ih: &[u8; 20]) {
    let _ = fs::remove_file(record_path(dir, ih));
    let _ = fs::remove_file(info_path(dir, ih));
}

fn read_capped(path: &Path) -> Option<Vec<u8>> {
    let meta = fs::metadata(path).ok()?;
    if meta.len() > MAX_FILE {
        log::warn!("fetch: {} is too large, ignored", path.display());
        return None;
    }
    fs::read(path).ok()
}

/// The kept records, at most `max` (the rest are left alone and logged); unreadable ones
/// are skipped with a warning.
pub fn load(dir: &Path, max: usize) -> Vec<Record> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut names: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    names.sort();
    for path in names {
        if out.len() >= max {
            log::warn!("fetch: more kept torrents than fetch.max_torrents; the rest wait");
            break;
        }
        match load_one(dir, &path) {
            Ok(r) => out.push(r),
            Err(e) => log::warn!("fetch: {}: {e}, ignored", path.display()),
        }
    }
    out
}

fn load_one(dir: &Path, path: &Path) -> Result<Record, String> {
    let bytes = read_capped(path).ok_or("unreadable")?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    let uri = v["magnet"].as_str().ok_or("no magnet")?;
    let m = magnet::parse(uri).map_err(|e| format!("bad magnet: {e}"))?;
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if stem != hex::encode(&m.info_hash) {
        return Err("the file name is not its info-hash".into());
    }
    let info = read_capped(&info_path(dir, &m.info_hash))
        .filter(|b| Sha1::digest(b).as_slice() == m.info_hash);
    Ok(Record {
        pinned: v["pinned"].as_bool().unwrap_or(false),
        magnet: m,
        info,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_bad_ones_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let info = b"d6:lengthi5e4:name1:x12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaae";
        let ih: [u8; 20] = Sha1::digest(info).into();
        let uri = format!(
            "magnet:?xt=urn:btih:{}&tr=http%3A%2F%2Ft%2Fa",
            hex::encode(&ih)
        );
        save_record(dir.path(), &ih, &uri, false);
        save_record(dir.path(), &ih, &uri, true);
        save_info(dir.path(), &ih, info);
        // A record whose name lies, and garbage.
        let other = [7u8; 20];
        fs::write(
            dir.path().join(format!("{}.json", hex::encode(&other))),
            format!("{{\"magnet\":\"{uri}\"}}"),
        )
        .unwrap();
        fs::write(dir.path().join("zz.json"), b"{not json").unwrap();
        let got = load(dir.path(), 10);
        assert_eq!(got.len(), 1);
        assert!(got[0].pinned);
        assert_eq!(got[0].magnet.info_hash, ih);
        assert_eq!(got[0].magnet.trackers, vec!["http://t/a".to_string()]);
        assert_eq!(got[0].info.as_deref(), Some(&info[..]));
        // An info dict that does not hash to the info-hash is not used.
        fs::write(info_path(dir.path(), &ih), b"d4:name1:ye").unwrap();
        assert!(load(dir.path(), 10)[0].info.is_none());
        assert!(load(dir.path(), 0).is_empty());
        remove(dir.path(), &ih);
        assert!(load(dir.path(), 10).is_empty());
    }
}
