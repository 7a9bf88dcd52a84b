//! The security model over real sockets: stored bytes never run on our origins (sandbox CSP,
//! active types as attachments on the API port), loopback is trusted for writes only when
//! the request really is local (Host, Origin, no proxy, IPv4-mapped clients), BUD-11 tokens
//! have a bounded lifetime and a delete token works once, NIP-98 needs `payload` with a
//! body, and one process owns a data dir.

mod support;

use support::server::{request, upload, Resp, Server};
use support::tempdir;

fn assert_sandboxed(r: &Resp, what: &str) {
    assert_eq!(r.status, 200, "{what}: {}", r.text());
    assert_eq!(
        r.header("Content-Security-Policy"),
        Some("sandbox"),
        "{what}"
    );
    assert_eq!(
        r.header("X-Content-Type-Options"),
        Some("nosniff"),
        "{what}"
    );
}

#[test]
fn stored_active_content_is_sandboxed_and_an_attachment_on_the_api_port() {
    let tmp = tempdir();
    let server = Server::start(&tmp.path().join("data"), "[blossom]\nauth_upload = false\n");
    let blossom = server.blossom.expect("blossom address");
    let html = b"<html><script>fetch('/api/files/x',{method:'DELETE'})</script></html>";
    let up = request(
        blossom,
        "PUT",
        "/upload",
        &[("Content-Type", "text/html")],
        html,
    );
    assert_eq!(up.status, 201, "{}", up.text());
    let d = up.json();
    let sha = d["sha256"].as_str().unwrap();
    assert_eq!(
        d["type"], "text/html",
        "the descriptor keeps the declared type"
    );

    let api = server.get(&format!("/download/{sha}"));
    assert_sandboxed(&api, "API download of HTML");
    assert_eq!(api.body, html);
    assert_eq!(api.header("Content-Type"), Some("application/octet-stream"));
    let disposition = api.header("Content-Disposition").unwrap_or("");
    assert!(disposition.starts_with("attachment"), "{disposition}");

    let head = request(server.addr, "HEAD", &format!("/download/{sha}"), &[], b"");
    assert_sandboxed(&head, "API HEAD");
    assert_eq!(
        head.header("Content-Type"),
        Some("application/octet-stream")
    );

    let blob = request(blossom, "GET", &format!("/{sha}"), &[], b"");
    assert_sandboxed(&blob, "Blossom GET of HTML");
    assert_eq!(blob.header("Content-Type"), Some("text/html"));
    assert_eq!(blob.body, html);

    // SVG uploaded through the API, fetched through the webseed: the same rule.
    let svg = b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>";
    let d = upload(&server, "logo.svg", svg);
    assert_eq!(d["content_type"], "image/svg+xml");
    let ws = server.get(&format!(
        "/webseed/{}/logo.svg",
        d["info_hash"].as_str().unwrap()
    ));
    assert_sandboxed(&ws, "webseed of SVG");
    assert_eq!(ws.header("Content-Type"), Some("application/octet-stream"));
    assert!(ws
        .header("Content-Disposition")
        .is_some_and(|v| v.starts_with("attachment")));

    // Passive media keeps its type and shows inline, still sandboxed.
    let d = upload(&server, "pic.png", b"\x89PNG\r\n\x1a\nnot really");
    let png = server.get(&format!("/download/{}", d["sha256"].as_str().unwrap()));
    assert_sandboxed(&png, "PNG");
    assert_eq!(png.header("Content-Type"), Some("image/png"));
    assert!(png
        .header("Content-Disposition")
        .is_some_and(|v| v.starts_with("inline")));
    let ranged = request(
        server.addr,
        "GET",
        &format!("/download/{sha}"),
        &[("Range", "bytes=0-5")],
        b"",
    );
    assert_eq!(ranged.status, 206);
    assert_eq!(ranged.header("Content-Security-Policy"), Some("sandbox"));
}

fn put_with(server: &Server, name: &str, headers: &[(&str, &str)]) -> Resp {
    request(
        server.addr,
        "PUT",
        &format!("/api/files/{name}"),
        headers,
        b"some bytes",
    )
}

