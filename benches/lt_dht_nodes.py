"""Many python3-libtorrent (2.0.8) DHT nodes in one process, for the mixed testnet of
benches/dht.rs (`lt-lookups`, run by scripts/bench-dht): COUNT sessions, each with its DHT
on its own 127.0.0.1 port (bound as port 0 and read back), driven by commands on stdin (one
per line), reporting on stdout as JSON lines.

lt_dht_nodes.py COUNT TIMEOUT_SECS
Prints {"ports": [P, ...]} first (session i's DHT node is 127.0.0.1:P[i]), then one line per
answer, until stdin closes or the timeout passes. Commands:
  add I HOST:PORT ...     add_dht_node to session I (it pings each node)
  warm I HEX40            session I runs one get_peers lookup of HEX40 and does not report
                          it (it fills the session's table: libtorrent has no bootstrap
                          lookup when its router list is empty)
  tables                  -> {"tables": [N, ...]} routing-table sizes (dht_stats_alert)
  lookup I HEX40          session I runs dht_get_peers(HEX40), timed from the call to the
                          traversal's "COMPLETED" DHT log line
                          -> {"lookup": HEX40, "ms": F, "closest": [ID, ...],
                              "responders": ["ip:port", ...], "peers": N}
                          or {"lookup": HEX40, "ms": null} after 30 s. "closest" are the
                          ids libtorrent logs at the end (the closest nodes that answered),
                          "responders" every node whose answer the traversal logged,
                          "peers" the peers its dht_get_peers_reply_alerts carried.
Loopback only: no bootstrap nodes, LSD, UPnP, NAT-PMP or uTP; routing and search IP
restrictions off and the per-IP blocker and upload limit high (every node is 127.0.0.1).
The DHT log alerts are on only for the session doing a `lookup` and only while it runs.
"""
import json
import re
import select
import sys
import time

import libtorrent as lt

cat = lt.alert.category_t
QUIET = cat.error_notification
LOGGING = cat.error_notification | cat.dht_operation_notification | cat.dht_log_notification


def emit(obj):
    print(json.dumps(obj), flush=True)


def session():
    return lt.session({
        "listen_interfaces": "127.0.0.1:0",
        "enable_dht": True,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "dht_bootstrap_nodes": "",
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        "dht_enforce_node_id": False,
        "dht_prefer_verified_node_ids": False,
        "dht_block_ratelimit": 1_000_000,
        "dht_upload_rate_limit": 1_000_000,
        "alert_mask": QUIET,
    })


def endpoint(text):
    host, port = text.rsplit(":", 1)
    return host, int(port)


count, timeout = int(sys.argv[1]), float(sys.argv[2])
sessions = [session() for _ in range(count)]
emit({"ports": [s.listen_port() for s in sessions]})
deadline = time.monotonic() + timeout

NEW = re.compile(r"\[(\d+)\] NEW target: ([0-9a-f]{40})")
RESPONSE = re.compile(r"\[(\d+)\] RESPONSE id: [0-9a-f]{40} .*addr: ([0-9.]+:\d+)")
RESULT = re.compile(r"\[(\d+)\] id: ([0-9a-f]{40}) distance: \d+ addr:")
COMPLETED = re.compile(r"\[(\d+)\] COMPLETED .*type: get_peers")


def lookup(ses, target):
    """Runs one get_peers traversal with the DHT log on; the report, or ms None."""
    ses.apply_settings({"alert_mask": LOGGING})
    ses.pop_alerts()
    started = time.monotonic()
    ses.dht_get_peers(lt.sha1_hash(bytes.fromhex(target)))
    traversal, closest, responders, peers = None, [], [], 0
    end = started + 30
    try:
        while time.monotonic() < end:
            ses.wait_for_alert(5)
            for a in ses.pop_alerts():
                if isinstance(a, lt.dht_get_peers_reply_alert):
                    if str(a.info_hash) == target:
                        peers += a.num_peers()
                    continue
                if not isinstance(a, lt.dht_log_alert):
                    continue
                msg = a.log_message()
                m = NEW.search(msg)
                if m and traversal is None and m.group(2) == target:
                    traversal = m.group(1)
                    continue
                if traversal is None or f"[{traversal}]" not in msg:
                    continue
                if m := RESPONSE.search(msg):
                    responders.append(m.group(2))
                elif m := RESULT.search(msg):
                    closest.append(m.group(2))
                elif COMPLETED.search(msg):
                    ms = (time.monotonic() - started) * 1000
                    return {"lookup": target, "ms": ms, "closest": closest,
                            "responders": responders, "peers": peers}
        return {"lookup": target, "ms": None}
    finally:
        ses.apply_settings({"alert_mask": QUIET})
        ses.pop_alerts()


def tables():
    for s in sessions:
        s.pop_alerts()
        s.apply_settings({"alert_mask": QUIET | cat.dht_notification})
        s.post_dht_stats()
    sizes = [None] * count
    end = time.monotonic() + 5
    while None in sizes and time.monotonic() < end:
        for i, s in enumerate(sessions):
            for a in s.pop_alerts():
                if isinstance(a, lt.dht_stats_alert):
                    sizes[i] = sum(b["num_nodes"] for b in a.routing_table)
        time.sleep(0.01)
    for s in sessions:
        s.apply_settings({"alert_mask": QUIET})
    return sizes


def command(words):
    op = words[0]
    if op == "add":
        for w in words[2:]:
            sessions[int(words[1])].add_dht_node(endpoint(w))
    elif op == "warm":
        sessions[int(words[1])].dht_get_peers(lt.sha1_hash(bytes.fromhex(words[2])))
    elif op == "tables":
        emit({"tables": tables()})
    elif op == "lookup":
        emit(lookup(sessions[int(words[1])], words[2]))
    else:
        emit({"error": f"unknown command {op}"})


while time.monotonic() < deadline:
    if select.select([sys.stdin], [], [], 0.05)[0]:
        line = sys.stdin.readline()
        if not line:
            sys.exit(0)
        if line.split():
            command(line.split())
    for s in sessions:
        s.pop_alerts()
sys.exit(0)
