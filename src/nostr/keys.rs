//! The gateway's Nostr key: from the config, or generated once into `<data_dir>/nostr.key`
//! (hex, mode 0600) and read back on later starts. Randomness from the OS.

use crate::proto::nostr::Keys;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// File name of the generated key in the data dir.
pub const KEY_FILE: &str = "nostr.key";

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
            Keys::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let keys = loop {
                let bytes = random32().map_err(|e| format!("reading /dev/urandom: {e}"))?;
                if let Ok(k) = Keys::from_secret(&bytes) {
                    break k;
                }
            };
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| format!("creating {}: {e}", path.display()))?;
            file.write_all(format!("{}\n", keys.secret_hex()).as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
            log::info!("generated the gateway's Nostr key in {}", path.display());
            Ok(keys)
        }
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
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
    }
}
