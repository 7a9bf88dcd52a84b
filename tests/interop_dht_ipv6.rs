//! BEP-32 (the IPv6 DHT) against python3-libtorrent 2.0.8 nodes listening on [::1] (no
//! bootstrap hosts, no tracker, loopback only, every port 0): the announce of an uploaded
//! file by a gateway whose DHT is bound to [::1] is found by libtorrent's `dht_get_peers`
//! over IPv6; a libtorrent announce stored by a libtorrent node, and one stored by the
//! gateway, are found by our `dht get-peers --bootstrap [::1]:PORT`; and a dual-stack
//! gateway (DHT bound to `[::]`) that knows a libtorrent node on 127.0.0.1 and one on [::1]
//! keeps them in two tables and answers a raw find_node with `want` n4+n6 with both `nodes`
//! and `nodes6`, and without `want` with the querier's family only (an IPv4 querier's
//! datagrams arrive IPv4-mapped), and announces an upload to both. The CLI over IPv6 too:
//! `dht sample [::1]:PORT`, `dht put` and `dht get` through libtorrent nodes on [::1]. Every
//! wait is a bounded poll.

mod support;

use serde_json::Value;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use support::dht_gateway::{bare_magnet, cli_get_peers, dht_addr, dht_stats, random_ih};
use support::dht_nodes::DhtNode;
use support::seeders::hex;
use support::server::{upload, Server};
use support::tracker::eventually;
use support::{bytes, run, stderr, stdout, tempdir};
use torrent_gateway::proto::dht::krpc::{self, Body, Message, Method, Want};
use torrent_gateway::proto::dht::NodeId;

/// Longest a libtorrent helper lives (it also ends when the test drops it).
const LT_SECS: u64 = 240;

/// A gateway whose DHT node is bound to `dht` and bootstraps from `nodes` only.
fn gateway(data: &std::path::Path, dht: &str, nodes: &[SocketAddr], extra: &str) -> Server {
    let list: Vec<String> = nodes.iter().map(|a| format!("\"{a}\"")).collect();
    let config = format!("[dht]\nbootstrap = [{}]\n{extra}", list.join(", "));
    Server::start_dht_at(data, &config, dht)
}

/// Waits until the gateway's IPv4 and IPv6 tables hold at least `v4` and `v6` nodes.
fn gateway_knows(server: &Server, v4: u64, v6: u64) -> bool {
    eventually(30, || {
        dht_stats(server).is_some_and(|s| {
            s["nodes4"].as_u64().unwrap_or(0) >= v4 && s["nodes6"].as_u64().unwrap_or(0) >= v6
        })
    })
}

/// The libtorrent node's address on [::1] as the gateway's loopback DHT sees it.
fn v6(node: &DhtNode) -> SocketAddr {
    assert!(node.addr.is_ipv6(), "{}", node.addr);
    node.addr
}

#[test]
fn libtorrent_on_ipv6_finds_the_gateways_announce_of_an_uploaded_file() {
    let dir = tempdir();
    let mut lt = DhtNode::libtorrent_at(LT_SECS, "[::1]:0");
    let server = gateway(&dir.path().join("data"), "[::1]:0", &[v6(&lt)], "");
    let g = dht_addr(&server);
    assert_eq!(g.ip().to_string(), "::1", "{g}");
    assert_eq!(dht_stats(&server).unwrap()["families"], "ipv6");
    lt.add_node(g);
    assert!(gateway_knows(&server, 0, 1), "{:?}", dht_stats(&server));
    assert!(lt.wait_nodes(1, 30), "libtorrent never added the gateway");
    let stats = dht_stats(&server).unwrap();
    assert_eq!(
        stats["nodes4"], 0,
        "no IPv4 node on an IPv6 socket: {stats}"
    );

    let up = upload(&server, "announced6.bin", &bytes(300_000, 11));
    let ih = up["info_hash"].as_str().unwrap().to_string();
    // The announce came over IPv6: libtorrent saw it from [::1] with our peer port.
    let peer = format!("[::1]:{}", server.peer.unwrap().port());
    let ann = lt.wait(60, |v| v["announce"] == ih.as_str());
    let ann = ann.unwrap_or_else(|| panic!("no announce from the gateway: {}", lt.events()));
    assert_eq!(ann["from"], peer.as_str(), "{ann}");
    let found = lt.find_peers(&ih, 30, |p| p == peer);
    assert!(found.is_some(), "dht_get_peers: {}", lt.events());
    let text = server.get("/metrics").text();
    let six = text
        .lines()
        .find_map(|l| l.strip_prefix("tg_dht_table_nodes{family=\"ipv6\"} "))
        .and_then(|v| v.parse::<f64>().ok());
    assert!(six >= Some(1.0), "{text}");
}

