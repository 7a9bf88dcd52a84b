//! The peer wire service against a test client written to misbehave: every kind of bad
//! input is disconnected (and logged at debug) while others keep being served; a peer that
//! never reads cannot grow our queue; 500 connections are held in bounded memory; deleting
//! a file closes its connections and a new upload is served at once.

mod support;

use std::net::SocketAddr;
use support::peer::{Got, Peer};
use support::server::{upload, Server};
use support::tracker::eventually;
use support::{bytes, tempdir};
use torrent_gateway::proto::bt::peer_wire::{BlockRef, Message};

const CONFIG: &str = "[storage]
piece_length_bytes = 262144
blob_threshold_bytes = 1000000
[peer]
max_requests = 8
max_queued_bytes = 65536
stall_timeout_secs = 2
handshake_timeout_secs = 2
max_connections_per_ip = 1000
max_half_open = 1000
max_connections = 500
";

fn info_hash(d: &serde_json::Value) -> [u8; 20] {
    torrent_gateway::proto::hex::decode::<20>(d["info_hash"].as_str().unwrap()).unwrap()
}

fn p2p(server: &Server) -> serde_json::Value {
    server.get("/api/p2p/stats").json()
}

/// Connects, says interested and waits for the unchoke.
fn unchoked(addr: SocketAddr, ih: [u8; 20]) -> Peer {
    let mut p = Peer::handshake(addr, ih, true);
    p.send(Message::Interested).unwrap();
    assert!(p.wait_for(|m| *m == Got::Unchoke), "never unchoked");
    p
}

/// A well-behaved download of one block, compared with the data.
fn fetch_block(addr: SocketAddr, ih: [u8; 20], data: &[u8], index: u32, begin: u32) {
    let mut p = unchoked(addr, ih);
    let length = 16384.min(data.len() as u32 - index * 262_144 - begin);
    p.send(Message::Request(BlockRef {
        index,
        begin,
        length,
    }))
    .unwrap();
    let got = loop {
        match p.next().expect("connection stayed open") {
            Got::Piece {
                index: i,
                begin: b,
                data,
            } => break (i, b, data),
            _ => continue,
        }
    };
    let at = (index * 262_144 + begin) as usize;
    assert_eq!(got, (index, begin, data[at..at + length as usize].to_vec()));
}

#[test]
fn hostile_peers_are_disconnected_and_others_still_served() {
    let dir = tempdir();
    let server = Server::start_logged(
        &dir.path().join("gw"),
        CONFIG,
        "info,torrent_gateway::net=debug",
    );
    let addr = server.peer.unwrap();
    let data = bytes(2_500_007, 7);
    let ih = info_hash(&upload(&server, "big.bin", &data));
    fetch_block(addr, ih, &data, 9, 16384 * 8);

    // Not a handshake at all: taken for an encrypted (MSE) handshake, which it is not.
    let mut p = Peer::connect(addr);
    use std::io::Write;
    p.sock.write_all(&[b'G'; 700]).unwrap();
    assert!(p.closed_within(10), "bad handshake");
    // The right length byte and the wrong protocol: by its first 20 bytes an encrypted
    // handshake (as libtorrent decides), which then fails to synchronise.
    let mut p = Peer::connect(addr);
    let mut wrong = b"\x13BitTorrent protocoX".to_vec();
    wrong.extend_from_slice(&[b'G'; 700]);
    p.sock.write_all(&wrong).unwrap();
    assert!(p.closed_within(10), "bad protocol string");
    // A torrent we do not have.
    let mut p = Peer::connect(addr);
    p.send_handshake([9; 20], true);
    assert!(p.read_handshake().is_none(), "unknown info-hash");
    // A length prefix over 16 KiB + 13.
    let mut p = Peer::handshake(addr, ih, true);
    p.sock.write_all(&[0, 0, 0x40, 0x0a, 7]).unwrap();
    assert!(p.closed_within(10), "oversized length prefix");
    // A request outside the torrent, and one past the end of the short last piece.
    for bad in [
        BlockRef {
            index: 10,
            begin: 0,
            length: 16384,
        },
        BlockRef {
            index: 9,
            begin: 262_144 - 1000,
            length: 16384,
        },
    ] {
        let mut p = unchoked(addr, ih);
        p.send(Message::Request(bad)).unwrap();
        assert!(p.closed_within(10), "out of range {bad:?}");
    }
    // Requests while choked (never interested): a burst is a race, a stream is not.
    let mut p = Peer::handshake(addr, ih, false);
    let req = Message::Request(BlockRef {
        index: 0,
        begin: 0,
        length: 16384,
    });
    for _ in 0..200 {
        if p.send(req).is_err() {
            break;
        }
    }
    assert!(p.closed_within(10), "requests while choked");
    // Garbage after the handshake.
    let mut p = Peer::handshake(addr, ih, true);
    let _ = p.sock.write_all(&bytes(4096, 3));
    assert!(p.closed_within(10), "garbage");
    // 10,000 tiny messages that change nothing.
    let mut p = Peer::handshake(addr, ih, true);
    let _ = p.sock.write_all(&[0u8; 4 * 10_000]);
    assert!(p.closed_within(10), "keep-alive flood");
    // A handshake that never finishes.
    let mut p = Peer::connect(addr);
    p.sock.write_all(&[19, b'B', b'i']).unwrap();
    assert!(p.closed_within(10), "handshake timeout");

    // Still serving.
    fetch_block(addr, ih, &data, 0, 0);
    let reasons = [
        "closed: encrypted handshake: no synchronisation hash",
        "closed: unknown info-hash",
        "is over the limit",
        "closed: request outside the torrent",
        "closed: requests while choked",
        "closed: flood of messages",
        "closed: handshake timed out",
    ];
    // The log is read by another thread: give it a bounded moment to catch up.
    let mut log = server.log();
    for _ in 0..100 {
        if reasons.iter().all(|r| log.contains(r)) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        log = server.log();
    }
    for reason in reasons {
        assert!(log.contains(reason), "no debug line {reason:?} in\n{log}");
    }
    let stats = p2p(&server);
    assert!(stats["protocol_errors"].as_u64().unwrap() >= 6, "{stats}");
}

