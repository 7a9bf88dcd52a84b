//! Fuzz target: the seeding connection state machine fed arbitrary bytes in arbitrary
//! chunks (the first byte picks the chunk size), with requests taken and served as the
//! network loop would: never a panic, never a request outside the torrent handed out, and
//! never more queued requests than `reqq`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::Arc;
use torrent_gateway::proto::bt::peer_conn::{Event, PeerConn, Settings, Shape};

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let settings = Arc::new(Settings {
        peer_id: *b"-TG0100-fuzzfuzzfuzz",
        client: "fuzz",
        max_requests: 16,
        listen_port: Some(6881),
        pex: true,
    });
    let shape = Arc::new(Shape::new([7; 20], 100_000, 32_768, Arc::from(vec![b'd'; 3000])));
    let mut conn = PeerConn::incoming(settings, None);
    let mut events = Vec::new();
    let mut now = 0;
    for piece in rest.chunks(chunk as usize + 1) {
        now += 100;
        conn.receive(piece, now, &mut events);
        for ev in events.drain(..) {
            match ev {
                Event::Lookup(_) => conn.attach(Arc::clone(&shape), now, &mut Vec::new()),
                Event::Interested(true) => conn.unchoke(),
                Event::Close(_) => return,
                _ => {}
            }
        }
        assert!(conn.requests() <= 16);
        while let Some(b) = conn.next_request() {
            assert!(shape.valid(&b), "{b:?}");
            conn.served();
        }
        let _ = conn.take_output();
    }
});
