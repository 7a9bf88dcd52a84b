//! Fuzz target: peer wire framing, extension payloads and the MSE receiver never panic on
//! arbitrary bytes; a parsed message writes back to the bytes it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use torrent_gateway::proto::bt::peer_ext::{ExtHandshake, MetadataMsg, Pex};
use torrent_gateway::proto::bt::peer_wire::{self, FrameLimits, Handshake, Message};
use torrent_gateway::proto::bt::mse;

fuzz_target!(|data: &[u8]| {
    let _ = Handshake::parse(data);
    let lim = FrameLimits::for_torrent(100, 5000);
    let mut at = 0;
    while let Ok(Some((msg, n))) = peer_wire::parse_frame(&data[at..], &lim) {
        if !matches!(msg, Message::Unknown { .. }) {
            let mut out = Vec::new();
            peer_wire::write(&msg, &mut out);
            assert_eq!(out, &data[at..at + n], "{msg:?}");
        }
        at += n;
    }
    let _ = ExtHandshake::parse(data);
    let _ = MetadataMsg::parse(data);
    let _ = Pex::parse(data);
    let mut rx = mse::Receiver::new([1; 20], vec![]);
    let mut out = Vec::new();
    let ih = [2u8; 20];
    let _ = rx.receive(data, &mut out, &|h| (*h == mse::req2_hash(&ih)).then_some(ih));
});
