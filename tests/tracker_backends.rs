//! The same tracker rules run against both backends: the in-process registry and Redis (a
//! private redis-server per test). Every scenario is one function over a `Tracker`, so the
//! two answer alike by construction of the test: counts, completions, keys, address families,
//! caps, modes, the gateway's own seed and the minimum-interval cheap path.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use support::redis::Redis;
use torrent_gateway::config::{TrackerBackend, TrackerConfig, TrackerMode};
use torrent_gateway::proto::tracker::http::{Event, SwarmCounts};
use torrent_gateway::tracker::registry::{AnnounceIn, Family, Peer, Refusal};
use torrent_gateway::tracker::Tracker;

fn config(mode: TrackerMode) -> TrackerConfig {
    TrackerConfig {
        mode,
        max_peers_per_torrent: 40,
        ..TrackerConfig::default()
    }
}

/// Hosted torrents: those whose info-hash starts with 0xAA.
fn tracker(mut config: TrackerConfig, redis: Option<&Redis>) -> Tracker {
    if let Some(r) = redis {
        config.backend = TrackerBackend::Redis;
        config.redis_url = r.url();
    }
    Tracker::new(config, Box::new(|h| h[0] == 0xAA), Default::default()).unwrap()
}

/// Runs `scenario` against a memory tracker and a Redis tracker with the same config.
fn both(config: TrackerConfig, scenario: impl Fn(&Tracker)) {
    scenario(&tracker(config.clone(), None));
    let redis = Redis::start();
    scenario(&tracker(config, Some(&redis)));
}

fn ann(ih: u8, peer: u8, ip: &str, port: u16, left: u64, event: Event) -> AnnounceIn {
    AnnounceIn {
        info_hash: [ih; 20],
        peer_id: [peer; 20],
        ip: ip.parse().unwrap(),
        port,
        left: Some(left),
        event,
        key: None,
        numwant: 50,
        family: Family::Both,
        min_interval: 0,
    }
}

