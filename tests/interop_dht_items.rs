//! BEP-44 items between our `dht put` / `dht get` and python3-libtorrent 2.0.8 nodes on
//! 127.0.0.1, both ways: immutable items (the target is the SHA-1 of the bencoded value) and
//! mutable ones (an ed25519 key, a salt, `seq` following what the DHT holds). Every wait is a
//! bounded poll.

mod support;

use serde_json::Value;
use std::net::SocketAddr;
use support::dht_nodes::DhtNode;
use support::{run, stderr, stdout, tempdir};
use torrent_gateway::dht::items;
use torrent_gateway::proto::hex;

const LT_SECS: u64 = 240;
/// The CLI's timeout: a lookup may also ask nodes of an earlier CLI run that are gone (each
/// costs its retries) before it converges.
const CLI_SECS: &str = "40";

/// Two libtorrent nodes that know each other.
fn pair() -> (DhtNode, DhtNode) {
    let mut a = DhtNode::libtorrent(LT_SECS);
    let mut b = DhtNode::libtorrent(LT_SECS);
    a.add_node(b.addr);
    b.add_node(a.addr);
    assert!(
        a.wait_nodes(1, 30) && b.wait_nodes(1, 30),
        "the nodes never met"
    );
    (a, b)
}

/// Runs `dht ARGS --json --timeout CLI_SECS --bootstrap NODE`: exit code and JSON output.
fn cli(args: &[&str], node: SocketAddr) -> (Option<i32>, Value) {
    cli_within(args, node, CLI_SECS)
}

fn cli_within(args: &[&str], node: SocketAddr, secs: &str) -> (Option<i32>, Value) {
    let dir = tempdir();
    let node = node.to_string();
    let mut all = vec!["dht"];
    all.extend(args);
    all.extend(["--json", "--timeout", secs, "--bootstrap", &node]);
    let o = run(dir.path(), &all);
    let v = serde_json::from_str(&stdout(&o))
        .unwrap_or_else(|e| panic!("{all:?}: {e}: {} {}", stdout(&o), stderr(&o)));
    (o.status.code(), v)
}

fn hex_of(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

#[test]
fn libtorrent_gets_the_items_we_put() {
    let (mut a, mut b) = pair();
    // Immutable: stored on the libtorrent nodes, its target the SHA-1 of "5:hello".
    let (code, put) = cli(&["put", "hello"], a.addr);
    assert_eq!(code, Some(0), "{put}");
    assert!(put["stored"].as_u64() >= Some(1), "{put}");
    let target = put["target"].as_str().unwrap().to_string();
    let sha1 = torrent_gateway::proto::dht::storage::immutable_target(b"5:hello");
    assert_eq!(target, hex_of(&sha1.0));
    b.send(&format!("get_immutable {target}"));
    let got = b.wait(30, |v| v["item"] == target.as_str());
    let got = got.unwrap_or_else(|| panic!("libtorrent found no item: {}", b.events()));
    assert_eq!(got["value"], hex_of(b"5:hello"));

    // Mutable, salted, signed by us; libtorrent checks the signature before reporting it.
    let seed = [0x42u8; 32];
    let pk = hex_of(&items::public_key(&seed));
    let seed_arg = hex_of(&seed);
    let (code, put) = cli(
        &["put", "first", "--key-seed", &seed_arg, "--salt", "s1"],
        a.addr,
    );
    assert_eq!(code, Some(0), "{put}");
    assert_eq!(put["key"], pk.as_str());
    assert_eq!(put["seq"], 1);
    b.send(&format!("get_mutable {pk} {}", hex_of(b"s1")));
    let got = b.wait(30, |v| v["mutable"] == pk.as_str() && v["seq"] == 1);
    let got = got.unwrap_or_else(|| panic!("libtorrent found no mutable item: {}", b.events()));
    assert_eq!(got["value"], hex_of(b"5:first"));
    // A second put without --seq follows the DHT's seq.
    let (code, put) = cli(
        &["put", "second", "--key-seed", &seed_arg, "--salt", "s1"],
        a.addr,
    );
    assert_eq!(code, Some(0), "{put}");
    assert_eq!(put["seq"], 2, "{put}");
    a.clear();
    a.send(&format!("get_mutable {pk} {}", hex_of(b"s1")));
    let got = a.wait(30, |v| v["mutable"] == pk.as_str() && v["seq"] == 2);
    assert!(got.is_some(), "seq 2 not found: {}", a.events());
    assert_eq!(got.unwrap()["value"], hex_of(b"6:second"));
}

#[test]
fn we_get_the_items_libtorrent_puts() {
    let (mut a, b) = pair();
    a.send(&format!("put_immutable {}", hex_of(b"5:world")));
    let put = a.wait(60, |v| v.get("put").is_some() && v.get("ok").is_some());
    let put = put.unwrap_or_else(|| panic!("libtorrent's put did not end: {}", a.events()));
    assert!(put["ok"].as_u64() >= Some(1), "{put}");
    let target = put["put"].as_str().unwrap().to_string();
    let (code, got) = cli(&["get", &target], b.addr);
    assert_eq!(code, Some(0), "{got}");
    assert_eq!(got["value"], "world");
    assert_eq!(got["v_hex"], hex_of(b"5:world"));

    // Mutable: libtorrent signs with the expanded form of the same seed; we check it.
    let seed = [0x17u8; 32];
    let pk = hex_of(&items::public_key(&seed));
    a.send(&format!(
        "put_mutable {} {pk} {} {}",
        hex_of(&seed),
        hex_of(b"salt"),
        hex_of(b"from libtorrent")
    ));
    let put = a.wait(60, |v| v["put_mutable"] == pk.as_str());
    let put = put.unwrap_or_else(|| panic!("libtorrent's put did not end: {}", a.events()));
    assert!(put["ok"].as_u64() >= Some(1), "{put}");
    let seq = put["seq"].as_i64().unwrap();
    let (code, got) = cli(&["get", "--key", &pk, "--salt", "salt"], b.addr);
    assert_eq!(code, Some(0), "{got}");
    assert_eq!(got["value"], "from libtorrent");
    assert_eq!(got["seq"], seq);
    // The wrong salt names another target: nothing there by the (short) timeout.
    let (code, got) = cli_within(&["get", "--key", &pk, "--salt", "pepper"], b.addr, "5");
    assert_eq!(code, Some(1), "{got}");
    assert_eq!(got["value"], Value::Null);
}

#[test]
fn dht_put_and_get_refuse_bad_input() {
    let dir = tempdir();
    let long = "x".repeat(1000);
    for args in [
        vec!["dht", "put", long.as_str()],
        vec!["dht", "put", "v", "--key-seed", "abc"],
        vec!["dht", "put", "v", "--seq", "3"],
        vec!["dht", "get"],
        vec!["dht", "get", "nothex"],
        vec!["dht", "get", "--key", "00"],
    ] {
        let o = run(dir.path(), &args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
    }
}
