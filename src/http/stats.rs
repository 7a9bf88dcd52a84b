//! Request and transfer counters shared by the HTTP workers, with a one-minute window for
//! requests per second. All counters are atomics; the window is one small mutex.

use super::download::Kind;
pub use crate::hash::Counter;
use parking_lot::Mutex;
use std::time::Instant;

/// Seconds in the requests/s window.
const WINDOW_SECS: usize = 60;

pub struct Stats {
    pub started: Instant,
    pub requests: Counter,
    pub responses_4xx: Counter,
    pub responses_5xx: Counter,
    pub rate_limited: Counter,
    pub overloaded: Counter,
    pub downloads: Counter,
    pub download_bytes: Counter,
    pub webseed_requests: Counter,
    pub webseed_bytes: Counter,
    pub uploads_new: Counter,
    pub uploads_existing: Counter,
    pub upload_bytes: Counter,
    pub read_errors: Counter,
    /// `(second since start, requests in it)` for the last minute.
    window: Mutex<[(u64, u64); WINDOW_SECS]>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            requests: Counter::default(),
            responses_4xx: Counter::default(),
            responses_5xx: Counter::default(),
            rate_limited: Counter::default(),
            overloaded: Counter::default(),
            downloads: Counter::default(),
            download_bytes: Counter::default(),
            webseed_requests: Counter::default(),
            webseed_bytes: Counter::default(),
            uploads_new: Counter::default(),
            uploads_existing: Counter::default(),
            upload_bytes: Counter::default(),
            read_errors: Counter::default(),
            window: Mutex::new([(u64::MAX, 0); WINDOW_SECS]),
        }
    }
}

impl Stats {
    /// Counts a finished request by its status.
    pub fn request(&self, status: u16) {
        self.requests.add(1);
        match status {
            400..=499 => self.responses_4xx.add(1),
            500..=599 => self.responses_5xx.add(1),
            _ => {}
        }
        let sec = self.started.elapsed().as_secs();
        let mut w = self.window.lock();
        let slot = &mut w[sec as usize % WINDOW_SECS];
        if slot.0 != sec {
            *slot = (sec, 0);
        }
        slot.1 += 1;
    }

    /// Requests per second over the last full minute (or since start).
    pub fn requests_per_sec(&self) -> f64 {
        let now = self.started.elapsed().as_secs();
        let w = self.window.lock();
        let recent: u64 = w
            .iter()
            .filter(|(s, _)| *s != u64::MAX && *s < now && now - *s <= WINDOW_SECS as u64)
            .map(|(_, n)| n)
            .sum();
        let span = now.clamp(1, WINDOW_SECS as u64);
        recent as f64 / span as f64
    }

    pub fn served(&self, kind: Kind, bytes: u64) {
        match kind {
            Kind::Download | Kind::Blob => {
                self.downloads.add(1);
                self.download_bytes.add(bytes);
            }
            Kind::Webseed => {
                self.webseed_requests.add(1);
                self.webseed_bytes.add(bytes);
            }
        }
    }

    pub fn uploaded(&self, bytes: u64, new: bool) {
        if new {
            self.uploads_new.add(1);
            self.upload_bytes.add(bytes);
        } else {
            self.uploads_existing.add(1);
        }
    }

    pub fn read_error(&self) {
        self.read_errors.add(1);
    }
}
