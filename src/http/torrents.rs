//! Fetch-through's API: `POST /api/torrents` joins a swarm (a magnet, a .torrent body or
//! URL (`url`), an info-hash; one the gateway stores is answered as complete and never joined),
//! `GET /api/torrents[/<ih>]` shows them (state, files, stream URLs, pieces
//! cached, readers and the pieces they want), `POST /api/torrents/<ih>/pin` fetches one
//! whole and keeps it, and `DELETE /api/torrents/<ih>` leaves one. The streams themselves
//! are `super::stream`.

mod detail;
mod url;

use super::api::authorize_write;
use super::router::{Reply, Req};
use crate::fetch::{Fetched, Fetcher, Refused, State};
use crate::proto::bt::magnet::Magnet;
use crate::proto::bt::metainfo::{self, Metainfo};
use crate::proto::hex;
use crate::server::Gateway;
use crate::store::db::{Db, FileRecord};
use serde_json::{json, Value};
use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Most bytes of a POSTed .torrent or magnet.
const MAX_BODY: u64 = 16 << 20;

pub(super) fn fetcher(gw: &Gateway) -> Result<&Arc<Fetcher>, Reply> {
    gw.fetch.as_ref().ok_or_else(|| {
        Reply::error(
            503,
            "fetch-through needs the peer wire service (peer.enabled)",
        )
    })
}

pub(super) fn parse_ih(text: &str) -> Option<[u8; 20]> {
    match text.len() {
        40 => hex::decode::<20>(text),
        32 => hex::decode_base32_20(text),
        _ => None,
    }
}

/// What a POSTed body names.
pub(super) enum Named {
    Magnet(Magnet),
    Torrent(Metainfo),
}

impl Named {
    fn info_hash(&self) -> [u8; 20] {
        match self {
            Named::Magnet(m) => m.info_hash,
            Named::Torrent(t) => t.info_hash,
        }
    }
}

/// `POST /api/torrents`.
pub fn add(gw: &Gateway, req: &mut Req<'_>) -> Reply {
    if let Err(r) = authorize_write(gw, req) {
        return r;
    }
    if req.body_len.is_some_and(|n| n > MAX_BODY) {
        return Reply::error(413, "a torrent or magnet is at most 16 MiB");
    }
    let mut body = Vec::new();
    if let Err(e) = (&mut req.body).take(MAX_BODY + 1).read_to_end(&mut body) {
        return Reply::error(400, format!("reading the body: {e}"));
    }
    if body.len() as u64 > MAX_BODY {
        return Reply::error(413, "a torrent or magnet is at most 16 MiB");
    }
    let text = std::str::from_utf8(&body).map(str::trim).unwrap_or("");
    let named = if text.starts_with("magnet:") {
        match crate::proto::bt::magnet::parse(text) {
            Ok(m) => Named::Magnet(m),
            Err(e) => return Reply::error(400, format!("bad magnet link: {e}")),
        }
    } else if let Some(ih) = parse_ih(text) {
        Named::Magnet(Magnet {
            info_hash: ih,
            ..Default::default()
        })
    } else if text.starts_with("http://") || text.starts_with("https://") {
        return match fetcher(gw) {
            Ok(f) => url::add(f, gw.catalog.shared_db(), &gw.public_url, text),
            Err(r) => r,
        };
    } else {
        match metainfo::parse(&body) {
            Ok(meta) => Named::Torrent(meta),
            Err(e) => return Reply::error(400, format!("not a magnet, info-hash or torrent: {e}")),
        }
    };
    match add_named(gw.fetch.as_deref(), gw.catalog.db(), &gw.public_url, named) {
        Ok((code, v)) => Reply::json(code, &v),
        Err(r) => Reply::error(r.status, r.reason),
    }
}

/// Adds what a body named: a torrent the gateway stores is answered as complete (201, state
/// `stored`) and never joined; anything else is handed to the fetcher.
pub(super) fn add_named(
    f: Option<&Fetcher>,
    db: &Db,
    public_url: &str,
    named: Named,
) -> Result<(u16, Value), Refused> {
    if let Some(rec) = stored(db, &named.info_hash())? {
        return Ok((201, describe_stored(public_url, &rec)));
    }
    let Some(f) = f else {
        return Err(Refused {
            status: 503,
            reason: "fetch-through needs the peer wire service (peer.enabled)".into(),
        });
    };
    let added = match named {
        Named::Magnet(m) => f.add_magnet(m)?,
        Named::Torrent(meta) => f.add_torrent(meta)?,
    };
    Ok(describe(public_url, &added))
}

