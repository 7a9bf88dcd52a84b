//! The `nostr` thread: delivers queued events to every configured relay. The queue is the
//! `nostr_outbox` table, so a relay that is down, or a restart, loses nothing. A relay that
//! fails is retried after a back-off doubling from `retry_min_secs` to `retry_max_secs`;
//! `OK false` answers are logged and kept (the newest 100) for `/api/diagnostics`.

use super::relay::{Outcome, Relay, RelayUrl};
use crate::catalog::now_secs;
use crate::config::NostrConfig;
use crate::proto::nostr::{Event, Keys};
use crate::store::db::Db;
use crate::store::db_nostr::Rejection;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Events sent to one relay per connection.
const BATCH: usize = 50;
/// Attempts at an event that a reachable relay never accepts before it is dropped (a relay
/// that cannot be reached does not count against its events: they wait).
const MAX_ATTEMPTS: u32 = 30;
/// Rejections kept for diagnostics.
pub const MAX_REJECTIONS: usize = 100;

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    rejected: AtomicU64,
    failures: AtomicU64,
    dropped: AtomicU64,
}

/// The publisher: the queue's front door and the thread behind it.
pub struct Publisher {
    pub keys: Keys,
    relays: Vec<String>,
    db: Arc<Db>,
    config: NostrConfig,
    wake: Sender<()>,
    stop: Arc<AtomicBool>,
    alive: Arc<AtomicBool>,
    counters: Arc<Counters>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Publisher {
    /// Starts the `nostr` thread (even with no relays, so the queue keeps its shape).
    pub fn start(
        keys: Keys,
        relays: Vec<String>,
        db: Arc<Db>,
        config: NostrConfig,
    ) -> std::io::Result<Publisher> {
        match db.forget_relays_except(&relays) {
            Ok(0) => {}
            Ok(n) => log::info!("dropped {n} queued events for relays no longer configured"),
            Err(e) => log::warn!("cleaning the Nostr outbox: {e}"),
        }
        let (wake, woken) = bounded(1);
        let stop = Arc::new(AtomicBool::new(false));
        let alive = Arc::new(AtomicBool::new(true));
        let counters = Arc::new(Counters::default());
        let worker = Worker {
            relays: relays
                .iter()
                .filter_map(|r| RelayUrl::parse(r).ok())
                .map(|url| (url, RelayState::default()))
                .collect(),
            db: Arc::clone(&db),
            config: config.clone(),
            stop: Arc::clone(&stop),
            counters: Arc::clone(&counters),
        };
        let alive_flag = Arc::clone(&alive);
        let thread = std::thread::Builder::new()
            .name("nostr".into())
            .spawn(move || {
                worker.run(&woken);
                alive_flag.store(false, Ordering::Relaxed);
            })?;
        Ok(Publisher {
            keys,
            relays,
            db,
            config,
            wake,
            stop,
            alive,
            counters,
            thread: Mutex::new(Some(thread)),
        })
    }

    pub fn relays(&self) -> &[String] {
        &self.relays
    }

    /// Queues a signed event for every relay and wakes the thread.
    pub fn announce(&self, event: &Event) {
        if self.relays.is_empty() {
            return;
        }
        match self.db.enqueue(
            &self.relays,
            &event.id,
            &event.to_json(),
            now_secs(),
            self.config.max_outbox,
        ) {
            Ok(0) => {}
            Ok(n) => {
                self.counters.dropped.fetch_add(n as u64, Ordering::Relaxed);
                log::warn!("Nostr outbox full: dropped the {n} oldest queued events");
            }
            Err(e) => log::error!("queueing Nostr event {}: {e}", event.id),
        }
        let _ = self.wake.try_send(());
    }

    /// Whether the thread is running (or was stopped on purpose).
    pub fn healthy(&self) -> bool {
        self.alive.load(Ordering::Relaxed) || self.stop.load(Ordering::Relaxed)
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.wake.try_send(());
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }

    /// Identity, relays, queue, counters and the newest rejections.
    pub fn status(&self) -> Value {
        let queued: Vec<Value> = self
            .db
            .outbox_summary()
            .unwrap_or_default()
            .into_iter()
            .map(|(relay, n, err)| json!({ "relay": relay, "queued": n, "last_error": err }))
            .collect();
        let rejections: Vec<Value> = self
            .db
            .rejections(MAX_REJECTIONS)
            .unwrap_or_default()
            .into_iter()
            .map(|r| {
                json!({ "relay": r.relay, "event_id": r.event_id, "message": r.message, "at": r.at })
            })
            .collect();
        let c = &self.counters;
        json!({
            "pubkey": self.keys.pubkey,
            "npub": self.keys.npub(),
            "relays": self.relays,
            "outbox": queued,
            "accepted": c.accepted.load(Ordering::Relaxed),
            "rejected": c.rejected.load(Ordering::Relaxed),
            "relay_failures": c.failures.load(Ordering::Relaxed),
            "dropped": c.dropped.load(Ordering::Relaxed),
            "rejections": rejections,
            "thread_alive": self.alive.load(Ordering::Relaxed),
        })
    }

    /// Events accepted by relays and relay failures, for metrics.
    pub fn counts(&self) -> (u64, u64, u64) {
        let c = &self.counters;
        (
            c.accepted.load(Ordering::Relaxed),
            c.rejected.load(Ordering::Relaxed),
            c.failures.load(Ordering::Relaxed),
        )
    }
}

#[derive(Default)]
struct RelayState {
    failures: u32,
    /// Unix seconds before which the relay is not tried.
    not_before: i64,
    last_error: Option<String>,
}

struct Worker {
    relays: Vec<(RelayUrl, RelayState)>,
    db: Arc<Db>,
    config: NostrConfig,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
}

impl Worker {
    fn run(mut self, woken: &Receiver<()>) {
        let mut busy = false;
        loop {
            if !busy {
                match woken.recv_timeout(Duration::from_secs(1)) {
                    Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            busy = false;
            let now = now_secs();
            let timeout = Duration::from_secs(self.config.timeout_secs);
            for i in 0..self.relays.len() {
                if self.stop.load(Ordering::Relaxed) {
                    return;
                }
                let (url, state) = &mut self.relays[i];
                if state.not_before > now {
                    continue;
                }
                let due = match self.db.due(&url.url, now, BATCH) {
                    Ok(d) => d,
                    Err(e) => {
                        log::error!("reading the Nostr outbox: {e}");
                        continue;
                    }
                };
                if due.is_empty() {
                    continue;
                }
                let batch: Vec<(String, String)> = due
                    .into_iter()
                    .map(|o| (o.event_id, o.event_json))
                    .collect();
                let result = Relay::connect(url, timeout).and_then(|mut relay| {
                    let r = relay.publish(&batch);
                    relay.close();
                    r
                });
                let outcomes = match result {
                    Ok(o) => o,
                    Err(e) => {
                        self.failed(i, now, &e, false);
                        continue;
                    }
                };
                let (url, state) = &mut self.relays[i];
                let mut deferred = 0;
                for (id, outcome) in &outcomes {
                    match outcome {
                        Outcome::Accepted => {
                            self.counters.accepted.fetch_add(1, Ordering::Relaxed);
                            log::debug!("relay {} accepted event {id}", url.url);
                        }
                        Outcome::Rejected(msg) => {
                            self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                            log::warn!("relay {} rejected event {id}: {msg}", url.url);
                            let rejection = Rejection {
                                relay: url.url.clone(),
                                event_id: id.clone(),
                                message: msg.clone(),
                                at: now,
                            };
                            // Out of the outbox first: whoever sees the rejection sees the
                            // event gone from the queue too.
                            if let Err(e) = self.db.sent(&url.url, id) {
                                log::error!("updating the Nostr outbox: {e}");
                            }
                            if let Err(e) = self.db.add_rejection(&rejection, MAX_REJECTIONS) {
                                log::error!("recording a relay rejection: {e}");
                            }
                            continue;
                        }
                        Outcome::Deferred(msg) => {
                            deferred += 1;
                            log::info!("relay {} deferred event {id}: {msg}", url.url);
                            continue;
                        }
                    }
                    if let Err(e) = self.db.sent(&url.url, id) {
                        log::error!("updating the Nostr outbox: {e}");
                    }
                }
                if outcomes.len() < batch.len() || deferred > 0 {
                    // Unanswered or refused for now: the whole relay waits (a relay that
                    // rate-limits or drops events is not to be hammered), and an event that
                    // keeps failing gives up after MAX_ATTEMPTS.
                    self.failed(i, now, "some events were not accepted yet", true);
                    self.give_up(i, now);
                } else {
                    if state.failures > 0 {
                        log::info!("relay {} reachable again", url.url);
                    }
                    state.failures = 0;
                    state.last_error = None;
                    busy |= batch.len() == BATCH;
                }
            }
        }
    }

    /// Drops a relay's events that failed MAX_ATTEMPTS times, recording each as rejected.
    fn give_up(&mut self, i: usize, now: i64) {
        let url = &self.relays[i].0.url;
        match self.db.drop_exhausted(url, MAX_ATTEMPTS) {
            Ok(ids) => {
                for id in ids {
                    self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                    log::warn!(
                        "relay {url}: giving up on event {id} after {MAX_ATTEMPTS} attempts"
                    );
                    let rejection = Rejection {
                        relay: url.clone(),
                        event_id: id,
                        message: format!("gave up after {MAX_ATTEMPTS} attempts"),
                        at: now,
                    };
                    if let Err(e) = self.db.add_rejection(&rejection, MAX_REJECTIONS) {
                        log::error!("recording a relay rejection: {e}");
                    }
                }
            }
            Err(e) => log::error!("updating the Nostr outbox: {e}"),
        }
    }

    /// Puts a relay's queue off with the back-off and remembers the error.
    fn failed(&mut self, i: usize, now: i64, error: &str, attempt: bool) {
        let (url, state) = &mut self.relays[i];
        self.counters.failures.fetch_add(1, Ordering::Relaxed);
        state.failures = state.failures.saturating_add(1);
        let delay = self
            .config
            .retry_min_secs
            .saturating_mul(1u64 << (state.failures - 1).min(20))
            .min(self.config.retry_max_secs) as i64;
        state.not_before = now + delay;
        if state.last_error.as_deref() != Some(error) {
            log::warn!("relay {}: {error}; retrying in {delay} s", url.url);
        }
        state.last_error = Some(error.to_string());
        if let Err(e) = self.db.defer(&url.url, now + delay, error, attempt) {
            log::error!("updating the Nostr outbox: {e}");
        }
    }
}
