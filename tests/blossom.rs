//! Blossom over real sockets with events signed by an independent implementation
//! (nostr-tools): upload, BUD-06 preflight, HEAD, GET with ranges, CORS, list with paging,
//! delete by owners, mirror from a loopback origin, reports, and every auth failure answered
//! 401 or 403 with an X-Reason. Also NIP-98 on the API and the mirror's SSRF guard.

mod support;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use support::nostr::{auth_header, blossom_auth, now, pubkey, sign};
use support::server::{request, Resp, Server};
use support::tracker::{eventually, free_port};
use support::{bytes, tempdir, Reaped};

const ALICE: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const BOB: &str = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2";
const MALLORY: &str = "3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c";

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn blossom(server: &Server) -> SocketAddr {
    server
        .blossom
        .expect("blossom address in the start-up line")
}

fn put_blob(server: &Server, auth: Option<&str>, ctype: &str, body: &[u8]) -> Resp {
    let mut headers = vec![("Content-Type", ctype)];
    if let Some(a) = auth {
        headers.push(("Authorization", a));
    }
    request(blossom(server), "PUT", "/upload", &headers, body)
}

/// An error with a reason, and CORS even then.
fn assert_refused(resp: &Resp, status: u16, what: &str) {
    assert_eq!(resp.status, status, "{what}: {}", resp.text());
    let reason = resp.header("X-Reason").unwrap_or("");
    assert!(!reason.is_empty(), "{what}: no X-Reason");
    assert_eq!(
        resp.header("Access-Control-Allow-Origin"),
        Some("*"),
        "{what}"
    );
}

fn tag<'a>(descriptor: &'a Value, name: &str) -> Option<&'a str> {
    descriptor["nip94"]
        .as_array()?
        .iter()
        .find(|t| t[0] == name)
        .and_then(|t| t[1].as_str())
}

/// A static-file HTTP origin on loopback (Python's http.server).
fn origin(dir: &std::path::Path) -> (Reaped, SocketAddr) {
    let port = free_port();
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 -m http.server");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    assert!(eventually(30, || std::net::TcpStream::connect(addr).is_ok()));
    (Reaped(child), addr)
}

