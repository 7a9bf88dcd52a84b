//! `torrent-gateway dht put` and `dht get`: BEP-44 items through a short-lived node
//! ([`super::dht::Runner`]). A put stores a text as a bencoded string, immutable (its target
//! is the SHA-1 of the value) or mutable (signed with an ed25519 key seed, under a salt,
//! with a `seq` one above what the DHT holds unless given); a get prints an item's value.
//! Exit 0 when stored by at least one node / found, 1 when not by the timeout, 2 on bad
//! input.

use super::dht::{deadline, Runner};
use super::{print_out, CliError};
use crate::dht::items::{self, FoundItem, PutItem};
use crate::proto::dht::storage;
use crate::proto::hex;
use argh::FromArgs;
use serde_json::json;

/// store a BEP-44 item: prints its target (and a mutable item's public key and seq); exit 0
/// when at least one node stored it, 1 when none did by the timeout, 2 on bad input
#[derive(FromArgs)]
#[argh(subcommand, name = "put")]
pub struct PutArgs {
    /// the value: a text, stored as a bencoded string (at most 1000 bytes encoded)
    #[argh(positional)]
    value: String,
    /// make it a mutable item signed with this ed25519 key seed (64 hex digits)
    #[argh(option)]
    key_seed: Option<String>,
    /// a mutable item's salt (text, at most 64 bytes)
    #[argh(option, default = "String::new()")]
    salt: String,
    /// a mutable item's sequence number (default: one more than the DHT holds, or 1)
    #[argh(option)]
    seq: Option<i64>,
    /// a DHT node to join through (host:port), repeatable (default: the public routers)
    #[argh(option)]
    bootstrap: Vec<String>,
    /// give up after this many seconds (default 30)
    #[argh(option, default = "30")]
    timeout: u64,
    /// print one JSON object (target, key, seq, stored, sent)
    #[argh(switch)]
    json: bool,
}

/// fetch a BEP-44 item, immutable by its target or mutable by --key and --salt: prints its
/// value (a string as text, anything else bencoded); exit 0 when found, 1 when not by the
/// timeout, 2 on bad input
#[derive(FromArgs)]
#[argh(subcommand, name = "get")]
pub struct GetArgs {
    /// the item's target (40 hex digits); omit it with --key
    #[argh(positional)]
    target: Option<String>,
    /// a mutable item's public key (64 hex digits)
    #[argh(option)]
    key: Option<String>,
    /// a mutable item's salt (text)
    #[argh(option, default = "String::new()")]
    salt: String,
    /// a DHT node to join through (host:port), repeatable (default: the public routers)
    #[argh(option)]
    bootstrap: Vec<String>,
    /// give up after this many seconds (default 30)
    #[argh(option, default = "30")]
    timeout: u64,
    /// print one JSON object (target, value, v_hex, seq, key)
    #[argh(switch)]
    json: bool,
}

/// `text` as a bencoded byte string.
fn bencode_text(text: &str) -> Vec<u8> {
    let mut v = format!("{}:", text.len()).into_bytes();
    v.extend_from_slice(text.as_bytes());
    v
}

/// The text of a bencoded byte string (None for any other value).
fn text_of(v: &[u8]) -> Option<String> {
    let colon = v.iter().position(|&b| b == b':')?;
    let len: usize = std::str::from_utf8(&v[..colon]).ok()?.parse().ok()?;
    let body = v.get(colon + 1..)?;
    (body.len() == len).then(|| String::from_utf8_lossy(body).into_owned())
}

fn hex32(text: &str, what: &str) -> Result<[u8; 32], CliError> {
    hex::decode::<32>(text.trim())
        .ok_or_else(|| CliError::input(format!("{what} {text:?}: expected 64 hex digits")))
}

/// Runs get lookups of `target` (one at a time) until one finds the item or `until` passes.
fn lookup_item(
    r: &mut Runner,
    target: [u8; 20],
    salt: &[u8],
    until: std::time::Instant,
) -> Option<FoundItem> {
    let mut found = None;
    let mut running = false;
    r.run_until(until, |node| {
        for c in node.take_completed() {
            if c.target == target {
                running = false;
                found = c.item.or(found.take());
                if found.is_some() {
                    return true;
                }
            }
        }
        if !running && node.get_item(target, salt) {
            running = true;
        }
        false
    });
    found
}

