//! `torrent-gateway dht sample [NODE]... [--bootstrap ADDR]...`: BEP-51 sample_infohashes
//! asked of DHT nodes, for operators and crawlers. Given NODE addresses it asks each of them;
//! without, it joins through the bootstrap nodes, looks up the nodes closest to `--target`
//! (random by default) and asks those. It prints the sampled info-hashes one per line (hex,
//! each once), or with `--json` one object with every node's answer (`num`, `interval`, its
//! samples). Exit 0 when some info-hash was sampled, 1 when none was by the timeout, 2 on bad
//! input. The node runs on the same small loop as `dht get-peers` ([`super::dht::Runner`]).

use super::dht::{deadline, parse_info_hash, resolve, Runner};
use super::{print_out, CliError};
use crate::dht::sample::Sampled;
use crate::proto::hex;
use argh::FromArgs;
use serde_json::json;
use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;

/// Nodes asked at most (the closest ones a lookup found, or the NODE arguments).
const MAX_ASKED: usize = 64;

/// ask DHT nodes for samples of the info-hashes they store (BEP-51): prints them one per
/// line; exit 0 when some were sampled, 1 when none were by the timeout, 2 on bad input
#[derive(FromArgs)]
#[argh(subcommand, name = "sample")]
pub struct SampleArgs {
    /// a node to ask (ip:port), repeatable; without any, the nodes closest to --target are
    #[argh(positional)]
    nodes: Vec<String>,
    /// a DHT node to join through (host:port), repeatable (default: the public routers, or
    /// the NODE arguments)
    #[argh(option)]
    bootstrap: Vec<String>,
    /// the target whose closest nodes are asked (40 hex digits; default random)
    #[argh(option)]
    target: Option<String>,
    /// give up after this many seconds (default 30)
    #[argh(option, default = "30")]
    timeout: u64,
    /// print one JSON object (target, info_hashes, nodes) instead of lines
    #[argh(switch)]
    json: bool,
}

pub fn sample(args: SampleArgs) -> Result<(), CliError> {
    let target = match &args.target {
        Some(t) => parse_info_hash(t)?,
        None => {
            let mut t = [0u8; 20];
            for c in t.chunks_mut(8) {
                c.copy_from_slice(&crate::net::random_u64().to_le_bytes()[..c.len()]);
            }
            t
        }
    };
    let mut direct = Vec::new();
    for n in &args.nodes {
        let a: SocketAddr = n
            .parse()
            .map_err(|_| CliError::input(format!("{n:?} is not a node address (ip:port)")))?;
        if a.port() == 0 {
            return Err(CliError::input(format!("{n}: port 0")));
        }
        direct.push(a);
    }
    direct.truncate(MAX_ASKED);
    let deadline = deadline(args.timeout)?;
    let mut r = if args.bootstrap.is_empty() && !direct.is_empty() {
        Runner::start(direct.clone())?
    } else {
        Runner::start(resolve_or_default(&args.bootstrap)?)?
    };
    let mut asked: HashSet<SocketAddr> = HashSet::new();
    let mut answers: Vec<Sampled> = Vec::new();
    let mut looking = false;
    r.run_until(deadline, |node| {
        if direct.is_empty() && !looking && node.find_node(target) {
            looking = true;
        }
        let mut to_ask: Vec<SocketAddr> = Vec::new();
        if !direct.is_empty() {
            to_ask = std::mem::take(&mut direct);
        }
        for c in node.take_completed() {
            if c.target == target {
                // A lookup that found nobody (a thin table) is started again.
                looking = !c.closest.is_empty();
                to_ask.extend(c.closest.iter().map(|n| n.addr));
            }
        }
        for a in to_ask {
            if asked.len() < MAX_ASKED && asked.insert(a) && !node.sample_infohashes(a, target) {
                asked.remove(&a);
            }
        }
        answers.extend(
            node.take_samples()
                .into_iter()
                .filter(|s| asked.contains(&s.from)),
        );
        // Done once every asked node answered (or failed).
        let heard: HashSet<SocketAddr> = answers.iter().map(|s| s.from).collect();
        !asked.is_empty() && asked.iter().all(|a| heard.contains(a))
    });
    let hashes: BTreeSet<String> = answers
        .iter()
        .flat_map(|s| s.samples.iter().map(|h| hex::encode(h)))
        .collect();
    if args.json {
        let nodes: Vec<serde_json::Value> = answers.iter().map(node_json).collect();
        print_out(&format!(
            "{}\n",
            json!({
                "target": hex::encode(&target),
                "info_hashes": hashes,
                "asked": asked.len(),
                "nodes": nodes,
            })
        ))?;
    } else {
        let text: String = hashes.iter().map(|h| format!("{h}\n")).collect();
        print_out(&text)?;
    }
    if hashes.is_empty() {
        let answered = answers.iter().filter(|s| s.error.is_none()).count();
        return Err(CliError::failed(format!(
            "no info-hashes sampled in {} s ({} of {} nodes asked answered)",
            args.timeout,
            answered,
            asked.len()
        )));
    }
    Ok(())
}

fn resolve_or_default(hosts: &[String]) -> Result<Vec<SocketAddr>, CliError> {
    let hosts = if hosts.is_empty() {
        crate::config::default_dht_bootstrap()
    } else {
        hosts.to_vec()
    };
    let found = resolve(&hosts)?;
    if found.is_empty() {
        return Err(CliError::failed("no bootstrap node resolved"));
    }
    Ok(found)
}

fn node_json(s: &Sampled) -> serde_json::Value {
    let samples: Vec<String> = s.samples.iter().map(|h| hex::encode(h)).collect();
    json!({
        "addr": s.from.to_string(),
        "id": s.id.map(|id| hex::encode(&id.0)),
        "num": s.num,
        "interval": s.interval,
        "samples": samples,
        "error": s.error,
    })
}
