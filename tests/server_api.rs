//! The gateway's HTTP API over real sockets: uploads and downloads of blobs and chunked files,
//! Range edge cases, listing, torrents, delete, operator endpoints, and bad input.

mod support;

use support::server::{files_under, raw_exchange, request, upload, Server};
use support::*;

/// Test config: small chunk threshold and pieces so chunking shows on small files.
const SMALL: &str = "[storage]\nblob_threshold_bytes = 100000\npiece_length_bytes = 16384\n\
                     [api]\nmax_upload_bytes = 1000000\n";

fn sha256_hex(data: &[u8]) -> String {
    torrent_gateway::proto::hex::encode(&torrent_gateway::hash::sha256(data))
}

#[test]
fn blob_and_chunked_round_trip_with_ranges() {
    let tmp = tempdir();
    let server = Server::start(&tmp.path().join("data"), SMALL);
    let blob = bytes(50_000, 11);
    // 7 chunks of 16 KiB, the last one short (100_003 = 6 * 16384 + 1699).
    let big = bytes(100_003, 12);
    for (name, data, storage) in [
        ("small.txt", &blob, "blob"),
        ("big file.bin", &big, "chunked"),
    ] {
        let enc = name.replace(' ', "%20");
        let r = server.put(&format!("/api/files/{enc}"), data);
        assert_eq!(r.status, 201, "{}", r.text());
        let d = r.json();
        let sha = sha256_hex(data);
        assert_eq!(d["sha256"], sha.as_str());
        assert_eq!(d["name"], name);
        assert_eq!(d["size"], data.len());
        assert_eq!(d["storage"], storage);
        assert!(d["magnet"]
            .as_str()
            .unwrap()
            .starts_with("magnet:?xt=urn:btih:"));
        for key in ["torrent_url", "webseed_url", "download_url"] {
            assert!(
                d[key].as_str().unwrap().starts_with("http://127.0.0.1:"),
                "{key}"
            );
        }
        if storage == "chunked" {
            let chunks = server.data.join("chunks").join(&sha);
            assert_eq!(std::fs::read_dir(&chunks).unwrap().count(), 7);
        }
        // Same content again: 200 and the existing record.
        let again = server.put(&format!("/api/files/{enc}"), data);
        assert_eq!(again.status, 200);
        assert_eq!(again.json()["created_at"], d["created_at"]);

        let dl = format!("/download/{sha}");
        let full = server.get(&dl);
        assert_eq!(full.status, 200);
        assert_eq!(&full.body, data);
        assert_eq!(full.header("Accept-Ranges"), Some("bytes"));
        let etag = full.header("ETag").unwrap().to_string();
        assert!(full
            .header("Content-Disposition")
            .unwrap()
            .contains("filename*=UTF-8''"));
        let len = data.len();
        let cases: Vec<(String, u16, std::ops::Range<usize>)> = vec![
            ("bytes=0-0".into(), 206, 0..1),
            (format!("bytes={}-{}", len - 1, len - 1), 206, len - 1..len),
            ("bytes=16380-16390".into(), 206, 16380..16391),
            ("bytes=-10".into(), 206, len - 10..len),
            ("bytes=5-".into(), 206, 5..len),
            (format!("bytes=0-{}", len + 100), 206, 0..len),
        ];
        for (range, status, want) in cases {
            let r = request(server.addr, "GET", &dl, &[("Range", &range)], b"");
            assert_eq!(r.status, status, "{range}");
            assert_eq!(r.body, &data[want.clone()], "{range}");
            let cr = format!("bytes {}-{}/{len}", want.start, want.end - 1);
            assert_eq!(r.header("Content-Range"), Some(cr.as_str()), "{range}");
        }
        for bad in [format!("bytes={len}-"), "bytes=-0".to_string()] {
            let r = request(server.addr, "GET", &dl, &[("Range", &bad)], b"");
            assert_eq!(r.status, 416, "{bad}");
            assert_eq!(
                r.header("Content-Range"),
                Some(format!("bytes */{len}").as_str())
            );
        }
        for malformed in ["bytes=abc", "bytes=9-3", "bytes="] {
            let r = request(server.addr, "GET", &dl, &[("Range", malformed)], b"");
            assert_eq!(r.status, 416, "{malformed}");
            assert_eq!(r.header("X-Reason"), Some("malformed Range header"));
        }
        let head = request(server.addr, "HEAD", &dl, &[], b"");
        assert_eq!(head.status, 200);
        assert_eq!(
            head.header("Content-Length"),
            Some(len.to_string().as_str())
        );
        let cached = request(server.addr, "GET", &dl, &[("If-None-Match", &etag)], b"");
        assert_eq!(cached.status, 304);
        assert!(cached.body.is_empty());

        // The torrent is ours: the info-hash matches and it points at our webseed.
        let t = server.get(&format!("/api/files/{sha}/torrent"));
        assert_eq!(t.status, 200);
        assert_eq!(t.header("Content-Type"), Some("application/x-bittorrent"));
        let m = torrent_gateway::proto::bt::metainfo::parse(&t.body).unwrap();
        assert_eq!(
            torrent_gateway::proto::hex::encode(&m.info_hash),
            d["info_hash"].as_str().unwrap()
        );
        assert_eq!(m.info.total_length(), len as u64);
        assert_eq!(
            m.url_list,
            vec![d["webseed_url"].as_str().unwrap().to_string()]
        );
        assert_eq!(
            m.announce.as_deref(),
            Some(format!("http://{}/announce", server.addr).as_str())
        );
        // The webseed serves the same bytes by info-hash and name.
        let ws = d["webseed_url"].as_str().unwrap();
        let ws_path = &ws[ws.find("/webseed/").unwrap()..];
        let r = request(
            server.addr,
            "GET",
            ws_path,
            &[("Range", "bytes=100-199")],
            b"",
        );
        assert_eq!(r.status, 206);
        assert_eq!(r.body, &data[100..200]);
        let r = server.get(&format!(
            "/webseed/{}/other-name",
            d["info_hash"].as_str().unwrap()
        ));
        assert_eq!(r.status, 404);
    }

    // Listing: newest first, paginated with a cursor.
    let page = server.get("/api/files?limit=1").json();
    assert_eq!(page["files"].as_array().unwrap().len(), 1);
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let rest = server
        .get(&format!("/api/files?limit=10&cursor={cursor}"))
        .json();
    let mut names: Vec<String> = page["files"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["files"].as_array().unwrap())
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["big file.bin", "small.txt"]);
    assert_eq!(rest["next_cursor"], serde_json::Value::Null);

    // Stats and metrics see it all.
    let stats = server.get("/api/stats").json();
    assert_eq!(stats["files"]["blob"]["count"], 1);
    assert_eq!(stats["files"]["chunked"]["count"], 1);
    assert!(stats["served"]["bytes"].as_u64().unwrap() > 150_000);
    let metrics = server.get("/metrics");
    assert!(
        metrics.text().contains("tg_files{storage=\"chunked\"} 1"),
        "{}",
        metrics.text()
    );
    assert!(metrics
        .text()
        .contains("# TYPE tg_http_accepted_total counter"));
    let health = server.get("/api/health").json();
    assert_eq!(health["score"], 100);
    assert_eq!(health["components"]["tracker"]["status"], "ok");
    assert_eq!(health["components"]["peer_wire"]["status"], "ok");
    // The test server's DHT node runs on loopback with no bootstrap nodes: an empty table.
    assert_eq!(health["components"]["dht"]["status"], "degraded");
    assert!(metrics.text().contains("# TYPE tg_p2p_connections gauge"));
    for path in ["/api/webseed/health", "/api/diagnostics"] {
        assert_eq!(server.get(path).status, 200, "{path}");
    }

    // Delete: gone from the API and from disk.
    let sha = sha256_hex(&big);
    let r = request(
        server.addr,
        "DELETE",
        &format!("/api/files/{sha}"),
        &[],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(server.get(&format!("/api/files/{sha}")).status, 404);
    assert_eq!(server.get(&format!("/download/{sha}")).status, 404);
    assert!(!server.data.join("chunks").join(&sha).exists());
    let r = request(
        server.addr,
        "DELETE",
        &format!("/api/files/{sha}"),
        &[],
        b"",
    );
    assert_eq!(r.status, 404);
}

