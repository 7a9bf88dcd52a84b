//! Fuzz target: the bencode decoder never panics, and what it accepts re-encodes canonically.
#![no_main]

use libfuzzer_sys::fuzz_target;
use torrent_gateway::proto::bt::bencode;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = bencode::decode(data) {
        assert_eq!(value.raw, data);
        let again = value.to_owned_value().encode();
        bencode::decode(&again).expect("re-encoding decodes");
    }
});
