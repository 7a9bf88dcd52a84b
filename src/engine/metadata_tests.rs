//! Tests of the metadata download: sizes (refused, majority), spreading and timeouts,
//! rejects, peers leaving, bad pieces, and a lying peer found and reported.

use super::*;

/// A 40,000-byte "info dict" (3 pieces, the last 7,232 bytes) and its hash.
fn info() -> (Vec<u8>, [u8; 20]) {
    let data: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let h = sha1(&data);
    (data, h)
}

fn piece(data: &[u8], i: u32) -> &[u8] {
    let start = i as usize * PIECE as usize;
    &data[start..(start + PIECE as usize).min(data.len())]
}

const SIZE: u64 = 40_000;

#[test]
fn refuses_absurd_sizes_and_asks_nothing_without_one() {
    let (_, ih) = info();
    let mut m = MetadataFetch::new(ih);
    assert!(!m.peer_size(1, 0));
    assert!(!m.peer_size(1, MAX_METADATA + 1));
    assert_eq!(m.next_request(1, 0), None);
    assert!(m.peer_size(1, MAX_METADATA));
    assert_eq!(m.size(), Some(MAX_METADATA));
    assert_eq!(m.progress(), (0, 1024));
    for p in 0..MAX_PEERS as u64 {
        m.peer_size(100 + p, SIZE);
    }
    assert!(!m.peer_size(5000, SIZE), "peers are capped");
}

#[test]
fn spreads_pieces_over_peers_and_completes() {
    let (data, ih) = info();
    let mut m = MetadataFetch::new(ih);
    assert!(m.peer_size(1, SIZE) && m.peer_size(2, SIZE));
    assert_eq!(m.next_request(1, 0), Some(0));
    assert_eq!(m.next_request(1, 0), Some(1));
    assert_eq!(
        m.next_request(1, 0),
        None,
        "its share of 3 pieces over 2 peers"
    );
    assert_eq!(m.next_request(2, 0), Some(2));
    assert_eq!(m.next_request(2, 0), None, "everything is asked");
    assert_eq!(m.on_data(1, 0, SIZE, piece(&data, 0)), None);
    assert_eq!(m.on_data(2, 2, SIZE, piece(&data, 2)), None);
    assert_eq!(m.progress(), (2, 3));
    assert_eq!(
        m.on_data(1, 1, SIZE, piece(&data, 1)),
        Some(Ok(data.clone()))
    );
    assert!(m.is_done());
    assert_eq!(m.next_request(2, 1), None);
    assert_eq!(m.on_data(1, 1, SIZE, piece(&data, 1)), None);
    assert!(m.suspects().is_empty());
}

#[test]
fn a_lone_peer_gets_a_few_requests_at_a_time() {
    let big: Vec<u8> = vec![1; 100_000];
    let mut m = MetadataFetch::new(sha1(&big));
    m.peer_size(1, big.len() as u64);
    let asked: Vec<_> = (0..10).filter_map(|_| m.next_request(1, 0)).collect();
    assert_eq!(asked, vec![0, 1, 2]);
    assert_eq!(m.on_data(1, 0, 100_000, piece(&big, 0)), None);
    assert_eq!(m.next_request(1, 1), Some(3));
}

#[test]
fn the_majority_size_is_fetched() {
    let (data, ih) = info();
    let mut m = MetadataFetch::new(ih);
    // A liar first: its size is fetched until two peers say otherwise.
    m.peer_size(9, 50_000);
    assert_eq!(m.next_request(9, 0), Some(0));
    m.peer_size(1, SIZE);
    assert_eq!(m.size(), Some(50_000), "a tie keeps what is in progress");
    m.peer_size(2, SIZE);
    assert_eq!(m.size(), Some(SIZE));
    assert_eq!(
        m.next_request(9, 0),
        None,
        "its size is not the one fetched"
    );
    assert_eq!(
        m.on_data(9, 0, 50_000, piece(&data, 0)),
        None,
        "wrong total"
    );
    for p in 0..3 {
        let peer = [1, 2, 1][p as usize];
        assert_eq!(m.next_request(peer, 0), Some(p));
    }
    m.on_data(1, 0, SIZE, piece(&data, 0));
    m.on_data(2, 1, SIZE, piece(&data, 1));
    assert_eq!(m.on_data(1, 2, SIZE, piece(&data, 2)), Some(Ok(data)));
}

#[test]
fn timed_out_pieces_go_to_another_peer_and_late_answers_count() {
    let (data, ih) = info();
    let mut m = MetadataFetch::new(ih);
    m.peer_size(1, SIZE);
    m.peer_size(2, SIZE);
    m.peer_size(3, SIZE);
    assert_eq!(m.next_request(1, 0), Some(0));
    assert_eq!(m.next_request(2, 0), Some(1));
    assert_eq!(m.next_request(3, 0), Some(2));
    assert_eq!(m.on_data(2, 1, SIZE, piece(&data, 1)), None);
    assert_eq!(m.on_data(3, 2, SIZE, piece(&data, 2)), None);
    assert_eq!(m.next_request(2, 9_999), None, "piece 0 is not late yet");
    assert_eq!(m.next_request(2, 10_000), Some(0), "re-asked elsewhere");
    assert_eq!(m.next_request(3, 10_000), None, "asked again already");
    // The first peer answers after all.
    assert_eq!(m.on_data(1, 0, SIZE, piece(&data, 0)), Some(Ok(data)));
}

