//! One torrent's peers in the memory backend, split in two parallel arrays. What every scan
//! reads of a peer (a tag of its identity, last seen, IPv4 address, port, flags) is 16 bytes,
//! four to a cache line; the rest (peer id, the rest of an IPv6 address, key) is read only on
//! a tag match, for IPv6 peers and for answers that carry peer ids. An announce in a swarm of
//! twenty peers so touches five cache lines of it instead of fifteen. The tag is a keyed hash
//! of the identity, computed once per announce by the registry. Small swarms are scanned;
//! swarms past [`INDEX_FROM`] peers get an [`Index`] of places by tag.

use super::registry::{Family, Ident, Peer, PeerSink, HAS_KEY, SEED, V6};

/// Swarms with at least this many peers keep an [`Index`].
const INDEX_FROM: usize = 48;

/// The part of a peer that scans read.
#[derive(Debug, Clone, Copy)]
struct Hot {
    /// A keyed hash of the peer's identity; an equal tag is confirmed against the whole
    /// identity.
    tag: u32,
    seen: u32,
    /// An IPv4 address, or an IPv6 address' first four bytes.
    head: [u8; 4],
    port: u16,
    flags: u8,
}

/// The rest of a peer.
#[derive(Debug, Clone, Copy)]
struct Cold {
    id: [u8; 20],
    /// An IPv6 address' last twelve bytes (zeros for IPv4).
    tail: [u8; 12],
    key: u32,
}

fn split_ip(ip: &[u8; 16]) -> ([u8; 4], [u8; 12]) {
    let head = ip[..4].try_into().expect("4 bytes");
    let tail = ip[4..].try_into().expect("12 bytes");
    (head, tail)
}

/// Places of a swarm's peers by tag: open addressing with linear probing, at most half full.
/// A slot holds the tag (high half) and the place + 1 (low half; 0 is an empty slot), so a
/// probe compares tags without reading the peers. Empty in swarms that need none: 16 bytes
/// there, 8 to 16 bytes a peer in those that do (a `HashMap` of identities took 50).
#[derive(Default)]
struct Index(Box<[u64]>);

impl Index {
    fn build(hot: &[Hot]) -> Index {
        let mut ix = Index(vec![0; (2 * hot.len()).next_power_of_two().max(64)].into());
        for (i, h) in hot.iter().enumerate() {
            ix.insert(h.tag, i);
        }
        ix
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn home(&self, tag: u32) -> usize {
        tag as usize & (self.0.len() - 1)
    }

    /// Slots from the tag's home on, up to the first empty one, as (slot, place).
    fn probe(&self, tag: u32) -> impl Iterator<Item = (usize, usize)> + '_ {
        let mask = self.0.len() - 1;
        let home = self.home(tag);
        (0..self.0.len())
            .map(move |k| (home + k) & mask)
            .map(|s| (s, self.0[s]))
            .take_while(|&(_, v)| v != 0)
            .filter(move |&(_, v)| (v >> 32) as u32 == tag)
            .map(|(s, v)| (s, (v as u32 - 1) as usize))
    }

    fn insert(&mut self, tag: u32, place: usize) {
        let mask = self.0.len() - 1;
        let mut s = self.home(tag);
        while self.0[s] != 0 {
            s = (s + 1) & mask;
        }
        self.0[s] = (u64::from(tag) << 32) | (place as u64 + 1);
    }

    fn slot_of(&self, tag: u32, place: usize) -> usize {
        self.probe(tag)
            .find(|&(_, p)| p == place)
            .map(|(s, _)| s)
            .expect("every peer of an indexed swarm is in the index")
    }

    /// Empties slot `hole` and shifts later entries of its run back, so no probe meets a
    /// gap before its entry.
    fn clear(&mut self, mut hole: usize) {
        let mask = self.0.len() - 1;
        self.0[hole] = 0;
        let mut s = hole;
        loop {
            s = (s + 1) & mask;
            let v = self.0[s];
            if v == 0 {
                return;
            }
            let home = self.home((v >> 32) as u32);
            // The entry at `s` may fill the hole unless its home lies cyclically in (hole, s].
            let stays = if hole <= s {
                hole < home && home <= s
            } else {
                hole < home || home <= s
            };
            if !stays {
                self.0[hole] = v;
                self.0[s] = 0;
                hole = s;
            }
        }
    }
}

#[derive(Default)]
pub(super) struct Swarm {
    hot: Vec<Hot>,
    cold: Vec<Cold>,
    index: Index,
    pub(super) seeders: u32,
    pub(super) downloaded: u64,
    /// Completed events not yet written to SQLite.
    pub(super) unsaved: u64,
}

