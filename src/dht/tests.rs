//! Unit tests of the node: answers to each query, tokens, the rate limit, the outbound
//! budget, malformed input and transaction matching.

use super::testnet::settings;
use super::*;
use crate::proto::dht::krpc::{parse, Body, Message, Method};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ask(d: &mut Dht, from: SocketAddr, m: Method<'_>) -> Vec<u8> {
    let bytes = Message::query(b"aa", NodeId([7; 20]), m).encode();
    d.receive(from, &bytes, 5_000);
    d.poll_send().expect("an answer").1
}

#[test]
fn answers_ping_find_node_and_get_peers_then_takes_an_announce() {
    let mut d = Dht::new(Some(NodeId([1; 20])), settings(), 3, 0);
    let q = addr("127.0.0.1:4000");
    let r = ask(&mut d, q, Method::Ping);
    let m = parse(&r).unwrap();
    assert_eq!(m.t, b"aa");
    assert_eq!(m.ip, Some(q));
    let Body::Response(r) = m.body else { panic!() };
    assert_eq!(r.id, NodeId([1; 20]));
    // The querier entered the table; find_node names it.
    let r = ask(
        &mut d,
        addr("127.0.0.1:4001"),
        Method::FindNode {
            target: NodeId([7; 20]),
        },
    );
    let Body::Response(r) = parse(&r).unwrap().body else {
        panic!()
    };
    assert!(r.nodes.iter().any(|n| n.addr == q));
    let ih = NodeId([5; 20]);
    let r = ask(&mut d, q, Method::GetPeers { info_hash: ih });
    let Body::Response(r) = parse(&r).unwrap().body else {
        panic!()
    };
    let token = r.token.unwrap().to_vec();
    assert!(r.values.is_empty());
    // A wrong token is refused, the right one stores the peer.
    let bad = ask(
        &mut d,
        q,
        Method::AnnouncePeer {
            info_hash: ih,
            port: 6881,
            implied_port: false,
            token: b"nope",
        },
    );
    assert!(matches!(parse(&bad).unwrap().body, Body::Error(e) if e.code == 203));
    let other = addr("127.0.0.2:4000");
    let stolen = ask(
        &mut d,
        other,
        Method::AnnouncePeer {
            info_hash: ih,
            port: 6881,
            implied_port: false,
            token: &token,
        },
    );
    assert!(
        matches!(parse(&stolen).unwrap().body, Body::Error(_)),
        "tokens are bound to the IP"
    );
    let ok = ask(
        &mut d,
        q,
        Method::AnnouncePeer {
            info_hash: ih,
            port: 6881,
            implied_port: false,
            token: &token,
        },
    );
    assert!(matches!(parse(&ok).unwrap().body, Body::Response(_)));
    let r = ask(&mut d, other, Method::GetPeers { info_hash: ih });
    let Body::Response(r) = parse(&r).unwrap().body else {
        panic!()
    };
    assert_eq!(r.values, vec![addr("127.0.0.1:6881")]);
    assert_eq!(d.storage().peer_count(), 1);
}

#[test]
fn malformed_input_is_answered_or_dropped_without_panic() {
    let mut d = Dht::new(None, settings(), 5, 0);
    let from = addr("127.0.0.1:4000");
    for junk in [
        &b""[..],
        b"d",
        b"de",
        b"i1e",
        b"d1:t2:aa1:y1:q1:q4:nope1:ad2:id20:aaaaaaaaaaaaaaaaaaaaee",
    ] {
        d.receive(from, junk, 10);
    }
    let big = vec![b'x'; 70_000];
    d.receive(from, &big, 10);
    assert!(d.stats.malformed >= 5);
    // The unknown method got a 204 with the transaction id.
    let errs: Vec<_> = std::iter::from_fn(|| d.poll_send()).collect();
    assert!(errs
        .iter()
        .any(|(_, b)| matches!(parse(b).map(|m| m.body), Ok(Body::Error(e)) if e.code == 204)));
    // A response nobody asked for changes nothing.
    let r = Message::response(
        b"zz",
        krpc::Response {
            id: NodeId([3; 20]),
            ..Default::default()
        },
    )
    .encode();
    d.receive(from, &r, 20);
    assert!(d.table().is_empty());
}