#[test]
fn blossom_flows_with_an_independent_signer() {
    let dir = tempdir();
    let (alice, bob, mallory) = (pubkey(ALICE), pubkey(BOB), pubkey(MALLORY));
    let config = format!(
        "[blossom]\nupload_pubkeys = [\"{alice}\", \"{bob}\"]\nmirror_allow_private = true\n"
    );
    let server = Server::start(&dir.path().join("gw"), &config);
    let data = bytes(100_000, 1);
    let sha = sha256_hex(&data);
    let len = data.len().to_string();

    // BUD-06 preflight.
    let check = |auth: Option<String>| {
        let mut h = vec![
            ("X-SHA-256", sha.as_str()),
            ("X-Content-Length", len.as_str()),
            ("X-Content-Type", "text/plain"),
        ];
        if let Some(a) = &auth {
            h.push(("Authorization", a.as_str()));
        }
        request(blossom(&server), "HEAD", "/upload", &h, b"")
    };
    assert_eq!(
        check(Some(blossom_auth(ALICE, "upload", &[&sha]))).status,
        200
    );
    assert_refused(&check(None), 401, "preflight without auth");
    assert_refused(
        &check(Some(blossom_auth(MALLORY, "upload", &[&sha]))),
        403,
        "preflight by an unknown pubkey",
    );

    // Upload: 201, descriptor with BUD-08 nip94 tags and the torrent.
    let auth = blossom_auth(ALICE, "upload", &[&sha]);
    let resp = put_blob(&server, Some(&auth), "text/plain", &data);
    assert_eq!(resp.status, 201, "{}", resp.text());
    let d = resp.json();
    assert_eq!(d["sha256"], sha.as_str());
    assert_eq!(d["size"], 100_000);
    assert_eq!(d["type"], "text/plain");
    assert!(d["uploaded"].as_i64().unwrap() > 1_600_000_000);
    let url = d["url"].as_str().unwrap();
    assert_eq!(url, format!("http://{}/{sha}.txt", blossom(&server)));
    for name in ["url", "m", "x", "size", "magnet", "i"] {
        assert!(tag(&d, name).is_some(), "nip94 lacks {name}: {d}");
    }
    let info_hash = tag(&d, "i").unwrap();
    assert_eq!(tag(&d, "x"), Some(sha.as_str()));
    assert!(tag(&d, "magnet")
        .unwrap()
        .contains(&format!("btih:{info_hash}")));
    assert_eq!(d["infohash"], info_hash);
    // The API sees the same file (and its torrent).
    assert_eq!(
        server.get(&format!("/api/files/{sha}")).json()["info_hash"],
        info_hash
    );
    // Bob uploads the same bytes: 200, and he owns it too.
    let resp = put_blob(
        &server,
        Some(&blossom_auth(BOB, "upload", &[&sha])),
        "text/plain",
        &data,
    );
    assert_eq!(resp.status, 200, "{}", resp.text());

    // HEAD and GET with ranges, with and without the extension; CORS everywhere.
    let b = blossom(&server);
    let head = request(b, "HEAD", &format!("/{sha}.txt"), &[], b"");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("Content-Length"), Some("100000"));
    assert_eq!(head.header("Content-Type"), Some("text/plain"));
    assert_eq!(head.header("Access-Control-Allow-Origin"), Some("*"));
    let full = request(b, "GET", &format!("/{sha}"), &[], b"");
    assert!(full.status == 200 && full.body == data);
    let part = request(
        b,
        "GET",
        &format!("/{sha}.txt"),
        &[("Range", "bytes=10-19")],
        b"",
    );
    assert_eq!(part.status, 206);
    assert_eq!(part.body, &data[10..20]);
    assert_eq!(part.header("Content-Range"), Some("bytes 10-19/100000"));
    let tail = request(
        b,
        "GET",
        &format!("/{sha}.bin"),
        &[("Range", "bytes=-5")],
        b"",
    );
    assert_eq!(tail.body, &data[data.len() - 5..]);
    assert_refused(
        &request(
            b,
            "GET",
            &format!("/{sha}"),
            &[("Range", "bytes=200000-")],
            b"",
        ),
        416,
        "range past the end",
    );
    assert_refused(
        &request(b, "GET", &format!("/{}", "0".repeat(64)), &[], b""),
        404,
        "missing",
    );
    assert_refused(&request(b, "GET", "/not-a-hash", &[], b""), 400, "bad path");
    let pre = request(
        b,
        "OPTIONS",
        "/upload",
        &[
            ("Origin", "https://app.example"),
            ("Access-Control-Request-Method", "PUT"),
        ],
        b"",
    );
    assert_eq!(pre.status, 204);
    assert!(pre
        .header("Access-Control-Allow-Methods")
        .unwrap()
        .contains("PUT"));
    assert!(pre
        .header("Access-Control-Allow-Headers")
        .unwrap()
        .contains("Authorization"));
    assert_eq!(pre.header("Access-Control-Allow-Origin"), Some("*"));

    // Auth failures, each with a reason.
    let other = bytes(5000, 2);
    let other_sha = sha256_hex(&other);
    let exp = (now() + 600).to_string();
    let signed = |secret: &str, created_at: i64, tags: Value| {
        auth_header(&sign(secret, 24242, created_at, &tags, "upload"))
    };
    let expired = signed(
        ALICE,
        now() - 100,
        json!([
            ["t", "upload"],
            ["x", other_sha],
            ["expiration", (now() - 10).to_string()]
        ]),
    );
    let wrong_t = signed(
        ALICE,
        now(),
        json!([["t", "delete"], ["x", other_sha], ["expiration", exp]]),
    );
    let wrong_x = signed(
        ALICE,
        now(),
        json!([["t", "upload"], ["x", sha], ["expiration", exp]]),
    );
    let future = signed(
        ALICE,
        now() + 3600,
        json!([
            ["t", "upload"],
            ["x", other_sha],
            ["expiration", (now() + 7200).to_string()]
        ]),
    );
    let other_server = signed(
        ALICE,
        now(),
        json!([
            ["t", "upload"],
            ["x", other_sha],
            ["expiration", exp],
            ["server", "cdn.example.com"]
        ]),
    );
    let mut tampered = sign(
        ALICE,
        24242,
        now(),
        &json!([["t", "upload"], ["x", other_sha], ["expiration", exp]]),
        "upload",
    );
    let sig = tampered["sig"].as_str().unwrap().to_string();
    let flipped = if sig.starts_with('0') { "1" } else { "0" };
    tampered["sig"] = json!(format!("{flipped}{}", &sig[1..]));
    let bad_sig = auth_header(&tampered);
    let unknown = blossom_auth(MALLORY, "upload", &[&other_sha]);
    for (auth, status, what) in [
        (expired, 401, "expired"),
        (wrong_t, 401, "wrong t"),
        (wrong_x, 401, "wrong x"),
        (future, 401, "future created_at"),
        (other_server, 401, "other server"),
        (bad_sig, 401, "bad signature"),
        (unknown, 403, "unknown pubkey"),
        ("Nostr not-base64!".to_string(), 401, "garbage"),
    ] {
        assert_refused(
            &put_blob(&server, Some(&auth), "text/plain", &other),
            status,
            what,
        );
    }
    assert_refused(
        &put_blob(&server, None, "text/plain", &other),
        401,
        "no auth",
    );
    assert_eq!(
        server.get(&format!("/api/files/{other_sha}")).status,
        404,
        "nothing stored"
    );
    // URL-safe base64 without padding is accepted too.
    let std_auth = blossom_auth(ALICE, "upload", &[&other_sha]);
    let url_safe = std_auth
        .replace('+', "-")
        .replace('/', "_")
        .trim_end_matches('=')
        .to_string();
    let resp = put_blob(&server, Some(&url_safe), "application/pdf", &other);
    assert_eq!(resp.status, 201, "{}", resp.text());
    assert!(resp.json()["url"].as_str().unwrap().ends_with(".pdf"));
    // X-SHA-256 that disagrees with the body: 409.
    let third = bytes(3000, 3);
    let third_sha = sha256_hex(&third);
    let r = request(
        b,
        "PUT",
        "/upload",
        &[
            ("Authorization", &blossom_auth(ALICE, "upload", &[&sha])),
            ("X-SHA-256", &sha),
        ],
        &third,
    );
    assert_refused(&r, 409, "X-SHA-256 mismatch");
    let r = request(
        b,
        "PUT",
        "/upload",
        &[
            (
                "Authorization",
                &blossom_auth(ALICE, "upload", &[&third_sha]),
            ),
            ("Content-Length", "99999999999999"),
        ],
        b"",
    );
    assert_refused(&r, 413, "over the cap");

    // List, newest first, paged with a cursor.
    let list = request(b, "GET", &format!("/list/{alice}"), &[], b"").json();
    let shas: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["sha256"].as_str().unwrap())
        .collect();
    assert_eq!(shas.len(), 2, "{list}");
    assert!(shas.contains(&sha.as_str()) && shas.contains(&other_sha.as_str()));
    let page1 = request(b, "GET", &format!("/list/{alice}?limit=1"), &[], b"").json();
    let first = page1[0]["sha256"].as_str().unwrap().to_string();
    let page2 = request(
        b,
        "GET",
        &format!("/list/{alice}?limit=1&cursor={first}"),
        &[],
        b"",
    )
    .json();
    assert_eq!(page2.as_array().unwrap().len(), 1);
    assert_ne!(page2[0]["sha256"].as_str().unwrap(), first);
    let npub_list = request(
        b,
        "GET",
        &format!("/list/{}", torrent_gateway::proto::nostr::npub(&bob)),
        &[],
        b"",
    )
    .json();
    assert_eq!(npub_list.as_array().unwrap().len(), 1);
    assert_refused(&request(b, "GET", "/list/xyz", &[], b""), 400, "bad pubkey");

    // Delete: owners only; the data goes with the last owner; seeding stops.
    let del = |secret: &str, x: &str| {
        request(
            b,
            "DELETE",
            &format!("/{sha}"),
            &[("Authorization", &blossom_auth(secret, "delete", &[x]))],
            b"",
        )
    };
    assert_refused(&del(MALLORY, &sha), 403, "delete by a non-owner");
    assert_refused(&del(ALICE, &other_sha), 401, "delete with the wrong x");
    assert_refused(
        &request(b, "DELETE", &format!("/{sha}"), &[], b""),
        401,
        "delete without auth",
    );
    let r = del(ALICE, &sha);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["data_removed"], false);
    assert_eq!(
        request(b, "GET", &format!("/{sha}"), &[], b"").status,
        200,
        "Bob still owns it"
    );
    let r = del(BOB, &sha);
    assert_eq!(r.json()["data_removed"], true);
    assert_eq!(request(b, "GET", &format!("/{sha}"), &[], b"").status, 404);
    assert_eq!(server.get(&format!("/api/files/{sha}")).status, 404);
    let announce = format!(
        "/announce?info_hash={}&peer_id=-XX0000-000000000000&port=6881&left=0",
        info_hash
            .as_bytes()
            .chunks(2)
            .map(|c| format!("%{}", std::str::from_utf8(c).unwrap()))
            .collect::<String>()
    );
    assert!(
        server.get(&announce).text().contains("failure reason"),
        "tracker forgot it"
    );

    // Mirror from a loopback origin (allowed by the config), with the hash checked.
    let site = tempdir();
    let mirrored = bytes(70_000, 4);
    let mirrored_sha = sha256_hex(&mirrored);
    std::fs::write(site.path().join("m.bin"), &mirrored).unwrap();
    let (_origin, oaddr) = origin(site.path());
    let mirror = |auth: &str, url: &str| {
        request(
            b,
            "PUT",
            "/mirror",
            &[
                ("Authorization", auth),
                ("Content-Type", "application/json"),
            ],
            json!({ "url": url }).to_string().as_bytes(),
        )
    };
    let url = format!("http://{oaddr}/m.bin");
    let r = mirror(&blossom_auth(ALICE, "upload", &[&third_sha]), &url);
    assert_refused(&r, 409, "mirror of other bytes than x names");
    let r = mirror(&blossom_auth(ALICE, "upload", &[&mirrored_sha]), &url);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["sha256"], mirrored_sha.as_str());
    assert_eq!(
        request(b, "GET", &format!("/{mirrored_sha}"), &[], b"").body,
        mirrored
    );
    let r = mirror(
        &blossom_auth(ALICE, "upload", &[&mirrored_sha]),
        &format!("http://{oaddr}/missing"),
    );
    assert_refused(&r, 502, "origin 404");
    let r = mirror(
        &blossom_auth(ALICE, "upload", &[&mirrored_sha]),
        "ftp://x/y",
    );
    assert_refused(&r, 403, "not http");

    // The API's delete drops only the API's hold: Alice still owns the mirrored blob.
    let r = request(
        server.addr,
        "DELETE",
        &format!("/api/files/{mirrored_sha}"),
        &[],
        b"",
    );
    assert_eq!(r.json()["data_removed"], false, "{}", r.text());
    assert_eq!(
        request(b, "GET", &format!("/{mirrored_sha}"), &[], b"").status,
        200
    );

    // Reports (BUD-09): stored and visible to operators.
    let report = sign(
        MALLORY,
        1984,
        now(),
        &json!([["x", mirrored_sha, "spam"], ["p", alice]]),
        "spam blob",
    );
    let r = request(b, "PUT", "/report", &[], report.to_string().as_bytes());
    assert_eq!(r.status, 201, "{}", r.text());
    let mut forged = report.clone();
    forged["content"] = json!("changed");
    assert_refused(
        &request(b, "PUT", "/report", &[], forged.to_string().as_bytes()),
        400,
        "forged report",
    );
    let not_report = sign(MALLORY, 1, now(), &json!([["x", mirrored_sha]]), "");
    assert_refused(
        &request(b, "PUT", "/report", &[], not_report.to_string().as_bytes()),
        400,
        "kind 1",
    );
    let elsewhere = sign(
        MALLORY,
        1984,
        now(),
        &json!([["x", "e".repeat(64), "spam"]]),
        "",
    );
    assert_refused(
        &request(b, "PUT", "/report", &[], elsewhere.to_string().as_bytes()),
        404,
        "report about a blob not stored here",
    );
    let reports = server.get("/api/blossom/reports").json();
    assert_eq!(reports[0]["reporter"], mallory.as_str());
    assert_eq!(reports[0]["blobs"][0], mirrored_sha.as_str());
    assert_eq!(reports[0]["type"], "spam");
    assert_eq!(
        server.get("/api/diagnostics").json()["blossom"]["reports"],
        1
    );
}

