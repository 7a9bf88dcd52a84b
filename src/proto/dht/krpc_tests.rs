//! Tests of the KRPC codec: the BEP-5 example messages byte for byte, round trips of every
//! query and response shape, the error values (with the transaction id kept for the answer)
//! for malformed, oversized and truncated input, and a cheap randomized no-panic sweep.

use super::*;

fn id(c: u8) -> NodeId {
    NodeId([c; 20])
}

fn round_trip(m: &Message<'_>) {
    let bytes = m.encode();
    let back = parse(&bytes).expect("parses back");
    assert_eq!(&back, m, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(back.encode(), bytes);
}

#[test]
fn bep5_examples() {
    let ping = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe";
    let m = parse(ping).expect("ping");
    let Body::Query(q) = &m.body else {
        panic!("query")
    };
    assert_eq!(q.method, Method::Ping);
    assert_eq!(&q.id.0, b"abcdefghij0123456789");
    assert_eq!(m.t, b"aa");
    assert_eq!(m.encode(), ping);

    let pong = b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re";
    assert_eq!(parse(pong).expect("pong").encode(), pong);

    let err = b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee";
    let m = parse(err).expect("error");
    assert_eq!(
        m.body,
        Body::Error(ErrorReply {
            code: 201,
            message: b"A Generic Error Ocurred"
        })
    );
    assert_eq!(m.encode(), err);

    let ann = b"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe";
    let m = parse(ann).expect("announce");
    let Body::Query(q) = &m.body else {
        panic!("query")
    };
    assert_eq!(q.method.announced_port(51413), Some(51413));
    assert_eq!(m.encode(), ann);

    let peers = b"d1:rd2:id20:abcdefghij01234567895:token8:aoeusnth6:valuesl6:axje.u6:idhtnmee1:t2:aa1:y1:re";
    let m = parse(peers).expect("values");
    let Body::Response(r) = &m.body else {
        panic!("response")
    };
    assert_eq!(r.values.len(), 2);
    assert_eq!(r.token, Some(&b"aoeusnth"[..]));
    assert_eq!(m.encode(), peers);
}

#[test]
fn every_query_round_trips() {
    let sig = [9u8; 64];
    let methods = [
        Method::Ping,
        Method::FindNode { target: id(2) },
        Method::GetPeers { info_hash: id(3) },
        Method::AnnouncePeer {
            info_hash: id(3),
            port: 6881,
            implied_port: false,
            token: b"tok",
        },
        Method::AnnouncePeer {
            info_hash: id(3),
            port: 0,
            implied_port: true,
            token: b"tok",
        },
        Method::Get {
            target: id(4),
            seq: Some(7),
        },
        Method::Get {
            target: id(4),
            seq: None,
        },
        Method::Put(Put {
            token: b"t",
            v: b"12:Hello World!",
            mutable: None,
        }),
        Method::Put(Put {
            token: b"t",
            v: b"d1:ali1ei2eee",
            mutable: Some(MutablePut {
                k: [5; 32],
                sig,
                seq: 4,
                cas: Some(3),
                salt: b"foobar",
            }),
        }),
        Method::SampleInfohashes { target: id(6) },
    ];
    for method in methods {
        let mut m = Message::query(b"\x00\x01", id(1), method);
        round_trip(&m);
        m.ro = true;
        m.version = Some(b"TG01");
        if let Body::Query(q) = &mut m.body {
            q.want = Want { n4: true, n6: true };
        }
        round_trip(&m);
    }
}

#[test]
fn responses_round_trip() {
    let n4 = CompactNode {
        id: id(7),
        addr: "1.2.3.4:5".parse().expect("addr"),
    };
    let n6 = CompactNode {
        id: id(8),
        addr: "[2001:db8::2]:6".parse().expect("addr"),
    };
    let full = Response {
        id: id(1),
        nodes: vec![n4; 8],
        nodes6: vec![n6; 8],
        values: vec![
            "9.9.9.9:1".parse().expect("addr"),
            "[2001:db8::9]:2".parse().expect("addr"),
        ],
        token: Some(b"token"),
        samples: Some(vec![id(3), id(4)]),
        interval: Some(21600),
        num: Some(2),
        value: Some(b"i42e"),
        k: Some([1; 32]),
        sig: Some([2; 64]),
        seq: Some(5),
    };
    let mut m = Message::response(b"xy", full);
    m.ip = Some("203.0.113.5:6881".parse().expect("addr"));
    round_trip(&m);
    round_trip(&Message::response(
        b"xy",
        Response {
            id: id(1),
            samples: Some(vec![]),
            ..Response::default()
        },
    ));
    round_trip(&Message::error(b"xy", code::CAS_MISMATCH, b"cas mismatch"));
}

fn err(input: &[u8]) -> ParseError<'_> {
    match parse(input) {
        Ok(m) => panic!("accepted {m:?}"),
        Err(e) => e,
    }
}