#[test]
fn a_peer_that_never_reads_cannot_grow_our_queue() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("gw"), CONFIG);
    let addr = server.peer.unwrap();
    let data = bytes(2_500_007, 8);
    let ih = info_hash(&upload(&server, "big.bin", &data));
    let mut p = unchoked(addr, ih);
    // Keep asking for blocks, never read a byte of the answers.
    p.sock
        .set_write_timeout(Some(std::time::Duration::from_millis(500)))
        .unwrap();
    let mut max_queued = 0;
    let mut closed = false;
    for round in 0..400u32 {
        let mut batch = Vec::new();
        for i in 0..8u32 {
            let b = BlockRef {
                index: (round + i) % 9,
                begin: 0,
                length: 16384,
            };
            torrent_gateway::proto::bt::peer_wire::write(&Message::Request(b), &mut batch);
        }
        use std::io::Write;
        if p.sock.write_all(&batch).is_err() {
            closed = true;
            break;
        }
        if round % 20 == 0 {
            let q = p2p(&server)["queued_bytes"].as_u64().unwrap();
            max_queued = max_queued.max(q);
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    // Piece data is capped at max_queued_bytes; control bytes (rejects) at 256 KiB.
    assert!(max_queued <= 65_536 + 256 * 1024, "queued {max_queued}");
    assert!(
        closed || p.closed_within(10),
        "a stalled peer is disconnected"
    );
    assert!(eventually(5, || p2p(&server)["connections"] == 0));
    fetch_block(addr, ih, &data, 1, 0);
}

#[test]
fn five_hundred_connections_in_bounded_memory() {
    raise_fd_limit();
    let dir = tempdir();
    let server = Server::start(&dir.path().join("gw"), CONFIG);
    let addr = server.peer.unwrap();
    let ih = info_hash(&upload(&server, "f.bin", &bytes(300_000, 9)));
    let rss_before = rss_kib(server.pid());
    let peers: Vec<Peer> = (0..500).map(|_| Peer::handshake(addr, ih, true)).collect();
    assert!(
        eventually(10, || p2p(&server)["connections"] == 500),
        "{}",
        p2p(&server)
    );
    let rss = rss_kib(server.pid());
    println!("RSS with 500 peer connections: {rss} KiB (idle {rss_before} KiB)");
    assert!(rss < 64 * 1024, "RSS {rss} KiB");
    // The 501st is over max_connections: closed at once.
    let mut extra = Peer::connect(addr);
    extra.send_handshake(ih, true);
    assert!(extra.read_handshake().is_none());
    let health = server.get("/api/health").json();
    assert_eq!(
        health["components"]["peer_wire"]["status"], "degraded",
        "{health}"
    );
    drop(peers);
    assert!(eventually(10, || p2p(&server)["connections"] == 0));
}

#[test]
fn deleting_stops_seeding_and_uploading_starts_it() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("gw"), CONFIG);
    let addr = server.peer.unwrap();
    let data = bytes(70_000, 10);
    let d = upload(&server, "a.bin", &data);
    let ih = info_hash(&d);
    let mut p = Peer::handshake(addr, ih, true);
    let r = support::server::request(
        server.addr,
        "DELETE",
        &format!("/api/files/{}", d["sha256"].as_str().unwrap()),
        &[],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        p.closed_within(10),
        "connection of a deleted file stays open"
    );
    let mut again = Peer::connect(addr);
    again.send_handshake(ih, true);
    assert!(again.read_handshake().is_none());
    // A new upload is served at once, with its metadata size in the extension handshake.
    let data2 = bytes(40_000, 11);
    let ih2 = info_hash(&upload(&server, "b.bin", &data2));
    let mut p = Peer::handshake(addr, ih2, true);
    assert_eq!(p.next(), Some(Got::HaveAll));
    match p.next() {
        Some(Got::Extended(0, hs)) => {
            assert!(String::from_utf8_lossy(&hs).contains("metadata_size"))
        }
        other => panic!("{other:?}"),
    }
    fetch_block(addr, ih2, &data2, 0, 16384);
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// 500 client sockets plus the usual: lift the soft open-files limit to the hard one.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max.min(65_536);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
