//! The Blossom server (its own port): BUD-01 `GET|HEAD /<sha256>[.ext]`, BUD-02 `PUT /upload`,
//! BUD-06 `HEAD /upload`, BUD-04 `PUT /mirror`, BUD-09 `PUT /report`, BUD-12 `GET /list/<pubkey>`
//! and `DELETE /<sha256>`, with BUD-11 auth events and CORS on every response. Blobs live in
//! the same store as the API's files, so each is also a torrent; descriptors carry BUD-08's
//! `nip94` tags with the magnet link and info-hash.

use super::download::{self, Kind};
use super::mirror::{self, FetchError};
use super::router::{Method, Reply, Req};
use crate::catalog::{now_secs, UploadError, UploadSpec};
use crate::proto::nostr::auth::{self, BlossomNeed};
use crate::proto::nostr::{self, Event};
use crate::server::Gateway;
use crate::store::db_nostr::{Released, Report};
use serde_json::{json, Value};
use std::io::Read;
use std::time::Duration;

/// Most descriptors in one `GET /list` page, and the default.
pub const MAX_LIST: usize = 1000;
pub const DEFAULT_LIST: usize = 100;
/// Largest `PUT /report` body (a report is a short note).
const MAX_REPORT_BODY: u64 = 16 << 10;
/// Largest `PUT /mirror` request body.
const MAX_MIRROR_BODY: u64 = 8 << 10;
/// Delete auth events remembered (until they expire) so that each works once.
pub const MAX_USED_DELETE_EVENTS: usize = 10_000;

/// Routes one Blossom request (the pool adds the CORS headers with [`cors`]).
pub fn route(gw: &Gateway, req: &mut Req<'_>) -> Reply {
    let path = req.path.to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    use Method::*;
    match (req.method, segments.as_slice()) {
        (Options, _) => Reply::new(204)
            .header(
                "Access-Control-Allow-Headers",
                "Authorization, Content-Type, Content-Length, X-SHA-256, X-Content-Type, \
                 X-Content-Length, Range, If-None-Match",
            )
            .header(
                "Access-Control-Allow-Methods",
                "GET, HEAD, PUT, DELETE, OPTIONS",
            )
            .header("Access-Control-Max-Age", "86400"),
        (Put, ["upload"]) => upload(gw, req),
        (Head, ["upload"]) => upload_check(gw, req),
        (Put, ["mirror"]) => mirror(gw, req),
        (Put, ["report"]) => report(gw, req),
        (Get | Head, ["list", pubkey]) => list(gw, req, pubkey),
        (Get | Head, [blob]) if !blob.is_empty() => get(gw, req, blob),
        (Delete, [blob]) if !blob.is_empty() => delete(gw, req, blob),
        (_, ["upload" | "mirror" | "report"]) => {
            Reply::error(405, "method not allowed here").header("Allow", "PUT, HEAD, OPTIONS")
        }
        (_, ["list", _]) => {
            Reply::error(405, "method not allowed here").header("Allow", "GET, HEAD, OPTIONS")
        }
        (_, [blob]) if !blob.is_empty() => Reply::error(405, "method not allowed here")
            .header("Allow", "GET, HEAD, DELETE, OPTIONS"),
        _ => Reply::error(404, "no such endpoint"),
    }
}

/// Adds the CORS headers every Blossom reply carries (the rate limiter's 429 included).
pub fn cors(reply: Reply) -> Reply {
    reply.header("Access-Control-Allow-Origin", "*").header(
        "Access-Control-Expose-Headers",
        "*, X-Reason, Content-Range",
    )
}

