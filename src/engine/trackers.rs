//! One torrent's trackers (BEP-12 tiers): which announces to start when, with which event,
//! and what to show about each URL. Pure and clock-free: the caller passes the time in
//! milliseconds and runs the announces on the `announce-N` threads, then reports the outcome.
//!
//! Rules: URLs are shuffled inside each tier once (BEP-12), duplicates and schemes other than
//! http, https and udp are dropped. Every tier is announced, one announce in flight per tier
//! (libtorrent's `announce_to_all_tiers`). Inside a tier the URLs are tried in order; one that
//! answers moves to the front of its tier. A failed URL backs off on its own (15 s, 30 s, ...
//! at most 30 min) and the tier goes on to its next URL at once. The tracker's interval is
//! clamped to [30 s, 1 h] and its min interval honored (also for the `completed` announce,
//! which is sent as soon as that allows). A URL is told `started` until it has answered once.

use crate::engine::Rng;
use crate::proto::tracker::client::Answer;
use crate::proto::tracker::http::Event;

/// Most tiers kept, and most URLs kept over all tiers.
pub const MAX_TIERS: usize = 32;
pub const MAX_URLS: usize = 64;
/// First back-off after a failure; it doubles up to [`MAX_BACKOFF_MS`].
pub const FIRST_BACKOFF_MS: u64 = 15_000;
pub const MAX_BACKOFF_MS: u64 = 30 * 60_000;
/// Bounds of the re-announce interval.
pub const MIN_INTERVAL_MS: u64 = 30_000;
pub const MAX_INTERVAL_MS: u64 = 3_600_000;

/// The `event` of an announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnounceEvent {
    Started,
    Regular,
    Completed,
    Stopped,
}

/// An announce to start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub url: String,
    pub event: AnnounceEvent,
}

/// What a successful announce told us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub interval_secs: u32,
    pub min_interval_secs: Option<u32>,
    pub peers: usize,
}

impl From<AnnounceEvent> for Event {
    fn from(e: AnnounceEvent) -> Event {
        match e {
            AnnounceEvent::Started => Event::Started,
            AnnounceEvent::Regular => Event::None,
            AnnounceEvent::Completed => Event::Completed,
            AnnounceEvent::Stopped => Event::Stopped,
        }
    }
}

impl From<&Answer> for Outcome {
    fn from(a: &Answer) -> Outcome {
        Outcome {
            interval_secs: a.interval,
            min_interval_secs: a.min_interval,
            peers: a.peers.len(),
        }
    }
}

#[derive(Debug, Clone)]
struct Url {
    url: String,
    /// Answered at least once (so it has been told `started`, and must be told `stopped`).
    answered: bool,
    fails: u32,
    /// Not tried again before this time after a failure.
    retry_at_ms: u64,
    last: Option<Result<usize, String>>,
}

#[derive(Debug, Clone)]
struct Tier {
    urls: Vec<Url>,
    /// Where the next announce starts looking (the URL after the last one that failed).
    cursor: usize,
    /// The URL with an announce in flight, and the event it carries.
    in_flight: Option<(String, AnnounceEvent)>,
    next_ms: u64,
    /// The tracker's min interval: no announce before this time.
    earliest_ms: u64,
    completed_pending: bool,
}

/// A torrent's trackers.
#[derive(Debug, Clone)]
pub struct Trackers {
    tiers: Vec<Tier>,
    stopped: bool,
}

fn supported(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    ["http://", "https://", "udp://"]
        .iter()
        .any(|s| lower.starts_with(s) && lower.len() > s.len())
}

fn backoff_ms(fails: u32) -> u64 {
    FIRST_BACKOFF_MS
        .saturating_mul(1u64 << fails.saturating_sub(1).min(20))
        .min(MAX_BACKOFF_MS)
}

