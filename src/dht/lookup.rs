//! One iterative Kademlia lookup (BEP-5): candidates sorted by XOR distance to the target,
//! at most [`ALPHA`] queries in flight, each answer adding the nodes it names; the lookup has
//! converged when the [`routing::K`] closest candidates that did not fail have all answered.
//! A get_peers lookup collects `values` and the answerers' write tokens (an announce sends
//! announce_peer to the closest of those). Pure bookkeeping: [`super::Dht`] sends the queries.
//!
//! Slow nodes do not hold a lookup up: a query unanswered after the node's adaptive timeout
//! (a few round trips, [`super::Dht::rto`]) counts as a failed try at once, so another
//! candidate is asked in its place, and the node is asked again (up to [`MAX_TRIES`], within
//! [`GIVE_UP_MS`] of the first try); an answer that comes late is still taken. Nodes named in
//! answers at loopback, private or link-local addresses are not asked unless the lookup
//! allows them (we are on such a network ourselves: `node_id::named_addr_ok`), nor nodes of
//! an address family the socket does not reach (`nodes` and BEP-32 `nodes6` both feed the
//! candidates). A bootstrap address (no id known) is asked again the same way.

use super::items::{self, FoundItem};
use super::Families;
use crate::proto::dht::compact::{canonical, CompactNode};
use crate::proto::dht::krpc::{Method, Response};
use crate::proto::dht::node_id::named_addr_ok;
use crate::proto::dht::routing::K;
use crate::proto::dht::NodeId;
use std::collections::HashSet;
use std::net::SocketAddr;

/// Queries in flight per lookup.
pub const ALPHA: usize = 3;
/// Candidates remembered (the farthest unasked ones are dropped past this).
const MAX_CANDIDATES: usize = 128;
/// Queries to one candidate before it counts as failed (datagrams get lost).
pub const MAX_TRIES: u8 = 8;
/// A candidate unanswered this long after its first query is given up (whatever its tries).
pub const GIVE_UP_MS: u64 = 3_000;
/// Peers remembered per lookup.
const MAX_PEERS: usize = 2000;
/// A lookup is given up after this long, converged or not.
pub const MAX_LOOKUP_MS: u64 = 60_000;

/// What the lookup is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    FindNode,
    GetPeers,
    /// get_peers, then announce_peer with this port.
    Announce(u16),
    /// BEP-44 get of an item (the best one answered is kept).
    GetItem,
    /// BEP-44 get, then put to the closest nodes that gave tokens.
    PutItem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Fresh,
    Asked,
    Answered,
    Failed,
}

#[derive(Debug, Clone)]
struct Cand {
    node: CompactNode,
    dist: NodeId,
    state: State,
    token: Option<Vec<u8>>,
    tries: u8,
    /// When it was first asked.
    first_sent: u64,
}

/// A running lookup.
#[derive(Debug)]
pub struct Lookup {
    pub id: u64,
    pub target: NodeId,
    pub kind: Kind,
    pub started: u64,
    own: NodeId,
    cands: Vec<Cand>,
    peers: HashSet<SocketAddr>,
    /// Queries to bootstrap addresses (no id known) still in flight or to be sent again.
    seeds: usize,
    /// Bootstrap addresses to ask again, with the tries they had.
    seed_retries: Vec<(SocketAddr, u8)>,
    /// Tries per bootstrap address so far, and when the first went out.
    seed_tries: Vec<(SocketAddr, u8, u64)>,
    /// Whether nodes named at loopback, private or link-local addresses may be asked.
    pub allow_local: bool,
    /// The address families whose nodes may be asked (the node sets it from its socket).
    pub reach: Families,
    /// Tries an unanswered node gets (at most [`MAX_TRIES`]; the node sets it).
    pub max_tries: u8,
    /// A mutable item's salt (its target is the SHA-1 of the key and the salt).
    pub salt: Vec<u8>,
    /// The valid item with the highest `seq` answered so far (item lookups).
    pub item: Option<FoundItem>,
}

