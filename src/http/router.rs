//! Request and reply values, the one routing `match`, and the bridge to tiny_http.
//!
//! Handlers take a [`Req`] (method, path, query, headers, client address and body reader)
//! and return a [`Reply`], so they can be tested without a socket. Every error reply carries
//! its reason both as a JSON body `{"error": ...}` and as an `X-Reason` header.

use super::{api, blossom, download, status, tracker};
use crate::server::Gateway;
use crate::store::content::Body;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Put,
    Post,
    Delete,
    Options,
    Other,
}

impl Method {
    pub fn parse(m: &str) -> Method {
        match m {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "PUT" => Method::Put,
            "POST" => Method::Post,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }
}

/// A request as handlers see it.
pub struct Req<'a> {
    pub method: Method,
    /// The raw path, without the query.
    pub path: &'a str,
    pub query: &'a str,
    pub headers: Vec<(String, String)>,
    pub remote: Option<SocketAddr>,
    pub body: &'a mut dyn Read,
    /// Content-Length, if the client sent one (None for chunked bodies).
    pub body_len: Option<u64>,
    pub chunked: bool,
    /// Tells whether the client has already closed its side (see `reaper::peer_gone`).
    pub peer_closed: &'a dyn Fn() -> bool,
}

impl Req<'_> {
    /// A header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter's raw value.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|p| p.split_once('=').or(Some((p, ""))))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// The `limit` query parameter: `default` when absent, 400 outside 1..=max.
    pub fn limit(&self, default: usize, max: usize) -> Result<usize, Reply> {
        match self.query_param("limit") {
            None => Ok(default),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(Reply::error(400, format!("limit must be from 1 to {max}"))),
            },
        }
    }

    /// The client's IP, IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, from a dual-stack
    /// listener) as IPv4.
    pub fn remote_ip(&self) -> Option<IpAddr> {
        self.remote.map(|a| crate::tracker::canonical(a.ip()))
    }

    /// Whether the connection comes from this host (127.0.0.0/8, `::1`, or either mapped).
    /// This says nothing of who made the request: see `api::loopback_trusted`.
    pub fn is_loopback(&self) -> bool {
        self.remote_ip().is_some_and(|ip| ip.is_loopback())
    }

    /// The `Host` header's host, lowercase, without the port or IPv6 brackets.
    pub fn host(&self) -> Option<String> {
        self.header("Host")
            .and_then(crate::proto::url::authority_host)
    }
}

/// A reply body.
pub enum ReplyBody {
    Empty,
    Bytes(Vec<u8>),
    /// A reader and its exact length.
    Stream(Box<dyn Read + Send>, u64),
    /// Stored bytes, written straight from their memory maps.
    Mapped(Body),
}

/// A reply as handlers build it.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: ReplyBody,
}

impl Reply {
    pub fn new(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: ReplyBody::Empty,
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    pub fn json(status: u16, value: &Value) -> Reply {
        Reply::bytes(status, "application/json", value.to_string().into_bytes())
    }

    pub fn bytes(status: u16, content_type: &str, body: Vec<u8>) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type", content_type.to_string())],
            body: ReplyBody::Bytes(body),
        }
    }

    /// An error with its reason in the body and in `X-Reason`.
    pub fn error(status: u16, reason: impl Into<String>) -> Reply {
        let reason = reason.into();
        // Header values must be one line of visible ASCII.
        let header: String = reason
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .collect();
        Reply::json(status, &json!({ "error": reason })).header("X-Reason", header)
    }

    pub fn body_len(&self) -> u64 {
        match &self.body {
            ReplyBody::Empty => 0,
            ReplyBody::Bytes(b) => b.len() as u64,
            ReplyBody::Stream(_, n) => *n,
            ReplyBody::Mapped(b) => b.len(),
        }
    }
}

/// Which rate-limit bucket a request draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    Read,
    Write,
}

pub fn class_of(method: Method) -> RouteClass {
    match method {
        Method::Put | Method::Post | Method::Delete => RouteClass::Write,
        _ => RouteClass::Read,
    }
}

