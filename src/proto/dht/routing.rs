//! The Kademlia routing table of BEP-5 as pure logic: fed "heard from" and "failed" events
//! with explicit timestamps (seconds on any monotonic scale; no clock is read here), it keeps
//! buckets of at most `k` (8) nodes, splits only the bucket that holds our own id, keeps a
//! small replacement cache per bucket, and classifies nodes as good (answered within 15
//! minutes, or answered once and queried us within 15 minutes), questionable, or bad (failed
//! [`MAX_FAILURES`] queries in a row). When a bucket is full of live nodes a newcomer goes to
//! the cache and the table names a questionable node to ping before it is evicted; a bad node
//! is replaced at once. It never holds our own id, holds one node per IP, and no two nodes of
//! one /24 (IPv4) or /64 (IPv6) in a bucket (`restrict_ips: false` lifts both for loopback
//! testnets, keeping one node per IP and port). One table holds one address family; the node
//! keeps a second table for IPv6 (BEP-32).

use super::compact::{canonical, CompactNode};
use super::node_id::{NodeId, ID_LEN};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// Nodes per bucket (BEP-5's K).
pub const K: usize = 8;
/// A node stays good this long after its last answer (or query, once it has answered).
pub const GOOD_FOR_SECS: u64 = 15 * 60;
/// Consecutive failed queries that make a node bad.
pub const MAX_FAILURES: u32 = 2;

/// Table settings.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Nodes per bucket.
    pub k: usize,
    /// Replacement cache entries per bucket.
    pub replacements: usize,
    /// One node per IP and one per /24 (/64) per bucket; off only for loopback tests.
    pub restrict_ips: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            k: K,
            replacements: K,
            restrict_ips: true,
        }
    }
}

/// How we heard from a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contact {
    /// It answered one of our queries.
    Response,
    /// It sent us a query (it still has to answer one of ours to be good).
    Query,
}

/// BEP-5's node states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Good,
    Questionable,
    Bad,
}

/// A node in the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: NodeId,
    pub addr: SocketAddr,
    pub last_response: Option<u64>,
    pub last_query: Option<u64>,
    /// Failed queries since the last answer.
    pub failures: u32,
}

impl Node {
    fn new(id: NodeId, addr: SocketAddr) -> Node {
        Node {
            id,
            addr,
            last_response: None,
            last_query: None,
            failures: 0,
        }
    }

    fn touch(&mut self, contact: Contact, now: u64) {
        match contact {
            Contact::Response => {
                self.last_response = Some(now);
                self.failures = 0;
            }
            Contact::Query => self.last_query = Some(now),
        }
    }

    /// The node's state at `now`.
    pub fn status(&self, now: u64) -> Status {
        let recent = |t: Option<u64>| t.is_some_and(|t| now.saturating_sub(t) < GOOD_FOR_SECS);
        if self.failures >= MAX_FAILURES {
            Status::Bad
        } else if self.failures == 0
            && (recent(self.last_response)
                || (self.last_response.is_some() && recent(self.last_query)))
        {
            Status::Good
        } else {
            Status::Questionable
        }
    }

    fn last_active(&self) -> u64 {
        self.last_response.max(self.last_query).unwrap_or(0)
    }

    /// The node as `nodes`/`nodes6` carry it.
    pub fn compact(&self) -> CompactNode {
        CompactNode {
            id: self.id,
            addr: self.addr,
        }
    }
}

/// What [`Table::heard`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The node is new in the table.
    Added,
    /// The node was in the table and is refreshed.
    Updated,
    /// The bucket is full of live nodes: the node waits (or is refreshed) in the replacement
    /// cache, and `ping` names a questionable node to ping (once failures make it bad, the
    /// freshest replacement takes its place).
    Cached {
        ping: Option<CompactNode>,
    },
    Rejected(Reject),
}

/// Why a node was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// It claims our own id.
    OwnId,
    /// Port 0 or an unspecified address.
    Unusable,
    /// The id is in the table at another address.
    AddressChanged,
    /// Another node already uses this IP (or IP and port without `restrict_ips`).
    IpInUse,
    /// A node of the same /24 (/64) is in this bucket.
    SubnetInUse,
}

/// What [`Table::failed`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failed {
    /// Not in the table (nor a cache).
    Unknown,
    /// Counted; the node stays for now.
    Counted,
    /// The node became bad and left; `replaced_by` is the cached node promoted in its place.
    Evicted { replaced_by: Option<CompactNode> },
}

#[derive(Debug, Clone, Default)]
struct Bucket {
    nodes: Vec<Node>,
    /// Newest last.
    replacements: Vec<Node>,
    last_changed: u64,
}

