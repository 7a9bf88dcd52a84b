//! BEP-51 sample_infohashes asked by us: `torrent-gateway dht sample` against
//! python3-libtorrent 2.0.8 nodes on 127.0.0.1 that store announced info-hashes, asked
//! directly (NODE arguments) and through a lookup from a bootstrap node; and the command's
//! exit codes (bad input 2, a node that never answers 1). libtorrent asking the gateway is in
//! tests/interop_dht.rs. Every wait is a bounded poll.

mod support;

use serde_json::Value;
use std::net::SocketAddr;
use support::dht_nodes::DhtNode;
use support::seeders::hex;
use support::{bytes, run, stderr, stdout, tempdir};

const LT_SECS: u64 = 240;

/// Runs `dht sample ARGS... --json --timeout SECS`: the exit code and the JSON it printed.
fn cli_sample(args: &[&str], secs: u64) -> (Option<i32>, Value) {
    let dir = tempdir();
    let secs = secs.to_string();
    let mut all = vec!["dht", "sample"];
    all.extend_from_slice(args);
    all.extend(["--json", "--timeout", &secs]);
    let o = run(dir.path(), &all);
    let v: Value = serde_json::from_str(&stdout(&o))
        .unwrap_or_else(|e| panic!("{all:?}: {e}: {} {}", stdout(&o), stderr(&o)));
    (o.status.code(), v)
}

/// A libtorrent node that stores the announce of a libtorrent client for a random
/// info-hash; returns both and the info-hash.
fn node_with_an_announce(seed: u64) -> (DhtNode, DhtNode, String, tempfile::TempDir) {
    let mut node = DhtNode::libtorrent(LT_SECS);
    let mut announcer = DhtNode::libtorrent(LT_SECS);
    announcer.add_node(node.addr);
    assert!(
        announcer.wait_nodes(1, 30),
        "the announcer never met the node"
    );
    let ih = hex(&bytes(20, seed ^ std::process::id() as u64));
    let dir = tempdir();
    // A magnet makes libtorrent announce it (2.0.8's Python dht_announce is broken).
    announcer.send(&format!(
        "magnet magnet:?xt=urn:btih:{ih} {}",
        dir.path().to_str().unwrap()
    ));
    let ann = node.wait(60, |v| v["announce"] == ih.as_str());
    assert!(ann.is_some(), "no announce: {}", node.events());
    (node, announcer, ih, dir)
}

#[test]
fn dht_sample_gets_a_libtorrent_nodes_stored_info_hashes() {
    let (node, _announcer, ih, _dir) = node_with_an_announce(51);
    let addr = node.addr.to_string();
    // Asked directly.
    let (code, v) = cli_sample(&[&addr], 20);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["info_hashes"], serde_json::json!([ih]), "{v}");
    let answer = &v["nodes"][0];
    assert_eq!(answer["addr"], addr.as_str(), "{v}");
    assert_eq!(answer["num"], 1, "libtorrent stores one info-hash: {v}");
    assert!(answer["interval"].as_i64().is_some_and(|i| i > 0), "{v}");
    assert_eq!(answer["error"], Value::Null, "{v}");
    // Through a lookup from the node as the bootstrap: the closest nodes found are asked
    // (the node and the announcer), and the node's sample is among the answers.
    let (code, v) = cli_sample(&["--bootstrap", &addr], 30);
    assert_eq!(code, Some(0), "{v}");
    assert!(
        v["info_hashes"]
            .as_array()
            .unwrap()
            .contains(&Value::from(ih.as_str())),
        "{v}"
    );
    assert!(v["asked"].as_u64() >= Some(1), "{v}");
    // Plain output: one info-hash per line.
    let dir = tempdir();
    let o = run(dir.path(), &["dht", "sample", &addr, "--timeout", "20"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("{ih}\n"));
}

#[test]
fn dht_sample_exit_codes() {
    let dir = tempdir();
    for bad in [
        vec!["not-an-address"],
        vec!["127.0.0.1:0"],
        vec!["127.0.0.1:1", "--target", "zz"],
        vec!["127.0.0.1:1", "--timeout", "0"],
        vec!["--bootstrap", "127.0.0.1"],
    ] {
        let mut args = vec!["dht", "sample"];
        args.extend(&bad);
        let o = run(dir.path(), &args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{bad:?}: {err}");
        assert!(err.starts_with("error: "), "{err}");
    }
    // A node that never answers: exit 1, nothing sampled, and it was asked over KRPC.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = silent.local_addr().unwrap();
    let (code, v) = cli_sample(&[&addr.to_string()], 3);
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["info_hashes"], serde_json::json!([]), "{v}");
    silent.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1500];
    let mut asked = false;
    while let Ok((n, _)) = silent.recv_from(&mut buf) {
        asked |= buf[..n].windows(17).any(|w| w == b"sample_infohashes");
    }
    assert!(asked, "the node was never sent sample_infohashes");
}
