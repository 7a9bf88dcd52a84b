"""Seeds a torrent with python3-libtorrent, announcing only to the torrent's trackers.

lt_seed.py TORRENT SAVE_DIR TIMEOUT_SECS [forced-rc4]
Prints "seeding PORT" once the data is checked and complete, then seeds until stdin closes
or the timeout passes. No DHT, LSD, UPnP, NAT-PMP or uTP (see INTEROP.md). With forced-rc4
it speaks only MSE with RC4, both ways (`pe_forced`, `allowed_enc_level` rc4), and drops
plaintext handshakes.
"""
import select
import sys
import time

import libtorrent as lt

import lt_common

torrent, save, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
ses = lt_common.session(lt.alert.category_t.tracker_notification)
if len(sys.argv) > 4 and sys.argv[4] == "forced-rc4":
    ses.apply_settings({
        "out_enc_policy": int(lt.enc_policy.forced),
        "in_enc_policy": int(lt.enc_policy.forced),
        "allowed_enc_level": int(lt.enc_level.rc4),
        "prefer_rc4": True,
    })
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
