//! What the web UI and operators read in one request each: `GET /api/overview` (health,
//! stats, the connection layers and the last hour of transfer and requests), the effective
//! configuration with secrets masked (`GET /api/config`), the tracker's swarms
//! (`GET /api/tracker/swarms`), and the plain-text probes `/livez` and `/readyz`.

use super::router::{Reply, Req};
use super::stats::Sample;
use super::status;
use crate::proto::hex;
use crate::server::Gateway;
use serde_json::json;

/// The dashboard's one request per refresh.
pub fn overview(gw: &Gateway) -> Reply {
    let (_, health) = status::health_json(gw);
    let stats = match status::stats_json(gw) {
        Ok(v) => v,
        Err(e) => return Reply::error(500, e),
    };
    let s = &gw.stats;
    let (p2p_up, p2p_down) = gw.p2p.as_ref().map_or((0, 0), |p| {
        (p.stats.bytes_up.get(), p.stats.bytes_down.get())
    });
    let sample = Sample {
        t: s.started.elapsed().as_secs(),
        sent: s.download_bytes.get() + s.webseed_bytes.get() + p2p_up,
        received: s.upload_bytes.get() + p2p_down,
        requests: s.requests.get(),
    };
    let history = s.history(sample);
    let layer = |l: Option<&std::sync::Arc<super::pool::PoolState>>| {
        l.map(|l| {
            let mut v = l.stats.to_json();
            v["connections"] = json!(l.connections());
            v["workers"] = json!(l.limits.workers);
            v
        })
    };
    Reply::json(
        200,
        &json!({
            "version": env!("CARGO_PKG_VERSION"),
            "public_url": gw.public_url,
            "blossom_url": gw.catalog.blossom_base(),
            "health": health,
            "stats": stats,
            "http": { "api": layer(gw.api_layer()), "blossom": layer(gw.blossom_layer()) },
            "history": { "step_secs": super::stats::HISTORY_STEP_SECS, "samples": history },
            "dht": null,
        }),
    )
}

/// The effective configuration, secrets masked.
pub fn config(gw: &Gateway) -> Reply {
    Reply::json(200, &gw.config.masked_json())
}

/// The tracker's swarms, busiest first: `{info_hash, complete, incomplete, downloaded}`.
pub fn swarms(gw: &Gateway, req: &Req<'_>) -> Reply {
    let limit = match req.limit(100, 1000) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let mut all = gw
        .tracker
        .registry
        .scrape_all(gw.config.tracker.max_torrents);
    all.sort_by(|a, b| {
        (b.1.complete + b.1.incomplete)
            .cmp(&(a.1.complete + a.1.incomplete))
            .then(b.1.downloaded.cmp(&a.1.downloaded))
    });
    let total = all.len();
    let swarms: Vec<serde_json::Value> = all
        .into_iter()
        .take(limit)
        .map(|(ih, c)| {
            json!({
                "info_hash": hex::encode(&ih),
                "complete": c.complete,
                "incomplete": c.incomplete,
                "downloaded": c.downloaded,
            })
        })
        .collect();
    Reply::json(200, &json!({ "total": total, "swarms": swarms }))
}

/// `/livez`: the process answers.
pub fn livez() -> Reply {
    Reply::bytes(200, "text/plain; charset=utf-8", b"ok\n".to_vec())
        .header("Cache-Control", "no-store")
}

/// `/readyz`: storage, database and listeners ready; else 503 naming what is not.
pub fn readyz(gw: &Gateway) -> Reply {
    let (_, health) = status::health_json(gw);
    let mut failing = Vec::new();
    for name in ["database", "storage", "api"] {
        let st = health["components"][name]["status"]
            .as_str()
            .unwrap_or("error");
        if st == "error" {
            let detail = health["components"][name]["detail"].as_str().unwrap_or("");
            failing.push(format!("{name}: {detail}"));
        }
    }
    if gw.blossom_addr.is_some() && gw.blossom_layer().is_none() {
        failing.push("blossom: listener not started".into());
    }
    if gw.api_layer().is_none() {
        failing.push("api: listener not started".into());
    }
    if failing.is_empty() {
        Reply::bytes(200, "text/plain; charset=utf-8", b"ready\n".to_vec())
            .header("Cache-Control", "no-store")
    } else {
        let body = format!("not ready\n{}\n", failing.join("\n"));
        Reply::bytes(503, "text/plain; charset=utf-8", body.into_bytes())
            .header("Cache-Control", "no-store")
            .header("Retry-After", "1")
    }
}
