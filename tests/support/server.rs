//! Runs `torrent-gateway serve` as a child process on 127.0.0.1 port 0 and talks raw HTTP/1.1
//! to it, so tests control every byte (bad input included) and read the real address back.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running gateway process; killed on drop.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// The UDP tracker's address, when enabled.
    pub udp: Option<SocketAddr>,
    /// The peer wire listener, when enabled.
    pub peer: Option<SocketAddr>,
    /// The Blossom server, when enabled.
    pub blossom: Option<SocketAddr>,
    pub data: PathBuf,
    config: PathBuf,
    api_bind: String,
    dht_bind: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts a server on `data` with extra TOML config (appended to test defaults).
    pub fn start(data: &Path, extra_config: &str) -> Server {
        let config = data.with_extension("toml");
        std::fs::write(&config, extra_config).unwrap();
        Self::start_with(data, &config, None, "127.0.0.1:0")
    }

    /// Like `start`, the API (and UDP tracker) on `[::]` (IPv4 and IPv6 on one port).
    pub fn start_dual_stack(data: &Path, extra_config: &str) -> Server {
        let config = data.with_extension("toml");
        std::fs::write(&config, extra_config).unwrap();
        Self::start_with(data, &config, None, "[::]:0")
    }

    /// Like `start`, logging at `level` (`RUST_LOG` syntax) whatever TG_TEST_LOG says.
    pub fn start_logged(data: &Path, extra_config: &str, level: &str) -> Server {
        let config = data.with_extension("toml");
        std::fs::write(&config, extra_config).unwrap();
        Self::start_with(data, &config, Some(level), "127.0.0.1:0")
    }

    /// Like `start`, with the DHT node bound to `dht_addr` (e.g. `[::1]:0` or `[::]:0`).
    pub fn start_dht_at(data: &Path, extra_config: &str, dht_addr: &str) -> Server {
        let config = data.with_extension("toml");
        std::fs::write(&config, extra_config).unwrap();
        Self::start_full(data, &config, None, "127.0.0.1:0", dht_addr)
    }

    /// Like `start`, with the API listening on `api_addr` (e.g. an IPv4-mapped address).
    pub fn start_at(data: &Path, extra_config: &str, api_addr: &str) -> Server {
        let config = data.with_extension("toml");
        std::fs::write(&config, extra_config).unwrap();
        Self::start_with(data, &config, None, api_addr)
    }

    fn start_with(data: &Path, config: &Path, level: Option<&str>, api_bind: &str) -> Server {
        Self::start_full(data, config, level, api_bind, "127.0.0.1:0")
    }

    fn start_full(
        data: &Path,
        config: &Path,
        level: Option<&str>,
        api_bind: &str,
        dht_bind: &str,
    ) -> Server {
        let mut child = Command::new(super::bin())
            .args([
                "serve",
                "--log-format",
                "text",
                "--api-addr",
                api_bind,
                "--peer-addr",
                "127.0.0.1:0",
                "--dht-addr",
                dht_bind,
                "--blossom-addr",
                "127.0.0.1:0",
                "--config",
            ])
            .arg(config)
            .arg("--data-dir")
            .arg(data)
            .env(
                "RUST_LOG",
                level.map_or_else(
                    || std::env::var("TG_TEST_LOG").unwrap_or("info".into()),
                    str::to_string,
                ),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start serve");
        let mut lines = BufReader::new(child.stderr.take().unwrap());
        let log = Arc::new(Mutex::new(String::new()));
        let mut addr = None;
        let mut udp = None;
        let mut peer = None;
        let mut blossom = None;
        let mut line = String::new();
        // Blocks until the start-up line or until the process ends (EOF).
        while lines.read_line(&mut line).unwrap_or(0) > 0 {
            log.lock().unwrap().push_str(&line);
            if let Some(rest) = line.split("listening: api=").nth(1) {
                addr = rest.split_whitespace().next().and_then(|a| a.parse().ok());
                udp = line
                    .split("udp_tracker=")
                    .nth(1)
                    .and_then(|r| r.split_whitespace().next())
                    .and_then(|a| a.parse().ok());
                peer = line
                    .split(" peer=")
                    .nth(1)
                    .and_then(|r| r.split_whitespace().next())
                    .and_then(|a| a.parse().ok());
                blossom = line
                    .split(" blossom=")
                    .nth(1)
                    .and_then(|r| r.split_whitespace().next())
                    .and_then(|a| a.parse().ok());
                break;
            }
            line.clear();
        }
        let Some(addr) = addr else {
            let status = child.wait().unwrap();
            panic!("serve did not start ({status}): {}", log.lock().unwrap());
        };
        // A dual-stack listener reports [::]:port: talk to it over 127.0.0.1.
        let loopback = |a: SocketAddr| match a.ip().is_unspecified() {
            true => SocketAddr::from(([127, 0, 0, 1], a.port())),
            false => a,
        };
        let (addr, udp) = (loopback(addr), udp.map(loopback));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut rest = String::new();
            while lines.read_line(&mut rest).unwrap_or(0) > 0 {
                sink.lock().unwrap().push_str(&rest);
                rest.clear();
            }
        });
        Server {
            child,
            addr,
            udp,
            peer,
            blossom,
            data: data.to_path_buf(),
            config: config.to_path_buf(),
            api_bind: api_bind.to_string(),
            dht_bind: dht_bind.to_string(),
            log,
        }
    }

    /// Kills the process with SIGKILL and waits for it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the same data dir and config again (on a new port).
    pub fn restart(mut self) -> Server {
        self.kill9();
        let (api_bind, dht_bind) = (self.api_bind.clone(), self.dht_bind.clone());
        let (data, config) = (self.data.clone(), self.config.clone());
        Self::start_full(&data, &config, None, &api_bind, &dht_bind)
    }

    /// Sends SIGTERM and returns the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.child.wait().unwrap().code()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Threads of the server process.
    pub fn threads(&self) -> usize {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    }

    /// Resident memory of the server process in bytes: (all, anonymous).
    pub fn rss(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kb = |key: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
                * 1024
        };
        (kb("VmRSS:"), kb("RssAnon:"))
    }

    pub fn get(&self, path: &str) -> Resp {
        request(self.addr, "GET", path, &[], b"")
    }

    pub fn put(&self, path: &str, body: &[u8]) -> Resp {
        request(self.addr, "PUT", path, &[], body)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A parsed response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on a fresh connection (`Connection: close`), response read to EOF.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    request_from(None, addr, method, path, headers, body)
}

