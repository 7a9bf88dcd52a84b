//! Unit tests of the configuration: the printed defaults are the defaults, and errors name
//! their key.

use super::*;

#[test]
fn printed_defaults_are_the_defaults() {
    let parsed = Config::from_toml(DEFAULT_TOML).unwrap();
    assert_eq!(parsed, Config::default());
    parsed.validate().unwrap();
    assert_eq!(Config::from_toml("").unwrap(), Config::default());
}

#[test]
fn errors_name_the_key() {
    let e = Config::from_toml("[api]\nworkerz = 3\n").unwrap_err();
    assert!(e.0.starts_with("line 2: unknown field `workerz`"), "{e}");
    assert!(!e.0.contains('\n'));
    let e = Config::from_toml("[api]\nworkers = \"x\"\n").unwrap_err();
    assert!(e.0.contains("line 2"), "{e}");
    let mut c = Config::default();
    c.storage.piece_length_bytes = 1000;
    assert!(c
        .validate()
        .unwrap_err()
        .0
        .contains("storage.piece_length_bytes"));
    let mut c = Config::default();
    c.api.addr = "nowhere".into();
    assert!(c.validate().unwrap_err().0.contains("api.addr"));
    let mut c = Config::default();
    c.api.write_tokens = vec!["short".into()];
    assert!(c.validate().unwrap_err().0.contains("api.write_tokens"));
    let mut c = Config::default();
    c.peer.addr = "6881".into();
    assert!(c.validate().unwrap_err().0.contains("peer.addr"));
    let mut c = Config::default();
    c.peer.advertise_ip = "gw.example".into();
    assert!(c.validate().unwrap_err().0.contains("peer.advertise_ip"));
    let mut c = Config::default();
    c.peer.upload_slots = 0;
    assert!(c.validate().unwrap_err().0.contains("peer.upload_slots"));
    let mut c = Config::default();
    c.rate_limit.ipv6_prefix_bits = 16;
    assert!(c
        .validate()
        .unwrap_err()
        .0
        .contains("rate_limit.ipv6_prefix_bits"));
    let mut c = Config::default();
    c.peer.max_queued_bytes = 100;
    assert!(c
        .validate()
        .unwrap_err()
        .0
        .contains("peer.max_queued_bytes"));
}

#[test]
fn public_url_follows_the_bound_address() {
    let c = Config::default();
    assert_eq!(
        c.public_url_for("0.0.0.0:9877".parse().unwrap()),
        "http://127.0.0.1:9877"
    );
    assert_eq!(
        c.public_url_for("[::]:80".parse().unwrap()),
        "http://[::1]:80"
    );
    let mut c = Config::default();
    c.api.public_url = "https://gw.example/".into();
    assert_eq!(
        c.public_url_for("0.0.0.0:1".parse().unwrap()),
        "https://gw.example"
    );
}

#[test]
fn fetch_keys_are_checked() {
    let c = Config::from_toml("[fetch]\ncache_bytes = 4194304\nwait_secs = 5\n").unwrap();
    assert_eq!((c.fetch.cache_bytes, c.fetch.wait_secs), (4 << 20, 5));
    c.validate().unwrap();
    for (toml, key) in [
        ("[fetch]\ncache_bytes = 1000\n", "fetch.cache_bytes"),
        ("[fetch]\nmax_torrents = 0\n", "fetch.max_torrents"),
        ("[fetch]\nmax_streams = 0\n", "fetch.max_streams"),
        ("[fetch]\nwait_secs = 4000\n", "fetch.wait_secs"),
        ("[fetch]\nwait_secs = 0\n", "fetch.wait_secs"),
        ("[fetch]\nurl_timeout_secs = 0\n", "fetch.url_timeout_secs"),
    ] {
        let e = Config::from_toml(toml).unwrap().validate().unwrap_err();
        assert!(e.0.contains(key), "{toml}: {e}");
    }
    // In force: no more streams than the API layer's, a wait the layer does not cut.
    let text = "[api]\nmax_streams = 8\nio_timeout_secs = 5\n[fetch]\nwait_secs = 60\n";
    let c = Config::from_toml(text).unwrap();
    c.validate().unwrap();
    let f = c.fetch.effective(c.api.max_streams, c.api.io_timeout_secs);
    assert_eq!(
        (
            f.max_streams,
            f.wait_secs,
            f.cache_bytes,
            f.url_timeout_secs
        ),
        (8, 14, 2 << 30, 14)
    );
    assert!(Config::from_toml("[fetch]\ncache = 1\n").is_err());
}
