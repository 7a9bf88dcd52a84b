//! The Redis backend of the swarm registry, so several gateway processes answer for one
//! announce URL with one swarm state (no async runtime: lanes of blocking connections; the
//! sync `redis` crate parses the URL and names the script, `proto::resp` is the wire).
//!
//! Data model, per torrent, every key carrying the `{info_hash}` hash tag so a Redis Cluster
//! keeps one torrent on one slot: four sorted sets `tg:{ih}:s4`, `:l4`, `:s6`, `:l6` (seeders
//! and leechers of each address family; member = the compact peer then its identity
//! (peer_id, then key or address), score = its last announce in Unix seconds), a hash `:p`
//! (identity → a completion flag and the current member, so a keyed client that moves is
//! found and moved)
//! and a hash `:c` (field `d`: completed downloads, grown with HINCRBY). No global counters:
//! counts are set sizes, so gateways sharing a Redis never drift. An announce is one round
//! trip: a pipeline of one Lua script, which drops expired members (at most once a second per
//! swarm), adds or moves the announcer and returns both counts and the set sizes, and native
//! `ZRANGE`s that sample `numwant` others (windows of ranks from a random start, placed by
//! the sizes the swarm had at its last announce to this gateway: members copied through Lua
//! cost Redis about ten times what a native `ZRANGE` does). Every key gets a TTL, so
//! abandoned swarms vanish on their own. A scrape is one pipeline of ZCOUNTs and HGETs.
//!
//! Requests go through [`super::redis_lanes`] (a few connections, each batching what waits
//! into one pipeline; deadlines, back-off and health are theirs).
//!
//! Differences from the memory backend: `max_torrents` and `max_peers` (global caps) are not
//! enforced here (Redis' own `maxmemory` is that cap); `max_peers_per_torrent` is.

use super::redis_conn::Replies;
use super::redis_lanes::{Callback, Lanes};
use super::registry::{ident_bytes, AnnounceIn, Family, Peer, PeerSink, Refusal};
use crate::hash::Counter;
use crate::proto::hex;
use crate::proto::resp::{self, num, Reply};
use crate::proto::tracker::http::{self as tracker_http, Event, SwarmCounts};
use parking_lot::Mutex;
use redis::IntoConnectionInfo;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Bytes of a peer identity (`registry::ident_bytes`), the tail of every set member.
const IDENT_LEN: usize = 39;
/// The keys of one torrent, in the order the script's KEYS have them: the four sets (seeders
/// and leechers of IPv4, then of IPv6), the identity hash, the counts hash.
const SETS_AND_HASHES: [&str; 6] = ["s4", "l4", "s6", "l6", "p", "c"];
/// Torrents whose set sizes are remembered for sampling (the table is emptied when full).
const SIZES_CAP: usize = 65_536;
/// Completed counts outlive swarms: kept this long after the last announce.
const COUNT_TTL_SECS: u64 = 30 * 24 * 3600;
/// Expired members dropped per set and announce (the rest go on later announces).
const EXPIRE_BATCH: u32 = 256;

const ANNOUNCE_LUA: &str = r#"
local now = tonumber(ARGV[1])
local meta = redis.call('HMGET', KEYS[6], 'd', 'x')
local downloaded = tonumber(meta[1] or '0')
if meta[2] ~= ARGV[1] then
  -- At most once a second per swarm: drop expired members, refresh every TTL. The HSET
  -- comes first: out of memory, Redis refuses a script's first deny-oom write but lets every
  -- write through once any has run. With it first, an announce that would add an entry is
  -- refused before it writes anything (later in the second, its first write is the identity
  -- HSET; re-announces from the same address only move a score, and go through).
  redis.call('HSET', KEYS[6], 'x', ARGV[1])
  local cutoff = '(' .. (now - tonumber(ARGV[2]))
  for i = 1, 4 do
    local old = redis.call('ZRANGEBYSCORE', KEYS[i], '-inf', cutoff, 'LIMIT', 0, ARGV[11])
    if #old > 0 then
      redis.call('ZREM', KEYS[i], unpack(old))
      local idents = {}
      for j, m in ipairs(old) do idents[j] = string.sub(m, -39) end
      redis.call('HDEL', KEYS[5], unpack(idents))
    end
    redis.call('EXPIRE', KEYS[i], ARGV[10])
  end
  redis.call('EXPIRE', KEYS[5], ARGV[10])
  redis.call('EXPIRE', KEYS[6], ARGV[12])
