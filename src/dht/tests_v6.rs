//! Unit tests of BEP-32 in the node: IPv4 and IPv6 nodes kept in two tables, `want` (n4/n6)
//! honoured in find_node, get_peers and get answers (the querier's family without it),
//! IPv4-mapped source addresses taken as IPv4 and mapped back for a dual-stack socket, our
//! own queries carrying `want` only when dual-stack, lookups that skip families the socket
//! does not reach, failures counted in the right table, and the families of a socket.

use super::testnet::settings;
use super::*;
use crate::proto::dht::krpc::{parse, Body, Message, Method, Response, Want};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn dual() -> Dht {
    let mut d = Dht::new(Some(NodeId([1; 20])), settings(), 3, 0);
    d.set_families(Families::DUAL);
    d
}

/// The answer to `m` from `from` with `want` (a read-only querier: BEP-43 keeps it out of
/// the tables, so only the nodes put there by the test are named).
fn ask(d: &mut Dht, from: SocketAddr, m: Method<'_>, want: Want) -> (SocketAddr, Vec<u8>) {
    let mut q = Message::query(b"aa", NodeId([7; 20]), m);
    q.ro = true;
    if let Body::Query(q) = &mut q.body {
        q.want = want;
    }
    d.receive(from, &q.encode(), 5_000);
    d.poll_send().expect("an answer")
}

fn response(bytes: &[u8]) -> Response<'_> {
    match parse(bytes).unwrap().body {
        Body::Response(r) => r,
        other => panic!("{other:?}"),
    }
}

/// A node with id `[n; 20]` at `at` pings us, so it enters its family's table.
fn ping_from(d: &mut Dht, n: u8, at: SocketAddr) {
    let q = Message::query(b"pp", NodeId([n; 20]), Method::Ping).encode();
    d.receive(at, &q, 1_000);
    d.poll_send().expect("a pong");
}

const NONE: Want = Want {
    n4: false,
    n6: false,
};
const BOTH: Want = Want { n4: true, n6: true };

#[test]
fn ipv4_and_ipv6_nodes_are_kept_in_two_tables_and_want_picks_the_lists() {
    let mut d = dual();
    let (v4, v6) = (addr("127.0.0.1:4000"), addr("[::1]:4001"));
    ping_from(&mut d, 0x40, v4);
    ping_from(&mut d, 0x60, v6);
    assert_eq!(d.table().len(), 1);
    assert_eq!(d.table6().len(), 1);
    assert_eq!(d.table().nodes().next().unwrap().addr, v4);
    assert_eq!(d.table6().nodes().next().unwrap().addr, v6);
    assert_eq!(d.node_count(), 2);
    assert_eq!(
        d.good_nodes(10).len(),
        0,
        "heard only as queriers: not good yet"
    );
    let target = NodeId([9; 20]);
    let names = |r: &Response<'_>| {
        let four: Vec<SocketAddr> = r.nodes.iter().map(|n| n.addr).collect();
        let six: Vec<SocketAddr> = r.nodes6.iter().map(|n| n.addr).collect();
        (four, six)
    };
    // Without want: the querier's family only.
    let (_, b) = ask(
        &mut d,
        addr("127.0.0.1:5000"),
        Method::FindNode { target },
        NONE,
    );
    assert_eq!(names(&response(&b)), (vec![v4], vec![]));
    let (_, b) = ask(
        &mut d,
        addr("[::1]:5001"),
        Method::FindNode { target },
        NONE,
    );
    assert_eq!(names(&response(&b)), (vec![], vec![v6]));
    // want n4 + n6 from either family: both lists.
    let (_, b) = ask(
        &mut d,
        addr("127.0.0.1:5002"),
        Method::FindNode { target },
        BOTH,
    );
    assert_eq!(names(&response(&b)), (vec![v4], vec![v6]));
    let gp = Method::GetPeers { info_hash: target };
    let (_, b) = ask(&mut d, addr("[::1]:5003"), gp, BOTH);
    assert_eq!(names(&response(&b)), (vec![v4], vec![v6]));
    let get = Method::Get { target, seq: None };
    let (_, b) = ask(&mut d, addr("127.0.0.1:5004"), get, BOTH);
    assert_eq!(names(&response(&b)), (vec![v4], vec![v6]));
    // want n6 alone from an IPv4 querier: only nodes6 (and n4 alone from IPv6: only nodes).
    let six = Want {
        n4: false,
        n6: true,
    };
    let (_, b) = ask(
        &mut d,
        addr("127.0.0.1:5005"),
        Method::FindNode { target },
        six,
    );
    assert_eq!(names(&response(&b)), (vec![], vec![v6]));
    let four = Want {
        n4: true,
        n6: false,
    };
    let (_, b) = ask(
        &mut d,
        addr("[::1]:5006"),
        Method::FindNode { target },
        four,
    );
    assert_eq!(names(&response(&b)), (vec![v4], vec![]));
}

