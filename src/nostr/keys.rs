//! The gateway's Nostr key: from the config, or generated once into `<data_dir>/nostr.key`
//! (hex, mode 0600) and read back on later starts. Randomness from the OS.
//!
//! The file appears complete or not at all: it is written to `nostr.key.tmp`, fsynced,
//! renamed into place and the directory fsynced, so a crash never leaves an empty key that
//! stops the next start (a leftover temp file is simply written again).

use crate::proto::nostr::Keys;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// File name of the generated key in the data dir.
pub const KEY_FILE: &str = "nostr.key";
/// Where the key is written before it is renamed into place.
const TMP_FILE: &str = "nostr.key.tmp";

/// 32 random bytes from the kernel.
pub fn random32() -> std::io::Result<[u8; 32]> {
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b)
}

/// The configured key, else the one in the data dir, else a new one written there.
pub fn load_or_create(configured: &str, data_dir: &Path) -> Result<Keys, String> {
    if !configured.trim().is_empty() {
        return Keys::parse(configured).map_err(|e| format!("nostr.secret_key: {e}"));
    }
    let path = data_dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mode = std::fs::metadata(&path)
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or(0);
            if mode & 0o077 != 0 {
                log::warn!(
                    "{} is readable by others (mode {mode:o}); chmod 600 it",
                    path.display()
                );
            }
            if text.trim().is_empty() {
                return Err(format!(
                    "{} is empty (left by a crash of an older version while it was written?): \
                     remove it to generate a new key",
                    path.display()
                ));
            }
            Keys::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let keys = loop {
                let bytes = random32().map_err(|e| format!("reading /dev/urandom: {e}"))?;
                if let Ok(k) = Keys::from_secret(&bytes) {
                    break k;
                }
            };
            write_key_file(data_dir, &format!("{}\n", keys.secret_hex()), &|_| {})?;
            log::info!("generated the gateway's Nostr key in {}", path.display());
            Ok(keys)
        }
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

/// Writes `text` as the key file durably: temp file (0600), fsync, rename, fsync the dir.
/// `before_rename` sees the temp file's path (tests check the key is not yet in place).
fn write_key_file(
    data_dir: &Path,
    text: &str,
    before_rename: &dyn Fn(&Path),
) -> Result<(), String> {
    let path = data_dir.join(KEY_FILE);
    let tmp = data_dir.join(TMP_FILE);
    let failed = |e: std::io::Error| format!("writing {}: {e}", path.display());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("creating {}: {e}", tmp.display()))?;
    // A leftover temp file keeps the mode it was made with: make sure it is private.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .and_then(|()| file.write_all(text.as_bytes()))
        .and_then(|()| file.sync_all())
        .map_err(failed)?;
    drop(file);
    before_rename(&tmp);
    std::fs::rename(&tmp, &path).map_err(failed)?;
    crate::store::dirs::fsync_dir(data_dir).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create("", dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = load_or_create("", dir.path()).unwrap();
        assert_eq!(a.pubkey, b.pubkey);
        let c = load_or_create(&"01".repeat(32), dir.path()).unwrap();
        assert_ne!(c.pubkey, a.pubkey);
        std::fs::write(dir.path().join(KEY_FILE), "junk").unwrap();
        assert!(load_or_create("", dir.path()).is_err());
        std::fs::write(dir.path().join(KEY_FILE), "").unwrap();
        let e = load_or_create("", dir.path()).unwrap_err();
        assert!(e.contains("is empty"), "{e}");
    }

    #[test]
    fn the_key_file_appears_complete_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("{}\n", "07".repeat(32));
        let key = dir.path().join(KEY_FILE);
        // A crash before the rename leaves only the temp file, complete and private.
        write_key_file(dir.path(), &text, &|tmp| {
            assert!(
                !key.exists(),
                "the key is not in place before it is complete"
            );
            assert_eq!(std::fs::read_to_string(tmp).unwrap(), text);
            let mode = std::fs::metadata(tmp).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        })
        .unwrap();
        assert_eq!(std::fs::read_to_string(&key).unwrap(), text);
        assert!(!dir.path().join(TMP_FILE).exists());
        // A leftover temp file (crash before the rename) does not stop the next start.
        let fresh = tempfile::tempdir().unwrap();
        std::fs::write(fresh.path().join(TMP_FILE), "").unwrap();
        let a = load_or_create("", fresh.path()).unwrap();
        assert_eq!(load_or_create("", fresh.path()).unwrap().pubkey, a.pubkey);
        assert!(!fresh.path().join(TMP_FILE).exists());
    }
}