end
local n = {}
for i = 1, 4 do n[i] = redis.call('ZCARD', KEYS[i]) end
local empty = n[1] + n[2] + n[3] + n[4] == 0
-- Both counts, completed downloads, a code, then the four set sizes (for sampling).
local function counts(code)
  return {n[1] + n[3], n[2] + n[4], downloaded, code, n[1], n[2], n[3], n[4]}
end
local ident, member, seed, event = ARGV[3], ARGV[4], ARGV[6] == '1', ARGV[7]
local fam = (ARGV[5] == '1') and 3 or 1
local mi = seed and fam or fam + 1
local oi = seed and fam + 1 or fam
local prev = redis.call('HGET', KEYS[5], ident)
local old = prev and string.sub(prev, 2)
if event == 'x' then
  if prev then
    n[mi] = n[mi] - redis.call('ZREM', KEYS[mi], old)
    n[oi] = n[oi] - redis.call('ZREM', KEYS[oi], old)
    redis.call('HDEL', KEYS[5], ident)
  end
  return counts(0)
end
if prev and event == 'n' then
  local seen = redis.call('ZSCORE', KEYS[mi], old)
  if seen and now - tonumber(seen) < tonumber(ARGV[9]) then
    return counts(1)
  end
end
if not prev and n[1] + n[2] + n[3] + n[4] >= tonumber(ARGV[8]) then
  return counts(-1)
end
local counted = prev and string.byte(prev, 1) == 49
if event == 'c' and not counted then
  downloaded = redis.call('HINCRBY', KEYS[6], 'd', 1)
  counted = true
end
-- A re-announce from the same address changes nothing here.
local entry = (counted and '1' or '0') .. member
if prev ~= entry then redis.call('HSET', KEYS[5], ident, entry) end
if prev then
  if old ~= member then n[mi] = n[mi] - redis.call('ZREM', KEYS[mi], old) end
  n[oi] = n[oi] - redis.call('ZREM', KEYS[oi], old)
end
local before = n[mi]
n[mi] = n[mi] + redis.call('ZADD', KEYS[mi], ARGV[1], member)
-- A key just made gets its TTL now; the once-a-second sweep refreshes the others.
if before == 0 then redis.call('EXPIRE', KEYS[mi], ARGV[10]) end
-- The identity hash of a swarm that had members has its TTL from the sweep.
if not prev and empty then redis.call('EXPIRE', KEYS[5], ARGV[10]) end
return counts(0)
"#;

/// Settings of the Redis backend.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub url: String,
    pub pool: usize,
    pub timeout: Duration,
    pub peer_timeout_secs: u32,
    pub max_peers_per_torrent: usize,
}

/// Swarms kept in Redis.
pub struct RedisSwarms {
    settings: RedisSettings,
    /// The announce script's SHA-1, as EVALSHA names it.
    script: String,
    lanes: Lanes,
    sizes: Sizes,
    pub too_fast: Counter,
}

/// The set sizes (`SETS_AND_HASHES[0..4]`) each swarm had at its last announce here.
#[derive(Default)]
struct Sizes(Mutex<HashMap<[u8; 20], [u32; 4]>>);

impl Sizes {
    fn get(&self, ih: &[u8; 20]) -> Option<[u32; 4]> {
        self.0.lock().get(ih).copied()
    }

    fn put(&self, ih: [u8; 20], sizes: [u32; 4]) {
        let mut map = self.0.lock();
        if map.len() >= SIZES_CAP && !map.contains_key(&ih) {
            map.clear();
        }
        map.insert(ih, sizes);
    }
}

/// What an announce that does not wait calls with its outcome and peers.
pub type Done = Box<dyn FnOnce(Result<SwarmCounts, Refusal>, Vec<Peer>) + Send>;

/// What reading an announce's replies needs: the torrent, the announcer's compact address
/// (never handed out to itself) and how many peers it wants.
struct Staged {
    ih: [u8; 20],
    addr: Vec<u8>,
    want: usize,
}

/// One `ZRANGE set start stop` of a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    set: usize,
    start: u32,
    stop: u32,
}

