"""Downloads a torrent with python3-libtorrent and exits 0 once it is complete.

lt_download.py TORRENT SAVE_DIR TIMEOUT_SECS [PEER_HOST:PORT]
Only the given sources are used: no DHT, LSD, UPnP, NAT-PMP, and uTP is off (see INTEROP.md).
Prints the final state; exits 1 on timeout with the progress reached.
"""
import sys
import time

import libtorrent as lt

import lt_common

torrent, save, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
peer = sys.argv[4] if len(sys.argv) > 4 else None
ses = lt_common.session()
params = lt.add_torrent_params()
params.ti = lt.torrent_info(torrent)
params.save_path = save
handle = ses.add_torrent(params)
if peer:
    host, port = peer.rsplit(":", 1)
    handle.connect_peer((host, int(port)))
deadline = time.monotonic() + timeout
while time.monotonic() < deadline:
    s = handle.status()
    if s.is_seeding or s.state == lt.torrent_status.seeding:
        print("done", s.total_wanted)
        sys.exit(0)
    for a in ses.pop_alerts():
        print("alert:", a.message(), file=sys.stderr)
    time.sleep(0.1)
s = handle.status()
print(f"timeout: progress {s.progress:.3f} state {s.state}", file=sys.stderr)
sys.exit(1)
