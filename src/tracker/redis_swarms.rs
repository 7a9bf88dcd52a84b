//! The Redis backend of the swarm registry, so several gateway processes answer for one
//! announce URL with one swarm state (the sync `redis` crate: no async runtime).
//!
//! Data model, per torrent, every key carrying the `{info_hash}` hash tag so a Redis Cluster
//! keeps one torrent on one slot: four sorted sets `tg:{ih}:s4`, `:l4`, `:s6`, `:l6` (seeders
//! and leechers of each address family; member = the peer's identity bytes, score = its last
//! announce in Unix seconds), a hash `:p` (identity → compact address and a completion flag)
//! and a hash `:c` (field `d`: completed downloads, grown with HINCRBY). No global counters:
//! counts are set sizes, so gateways sharing a Redis never drift. One Lua script per
//! announce drops expired members, adds or moves the announcer, samples `numwant` others and
//! returns both counts (one round trip); every key gets a TTL, so abandoned swarms vanish on
//! their own. A scrape is one pipeline of ZCOUNTs and HGETs.
//!
//! Connections come from a small bounded pool; every command has a deadline. When Redis is
//! down or slow an announce fails with [`Refusal::Unavailable`] at once (a new connection is
//! tried at most every [`RETRY_MS`]), [`RedisSwarms::healthy`] turns false, and the first
//! announce after Redis returns works again.
//!
//! Differences from the memory backend: `max_torrents` and `max_peers` (global caps) are not
//! enforced here (Redis' own `maxmemory` is that cap); `max_peers_per_torrent` is.

use super::registry::{ident_bytes, AnnounceIn, Family, Peer, PeerSink, Refusal};
use crate::hash::Counter;
use crate::proto::hex;
use crate::proto::tracker_http::{Event, SwarmCounts};
use parking_lot::{Condvar, Mutex};
use redis::Value;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Milliseconds between connection attempts while Redis is unreachable.
pub const RETRY_MS: u64 = 250;
/// Completed counts outlive swarms: kept this long after the last announce.
const COUNT_TTL_SECS: u64 = 30 * 24 * 3600;
/// Expired members dropped per set and announce (the rest go on later announces).
const EXPIRE_BATCH: u32 = 256;

const ANNOUNCE_LUA: &str = r#"
local now = tonumber(ARGV[1])
local cutoff = now - tonumber(ARGV[2])
for i = 1, 4 do
  local old = redis.call('ZRANGEBYSCORE', KEYS[i], '-inf', '(' .. cutoff, 'LIMIT', 0, tonumber(ARGV[13]))
  if #old > 0 then
    redis.call('ZREM', KEYS[i], unpack(old))
    redis.call('HDEL', KEYS[5], unpack(old))
  end
end
local function counts(code)
  local d = redis.call('HGET', KEYS[6], 'd')
  return {redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[3]),
          redis.call('ZCARD', KEYS[2]) + redis.call('ZCARD', KEYS[4]),
          tonumber(d or '0'), code}
end
local ident, addr, seed, event = ARGV[3], ARGV[4], ARGV[6] == '1', ARGV[7]
local fam = (ARGV[5] == '1') and 3 or 1
local mine = seed and KEYS[fam] or KEYS[fam + 1]
local other = seed and KEYS[fam + 1] or KEYS[fam]
local prev = redis.call('HGET', KEYS[5], ident)
if event == 'x' then
  if prev then
    redis.call('ZREM', mine, ident)
    redis.call('ZREM', other, ident)
    redis.call('HDEL', KEYS[5], ident)
  end
  return counts(0)
end
if prev and event == 'n' then
  local seen = redis.call('ZSCORE', mine, ident)
  if seen and now - tonumber(seen) < tonumber(ARGV[11]) then
    return counts(1)
  end
end
if not prev then
  local n = 0
  for i = 1, 4 do n = n + redis.call('ZCARD', KEYS[i]) end
  if n >= tonumber(ARGV[10]) then return counts(-1) end
end
local counted = prev and string.sub(prev, -1) == '1'
if event == 'c' and not counted then
  redis.call('HINCRBY', KEYS[6], 'd', 1)
  counted = true
