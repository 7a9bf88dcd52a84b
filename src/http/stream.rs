//! `GET|HEAD /stream/<ih>/<file index or path>`: a torrent's file with Range. A torrent the
//! gateway stores is served from the store (`download::serve`, no swarm traffic); a fetched
//! one while its pieces arrive. Until the metadata and the first piece are in, the reply is a
//! [`Start`] (a deferred reply the connection layer polls without holding a worker): past
//! `fetch.wait_secs` it becomes a 504 with the reason. Then a [`StreamSource`] sends each
//! byte once its piece is verified and on disk, asks the loop (through its
//! [`Reader`]) for the piece under the reader and a readahead window after it (two pieces,
//! doubling at each new piece up to the cache's share per stream), and waits
//! for each later piece at most `fetch.wait_secs` (then the connection closes: the head is
//! out). Dropping either releases the reader's pieces at once. Cache hits and misses are
//! counted per piece a reader comes to.

use super::download::{disposition, Kind};
use super::respond::{Deferred, Pull, Source, Wake};
use super::router::{Method, Reply, ReplyBody, Req};
use super::torrents::{fetcher, parse_ih};
use crate::engine::readers::Readahead;
use crate::fetch::{Fetched, Fetcher, Reader, State};
use crate::net::download::METADATA;
use crate::proto::bt::metainfo::Metainfo;
use crate::proto::hex;
use crate::proto::http::range::{self, Ranged};
use crate::proto::http::{escape, mime};
use crate::server::Gateway;
use crate::store::files::TorrentFiles;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Reads retried when an eviction raced them (then the stream fails).
const MAX_RETRIES: u32 = 8;

/// The handler.
pub fn stream(gw: &Gateway, req: &Req<'_>, ih: &str, file: &[&str]) -> Reply {
    let Some(ih) = parse_ih(ih) else {
        return Reply::error(400, "not an info-hash (40 hex or 32 base32 characters)");
    };
    if let Some(reply) = from_store(gw, req, &ih, file) {
        return reply;
    }
    let f = match fetcher(gw) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Some(t) = f.get(&ih) else {
        return Reply::error(
            404,
            "not a torrent the gateway fetches: POST it to /api/torrents",
        );
    };
    let head = req.method == Method::Head;
    let reader = if head {
        None
    } else {
        match f.open_reader(ih) {
            Some(r) => Some(r),
            None => {
                return Reply::error(
                    503,
                    format!(
                        "{} streams are open (fetch.max_streams); try again shortly",
                        f.config.max_streams
                    ),
                )
                .header("Retry-After", "2")
            }
        }
    };
    let mut start = Start {
        fetcher: Arc::clone(f),
        torrent: t,
        head,
        range: req.header("Range").map(str::to_string),
        if_range: req.header("If-Range").map(|v| v.trim().to_string()),
        file: file.iter().map(|s| s.to_string()).collect(),
        reader,
        deadline: Instant::now() + f.wait(),
        asked: false,
        // Sized once the piece length is known.
        readahead: Readahead::new(2, 2),
        waited: false,
    };
    match start.step() {
        Step::Reply(r) => r,
        // A HEAD never waits for pieces, only for the metadata (it needs the size).
        Step::Wait(_) => Reply {
            status: 200,
            headers: Vec::new(),
            body: ReplyBody::Deferred(Box::new(start)),
        },
    }
}

/// A torrent the gateway stores is streamed straight from the store (no swarm, no
/// fetch-through torrent): its one file by index `0` or by name, with the same headers,
/// Range and If-Range handling and security rules as `/download/<sha256>`. None: not stored.
fn from_store(gw: &Gateway, req: &Req<'_>, ih: &[u8; 20], file: &[&str]) -> Option<Reply> {
    let rec = match gw.catalog.by_info_hash(&hex::encode(ih)) {
        Ok(Some(rec)) => rec,
        Ok(None) => return None,
        Err(e) => return Some(Reply::error(500, format!("database error: {e}"))),
    };
    let named = match file {
        [one] => *one == "0" || escape::decode(one).is_ok_and(|name| name == rec.name.as_bytes()),
        _ => false,
    };
    if !named {
        return Some(Reply::error(404, "no such file in this torrent"));
    }
    Some(super::download::serve(gw, req, &rec, Kind::Download))
}

