//! Tests of the download engine: a whole download from honest peers, chokes, snubs, smart
//! ban, the memory budget and unrequested blocks, all without sockets.

use super::*;
use sha1::{Digest, Sha1};

const PIECE: u32 = 4 * BLOCK;

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

fn setup(len: usize, limits: Limits) -> (Download, Vec<u8>) {
    let content = data(len);
    let layout = Layout {
        piece_count: (len as u64).div_ceil(u64::from(PIECE)) as u32,
        piece_length: PIECE,
        total: len as u64,
    };
    let hashes = content
        .chunks(PIECE as usize)
        .map(|c| Sha1::digest(c).into())
        .collect();
    let prio = vec![4; layout.piece_count as usize];
    let d = Download::new(
        layout,
        hashes,
        Bitfield::new(layout.piece_count),
        &prio,
        limits,
        7,
    );
    (d, content)
}

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, n], 6881))
}

/// Answers every action like a cooperative world: peers in `corrupt` flip a byte of each
/// block they send; hashing and writing succeed. Returns the pieces written.
fn run(d: &mut Download, content: &[u8], corrupt: &[PeerId], rounds: usize) -> Vec<u32> {
    let mut written = Vec::new();
    let mut now = 1000;
    for _ in 0..rounds {
        let actions = d.take_actions();
        if actions.is_empty() {
            now += 1000;
            d.tick(now);
            if d.take_actions_peek_empty() {
                break;
            }
            continue;
        }
        for a in actions {
            match a {
                Action::Request(peer, r) => {
                    let at = (r.index * PIECE + r.begin) as usize;
                    let mut bytes = content[at..at + r.length as usize].to_vec();
                    if corrupt.contains(&peer) {
                        bytes[0] ^= 0xff;
                    }
                    d.block(peer, r, &bytes, now);
                }
                Action::Verify { piece, data, .. } => {
                    let ok = d.piece_hash(piece) == Some(Sha1::digest(&data).into());
                    let blocks = data.chunks(BLOCK as usize).map(|c| Sha1::digest(c).into());
                    d.verified(piece, data.clone(), ok, Some(blocks.collect()));
                }
                Action::Close(peer, _) => d.peer_gone(peer),
                Action::Write { piece, .. } => {
                    written.push(piece);
                    d.written(piece, true);
                }
                _ => {}
            }
        }
    }
    written
}

impl Download {
    fn take_actions_peek_empty(&self) -> bool {
        self.out.is_empty()
    }
}

fn connect(d: &mut Download, n: u8) -> PeerId {
    let id = d.peer_added(addr(n), 0);
    let pieces = d.layout().piece_count;
    d.peer_bitfield(id, Bitfield::full(pieces));
    d.unchoked(id, 0);
    id
}

#[test]
fn downloads_everything_from_one_peer() {
    let (mut d, content) = setup(10 * PIECE as usize + 100, Limits::default());
    let p = connect(&mut d, 1);
    assert!(d
        .take_actions_peek_interest(p)
        .contains(&Action::Interested(p, true)));
    let written = run(&mut d, &content, &[], 10_000);
    assert_eq!(written.len(), 11);
    assert!(d.is_done());
    assert_eq!(d.left(), 0);
    assert_eq!(d.counters().downloaded, content.len() as u64);
}

impl Download {
    /// Puts the actions back after looking (the test's `run` consumes them).
    fn take_actions_peek_interest(&mut self, _p: PeerId) -> Vec<Action> {
        let a = self.take_actions();
        let keep: Vec<Action> = a
            .iter()
            .filter_map(|x| match x {
                Action::Request(p, r) => Some(Action::Request(*p, *r)),
                _ => None,
            })
            .collect();
        self.out = keep;
        a
    }
}

#[test]
fn a_choke_frees_requests_for_other_peers() {
    let (mut d, _) = setup(8 * PIECE as usize, Limits::default());
    let a = connect(&mut d, 1);
    let asked: Vec<BlockRef> = d
        .take_actions()
        .into_iter()
        .filter_map(|x| match x {
            Action::Request(p, r) if p == a => Some(r),
            _ => None,
        })
        .collect();
    assert!(!asked.is_empty());
    d.choked(a, &[]);
    let b = connect(&mut d, 2);
    let to_b: Vec<BlockRef> = d
        .take_actions()
        .into_iter()
        .filter_map(|x| match x {
            Action::Request(p, r) if p == b => Some(r),
            _ => None,
        })
        .collect();
    assert!(asked.iter().any(|r| to_b.contains(r)), "a's blocks go to b");
}

