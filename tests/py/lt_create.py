"""Creates a .torrent with python3-libtorrent.

lt_create.py PATH PIECE_SIZE OUT [v1|hybrid|v1pad] [--tracker URL]... [--webseed URL]...
    [--no-tracker]
v1pad: a v1-only torrent with BEP-47 pad files aligning every file to a piece boundary
(libtorrent's canonical_files). Without --tracker it announces to http://127.0.0.1:1/announce
(nothing listens there) unless --no-tracker; --webseed adds BEP-19 `url-list` entries.
"""
import argparse
import os

import libtorrent as lt

ap = argparse.ArgumentParser()
ap.add_argument("path")
ap.add_argument("piece_size", type=int)
ap.add_argument("out")
ap.add_argument("mode", nargs="?", default="v1", choices=["v1", "hybrid", "v1pad"])
ap.add_argument("--tracker", action="append", default=[])
ap.add_argument("--webseed", action="append", default=[])
ap.add_argument("--no-tracker", action="store_true")
args = ap.parse_args()

fs = lt.file_storage()
lt.add_files(fs, args.path)
flags = {
    "v1": lt.create_torrent.v1_only,
    "hybrid": 0,
    "v1pad": lt.create_torrent.v1_only | lt.create_torrent.canonical_files,
}[args.mode]
t = lt.create_torrent(fs, args.piece_size, flags=flags)
trackers = args.tracker or ([] if args.no_tracker else ["http://127.0.0.1:1/announce"])
for tier, url in enumerate(trackers):
    t.add_tracker(url, tier)
for url in args.webseed:
    t.add_url_seed(url)
lt.set_piece_hashes(t, os.path.dirname(os.path.abspath(args.path)))
with open(args.out, "wb") as f:
    f.write(lt.bencode(t.generate()))
