//! Operator endpoints: `/api/health`, `/api/stats`, `/api/webseed/health`,
//! `/api/diagnostics` (JSON) and `/metrics` (Prometheus text format).

use super::router::Reply;
use crate::server::Gateway;
use serde_json::json;
use std::fmt::Write;
use std::sync::atomic::Ordering;

/// Components of the gateway and their weight in the health score. Those not built yet
/// report `disabled` and do not count.
const COMPONENTS: &[(&str, u32)] = &[
    ("database", 40),
    ("storage", 30),
    ("api", 30),
    ("tracker", 10),
    ("peer_wire", 10),
    ("dht", 0),
    ("blossom", 10),
    ("nostr", 5),
];

pub fn health(gw: &Gateway) -> Reply {
    let (code, body) = health_json(gw);
    Reply::json(code, &body)
}

/// The health components, their score and the status code `/api/health` answers with.
pub fn health_json(gw: &Gateway) -> (u16, serde_json::Value) {
    let mut components = serde_json::Map::new();
    let (mut score, mut total) = (0u32, 0u32);
    for &(name, weight) in COMPONENTS {
        let (status, detail) = match name {
            "database" => match gw.catalog.db().ping() {
                Ok(()) => ("ok", String::new()),
                Err(e) => ("error", e.to_string()),
            },
            "storage" => match storage_writable(gw) {
                Ok(()) if gw.sweep.missing.is_empty() => ("ok", String::new()),
                Ok(()) => (
                    "degraded",
                    format!("{} stored files have no data", gw.sweep.missing.len()),
                ),
                Err(e) => ("error", e),
            },
            "api" if gw.api_overloaded() => ("degraded", "connection cap reached".into()),
            "api" => ("ok", String::new()),
            "tracker" => match gw.tracker.health() {
                (false, why) => ("degraded", why),
                (true, _) if gw.tracker.redis.is_some() => ("ok", "swarms in redis".into()),
                (true, _) => (
                    "ok",
                    format!(
                        "{} torrents, {} peers",
                        gw.tracker.registry.torrents(),
                        gw.tracker.registry.peers()
                    ),
                ),
            },
            "peer_wire" => match &gw.p2p {
                None => ("disabled", String::new()),
                Some(p) => {
                    let st = &p.stats;
                    let detail = format!("{} connections on {}", st.get(&st.connections), p.addr);
                    if st.get(&st.connections) >= gw.config.peer.max_connections {
                        ("degraded", format!("{detail}: connection cap reached"))
                    } else {
                        ("ok", detail)
                    }
                }
            },
            "blossom" => match gw.blossom_addr {
                None => ("disabled", String::new()),
                Some(addr) => (
                    "ok",
                    format!("{} connections on {addr}", gw.blossom_connections()),
                ),
            },
            "nostr" => nostr_health(gw),
            "dht" => match gw.p2p.as_ref().and_then(|p| p.stats.dht.lock().clone()) {
                None => ("disabled", String::new()),
                Some(v) if v["nodes"].as_u64() == Some(0) => {
                    ("degraded", "no nodes in the routing table".into())
                }
                Some(v) => ("ok", format!("{} nodes", v["nodes"])),
            },
            _ => ("disabled", String::new()),
        };
        if status != "disabled" {
            total += weight;
            score += match status {
                "ok" => weight,
                "degraded" => weight / 2,
                _ => 0,
            };
        }
        components.insert(name.into(), json!({ "status": status, "detail": detail }));
    }
    let score = (score * 100).checked_div(total).unwrap_or(0);
    let overall = match score {
        100 => "ok",
        50..=99 => "degraded",
        _ => "error",
    };
    let code = if score >= 50 { 200 } else { 503 };
    (
        code,
        json!({ "status": overall, "score": score, "components": components }),
    )
}

/// The publisher: degraded while a relay keeps failing (events wait in the outbox).
fn nostr_health(gw: &Gateway) -> (&'static str, String) {
    let n = &gw.nostr;
    if !n.healthy() {
        return ("error", "the nostr thread stopped".into());
    }
    if n.relays().is_empty() {
        return ("disabled", "no relays configured".into());
    }
    let waiting: Vec<String> = gw
        .catalog
        .db()
        .outbox_summary()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(relay, queued, err)| err.map(|e| format!("{relay} ({queued} queued): {e}")))
        .collect();
    if waiting.is_empty() {
        ("ok", format!("{} relays", n.relays().len()))
    } else {
        ("degraded", waiting.join("; "))
    }
}

