//! `POST /api/torrents` with an http(s) URL of a .torrent, against real servers on
//! 127.0.0.1: gateway A stores a file and serves its .torrent; gateway B is given only that
//! URL, fetches it (off the worker, bounded), joins the swarm (A's tracker and webseed) and
//! streams the file byte-identical (several ranges with curl: the whole file, 200). Bad URLs get 400, a refused private address 400 (A keeps
//! the default guard), and an unreachable origin, an error status, an answer that is not a
//! torrent or one over 16 MiB a 502, each with its reason; none of them adds a torrent. A
//! client that hangs up while a slow origin trickles the answer cancels the fetch (the origin
//! sees its connection closed, nothing is added). The `download` command fetches a .torrent
//! URL through the same client.

mod support;

use support::server::{request, upload, Server};
use support::{bytes, tempdir};

fn post(gw: &Server, body: &str) -> support::server::Resp {
    request(gw.addr, "POST", "/api/torrents", &[], body.as_bytes())
}

fn assert_refused(gw: &Server, url: &str, status: u16, reason: &str) {
    let r = post(gw, url);
    assert_eq!(r.status, status, "{url}: {}", r.text());
    let why = r.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(why.contains(reason), "{url}: {why:?} lacks {reason:?}");
}

#[test]
fn a_torrent_url_is_fetched_and_streamed() {
    let dir = tempdir();
    let a = Server::start(&dir.path().join("a"), "");
    let b = Server::start(
        &dir.path().join("b"),
        "[fetch]\nurl_allow_private = true\nurl_timeout_secs = 10\n",
    );
    let len = (3 << 20) + 4321;
    let data = bytes(len, 11);
    let desc = upload(&a, "show.bin", &data);
    let sha = desc["sha256"].as_str().unwrap();
    let ih = desc["info_hash"].as_str().unwrap();
    let url = format!("http://{}/api/files/{sha}/torrent", a.addr);

    let r = post(&b, &url);
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    assert_eq!(v["info_hash"], ih, "{v}");
    assert_eq!(v["name"], "show.bin");
    assert_eq!(v["files"][0]["length"], len);
    // The same URL again is the same torrent.
    assert_eq!(post(&b, &url).status, 201);
    assert_eq!(
        b.get("/api/torrents").json()["torrents"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Streamed from A's swarm (its webseed and tracker are in the torrent).
    let from = len - 100_000;
    let r = request(
        b.addr,
        "GET",
        &format!("/stream/{ih}/0"),
        &[("Range", &format!("bytes={from}-"))],
        b"",
    );
    assert_eq!(r.status, 206, "{}", r.text());
    assert!(r.body == data[from..], "the streamed range differs");
    let r = b.get(&format!("/stream/{ih}/show.bin"));
    assert_eq!(r.status, 200);
    assert!(r.body == data, "the streamed file differs");
    // Several disjoint ranges (curl -r) of a fetched stream: the whole file with 200.
    let out = dir.path().join("curl.out");
    let o = std::process::Command::new(support::require_tool("curl"))
        .args(["-s", "-r", "0-9,100-109", "-w", "%{http_code}", "-o"])
        .arg(&out)
        .arg(format!("http://{}/stream/{ih}/0", b.addr))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "200", "{o:?}");
    assert!(
        std::fs::read(&out).unwrap() == data,
        "curl -r: not the whole file"
    );

    // Bad URLs and failing origins: clear statuses, nothing added.
    assert_refused(&b, "http://", 400, "http");
    assert_refused(&b, "https://user:pw@example.com/x.torrent", 400, "http");
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    assert_refused(&b, &format!("http://{closed}/x.torrent"), 502, "fetching");
    assert_refused(
        &b,
        &format!("http://{}/api/files/{}/torrent", a.addr, "0".repeat(64)),
        502,
        "404",
    );
    assert_refused(
        &b,
        &format!("http://{}/download/{sha}", a.addr),
        502,
        "not a torrent",
    );
    let big = upload(&a, "big.bin", &bytes((16 << 20) + 1, 12));
    assert_refused(
        &b,
        &format!(
            "http://{}/download/{}",
            a.addr,
            big["sha256"].as_str().unwrap()
        ),
        502,
        "larger than 16 MiB",
    );
    assert_eq!(
        b.get("/api/torrents").json()["torrents"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // A keeps the default guard: a loopback URL is refused before any connection.
    assert_refused(&a, &url, 400, "loopback");
    assert_eq!(
        a.get("/api/torrents").json()["torrents"],
        serde_json::json!([])
    );
}

#[test]
fn the_download_command_takes_a_torrent_url_too() {
    let dir = tempdir();
    let a = Server::start(&dir.path().join("a"), "");
    let data = bytes((1 << 20) + 99, 13);
    let desc = upload(&a, "tiny.bin", &data);
    let url = format!(
        "http://{}/api/files/{}/torrent",
        a.addr,
        desc["sha256"].as_str().unwrap()
    );
    let out = dir.path().join("out");
    let done = support::client::download(
        dir.path(),
        &[
            &url,
            "-o",
            out.to_str().unwrap(),
            "--timeout",
            "60",
            "--json",
        ],
        90,
    );
    done.assert_complete();
    assert!(std::fs::read(out.join("tiny.bin")).unwrap() == data);
    // A URL that answers with something else: a clear error, exit code 1.
    let bad = format!(
        "http://{}/download/{}",
        a.addr,
        desc["sha256"].as_str().unwrap()
    );
    let o = support::run(dir.path(), &["download", &bad, "-o", out.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        support::stderr(&o).contains("bad torrent file"),
        "{}",
        support::stderr(&o)
    );
}

#[test]
fn a_fetched_html_file_goes_out_as_an_attachment_and_text_inline() {
    let dir = tempdir();
    let a = Server::start(&dir.path().join("a"), "");
    let b = Server::start(&dir.path().join("b"), "[fetch]\nurl_allow_private = true\n");
    let page = b"<html><script>alert(document.cookie)</script></html>".to_vec();
    for (name, body, content_type, how) in [
        ("page.html", page, "application/octet-stream", "attachment"),
        ("notes.txt", b"plain words".to_vec(), "text/plain", "inline"),
    ] {
        let desc = upload(&a, name, &body);
        let sha = desc["sha256"].as_str().unwrap();
        let ih = desc["info_hash"].as_str().unwrap();
        let r = post(&b, &format!("http://{}/api/files/{sha}/torrent", a.addr));
        assert_eq!(r.status, 201, "{}", r.text());
        let r = b.get(&format!("/stream/{ih}/0"));
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        assert!(r.body == body, "{name}: bytes differ");
        let ct = r.header("content-type").unwrap_or_default();
        assert!(ct.starts_with(content_type), "{name}: {ct}");
        let cd = r.header("content-disposition").unwrap_or_default();
        assert!(cd.starts_with(how) && cd.contains(name), "{name}: {cd}");
        assert_eq!(r.header("content-security-policy"), Some("sandbox"));
    }
}

#[test]
fn a_client_that_hangs_up_cancels_its_url_fetch() {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    let dir = tempdir();
    // A long whole-fetch bound: only the hang-up can end this fetch early.
    let gw = Server::start(
        dir.path(),
        "[fetch]\nurl_allow_private = true\nurl_timeout_secs = 120\n",
    );
    // An origin that trickles a large answer, a byte every 20 ms, until its client goes.
    let origin = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/slow.torrent", origin.local_addr().unwrap());
    let (tx, rx) = mpsc::channel::<&'static str>();
    std::thread::spawn(move || {
        let (mut s, _) = origin.accept().unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && s.read(&mut b).unwrap_or(0) == 1 {
            head.push(b[0]);
        }
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nd8:announce")
            .unwrap();
        tx.send("answering").unwrap();
        while s.write_all(b"x").is_ok() {
            std::thread::sleep(Duration::from_millis(20));
        }
        tx.send("closed").unwrap();
    });
    let mut client = TcpStream::connect(gw.addr).unwrap();
    let req = format!(
        "POST /api/torrents HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n{url}",
        gw.addr,
        url.len()
    );
    client.write_all(req.as_bytes()).unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(20)).unwrap(),
        "answering"
    );
    let hung_up = Instant::now();
    client.shutdown(Shutdown::Both).unwrap();
    drop(client);
    // The gateway drops the origin within a read or two, not after 120 s.
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(30)),
        Ok("closed"),
        "the fetch went on after the client left"
    );
    assert!(hung_up.elapsed() < Duration::from_secs(30));
    // Nothing was added, and the fetch's place is free again: a bad URL gets its own answer.
    let list = gw.get("/api/torrents").json();
    assert_eq!(list["torrents"].as_array().unwrap().len(), 0, "{list}");
    assert_refused(
        &gw,
        "http://127.0.0.1:1/x.torrent",
        502,
        "fetching the .torrent",
    );
}
