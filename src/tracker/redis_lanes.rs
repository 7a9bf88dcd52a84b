//! The Redis backend's connections: `redis_pool` lanes, each one connection
//! ([`super::redis_conn`]) driven by its own thread (`redis-N`). A request (one packed
//! pipeline) reaches a lane through a bounded queue (a mutex and condition variables): HTTP
//! workers and the UDP thread wait for its replies ([`Lanes::run`]); the HTTP poller's
//! announces leave a callback that the lane runs with them ([`Lanes::submit`]), so no thread
//! waits on Redis for them. A lane sends everything
//! waiting in the queue as one write and reads the replies back in order, so under load one
//! pair of syscalls on each side carries many announces instead of one (Redis answers a batch
//! with one `writev` and one wake-up of the lane).
//!
//! Every request has a deadline (`redis_timeout_ms`, also the sockets' read and write
//! timeouts). When Redis is down or slow a request fails with [`Refusal::Unavailable`] at once
//! (a lane tries a new connection at most every [`RETRY_MS`]), [`Lanes::health`] turns false,
//! and the first request after Redis returns works again. A `NOSCRIPT` reply (Redis restarted
//! or flushed its scripts) makes the lane load the announce script and send that request again.

use super::redis_conn::{Conn, Replies};
use super::registry::Refusal;
use crate::hash::Counter;
use crate::proto::resp::{self, Reply};
use parking_lot::{Condvar, Mutex};
use redis::ConnectionInfo;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Milliseconds between connection attempts while Redis is unreachable.
pub const RETRY_MS: u64 = 250;
/// Requests a lane sends as one pipeline at most.
const BATCH_MAX: usize = 64;
/// Requests waiting for a lane at most (past it an announce is refused as unavailable).
const QUEUE_CAP: usize = 1024;

/// One request: a packed pipeline of `count` commands and where its replies go.
struct Job {
    packed: Vec<u8>,
    count: usize,
    answer: Answer,
    queued: Instant,
}

/// What a lane runs with a request's replies on its own thread ([`Lanes::submit`]).
pub type Callback = Box<dyn FnOnce(Result<Replies, Refusal>) + Send>;

/// Where a request's outcome goes.
enum Answer {
    /// A thread waits for it.
    Wait(Arc<Slot>),
    /// Called on the lane's thread.
    Call(Callback),
}

impl Answer {
    fn give(self, outcome: Result<Replies, String>) {
        match self {
            Answer::Wait(slot) => slot.fill(outcome),
            Answer::Call(f) => {
                // What the callback holds is dropped if it panics (a waiting HTTP connection
                // is closed); the lane goes on.
                let call =
                    std::panic::AssertUnwindSafe(|| f(outcome.map_err(|_| Refusal::Unavailable)));
                if std::panic::catch_unwind(call).is_err() {
                    log::error!("tracker: a redis reply callback panicked");
                }
            }
        }
    }
}

/// Where a lane leaves one request's outcome for the thread waiting on it. A mutex and a
/// condition variable park the waiter at once: a channel's receive spins and yields the CPU
/// first, which on a busy 2-core box was a sixth of the gateway's time.
#[derive(Default)]
struct Slot {
    outcome: Mutex<Option<Result<Replies, String>>>,
    filled: Condvar,
}

impl Slot {
    fn fill(&self, outcome: Result<Replies, String>) {
        *self.outcome.lock() = Some(outcome);
        self.filled.notify_one();
    }

    /// The outcome, or None past `deadline`.
    fn wait(&self, deadline: Instant) -> Option<Result<Replies, String>> {
        let mut outcome = self.outcome.lock();
        while outcome.is_none() {
            if self.filled.wait_until(&mut outcome, deadline).timed_out() {
                break;
            }
        }
        outcome.take()
    }
}

/// The requests waiting for a lane (at most [`QUEUE_CAP`]); lanes park on `ready`.
#[derive(Default)]
struct Queue {
    jobs: Mutex<VecDeque<Job>>,
    ready: Condvar,
    closed: AtomicBool,
}

impl Queue {
    /// Queues `job`; gives it back when the queue is full.
    fn push(&self, job: Job) -> Result<(), Job> {
        let mut jobs = self.jobs.lock();
        if jobs.len() >= QUEUE_CAP {
            return Err(job);
        }
        jobs.push_back(job);
        drop(jobs);
        self.ready.notify_one();
        Ok(())
    }

    /// Moves up to [`BATCH_MAX`] waiting jobs into `batch`, parking until there is one;
    /// false once the lanes are closed.
    fn take(&self, batch: &mut Vec<Job>) -> bool {
        let mut jobs = self.jobs.lock();
        while jobs.is_empty() {
            if self.closed.load(Ordering::Relaxed) {
                return false;
            }
            self.ready.wait(&mut jobs);
        }
        let n = jobs.len().min(BATCH_MAX);
        batch.extend(jobs.drain(..n));
        true
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        let _guard = self.jobs.lock();
        self.ready.notify_all();
    }
}

