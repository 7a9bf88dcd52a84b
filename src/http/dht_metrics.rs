//! The `tg_dht_*` families of `/metrics`, built from the DHT node's once-a-second snapshot
//! (the JSON of `/api/dht/stats`, written by the `net` loop): routing-table nodes (in all,
//! and per table: IPv4 and BEP-32 IPv6), stored
//! info-hashes, peers and BEP-44 items, announced torrents, queries in and out per KRPC
//! method, replies, drops, lookups and their total time. Pure: JSON in, samples out.

use serde_json::Value;

/// KRPC methods, so every method has a sample (zero until seen) and series never vanish.
const METHODS: [&str; 7] = [
    "ping",
    "find_node",
    "get_peers",
    "announce_peer",
    "get",
    "put",
    "sample_infohashes",
];

/// One metric family: name, type, help, and samples (label set, value).
pub type Family = (&'static str, &'static str, &'static str, Vec<(String, f64)>);

fn num(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(0.0)
}

/// The families for a snapshot; empty without one (the node is off or has not ticked yet).
pub fn families(snapshot: Option<&Value>) -> Vec<Family> {
    let Some(s) = snapshot else {
        return Vec::new();
    };
    let plain = |v: f64| vec![(String::new(), v)];
    let labelled = |label: &str, pairs: &[(&str, f64)]| {
        pairs
            .iter()
            .map(|(k, v)| (format!("{{{label}=\"{k}\"}}"), *v))
            .collect::<Vec<_>>()
    };
    let mut queries = Vec::new();
    for (dir, key) in [("in", "queries_in"), ("out", "queries_out")] {
        for m in METHODS {
            let v = s[key][m].as_f64().unwrap_or(0.0);
            queries.push((format!("{{dir=\"{dir}\",method=\"{m}\"}}"), v));
        }
    }
    vec![
        (
            "tg_dht_nodes",
            "gauge",
            "Nodes in the DHT routing tables (IPv4 and IPv6).",
            plain(num(s, "nodes")),
        ),
        (
            "tg_dht_table_nodes",
            "gauge",
            "Nodes in each DHT routing table, by address family (BEP-32).",
            labelled(
                "family",
                &[("ipv4", num(s, "nodes4")), ("ipv6", num(s, "nodes6"))],
            ),
        ),
        (
            "tg_dht_stored",
            "gauge",
            "What the DHT node stores for others, by kind.",
            labelled(
                "kind",
                &[
                    ("info_hashes", num(s, "stored_info_hashes")),
                    ("peers", num(s, "stored_peers")),
                    ("items", num(s, "stored_items")),
                ],
            ),
        ),
        (
            "tg_dht_announced_torrents",
            "gauge",
            "Torrents the DHT node announces (stored files and downloads).",
            plain(num(s, "announced")),
        ),
        (
            "tg_dht_queries_total",
            "counter",
            "KRPC queries by direction and method.",
            queries,
        ),
        (
            "tg_dht_replies_total",
            "counter",
            "Outcomes of our queries: responses, KRPC errors, timeouts.",
            labelled(
                "result",
                &[
                    ("response", num(s, "responses_in")),
                    ("error", num(s, "errors_in")),
                    ("timeout", num(s, "timeouts")),
                ],
            ),
        ),
        (
            "tg_dht_dropped_total",
            "counter",
            "Datagrams and queries dropped, by reason.",
            labelled(
                "reason",
                &[
                    ("malformed", num(s, "malformed")),
                    ("rate_limited", num(s, "rate_limited")),
                    ("budget", num(s, "budget_deferred")),
                    ("send", num(s, "send_dropped")),
                ],
            ),
        ),
        (
            "tg_dht_lookups_total",
            "counter",
            "Iterative lookups started and finished.",
            labelled(
                "state",
                &[
                    ("started", num(s, "lookups_started")),
                    ("done", num(s, "lookups_done")),
                ],
            ),
        ),
        (
            "tg_dht_lookups_running",
            "gauge",
            "Lookups in progress.",
            plain(num(s, "lookups_running")),
        ),
        (
            "tg_dht_lookup_seconds_total",
            "counter",
            "Total time of the finished lookups (divide by tg_dht_lookups_total{state=\"done\"}).",
            plain(num(s, "lookup_ms_total") / 1000.0),
        ),
        (
            "tg_dht_announces_sent_total",
            "counter",
            "announce_peer queries sent.",
            plain(num(s, "announces_sent")),
        ),
        (
            "tg_dht_bootstraps_total",
            "counter",
            "Bootstrap rounds (the table was thin or empty).",
            plain(num(s, "bootstraps")),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample<'a>(fams: &'a [Family], name: &str, labels: &str) -> Option<&'a f64> {
        let f = fams.iter().find(|f| f.0 == name)?;
        f.3.iter().find(|(l, _)| l == labels).map(|(_, v)| v)
    }

    #[test]
    fn a_snapshot_becomes_samples_and_every_method_has_one() {
        let snap = json!({
            "nodes": 12, "stored_peers": 3, "queries_in": { "get_peers": 5 },
            "queries_out": { "ping": 2 }, "lookup_ms_total": 1500, "lookups_done": 2,
        });
        let f = families(Some(&snap));
        assert_eq!(sample(&f, "tg_dht_nodes", ""), Some(&12.0));
        let six = json!({ "nodes": 15, "nodes4": 12, "nodes6": 3 });
        let f6 = families(Some(&six));
        assert_eq!(sample(&f6, "tg_dht_nodes", ""), Some(&15.0));
        let t = "tg_dht_table_nodes";
        assert_eq!(sample(&f6, t, "{family=\"ipv4\"}"), Some(&12.0));
        assert_eq!(sample(&f6, t, "{family=\"ipv6\"}"), Some(&3.0));
        assert_eq!(sample(&f, "tg_dht_stored", "{kind=\"peers\"}"), Some(&3.0));
        let q = "tg_dht_queries_total";
        assert_eq!(
            sample(&f, q, "{dir=\"in\",method=\"get_peers\"}"),
            Some(&5.0)
        );
        assert_eq!(sample(&f, q, "{dir=\"out\",method=\"ping\"}"), Some(&2.0));
        assert_eq!(sample(&f, q, "{dir=\"in\",method=\"put\"}"), Some(&0.0));
        assert_eq!(sample(&f, "tg_dht_lookup_seconds_total", ""), Some(&1.5));
        assert!(families(None).is_empty());
    }
}