#[test]
fn a_silent_peer_is_snubbed_and_its_blocks_go_elsewhere() {
    let (mut d, _) = setup(10 * PIECE as usize, Limits::default());
    let a = connect(&mut d, 1);
    let owed: Vec<BlockRef> = d
        .take_actions()
        .into_iter()
        .filter_map(|x| match x {
            Action::Request(p, r) if p == a => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(owed.len(), START_QUEUE);
    d.tick(25_000);
    let after = d.take_actions();
    let cancelled = after
        .iter()
        .filter(|x| matches!(x, Action::Cancel(p, _) if *p == a))
        .count();
    assert_eq!(cancelled, START_QUEUE, "what a owed is withdrawn");
    let to_a = after
        .iter()
        .filter(|x| matches!(x, Action::Request(p, _) if *p == a))
        .count();
    assert_eq!(to_a, 1, "a snubbed peer gets one request");
    let b = d.peer_added(addr(2), 25_000);
    d.peer_bitfield(b, Bitfield::full(10));
    d.unchoked(b, 25_000);
    let to_b: Vec<BlockRef> = d
        .take_actions()
        .into_iter()
        .filter_map(|x| match x {
            Action::Request(p, r) if p == b => Some(r),
            _ => None,
        })
        .collect();
    let moved = owed.iter().filter(|r| to_b.contains(r)).count();
    assert!(moved >= START_QUEUE - 1, "b gets what a owed ({moved})");
}

#[test]
fn smart_ban_names_only_the_peer_that_sent_bad_blocks() {
    let (mut d, content) = setup(6 * PIECE as usize, Limits::default());
    let honest = connect(&mut d, 1);
    let liar = connect(&mut d, 2);
    let written = run(&mut d, &content, &[liar], 100_000);
    assert_eq!(written.len(), 6, "completes despite the liar");
    assert!(d.is_done());
    assert!(d.is_banned(addr(2)));
    assert!(!d.is_banned(addr(1)));
    assert_eq!(d.banned(), &[addr(2)]);
    assert!(d.counters().failed_pieces >= 1);
    let _ = honest;
}

#[test]
fn new_pieces_wait_while_the_memory_budget_is_spent() {
    let limits = Limits {
        max_buffered: u64::from(PIECE),
        ..Limits::default()
    };
    let (mut d, _) = setup(20 * PIECE as usize, limits);
    let a = connect(&mut d, 1);
    let pieces: HashSet<u32> = d
        .take_actions()
        .into_iter()
        .filter_map(|x| match x {
            Action::Request(p, r) if p == a => Some(r.index),
            _ => None,
        })
        .collect();
    assert_eq!(pieces.len(), 2, "two pieces at most in memory: {pieces:?}");
}

#[test]
fn a_peer_sending_unrequested_blocks_is_dropped_past_the_cap() {
    let (mut d, _) = setup(2 * PIECE as usize, Limits::default());
    let a = d.peer_added(addr(1), 0);
    let r = BlockRef {
        index: 1,
        begin: 0,
        length: BLOCK,
    };
    for _ in 0..=Limits::default().max_unrequested {
        d.block(a, r, &vec![0; BLOCK as usize], 0);
    }
    assert!(d
        .take_actions()
        .iter()
        .any(|x| matches!(x, Action::Close(p, _) if *p == a)));
    assert!(d.counters().wasted > 0);
    assert_eq!(d.counters().downloaded, 0);
}

#[test]
fn pieces_count_only_once_written() {
    let (mut d, content) = setup(PIECE as usize, Limits::default());
    let a = connect(&mut d, 1);
    for x in d.take_actions() {
        if let Action::Request(_, r) = x {
            let at = r.begin as usize;
            d.block(a, r, &content[at..at + r.length as usize], 0);
        }
    }
    let verify = d
        .take_actions()
        .into_iter()
        .find_map(|x| match x {
            Action::Verify { piece, data, .. } => Some((piece, data)),
            _ => None,
        })
        .expect("a verify");
    d.verified(verify.0, verify.1, true, None);
    assert!(!d.have().get(0), "verified but not written");
    assert!(!d.is_done());
    d.written(0, true);
    assert!(d.have().get(0));
    let acts = d.take_actions();
    assert!(acts.contains(&Action::Have(0)));
    assert!(acts.contains(&Action::Complete));
}

#[test]
fn a_webseed_piece_arriving_whole_is_taken_without_a_copy_or_given_back() {
    let (mut d, content) = setup(3 * PIECE as usize, Limits::default());
    let w = d.webseed_added(0);
    let asked: Vec<BlockRef> = d
        .take_actions()
        .into_iter()
        .filter_map(|a| match a {
            Action::Request(p, r) if p == w => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(asked.len(), 12, "a webseed is asked for whole pieces");
    let piece = |i: u32| content[(i * PIECE) as usize..((i + 1) * PIECE) as usize].to_vec();
    // Piece 0 whole: taken as it is, and it goes to be hashed at once.
    let whole = piece(0);
    let at = whole.as_ptr();
    assert!(d.piece(w, 0, whole, 1).is_ok());
    let verify = d.take_actions().into_iter().find_map(|a| match a {
        Action::Verify { piece, data, .. } => Some((piece, data)),
        _ => None,
    });
    let (p, data) = verify.expect("piece 0 is hashed");
    assert_eq!((p, data.as_ptr()), (0, at), "the same buffer, not a copy");
    // Piece 1 after one of its blocks came on its own: given back, for block-by-block.
    let first = asked.iter().find(|r| r.index == 1).copied().unwrap();
    d.block(w, first, &piece(1)[..first.length as usize], 2);
    assert!(d.piece(w, 1, piece(1), 3).is_err());
    // A buffer of the wrong length, or a piece never asked for, is given back too.
    assert!(d.piece(w, 2, vec![0; 5], 4).is_err());
    assert!(d.piece(w, 9, piece(0), 4).is_err());
    assert_eq!(d.counters().downloaded, u64::from(PIECE + first.length));
}

/// A fetch-through download: nothing wanted until a reader asks.
fn stream_setup(pieces: u32) -> (Download, Vec<u8>) {
    let len = (pieces * PIECE) as usize;
    let content = data(len);
    let layout = Layout {
        piece_count: pieces,
        piece_length: PIECE,
        total: len as u64,
    };
    let hashes = content
        .chunks(PIECE as usize)
        .map(|c| Sha1::digest(c).into())
        .collect();
    let prio = vec![0; pieces as usize];
    let d = Download::new(
        layout,
        hashes,
        Bitfield::new(pieces),
        &prio,
        Limits::default(),
        3,
    );
    (d, content)
}

#[test]
fn every_readers_next_piece_goes_before_any_readahead() {
    let (mut d, content) = stream_setup(40);
    assert!(d.want(1, &[5, 6, 7, 8], 1000));
    // Another reader asks much later: its next piece still comes before 6, 7, 8.
    assert!(d.want(2, &[30, 31, 32], 5_000_000));
    assert_eq!(d.picker_mut().by_deadline(), vec![5, 30, 6, 7, 8, 31, 32]);
    // The first reader moves on: its new next piece goes first again, its readahead last.
    assert!(d.want(1, &[6, 7, 8, 9], 6_000_000));
    assert_eq!(d.picker_mut().by_deadline(), vec![30, 6, 31, 32, 7, 8, 9]);
    connect(&mut d, 1);
    let mut written = run(&mut d, &content, &[], 10_000);
    written.sort_unstable();
    assert_eq!(written, vec![6, 7, 8, 9, 30, 31, 32]);
}

#[test]
fn readers_fetch_only_what_they_want_and_release_it_on_close() {
    let (mut d, content) = stream_setup(20);
    connect(&mut d, 1);
    assert!(
        run(&mut d, &content, &[], 100).is_empty(),
        "nothing wanted yet"
    );
    assert!(d.want(7, &[5, 6], 1000));
    let mut written = run(&mut d, &content, &[], 10_000);
    written.sort_unstable();
    assert_eq!(written, vec![5, 6]);
    assert_eq!(d.reader_counts(), (1, 2));
    assert!(d.is_read(5) && !d.is_read(4));
    // A second reader far away; the first one closes: its pieces are released at once.
    assert!(d.want(8, &[15, 16], 2000));
    d.unwant(7);
    assert_eq!(d.reader_counts(), (1, 2));
    assert!(!d.is_read(5) && d.is_read(15));
    d.unwant(8);
    assert_eq!(d.reader_counts(), (0, 0));
    // Whatever was requested and started is finished, nothing else.
    let more = run(&mut d, &content, &[], 10_000);
    assert!(more.iter().all(|p| [15, 16].contains(p)), "{more:?}");
    assert_eq!(d.left(), 0);
}

#[test]
fn an_evicted_piece_is_fetched_again_when_read() {
    let (mut d, content) = stream_setup(8);
    connect(&mut d, 1);
    d.want(1, &[2, 3], 1000);
    run(&mut d, &content, &[], 10_000);
    assert!(d.have().get(2) && d.have().get(3));
    // A piece a reader wants is never evicted.
    assert!(!d.evict(2));
    d.want(1, &[4], 2000);
    run(&mut d, &content, &[], 10_000);
    assert!(d.evict(2), "no reader wants 2 now");
    assert!(!d.have().get(2) && !d.evict(2));
    // Until its bytes are released, a reader's wish does not fetch it.
    d.want(2, &[2], 3000);
    assert!(run(&mut d, &content, &[], 1000).is_empty());
    d.evicted(2);
    assert_eq!(run(&mut d, &content, &[], 10_000), vec![2]);
    assert!(d.have().get(2));
    // Evicted with no reader: stays missing.
    d.unwant(2);
    d.unwant(1);
    assert!(d.evict(3));
    d.evicted(3);
    assert!(run(&mut d, &content, &[], 1000).is_empty());
    assert!(!d.have().get(3) && d.left() == 0);
}

#[test]
fn want_all_fetches_the_rest_and_completes() {
    let (mut d, content) = stream_setup(6);
    connect(&mut d, 1);
    d.want(1, &[0], 1000);
    run(&mut d, &content, &[], 10_000);
    d.want_all();
    assert_eq!(d.left(), 5 * u64::from(PIECE));
    let w = run(&mut d, &content, &[], 10_000);
    assert_eq!(w.len(), 5);
    assert!(d.is_done() && d.have().is_full());
    // A pinned piece evicted anyway is fetched again (its base priority is 1).
    d.unwant(1);
    assert!(d.evict(0));
    d.evicted(0);
    assert_eq!(run(&mut d, &content, &[], 10_000), vec![0]);
}

/// Sets a peer's measured rate as if ticks had measured it.
fn set_rate(d: &mut Download, id: PeerId, rate: u64) {
    let p = d.peers.get_mut(&id).expect("a peer");
    p.rate = rate;
    p.peak = rate;
}

/// Empties a peer's queue as if its requests had failed (their blocks are free again).
fn empty_queue(d: &mut Download, id: PeerId) {
    let freed: Vec<Block> = d
        .peers
        .get_mut(&id)
        .unwrap()
        .asked
        .drain(..)
        .map(|x| x.0)
        .collect();
    for blk in freed {
        d.picker.request_failed(id, blk);
    }
}

/// The blocks asked of `peer` in `actions`.
fn asked_of(actions: &[Action], peer: PeerId) -> Vec<BlockRef> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Request(p, r) if *p == peer => Some(*r),
            _ => None,
        })
        .collect()
}

#[test]
fn a_deadline_piece_goes_to_the_peer_with_the_shortest_expected_queue_time() {
    let (mut d, _) = stream_setup(100);
    d.want_all();
    let fast = connect(&mut d, 1);
    let loaded = asked_of(&d.take_actions(), fast).len();
    assert!(
        loaded >= START_QUEUE,
        "the fast peer has {loaded} blocks in flight"
    );
    let slow = connect(&mut d, 2);
    set_rate(&mut d, slow, 20_000);
    set_rate(&mut d, fast, 1_000_000);
    d.take_actions();
    // Even with its queue full (16 blocks, 0.3 s at 1 MB/s) the fast peer delivers sooner
    // than the idle slow one (0.8 s for one block at 20 kB/s): the reader's piece is its.
    let critical = (0..100).find(|&p| !d.picker.started(p)).unwrap();
    assert!(d.want(1, &[critical], 1000));
    let actions = d.take_actions();
    let to_fast: Vec<u32> = asked_of(&actions, fast)
        .iter()
        .filter(|r| r.index == critical)
        .map(|r| r.begin / BLOCK)
        .collect();
    assert_eq!(to_fast, vec![0, 1, 2, 3], "{actions:?}");
    assert!(asked_of(&actions, slow).iter().all(|r| r.index != critical));
    // The slow peer's own top-up (after each of its blocks), with room in its queue, leaves
    // the critical pieces alone (the fast one is far from its cap).
    let next = (0..100).find(|&p| !d.picker.started(p)).unwrap();
    assert!(d.want(1, &[critical, next], 1000));
    d.take_actions();
    empty_queue(&mut d, slow);
    d.fill(slow);
    assert!(asked_of(&d.take_actions(), slow)
        .iter()
        .all(|r| r.index != critical && r.index != next));

    // Two peers of comparable speed: the one with the shorter queue wins even though it is
    // the slower one (100 kB/s with 17 blocks queued: 2.8 s; 60 kB/s with none: 0.27 s a
    // block, 1.1 s for all four).
    let (mut d, _) = stream_setup(100);
    d.want_all();
    let a = connect(&mut d, 1);
    d.take_actions();
    let b = connect(&mut d, 2);
    d.take_actions();
    set_rate(&mut d, a, 100_000);
    set_rate(&mut d, b, 60_000);
    let queued_b = d.peers[&b].asked.len();
    assert_eq!(queued_b, START_QUEUE, "both start with 16 blocks");
    empty_queue(&mut d, b);
    let critical = (0..100).find(|&p| !d.picker.started(p)).unwrap();
    assert!(d.want(1, &[critical], 1000));
    let actions = d.take_actions();
    let to_b: Vec<u32> = asked_of(&actions, b)
        .iter()
        .filter(|r| r.index == critical)
        .map(|r| r.begin / BLOCK)
        .collect();
    assert_eq!(to_b, vec![0, 1, 2, 3], "{actions:?}");
    assert!(asked_of(&actions, a).iter().all(|r| r.index != critical));
}

#[test]
fn a_slow_peers_blocks_of_a_critical_piece_are_taken_over_and_cancelled_on_arrival() {
    let (mut d, content) = stream_setup(100);
    d.want_all();
    assert!(d.want(1, &[4], 1000));
    let slow = connect(&mut d, 2);
    let first = asked_of(&d.take_actions(), slow);
    let held: Vec<BlockRef> = first.iter().filter(|r| r.index == 4).copied().collect();
    assert_eq!(
        held.len(),
        4,
        "the only peer holds the critical piece: {first:?}"
    );
    let normal: Vec<BlockRef> = first.iter().filter(|r| r.index != 4).copied().collect();
    assert!(!normal.is_empty());
    let fast = connect(&mut d, 1);
    let joined = asked_of(&d.take_actions(), fast);
    assert!(
        joined.iter().all(|r| r.index != 4),
        "rates unknown: nobody is slow yet, no duplicates: {joined:?}"
    );
    // The rates become known: 20 kB/s against 1 MB/s.
    set_rate(&mut d, slow, 20_000);
    set_rate(&mut d, fast, 1_000_000);
    d.fill_all();
    let actions = d.take_actions();
    let mut taken = asked_of(&actions, fast);
    taken.retain(|r| r.index == 4);
    assert_eq!(
        taken, held,
        "the fast peer asks for the slow one's critical blocks"
    );
    assert_eq!(d.counters().taken_over, 4);
    let fast_all = asked_of(&actions, fast);
    assert!(
        fast_all.iter().all(|r| r.index == 4 || !normal.contains(r)),
        "only critical blocks are doubled, not the slow peer's other pieces"
    );
    // The fast copy arrives first: the slow peer's request is cancelled; where the slow copy
    // wins, the fast one's is.
    let bytes = |r: &BlockRef| {
        let at = (r.index * PIECE + r.begin) as usize;
        content[at..at + r.length as usize].to_vec()
    };
    d.block(fast, held[0], &bytes(&held[0]), 2000);
    assert!(d.take_actions().contains(&Action::Cancel(slow, held[0])));
    d.block(slow, held[1], &bytes(&held[1]), 2000);
    assert!(d.take_actions().contains(&Action::Cancel(fast, held[1])));
    // A late duplicate is wasted, not kept twice.
    d.block(slow, held[0], &bytes(&held[0]), 2000);
    assert_eq!(d.counters().wasted, u64::from(BLOCK));
}

#[test]
fn a_late_or_snubbed_holder_loses_its_critical_blocks_to_a_peer_of_any_speed() {
    let (mut d, _) = stream_setup(100);
    d.want_all();
    assert!(d.want(1, &[4], 1000));
    let first = connect(&mut d, 2);
    assert_eq!(
        asked_of(&d.take_actions(), first)
            .iter()
            .filter(|r| r.index == 4)
            .count(),
        4
    );
    let second = connect(&mut d, 1);
    d.take_actions();
    set_rate(&mut d, first, 100_000);
    set_rate(&mut d, second, 100_000);
    d.fill_all();
    assert!(
        asked_of(&d.take_actions(), second)
            .iter()
            .all(|r| r.index != 4),
        "equal rates, nothing late: no duplicates"
    );
    // Nothing from the first peer for LATE_MS: its critical blocks are asked of the second.
    d.last_tick_ms = LATE_MS + 1;
    d.fill_all();
    let dup = asked_of(&d.take_actions(), second);
    assert_eq!(dup.iter().filter(|r| r.index == 4).count(), 4, "{dup:?}");
}
