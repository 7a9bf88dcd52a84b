//! The client tests' own machinery, checked against real tools so that a failing client test
//! means the client and not the harness: every seeder helper (libtorrent plain and
//! encrypted-only, transmission-daemon, aria2c, nginx) really serves to a python3-libtorrent
//! leecher (or curl-like GETs), the torrent makers make what they claim (pad files, url-list,
//! an empty file), and the bad seeder serves correct data to libtorrent when honest and
//! misbehaves exactly as documented in every other mode (seen through a raw peer).

mod support;

use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use support::bad_seed::{torrent_data, BadSeed, Mode};
use support::client::assert_same_tree;
use support::peer::{Got, Peer};
use support::seeders::{self, LtOptions, LtTorrent};
use support::server::request;
use support::{tempdir, write_file};
use torrent_gateway::proto::bt::metainfo::Metainfo;
use torrent_gateway::proto::bt::peer_wire::{BlockRef, Message};

/// A single file of `len` bytes in `dir/data/name` and a libtorrent torrent of it.
fn single(dir: &Path, name: &str, len: usize, piece: u32) -> (std::path::PathBuf, Metainfo) {
    let data = write_file(&dir.join("data"), name, len, 7);
    let torrent = dir.join(format!("{name}.torrent"));
    let meta = seeders::lt_torrent(&data, &torrent, piece, &LtTorrent::default());
    (torrent, meta)
}

/// libtorrent downloads `torrent` from `peer` into `dir/leech` and gets `dir/data`'s bytes.
fn leech_from(dir: &Path, torrent: &Path, peer: std::net::SocketAddr) {
    let save = dir.join("leech");
    seeders::lt_leech(torrent, &save, Some(peer), 60);
    assert_same_tree(&save, &dir.join("data"));
    std::fs::remove_dir_all(&save).unwrap();
}

#[test]
fn libtorrent_seeders_plain_and_encrypted_serve_a_libtorrent_leecher() {
    let dir = tempdir();
    let (torrent, _) = single(dir.path(), "lt.bin", 1_500_000, 65536);
    for encrypted in [false, true] {
        let s = seeders::libtorrent(
            &torrent,
            &dir.path().join("data"),
            LtOptions {
                encrypted,
                upload_limit: 0,
            },
        );
        leech_from(dir.path(), &torrent, s.addr);
    }
    // The encrypted-only seeder refuses a plaintext handshake: it hangs up without
    // answering it.
    let s = seeders::libtorrent(
        &torrent,
        &dir.path().join("data"),
        LtOptions {
            encrypted: true,
            upload_limit: 0,
        },
    );
    let meta = seeders::read_torrent(&torrent);
    let mut p = Peer::connect(s.addr);
    p.send_handshake(meta.info_hash, false);
    assert!(p.read_handshake().is_none(), "plaintext accepted");
}

#[test]
fn transmission_and_aria2c_seeders_serve_a_libtorrent_leecher() {
    let dir = tempdir();
    let (torrent, _) = single(dir.path(), "tr.bin", 1_000_003, 32768);
    let t = seeders::transmission(&torrent, &dir.path().join("data"));
    leech_from(dir.path(), &torrent, t.addr);
    drop(t);
    let a = seeders::aria2c(&torrent, &dir.path().join("data"));
    leech_from(dir.path(), &torrent, a.addr);
}

#[test]
fn nginx_serves_ranges_and_libtorrent_uses_it_as_a_webseed() {
    let dir = tempdir();
    let www = dir.path().join("www");
    let data = write_file(&www, "web.bin", 300_000, 3);
    let n = seeders::nginx(&www, "/web.bin");
    let r = request(n.addr, "GET", "/web.bin", &[("Range", "bytes=10-19")], b"");
    assert_eq!(r.status, 206);
    assert_eq!(r.body, std::fs::read(&data).unwrap()[10..20]);
    // A webseed-only torrent: libtorrent gets everything from nginx.
    let torrent = dir.path().join("web.torrent");
    let url = n.url();
    let meta = seeders::lt_torrent(
        &data,
        &torrent,
        16384,
        &LtTorrent {
            webseeds: &[&url],
            ..Default::default()
        },
    );
    assert_eq!(meta.url_list, vec![url.clone()]);
    assert!(meta.trackers().is_empty());
    let save = dir.path().join("leech");
    seeders::lt_leech(&torrent, &save, None, 60);
    assert_same_tree(&save, &www);
}