impl Lookup {
    pub fn new(
        id: u64,
        target: NodeId,
        kind: Kind,
        seeds: &[CompactNode],
        own: NodeId,
        now: u64,
    ) -> Lookup {
        let mut l = Lookup {
            id,
            target,
            kind,
            started: now,
            own,
            cands: Vec::new(),
            peers: HashSet::new(),
            seeds: 0,
            seed_retries: Vec::new(),
            seed_tries: Vec::new(),
            allow_local: true,
            reach: Families::DUAL,
            max_tries: MAX_TRIES,
            salt: Vec::new(),
            item: None,
        };
        for n in seeds {
            l.add(*n);
        }
        l
    }

    fn add(&mut self, node: CompactNode) {
        let node = CompactNode {
            id: node.id,
            addr: canonical(node.addr),
        };
        if node.id == self.own
            || !super::usable(&node.addr)
            || !self.reach.reaches(&node.addr)
            || self
                .cands
                .iter()
                .any(|c| c.node.id == node.id || c.node.addr == node.addr)
        {
            return;
        }
        let dist = node.id.distance(&self.target);
        let at = self.cands.partition_point(|c| c.dist < dist);
        if at >= MAX_CANDIDATES {
            return;
        }
        self.cands.insert(
            at,
            Cand {
                node,
                dist,
                state: State::Fresh,
                token: None,
                tries: 0,
                first_sent: 0,
            },
        );
        if self.cands.len() > MAX_CANDIDATES {
            if let Some(i) = self.cands.iter().rposition(|c| c.state == State::Fresh) {
                self.cands.remove(i);
            } else {
                self.cands.pop();
            }
        }
    }

