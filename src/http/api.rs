//! The files API: `PUT /api/files/<name>`, `GET /api/files`, `GET /api/files/<sha256>`,
//! `GET /api/files/<sha256>/torrent`, `DELETE /api/files/<sha256>`, and write authorization.

use super::router::{Reply, Req};
use crate::config::Config;
use crate::http::router::Method;
use crate::proto::{bt::metainfo, http::escape, http::url, nostr, nostr::auth};
use crate::server::Gateway;
use serde_json::json;

/// Largest page of `GET /api/files`.
pub const MAX_PAGE: usize = 1000;
pub const DEFAULT_PAGE: usize = 50;

/// Checks that a sha256 path segment is 64 lowercase hex characters.
pub fn valid_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether a request gets loopback's trust (writes without credentials): `api.loopback_writes`
/// is on, no proxy is configured (behind one every client is loopback), the connection is
/// from this host, `Host` names this gateway (a localhost name, a loopback address or the
/// public URL's host: a DNS-rebinding page names its own), and `Origin` is absent or this
/// gateway's own (a page on another site, or a sandboxed one with `null`, is refused).
pub fn loopback_trusted(gw: &Gateway, req: &Req<'_>) -> Result<(), &'static str> {
    loopback_check(&gw.config, &gw.public_url, req)
}

fn loopback_check(config: &Config, public_url: &str, req: &Req<'_>) -> Result<(), &'static str> {
    if !config.api.loopback_writes {
        return Err("loopback writes are off (api.loopback_writes)");
    }
    if !req.is_loopback() {
        return Err("not from loopback");
    }
    if !config.tracker.trusted_proxies.is_empty() || !config.tracker.proxy_header.is_empty() {
        return Err("loopback is not trusted for writes when a proxy is configured");
    }
    let public_host = url::host(public_url);
    let Some(host) = req.host() else {
        return Err("loopback writes need a Host header");
    };
    if !(url::is_local_host(&host) || public_host.as_deref() == Some(host.as_str())) {
        return Err("loopback writes need a Host naming this gateway");
    }
    if let Some(origin) = req.header("Origin") {
        let own = [
            req.header("Host")
                .map(|h| format!("http://{}", h.trim().to_ascii_lowercase())),
            url::origin(public_url),
        ];
        let origin = url::origin(origin);
        if origin.is_none() || !own.contains(&origin) {
            return Err("loopback writes are refused from another site's Origin");
        }
    }
    Ok(())
}

/// Write access: trusted loopback (see [`loopback_trusted`]), a configured bearer token, or
/// a NIP-98 event signed by a configured pubkey. Returns the NIP-98 `payload` hash, if any,
/// which the body must match.
pub fn authorize_write(gw: &Gateway, req: &Req<'_>) -> Result<Option<String>, Reply> {
    super::ui::csrf_check(req)?;
    let api = &gw.config.api;
    let loopback = loopback_trusted(gw, req);
    if let Some(auth) = req
        .header("Authorization")
        .filter(|a| a.starts_with("Nostr "))
    {
        if loopback.is_ok() {
            return Ok(None);
        }
        let query = if req.query.is_empty() {
            String::new()
        } else {
            format!("?{}", req.query)
        };
        let url = format!("{}{}{query}", gw.public_url, req.path);
        let method = match req.method {
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Delete => "DELETE",
            _ => "GET",
        };
        let has_body = req.chunked || req.body_len.is_some_and(|n| n > 0);
        return check_nip98(
            &api.nostr_pubkeys,
            auth,
            &url,
            (method, has_body),
            api.nostr_auth_window_secs,
        );
    }
    check_write(&api.write_tokens, loopback, req).map(|()| None)
}

fn check_nip98(
    allowed: &[String],
    header: &str,
    url: &str,
    (method, has_body): (&str, bool),
    window: i64,
) -> Result<Option<String>, Reply> {
    let refuse =
        |e: auth::AuthError| Reply::error(e.status, e.reason).header("WWW-Authenticate", "Nostr");
    let ev = auth::parse_header(header).map_err(refuse)?;
    let need = auth::HttpNeed {
        url,
        method,
        now: crate::catalog::now_secs(),
        window,
        has_body,
    };
    let payload = auth::check_http(&ev, &need).map_err(refuse)?;
    let known = allowed
        .iter()
        .any(|k| nostr::parse_pubkey(k).as_deref() == Some(ev.pubkey.as_str()));
    if known {
        Ok(payload)
    } else {
        Err(Reply::error(
            403,
            format!("pubkey {} is not allowed to write", ev.pubkey),
        ))
    }
}

fn check_write(
    tokens: &[String],
    loopback: Result<(), &'static str>,
    req: &Req<'_>,
) -> Result<(), Reply> {
    let why_not_loopback = match loopback {
        Ok(()) => return Ok(()),
        Err(why) => why,
    };
    let Some(auth) = req.header("Authorization") else {
        let mut reason =
            "write access needs Authorization: Bearer <token> or Nostr <NIP-98 event>".to_string();
        if req.is_loopback() {
            reason = format!("{reason} ({why_not_loopback})");
        }
        return Err(Reply::error(401, reason).header("WWW-Authenticate", "Bearer, Nostr"));
    };
    let Some(token) = auth.strip_prefix("Bearer ") else {
        return Err(Reply::error(
            401,
            "unsupported Authorization scheme (use Bearer or Nostr)",
        )
        .header("WWW-Authenticate", "Bearer, Nostr"));
    };
    let known = tokens
        .iter()
        .any(|t| constant_time_eq(t.as_bytes(), token.trim().as_bytes()));
    if known {
        Ok(())
    } else {
        Err(Reply::error(403, "token is not allowed to write"))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Decodes and checks a file name from a path segment.
fn file_name(segment: &str) -> Result<String, Reply> {
    let bytes =
        escape::decode(segment).map_err(|e| Reply::error(400, format!("file name: {e}")))?;
    let name =
        String::from_utf8(bytes).map_err(|_| Reply::error(400, "file name is not valid UTF-8"))?;
    metainfo::check_component(&name).map_err(|r| Reply::error(400, format!("file name {r}")))?;
    if name.chars().any(char::is_control) {
        return Err(Reply::error(400, "file name contains control characters"));
    }
    Ok(name)
}

pub fn upload(gw: &Gateway, req: &mut Req<'_>, segment: &str) -> Reply {
    let payload = match authorize_write(gw, req) {
        Ok(p) => p,
        Err(reply) => return reply,
    };
    let name = match file_name(segment) {
        Ok(n) => n,
        Err(reply) => return reply,
    };
    let expected = match req.header("X-SHA-256") {
        None => None,
        Some(h) => {
            let h = h.trim().to_ascii_lowercase();
            if !valid_sha256(&h) {
                return Reply::error(400, "X-SHA-256 must be 64 hex characters");
            }
            Some(h)
        }
    };
    let expected = match (expected, payload) {
        (Some(h), Some(p)) if h != p => {
            return Reply::error(409, "X-SHA-256 and the NIP-98 payload tag disagree")
        }
        (h, p) => h.or(p),
    };
    if req.body_len.is_none() && !req.chunked {
        return Reply::error(411, "a Content-Length or chunked body is required");
    }
    if req.body_len.is_some_and(|n| n > gw.catalog.max_upload()) {
        return Reply::error(
            413,
            format!(
                "upload exceeds the limit of {} bytes",
                gw.catalog.max_upload()
            ),
        )
        .header("Connection", "close");
    }
    let declared = req.body_len;
    match gw
        .catalog
        .upload(&name, req.body, declared, expected.as_deref())
    {
        Ok((rec, created)) => {
            gw.stats.uploaded(rec.size, created);
            Reply::json(
                if created { 201 } else { 200 },
                &gw.catalog.descriptor(&rec),
            )
        }
        Err(e) => {
            if e.status() >= 500 {
                log::error!("upload of {name:?} failed: {e}");
            }
            Reply::error(e.status(), e.to_string()).header("Connection", "close")
        }
    }
}

pub fn list(gw: &Gateway, req: &Req<'_>) -> Reply {
    let limit = match req.limit(DEFAULT_PAGE, MAX_PAGE) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let cursor = match req.query_param("cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => match parse_cursor(c) {
            Some(c) => Some(c),
            None => return Reply::error(400, "malformed cursor"),
        },
    };
    let rows = match gw
        .catalog
        .list(limit, cursor.as_ref().map(|(t, s)| (*t, s.as_str())))
    {
        Ok(r) => r,
        Err(e) => return Reply::error(500, format!("database error: {e}")),
    };
    let next = (rows.len() == limit)
        .then(|| {
            rows.last()
                .map(|r| format!("{}-{}", r.created_at, r.sha256))
        })
        .flatten();
    let files: Vec<_> = rows.iter().map(|r| gw.catalog.descriptor(r)).collect();
    Reply::json(200, &json!({ "files": files, "next_cursor": next }))
}

/// A cursor is `<created_at>-<sha256>` of the last file seen.
fn parse_cursor(c: &str) -> Option<(i64, String)> {
    let (at, sha) = c.split_once('-')?;
    valid_sha256(sha).then(|| Some((at.parse().ok()?, sha.to_string())))?
}

/// Looks a stored file up by a sha256 path segment, or explains why not.
fn lookup(gw: &Gateway, sha: &str) -> Result<crate::store::db::FileRecord, Reply> {
    if !valid_sha256(sha) {
        return Err(Reply::error(
            400,
            "not a sha256 (64 lowercase hex characters)",
        ));
    }
    match gw.catalog.get(sha) {
        Ok(Some(rec)) => Ok(rec),
        Ok(None) => Err(Reply::error(404, "no such file")),
        Err(e) => Err(Reply::error(500, format!("database error: {e}"))),
    }
}

pub fn get(gw: &Gateway, sha: &str) -> Reply {
    match lookup(gw, sha) {
        Ok(rec) => Reply::json(200, &gw.catalog.descriptor(&rec)),
        Err(r) => r,
    }
}

pub fn torrent(gw: &Gateway, sha: &str) -> Reply {
    let rec = match lookup(gw, sha) {
        Ok(rec) => rec,
        Err(r) => return r,
    };
    match gw.catalog.torrent(&rec) {
        Ok(Some(bytes)) => Reply::bytes(200, "application/x-bittorrent", bytes).header(
            "Content-Disposition",
            format!(
                "attachment; filename*=UTF-8''{}.torrent",
                escape::encode(rec.name.as_bytes())
            ),
        ),
        Ok(None) => Reply::error(404, "no torrent for this file"),
        Err(e) => Reply::error(500, format!("database error: {e}")),
    }
}

pub fn delete(gw: &Gateway, req: &Req<'_>, sha: &str) -> Reply {
    if let Err(reply) = authorize_write(gw, req) {
        return reply;
    }
    if !valid_sha256(sha) {
        return Reply::error(400, "not a sha256 (64 lowercase hex characters)");
    }
    // `?purge=true`: the operator removes the file for every owner (moderation).
    if req.query_param("purge") == Some("true") {
        return match gw.catalog.delete(sha) {
            Ok(true) => Reply::json(200, &json!({ "deleted": sha, "data_removed": true })),
            Ok(false) => Reply::error(404, "no such file"),
            Err(e) => Reply::error(500, e.to_string()),
        };
    }
    match gw.catalog.release_api(sha) {
        Ok(Some(removed)) => Reply::json(200, &json!({ "deleted": sha, "data_removed": removed })),
        Ok(None) => Reply::error(404, "no such file"),
        Err(e) => Reply::error(500, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req_with<'a>(
        remote: &str,
        headers: &[(&str, &str)],
        body: &'a mut std::io::Empty,
    ) -> Req<'a> {
        Req {
            method: Method::Put,
            path: "/api/files/x",
            query: "",
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            remote: Some(remote.parse().unwrap()),
            body,
            body_len: Some(1),
            chunked: false,
        }
    }

    const PUBLIC: &str = "https://gw.example";

    fn status_with(config: &Config, remote: &str, headers: &[(&str, &str)]) -> Option<u16> {
        let mut body = std::io::empty();
        let req = req_with(remote, headers, &mut body);
        let tokens = vec!["0123456789abcdef-secret".to_string()];
        let loopback = loopback_check(config, PUBLIC, &req);
        check_write(&tokens, loopback, &req).err().map(|r| r.status)
    }

    fn status_for(remote: &str, auth: Option<&str>) -> Option<u16> {
        let mut headers = vec![("Host", "127.0.0.1:9877")];
        headers.extend(auth.map(|a| ("authorization", a)));
        status_with(&Config::default(), remote, &headers)
    }

    #[test]
    fn writes_need_loopback_or_a_known_token() {
        assert_eq!(status_for("127.0.0.1:5000", None), None);
        assert_eq!(status_for("[::1]:5000", None), None);
        assert_eq!(status_for("203.0.113.9:5000", None), Some(401));
        assert_eq!(status_for("203.0.113.9:5000", Some("Basic abc")), Some(401));
        assert_eq!(
            status_for("203.0.113.9:5000", Some("Bearer wrong-token-here")),
            Some(403)
        );
        let ok = status_for("203.0.113.9:5000", Some("Bearer 0123456789abcdef-secret"));
        assert_eq!(ok, None);
    }

    #[test]
    fn loopback_trust_needs_our_host_our_origin_and_no_proxy() {
        let c = Config::default();
        let lo = "127.0.0.1:5000";
        // A dual-stack listener's IPv4 loopback clients.
        assert_eq!(
            status_with(&c, "[::ffff:127.0.0.1]:5000", &[("Host", "localhost")]),
            None
        );
        assert_eq!(status_for("[::ffff:127.0.0.1]:5000", None), None);
        assert_eq!(status_for("[::ffff:10.1.2.3]:5000", None), Some(401));
        for host in [
            "localhost:9877",
            "LOCALHOST",
            "ui.localhost",
            "[::1]:9877",
            "gw.example",
        ] {
            assert_eq!(status_with(&c, lo, &[("Host", host)]), None, "{host}");
        }
        // DNS rebinding: the attacker's name resolves to 127.0.0.1.
        for host in [
            "evil.example:9877",
            "localhost.evil.example",
            "10.0.0.1",
            "",
            "a b",
        ] {
            assert_eq!(status_with(&c, lo, &[("Host", host)]), Some(401), "{host}");
        }
        assert_eq!(status_with(&c, lo, &[]), Some(401), "no Host");
        let same = [
            ("Host", "127.0.0.1:9877"),
            ("Origin", "http://127.0.0.1:9877"),
        ];
        assert_eq!(status_with(&c, lo, &same), None);
        let public = [("Host", "gw.example"), ("Origin", "https://gw.example")];
        assert_eq!(status_with(&c, lo, &public), None);
        for origin in ["http://evil.example", "null", "http://127.0.0.1:1234", "x"] {
            let h = [("Host", "127.0.0.1:9877"), ("Origin", origin)];
            assert_eq!(status_with(&c, lo, &h), Some(401), "{origin}");
        }
        let mut proxied = Config::default();
        proxied.tracker.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        assert_eq!(
            status_with(&proxied, lo, &[("Host", "localhost")]),
            Some(401)
        );
        let mut header_only = Config::default();
        header_only.tracker.proxy_header = "X-Forwarded-For".into();
        assert_eq!(
            status_with(&header_only, lo, &[("Host", "localhost")]),
            Some(401)
        );
        let mut off = Config::default();
        off.api.loopback_writes = false;
        assert_eq!(status_with(&off, lo, &[("Host", "localhost")]), Some(401));
    }

    #[test]
    fn nip98_needs_a_configured_pubkey() {
        let keys = nostr::Keys::from_secret(&[5u8; 32]).unwrap();
        let url = "http://gw.example/api/files/a.txt";
        let tags = vec![
            vec!["u".to_string(), url.to_string()],
            vec!["method".to_string(), "PUT".to_string()],
        ];
        let ev = keys.sign(
            crate::catalog::now_secs(),
            27235,
            tags,
            String::new(),
            &[0; 32],
        );
        let header = format!(
            "Nostr {}",
            crate::proto::nostr::base64::encode(ev.to_json().as_bytes())
        );
        let allowed = vec![keys.npub()];
        assert!(matches!(
            check_nip98(&allowed, &header, url, ("PUT", false), 60),
            Ok(None)
        ));
        let other = vec!["ab".repeat(32)];
        let e = check_nip98(&other, &header, url, ("PUT", false), 60).unwrap_err();
        assert_eq!(e.status, 403);
        let e = check_nip98(&allowed, &header, url, ("DELETE", false), 60).unwrap_err();
        assert_eq!(e.status, 401);
        assert!(e.headers.iter().any(|(k, _)| *k == "X-Reason"));
    }

    #[test]
    fn names_and_cursors() {
        assert_eq!(file_name("a%20b.txt").ok().as_deref(), Some("a b.txt"));
        for bad in ["..", "a%2Fb", "a%00b", "%zz", "a%0Ab", "%FF"] {
            assert!(file_name(bad).is_err(), "{bad}");
        }
        assert!(file_name(&"n".repeat(10_000)).is_err());
        let sha = "a".repeat(64);
        assert_eq!(parse_cursor(&format!("12-{sha}")), Some((12, sha.clone())));
        assert_eq!(parse_cursor("12-xyz"), None);
        assert_eq!(parse_cursor("x"), None);
        assert!(constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd"));
    }
}
