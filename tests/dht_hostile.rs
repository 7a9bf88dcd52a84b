//! Hostile input over real UDP sockets against the DHT node of a running `serve` (bound to
//! 127.0.0.1, no bootstrap hosts): malformed bencode, wrong types, unknown methods,
//! oversized datagrams and responses with spoofed transaction ids get a KRPC error echoing
//! `t` or nothing, never a crash; a flood from one IP (127.0.0.2, from one port and from
//! many) is blocked while a well-behaved querier on 127.0.0.3 keeps getting answers; an
//! announce flood from 40 IPs stops at the storage cap; the rate table and memory stay
//! bounded. Loopback lifts the one-node-per-IP rules, not the per-IP rate limit.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use support::dht_gateway::{dht_addr, dht_stats};
use support::server::Server;
use support::tempdir;
use support::tracker::eventually;
use torrent_gateway::proto::dht::krpc::{self, Body, Message, Method};
use torrent_gateway::proto::dht::NodeId;

/// A UDP socket on `ip` (any 127.x address is this host's).
fn sock(ip: &str) -> UdpSocket {
    let s = UdpSocket::bind(format!("{ip}:0")).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s
}

/// Sends `bytes` and returns the answer (answers waiting from before are dropped), if one comes within the socket's read timeout.
fn ask(s: &UdpSocket, to: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    // A late answer to an earlier question is not this one's.
    drain(s);
    s.send_to(bytes, to).unwrap();
    let mut buf = vec![0u8; 65_536];
    let (n, _) = s.recv_from(&mut buf).ok()?;
    Some(buf[..n].to_vec())
}

/// [`ask`] as a DHT querier does: sent again (twice at most) when no answer comes, since
/// UDP may lose a datagram.
fn ask_retrying(s: &UdpSocket, to: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    (0..3).find_map(|_| ask(s, to, bytes))
}

fn ping(t: &[u8]) -> Vec<u8> {
    Message::query(t, NodeId([0x33; 20]), Method::Ping).encode()
}

/// The KRPC error code of an answer (None if it is not an error).
fn error_code(bytes: &[u8]) -> Option<i64> {
    match krpc::parse(bytes).ok()?.body {
        Body::Error(e) => Some(e.code),
        _ => None,
    }
}

fn tid(bytes: &[u8]) -> Vec<u8> {
    krpc::parse(bytes).map(|m| m.t.to_vec()).unwrap_or_default()
}

/// Drains whatever answers are waiting on `s`; returns how many.
fn drain(s: &UdpSocket) -> usize {
    s.set_nonblocking(true).unwrap();
    let mut buf = vec![0u8; 2048];
    let mut n = 0;
    while s.recv_from(&mut buf).is_ok() {
        n += 1;
    }
    s.set_nonblocking(false).unwrap();
    n
}

