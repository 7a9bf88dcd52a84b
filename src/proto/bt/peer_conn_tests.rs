//! Tests of the peer connection state machine: seeding (greetings, requests, chokes,
//! metadata, hostile input) and leeching (bitfields, interest, requests, blocks, chokes,
//! rejects), asking for metadata, and magnet connections (pieces kept until the shape is
//! known), each fed the bytes a peer would send.

use super::*;
use crate::proto::bt::peer_ext::{self, MetadataMsg, OurHandshake};
use crate::proto::bt::peer_wire::parse_frame;

fn settings() -> Arc<Settings> {
    Arc::new(Settings {
        peer_id: *b"-TG0001-aaaaaaaaaaaa",
        client: "test",
        max_requests: 4,
        listen_port: Some(6881),
        pex: true,
    })
}

fn shape() -> Arc<Shape> {
    // 3 pieces of 32 KiB, the last one 10 bytes.
    Arc::new(Shape::new(
        [1; 20],
        2 * 32768 + 10,
        32768,
        Arc::from(vec![b'x'; 20000]),
    ))
}

fn handshake(fast: bool, ext: bool) -> Vec<u8> {
    let mut r = [0u8; 8];
    if fast {
        reserved::set(&mut r, reserved::FAST);
    }
    if ext {
        reserved::set(&mut r, reserved::EXTENDED);
    }
    let mut out = Vec::new();
    Handshake {
        reserved: r,
        info_hash: [1; 20],
        peer_id: [2; 20],
    }
    .write(&mut out);
    out
}

fn msg(m: Message<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    peer_wire::write(&m, &mut v);
    v
}

fn frames(bytes: &[u8]) -> Vec<Message<'_>> {
    let lim = FrameLimits::for_torrent(3, 20000);
    let mut at = 0;
    let mut out = Vec::new();
    while let Some((m, n)) = parse_frame(&bytes[at..], &lim).unwrap() {
        out.push(m);
        at += n;
    }
    assert_eq!(at, bytes.len());
    out
}

/// An established incoming connection and what it said after the handshake.
fn established(fast: bool, ext: bool) -> (PeerConn, Vec<u8>) {
    let mut c = PeerConn::incoming(settings(), Some("127.0.0.1".parse().unwrap()));
    let mut ev = Vec::new();
    c.receive(&handshake(fast, ext), 0, &mut ev);
    assert_eq!(ev, vec![Event::Lookup([1; 20])]);
    ev.clear();
    c.attach(shape(), 0, &mut ev);
    assert_eq!(ev, vec![Event::Established]);
    let out = c.take_output();
    assert_eq!(
        &out[..HANDSHAKE_LEN - 20],
        &handshake(true, true)[..HANDSHAKE_LEN - 20]
    );
    (c, out[HANDSHAKE_LEN..].to_vec())
}

#[test]
fn greets_with_bitfield_or_have_all_and_extension_handshake() {
    let (_, out) = established(false, false);
    assert_eq!(frames(&out), vec![Message::Bitfield(&[0xe0])]);
    let (c, out) = established(true, true);
    let f = frames(&out);
    assert_eq!(f[0], Message::HaveAll);
    let Message::Extended { id: 0, payload } = f[1] else {
        panic!("{f:?}")
    };
    let h = ExtHandshake::parse(payload).unwrap();
    assert_eq!(h.metadata_size, Some(20000));
    assert_eq!(h.reqq, Some(4));
    assert_eq!(c.peer().peer_id, [2; 20]);
}

