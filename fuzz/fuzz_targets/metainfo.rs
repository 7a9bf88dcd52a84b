//! Fuzz target: torrent parsing never panics, and every accepted path is safe.
#![no_main]

use libfuzzer_sys::fuzz_target;
use torrent_gateway::proto::bt::metainfo;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = metainfo::parse(data) {
        for f in &m.info.files {
            metainfo::check_path(&f.path).expect("accepted paths are safe");
        }
        assert_eq!(m.info.piece_count() as u64, m.info.total_length().div_ceil(m.info.piece_length));
    }
});
