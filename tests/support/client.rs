//! Runs our `download` command as a child process for the client tests, reading its `--json`
//! lines (the `{"listening"}` line, one progress object a second, the final summary) as they
//! come, with a bounded wait: a hung download is killed and the test fails with its output
//! instead of hanging. Also compares downloaded trees with their sources.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `download` run that has ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// Every stdout line that parsed as JSON, in order.
    pub lines: Vec<Value>,
}

impl Finished {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The final summary object (panics with the output when there is none).
    pub fn summary(&self) -> &Value {
        self.lines
            .iter()
            .rev()
            .find(|v| v["summary"] == true)
            .unwrap_or_else(|| panic!("no summary line: {self}"))
    }

    /// The progress objects (not the listening line nor the summary).
    pub fn progress(&self) -> Vec<&Value> {
        self.lines.iter().filter(|v| is_progress(v)).collect()
    }

    /// The summary's `banned` list.
    pub fn banned(&self) -> Vec<String> {
        self.summary()["banned"]
            .as_array()
            .unwrap_or_else(|| panic!("summary without banned: {self}"))
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }

    /// Asserts exit 0 and a complete summary with every piece verified.
    pub fn assert_complete(&self) -> &Value {
        assert_eq!(self.code(), Some(0), "download failed: {self}");
        let s = self.summary();
        assert_eq!(s["complete"], true, "{self}");
        assert_eq!(s["verified_pieces"], s["total_pieces"], "{self}");
        s
    }

    /// The non-empty stderr lines.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }
}

impl std::fmt::Display for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tail = |s: &str| {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        write!(
            f,
            "{}\n--- stdout (tail)\n{}\n--- stderr (tail)\n{}",
            self.status,
            tail(&self.stdout),
            tail(&self.stderr)
        )
    }
}

fn is_progress(v: &Value) -> bool {
    v.get("progress").is_some() && v.get("summary").is_none()
}

/// A `download` process still running.
pub struct Running {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    lines: Arc<Mutex<Vec<Value>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

/// Starts `torrent-gateway download ARGS` in `cwd`.
pub fn spawn(cwd: &Path, args: &[&str]) -> Running {
    let mut cmd = Command::new(super::bin());
    cmd.arg("download").args(args).current_dir(cwd);
    if !args.contains(&"--dht-bootstrap") {
        // No public bootstrap hosts from tests.
        cmd.arg("--no-dht");
    }
    // Quiet unless asked (TG_TEST_LOG=debug): stderr then holds only the command's own lines.
    match std::env::var("TG_TEST_LOG") {
        Ok(level) => cmd.env("RUST_LOG", level),
        Err(_) => cmd.env_remove("RUST_LOG"),
    };
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start torrent-gateway download");
    let stdout: Arc<Mutex<String>> = Arc::default();
    let stderr: Arc<Mutex<String>> = Arc::default();
    let lines: Arc<Mutex<Vec<Value>>> = Arc::default();
    let (out, sink, parsed) = (
        child.stdout.take().unwrap(),
        Arc::clone(&stdout),
        Arc::clone(&lines),
    );
    let r1 = std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                parsed.lock().unwrap().push(v);
            }
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    let (mut err, sink) = (child.stderr.take().unwrap(), Arc::clone(&stderr));
    let r2 = std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = err.read(&mut chunk) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
    Running {
        child,
        stdout,
        stderr,
        lines,
        readers: vec![r1, r2],
    }
}

/// Runs `download ARGS` in `cwd` to its end; kills it and fails after `limit_secs`.
pub fn download(cwd: &Path, args: &[&str], limit_secs: u64) -> Finished {
    spawn(cwd, args).wait(limit_secs)
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The JSON lines so far.
    pub fn lines(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }

    /// The last progress object so far.
    pub fn last_progress(&self) -> Option<Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|v| is_progress(v))
            .cloned()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Polls (bounded) for a JSON line matching `want`; `None` when the process ended or the
    /// time ran out first.
    pub fn wait_line(&mut self, secs: u64, want: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = self.lines.lock().unwrap().iter().find(|v| want(v)) {
                return Some(v.clone());
            }
            if Instant::now() > deadline || self.child.try_wait().ok().flatten().is_some() {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` (libc::SIGINT, SIGKILL...).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    /// Waits for the end (at most `limit_secs`, then kills it and panics).
    pub fn wait(mut self, limit_secs: u64) -> Finished {
        let deadline = Instant::now() + Duration::from_secs(limit_secs);
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.join_readers();
                panic!(
                    "download still running after {limit_secs} s\n--- stdout\n{}\n--- stderr\n{}",
                    self.stdout.lock().unwrap(),
                    self.stderr.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.join_readers();
        Finished {
            status,
            stdout: self.stdout.lock().unwrap().clone(),
            stderr: self.stderr.lock().unwrap().clone(),
            lines: self.lines.lock().unwrap().clone(),
        }
    }

    fn join_readers(&mut self) {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asserts `got` exists with exactly the bytes of `want`.
pub fn assert_same_file(got: &Path, want: &Path) {
    let g = std::fs::read(got).unwrap_or_else(|e| panic!("{}: {e}", got.display()));
    let w = std::fs::read(want).unwrap();
    assert_eq!(g.len(), w.len(), "length of {}", got.display());
    assert!(g == w, "{} differs from {}", got.display(), want.display());
}

/// Visible files (no component starting with '.') under `dir`, relative, sorted.
pub fn visible_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = super::server::files_under(dir)
        .into_iter()
        .map(|p| p.strip_prefix(dir).unwrap().to_path_buf())
        .filter(|p| {
            !p.components()
                .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
        })
        .collect();
    out.sort();
    out
}

/// Asserts that `got` holds the same visible files as `want` (empty files included),
/// byte-identical.
pub fn assert_same_tree(got: &Path, want: &Path) {
    let (g, w) = (visible_files(got), visible_files(want));
    assert_eq!(g, w, "files under {}", got.display());
    for rel in &w {
        assert_same_file(&got.join(rel), &want.join(rel));
    }
}