/// A stream request until its metadata and first piece are in.
struct Start {
    fetcher: Arc<Fetcher>,
    torrent: Arc<Fetched>,
    head: bool,
    range: Option<String>,
    if_range: Option<String>,
    file: Vec<String>,
    reader: Option<Reader>,
    deadline: Instant,
    /// The first window was asked for.
    asked: bool,
    readahead: Readahead,
    /// It had to wait for the first piece (a cache miss).
    waited: bool,
}

enum Step {
    Reply(Reply),
    /// Wait for this piece ([`METADATA`]: the info dict).
    Wait(u32),
}

impl Start {
    fn step(&mut self) -> Step {
        self.fetcher.refresh(&self.torrent);
        let (meta, files) = match &*self.torrent.state.lock() {
            State::Ready { meta, files } => (Arc::clone(meta), Arc::clone(files)),
            State::Metadata | State::Checking => return Step::Wait(METADATA),
            State::Failed(e) => return Step::Reply(Reply::error(502, e.clone())),
        };
        let refs: Vec<&str> = self.file.iter().map(String::as_str).collect();
        let Some(index) = find_file(&meta, &refs) else {
            return Step::Reply(Reply::error(404, "no such file in this torrent"));
        };
        let entry = &meta.info.files[index];
        let size = entry.length;
        let etag = format!("\"{}-{index}\"", hex::encode(&self.torrent.info_hash));
        let (status, range) = match range::resolve(self.range.as_deref(), size) {
            Ranged::Full => (200, 0..size),
            Ranged::Partial(r) => (206, r),
            Ranged::Unsatisfiable | Ranged::Malformed => {
                return Step::Reply(
                    Reply::error(416, "range not satisfiable")
                        .header("Content-Range", format!("bytes */{size}"))
                        .header("Accept-Ranges", "bytes"),
                );
            }
        };
        let (status, range) = match &self.if_range {
            Some(v) if status == 206 && *v != etag => (200, 0..size),
            _ => (status, range),
        };
        let len = range.end - range.start;
        let name = entry.path.last().cloned().unwrap_or_default();
        let pos = entry.offset + range.start;
        let body = if self.head || len == 0 {
            ReplyBody::Stream(Box::new(std::io::empty()), len)
        } else {
            let piece_length = meta.info.piece_length;
            let first = (pos / piece_length) as u32;
            let status_ = &self.torrent.status;
            if !self.asked {
                self.asked = true;
                self.readahead = readahead(&self.fetcher, piece_length);
                if let Some(r) = &self.reader {
                    r.want(self.readahead.at(first, end_piece(&meta, pos + len)));
                }
            }
            if !status_.has(first) {
                self.waited = true;
                return Step::Wait(first);
            }
            let counters = &self.fetcher.counters;
            if self.waited {
                counters.misses.fetch_add(1, Ordering::Relaxed);
            } else {
                counters.hits.fetch_add(1, Ordering::Relaxed);
            }
            let Some(reader) = self.reader.take() else {
                return Step::Reply(Reply::error(500, "stream without a reader"));
            };
            ReplyBody::SizedSource(
                Box::new(StreamSource {
                    fetcher: Arc::clone(&self.fetcher),
                    torrent: Arc::clone(&self.torrent),
                    reader,
                    files,
                    meta: Arc::clone(&meta),
                    pos,
                    end: pos + len,
                    readahead: self.readahead.clone(),
                    asked_at: Some(first),
                    current: Some(first),
                    waiting_since: None,
                }),
                len,
            )
        };
        // As for stored files on this port: an active type (HTML, SVG, scripts) is never shown
        // inline, whatever the swarm's file is called.
        let declared = mime::from_name(&name);
        let passive = mime::is_passive(declared);
        let (content_type, how) = if passive {
            (declared, "inline")
        } else {
            (mime::OCTET_STREAM, "attachment")
        };
        let mut reply = Reply {
            status,
            headers: vec![("Content-Type", content_type.to_string())],
            body,
        }
        .header("Accept-Ranges", "bytes")
        .header("ETag", etag)
        .header("X-Content-Type-Options", "nosniff")
        .header("Content-Security-Policy", "sandbox")
        .header("Content-Disposition", disposition(how, &name));
        if status == 206 {
            reply = reply.header(
                "Content-Range",
                format!("bytes {}-{}/{size}", range.start, range.end - 1),
            );
        }
        Step::Reply(reply)
    }
}

