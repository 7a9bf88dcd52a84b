"""Fetches a torrent from a bare magnet link (only `xt`) and one peer with python3-libtorrent:
the metadata comes through ut_metadata (BEP-9), then the data. Exits 0 once complete.

lt_magnet.py MAGNET SAVE_DIR TIMEOUT_SECS PEER_HOST:PORT
"""
import sys
import time

import libtorrent as lt

import lt_common

magnet, save, timeout, peer = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
ses = lt_common.session()
params = lt.parse_magnet_uri(magnet)
params.save_path = save
handle = ses.add_torrent(params)
host, port = peer.rsplit(":", 1)
handle.connect_peer((host, int(port)))
deadline = time.monotonic() + timeout
while time.monotonic() < deadline:
    s = handle.status()
    if s.has_metadata and (s.is_seeding or s.state == lt.torrent_status.seeding):
        print("done", s.total_wanted, handle.torrent_file().name())
        sys.exit(0)
    for a in ses.pop_alerts():
        print("alert:", a.message(), file=sys.stderr)
    time.sleep(0.1)
s = handle.status()
print(f"timeout: metadata {s.has_metadata} progress {s.progress:.3f}", file=sys.stderr)
sys.exit(1)
