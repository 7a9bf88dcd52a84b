//! `POST /api/torrents` with an http(s) URL of a .torrent: the fetch runs on a short-lived
//! thread (at most [`MAX_URL_FETCHES`] at once, 503 past it) through `http::mirror`'s client
//! (its address guard unless `fetch.url_allow_private`, `fetch.url_timeout_secs` for the
//! whole fetch, at most 16 MiB), while the request waits as a deferred reply that holds no
//! worker. The answer is the same as for a POSTed .torrent; a bad URL or a refused address
//! is a 400, an unreachable or failing origin, an oversized answer or one that is not a
//! torrent a 502, each with the reason. A client that hangs up cancels its fetch: the
//! waiting reply is dropped, the thread stops after its current read (at most
//! [`STEP_TIMEOUT`], the whole still within `url_timeout_secs`), gives its place back, and
//! the torrent is not added.

use super::{add_named, Named};
use crate::fetch::{Fetcher, Refused};
use crate::http::mirror::{self, FetchError};
use crate::http::respond::{Deferred, Wake};
use crate::http::router::{Reply, ReplyBody};
use crate::proto::bt::metainfo;
use crate::store::db::Db;
use parking_lot::Mutex;
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// URL fetches running at once (each a thread that ends within `fetch.url_timeout_secs`).
pub const MAX_URL_FETCHES: usize = 4;

static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// Connect and read timeout of one step of the fetch (the whole is `url_timeout_secs`).
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

type Outcome = Result<(u16, Value), Refused>;

#[derive(Default)]
struct Slot {
    done: Option<Outcome>,
    wake: Option<Wake>,
    /// The request is gone (its client hung up): stop.
    cancelled: bool,
}

/// The waiting request.
struct Pending(Arc<Mutex<Slot>>);

impl Deferred for Pending {
    fn poll(&mut self, wake: &Wake) -> Option<Reply> {
        let mut slot = self.0.lock();
        match slot.done.take() {
            Some(Ok((code, v))) => Some(Reply::json(code, &v)),
            Some(Err(r)) => Some(Reply::error(r.status, r.reason)),
            None => {
                slot.wake = Some(wake.clone());
                None
            }
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.lock().cancelled = true;
    }
}

/// One place among [`MAX_URL_FETCHES`], given back when dropped.
struct Place;

impl Place {
    fn take() -> Option<Place> {
        RUNNING
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_URL_FETCHES).then_some(n + 1)
            })
            .ok()
            .map(|_| Place)
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Starts the fetch of `url` and returns the deferred reply.
pub(super) fn add(f: &Arc<Fetcher>, db: Arc<Db>, public_url: &str, url: &str) -> Reply {
    let Some(place) = Place::take() else {
        return Reply::error(
            503,
            format!("{MAX_URL_FETCHES} .torrent URLs are being fetched; try again shortly"),
        )
        .header("Retry-After", "2");
    };
    let slot = Arc::new(Mutex::new(Slot::default()));
    let job = Job {
        fetcher: Arc::clone(f),
        db,
        public_url: public_url.to_string(),
        url: url.to_string(),
    };
    let theirs = Arc::clone(&slot);
    let spawned = std::thread::Builder::new()
        .name("fetch-url".into())
        .spawn(move || {
            let outcome = job.run(&|| theirs.lock().cancelled);
            drop(place);
            let wake = {
                let mut s = theirs.lock();
                s.done = Some(outcome);
                s.wake.take()
            };
            if let Some(w) = wake {
                w.wake();
            }
        });
    if let Err(e) = spawned {
        return Reply::error(503, format!("cannot start the fetch: {e}"))
            .header("Retry-After", "2");
    }
    Reply {
        status: 200,
        headers: Vec::new(),
        body: ReplyBody::Deferred(Box::new(Pending(slot))),
    }
}

struct Job {
    fetcher: Arc<Fetcher>,
    db: Arc<Db>,
    public_url: String,
    url: String,
}

impl Job {
    fn run(&self, cancelled: &dyn Fn() -> bool) -> Outcome {
        let c = &self.fetcher.config;
        let total = Duration::from_secs(c.url_timeout_secs);
        let bytes = mirror::fetch_torrent_until(
            &self.url,
            c.url_allow_private,
            STEP_TIMEOUT,
            total,
            cancelled,
        )
        .map_err(|e| match e {
            FetchError::Refused(why) => refused(400, why),
            FetchError::Origin(why) => refused(502, format!("fetching the .torrent: {why}")),
        })?;
        let meta = metainfo::parse(&bytes)
            .map_err(|e| refused(502, format!("the answer is not a torrent file: {e}")))?;
        if cancelled() {
            // Nobody waits for the answer: do not join a swarm for nobody.
            return Err(refused(502, "cancelled: the client went away"));
        }
        add_named(
            Some(&self.fetcher),
            &self.db,
            &self.public_url,
            Named::Torrent(meta),
        )
    }
}

fn refused(status: u16, reason: impl Into<String>) -> Refused {
    Refused {
        status,
        reason: reason.into(),
    }
}
