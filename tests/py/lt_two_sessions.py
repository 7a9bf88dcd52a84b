"""Two libtorrent sessions in one process: the first seeds, the second downloads, both
knowing only the torrent's trackers (libtorrent shares one UDP-tracker connection id per
tracker across the sessions of a process).

lt_two_sessions.py TORRENT SEED_DIR LEECH_DIR TIMEOUT_SECS
Prints "done BYTES" and exits 0 once the second session has everything; exits 1 on timeout.
"""
import sys
import time

import libtorrent as lt

import lt_common

torrent, seed_dir, leech_dir, timeout = sys.argv[1:4] + [float(sys.argv[4])]
sessions = []
handles = []
for save in (seed_dir, leech_dir):
    ses = lt_common.session(lt.alert.category_t.tracker_notification)
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(torrent)
    params.save_path = save
    sessions.append(ses)
    handles.append(ses.add_torrent(params))
deadline = time.monotonic() + timeout
while time.monotonic() < deadline:
    for i, ses in enumerate(sessions):
        for a in ses.pop_alerts():
            print(f"alert {i}:", a.message(), file=sys.stderr, flush=True)
    s = handles[1].status()
    if s.is_seeding:
        print("done", s.total_wanted, flush=True)
        sys.exit(0)
    time.sleep(0.1)
print(f"timeout: progress {handles[1].status().progress:.3f}", file=sys.stderr)
sys.exit(1)