#[test]
fn get_peers_values_are_peers_of_the_queriers_family() {
    let mut d = dual();
    let ih = NodeId([5; 20]);
    for from in ["127.0.0.1:4000", "[::1]:4001"] {
        let from = addr(from);
        let (_, b) = ask(&mut d, from, Method::GetPeers { info_hash: ih }, NONE);
        let token = response(&b).token.unwrap().to_vec();
        let ann = Method::AnnouncePeer {
            info_hash: ih,
            port: 6881,
            implied_port: false,
            token: &token,
        };
        let (_, b) = ask(&mut d, from, ann, NONE);
        assert!(matches!(parse(&b).unwrap().body, Body::Response(_)));
    }
    let values = |d: &mut Dht, from: &str| {
        let (_, b) = ask(d, addr(from), Method::GetPeers { info_hash: ih }, BOTH);
        response(&b).values
    };
    assert_eq!(values(&mut d, "127.0.0.2:1"), vec![addr("127.0.0.1:6881")]);
    assert_eq!(values(&mut d, "[::1]:2"), vec![addr("[::1]:6881")]);
}

#[test]
fn mapped_ipv4_sources_are_taken_as_ipv4_and_mapped_back_on_a_dual_socket() {
    let mut d = dual();
    let mapped = addr("[::ffff:127.0.0.1]:4000");
    ping_from(&mut d, 0x40, mapped);
    let (to, b) = ask(&mut d, mapped, Method::Ping, NONE);
    assert_eq!(
        to,
        addr("127.0.0.1:4000"),
        "the node names the IPv4 address"
    );
    // BEP-42 `ip`: 6 compact bytes, the IPv4 address.
    assert_eq!(parse(&b).unwrap().ip, Some(addr("127.0.0.1:4000")));
    assert_eq!(d.table().len(), 1, "an IPv4 node");
    assert_eq!(
        d.table().nodes().next().unwrap().addr,
        addr("127.0.0.1:4000")
    );
    assert!(d.table6().is_empty());
    // A mapped querier gets `nodes` (IPv4), as an IPv4 one would.
    let target = NodeId([9; 20]);
    let (_, b) = ask(
        &mut d,
        addr("[::ffff:127.0.0.2]:1"),
        Method::FindNode { target },
        NONE,
    );
    let r = response(&b);
    assert_eq!(r.nodes.len(), 1);
    assert!(r.nodes6.is_empty());
    // The answer to one of our queries from the mapped form of the address asked matches.
    d.add_node(addr("127.0.0.3:5000"));
    let (to, ping) = d.poll_send().unwrap();
    assert_eq!(to, addr("127.0.0.3:5000"));
    let t = parse(&ping).unwrap().t.to_vec();
    let pong = Message::response(
        &t,
        Response {
            id: NodeId([0x33; 20]),
            ..Default::default()
        },
    );
    d.receive(addr("[::ffff:127.0.0.3]:5000"), &pong.encode(), 1_100);
    assert_eq!(d.stats.responses_in, 1);
    let good = d.good_nodes(10);
    assert_eq!(good.len(), 1, "the answerer is a good IPv4 node: {good:?}");
    assert_eq!(good[0].addr, addr("127.0.0.3:5000"));
    assert!(d.table6().is_empty());
    // The I/O side: IPv4 goes out mapped on an IPv6 socket, unchanged otherwise.
    let v4 = addr("127.0.0.1:4000");
    assert_eq!(wire_addr(v4, true), mapped);
    assert_eq!(wire_addr(v4, false), v4);
    assert_eq!(wire_addr(addr("[::1]:7"), true), addr("[::1]:7"));
}

/// The `want` of the first find_node the node sends to its bootstrap node.
fn bootstrap_want(families: Families, boot: &str) -> Option<Want> {
    let mut d = Dht::new(Some(NodeId([1; 20])), settings(), 3, 0);
    d.set_families(families);
    d.set_bootstrap(vec![addr(boot)]);
    let (to, b) = d.poll_send()?;
    assert_eq!(to, addr(boot));
    match parse(&b).unwrap().body {
        Body::Query(q) => Some(q.want),
        _ => None,
    }
}

