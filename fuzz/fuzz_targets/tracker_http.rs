//! Fuzz target: HTTP tracker query parsing and the client's answer parsing never panic,
//! and accepted announces keep their raw info_hash and peer_id through a re-encode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use torrent_gateway::proto::http::escape;
use torrent_gateway::proto::tracker::http as tracker_http;

fuzz_target!(|data: &[u8]| {
    if let Ok(answer) = torrent_gateway::proto::tracker::client::parse_answer(data) {
        assert!(answer.peers.len() <= torrent_gateway::proto::tracker::client::MAX_PEERS);
    }
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let _ = tracker_http::parse_scrape(query, 74);
    if let Ok(a) = tracker_http::parse_announce(query) {
        let again = format!(
            "info_hash={}&peer_id={}&port={}&event=stopped",
            escape::encode(&a.info_hash),
            escape::encode(&a.peer_id),
            a.port
        );
        let b = tracker_http::parse_announce(&again).expect("re-encoded announce parses");
        assert_eq!((a.info_hash, a.peer_id, a.port), (b.info_hash, b.peer_id, b.port));
    }
});
