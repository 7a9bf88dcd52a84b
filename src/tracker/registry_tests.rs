//! Unit tests of the memory registry (the rules both backends share are also tested in
//! tests/tracker_backends.rs).

use super::*;

fn limits() -> Limits {
    Limits {
        max_torrents: 3,
        max_peers_per_torrent: 100,
        max_peers: 150,
        peer_timeout_secs: 60,
    }
}

fn ann(ih: u8, peer: u32, port: u16, left: u64, event: Event) -> AnnounceIn {
    let mut peer_id = [b'p'; 20];
    peer_id[..4].copy_from_slice(&peer.to_be_bytes());
    AnnounceIn {
        info_hash: [ih; 20],
        peer_id,
        ip: "127.0.0.1".parse().unwrap(),
        port,
        left: Some(left),
        event,
        key: None,
        numwant: 50,
        family: Family::Both,
        min_interval: 0,
    }
}

#[test]
fn counts_seeders_leechers_and_completions_once() {
    let r = Registry::new(limits());
    let mut out = Vec::new();
    let c = r
        .announce(&ann(1, 1, 1001, 0, Event::Started), 0, &mut out)
        .unwrap();
    assert_eq!((c.complete, c.incomplete, c.downloaded), (1, 0, 0));
    assert!(out.is_empty(), "never handed itself");
    let c = r
        .announce(&ann(1, 2, 1002, 10, Event::Started), 0, &mut out)
        .unwrap();
    assert_eq!((c.complete, c.incomplete), (1, 1));
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].port, out[0].ip()),
        (1001, "127.0.0.1".parse().unwrap())
    );
    for _ in 0..2 {
        let c = r
            .announce(&ann(1, 2, 1002, 0, Event::Completed), 1, &mut out)
            .unwrap();
        assert_eq!((c.complete, c.incomplete, c.downloaded), (2, 0, 1));
    }
    out.clear();
    r.announce(&ann(1, 1, 1001, 0, Event::None), 1, &mut out)
        .unwrap();
    assert!(out.is_empty(), "a seed is not handed seeds");
    let c = r
        .announce(&ann(1, 2, 1002, 0, Event::Stopped), 2, &mut out)
        .unwrap();
    assert_eq!((c.complete, c.incomplete, c.downloaded), (1, 0, 1));
    assert_eq!(r.peers(), 1);
    assert_eq!(r.scrape(&[1; 20]).downloaded, 1);
    assert_eq!(r.take_unsaved(), vec![([1; 20], 1)]);
    assert!(r.take_unsaved().is_empty());
}

#[test]
fn a_key_makes_a_moving_client_one_peer_and_guards_it() {
    let r = Registry::new(limits());
    let mut out = Vec::new();
    let mut a = ann(1, 1, 1001, 5, Event::Started);
    a.key = Some(7);
    r.announce(&a, 0, &mut out).unwrap();
    a.ip = "10.0.0.2".parse().unwrap();
    r.announce(&a, 0, &mut out).unwrap();
    assert_eq!(r.peers(), 1, "moved, still one peer");
    // The same peer_id elsewhere without the key is somebody else: it can neither move
    // nor stop the keyed entry.
    let mut other = ann(1, 1, 1001, 5, Event::Stopped);
    other.ip = "10.0.0.3".parse().unwrap();
    other.key = Some(8);
    r.announce(&other, 0, &mut out).unwrap();
    other.key = None;
    r.announce(&other, 0, &mut out).unwrap();
    assert_eq!(r.peers(), 1);
    // Without keys, peers with one peer_id at different addresses are different peers.
    for port in [1, 2, 2] {
        r.announce(&ann(2, 0, port, 5, Event::None), 0, &mut out)
            .unwrap();
    }
    assert_eq!(r.scrape(&[2; 20]).incomplete, 2);
    let mut third = ann(1, 2, 1002, 5, Event::Started);
    third.ip = "10.0.0.9".parse().unwrap();
    out.clear();
    r.announce(&third, 0, &mut out).unwrap();
    assert_eq!(out[0].ip(), "10.0.0.2".parse::<IpAddr>().unwrap());
}

