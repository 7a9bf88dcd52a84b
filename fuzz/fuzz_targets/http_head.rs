//! Fuzz target: request heads and chunked bodies never panic; a parsed head never claims
//! more bytes than it was given, and the chunked decoder never yields data outside its
//! input or more data than the input holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use torrent_gateway::proto::http::chunked::Decoder;
use torrent_gateway::proto::http::head::{self, HeadLimits};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((_, n))) = head::parse(data, &HeadLimits::default()) {
        assert!(n <= data.len());
    }
    let mut d = Decoder::new();
    let mut at = 0;
    let mut produced = 0;
    while at < data.len() && !d.is_done() {
        match d.step(&data[at..]) {
            Ok(step) => {
                if let Some(r) = &step.data {
                    assert!(r.end <= step.consumed);
                    produced += r.len();
                }
                if step.consumed == 0 {
                    break;
                }
                at += step.consumed;
            }
            Err(_) => break,
        }
    }
    assert!(produced <= data.len());
});