#[test]
fn chunked_transfer_encoding_upload() {
    let tmp = tempdir();
    let server = Server::start(&tmp.path().join("data"), SMALL);
    let data = bytes(150_000, 13);
    let mut body = Vec::new();
    for part in data.chunks(40_000) {
        body.extend(format!("{:x}\r\n", part.len()).as_bytes());
        body.extend(part);
        body.extend(b"\r\n");
    }
    body.extend(b"0\r\n\r\n");
    let r = request(
        server.addr,
        "PUT",
        "/api/files/streamed.bin",
        &[("Transfer-Encoding", "chunked")],
        &body,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let d = r.json();
    assert_eq!(d["size"], 150_000);
    assert_eq!(d["storage"], "chunked", "split into chunks at the end");
    let back = server.get(&format!("/download/{}", d["sha256"].as_str().unwrap()));
    assert_eq!(back.body, data);
}

/// Asserts a 4xx with a reason and that nothing new is stored.
fn check_refused(server: &Server, r: &support::server::Resp, status: u16, reason: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    let got = r.header("X-Reason").unwrap_or_default();
    assert!(got.contains(reason), "{got:?} lacks {reason:?}");
    assert!(
        files_under(&server.data.join("tmp")).is_empty(),
        "tmp is empty"
    );
}

#[test]
fn bad_input_gets_clear_4xx_and_stores_nothing() {
    let tmp = tempdir();
    let server = Server::start(&tmp.path().join("data"), SMALL);
    let data = bytes(5_000, 14);
    let wrong = "0".repeat(64);
    let r = request(
        server.addr,
        "PUT",
        "/api/files/x.bin",
        &[("X-SHA-256", &wrong)],
        &data,
    );
    check_refused(&server, &r, 409, "X-SHA-256 is 0000");
    let r = request(
        server.addr,
        "PUT",
        "/api/files/x.bin",
        &[("X-SHA-256", "zz")],
        &data,
    );
    check_refused(&server, &r, 400, "64 hex");

    // Over the 1 MB cap: refused from the Content-Length alone, however large it claims to
    // be (the body is never read into an allocation of its declared size).
    for (declared, expect) in [
        ("5000000", "Expect: 100-continue\r\n"),
        ("99999999999999", ""),
        ("1000000000000", ""),
        ("18446744073709551615", ""),
    ] {
        let head = format!(
            "PUT /api/files/huge.bin HTTP/1.1\r\nHost: localhost\r\nContent-Length: {declared}\r\n\
             {expect}\r\nsome bytes"
        );
        let r = raw_exchange(server.addr, head.as_bytes(), true);
        check_refused(&server, &r, 413, "exceeds the limit");
    }

    for (path, reason) in [
        ("/api/files/a%2Fb", "separator"),
        ("/api/files/a/b", "must not contain '/'"),
        ("/api/files/..", "\"..\" component"),
        ("/api/files/a%00b", "separator or NUL"),
        ("/api/files/%zz", "bad percent escape"),
        ("/api/files/%FF", "not valid UTF-8"),
    ] {
        let r = server.put(path, &data);
        check_refused(&server, &r, 400, reason);
    }
    let long = format!("/api/files/{}", "n".repeat(10_000));
    check_refused(&server, &server.put(&long, &data), 400, "10000 bytes");
    check_refused(
        &server,
        &server.put("/api/files/empty", b""),
        400,
        "empty body",
    );

    let unknown = "ab".repeat(32);
    assert_eq!(server.get(&format!("/api/files/{unknown}")).status, 404);
    assert_eq!(server.get(&format!("/download/{unknown}")).status, 404);
    assert_eq!(
        server
            .get(&format!("/webseed/{}/x", "ab".repeat(20)))
            .status,
        404
    );
    assert_eq!(server.get("/download/not-a-hash").status, 400);
    assert_eq!(server.get("/webseed/xyz/x").status, 400);
    assert_eq!(server.get("/api/files?limit=0").status, 400);
    assert_eq!(server.get("/api/files?cursor=nonsense").status, 400);
    assert_eq!(server.get("/nowhere").status, 404);
    assert_eq!(
        request(server.addr, "POST", "/api/health", &[], b"").status,
        405
    );

    // A chunked body cut off in the middle of a chunk.
    let cut =
        b"PUT /api/files/cut.bin HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
                4000\r\nonly-a-few-bytes";
    let r = raw_exchange(server.addr, cut, true);
    check_refused(&server, &r, 400, "incomplete body");
    // A chunked body with a broken size line.
    let broken =
        b"PUT /api/files/cut.bin HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
                   zz\r\nabc\r\n0\r\n\r\n";
    let r = raw_exchange(server.addr, broken, true);
    check_refused(&server, &r, 400, "incomplete body");
    // A Content-Length body that ends early.
    let short =
        b"PUT /api/files/short.bin HTTP/1.1\r\nHost: localhost\r\nContent-Length: 20000\r\n\r\nabc";
    let r = raw_exchange(server.addr, short, true);
    check_refused(&server, &r, 400, "incomplete body");
    // No length at all.
    let r = raw_exchange(
        server.addr,
        b"PUT /api/files/nolen.bin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        true,
    );
    check_refused(&server, &r, 411, "Content-Length");

    let listed = server.get("/api/files").json();
    assert_eq!(
        listed["files"].as_array().unwrap().len(),
        0,
        "nothing was stored"
    );
    assert!(files_under(&server.data.join("blobs")).is_empty());
    assert!(files_under(&server.data.join("chunks")).is_empty());
    // The server is still fine.
    upload(&server, "ok.bin", &data);
}

#[test]
fn config_errors_print_config_and_sigterm() {
    let tmp = tempdir();
    let dir = tmp.path();
    let out = run_ok(dir, &["serve", "--print-config"]);
    assert!(out.contains("blob_threshold_bytes = 100000000"), "{out}");
    std::fs::write(dir.join("bad.toml"), "[api]\nworkerz = 2\n").unwrap();
    let o = run(dir, &["serve", "--config", "bad.toml"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("line 2: unknown field `workerz`"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let o = run(dir, &["serve", "--api-addr", "nowhere"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("`api.addr`"), "{}", stderr(&o));

    let server = Server::start(&dir.join("data"), "");
    upload(&server, "a.txt", b"hello world");
    assert_eq!(
        server.terminate(),
        Some(0),
        "SIGTERM exits 0 after a clean stop"
    );
}

#[test]
fn rate_limits_answer_429_with_retry_after() {
    let tmp = tempdir();
    let config = "[rate_limit]\nexempt_loopback = false\nread_per_sec = 1\nread_burst = 3\n";
    let server = Server::start(&tmp.path().join("data"), config);
    let statuses: Vec<u16> = (0..6).map(|_| server.get("/api/health").status).collect();
    assert_eq!(&statuses[..3], &[200, 200, 200], "{statuses:?}");
    let limited = server.get("/api/health");
    assert_eq!(limited.status, 429);
    assert!(
        limited
            .header("Retry-After")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert_eq!(limited.header("X-Reason"), Some("rate limit exceeded"));
}