#[test]
fn loopback_writes_need_our_host_and_origin() {
    let tmp = tempdir();
    let server = Server::start(&tmp.path().join("data"), "");
    let port = server.addr.port().to_string();
    let evil_host = format!("evil.example:{port}");
    let local_origin = format!("http://{}", server.addr);
    // `request` sends Host: 127.0.0.1:<port>; a DNS-rebinding page sends its own name.
    for (headers, want, what) in [
        (vec![], 201, "plain loopback"),
        (vec![("Host", "localhost")], 200, "localhost"),
        (vec![("Host", evil_host.as_str())], 401, "rebinding Host"),
        (
            vec![("Origin", "http://evil.example")],
            401,
            "cross-site Origin",
        ),
        (vec![("Origin", "null")], 401, "sandboxed page"),
        (vec![("Origin", local_origin.as_str())], 200, "same origin"),
    ] {
        let mut all = headers.clone();
        let host = format!("{}", server.addr);
        if !headers.iter().any(|(k, _)| *k == "Host") {
            all.push(("Host", host.as_str()));
        }
        // Browser requests carry the UI's CSRF header, so the Origin rule is what decides.
        if headers.iter().any(|(k, _)| *k == "Origin") {
            all.push(("X-TG-Request", "1"));
        }
        let r = raw_put(&server, "a.txt", &all);
        assert_eq!(r.status, want, "{what}: {}", r.text());
        if want == 401 {
            assert!(
                r.header("X-Reason").is_some_and(|v| !v.is_empty()),
                "{what}"
            );
        }
    }
    let d = upload(&server, "b.txt", b"to delete");
    let sha = d["sha256"].as_str().unwrap();
    let del = raw_request(
        &server,
        "DELETE",
        &format!("/api/files/{sha}?purge=true"),
        &[("Host", &evil_host)],
    );
    assert_eq!(del.status, 401, "{}", del.text());
    assert_eq!(server.get(&format!("/api/files/{sha}")).status, 200);
}

#[test]
fn loopback_is_not_trusted_behind_a_proxy() {
    let tmp = tempdir();
    let server = Server::start(
        &tmp.path().join("data"),
        "[tracker]\nproxy_header = \"X-Forwarded-For\"\ntrusted_proxies = [\"127.0.0.1\"]\n",
    );
    let r = put_with(&server, "a.txt", &[]);
    assert_eq!(r.status, 401, "{}", r.text());
    let r = put_with(&server, "a.txt", &[("X-Forwarded-For", "127.0.0.1")]);
    assert_eq!(r.status, 401, "{}", r.text());
}

#[test]
fn ipv4_mapped_loopback_clients_are_loopback() {
    let tmp = tempdir();
    // An IPv6 socket bound to ::ffff:127.0.0.1 sees its (IPv4) clients as ::ffff:127.0.0.1,
    // as a dual-stack [::] listener does.
    let server = Server::start_at(
        &tmp.path().join("data"),
        "[tracker]\nudp = false\n",
        "[::ffff:127.0.0.1]:0",
    );
    assert!(server.addr.is_ipv6(), "{}", server.addr);
    let v4 = std::net::SocketAddr::from(([127, 0, 0, 1], server.addr.port()));
    let r = request(v4, "PUT", "/api/files/m.txt", &[], b"mapped");
    assert_eq!(r.status, 201, "{}", r.text());
}

/// A request with exactly these headers (no automatic Host).
fn raw_request(server: &Server, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    raw_with_body(server, method, path, headers, b"")
}

fn raw_put(server: &Server, name: &str, headers: &[(&str, &str)]) -> Resp {
    raw_with_body(
        server,
        "PUT",
        &format!("/api/files/{name}"),
        headers,
        b"some bytes",
    )
}

fn raw_with_body(
    server: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body);
    support::server::raw_exchange(server.addr, &raw, false)
}

/// `Authorization: Nostr ...` for an event signed by the library's signer (nostr-tools
/// agrees with it: tests/bip340.rs and tests/blossom.rs).
fn nostr_header(secret: u8, created_at: i64, kind: u32, tags: &[&[&str]], content: &str) -> String {
    let keys = torrent_gateway::proto::nostr::Keys::from_secret(&[secret; 32]).unwrap();
    let tags = tags
        .iter()
        .map(|t| t.iter().map(|s| s.to_string()).collect())
        .collect();
    let ev = keys.sign(created_at, kind, tags, content.to_string(), &[9u8; 32]);
    format!(
        "Nostr {}",
        torrent_gateway::proto::nostr::base64::encode(ev.to_json().as_bytes())
    )
}

