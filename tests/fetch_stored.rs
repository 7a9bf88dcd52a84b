//! Stored files are first-class fetch-through sources: a file uploaded to the gateway (here
//! big enough to be stored as chunk files) is streamed by its info-hash from
//! `/stream/<ih>/<file>` straight from the store, with ranges across chunk boundaries,
//! suffixes, If-Range and 416, several ranges with curl (merged, or the whole file with
//! 200), byte-identical, and without any swarm traffic: no
//! fetch-through torrent is created, `POST /api/torrents` of its info-hash (or magnet)
//! answers it as complete, and the peer wire counters show no download and no dial.

mod support;

use support::server::{request, upload, Server};
use support::{bytes, tempdir};

/// `curl -r <ranges>`: the status and the body.
fn curl(url: &str, ranges: &str) -> (String, Vec<u8>) {
    let out = tempdir();
    let file = out.path().join("body");
    let o = std::process::Command::new(support::require_tool("curl"))
        .args(["-s", "-r", ranges, "-w", "%{http_code}", "-o"])
        .arg(&file)
        .arg(url)
        .output()
        .unwrap();
    assert!(o.status.success(), "curl {url}: {o:?}");
    let code = String::from_utf8_lossy(&o.stdout).to_string();
    (code, std::fs::read(&file).unwrap_or_default())
}

/// Three and a bit 256 KiB chunks.
const LEN: usize = 3 * 262_144 + 1234;

#[test]
fn a_stored_file_streams_from_the_store_by_info_hash() {
    let dir = tempdir();
    let gw = Server::start(
        &dir.path().join("gw"),
        "[storage]\nblob_threshold_bytes = 100000\npiece_length_bytes = 262144\n",
    );
    let data = bytes(LEN, 7);
    let desc = upload(&gw, "clip.bin", &data);
    assert_eq!(desc["storage"], "chunked", "{desc}");
    let ih = desc["info_hash"].as_str().unwrap().to_string();
    let url = format!("/stream/{ih}/0");

    // A range across the first chunk boundary, by index and by name; a suffix; the whole.
    let (from, to) = (262_100usize, 262_199usize);
    for path in [url.clone(), format!("/stream/{ih}/clip.bin")] {
        let r = request(
            gw.addr,
            "GET",
            &path,
            &[("Range", &format!("bytes={from}-{to}"))],
            b"",
        );
        assert_eq!(r.status, 206, "{path}: {}", r.text());
        assert_eq!(r.body, &data[from..=to], "{path}");
        assert_eq!(
            r.header("Content-Range"),
            Some(format!("bytes {from}-{to}/{LEN}").as_str())
        );
        assert_eq!(r.header("Content-Security-Policy"), Some("sandbox"));
    }
    let r = request(gw.addr, "GET", &url, &[("Range", "bytes=-5000")], b"");
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &data[LEN - 5000..]);
    let r = gw.get(&url);
    assert_eq!(r.status, 200);
    assert!(r.body == data, "the streamed file differs");
    let etag = r.header("ETag").unwrap().to_string();

    // If-Range: our ETag keeps the range, another one gets the whole file.
    let r = request(
        gw.addr,
        "GET",
        &url,
        &[("Range", "bytes=10-19"), ("If-Range", &etag)],
        b"",
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &data[10..20]);
    let r = request(
        gw.addr,
        "GET",
        &url,
        &[("Range", "bytes=10-19"), ("If-Range", "\"stale\"")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), LEN);

    // Several ranges (curl -r): merged when they touch, else the whole file with 200.
    let full = format!("http://{}{url}", gw.addr);
    let (code, body) = curl(&full, "0-9,100-109");
    assert_eq!(code, "200");
    assert!(body == data, "several ranges: not the whole file");
    let (code, body) = curl(&full, "0-9,5-20");
    assert_eq!(code, "206");
    assert_eq!(body, &data[..21]);

    // Past the end, no such file.
    let r = request(
        gw.addr,
        "GET",
        &url,
        &[("Range", &format!("bytes={LEN}-"))],
        b"",
    );
    assert_eq!(r.status, 416);
    assert_eq!(
        r.header("Content-Range"),
        Some(format!("bytes */{LEN}").as_str())
    );
    assert_eq!(gw.get(&format!("/stream/{ih}/1")).status, 404);
    assert_eq!(gw.get(&format!("/stream/{ih}/other.bin")).status, 404);

    // POST of its info-hash or magnet: complete at once, streamed from the store.
    for body in [ih.clone(), format!("magnet:?xt=urn:btih:{ih}")] {
        let r = request(gw.addr, "POST", "/api/torrents", &[], body.as_bytes());
        assert_eq!(r.status, 201, "{}", r.text());
        let v = r.json();
        assert_eq!(v["state"], "stored", "{v}");
        assert_eq!(v["stats"]["complete"], true);
        assert_eq!(v["files"][0]["length"], LEN);
        assert!(v["stream_urls"][0].as_str().unwrap().ends_with(&url), "{v}");
    }
    let v = gw.get(&format!("/api/torrents/{ih}")).json();
    assert_eq!(v["state"], "stored", "{v}");
    assert_eq!(v["sha256"], desc["sha256"]);
    // It is not a fetched torrent: nothing listed, nothing cached, nothing deleted.
    assert_eq!(
        gw.get("/api/torrents").json()["torrents"],
        serde_json::json!([])
    );
    let r = request(gw.addr, "DELETE", &format!("/api/torrents/{ih}"), &[], b"");
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(!gw.data.join("cache").join(&ih).exists());
    let stats = gw.get("/api/stats").json();
    assert_eq!(stats["fetch"]["torrents"], 0, "{}", stats["fetch"]);
    assert_eq!(stats["fetch"]["cache"]["misses"], 0, "{}", stats["fetch"]);

    // No swarm traffic: the peer wire never dialed, downloaded or started a download.
    let p2p = gw.get("/api/p2p/stats").json();
    assert_eq!(p2p["downloaded_bytes"], 0, "{p2p}");
    assert_eq!(p2p["dialed"], 0, "{p2p}");
    let downloading = p2p["torrents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["downloading"] == true || !t["downloaded_bytes"].is_null())
        .count();
    assert_eq!(downloading, 0, "{p2p}");
}
