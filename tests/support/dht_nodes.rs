//! Independent DHT nodes on 127.0.0.1 (libtorrent also on [::1]) driven by commands on their stdin: python3-libtorrent
//! (tests/py/lt_dht.py; its port is both its DHT node (UDP) and its peer port (TCP)) and the
//! npm `bittorrent-dht` (tests/js/dht_node.mjs). Their JSON event lines are read by a thread
//! as they come and waited for by bounded polling; each is killed on drop.

#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running DHT node helper.
pub struct DhtNode {
    child: Child,
    stdin: ChildStdin,
    lines: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
    /// Its DHT node and peer address.
    pub addr: SocketAddr,
}

impl DhtNode {
    /// A libtorrent session that lives at most `secs` seconds; returns once it reports its
    /// port.
    pub fn libtorrent(secs: u64) -> DhtNode {
        Self::libtorrent_at(secs, "127.0.0.1:0")
    }

    /// A libtorrent session listening on `listen` (`127.0.0.1:0`, or `[::1]:0` for an IPv6
    /// DHT node); its `addr` is that IP with the port it reports.
    pub fn libtorrent_at(secs: u64, listen: &str) -> DhtNode {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/lt_dht.py");
        let mut cmd = Command::new(super::python_with_libtorrent());
        cmd.arg(script).arg(secs.to_string()).arg(listen);
        let ip: SocketAddr = listen.parse().expect("a listen address");
        Self::spawn(cmd, "lt_dht.py", ip)
    }

    /// A bittorrent-dht node (installed by scripts/install-interop into target/interop/node).
    pub fn bittorrent_dht() -> DhtNode {
        super::require_tool("node");
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let module = root.join("target/interop/node/node_modules/bittorrent-dht");
        assert!(
            module.exists(),
            "{} is missing: run scripts/install-interop",
            module.display()
        );
        let mut cmd = Command::new("node");
        cmd.arg(root.join("tests/js/dht_node.mjs"));
        Self::spawn(cmd, "dht_node.mjs", SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    fn spawn(mut cmd: Command, name: &str, addr: SocketAddr) -> DhtNode {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let lines: Arc<Mutex<Vec<Value>>> = Arc::default();
        let stderr: Arc<Mutex<String>> = Arc::default();
        let (out, sink) = (child.stdout.take().unwrap(), Arc::clone(&lines));
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().unwrap().push(v);
                }
            }
        });
        let (mut err, sink) = (child.stderr.take().unwrap(), Arc::clone(&stderr));
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = err.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&chunk[..n]).into_owned();
                let mut s = sink.lock().unwrap();
                // Keep the tail only: a long session logs many alerts.
                if s.len() > 1 << 20 {
                    let cut = s.len() - (1 << 19);
                    let cut = (cut..s.len()).find(|&i| s.is_char_boundary(i)).unwrap();
                    s.drain(..cut);
                }
                s.push_str(&text);
            }
        });
        let stdin = child.stdin.take().unwrap();
        let mut node = DhtNode {
            child,
            stdin,
            lines,
            stderr,
            addr,
        };
        let port = node
            .wait(30, |v| v.get("port").is_some())
            .unwrap_or_else(|| panic!("{name} did not start: {}", node.stderr()))["port"]
            .as_u64()
            .unwrap();
        node.addr.set_port(port as u16);
        node
    }

    /// Sends one command line (see tests/py/lt_dht.py, tests/js/dht_node.mjs).
    pub fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").expect("write to the DHT helper");
        self.stdin.flush().unwrap();
    }

    /// Adds `addr` to its routing table (it pings the node).
    pub fn add_node(&mut self, addr: SocketAddr) {
        self.send(&format!("node {addr}"));
    }

    /// The first event line matching `want`, waiting at most `secs`; None if none came.
    pub fn wait(&mut self, secs: u64, want: impl Fn(&Value) -> bool) -> Option<Value> {
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

    /// Forgets the event lines so far (so the next wait sees only new ones).
    pub fn clear(&mut self) {
        self.lines.lock().unwrap().clear();
    }

    /// Asks for its routing-table size until it holds at least `n` nodes (at most `secs`).
    pub fn wait_nodes(&mut self, n: u64, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            self.lines
                .lock()
                .unwrap()
                .retain(|v| v.get("nodes").is_none());
            self.send("nodes");
            if self
                .wait(2, |v| v.get("nodes").is_some())
                .is_some_and(|v| v["nodes"].as_u64() >= Some(n))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }

    /// libtorrent: runs dht_get_peers for `ih` until a reply names a peer matching `want` (each reply
    /// covers one lookup; a new lookup starts every few seconds); the peers of that reply.
    pub fn find_peers(
        &mut self,
        ih: &str,
        secs: u64,
        want: impl Fn(&str) -> bool,
    ) -> Option<Vec<String>> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let hit = |v: &Value| {
            v["get_peers"] == ih
                && v["peers"]
                    .as_array()
                    .is_some_and(|p| p.iter().any(|p| p.as_str().is_some_and(&want)))
        };
        while Instant::now() < deadline {
            self.send(&format!("get_peers {ih}"));
            if let Some(v) = self.wait(5, hit) {
                let peers = v["peers"].as_array().unwrap();
                return Some(peers.iter().map(|p| p.as_str().unwrap().into()).collect());
            }
        }
        None
    }

    /// Its log (alerts), for failure messages.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The event lines so far, for failure messages.
    pub fn events(&self) -> String {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for DhtNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