impl Swarm {
    pub(super) fn len(&self) -> usize {
        self.hot.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.hot.is_empty()
    }

    /// The place of the peer `who`, whose tag is `tag`.
    pub(super) fn find(&self, who: &Ident, tag: u32) -> Option<usize> {
        if self.index.is_empty() {
            (0..self.hot.len()).find(|&i| self.hot[i].tag == tag && self.ident(i) == *who)
        } else {
            let mut places = self.index.probe(tag).map(|(_, p)| p);
            places.find(|&p| self.ident(p) == *who)
        }
    }

    fn ident(&self, i: usize) -> Ident {
        let (h, c) = (&self.hot[i], &self.cold[i]);
        let key = (h.flags & HAS_KEY != 0).then_some(c.key);
        Ident::new(c.id, key, &self.ip(i), h.port, h.flags)
    }

    fn ip(&self, i: usize) -> [u8; 16] {
        let mut ip = [0u8; 16];
        ip[..4].copy_from_slice(&self.hot[i].head);
        if self.hot[i].flags & V6 != 0 {
            ip[4..].copy_from_slice(&self.cold[i].tail);
        }
        ip
    }

    /// Peer `i` as handed out; its id only when `with_id` (IPv4 peers then need no read of
    /// the cold half).
    pub(super) fn peer(&self, i: usize, with_id: bool) -> Peer {
        let h = &self.hot[i];
        let id = if with_id { self.cold[i].id } else { [0; 20] };
        Peer::new(id, self.ip(i), h.port, h.flags)
    }

    pub(super) fn flags(&self, i: usize) -> u8 {
        self.hot[i].flags
    }

    pub(super) fn set_flags(&mut self, i: usize, flags: u8) {
        self.hot[i].flags = flags;
    }

    pub(super) fn seen(&self, i: usize) -> u32 {
        self.hot[i].seen
    }

    /// A known peer announced again, maybe from another address (the identity is unchanged:
    /// a keyed peer keeps its family, a keyless one is its address).
    pub(super) fn update(&mut self, i: usize, ip: &[u8; 16], port: u16, flags: u8, now: u32) {
        let (head, tail) = split_ip(ip);
        let h = &mut self.hot[i];
        h.head = head;
        h.port = port;
        h.flags = flags;
        h.seen = now;
        if flags & V6 != 0 {
            self.cold[i].tail = tail;
        }
    }

    pub(super) fn counts(&self) -> crate::proto::tracker::http::SwarmCounts {
        crate::proto::tracker::http::SwarmCounts {
            complete: self.seeders,
            incomplete: self.hot.len() as u32 - self.seeders,
            downloaded: self.downloaded,
        }
    }

    /// Adds a peer; returns its place.
    pub(super) fn push(
        &mut self,
        who: &Ident,
        tag: u32,
        ip: &[u8; 16],
        port: u16,
        flags: u8,
        now: u32,
    ) -> usize {
        let (key, ..) = who.parts();
        let (head, tail) = split_ip(ip);
        let i = self.hot.len();
        self.seeders += u32::from(flags & SEED != 0);
        // Most swarms hold one to three peers: grow those one slot at a time (Vec would
        // jump to four), larger ones by half.
        if i == self.hot.capacity() {
            let more = if i < 8 { 1 } else { i / 2 };
            self.hot.reserve_exact(more);
            self.cold.reserve_exact(more);
        }
        self.hot.push(Hot {
            tag,
            seen: now,
            head,
            port,
            flags,
        });
        self.cold.push(Cold {
            id: who.id,
            tail: if flags & V6 != 0 { tail } else { [0; 12] },
            key: key.unwrap_or(0),
        });
        if self.index.is_empty() {
            if self.hot.len() >= INDEX_FROM {
                self.reindex();
            }
        } else if 2 * self.hot.len() > self.index.0.len() {
            self.index = Index::build(&self.hot);
        } else {
            self.index.insert(tag, i);
        }
        i
    }

    pub(super) fn remove(&mut self, i: usize) {
        let last = self.hot.len() - 1;
        if !self.index.is_empty() {
            let hole = self.index.slot_of(self.hot[i].tag, i);
            self.index.clear(hole);
            if i != last {
                // The last peer moves into place `i`.
                let tag = self.hot[last].tag;
                let s = self.index.slot_of(tag, last);
                self.index.0[s] = (u64::from(tag) << 32) | (i as u64 + 1);
            }
        }
        let gone = self.hot.swap_remove(i);
        self.cold.swap_remove(i);
        self.seeders -= u32::from(gone.flags & SEED != 0);
    }

