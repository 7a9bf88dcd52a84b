//! The independent Nostr side of the tests: nostr-tools (node, tests/js) signs and verifies
//! events and queries relays; `nostr-relay` (PyPI, in target/interop/venv) is a real relay
//! started on a loopback port. Both are installed by scripts/install-interop.

#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/interop")
}

/// Runs a tests/js helper; panics with its stderr on failure.
pub fn node(script: &str, args: &[&str], stdin: &[u8]) -> String {
    super::require_tool("node");
    let modules = interop_dir().join("node/node_modules/nostr-tools");
    assert!(
        modules.exists(),
        "{} is missing: run scripts/install-interop",
        modules.display()
    );
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/js")
        .join(script);
    let mut child = Command::new("node")
        .arg(path)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{script} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// An event signed by nostr-tools.
pub fn sign(secret: &str, kind: u32, created_at: i64, tags: &Value, content: &str) -> Value {
    let out = node(
        "sign.mjs",
        &[
            secret,
            &kind.to_string(),
            &created_at.to_string(),
            &tags.to_string(),
            content,
        ],
        b"",
    );
    serde_json::from_str(&out).unwrap()
}

/// Whether nostr-tools accepts an event (id and signature).
pub fn verify(event_json: &str) -> bool {
    let out: Value = serde_json::from_str(&node("verify.mjs", &[], event_json.as_bytes())).unwrap();
    out["valid"].as_bool().unwrap()
}

/// nostr-tools' public key for a secret key (hex).
pub fn pubkey(secret: &str) -> String {
    let out: Value = serde_json::from_str(&node("pubkey.mjs", &[secret], b"")).unwrap();
    out["pubkey"].as_str().unwrap().to_string()
}

/// `Authorization: Nostr <base64>` for an event (standard alphabet, padded).
pub fn auth_header(event: &Value) -> String {
    format!(
        "Nostr {}",
        torrent_gateway::proto::nostr::base64::encode(event.to_string().as_bytes())
    )
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A BUD-11 auth event for `verb` naming `xs`, valid for ten minutes.
pub fn blossom_auth(secret: &str, verb: &str, xs: &[&str]) -> String {
    let mut tags = vec![
        json!(["t", verb]),
        json!(["expiration", (now() + 600).to_string()]),
    ];
    tags.extend(xs.iter().map(|x| json!(["x", x])));
    auth_header(&sign(secret, 24242, now() - 1, &Value::Array(tags), verb))
}

/// Events a relay returns for a filter (nostr-tools' websocket client).
pub fn query(relay: &str, filter: &Value) -> Vec<Value> {
    let out = node("relay_query.mjs", &[relay, &filter.to_string(), "10"], b"");
    serde_json::from_str(&out).unwrap()
}

/// A `nostr-relay` process on 127.0.0.1; killed on drop.
pub struct Relay {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    /// Only these kinds are accepted (others get `OK false`), when set.
    only_kinds: Option<Vec<u32>>,
}

impl Relay {
    pub fn start(dir: &Path) -> Relay {
        Self::start_with(dir, None)
    }

    /// A relay that refuses every kind but `only_kinds`.
    pub fn start_with(dir: &Path, only_kinds: Option<Vec<u32>>) -> Relay {
        let port = super::tracker::free_port();
        let mut relay = Relay {
            child: None,
            port,
            dir: dir.to_path_buf(),
            only_kinds,
        };
        relay.launch();
        relay
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) {
        let bin = interop_dir().join("venv/bin/nostr-relay");
        assert!(
            bin.exists(),
            "{} is missing: run scripts/install-interop",
            bin.display()
        );
        std::fs::create_dir_all(&self.dir).unwrap();
        let config = self.dir.join("relay.yaml");
        let db = self.dir.join("nostr.sqlite3");
        let (kind_check, kinds) = match &self.only_kinds {
            None => (String::new(), String::new()),
            Some(k) => (
                "    - nostr_relay.validators.is_certain_kind\n".to_string(),
                format!("valid_kinds: {k:?}\n"),
            ),
        };
        std::fs::write(
            &config,
            format!(
                "storage:\n  sqlalchemy.url: sqlite+aiosqlite:///{}\n  validators:\n    - \
                 nostr_relay.validators.is_signed\n    - nostr_relay.validators.is_recent\n\
                 {kind_check}gunicorn:\n  bind: 127.0.0.1:{}\n  workers: 1\n\
                 authentication:\n  enabled: false\n{kinds}",
                db.display(),
                self.port
            ),
        )
        .unwrap();
        let log = std::fs::File::create(self.dir.join("relay.log")).unwrap();
        let child = Command::new(bin)
            .arg("-c")
            .arg(&config)
            .arg("serve")
            .env("HOME", &self.dir)
            .process_group(0)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start nostr-relay");
        self.child = Some(child);
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let up = super::tracker::eventually(60, || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        assert!(up, "nostr-relay did not start: {}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("relay.log")).unwrap_or_default()
    }

    /// Stops the relay and its workers (its stored events stay in its database).
    pub fn stop(&mut self) {
        if let Some(c) = self.child.take() {
            kill_group(c);
        }
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let down = super::tracker::eventually(30, || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err()
        });
        assert!(down, "nostr-relay still answers after kill");
    }

    /// Starts it again (after `stop`) on the same port and database.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none());
        self.launch();
    }
}

/// SIGTERM to the process group, SIGKILL if it lingers.
fn kill_group(mut child: Child) {
    let pgid = child.id() as i32;
    // SAFETY: kill(2) on the process group of our own child.
    unsafe {
        libc::kill(-pgid, libc::SIGTERM);
    }
    let gone = super::tracker::eventually(10, || matches!(child.try_wait(), Ok(Some(_))));
    if !gone {
        // SAFETY: as above.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = child.wait();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(c) = self.child.take() {
            kill_group(c);
        }
    }
}
