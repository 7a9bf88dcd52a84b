//! SQLite queries for Blossom and Nostr: who holds a blob (owners and the API), BUD-09
//! reports, auth events already used for deletes, the outgoing event queue and the relays'
//! rejections. Every table has a cap that the caller passes in.

use super::db::{Db, FileRecord, Result};
use rusqlite::{params, OptionalExtension};

/// One queued event for one relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub relay: String,
    pub event_id: String,
    pub event_json: String,
    pub attempts: u32,
}

/// A stored report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub event_id: String,
    pub reporter: String,
    pub blobs: Vec<String>,
    pub report_type: String,
    pub content: String,
    pub received_at: i64,
}

/// A relay's `OK false`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub relay: String,
    pub event_id: String,
    pub message: String,
    pub at: i64,
}

/// What releasing a blob did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// The pubkey did not own it.
    NotOwner,
    /// Ownership removed; others (or the API) still hold it.
    StillHeld,
    /// Ownership removed and nothing holds it any more: the caller deletes the file.
    Orphaned,
}

impl Db {
    /// Marks an existing file as held by the API (`owner` None) or by a pubkey too.
    pub fn hold(&self, sha256: &str, owner: Option<&str>, at: i64) -> Result<()> {
        let conn = self.conn.lock();
        match owner {
            None => conn.execute("UPDATE files SET api_held = 1 WHERE sha256 = ?1", [sha256])?,
            Some(pk) => conn.execute(
                "INSERT OR IGNORE INTO blob_owners (sha256, pubkey, added_at) VALUES (?1, ?2, ?3)",
                params![sha256, pk, at],
            )?,
        };
        Ok(())
    }

