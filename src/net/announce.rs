//! The `announce-N` threads: everything the download client does that may block on the
//! network outside the `net` loop. Tracker announces over HTTP(S) (ureq) and UDP (BEP-15,
//! [`udp`]), and webseed range GETs (BEP-19, [`webseed`]). Hostnames are resolved here too.
//!
//! Jobs arrive on a bounded channel ([`AnnouncePool::submit`] never blocks: a full queue hands
//! the job back); each result goes back on the caller's channel, followed by a call to `wake`.
//! Every job is bounded in time: an announce takes at most [`ANNOUNCE_TIMEOUT`], a webseed
//! GET fails after [`webseed::READ_TIMEOUT`] without a byte.

pub mod udp;
pub mod webseed;

use crate::engine::webseed::{Failure, Request};
use crate::proto::tracker::client::{self, Announce, Answer};
use crossbeam_channel::{Receiver, Sender};
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Connect timeout of HTTP announces and webseed GETs.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a whole announce (HTTP or UDP) may take.
pub const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(15);

/// Work for the pool. `key` is the caller's name for the torrent, echoed back.
#[derive(Debug, Clone)]
pub enum Job {
    Tracker {
        key: u64,
        url: String,
        announce: Announce,
    },
    Webseed {
        key: u64,
        request: Request,
    },
}

/// A finished job.
#[derive(Debug)]
pub enum Done {
    Tracker {
        key: u64,
        url: String,
        result: Result<Answer, String>,
    },
    /// Bytes of webseed GET `id` at torrent offset `offset`, in order, while it runs.
    WebseedData {
        key: u64,
        id: u64,
        offset: u64,
        bytes: Vec<u8>,
    },
    /// The GET is over: on success its `WebseedData` were exactly `request.range`'s bytes.
    Webseed {
        key: u64,
        id: u64,
        result: Result<(), Failure>,
    },
}

/// The running pool.
pub struct AnnouncePool {
    jobs: Sender<Job>,
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

/// A thread's HTTP agents, kept across jobs so webseed connections stay alive.
struct Worker {
    tracker: ureq::Agent,
    webseed: ureq::Agent,
    udp: Arc<udp::ConnectionIds>,
}

fn user_agent() -> &'static str {
    concat!("torrent-gateway/", env!("CARGO_PKG_VERSION"))
}

impl Worker {
    fn new(udp: Arc<udp::ConnectionIds>) -> Worker {
        Worker {
            tracker: ureq::AgentBuilder::new()
                .timeout_connect(CONNECT_TIMEOUT)
                .timeout(ANNOUNCE_TIMEOUT)
                .redirects(3)
                .user_agent(user_agent())
                .build(),
            webseed: webseed::agent(),
            udp,
        }
    }

    /// Runs a job; `send` passes on what it produces before the result (false: stop).
    fn run(&self, job: Job, send: &mut dyn FnMut(Done) -> bool) -> Done {
        match job {
            Job::Tracker { key, url, announce } => {
                let result = if url.to_ascii_lowercase().starts_with("udp://") {
                    udp::announce(&self.udp, &url, &announce, ANNOUNCE_TIMEOUT)
                } else {
                    self.http_announce(&url, &announce)
                };
                Done::Tracker { key, url, result }
            }
            Job::Webseed { key, request } => {
                let id = request.id;
                let mut emit = |offset, bytes| {
                    send(Done::WebseedData {
                        key,
                        id,
                        offset,
                        bytes,
                    })
                };
                let result = webseed::fetch(&self.webseed, &request, &mut emit);
                Done::Webseed { key, id, result }
            }
        }
    }

    /// A BEP-3 announce over HTTP(S); the body is read up to [`client::MAX_BODY`].
    fn http_announce(&self, url: &str, a: &Announce) -> Result<Answer, String> {
        let response = self
            .tracker
            .get(&client::announce_url(url, a))
            .call()
            .map_err(|e| match e {
                // Some trackers send their `failure reason` with an error status.
                ureq::Error::Status(code, r) => {
                    match read_body(r).map(|b| client::parse_answer(&b)) {
                        Ok(Err(e @ client::TrackerError::Failure(_))) => e.to_string(),
                        _ => format!("tracker answered HTTP {code}"),
                    }
                }
                ureq::Error::Transport(t) => match t.message() {
                    Some(m) => format!("tracker unreachable: {}: {m}", t.kind()),
                    None => format!("tracker unreachable: {}", t.kind()),
                },
            })?;
        let body = read_body(response).map_err(|e| format!("reading the tracker's answer: {e}"))?;
        client::parse_answer(&body).map_err(|e| e.to_string())
    }
}

/// An answer's body, at most one byte past [`client::MAX_BODY`] (which `parse_answer` refuses).
fn read_body(response: ureq::Response) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    response
        .into_reader()
        .take(client::MAX_BODY as u64 + 1)
        .read_to_end(&mut body)?;
    Ok(body)
}

impl AnnouncePool {
    /// Starts `threads` threads (`announce-0`..) reading a job queue of `queue` entries.
    pub fn start(
        threads: usize,
        queue: usize,
        done: Sender<Done>,
        wake: Arc<dyn Fn() + Send + Sync>,
    ) -> std::io::Result<AnnouncePool> {
        let (jobs, rx) = crossbeam_channel::bounded::<Job>(queue.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let ids = Arc::new(udp::ConnectionIds::default());
        let mut pool = AnnouncePool {
            jobs,
            stop: Arc::clone(&stop),
            handles: Vec::new(),
        };
        for n in 0..threads.max(1) {
            let (rx, done, wake, stop) = (
                rx.clone(),
                done.clone(),
                Arc::clone(&wake),
                Arc::clone(&stop),
            );
            let worker = Worker::new(Arc::clone(&ids));
            let handle = std::thread::Builder::new()
                .name(format!("announce-{n}"))
                .spawn(move || work(&worker, &rx, &done, &*wake, &stop));
            match handle {
                Ok(h) => pool.handles.push(h),
                Err(e) => {
                    pool.stop();
                    return Err(e);
                }
            }
        }
        Ok(pool)
    }

    /// Queues a job; hands it back (boxed) when the queue is full or the pool has stopped.
    pub fn submit(&self, job: Job) -> Result<(), Box<Job>> {
        self.jobs
            .try_send(job)
            .map_err(|e| Box::new(e.into_inner()))
    }

    /// Ends the threads after their current job; queued jobs are dropped.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let AnnouncePool { jobs, handles, .. } = self;
        drop(jobs);
        for h in handles {
            let _ = h.join();
        }
    }
}

fn work(
    worker: &Worker,
    rx: &Receiver<Job>,
    done: &Sender<Done>,
    wake: &dyn Fn(),
    stop: &AtomicBool,
) {
    while let Ok(job) = rx.recv() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let mut send = |out| deliver(done, wake, stop, out);
        let out = worker.run(job, &mut send);
        if !deliver(done, wake, stop, out) {
            return;
        }
    }
}

/// Sends a result and wakes the loop. A full result channel waits for the loop, but never
/// past a stop: false when stopped or nobody listens.
fn deliver(done: &Sender<Done>, wake: &dyn Fn(), stop: &AtomicBool, mut out: Done) -> bool {
    loop {
        match done.send_timeout(out, Duration::from_millis(100)) {
            Ok(()) => break,
            Err(crossbeam_channel::SendTimeoutError::Timeout(back)) => {
                if stop.load(Ordering::Relaxed) {
                    return false;
                }
                out = back;
            }
            Err(crossbeam_channel::SendTimeoutError::Disconnected(_)) => return false,
        }
    }
    wake();
    true
}