#[test]
fn torrent_makers_make_pad_files_nested_folders_an_empty_file_and_magnets() {
    let dir = tempdir();
    let root = seeders::make_tree(
        &dir.path().join("src/tree"),
        &[
            ("a.bin", 70_000),
            ("sub/deeper/b.bin", 5),
            ("sub/empty.txt", 0),
            ("z.bin", 40_000),
        ],
    );
    let padded = seeders::lt_torrent(
        &root,
        &dir.path().join("pad.torrent"),
        16384,
        &LtTorrent {
            pad_files: true,
            trackers: &["http://127.0.0.1:1/announce"],
            ..Default::default()
        },
    );
    assert!(padded.info.files.iter().any(|f| f.padding));
    assert_eq!(padded.trackers(), vec!["http://127.0.0.1:1/announce"]);
    // Every real file starts on a piece boundary.
    for f in padded.info.files.iter().filter(|f| !f.padding) {
        assert_eq!(f.offset % 16384, 0, "{f:?}");
    }
    let mk = seeders::mktorrent(&root, &dir.path().join("mk.torrent"), 15, &[], &[]);
    assert!(mk.info.multi_file);
    assert_eq!(mk.info.files.len(), 4);
    assert!(mk.info.files.iter().any(|f| f.length == 0));
    assert!(mk.info.files.iter().any(|f| f.path.len() == 3));
    // The bad seeder's view of the data equals the files, pad files as zeros.
    let data = torrent_data(&padded, &dir.path().join("src"));
    assert_eq!(data.len() as u64, padded.info.total_length());
    assert_eq!(torrent_data(&mk, &dir.path().join("src")).len(), 110_005);
    let m = seeders::magnet(&mk.info_hash, &[]);
    assert_eq!(
        m,
        format!("magnet:?xt=urn:btih:{}", seeders::hex(&mk.info_hash))
    );
    let m = seeders::magnet(&mk.info_hash, &["http://127.0.0.1:9/announce"]);
    assert!(
        m.ends_with("&tr=http%3A%2F%2F127.0.0.1%3A9%2Fannounce"),
        "{m}"
    );
}

#[test]
fn the_honest_bad_seed_serves_libtorrent_correct_data() {
    let dir = tempdir();
    let (torrent, meta) = single(dir.path(), "honest.bin", 700_001, 32768);
    let seed = BadSeed::start(
        &meta,
        torrent_data(&meta, &dir.path().join("data")),
        Mode::Honest,
    );
    leech_from(dir.path(), &torrent, seed.addr);
    assert!(seed.bytes_served() >= 700_001, "{}", seed.bytes_served());
    assert_eq!(seed.stats.corrupt_blocks.load(Relaxed), 0);
}

/// A raw peer that handshook, got the bitfield, said interested and got the unchoke.
fn interested_peer(seed: &BadSeed, meta: &Metainfo) -> Peer {
    let mut p = Peer::handshake(seed.addr, meta.info_hash, false);
    assert!(matches!(p.next(), Some(Got::Bitfield(_))));
    p.send(Message::Interested).unwrap();
    let mut before = Vec::new();
    loop {
        match p.next().expect("an unchoke") {
            Got::Unchoke => break,
            other => before.push(other),
        }
    }
    assert!(before.is_empty(), "{before:?}");
    p
}

fn req(index: u32, begin: u32, length: u32) -> Message<'static> {
    Message::Request(BlockRef {
        index,
        begin,
        length,
    })
}

/// The block's bytes from the source data.
fn block_of(data: &[u8], meta: &Metainfo, index: u32, begin: u32, len: u32) -> Vec<u8> {
    let at = (index as u64 * meta.info.piece_length) as usize + begin as usize;
    data[at..at + len as usize].to_vec()
}