impl Deferred for Start {
    fn poll(&mut self, wake: &Wake) -> Option<Reply> {
        let piece = match self.step() {
            Step::Reply(r) => return Some(r),
            Step::Wait(p) => p,
        };
        let secs = self.fetcher.config.wait_secs;
        if Instant::now() >= self.deadline {
            let what = if piece == METADATA {
                "the torrent's metadata".to_string()
            } else {
                format!("piece {piece}")
            };
            return Some(
                Reply::error(
                    504,
                    format!(
                        "{what} did not arrive from the swarm within {secs} s (fetch.wait_secs)"
                    ),
                )
                .header("Retry-After", "5"),
            );
        }
        let w = wake.clone();
        self.torrent
            .status
            .wait_for(piece, self.deadline, Box::new(move || w.wake()));
        None
    }
}

/// One past the last piece a read up to torrent offset `end` (exclusive) needs.
fn end_piece(meta: &Metainfo, end: u64) -> u32 {
    let pl = meta.info.piece_length.max(1);
    (((end.max(1) - 1) / pl) as u32 + 1).min(meta.info.piece_count() as u32)
}

/// A new reader's readahead: two pieces, doubling while it reads on, up to the fetcher's
/// share of the cache for one stream (`Fetcher::readahead`).
fn readahead(f: &Fetcher, piece_length: u64) -> Readahead {
    let max = (f.readahead(piece_length) / piece_length.max(1)).max(2);
    Readahead::new(2, max.min(u64::from(u32::MAX)) as u32)
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
    reader: Reader,
    files: Arc<TorrentFiles>,
    meta: Arc<Metainfo>,
    /// Torrent offsets: the next byte to send and the end.
    pos: u64,
    end: u64,
    /// The window, growing while this (contiguous) read goes on.
    readahead: Readahead,
    /// The piece the last want was made at.
    asked_at: Option<u32>,
    /// The piece being sent (hits and misses are counted when a new one starts).
    current: Option<u32>,
    waiting_since: Option<Instant>,
}

impl StreamSource {
    /// Asks for the piece under the reader and the readahead after it, again at each new
    /// piece (the window doubles each time, up to its cap).
    fn ask(&mut self, piece: u32) {
        if self.asked_at == Some(piece) {
            return;
        }
        self.asked_at = Some(piece);
        let pieces = self.readahead.at(piece, end_piece(&self.meta, self.end));
        self.reader.want(pieces);
    }
}

impl Source for StreamSource {
    fn pull(&mut self, out: &mut Vec<u8>, max: usize, wake: &Wake) -> Pull {
        let pl = self.meta.info.piece_length;
        for _ in 0..MAX_RETRIES {
            if self.pos >= self.end {
                return Pull::End;
            }
            let piece = (self.pos / pl) as u32;
            self.ask(piece);
            let status = &self.torrent.status;
            let gen = status.evictions.load(Ordering::SeqCst);
            if !status.has(piece) {
                if status.error().is_some() {
                    return Pull::Failed;
                }
                let wait = self.fetcher.wait();
                let since = *self.waiting_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= wait {
                    log::info!("stream: piece {piece} did not arrive within {wait:?}");
                    return Pull::Failed;
                }
                if self.current != Some(piece) {
                    self.current = Some(piece);
                    self.fetcher.counters.misses.fetch_add(1, Ordering::Relaxed);
                }
                let w = wake.clone();
                status.wait_for(piece, since + wait, Box::new(move || w.wake()));
                return Pull::Pending;
            }
            if self.current != Some(piece) {
                self.current = Some(piece);
                self.fetcher.counters.hits.fetch_add(1, Ordering::Relaxed);
            }
            self.waiting_since = None;
            let piece_end = (u64::from(piece) + 1) * pl;
            let n = (self.end.min(piece_end) - self.pos).min(max as u64) as usize;
            let bytes = match self.files.read(self.pos, n) {
                Ok(b) => b,
                Err(e) => {
                    log::warn!("stream: reading the cache: {e}");
                    return Pull::Failed;
                }
            };
            if status.evictions.load(Ordering::SeqCst) != gen && !status.has(piece) {
                // Evicted while we read: the bytes may be a hole; fetch it again.
                continue;
            }
            out.extend_from_slice(&bytes);
            self.pos += n as u64;
            return Pull::Data;
        }
        Pull::Failed
    }
}