#[test]
fn dht_get_peers_over_ipv6_finds_an_announce_a_libtorrent_node_stored() {
    let mut node = DhtNode::libtorrent_at(LT_SECS, "[::1]:0");
    let mut announcer = DhtNode::libtorrent_at(LT_SECS, "[::1]:0");
    announcer.add_node(v6(&node));
    assert!(
        announcer.wait_nodes(1, 30),
        "the announcer never added the node"
    );
    let dir = tempdir();
    let ih = random_ih(21);
    // A magnet makes libtorrent announce it (2.0.8's Python dht_announce is broken).
    announcer.send(&format!(
        "magnet {} {}",
        bare_magnet(&ih),
        dir.path().to_str().unwrap()
    ));
    let ann = node.wait(60, |v| v["announce"] == ih.as_str());
    assert!(ann.is_some(), "no announce: {}", node.events());
    let (code, peers) = cli_get_peers(&ih, &[v6(&node)], 30);
    assert_eq!(code, Some(0), "{peers:?}");
    let want = v6(&announcer).to_string();
    assert!(peers.contains(&want), "{peers:?} lacks {want}");
}

#[test]
fn a_gateway_on_ipv6_stores_a_libtorrent_announce_that_dht_get_peers_finds() {
    let dir = tempdir();
    let server = gateway(&dir.path().join("data"), "[::1]:0", &[], "");
    let g = dht_addr(&server);
    let mut lt = DhtNode::libtorrent_at(LT_SECS, "[::1]:0");
    lt.add_node(g);
    assert!(lt.wait_nodes(1, 30), "libtorrent never added the gateway");
    let ih = random_ih(22);
    lt.send(&format!(
        "magnet {} {}",
        bare_magnet(&ih),
        dir.path().join("lt").to_str().unwrap()
    ));
    let stored = eventually(60, || {
        dht_stats(&server).is_some_and(|s| s["stored_peers"].as_u64() >= Some(1))
    });
    assert!(stored, "{:?}\n{}", dht_stats(&server), lt.stderr());
    let (code, peers) = cli_get_peers(&ih, &[g], 30);
    assert_eq!(code, Some(0), "{peers:?}");
    let want = v6(&lt).to_string();
    assert!(peers.contains(&want), "{peers:?} lacks {want}");
    // BEP-51 over IPv6: `dht sample [::1]:PORT` asks the gateway, which names the stored
    // info-hash; so does a lookup that joins through it.
    let g = g.to_string();
    for args in [vec!["sample", &g], vec!["sample", "--bootstrap", &g]] {
        let (code, v) = cli_json(&args);
        assert_eq!(code, Some(0), "{args:?}: {v}");
        assert_eq!(v["info_hashes"], serde_json::json!([ih]), "{args:?}: {v}");
    }
}

/// `torrent-gateway dht ARGS --json --timeout 30`: exit code and JSON output.
fn cli_json<S: AsRef<str>>(args: &[S]) -> (Option<i32>, Value) {
    let dir = tempdir();
    let mut all = vec!["dht"];
    all.extend(args.iter().map(AsRef::as_ref));
    all.extend(["--json", "--timeout", "30"]);
    let o = run(dir.path(), &all);
    let v = serde_json::from_str(&stdout(&o))
        .unwrap_or_else(|e| panic!("{all:?}: {e}: {} {}", stdout(&o), stderr(&o)));
    (o.status.code(), v)
}

#[test]
fn dht_put_and_get_through_ipv6_libtorrent_nodes() {
    let mut a = DhtNode::libtorrent_at(LT_SECS, "[::1]:0");
    let mut b = DhtNode::libtorrent_at(LT_SECS, "[::1]:0");
    a.add_node(v6(&b));
    b.add_node(v6(&a));
    assert!(
        a.wait_nodes(1, 30) && b.wait_nodes(1, 30),
        "the nodes never met"
    );
    let boot_a = v6(&a).to_string();
    let (code, put) = cli_json(&["put", "hello6", "--bootstrap", &boot_a]);
    assert_eq!(code, Some(0), "{put}");
    assert!(put["stored"].as_u64() >= Some(1), "{put}");
    let target = put["target"].as_str().unwrap().to_string();
    // libtorrent fetches it over IPv6...
    b.send(&format!("get_immutable {target}"));
    let got = b.wait(30, |v| v["item"] == target.as_str());
    let got = got.unwrap_or_else(|| panic!("libtorrent found no item: {}", b.events()));
    assert_eq!(got["value"], hex(b"6:hello6"));
    // ...and so does our `dht get`, joining through the other node.
    let boot_b = v6(&b).to_string();
    let (code, item) = cli_json(&["get", &target, "--bootstrap", &boot_b]);
    assert_eq!(code, Some(0), "{item}");
    assert_eq!(item["value"], "hello6", "{item}");
}