    /// Drops peers last seen more than `timeout` seconds before `now`; returns how many.
    pub(super) fn expire(&mut self, now: u32, timeout: u32) -> usize {
        let before = self.hot.len();
        let mut kept = 0;
        for i in 0..before {
            if now.saturating_sub(self.hot[i].seen) <= timeout {
                self.hot[kept] = self.hot[i];
                self.cold[kept] = self.cold[i];
                kept += 1;
            }
        }
        if kept == before {
            return 0;
        }
        self.hot.truncate(kept);
        self.cold.truncate(kept);
        self.seeders = self.hot.iter().filter(|h| h.flags & SEED != 0).count() as u32;
        self.reindex();
        if self.hot.capacity() > 2 * kept + 8 {
            self.hot.shrink_to_fit();
            self.cold.shrink_to_fit();
        }
        before - kept
    }

    fn reindex(&mut self) {
        self.index = if self.hot.len() >= INDEX_FROM / 2 {
            Index::build(&self.hot)
        } else {
            Index::default()
        };
    }

    /// Leechers from place `from` on (wrapping), at most `max`, as (peer id, address).
    pub(super) fn leechers(
        &self,
        from: usize,
        max: usize,
    ) -> impl Iterator<Item = ([u8; 20], std::net::SocketAddr)> + '_ {
        let n = self.hot.len();
        (0..n)
            .map(move |k| (from + k) % n)
            .filter(|&i| self.hot[i].flags & SEED == 0)
            .take(max)
            .map(|i| {
                let p = self.peer(i, true);
                (p.id, p.addr())
            })
    }

    /// Appends up to `want` peers other than `me`, starting at place `start`: the requester's
    /// address family (or both), and no seeds for a seed. At most `8 * want + 64` entries
    /// are looked at, so a seed in a huge swarm of seeds costs little; a random start means
    /// every leecher is still handed out over successive announces.
    pub(super) fn select<S: PeerSink>(
        &self,
        me: usize,
        want: usize,
        family: Family,
        seed: bool,
        mut start: impl FnMut() -> usize,
        out: &mut S,
    ) {
        let n = self.hot.len();
        if want == 0 || n < 2 {
            return;
        }
        let mine = self.hot[me];
        let mine_tail = self.cold[me].tail;
        let passes: &[Family] = match family {
            Family::V4First => &[Family::V4, Family::V6],
            Family::V6First => &[Family::V6, Family::V4],
            _ => std::slice::from_ref(&family),
        };
        let mut taken = 0;
        for &pass in passes {
            let from = start() % n;
            for i in (from..n).chain(0..from).take(want * 8 + 64) {
                if taken == want {
                    return;
                }
                let h = &self.hot[i];
                let v6 = h.flags & V6 != 0;
                let same = h.head == mine.head
                    && h.port == mine.port
                    && (h.flags & V6) == (mine.flags & V6)
                    && (!v6 || self.cold[i].tail == mine_tail);
                if pass.admits(v6) && !(seed && h.flags & SEED != 0) && !same {
                    out.take(&self.peer(i, S::WANTS_ID));
                    taken += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hot(tag: u32) -> Hot {
        Hot {
            tag,
            seen: 0,
            head: [0; 4],
            port: 0,
            flags: 0,
        }
    }

    /// Runs that wrap past the table's end and tags that share a home: after every removal
    /// each remaining place is still found under its tag, and nothing else is.
    #[test]
    fn the_index_finds_every_place_through_removals_that_wrap() {
        // 64 slots: homes 62, 63 and 0 collide and wrap; tags differ in their high bits.
        let tags: Vec<u32> = (0..30u32)
            .map(|k| [62, 63, 0, 5][k as usize % 4] | (k << 16))
            .collect();
        let mut peers: Vec<Hot> = tags.iter().map(|&t| hot(t)).collect();
        let mut ix = Index::build(&peers);
        assert_eq!(ix.0.len(), 64);
        for step in 0..tags.len() {
            // Remove like Swarm::remove: the last peer moves into the hole.
            let i = (step * 7) % peers.len();
            let last = peers.len() - 1;
            let hole = ix.slot_of(peers[i].tag, i);
            ix.clear(hole);
            if i != last {
                let s = ix.slot_of(peers[last].tag, last);
                ix.0[s] = (u64::from(peers[last].tag) << 32) | (i as u64 + 1);
            }
            let gone = peers.swap_remove(i);
            assert!(ix.probe(gone.tag).next().is_none(), "step {step}");
            for (p, h) in peers.iter().enumerate() {
                let found: Vec<usize> = ix.probe(h.tag).map(|(_, q)| q).collect();
                assert_eq!(found, vec![p], "step {step}: tag {:#x}", h.tag);
            }
            assert_eq!(ix.0.iter().filter(|&&v| v != 0).count(), peers.len());
        }
    }
}