#[test]
fn serves_requests_only_when_unchoked_and_within_reqq() {
    let (mut c, _) = established(true, false);
    let mut ev = Vec::new();
    let b = BlockRef {
        index: 2,
        begin: 0,
        length: 10,
    };
    c.receive(&msg(Message::Interested), 1, &mut ev);
    assert_eq!(ev, vec![Event::Interested(true)]);
    ev.clear();
    c.receive(&msg(Message::Request(b)), 1, &mut ev);
    assert_eq!(frames(&c.take_output()), vec![Message::Reject(b)], "choked");
    c.unchoke();
    assert_eq!(frames(&c.take_output()), vec![Message::Unchoke]);
    for begin in 0..6 {
        let b = BlockRef {
            index: 0,
            begin: begin * 16,
            length: 16,
        };
        c.receive(&msg(Message::Request(b)), 2, &mut ev);
    }
    assert_eq!(ev, vec![Event::Requests]);
    assert_eq!(c.requests(), 4);
    assert_eq!(frames(&c.take_output()).len(), 2, "two over reqq rejected");
    let first = c.next_request().unwrap();
    assert_eq!(first.begin, 0);
    c.served();
    // A cancel of a queued request rejects it (fast extension).
    let second = BlockRef {
        index: 0,
        begin: 16,
        length: 16,
    };
    c.receive(&msg(Message::Cancel(second)), 3, &mut ev);
    assert_eq!(frames(&c.take_output()), vec![Message::Reject(second)]);
    c.choke();
    let out = c.take_output();
    assert_eq!(frames(&out).len(), 3, "choke plus two rejects");
    assert_eq!(c.requests(), 0);
}

#[test]
fn a_lost_piece_is_refused_by_reject_or_by_choke_never_left_hanging() {
    let block = |index, begin| BlockRef {
        index,
        begin,
        length: 16,
    };
    for fast in [true, false] {
        let (mut c, _) = established(fast, false);
        c.set_ours(vec![0xe0]);
        let mut ev = Vec::new();
        c.receive(&msg(Message::Interested), 1, &mut ev);
        c.unchoke();
        c.take_output();
        c.receive(&msg(Message::Request(block(1, 0))), 2, &mut ev);
        c.receive(&msg(Message::Request(block(0, 0))), 2, &mut ev);
        assert_eq!(c.requests(), 2);
        // The cache evicts piece 1 while its request waits in the queue.
        c.lost(1);
        let out = c.take_output();
        if fast {
            assert_eq!(frames(&out), vec![Message::Reject(block(1, 0))]);
            assert_eq!(c.requests(), 1, "the other piece's request stays");
            // A later request for it is rejected at once, never queued.
            c.receive(&msg(Message::Request(block(1, 16))), 3, &mut ev);
            assert_eq!(
                frames(&c.take_output()),
                vec![Message::Reject(block(1, 16))]
            );
            assert_eq!(c.requests(), 1);
        } else {
            // No reject without BEP-6: a choke drops all its requests, as BEP-3 says.
            assert_eq!(frames(&out), vec![Message::Choke]);
            assert!(c.is_choking());
            assert_eq!(c.requests(), 0);
            c.unchoke();
            c.take_output();
            c.receive(&msg(Message::Request(block(1, 16))), 3, &mut ev);
            assert_eq!(frames(&c.take_output()), vec![Message::Choke]);
            assert_eq!(c.requests(), 0, "never queued, never read");
        }
    }
}

#[test]
fn out_of_range_request_closes() {
    for b in [
        BlockRef {
            index: 3,
            begin: 0,
            length: 1,
        },
        BlockRef {
            index: 2,
            begin: 0,
            length: 11,
        },
        BlockRef {
            index: 0,
            begin: 0,
            length: 0,
        },
        BlockRef {
            index: 0,
            begin: u32::MAX,
            length: 16,
        },
    ] {
        let (mut c, _) = established(false, false);
        let mut ev = Vec::new();
        c.receive(&msg(Message::Request(b)), 0, &mut ev);
        assert!(matches!(ev.last(), Some(Event::Close(_))), "{b:?}");
        assert!(c.is_closed());
    }
}

#[test]
fn hostile_input_closes() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (msg(Message::Have(3)), "have"),
        (msg(Message::Bitfield(&[0x01])), "spare"),
        (msg(Message::HaveAll), "seed"),
        (vec![0xff; 8], "limit"),
        ([0, 0, 0, 2, 4, 0].to_vec(), "cannot be"),
        (vec![0; 4 * (CHATTER_LIMIT as usize + 1)], "flood"),
    ];
    for (bytes, why) in cases {
        let (mut c, _) = established(true, true);
        let mut ev = Vec::new();
        c.receive(&bytes, 0, &mut ev);
        match ev.last() {
            Some(Event::Close(r)) => assert!(r.contains(why), "{why}: {r}"),
            other => panic!("{why}: {other:?}"),
        }
    }
    let mut c = PeerConn::incoming(settings(), None);
    let mut ev = Vec::new();
    c.receive(b"GET / HTTP/1.1\r\n", 0, &mut ev);
    assert!(matches!(&ev[..], [Event::Close(_)]));
}

