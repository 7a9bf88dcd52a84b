//! The tracker's `maintenance` thread: every `flush_secs` it writes completed-download counts
//! to SQLite, and about every 30 s it expires silent peers. It flushes once more on stop.

use super::Tracker;
use crate::store::db::Db;
use crossbeam_channel::{bounded, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Seconds between expiry sweeps (peers live for an hour by default, so this is fine-grained
/// enough, and a sweep of a million peers takes milliseconds).
const SWEEP_SECS: u64 = 30;

pub struct Maintenance {
    stop: Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl Maintenance {
    pub fn start(tracker: Arc<Tracker>, db: Arc<Db>) -> std::io::Result<Maintenance> {
        let (stop, stopped) = bounded::<()>(1);
        let flush_every = Duration::from_secs(tracker.config.flush_secs);
        let sweep_every =
            Duration::from_secs(SWEEP_SECS.min(tracker.config.peer_timeout_secs as u64));
        let thread = std::thread::Builder::new()
            .name("maintenance".into())
            .spawn(move || {
                let mut last_sweep = Instant::now();
                loop {
                    let wait = flush_every.min(sweep_every.saturating_sub(last_sweep.elapsed()));
                    match stopped.recv_timeout(wait.max(Duration::from_millis(10))) {
                        Err(RecvTimeoutError::Timeout) => {}
                        _ => break,
                    }
                    tracker.flush(&db);
                    if last_sweep.elapsed() >= sweep_every {
                        last_sweep = Instant::now();
                        let (peers, torrents) = tracker.sweep();
                        if peers + torrents > 0 {
                            log::debug!("tracker: expired {peers} peers, {torrents} torrents");
                        }
                    }
                }
                tracker.flush(&db);
            })?;
        Ok(Maintenance {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread after a last flush.
    pub fn stop(mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