/// The stored file whose torrent this is, if any.
fn stored(db: &Db, ih: &[u8; 20]) -> Result<Option<FileRecord>, Refused> {
    db.by_info_hash(&hex::encode(ih)).map_err(|e| Refused {
        status: 500,
        reason: format!("database error: {e}"),
    })
}

/// A stored torrent as `/api/torrents` shows it: complete, kept, streamed from the store.
fn describe_stored(public_url: &str, rec: &FileRecord) -> Value {
    let pieces = rec.size.div_ceil(rec.piece_length.max(1));
    let url = format!("{public_url}/stream/{}/0", rec.info_hash);
    json!({
        "info_hash": rec.info_hash,
        "name": rec.name,
        "state": "stored",
        "stored": true,
        "sha256": rec.sha256,
        "pinned": true,
        "total_size": rec.size,
        "piece_length": rec.piece_length,
        "pieces": pieces,
        "files": [{
            "index": 0,
            "path": rec.name,
            "length": rec.size,
            "verified_bytes": rec.size,
            "stream_url": url,
        }],
        "stream_urls": [url],
        "stats": {
            "verified_pieces": pieces,
            "cached_pieces": 0,
            "readers": 0,
            "wanted_pieces": 0,
            "downloaded_bytes": 0,
            "complete": true,
        },
    })
}

/// 201 with the files once the metadata is known, 202 while it is fetched.
fn describe(public_url: &str, t: &Fetched) -> (u16, Value) {
    let ih = hex::encode(&t.info_hash);
    let s = &t.status;
    let counts = json!({
        "downloaded_bytes": s.get(&s.downloaded),
        "uploaded_bytes": s.get(&s.uploaded),
        "verified_pieces": s.count(&s.verified),
        "cached_pieces": s.cached_pieces(),
        "evicted_pieces": s.evictions.load(Ordering::Relaxed),
        "readers": s.count(&s.readers),
        "wanted_pieces": s.count(&s.wanted_pieces),
        "peers": s.count(&s.peers),
        "seeds": s.count(&s.seeds),
        "known_peers": s.count(&s.known_peers),
        "complete": s.is_complete(),
    });
    let (rates, by_source) = detail::rates_and_sources(s);
    let pinned = t.pinned.load(Ordering::Acquire);
    let state = t.state.lock();
    match &*state {
        State::Metadata | State::Checking => (
            202,
            json!({"info_hash": ih, "state": state.name(), "pinned": pinned, "stats": counts}),
        ),
        State::Failed(e) => (
            200,
            json!({"info_hash": ih, "state": "failed", "error": e, "pinned": pinned, "stats": counts}),
        ),
        State::Ready { meta, .. } => {
            let verified = detail::verified_bytes(&meta.info, s);
            let files: Vec<Value> = meta
                .info
                .files
                .iter()
                .enumerate()
                .filter(|(_, f)| !f.padding)
                .map(|(i, f)| {
                    json!({
                        "index": i,
                        "path": f.display_path(),
                        "length": f.length,
                        "verified_bytes": verified[i],
                        "stream_url": format!("{public_url}/stream/{ih}/{i}"),
                    })
                })
                .collect();
            let urls: Vec<Value> = files.iter().map(|f| f["stream_url"].clone()).collect();
            (
                201,
                json!({
                    "info_hash": ih,
                    "name": meta.info.name,
                    "state": "ready",
                    "pinned": pinned,
                    "total_size": meta.info.total_length(),
                    "piece_length": meta.info.piece_length,
                    "pieces": meta.info.piece_count(),
                    "files": files,
                    "stream_urls": urls,
                    "stats": counts,
                    "rates": rates,
                    "peers_by_source": by_source,
                }),
            )
        }
    }
}

/// `GET /api/torrents`.
pub fn list(gw: &Gateway) -> Reply {
    let f = match fetcher(gw) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let list: Vec<Value> = f
        .list()
        .iter()
        .map(|t| describe(&gw.public_url, t).1)
        .collect();
    Reply::json(200, &json!({ "torrents": list }))
}