#[test]
fn hostile_datagrams_get_errors_or_nothing_and_a_flooder_is_blocked_alone() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("data"), "[dht]\nbootstrap = []\n");
    let node = dht_addr(&server);
    let good = sock("127.0.0.3");
    let (_, anon_before) = server.rss();

    // Malformed: each has a readable `t` and gets the KRPC error for it.
    let cases: [(&[u8], &[u8], i64); 4] = [
        // `a` is not a dictionary: 203 (protocol error).
        (b"d1:ai5e1:q4:ping1:t2:aa1:y1:qe", b"aa", 203),
        // The id is an integer: 203.
        (b"d1:ad2:idi5ee1:q4:ping1:t2:ab1:y1:qe", b"ab", 203),
        // An id of 3 bytes: 203.
        (b"d1:ad2:id3:abce1:q4:ping1:t2:ac1:y1:qe", b"ac", 203),
        // A method nobody has: 204.
        (
            b"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaae1:q7:explode1:t2:ad1:y1:qe",
            b"ad",
            204,
        ),
    ];
    for (bytes, t, code) in cases {
        let reply = ask(&good, node, bytes)
            .unwrap_or_else(|| panic!("no answer to {}", String::from_utf8_lossy(bytes)));
        assert_eq!(error_code(&reply), Some(code), "{reply:?}");
        assert_eq!(tid(&reply), t, "the transaction id is echoed");
    }
    // Garbage, truncated bencode, an oversized datagram (60 KB inside a valid-looking
    // query), nesting past the limits, and responses with transaction ids we never used:
    // dropped (an error at most), never a crash.
    let mut big = b"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaa1:x60000:".to_vec();
    big.extend(std::iter::repeat_n(b'x', 60_000));
    big.extend(b"e1:q4:ping1:t2:ae1:y1:qe");
    let deep = [vec![b'l'; 5_000], vec![b'e'; 5_000]].concat();
    let spoofed = Message::response(
        b"zz",
        krpc::Response {
            id: NodeId([0x44; 20]),
            ..krpc::Response::default()
        },
    )
    .encode();
    let junk: [&[u8]; 6] = [
        b"hello",
        b"d1:t2:af1:y1:q1:q4:ping1:ad2:id20:aaaa",
        &big,
        &deep,
        &spoofed,
        b"d1:t2:ag1:y1:ee",
    ];
    for bytes in junk {
        if let Some(reply) = ask(&good, node, bytes) {
            assert!(error_code(&reply).is_some(), "only an error: {reply:?}");
        }
    }
    // Still answering, with our transaction id.
    let reply = ask(&good, node, &ping(b"p1")).expect("a ping after the junk");
    assert_eq!(tid(&reply), b"p1");
    assert!(matches!(
        krpc::parse(&reply).unwrap().body,
        Body::Response(_)
    ));

    // One IP floods: 3,000 pings from one port, then rounds of 40 ports with 50 each, as
    // fast as the sockets take them, until a fresh port of that IP is no longer answered
    // (the kernel may drop part of a burst, so the rounds go on until the node has counted
    // enough; at most 20). The well-behaved querier asks after every round and is answered.
    let flooder = sock("127.0.0.2");
    for i in 0..3000u32 {
        let _ = flooder.send_to(&ping(&(i as u16).to_be_bytes()), node);
    }
    let ports: Vec<UdpSocket> = (0..40).map(|_| sock("127.0.0.2")).collect();
    let (mut rounds, mut blocked, mut asked, mut answered) = (0, false, 0, 0);
    while rounds < 20 && !blocked {
        rounds += 1;
        for (p, s) in ports.iter().enumerate() {
            for i in 0..50u16 {
                let _ = s.send_to(&ping(&(p as u16 * 50 + i).to_be_bytes()), node);
            }
        }
        let t = (0x7000 + rounds as u16).to_be_bytes();
        asked += 1;
        if ask_retrying(&good, node, &ping(&t)).is_some_and(|r| tid(&r) == t) {
            answered += 1;
        }
        let fresh = sock("127.0.0.2");
        blocked = ask(&fresh, node, &ping(b"f1")).is_none();
    }
    assert!(blocked, "127.0.0.2 is still answered after {rounds} rounds");
    assert_eq!(answered, asked, "the honest querier went unanswered");
    // After the flood: the querier still answered (10 a second), the flooder not, from any port.
    for i in 0..10u16 {
        let t = (0x7100 + i).to_be_bytes();
        let started = Instant::now();
        let r = ask(&good, node, &ping(&t));
        assert!(r.is_some_and(|r| tid(&r) == t), "ping {i} after the flood");
        // Pace the querier (its own rate, not a wait for the server).
        if let Some(rest) = Duration::from_millis(100).checked_sub(started.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    let sent = 3000 + rounds * 40 * 50;
    let flood_answers = drain(&flooder) + ports.iter().map(drain).sum::<usize>();
    assert!(
        flood_answers <= 100 + 16 * 100 * 2,
        "of {sent} flood datagrams {flood_answers} were answered"
    );
    assert!(ask(&sock("127.0.0.2"), node, &ping(b"f2")).is_none());
    let counted = eventually(5, || {
        dht_stats(&server).is_some_and(|s| {
            s["rate_limited"].as_u64() >= Some(1_000) && s["rate_blocks"].as_u64() >= Some(2)
        })
    });
    assert!(counted, "{:?}", dht_stats(&server));
    let text = server.get("/metrics").text();
    let limited = text
        .lines()
        .find_map(|l| l.strip_prefix(r#"tg_dht_dropped_total{reason="rate_limited"} "#))
        .and_then(|v| v.parse::<f64>().ok());
    assert!(limited >= Some(1_000.0), "{limited:?}");

    // An announce flood from 40 IPs (each within its rate): storage stops at its cap of
    // 2,000 info-hashes and says so with 202.
    let mut full = 0;
    for ip in 10..50u8 {
        let s = sock(&format!("127.0.0.{ip}"));
        let gp = Message::query(
            b"gp",
            NodeId([ip; 20]),
            Method::GetPeers {
                info_hash: NodeId([1; 20]),
            },
        )
        .encode();
        let reply = ask(&s, node, &gp).expect("get_peers answered");
        let m = krpc::parse(&reply).unwrap();
        let Body::Response(r) = &m.body else {
            panic!("{reply:?}")
        };
        let token = r.token.expect("a token").to_vec();
        for i in 0..60u16 {
            let mut ih = [ip; 20];
            ih[..2].copy_from_slice(&i.to_be_bytes());
            let ann = Message::query(
                &i.to_be_bytes(),
                NodeId([ip; 20]),
                Method::AnnouncePeer {
                    info_hash: NodeId(ih),
                    port: 7000,
                    implied_port: false,
                    token: &token,
                },
            )
            .encode();
            s.send_to(&ann, node).unwrap();
        }
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = vec![0u8; 2048];
        while let Ok((n, _)) = s.recv_from(&mut buf) {
            if error_code(&buf[..n]) == Some(202) {
                full += 1;
            }
        }
    }
    let capped = eventually(5, || {
        dht_stats(&server).is_some_and(|s| s["stored_info_hashes"].as_u64() == Some(2_000))
    });
    assert!(capped, "{:?}", dht_stats(&server));
    assert!(full >= 300, "{full} announces refused as storage full");
    let s = dht_stats(&server).unwrap();
    assert!(s["rate_sources"].as_u64() <= Some(10_000), "{s}");
    let (_, anon_after) = server.rss();
    let growth = anon_after.saturating_sub(anon_before);
    assert!(
        growth < 16 << 20,
        "anonymous memory grew {} KiB",
        growth >> 10
    );
    // Alive to the end.
    assert!(ask(&good, node, &ping(b"p2")).is_some());
}
