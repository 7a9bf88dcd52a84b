//! The Redis backend's connections: `redis_pool` lanes, each one connection driven by its own
//! thread (`redis-N`). HTTP workers and the UDP thread hand a lane a request (one packed
//! pipeline) through a bounded queue and wait for its replies; a lane sends everything
//! waiting in the queue as one write and reads the replies back in order, so under load one
//! pair of syscalls on each side carries many announces instead of one (Redis answers a batch
//! with one `writev` and one wake-up of the lane).
//!
//! Every request has a deadline (`redis_timeout_ms`, also the sockets' read and write
//! timeouts). When Redis is down or slow a request fails with [`Refusal::Unavailable`] at once
//! (a lane tries a new connection at most every [`RETRY_MS`]), [`Lanes::health`] turns false,
//! and the first request after Redis returns works again. A `NOSCRIPT` reply (Redis restarted
//! or flushed its scripts) makes the lane load the announce script and send that request again.

use super::registry::Refusal;
use crate::hash::Counter;
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use parking_lot::Mutex;
use redis::{ConnectionLike, ErrorKind, RedisError, Value};
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
    reply: Sender<Result<Vec<Value>, String>>,
}

/// What the lanes share: the client, the back-off and the health.
struct Shared {
    client: redis::Client,
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

    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let t = self.timeout;
        let c = self.client.get_connection_with_timeout(t)?;
        c.set_read_timeout(Some(t))?;
        c.set_write_timeout(Some(t))?;
        Ok(c)
    }
}

/// The lanes of one backend; dropping it ends their threads.
pub struct Lanes {
    jobs: Sender<Job>,
    shared: Arc<Shared>,
}

impl Lanes {
    /// `lanes` connections to `client`'s Redis, made lazily; `script` is reloaded on NOSCRIPT.
    pub fn new(
        client: redis::Client,
        lanes: usize,
        timeout: Duration,
        script: &'static str,
    ) -> Lanes {
        let shared = Arc::new(Shared {
            client,
            timeout,
            script,
            retry_at: Mutex::new(None),
            healthy: AtomicBool::new(true),
            last_error: Mutex::new(String::new()),
            errors: Counter::default(),
        });
        let (jobs, queue) = bounded(QUEUE_CAP);
        for i in 0..lanes.max(1) {
            let (shared, queue) = (Arc::clone(&shared), queue.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("redis-{i}"))
                .spawn(move || lane(&shared, &queue));
            if let Err(e) = spawned {
                log::error!("tracker: starting a redis lane: {e}");
            }
        }
        Lanes { jobs, shared }
    }

    /// Sends `pipe` and returns its replies (server errors among them as values); a dead or
    /// slow Redis, or a full queue, is [`Refusal::Unavailable`].
    pub fn run(&self, pipe: &redis::Pipeline) -> Result<Vec<Value>, Refusal> {
        if self.shared.backing_off() {
            self.shared.errors.add(1);
            return Err(Refusal::Unavailable);
        }
        let (reply, answer) = bounded(1);
        let job = Job {
            packed: pipe.get_packed_pipeline(),
            count: pipe.cmd_iter().count(),
            reply,
        };
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.shared.errors.add(1);
                return Err(Refusal::Unavailable);
            }
            Err(TrySendError::Disconnected(_)) => {
                self.shared.failed("no redis lane is running");
                return Err(Refusal::Unavailable);
            }
        }
        // The lane's own socket timeouts end a stuck exchange; this bounds the wait in the
        // queue as well.
        match answer.recv_timeout(self.shared.timeout * 2) {
            Ok(Ok(values)) => Ok(values),
            Ok(Err(_)) => Err(Refusal::Unavailable),
            Err(_) => {
                self.shared.failed("no answer within the deadline");
                Err(Refusal::Unavailable)
            }
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
            let _ = self.run(redis::pipe().cmd("PING"));
        }
    }
}

/// One lane: takes what waits in the queue, sends it as one pipeline, hands out the replies.
fn lane(shared: &Shared, queue: &Receiver<Job>) {
    let mut conn: Option<redis::Connection> = None;
    let mut batch: Vec<Job> = Vec::with_capacity(BATCH_MAX);
    let mut packed = Vec::new();
    while let Ok(first) = queue.recv() {
        batch.push(first);
        while batch.len() < BATCH_MAX {
            match queue.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let outcome = exchange(shared, &mut conn, &batch, &mut packed);
        match outcome {
            Ok(mut values) => {
                for job in batch.drain(..) {
                    let rest = values.split_off(job.count.min(values.len()));
                    let _ = job.reply.send(Ok(std::mem::replace(&mut values, rest)));
                }
            }
            Err(e) => {
                conn = None;
                shared.failed(&e);
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Sends `packed` (`total` commands) on `conn`, made first if there is none.
fn send(
    shared: &Shared,
    conn: &mut Option<redis::Connection>,
    packed: &[u8],
    total: usize,
) -> redis::RedisResult<Vec<Value>> {
    if conn.is_none() {
        if shared.backing_off() {
            return Err(RedisError::from((
                ErrorKind::IoError,
                "backing off",
                shared.last_error.lock().clone(),
            )));
        }
        *conn = Some(shared.connect()?);
    }
    match conn.as_mut() {
        Some(c) => c.req_packed_commands(packed, 0, total),
        None => Err(RedisError::from((ErrorKind::IoError, "no connection"))),
    }
}

/// Sends `batch` on the lane's connection (made first if needed) and returns all replies, in
/// order; requests answered `NOSCRIPT` are sent again after the script is loaded.
fn exchange(
    shared: &Shared,
    conn: &mut Option<redis::Connection>,
    batch: &[Job],
    packed: &mut Vec<u8>,
) -> Result<Vec<Value>, String> {
    packed.clear();
    let mut total = 0;
    for job in batch {
        packed.extend_from_slice(&job.packed);
        total += job.count;
    }
    // A connection kept from before may have died with a restarted Redis: one more try on a
    // new one (the announce script is safe to run twice: a repeated announce changes nothing).
    let reused = conn.is_some();
    let mut sent = send(shared, conn, packed, total);
    if let Err(e) = &sent {
        if reused && !e.is_timeout() {
            *conn = None;
            sent = send(shared, conn, packed, total);
        }
    }
    let mut values = sent.map_err(|e| e.to_string())?;
    let Some(c) = conn.as_mut() else {
        return Err("no connection".into());
    };
    if values.len() != total {
        return Err(format!("{} replies to {total} commands", values.len()));
    }
    let mut at = 0;
    let mut loaded = false;
    for job in batch {
        let noscript = matches!(values.get(at), Some(Value::ServerError(e))
            if RedisError::from(e.clone()).kind() == ErrorKind::NoScriptError);
        if noscript {
            if !loaded {
                redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(shared.script)
                    .query::<String>(c)
                    .map_err(|e| e.to_string())?;
                loaded = true;
            }
            let again = c
                .req_packed_commands(&job.packed, 0, job.count)
                .map_err(|e| e.to_string())?;
            if again.len() != job.count {
                return Err("short reply after loading the script".into());
            }
            values.splice(at..at + job.count, again);
        }
        at += job.count;
    }
    shared.reached();
    Ok(values)
}
