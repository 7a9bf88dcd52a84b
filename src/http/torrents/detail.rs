//! The detail of a fetched torrent for `GET /api/torrents/<ih>` (bytes verified per file,
//! rates, peers by source) and its peer list for `GET /api/p2p/peers/<ih>` (address, source,
//! failures, state, rate, and the dial rank with its score and reasons), both read from what
//! the loop copied into the download's status this tick.

use crate::net::download::{DownloadStatus, PeerRow};
use crate::proto::bt::metainfo::Info;
use serde_json::{json, Value};

/// Bytes of each file (by index, padding files included) inside verified pieces.
pub(super) fn verified_bytes(info: &Info, status: &DownloadStatus) -> Vec<u64> {
    let pl = info.piece_length.max(1);
    info.files
        .iter()
        .map(|f| {
            if f.length == 0 {
                return 0;
            }
            let (start, end) = (f.offset, f.offset + f.length);
            let (first, last) = (start / pl, (end - 1) / pl);
            (first..=last)
                .filter(|&p| status.has(p as u32))
                .map(|p| {
                    let (ps, pe) = (p * pl, (p + 1) * pl);
                    pe.min(end) - ps.max(start)
                })
                .sum()
        })
        .collect()
}

/// Rates and peers by source (connected ones, and all known).
pub(super) fn rates_and_sources(status: &DownloadStatus) -> (Value, Value) {
    let report = status.report.lock();
    let rates = json!({"down_bytes_per_sec": report.rate_down, "up_bytes_per_sec": report.rate_up});
    let mut by = serde_json::Map::new();
    for name in ["manual", "tracker", "dht", "pex", "incoming", "webseed"] {
        let of: Vec<&PeerRow> = report.peers.iter().filter(|p| p.source == name).collect();
        let connected = of.iter().filter(|p| p.state == "connected").count();
        by.insert(
            name.into(),
            json!({"known": of.len(), "connected": connected}),
        );
    }
    (rates, Value::Object(by))
}

/// The peer list, in dial order (then the peers outside it).
pub(super) fn peers(status: &DownloadStatus) -> Value {
    let report = status.report.lock();
    let rows: Vec<Value> = report
        .peers
        .iter()
        .map(|p| {
            json!({
                "addr": p.addr,
                "source": p.source,
                "state": p.state,
                "failures": p.failures,
                "rate_down_bytes_per_sec": p.rate_down,
                "choking": p.choking,
                "snubbed": p.snubbed,
                "requests_in_flight": p.in_flight,
                "pieces": p.pieces,
                "rank": p.rank,
                "score": p.ranked.as_ref().map(|r| r.score),
                "measured_rate_bytes_per_sec": p.ranked.as_ref().map(|r| r.rate),
                "queue_ms": p.ranked.as_ref().and_then(|r| r.queue_ms),
                "hash_failures": p.ranked.as_ref().map(|r| r.hash_failures),
                "local_network": p.ranked.as_ref().map(|r| r.local),
                "reasons": reasons(p),
            })
        })
        .collect();
    json!(rows)
}

/// Why a peer ranks where it does (or why it is outside the dial list).
fn reasons(p: &PeerRow) -> Vec<String> {
    match (&p.ranked, p.source) {
        (Some(r), _) => r.reasons(),
        (None, "webseed") => vec!["a webseed: asked for whole pieces, never dialed".into()],
        (None, _) => vec!["connected, not in the dial list (it connected to us)".into()],
    }
}
