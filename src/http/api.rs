//! The files API: `PUT /api/files/<name>`, `GET /api/files`, `GET /api/files/<sha256>`,
//! `GET /api/files/<sha256>/torrent`, `DELETE /api/files/<sha256>`, and write authorization.

use super::router::{Reply, Req};
use crate::catalog::UploadError;
use crate::proto::{escape, metainfo};
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

/// Write access: loopback always; elsewhere a configured bearer token.
pub fn authorize_write(gw: &Gateway, req: &Req<'_>) -> Result<(), Reply> {
    check_write(&gw.config.api.write_tokens, req)
}

fn check_write(tokens: &[String], req: &Req<'_>) -> Result<(), Reply> {
    if req.is_loopback() {
        return Ok(());
    }
    let Some(auth) = req.header("Authorization") else {
        return Err(
            Reply::error(401, "write access needs Authorization: Bearer <token>")
                .header("WWW-Authenticate", "Bearer"),
        );
    };
    let Some(token) = auth.strip_prefix("Bearer ") else {
        return Err(
            Reply::error(401, "unsupported Authorization scheme (use Bearer)")
                .header("WWW-Authenticate", "Bearer"),
        );
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
    if let Err(reply) = authorize_write(gw, req) {
        return reply;
    }
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
    let chunked = req.chunked;
    let peer_closed = req.peer_closed;
    let complete = move || !(chunked && peer_closed());
    match gw
        .catalog
        .upload(&name, req.body, declared, expected.as_deref(), &complete)
    {
        Ok((rec, created)) => {
            gw.stats.uploaded(rec.size, created);
            Reply::json(
                if created { 201 } else { 200 },
                &gw.catalog.descriptor(&rec),
            )
        }
        Err(e) => {
            let status = match e {
                UploadError::TooLarge => 413,
                UploadError::Truncated(_) | UploadError::Empty => 400,
                UploadError::HashMismatch { .. } => 409,
                UploadError::NotAuthorized(_) => 401,
                UploadError::Io(_) | UploadError::Db(_) => {
                    log::error!("upload of {name:?} failed: {e}");
                    500
                }
            };
            Reply::error(status, e.to_string()).header("Connection", "close")
        }
    }
}

pub fn list(gw: &Gateway, req: &Req<'_>) -> Reply {
    let limit = match req.query_param("limit") {
        None => DEFAULT_PAGE,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => return Reply::error(400, format!("limit must be from 1 to {MAX_PAGE}")),
        },
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
    match gw.catalog.delete(sha) {
        Ok(true) => Reply::json(200, &json!({ "deleted": sha })),
        Ok(false) => Reply::error(404, "no such file"),
        Err(e) => Reply::error(500, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::router::Method;

    fn status_for(remote: &str, auth: Option<&str>) -> Option<u16> {
        let mut body = std::io::empty();
        let headers = auth
            .map(|a| vec![("authorization".to_string(), a.to_string())])
            .unwrap_or_default();
        let req = Req {
            method: Method::Put,
            path: "/api/files/x",
            query: "",
            headers,
            remote: Some(remote.parse().unwrap()),
            body: &mut body,
            body_len: Some(1),
            chunked: false,
            peer_closed: &|| false,
        };
        let tokens = vec!["0123456789abcdef-secret".to_string()];
        check_write(&tokens, &req).err().map(|r| r.status)
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
