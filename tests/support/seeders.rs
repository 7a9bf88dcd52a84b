//! Real seeders on 127.0.0.1 for the client tests, and the torrents they seed: a
//! python3-libtorrent seeder (optionally encrypted-only or throttled), a transmission-daemon
//! seeder (its own config dir and RPC port), an aria2c seeder, nginx serving a directory (a
//! webseed), our own gateway holding a file; torrents made by mktorrent and by libtorrent
//! (BEP-47 pad files, `url-list`, trackers) and bare magnet links. Every seeder is a guard: it
//! knows its listen address once the data is checked and served, waits for that by bounded
//! polling, and is killed and its state removed on drop.

use super::server::{upload, Server};
use super::tracker::{eventually, free_port, lt_seed_with};
use super::{require_tool, Reaped};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use torrent_gateway::proto::bt::bencode;
use torrent_gateway::proto::bt::metainfo::{self, Metainfo, TorrentExtras};

/// A running seeder (or web server); killed, then its state directory removed, on drop.
pub struct Seeder {
    /// Where it accepts peer (or HTTP) connections.
    pub addr: SocketAddr,
    _child: Reaped,
    _state: Option<tempfile::TempDir>,
}

impl Seeder {
    /// `--peer` argument for the download command.
    pub fn peer_arg(&self) -> String {
        self.addr.to_string()
    }
}

/// Options of the python3-libtorrent seeder (tests/py/lt_seed.py).
#[derive(Debug, Clone, Copy, Default)]
pub struct LtOptions {
    /// MSE forced in and out (RC4): plaintext handshakes are refused.
    pub encrypted: bool,
    /// Upload rate limit in bytes per second (0 = none).
    pub upload_limit: u64,
}