#[test]
fn announce_port_zero_is_refused_with_t_echoed() {
    let bytes = b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234564:porti0e5:token1:xe1:q13:announce_peer1:t2:zz1:y1:qe";
    let e = err(bytes);
    assert_eq!(e.kind, ErrorKind::BadPort);
    assert_eq!(e.t, Some(&b"zz"[..]));
    assert_eq!(e.code(), 203);
    let reply = e.reply().expect("a query gets an answer");
    let back = parse(&reply).expect("reply parses");
    assert_eq!(back.t, b"zz");
    assert!(matches!(
        back.body,
        Body::Error(ErrorReply { code: 203, .. })
    ));
    let big = b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234564:porti65536e5:token1:xe1:q13:announce_peer1:t2:zz1:y1:qe";
    assert_eq!(err(big).kind, ErrorKind::BadPort);
    let none = b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234565:token1:xe1:q13:announce_peer1:t2:zz1:y1:qe";
    assert_eq!(err(none).kind, ErrorKind::Missing("port"));
}

#[test]
fn error_codes_for_unknown_and_oversized() {
    let unknown = b"d1:ad2:id20:abcdefghij0123456789e1:q4:vote1:t1:a1:y1:qe";
    let e = err(unknown);
    assert_eq!((e.kind.clone(), e.code()), (ErrorKind::UnknownMethod, 204));
    assert!(e.reply().is_some());

    let mut put = b"d1:ad2:id20:abcdefghij01234567895:token1:x1:v1001:".to_vec();
    put.extend_from_slice(&[b'a'; 1001]);
    put.extend_from_slice(b"e1:q3:put1:t1:a1:y1:qe");
    assert_eq!(err(&put).code(), 205);

    let salt = Message::query(
        b"a",
        id(1),
        Method::Put(Put {
            token: b"t",
            v: b"i1e",
            mutable: Some(MutablePut {
                k: [1; 32],
                sig: [2; 64],
                seq: 1,
                cas: None,
                salt: &[b's'; 65],
            }),
        }),
    )
    .encode();
    assert_eq!(err(&salt).code(), 207);
}

