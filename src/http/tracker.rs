//! The HTTP tracker (`GET /announce`, `GET /scrape`) and the allowlist API
//! (`/api/tracker/allowlist[/<info_hash>]`). Failures are bencoded `failure reason`s with
//! status 200, which is what BitTorrent clients read.

use super::router::{Reply, Req};
use crate::proto::hex;
use crate::proto::tracker::http::SwarmCounts;
use crate::proto::tracker::http::{self as tracker_http, DictPeer, Peers};
use crate::server::Gateway;
use crate::tracker::canonical;
use crate::tracker::registry::{AnnounceIn, Family, Peer, Refusal};
use serde_json::json;
use std::net::IpAddr;

const BENCODE: &str = "text/plain";

fn failure(reason: &str) -> Reply {
    Reply::bytes(200, BENCODE, tracker_http::failure(reason))
}

/// The announcing client's address: the connection's, or a trusted proxy's header, or the
/// `ip` parameter when configured to trust it.
fn client_ip(gw: &Gateway, req: &Req<'_>, ip_param: Option<&str>) -> Option<IpAddr> {
    let config = &gw.tracker.config;
    let mut ip = canonical(req.remote?.ip());
    if !config.proxy_header.is_empty() && config.trusted_proxies.contains(&ip) {
        if let Some(forwarded) = req
            .header(&config.proxy_header)
            .and_then(|h| h.rsplit(',').next())
            .and_then(|last| last.trim().parse().ok())
        {
            ip = canonical(forwarded);
        }
    }
    if config.trust_ip_param {
        if let Some(given) = ip_param
            .and_then(|v| crate::proto::http::escape::decode(v).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse().ok())
        {
            ip = canonical(given);
        }
    }
    Some(ip)
}

/// An announce as read from its request: what the swarm is asked, and how to answer.
pub struct Asked {
    pub a: AnnounceIn,
    compact: bool,
    no_peer_id: bool,
    interval: u32,
    min_interval: u32,
}

/// Reads an announce request; a malformed one is answered with its failure reason.
pub fn read_announce(gw: &Gateway, req: &Req<'_>) -> Result<Asked, Reply> {
    let tracker = &gw.tracker;
    tracker.stats.http_announces.add(1);
    let q = match tracker_http::parse_announce(req.query) {
        Ok(q) => q,
        Err(reason) => {
            tracker.stats.bad_requests.add(1);
            return Err(failure(&reason));
        }
    };
    let Some(ip) = client_ip(gw, req, q.ip) else {
        return Err(failure("client address unknown"));
    };
    log::debug!(
        "announce {} from {ip}:{} event {:?} left {:?}",
        hex::encode(&q.info_hash),
        q.port,
        q.event,
        q.left
    );
    let (interval, min_interval) = tracker.config.intervals_for(&q.peer_id);
    // The requester's family first: numwant is not spent on peers it cannot reach.
    let family = if ip.is_ipv6() {
        Family::V6First
    } else {
        Family::V4First
    };
    let a = AnnounceIn {
        info_hash: q.info_hash,
        peer_id: q.peer_id,
        ip,
        port: q.port,
        left: q.left,
        event: q.event,
        key: q.key,
        numwant: tracker.numwant(q.numwant),
        family,
        min_interval,
    };
    Ok(Asked {
        a,
        compact: q.compact,
        no_peer_id: q.no_peer_id,
        interval,
        min_interval,
    })
}

pub fn announce(gw: &Gateway, req: &Req<'_>) -> Reply {
    let asked = match read_announce(gw, req) {
        Ok(asked) => asked,
        Err(reply) => return reply,
    };
    let mut peers = Vec::new();
    let result = gw.tracker.announce(&asked.a, &mut peers);
    answer(&asked, result, &peers)
}

