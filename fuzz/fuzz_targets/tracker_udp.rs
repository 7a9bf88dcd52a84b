//! Fuzz target: UDP tracker packets never panic the parser, accepted requests re-encode to
//! the same bytes, and response parsing of arbitrary bytes is safe.
#![no_main]

use libfuzzer_sys::fuzz_target;
use torrent_gateway::proto::tracker::udp::{self as tracker_udp, Request, Response};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = Request::parse(data) {
        let mut out = Vec::new();
        req.write(&mut out);
        assert!(data.starts_with(&out), "a parsed request writes back its bytes");
        if let Request::Announce(a) = &req {
            let _ = tracker_udp::url_data(a.options);
        }
    }
    for peer_len in [6, 18] {
        if let Some(resp) = Response::parse(data, peer_len) {
            let mut out = Vec::new();
            resp.write(&mut out);
            assert_eq!(out, data);
        }
    }
});