/// The routing table of one address family.
#[derive(Debug, Clone)]
pub struct Table {
    own: NodeId,
    cfg: Config,
    buckets: Vec<Bucket>,
    /// Address key (IP, or IP and port) of every node in a bucket (not the caches).
    addrs: HashMap<SocketAddr, NodeId>,
}

fn same_subnet(a: IpAddr, b: IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => a.octets()[..3] == b.octets()[..3],
        (IpAddr::V6(a), IpAddr::V6(b)) => a.octets()[..8] == b.octets()[..8],
        _ => false,
    }
}

impl Table {
    pub fn new(own: NodeId, cfg: Config) -> Table {
        Table {
            own,
            cfg,
            buckets: vec![Bucket::default()],
            addrs: HashMap::new(),
        }
    }

    pub fn own_id(&self) -> NodeId {
        self.own
    }

    fn key(&self, addr: SocketAddr) -> SocketAddr {
        if self.cfg.restrict_ips {
            SocketAddr::new(addr.ip(), 0)
        } else {
            addr
        }
    }

    fn index(&self, id: &NodeId) -> usize {
        let n = self.own.common_prefix(id) as usize;
        n.min(self.buckets.len() - 1)
    }

    /// Records that `id` at `addr` answered us or queried us at `now`.
    pub fn heard(&mut self, id: NodeId, addr: SocketAddr, contact: Contact, now: u64) -> Outcome {
        let addr = canonical(addr);
        if id == self.own {
            return Outcome::Rejected(Reject::OwnId);
        }
        if addr.port() == 0 || addr.ip().is_unspecified() {
            return Outcome::Rejected(Reject::Unusable);
        }
        loop {
            let i = self.index(&id);
            let bucket = &mut self.buckets[i];
            if let Some(n) = bucket.nodes.iter_mut().find(|n| n.id == id) {
                if n.addr != addr {
                    return Outcome::Rejected(Reject::AddressChanged);
                }
                n.touch(contact, now);
                return Outcome::Updated;
            }
            let key = self.key(addr);
            if self.addrs.contains_key(&key) {
                return Outcome::Rejected(Reject::IpInUse);
            }
            let full = self.buckets[i].nodes.len() >= self.cfg.k;
            if full && i == self.buckets.len() - 1 && self.buckets.len() < ID_LEN * 8 {
                self.split_last();
                continue;
            }
            let bucket = &mut self.buckets[i];
            if self.cfg.restrict_ips
                && bucket
                    .nodes
                    .iter()
                    .any(|n| same_subnet(n.addr.ip(), addr.ip()))
            {
                return Outcome::Rejected(Reject::SubnetInUse);
            }
            let mut node = Node::new(id, addr);
            node.touch(contact, now);
            if bucket.nodes.len() < self.cfg.k {
                bucket.replacements.retain(|r| r.id != id);
                bucket.nodes.push(node);
                bucket.last_changed = now;
                self.addrs.insert(key, id);
                return Outcome::Added;
            }
            if let Some(bad) = bucket
                .nodes
                .iter()
                .position(|n| n.status(now) == Status::Bad)
            {
                let old = std::mem::replace(&mut bucket.nodes[bad], node);
                bucket.replacements.retain(|r| r.id != id);
                bucket.last_changed = now;
                let old_key = self.key(old.addr);
                self.addrs.remove(&old_key);
                self.addrs.insert(key, id);
                return Outcome::Added;
            }
            let bucket = &mut self.buckets[i];
            if let Some(r) = bucket.replacements.iter().position(|r| r.id == id) {
                if bucket.replacements[r].addr != addr {
                    return Outcome::Rejected(Reject::AddressChanged);
                }
                let mut old = bucket.replacements.remove(r);
                old.touch(contact, now);
                bucket.replacements.push(old);
            } else {
                if bucket.replacements.len() >= self.cfg.replacements {
                    bucket.replacements.remove(0);
                }
                bucket.replacements.push(node);
            }
            let ping = bucket
                .nodes
                .iter()
                .filter(|n| n.status(now) == Status::Questionable)
                .min_by_key(|n| n.last_active())
                .map(Node::compact);
            return Outcome::Cached { ping };
        }
    }

    fn split_last(&mut self) {
        let i = self.buckets.len() - 1;
        let own = self.own;
        let old = &mut self.buckets[i];
        let deeper = |n: &Node| own.common_prefix(&n.id) as usize > i;
        let (go, stay): (Vec<Node>, Vec<Node>) = old.nodes.drain(..).partition(deeper);
        let (rgo, rstay): (Vec<Node>, Vec<Node>) = old.replacements.drain(..).partition(deeper);
        old.nodes = stay;
        old.replacements = rstay;
        let last_changed = old.last_changed;
        self.buckets.push(Bucket {
            nodes: go,
            replacements: rgo,
            last_changed,
        });
    }