fn storage_writable(gw: &Gateway) -> Result<(), String> {
    let probe = gw.config.data_dir.join("tmp").join(".health");
    std::fs::write(&probe, b"ok")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| format!("data dir not writable: {e}"))
}

pub fn stats(gw: &Gateway) -> Reply {
    match stats_json(gw) {
        Ok(v) => Reply::json(200, &v),
        Err(e) => Reply::error(500, e),
    }
}

/// The `/api/stats` document.
pub fn stats_json(gw: &Gateway) -> Result<serde_json::Value, String> {
    let (blob, chunked) = gw
        .catalog
        .db()
        .totals()
        .map_err(|e| format!("database error: {e}"))?;
    let s = &gw.stats;
    Ok(json!({
            "files": {
                "total": blob.files + chunked.files,
                "bytes": blob.bytes + chunked.bytes,
                "blob": { "count": blob.files, "bytes": blob.bytes },
                "chunked": { "count": chunked.files, "bytes": chunked.bytes },
            },
            "requests": {
                "total": s.requests.get(),
                "per_sec": s.requests_per_sec(),
                "4xx": s.responses_4xx.get(),
                "5xx": s.responses_5xx.get(),
                "rate_limited": s.rate_limited.get(),
                "overloaded": gw.api_refused(),
            },
            "served": {
                "bytes": s.download_bytes.get() + s.webseed_bytes.get(),
                "downloads": s.downloads.get(),
                "download_bytes": s.download_bytes.get(),
                "webseed_requests": s.webseed_requests.get(),
                "webseed_bytes": s.webseed_bytes.get(),
            },
            "uploads": {
                "new": s.uploads_new.get(),
                "existing": s.uploads_existing.get(),
                "bytes": s.upload_bytes.get(),
            },
            "tracker": tracker_stats(gw),
            "peer_wire": gw.p2p.as_ref().map(|p| p2p_json(gw, p, 0)),
            "fetch": super::torrents::stats_json(gw),
            "uptime_secs": s.started.elapsed().as_secs(),
    }))
}

/// `/api/dht/stats`: the DHT node's table, storage, queries and lookups.
pub fn dht_stats(gw: &Gateway) -> Reply {
    match gw.p2p.as_ref().and_then(|p| p.stats.dht.lock().clone()) {
        None => Reply::error(404, "the DHT node is not running ([dht] enabled = false)"),
        Some(v) => Reply::json(200, &v),
    }
}

/// `/api/p2p/stats`: the peer wire service's connections and transfer, per torrent too.
pub fn p2p_stats(gw: &Gateway) -> Reply {
    match &gw.p2p {
        None => Reply::error(
            404,
            "the peer wire service is disabled ([peer] enabled = false)",
        ),
        Some(p) => Reply::json(200, &p2p_json(gw, p, 1000)),
    }
}

fn p2p_json(gw: &Gateway, p: &crate::server::P2pInfo, max_torrents: usize) -> serde_json::Value {
    let mut v = p.stats.to_json(max_torrents);
    v["listen"] = json!(p.addr.to_string());
    v["advertised"] = json!(p.advertised.map(|a| a.to_string()));
    v["max_connections"] = json!(gw.config.peer.max_connections);
    v["upload_slots"] = json!(gw.config.peer.upload_slots);
    if max_torrents == 0 {
        if let Some(o) = v.as_object_mut() {
            o.remove("torrents");
        }
    }
    v
}

fn tracker_stats(gw: &Gateway) -> serde_json::Value {
    let t = &gw.tracker;
    let (seeders, leechers) = t.registry.totals();
    json!({
        "mode": super::tracker::mode_name(gw),
        "torrents": t.registry.torrents(),
        "peers": t.registry.peers(),
        "seeders": seeders,
        "leechers": leechers,
        "announces": { "http": t.stats.http_announces.get(), "udp": t.stats.udp_announces.get() },
        "scrapes": { "http": t.stats.http_scrapes.get(), "udp": t.stats.udp_scrapes.get() },
        "udp_connects": t.stats.udp_connects.get(),
        "refused": t.stats.refused.get(),
        "bad_requests": t.stats.bad_requests.get(),
        "udp_dropped": t.stats.udp_dropped.get(),
        "too_fast": t.too_fast(),
        "backend": if t.redis.is_some() { "redis" } else { "memory" },
        "redis_errors": t.redis.as_ref().map_or(0, |r| r.errors()),
    })
}

