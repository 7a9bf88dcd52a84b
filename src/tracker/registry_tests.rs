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