#[test]
fn our_queries_want_both_families_only_when_dual_stack() {
    assert_eq!(bootstrap_want(Families::DUAL, "127.0.0.1:9"), Some(BOTH));
    assert_eq!(bootstrap_want(Families::DUAL, "[::1]:9"), Some(BOTH));
    assert_eq!(bootstrap_want(Families::V4, "127.0.0.1:9"), Some(NONE));
    assert_eq!(bootstrap_want(Families::V6, "[::1]:9"), Some(NONE));
    // A bootstrap address of a family the socket does not reach is not asked.
    assert_eq!(bootstrap_want(Families::V6, "127.0.0.1:9"), None);
    assert_eq!(bootstrap_want(Families::V4, "[::1]:9"), None);
}

#[test]
fn lookups_take_nodes_and_nodes6_and_ask_only_reached_families() {
    use crate::proto::dht::compact::CompactNode;
    let named = |n: u8, a: &str| CompactNode {
        id: NodeId([n; 20]),
        addr: addr(a),
    };
    let run = |families: Families| {
        let mut d = Dht::new(Some(NodeId([1; 20])), settings(), 3, 0);
        d.set_families(families);
        let boot = addr("127.0.0.1:9");
        d.set_bootstrap(vec![boot]);
        let (_, q) = d.poll_send().unwrap();
        let t = parse(&q).unwrap().t.to_vec();
        let r = Message::response(
            &t,
            Response {
                id: NodeId([0x20; 20]),
                nodes: vec![named(0x21, "127.0.0.2:1")],
                nodes6: vec![named(0x22, "[::1]:2")],
                ..Default::default()
            },
        );
        d.receive(boot, &r.encode(), 100);
        let asked: Vec<SocketAddr> = std::iter::from_fn(|| d.poll_send())
            .filter(|(_, b)| matches!(parse(b).map(|m| m.body), Ok(Body::Query(_))))
            .map(|(to, _)| to)
            .collect();
        asked
    };
    let both = run(Families::DUAL);
    assert!(both.contains(&addr("127.0.0.2:1")), "{both:?}");
    assert!(both.contains(&addr("[::1]:2")), "{both:?}");
    let four = run(Families::V4);
    assert!(four.contains(&addr("127.0.0.2:1")), "{four:?}");
    assert!(!four.contains(&addr("[::1]:2")), "{four:?}");
}

#[test]
fn a_failed_ipv6_node_leaves_the_ipv6_table() {
    let mut d = dual();
    let v6 = addr("[::1]:4001");
    ping_from(&mut d, 0x60, addr("127.0.0.1:4000"));
    ping_from(&mut d, 0x61, v6);
    let id6 = NodeId([0x61; 20]);
    // Two unanswered pings make it bad (routing::MAX_FAILURES) and it is evicted.
    for round in 0..2 {
        d.try_failed(v6, Some(id6), Purpose::Ping);
        assert_eq!(
            d.table().len(),
            1,
            "round {round}: the IPv4 table is untouched"
        );
    }
    assert!(d.table6().get(&id6).is_none());
    assert!(d.table6().is_empty());
}

#[test]
fn a_v4_only_node_keeps_no_ipv6_nodes() {
    let mut d = Dht::new(Some(NodeId([1; 20])), settings(), 3, 0);
    ping_from(&mut d, 0x60, addr("[::1]:4001"));
    assert!(d.table6().is_empty());
    assert!(d.table().is_empty());
}

#[test]
fn a_socket_says_which_families_it_reaches() {
    assert_eq!(Families::of_socket(addr("[::]:0"), false), Families::DUAL);
    assert_eq!(Families::of_socket(addr("[::]:0"), true), Families::V6);
    assert_eq!(Families::of_socket(addr("[::1]:0"), false), Families::V6);
    assert_eq!(Families::of_socket(addr("0.0.0.0:0"), false), Families::V4);
    assert_eq!(
        Families::of_socket(addr("127.0.0.1:0"), false),
        Families::V4
    );
    // The real thing: [::] bound dual-stack where the platform allows it.
    let s = crate::net::Net::bind_dht(addr("[::]:0")).expect("bind [::]");
    let f = crate::net::Net::dht_families(&s);
    assert!(f.v6, "{f:?}");
    let s = crate::net::Net::bind_dht(addr("[::1]:0")).expect("bind [::1]");
    assert_eq!(crate::net::Net::dht_families(&s), Families::V6);
}