/// Where to sample `want` peers: the sets a seeder (leechers only) or a leecher (seeders,
/// then leechers) gets, families in `order` ('4', '6'), each a window of ranks from a
/// random start that wraps at the set's end, one more than still wanted (the announcer may
/// be among them). Sizes unknown (the first announce here): the start of every set.
fn sample_plan(
    seed: bool,
    order: &str,
    want: usize,
    sizes: Option<[u32; 4]>,
    rnd: u32,
) -> Vec<Range> {
    let mut plan = Vec::new();
    let mut left = want;
    for fam in order.bytes() {
        let base = if fam == b'6' { 2 } else { 0 };
        for set in (base + usize::from(seed))..base + 2 {
            if left == 0 {
                return plan;
            }
            let ask = u32::try_from(left + 1).unwrap_or(u32::MAX);
            let Some(sizes) = sizes else {
                plan.push(Range {
                    set,
                    start: 0,
                    stop: ask - 1,
                });
                continue;
            };
            let n = sizes[set];
            if n == 0 {
                continue;
            }
            let take = ask.min(n);
            let start = rnd % n;
            let end = start.saturating_add(take);
            plan.push(Range {
                set,
                start,
                stop: end.min(n) - 1,
            });
            if end > n {
                plan.push(Range {
                    set,
                    start: 0,
                    stop: end - n - 1,
                });
            }
            left = left.saturating_sub(take as usize - 1);
        }
    }
    plan
}

fn key(info_hash: &[u8; 20], part: &str) -> Vec<u8> {
    format!("tg:{{{}}}:{part}", hex::encode(info_hash)).into_bytes()
}

