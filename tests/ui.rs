//! The web UI in real browsers against a gateway on a free port: Debian's chromium driven by
//! playwright-core (tests/js/ui.mjs: health score, drag-and-drop upload with a progress bar,
//! the row's size, copy magnet, delete, phone width) and Debian's firefox-esr driven by
//! puppeteer-core over WebDriver BiDi (tests/js/ui_firefox.mjs: health score, upload, the
//! row); screenshots go to target/ui-screenshots. Plus the UI's HTTP rules: a foreign Host gets no page, a browser's
//! write without the CSRF header is refused, assets carry the CSP and revalidate by ETag.

mod support;

use sha2::{Digest, Sha256};
use support::server::{request, Server};
use support::*;

#[test]
fn the_ui_in_chromium_uploads_copies_and_deletes() {
    require_tool("chromium");
    let tmp = tempdir();
    let server = Server::start(&tmp.path().join("data"), "");
    let file = write_file(tmp.path(), "holiday clip.bin", 3_000_000, 9);
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots");
    let base = format!("http://{}", server.addr);
    let result = support::nostr::node(
        "ui.mjs",
        &[&base, file.to_str().unwrap(), out.to_str().unwrap()],
        b"",
    );
    let r: serde_json::Value = serde_json::from_str(result.trim()).unwrap();
    let health = server.get("/api/health").json();
    assert_eq!(r["score"], health["score"], "{r}");
    assert_eq!(r["saw_progress"], true, "{r}");
    assert_eq!(r["row_size"], "3.00 MB", "{r}");
    let d = &r["descriptor"];
    let want_sha =
        torrent_gateway::proto::hex::encode(&Sha256::digest(std::fs::read(&file).unwrap()));
    assert_eq!(d["sha256"], want_sha.as_str(), "{r}");
    assert_eq!(d["size"], 3_000_000, "{r}");
    assert!(d["magnet"]
        .as_str()
        .unwrap()
        .starts_with("magnet:?xt=urn:btih:"));
    assert_eq!(r["copied"], d["magnet"], "{r}");
    assert_eq!(r["gone"], true, "{r}");
    assert!(
        r["phone_overflow"].as_i64().unwrap() <= 0,
        "horizontal scroll at phone width: {r}"
    );
    assert_eq!(r["errors"], serde_json::json!([]), "{r}");
    assert_eq!(
        server.get("/api/files").json()["files"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    for shot in ["dashboard.png", "files.png", "dashboard-phone.png"] {
        let png = std::fs::read(out.join(shot)).unwrap();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{shot}");
    }
}

#[test]
fn the_ui_works_in_firefox() {
    require_tool("firefox-esr");
    let tmp = tempdir();
    let server = Server::start(&tmp.path().join("data"), "");
    let file = write_file(tmp.path(), "firefox.bin", 1_500_000, 4);
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots");
    let base = format!("http://{}", server.addr);
    let result = support::nostr::node(
        "ui_firefox.mjs",
        &[&base, file.to_str().unwrap(), out.to_str().unwrap()],
        b"",
    );
    let r: serde_json::Value = serde_json::from_str(result.trim()).unwrap();
    assert_eq!(r["score"], server.get("/api/health").json()["score"], "{r}");
    assert_eq!(r["row_size"], "1.50 MB", "{r}");
    assert_eq!(r["errors"], serde_json::json!([]), "{r}");
    let files = server.get("/api/files").json();
    assert_eq!(files["files"][0]["size"], 1_500_000);
}

#[test]
fn ui_pages_need_our_host_and_browser_writes_need_the_csrf_header() {
    let tmp = tempdir();
    let server = Server::start(&tmp.path().join("data"), "");
    let page = request(server.addr, "GET", "/", &[("Host", "localhost")], b"");
    assert_eq!(page.status, 200);
    let csp = page.header("Content-Security-Policy").unwrap();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(page.text().contains("/ui/app.js"));
    let etag = page.header("ETag").unwrap().to_string();
    let again = request(
        server.addr,
        "GET",
        "/",
        &[("Host", "localhost"), ("If-None-Match", &etag)],
        b"",
    );
    assert_eq!(again.status, 304);
    let js = request(
        server.addr,
        "GET",
        "/ui/app.js",
        &[("Host", "127.0.0.1")],
        b"",
    );
    assert_eq!(js.status, 200);
    assert!(js
        .header("Content-Type")
        .unwrap()
        .starts_with("text/javascript"));
    // A DNS-rebinding name gets no page.
    let foreign = request(server.addr, "GET", "/", &[("Host", "evil.example")], b"");
    assert_eq!(foreign.status, 421, "{}", foreign.text());
    // A browser write (it sends Origin / Sec-Fetch-Site) without the header is refused...
    let own_origin = format!("http://{}", server.addr);
    let headers = [
        ("Host", "localhost"),
        ("Origin", own_origin.as_str()),
        ("Sec-Fetch-Site", "same-origin"),
    ];
    let r = request(server.addr, "PUT", "/api/files/a.bin", &headers, b"data");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.header("X-Reason").unwrap().contains("X-TG-Request"));
    // ...with it, from our own origin, it is allowed (loopback trust).
    let mut with = headers.to_vec();
    with[1] = ("Origin", "http://localhost");
    with.push(("X-TG-Request", "1"));
    let r = request(server.addr, "PUT", "/api/files/a.bin", &with, b"data");
    assert_eq!(r.status, 201, "{}", r.text());
    // Scripts (no Origin) still write without it.
    let r = request(
        server.addr,
        "PUT",
        "/api/files/b.bin",
        &[("Host", "localhost")],
        b"other",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    // The probes and the bulk endpoints the UI reads.
    assert_eq!(server.get("/livez").text(), "ok\n");
    let ready = server.get("/readyz");
    assert_eq!((ready.status, ready.text().as_str()), (200, "ready\n"));
    let o = server.get("/api/overview").json();
    assert_eq!(o["stats"]["files"]["total"], 2);
    assert!(!o["history"]["samples"].as_array().unwrap().is_empty());
    assert!(o["health"]["score"].as_u64().unwrap() > 0);
    let cfg = server.get("/api/config").json();
    assert_eq!(cfg["api"]["header_timeout_secs"], 10);
}