#[test]
fn a_flooding_ip_is_blocked_and_others_still_answered() {
    let mut s = settings();
    s.restrict_ips = true;
    s.inbound_per_sec = 20;
    let mut d = Dht::new(None, s, 9, 0);
    let flood = addr("10.1.1.1:5000");
    let ping = Message::query(b"aa", NodeId([7; 20]), Method::Ping).encode();
    for _ in 0..1000 {
        d.receive(flood, &ping, 100);
    }
    let answered = std::iter::from_fn(|| d.poll_send()).count();
    assert_eq!(answered, 20);
    assert!(d.stats.rate_limited >= 980);
    d.receive(addr("10.2.2.2:5000"), &ping, 100);
    assert!(d.poll_send().is_some(), "another IP is answered");
    d.receive(flood, &ping, 5_000);
    assert!(d.poll_send().is_none(), "the flooder stays blocked");
}

#[test]
fn outbound_queries_stay_within_the_budget() {
    let mut s = settings();
    s.outbound_per_sec = 10;
    let mut d = Dht::new(None, s, 11, 0);
    for i in 0..200 {
        d.add_node(SocketAddr::new(
            [10, 0, (i / 250) as u8, (i % 250) as u8 + 1].into(),
            6881,
        ));
    }
    let sent = std::iter::from_fn(|| d.poll_send()).count();
    assert_eq!(sent, 20, "a burst of twice the rate");
    assert!(d.stats.budget_deferred >= 180);
}

#[test]
fn ten_thousand_announced_torrents_stay_within_the_outbound_budget() {
    let s = Settings {
        restrict_ips: false,
        ..Settings::default()
    };
    let rate = u64::from(s.outbound_per_sec);
    let mut d = Dht::new(None, s, 12, 0);
    // A table of nodes that answered once and are silent from now on.
    for i in 0..300u32 {
        let mut id = [0u8; 20];
        id[..4].copy_from_slice(&(i.wrapping_mul(0x9E37_79B9)).to_be_bytes());
        let a = SocketAddr::new([10, 1, (i / 250) as u8, (i % 250) as u8 + 1].into(), 6881);
        d.heard(NodeId(id), a, crate::proto::dht::routing::Contact::Response);
    }
    assert!(d.table().len() >= 20, "{} nodes", d.table().len());
    for i in 0..10_000u32 {
        let mut ih = [7; 20];
        ih[..4].copy_from_slice(&i.to_be_bytes());
        d.announce(ih, 6881);
    }
    // Two simulated minutes, ticked every 100 ms; nobody answers (each lookup ends on its
    // timeouts).
    let (mut sent, mut worst) = (0u64, 0u64);
    let mut window = 0u64;
    for step in 1..=1_200u64 {
        d.tick(step * 100);
        let n = std::iter::from_fn(|| d.poll_send()).count() as u64;
        sent += n;
        window += n;
        if step % 10 == 0 {
            worst = worst.max(window);
            window = 0;
        }
        assert!(d.lookups_running() <= MAX_LOOKUPS);
    }
    assert!(worst <= 2 * rate, "{worst} queries in one second");
    assert!(sent <= 120 * rate + 2 * rate, "{sent} queries in 120 s");
    // 10,000 in one 30-minute re-announce period is 667 every two minutes.
    assert!(
        d.stats.lookups_started >= 700,
        "announce lookups in 120 s: {}",
        d.stats.lookups_started
    );
}

#[test]
fn queries_time_out_and_lookups_end() {
    let mut d = Dht::new(None, settings(), 13, 0);
    d.set_bootstrap(vec![addr("127.0.0.1:9")]);
    assert_eq!(d.lookups_running(), 1);
    // A dead bootstrap node is asked again after each adaptive timeout (no round trip
    // measured yet: the longest, 1.5 s) and given up after MAX_TRIES tries or GIVE_UP_MS.
    let (mut now, mut sent) = (0, 0);
    while d.lookups_running() > 0 && now < 20_000 {
        sent += std::iter::from_fn(|| d.poll_send()).count();
        now += 100;
        d.tick(now);
    }
    assert_eq!(d.lookups_running(), 0, "the lookup ended");
    assert!(
        now <= super::lookup::GIVE_UP_MS + 1_600,
        "a dead node cost {now} ms"
    );
    assert!(
        (2..=super::lookup::MAX_TRIES as usize).contains(&sent),
        "{sent} tries"
    );
    assert!(d.stats.timeouts >= 1);
    assert!(d.get_peers([4; 20]));
}

#[test]
fn lookup_timers_alone_move_a_lookup_past_a_dead_node() {
    // What the net loop runs between its once-a-second ticks: the adaptive timeout, not the
    // tick, decides when a lookup asks again.
    let mut d = Dht::new(None, settings(), 14, 0);
    d.set_bootstrap(vec![addr("127.0.0.1:9")]);
    assert_eq!(std::iter::from_fn(|| d.poll_send()).count(), 1);
    d.lookup_timers(d.rto() - 1);
    assert!(d.poll_send().is_none(), "nothing before the timeout");
    d.lookup_timers(d.rto());
    assert!(
        d.poll_send().is_some(),
        "asked again at the timeout, with no tick"
    );
    let mut now = d.rto();
    while d.lookups_running() > 0 && now < 20_000 {
        std::iter::from_fn(|| d.poll_send()).count();
        now += 50;
        d.lookup_timers(now);
    }
    assert_eq!(d.lookups_running(), 0, "the lookup ended on its timers");
    d.lookup_timers(now + 1_000);
    assert!(d.poll_send().is_none(), "no lookups, no work");
}