    /// Records a query to `id` that got no answer at `now`.
    pub fn failed(&mut self, id: &NodeId, now: u64) -> Failed {
        let i = self.index(id);
        let bucket = &mut self.buckets[i];
        if let Some(r) = bucket.replacements.iter().position(|r| r.id == *id) {
            bucket.replacements.remove(r);
            return Failed::Counted;
        }
        let Some(pos) = bucket.nodes.iter().position(|n| n.id == *id) else {
            return Failed::Unknown;
        };
        bucket.nodes[pos].failures += 1;
        if bucket.nodes[pos].status(now) != Status::Bad {
            return Failed::Counted;
        }
        let old = bucket.nodes.remove(pos);
        bucket.last_changed = now;
        let old_key = self.key(old.addr);
        self.addrs.remove(&old_key);
        let replaced_by = self.promote(i, now);
        Failed::Evicted { replaced_by }
    }

    /// Moves the freshest acceptable replacement of bucket `i` into it.
    fn promote(&mut self, i: usize, now: u64) -> Option<CompactNode> {
        while let Some(r) = self.buckets[i].replacements.pop() {
            let key = self.key(r.addr);
            let bucket = &self.buckets[i];
            let clash = self.addrs.contains_key(&key)
                || (self.cfg.restrict_ips
                    && bucket
                        .nodes
                        .iter()
                        .any(|n| same_subnet(n.addr.ip(), r.addr.ip())));
            if clash {
                continue;
            }
            let c = r.compact();
            self.addrs.insert(key, r.id);
            let bucket = &mut self.buckets[i];
            bucket.nodes.push(r);
            bucket.last_changed = now;
            return Some(c);
        }
        None
    }

    /// Removes a node (say, one that turned out to be read-only or hostile).
    pub fn remove(&mut self, id: &NodeId) -> bool {
        let i = self.index(id);
        let bucket = &mut self.buckets[i];
        bucket.replacements.retain(|r| r.id != *id);
        let Some(pos) = bucket.nodes.iter().position(|n| n.id == *id) else {
            return false;
        };
        let old = bucket.nodes.remove(pos);
        let old_key = self.key(old.addr);
        self.addrs.remove(&old_key);
        true
    }

    pub fn get(&self, id: &NodeId) -> Option<&Node> {
        self.buckets[self.index(id)]
            .nodes
            .iter()
            .find(|n| n.id == *id)
    }

    /// Up to `k` nodes that are not bad, closest to `target` first.
    pub fn closest(&self, target: &NodeId, k: usize, now: u64) -> Vec<CompactNode> {
        let mut all: Vec<&Node> = self
            .nodes()
            .filter(|n| n.status(now) != Status::Bad)
            .collect();
        all.sort_unstable_by_key(|n| n.id.distance(target));
        all.into_iter().take(k).map(Node::compact).collect()
    }

    /// Every node in the buckets (not the caches).
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.buckets.iter().flat_map(|b| b.nodes.iter())
    }

    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    /// Per bucket: (nodes, cached replacements), the farthest bucket first.
    pub fn bucket_sizes(&self) -> Vec<(usize, usize)> {
        self.buckets
            .iter()
            .map(|b| (b.nodes.len(), b.replacements.len()))
            .collect()
    }

    /// Questionable nodes to ping now (the node bounds how many it sends per tick).
    pub fn questionable(&self, now: u64) -> Vec<CompactNode> {
        self.nodes()
            .filter(|n| n.status(now) == Status::Questionable)
            .map(Node::compact)
            .collect()
    }

    /// Buckets unchanged for `max_age` seconds (BEP-5 refreshes after 15 minutes).
    pub fn stale_buckets(&self, now: u64, max_age: u64) -> Vec<usize> {
        (0..self.buckets.len())
            .filter(|&i| now.saturating_sub(self.buckets[i].last_changed) >= max_age)
            .collect()
    }

    /// An id in bucket `i` for a refresh lookup, from 20 random bytes: our first `i` bits,
    /// bit `i` flipped (except in the last bucket, which covers everything deeper), then
    /// `random`.
    pub fn id_in_bucket(&self, i: usize, random: [u8; ID_LEN]) -> NodeId {
        let mut id = NodeId(random);
        let last = i + 1 >= self.buckets.len();
        let i = i.min(self.buckets.len() - 1);
        for bit in 0..i {
            id.set_bit(bit, self.own.bit(bit));
        }
        if !last {
            id.set_bit(i, !self.own.bit(i));
        }
        id
    }
}

#[cfg(test)]
#[path = "routing_tests.rs"]
mod tests;
