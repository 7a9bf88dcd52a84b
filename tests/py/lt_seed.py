"""Seeds a torrent with python3-libtorrent, announcing only to the torrent's trackers.

lt_seed.py TORRENT SAVE_DIR TIMEOUT_SECS [--encrypted] [--upload-limit BYTES_PER_SEC]
    [--port PORT]
Prints "seeding PORT" once the data is checked and complete, then seeds until stdin closes
or the timeout passes. No DHT, LSD, UPnP, NAT-PMP or uTP (see INTEROP.md).
--encrypted: MSE forced both ways (in_enc_policy/out_enc_policy forced, RC4 only), so
plaintext peers are refused. --upload-limit throttles the upload (for resume tests).
"""
import argparse
import select
import sys
import time

import libtorrent as lt

import lt_common

ap = argparse.ArgumentParser()
ap.add_argument("torrent")
ap.add_argument("save")
ap.add_argument("timeout", type=float)
ap.add_argument("--encrypted", action="store_true")
ap.add_argument("--upload-limit", type=int, default=0)
ap.add_argument("--port", type=int, default=0)
args = ap.parse_args()

settings = {"listen_interfaces": f"127.0.0.1:{args.port}"}
if args.encrypted:
    settings.update({
        "in_enc_policy": lt.enc_policy.forced,
        "out_enc_policy": lt.enc_policy.forced,
        "allowed_enc_level": lt.enc_level.rc4,
        "prefer_rc4": True,
    })
if args.upload_limit:
    settings["upload_rate_limit"] = args.upload_limit
ses = lt_common.session(lt.alert.category_t.tracker_notification, **settings)
if args.upload_limit:
    # Loopback peers are in libtorrent's local peer class, which rate limits skip: put
    # every address in the global class only, so the limit applies to them too.
    f = lt.ip_filter()
    f.add_rule("0.0.0.0", "255.255.255.255", 1 << lt.session.global_peer_class_id)
    ses.set_peer_class_filter(f)
params = lt.add_torrent_params()
params.ti = lt.torrent_info(args.torrent)
params.save_path = args.save
handle = ses.add_torrent(params)
deadline = time.monotonic() + args.timeout
announced = False
while time.monotonic() < deadline:
    for a in ses.pop_alerts():
        print("alert:", a.message(), file=sys.stderr, flush=True)
    s = handle.status()
    if not announced and s.is_seeding:
        print("seeding", ses.listen_port(), flush=True)
        announced = True
    if select.select([sys.stdin], [], [], 0.1)[0] and not sys.stdin.read(1):
        sys.exit(0)
sys.exit(0 if announced else 1)
