-- torrent-gateway metadata schema: the single source of the SQLite schema.
-- Applied by the server (issue: gateway server) with `PRAGMA user_version` migrations, WAL mode.
-- Each migration is a block that starts with `-- version N`; the server runs the blocks whose
-- N is above the database's user_version, in order, each in one transaction.

-- version 1
CREATE TABLE files (
    sha256       TEXT PRIMARY KEY,            -- lowercase hex of the content
    name         TEXT NOT NULL,
    size         INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    storage      TEXT NOT NULL CHECK (storage IN ('blob', 'chunked')),
    created_at   INTEGER NOT NULL             -- unix seconds
);

CREATE TABLE torrents (
    info_hash    TEXT PRIMARY KEY,            -- lowercase hex SHA-1 of info_bytes
    sha256       TEXT NOT NULL REFERENCES files(sha256) ON DELETE CASCADE,
    info_bytes   BLOB NOT NULL,               -- the info dict verbatim: the hash never changes
    piece_length INTEGER NOT NULL
);
CREATE INDEX torrents_by_file ON torrents(sha256);

-- version 2
-- Completed downloads the tracker has counted, per info-hash (written in batches).
CREATE TABLE tracker_downloads (
    info_hash    TEXT PRIMARY KEY,            -- lowercase hex
    downloaded   INTEGER NOT NULL
);

-- Info-hashes the tracker serves in `allowlist` mode (besides the stored torrents).
CREATE TABLE tracker_allowlist (
    info_hash    TEXT PRIMARY KEY,            -- lowercase hex
    added_at     INTEGER NOT NULL             -- unix seconds
);
