"""Prints what python3-libtorrent reads from a .torrent file, as JSON."""
import json
import sys

import libtorrent as lt

ti = lt.torrent_info(sys.argv[1])
fs = ti.files()
files = []
for i in range(fs.num_files()):
    pad = bool(fs.file_flags(i) & lt.file_storage.flag_pad_file)
    files.append({"path": fs.file_path(i), "length": fs.file_size(i), "padding": pad})
print(json.dumps({
    "info_hash": str(ti.info_hashes().v1),
    "name": ti.name(),
    "piece_length": ti.piece_length(),
    "piece_count": ti.num_pieces(),
    "total_size": ti.total_size(),
    "files": files,
    "private": ti.priv(),
    "trackers": [t.url for t in ti.trackers()],
}))
