//! Fuzz target: the MSE initiator against our receiver, with the receiver's bytes XORed by
//! the input (then the rest of the input appended) and delivered in chunks of the size the
//! first byte picks: never a panic, and a finished handshake always names our torrent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use torrent_gateway::proto::bt::mse::{self, Initiator, Receiver};

fuzz_target!(|data: &[u8]| {
    let [chunk, pad, provide, noise @ ..] = data else {
        return;
    };
    let ih = [7u8; 20];
    let lookup = |h: &[u8; 20]| (*h == mse::req2_hash(&ih)).then_some(ih);
    let mut a = Initiator::new([1; 20], ih, vec![9; 3], u32::from(provide & 3), vec![0x13; 68]);
    let mut b = Receiver::new([2; 20], vec![0x5a; *pad as usize * 2]);
    let mut to_b = a.start();
    let mut used = 0;
    // Three rounds are enough for the whole exchange; each gives B what A said and A what
    // B said (scrambled).
    for round in 0..3 {
        let mut from_b = Vec::new();
        if !to_b.is_empty() && b.receive(&to_b, &mut from_b, &lookup).is_err() {
            from_b.clear();
        }
        to_b.clear();
        for byte in from_b.iter_mut() {
            if let Some(n) = noise.get(used) {
                *byte ^= n;
                used += 1;
            }
        }
        if round == 2 {
            from_b.extend_from_slice(&noise[used..]);
        }
        for piece in from_b.chunks(*chunk as usize + 1) {
            match a.receive(piece, &mut to_b) {
                Ok(Some(done)) => {
                    assert_eq!(done.info_hash, ih);
                    return;
                }
                Ok(None) => {}
                Err(_) => return,
            }
        }
    }
});
