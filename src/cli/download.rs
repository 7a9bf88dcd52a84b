//! `torrent-gateway download`: fetch a torrent (a .torrent file, an http(s) link to one, or a
//! magnet) into a directory in the torrent's own layout, from `--peer` addresses, trackers
//! and webseeds, on the same `net` loop `serve` uses; resume where a previous run stopped;
//! show progress (a bar on a terminal, JSON lines with `--json`); optionally keep seeding.
//!
//! Exit codes: 0 every wanted piece verified and on disk; 1 an operational failure (disk,
//! network, timeout, interrupted); 2 bad input (the torrent, a path in it, an argument).

use super::{print_out, CliError};
use crate::config::PeerConfig;
use crate::engine::bitfield::Bitfield;
use crate::engine::download::Limits;
use crate::net::disk::Torrent;
use crate::net::download::{DownloadSpec, DownloadStatus, MagnetSpec};
use crate::net::event_loop::magnet_tiers;
use crate::net::{Deps, Net};
use crate::proto::bt::magnet::Magnet;
use crate::proto::bt::metainfo::{self, Metainfo};
use crate::proto::hex;
use crate::store::files::TorrentFiles;
use crate::store::layout::{self, Layout};
use crate::store::resume::{self, FileStamp, Resume};
use argh::FromArgs;
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Download a torrent from the BitTorrent network.
#[derive(FromArgs)]
#[argh(subcommand, name = "download")]
pub struct Args {
    /// a .torrent file, an http(s) URL of one, or a magnet link
    #[argh(positional)]
    pub source: String,
    /// directory to download into (default: the current one)
    #[argh(option, short = 'o', default = "String::from(\".\")")]
    pub output: String,
    /// a peer to connect to (ip:port), repeatable
    #[argh(option)]
    pub peer: Vec<String>,
    /// files to fetch: indexes, ranges and globs, comma-separated (default: all)
    #[argh(option)]
    pub files: Option<String>,
    /// keep seeding after the download completes, until interrupted
    #[argh(switch)]
    pub seed: bool,
    /// print progress as one JSON object per second on stdout
    #[argh(switch)]
    pub json: bool,
    /// most peers to be connected to at once (default 50)
    #[argh(option, default = "50")]
    pub max_peers: usize,
    /// give up after this many seconds without completing (default: never)
    #[argh(option)]
    pub timeout: Option<u64>,
    /// peer listen port (default: any free port)
    #[argh(option, default = "0")]
    pub port: u16,
    /// a DHT node to bootstrap from (host:port), repeatable (default: the public routers)
    #[argh(option)]
    pub dht_bootstrap: Vec<String>,
    /// do not run the DHT node
    #[argh(switch)]
    pub no_dht: bool,
}

/// How often resume data is written while downloading.
const RESUME_EVERY: Duration = Duration::from_secs(10);
/// How often the waiting side looks at the download's status.
const POLL: Duration = Duration::from_millis(10);

