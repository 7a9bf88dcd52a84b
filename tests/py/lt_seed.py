"""Seeds a torrent with python3-libtorrent, announcing only to the torrent's trackers.

lt_seed.py TORRENT SAVE_DIR TIMEOUT_SECS
Prints "seeding PORT" once the data is checked and complete, then seeds until stdin closes
or the timeout passes. No DHT, LSD, UPnP, NAT-PMP or uTP (see INTEROP.md).
"""
import select
import sys
import time

import libtorrent as lt

import lt_common

torrent, save, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
ses = lt_common.session(lt.alert.category_t.tracker_notification)
params = lt.add_torrent_params()
params.ti = lt.torrent_info(torrent)
params.save_path = save
handle = ses.add_torrent(params)
deadline = time.monotonic() + timeout
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