/// The bencoded answer to an announce: its failure reason, or the counts and `peers`.
pub fn answer(asked: &Asked, result: Result<SwarmCounts, Refusal>, peers: &[Peer]) -> Reply {
    let counts = match result {
        Ok(c) => c,
        Err(refusal) => return failure(refusal.reason()),
    };
    let (interval, min_interval) = (asked.interval, asked.min_interval);
    let body = if asked.compact {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for p in peers {
            p.write_compact(if p.is_v6() { &mut v6 } else { &mut v4 });
        }
        tracker_http::announce_response(
            counts,
            interval,
            min_interval,
            &Peers::Compact { v4: &v4, v6: &v6 },
            TRACKER_ID,
        )
    } else {
        let list: Vec<DictPeer> = peers
            .iter()
            .map(|p| DictPeer {
                ip: p.ip(),
                port: p.port,
                peer_id: (!asked.no_peer_id).then_some(p.id),
            })
            .collect();
        tracker_http::announce_response(
            counts,
            interval,
            min_interval,
            &Peers::Dict(&list),
            TRACKER_ID,
        )
    };
    Reply::bytes(200, BENCODE, body)
}

/// The `tracker id` sent with every announce answer.
const TRACKER_ID: &str = "torrent-gateway";

pub fn scrape(gw: &Gateway, req: &Req<'_>) -> Reply {
    let tracker = &gw.tracker;
    tracker.stats.http_scrapes.add(1);
    let hashes = match tracker_http::parse_scrape(req.query, tracker.config.max_scrape_hashes) {
        Ok(h) => h,
        Err(reason) => {
            tracker.stats.bad_requests.add(1);
            return failure(&reason);
        }
    };
    let mut files: Vec<_> = if hashes.is_empty() {
        if !tracker.config.full_scrape || tracker.redis.is_some() {
            return failure("full scrape is disabled; ask for info_hash");
        }
        tracker.scrape_all()
    } else {
        match tracker.scrape_many(&hashes) {
            Ok(counts) => hashes.iter().copied().zip(counts).collect(),
            Err(refusal) => return failure(refusal.reason()),
        }
    };
    files.sort_unstable_by_key(|f| f.0);
    files.dedup_by(|a, b| a.0 == b.0);
    Reply::bytes(200, BENCODE, tracker_http::scrape_response(&files))
}

pub fn allowlist(gw: &Gateway) -> Reply {
    let list: Vec<String> = gw
        .tracker
        .allowlisted()
        .iter()
        .map(|h| hex::encode(h))
        .collect();
    Reply::json(
        200,
        &json!({ "mode": mode_name(gw), "count": list.len(), "info_hashes": list }),
    )
}

pub fn mode_name(gw: &Gateway) -> &'static str {
    match gw.tracker.config.mode {
        crate::config::TrackerMode::Open => "open",
        crate::config::TrackerMode::Hosted => "hosted",
        crate::config::TrackerMode::Allowlist => "allowlist",
    }
}

/// The info-hash of an allowlist write, once the client may write.
fn writable_hash(gw: &Gateway, req: &Req<'_>, text: &str) -> Result<[u8; 20], Reply> {
    super::api::authorize_write(gw, req)?;
    hex::decode::<20>(text).ok_or_else(|| Reply::error(400, "info-hash must be 40 hex digits"))
}

pub fn allow(gw: &Gateway, req: &Req<'_>, hash: &str) -> Reply {
    let ih = match writable_hash(gw, req, hash) {
        Ok(h) => h,
        Err(r) => return r,
    };
    match gw.tracker.allow(gw.catalog.db(), ih) {
        Ok(None) => Reply::error(
            507,
            "the allowlist is full (tracker.max_torrents entries); delete some first",
        ),
        Ok(Some(new)) => Reply::json(
            if new { 201 } else { 200 },
            &json!({ "info_hash": hex::encode(&ih), "added": new }),
        ),
        Err(e) => Reply::error(500, format!("database error: {e}")),
    }
}

pub fn disallow(gw: &Gateway, req: &Req<'_>, hash: &str) -> Reply {
    let ih = match writable_hash(gw, req, hash) {
        Ok(h) => h,
        Err(r) => return r,
    };
    match gw.tracker.disallow(gw.catalog.db(), ih) {
        Ok(true) => Reply::new(204),
        Ok(false) => Reply::error(404, "not in the allowlist"),
        Err(e) => Reply::error(500, format!("database error: {e}")),
    }
}
