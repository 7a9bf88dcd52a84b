//! Request and reply values and the one routing `match`.
//!
//! Handlers take a [`Req`] (method, path, query, headers, client address and body reader)
//! and return a [`Reply`], so they can be tested without a socket. Every error reply carries
//! its reason both as a JSON body `{"error": ...}` and as an `X-Reason` header.

use super::respond::{Deferred, Source};
use super::{api, blossom, download, overview, status, stream, torrents, tracker, ui};
use crate::server::Gateway;
use crate::store::content::Body;
use serde_json::{json, Value};
use std::io::Read;
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
            .and_then(crate::proto::http::url::authority_host)
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
    /// Bytes produced over time, of unknown length (sent chunked); the connection layer
    /// writes them as they become ready without holding a worker.
    Source(Box<dyn Source>),
    /// Bytes produced over time whose length is known (sent with a Content-Length; the
    /// source must produce exactly that many).
    SizedSource(Box<dyn Source>, u64),
    /// The whole reply is not known yet (a stream waiting for metadata or its first piece):
    /// the connection layer polls it without holding a worker, and sends what it gives;
    /// the status and headers around it are ignored.
    Deferred(Box<dyn Deferred>),
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
            ReplyBody::Source(_) => 0,
            ReplyBody::SizedSource(_, n) => *n,
            ReplyBody::Deferred(_) => 0,
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
        (Post, ["api", "torrents"]) => torrents::add(gw, req),
        (Get | Head, ["api", "torrents"]) => torrents::list(gw),
        (Get | Head, ["api", "torrents", ih]) => torrents::get(gw, ih),
        (Delete, ["api", "torrents", ih]) => torrents::delete(gw, req, ih),
        (Post, ["api", "torrents", ih, "pin"]) => torrents::pin(gw, req, ih),
        (Get | Head, ["stream", ih, file @ ..]) if !file.is_empty() => {
            stream::stream(gw, req, ih, file)
        }
        (Get | Head, ["webseed", info_hash, rest @ ..]) => {
            download::webseed(gw, req, info_hash, rest)
        }
        (Get | Head, [""] | ["ui", _]) => match ui::asset(gw, req, &path) {
            Some(reply) => reply,
            None => Reply::error(404, "no such endpoint"),
        },
        (Get | Head, ["livez"]) => overview::livez(),
        (Get | Head, ["readyz"]) => overview::readyz(gw),
        (Get | Head, ["api", "overview"]) => overview::overview(gw),
        (Get | Head, ["api", "config"]) => overview::config(gw),
        (Get | Head, ["api", "tracker", "swarms"]) => overview::swarms(gw, req),
        (Get | Head, ["api", "health"]) => status::health(gw),
        (Get | Head, ["api", "stats"]) => status::stats(gw),
        (Get | Head, ["api", "webseed", "health"]) => status::webseed_health(gw),
        (Get | Head, ["api", "diagnostics"]) => status::diagnostics(gw),
        (Get | Head, ["metrics"]) => status::metrics(gw),
        (Get | Head, ["api", "p2p", "stats"]) => status::p2p_stats(gw),
        (Get | Head, ["api", "p2p", "peers", ih]) => torrents::peers(gw, ih),
        (Get | Head, ["api", "dht", "stats"]) => status::dht_stats(gw),
        (Get | Head, ["api", "blossom", "reports"]) => blossom::reports(gw, req),
        (Get | Head, ["api", "blossom", "list", pubkey]) => blossom::operator_list(gw, req, pubkey),
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
