//! Fuzz target: Nostr event parsing, auth headers (base64 + event + BUD-11/NIP-98 rules),
//! relay messages and the `Host`/`Origin` parsing behind loopback trust (`proto::http::url`) never
//! panic; accepted events survive a JSON round trip, and an origin parses to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use torrent_gateway::proto::nostr::{parse_relay_message, Event};
use torrent_gateway::proto::nostr::auth::{self, BlossomNeed, HttpNeed};
use torrent_gateway::proto::http::url;

fuzz_target!(|data: &[u8]| {
    if let Ok(ev) = Event::parse(data) {
        let _ = ev.verify();
        let again = Event::parse(ev.to_json().as_bytes()).expect("own JSON parses");
        assert_eq!(again, ev);
        let need = BlossomNeed { verb: "upload", x: Some("ab"), server: "h", now: 1, skew: 60, max_lifetime: 3600 };
        let _ = auth::check_blossom(&ev, &need);
        let need = HttpNeed { url: "http://h/a", method: "PUT", now: 1, window: 60, has_body: true };
        let _ = auth::check_http(&ev, &need);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = auth::parse_header(text);
        let _ = parse_relay_message(text);
        let _ = torrent_gateway::proto::nostr::base64::decode(text);
        let _ = torrent_gateway::proto::nostr::bech32::decode(text);
        if let Some(host) = url::authority_host(text) {
            let _ = url::is_local_host(&host);
        }
        if let Some(origin) = url::origin(text) {
            assert_eq!(url::origin(&origin).as_deref(), Some(origin.as_str()));
            assert!(url::host(&origin).is_some());
        }
        let _ = torrent_gateway::proto::http::mime::is_passive(text);
    }
});