#[test]
fn nip98_writes_and_the_mirror_ssrf_guard() {
    let dir = tempdir();
    let alice = pubkey(ALICE);
    let config = format!("[api]\nloopback_writes = false\nnostr_pubkeys = [\"{alice}\"]\n");
    let server = Server::start(&dir.path().join("gw"), &config);
    let data = bytes(20_000, 5);
    let sha = sha256_hex(&data);
    let path = "/api/files/n.bin";
    let url = format!("http://{}{path}", server.addr);
    let nip98 = |secret: &str, method: &str, url: &str, created_at: i64| {
        auth_header(&sign(
            secret,
            27235,
            created_at,
            &json!([["u", url], ["method", method], ["payload", sha]]),
            "",
        ))
    };
    let put = |auth: Option<&str>| {
        let h: Vec<(&str, &str)> = auth.map(|a| vec![("Authorization", a)]).unwrap_or_default();
        request(server.addr, "PUT", path, &h, &data)
    };
    assert_refused_api(
        &put(None),
        401,
        "no auth from loopback with loopback_writes off",
    );
    assert_refused_api(
        &put(Some(&nip98(MALLORY, "PUT", &url, now()))),
        403,
        "unknown pubkey",
    );
    assert_refused_api(
        &put(Some(&nip98(ALICE, "DELETE", &url, now()))),
        401,
        "wrong method",
    );
    assert_refused_api(
        &put(Some(&nip98(ALICE, "PUT", &format!("{url}x"), now()))),
        401,
        "wrong url",
    );
    assert_refused_api(
        &put(Some(&nip98(ALICE, "PUT", &url, now() - 3600))),
        401,
        "stale",
    );
    let r = put(Some(&nip98(ALICE, "PUT", &url, now())));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["sha256"], sha.as_str());
    let del_url = format!("http://{}/api/files/{sha}", server.addr);
    let r = request(
        server.addr,
        "DELETE",
        &format!("/api/files/{sha}"),
        &[(
            "Authorization",
            &auth_header(&sign(
                ALICE,
                27235,
                now(),
                &json!([["u", del_url], ["method", "DELETE"]]),
                "",
            )),
        )],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());

    // Mirroring from loopback is refused by default.
    let r = request(
        blossom(&server),
        "PUT",
        "/mirror",
        &[("Authorization", &blossom_auth(ALICE, "upload", &[&sha]))],
        json!({ "url": format!("http://{}/download/{sha}", server.addr) })
            .to_string()
            .as_bytes(),
    );
    assert_refused(&r, 403, "mirror from loopback");
    assert!(
        r.header("X-Reason").unwrap().contains("loopback"),
        "{:?}",
        r.header("X-Reason")
    );
}

fn assert_refused_api(resp: &Resp, status: u16, what: &str) {
    assert_eq!(resp.status, status, "{what}: {}", resp.text());
    assert!(
        resp.header("X-Reason").is_some_and(|r| !r.is_empty()),
        "{what}"
    );
}