/// A per-thread xorshift number (where in a set sampling starts).
fn random_u32() -> u32 {
    use std::cell::Cell;
    use std::hash::{BuildHasher, Hasher};
    thread_local! {
        static RNG: Cell<u64> = Cell::new({
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u8(1);
            h.finish() | 1
        });
    }
    RNG.with(|c| {
        let mut x = c.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.set(x);
        (x >> 32) as u32
    })
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A compact address (6 or 18 bytes) and the peer_id (20) as a peer handed out.
fn peer_of(bytes: &[u8]) -> Option<Peer> {
    let split = bytes.len().checked_sub(20)?;
    let mut p = Peer::seed(tracker_http::parse_compact_peer(&bytes[..split])?);
    p.id = bytes[split..].try_into().ok()?;
    Some(p)
}

fn count(v: &Reply<'_>) -> u32 {
    u32::try_from(v.int().max(0)).unwrap_or(u32::MAX)
}

impl RedisSwarms {
    /// A backend for `settings.url`; connects lazily, so a Redis that is down at start-up
    /// only makes announces fail until it is up.
    pub fn new(settings: RedisSettings) -> Result<RedisSwarms, String> {
        let info = settings
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| format!("tracker.redis_url: {e}"))?;
        let lanes = Lanes::new(info, settings.pool, settings.timeout, ANNOUNCE_LUA);
        Ok(RedisSwarms {
            settings,
            script: redis::Script::new(ANNOUNCE_LUA).get_hash().to_owned(),
            lanes,
            sizes: Sizes::default(),
            too_fast: Counter::default(),
        })
    }

    /// Whether the last exchange reached Redis (and, if not, why).
    pub fn health(&self) -> (bool, String) {
        self.lanes.health()
    }

    /// Failed exchanges with Redis.
    pub fn errors(&self) -> u64 {
        self.lanes.errors()
    }

    /// While Redis is unreachable, one PING (the maintenance thread calls this).
    pub fn probe(&self) {
        self.lanes.probe();
    }

    /// A reply that cannot be used (a script error, Redis out of memory): logged once while
    /// it lasts, not once per announce.
    fn fail(&self, e: &str) -> Refusal {
        self.lanes.failed(e);
        Refusal::Unavailable
    }

    /// Records an announce and appends up to `numwant` other peers to `out` (waiting for
    /// a lane).
    pub fn announce(
        &self,
        a: &AnnounceIn,
        out: &mut impl PeerSink,
    ) -> Result<SwarmCounts, Refusal> {
        let (packed, count, staged) = self.stage(a);
        let reply = self.lanes.run(packed, count)?;
        self.settle(&staged, &reply, out)
    }

    /// [`RedisSwarms::announce`] without waiting: `done` gets the outcome and the peers
    /// once, as [`Lanes::submit`] calls back.
    pub fn submit(self: &Arc<Self>, a: &AnnounceIn, done: Done) {
        let (packed, count, staged) = self.stage(a);
        let me = Arc::clone(self);
        let call: Callback = Box::new(move |reply| {
            let mut peers = Vec::new();
            let result = reply.and_then(|r| me.settle(&staged, &r, &mut peers));
            done(result, peers)
        });
        self.lanes.submit(packed, count, call);
    }

    /// An announce's pipeline (`count` commands: the script, then the sampling `ZRANGE`s)
    /// and what reading its replies needs.
    fn stage(&self, a: &AnnounceIn) -> (Vec<u8>, usize, Staged) {
        let seed = a.left == Some(0) || (a.left.is_none() && a.event == Event::Completed);
        let ident = ident_bytes(a);
        let announcer = Peer::seed(SocketAddr::new(a.ip, a.port));
        let mut addr = Vec::with_capacity(18);
        announcer.write_compact(&mut addr);
        let event = match a.event {
            Event::None => "n",
            Event::Started => "s",
            Event::Completed => "c",
            Event::Stopped => "x",
        };
        let order = match a.family {
            Family::V4 => "4",
            Family::V6 => "6",
            Family::V6First => "64",
            Family::Both | Family::V4First => "46",
        };
        let ih = &a.info_hash;
        let s = &self.settings;
        let keys: [Vec<u8>; 6] = SETS_AND_HASHES.map(|part| key(ih, part));
        let member = [&addr[..], &ident[..]].concat();
        let mut packed = Vec::with_capacity(640);
        resp::command(
            &mut packed,
            &[
                b"EVALSHA",
                self.script.as_bytes(),
                &num(keys.len() as u64),
                &keys[0],
                &keys[1],
                &keys[2],
                &keys[3],
                &keys[4],
                &keys[5],
                &num(now_unix()),
                &num(u64::from(s.peer_timeout_secs)),
                &ident[..],
                &member,
                if announcer.is_v6() { b"1" } else { b"0" },
                if seed { b"1" } else { b"0" },
                event.as_bytes(),
                &num(s.max_peers_per_torrent as u64),
                &num(u64::from(a.min_interval)),
                &num(u64::from(s.peer_timeout_secs) + 60),
                &num(u64::from(EXPIRE_BATCH)),
                &num(COUNT_TTL_SECS),
            ],
        );
        // The sample rides in the same round trip as native ZRANGEs (a set's members copied
        // through Lua cost Redis ten times more), placed by the sizes this swarm had at its
        // last announce here.
        let sizes = self.sizes.get(ih);
        let want = if a.event == Event::Stopped {
            0
        } else {
            a.numwant
        };
        let plan = sample_plan(seed, order, want, sizes, random_u32());
        for r in &plan {
            resp::command(
                &mut packed,
                &[
                    b"ZRANGE",
                    &keys[r.set],
                    &num(u64::from(r.start)),
                    &num(u64::from(r.stop)),
                ],
            );
        }
        let count = 1 + plan.len();
        (
            packed,
            count,
            Staged {
                ih: *ih,
                addr,
                want,
            },
        )
    }

    /// Reads an announce's replies: the counts, and up to `want` peers into `out`.
    fn settle(
        &self,
        staged: &Staged,
        reply: &Replies,
        out: &mut impl PeerSink,
    ) -> Result<SwarmCounts, Refusal> {
        let Staged { ih, addr, want } = staged;
        let (ih, want) = (ih, *want);
        let counts: Vec<Reply<'_>> = match reply.get(0) {
            Reply::Array(counts) => counts.take(8).collect(),
            Reply::Error(e) => {
                return Err(self.fail(&format!("announce: {}", String::from_utf8_lossy(e))))
            }
            _ => return Err(self.fail("announce script answered no counts")),
        };
        if counts.len() < 8 {
            return Err(self.fail("announce script answered too little"));
        }
        self.sizes.put(*ih, [4, 5, 6, 7].map(|i| count(&counts[i])));
        match counts[3].int() {
            -1 => return Err(Refusal::SwarmFull),
            1 => self.too_fast.add(1),
            _ => {
                // Members: the compact address, then the identity, whose first 20 bytes are
                // the peer_id; never the announcer's own address.
                let mut taken = 0;
                'sets: for set in reply.iter().skip(1) {
                    let Reply::Array(members) = set else { continue };
                    for v in members {
                        let Reply::Bulk(m) = v else { continue };
                        let Some(alen) = m.len().checked_sub(IDENT_LEN) else {
                            continue;
                        };
                        if taken == want {
                            break 'sets;
                        }
                        if m[..alen] == addr[..] {
                            continue;
                        }
                        if let Some(p) = peer_of(&m[..alen + 20]) {
                            out.take(&p);
                            taken += 1;
                        }
                    }
                }
            }
        }
        Ok(SwarmCounts {
            complete: count(&counts[0]),
            incomplete: count(&counts[1]),
            downloaded: u64::try_from(counts[2].int().max(0)).unwrap_or(0),
        })
    }

    /// Counts of several torrents in one pipeline.
    pub fn scrape(&self, hashes: &[[u8; 20]]) -> Result<Vec<SwarmCounts>, Refusal> {
        if hashes.is_empty() {
            return Ok(Vec::new());
        }
        let cutoff = num(now_unix().saturating_sub(u64::from(self.settings.peer_timeout_secs)));
        let mut packed = Vec::with_capacity(hashes.len() * 300);
        for ih in hashes {
            for part in ["s4", "s6", "l4", "l6"] {
                resp::command(&mut packed, &[b"ZCOUNT", &key(ih, part), &cutoff, b"+inf"]);
            }
            resp::command(&mut packed, &[b"HGET", &key(ih, "c"), b"d"]);
        }
        let v = self.lanes.run(packed, hashes.len() * 5)?;
        if let Some(e) = v.iter().find_map(|r| r.error()) {
            return Err(self.fail(&format!("scrape: {e}")));
        }
        let v: Vec<Reply<'_>> = v.iter().collect();
        if v.len() != hashes.len() * 5 {
            return Err(self.fail("scrape pipeline answered too little"));
        }
        Ok(v.chunks_exact(5)
            .map(|r| SwarmCounts {
                complete: count(&r[0]) + count(&r[1]),
                incomplete: count(&r[2]) + count(&r[3]),
                downloaded: u64::try_from(r[4].int().max(0)).unwrap_or(0),
            })
            .collect())
    }

    /// Forgets one torrent's peers (it stopped being allowed); its count stays.
    pub fn remove(&self, info_hash: &[u8; 20]) -> Result<(), Refusal> {
        let keys: Vec<Vec<u8>> = SETS_AND_HASHES[..5]
            .iter()
            .map(|p| key(info_hash, p))
            .collect();
        let mut args: Vec<&[u8]> = vec![b"DEL"];
        args.extend(keys.iter().map(Vec::as_slice));
        let mut packed = Vec::new();
        resp::command(&mut packed, &args);
        match self.lanes.run(packed, 1)?.get(0).error() {
            Some(e) => Err(self.fail(&format!("DEL: {e}"))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(set: usize, start: u32, stop: u32) -> Range {
        Range { set, start, stop }
    }

    #[test]
    fn samples_seeders_then_leechers_wrapping_at_the_end() {
        // A leecher, IPv4 only: 10 seeders, 100 leechers, 5 wanted (6 asked: it may be one).
        let sizes = Some([10, 100, 0, 0]);
        assert_eq!(
            sample_plan(false, "4", 5, sizes, 7),
            vec![r(0, 7, 9), r(0, 0, 2)],
            "a window of 6 from rank 7 wraps"
        );
        // More wanted than seeders: all of them, then leechers for the rest.
        assert_eq!(
            sample_plan(false, "4", 20, sizes, 3),
            vec![r(0, 3, 9), r(0, 0, 2), r(1, 3, 14)]
        );
        // A seeder gets leechers only; empty sets are skipped; IPv6 first when asked.
        assert_eq!(sample_plan(true, "4", 5, sizes, 50), vec![r(1, 50, 55)]);
        assert_eq!(
            sample_plan(false, "64", 5, Some([0, 3, 2, 0]), 1),
            vec![r(2, 1, 1), r(2, 0, 0), r(1, 1, 2), r(1, 0, 0)]
        );
        assert!(
            sample_plan(false, "4", 0, sizes, 1).is_empty(),
            "none wanted"
        );
    }

    #[test]
    fn without_sizes_samples_from_the_start_of_each_set() {
        assert_eq!(
            sample_plan(false, "4", 50, None, 9),
            vec![r(0, 0, 50), r(1, 0, 50)]
        );
        assert_eq!(
            sample_plan(true, "46", 2, None, 9),
            vec![r(1, 0, 2), r(3, 0, 2)]
        );
    }

    #[test]
    fn the_sizes_table_is_capped() {
        let t = Sizes::default();
        for i in 0..=SIZES_CAP as u32 {
            let mut ih = [0; 20];
            ih[..4].copy_from_slice(&i.to_be_bytes());
            t.put(ih, [i, 0, 0, 0]);
        }
        assert!(t.0.lock().len() <= SIZES_CAP);
    }
}