fn pubkey_of(secret: u8) -> String {
    torrent_gateway::proto::nostr::Keys::from_secret(&[secret; 32])
        .unwrap()
        .pubkey
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn blossom_tokens_have_a_bounded_lifetime_and_a_delete_token_works_once() {
    let tmp = tempdir();
    let server = Server::start(&tmp.path().join("data"), "");
    let b = server.blossom.expect("blossom address");
    let now = torrent_gateway::catalog::now_secs();
    let blob = b"a blob with a short-lived token";
    let sha = sha256_hex(blob);
    let upload_token = |created: i64, expires: i64, note: &str| {
        nostr_header(
            1,
            created,
            24242,
            &[
                &["t", "upload"],
                &["x", &sha],
                &["expiration", &expires.to_string()],
            ],
            note,
        )
    };
    let put = |auth: &str| {
        request(
            b,
            "PUT",
            "/upload",
            &[("Authorization", auth), ("Content-Type", "text/plain")],
            blob,
        )
    };
    for (auth, what) in [
        (upload_token(now, now + 7200, "a"), "expires in two hours"),
        (upload_token(now, i64::MAX / 2, "b"), "never expires"),
        (
            upload_token(now - 7200, now + 600, "c"),
            "made two hours ago",
        ),
    ] {
        let r = put(&auth);
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        assert!(r.header("X-Reason").is_some(), "{what}");
    }
    let r = put(&upload_token(now - 5, now + 600, "d"));
    assert_eq!(r.status, 201, "{}", r.text());

    let delete_token = nostr_header(
        1,
        now,
        24242,
        &[
            &["t", "delete"],
            &["x", &sha],
            &["expiration", &(now + 600).to_string()],
        ],
        "delete",
    );
    let del = || {
        request(
            b,
            "DELETE",
            &format!("/{sha}"),
            &[("Authorization", &delete_token)],
            b"",
        )
    };
    let r = del();
    assert_eq!(r.status, 200, "{}", r.text());
    // Uploaded again by the same owner: the captured delete token must not work again.
    let r = put(&upload_token(now - 4, now + 600, "e"));
    assert_eq!(r.status, 201, "{}", r.text());
    let r = del();
    assert_eq!(r.status, 401, "a replayed delete token: {}", r.text());
    assert!(r.header("X-Reason").unwrap().contains("already used"));
    assert_eq!(request(b, "GET", &format!("/{sha}"), &[], b"").status, 200);
    // ... not even after a restart.
    let server = server.restart();
    let b = server.blossom.unwrap();
    let r = request(
        b,
        "DELETE",
        &format!("/{sha}"),
        &[("Authorization", &delete_token)],
        b"",
    );
    assert_eq!(r.status, 401, "replay after a restart: {}", r.text());
}

#[test]
fn nip98_with_a_body_needs_a_payload_tag() {
    let tmp = tempdir();
    let config = format!(
        "[api]\nloopback_writes = false\nnostr_pubkeys = [\"{}\"]\n",
        pubkey_of(2)
    );
    let server = Server::start(&tmp.path().join("data"), &config);
    let path = "/api/files/n98.txt";
    let url = format!("http://{}{path}", server.addr);
    let body = b"signed upload";
    let now = torrent_gateway::catalog::now_secs();
    let bare = nostr_header(2, now, 27235, &[&["u", &url], &["method", "PUT"]], "");
    let r = request(server.addr, "PUT", path, &[("Authorization", &bare)], body);
    assert_eq!(r.status, 401, "no payload tag: {}", r.text());
    assert!(r.header("X-Reason").unwrap().contains("payload"));
    let sha = sha256_hex(body);
    let tagged = nostr_header(
        2,
        now,
        27235,
        &[&["u", &url], &["method", "PUT"], &["payload", &sha]],
        "",
    );
    let r = request(
        server.addr,
        "PUT",
        path,
        &[("Authorization", &tagged)],
        body,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    // A bodiless DELETE needs no payload.
    let del_path = format!("/api/files/{sha}");
    let del_url = format!("http://{}{del_path}", server.addr);
    let del = nostr_header(
        2,
        now,
        27235,
        &[&["u", &del_url], &["method", "DELETE"]],
        "",
    );
    let r = request(
        server.addr,
        "DELETE",
        &del_path,
        &[("Authorization", &del)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn a_second_serve_on_the_same_data_dir_exits_with_one_line() {
    let tmp = tempdir();
    let data = tmp.path().join("data");
    let first = Server::start(&data, "");
    let upload = upload(&first, "kept.txt", b"the first process's file");
    let mut second = std::process::Command::new(support::bin())
        .args([
            "serve",
            "--api-addr",
            "127.0.0.1:0",
            "--peer-addr",
            "127.0.0.1:0",
            "--blossom-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&data)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Its stderr ends when it exits; a second process that started anyway is killed.
    let mut err = second.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut text);
        let _ = tx.send(text);
    });
    let stderr = match rx.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(text) => text,
        Err(_) => {
            let _ = second.kill();
            let _ = second.wait();
            panic!("a second serve on the same data dir kept running");
        }
    };
    let status = second.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    // The first one is untouched and still serves.
    let sha = upload["sha256"].as_str().unwrap();
    assert_eq!(first.get(&format!("/download/{sha}")).status, 200);
    // Once it is gone, the dir is free again.
    let again = first.restart();
    assert_eq!(again.get(&format!("/download/{sha}")).status, 200);
}
