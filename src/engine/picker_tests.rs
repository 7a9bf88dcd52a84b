//! Tests of the piece picker: rarest first, priorities, deadlines and the critical window,
//! whole pieces, endgame, failures, random swarms.

use super::*;

/// 10 pieces of 2 blocks, the last one a block and a bit short.
fn layout() -> Layout {
    Layout {
        piece_count: 10,
        piece_length: 2 * BLOCK,
        total: 9 * 2 * u64::from(BLOCK) + 100,
    }
}

/// 10 pieces of 2 full blocks each.
fn picker() -> Picker {
    let even = Layout {
        piece_count: 10,
        piece_length: 2 * BLOCK,
        total: 10 * 2 * u64::from(BLOCK),
    };
    Picker::new(even, Bitfield::new(10), 7)
}

fn fetch_all(p: &mut Picker, peer: PeerId, blocks: &[Block]) {
    for &b in blocks {
        if let Arrival::Kept { complete: true, .. } = p.received(peer, b) {
            p.hashed(b.piece, true);
        }
    }
}

#[test]
fn layout_sizes() {
    let l = layout();
    assert_eq!(l.blocks(0), 2);
    assert_eq!(l.blocks(9), 1);
    assert_eq!(l.block_len(Block { piece: 9, index: 0 }), 100);
    assert_eq!(l.block_len(Block { piece: 3, index: 1 }), BLOCK);
}

#[test]
fn rarest_first_after_the_random_start() {
    let mut p = picker();
    // Have 4 pieces already: past the random start.
    for i in 0..4 {
        p.have.set(i);
    }
    let all = Bitfield::full(10);
    p.peer_has(&all);
    p.peer_has(&all);
    let mut rare = Bitfield::new(10);
    rare.set(7);
    p.peer_has(&rare); // piece 7 is the most common now
    let mut only = Bitfield::new(10);
    only.set(7);
    only.set(8);
    // Among 7 (3 peers) and 8 (2 peers), 8 is rarer.
    let got = p.pick(1, &only, 1, false);
    assert_eq!(got, vec![Block { piece: 8, index: 0 }]);
}

#[test]
fn partial_pieces_come_first_and_priorities_rule() {
    let mut p = picker();
    let all = Bitfield::full(10);
    p.peer_has(&all);
    let first = p.pick(1, &all, 1, false);
    // The same peer continues that piece before starting another.
    let next = p.pick(1, &all, 1, false);
    assert_eq!(next[0].piece, first[0].piece);
    let started = first[0].piece;
    let others: Vec<u32> = (0..10).filter(|&i| i != started).collect();
    let (high, unwanted) = (others[0], others[1]);
    for &i in &others[2..6] {
        p.have.set(i);
    }
    p.set_priority(high, 7);
    let got = p.pick(2, &all, 2, false);
    // The started piece has no free block left: another peer starts the highest-priority
    // piece.
    assert!(got.iter().all(|b| b.piece == high), "{got:?}");
    p.set_priority(unwanted, 0);
    let mut drained = Vec::new();
    loop {
        let b = p.pick(3, &all, 4, false);
        if b.is_empty() {
            break;
        }
        fetch_all(&mut p, 3, &b);
        drained.extend(b);
    }
    assert!(
        !drained.iter().any(|b| b.piece == unwanted),
        "unwanted piece fetched"
    );
    assert!(p.is_done() && !p.have().get(unwanted));
}

#[test]
fn deadlines_go_first() {
    let mut p = picker();
    let all = Bitfield::full(10);
    p.set_deadline(9, Some(5));
    p.set_deadline(3, Some(1));
    let got = p.pick(1, &all, 4, false);
    assert_eq!(
        got,
        vec![
            Block { piece: 3, index: 0 },
            Block { piece: 3, index: 1 },
            Block { piece: 9, index: 0 },
            Block { piece: 9, index: 1 }
        ]
    );
}

#[test]
fn a_run_goes_on_from_the_piece_named_and_jumps_where_it_cannot() {
    let mut p = picker();
    let all = Bitfield::full(10);
    let got = p.pick_after(1, &all, 6, true, Some(2));
    let pieces: Vec<u32> = got.iter().map(|b| b.piece).collect();
    assert_eq!(pieces, vec![3, 3, 4, 4, 5, 5]);
    // Piece 6 is taken by another peer: the run jumps elsewhere, then goes on from there.
    let other = p.pick_after(2, &all, 2, true, Some(5));
    assert_eq!(
        other,
        vec![Block { piece: 6, index: 0 }, Block { piece: 6, index: 1 }]
    );
    let next = p.pick_after(1, &all, 4, true, Some(5));
    assert!(
        next.iter().all(|b| ![3, 4, 5, 6].contains(&b.piece)),
        "{next:?}"
    );
    assert_eq!(next[2].piece, next[0].piece + 1, "{next:?}");
}

#[test]
fn whole_pieces_for_fast_peers() {
    let mut p = picker();
    let all = Bitfield::full(10);
    let a = p.pick(1, &all, 1, false);
    let b = p.pick(2, &all, 2, true);
    assert!(b.iter().all(|x| x.piece != a[0].piece), "{a:?} {b:?}");
}

