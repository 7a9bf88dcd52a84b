"""Creates a .torrent with python3-libtorrent: lt_create.py PATH PIECE_SIZE OUT [v1|hybrid]."""
import os
import sys

import libtorrent as lt

path, piece_size, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
mode = sys.argv[4] if len(sys.argv) > 4 else "v1"
fs = lt.file_storage()
lt.add_files(fs, path)
flags = lt.create_torrent.v1_only if mode == "v1" else 0
t = lt.create_torrent(fs, piece_size, flags=flags)
t.add_tracker("http://127.0.0.1:1/announce")
lt.set_piece_hashes(t, os.path.dirname(os.path.abspath(path)))
with open(out, "wb") as f:
    f.write(lt.bencode(t.generate()))
