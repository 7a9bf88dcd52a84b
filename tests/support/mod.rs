//! Shared helpers for the integration tests: running the binary, requiring real tools, and
//! making test data. Tools are required, never skipped: `scripts/install-interop` installs them.

#![allow(dead_code)]

pub mod bad_seed;
pub mod client;
pub mod dht_gateway;
pub mod dht_nodes;
pub mod nostr;
pub mod peer;
pub mod redis;
pub mod seeders;
pub mod server;
pub mod tracker;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_torrent-gateway")
}

/// Raises this test process's open-files soft limit to the hard one (floods need many).
pub fn raise_own_fd_limit() {
    // SAFETY: getrlimit/setrlimit with a valid struct; raising the soft limit to the hard one.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

/// Runs the binary with `args` in `dir`.
pub fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("run torrent-gateway")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs the binary and insists on exit 0.
pub fn run_ok(dir: &Path, args: &[&str]) -> String {
    let o = run(dir, args);
    assert!(o.status.success(), "{args:?} failed: {}", stderr(&o));
    stdout(&o)
}

/// Path of a real tool; panics with the fix when it is missing (never a silent skip).
pub fn require_tool(name: &str) -> PathBuf {
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    candidates
        .iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed: run scripts/install-interop"))
}

/// Debian's python3, the one that has the libtorrent binding.
pub fn python_with_libtorrent() -> &'static str {
    let py = "/usr/bin/python3";
    let ok = Command::new(py)
        .args(["-c", "import libtorrent"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "python3-libtorrent is not installed: run scripts/install-interop"
    );
    py
}

/// Runs a helper script from tests/py with Debian's python3 and returns its stdout.
pub fn python(script: &str, args: &[&str]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(script);
    let o = Command::new(python_with_libtorrent())
        .arg(path)
        .args(args)
        .output()
        .expect("run python3");
    assert!(
        o.status.success(),
        "{script} {args:?} failed: {}",
        stderr(&o)
    );
    stdout(&o)
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes `len` pseudo-random bytes to `dir/rel`, creating directories.
pub fn write_file(dir: &Path, rel: &str, len: usize, seed: u64) -> PathBuf {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes(len, seed)).unwrap();
    path
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Parses `info --json` output.
pub fn info_json(dir: &Path, torrent: &str) -> serde_json::Value {
    serde_json::from_str(&run_ok(dir, &["info", torrent, "--json"])).expect("info --json")
}

/// Kills a child process when dropped, so a failing test leaves nothing running.
pub struct Reaped(pub std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs transmission-cli on `torrent` with `dir` as its download directory (it seeds what it
/// finds there, downloads what is missing) and its own state under `home`.
pub fn transmission_cli(torrent: &Path, dir: &Path, home: &Path) -> Reaped {
    let child = Command::new(require_tool("transmission-cli"))
        .args(["--no-portmap", "--no-downlimit", "--no-uplimit", "-p"])
        .arg(tracker::free_port().to_string())
        .arg("-w")
        .arg(dir)
        .arg(torrent)
        .env("HOME", home)
        .env("TRANSMISSION_HOME", home)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start transmission-cli");
    Reaped(child)
}

/// Runs aria2c on a torrent into `out` (no DHT, LPD or PEX; its own free listen port; gives
/// up after 60 s without progress) and returns its output.
pub fn aria2c(torrent: &Path, out: &Path) -> Output {
    Command::new(require_tool("aria2c"))
        .args([
            "-q",
            "--seed-time=0",
            "--enable-dht=false",
            "--enable-dht6=false",
            "--bt-enable-lpd=false",
            "--enable-peer-exchange=false",
            "--bt-stop-timeout=60",
            "--listen-port",
        ])
        .arg(tracker::free_port().to_string())
        .arg("-d")
        .arg(out)
        .arg(torrent)
        .output()
        .unwrap()
}