/// What the lanes share: where Redis is, the back-off and the health.
struct Shared {
    info: ConnectionInfo,
    timeout: Duration,
    /// The script a `NOSCRIPT` reply loads.
    script: &'static str,
    /// While set and in the future, no connection is tried (Redis was unreachable).
    retry_at: Mutex<Option<Instant>>,
    healthy: AtomicBool,
    /// The last error, for the health endpoint.
    last_error: Mutex<String>,
    errors: Counter,
}

impl Shared {
    fn backing_off(&self) -> bool {
        matches!(*self.retry_at.lock(), Some(at) if Instant::now() < at)
    }

    fn failed(&self, e: &str) {
        self.errors.add(1);
        if self.healthy.swap(false, Ordering::Relaxed) {
            log::warn!("tracker: redis unavailable: {e}");
        }
        *self.last_error.lock() = format!("redis: {e}");
        *self.retry_at.lock() = Some(Instant::now() + Duration::from_millis(RETRY_MS));
    }

    fn reached(&self) {
        if !self.healthy.swap(true, Ordering::Relaxed) {
            log::info!("tracker: redis reachable again");
            *self.retry_at.lock() = None;
        }
    }

    fn connect(&self) -> std::io::Result<Conn> {
        Conn::open(&self.info, self.timeout)
    }
}

/// The lanes of one backend; dropping it ends their threads.
pub struct Lanes {
    queue: Arc<Queue>,
    shared: Arc<Shared>,
}

impl Drop for Lanes {
    fn drop(&mut self) {
        self.queue.close();
    }
}

impl Lanes {
    /// `lanes` connections to `info`'s Redis, made lazily; `script` is reloaded on NOSCRIPT.
    pub fn new(
        info: ConnectionInfo,
        lanes: usize,
        timeout: Duration,
        script: &'static str,
    ) -> Lanes {
        let shared = Arc::new(Shared {
            info,
            timeout,
            script,
            retry_at: Mutex::new(None),
            healthy: AtomicBool::new(true),
            last_error: Mutex::new(String::new()),
            errors: Counter::default(),
        });
        let queue = Arc::new(Queue::default());
        let mut running = 0;
        for i in 0..lanes.max(1) {
            let (shared, queue) = (Arc::clone(&shared), Arc::clone(&queue));
            let spawned = std::thread::Builder::new()
                .name(format!("redis-{i}"))
                .spawn(move || lane(&shared, &queue));
            match spawned {
                Ok(_) => running += 1,
                Err(e) => log::error!("tracker: starting a redis lane: {e}"),
            }
        }
        if running == 0 {
            queue.close();
        }
        Lanes { queue, shared }
    }

    /// Queues a request, unless Redis is known to be down, no lane runs or the queue is full
    /// (then `answer` is given back).
    fn enqueue(&self, packed: Vec<u8>, count: usize, answer: Answer) -> Result<(), Answer> {
        if self.shared.backing_off() {
            self.shared.errors.add(1);
            return Err(answer);
        }
        if self.queue.closed.load(Ordering::Relaxed) {
            self.shared.failed("no redis lane is running");
            return Err(answer);
        }
        let job = Job {
            packed,
            count,
            answer,
            queued: Instant::now(),
        };
        if let Err(job) = self.queue.push(job) {
            self.shared.errors.add(1);
            return Err(job.answer);
        }
        Ok(())
    }

    /// Sends `packed` (`count` commands, see [`resp::command`]) and returns their replies
    /// (server errors among them as error replies); a dead or slow Redis, or a full queue, is
    /// [`Refusal::Unavailable`].
    pub fn run(&self, packed: Vec<u8>, count: usize) -> Result<Replies, Refusal> {
        let reply = Arc::new(Slot::default());
        if self
            .enqueue(packed, count, Answer::Wait(Arc::clone(&reply)))
            .is_err()
        {
            return Err(Refusal::Unavailable);
        }
        // The lane's own socket timeouts end a stuck exchange; this bounds the wait in the
        // queue as well.
        match reply.wait(Instant::now() + self.shared.timeout * 2) {
            Some(Ok(values)) => Ok(values),
            Some(Err(_)) => Err(Refusal::Unavailable),
            None => {
                self.shared.failed("no answer within the deadline");
                Err(Refusal::Unavailable)
            }
        }
    }

    /// Queues `packed` like [`Lanes::run`] without waiting: `done` gets the replies (or
    /// [`Refusal::Unavailable`]) once, on a lane's thread, or on this one at once when the
    /// request cannot be queued. A request still queued past the deadline is answered
    /// unavailable without being sent.
    pub fn submit(&self, packed: Vec<u8>, count: usize, done: Callback) {
        if let Err(answer) = self.enqueue(packed, count, Answer::Call(done)) {
            answer.give(Err("not queued".into()));
        }
    }

    /// Whether the last exchange reached Redis (and, if not, why).
    pub fn health(&self) -> (bool, String) {
        let ok = self.shared.healthy.load(Ordering::Relaxed);
        let why = if ok {
            String::new()
        } else {
            self.shared.last_error.lock().clone()
        };
        (ok, why)
    }