end
redis.call('HSET', KEYS[5], ident, addr .. (counted and '1' or '0'))
redis.call('ZADD', mine, now, ident)
redis.call('ZREM', other, ident)
local ttl = tonumber(ARGV[12])
for i = 1, 5 do redis.call('EXPIRE', KEYS[i], ttl) end
redis.call('EXPIRE', KEYS[6], tonumber(ARGV[14]))
local out = counts(0)
local want = tonumber(ARGV[8])
local picked = {}
local order = ARGV[9]
for j = 1, #order do
  local f = (string.sub(order, j, j) == '6') and 3 or 1
  local sets = seed and {KEYS[f + 1]} or {KEYS[f], KEYS[f + 1]}
  for _, k in ipairs(sets) do
    if #picked >= want then break end
    local got = redis.call('ZRANDMEMBER', k, want - #picked + 1)
    for _, m in ipairs(got) do
      if m ~= ident and #picked < want then picked[#picked + 1] = m end
    end
  end
end
if #picked > 0 then
  local addrs = redis.call('HMGET', KEYS[5], unpack(picked))
  for _, a in ipairs(addrs) do
    if a and string.sub(a, 1, -2) ~= addr then out[#out + 1] = string.sub(a, 1, -2) end
  end
end
return out
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
    client: redis::Client,
    settings: RedisSettings,
    script: redis::Script,
    idle: Mutex<Vec<redis::Connection>>,
    freed: Condvar,
    open: AtomicUsize,
    /// While set and in the future, no connection is tried (Redis was unreachable).
    retry_at: Mutex<Option<Instant>>,
    healthy: AtomicBool,
    /// The last error, for the health endpoint.
    last_error: Mutex<String>,
    pub errors: Counter,
    pub too_fast: Counter,
}

fn key(info_hash: &[u8; 20], part: &str) -> String {
    format!("tg:{{{}}}:{part}", hex::encode(info_hash))
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A compact address (6 or 18 bytes) as a peer handed out.
fn peer_of(bytes: &[u8]) -> Option<Peer> {
    let (ip, port) = match bytes.len() {
        6 => (
            IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
            &bytes[4..],
        ),
        18 => {
            let b: [u8; 16] = bytes[..16].try_into().ok()?;
            (IpAddr::V6(Ipv6Addr::from(b)), &bytes[16..])
        }
        _ => return None,
    };
    let port = u16::from_be_bytes([port[0], port[1]]);
    Some(Peer::seed(SocketAddr::new(ip, port)))
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(n) => *n,
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        _ => 0,
    }
}

fn count(v: &Value) -> u32 {
    u32::try_from(int(v).max(0)).unwrap_or(u32::MAX)
}

impl RedisSwarms {
    /// A backend for `settings.url`; connects lazily, so a Redis that is down at start-up
    /// only makes announces fail until it is up.
    pub fn new(settings: RedisSettings) -> Result<RedisSwarms, String> {
        let client = redis::Client::open(settings.url.as_str())
            .map_err(|e| format!("tracker.redis_url: {e}"))?;
        Ok(RedisSwarms {
            client,
            settings,
            script: redis::Script::new(ANNOUNCE_LUA),
            idle: Mutex::new(Vec::new()),
            freed: Condvar::new(),
            open: AtomicUsize::new(0),
            retry_at: Mutex::new(None),
            healthy: AtomicBool::new(true),
            last_error: Mutex::new(String::new()),
            errors: Counter::default(),
            too_fast: Counter::default(),
        })
    }

    /// Whether the last command reached Redis (and, if not, why).
    pub fn health(&self) -> (bool, String) {
        let ok = self.healthy.load(Ordering::Relaxed);
        (
            ok,
            if ok {
                String::new()
            } else {
                self.last_error.lock().clone()
            },
        )
    }

    fn fail(&self, e: &str) -> Refusal {
        self.errors.add(1);
        if self.healthy.swap(false, Ordering::Relaxed) {
            log::warn!("tracker: redis unavailable: {e}");
        }
        *self.last_error.lock() = format!("redis: {e}");
        *self.retry_at.lock() = Some(Instant::now() + Duration::from_millis(RETRY_MS));
        Refusal::Unavailable
    }

    /// A pooled connection, or a new one while fewer than `pool` are open; waits for one
    /// to be returned at most the command deadline.
    fn take(&self) -> Result<redis::Connection, Refusal> {
        let deadline = Instant::now() + self.settings.timeout;
        let mut idle = self.idle.lock();
        loop {
            if let Some(c) = idle.pop() {
                return Ok(c);
            }
            if self.open.load(Ordering::Relaxed) < self.settings.pool {
                break;
            }
            if self.freed.wait_until(&mut idle, deadline).timed_out() {
                self.errors.add(1);
                return Err(Refusal::Unavailable);
            }
        }
        if let Some(at) = *self.retry_at.lock() {
            if Instant::now() < at {
                return Err(Refusal::Unavailable);
            }
        }
        self.open.fetch_add(1, Ordering::Relaxed);
        drop(idle);
        let t = self.settings.timeout;
        let made = self.client.get_connection_with_timeout(t).and_then(|c| {
            c.set_read_timeout(Some(t))?;
            c.set_write_timeout(Some(t))?;
            Ok(c)
        });
        match made {
            Ok(c) => Ok(c),
            Err(e) => {
                self.open.fetch_sub(1, Ordering::Relaxed);
                self.freed.notify_one();
                Err(self.fail(&e.to_string()))
            }
        }
    }

    /// Runs `f` on a pooled connection; a connection that failed is dropped, not returned.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, Refusal> {
        let mut conn = self.take()?;
        match f(&mut conn) {
            Ok(v) => {
                self.idle.lock().push(conn);
                self.freed.notify_one();
                if !self.healthy.swap(true, Ordering::Relaxed) {
                    log::info!("tracker: redis reachable again");
                    *self.retry_at.lock() = None;
                }
                Ok(v)
            }
            Err(e) => {
                self.open.fetch_sub(1, Ordering::Relaxed);
                self.freed.notify_one();
                Err(self.fail(&e.to_string()))
            }
        }
    }

    /// Records an announce and appends up to `numwant` other peers to `out`.
    pub fn announce(
        &self,
        a: &AnnounceIn,
        out: &mut impl PeerSink,
    ) -> Result<SwarmCounts, Refusal> {
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
        let mut inv = self.script.prepare_invoke();
        for part in ["s4", "l4", "s6", "l6", "p", "c"] {
            inv.key(key(ih, part));
        }
        inv.arg(now_unix())
            .arg(s.peer_timeout_secs)
            .arg(&ident[..])
            .arg(addr)
            .arg(u8::from(announcer.is_v6()))
            .arg(u8::from(seed))
            .arg(event)
            .arg(a.numwant)
            .arg(order)
            .arg(s.max_peers_per_torrent)
            .arg(a.min_interval)
            .arg(u64::from(s.peer_timeout_secs) + 60)
            .arg(EXPIRE_BATCH)
            .arg(COUNT_TTL_SECS);
        let reply: Vec<Value> = self.with(|c| inv.invoke(c))?;
        if reply.len() < 4 {
            return Err(self.fail("announce script answered too little"));
        }
        match int(&reply[3]) {
            -1 => return Err(Refusal::SwarmFull),
            1 => self.too_fast.add(1),
            _ => {}
        }
        for v in &reply[4..] {
            if let Value::BulkString(b) = v {
                if let Some(p) = peer_of(b) {
                    out.take(&p);
                }
            }
        }
        Ok(SwarmCounts {
            complete: count(&reply[0]),
            incomplete: count(&reply[1]),
            downloaded: u64::try_from(int(&reply[2]).max(0)).unwrap_or(0),
        })
    }

    /// Counts of several torrents in one pipeline.
    pub fn scrape(&self, hashes: &[[u8; 20]]) -> Result<Vec<SwarmCounts>, Refusal> {
        if hashes.is_empty() {
            return Ok(Vec::new());
        }
        let cutoff = now_unix().saturating_sub(u64::from(self.settings.peer_timeout_secs));
        let mut pipe = redis::pipe();
        for ih in hashes {
            for part in ["s4", "s6", "l4", "l6"] {
                pipe.cmd("ZCOUNT")
                    .arg(key(ih, part))
                    .arg(cutoff)
                    .arg("+inf");
            }
            pipe.cmd("HGET").arg(key(ih, "c")).arg("d");
        }
        let v: Vec<Value> = self.with(|c| pipe.query(c))?;
        if v.len() != hashes.len() * 5 {
            return Err(self.fail("scrape pipeline answered too little"));
        }
        Ok(v.chunks_exact(5)
            .map(|r| SwarmCounts {
                complete: count(&r[0]) + count(&r[1]),
                incomplete: count(&r[2]) + count(&r[3]),
                downloaded: u64::try_from(int(&r[4]).max(0)).unwrap_or(0),
            })
            .collect())
    }

    /// Forgets one torrent's peers (it stopped being allowed); its count stays.
    pub fn remove(&self, info_hash: &[u8; 20]) -> Result<(), Refusal> {
        let keys: Vec<String> = ["s4", "l4", "s6", "l6", "p"]
            .iter()
            .map(|p| key(info_hash, p))
            .collect();
        self.with(|c| redis::cmd("DEL").arg(keys).query::<()>(c))
    }
}
