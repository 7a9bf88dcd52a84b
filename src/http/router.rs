//! Request and reply values, the one routing `match`, and the bridge to tiny_http.
//!
//! Handlers take a [`Req`] (method, path, query, headers, client address and body reader)
//! and return a [`Reply`], so they can be tested without a socket. Every error reply carries
//! its reason both as a JSON body `{"error": ...}` and as an `X-Reason` header.

use super::{api, download, status};
use crate::server::Gateway;
use serde_json::{json, Value};
use std::io::Read;
use std::net::SocketAddr;

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

    pub fn is_loopback(&self) -> bool {
        self.remote.is_some_and(|a| a.ip().is_loopback())
    }
}

/// A reply body.
pub enum ReplyBody {
    Empty,
    Bytes(Vec<u8>),
    /// A reader and its exact length.
    Stream(Box<dyn Read + Send>, u64),
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
    let mut headers: Vec<tiny_http::Header> = reply
        .headers
        .iter()
        .filter_map(|(k, v)| tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).ok())
        .collect();
    if let Ok(h) = tiny_http::Header::from_bytes(&b"Server"[..], &b"torrent-gateway"[..]) {
        headers.push(h);
    }
    let len = reply.body_len();
    let reader: Box<dyn Read + Send> = match reply.body {
        ReplyBody::Empty => Box::new(std::io::empty()),
        ReplyBody::Bytes(b) => Box::new(std::io::Cursor::new(b)),
        ReplyBody::Stream(r, _) => r,
    };
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
