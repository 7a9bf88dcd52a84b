//! Request and transfer counters shared by the HTTP workers, with a one-minute window for
//! requests per second. All counters are atomics; the window is one small mutex.

use super::download::Kind;
pub use crate::hash::Counter;
use parking_lot::Mutex;
use std::time::Instant;

/// Seconds in the requests/s window.
const WINDOW_SECS: usize = 60;
/// Seconds between history samples, and how many are kept (one hour).
pub const HISTORY_STEP_SECS: u64 = 10;
const HISTORY_LEN: usize = 360;

/// Cumulative counters at one moment, for the dashboard's chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Sample {
    /// Seconds since start.
    pub t: u64,
    /// Bytes sent (HTTP bodies served and peer wire uploads).
    pub sent: u64,
    /// Bytes received (uploads stored and peer wire downloads).
    pub received: u64,
    pub requests: u64,
}

pub struct Stats {
    pub started: Instant,
    pub requests: Counter,
    pub responses_4xx: Counter,
    pub responses_5xx: Counter,
    pub rate_limited: Counter,
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
    /// Samples at most every [`HISTORY_STEP_SECS`], the last hour, oldest first.
    history: Mutex<std::collections::VecDeque<Sample>>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            requests: Counter::default(),
            responses_4xx: Counter::default(),
            responses_5xx: Counter::default(),
            rate_limited: Counter::default(),
            downloads: Counter::default(),
            download_bytes: Counter::default(),
            webseed_requests: Counter::default(),
            webseed_bytes: Counter::default(),
            uploads_new: Counter::default(),
            uploads_existing: Counter::default(),
            upload_bytes: Counter::default(),
            read_errors: Counter::default(),
            window: Mutex::new([(u64::MAX, 0); WINDOW_SECS]),
            history: Mutex::new(std::collections::VecDeque::new()),
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

    /// Records `sample` if the last one is at least a step old, and returns the last hour.
    /// Taken when the dashboard asks (every few seconds while it is open); gaps while
    /// nobody looks show as the average over the gap.
    pub fn history(&self, sample: Sample) -> Vec<Sample> {
        let mut h = self.history.lock();
        if h.back()
            .is_none_or(|last| sample.t >= last.t + HISTORY_STEP_SECS)
        {
            h.push_back(sample);
        }
        while h.len() > HISTORY_LEN
            || h.front()
                .is_some_and(|f| f.t + 3600 + HISTORY_STEP_SECS < sample.t)
        {
            h.pop_front();
        }
        let mut out: Vec<Sample> = h.iter().copied().collect();
        if out.last().is_some_and(|l| l.t < sample.t) {
            out.push(sample);
        }
        out
    }

    pub fn read_error(&self) {
        self.read_errors.add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keeps_one_sample_per_step_and_one_hour() {
        let s = Stats::default();
        let at = |t: u64| Sample {
            t,
            sent: t * 10,
            received: t,
            requests: t / 2,
        };
        assert_eq!(s.history(at(0)).len(), 1);
        // Within a step: not kept, but the current value is shown last.
        let h = s.history(at(4));
        assert_eq!(h.iter().map(|x| x.t).collect::<Vec<_>>(), vec![0, 4]);
        assert_eq!(s.history(at(10)).len(), 2);
        for t in (20..8000).step_by(10) {
            s.history(at(t));
        }
        let h = s.history(at(8000));
        assert!(h.len() <= HISTORY_LEN + 1, "{}", h.len());
        assert!(h[0].t >= 8000 - 3600 - HISTORY_STEP_SECS, "{}", h[0].t);
    }
}
