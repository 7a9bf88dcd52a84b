//! Driving the lookups of [`Dht`]: starting them from the table's closest nodes (and the
//! bootstrap addresses while the table is thin), sending what each [`Lookup`] wants within the
//! outbound budget, feeding it answers, counting slow queries as failed tries after the
//! adaptive timeout ([`Dht::rto`]) so a lookup moves on, and finishing converged ones (the
//! announce_peer of an announce, the put of a BEP-44 put, the record of the result). A
//! lookup starts from the closest nodes of both tables (BEP-32) and asks only nodes of the
//! families the socket reaches.

use super::lookup::MAX_TRIES;
use super::lookup::{Kind, Lookup};
use super::{node_id, routing, Completed, Dht, Purpose, EMPTY_RETRY_MS, MAX_FOUND, MAX_LOOKUPS};
use super::{RTO_MAX_MS, RTO_MIN_MS, RTO_RTTS};
use crate::proto::dht::krpc::{self, Method};
use crate::proto::dht::NodeId;
use std::net::SocketAddr;

impl Dht {
    /// The time after which a lookup's query counts as a failed try: a few smoothed round
    /// trips, within [`RTO_MIN_MS`]..[`RTO_MAX_MS`] (libtorrent moves on after 1 s and
    /// keeps listening for 15; here the answer is still taken until [`QUERY_TIMEOUT_MS`]).
    pub fn rto(&self) -> u64 {
        (self.srtt * RTO_RTTS).clamp(RTO_MIN_MS, RTO_MAX_MS)
    }

    /// Tries a lookup gives an unanswered node: 2 where retries go unanswered (the node is
    /// gone: it would cost the lookup one timeout per try), up to [`MAX_TRIES`] where they
    /// are answered (a retry answered 40% of the times and more: a network that loses a
    /// third of the datagrams answers about half).
    pub fn lookup_tries(&self) -> u8 {
        (2.0 + self.retry_ok * 16.0)
            .round()
            .clamp(2.0, MAX_TRIES as f64) as u8
    }

    /// The lookups' timers alone, the cheap part of [`Dht::tick`] for a caller that ticks
    /// once a second: queries older than [`Dht::rto`] become failed tries and the lookups
    /// send their next queries (then taken from [`Dht::poll_send`]). Without lookups running,
    /// nothing.
    pub fn lookup_timers(&mut self, now_ms: u64) {
        if self.lookups.is_empty() {
            return;
        }
        self.now = self.now.max(now_ms);
        self.lookup_timeouts();
        self.step_lookups();
    }

    /// Marks the lookup queries older than [`Dht::rto`] as failed tries (once each).
    pub(super) fn lookup_timeouts(&mut self) {
        let (now, rto) = (self.now, self.rto());
        let slow: Vec<u16> = self
            .pending
            .iter()
            .filter(|(_, p)| !p.soft && matches!(p.purpose, Purpose::Lookup(_) | Purpose::Seed(_)))
            .filter(|(_, p)| now.saturating_sub(p.sent) >= rto)
            .map(|(t, _)| *t)
            .collect();
        for t in slow {
            if let Some(p) = self.pending.get_mut(&t) {
                p.soft = true;
                if p.retry {
                    self.retry_ok *= 0.95;
                }
                let (addr, id, purpose) = (p.addr, p.id, p.purpose);
                self.try_failed(addr, id, purpose);
            }
        }
    }

    pub(super) fn start_lookup(&mut self, target: NodeId, kind: Kind) -> bool {
        let seeds = self.thin_table_seeds();
        self.start_lookup_with(target, kind, &seeds)
    }

    /// A lookup from the table's closest nodes plus `seeds` (addresses with no known id).
    pub(super) fn start_lookup_with(
        &mut self,
        target: NodeId,
        kind: Kind,
        seeds: &[SocketAddr],
    ) -> bool {
        self.start_lookup_salted(target, kind, seeds, Vec::new())
    }

