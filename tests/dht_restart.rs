//! `serve`'s DHT node across restarts (python3-libtorrent 2.0.8 nodes on 127.0.0.1 as the
//! network): it learns nodes through one bootstrap node, saves its id and the good nodes to
//! `data/dht.dat` when it stops, and a restart WITHOUT bootstrap hosts rejoins from that file
//! (same id, the saved nodes back in its table) and its lookups work (the announce of an
//! upload reaches libtorrent). A corrupt `dht.dat` is named in one log line and the node
//! starts afresh, then writes a good file. Every wait is a bounded poll.

mod support;

use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use support::dht_nodes::DhtNode;
use support::server::{upload, Server};
use support::tracker::eventually;
use support::{bytes, tempdir};
use torrent_gateway::dht::persist;

const LT_SECS: u64 = 240;

fn dht_stats(server: &Server) -> Option<Value> {
    let r = server.get("/api/dht/stats");
    (r.status == 200).then(|| r.json())
}

fn gateway(data: &Path, nodes: &[SocketAddr]) -> Server {
    let list: Vec<String> = nodes.iter().map(|a| format!("\"{a}\"")).collect();
    Server::start(data, &format!("[dht]\nbootstrap = [{}]\n", list.join(", ")))
}

fn knows(server: &Server, n: u64) -> bool {
    eventually(30, || {
        dht_stats(server).is_some_and(|s| s["nodes"].as_u64().unwrap_or(0) >= n)
    })
}

fn node_id(server: &Server) -> String {
    let mut id = None;
    eventually(20, || {
        id = dht_stats(server).and_then(|s| s["node_id"].as_str().map(str::to_string));
        id.is_some()
    });
    id.unwrap_or_else(|| panic!("no DHT stats: {}", server.log()))
}

/// N of the start-up line "dht: listening on ADDR, N saved nodes".
fn saved_nodes(log: &str) -> Option<usize> {
    log.lines()
        .find_map(|l| l.split(", ").nth(1)?.strip_suffix(" saved nodes"))
        .and_then(|n| n.trim().parse().ok())
}

#[test]
fn a_restart_without_bootstrap_hosts_rejoins_from_dht_dat_and_its_lookups_work() {
    let dir = tempdir();
    let data = dir.path().join("data");
    // Two libtorrent nodes that know each other; the gateway is told of one only.
    let mut a = DhtNode::libtorrent(LT_SECS);
    let mut b = DhtNode::libtorrent(LT_SECS);
    a.add_node(b.addr);
    b.add_node(a.addr);
    assert!(
        a.wait_nodes(1, 30) && b.wait_nodes(1, 30),
        "the nodes never met"
    );
    let server = gateway(&data, &[a.addr]);
    let id = node_id(&server);
    assert!(knows(&server, 2), "learned {:?}", dht_stats(&server));
    assert_eq!(server.terminate(), Some(0));
    let saved = std::fs::read(data.join("dht.dat")).expect("dht.dat written at stop");
    let (saved_id, nodes) = persist::decode(&saved).expect("dht.dat decodes");
    assert_eq!(torrent_gateway::proto::hex::encode(&saved_id.0), id);
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    assert!(
        addrs.contains(&a.addr) && addrs.contains(&b.addr),
        "{addrs:?} lacks a libtorrent node"
    );

    // No bootstrap hosts now: the saved nodes are all it has.
    let server = gateway(&data, &[]);
    let mut loaded = None;
    eventually(10, || {
        loaded = saved_nodes(&server.log());
        loaded.is_some()
    });
    assert!(loaded >= Some(2), "{}", server.log());
    assert_eq!(node_id(&server), id, "the node id is kept");
    assert!(knows(&server, 2), "rejoined {:?}", dht_stats(&server));
    // A lookup works: the announce of an upload reaches a libtorrent node.
    a.clear();
    b.clear();
    let up = upload(&server, "after-restart.bin", &bytes(100_000, 13));
    let ih = up["info_hash"].as_str().unwrap().to_string();
    let announced = eventually(60, || {
        let seen = |n: &mut DhtNode| n.wait(0, |v| v["announce"] == ih.as_str()).is_some();
        seen(&mut a) || seen(&mut b)
    });
    assert!(
        announced,
        "no announce after the restart: {:?}\n{}",
        dht_stats(&server),
        a.events()
    );
}

#[test]
fn a_corrupt_dht_dat_is_named_in_the_log_and_the_node_starts_afresh() {
    let dir = tempdir();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("dht.dat"), b"d2:id5:short5:nodes3:xyz").unwrap();
    let lt = DhtNode::libtorrent(LT_SECS);
    let server = gateway(&data, &[lt.addr]);
    let id = node_id(&server);
    assert_eq!(id.len(), 40);
    let warned = |log: &str| {
        log.lines()
            .filter(|l| l.contains("dht.dat is unreadable; starting afresh"))
            .count()
    };
    eventually(10, || warned(&server.log()) > 0);
    assert_eq!(warned(&server.log()), 1, "{}", server.log());
    assert_eq!(saved_nodes(&server.log()), Some(0), "{}", server.log());
    assert!(knows(&server, 1), "{:?}", dht_stats(&server));
    assert_eq!(server.terminate(), Some(0));
    // The file is good now: the fresh id and the libtorrent node.
    let saved = std::fs::read(data.join("dht.dat")).unwrap();
    let (saved_id, nodes) = persist::decode(&saved).expect("a good dht.dat replaced it");
    assert_eq!(torrent_gateway::proto::hex::encode(&saved_id.0), id);
    assert!(nodes.iter().any(|n| n.addr == lt.addr), "{nodes:?}");
}
