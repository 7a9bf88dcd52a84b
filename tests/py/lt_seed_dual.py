"""Seeds a torrent from a libtorrent session bound to 127.0.0.1 and ::1 on one port, so it
announces the same peer_id and key from an IPv4 and an IPv6 socket; re-announces every
second so the tracker sees both addresses over and over.

lt_seed_dual.py TORRENT SAVE_DIR TIMEOUT_SECS PORT
Prints "seeding PORT" once the data is checked, then seeds until stdin closes or the
timeout passes.
"""
import select
import sys
import time

import libtorrent as lt

torrent, save, timeout, port = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
ses = lt.session({
    "listen_interfaces": f"127.0.0.1:{port},[::1]:{port}",
    "enable_dht": False,
    "enable_lsd": False,
    "enable_upnp": False,
    "enable_natpmp": False,
    "enable_outgoing_utp": False,
    "enable_incoming_utp": False,
    "announce_to_all_trackers": True,
    "announce_to_all_tiers": True,
    "alert_mask": lt.alert.category_t.error_notification
    | lt.alert.category_t.tracker_notification,
})
params = lt.add_torrent_params()
params.ti = lt.torrent_info(torrent)
params.save_path = save
handle = ses.add_torrent(params)
deadline = time.monotonic() + timeout
announced = False
next_announce = 0.0
while time.monotonic() < deadline:
    for a in ses.pop_alerts():
        print("alert:", a.message(), file=sys.stderr, flush=True)
    s = handle.status()
    if not announced and s.is_seeding:
        print("seeding", port, flush=True)
        announced = True
    if announced and time.monotonic() >= next_announce:
        handle.force_reannounce()
        next_announce = time.monotonic() + 1.0
    if select.select([sys.stdin], [], [], 0.1)[0] and not sys.stdin.read(1):
        sys.exit(0)
sys.exit(0 if announced else 1)