#[test]
fn a_rejected_piece_is_asked_of_others() {
    let (data, ih) = info();
    let mut m = MetadataFetch::new(ih);
    m.peer_size(1, SIZE);
    assert_eq!(m.next_request(1, 0), Some(0));
    m.on_reject(1, 0);
    assert_eq!(m.next_request(1, 1), Some(1), "not piece 0 again");
    assert_eq!(m.next_request(1, 1), Some(2));
    assert_eq!(m.next_request(1, 1), None);
    m.peer_size(2, SIZE);
    assert_eq!(m.next_request(2, 2), Some(0));
    m.on_reject(2, 0);
    m.on_reject(2, 1); // not asked of it: ignored
    assert_eq!(m.next_request(1, REJECT_RETRY_MS), Some(0), "retried later");
    m.on_data(1, 0, SIZE, piece(&data, 0));
    m.on_data(1, 1, SIZE, piece(&data, 1));
    assert!(matches!(
        m.on_data(1, 2, SIZE, piece(&data, 2)),
        Some(Ok(_))
    ));
}

#[test]
fn a_peer_leaving_frees_its_pieces() {
    let (_, ih) = info();
    let mut m = MetadataFetch::new(ih);
    m.peer_size(1, SIZE);
    m.peer_size(2, SIZE);
    assert_eq!(m.next_request(1, 0), Some(0));
    assert_eq!(m.next_request(1, 0), Some(1));
    assert_eq!(m.next_request(2, 0), Some(2));
    m.peer_gone(1);
    assert_eq!(m.next_request(1, 0), None, "gone");
    assert_eq!(m.next_request(2, 0), Some(0));
    assert_eq!(m.next_request(2, 0), Some(1));
}

#[test]
fn pieces_nobody_asked_for_or_of_the_wrong_length_are_ignored() {
    let (data, ih) = info();
    let mut m = MetadataFetch::new(ih);
    m.peer_size(1, SIZE);
    m.peer_size(2, SIZE);
    assert_eq!(m.on_data(1, 0, SIZE, piece(&data, 0)), None);
    assert_eq!(m.progress(), (0, 3), "not asked");
    assert_eq!(m.next_request(1, 0), Some(0));
    assert_eq!(m.on_data(2, 0, SIZE, piece(&data, 0)), None);
    assert_eq!(m.on_data(1, 0, SIZE, &data[..100]), None);
    assert_eq!(m.on_data(1, 7, SIZE, &data[..100]), None);
    assert_eq!(m.progress(), (0, 3));
    assert_eq!(m.next_request(2, 0), Some(0), "the short answer freed it");
}

/// Fetches a round: every peer asks what it may, then answers; `liar` corrupts its pieces.
fn round(m: &mut MetadataFetch, data: &[u8], peers: &[u64], liar: u64, now: u64) -> Option<bool> {
    for _ in 0..10 {
        // Every peer asks first, then the answers come in.
        let mut asked = Vec::new();
        for &p in peers {
            while let Some(i) = m.next_request(p, now) {
                asked.push((p, i));
            }
        }
        for (p, i) in asked {
            let mut bytes = piece(data, i).to_vec();
            if p == liar {
                bytes[0] ^= 1;
            }
            if let Some(r) = m.on_data(p, i, SIZE, &bytes) {
                return Some(r.is_ok());
            }
        }
    }
    None
}

#[test]
fn a_bad_check_starts_over_from_one_peer_and_finds_the_liar() {
    let (data, ih) = info();
    // The liar named first or second: either way only it ends up suspected.
    for peers in [[1u64, 2], [2, 1]] {
        let mut m = MetadataFetch::new(ih);
        for p in peers {
            m.peer_size(p, SIZE);
        }
        assert_eq!(round(&mut m, &data, &peers, 2, 0), Some(false));
        assert_eq!(m.progress(), (0, 3), "started over");
        let mut now = 0;
        let mut ok = false;
        for _ in 0..3 {
            now += 1;
            if round(&mut m, &data, &peers, 2, now) == Some(true) {
                ok = true;
                break;
            }
        }
        assert!(ok, "{peers:?}: never verified");
        assert_eq!(m.suspects(), vec![2], "{peers:?}");
    }
}

#[test]
fn a_peer_failing_twice_is_a_suspect_and_not_asked_again() {
    let (data, _) = info();
    // Nobody can produce this hash: every round fails.
    let mut m = MetadataFetch::new([0xaa; 20]);
    m.peer_size(1, SIZE);
    assert_eq!(round(&mut m, &data, &[1], 0, 0), Some(false));
    assert!(m.suspects().is_empty());
    assert_eq!(round(&mut m, &data, &[1], 0, 1), Some(false));
    assert_eq!(m.suspects(), vec![1]);
    assert_eq!(m.next_request(1, 2), None);
}

#[test]
fn a_stalled_single_source_hands_over() {
    let (data, _) = info();
    let mut m = MetadataFetch::new(sha1(&data));
    m.peer_size(1, SIZE);
    m.peer_size(2, SIZE);
    // Fail one round (peer 1 lies), so rounds are single-source.
    assert_eq!(round(&mut m, &data, &[1, 2], 1, 0), Some(false));
    let first = [1, 2]
        .into_iter()
        .find(|&p| m.next_request(p, 100).is_some())
        .unwrap();
    let other = 3 - first;
    assert_eq!(m.next_request(other, 100), None, "one source at a time");
    // The source goes quiet: after the timeout the other peer takes over.
    assert!(m.next_request(other, 100 + REQUEST_TIMEOUT_MS).is_some());
}
