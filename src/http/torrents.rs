//! Fetch-through over HTTP: `POST /api/torrents` joins a swarm (a magnet, a .torrent body,
//! an info-hash, or an http(s) URL of a .torrent), `GET /api/torrents[/<ih>]` shows them,
//! `DELETE /api/torrents/<ih>` leaves one, and `GET|HEAD /stream/<ih>/<file>` serves a file's
//! bytes with Range while the pieces arrive: a [`StreamSource`] sends each byte once its
//! piece is verified and on disk, asks the loop for the pieces under the reader (the next
//! ones first, then a readahead window) and waits without holding a worker.

use super::api::authorize_write;
use super::respond::{Pull, Source, Wake};
use super::router::{Method, Reply, ReplyBody, Req};
use crate::fetch::{Fetched, Fetcher, State};
use crate::proto::bt::metainfo::{self, Metainfo};
use crate::proto::hex;
use crate::proto::http::range::{self, Ranged};
use crate::proto::http::{escape, mime};
use crate::server::Gateway;
use crate::store::files::TorrentFiles;
use serde_json::{json, Value};
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most bytes of a POSTed .torrent or magnet.
const MAX_BODY: u64 = 16 << 20;
/// Readahead under a reader, in bytes (at least two pieces).
const READAHEAD: u64 = 8 << 20;
/// The longest a stream waits for one piece before it gives up (the connection closes).
const PIECE_WAIT: Duration = Duration::from_secs(60);

fn fetcher(gw: &Gateway) -> Result<&Arc<Fetcher>, Reply> {
    gw.fetch.as_ref().ok_or_else(|| {
        Reply::error(
            503,
            "fetch-through needs the peer wire service (peer.enabled)",
        )
    })
}

fn parse_ih(text: &str) -> Option<[u8; 20]> {
    match text.len() {
        40 => hex::decode::<20>(text),
        32 => hex::decode_base32_20(text),
        _ => None,
    }
}

/// `POST /api/torrents`.
pub fn add(gw: &Gateway, req: &mut Req<'_>) -> Reply {
    if let Err(r) = authorize_write(gw, req) {
        return r;
    }
    let f = match fetcher(gw) {
        Ok(f) => f,
        Err(r) => return r,
    };
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
    let added = if text.starts_with("magnet:") {
        match crate::proto::bt::magnet::parse(text) {
            Ok(m) => f.add_magnet(m),
            Err(e) => return Reply::error(400, format!("bad magnet link: {e}")),
        }
    } else if let Some(ih) = parse_ih(text) {
        f.add_magnet(crate::proto::bt::magnet::Magnet {
            info_hash: ih,
            ..Default::default()
        })
    } else if text.starts_with("http://") || text.starts_with("https://") {
        return Reply::error(
            400,
            "fetching a .torrent by URL is not supported here: POST the file itself",
        );
    } else {
        match metainfo::parse(&body) {
            Ok(meta) => f.add_torrent(meta),
            Err(e) => return Reply::error(400, format!("not a magnet, info-hash or torrent: {e}")),
        }
    };
    match added {
        Ok(t) => {
            let (code, v) = describe(gw, &t);
            Reply::json(code, &v)
        }
        Err(r) => Reply::error(r.status, r.reason),
    }
}