/// `GET /api/torrents/<ih>`: a fetched torrent, or a stored one (complete).
pub fn get(gw: &Gateway, ih: &str) -> Reply {
    let Some(ih) = parse_ih(ih) else {
        return Reply::error(400, "not an info-hash (40 hex or 32 base32 characters)");
    };
    if let Some(t) = gw.fetch.as_ref().and_then(|f| f.get(&ih)) {
        let (code, v) = describe(&gw.public_url, &t);
        return Reply::json(if code == 201 { 200 } else { code }, &v);
    }
    match stored(gw.catalog.db(), &ih) {
        Ok(Some(rec)) => Reply::json(200, &describe_stored(&gw.public_url, &rec)),
        Ok(None) => Reply::error(404, "not a torrent the gateway stores or fetches"),
        Err(r) => Reply::error(r.status, r.reason),
    }
}

/// `GET /api/p2p/peers/<ih>`: a fetched torrent's peers, in dial order with the reasons.
pub fn peers(gw: &Gateway, ih: &str) -> Reply {
    let Some(ih) = parse_ih(ih) else {
        return Reply::error(400, "not an info-hash (40 hex or 32 base32 characters)");
    };
    if let Some(t) = gw.fetch.as_ref().and_then(|f| f.get(&ih)) {
        let v = json!({
            "info_hash": hex::encode(&ih),
            "state": t.state.lock().name(),
            "peers": detail::peers(&t.status),
        });
        return Reply::json(200, &v);
    }
    match stored(gw.catalog.db(), &ih) {
        Ok(Some(rec)) => Reply::json(
            200,
            &json!({"info_hash": rec.info_hash, "state": "stored", "peers": []}),
        ),
        Ok(None) => Reply::error(404, "not a torrent the gateway stores or fetches"),
        Err(r) => Reply::error(r.status, r.reason),
    }
}

/// `DELETE /api/torrents/<ih>`.
pub fn delete(gw: &Gateway, req: &Req<'_>, ih: &str) -> Reply {
    if let Err(r) = authorize_write(gw, req) {
        return r;
    }
    let f = match fetcher(gw) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Some(ih) = parse_ih(ih) else {
        return Reply::error(400, "not an info-hash (40 hex or 32 base32 characters)");
    };
    if f.remove(&ih) {
        return Reply::new(204);
    }
    match stored(gw.catalog.db(), &ih) {
        Ok(Some(rec)) => Reply::error(
            409,
            format!(
                "a stored file, not a fetched torrent: DELETE /api/files/{}",
                rec.sha256
            ),
        ),
        Ok(None) => Reply::error(404, "not a torrent the gateway fetches"),
        Err(r) => Reply::error(r.status, r.reason),
    }
}

/// `POST /api/torrents/<ih>/pin`: fetch it whole and keep it (no eviction, resumed after a
/// restart).
pub fn pin(gw: &Gateway, req: &Req<'_>, ih: &str) -> Reply {
    if let Err(r) = authorize_write(gw, req) {
        return r;
    }
    let f = match fetcher(gw) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Some(ih) = parse_ih(ih) else {
        return Reply::error(400, "not an info-hash (40 hex or 32 base32 characters)");
    };
    if let Ok(Some(rec)) = stored(gw.catalog.db(), &ih) {
        // Stored files are kept whole already.
        return Reply::json(200, &describe_stored(&gw.public_url, &rec));
    }
    match f.pin(&ih) {
        Some(t) => {
            let (code, v) = describe(&gw.public_url, &t);
            Reply::json(if code == 201 { 200 } else { code }, &v)
        }
        None => Reply::error(
            404,
            "not a torrent the gateway fetches: POST it to /api/torrents",
        ),
    }
}

/// `fetch` in `/api/stats`: torrents, streams and the piece cache.
pub fn stats_json(gw: &Gateway) -> Option<Value> {
    let f = gw.fetch.as_ref()?;
    let (used, cap, evictions) = gw.p2p.as_ref().map_or((0, 0, 0), |p| {
        let s = &p.stats;
        (
            s.cache_bytes.load(Ordering::Relaxed),
            s.cache_cap.load(Ordering::Relaxed),
            s.cache_evictions.get(),
        )
    });
    let hits = f.counters.hits.load(Ordering::Relaxed);
    let misses = f.counters.misses.load(Ordering::Relaxed);
    let ratio = if hits + misses == 0 {
        Value::Null
    } else {
        json!(hits as f64 / (hits + misses) as f64)
    };
    Some(json!({
        "torrents": f.list().len(),
        "max_torrents": f.config.max_torrents,
        "streams": f.streams(),
        "max_streams": f.config.max_streams,
        "cache": {
            "bytes": used,
            "cap_bytes": cap,
            "hits": hits,
            "misses": misses,
            "evictions": evictions,
            "hit_ratio": ratio,
        },
    }))
}