#[test]
fn malformed_input_is_an_error_value() {
    let e = err(b"d1:y1:qe");
    assert_eq!((e.kind, e.t), (ErrorKind::Missing("t"), None));
    assert_eq!(err(b"le").kind, ErrorKind::NotADict("message"));
    assert!(matches!(err(b"d1:t").kind, ErrorKind::Bencode(_)));
    assert_eq!(err(b"d1:t1:a1:y1:xe").kind, ErrorKind::UnknownType);
    assert_eq!(err(b"d1:t1:ae").kind, ErrorKind::Missing("y"));
    let long_t = format!("d1:t33:{}1:y1:qe", "a".repeat(33));
    assert_eq!(err(long_t.as_bytes()).t, None);
    // A response's error is not answered.
    let e = err(b"d1:rd2:id3:abce1:t1:a1:y1:re");
    assert_eq!(e.kind, ErrorKind::BadLength("id"));
    assert_eq!(e.reply(), None);
    assert_eq!(
        err(b"d2:ip5:abcde1:rd2:id20:abcdefghij0123456789e1:t1:a1:y1:re").kind,
        ErrorKind::BadLength("ip")
    );
    assert_eq!(
        err(b"d1:rd2:id20:abcdefghij01234567895:nodes3:abce1:t1:a1:y1:re").kind,
        ErrorKind::BadLength("nodes")
    );
    assert_eq!(
        err(b"d1:rd2:id20:abcdefghij01234567896:valuesl5:abcdeee1:t1:a1:y1:re").kind,
        ErrorKind::BadLength("values")
    );
    assert_eq!(
        err(b"d1:rd2:id20:abcdefghij01234567897:samples3:abce1:t1:a1:y1:re").kind,
        ErrorKind::BadLength("samples")
    );
    assert_eq!(
        err(b"d1:ad2:id20:abcdefghij01234567893:seqi-1e6:target20:abcdefghij0123456789e1:q3:get1:t1:a1:y1:qe").kind,
        ErrorKind::BadSeq
    );
    assert!(matches!(
        err(b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t1:a1:y1:q2:roi1e2:ro1:xe").kind,
        ErrorKind::Bencode(_)
    ));
    assert_eq!(
        err(b"d1:ai1e1:q4:ping1:t1:a1:y1:qe").kind,
        ErrorKind::NotADict("a")
    );
    assert_eq!(err(b"d1:ele1:t1:a1:y1:ee").kind, ErrorKind::BadType("e"));
    let m = parse(b"d1:eli202ee1:t1:a1:y1:ee").expect("error without a message");
    assert_eq!(
        m.body,
        Body::Error(ErrorReply {
            code: 202,
            message: b""
        })
    );
}

#[test]
fn caps_on_lists() {
    let mut values = Vec::new();
    for i in 0..=MAX_VALUES {
        values.push(SocketAddr::from(([10, 0, 0, (i % 250) as u8], 1)));
    }
    let r = Response {
        id: id(1),
        values,
        ..Response::default()
    };
    let bytes = Message::response(b"a", r).encode();
    assert_eq!(err(&bytes).kind, ErrorKind::TooMany("values"));
    let n = CompactNode {
        id: id(2),
        addr: "1.1.1.1:1".parse().expect("addr"),
    };
    let r = Response {
        id: id(1),
        nodes: vec![n; MAX_NODES + 1],
        ..Response::default()
    };
    let bytes = Message::response(b"a", r).encode();
    assert_eq!(err(&bytes).kind, ErrorKind::TooMany("nodes"));
    let big = vec![b'x'; MAX_MESSAGE_BYTES + 1];
    assert!(matches!(err(&big).kind, ErrorKind::Bencode(_)));
}

#[test]
fn ip_ro_want_are_read() {
    let bytes = b"d2:ip6:\x01\x02\x03\x04\x1a\xe11:rd2:id20:abcdefghij0123456789e1:t1:a1:y1:re";
    let m = parse(bytes).expect("ip");
    assert_eq!(m.ip, Some("1.2.3.4:6881".parse().expect("addr")));
    let q = b"d1:ad2:id20:abcdefghij01234567896:target20:abcdefghij01234567894:wantl2:n62:xxee1:q9:find_node2:roi1e1:t1:a1:y1:qe";
    let m = parse(q).expect("want");
    assert!(m.ro);
    let Body::Query(q) = m.body else {
        panic!("query")
    };
    assert_eq!(
        q.want,
        Want {
            n4: false,
            n6: true
        }
    );
}

#[test]
fn truncations_and_flips_never_panic() {
    let m = Message::query(
        b"ab",
        id(1),
        Method::Put(Put {
            token: b"t",
            v: b"d1:ali1ei2eee",
            mutable: Some(MutablePut {
                k: [5; 32],
                sig: [6; 64],
                seq: 4,
                cas: None,
                salt: b"s",
            }),
        }),
    )
    .encode();
    for end in 0..m.len() {
        assert!(parse(&m[..end]).is_err());
    }
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..20_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut x = m.clone();
        let i = (state as usize) % x.len();
        x[i] = (state >> 32) as u8;
        if let Ok(p) = parse(&x) {
            let again = p.encode();
            assert_eq!(parse(&again).expect("re-parses"), p);
        }
    }
    assert!(valid_item_value(b"i1e"));
    assert!(!valid_item_value(b"i1"));
}
