//! The data dir as a whole: one process owns it (an exclusive `flock` on `<data_dir>/LOCK`,
//! taken before anything else at start-up), and directories are created durably: every
//! directory made on the way is fsynced into its parent, so a power loss cannot drop a
//! directory (on XFS or btrfs) whose contents SQLite already names.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Name of the lock file in the data dir.
pub const LOCK_FILE: &str = "LOCK";

/// The held lock on a data dir; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    pub path: PathBuf,
}

/// Creates the data dir if needed and takes its exclusive lock, without waiting. The error
/// is one line: "data dir X is in use by another torrent-gateway process" when it is held.
pub fn lock_data_dir(dir: &Path) -> Result<DataDirLock, String> {
    create_dir_all_synced(dir).map_err(|e| format!("creating data dir {}: {e}", dir.display()))?;
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(&path)
        .map_err(|e| format!("opening {}: {e}", path.display()))?;
    // SAFETY: flock on a descriptor we own; no memory is passed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        return Err(if e.kind() == io::ErrorKind::WouldBlock {
            format!(
                "data dir {} is in use by another torrent-gateway process",
                dir.display()
            )
        } else {
            format!("locking {}: {e}", path.display())
        });
    }
    // The holder's pid, for whoever finds the dir in use (advisory; the lock is the flock).
    let _ = file
        .set_len(0)
        .and_then(|()| writeln!(file, "{}", std::process::id()));
    Ok(DataDirLock { _file: file, path })
}

/// `create_dir_all` that fsyncs the parent of every directory it creates (and so makes the
/// whole new path durable). Existing directories are left alone.
pub fn create_dir_all_synced(dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut at = dir;
    while !at.as_os_str().is_empty() && !at.is_dir() {
        missing.push(at);
        match at.parent() {
            Some(p) => at = p,
            None => break,
        }
    }
    for d in missing.into_iter().rev() {
        match fs::create_dir(d) {
            Ok(()) => {}
            // Made meanwhile by another thread: its creator syncs it.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => continue,
            Err(e) => return Err(e),
        }
        fsync_dir(parent_of(d))?;
    }
    Ok(())
}

/// The directory holding `path` (`.` for a bare relative name).
pub fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Makes a directory's entries durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(test)]
    tests::record(dir);
    File::open(dir)?.sync_all()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cell::RefCell;

    thread_local! {
        static SYNCED: RefCell<Vec<PathBuf>> = const { RefCell::new(Vec::new()) };
    }

    pub(crate) fn record(dir: &Path) {
        SYNCED.with(|s| s.borrow_mut().push(dir.to_path_buf()));
    }

    /// The directories this thread fsynced since the last call.
    pub(crate) fn take_synced() -> Vec<PathBuf> {
        SYNCED.with(|s| std::mem::take(&mut *s.borrow_mut()))
    }

    #[test]
    fn every_created_directory_is_synced_into_its_parent() {
        let tmp = tempfile::tempdir().unwrap();
        let deep = tmp.path().join("a/b/c");
        take_synced();
        create_dir_all_synced(&deep).unwrap();
        assert!(deep.is_dir());
        let synced = take_synced();
        for d in [
            tmp.path().to_path_buf(),
            tmp.path().join("a"),
            tmp.path().join("a/b"),
        ] {
            assert!(
                synced.contains(&d),
                "{} not synced: {synced:?}",
                d.display()
            );
        }
        create_dir_all_synced(&deep).unwrap();
        assert!(take_synced().is_empty(), "nothing new, nothing synced");
    }

    #[test]
    fn one_process_owns_a_data_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let held = lock_data_dir(&dir).unwrap();
        // flock locks belong to the open file: a second open conflicts even in-process.
        let e = lock_data_dir(&dir).unwrap_err();
        assert_eq!(
            e,
            format!(
                "data dir {} is in use by another torrent-gateway process",
                dir.display()
            )
        );
        drop(held);
        lock_data_dir(&dir).unwrap();
    }
}