/// Routes one request.
pub fn route(gw: &Gateway, req: &mut Req<'_>) -> Reply {
    let path = req.path.to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    use Method::*;
    match (req.method, segments.as_slice()) {
        (Put, ["api", "files", name]) => api::upload(gw, req, name),
        (Put, ["api", "files", _, _, ..]) => Reply::error(400, "file name must not contain '/'"),
        (Get | Head, ["api", "files"]) => api::list(gw, req),
        (Get | Head, ["api", "files", sha]) => api::get(gw, sha),
        (Get | Head, ["api", "files", sha, "torrent"]) => api::torrent(gw, sha),
        (Delete, ["api", "files", sha]) => api::delete(gw, req, sha),
        (Get | Head, ["download", sha]) => download::download(gw, req, sha),
        (Get | Head, ["webseed", info_hash, rest @ ..]) => {
            download::webseed(gw, req, info_hash, rest)
        }
        (Get | Head, ["api", "health"]) => status::health(gw),
        (Get | Head, ["api", "stats"]) => status::stats(gw),
        (Get | Head, ["api", "webseed", "health"]) => status::webseed_health(gw),
        (Get | Head, ["api", "diagnostics"]) => status::diagnostics(gw),
        (Get | Head, ["metrics"]) => status::metrics(gw),
        (Get | Head, ["api", "p2p", "stats"]) => status::p2p_stats(gw),
        (Get | Head, ["api", "blossom", "reports"]) => blossom::reports(gw, req),
        (Get, ["announce"]) => tracker::announce(gw, req),
        (Get, ["scrape"]) => tracker::scrape(gw, req),
        (Get | Head, ["api", "tracker", "allowlist"]) => tracker::allowlist(gw),
        (Put, ["api", "tracker", "allowlist", hash]) => tracker::allow(gw, req, hash),
        (Delete, ["api", "tracker", "allowlist", hash]) => tracker::disallow(gw, req, hash),
        (_, ["announce" | "scrape"]) => {
            Reply::error(405, "method not allowed here").header("Allow", "GET")
        }
        (_, ["api", "files", ..] | ["download", ..] | ["webseed", ..] | ["metrics"]) => {
            Reply::error(405, "method not allowed here").header("Allow", "GET, HEAD, PUT, DELETE")
        }
        (_, ["api", "health" | "stats" | "diagnostics"]) => {
            Reply::error(405, "method not allowed here").header("Allow", "GET, HEAD")
        }
        _ => Reply::error(404, "no such endpoint"),
    }
}

/// Sends a reply through tiny_http, always with a Content-Length (never chunked).
pub fn respond(request: tiny_http::Request, reply: Reply) {
    let len = reply.body_len();
    let reader: Box<dyn Read + Send> = match reply.body {
        ReplyBody::Empty => Box::new(std::io::empty()),
        ReplyBody::Bytes(b) => Box::new(std::io::Cursor::new(b)),
        ReplyBody::Stream(r, _) => r,
        ReplyBody::Mapped(body) => {
            return respond_mapped(request, reply.status, &reply.headers, body);
        }
    };
    let mut headers: Vec<tiny_http::Header> = reply
        .headers
        .iter()
        .filter_map(|(k, v)| tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).ok())
        .collect();
    if let Ok(h) = tiny_http::Header::from_bytes(&b"Server"[..], &b"torrent-gateway"[..]) {
        headers.push(h);
    }
    let response = tiny_http::Response::new(
        tiny_http::StatusCode(reply.status),
        headers,
        reader,
        Some(len as usize),
        None,
    )
    .with_chunked_threshold(usize::MAX);
    if let Err(e) = request.respond(response) {
        log::debug!("sending a reply failed: {e}");
    }
}

/// Writes a response whose body is mapped stored data through the connection's raw writer.
///
/// tiny_http copies bodies through an 8 KiB buffer into 1 KiB-buffered writes, one syscall
/// per 8 KiB; here the head is written by hand and the body goes out in large writes straight
/// from the mappings. Keep-alive is left to tiny_http, which reads the next request once
/// this writer is dropped (and closes after HTTP/1.0 or `Connection: close` requests).
fn respond_mapped(
    request: tiny_http::Request,
    status: u16,
    headers: &[(&'static str, String)],
    mut body: Body,
) {
    let close = request.http_version() == &tiny_http::HTTPVersion(1, 0)
        || request
            .headers()
            .iter()
            .any(|h| h.field.equiv("Connection") && h.value.as_str().eq_ignore_ascii_case("close"));
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nServer: torrent-gateway\r\nDate: {}\r\n",
        reason_phrase(status),
        crate::proto::httpdate::format(std::time::SystemTime::now())
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut writer = request.into_writer();
    let result = writer
        .write_all(head.as_bytes())
        .and_then(|()| body.write_to(&mut writer))
        .and_then(|()| writer.flush());
    if let Err(e) = result {
        log::debug!("sending stored data failed: {e}");
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        _ => "",
    }
}