fn go(t: &Tracker, a: &AnnounceIn) -> (u32, u32, u64, Vec<SocketAddr>) {
    let mut out: Vec<Peer> = Vec::new();
    let c = t.announce(a, &mut out).unwrap();
    (
        c.complete,
        c.incomplete,
        c.downloaded,
        out.iter().map(Peer::addr).collect(),
    )
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn counts_completions_and_stops_alike() {
    both(config(TrackerMode::Open), |t| {
        let (c, i, d, peers) = go(t, &ann(1, 1, "127.0.0.1", 1001, 0, Event::Started));
        assert_eq!((c, i, d), (1, 0, 0));
        assert!(peers.is_empty(), "never handed itself");
        let (c, i, _, peers) = go(t, &ann(1, 2, "127.0.0.1", 1002, 10, Event::Started));
        assert_eq!((c, i), (1, 1));
        assert_eq!(peers, [addr("127.0.0.1:1001")]);
        let mut out: Vec<Peer> = Vec::new();
        t.announce(&ann(1, 2, "127.0.0.1", 1002, 10, Event::None), &mut out)
            .unwrap();
        assert_eq!(
            out[0].id, [1; 20],
            "peer ids come back (the dictionary form)"
        );
        for _ in 0..2 {
            let (c, i, d, _) = go(t, &ann(1, 2, "127.0.0.1", 1002, 0, Event::Completed));
            assert_eq!((c, i, d), (2, 0, 1), "a completion counts once");
        }
        let (_, _, _, peers) = go(t, &ann(1, 1, "127.0.0.1", 1001, 0, Event::None));
        assert!(peers.is_empty(), "a seed is not handed seeds");
        let (c, i, d, _) = go(t, &ann(1, 2, "127.0.0.1", 1002, 0, Event::Stopped));
        assert_eq!((c, i, d), (1, 0, 1));
        let s = t.scrape(&[1; 20]).unwrap();
        assert_eq!((s.complete, s.incomplete, s.downloaded), (1, 0, 1));
        // A stopped announce of an unknown torrent creates nothing.
        let (c, i, d, _) = go(t, &ann(9, 1, "127.0.0.1", 1, 5, Event::Stopped));
        assert_eq!((c, i, d), (0, 0, 0));
        let many = t.scrape_many(&[[1; 20], [9; 20]]).unwrap();
        assert_eq!((many[0].complete, many[1].complete), (1, 0));
    });
}

#[test]
fn keys_move_a_client_and_guard_it_per_family() {
    both(config(TrackerMode::Open), |t| {
        let mut a = ann(1, 1, "127.0.0.1", 1001, 5, Event::Started);
        a.key = Some(7);
        go(t, &a);
        a.ip = "10.0.0.2".parse().unwrap();
        go(t, &a);
        assert_eq!(t.scrape(&[1; 20]).unwrap().incomplete, 1, "moved, one peer");
        // Another key, or none, is somebody else: it cannot stop the keyed entry.
        let mut other = ann(1, 1, "10.0.0.3", 1001, 5, Event::Stopped);
        other.key = Some(8);
        go(t, &other);
        other.key = None;
        go(t, &other);
        assert_eq!(t.scrape(&[1; 20]).unwrap().incomplete, 1);
        let (_, _, _, peers) = go(t, &ann(1, 2, "10.0.0.9", 1002, 5, Event::Started));
        assert_eq!(peers, [addr("10.0.0.2:1001")]);
        // The same key from the client's IPv6 socket is a second entry, so an IPv4-only
        // peer always finds the IPv4 one.
        a.ip = "::1".parse().unwrap();
        go(t, &a);
        assert_eq!(t.scrape(&[1; 20]).unwrap().incomplete, 3);
        for _ in 0..5 {
            let mut v4 = ann(1, 3, "10.0.0.10", 1003, 5, Event::None);
            v4.family = Family::V4;
            let (_, _, _, peers) = go(t, &v4);
            assert!(peers.contains(&addr("10.0.0.2:1001")), "{peers:?}");
            assert!(peers.iter().all(SocketAddr::is_ipv4));
        }
    });
}

#[test]
fn families_numwant_and_requester_family_first() {
    both(config(TrackerMode::Open), |t| {
        for i in 0..30u8 {
            let ip = if i % 2 == 1 { "::1" } else { "127.0.0.1" };
            go(t, &ann(1, i, ip, 2000 + u16::from(i), 1, Event::Started));
        }
        let mut a = ann(1, 100, "127.0.0.2", 9, 1, Event::None);
        a.family = Family::V6;
        let (_, _, _, peers) = go(t, &a);
        assert_eq!(peers.len(), 15);
        assert!(peers.iter().all(SocketAddr::is_ipv6));
        a.family = Family::V4;
        a.numwant = 7;
        let (_, _, _, peers) = go(t, &a);
        assert_eq!(peers.len(), 7);
        assert!(peers.iter().all(SocketAddr::is_ipv4));
        // V6First: all 15 IPv6 peers before any IPv4 one.
        a.family = Family::V6First;
        a.numwant = 20;
        let (_, _, _, peers) = go(t, &a);
        assert_eq!(peers.len(), 20);
        assert!(peers[..15].iter().all(SocketAddr::is_ipv6), "{peers:?}");
        assert!(peers[15..].iter().all(SocketAddr::is_ipv4), "{peers:?}");
    });
}

#[test]
fn the_swarm_cap_refuses_with_a_reason() {
    both(config(TrackerMode::Open), |t| {
        for p in 0..40 {
            go(
                t,
                &ann(1, p, "127.0.0.1", 1000 + u16::from(p), 1, Event::Started),
            );
        }
        let mut out: Vec<Peer> = Vec::new();
        let r = t.announce(&ann(1, 99, "127.0.0.1", 99, 1, Event::Started), &mut out);
        assert_eq!(r.unwrap_err(), Refusal::SwarmFull);
        // Members re-announce fine at the cap.
        go(t, &ann(1, 3, "127.0.0.1", 1003, 1, Event::None));
    });
}

#[test]
fn hosted_mode_refuses_others_and_counts_the_gateways_seed() {
    both(config(TrackerMode::Hosted), |t| {
        let mut out: Vec<Peer> = Vec::new();
        let r = t.announce(&ann(1, 1, "127.0.0.1", 1, 1, Event::Started), &mut out);
        assert_eq!(r.unwrap_err(), Refusal::NotTracked);
        t.set_own_peer(addr("127.0.0.1:6881"));
        let (c, i, _, peers) = go(t, &ann(0xAA, 1, "127.0.0.1", 5000, 1, Event::Started));
        assert_eq!((c, i), (1, 1), "the gateway seeds it");
        assert_eq!(peers, [addr("127.0.0.1:6881")]);
        let s = t.scrape(&[0xAA; 20]).unwrap();
        assert_eq!((s.complete, s.incomplete), (1, 1));
        assert_eq!(t.scrape(&[1; 20]).unwrap().complete, 0);
    });
}

#[test]
fn fast_reannounces_take_the_cheap_path() {
    both(config(TrackerMode::Open), |t| {
        go(t, &ann(1, 1, "127.0.0.1", 1001, 1, Event::Started));
        let mut a = ann(1, 2, "127.0.0.1", 1002, 1, Event::Started);
        a.min_interval = 300;
        go(t, &a);
        a.event = Event::None;
        let (c, i, _, peers) = go(t, &a);
        assert_eq!((c, i), (0, 2), "counts still answered");
        assert!(peers.is_empty(), "no peers on the cheap path");
        assert_eq!(t.too_fast(), 1);
        // Events are never cut short.
        a.event = Event::Completed;
        a.left = Some(0);
        let (c, _, d, _) = go(t, &a);
        assert_eq!((c, d), (1, 1));
    });
}

#[test]
fn redis_down_is_a_clear_failure_and_recovers_alone() {
    let mut redis = Redis::start();
    let t = tracker(config(TrackerMode::Open), Some(&redis));
    go(&t, &ann(1, 1, "127.0.0.1", 1001, 0, Event::Started));
    assert!(t.health().0);
    redis.kill();
    let mut out: Vec<Peer> = Vec::new();
    let started = std::time::Instant::now();
    let r = t.announce(&ann(1, 2, "127.0.0.1", 1002, 1, Event::Started), &mut out);
    assert_eq!(r.unwrap_err(), Refusal::Unavailable);
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert!(Refusal::Unavailable.reason().contains("unavailable"));
    assert!(!t.health().0, "degraded");
    assert!(t.scrape(&[1; 20]).is_err());
    redis.restart();
    let ok = support::tracker::eventually(5, || {
        let mut out: Vec<Peer> = Vec::new();
        t.announce(&ann(1, 2, "127.0.0.1", 1002, 1, Event::Started), &mut out)
            .is_ok()
    });
    assert!(ok, "recovered without a restart");
    assert!(t.health().0);
}

#[test]
fn redis_refusing_writes_is_unavailable_and_degrades_health() {
    let redis = Redis::start();
    let t = tracker(config(TrackerMode::Open), Some(&redis));
    go(&t, &ann(1, 1, "127.0.0.1", 1001, 0, Event::Started));
    // Out of memory: every write the script makes is refused with a server error.
    redis.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    redis.cli(&["CONFIG", "SET", "maxmemory", "1"]);
    let mut out: Vec<Peer> = Vec::new();
    let r = t.announce(&ann(1, 2, "127.0.0.1", 1002, 1, Event::Started), &mut out);
    assert_eq!(r.unwrap_err(), Refusal::Unavailable);
    let (ok, why) = t.health();
    assert!(!ok, "degraded");
    assert!(why.contains("OOM") || why.contains("maxmemory"), "{why}");
    assert!(t.redis.as_ref().unwrap().errors() >= 1, "counted");
    redis.cli(&["CONFIG", "SET", "maxmemory", "0"]);
    let ok = support::tracker::eventually(5, || {
        let mut out: Vec<Peer> = Vec::new();
        t.announce(&ann(1, 2, "127.0.0.1", 1002, 1, Event::Started), &mut out)
            .is_ok()
    });
    assert!(ok, "recovered once Redis takes writes again");
    assert!(t.health().0);
}

#[test]
fn redis_url_user_password_and_database_are_used() {
    let redis = Redis::start();
    redis.cli(&["ACL", "SETUSER", "tg", "on", ">s3cret", "~*", "+@all"]);
    let mut c = config(TrackerMode::Open);
    c.backend = TrackerBackend::Redis;
    c.redis_url = format!("redis://tg:s3cret@127.0.0.1:{}/3", redis.port);
    let t = Tracker::new(c.clone(), Box::new(|_| false), Default::default()).unwrap();
    let (_, i, _, _) = go(&t, &ann(1, 1, "127.0.0.1", 1001, 1, Event::Started));
    assert_eq!(i, 1);
    assert_ne!(
        redis.query(&["-n", "3", "dbsize"]),
        "0",
        "keys in database 3"
    );
    assert_eq!(
        redis.query(&["-n", "0", "dbsize"]),
        "0",
        "none in database 0"
    );
    // A wrong password: a clear failure, and the health says why.
    c.redis_url = format!("redis://tg:wrong@127.0.0.1:{}/3", redis.port);
    let t = Tracker::new(c, Box::new(|_| false), Default::default()).unwrap();
    let mut out: Vec<Peer> = Vec::new();
    let r = t.announce(&ann(1, 2, "127.0.0.1", 1002, 1, Event::Started), &mut out);
    assert_eq!(r.unwrap_err(), Refusal::Unavailable);
    let (ok, why) = t.health();
    assert!(!ok && why.contains("WRONGPASS"), "{why}");
}

#[test]
fn redis_swarms_expire_on_their_own() {
    let redis = Redis::start();
    let mut c = config(TrackerMode::Open);
    c.peer_timeout_secs = 1;
    let t = tracker(c, Some(&redis));
    go(&t, &ann(1, 1, "127.0.0.1", 1001, 1, Event::Started));
    assert_eq!(t.scrape(&[1; 20]).unwrap().incomplete, 1);
    assert!(support::tracker::eventually(5, || t
        .scrape(&[1; 20])
        .unwrap()
        .incomplete
        == 0));
    let (_, i, _, _) = go(&t, &ann(1, 2, "127.0.0.1", 1002, 1, Event::Started));
    assert_eq!(i, 1, "the expired member is gone from the set too");
}

/// An announce that does not wait (as the HTTP poller starts them): its outcome and peers.
fn later(t: &Arc<Tracker>, a: &AnnounceIn) -> (Result<SwarmCounts, Refusal>, Vec<SocketAddr>) {
    let (tx, rx) = crossbeam_channel::bounded(1);
    t.announce_later(
        a,
        Box::new(move |result, peers| {
            let _ = tx.send((result, peers.iter().map(Peer::addr).collect()));
        }),
    );
    rx.recv_timeout(std::time::Duration::from_secs(10))
        .expect("answered once")
}

#[test]
fn announces_that_do_not_wait_answer_like_those_that_do() {
    let mut redis = Redis::start();
    for backend in [None, Some(&redis)] {
        let t = Arc::new(tracker(config(TrackerMode::Open), backend));
        t.set_own_peer(addr("127.0.0.1:6881"));
        go(&t, &ann(1, 1, "127.0.0.1", 1001, 0, Event::Started));
        let (r, peers) = later(&t, &ann(1, 2, "127.0.0.1", 1002, 5, Event::Started));
        let c = r.unwrap();
        assert_eq!((c.complete, c.incomplete, c.downloaded), (1, 1, 0));
        assert_eq!(peers, [addr("127.0.0.1:1001")]);
        // What one kind recorded, the other sees.
        let (_, _, _, peers) = go(&t, &ann(1, 3, "127.0.0.1", 1003, 0, Event::Started));
        assert_eq!(peers, [addr("127.0.0.1:1002")]);
        // The gateway's own seeder comes first for a hosted torrent, and is counted.
        let (r, peers) = later(&t, &ann(0xAA, 4, "127.0.0.1", 1004, 5, Event::Started));
        assert_eq!(r.unwrap().complete, 1);
        assert_eq!(peers, [addr("127.0.0.1:6881")]);
    }
    let t = Arc::new(tracker(config(TrackerMode::Open), Some(&redis)));
    redis.kill();
    let started = std::time::Instant::now();
    let (r, _) = later(&t, &ann(1, 2, "127.0.0.1", 1002, 1, Event::Started));
    assert_eq!(r.unwrap_err(), Refusal::Unavailable);
    // Known down now: the next one is answered on this thread, before the call returns.
    let (r, _) = later(&t, &ann(1, 2, "127.0.0.1", 1002, 1, Event::Started));
    assert_eq!(r.unwrap_err(), Refusal::Unavailable);
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert!(!t.health().0, "degraded");
}