#[test]
fn the_bad_seed_misbehaves_as_documented() {
    let dir = tempdir();
    let (_, meta) = single(dir.path(), "bad.bin", 20 * 32768, 32768);
    let data = torrent_data(&meta, &dir.path().join("data"));

    // CorruptBlock: the first block of piece 3 comes back flipped, every time; the second
    // block and other pieces are right.
    let seed = BadSeed::start(&meta, data.clone(), Mode::CorruptBlock { piece: 3 });
    let mut p = interested_peer(&seed, &meta);
    for _ in 0..2 {
        p.send(req(3, 0, 16384)).unwrap();
        let Some(Got::Piece { data: got, .. }) = p.next() else {
            panic!()
        };
        assert_ne!(got, block_of(&data, &meta, 3, 0, 16384));
    }
    p.send(req(3, 16384, 16384)).unwrap();
    p.send(req(4, 0, 16384)).unwrap();
    for (i, b) in [(3, 16384), (4, 0)] {
        let Some(Got::Piece {
            index,
            begin,
            data: got,
        }) = p.next()
        else {
            panic!()
        };
        assert_eq!((index, begin), (i, b));
        assert_eq!(got, block_of(&data, &meta, i, b, 16384));
    }
    assert_eq!(seed.stats.corrupt_blocks.load(Relaxed), 2);
    drop(p);
    drop(seed);

    // LyingBitfield: claims all 20 pieces, answers only the even ones.
    let seed = BadSeed::start(&meta, data.clone(), Mode::LyingBitfield);
    let mut p = interested_peer(&seed, &meta);
    p.send(req(1, 0, 16384)).unwrap();
    p.send(req(2, 0, 16384)).unwrap();
    let Some(Got::Piece { index, .. }) = p.next() else {
        panic!()
    };
    assert_eq!(index, 2, "the odd piece is never answered");
    assert_eq!(seed.stats.requests_dropped.load(Relaxed), 1);
    drop(p);
    drop(seed);

    // NeverAnswers: nothing comes back, the connection stays open.
    let seed = BadSeed::start(&meta, data.clone(), Mode::NeverAnswers);
    let mut p = interested_peer(&seed, &meta);
    p.send(req(0, 0, 16384)).unwrap();
    assert!(!p.closed_within(1), "it must stay connected");
    assert_eq!(seed.stats.blocks_served.load(Relaxed), 0);
    assert_eq!(seed.stats.requests_dropped.load(Relaxed), 1);
    drop(p);
    drop(seed);

    // ChokeMidRequest: of ten queued requests, six are served, then a choke drops the
    // rest; an unchoke follows and a new request is served.
    let seed = BadSeed::start(&meta, data.clone(), Mode::ChokeMidRequest);
    let mut p = interested_peer(&seed, &meta);
    for i in 0..10 {
        p.send(req(i, 0, 16384)).unwrap();
    }
    let mut pieces = 0;
    loop {
        match p.next().expect("a choke") {
            Got::Piece { .. } => pieces += 1,
            Got::Choke => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(pieces, 6);
    assert_eq!(p.next(), Some(Got::Unchoke));
    p.send(req(9, 0, 16384)).unwrap();
    assert!(matches!(p.next(), Some(Got::Piece { index: 9, .. })));
    assert_eq!(seed.stats.chokes.load(Relaxed), 1);
    assert_eq!(seed.stats.requests_dropped.load(Relaxed), 4);
    drop(p);
    drop(seed);

    // UnrequestedBlocks: four garbage blocks right after the unchoke, then honest.
    let seed = BadSeed::start(&meta, data.clone(), Mode::UnrequestedBlocks);
    let mut p = Peer::handshake(seed.addr, meta.info_hash, false);
    assert!(matches!(p.next(), Some(Got::Bitfield(_))));
    p.send(Message::Interested).unwrap();
    assert_eq!(p.next(), Some(Got::Unchoke));
    for _ in 0..4 {
        let Some(Got::Piece {
            index,
            begin,
            data: got,
        }) = p.next()
        else {
            panic!()
        };
        assert_ne!(got, block_of(&data, &meta, index, begin, got.len() as u32));
    }
    p.send(req(0, 0, 16384)).unwrap();
    let Some(Got::Piece { data: got, .. }) = p.next() else {
        panic!()
    };
    assert_eq!(got, block_of(&data, &meta, 0, 0, 16384));
    assert_eq!(seed.stats.unrequested_blocks.load(Relaxed), 4);
}
