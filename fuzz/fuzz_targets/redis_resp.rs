//! Fuzz target: the RESP reply scanner never panics, and every reply it finds whole reads
//! back (arrays walked to their last element) without panicking either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use torrent_gateway::proto::resp::{self, Reply};

fn walk(r: Reply<'_>) {
    if let Reply::Array(items) = r {
        for i in items {
            walk(i);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut at = 0;
    while let Ok(Some(n)) = resp::reply_len(&data[at..]) {
        walk(resp::read(&data[at..at + n]));
        at += n;
    }
});