#[test]
fn families_and_numwant() {
    let r = Registry::new(limits());
    let mut out = Vec::new();
    for i in 0..60u32 {
        let mut a = ann(1, i, 2000 + i as u16, 1, Event::Started);
        if i % 2 == 1 {
            a.ip = "::1".parse().unwrap();
        }
        r.announce(&a, 0, &mut out).unwrap();
    }
    let mut a = ann(1, 100, 9, 1, Event::None);
    a.numwant = 200;
    a.family = Family::V6;
    out.clear();
    r.announce(&a, 0, &mut out).unwrap();
    assert_eq!(out.len(), 30);
    assert!(out.iter().all(Peer::is_v6));
    let mut buf = Vec::new();
    out[0].write_compact(&mut buf);
    assert_eq!(buf.len(), 18);
    a.family = Family::V4;
    a.numwant = 7;
    out.clear();
    r.announce(&a, 0, &mut out).unwrap();
    assert_eq!(out.len(), 7);
    assert!(out.iter().all(|p| !p.is_v6()));
    let mapped = ip_bytes("::ffff:1.2.3.4".parse().unwrap());
    assert_eq!(mapped.1, 0, "v4-mapped addresses are IPv4");
}

#[test]
fn caps_refuse_with_reasons() {
    let r = Registry::new(Limits {
        max_torrents: 2,
        max_peers_per_torrent: 3,
        max_peers: 4,
        peer_timeout_secs: 60,
    });
    let mut out = Vec::new();
    for p in 0..3 {
        r.announce(&ann(1, p, 1, 1, Event::Started), 0, &mut out)
            .unwrap();
    }
    assert_eq!(
        r.announce(&ann(1, 9, 1, 1, Event::Started), 0, &mut out),
        Err(Refusal::SwarmFull)
    );
    r.announce(&ann(2, 1, 1, 1, Event::Started), 0, &mut out)
        .unwrap();
    assert_eq!(
        r.announce(&ann(2, 2, 1, 1, Event::Started), 0, &mut out),
        Err(Refusal::TooManyPeers)
    );
    assert_eq!(
        r.announce(&ann(3, 1, 1, 1, Event::Started), 0, &mut out),
        Err(Refusal::TooManyTorrents)
    );
    assert!(Refusal::TooManyTorrents
        .reason()
        .contains("too many torrents"));
    // A stopped announce for an unknown torrent creates nothing.
    r.announce(&ann(3, 1, 1, 1, Event::Stopped), 0, &mut out)
        .unwrap();
    assert_eq!(r.torrents(), 2);
}

#[test]
fn expiry_sweeps_peers_and_empty_torrents() {
    let r = Registry::new(limits());
    let mut out = Vec::new();
    for p in 0..60 {
        r.announce(&ann(1, p, 1, 1, Event::Started), 0, &mut out)
            .unwrap();
    }
    r.announce(&ann(2, 1, 1, 0, Event::Completed), 0, &mut out)
        .unwrap();
    r.announce(&ann(1, 7, 1, 0, Event::None), 50, &mut out)
        .unwrap();
    assert_eq!(r.sweep(60, false), (0, 0));
    assert_eq!(
        r.sweep(61, false),
        (60, 0),
        "torrent 2 keeps an unsaved count"
    );
    assert_eq!(r.peers(), 1);
    let c = r.scrape(&[1; 20]);
    assert_eq!((c.complete, c.incomplete), (1, 0));
    // The survivor is still found through the rebuilt state.
    let c = r
        .announce(&ann(1, 7, 1, 0, Event::Stopped), 62, &mut out)
        .unwrap();
    assert_eq!(c.complete, 0);
    r.take_unsaved();
    assert_eq!(
        r.sweep(62, false),
        (0, 1),
        "torrent 1 is empty with no completions"
    );
    assert_eq!(r.torrents(), 1);
    assert_eq!(
        r.sweep(62, true),
        (0, 1),
        "under pressure counts-only torrents go"
    );
    assert_eq!(r.torrents(), 0);
}

#[test]
fn large_swarms_use_the_index_consistently() {
    let r = Registry::new(Limits {
        max_peers_per_torrent: 1000,
        max_peers: 1000,
        ..limits()
    });
    let mut out = Vec::new();
    for p in 0..200 {
        r.announce(&ann(1, p, 1, 1, Event::Started), 0, &mut out)
            .unwrap();
    }
    for p in (0..200).step_by(3) {
        r.announce(&ann(1, p, 1, 1, Event::Stopped), 0, &mut out)
            .unwrap();
    }
    for p in 0..200 {
        r.announce(&ann(1, p, 1, 1, Event::None), 0, &mut out)
            .unwrap();
    }
    assert_eq!(r.peers(), 200, "re-announces found their entries");
    assert_eq!(r.scrape(&[1; 20]).incomplete, 200);
}