    /// Removes a pubkey's ownership and tells whether anything still holds the file.
    pub fn release(&self, sha256: &str, owner: &str) -> Result<Released> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let removed = tx.execute(
            "DELETE FROM blob_owners WHERE sha256 = ?1 AND pubkey = ?2",
            params![sha256, owner],
        )?;
        if removed == 0 {
            return Ok(Released::NotOwner);
        }
        let held: bool = tx.query_row(
            "SELECT api_held OR EXISTS (SELECT 1 FROM blob_owners WHERE sha256 = ?1)
             FROM files WHERE sha256 = ?1",
            [sha256],
            |r| r.get(0),
        )?;
        tx.commit()?;
        Ok(if held {
            Released::StillHeld
        } else {
            Released::Orphaned
        })
    }

    /// Clears the API's hold on a file. None if there is no such file, else whether nothing
    /// holds it any more (the caller deletes it then).
    pub fn release_api(&self, sha256: &str) -> Result<Option<bool>> {
        let conn = self.conn.lock();
        if conn.execute("UPDATE files SET api_held = 0 WHERE sha256 = ?1", [sha256])? == 0 {
            return Ok(None);
        }
        let owned: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM blob_owners WHERE sha256 = ?1)",
            [sha256],
            |r| r.get(0),
        )?;
        Ok(Some(!owned))
    }

    /// When the pubkey took ownership of the file, if it did.
    pub fn owned_since(&self, owner: &str, sha256: &str) -> Result<Option<i64>> {
        let conn = self.conn.lock();
        conn.query_row(
            "SELECT added_at FROM blob_owners WHERE pubkey = ?1 AND sha256 = ?2",
            params![owner, sha256],
            |r| r.get(0),
        )
        .optional()
    }

    /// A pubkey's files, newest first, after `(added_at, sha256)` of the last one seen,
    /// within `[since, until]` (unix seconds).
    pub fn owned(
        &self,
        owner: &str,
        limit: usize,
        after: Option<(i64, &str)>,
        since: i64,
        until: i64,
    ) -> Result<Vec<(FileRecord, i64)>> {
        let conn = self.conn.lock();
        let (at, sha) = after.unwrap_or((i64::MAX, ""));
        let mut stmt = conn.prepare_cached(
            "SELECT f.sha256, f.name, f.size, f.content_type, f.storage, f.created_at,
                    t.info_hash, t.piece_length, o.added_at
             FROM blob_owners o JOIN files f ON f.sha256 = o.sha256
             JOIN torrents t ON t.sha256 = f.sha256
             WHERE o.pubkey = ?1 AND ((o.added_at, o.sha256) < (?2, ?3) OR ?4)
               AND o.added_at BETWEEN ?5 AND ?6
             ORDER BY o.added_at DESC, o.sha256 DESC LIMIT ?7",
        )?;
        let rows = stmt.query_map(
            params![owner, at, sha, after.is_none(), since, until, limit as i64],
            |r| Ok((super::db::file_from_row(r)?, r.get::<_, i64>(8)?)),
        )?;
        rows.collect()
    }

    /// Stores a report unless its event is known; past `max` rows the oldest go.
    pub fn add_report(&self, r: &Report, event_json: &str, max: usize) -> Result<bool> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let added = tx.execute(
            "INSERT OR IGNORE INTO blossom_reports
             (event_id, reporter, blobs, report_type, content, event_json, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                r.event_id,
                r.reporter,
                r.blobs.join(" "),
                r.report_type,
                r.content,
                event_json,
                r.received_at
            ],
        )? > 0;
        tx.execute(
            "DELETE FROM blossom_reports WHERE id NOT IN
             (SELECT id FROM blossom_reports ORDER BY id DESC LIMIT ?1)",
            [max as i64],
        )?;
        tx.commit()?;
        Ok(added)
    }

    /// Records that an auth event was used, until `expires_at`. False if it was already
    /// used (a replay). Expired ids are forgotten first; past `max` rows the ones that expire
    /// soonest go.
    pub fn use_auth_event(
        &self,
        event_id: &str,
        expires_at: i64,
        now: i64,
        max: usize,
    ) -> Result<bool> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM used_auth_events WHERE expires_at <= ?1", [now])?;
        let fresh = tx.execute(
            "INSERT OR IGNORE INTO used_auth_events (event_id, expires_at) VALUES (?1, ?2)",
            params![event_id, expires_at],
        )? > 0;
        if fresh {
            tx.execute(
                "DELETE FROM used_auth_events WHERE event_id NOT IN
                 (SELECT event_id FROM used_auth_events ORDER BY expires_at DESC LIMIT ?1)",
                [max as i64],
            )?;
        }
        tx.commit()?;
        Ok(fresh)
    }

    /// The newest reports, at most `limit`.
    pub fn reports(&self, limit: usize) -> Result<Vec<Report>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT event_id, reporter, blobs, report_type, content, received_at
             FROM blossom_reports ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], |r| {
            let blobs: String = r.get(2)?;
            Ok(Report {
                event_id: r.get(0)?,
                reporter: r.get(1)?,
                blobs: blobs.split(' ').map(str::to_string).collect(),
                report_type: r.get(3)?,
                content: r.get(4)?,
                received_at: r.get(5)?,
            })
        })?;
        rows.collect()
    }

    pub fn report_count(&self) -> Result<u64> {
        let conn = self.conn.lock();
        conn.query_row("SELECT COUNT(*) FROM blossom_reports", [], |r| {
            r.get::<_, i64>(0)
        })
        .map(|n| n as u64)
    }

    /// Queues one event for each relay; past `max` rows the oldest go (returned: how many).
    pub fn enqueue(
        &self,
        relays: &[String],
        event_id: &str,
        event_json: &str,
        now: i64,
        max: usize,
    ) -> Result<usize> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        for relay in relays {
            tx.execute(
                "INSERT OR IGNORE INTO nostr_outbox
                 (relay, event_id, event_json, attempts, next_at, created_at)
                 VALUES (?1, ?2, ?3, 0, ?4, ?4)",
                params![relay, event_id, event_json, now],
            )?;
        }
        let count: i64 = tx.query_row("SELECT COUNT(*) FROM nostr_outbox", [], |r| r.get(0))?;
        let excess = count - max as i64;
        let dropped = if excess > 0 {
            tx.execute(
                "DELETE FROM nostr_outbox WHERE rowid IN
                 (SELECT rowid FROM nostr_outbox ORDER BY created_at, rowid LIMIT ?1)",
                [excess],
            )?
        } else {
            0
        };
        tx.commit()?;
        Ok(dropped)
    }

    /// Queued events for `relay` due at `now`, oldest first.
    pub fn due(&self, relay: &str, now: i64, limit: usize) -> Result<Vec<Outgoing>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT relay, event_id, event_json, attempts FROM nostr_outbox
             WHERE relay = ?1 AND next_at <= ?2 ORDER BY created_at, rowid LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![relay, now, limit as i64], |r| {
            Ok(Outgoing {
                relay: r.get(0)?,
                event_id: r.get(1)?,
                event_json: r.get(2)?,
                attempts: r.get::<_, i64>(3)? as u32,
            })
        })?;
        rows.collect()
    }

    /// The earliest `next_at` among `relay`'s queued events.
    pub fn next_due(&self, relay: &str) -> Result<Option<i64>> {
        let conn = self.conn.lock();
        conn.query_row(
            "SELECT MIN(next_at) FROM nostr_outbox WHERE relay = ?1",
            [relay],
            |r| r.get(0),
        )
    }

    /// An event reached the relay (accepted or finally rejected): out of the queue.
    pub fn sent(&self, relay: &str, event_id: &str) -> Result<()> {
        let conn = self.conn.lock();
        conn.execute(
            "DELETE FROM nostr_outbox WHERE relay = ?1 AND event_id = ?2",
            params![relay, event_id],
        )?;
        Ok(())
    }

    /// Puts every queued event of `relay` off until `next_at`, noting the error; `attempt`
    /// counts it against the events (the relay answered, but not with an acceptance).
    pub fn defer(&self, relay: &str, next_at: i64, error: &str, attempt: bool) -> Result<()> {
        let conn = self.conn.lock();
        conn.execute(
            "UPDATE nostr_outbox SET attempts = attempts + ?4, next_at = ?2, last_error = ?3
             WHERE relay = ?1 AND next_at < ?2",
            params![relay, next_at, error, i64::from(attempt)],
        )?;
        Ok(())
    }

    /// Removes `relay`'s events tried `max_attempts` times; returns their ids.
    pub fn drop_exhausted(&self, relay: &str, max_attempts: u32) -> Result<Vec<String>> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let ids: Vec<String> = {
            let mut stmt = tx.prepare_cached(
                "SELECT event_id FROM nostr_outbox WHERE relay = ?1 AND attempts >= ?2",
            )?;
            let rows = stmt.query_map(params![relay, max_attempts], |r| r.get(0))?;
            rows.collect::<Result<_>>()?
        };
        tx.execute(
            "DELETE FROM nostr_outbox WHERE relay = ?1 AND attempts >= ?2",
            params![relay, max_attempts],
        )?;
        tx.commit()?;
        Ok(ids)
    }

    /// Drops queued events for relays no longer configured; returns how many.
    pub fn forget_relays_except(&self, relays: &[String]) -> Result<usize> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare("SELECT DISTINCT relay FROM nostr_outbox")?;
        let known: Vec<String> = stmt.query_map([], |r| r.get(0))?.collect::<Result<_>>()?;
        let mut dropped = 0;
        for relay in known.iter().filter(|r| !relays.contains(r)) {
            dropped += conn.execute("DELETE FROM nostr_outbox WHERE relay = ?1", [relay])?;
        }
        Ok(dropped)
    }

    /// Queued events per relay, with the last error.
    pub fn outbox_summary(&self) -> Result<Vec<(String, u64, Option<String>)>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT relay, COUNT(*), MAX(last_error) FROM nostr_outbox GROUP BY relay",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get::<_, i64>(1)? as u64, r.get(2)?))
        })?;
        rows.collect()
    }

    /// Keeps a relay's rejection, at most `max` kept (the newest).
    pub fn add_rejection(&self, r: &Rejection, max: usize) -> Result<()> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO nostr_rejections (relay, event_id, message, at) VALUES (?1, ?2, ?3, ?4)",
            params![r.relay, r.event_id, r.message, r.at],
        )?;
        tx.execute(
            "DELETE FROM nostr_rejections WHERE id NOT IN
             (SELECT id FROM nostr_rejections ORDER BY id DESC LIMIT ?1)",
            [max as i64],
        )?;
        tx.commit()
    }

    /// The newest rejections, at most `limit`.
    pub fn rejections(&self, limit: usize) -> Result<Vec<Rejection>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT relay, event_id, message, at FROM nostr_rejections ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok(Rejection {
                relay: r.get(0)?,
                event_id: r.get(1)?,
                message: r.get(2)?,
                at: r.get(3)?,
            })
        })?;
        rows.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::db::tests::record;

    #[test]
    fn owners_hold_and_release() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("g.db")).unwrap();
        db.insert_held(&record("a", 1), b"de", Some("alice"))
            .unwrap();
        db.insert_held(&record("b", 2), b"de", Some("alice"))
            .unwrap();
        db.insert(&record("c", 3), b"de").unwrap();
        db.hold("c", Some("alice"), 4).unwrap();
        db.hold("a", Some("bob"), 5).unwrap();
        let list = db.owned("alice", 10, None, 0, i64::MAX).unwrap();
        let shas: Vec<_> = list.iter().map(|(r, _)| r.sha256.as_str()).collect();
        assert_eq!(shas, ["c", "b", "a"]);
        let page = db.owned("alice", 1, Some((4, "c")), 0, i64::MAX).unwrap();
        assert_eq!(page[0].0.sha256, "b");
        assert_eq!(db.owned("alice", 10, None, 2, 3).unwrap().len(), 1);
        assert_eq!(db.owned_since("alice", "b").unwrap(), Some(2));
        assert_eq!(db.release("a", "carol").unwrap(), Released::NotOwner);
        assert_eq!(db.release("a", "alice").unwrap(), Released::StillHeld);
        assert_eq!(db.release("a", "bob").unwrap(), Released::Orphaned);
        assert_eq!(
            db.release("c", "alice").unwrap(),
            Released::StillHeld,
            "API holds c"
        );
        db.delete("b").unwrap();
        assert!(db.owned("alice", 10, None, 0, i64::MAX).unwrap().is_empty());
    }

    #[test]
    fn used_auth_events_are_remembered_until_they_expire_and_capped() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("g.db")).unwrap();
        assert!(db.use_auth_event("e1", 2000, 1000, 2).unwrap());
        assert!(!db.use_auth_event("e1", 2000, 1500, 2).unwrap(), "a replay");
        assert!(db.use_auth_event("e2", 3000, 1500, 2).unwrap());
        assert!(db.use_auth_event("e3", 4000, 1500, 2).unwrap());
        assert!(
            db.use_auth_event("e1", 2000, 1500, 2).unwrap(),
            "past the cap the soonest to expire is forgotten"
        );
        assert!(!db.use_auth_event("e3", 4000, 1500, 2).unwrap());
        assert!(db.use_auth_event("e9", 9000, 3500, 2).unwrap());
        assert!(
            db.use_auth_event("e2", 3000, 3500, 2).unwrap(),
            "an expired id is forgotten"
        );
        drop(db);
        let db = Db::open(&dir.path().join("g.db")).unwrap();
        assert!(
            !db.use_auth_event("e9", 9000, 3600, 2).unwrap(),
            "kept across restarts"
        );
    }

    #[test]
    fn outbox_reports_and_rejections_are_capped() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("g.db")).unwrap();
        let relays = vec!["ws://a".to_string(), "ws://b".to_string()];
        assert_eq!(db.enqueue(&relays, "e1", "{}", 10, 3).unwrap(), 0);
        assert_eq!(db.enqueue(&relays, "e2", "{}", 11, 3).unwrap(), 1);
        assert_eq!(db.due("ws://a", 11, 10).unwrap().len(), 1, "oldest dropped");
        db.defer("ws://b", 100, "refused", true).unwrap();
        assert!(db.due("ws://b", 50, 10).unwrap().is_empty());
        assert_eq!(db.next_due("ws://b").unwrap(), Some(100));
        let due = db.due("ws://b", 100, 10).unwrap();
        assert_eq!(due[0].attempts, 1);
        assert_eq!(db.drop_exhausted("ws://b", 2).unwrap().len(), 0);
        assert_eq!(db.drop_exhausted("ws://b", 1).unwrap(), ["e1", "e2"]);
        db.enqueue(&relays, "e3", "{}", 12, 10).unwrap();
        db.defer("ws://b", 200, "down", false).unwrap();
        assert_eq!(db.due("ws://b", 200, 10).unwrap()[0].attempts, 0);
        assert_eq!(db.forget_relays_except(&relays[..1]).unwrap(), 1);
        assert_eq!(db.outbox_summary().unwrap().len(), 1);
        for i in 0..5 {
            let r = Report {
                event_id: format!("r{i}"),
                reporter: "p".into(),
                blobs: vec!["x".into(), "y".into()],
                report_type: "spam".into(),
                content: String::new(),
                received_at: i,
            };
            assert!(db.add_report(&r, "{}", 3).unwrap());
            assert!(
                !db.add_report(&r, "{}", 3).unwrap(),
                "the same report twice"
            );
            db.add_rejection(
                &Rejection {
                    relay: "ws://a".into(),
                    event_id: format!("e{i}"),
                    message: "blocked".into(),
                    at: i,
                },
                2,
            )
            .unwrap();
        }
        assert_eq!(db.report_count().unwrap(), 3);
        assert_eq!(db.reports(1).unwrap()[0].blobs, ["x", "y"]);
        assert_eq!(db.rejections(10).unwrap().len(), 2);
    }
}