pub fn run(args: Args) -> Result<(), CliError> {
    let started = Instant::now();
    let source = load_source(&args.source)?;
    let mut peers = args
        .peer
        .iter()
        .map(|p| {
            p.parse::<SocketAddr>()
                .map_err(|_| CliError::input(format!("--peer {p}: expected ip:port")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if args.max_peers == 0 {
        return Err(CliError::input("--max-peers must be at least 1"));
    }
    if let Source::Magnet(m) = &source {
        // x.pe: addresses only (a host name would need a lookup; trackers cover those).
        peers.extend(m.peers.iter().filter_map(|p| p.parse::<SocketAddr>().ok()));
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, Arc::clone(&interrupted));
    }
    let timeout = args.timeout.map(Duration::from_secs);
    let net = start_net(&args)?;
    let meta = match source {
        Source::Torrent(m) => m,
        Source::Magnet(m) => match fetch_metadata(&net, &m, &peers, &args, &interrupted, timeout) {
            Ok(meta) => meta,
            Err(e) => {
                net.stop();
                return Err(e);
            }
        },
    };
    let wanted = match &args.files {
        Some(spec) => Some(
            layout::select(spec, &meta.info)
                .map_err(|e| CliError::input(format!("--files: {e}")))?,
        ),
        None => None,
    };
    let dir = PathBuf::from(&args.output);
    let ih_hex = hex::encode(&meta.info_hash);
    let layout = Layout::new(&dir, meta.info.clone(), wanted)
        .map_err(|e| CliError::input(format!("unsafe torrent: {e}")))?;
    let priorities = layout.priorities();
    let resume_path = resume::path(&dir, &ih_hex);
    let stamps_before: Vec<FileStamp> = stamps_of(&layout);
    let from_resume = resume::load(&resume_path, &meta.info_hash, &stamps_before);
    let existed = stamps_before.iter().any(|s| s.size > 0);
    std::fs::create_dir_all(&dir)
        .map_err(|e| CliError::failed(format!("{}: {e}", dir.display())))?;
    let files = Arc::new(
        TorrentFiles::create(layout, Layout::parts_path(&dir, &ih_hex))
            .map_err(|e| CliError::failed(format!("creating the files: {e}")))?,
    );
    let pieces = meta.info.piece_count() as u32;
    let have = match from_resume {
        Some(bits) => Bitfield::from_wire(&bits, pieces).unwrap_or_else(|| Bitfield::new(pieces)),
        None if existed => crate::store::files::recheck(&meta, &files, Some(&priorities)),
        None => Bitfield::new(pieces),
    };
    let torrent = Arc::new(Torrent::download(&meta, Arc::clone(&files)));
    let status = Arc::new(DownloadStatus::default());
    let left: u64 = (0..pieces)
        .filter(|&p| priorities[p as usize] > 0 && !have.get(p))
        .map(|p| {
            let r = meta.info.piece_range(p as usize);
            r.end - r.start
        })
        .sum();
    status.left.store(left, Ordering::Relaxed);
    status.complete.store(left == 0, Ordering::Relaxed);
    let have_before = have.count();
    net.add_download(DownloadSpec {
        torrent,
        hashes: meta.info.pieces.clone(),
        have,
        priorities,
        peers,
        trackers: meta.tiers(),
        webseeds: meta.url_list.clone(),
        info: Some(Arc::new(meta.info.clone())),
        max_peers: args.max_peers,
        limits: Limits::default(),
        status: Arc::clone(&status),
        stream: false,
        pinned: false,
    });
    let watch = Watch {
        status: &status,
        files: &files,
        meta: &meta,
        resume_path: &resume_path,
        json: args.json,
        bar: !args.json && std::io::stderr().is_terminal(),
    };
    let outcome = watch.run(&interrupted, started, timeout, args.seed);
    let ending = Instant::now();
    net.stop();
    let stopped = ending.elapsed();
    watch.save_resume();
    log::debug!(
        "stopped the loop in {} ms, saved resume data in {} ms",
        stopped.as_millis(),
        (ending.elapsed() - stopped).as_millis()
    );
    if watch.bar {
        eprintln!();
    }
    if args.json {
        let total = meta.info.piece_count();
        let summary = json!({
            "summary": true,
            "complete": status.is_complete(),
            "downloaded": status.get(&status.downloaded),
            "uploaded": status.get(&status.uploaded),
            "wasted": status.get(&status.wasted),
            "verified_pieces": have_before as usize + status.count(&status.verified),
            "total_pieces": total,
            "banned": status.banned.lock().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "elapsed_secs": started.elapsed().as_secs_f64(),
        });
        print_out(&format!("{summary}\n"))?;
    }
    outcome
}

/// What the command line names.
enum Source {
    Torrent(Metainfo),
    Magnet(Magnet),
}

/// Reads the torrent named on the command line (a file, an http(s) URL, a magnet link).
fn load_source(source: &str) -> Result<Source, CliError> {
    if source.starts_with("magnet:") {
        let m = crate::proto::bt::magnet::parse(source)
            .map_err(|e| CliError::input(format!("bad magnet link: {e}")))?;
        return Ok(Source::Magnet(m));
    }
    if source.starts_with("http://") || source.starts_with("https://") {
        let bytes = fetch_torrent(source)?;
        return metainfo::parse(&bytes)
            .map(Source::Torrent)
            .map_err(|e| CliError::input(format!("bad torrent file at {source}: {e}")));
    }
    super::load_torrent(source).map(Source::Torrent)
}

/// Binds the peer port and starts the `net` loop (no catalog: downloads only).
fn start_net(args: &Args) -> Result<Net, CliError> {
    let listen: SocketAddr = SocketAddr::from(([0, 0, 0, 0], args.port));
    let listener = Net::bind(listen)
        .map_err(|e| CliError::failed(format!("binding the peer port {listen}: {e}")))?;
    let config = PeerConfig {
        max_outgoing: args.max_peers.max(8),
        ..PeerConfig::default()
    };
    let net = Net::start(
        listener,
        config,
        Deps {
            db: None,
            store: None,
            hosted: Default::default(),
            tracker: None,
        },
    )
    .map_err(|e| CliError::failed(format!("starting the peer wire service: {e}")))?;
    if !args.no_dht {
        start_dht(&net, args)?;
    }
    log::info!("listening on {}", net.addr);
    eprintln!("listening on {}", net.addr);
    if args.json {
        print_out(&format!(
            "{}\n",
            json!({ "listening": net.addr.to_string() })
        ))?;
    }
    Ok(net)
}

/// Runs a DHT node for the download; loopback-only bootstrap nodes keep it on loopback, and
/// IPv6 ones give it an IPv6 or dual-stack socket (`dht::bind_for`).
fn start_dht(net: &Net, args: &Args) -> Result<(), CliError> {
    let bootstrap = if args.dht_bootstrap.is_empty() {
        crate::config::default_dht_bootstrap()
    } else {
        args.dht_bootstrap.clone()
    };
    let loopback = !args.dht_bootstrap.is_empty()
        && bootstrap
            .iter()
            .all(|b| b.parse::<SocketAddr>().is_ok_and(|a| a.ip().is_loopback()));
    // Literal IPv6 bootstrap addresses get an IPv6 (or dual-stack) socket (BEP-32).
    let literal: Vec<SocketAddr> = bootstrap.iter().filter_map(|b| b.parse().ok()).collect();
    let socket = super::dht::bind_for(&literal, loopback)?;
    let settings = crate::dht::Settings {
        restrict_ips: !loopback,
        ..crate::dht::Settings::default()
    };
    let setup = crate::net::DhtSetup {
        socket,
        settings,
        id: None,
        known: Vec::new(),
        state_file: None,
    };
    net.start_dht(setup, bootstrap);
    Ok(())
}

/// Fetches a magnet's info dict from its peers and trackers (checked against the info-hash
/// by the loop) and makes it a torrent.
fn fetch_metadata(
    net: &Net,
    m: &Magnet,
    peers: &[SocketAddr],
    args: &Args,
    interrupted: &AtomicBool,
    timeout: Option<Duration>,
) -> Result<Metainfo, CliError> {
    if peers.is_empty() && m.trackers.is_empty() && args.no_dht {
        return Err(CliError::input(
            "the magnet link names no tracker and no peer and --no-dht is set: give one with --peer",
        ));
    }
    let status = Arc::new(DownloadStatus::default());
    let tiers = magnet_tiers(&m.trackers);
    net.add_magnet(MagnetSpec {
        info_hash: m.info_hash,
        peers: peers.to_vec(),
        trackers: tiers,
        max_peers: args.max_peers,
        status: Arc::clone(&status),
    });
    let start = Instant::now();
    loop {
        if status.metadata_ready.load(Ordering::Acquire) {
            break;
        }
        if interrupted.load(Ordering::Relaxed) {
            return Err(CliError::failed("interrupted while fetching the metadata"));
        }
        if timeout.is_some_and(|t| start.elapsed() >= t) {
            return Err(CliError::failed(format!(
                "timed out after {} s: no peer sent the torrent's metadata",
                start.elapsed().as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let info_bytes = status.metadata.lock().take().unwrap_or_default();
    let info = metainfo::parse_info_bytes(&info_bytes).map_err(|e| {
        CliError::input(format!("the swarm's metadata is not a valid torrent: {e}"))
    })?;
    Ok(Metainfo::from_magnet(
        m.info_hash,
        info_bytes,
        info,
        &m.trackers,
        &m.webseeds,
    ))
}

/// A .torrent over HTTP(S), through the same client as `POST /api/torrents` (the operator
/// named the URL, so loopback and private addresses are allowed).
fn fetch_torrent(url: &str) -> Result<Vec<u8>, CliError> {
    use crate::http::mirror::{self, FetchError};
    mirror::fetch_torrent(url, true, Duration::from_secs(10), Duration::from_secs(60)).map_err(
        |e| match e {
            FetchError::Refused(why) => CliError::input(format!("{url}: {why}")),
            FetchError::Origin(why) => CliError::failed(format!("{url}: {why}")),
        },
    )
}

/// Bytes of the pieces the chosen files need.
fn wanted_bytes(meta: &Metainfo, files: &TorrentFiles) -> u64 {
    let prio = files.layout().priorities();
    (0..meta.info.piece_count())
        .filter(|&p| prio[p] > 0)
        .map(|p| {
            let r = meta.info.piece_range(p);
            r.end - r.start
        })
        .sum()
}

fn stamps_of(layout: &Layout) -> Vec<FileStamp> {
    (0..layout.info().files.len())
        .map(|i| {
            if layout.is_wanted(i) {
                FileStamp::of(&layout.path(i))
            } else {
                FileStamp {
                    size: 0,
                    mtime_ns: 0,
                }
            }
        })
        .collect()
}

/// The waiting side of a download: progress output, resume data, the end conditions.
struct Watch<'a> {
    status: &'a DownloadStatus,
    files: &'a TorrentFiles,
    meta: &'a Metainfo,
    resume_path: &'a Path,
    json: bool,
    bar: bool,
}

impl Watch<'_> {
    /// Waits for the end; `timeout` counts from `start`, when the command began.
    fn run(
        &self,
        interrupted: &AtomicBool,
        start: Instant,
        timeout: Option<Duration>,
        seed: bool,
    ) -> Result<(), CliError> {
        let wanted_total = wanted_bytes(self.meta, self.files).max(1);
        let mut last = (Instant::now(), 0u64, 0u64);
        let mut next_report = Instant::now();
        let mut next_resume = Instant::now() + RESUME_EVERY;
        let mut rate = (0f64, 0f64);
        loop {
            if let Some(e) = self.status.error() {
                return Err(CliError::failed(e));
            }
            let complete = self.status.is_complete();
            if interrupted.load(Ordering::Relaxed) {
                return if complete {
                    Ok(())
                } else {
                    Err(CliError::failed(
                        "interrupted; run the same command to resume",
                    ))
                };
            }
            if complete && !seed {
                self.report(rate, wanted_total);
                return Ok(());
            }
            if !complete && timeout.is_some_and(|t| start.elapsed() >= t) {
                let peers = self.status.count(&self.status.peers);
                let trackers: Vec<String> = self
                    .status
                    .trackers
                    .lock()
                    .iter()
                    .map(|(url, state)| format!("{url}: {state}"))
                    .collect();
                let trackers = if trackers.is_empty() {
                    String::new()
                } else {
                    format!(" (trackers: {})", trackers.join("; "))
                };
                return Err(CliError::failed(format!(
                    "timed out after {} s: {} peers connected, {} bytes still missing{trackers}",
                    start.elapsed().as_secs(),
                    peers,
                    self.status.get(&self.status.left)
                )));
            }
            let now = Instant::now();
            if now >= next_report {
                let down = self.status.get(&self.status.downloaded);
                let up = self.status.get(&self.status.uploaded);
                let dt = now.duration_since(last.0).as_secs_f64().max(0.001);
                rate = (
                    (down.saturating_sub(last.1)) as f64 / dt,
                    (up.saturating_sub(last.2)) as f64 / dt,
                );
                last = (now, down, up);
                self.report(rate, wanted_total);
                next_report = now + Duration::from_secs(1);
            }
            if now >= next_resume {
                self.save_resume();
                next_resume = now + RESUME_EVERY;
            }
            std::thread::sleep(POLL);
        }
    }

    fn report(&self, rate: (f64, f64), wanted_total: u64) {
        let s = self.status;
        let left = s.get(&s.left);
        let progress = 1.0 - left as f64 / wanted_total as f64;
        let eta = (rate.0 > 0.0).then(|| (left as f64 / rate.0).ceil() as u64);
        if self.json {
            let line = json!({
                "progress": (progress * 10_000.0).round() / 10_000.0,
                "downloaded": s.get(&s.downloaded),
                "uploaded": s.get(&s.uploaded),
                "rate_down": rate.0 as u64,
                "rate_up": rate.1 as u64,
                "peers": s.count(&s.peers),
                "seeds": s.count(&s.seeds),
                "eta_secs": eta,
            });
            let _ = print_out(&format!("{line}\n"));
        } else if self.bar {
            let eta = eta.map_or_else(|| "--".into(), |e| format!("{e}s"));
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\r{:5.1}%  down {}/s  up {}/s  peers {} ({} seeds)  eta {eta}   ",
                progress * 100.0,
                super::human_bytes(rate.0 as u64),
                super::human_bytes(rate.1 as u64),
                s.count(&s.peers),
                s.count(&s.seeds),
            );
            let _ = err.flush();
        }
    }

    /// Records the verified pieces with the files' current stamps (taken after the pieces
    /// were written, so they cover every write the record claims). The data is synced first
    /// only where the record cannot name this boot (`store::resume`).
    fn save_resume(&self) {
        let have = self.status.have.lock().clone();
        let boot = resume::boot_id().map(str::to_string);
        if boot.is_none() && self.files.sync().is_err() {
            return;
        }
        let record = Resume {
            info_hash: self.meta.info_hash,
            have,
            files: self.files.stamps(),
            boot,
        };
        if let Err(e) = resume::save(self.resume_path, &record) {
            log::warn!("saving resume data: {e}");
        }
    }
}