impl Trackers {
    /// The tiers as the torrent lists them (`announce-list`, or `[[announce]]`); `seed` drives
    /// the shuffle inside each tier.
    pub fn new(tiers: Vec<Vec<String>>, seed: u64) -> Trackers {
        let mut rng = Rng::new(seed);
        let mut seen: Vec<String> = Vec::new();
        let mut out = Vec::new();
        for tier in tiers {
            let mut urls = Vec::new();
            for url in tier {
                let url = url.trim().to_string();
                if seen.len() >= MAX_URLS || !supported(&url) || seen.contains(&url) {
                    continue;
                }
                seen.push(url.clone());
                urls.push(Url {
                    url,
                    answered: false,
                    fails: 0,
                    retry_at_ms: 0,
                    last: None,
                });
            }
            if urls.is_empty() || out.len() >= MAX_TIERS {
                continue;
            }
            for i in (1..urls.len()).rev() {
                let j = rng.below(i as u64 + 1) as usize;
                urls.swap(i, j);
            }
            out.push(Tier {
                urls,
                cursor: 0,
                in_flight: None,
                next_ms: 0,
                earliest_ms: 0,
                completed_pending: false,
            });
        }
        Trackers {
            tiers: out,
            stopped: false,
        }
    }

    /// The announces to start now (at most one per tier), marked in flight.
    pub fn due(&mut self, now_ms: u64) -> Vec<Due> {
        let mut due = Vec::new();
        if self.stopped {
            return due;
        }
        for tier in &mut self.tiers {
            if tier.in_flight.is_some() || now_ms < tier.next_ms.max(tier.earliest_ms) {
                continue;
            }
            let n = tier.urls.len();
            let Some(i) = (0..n)
                .map(|k| (tier.cursor + k) % n)
                .find(|&i| tier.urls[i].retry_at_ms <= now_ms)
            else {
                continue;
            };
            let u = &tier.urls[i];
            let event = if tier.completed_pending {
                AnnounceEvent::Completed
            } else if !u.answered {
                AnnounceEvent::Started
            } else {
                AnnounceEvent::Regular
            };
            tier.in_flight = Some((u.url.clone(), event));
            due.push(Due {
                url: u.url.clone(),
                event,
            });
        }
        due
    }

    /// The end of an announce that [`due`](Self::due) started. Unknown URLs and URLs not in
    /// flight are ignored (a late answer after [`stopping`](Self::stopping), say).
    pub fn done(&mut self, url: &str, result: Result<Outcome, String>, now_ms: u64) {
        let Some(tier) = self
            .tiers
            .iter_mut()
            .find(|t| t.in_flight.as_ref().is_some_and(|(u, _)| u == url))
        else {
            return;
        };
        let (_, event) = tier.in_flight.take().expect("checked");
        let Some(i) = tier.urls.iter().position(|u| u.url == url) else {
            return;
        };
        match result {
            Ok(o) => {
                let mut u = tier.urls.remove(i);
                u.answered = true;
                u.fails = 0;
                u.retry_at_ms = 0;
                u.last = Some(Ok(o.peers));
                tier.urls.insert(0, u);
                tier.cursor = 0;
                if event == AnnounceEvent::Completed {
                    tier.completed_pending = false;
                }
                let interval =
                    (u64::from(o.interval_secs) * 1000).clamp(MIN_INTERVAL_MS, MAX_INTERVAL_MS);
                let min = o.min_interval_secs.map_or(MIN_INTERVAL_MS, |m| {
                    (u64::from(m) * 1000).clamp(MIN_INTERVAL_MS, MAX_INTERVAL_MS)
                });
                tier.next_ms = now_ms + interval.max(min);
                tier.earliest_ms = now_ms + min;
            }
            Err(e) => {
                let u = &mut tier.urls[i];
                u.fails = u.fails.saturating_add(1);
                u.retry_at_ms = now_ms + backoff_ms(u.fails);
                u.last = Some(Err(e));
                tier.cursor = (i + 1) % tier.urls.len();
            }
        }
    }

    /// The download finished: the next announce of every tier says `completed` (once; it is
    /// sent again on the tier's next URL if it fails), as early as the min interval allows.
    pub fn completed(&mut self) {
        for tier in &mut self.tiers {
            tier.completed_pending = true;
            tier.next_ms = tier.earliest_ms;
        }
    }