/// The lowercase hostname `server` tags must name.
fn server_host(gw: &Gateway) -> String {
    let base = gw.catalog.blossom_base().unwrap_or("");
    let rest = base.split_once("://").map_or(base, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.to_ascii_lowercase()
}

/// Checks the request's auth event, if it has one; `required` makes a missing one a 401.
fn authorize(
    gw: &Gateway,
    req: &Req<'_>,
    verb: &str,
    x: Option<&str>,
    required: bool,
) -> Result<Option<Event>, Reply> {
    let Some(header) = req.header("Authorization") else {
        if required {
            return Err(Reply::error(
                401,
                format!("this endpoint needs a kind 24242 auth event for `{verb}`"),
            )
            .header("WWW-Authenticate", "Nostr"));
        }
        return Ok(None);
    };
    let host = server_host(gw);
    let need = BlossomNeed {
        verb,
        x,
        server: &host,
        now: now_secs(),
        skew: gw.config.blossom.clock_skew_secs,
        max_lifetime: gw.config.blossom.auth_max_lifetime_secs,
    };
    let refuse = |e: auth::AuthError| {
        let reply = Reply::error(e.status, e.reason);
        if e.status == 401 {
            reply.header("WWW-Authenticate", "Nostr")
        } else {
            reply
        }
    };
    let ev = auth::parse_header(header).map_err(refuse)?;
    auth::check_blossom(&ev, &need).map_err(refuse)?;
    Ok(Some(ev))
}

/// Uploads and mirrors: a configured allowlist of pubkeys, when there is one.
fn may_upload(gw: &Gateway, ev: Option<&Event>) -> Result<(), Reply> {
    let allowed = &gw.config.blossom.upload_pubkeys;
    let Some(ev) = ev else { return Ok(()) };
    if allowed.is_empty()
        || allowed
            .iter()
            .any(|k| nostr::parse_pubkey(k).as_deref() == Some(ev.pubkey.as_str()))
    {
        Ok(())
    } else {
        Err(Reply::error(
            403,
            format!("pubkey {} may not upload here", ev.pubkey),
        ))
    }
}

/// Splits `<sha256>[.ext]`.
fn blob_segment(segment: &str) -> Option<&str> {
    let sha = segment.get(..64)?;
    let rest = &segment[64..];
    let ok_rest = rest.is_empty()
        || (rest.starts_with('.')
            && (2..=33).contains(&rest.len())
            && rest[1..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_'));
    (super::api::valid_sha256(sha) && ok_rest).then_some(sha)
}

fn x_sha256_header(req: &Req<'_>) -> Result<Option<String>, Reply> {
    match req.header("X-SHA-256") {
        None => Ok(None),
        Some(h) => {
            let h = h.trim().to_ascii_lowercase();
            if super::api::valid_sha256(&h) {
                Ok(Some(h))
            } else {
                Err(Reply::error(400, "X-SHA-256 must be 64 hex characters"))
            }
        }
    }
}

/// A content type from a header, if it is a plausible one.
fn content_type(value: Option<&str>) -> Option<String> {
    let v = value?.split(';').next()?.trim().to_ascii_lowercase();
    let plausible = v.len() <= 127
        && v.split_once('/')
            .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/.+-_".contains(&b));
    plausible.then_some(v)
}

fn reply_for(e: &UploadError, what: &str) -> Reply {
    if e.status() >= 500 {
        log::error!("{what} failed: {e}");
    }
    Reply::error(e.status(), e.to_string()).header("Connection", "close")
}

fn x_tags(ev: &Event) -> Vec<String> {
    ev.tag_values("x").map(str::to_ascii_lowercase).collect()
}

/// What an upload (or mirror, or preflight) is allowed to store.
struct UploadAuth {
    /// `X-SHA-256`, when sent.
    expected: Option<String>,
    /// The auth event, when one was sent (or required).
    event: Option<Event>,
    /// Its `x` tags: the blobs it may store.
    xs: Option<Vec<String>>,
}

/// The common checks of `PUT /upload`, `HEAD /upload` and `PUT /mirror`: `X-SHA-256`, the
/// auth event (`t` = upload, `x` naming the announced blob), the uploader allowlist, and at
/// least one `x` tag.
fn upload_auth(gw: &Gateway, req: &Req<'_>) -> Result<UploadAuth, Reply> {
    let expected = x_sha256_header(req)?;
    let event = authorize(
        gw,
        req,
        "upload",
        expected.as_deref(),
        gw.config.blossom.auth_upload,
    )?;
    may_upload(gw, event.as_ref())?;
    let xs = event.as_ref().map(x_tags);
    if xs.as_ref().is_some_and(Vec::is_empty) {
        return Err(
            Reply::error(401, "upload auth event has no x tag").header("WWW-Authenticate", "Nostr")
        );
    }
    Ok(UploadAuth {
        expected,
        event,
        xs,
    })
}

fn upload(gw: &Gateway, req: &mut Req<'_>) -> Reply {
    let UploadAuth {
        expected,
        event: ev,
        xs,
    } = match upload_auth(gw, req) {
        Ok(a) => a,
        Err(r) => return r,
    };
    if req.body_len.is_none() && !req.chunked {
        return Reply::error(411, "a Content-Length or chunked body is required");
    }
    let max = gw.catalog.max_upload();
    if req.body_len.is_some_and(|n| n > max) {
        return Reply::error(413, format!("blob exceeds the limit of {max} bytes"))
            .header("Connection", "close");
    }
    let ct = content_type(req.header("Content-Type"));
    let spec = UploadSpec {
        name: None,
        content_type: ct.as_deref(),
        expected_sha256: expected.as_deref(),
        auth_x: xs.as_deref(),
        owner: ev.as_ref().map(|e| e.pubkey.as_str()),
    };
    let declared = req.body_len;
    match gw.catalog.store_body(&spec, req.body, declared) {
        Ok((rec, created)) => {
            gw.stats.uploaded(rec.size, created);
            Reply::json(
                if created { 201 } else { 200 },
                &gw.catalog.blob_descriptor(&rec, rec.created_at),
            )
        }
        Err(e) => reply_for(&e, "Blossom upload"),
    }
}

/// BUD-06: would this upload be accepted?
fn upload_check(gw: &Gateway, req: &Req<'_>) -> Reply {
    if let Err(r) = upload_auth(gw, req) {
        return r;
    }
    let Some(len) = req.header("X-Content-Length") else {
        return Reply::error(411, "X-Content-Length is required");
    };
    let Ok(len) = len.trim().parse::<u64>() else {
        return Reply::error(400, "X-Content-Length must be a number");
    };
    if len == 0 {
        return Reply::error(400, "empty blobs are not stored");
    }
    let max = gw.catalog.max_upload();
    if len > max {
        return Reply::error(413, format!("blob exceeds the limit of {max} bytes"));
    }
    if req.header("X-Content-Type").is_some()
        && content_type(req.header("X-Content-Type")).is_none()
    {
        return Reply::error(415, "X-Content-Type is not a media type");
    }
    Reply::new(200)
}

fn get(gw: &Gateway, req: &Req<'_>, segment: &str) -> Reply {
    let Some(sha) = blob_segment(segment) else {
        return Reply::error(400, "not a blob path (/<sha256>[.ext])");
    };
    let ev = match authorize(gw, req, "get", None, gw.config.blossom.auth_get) {
        Ok(ev) => ev,
        Err(r) => return r,
    };
    if let Some(ev) = &ev {
        if ev.tag("x").is_some() && !auth::names_blob(ev, sha) {
            return Reply::error(401, format!("auth event has no x tag for {sha}"));
        }
    }
    match gw.catalog.get(sha) {
        Ok(Some(rec)) => download::serve(gw, req, &rec, Kind::Blob),
        Ok(None) => Reply::error(404, "blob not found"),
        Err(e) => Reply::error(500, format!("database error: {e}")),
    }
}

fn delete(gw: &Gateway, req: &Req<'_>, segment: &str) -> Reply {
    let Some(sha) = blob_segment(segment) else {
        return Reply::error(400, "not a blob path (/<sha256>[.ext])");
    };
    let ev = match authorize(gw, req, "delete", Some(sha), true) {
        Ok(Some(ev)) => ev,
        Ok(None) => return Reply::error(401, "delete needs an auth event"),
        Err(r) => return r,
    };
    match gw.catalog.get(sha) {
        Ok(Some(_)) => {}
        Ok(None) => return Reply::error(404, "blob not found"),
        Err(e) => return Reply::error(500, format!("database error: {e}")),
    }
    // A delete token works once: its id is kept until it expires (checked above, at most
    // blossom.auth_max_lifetime_secs ahead). Only an owner's token is recorded, so others
    // cannot fill the table.
    match gw.catalog.db().owned_since(&ev.pubkey, sha) {
        Ok(Some(_)) => {}
        Ok(None) => return Reply::error(403, "this pubkey does not own the blob"),
        Err(e) => return Reply::error(500, format!("database error: {e}")),
    }
    let expires = auth::expiration(&ev).unwrap_or_else(now_secs);
    match gw
        .catalog
        .db()
        .use_auth_event(&ev.id, expires, now_secs(), MAX_USED_DELETE_EVENTS)
    {
        Ok(true) => {}
        Ok(false) => {
            return Reply::error(401, "this delete auth event was already used")
                .header("WWW-Authenticate", "Nostr")
        }
        Err(e) => return Reply::error(500, format!("database error: {e}")),
    }
    match gw.catalog.release(sha, &ev.pubkey) {
        Ok(Released::NotOwner) => Reply::error(403, "this pubkey does not own the blob"),
        Ok(r) => Reply::json(
            200,
            &json!({ "deleted": sha, "data_removed": r == Released::Orphaned }),
        ),
        Err(e) => reply_for(&e, "Blossom delete"),
    }
}

fn list(gw: &Gateway, req: &Req<'_>, pubkey: &str) -> Reply {
    let Some(pubkey) = nostr::parse_pubkey(pubkey) else {
        return Reply::error(400, "not a public key (64 hex characters or npub)");
    };
    if let Err(r) = authorize(gw, req, "list", None, gw.config.blossom.auth_list) {
        return r;
    }
    list_owned(gw, req, &pubkey)
}

/// `GET /api/blossom/list/<pubkey>` on the API port: the same listing for operators (write
/// access instead of a Blossom auth event), for the web UI.
pub fn operator_list(gw: &Gateway, req: &Req<'_>, pubkey: &str) -> Reply {
    let Some(pubkey) = nostr::parse_pubkey(pubkey) else {
        return Reply::error(400, "not a public key (64 hex characters or npub)");
    };
    if let Err(r) = super::api::authorize_write(gw, req) {
        return r;
    }
    list_owned(gw, req, &pubkey)
}

fn list_owned(gw: &Gateway, req: &Req<'_>, pubkey: &str) -> Reply {
    let pubkey = pubkey.to_string();
    let limit = match req.limit(DEFAULT_LIST, MAX_LIST) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let number = |name: &str, default: i64| match req.query_param(name) {
        None | Some("") => Ok(default),
        Some(v) => v
            .parse::<i64>()
            .map_err(|_| Reply::error(400, format!("{name} must be a unix time"))),
    };
    let (since, until) = match (number("since", 0), number("until", i64::MAX)) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let cursor = match req.query_param("cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(c) if super::api::valid_sha256(c) => match gw.catalog.db().owned_since(&pubkey, c) {
            Ok(Some(at)) => Some((at, c.to_string())),
            Ok(None) => return Reply::error(400, "cursor is not a blob of this pubkey"),
            Err(e) => return Reply::error(500, format!("database error: {e}")),
        },
        Some(_) => return Reply::error(400, "cursor must be a sha256"),
    };
    let rows = match gw.catalog.db().owned(
        &pubkey,
        limit,
        cursor.as_ref().map(|(at, c)| (*at, c.as_str())),
        since,
        until,
    ) {
        Ok(rows) => rows,
        Err(e) => return Reply::error(500, format!("database error: {e}")),
    };
    let list: Vec<Value> = rows
        .iter()
        .map(|(rec, at)| gw.catalog.blob_descriptor(rec, *at))
        .collect();
    Reply::json(200, &Value::Array(list))
}

/// Reads a small JSON body, refusing big ones before reading.
fn small_body(req: &mut Req<'_>, max: u64) -> Result<Vec<u8>, Reply> {
    if req.body_len.is_some_and(|n| n > max) {
        return Err(
            Reply::error(413, format!("body exceeds {max} bytes")).header("Connection", "close")
        );
    }
    let mut body = Vec::new();
    req.body
        .take(max + 1)
        .read_to_end(&mut body)
        .map_err(|e| Reply::error(400, format!("reading the body: {e}")))?;
    if body.len() as u64 > max {
        return Err(
            Reply::error(413, format!("body exceeds {max} bytes")).header("Connection", "close")
        );
    }
    Ok(body)
}

fn mirror(gw: &Gateway, req: &mut Req<'_>) -> Reply {
    let UploadAuth { event: ev, xs, .. } = match upload_auth(gw, req) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let body = match small_body(req, MAX_MIRROR_BODY) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let url = match serde_json::from_slice::<Value>(&body) {
        Ok(v) => match v.get("url").and_then(Value::as_str) {
            Some(u) => u.to_string(),
            None => return Reply::error(400, "body must be {\"url\": \"...\"}"),
        },
        Err(e) => return Reply::error(400, format!("body is not JSON: {e}")),
    };
    let cfg = &gw.config.blossom;
    let fetched = match mirror::fetch(
        &url,
        cfg.mirror_allow_private,
        Duration::from_secs(cfg.mirror_timeout_secs),
    ) {
        Ok(f) => f,
        Err(FetchError::Refused(why)) => {
            return Reply::error(403, format!("mirror refused: {why}"))
        }
        Err(FetchError::Origin(why)) => return Reply::error(502, format!("mirror failed: {why}")),
    };
    let max = gw.catalog.max_upload();
    if fetched.length.is_some_and(|n| n > max) {
        return Reply::error(413, format!("origin blob exceeds the limit of {max} bytes"));
    }
    let ct = content_type(fetched.content_type.as_deref());
    let spec = UploadSpec {
        name: None,
        content_type: ct.as_deref(),
        expected_sha256: None,
        auth_x: xs.as_deref(),
        owner: ev.as_ref().map(|e| e.pubkey.as_str()),
    };
    let mut body = fetched.body;
    match gw.catalog.store_body(&spec, &mut body, fetched.length) {
        Ok((rec, created)) => {
            gw.stats.uploaded(rec.size, created);
            Reply::json(
                if created { 201 } else { 200 },
                &gw.catalog.blob_descriptor(&rec, rec.created_at),
            )
        }
        Err(UploadError::NotAuthorized(sha)) => Reply::error(
            409,
            format!("mirrored blob is {sha}, not the one the auth event names"),
        ),
        Err(UploadError::Truncated(why)) => Reply::error(502, format!("origin body: {why}")),
        Err(e) => reply_for(&e, "Blossom mirror"),
    }
}

fn report(gw: &Gateway, req: &mut Req<'_>) -> Reply {
    let body = match small_body(req, MAX_REPORT_BODY) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let ev = match Event::parse(&body) {
        Ok(ev) => ev,
        Err(e) => return Reply::error(400, e.to_string()),
    };
    if let Err(e) = ev.verify() {
        return Reply::error(400, e.to_string());
    }
    if ev.kind != 1984 {
        return Reply::error(
            400,
            format!("a report is a kind 1984 event, not {}", ev.kind),
        );
    }
    let blobs: Vec<&Vec<String>> = ev
        .tags
        .iter()
        .filter(|t| t.len() >= 2 && t[0] == "x" && super::api::valid_sha256(&t[1]))
        .collect();
    if blobs.is_empty() {
        return Reply::error(400, "a report names blobs in x tags (sha256)");
    }
    // Only reports about blobs stored here are kept (nobody fills the table with noise).
    let mut stored = false;
    for t in &blobs {
        match gw.catalog.get(&t[1]) {
            Ok(Some(_)) => stored = true,
            Ok(None) => {}
            Err(e) => return Reply::error(500, format!("database error: {e}")),
        }
    }
    if !stored {
        return Reply::error(404, "none of the reported blobs is stored here");
    }
    let report = Report {
        event_id: ev.id.clone(),
        reporter: ev.pubkey.clone(),
        blobs: blobs.iter().map(|t| t[1].clone()).collect(),
        report_type: blobs
            .iter()
            .find_map(|t| t.get(2))
            .cloned()
            .unwrap_or_else(|| "other".into()),
        content: ev.content.clone(),
        received_at: now_secs(),
    };
    match gw
        .catalog
        .db()
        .add_report(&report, &ev.to_json(), gw.config.blossom.max_reports)
    {
        Ok(new) => {
            log::info!(
                "report {} from {} about {} ({})",
                ev.id,
                ev.pubkey,
                report.blobs.join(" "),
                report.report_type
            );
            Reply::json(if new { 201 } else { 200 }, &json!({ "received": ev.id }))
        }
        Err(e) => Reply::error(500, format!("database error: {e}")),
    }
}

/// `GET /api/blossom/reports?limit=` on the API, for operators (write access).
pub fn reports(gw: &Gateway, req: &Req<'_>) -> Reply {
    if let Err(r) = super::api::authorize_write(gw, req) {
        return r;
    }
    let limit = match req.limit(DEFAULT_LIST, MAX_LIST) {
        Ok(n) => n,
        Err(r) => return r,
    };
    match gw.catalog.db().reports(limit) {
        Ok(list) => Reply::json(
            200,
            &Value::Array(
                list.into_iter()
                    .map(|r| {
                        json!({
                            "event_id": r.event_id,
                            "reporter": r.reporter,
                            "blobs": r.blobs,
                            "type": r.report_type,
                            "content": r.content,
                            "received_at": r.received_at,
                        })
                    })
                    .collect(),
            ),
        ),
        Err(e) => Reply::error(500, format!("database error: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_paths_and_types() {
        let sha = "a".repeat(64);
        assert_eq!(blob_segment(&sha), Some(sha.as_str()));
        assert_eq!(blob_segment(&format!("{sha}.png")), Some(sha.as_str()));
        for bad in [
            format!("{sha}png"),
            format!("{sha}."),
            format!("{sha}.a/b"),
            "ab".into(),
            "A".repeat(64),
        ] {
            assert_eq!(blob_segment(&bad), None, "{bad}");
        }
        assert_eq!(
            content_type(Some("Image/PNG; charset=x")).as_deref(),
            Some("image/png")
        );
        assert_eq!(content_type(Some("nonsense")), None);
        assert_eq!(content_type(Some("a/b\r\nX: y")), None);
    }
}
