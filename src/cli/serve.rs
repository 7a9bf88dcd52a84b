//! `serve`: run the gateway until SIGINT or SIGTERM, then shut down gracefully (exit 0).

use super::CliError;
use crate::config::{Config, TrackerMode, DEFAULT_TOML};
use crate::server;
use argh::FromArgs;
use std::path::PathBuf;
use std::time::Duration;

/// Run the gateway: HTTP API, downloads and webseed (defaults: ./data, 0.0.0.0:9877).
#[derive(FromArgs)]
#[argh(subcommand, name = "serve")]
pub struct Args {
    /// a TOML config file (see --print-config); flags override it
    #[argh(option)]
    config: Option<PathBuf>,
    /// data directory (blobs, chunks, gateway.db)
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// API listen address, e.g. 0.0.0.0:9877 (port 0 picks a free port)
    #[argh(option)]
    api_addr: Option<String>,
    /// base URL clients reach the API at, used in torrents and magnets
    #[argh(option)]
    public_url: Option<String>,
    /// peer wire listen address, e.g. 0.0.0.0:6881 (port 0 picks a free port)
    #[argh(option)]
    peer_addr: Option<String>,
    /// DHT (UDP) listen address, e.g. 0.0.0.0:6883 (port 0 picks a free port)
    #[argh(option)]
    dht_addr: Option<String>,
    /// listen address of the Blossom server, e.g. 0.0.0.0:8082 (port 0 picks a free port)
    #[argh(option)]
    blossom_addr: Option<String>,
    /// a Nostr relay (ws:// or wss://) to announce stored files to; repeatable
    #[argh(option)]
    relay: Vec<String>,
    /// which torrents the tracker serves: open, hosted (the default) or allowlist
    #[argh(option)]
    tracker_mode: Option<TrackerMode>,
    /// keep the tracker's swarms in this Redis (redis://host:port/db), shared with every
    /// gateway that uses it; sets tracker.backend = "redis"
    #[argh(option)]
    tracker_redis: Option<String>,
    /// log lines as text or json (default: text on a terminal, json otherwise)
    #[argh(option)]
    pub log_format: Option<super::logging::LogFormat>,
    /// print every config key with its default and exit
    #[argh(switch)]
    print_config: bool,
}

/// Builds the configuration from the file and flags.
fn load(args: &Args) -> Result<Config, CliError> {
    let mut config = match &args.config {
        None => Config::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| CliError::input(format!("config {}: {e}", path.display())))?;
            Config::from_toml(&text)
                .map_err(|e| CliError::input(format!("config {}: {e}", path.display())))?
        }
    };
    if let Some(d) = &args.data_dir {
        config.data_dir = d.clone();
    }
    if let Some(a) = &args.api_addr {
        config.api.addr = a.clone();
    }
    if let Some(a) = &args.peer_addr {
        config.peer.addr = a.clone();
    }
    if let Some(a) = &args.dht_addr {
        config.dht.addr = a.clone();
    }
    if let Some(a) = &args.blossom_addr {
        config.blossom.addr = a.clone();
    }
    for r in &args.relay {
        if !config.nostr.relays.contains(r) {
            config.nostr.relays.push(r.clone());
        }
    }
    if let Some(u) = &args.public_url {
        config.api.public_url = u.clone();
    }
    if let Some(m) = args.tracker_mode {
        config.tracker.mode = m;
    }
    if let Some(url) = &args.tracker_redis {
        config.tracker.backend = crate::config::TrackerBackend::Redis;
        config.tracker.redis_url = url.clone();
    }
    config
        .validate()
        .map_err(|e| CliError::input(format!("config: {e}")))?;
    Ok(config)
}

pub fn run(args: Args) -> Result<(), CliError> {
    if args.print_config {
        return super::print_out(DEFAULT_TOML);
    }
    let config = load(&args)?;
    let data_dir = config.data_dir.clone();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .map_err(|e| CliError::failed(format!("installing signal handlers: {e}")))?;
    let running = server::run_server(config).map_err(CliError::failed)?;
    log::info!(
        "torrent-gateway {} listening: api={} udp_tracker={} peer={} blossom={} public_url={} data_dir={}",
        env!("CARGO_PKG_VERSION"),
        running.api_addr,
        running
            .udp_tracker_addr
            .map_or("off".to_string(), |a| a.to_string()),
        running
            .peer_addr
            .map_or("off".to_string(), |a| a.to_string()),
        running
            .blossom_addr
            .map_or("off".to_string(), |a| a.to_string()),
        running.public_url,
        data_dir.display()
    );
    let nostr = &running.gateway.nostr;
    log::info!(
        "nostr identity {} ({}), relays: {}",
        nostr.keys.npub(),
        nostr.keys.pubkey,
        if nostr.relays().is_empty() {
            "none".to_string()
        } else {
            nostr.relays().join(" ")
        }
    );
    loop {
        if let Some(sig) = signals.pending().next() {
            log::info!("signal {sig}: shutting down");
            break;
        }
        if !running.healthy() {
            return Err(CliError::failed("an HTTP worker stopped; exiting"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if running.shutdown() {
        log::info!("stopped cleanly");
        Ok(())
    } else {
        Err(CliError::failed(
            "in-flight requests did not finish within the grace period",
        ))
    }
}
