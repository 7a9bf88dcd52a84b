//! Once a tick, each download's rates and peers are copied into its
//! [`DownloadStatus::report`](crate::net::download::DownloadStatus) for the API: the peer
//! list's ranking (score, reasons, failures, back-off) merged with what the engine measures
//! of connected peers and webseeds (rate, choke, snub, blocks in flight), each address once,
//! at most [`MAX_REPORTED_PEERS`] rows. Rates are payload bytes per second, smoothed.

use super::super::*;
use crate::net::download::{PeerRow, MAX_REPORTED_PEERS};
use std::sync::atomic::Ordering;

impl Loop {
    pub(in crate::net::event_loop) fn update_report(&mut self, ih: [u8; 20]) {
        let now = now_ms(self.epoch);
        let Some(dl) = self.downloads.get(&ih).filter(|d| d.stream) else {
            // Only fetch-through downloads are shown by the API.
            return;
        };
        let rates = dl.engine.peer_rates();
        let mut rows: Vec<PeerRow> = Vec::new();
        for (i, r) in dl
            .peers
            .ranked(now, MAX_REPORTED_PEERS)
            .into_iter()
            .enumerate()
        {
            let live = rates.iter().find(|p| !p.web && p.addr == r.addr);
            let state = if dl.engine.is_banned(r.addr) {
                "banned"
            } else if r.connected || live.is_some() {
                "connected"
            } else if self.dialing.contains(&r.addr) {
                "dialing"
            } else if r.retry_in_ms > 0 {
                "backoff"
            } else {
                "known"
            };
            rows.push(PeerRow {
                addr: r.addr.to_string(),
                source: r.source.name(),
                failures: r.failures,
                state,
                rate_down: live.map_or(0, |p| p.rate),
                choking: live.is_none_or(|p| p.choking),
                snubbed: live.is_some_and(|p| p.snubbed),
                in_flight: live.map_or(0, |p| p.in_flight),
                pieces: live.map_or(0, |p| p.pieces),
                rank: Some(i + 1),
                ranked: Some(r),
            });
        }
        // Connected peers the list does not hold (it was full), and webseeds.
        for p in &rates {
            if rows.len() >= MAX_REPORTED_PEERS {
                break;
            }
            let addr = if p.web {
                match dl.webseeds.iter().find(|w| w.id == p.id) {
                    Some(w) => w.url.clone(),
                    None => continue,
                }
            } else {
                p.addr.to_string()
            };
            if rows.iter().any(|r| r.addr == addr) {
                continue;
            }
            rows.push(PeerRow {
                addr,
                source: if p.web { "webseed" } else { "incoming" },
                failures: 0,
                state: "connected",
                rate_down: p.rate,
                choking: p.choking,
                snubbed: p.snubbed,
                in_flight: p.in_flight,
                pieces: p.pieces,
                rank: None,
                ranked: None,
            });
        }
        let s = &dl.status;
        let (down, up) = (
            s.downloaded.load(Ordering::Relaxed),
            s.uploaded.load(Ordering::Relaxed),
        );
        let clock = Instant::now();
        let mut report = s.report.lock();
        // The first sample counts from zero over one tick (the download began within it).
        let (ms, d0, u0) = match report.sampled {
            Some((at, d0, u0)) => (clock.duration_since(at).as_millis().max(1) as u64, d0, u0),
            None => (1000, 0, 0),
        };
        let per_sec = |now: u64, then: u64| now.saturating_sub(then).saturating_mul(1000) / ms;
        // Half the new second, half the past.
        report.rate_down = (report.rate_down + per_sec(down, d0)) / 2;
        report.rate_up = (report.rate_up + per_sec(up, u0)) / 2;
        report.sampled = Some((clock, down, up));
        report.peers = rows;
    }
}