    /// The query this lookup sends.
    pub fn method(&self) -> Method<'static> {
        let target = self.target;
        match self.kind {
            Kind::FindNode => Method::FindNode { target },
            Kind::GetItem | Kind::PutItem => Method::Get { target, seq: None },
            Kind::GetPeers | Kind::Announce(_) => Method::GetPeers { info_hash: target },
        }
    }

    /// A query to an address with no known id was sent for this lookup (not a retry).
    pub fn seed_sent(&mut self, addr: SocketAddr, now: u64) {
        self.seeds += 1;
        self.seed_tried(addr, now);
    }

    fn seed_tried(&mut self, addr: SocketAddr, now: u64) {
        if let Some((_, n, _)) = self.seed_tries.iter_mut().find(|(a, _, _)| *a == addr) {
            *n += 1;
        } else if self.seed_tries.len() < 64 {
            self.seed_tries.push((addr, 1, now));
        }
    }

    /// Bootstrap addresses to ask again now (each then goes to [`Lookup::seed_resent`], or
    /// [`Lookup::seed_unsent`] when it could not be sent).
    pub fn take_seed_retries(&mut self) -> Vec<SocketAddr> {
        self.seed_retries.drain(..).map(|(a, _)| a).collect()
    }

    pub fn seed_resent(&mut self, addr: SocketAddr, now: u64) {
        self.seed_tried(addr, now);
    }

    pub fn seed_unsent(&mut self) {
        self.seeds = self.seeds.saturating_sub(1);
    }

    fn find(&mut self, addr: SocketAddr) -> Option<&mut Cand> {
        let addr = canonical(addr);
        self.cands.iter_mut().find(|c| c.node.addr == addr)
    }

    /// The nodes to query now (mark each one [`Lookup::sent`] once it went out).
    pub fn next_queries(&self) -> Vec<CompactNode> {
        let mut inflight = self
            .cands
            .iter()
            .filter(|c| c.state == State::Asked)
            .count();
        let mut out = Vec::new();
        for c in self.live().take(K) {
            if inflight >= ALPHA {
                break;
            }
            if c.state == State::Fresh {
                out.push(c.node);
                inflight += 1;
            }
        }
        out
    }

    fn live(&self) -> impl Iterator<Item = &Cand> {
        self.cands.iter().filter(|c| c.state != State::Failed)
    }

    /// Queries sent to `addr` so far.
    pub fn tries(&self, addr: SocketAddr) -> u8 {
        let addr = canonical(addr);
        self.cands
            .iter()
            .find(|c| c.node.addr == addr)
            .map_or(0, |c| c.tries)
    }

    pub fn sent(&mut self, addr: SocketAddr, now: u64) {
        if let Some(c) = self.find(addr) {
            c.state = State::Asked;
            if c.tries == 0 {
                c.first_sent = now;
            }
            c.tries += 1;
        }
    }

    /// `from` answered; returns the peers not seen before in this lookup.
    /// `seed`: the query went to a bootstrap address.
    pub fn answered(&mut self, from: SocketAddr, r: &Response<'_>, seed: bool) -> Vec<SocketAddr> {
        if seed {
            self.seeds = self.seeds.saturating_sub(1);
        }
        match self.find(from) {
            Some(c) => {
                c.state = State::Answered;
                c.token = r.token.map(<[u8]>::to_vec);
            }
            None => {
                // A bootstrap node: it may be close itself.
                let node = CompactNode {
                    id: r.id,
                    addr: from,
                };
                self.add(node);
                if let Some(c) = self.find(from) {
                    c.state = State::Answered;
                    c.token = r.token.map(<[u8]>::to_vec);
                }
            }
        }
        for n in r.nodes.iter().chain(r.nodes6.iter()) {
            if named_addr_ok(n.addr, self.allow_local) {
                self.add(*n);
            }
        }
        if matches!(self.kind, Kind::GetItem | Kind::PutItem) {
            if let Some(found) = items::check(&self.target, &self.salt, r) {
                let seq = |i: &FoundItem| i.mutable.as_ref().map_or(-1, |m| m.seq);
                if self.item.as_ref().is_none_or(|old| seq(&found) > seq(old)) {
                    self.item = Some(found);
                }
            }
        }
        // Peers, like nodes, at loopback, private or link-local addresses only on such a
        // network: a public node naming them is wrong or would have us dial inside our LAN.
        let mut new = Vec::new();
        for p in &r.values {
            let fits = super::usable(p) && named_addr_ok(*p, self.allow_local);
            if self.peers.len() < MAX_PEERS && fits && self.peers.insert(*p) {
                new.push(*p);
            }
        }
        new
    }

    /// A query to `addr` failed (timed out or an error): it is asked again later, or given
    /// up. Returns true when the node is given up (a failure for the routing table); an
    /// answer from an earlier try may have come meanwhile, and then nothing changes.
    pub fn failed(&mut self, addr: SocketAddr, seed: bool, now: u64) -> bool {
        if seed {
            let (tries, first) = self
                .seed_tries
                .iter()
                .find(|(a, _, _)| *a == addr)
                .map_or((u8::MAX, 0), |(_, n, t)| (*n, *t));
            let young = now.saturating_sub(first) < GIVE_UP_MS;
            if tries < self.max_tries && young && self.find(addr).is_none() {
                self.seed_retries.push((addr, tries));
                return false;
            }
            self.seeds = self.seeds.saturating_sub(1);
            return true;
        }
        let max_tries = self.max_tries;
        match self.find(addr) {
            Some(c) if c.state == State::Asked => {
                if c.tries < max_tries && now.saturating_sub(c.first_sent) < GIVE_UP_MS {
                    c.state = State::Fresh;
                    false
                } else {
                    c.state = State::Failed;
                    true
                }
            }
            _ => false,
        }
    }

    /// Converged (or given up at [`MAX_LOOKUP_MS`]).
    pub fn is_done(&self, now: u64) -> bool {
        if now.saturating_sub(self.started) >= MAX_LOOKUP_MS {
            return true;
        }
        let top: Vec<&Cand> = self.live().take(K).collect();
        let all_answered = top.iter().all(|c| c.state == State::Answered);
        all_answered && (self.seeds == 0 || top.len() >= K)
    }

    /// The `k` closest candidates that answered, closest first.
    pub fn closest_answered(&self, k: usize) -> Vec<CompactNode> {
        self.cands
            .iter()
            .filter(|c| c.state == State::Answered)
            .take(k)
            .map(|c| c.node)
            .collect()
    }

    /// The `k` closest answerers of each family that gave a write token, with their tokens
    /// (BEP-32: a peer stored at IPv6 nodes is found by IPv6 lookups only, so an announce
    /// or put goes to the closest of each family; IPv4 ones first).
    pub fn tokens(&self, k: usize) -> Vec<(CompactNode, Vec<u8>)> {
        let family = |v4: bool| {
            self.cands
                .iter()
                .filter(move |c| c.state == State::Answered && c.node.addr.is_ipv4() == v4)
                .filter_map(|c| c.token.clone().map(|t| (c.node, t)))
                .take(k)
        };
        family(true).chain(family(false)).collect()
    }

    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announce_tokens_come_from_the_closest_of_each_family() {
        let target = NodeId([0; 20]);
        // Ten IPv4 nodes all closer to the target than the two IPv6 ones.
        let mut nodes = Vec::new();
        for i in 0..10u8 {
            let mut id = [0u8; 20];
            id[19] = i + 1;
            nodes.push(CompactNode {
                id: NodeId(id),
                addr: SocketAddr::from(([10, 0, 0, i + 1], 6881)),
            });
        }
        for i in 0..2u8 {
            nodes.push(CompactNode {
                id: NodeId([0x80 | i; 20]),
                addr: SocketAddr::new(format!("2001:db8::{}", i + 1).parse().unwrap(), 6881),
            });
        }
        let mut l = Lookup::new(1, target, Kind::Announce(1), &nodes, NodeId([9; 20]), 0);
        for n in &nodes {
            let r = Response {
                id: n.id,
                token: Some(b"tok"),
                ..Default::default()
            };
            l.sent(n.addr, 0);
            l.answered(n.addr, &r, false);
        }
        let tokens = l.tokens(K);
        let v4 = tokens.iter().filter(|(n, _)| n.addr.is_ipv4()).count();
        let v6 = tokens.iter().filter(|(n, _)| n.addr.is_ipv6()).count();
        assert_eq!((v4, v6), (K, 2), "{tokens:?}");
        // The IPv4 ones are the 8 closest IPv4 nodes.
        assert!(tokens[..K].iter().zip(&nodes).all(|((a, _), b)| a == b));
    }

    #[test]
    fn peers_at_local_addresses_count_only_on_a_local_network() {
        let node = CompactNode {
            id: NodeId([7; 20]),
            addr: "5.6.7.8:6881".parse().unwrap(),
        };
        let named: Vec<SocketAddr> = ["10.0.0.1:6881", "127.0.0.1:6881", "1.2.3.4:6881"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let r = Response {
            id: node.id,
            values: named.clone(),
            ..Default::default()
        };
        let mut public = Lookup::new(
            1,
            NodeId([1; 20]),
            Kind::GetPeers,
            &[node],
            NodeId([2; 20]),
            0,
        );
        public.allow_local = false;
        assert_eq!(
            public.answered(node.addr, &r, false),
            vec!["1.2.3.4:6881".parse::<SocketAddr>().unwrap()]
        );
        let mut local = Lookup::new(
            1,
            NodeId([1; 20]),
            Kind::GetPeers,
            &[node],
            NodeId([2; 20]),
            0,
        );
        assert_eq!(
            local.answered(node.addr, &r, false),
            named,
            "a loopback testnet"
        );
    }
}