/// Whether something accepts TCP connections at `addr` right now.
pub fn accepts(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A python3-libtorrent seeder of `torrent` over the data in `save` (uTP, DHT, LSD, UPnP
/// off); returns once libtorrent has checked the data and seeds it.
pub fn libtorrent(torrent: &Path, save: &Path, opts: LtOptions) -> Seeder {
    let limit = opts.upload_limit.to_string();
    let mut extra = Vec::new();
    if opts.encrypted {
        extra.push("--encrypted");
    }
    if opts.upload_limit > 0 {
        extra.extend(["--upload-limit", &limit]);
    }
    let (child, port) = lt_seed_with("lt_seed.py", torrent, save, &extra);
    Seeder {
        addr: loopback(port),
        _child: child,
        _state: None,
    }
}

/// Runs transmission-remote against the daemon's RPC port.
fn transmission_remote(rpc: u16, args: &[&str]) -> std::process::Output {
    Command::new(require_tool("transmission-remote"))
        .arg(format!("127.0.0.1:{rpc}"))
        .args(args)
        .output()
        .expect("run transmission-remote")
}

/// A transmission-daemon seeding `torrent` from the data already in `data_dir` (the
/// torrent's own layout under it): its own config dir, RPC and peer port; no DHT, LPD, PEX,
/// uTP or port mapping. Returns once the torrent is verified at 100% and the peer port
/// accepts connections.
pub fn transmission(torrent: &Path, data_dir: &Path) -> Seeder {
    let daemon = require_tool("transmission-daemon");
    let state = super::tempdir();
    let conf = state.path().join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    let (rpc, peer) = (free_port(), free_port());
    let settings = serde_json::json!({
        "dht-enabled": false,
        "lpd-enabled": false,
        "pex-enabled": false,
        "utp-enabled": false,
        "port-forwarding-enabled": false,
        "peer-port": peer,
        "peer-port-random-on-start": false,
        "bind-address-ipv4": "127.0.0.1",
        "rpc-port": rpc,
        "rpc-bind-address": "127.0.0.1",
        "rpc-authentication-required": false,
        "rpc-whitelist": "127.0.0.1",
        "download-dir": data_dir,
        "incomplete-dir-enabled": false,
        "ratio-limit-enabled": false,
        "idle-seeding-limit-enabled": false,
        "speed-limit-up-enabled": false,
        "message-level": 1,
    });
    std::fs::write(conf.join("settings.json"), settings.to_string()).unwrap();
    let child = Command::new(daemon)
        .arg("-f")
        .arg("-g")
        .arg(&conf)
        .args([
            "-p",
            &rpc.to_string(),
            "-T",
            "-a",
            "127.0.0.1",
            "-O",
            "-Y",
            "-M",
        ])
        .args(["--no-utp", "-P", &peer.to_string(), "-w"])
        .arg(data_dir)
        .env("HOME", state.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start transmission-daemon");
    let child = Reaped(child);
    assert!(
        eventually(30, || transmission_remote(rpc, &["-l"]).status.success()),
        "transmission-daemon RPC on port {rpc} never answered"
    );
    let t = torrent.to_str().unwrap();
    let add = transmission_remote(rpc, &["-a", t]);
    assert!(add.status.success(), "transmission-remote -a: {add:?}");
    let verify = transmission_remote(rpc, &["-t", "all", "-v"]);
    assert!(
        verify.status.success(),
        "transmission-remote -v: {verify:?}"
    );
    let mut last = String::new();
    let seeding = eventually(60, || {
        let info = transmission_remote(rpc, &["-t", "all", "-i"]);
        last = String::from_utf8_lossy(&info.stdout).into_owned();
        let state = last
            .lines()
            .find_map(|l| l.trim().strip_prefix("State: "))
            .unwrap_or("");
        last.contains("Percent Done: 100%")
            && !["Verifying", "Will Verify", "Queued", "Stopped"]
                .iter()
                .any(|s| state.starts_with(s))
    });
    assert!(seeding, "transmission never seeded: {last}");
    let addr = loopback(peer);
    assert!(
        eventually(10, || accepts(addr)),
        "transmission's peer port {peer} is closed"
    );
    Seeder {
        addr,
        _child: child,
        _state: Some(state),
    }
}

/// An aria2c seeding `torrent` from the data in `data_dir` without checking it
/// (`--bt-seed-unverified`, the data is known good), forever (`--seed-ratio=0`); no DHT, LPD
/// or PEX. Returns once its listen port accepts connections.
pub fn aria2c(torrent: &Path, data_dir: &Path) -> Seeder {
    let state = super::tempdir();
    let port = free_port();
    let child = Command::new(require_tool("aria2c"))
        .args([
            "-q",
            "--seed-ratio=0.0",
            "--bt-seed-unverified=true",
            "--check-integrity=false",
            "--enable-dht=false",
            "--enable-dht6=false",
            "--bt-enable-lpd=false",
            "--enable-peer-exchange=false",
            "--file-allocation=none",
            "--auto-save-interval=0",
            "--bt-tracker-connect-timeout=1",
        ])
        .arg(format!("--listen-port={port}"))
        .arg(format!(
            "--log={}",
            state.path().join("aria2.log").display()
        ))
        .arg("--log-level=notice")
        .arg("-d")
        .arg(data_dir)
        .arg(torrent)
        .env("HOME", state.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start aria2c");
    let child = Reaped(child);
    let addr = loopback(port);
    assert!(
        eventually(30, || accepts(addr)),
        "aria2c never listened on {port}"
    );
    Seeder {
        addr,
        _child: child,
        _state: Some(state),
    }
}

/// nginx serving `root` on a free port (sendfile, keep-alive, ranges: a webseed). Returns
/// once `probe` (a path under the root, e.g. `/file.bin`) answers 200.
pub fn nginx(root: &Path, probe: &str) -> Seeder {
    let nginx = require_tool("nginx");
    let state = super::tempdir();
    let port = free_port();
    let tmp = state.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    // SAFETY: geteuid has no preconditions.
    let root_user = unsafe { libc::geteuid() } == 0;
    // As root the workers would drop to `nobody`, who cannot read a 0700 temp dir.
    let user = if root_user { "user root;" } else { "" };
    // One process (no master and workers): killing it on drop leaves no orphaned worker
    // behind holding our inherited file descriptors.
    let conf = state.path().join("nginx.conf");
    let s = state.path().display();
    std::fs::write(
        &conf,
        format!(
            "{user}\ndaemon off;\nmaster_process off;\npid {s}/nginx.pid;\n\
             error_log {s}/error.log;\nevents {{ worker_connections 256; }}\n\
             http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n\
             keepalive_requests 100000;\n\
             client_body_temp_path {t};\n  proxy_temp_path {t};\n  fastcgi_temp_path {t};\n\
             uwsgi_temp_path {t};\n  scgi_temp_path {t};\n\
             types {{ }}\n  default_type application/octet-stream;\n\
             server {{ listen 127.0.0.1:{port}; root {root}; }}\n}}\n",
            t = tmp.display(),
            root = root.display(),
        ),
    )
    .unwrap();
    let child = Command::new(nginx)
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(state.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    let child = Reaped(child);
    let addr = loopback(port);
    let ok = eventually(30, || {
        accepts(addr) && super::server::request(addr, "HEAD", probe, &[], b"").status == 200
    });
    assert!(
        ok,
        "nginx did not serve {probe}: {}",
        std::fs::read_to_string(state.path().join("error.log")).unwrap_or_default()
    );
    Seeder {
        addr,
        _child: child,
        _state: Some(state),
    }
}

impl Seeder {
    /// Base URL when this is a web server (`http://127.0.0.1:PORT/`).
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

/// A file stored in our gateway and a .torrent of it without webseeds (so peers are the
/// only source), announcing to the gateway's tracker.
pub struct GatewayFile {
    pub torrent: PathBuf,
    pub info_hash_hex: String,
    /// The gateway's announce URL.
    pub announce: String,
}

/// Uploads `data` as `name` into `server` and writes `dir/<name>.torrent` without
/// `url-list`.
pub fn gateway_file(server: &Server, dir: &Path, name: &str, data: &[u8]) -> GatewayFile {
    let d = upload(server, name, data);
    let sha = d["sha256"].as_str().unwrap();
    let t = server.get(&format!("/api/files/{sha}/torrent"));
    assert_eq!(t.status, 200, "{}", t.text());
    let doc = bencode::decode(&t.body).unwrap();
    let info = doc.get("info").unwrap().raw;
    let announce = doc.get("announce").unwrap().as_str().unwrap().to_string();
    let bare = metainfo::build_torrent(
        info,
        &TorrentExtras {
            trackers: std::slice::from_ref(&announce),
            webseeds: &[],
            comment: None,
            created_by: None,
            creation_date: None,
        },
    );
    let torrent = dir.join(format!("{name}.torrent"));
    std::fs::write(&torrent, bare).unwrap();
    GatewayFile {
        torrent,
        info_hash_hex: d["info_hash"].as_str().unwrap().to_string(),
        announce,
    }
}

/// Parses a .torrent file (panics on a bad one: the tests make them).
pub fn read_torrent(torrent: &Path) -> Metainfo {
    metainfo::parse(&std::fs::read(torrent).unwrap()).expect("a valid torrent")
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A magnet link with only `xt` (and `tr` for each tracker given).
pub fn magnet(info_hash: &[u8; 20], trackers: &[&str]) -> String {
    let mut m = format!("magnet:?xt=urn:btih:{}", hex(info_hash));
    for t in trackers {
        m.push_str("&tr=");
        m.push_str(&torrent_gateway::proto::http::escape::encode(t.as_bytes()));
    }
    m
}

/// A torrent of `input` (file or directory) made by mktorrent with 2^`piece_log2`-byte
/// pieces, announcing to `announce` (mktorrent's -a; none when empty) and with `webseeds`.
pub fn mktorrent(
    input: &Path,
    out: &Path,
    piece_log2: u32,
    announce: &[&str],
    webseeds: &[&str],
) -> Metainfo {
    let mut cmd = Command::new(require_tool("mktorrent"));
    cmd.args(["-l", &piece_log2.to_string()]);
    if !announce.is_empty() {
        cmd.args(["-a", &announce.join(",")]);
    }
    for w in webseeds {
        cmd.args(["-w", w]);
    }
    let o = cmd.arg("-o").arg(out).arg(input).output().unwrap();
    assert!(o.status.success(), "mktorrent: {}", super::stderr(&o));
    read_torrent(out)
}

/// How libtorrent should make a torrent (tests/py/lt_create.py).
#[derive(Debug, Clone, Default)]
pub struct LtTorrent<'a> {
    /// BEP-47 pad files aligning each file to a piece boundary (v1 only).
    pub pad_files: bool,
    /// Trackers, one tier each; none means no announce at all.
    pub trackers: &'a [&'a str],
    /// BEP-19 `url-list` webseeds.
    pub webseeds: &'a [&'a str],
}

/// A v1 torrent of `input` made by python3-libtorrent with `piece_size`-byte pieces.
pub fn lt_torrent(input: &Path, out: &Path, piece_size: u32, how: &LtTorrent<'_>) -> Metainfo {
    let mut args = vec![
        input.to_str().unwrap().to_string(),
        piece_size.to_string(),
        out.to_str().unwrap().to_string(),
        if how.pad_files { "v1pad" } else { "v1" }.to_string(),
    ];
    if how.trackers.is_empty() {
        args.push("--no-tracker".into());
    }
    for t in how.trackers {
        args.extend(["--tracker".to_string(), t.to_string()]);
    }
    for w in how.webseeds {
        args.extend(["--webseed".to_string(), w.to_string()]);
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    super::python("lt_create.py", &refs);
    read_torrent(out)
}

/// Lays out `files` (relative path, length) under `root`, each with its own deterministic
/// content; returns `root`.
pub fn make_tree(root: &Path, files: &[(&str, usize)]) -> PathBuf {
    for (i, (rel, len)) in files.iter().enumerate() {
        super::write_file(root, rel, *len, 1000 + i as u64);
    }
    std::fs::create_dir_all(root).unwrap();
    root.to_path_buf()
}

/// Downloads `torrent` with the python3-libtorrent leecher from `peer` into `save` (used to
/// prove that a seeder helper really seeds).
pub fn lt_leech(torrent: &Path, save: &Path, peer: Option<SocketAddr>, secs: u32) {
    let mut args = vec![
        torrent.to_str().unwrap().to_string(),
        save.to_str().unwrap().to_string(),
        secs.to_string(),
    ];
    if let Some(p) = peer {
        args.push(p.to_string());
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    super::python("lt_download.py", &refs);
}
