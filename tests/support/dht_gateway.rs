//! What the DHT tests ask of a running gateway and of the `dht` CLI: `/api/dht/stats`, the
//! node's bound address once it runs, `dht get-peers --json`, and info-hashes and magnets
//! for torrents nobody has. Every wait is a bounded poll.

#![allow(dead_code)]

use super::server::Server;
use super::tracker::eventually;
use super::{bytes, run, seeders::hex, stderr, stdout, tempdir};
use serde_json::Value;
use std::net::SocketAddr;

/// The gateway's `/api/dht/stats` (404 until the node has ticked once).
pub fn dht_stats(server: &Server) -> Option<Value> {
    let r = server.get("/api/dht/stats");
    (r.status == 200).then(|| r.json())
}

/// The gateway's DHT node address, once it runs.
pub fn dht_addr(server: &Server) -> SocketAddr {
    let mut addr = None;
    let up = eventually(20, || {
        addr = dht_stats(server).and_then(|s| s["addr"].as_str()?.parse().ok());
        addr.is_some()
    });
    assert!(up, "the gateway's DHT node did not start: {}", server.log());
    addr.unwrap()
}

/// Runs `dht get-peers IH --json --timeout SECS --bootstrap B...`: the exit code and the
/// peers it printed.
pub fn cli_get_peers(ih: &str, bootstrap: &[SocketAddr], secs: u64) -> (Option<i32>, Vec<String>) {
    let dir = tempdir();
    let secs = secs.to_string();
    let nodes: Vec<String> = bootstrap.iter().map(SocketAddr::to_string).collect();
    let mut args = vec!["dht", "get-peers", ih, "--json", "--timeout", &secs];
    for n in &nodes {
        args.extend(["--bootstrap", n.as_str()]);
    }
    let o = run(dir.path(), &args);
    let v: Value = serde_json::from_str(&stdout(&o))
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {} {}", stdout(&o), stderr(&o)));
    assert_eq!(v["info_hash"], ih, "{v}");
    let peers = v["peers"].as_array().unwrap();
    let peers = peers.iter().map(|p| p.as_str().unwrap().to_string());
    (o.status.code(), peers.collect())
}

/// A random info-hash for a torrent nobody has.
pub fn random_ih(seed: u64) -> String {
    hex(&bytes(20, seed ^ std::process::id() as u64))
}

/// A magnet with the info-hash alone: no tracker, no peer.
pub fn bare_magnet(ih: &str) -> String {
    format!("magnet:?xt=urn:btih:{ih}")
}
