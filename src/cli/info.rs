//! `info`: describe a torrent file or a magnet link, for people or (`--json`) for scripts.

use super::{human_bytes, load_torrent, print_out, CliError};
use crate::proto::bt::metainfo::Metainfo;
use crate::proto::{bt::magnet, hex};
use argh::FromArgs;
use serde_json::{json, Value};
use std::fmt::Write;

/// Show what a torrent file or magnet link holds.
#[derive(FromArgs)]
#[argh(subcommand, name = "info")]
pub struct Args {
    /// a .torrent file or a magnet: link
    #[argh(positional)]
    target: String,
    /// print one JSON object instead of the summary
    #[argh(switch)]
    json: bool,
}

pub fn run(args: Args) -> Result<(), CliError> {
    let value = if args.target.starts_with("magnet:") {
        let m = magnet::parse(&args.target)
            .map_err(|e| CliError::input(format!("bad magnet link: {e}")))?;
        magnet_json(&m)
    } else {
        torrent_json(&load_torrent(&args.target)?)
    };
    let text = if args.json {
        format!("{value}\n")
    } else {
        summary(&value)
    };
    print_out(&text)
}

/// The description of a torrent file; `info --json` prints exactly this.
pub fn torrent_json(m: &Metainfo) -> Value {
    let info = &m.info;
    let files: Vec<Value> = info
        .files
        .iter()
        .map(|f| json!({"path": f.display_path(), "length": f.length, "padding": f.padding}))
        .collect();
    json!({
        "info_hash": hex::encode(&m.info_hash),
        "name": info.name,
        "piece_length": info.piece_length,
        "piece_count": info.piece_count(),
        "total_size": info.total_length(),
        "multi_file": info.multi_file,
        "files": files,
        "trackers": m.trackers(),
        "webseeds": m.url_list,
        "httpseeds": m.httpseeds,
        "private": info.private,
        "source": info.source,
        "comment": m.comment,
        "created_by": m.created_by,
        "creation_date": m.creation_date,
        "magnet": magnet::Magnet {
            info_hash: m.info_hash,
            name: Some(info.name.clone()),
            trackers: m.trackers(),
            webseeds: m.url_list.clone(),
            length: Some(info.total_length()),
            ..magnet::Magnet::default()
        }.to_uri(),
        "warnings": m.warnings,
    })
}

/// The description of a magnet link, with the same keys (null where a magnet cannot know).
pub fn magnet_json(m: &magnet::Magnet) -> Value {
    let so: Vec<String> = m
        .select_only
        .iter()
        .map(|r| format!("{}-{}", r.start(), r.end()))
        .collect();
    json!({
        "info_hash": hex::encode(&m.info_hash),
        "name": m.name,
        "piece_length": null,
        "piece_count": null,
        "total_size": m.length,
        "files": [],
        "trackers": m.trackers,
        "webseeds": m.webseeds,
        "peers": m.peers,
        "select_only": so,
        "private": null,
        "magnet": m.to_uri(),
    })
}

fn summary(v: &Value) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: String| {
        let _ = writeln!(out, "{label:<14}{value}");
    };
    let text = |key: &str| v[key].as_str().map(String::from);
    let num = |key: &str| v[key].as_u64();
    line("name:", text("name").unwrap_or_else(|| "(unknown)".into()));
    line("info hash:", text("info_hash").unwrap_or_default());
    if let Some(total) = num("total_size") {
        line("size:", format!("{} ({total} bytes)", human_bytes(total)));
    }
    if let (Some(count), Some(len)) = (num("piece_count"), num("piece_length")) {
        line("pieces:", format!("{count} x {}", human_bytes(len)));
    }
    if let Some(private) = v["private"].as_bool() {
        line("private:", if private { "yes" } else { "no" }.into());
    }
    for key in ["source", "comment", "created_by"] {
        if let Some(t) = text(key) {
            line(&format!("{}:", key.replace('_', " ")), t);
        }
    }
    if let Some(date) = v["creation_date"].as_i64() {
        line("created:", format!("{date} (unix time)"));
    }
    for (key, label) in [
        ("trackers", "tracker:"),
        ("webseeds", "webseed:"),
        ("httpseeds", "httpseed:"),
        ("peers", "peer:"),
    ] {
        for url in v[key].as_array().into_iter().flatten() {
            line(label, url.as_str().unwrap_or_default().into());
        }
    }
    line("magnet:", text("magnet").unwrap_or_default());
    let files = v["files"].as_array().cloned().unwrap_or_default();
    if v["multi_file"].as_bool() == Some(true) {
        let _ = writeln!(out, "files ({}):", files.len());
        for f in &files {
            let pad = if f["padding"].as_bool() == Some(true) {
                " (padding)"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  {:>10}  {}{pad}",
                f["length"].as_u64().unwrap_or(0),
                f["path"].as_str().unwrap_or_default()
            );
        }
    }
    for w in v["warnings"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "warning: {}", w.as_str().unwrap_or_default());
    }
    out
}