#[test]
fn a_majority_of_ip_reports_gives_a_bep42_id_and_keeps_the_table() {
    let mut d = Dht::new(Some(NodeId([1; 20])), settings(), 5, 0);
    let external: IpAddr = "198.51.7.9".parse().unwrap();
    assert!(!node_id::id_matches_ip(&d.id(), external));
    // Six nodes in six /24s answer our pings, each saying where it saw us.
    for n in 1..=6u8 {
        let node = SocketAddr::from(([10, n, 0, 1], 6881));
        d.add_node(node);
        let (to, ping) = d.poll_send().expect("a ping");
        assert_eq!(to, node);
        let t = parse(&ping).unwrap().t.to_vec();
        let mut answer = Message::response(
            &t,
            krpc::Response {
                id: NodeId([0x80 | n; 20]),
                ..Default::default()
            },
        );
        answer.ip = Some(SocketAddr::new(external, 40_000));
        d.receive(node, &answer.encode(), 100);
        let changed = d.stats.id_changes;
        assert_eq!(changed, u64::from(n >= 5), "after {n} reports");
    }
    assert!(node_id::id_matches_ip(&d.id(), external));
    assert_eq!(d.own_ip(), Some(external));
    assert_eq!(d.table().len(), 6, "the nodes known stay known");
    // Private addresses reported by a majority change nothing.
    let mut lan = Dht::new(Some(NodeId([1; 20])), settings(), 5, 0);
    for n in 1..=6u8 {
        let node = SocketAddr::from(([10, n, 0, 1], 6881));
        lan.add_node(node);
        let t = parse(&lan.poll_send().unwrap().1).unwrap().t.to_vec();
        let mut answer = Message::response(
            &t,
            krpc::Response {
                id: NodeId([0x80 | n; 20]),
                ..Default::default()
            },
        );
        answer.ip = Some(SocketAddr::from(([192, 168, 1, 5], 40_000)));
        lan.receive(node, &answer.encode(), 100);
    }
    assert_eq!(lan.id(), NodeId([1; 20]));
    assert_eq!(lan.stats.id_changes, 0);
}

/// The addresses a node queries after its bootstrap node names `named` (a public node at
/// 1.2.3.4 answering the bootstrap lookup).
fn queried_after_naming(restrict_ips: bool, named: &[&str]) -> Vec<SocketAddr> {
    use crate::proto::dht::compact::CompactNode;
    let mut s = settings();
    s.restrict_ips = restrict_ips;
    let mut d = Dht::new(None, s, 21, 0);
    let seed = addr("1.2.3.4:6881");
    d.set_bootstrap(vec![seed]);
    let (to, q) = d.poll_send().expect("the bootstrap query");
    assert_eq!(to, seed);
    let t = parse(&q).unwrap().t.to_vec();
    let nodes = named
        .iter()
        .enumerate()
        .map(|(i, a)| CompactNode {
            id: NodeId([i as u8 + 0x40; 20]),
            addr: addr(a),
        })
        .collect();
    let r = crate::proto::dht::krpc::Response {
        id: NodeId([0x99; 20]),
        nodes,
        ..Default::default()
    };
    d.receive(seed, &Message::response(&t, r).encode(), 10);
    std::iter::from_fn(|| d.poll_send())
        .map(|(a, _)| a)
        .collect()
}

#[test]
fn nodes_named_at_local_addresses_are_queried_only_on_a_local_testnet() {
    let named = ["10.0.0.1:6881", "127.0.0.5:6881", "5.6.7.8:6881"];
    let public = queried_after_naming(true, &named);
    assert_eq!(
        public,
        vec![addr("5.6.7.8:6881")],
        "public node: {public:?}"
    );
    let locals = [
        "192.168.0.9:6881",
        "169.254.1.1:6881",
        "[::1]:6881",
        "0.0.0.0:6881",
    ];
    assert!(queried_after_naming(true, &locals).is_empty());
    let mut local = queried_after_naming(false, &named);
    local.sort();
    let mut all: Vec<SocketAddr> = named.iter().map(|a| addr(a)).collect();
    all.sort();
    assert_eq!(local, all, "loopback testnet");
}