pub fn webseed_health(gw: &Gateway) -> Reply {
    let s = &gw.stats;
    let errors = s.read_errors.get();
    Reply::json(
        200,
        &json!({
            "status": if errors == 0 && gw.sweep.missing.is_empty() { "ok" } else { "degraded" },
            "requests": s.webseed_requests.get(),
            "bytes": s.webseed_bytes.get(),
            "read_errors": errors,
            "files_missing_data": gw.sweep.missing.len(),
            "public_url": gw.public_url,
        }),
    )
}

/// Resident memory and thread count of this process, from /proc.
pub fn process_status() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:") * 1024, field("Threads:"))
}

pub fn diagnostics(gw: &Gateway) -> Reply {
    let (rss, threads) = process_status();
    let c = &gw.config;
    Reply::json(
        200,
        &json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_secs": gw.stats.started.elapsed().as_secs(),
            "public_url": gw.public_url,
            "data_dir": c.data_dir.display().to_string(),
            "schema_version": gw.catalog.db().schema_version().ok(),
            "process": { "rss_bytes": rss, "threads": threads },
            "api": {
                "connections": gw.api_connections(),
                "layer": gw.api_layer().map(|l| l.stats.to_json()),
                "max_connections": c.api.max_connections,
                "workers": c.api.workers,
                "io_timeout_secs": c.api.io_timeout_secs,
                "rate_limited_ips_tracked": gw.limiter.tracked(),
            },
            "startup_sweep": {
                "removed": gw.sweep.removed,
                "missing_data": gw.sweep.missing,
            },
            "blossom": {
                "addr": gw.blossom_addr.map(|a| a.to_string()),
                "url": gw.catalog.blossom_base(),
                "connections": gw.blossom_connections(),
                "layer": gw.blossom_layer().map(|l| l.stats.to_json()),
                "reports": gw.catalog.db().report_count().ok(),
            },
            "nostr": gw.nostr.status(),
        }),
    )
}