/// 201 with the files once the metadata is known, 202 while it is fetched.
fn describe(gw: &Gateway, t: &Fetched) -> (u16, Value) {
    let ih = hex::encode(&t.info_hash);
    let s = &t.status;
    let counts = json!({
        "downloaded_bytes": s.get(&s.downloaded),
        "uploaded_bytes": s.get(&s.uploaded),
        "verified_pieces": s.count(&s.verified),
        "peers": s.count(&s.peers),
        "seeds": s.count(&s.seeds),
        "known_peers": s.count(&s.known_peers),
    });
    match &*t.state.lock() {
        State::Metadata => (
            202,
            json!({"info_hash": ih, "state": "metadata", "stats": counts}),
        ),
        State::Failed(e) => (
            200,
            json!({"info_hash": ih, "state": "failed", "error": e, "stats": counts}),
        ),
        State::Ready { meta, .. } => {
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
                        "stream_url": format!("{}/stream/{ih}/{i}", gw.public_url),
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
                    "total_size": meta.info.total_length(),
                    "piece_length": meta.info.piece_length,
                    "pieces": meta.info.piece_count(),
                    "files": files,
                    "stream_urls": urls,
                    "stats": counts,
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
    let list: Vec<Value> = f.list().iter().map(|t| describe(gw, t).1).collect();
    Reply::json(200, &json!({ "torrents": list }))
}

/// `GET /api/torrents/<ih>`.
pub fn get(gw: &Gateway, ih: &str) -> Reply {
    let f = match fetcher(gw) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Some(ih) = parse_ih(ih) else {
        return Reply::error(400, "not an info-hash (40 hex or 32 base32 characters)");
    };
    match f.get(&ih) {
        Some(t) => {
            let (code, v) = describe(gw, &t);
            Reply::json(if code == 201 { 200 } else { code }, &v)
        }
        None => Reply::error(404, "not a torrent the gateway fetches"),
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
        Reply::new(204)
    } else {
        Reply::error(404, "not a torrent the gateway fetches")
    }
}

/// `GET|HEAD /stream/<ih>/<file index or path>`.
pub fn stream(gw: &Gateway, req: &Req<'_>, ih: &str, file: &[&str]) -> Reply {
    let f = match fetcher(gw) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Some(ih) = parse_ih(ih) else {
        return Reply::error(400, "not an info-hash (40 hex or 32 base32 characters)");
    };
    let Some(t) = f.get(&ih) else {
        return Reply::error(
            404,
            "not a torrent the gateway fetches: POST it to /api/torrents",
        );
    };
    let (meta, files) = match &*t.state.lock() {
        State::Ready { meta, files } => (Arc::clone(meta), Arc::clone(files)),
        State::Metadata => {
            return Reply::error(503, "the torrent's metadata is still being fetched")
                .header("Retry-After", "1")
        }
        State::Failed(e) => return Reply::error(502, e.clone()),
    };
    let Some(index) = find_file(&meta, file) else {
        return Reply::error(404, "no such file in this torrent");
    };
    let entry = &meta.info.files[index];
    let size = entry.length;
    let etag = format!("\"{}-{index}\"", hex::encode(&ih));
    let (status, range) = match range::resolve(req.header("Range"), size) {
        Ranged::Full => (200, 0..size),
        Ranged::Partial(r) => (206, r),
        Ranged::Unsatisfiable | Ranged::Malformed => {
            return Reply::error(416, "range not satisfiable")
                .header("Content-Range", format!("bytes */{size}"))
                .header("Accept-Ranges", "bytes");
        }
    };
    let if_range = req.header("If-Range");
    let (status, range) = match if_range {
        Some(v) if status == 206 && v.trim() != etag => (200, 0..size),
        _ => (status, range),
    };
    let len = range.end - range.start;
    let name = entry.path.last().cloned().unwrap_or_default();
    let content_type = mime::from_name(&name);
    let body = if req.method == Method::Head || len == 0 {
        ReplyBody::Stream(Box::new(std::io::empty()), len)
    } else {
        ReplyBody::SizedSource(
            Box::new(StreamSource {
                fetcher: Arc::clone(f),
                torrent: t,
                files,
                piece_length: meta.info.piece_length,
                pieces: meta.info.piece_count() as u32,
                pos: entry.offset + range.start,
                end: entry.offset + range.end,
                asked_to: None,
                waiting_since: None,
            }),
            len,
        )
    };
    let mut reply = Reply {
        status,
        headers: vec![("Content-Type", content_type.to_string())],
        body,
    }
    .header("Accept-Ranges", "bytes")
    .header("ETag", etag)
    .header("X-Content-Type-Options", "nosniff")
    .header("Content-Security-Policy", "sandbox");
    if status == 206 {
        reply = reply.header(
            "Content-Range",
            format!("bytes {}-{}/{size}", range.start, range.end - 1),
        );
    }
    reply
}

/// A file by index (`3`) or by its `/`-joined path (percent-encoded segments).
fn find_file(meta: &Metainfo, file: &[&str]) -> Option<usize> {
    let files = &meta.info.files;
    if let [one] = file {
        if let Ok(i) = one.parse::<usize>() {
            return (i < files.len() && !files[i].padding).then_some(i);
        }
    }
    let decoded: Option<Vec<String>> = file
        .iter()
        .map(|s| {
            escape::decode(s)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
        })
        .collect();
    let decoded = decoded?;
    files.iter().position(|f| !f.padding && f.path == decoded)
}

/// A byte range of a fetched torrent, produced as its pieces arrive.
struct StreamSource {
    fetcher: Arc<Fetcher>,
    torrent: Arc<Fetched>,
    files: Arc<TorrentFiles>,
    piece_length: u64,
    pieces: u32,
    /// Torrent offsets: the next byte to send and the end.
    pos: u64,
    end: u64,
    /// Pieces asked of the loop, up to this one (exclusive).
    asked_to: Option<u32>,
    waiting_since: Option<Instant>,
}

impl StreamSource {
    /// Asks for the piece under the reader and the readahead after it.
    fn ask(&mut self, piece: u32) {
        let ahead = (READAHEAD / self.piece_length.max(1)).max(2) as u32;
        let last_needed = ((self.end - 1) / self.piece_length) as u32;
        let upto = (piece + ahead).min(last_needed + 1).min(self.pieces);
        if self
            .asked_to
            .is_some_and(|a| a >= upto && piece + ahead / 2 < a)
        {
            return;
        }
        let pieces: Vec<u32> = (piece..upto).collect();
        self.asked_to = Some(upto);
        self.fetcher.want(self.torrent.info_hash, pieces);
    }
}

impl Source for StreamSource {
    fn pull(&mut self, out: &mut Vec<u8>, max: usize, wake: &Wake) -> Pull {
        if self.pos >= self.end {
            return Pull::End;
        }
        let piece = (self.pos / self.piece_length) as u32;
        self.ask(piece);
        if !self.torrent.status.has(piece) {
            if self.torrent.status.error().is_some() {
                return Pull::Failed;
            }
            let since = *self.waiting_since.get_or_insert_with(Instant::now);
            if since.elapsed() > PIECE_WAIT {
                log::info!("stream: piece {piece} did not arrive within {PIECE_WAIT:?}");
                return Pull::Failed;
            }
            let w = wake.clone();
            self.torrent
                .status
                .wait_for(piece, Box::new(move || w.wake()));
            return Pull::Pending;
        }
        self.waiting_since = None;
        let piece_end = (u64::from(piece) + 1) * self.piece_length;
        let n = (self.end.min(piece_end) - self.pos).min(max as u64) as usize;
        match self.files.read(self.pos, n) {
            Ok(bytes) => {
                out.extend_from_slice(&bytes);
                self.pos += n as u64;
                Pull::Data
            }
            Err(e) => {
                log::warn!("stream: reading the cache: {e}");
                Pull::Failed
            }
        }
    }
}