    /// The URLs to tell `stopped` (every one that answered at least once). Nothing is due
    /// afterwards.
    pub fn stopping(&mut self) -> Vec<String> {
        self.stopped = true;
        self.tiers
            .iter_mut()
            .flat_map(|t| {
                t.in_flight = None;
                t.urls.iter().filter(|u| u.answered).map(|u| u.url.clone())
            })
            .collect()
    }

    /// True when no usable tracker is left.
    pub fn is_empty(&self) -> bool {
        self.tiers.is_empty()
    }

    /// Each URL in tier order with its last result, for display.
    pub fn status(&self) -> Vec<(String, String)> {
        self.tiers
            .iter()
            .flat_map(|t| {
                t.urls.iter().map(|u| {
                    let s = match &u.last {
                        _ if t.in_flight.as_ref().is_some_and(|(f, _)| *f == u.url) => {
                            "announcing".to_string()
                        }
                        None => "not contacted".to_string(),
                        Some(Ok(n)) => format!("ok {n} peers"),
                        Some(Err(e)) => format!("error: {e}"),
                    };
                    (u.url.clone(), s)
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AnnounceEvent::*;

    fn ok(interval: u32, peers: usize) -> Result<Outcome, String> {
        Ok(Outcome {
            interval_secs: interval,
            min_interval_secs: None,
            peers,
        })
    }

    fn urls(due: &[Due]) -> Vec<&str> {
        due.iter().map(|d| d.url.as_str()).collect()
    }

    fn tiers(t: &[&[&str]]) -> Vec<Vec<String>> {
        t.iter()
            .map(|tier| tier.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    #[test]
    fn drops_duplicates_unsupported_and_empty_tiers() {
        let t = Trackers::new(
            tiers(&[
                &["wss://a/", "http://a/ann", "udp://b:1"],
                &["http://a/ann", "dht://x"],
                &[],
                &["HTTPS://c/ann", "http://"],
            ]),
            1,
        );
        let mut got: Vec<String> = t.status().into_iter().map(|(u, _)| u).collect();
        got.sort();
        assert_eq!(got, ["HTTPS://c/ann", "http://a/ann", "udp://b:1"]);
        assert_eq!(t.tiers.len(), 2);
        assert!(Trackers::new(tiers(&[&["ws://x"]]), 1).is_empty());
    }

    #[test]
    fn shuffles_inside_tiers_only() {
        let many: Vec<String> = (0..8).map(|i| format!("http://t{i}/")).collect();
        let orders: std::collections::HashSet<Vec<String>> = (0..20)
            .map(|seed| {
                let t = Trackers::new(vec![many.clone(), vec!["udp://last:1".into()]], seed);
                let s: Vec<String> = t.status().into_iter().map(|(u, _)| u).collect();
                assert_eq!(s[8], "udp://last:1", "tiers keep their order");
                s
            })
            .collect();
        assert!(orders.len() > 1, "the seed changes the order");
    }

    #[test]
    fn every_tier_one_in_flight_started_then_regular() {
        let mut t = Trackers::new(tiers(&[&["http://a/"], &["udp://b:1"]]), 3);
        let d = t.due(0);
        assert_eq!(urls(&d), ["http://a/", "udp://b:1"]);
        assert!(d.iter().all(|d| d.event == Started));
        assert!(t.due(1).is_empty(), "one announce in flight per tier");
        t.done("http://a/", ok(100, 5), 1000);
        assert_eq!(t.status()[0].1, "ok 5 peers");
        assert!(t.due(100_000).is_empty());
        let d = t.due(101_000);
        assert_eq!(urls(&d), ["http://a/"]);
        assert_eq!(d[0].event, Regular);
        t.done("udp://b:1", Err("timeout".into()), 2000);
        assert_eq!(t.status()[1].1, "error: timeout");
        // b alone in its tier: retried after its back-off, still `started`.
        assert!(t.due(16_999).is_empty());
        assert_eq!(t.due(17_000)[0].event, Started);
    }

    #[test]
    fn failures_move_on_in_the_tier_and_back_off_exponentially() {
        let mut t = Trackers::new(tiers(&[&["http://a/", "http://b/"]]), 0);
        let order: Vec<String> = t.status().into_iter().map(|(u, _)| u).collect();
        let (first, second) = (order[0].clone(), order[1].clone());
        assert_eq!(t.due(0)[0].url, first);
        t.done(&first, Err("refused".into()), 0);
        assert_eq!(t.due(0)[0].url, second, "next URL at once");
        t.done(&second, Err("refused".into()), 0);
        assert!(t.due(14_999).is_empty(), "both back off 15 s");
        assert_eq!(t.due(15_000)[0].url, first);
        t.done(&first, Err("refused".into()), 15_000);
        assert_eq!(t.due(15_000)[0].url, second);
        t.done(&second, Err("refused".into()), 15_000);
        assert!(t.due(44_999).is_empty(), "then 30 s");
        assert_eq!(backoff_ms(3), 60_000);
        assert_eq!(backoff_ms(10), MAX_BACKOFF_MS);
        assert_eq!(backoff_ms(u32::MAX), MAX_BACKOFF_MS);
        // The second one works: it moves to the front and is tried first from then on.
        assert_eq!(t.due(45_000)[0].url, first);
        t.done(&first, Err("refused".into()), 45_000);
        assert_eq!(t.due(45_000)[0].url, second);
        t.done(&second, ok(60, 1), 45_000);
        assert_eq!(t.status()[0].0, second);
        assert_eq!(t.due(105_000)[0].url, second);
    }

    #[test]
    fn intervals_are_clamped_and_min_interval_honored() {
        let mut t = Trackers::new(tiers(&[&["http://a/"]]), 0);
        t.due(0);
        t.done("http://a/", ok(1, 0), 0);
        assert!(t.due(29_999).is_empty(), "raised to 30 s");
        assert_eq!(t.due(30_000).len(), 1);
        t.done("http://a/", ok(86_400, 0), 30_000);
        assert_eq!(t.due(3_630_000).len(), 1, "capped at 1 h");
        let min = Ok(Outcome {
            interval_secs: 60,
            min_interval_secs: Some(600),
            peers: 0,
        });
        t.done("http://a/", min, 3_630_000);
        assert!(t.due(3_630_000 + 599_999).is_empty(), "min interval wins");
        assert_eq!(t.due(3_630_000 + 600_000).len(), 1);
    }

    #[test]
    fn completed_goes_to_each_tier_once_after_min_interval() {
        let mut t = Trackers::new(tiers(&[&["http://a/"], &["http://b/"]]), 0);
        t.due(0);
        t.done("http://a/", ok(1800, 0), 0);
        t.done("http://b/", ok(1800, 0), 0);
        t.completed();
        assert!(t.due(29_999).is_empty(), "min interval (30 s default)");
        let d = t.due(30_000);
        assert!(d.len() == 2 && d.iter().all(|d| d.event == Completed));
        t.done("http://a/", ok(1800, 0), 30_000);
        t.done("http://b/", Err("down".into()), 30_000);
        let d = t.due(45_000);
        assert_eq!(urls(&d), ["http://b/"]);
        assert_eq!(d[0].event, Completed, "retried until it got through");
        t.done("http://b/", ok(1800, 0), 45_000);
        let d = t.due(10_000_000);
        assert!(d.len() == 2 && d.iter().all(|d| d.event == Regular));
    }

    #[test]
    fn stopping_names_the_urls_that_answered() {
        let mut t = Trackers::new(tiers(&[&["http://a/"], &["udp://b:1"], &["http://c/"]]), 0);
        t.due(0);
        t.done("http://a/", ok(1800, 3), 0);
        t.done("udp://b:1", Err("x".into()), 0);
        assert_eq!(t.stopping(), ["http://a/"]);
        assert!(t.due(u64::MAX / 2).is_empty(), "nothing after stopping");
        t.done("http://c/", ok(1800, 3), 1);
        assert_eq!(t.status()[2].1, "not contacted", "late answers are ignored");
        t.done("http://nowhere/", ok(1, 1), 1);
    }
}
