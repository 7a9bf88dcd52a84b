//! Fuzz target: the whole DHT node (`dht::Dht`), not just the parser, fed a run of datagrams
//! from a handful of addresses with the clock moving between them. Whatever arrives, the node
//! never panics, its routing table and storage stay within their caps, and everything it sends
//! is a KRPC message that parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use torrent_gateway::dht::{Dht, Settings};
use torrent_gateway::proto::dht::krpc;
use torrent_gateway::proto::dht::storage::Limits;

fuzz_target!(|data: &[u8]| {
    let settings = Settings {
        restrict_ips: false,
        limits: Limits {
            max_info_hashes: 8,
            max_peers_per_hash: 4,
            max_items: 4,
        },
        ..Settings::default()
    };
    let mut node = Dht::new(None, settings, 7, 1_000);
    node.add_node(SocketAddr::from(([127, 0, 0, 1], 6881)));
    node.get_peers([0x42; 20]);
    node.announce([0x43; 20], 6881);
    let mut now = 1_000u64;
    // Each datagram: a sender byte, a clock step byte, a length byte, then the bytes.
    let mut rest = data;
    while rest.len() >= 3 {
        let (from, step, len) = (rest[0], rest[1], rest[2] as usize);
        rest = &rest[3..];
        let packet = &rest[..len.min(rest.len())];
        rest = &rest[packet.len()..];
        let addr = SocketAddr::from(([127, 0, 0, 1 + from % 8], 6000 + u16::from(from)));
        now += u64::from(step) * 1_000;
        node.receive(addr, packet, now);
        node.tick(now);
        while let Some((_, bytes)) = node.poll_send() {
            krpc::parse(&bytes).expect("the node sends KRPC that parses");
        }
        let _ = node.take_found();
        let _ = node.take_completed();
        assert!(node.storage().info_hash_count() <= 8);
        assert!(node.storage().item_count() <= 4);
        assert!(node.storage().peer_count() <= 8 * 4);
        assert!(node.table().len() <= 160 * 8);
    }
});