pub fn metrics(gw: &Gateway) -> Reply {
    let s = &gw.stats;
    let (blob, chunked) = gw.catalog.db().totals().unwrap_or_default();
    let (rss, threads) = process_status();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    let n = |c: &super::stats::Counter| c.get() as f64;
    metric(
        "tg_http_requests_total",
        "counter",
        "HTTP requests answered.",
        &[("", n(&s.requests))],
    );
    metric(
        "tg_http_errors_total",
        "counter",
        "HTTP error responses by class.",
        &[
            ("{class=\"4xx\"}", n(&s.responses_4xx)),
            ("{class=\"5xx\"}", n(&s.responses_5xx)),
        ],
    );
    metric(
        "tg_http_shed_total",
        "counter",
        "Requests refused for load (overloaded: the API connection layer's refusals).",
        &[
            ("{reason=\"rate_limited\"}", n(&s.rate_limited)),
            ("{reason=\"overloaded\"}", gw.api_refused() as f64),
        ],
    );
    metric(
        "tg_served_bytes_total",
        "counter",
        "Bytes of stored files sent.",
        &[
            ("{via=\"download\"}", n(&s.download_bytes)),
            ("{via=\"webseed\"}", n(&s.webseed_bytes)),
        ],
    );
    metric(
        "tg_uploads_total",
        "counter",
        "Uploads by outcome.",
        &[
            ("{result=\"new\"}", n(&s.uploads_new)),
            ("{result=\"existing\"}", n(&s.uploads_existing)),
        ],
    );
    metric(
        "tg_files",
        "gauge",
        "Stored files by storage kind.",
        &[
            ("{storage=\"blob\"}", blob.files as f64),
            ("{storage=\"chunked\"}", chunked.files as f64),
        ],
    );
    metric(
        "tg_file_bytes",
        "gauge",
        "Bytes of stored files by storage kind.",
        &[
            ("{storage=\"blob\"}", blob.bytes as f64),
            ("{storage=\"chunked\"}", chunked.bytes as f64),
        ],
    );
    let t = &gw.tracker;
    metric(
        "tg_tracker_announces_total",
        "counter",
        "Tracker announces by front end.",
        &[
            ("{proto=\"http\"}", n(&t.stats.http_announces)),
            ("{proto=\"udp\"}", n(&t.stats.udp_announces)),
        ],
    );
    metric(
        "tg_tracker_scrapes_total",
        "counter",
        "Tracker scrapes by front end.",
        &[
            ("{proto=\"http\"}", n(&t.stats.http_scrapes)),
            ("{proto=\"udp\"}", n(&t.stats.udp_scrapes)),
        ],
    );
    metric(
        "tg_tracker_rejected_total",
        "counter",
        "Tracker requests refused or malformed.",
        &[
            ("{reason=\"refused\"}", n(&t.stats.refused)),
            ("{reason=\"malformed\"}", n(&t.stats.bad_requests)),
            ("{reason=\"dropped\"}", n(&t.stats.udp_dropped)),
        ],
    );
    metric(
        "tg_tracker_too_fast_total",
        "counter",
        "Re-announces sooner than the client's minimum interval (answered with counts only).",
        &[("", t.too_fast() as f64)],
    );
    metric(
        "tg_tracker_torrents",
        "gauge",
        "Torrents in the tracker registry.",
        &[("", t.registry.torrents() as f64)],
    );
    metric(
        "tg_tracker_peers",
        "gauge",
        "Peers in the tracker registry.",
        &[("", t.registry.peers() as f64)],
    );
    if let Some(p) = &gw.p2p {
        let st = &p.stats;
        metric(
            "tg_p2p_connections",
            "gauge",
            "Peer wire connections by state.",
            &[
                ("{state=\"all\"}", st.get(&st.connections) as f64),
                ("{state=\"half_open\"}", st.get(&st.half_open) as f64),
                ("{state=\"outgoing\"}", st.get(&st.outgoing) as f64),
                ("{state=\"unchoked\"}", st.get(&st.unchoked) as f64),
            ],
        );
        metric(
            "tg_p2p_bytes_total",
            "counter",
            "Peer wire bytes by direction.",
            &[
                ("{dir=\"up\"}", n(&st.bytes_up)),
                ("{dir=\"down\"}", n(&st.bytes_down)),
            ],
        );
        metric(
            "tg_p2p_blocks_total",
            "counter",
            "Blocks requested by peers, by outcome.",
            &[
                ("{result=\"served\"}", n(&st.blocks_served)),
                ("{result=\"rejected\"}", n(&st.blocks_rejected)),
                ("{result=\"disk_error\"}", n(&st.disk_errors)),
            ],
        );
        metric(
            "tg_p2p_closed_total",
            "counter",
            "Peer connections refused or closed, by reason.",
            &[
                ("{reason=\"refused\"}", n(&st.refused)),
                ("{reason=\"protocol\"}", n(&st.protocol_errors)),
                ("{reason=\"timeout\"}", n(&st.timeouts)),
                ("{reason=\"dial_failed\"}", n(&st.dial_failures)),
            ],
        );
        if let Some(f) = &gw.fetch {
            let c = &f.counters;
            metric(
                "tg_fetch_cache_requests_total",
                "counter",
                "Pieces fetch-through readers came to, by whether they were cached (hit) or had to come from the swarm (miss).",
                &[
                    ("{result=\"hit\"}", c.hits.load(Ordering::Relaxed) as f64),
                    ("{result=\"miss\"}", c.misses.load(Ordering::Relaxed) as f64),
                ],
            );
            metric(
                "tg_fetch_cache_evictions_total",
                "counter",
                "Pieces the fetch-through cache released to stay under fetch.cache_bytes.",
                &[("", n(&st.cache_evictions))],
            );
            metric(
                "tg_fetch_cache_bytes",
                "gauge",
                "Bytes of fetch-through pieces cached (pinned torrents apart), and the cap.",
                &[
                    (
                        "{kind=\"used\"}",
                        st.cache_bytes.load(Ordering::Relaxed) as f64,
                    ),
                    (
                        "{kind=\"cap\"}",
                        st.cache_cap.load(Ordering::Relaxed) as f64,
                    ),
                ],
            );
            metric(
                "tg_fetch_streams",
                "gauge",
                "Fetch-through streams open.",
                &[("", f.streams() as f64)],
            );
        }
        let torrents = st.torrents.lock().clone();
        // One sample per torrent (at most 100) for which `value` is not zero.
        let per_torrent = |value: &dyn Fn(&crate::net::stats::TorrentStats) -> f64| {
            torrents
                .iter()
                .map(|t| (t, value(t)))
                .filter(|(_, v)| *v > 0.0)
                .take(100)
                .map(|(t, v)| {
                    let hex = crate::proto::hex::encode(&t.info_hash);
                    (format!("{{info_hash=\"{hex}\"}}"), v)
                })
                .collect::<Vec<(String, f64)>>()
        };
        for (name, kind, help, samples) in [
            (
                "tg_p2p_torrent_peers",
                "gauge",
                "Peers per torrent (100 torrents with peers at most).",
                per_torrent(&|t| t.peers as f64),
            ),
            (
                "tg_p2p_torrent_uploaded_bytes_total",
                "counter",
                "Piece bytes sent per torrent (100 torrents at most).",
                per_torrent(&|t| t.uploaded as f64),
            ),
        ] {
            let refs: Vec<(&str, f64)> = samples.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            metric(name, kind, help, &refs);
        }
        let snapshot = st.dht.lock().clone();
        for (name, kind, help, samples) in super::dht_metrics::families(snapshot.as_ref()) {
            let refs: Vec<(&str, f64)> = samples.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            metric(name, kind, help, &refs);
        }
    }
    metric(
        "tg_http_connections",
        "gauge",
        "Open API connections.",
        &[("", gw.api_connections() as f64)],
    );
    let layers: Vec<(&str, &crate::http::pool::LayerStats)> =
        [("api", gw.api_layer()), ("blossom", gw.blossom_layer())]
            .into_iter()
            .filter_map(|(name, l)| l.map(|l| (name, &l.stats)))
            .collect();
    let per_layer = |f: &dyn Fn(&crate::http::pool::LayerStats) -> Vec<(&'static str, f64)>| {
        let mut out = Vec::new();
        for (name, l) in &layers {
            for (label, v) in f(l) {
                let sep = if label.is_empty() { "" } else { "," };
                out.push((format!("{{listener=\"{name}\"{sep}{label}}}"), v));
            }
        }
        out
    };
    let load =
        |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed) as f64;
    let gauge =
        |a: &std::sync::atomic::AtomicUsize| a.load(std::sync::atomic::Ordering::Relaxed) as f64;
    for (name, kind, help, samples) in [
        (
            "tg_http_accepted_total",
            "counter",
            "Connections accepted by the connection layer.",
            per_layer(&|l| vec![("", load(&l.accepted))]),
        ),
        (
            "tg_http_refused_total",
            "counter",
            "Connections refused at accept or closed for a new one, by reason.",
            per_layer(&|l| {
                vec![
                    ("reason=\"per_ip\"", load(&l.refused_per_ip)),
                    ("reason=\"busy\"", load(&l.refused_busy)),
                    ("reason=\"accept_rate\"", load(&l.refused_rate)),
                    ("reason=\"evicted\"", load(&l.evicted)),
                    ("reason=\"bad_head\"", load(&l.bad_heads)),
                    ("reason=\"header_timeout\"", load(&l.header_timeouts)),
                    ("reason=\"io_timeout\"", load(&l.io_timeouts)),
                ]
            }),
        ),
        (
            "tg_http_layer_connections",
            "gauge",
            "Connections by where they are: parked in the poller, waiting to write, in a worker.",
            per_layer(&|l| {
                vec![
                    ("state=\"parked\"", gauge(&l.parked)),
                    ("state=\"waiting_write\"", gauge(&l.waiting_write)),
                    ("state=\"streams\"", gauge(&l.streams)),
                ]
            }),
        ),
        (
            "tg_http_busy_workers",
            "gauge",
            "Workers running a request or writing a reply.",
            per_layer(&|l| vec![("", gauge(&l.busy_workers))]),
        ),
    ] {
        let refs: Vec<(&str, f64)> = samples.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        metric(name, kind, help, &refs);
    }
    metric(
        "tg_process_resident_memory_bytes",
        "gauge",
        "Resident memory.",
        &[("", rss as f64)],
    );
    metric(
        "tg_process_threads",
        "gauge",
        "Threads of the process.",
        &[("", threads as f64)],
    );
    metric(
        "tg_uptime_seconds",
        "gauge",
        "Seconds since start.",
        &[("", s.started.elapsed().as_secs_f64())],
    );
    let n = gw.nostr.status();
    let num = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
    metric(
        "tg_nostr_events_total",
        "counter",
        "NIP-94 announcements by relay answer (and events dropped from a full outbox).",
        &[
            ("{result=\"accepted\"}", num(&n["accepted"])),
            ("{result=\"rejected\"}", num(&n["rejected"])),
            ("{result=\"dropped\"}", num(&n["dropped"])),
        ],
    );
    metric(
        "tg_nostr_relay_failures_total",
        "counter",
        "Failed relay connections or publishes.",
        &[("", num(&n["relay_failures"]))],
    );
    let queued: f64 = n["outbox"]
        .as_array()
        .map_or(0.0, |rows| rows.iter().map(|r| num(&r["queued"])).sum());
    metric(
        "tg_nostr_outbox",
        "gauge",
        "Announcements waiting for a relay.",
        &[("", queued)],
    );
    Reply::bytes(200, "text/plain; version=0.0.4", out.into_bytes())
}
