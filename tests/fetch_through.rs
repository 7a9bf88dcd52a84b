//! Fetch-through against a real swarm on 127.0.0.1: a file only a python3-libtorrent seeder
//! holds, the gateway given nothing but the magnet (with `x.pe`), streamed over plain HTTP.
//! A range near the end arrives while most of the file is still missing (counted), the whole
//! file and a suffix range are byte-identical, and bad input gets clear statuses.

mod support;

use support::seeders::{self, LtOptions, LtTorrent};
use support::server::{request, Server};
use support::{tempdir, write_file};

const LEN: usize = (12 << 20) + 777;
const PIECE: u32 = 65536;

fn magnet_with_peer(ih: &str, peer: &str) -> String {
    format!("magnet:?xt=urn:btih:{ih}&x.pe={peer}")
}

#[test]
fn a_magnet_only_the_swarm_holds_streams_with_range() {
    let dir = tempdir();
    let file = write_file(&dir.path().join("data"), "movie.bin", LEN, 41);
    let torrent = dir.path().join("movie.torrent");
    let meta = seeders::lt_torrent(&file, &torrent, PIECE, &LtTorrent::default());
    let seed = seeders::libtorrent(&torrent, &dir.path().join("data"), LtOptions::default());
    let gw = Server::start(&dir.path().join("gw"), "");
    let ih = seeders::hex(&meta.info_hash);
    let want = std::fs::read(&file).unwrap();

    let added = request(
        gw.addr,
        "POST",
        "/api/torrents",
        &[],
        magnet_with_peer(&ih, &seed.peer_arg()).as_bytes(),
    );
    assert!(
        added.status == 201 || added.status == 202,
        "{} {}",
        added.status,
        added.text()
    );
    // Bounded wait for the metadata (a stream would wait for it too).
    let mut ready = false;
    for _ in 0..300 {
        let r = gw.get(&format!("/api/torrents/{ih}"));
        if r.status == 200 && r.json()["state"] == "ready" {
            ready = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(ready, "no metadata from the swarm");

    // A range near the end, while nothing else was asked for.
    let from = LEN - 300_000;
    let r = request(
        gw.addr,
        "GET",
        &format!("/stream/{ih}/0"),
        &[("Range", &format!("bytes={from}-{}", from + 99_999))],
        b"",
    );
    assert_eq!(r.status, 206, "{}", r.text());
    assert_eq!(r.body, &want[from..from + 100_000]);
    assert_eq!(
        r.header("Content-Range"),
        Some(format!("bytes {from}-{}/{LEN}", from + 99_999).as_str())
    );
    let info = gw.get(&format!("/api/torrents/{ih}")).json();
    let verified = info["stats"]["verified_pieces"].as_u64().unwrap();
    let pieces = info["pieces"].as_u64().unwrap();
    assert!(
        verified > 0 && verified * 4 < pieces,
        "a range near the end fetched {verified} of {pieces} pieces"
    );

    // A suffix range and the whole file, by path.
    let r = request(
        gw.addr,
        "GET",
        &format!("/stream/{ih}/movie.bin"),
        &[("Range", "bytes=-1000")],
        b"",
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &want[LEN - 1000..]);
    let r = gw.get(&format!("/stream/{ih}/0"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Length"), Some(LEN.to_string().as_str()));
    assert!(r.body == want, "the streamed file differs");

    // Past the end, no such file, HEAD.
    let r = request(
        gw.addr,
        "GET",
        &format!("/stream/{ih}/0"),
        &[("Range", &format!("bytes={}-", LEN + 10))],
        b"",
    );
    assert_eq!(r.status, 416);
    assert_eq!(gw.get(&format!("/stream/{ih}/7")).status, 404);
    let r = request(gw.addr, "HEAD", &format!("/stream/{ih}/0"), &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Accept-Ranges"), Some("bytes"));

    // Listed, then removed (its cache with it).
    let list = gw.get("/api/torrents").json();
    assert_eq!(list["torrents"].as_array().unwrap().len(), 1);
    let r = request(gw.addr, "DELETE", &format!("/api/torrents/{ih}"), &[], b"");
    assert_eq!(r.status, 204);
    assert_eq!(gw.get(&format!("/stream/{ih}/0")).status, 404);
    assert!(!gw.data.join("cache").join(&ih).exists());
}

#[test]
fn bad_fetch_requests_get_clear_statuses() {
    let dir = tempdir();
    let gw = Server::start(
        &dir.path().join("gw"),
        "[fetch]\nwait_secs = 2\nmax_torrents = 2\n",
    );
    let r = request(
        gw.addr,
        "POST",
        "/api/torrents",
        &[],
        b"magnet:?xt=urn:btih:nothex",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("magnet"), "{}", r.text());
    let r = request(gw.addr, "POST", "/api/torrents", &[], b"d4:spam3:egge");
    assert_eq!(r.status, 400, "{}", r.text());
    // A torrent whose file path climbs out with `..`: refused before anything is created.
    let evil: &[u8] = b"d4:infod5:filesld6:lengthi5e4:pathl2:..4:evileee4:name3:top\
        12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaaee";
    let r = request(gw.addr, "POST", "/api/torrents", &[], evil);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains(".."), "{}", r.text());
    assert!(!gw.data.join("evil").exists() && !gw.data.join("cache/evil").exists());
    assert_eq!(
        gw.get("/api/torrents").json()["torrents"],
        serde_json::json!([])
    );
    // An info-hash nobody has: accepted, waits for metadata; a stream waits the configured
    // 2 s (not less, and boundedly more) and gets 504 with the reason.
    let ih = "0123456789abcdef0123456789abcdef01234567";
    let r = request(gw.addr, "POST", "/api/torrents", &[], ih.as_bytes());
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(
        gw.get(&format!("/api/torrents/{ih}")).json()["state"],
        "metadata"
    );
    let errors = || {
        gw.get("/api/stats").json()["requests"]["5xx"]
            .as_u64()
            .unwrap()
    };
    let before = errors();
    let t0 = std::time::Instant::now();
    let r = gw.get(&format!("/stream/{ih}/0"));
    let took = t0.elapsed();
    assert_eq!(r.status, 504, "{}", r.text());
    // The deferred 504 counts among the 5xx like any other (not as its placeholder 200).
    assert_eq!(errors(), before + 1);
    assert!(r.text().contains("metadata"), "{}", r.text());
    assert!(
        took >= std::time::Duration::from_secs(2) && took < std::time::Duration::from_secs(10),
        "{took:?}"
    );
    // Still listed, with its state.
    let list = gw.get("/api/torrents").json();
    assert_eq!(list["torrents"][0]["info_hash"], ih);
    assert_eq!(list["torrents"][0]["state"], "metadata");
    assert_eq!(gw.get("/stream/zz/0").status, 400);
    assert_eq!(
        gw.get("/stream/89abcdef0123456789abcdef0123456789abcdef/0")
            .status,
        404
    );
    // Past fetch.max_torrents (2): 429 with the reason; the same one again is fine.
    let second = "1123456789abcdef0123456789abcdef01234567";
    let third = "2123456789abcdef0123456789abcdef01234567";
    assert_eq!(
        request(gw.addr, "POST", "/api/torrents", &[], second.as_bytes()).status,
        202
    );
    let r = request(gw.addr, "POST", "/api/torrents", &[], third.as_bytes());
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.text().contains("fetch.max_torrents"), "{}", r.text());
    assert_eq!(
        request(gw.addr, "POST", "/api/torrents", &[], ih.as_bytes()).status,
        202
    );
    // Pinning something unknown is a 404; deleting frees a place.
    let r = request(
        gw.addr,
        "POST",
        &format!("/api/torrents/{third}/pin"),
        &[],
        b"",
    );
    assert_eq!(r.status, 404, "{}", r.text());
    let r = request(
        gw.addr,
        "DELETE",
        &format!("/api/torrents/{second}"),
        &[],
        b"",
    );
    assert_eq!(r.status, 204);
    let r = request(gw.addr, "POST", "/api/torrents", &[], third.as_bytes());
    assert_eq!(r.status, 202, "{}", r.text());
}
