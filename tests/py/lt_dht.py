"""A python3-libtorrent session with its DHT on 127.0.0.1, driven by commands on stdin (one
per line) and reporting on stdout as JSON lines, for the DHT interop tests.

lt_dht.py TIMEOUT_SECS [LISTEN]
LISTEN is the listen interface (default 127.0.0.1:0; "[::1]:0" for an IPv6 node: BEP-32).
Prints {"port": P} first (the session's TCP and UDP port: its DHT node and its peer port),
then one line per event, until stdin closes or the timeout passes. Commands:
  node HOST:PORT            add a DHT node (add_dht_node; it is pinged)
  nodes                     -> {"nodes": N} (routing-table size, from a dht_stats_alert)
  get_peers INFOHASH        dht_get_peers -> {"get_peers": IH, "peers": ["ip:port", ...]}
  magnet URI SAVE_DIR       add a magnet (the torrent then announces itself and looks for
                            peers on the DHT only) -> {"done": IH, "bytes": N} once complete
  seed TORRENT SAVE_DIR     seed existing data (announced on the DHT) -> {"seeding": IH}
  put_immutable HEX         dht_put_immutable_item of the bencoded bytes HEX
                            -> {"put": TARGET, "ok": N}
  get_immutable TARGET      -> {"item": TARGET, "value": HEX}
  put_mutable SEED PK SALT HEX
                            dht_put_mutable_item of the string HEX (stored bencoded, seq one
                            above the DHT's), signed with the ed25519 key of the 32-byte SEED
                            (libtorrent takes the expanded secret key, made here), public key
                            PK, salt SALT (all hex; "-" for an empty salt)
                            -> {"put_mutable": PK, "seq": S, "ok": N}
  get_mutable PK SALT       -> {"mutable": PK, "seq": S, "value": HEX}
  sample HOST:PORT          BEP-51 sample_infohashes to that node
                            -> {"samples": [IH, ...], "num": N, "interval": S}
Announces that other nodes make to this one come out as {"announce": IH, "from": "ip:port"}
(dht_announce_alert); "ip:port" is "[ip]:port" for IPv6. No LSD, UPnP, NAT-PMP or uTP; no bootstrap nodes, routing and search
IP restrictions off, the per-IP rate blocker effectively off (every node here is 127.0.0.1).
"""
import hashlib
import json
import select
import sys
import time

import libtorrent as lt

import lt_common


def emit(obj):
    print(json.dumps(obj), flush=True)


def endpoint(text):
    host, port = text.rsplit(":", 1)
    return host.strip("[]"), int(port)


def show(ip, port):
    return f"[{ip}]:{port}" if ":" in str(ip) else f"{ip}:{port}"


def bencoded(entry):
    return lt.bencode(entry).hex()


def unhex(word):
    return b"" if word == "-" else bytes.fromhex(word)


def expanded_key(seed):
    # The ed25519 secret key as libtorrent keeps it: SHA-512 of the seed, the first half
    # clamped (RFC 8032, 5.1.5).
    h = bytearray(hashlib.sha512(seed).digest())
    h[0] &= 248
    h[31] &= 127
    h[31] |= 64
    return bytes(h)


timeout = float(sys.argv[1])
listen = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1:0"
cat = lt.alert.category_t
ses = lt_common.session(
    cat.dht_notification | cat.dht_operation_notification | cat.status_notification
    | cat.storage_notification,
    enable_dht=True,
    listen_interfaces=listen,
    dht_bootstrap_nodes="",
    dht_restrict_routing_ips=False,
    dht_restrict_search_ips=False,
    dht_block_ratelimit=1_000_000,
    dht_upload_rate_limit=1_000_000,
)
emit({"port": ses.listen_port()})

# Torrents we report on: handle -> (info-hash hex, what to report once).
torrents = []
deadline = time.monotonic() + timeout


def command(words):
    op = words[0]
    if op == "node":
        ses.add_dht_node(endpoint(words[1]))
    elif op == "nodes":
        ses.post_dht_stats()
    elif op == "get_peers":
        ses.dht_get_peers(lt.sha1_hash(bytes.fromhex(words[1])))
    elif op == "magnet":
        params = lt.parse_magnet_uri(words[1])
        params.save_path = words[2]
        h = ses.add_torrent(params)
        torrents.append([h, str(params.info_hashes.v1), "done"])
    elif op == "seed":
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(words[1])
        params.save_path = words[2]
        h = ses.add_torrent(params)
        torrents.append([h, str(params.ti.info_hashes().v1), "seeding"])
    elif op == "put_immutable":
        target = ses.dht_put_immutable_item(lt.bdecode(bytes.fromhex(words[1])))
        emit({"put_requested": str(target)})
    elif op == "get_immutable":
        ses.dht_get_immutable_item(lt.sha1_hash(bytes.fromhex(words[1])))
    elif op == "put_mutable":
        seed, pk, salt, value = (unhex(w) for w in words[1:5])
        ses.dht_put_mutable_item(expanded_key(seed), pk, value, salt)
    elif op == "sample":
        ses.dht_sample_infohashes(endpoint(words[1]), lt.sha1_hash(bytes(20)))
    elif op == "get_mutable":
        ses.dht_get_mutable_item(unhex(words[1]), unhex(words[2]))
    else:
        emit({"error": f"unknown command {op}"})


def alert(a):
    if isinstance(a, lt.dht_get_peers_reply_alert):
        peers = [show(ip, port) for ip, port in a.peers()]
        emit({"get_peers": str(a.info_hash), "peers": peers})
    elif isinstance(a, lt.dht_announce_alert):
        emit({"announce": str(a.info_hash), "from": show(a.ip, a.port)})
    elif isinstance(a, lt.dht_stats_alert):
        emit({"nodes": sum(b["num_nodes"] for b in a.routing_table)})
    elif isinstance(a, lt.dht_put_alert):
        if a.public_key != bytes(32) and any(a.public_key):
            emit({"put_mutable": a.public_key.hex(), "seq": a.seq, "ok": a.num_success})
        else:
            emit({"put": str(a.target), "ok": a.num_success})
    elif isinstance(a, lt.dht_sample_infohashes_alert):
        emit({"samples": [str(h) for h in a.samples], "num": a.num_infohashes,
              "interval": str(a.interval)})
    elif isinstance(a, lt.dht_immutable_item_alert):
        # The binding hands the item over as a dict; "value" is the decoded value.
        emit({"item": str(a.target), "value": bencoded(a.item["value"])})
    elif isinstance(a, lt.dht_mutable_item_alert):
        emit({"mutable": a.key.hex(), "seq": a.seq, "value": bencoded(a.item["value"]),
              "authoritative": a.authoritative})
    print("alert:", type(a).__name__, a.message(), file=sys.stderr, flush=True)


while time.monotonic() < deadline:
    if select.select([sys.stdin], [], [], 0.05)[0]:
        line = sys.stdin.readline()
        if not line:
            sys.exit(0)
        if line.split():
            command(line.split())
    for a in ses.pop_alerts():
        alert(a)
    for t in torrents:
        h, ih, what = t
        if what and h.status().is_seeding:
            if what == "done":
                emit({"done": ih, "bytes": h.status().total_wanted})
            else:
                emit({"seeding": ih})
            t[2] = None
sys.exit(0)