pub fn put(args: PutArgs) -> Result<(), CliError> {
    let v = bencode_text(&args.value);
    if v.len() > crate::proto::dht::krpc::MAX_V_BYTES {
        return Err(CliError::input(format!(
            "the value is {} bytes bencoded; BEP-44 allows at most 1000",
            v.len()
        )));
    }
    if args.salt.len() > crate::proto::dht::krpc::MAX_SALT {
        return Err(CliError::input("--salt is longer than 64 bytes"));
    }
    let seed = args
        .key_seed
        .as_deref()
        .map(|s| hex32(s, "--key-seed"))
        .transpose()?;
    if seed.is_none() && (args.seq.is_some() || !args.salt.is_empty()) {
        return Err(CliError::input("--seq and --salt need --key-seed"));
    }
    if args.seq.is_some_and(|s| s < 0) {
        return Err(CliError::input("--seq must not be negative"));
    }
    let until = deadline(args.timeout)?;
    let mut r = Runner::join(&args.bootstrap)?;
    let salt = args.salt.as_bytes();
    let started = match (seed, args.seq) {
        (None, _) => r.node.put_item(PutItem { v, mutable: None }),
        (Some(seed), None) => r.node.put_mutable_next(seed, salt, v),
        (Some(seed), Some(seq)) => {
            let m = items::sign(&seed, salt, seq, &v);
            let mutable = Some((m, salt.to_vec()));
            r.node.put_item(PutItem { v, mutable })
        }
    };
    let Some(target) = started else {
        return Err(CliError::failed("the node refused to start the put"));
    };
    // Done once the lookup has finished and every node sent the put has answered.
    r.run_until(until, |node| {
        node.put_status(&target)
            .is_some_and(|p| p.lookup_done && p.stored + p.refused >= p.sent)
    });
    let status = r.node.put_status(&target);
    let (stored, sent) = status.map_or((0, 0), |p| (p.stored, p.sent));
    let key = seed.map(|s| {
        (
            hex::encode(&items::public_key(&s)),
            status.and_then(|p| p.seq()),
        )
    });
    let hex_target = hex::encode(&target);
    if args.json {
        let v = json!({
            "target": hex_target,
            "key": key.as_ref().map(|k| &k.0),
            "seq": key.as_ref().map(|k| k.1),
            "stored": stored,
            "sent": sent,
        });
        print_out(&format!("{v}\n"))?;
    } else {
        let mut text = format!("{hex_target}\n");
        if let Some((k, Some(seq))) = &key {
            text.push_str(&format!("key {k} seq {seq}\n"));
        }
        print_out(&text)?;
    }
    if stored == 0 {
        return Err(CliError::failed(format!(
            "no node stored the item ({sent} asked, {} nodes known)",
            r.node.node_count()
        )));
    }
    Ok(())
}

pub fn get(args: GetArgs) -> Result<(), CliError> {
    let salt = args.salt.as_bytes().to_vec();
    let (target, key) = match (&args.target, &args.key) {
        (Some(t), None) if salt.is_empty() => {
            let t = hex::decode::<20>(t.trim())
                .ok_or_else(|| CliError::input(format!("{t:?}: expected 40 hex digits")))?;
            (t, None)
        }
        (None, Some(k)) => {
            let k = hex32(k, "--key")?;
            (storage::mutable_target(&k, &salt).0, Some(k))
        }
        _ => {
            return Err(CliError::input(
                "give a target (immutable) or --key with an optional --salt (mutable)",
            ))
        }
    };
    let until = deadline(args.timeout)?;
    let mut r = Runner::join(&args.bootstrap)?;
    let found = lookup_item(&mut r, target, &salt, until);
    let hex_target = hex::encode(&target);
    let Some(item) = found else {
        if args.json {
            print_out(&format!(
                "{}\n",
                json!({ "target": hex_target, "value": null })
            ))?;
        }
        return Err(CliError::failed(format!(
            "no item {hex_target} found in {} s ({} nodes known)",
            args.timeout,
            r.node.node_count()
        )));
    };
    let text = text_of(&item.v);
    if args.json {
        let v = json!({
            "target": hex_target,
            "value": text,
            "v_hex": hex::encode(&item.v),
            "seq": item.mutable.as_ref().map(|m| m.seq),
            "key": key.map(|k| hex::encode(&k)),
        });
        print_out(&format!("{v}\n"))?;
    } else {
        let shown = text.unwrap_or_else(|| String::from_utf8_lossy(&item.v).into_owned());
        print_out(&format!("{shown}\n"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_round_trip_as_bencoded_strings() {
        assert_eq!(bencode_text("hello"), b"5:hello");
        assert_eq!(text_of(b"5:hello").as_deref(), Some("hello"));
        assert_eq!(text_of(b"0:").as_deref(), Some(""));
        assert_eq!(text_of(b"i3e"), None);
        assert_eq!(text_of(b"6:hello"), None);
    }
}