/// Like `request`, from the local address `src` when given.
pub fn request_from(
    src: Option<std::net::IpAddr>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("Host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers.iter().any(|(k, _)| {
        k.eq_ignore_ascii_case("Transfer-Encoding") || k.eq_ignore_ascii_case("Content-Length")
    }) {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body);
    let resp = raw_exchange_from(src, addr, &raw, false);
    if method != "HEAD" && resp.status != 304 {
        check_length(&resp);
    }
    resp
}

/// Asserts that a response with a body has exactly the announced Content-Length.
pub fn check_length(resp: &Resp) {
    if let Some(len) = resp.header("Content-Length") {
        assert_eq!(
            len.parse::<usize>().unwrap(),
            resp.body.len(),
            "Content-Length"
        );
    }
}

/// Sends raw bytes (optionally closing our sending side after) and parses the response.
pub fn raw_exchange(addr: SocketAddr, raw: &[u8], shutdown_write: bool) -> Resp {
    raw_exchange_from(None, addr, raw, shutdown_write)
}

/// Like `raw_exchange`, from the local address `src` (any 127.0.0.x) when given.
pub fn raw_exchange_from(
    src: Option<std::net::IpAddr>,
    addr: SocketAddr,
    raw: &[u8],
    shutdown_write: bool,
) -> Resp {
    let mut s = match src {
        None => TcpStream::connect(addr).unwrap(),
        Some(ip) => {
            let socket = socket2::Socket::new(
                socket2::Domain::for_address(addr),
                socket2::Type::STREAM,
                None,
            )
            .unwrap();
            socket.bind(&SocketAddr::new(ip, 0).into()).unwrap();
            socket.connect(&addr.into()).unwrap();
            socket.into()
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    // The server may answer and close before taking the whole body (413, 401): a failed
    // write then is expected, the response is what matters.
    let _ = s.write_all(raw);
    if shutdown_write {
        let _ = s.shutdown(Shutdown::Write);
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    parse_response(&out)
}

pub fn parse_response(raw: &[u8]) -> Resp {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let body = raw[end + 4..].to_vec();
    Resp {
        status,
        headers,
        body,
    }
}

/// Uploads `body` as `name` and returns the descriptor.
pub fn upload(server: &Server, name: &str, body: &[u8]) -> serde_json::Value {
    let r = server.put(&format!("/api/files/{name}"), body);
    assert!(
        r.status == 201 || r.status == 200,
        "{} {}",
        r.status,
        r.text()
    );
    r.json()
}

/// Files under a directory, recursively (for "nothing stored" checks).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