#[test]
fn leechers_to_dial_rotate_within_and_across_swarms() {
    let r = Registry::new(Limits {
        max_torrents: 10,
        max_peers_per_torrent: 1000,
        max_peers: 1000,
        peer_timeout_secs: 60,
    });
    let mut out = Vec::new();
    for ih in [1u8, 2] {
        for peer in 0..100u32 {
            r.announce(
                &ann(ih, peer, 2000 + peer as u16, 10, Event::Started),
                0,
                &mut out,
            )
            .unwrap();
        }
    }
    let got = r.leechers(40, |_| true);
    assert_eq!(got.len(), 20, "at most a quarter of the budget per swarm");
    let swarms: std::collections::BTreeSet<[u8; 20]> = got.iter().map(|(h, _, _)| *h).collect();
    assert_eq!(swarms.len(), 2, "both swarms get a share");
    // Repeated calls do not hand out the same first leechers every time.
    let firsts: std::collections::BTreeSet<std::net::SocketAddr> =
        (0..20).map(|_| r.leechers(4, |_| true)[0].2).collect();
    assert!(firsts.len() > 1, "{firsts:?}");
}

/// Random announces, moves, stops and sweeps in one swarm that grows past the index size and
/// shrinks below it, against a plain map: the counts, who is handed out (addresses, ids, never
/// the announcer itself), and compact answers equal to the full ones.
#[test]
fn a_swarm_agrees_with_a_plain_model_through_growth_and_expiry() {
    use std::collections::HashMap;
    use std::net::SocketAddr;
    let r = Registry::new(Limits {
        max_torrents: 10,
        max_peers_per_torrent: 1000,
        max_peers: 1000,
        peer_timeout_secs: 60,
    });
    // (peer number, family, the address for a keyless peer) -> (address, seed, last seen)
    type Who = (u32, bool, Option<SocketAddr>);
    let mut model: HashMap<Who, (SocketAddr, bool, u32)> = HashMap::new();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut now = 0u32;
    for step in 0..6000 {
        if step % 500 == 499 {
            now += 40;
            let expired = model.values().filter(|v| now - v.2 > 60).count();
            model.retain(|_, v| now - v.2 <= 60);
            assert_eq!(r.sweep(now, false).0, expired, "step {step}");
        }
        let (peer, keyed, v6) = (rand(90) as u32, rand(2) == 0, rand(4) == 0);
        let host = rand(3) as u8 + 1;
        let ip: IpAddr = if v6 {
            format!("fd00::{host}").parse().unwrap()
        } else {
            format!("10.0.0.{host}").parse().unwrap()
        };
        let port = 3000 + rand(3) as u16;
        let left = rand(3);
        let event = if rand(8) == 0 {
            Event::Stopped
        } else {
            Event::None
        };
        let mut a = ann(7, peer, port, left, event);
        a.ip = ip;
        a.key = keyed.then_some(peer * 7);
        a.numwant = rand(40) as usize;
        let mut full: Vec<Peer> = Vec::new();
        let c = r.announce(&a, now, &mut full).unwrap();
        let me = SocketAddr::new(ip, port);
        let who = (peer, v6, (!keyed).then_some(me));
        if event == Event::Stopped {
            model.remove(&who);
        } else {
            model.insert(who, (me, left == 0, now));
        }
        let seeds = model.values().filter(|v| v.1).count() as u32;
        assert_eq!(
            (c.complete, c.incomplete),
            (seeds, model.len() as u32 - seeds),
            "step {step}"
        );
        assert_eq!(r.peers(), model.len(), "step {step}");
        if event == Event::Stopped {
            continue;
        }
        assert!(full.len() <= a.numwant);
        for p in &full {
            assert_ne!(p.addr(), me, "never handed itself");
            assert!(!(left == 0 && p.is_seed()), "no seeds for a seed");
            let n = u32::from_be_bytes(p.id[..4].try_into().unwrap());
            let known = model
                .iter()
                .any(|(k, v)| k.0 == n && v.0 == p.addr() && v.1 == p.is_seed());
            assert!(known, "step {step}: {p:?} is tracked as handed out");
        }
        // The compact answer of a re-announce (the peer is known now) lists tracked
        // addresses the same way, without reading ids.
        a.event = Event::None;
        let mut compact = Vec::new();
        r.announce(&a, now, &mut CompactPeers(&mut compact))
            .unwrap();
        let width = if v6 { 18 } else { 6 };
        let addrs: Vec<SocketAddr> = model.values().map(|v| v.0).collect();
        assert_eq!(compact.len() % 6, 0);
        if !v6 && a.family == Family::Both && model.values().all(|v| !v.0.is_ipv6()) {
            assert!(compact.chunks(width).all(|c| {
                let ip = std::net::Ipv4Addr::new(c[0], c[1], c[2], c[3]);
                addrs.contains(&SocketAddr::new(
                    ip.into(),
                    u16::from_be_bytes([c[4], c[5]]),
                ))
            }));
        }
    }
    assert!(model.len() > 48, "the swarm grew past the index size");
}
