//! `GET|HEAD /download/<sha256>` and the BEP-19 webseed `GET|HEAD /webseed/<info_hash>/<name>`:
//! the stored bytes with Range (206/416), If-Range, ETag and If-None-Match (304), read
//! straight from the memory-mapped blob or the chunk files the range touches. `/stream/<ih>/..`
//! of a stored torrent comes here too.
//!
//! Stored bytes are other people's content and never run on our origins: every response
//! carrying them has `Content-Security-Policy: sandbox` and `nosniff`, and on the API port
//! an active type (anything [`mime::is_passive`] does not list) goes out as an
//! `application/octet-stream` attachment. Blossom keeps the declared type (its clients show
//! blobs by it) under the same sandbox.

use super::router::{Method, Reply, ReplyBody, Req};
use crate::proto::http::range::{self, Ranged};
use crate::proto::http::{escape, mime};
use crate::server::Gateway;
use crate::store::db::FileRecord;

/// What kind of download, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Download,
    Webseed,
    /// A Blossom `GET /<sha256>` (counted with downloads).
    Blob,
}

pub fn download(gw: &Gateway, req: &Req<'_>, sha: &str) -> Reply {
    if !super::api::valid_sha256(sha) {
        return Reply::error(400, "not a sha256 (64 lowercase hex characters)");
    }
    match gw.catalog.get(sha) {
        Ok(Some(rec)) => serve(gw, req, &rec, Kind::Download),
        Ok(None) => Reply::error(404, "no such file"),
        Err(e) => Reply::error(500, format!("database error: {e}")),
    }
}

pub fn webseed(gw: &Gateway, req: &Req<'_>, info_hash: &str, path: &[&str]) -> Reply {
    let info_hash = info_hash.to_ascii_lowercase();
    if info_hash.len() != 40 || !info_hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Reply::error(400, "not an info-hash (40 hex characters)");
    }
    let rec = match gw.catalog.by_info_hash(&info_hash) {
        Ok(Some(rec)) => rec,
        Ok(None) => return Reply::error(404, "unknown info-hash"),
        Err(e) => return Reply::error(500, format!("database error: {e}")),
    };
    // Our torrents are single-file: the only path is the file's name.
    let decoded: Option<Vec<Vec<u8>>> = path.iter().map(|s| escape::decode(s).ok()).collect();
    let matches = decoded.is_some_and(|d| d.len() == 1 && d[0] == rec.name.as_bytes());
    if !matches {
        return Reply::error(404, "no such file in this torrent");
    }
    serve(gw, req, &rec, Kind::Webseed)
}

pub fn serve(gw: &Gateway, req: &Req<'_>, rec: &FileRecord, kind: Kind) -> Reply {
    let etag = format!("\"{}\"", rec.sha256);
    let common = |reply: Reply| {
        reply
            .header("ETag", etag.clone())
            .header("Accept-Ranges", "bytes")
            .header("Cache-Control", "public, max-age=31536000, immutable")
            .header("X-Content-Type-Options", "nosniff")
            .header("Content-Security-Policy", "sandbox")
    };
    if let Some(inm) = req.header("If-None-Match") {
        if inm.split(',').any(|t| t.trim() == etag || t.trim() == "*") {
            return common(Reply::new(304));
        }
    }
    let size = rec.size;
    // If-Range (RFC 9110 §13.1.5): the range only if the client's copy is ours (by our strong
    // ETag; we send no Last-Modified, so a date never matches), else the whole file.
    let range_header = match req.header("If-Range") {
        Some(v) if v.trim() != etag => None,
        _ => req.header("Range"),
    };
    let (status, range) = match range::resolve(range_header, size) {
        Ranged::Full => (200, 0..size),
        Ranged::Partial(r) => (206, r),
        Ranged::Unsatisfiable => {
            return common(Reply::error(416, "range not satisfiable"))
                .header("Content-Range", format!("bytes */{size}"));
        }
        Ranged::Malformed => {
            return common(Reply::error(416, "malformed Range header"))
                .header("Content-Range", format!("bytes */{size}"));
        }
    };
    let len = range.end - range.start;
    let body = if req.method == Method::Head {
        ReplyBody::Stream(Box::new(std::io::empty()), len)
    } else {
        match gw.catalog.read(rec, range.clone()) {
            Ok(b) => ReplyBody::Mapped(b),
            Err(e) => {
                log::error!("reading stored file {}: {e}", rec.sha256);
                gw.stats.read_error();
                return Reply::error(500, "stored data is unreadable");
            }
        }
    };
    gw.stats.served(kind, len);
    let passive = mime::is_passive(&rec.content_type);
    let content_type = if passive || kind == Kind::Blob {
        rec.content_type.clone()
    } else {
        mime::OCTET_STREAM.to_string()
    };
    let mut reply = common(Reply {
        status,
        headers: vec![("Content-Type", content_type)],
        body,
    });
    if status == 206 {
        reply = reply.header(
            "Content-Range",
            format!("bytes {}-{}/{size}", range.start, range.end - 1),
        );
    }
    match kind {
        Kind::Download => {
            let how = if passive { "inline" } else { "attachment" };
            reply = reply.header("Content-Disposition", disposition(how, &rec.name));
        }
        Kind::Webseed if !passive => reply = reply.header("Content-Disposition", "attachment"),
        Kind::Webseed | Kind::Blob => {}
    }
    reply
}

/// `inline` or `attachment` with an ASCII fallback name and the exact UTF-8 name (RFC 6266).
pub(crate) fn disposition(how: &str, name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "{how}; filename=\"{ascii}\"; filename*=UTF-8''{}",
        escape::encode(name.as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disposition_is_safe() {
        assert_eq!(
            disposition("inline", "a\"b ü.txt"),
            "inline; filename=\"a_b _.txt\"; filename*=UTF-8''a%22b%20%C3%BC.txt"
        );
    }
}