    /// Records a reply that could not be used (counted, the health turns degraded with one
    /// log line, and new requests back off as after a lost connection).
    pub fn failed(&self, e: &str) {
        self.shared.failed(e);
    }

    /// Failed exchanges (errors, deadlines, a full queue).
    pub fn errors(&self) -> u64 {
        self.shared.errors.get()
    }

    /// While Redis is unreachable, one PING once the back-off allows (the maintenance thread
    /// calls this), so the health turns back to ok without waiting for an announce.
    pub fn probe(&self) {
        if !self.shared.healthy.load(Ordering::Relaxed) && !self.shared.backing_off() {
            let mut ping = Vec::new();
            resp::command(&mut ping, &[b"PING"]);
            let _ = self.run(ping, 1);
        }
    }
}

/// One lane: takes what waits in the queue, sends it as one pipeline, hands out the replies.
/// Requests that waited in the queue past the deadline (their waiter has given up) are
/// answered unavailable unsent.
fn lane(shared: &Shared, queue: &Queue) {
    let mut conn: Option<Conn> = None;
    let mut batch: Vec<Job> = Vec::with_capacity(BATCH_MAX);
    let mut packed = Vec::new();
    while queue.take(&mut batch) {
        let cutoff = Instant::now().checked_sub(shared.timeout * 2);
        if let Some(cutoff) = cutoff.filter(|c| batch.iter().any(|j| j.queued < *c)) {
            shared.failed("no answer within the deadline");
            let (stale, fresh): (Vec<Job>, Vec<Job>) =
                batch.drain(..).partition(|j| j.queued < cutoff);
            batch.extend(fresh);
            for job in stale {
                job.answer.give(Err("waited past the deadline".into()));
            }
            if batch.is_empty() {
                continue;
            }
        }
        match exchange(shared, &mut conn, &batch, &mut packed) {
            Ok(replies) => {
                for (job, r) in batch.drain(..).zip(replies) {
                    job.answer.give(Ok(r));
                }
            }
            Err(e) => {
                conn = None;
                shared.failed(&e);
                for job in batch.drain(..) {
                    job.answer.give(Err(e.clone()));
                }
            }
        }
    }
}

/// Sends `packed` (requests of `counts` commands each) on `conn`, made first if there is none.
fn send(
    shared: &Shared,
    conn: &mut Option<Conn>,
    packed: &[u8],
    counts: &[usize],
) -> std::io::Result<Vec<Replies>> {
    if conn.is_none() {
        if shared.backing_off() {
            return Err(std::io::Error::other(format!(
                "backing off: {}",
                shared.last_error.lock()
            )));
        }
        *conn = Some(shared.connect()?);
    }
    match conn.as_mut() {
        Some(c) => c.exchange(packed, counts),
        None => Err(std::io::Error::other("no connection")),
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Sends `batch` on the lane's connection (made first if needed) and returns each request's
/// replies, in order; requests answered `NOSCRIPT` are sent again after the script is loaded.
fn exchange(
    shared: &Shared,
    conn: &mut Option<Conn>,
    batch: &[Job],
    packed: &mut Vec<u8>,
) -> Result<Vec<Replies>, String> {
    packed.clear();
    let mut counts = Vec::with_capacity(batch.len());
    for job in batch {
        packed.extend_from_slice(&job.packed);
        counts.push(job.count);
    }
    // A connection kept from before may have died with a restarted Redis: one more try on a
    // new one (the announce script is safe to run twice: a repeated announce changes nothing).
    let reused = conn.is_some();
    let mut sent = send(shared, conn, packed, &counts);
    if let Err(e) = &sent {
        if reused && !is_timeout(e) {
            *conn = None;
            sent = send(shared, conn, packed, &counts);
        }
    }
    let mut replies = sent.map_err(|e| e.to_string())?;
    let Some(c) = conn.as_mut() else {
        return Err("no connection".into());
    };
    let noscript: Vec<usize> = (0..batch.len())
        .filter(|&i| matches!(replies[i].get(0), Reply::Error(e) if e.starts_with(b"NOSCRIPT")))
        .collect();
    if !noscript.is_empty() {
        let mut load = Vec::new();
        resp::command(&mut load, &[b"SCRIPT", b"LOAD", shared.script.as_bytes()]);
        let loaded = c.exchange(&load, &[1]).map_err(|e| e.to_string())?;
        if let Some(e) = loaded[0].get(0).error() {
            return Err(format!("loading the announce script: {e}"));
        }
        packed.clear();
        counts.clear();
        for &i in &noscript {
            packed.extend_from_slice(&batch[i].packed);
            counts.push(batch[i].count);
        }
        let again = c.exchange(packed, &counts).map_err(|e| e.to_string())?;
        for (i, r) in noscript.into_iter().zip(again) {
            replies[i] = r;
        }
    }
    shared.reached();
    Ok(replies)
}