#[test]
fn requests_while_choked_are_tolerated_up_to_a_point() {
    let (mut c, _) = established(false, false);
    let mut ev = Vec::new();
    let b = msg(Message::Request(BlockRef {
        index: 0,
        begin: 0,
        length: 16,
    }));
    c.receive(&b.repeat(68), 0, &mut ev);
    assert!(ev.is_empty(), "a burst after a choke is a race");
    c.receive(&b, 0, &mut ev);
    assert!(matches!(ev.last(), Some(Event::Close(_))));
}

#[test]
fn serves_metadata_pieces() {
    let (mut c, _) = established(true, true);
    let mut ev = Vec::new();
    let hs = OurHandshake {
        client: "x",
        reqq: 10,
        port: None,
        metadata_size: None,
        yourip: None,
        pex: false,
    }
    .encode();
    c.receive(
        &msg(Message::Extended {
            id: 0,
            payload: &hs,
        }),
        0,
        &mut ev,
    );
    for piece in [0u32, 1, 2] {
        let mut req = Vec::new();
        MetadataMsg::Request { piece }.write(&mut req);
        c.receive(
            &msg(Message::Extended {
                id: peer_ext::OUR_UT_METADATA,
                payload: &req,
            }),
            0,
            &mut ev,
        );
        let out = c.take_output();
        let f = frames(&out);
        let Message::Extended { id, payload } = f[0] else {
            panic!()
        };
        assert_eq!(id, peer_ext::OUR_UT_METADATA);
        match (piece, MetadataMsg::parse(payload).unwrap()) {
            (
                0,
                MetadataMsg::Data {
                    data, total_size, ..
                },
            ) => {
                assert_eq!((data.len(), total_size), (16384, 20000))
            }
            (1, MetadataMsg::Data { data, .. }) => assert_eq!(data.len(), 20000 - 16384),
            (2, MetadataMsg::Reject { piece: 2 }) => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(!c.is_closed());
}

#[test]
fn metadata_requests_cannot_queue_without_bound() {
    let (mut c, _) = established(true, true);
    let mut ev = Vec::new();
    let hs = OurHandshake {
        client: "x",
        reqq: 10,
        port: None,
        metadata_size: None,
        yourip: None,
        pex: false,
    }
    .encode();
    c.receive(
        &msg(Message::Extended {
            id: 0,
            payload: &hs,
        }),
        0,
        &mut ev,
    );
    let mut req = Vec::new();
    MetadataMsg::Request { piece: 0 }.write(&mut req);
    let one = msg(Message::Extended {
        id: peer_ext::OUR_UT_METADATA,
        payload: &req,
    });
    // Never taking the output: the 17th 16 KiB answer would pass the cap.
    c.receive(&one.repeat(100), 0, &mut ev);
    assert!(matches!(ev.last(), Some(Event::Close(r)) if r.contains("does not read")));
    assert!(c.take_output().len() <= MAX_UNSENT + 17_000);
}

#[test]
fn outgoing_checks_the_answer() {
    let mut c = PeerConn::outgoing(settings(), None, shape());
    assert_eq!(c.take_output().len(), HANDSHAKE_LEN);
    let mut ev = Vec::new();
    let mut other = handshake(false, false);
    other[28] = 9;
    c.receive(&other, 0, &mut ev);
    assert!(matches!(ev.last(), Some(Event::Close(_))));
    let mut c = PeerConn::outgoing(settings(), None, shape());
    let mut ev = Vec::new();
    c.receive(&handshake(false, false), 0, &mut ev);
    assert_eq!(ev, vec![Event::Established]);
    assert!(c.is_established());
}

/// An outgoing leeching connection (we have piece 1 only) after the peer's handshake.
fn leeching(fast: bool) -> (PeerConn, Vec<u8>) {
    let mut c = PeerConn::outgoing(settings(), None, shape());
    c.set_ours(vec![0b0100_0000]);
    let mut ev = Vec::new();
    c.receive(&handshake(fast, false), 0, &mut ev);
    assert_eq!(ev, vec![Event::Established]);
    let out = c.take_output();
    (c, out[HANDSHAKE_LEN..].to_vec())
}

#[test]
fn a_leecher_announces_what_it_has_and_asks_when_unchoked() {
    let (mut c, greeting) = leeching(true);
    assert_eq!(frames(&greeting), vec![Message::Bitfield(&[0b0100_0000])]);
    let mut ev = Vec::new();
    c.receive(&msg(Message::HaveAll), 1, &mut ev);
    assert_eq!(
        ev,
        vec![Event::PeerBitfield],
        "a seed peer is kept while we leech"
    );
    assert!(c.peer_has(2) && !c.is_closed());
    let b = BlockRef {
        index: 0,
        begin: 0,
        length: 16384,
    };
    assert!(!c.request(b), "no request while choked");
    c.set_interested(true);
    assert_eq!(frames(&c.take_output()), vec![Message::Interested]);
    ev.clear();
    c.receive(&msg(Message::Unchoke), 2, &mut ev);
    assert_eq!(ev, vec![Event::Unchoked]);
    assert!(c.request(b) && !c.request(b), "each block asked once");
    let outside = BlockRef {
        index: 2,
        begin: 0,
        length: 16384,
    };
    assert!(!c.request(outside), "piece 2 has 10 bytes");
    assert_eq!(frames(&c.take_output()), vec![Message::Request(b)]);
    ev.clear();
    let data = vec![7u8; 16384];
    c.receive(
        &msg(Message::Piece {
            index: 0,
            begin: 0,
            data: &data,
        }),
        3,
        &mut ev,
    );
    assert_eq!(
        ev,
        vec![Event::Block {
            block: b,
            data: data.clone()
        }]
    );
    assert_eq!(c.asked(), 0);
    // The same block again was not asked for.
    ev.clear();
    c.receive(
        &msg(Message::Piece {
            index: 0,
            begin: 0,
            data: &data,
        }),
        4,
        &mut ev,
    );
    assert_eq!(ev, vec![Event::Unrequested(b)]);
    c.have(0);
    assert_eq!(frames(&c.take_output()), vec![Message::Have(0)]);
}

#[test]
fn chokes_drop_requests_without_the_fast_extension_and_rejects_with_it() {
    let (mut c, _) = leeching(false);
    let mut ev = Vec::new();
    c.receive(&msg(Message::Unchoke), 0, &mut ev);
    let a = BlockRef {
        index: 0,
        begin: 0,
        length: 16384,
    };
    let b = BlockRef {
        index: 0,
        begin: 16384,
        length: 16384,
    };
    assert!(c.request(a) && c.request(b));
    ev.clear();
    c.receive(&msg(Message::Choke), 1, &mut ev);
    assert_eq!(
        ev,
        vec![Event::Choked {
            dropped: vec![a, b]
        }]
    );
    assert_eq!(c.asked(), 0);

    let (mut c, greeting) = leeching(true);
    assert_eq!(frames(&greeting).len(), 1);
    let mut ev = Vec::new();
    c.receive(&msg(Message::Unchoke), 0, &mut ev);
    assert!(c.request(a) && c.request(b));
    c.cancel(b);
    let sent = c.take_output();
    assert_eq!(
        frames(&sent),
        vec![Message::Request(a), Message::Request(b), Message::Cancel(b)]
    );
    ev.clear();
    c.receive(&msg(Message::Choke), 1, &mut ev);
    assert_eq!(ev, vec![Event::Choked { dropped: vec![] }]);
    ev.clear();
    c.receive(&msg(Message::Reject(a)), 2, &mut ev);
    assert_eq!(ev, vec![Event::Rejected(a)]);
    assert_eq!(c.asked(), 0);
}

#[test]
fn a_leecher_with_nothing_sends_have_none_or_nothing() {
    let mut c = PeerConn::outgoing(settings(), None, shape());
    c.set_ours(vec![0]);
    let mut ev = Vec::new();
    c.receive(&handshake(true, false), 0, &mut ev);
    assert_eq!(
        frames(&c.take_output()[HANDSHAKE_LEN..]),
        vec![Message::HaveNone]
    );
    let mut c = PeerConn::outgoing(settings(), None, shape());
    c.set_ours(vec![0]);
    c.receive(&handshake(false, false), 0, &mut ev);
    assert!(c.take_output()[HANDSHAKE_LEN..].is_empty());
}

fn ext_msg(id: u8, payload: &[u8]) -> Vec<u8> {
    msg(Message::Extended { id, payload })
}

fn metadata_msg(id: u8, m: MetadataMsg<'_>) -> Vec<u8> {
    let mut body = Vec::new();
    m.write(&mut body);
    ext_msg(id, &body)
}

/// A magnet connection established with a fast, extended peer; what we sent after the
/// handshake.
fn magnet() -> (PeerConn, Vec<u8>) {
    let mut c = PeerConn::outgoing_magnet(settings(), None, [1; 20]);
    assert_eq!(c.take_output().len(), HANDSHAKE_LEN);
    let mut ev = Vec::new();
    c.receive(&handshake(true, true), 0, &mut ev);
    assert_eq!(ev, vec![Event::Established]);
    assert!(c.shape().is_none());
    let greeting = c.take_output();
    (c, greeting)
}

#[test]
fn a_magnet_connection_greets_with_have_none_and_no_metadata_size() {
    let mut c = PeerConn::outgoing_magnet(settings(), None, [1; 20]);
    let mut ev = Vec::new();
    c.receive(&handshake(true, true), 0, &mut ev);
    let out = c.take_output();
    let f = frames(&out[HANDSHAKE_LEN..]);
    assert_eq!(f[0], Message::HaveNone);
    let Message::Extended { id: 0, payload } = f[1] else {
        panic!("{f:?}")
    };
    let h = ExtHandshake::parse(payload).unwrap();
    assert_eq!(h.ut_metadata, Some(peer_ext::OUR_UT_METADATA));
    assert_eq!(h.metadata_size, None);
    // Without the fast extension: nothing about our pieces at all.
    let mut c = PeerConn::outgoing_magnet(settings(), None, [1; 20]);
    c.receive(&handshake(false, true), 0, &mut ev);
    let out = c.take_output();
    assert!(matches!(
        frames(&out[HANDSHAKE_LEN..])[..],
        [Message::Extended { id: 0, .. }]
    ));
    // Another torrent's answer closes.
    let mut c = PeerConn::outgoing_magnet(settings(), None, [9; 20]);
    ev.clear();
    c.receive(&handshake(true, true), 0, &mut ev);
    assert!(matches!(&ev[..], [Event::Close(r)] if r.contains("another info-hash")));
}

#[test]
fn asks_a_peer_for_metadata_and_reports_pieces_and_rejects() {
    let (mut c, _) = magnet();
    assert!(!c.request_metadata(0), "no extension handshake yet");
    let mut ev = Vec::new();
    c.receive(
        &ext_msg(0, b"d1:md11:ut_metadatai3ee13:metadata_sizei20000ee"),
        1,
        &mut ev,
    );
    assert_eq!(ev, vec![Event::ExtHandshake]);
    assert_eq!(c.peer_metadata_size(), Some(20000));
    let _ = c.take_output();
    assert!(c.request_metadata(0) && c.request_metadata(1));
    assert!(!c.request_metadata(2), "past metadata_size");
    let out = c.take_output();
    let asked: Vec<_> = frames(&out)
        .into_iter()
        .map(|m| match m {
            Message::Extended { id: 3, payload } => MetadataMsg::parse(payload).unwrap(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        asked,
        vec![
            MetadataMsg::Request { piece: 0 },
            MetadataMsg::Request { piece: 1 }
        ]
    );
    let piece0 = vec![b'i'; 16384];
    ev.clear();
    let data = |piece, data| MetadataMsg::Data {
        piece,
        total_size: 20000,
        data,
    };
    c.receive(
        &metadata_msg(peer_ext::OUR_UT_METADATA, data(0, &piece0)),
        2,
        &mut ev,
    );
    c.receive(
        &metadata_msg(peer_ext::OUR_UT_METADATA, MetadataMsg::Reject { piece: 1 }),
        2,
        &mut ev,
    );
    assert_eq!(
        ev,
        vec![
            Event::Metadata {
                piece: 0,
                total: 20000,
                data: piece0.clone()
            },
            Event::MetadataRejected(1)
        ]
    );
    // Answers nobody asked for change nothing.
    ev.clear();
    c.receive(
        &metadata_msg(peer_ext::OUR_UT_METADATA, data(0, &piece0)),
        3,
        &mut ev,
    );
    c.receive(
        &metadata_msg(peer_ext::OUR_UT_METADATA, MetadataMsg::Reject { piece: 1 }),
        3,
        &mut ev,
    );
    assert!(ev.is_empty(), "{ev:?}");
    // A piece over 16 KiB closes.
    assert!(c.request_metadata(0));
    let mut body = Vec::new();
    MetadataMsg::Data {
        piece: 0,
        total_size: 40000,
        data: &[0u8; 16385],
    }
    .write(&mut body);
    let mut big = Vec::new();
    let len = 2 + body.len() as u32;
    big.extend_from_slice(&len.to_be_bytes());
    big.extend_from_slice(&[20, peer_ext::OUR_UT_METADATA]);
    big.extend_from_slice(&body);
    c.receive(&big, 4, &mut ev);
    assert!(matches!(ev.last(), Some(Event::Close(_))), "{ev:?}");
}

#[test]
fn no_metadata_requests_to_a_peer_without_ut_metadata() {
    let (mut c, _) = magnet();
    let mut ev = Vec::new();
    c.receive(&ext_msg(0, b"d1:md6:ut_pexi2eee"), 1, &mut ev);
    assert!(!c.request_metadata(0));
    assert_eq!(c.peer_metadata_size(), None);
    // A peer without the extension protocol gets no extension handshake either.
    let mut c = PeerConn::outgoing_magnet(settings(), None, [1; 20]);
    c.receive(&handshake(false, false), 0, &mut ev);
    assert!(c.take_output()[HANDSHAKE_LEN..].is_empty());
    assert!(!c.request_metadata(0));
    assert!(!c.is_closed());
}

#[test]
fn a_magnet_connection_keeps_early_pieces_until_set_shape() {
    let (mut c, _) = magnet();
    let mut ev = Vec::new();
    let mut early = msg(Message::Bitfield(&[0b1010_0000]));
    early.extend(msg(Message::Have(1)));
    early.extend(msg(Message::Interested));
    c.receive(&early, 1, &mut ev);
    assert_eq!(
        ev,
        vec![Event::Interested(true)],
        "pieces are kept, not judged"
    );
    assert!(c.peer_bits().is_empty());
    let b = BlockRef {
        index: 0,
        begin: 0,
        length: 16384,
    };
    c.receive(&msg(Message::Unchoke), 1, &mut ev);
    assert!(!c.request(b), "no requests before the shape is known");
    let _ = c.take_output();
    c.set_ours(vec![0b0100_0000]);
    ev.clear();
    c.set_shape(shape(), 2, &mut ev);
    assert_eq!(ev, vec![Event::PeerBitfield, Event::PeerHave(1)]);
    assert_eq!(c.peer_bits(), &[0b1110_0000]);
    assert!(c.peer_is_seed() && !c.is_closed(), "we are not a seed");
    assert_eq!(frames(&c.take_output()), vec![Message::Have(1)]);
    assert!(c.request(b));
    // From now on it behaves like any connection.
    ev.clear();
    c.receive(&msg(Message::Have(3)), 3, &mut ev);
    assert!(matches!(ev.last(), Some(Event::Close(r)) if r.contains("have 3 of 3")));
}

#[test]
fn set_shape_refuses_early_pieces_that_do_not_fit() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (msg(Message::Bitfield(&[0xe0, 0])), "2 bytes for 3 pieces"),
        (msg(Message::Bitfield(&[])), "0 bytes"),
        (msg(Message::Bitfield(&[0xe1])), "spare bits"),
        (msg(Message::Have(5)), "have 5 of 3"),
    ];
    for (bytes, why) in cases {
        let (mut c, _) = magnet();
        let mut ev = Vec::new();
        c.receive(&bytes, 1, &mut ev);
        assert!(ev.is_empty(), "{why}: {ev:?}");
        c.set_shape(shape(), 2, &mut ev);
        assert!(
            matches!(ev.last(), Some(Event::Close(r)) if r.contains(why)),
            "{why}: {ev:?}"
        );
    }
    // Have-all, then have-none: the last word counts.
    let (mut c, _) = magnet();
    let mut ev = Vec::new();
    c.receive(&msg(Message::HaveAll), 1, &mut ev);
    c.set_shape(shape(), 2, &mut ev);
    assert_eq!(ev, vec![Event::PeerBitfield]);
    assert!(c.peer_has(2));
    let (mut c, _) = magnet();
    let mut ev = Vec::new();
    c.receive(&msg(Message::HaveAll), 1, &mut ev);
    c.receive(&msg(Message::HaveNone), 1, &mut ev);
    c.set_shape(shape(), 2, &mut ev);
    assert_eq!(ev, vec![Event::PeerBitfield]);
    assert!(!c.peer_has(2));
    // A bitfield no torrent we fetch could have, and another torrent's shape.
    let (mut c, _) = magnet();
    let mut huge = (MAX_EARLY_PIECES / 8 + 2).to_be_bytes().to_vec();
    huge.push(peer_wire::id::BITFIELD);
    c.receive(&huge, 1, &mut ev);
    assert!(matches!(ev.last(), Some(Event::Close(r)) if r.contains("bitfield of")));
    let (mut c, _) = magnet();
    let mut ev = Vec::new();
    c.set_shape(
        Arc::new(Shape::new([7; 20], 10, 10, Arc::from(vec![1u8]))),
        1,
        &mut ev,
    );
    assert!(matches!(ev.last(), Some(Event::Close(r)) if r.contains("another torrent")));
}

#[test]
fn a_magnet_connection_serves_metadata_only_once_it_has_it() {
    let (mut c, _) = magnet();
    let mut ev = Vec::new();
    c.receive(&ext_msg(0, b"d1:md11:ut_metadatai3eee"), 1, &mut ev);
    let _ = c.take_output();
    let ask = metadata_msg(peer_ext::OUR_UT_METADATA, MetadataMsg::Request { piece: 0 });
    c.receive(&ask, 1, &mut ev);
    let out = c.take_output();
    let Message::Extended { id: 3, payload } = frames(&out)[0] else {
        panic!()
    };
    assert_eq!(
        MetadataMsg::parse(payload).unwrap(),
        MetadataMsg::Reject { piece: 0 }
    );
    c.set_shape(shape(), 2, &mut ev);
    c.receive(&ask, 3, &mut ev);
    let out = c.take_output();
    let Message::Extended { id: 3, payload } = frames(&out)[0] else {
        panic!()
    };
    assert!(matches!(
        MetadataMsg::parse(payload).unwrap(),
        MetadataMsg::Data {
            total_size: 20000,
            ..
        }
    ));
    assert!(ev.contains(&Event::MetadataServed));
}

#[test]
fn set_shape_before_the_handshake_greets_as_usual() {
    let mut c = PeerConn::outgoing_magnet(settings(), None, [1; 20]);
    let mut ev = Vec::new();
    c.set_shape(shape(), 0, &mut ev);
    assert!(ev.is_empty());
    let _ = c.take_output();
    c.receive(&handshake(true, true), 1, &mut ev);
    assert_eq!(ev, vec![Event::Established]);
    let out = c.take_output();
    let f = frames(&out);
    assert_eq!(f[0], Message::HaveNone);
    let Message::Extended { id: 0, payload } = f[1] else {
        panic!("{f:?}")
    };
    assert_eq!(
        ExtHandshake::parse(payload).unwrap().metadata_size,
        Some(20000)
    );
    ev.clear();
    c.receive(&msg(Message::Bitfield(&[0x80])), 2, &mut ev);
    assert_eq!(ev, vec![Event::PeerBitfield]);
}