#[test]
fn endgame_duplicates_and_cancels() {
    let mut p = Picker::new(
        Layout {
            piece_count: 1,
            piece_length: 2 * BLOCK,
            total: 2 * u64::from(BLOCK),
        },
        Bitfield::new(1),
        1,
    );
    let all = Bitfield::full(1);
    let a = p.pick(1, &all, 8, false);
    assert_eq!(a.len(), 2);
    // Nothing is free: peer 2 gets the same blocks in endgame, peer 3 none (MAX_DUP).
    let b = p.pick(2, &all, 8, false);
    assert_eq!(b, a);
    assert!(p.pick(3, &all, 8, false).is_empty());
    assert_eq!(
        p.received(2, a[0]),
        Arrival::Kept {
            complete: false,
            cancel: vec![1]
        }
    );
    assert_eq!(p.received(1, a[0]), Arrival::Duplicate);
    assert_eq!(
        p.received(1, a[1]),
        Arrival::Kept {
            complete: true,
            cancel: vec![2]
        }
    );
    assert_eq!(p.senders(0), vec![Some(2), Some(1)]);
    p.hashed(0, true);
    assert!(p.is_done());
    assert_eq!(p.received(1, a[1]), Arrival::Duplicate);
}

#[test]
fn failures_free_blocks_and_gone_peers_release_theirs() {
    let mut p = picker();
    let all = Bitfield::full(10);
    p.peer_has(&all);
    let a = p.pick(1, &all, 2, false);
    p.request_failed(1, a[0]);
    let b = p.pick(2, &all, 1, false);
    assert_eq!(b, vec![a[0]], "a failed request is free for the next peer");
    p.peer_gone(1, &all);
    let c = p.pick(3, &all, 1, false);
    assert_eq!(c, vec![a[1]]);
    // A failed hash check makes the whole piece fetchable again.
    fetch_all(&mut p, 2, &b);
    assert_eq!(
        p.received(3, c[0]),
        Arrival::Kept {
            complete: true,
            cancel: vec![]
        }
    );
    p.hashed(c[0].piece, false);
    assert!(!p.have().get(c[0].piece));
    let again = p.pick(4, &all, 2, false);
    assert_eq!(again.len(), 2);
    assert!(again.iter().all(|x| x.piece == c[0].piece));
    assert_eq!(
        p.received(9, Block { piece: 1, index: 5 }),
        Arrival::Unrequested
    );
}

#[test]
fn a_whole_download_completes_from_one_peer() {
    let mut p = Picker::new(layout(), Bitfield::new(10), 3);
    let all = Bitfield::full(10);
    p.peer_has(&all);
    let mut rounds = 0;
    while !p.is_done() {
        let b = p.pick(1, &all, 3, false);
        assert!(!b.is_empty(), "stalled with {} left", p.wanted_left());
        fetch_all(&mut p, 1, &b);
        rounds += 1;
        assert!(rounds < 100);
    }
    assert!(p.have().is_full());
}

#[test]
fn random_swarms_complete_without_over_asking() {
    for seed in 1..40u64 {
        let mut rng = Rng::new(seed);
        let count = 1 + rng.below(40) as u32;
        let l = Layout {
            piece_count: count,
            piece_length: 4 * BLOCK,
            total: u64::from(count - 1) * 4 * u64::from(BLOCK)
                + 1
                + rng.below(4 * u64::from(BLOCK)),
        };
        let mut p = Picker::new(l, Bitfield::new(count), seed);
        // Five peers with random pieces; together they have everything.
        let mut peers: Vec<Bitfield> = (0..5)
            .map(|_| {
                let mut b = Bitfield::new(count);
                for i in 0..count {
                    if rng.below(2) == 0 {
                        b.set(i);
                    }
                }
                b
            })
            .collect();
        for i in 0..count {
            peers[(i % 5) as usize].set(i);
        }
        for b in &peers {
            p.peer_has(b);
        }
        let mut outstanding: Vec<(PeerId, Block)> = Vec::new();
        for _round in 0..10_000 {
            if p.is_done() {
                break;
            }
            let peer = rng.below(5) as PeerId;
            let got = p.pick(
                peer,
                &peers[peer as usize],
                1 + rng.below(6) as usize,
                false,
            );
            for b in &got {
                assert!(p.requesters(*b).len() <= MAX_DUP);
                assert!(peers[peer as usize].get(b.piece));
                outstanding.push((peer, *b));
            }
            // Answer, fail or drop a random outstanding request.
            if !outstanding.is_empty() {
                let k = rng.below(outstanding.len() as u64) as usize;
                let (who, b) = outstanding.swap_remove(k);
                match rng.below(10) {
                    0 => p.request_failed(who, b),
                    _ => {
                        if let Arrival::Kept { complete: true, .. } = p.received(who, b) {
                            // One in five whole pieces fails its check once.
                            p.hashed(b.piece, rng.below(5) != 0);
                        }
                    }
                }
            }
        }
        assert!(p.is_done(), "seed {seed}: {} pieces left", p.wanted_left());
    }
}
