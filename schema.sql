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

-- version 3
-- Blossom: who holds a file. `api_held` is set by API uploads (and Blossom uploads without
-- auth); Blossom uploads with auth add owners. A file goes when nothing holds it any more.
ALTER TABLE files ADD COLUMN api_held INTEGER NOT NULL DEFAULT 1;

CREATE TABLE blob_owners (
    sha256       TEXT NOT NULL REFERENCES files(sha256) ON DELETE CASCADE,
    pubkey       TEXT NOT NULL,               -- lowercase hex x-only key
    added_at     INTEGER NOT NULL,            -- unix seconds
    PRIMARY KEY (pubkey, sha256)
);
CREATE INDEX blob_owners_by_file ON blob_owners(sha256);
CREATE INDEX blob_owners_newest ON blob_owners(pubkey, added_at, sha256);

-- BUD-09 reports (kind 1984 events), for operators; capped by blossom.max_reports.
CREATE TABLE blossom_reports (
    id           INTEGER PRIMARY KEY,
    event_id     TEXT NOT NULL UNIQUE,
    reporter     TEXT NOT NULL,               -- pubkey of the report's author
    blobs        TEXT NOT NULL,               -- the reported sha256s, space-separated
    report_type  TEXT NOT NULL,               -- e.g. nudity, malware, illegal, spam, other
    content      TEXT NOT NULL,
    event_json   TEXT NOT NULL,
    received_at  INTEGER NOT NULL
);

-- NIP-94 events waiting for a relay, one row per (relay, event): survives restarts.
CREATE TABLE nostr_outbox (
    relay        TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    event_json   TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      INTEGER NOT NULL,            -- unix seconds of the next attempt
    last_error   TEXT,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (relay, event_id)
);
CREATE INDEX nostr_outbox_due ON nostr_outbox(relay, next_at);
CREATE INDEX nostr_outbox_age ON nostr_outbox(created_at);

-- Relay answers `OK false`, newest kept (capped), for /api/diagnostics.
CREATE TABLE nostr_rejections (
    id           INTEGER PRIMARY KEY,
    relay        TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    message      TEXT NOT NULL,
    at           INTEGER NOT NULL
);

-- version 4
-- Ids of BUD-11 auth events already used for a delete, kept until they expire so a replayed
-- token is refused; capped (the soonest to expire are forgotten first).
CREATE TABLE used_auth_events (
    event_id     TEXT PRIMARY KEY,
    expires_at   INTEGER NOT NULL             -- unix seconds
);
CREATE INDEX used_auth_events_expiry ON used_auth_events(expires_at);