    /// [`Dht::start_lookup_with`] for an item lookup whose target needs `salt` to be checked.
    pub(super) fn start_lookup_salted(
        &mut self,
        target: NodeId,
        kind: Kind,
        seeds: &[SocketAddr],
        salt: Vec<u8>,
    ) -> bool {
        if self.lookups.len() >= MAX_LOOKUPS || self.lookups.iter().any(|l| l.target == target) {
            return false;
        }
        let known = self.closest_known(&target, 3 * routing::K);
        let id = self.next_lookup;
        self.next_lookup += 1;
        let mut l = Lookup::new(id, target, kind, &known, self.id, self.now);
        l.allow_local = self.allow_local();
        l.reach = self.families;
        l.salt = self.puts.get(&target.0).map_or(salt, |p| p.salt().to_vec());
        for &a in seeds {
            if self.query(a, None, l.method(), Purpose::Seed(id)) {
                l.seed_sent(a, self.now);
            }
        }
        self.lookups.push(l);
        self.stats.lookups_started += 1;
        self.step_lookups();
        true
    }

    pub(super) fn lookup_response(
        &mut self,
        lid: u64,
        from: SocketAddr,
        r: &krpc::Response<'_>,
        seed: bool,
    ) {
        let Some(l) = self.lookups.iter_mut().find(|l| l.id == lid) else {
            return;
        };
        let new_peers = l.answered(from, r, seed);
        let ih = l.target.0;
        if !new_peers.is_empty() && self.found.len() < MAX_FOUND {
            self.found.push_back((ih, new_peers));
        }
        self.step_lookups();
    }

    /// Sends what the lookups want and finishes the converged ones.
    pub(super) fn step_lookups(&mut self) {
        let mut i = 0;
        while i < self.lookups.len() {
            self.lookups[i].max_tries = self.lookup_tries();
            let wants = self.lookups[i].next_queries();
            let (lid, method) = (self.lookups[i].id, self.lookups[i].method());
            for a in self.lookups[i].take_seed_retries() {
                if self.query_try(a, None, method.clone(), Purpose::Seed(lid), true) {
                    self.lookups[i].seed_resent(a, self.now);
                } else {
                    self.lookups[i].seed_unsent();
                }
            }
            let now = self.now;
            for c in wants {
                let retry = self.lookups[i].tries(c.addr) > 0;
                let p = Purpose::Lookup(lid);
                if self.query_try(c.addr, Some(c.id), method.clone(), p, retry) {
                    self.lookups[i].sent(c.addr, now);
                } else {
                    break;
                }
            }
            if self.lookups[i].is_done(self.now) {
                let l = self.lookups.swap_remove(i);
                self.finish(l);
            } else {
                i += 1;
            }
        }
    }

    pub(super) fn finish(&mut self, l: Lookup) {
        let ms = self.now.saturating_sub(l.started);
        self.stats.lookups_done += 1;
        self.stats.lookup_ms_total += ms;
        let closest = l.closest_answered(routing::K);
        if l.kind == Kind::FindNode && l.target == self.id && !closest.is_empty() {
            self.refresh_buckets = true;
        }
        if let Kind::Announce(port) = l.kind {
            let tokens = l.tokens(routing::K);
            if tokens.is_empty() {
                // Nobody to announce to yet (an empty table): try again soon.
                if let Some(a) = self.announced.get_mut(&l.target.0) {
                    a.next = self.now + EMPTY_RETRY_MS;
                }
            }
            for (node, token) in tokens {
                let m = Method::AnnouncePeer {
                    info_hash: l.target,
                    port,
                    implied_port: false,
                    token: &token,
                };
                if self.query(node.addr, Some(node.id), m, Purpose::Announce) {
                    self.stats.announces_sent += 1;
                }
            }
        }
        if l.kind == Kind::PutItem {
            self.finish_put(&l);
        }
        if self.completed.len() >= 64 {
            self.completed.pop_front();
        }
        self.completed.push_back(Completed {
            target: l.target.0,
            closest,
            peers: l.peer_count(),
            ms,
            item: l.item,
        });
    }

    /// Whether lookups may ask nodes named at loopback, private or link-local addresses: on
    /// a loopback or private testnet (`restrict_ips` off), or when our own address is such.
    pub(super) fn allow_local(&self) -> bool {
        let exempt = |ip: Option<std::net::IpAddr>| ip.is_some_and(node_id::is_exempt);
        !self.settings.restrict_ips || exempt(self.own_ip) || exempt(self.own_ip6)
    }
}
