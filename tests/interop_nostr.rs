//! The gateway against a real relay (PyPI `nostr-relay`, which verifies signatures): every
//! stored file becomes a kind 1063 event the relay accepts and returns for `#x`; events
//! queued while the relay is down (and across a gateway restart) arrive once it is back;
//! `OK false` answers land in /api/diagnostics. Events are checked with nostr-tools.

mod support;

use serde_json::{json, Value};
use support::nostr::{query, verify, Relay};
use support::server::{request, upload, Server};
use support::tracker::eventually;
use support::{bytes, tempdir};

fn config(relays: &[String]) -> String {
    let list: Vec<String> = relays.iter().map(|r| format!("\"{r}\"")).collect();
    format!(
        "[blossom]\nauth_upload = false\n[nostr]\nrelays = [{}]\nretry_min_secs = 1\n\
         retry_max_secs = 2\ntimeout_secs = 5\n",
        list.join(", ")
    )
}

fn events_for(relay: &Relay, sha: &str) -> Vec<Value> {
    query(&relay.url(), &json!({ "kinds": [1063], "#x": [sha] }))
}

fn tag<'a>(ev: &'a Value, name: &str) -> Option<&'a str> {
    ev["tags"]
        .as_array()?
        .iter()
        .find(|t| t[0] == name)
        .and_then(|t| t[1].as_str())
}

#[test]
fn relay_gets_every_stored_file_even_after_downtime_and_restart() {
    let dir = tempdir();
    let mut relay = Relay::start(&dir.path().join("relay"));
    let server = Server::start(&dir.path().join("gw"), &config(&[relay.url()]));
    let diag = server.get("/api/diagnostics").json();
    let gateway_key = diag["nostr"]["pubkey"].as_str().unwrap().to_string();
    assert!(diag["nostr"]["npub"].as_str().unwrap().starts_with("npub1"));
    // serve logs the key once all its listeners are up, which can be after the API answers.
    let npub = diag["nostr"]["npub"].as_str().unwrap();
    assert!(
        eventually(10, || server.log().contains(npub)),
        "npub printed"
    );

    // An API upload is announced.
    let a = bytes(30_000, 1);
    let d = upload(&server, "a.bin", &a);
    let sha_a = d["sha256"].as_str().unwrap().to_string();
    let mut events = Vec::new();
    assert!(
        eventually(30, || {
            events = events_for(&relay, &sha_a);
            !events.is_empty()
        }),
        "relay never got the event: {}\n{}",
        server.get("/api/diagnostics").text(),
        relay.log()
    );
    let ev = &events[0];
    assert_eq!(ev["kind"], 1063);
    assert_eq!(ev["pubkey"], gateway_key.as_str());
    assert_eq!(tag(ev, "x"), Some(sha_a.as_str()));
    assert_eq!(tag(ev, "size"), Some("30000"));
    assert_eq!(tag(ev, "i"), d["info_hash"].as_str());
    assert_eq!(tag(ev, "magnet"), d["magnet"].as_str());
    assert_eq!(tag(ev, "webseed"), d["webseed_url"].as_str());
    assert!(tag(ev, "url").unwrap().contains(&sha_a), "{ev}");
    assert_eq!(tag(ev, "m"), Some("application/octet-stream"));
    assert!(
        verify(&ev.to_string()),
        "nostr-tools rejects our event: {ev}"
    );

    // Relay down: a Blossom upload waits in the outbox (and the health says so).
    relay.stop();
    let b = bytes(20_000, 2);
    let blossom = server.blossom.unwrap();
    let r = request(
        blossom,
        "PUT",
        "/upload",
        &[("Content-Type", "image/png")],
        &b,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let sha_b = r.json()["sha256"].as_str().unwrap().to_string();
    assert!(
        eventually(30, || {
            let n = server.get("/api/diagnostics").json();
            n["nostr"]["outbox"][0]["last_error"].is_string()
        }),
        "{}",
        server.get("/api/diagnostics").text()
    );
    let health = server.get("/api/health").json();
    assert_eq!(
        health["components"]["nostr"]["status"], "degraded",
        "{health}"
    );

    // A gateway restart loses nothing; the relay comes back and gets the event.
    let server = server.restart();
    relay.start_again();
    let mut events = Vec::new();
    assert!(
        eventually(60, || {
            events = events_for(&relay, &sha_b);
            !events.is_empty()
        }),
        "queued event never arrived: {}",
        server.get("/api/diagnostics").text()
    );
    assert_eq!(tag(&events[0], "m"), Some("image/png"));
    assert!(tag(&events[0], "url")
        .unwrap()
        .ends_with(&format!("{sha_b}.png")));
    assert!(verify(&events[0].to_string()));
    assert!(eventually(30, || {
        server.get("/api/diagnostics").json()["nostr"]["outbox"]
            .as_array()
            .is_some_and(Vec::is_empty)
    }));
    assert_eq!(
        server.get("/api/health").json()["components"]["nostr"]["status"],
        "ok"
    );
}

#[test]
fn relay_rejections_are_kept_for_operators() {
    let dir = tempdir();
    // This relay takes only kind 1 notes: our kind 1063 gets `OK false`.
    let relay = Relay::start_with(&dir.path().join("relay"), Some(vec![1]));
    let server = Server::start(&dir.path().join("gw"), &config(&[relay.url()]));
    let d = upload(&server, "r.bin", &bytes(1000, 3));
    let mut diag = Value::Null;
    assert!(
        eventually(30, || {
            diag = server.get("/api/diagnostics").json();
            diag["nostr"]["rejections"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
        }),
        "{diag}\n{}",
        relay.log()
    );
    let rejection = &diag["nostr"]["rejections"][0];
    assert_eq!(rejection["relay"], relay.url().as_str());
    assert!(
        rejection["message"].as_str().unwrap().contains("kind"),
        "{rejection}"
    );
    assert_eq!(diag["nostr"]["rejected"], 1);
    assert!(
        eventually(10, || server.log().contains("rejected event")),
        "logged"
    );
    assert!(events_for(&relay, d["sha256"].as_str().unwrap()).is_empty());
    assert!(
        diag["nostr"]["outbox"].as_array().unwrap().is_empty(),
        "not retried forever"
    );
}