/// A raw find_node from `sock` to `to` (with `want` when given); the `nodes` and `nodes6`
/// addresses of the answer.
fn find_node(
    sock: &UdpSocket,
    to: SocketAddr,
    want: Option<Want>,
) -> (Vec<SocketAddr>, Vec<SocketAddr>) {
    let mut q = Message::query(
        b"v6",
        NodeId([0x5a; 20]),
        Method::FindNode {
            target: NodeId([0x33; 20]),
        },
    );
    q.ro = true;
    if let (Some(w), Body::Query(q)) = (want, &mut q.body) {
        q.want = w;
    }
    let bytes = q.encode();
    let deadline = Instant::now() + Duration::from_secs(10);
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        sock.send_to(&bytes, to).unwrap();
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let Ok(m) = krpc::parse(&buf[..n]) else {
            continue;
        };
        assert_eq!(from, to, "answered from another address");
        if let (b"v6", Body::Response(r)) = (m.t, m.body) {
            let addrs = |l: &[torrent_gateway::proto::dht::compact::CompactNode]| {
                l.iter().map(|n| n.addr).collect::<Vec<_>>()
            };
            return (addrs(&r.nodes), addrs(&r.nodes6));
        }
    }
    panic!("no find_node answer from {to}");
}

#[test]
fn a_dual_stack_gateway_answers_want_with_nodes_and_nodes6() {
    let dir = tempdir();
    let mut lt4 = DhtNode::libtorrent(LT_SECS);
    let mut lt6 = DhtNode::libtorrent_at(LT_SECS, "[::1]:0");
    let server = gateway(
        &dir.path().join("data"),
        "[::]:0",
        &[lt4.addr, v6(&lt6)],
        // Loopback nodes share one IP per family: the per-IP rules are for the internet.
        "restrict_ips = false\n",
    );
    let g = dht_addr(&server);
    assert!(g.ip().is_unspecified() && g.is_ipv6(), "{g}");
    assert_eq!(dht_stats(&server).unwrap()["families"], "dual");
    let (g4, g6) = (
        SocketAddr::from(([127, 0, 0, 1], g.port())),
        SocketAddr::new("::1".parse().unwrap(), g.port()),
    );
    lt4.add_node(g4);
    lt6.add_node(g6);
    assert!(gateway_knows(&server, 1, 1), "{:?}", dht_stats(&server));
    assert!(
        lt4.wait_nodes(1, 30),
        "libtorrent (IPv4) never added the gateway"
    );
    assert!(
        lt6.wait_nodes(1, 30),
        "libtorrent (IPv6) never added the gateway"
    );

    let both = Want { n4: true, n6: true };
    let s4 = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (nodes, nodes6) = find_node(&s4, g4, Some(both));
    assert!(
        nodes.contains(&lt4.addr),
        "nodes {nodes:?} lacks {}",
        lt4.addr
    );
    assert!(
        nodes6.contains(&lt6.addr),
        "nodes6 {nodes6:?} lacks {}",
        lt6.addr
    );
    assert!(nodes.iter().all(SocketAddr::is_ipv4), "{nodes:?}");
    assert!(nodes6.iter().all(SocketAddr::is_ipv6), "{nodes6:?}");
    // Without want: the querier's family only (the IPv4 one came in as ::ffff:127.0.0.1).
    let (nodes, nodes6) = find_node(&s4, g4, None);
    assert!(nodes.contains(&lt4.addr), "{nodes:?}");
    assert!(nodes6.is_empty(), "an IPv4 querier got nodes6 {nodes6:?}");
    let s6 = UdpSocket::bind("[::1]:0").unwrap();
    let (nodes, nodes6) = find_node(&s6, g6, None);
    assert!(nodes6.contains(&lt6.addr), "{nodes6:?}");
    assert!(nodes.is_empty(), "an IPv6 querier got nodes {nodes:?}");
    let (nodes, nodes6) = find_node(&s6, g6, Some(both));
    assert!(nodes.contains(&lt4.addr) && nodes6.contains(&lt6.addr));
    // The tables stayed apart: the IPv4 node never showed up as an IPv6 (mapped) one.
    let stats = dht_stats(&server).unwrap();
    let buckets6 = stats["buckets6"].as_array().unwrap();
    assert!(!buckets6.is_empty(), "{stats}");
    assert!(!nodes6.iter().any(|a| a.port() == lt4.addr.port()));
    // An announce reaches the closest nodes of each family: both libtorrent nodes take it,
    // each from the gateway's address in its own family.
    let up = upload(&server, "dual.bin", &bytes(100_000, 23));
    let ih = up["info_hash"].as_str().unwrap().to_string();
    let port = server.peer.unwrap().port();
    for (lt, from) in [
        (&mut lt4, format!("127.0.0.1:{port}")),
        (&mut lt6, format!("[::1]:{port}")),
    ] {
        let ann = lt.wait(60, |v| v["announce"] == ih.as_str());
        let ann = ann.unwrap_or_else(|| panic!("no announce at {}: {}", lt.addr, lt.events()));
        assert_eq!(ann["from"], from.as_str(), "{ann}");
    }
}
