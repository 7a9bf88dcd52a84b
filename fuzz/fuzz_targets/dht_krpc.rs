//! Fuzz target: KRPC datagrams never panic the parser; an accepted message re-encodes to
//! bytes that parse back to the same message; a refused query's error answer parses with its
//! transaction id; and parsed puts and nodes go through storage and the routing table safely.
#![no_main]

use libfuzzer_sys::fuzz_target;
use torrent_gateway::proto::dht::krpc::{self, Body, Method};
use torrent_gateway::proto::dht::routing::{Config, Contact, Table};
use torrent_gateway::proto::dht::storage::{Limits, Storage};
use torrent_gateway::proto::dht::NodeId;

fuzz_target!(|data: &[u8]| {
    match krpc::parse(data) {
        Ok(msg) => {
            let bytes = msg.encode();
            let back = krpc::parse(&bytes).expect("an encoded message parses");
            assert_eq!(back, msg);
            let mut table = Table::new(NodeId([0x55; 20]), Config::default());
            let mut storage = Storage::new(Limits::default());
            match &msg.body {
                Body::Query(q) => {
                    if let Method::Put(p) = &q.method {
                        let _ = match &p.mutable {
                            Some(m) => storage.put_mutable(m, p.v, 0),
                            None => storage.put_immutable(p.v, 0),
                        };
                    }
                }
                Body::Response(r) => {
                    for n in r.nodes.iter().chain(&r.nodes6) {
                        let _ = table.heard(n.id, n.addr, Contact::Response, 0);
                    }
                    let _ = table.closest(&r.id, 8, 0);
                }
                Body::Error(_) => {}
            }
        }
        Err(e) => {
            if let Some(reply) = e.reply() {
                let back = krpc::parse(&reply).expect("an error answer parses");
                assert_eq!(Some(back.t), e.t);
            }
        }
    }
});
