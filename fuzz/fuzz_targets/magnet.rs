//! Fuzz target: magnet parsing never panics, and what it accepts survives a rebuild.
#![no_main]

use libfuzzer_sys::fuzz_target;
use torrent_gateway::proto::bt::magnet;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(m) = magnet::parse(text) {
            let again = magnet::parse(&m.to_uri()).expect("rebuilt magnet parses");
            assert_eq!(again.info_hash, m.info_hash);
        }
    }
});
