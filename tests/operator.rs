//! The operator kit: the systemd unit passes `systemd-analyze verify`, every metric the
//! Grafana dashboard queries exists in `/metrics`, `serve --log-format json` writes one JSON
//! object per line, and `scripts/build-release` makes a static binary that serves.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use support::server::Server;
use support::*;

/// `serve` from `binary` on loopback port 0 with `data`, its stderr piped.
fn spawn_serve(binary: &Path, log_format: &str, data: &Path) -> std::process::Child {
    Command::new(binary)
        .args(["serve", "--log-format", log_format])
        .args(["--api-addr", "127.0.0.1:0", "--peer-addr", "127.0.0.1:0"])
        .args(["--blossom-addr", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_systemd_unit_verifies() {
    let analyze = require_tool("systemd-analyze");
    let tmp = tempdir();
    // verify checks that ExecStart exists: point it at the binary under test.
    let unit = std::fs::read_to_string(repo().join("contrib/systemd/torrent-gateway.service"))
        .unwrap()
        .replace("/usr/local/bin/torrent-gateway", bin());
    for key in [
        "DynamicUser=yes",
        "StateDirectory=",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "LimitNOFILE=",
        "Restart=on-failure",
    ] {
        assert!(unit.contains(key), "the unit lacks {key}");
    }
    let path = tmp.path().join("torrent-gateway.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "{text}");
    assert!(
        !text.contains("Unknown") && !text.contains("ignoring"),
        "{text}"
    );
}

#[test]
fn every_dashboard_metric_exists() {
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("contrib/grafana/torrent-gateway.json")).unwrap(),
    )
    .unwrap();
    let mut wanted = BTreeSet::new();
    for panel in dash["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(i) = rest.find("tg_") {
                let name: String = rest[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[i + name.len()..];
                wanted.insert(name);
            }
        }
    }
    assert!(wanted.len() >= 15, "{wanted:?}");
    let tmp = tempdir();
    let server = Server::start(&tmp.path().join("data"), "");
    // The tg_dht_* families come from the DHT node's once-a-second snapshot.
    let mut metrics = String::new();
    support::tracker::eventually(5, || {
        metrics = server.get("/metrics").text();
        metrics.contains("# TYPE tg_dht_nodes ")
    });
    let have: BTreeSet<&str> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let missing: Vec<&String> = wanted
        .iter()
        .filter(|m| !have.contains(m.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "dashboard metrics missing from /metrics: {missing:?}"
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let tmp = tempdir();
    let out = Command::new(bin())
        .args([
            "serve",
            "--log-format",
            "json",
            "--api-addr",
            "nowhere",
            "--data-dir",
        ])
        .arg(tmp.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // A bad address is a CLI error (plain line); a start that logs gives JSON lines.
    let mut child = spawn_serve(Path::new(bin()), "json", &tmp.path().join("data"));
    // Every line up to the start-up line is a JSON object with the keys.
    let mut started = None;
    for line in std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().unwrap())) {
        let line = line.unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        for key in ["time", "level", "target", "message", "fields"] {
            assert!(v.get(key).is_some(), "{key} missing in {line}");
        }
        if v["message"].as_str().unwrap().contains("listening: api=") {
            started = Some(v);
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let v = started.expect("a start-up line");
    assert_eq!(v["level"], "INFO");
    assert!(v["target"].as_str().unwrap().starts_with("torrent_gateway"));
}

#[test]
fn build_release_makes_a_static_binary_that_serves() {
    let out = Command::new(repo().join("scripts/build-release"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let path = stdout(&out).trim().to_string();
    let ldd = Command::new("ldd").arg(&path).output().unwrap();
    let text = format!("{}{}", stdout(&ldd), stderr(&ldd));
    assert!(
        text.contains("not a dynamic executable") || text.contains("statically linked"),
        "{text}"
    );
    let tmp = tempdir();
    let mut child = spawn_serve(Path::new(&path), "text", &tmp.path().join("data"));
    let mut addr = None;
    for line in std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().unwrap())) {
        let line = line.unwrap();
        if let Some(rest) = line.split("listening: api=").nth(1) {
            addr = rest.split_whitespace().next().map(str::to_string);
            break;
        }
    }
    let addr: std::net::SocketAddr = addr.expect("the static binary started").parse().unwrap();
    let r = support::server::request(addr, "GET", "/livez", &[], b"");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!((r.status, r.text().as_str()), (200, "ok\n"));
}
