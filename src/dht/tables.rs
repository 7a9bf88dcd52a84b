//! The node's two routing tables (BEP-32): IPv4 nodes in one, IPv6 nodes in the other, one
//! node id for both. Everything that touches a table picks it by the address family: nodes
//! heard from and failed queries, `dht.dat`'s good nodes, the closest nodes a lookup starts
//! from (both tables), bootstrap and re-bootstrap (a family whose table is thin), bucket
//! refreshes (each table's sparse and stale buckets), and our external IP learned from `ip`
//! reports (votes kept per family; the id follows the IPv4 one when we reach IPv4).
//! [`Families`] says which families the socket reaches; [`wire_addr`] is the address a
//! datagram goes to on a given socket (IPv4 mapped into IPv6 on a dual-stack one).

use super::lookup::Kind;
use super::{node_id, Dht, Purpose, Settings, IP_MIN_VOTES, MAX_BUCKET_REFRESHES, MAX_LOOKUPS};
use super::{MIN_NODES, STALE_BUCKET_SECS, STALE_CHECK_MS};
use crate::proto::dht::compact::{canonical, CompactNode};
use crate::proto::dht::krpc::Method;
use crate::proto::dht::routing::{self, Contact, Outcome, Table};
use crate::proto::dht::NodeId;
use std::net::{IpAddr, SocketAddr};

/// The address families a node's socket reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Families {
    pub v4: bool,
    pub v6: bool,
}

impl Families {
    pub const V4: Families = Families {
        v4: true,
        v6: false,
    };
    pub const V6: Families = Families {
        v4: false,
        v6: true,
    };
    pub const DUAL: Families = Families { v4: true, v6: true };

    /// The families of a socket bound to `local`; `only_v6`: its IPV6_V6ONLY option (an
    /// unspecified IPv6 address without it takes IPv4 as mapped addresses too).
    pub fn of_socket(local: SocketAddr, only_v6: bool) -> Families {
        match local.ip() {
            IpAddr::V4(_) => Families::V4,
            IpAddr::V6(ip) if ip.is_unspecified() && !only_v6 => Families::DUAL,
            IpAddr::V6(ip) if ip.to_ipv4_mapped().is_some() => Families::V4,
            IpAddr::V6(_) => Families::V6,
        }
    }

    /// Whether a datagram to `addr` can go out.
    pub fn reaches(&self, addr: &SocketAddr) -> bool {
        match canonical(*addr) {
            SocketAddr::V4(_) => self.v4,
            SocketAddr::V6(_) => self.v6,
        }
    }

    pub fn dual(&self) -> bool {
        self.v4 && self.v6
    }

    /// "ipv4", "ipv6" or "dual" (for `/api/dht/stats`).
    pub fn name(&self) -> &'static str {
        match (self.v4, self.v6) {
            (true, true) => "dual",
            (false, true) => "ipv6",
            _ => "ipv4",
        }
    }
}

/// The address to hand the socket for a datagram to `to`: an IPv4 address as
/// `::ffff:a.b.c.d` when the socket is IPv6 (dual-stack), else `to` itself.
pub fn wire_addr(to: SocketAddr, socket_v6: bool) -> SocketAddr {
    match (to, socket_v6) {
        (SocketAddr::V4(v4), true) => {
            SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
        }
        _ => to,
    }
}

/// An empty table for `id` under `settings`' IP rules.
pub(super) fn new_table(id: NodeId, settings: &Settings) -> Table {
    Table::new(
        id,
        routing::Config {
            restrict_ips: settings.restrict_ips,
            ..routing::Config::default()
        },
    )
}

impl Dht {
    /// Sets the families the socket reaches (default IPv4 only): a dual-stack node asks
    /// for `nodes` and `nodes6` (`want`), bootstraps and refreshes both tables.
    pub fn set_families(&mut self, families: Families) {
        self.families = families;
    }

    pub fn families(&self) -> Families {
        self.families
    }

    /// The IPv4 table.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// The IPv6 table.
    pub fn table6(&self) -> &Table {
        &self.table6
    }

    /// Nodes in both tables.
    pub fn node_count(&self) -> usize {
        self.table.len() + self.table6.len()
    }

    /// The table of `addr`'s family.
    pub(super) fn table_of(&self, addr: SocketAddr) -> &Table {
        match canonical(addr).is_ipv4() {
            true => &self.table,
            false => &self.table6,
        }
    }

    pub(super) fn table_of_mut(&mut self, addr: SocketAddr) -> &mut Table {
        match canonical(addr).is_ipv4() {
            true => &mut self.table,
            false => &mut self.table6,
        }
    }

    /// The tables of the families we reach, with a sample address of their family.
    fn reached_tables(&self) -> Vec<(bool, &Table)> {
        let mut out = Vec::new();
        if self.families.v4 {
            out.push((false, &self.table));
        }
        if self.families.v6 {
            out.push((true, &self.table6));
        }
        out
    }

    /// Up to `n` nodes of each reached table closest to `target` (a lookup's start).
    pub(super) fn closest_known(&self, target: &NodeId, n: usize) -> Vec<CompactNode> {
        let secs = self.now / 1000;
        let mut out = Vec::new();
        for (_, t) in self.reached_tables() {
            out.extend(t.closest(target, n, secs));
        }
        out
    }

    /// A node at `from` queried us or answered: its family's table hears of it (nodes of a
    /// family the socket does not reach are not kept).
    pub(super) fn heard(&mut self, id: NodeId, from: SocketAddr, contact: Contact) {
        if !self.families.reaches(&from) {
            return;
        }
        let secs = self.now / 1000;
        if let Outcome::Cached { ping: Some(n) } =
            self.table_of_mut(from).heard(id, from, contact, secs)
        {
            self.query(n.addr, Some(n.id), Method::Ping, Purpose::Ping);
        }
    }

    /// Known good nodes of both tables, for `dht.dat` (IPv4 first).
    pub fn good_nodes(&self, max: usize) -> Vec<CompactNode> {
        let now = self.now / 1000;
        self.table
            .nodes()
            .chain(self.table6.nodes())
            .filter(|n| n.status(now) == routing::Status::Good)
            .take(max)
            .map(|n| n.compact())
            .collect()
    }

    /// A node at `voter` saw us at `seen` (votes are kept per family). Once enough agree on
    /// a global IP that our id does not fit (BEP-42), we take a fitting id, keeping the nodes
    /// we know; the id follows our IPv4 address when we reach IPv4 (one id for both tables).
    pub(super) fn external_ip_seen(&mut self, voter: IpAddr, seen: IpAddr) {
        let (voter, seen) = (voter.to_canonical(), seen.to_canonical());
        if voter.is_ipv4() != seen.is_ipv4() {
            return;
        }
        let votes = match voter.is_ipv4() {
            true => &mut self.votes,
            false => &mut self.votes6,
        };
        votes.vote(voter, seen);
        let Some(ip) = votes.leader(IP_MIN_VOTES) else {
            return;
        };
        if node_id::is_exempt(ip) {
            return;
        }
        if ip.is_ipv4() {
            self.own_ip = Some(ip);
        } else {
            self.own_ip6 = Some(ip);
            if self.families.v4 {
                return;
            }
        }
        if node_id::id_matches_ip(&self.id, ip) {
            return;
        }
        let random = self.random_id();
        let id = node_id::bep42_id(ip, random);
        log::info!("dht: external IP {ip}; node id now {id:?}");
        let known: Vec<(NodeId, SocketAddr)> = self
            .table
            .nodes()
            .chain(self.table6.nodes())
            .map(|n| (n.id, n.addr))
            .collect();
        self.id = id;
        self.table = new_table(id, &self.settings);
        self.table6 = new_table(id, &self.settings);
        let secs = self.now / 1000;
        for (nid, addr) in known {
            let _ = self
                .table_of_mut(addr)
                .heard(nid, addr, Contact::Response, secs);
        }
        self.stats.id_changes += 1;
    }

    /// Bucket refreshes (BEP-5), per table: once a lookup of our own id (bootstrap, refresh)
    /// finished, every bucket but our own that is short of nodes gets a lookup of a random id
    /// in it, so the far buckets fill with nodes that answered us rather than only with those
    /// that happened to query us; and every minute the buckets unchanged for 15 minutes get
    /// one. An empty table has nothing to refresh (bootstrap fills it).
    pub(super) fn refresh(&mut self) {
        let sparse = std::mem::take(&mut self.refresh_buckets);
        let stale = self.now >= self.next_stale_check;
        if !sparse && !stale {
            return;
        }
        if stale {
            self.next_stale_check = self.now + STALE_CHECK_MS;
        }
        let secs = self.now / 1000;
        let mut targets: Vec<(bool, usize)> = Vec::new();
        for (v6, t) in self.reached_tables() {
            if t.is_empty() {
                continue;
            }
            let mut due: Vec<usize> = Vec::new();
            if sparse {
                let sizes = t.bucket_sizes();
                let last = sizes.len().saturating_sub(1);
                due.extend((0..last).filter(|&i| sizes[i].0 < routing::K));
            }
            if stale {
                due.extend(t.stale_buckets(secs, STALE_BUCKET_SECS));
                due.sort_unstable();
                due.dedup();
            }
            targets.extend(due.into_iter().map(|i| (v6, i)));
        }
        for (v6, i) in targets.into_iter().take(MAX_BUCKET_REFRESHES) {
            if self.lookups.len() >= MAX_LOOKUPS / 2 {
                break;
            }
            let random = self.random_id();
            let table = if v6 { &self.table6 } else { &self.table };
            let target = table.id_in_bucket(i, random);
            self.start_lookup(target, Kind::FindNode);
        }
    }

    /// Whether the table of a family we reach is thin (below [`MIN_NODES`]).
    fn thin(&self, v6: bool) -> bool {
        let t = if v6 { &self.table6 } else { &self.table };
        t.len() < MIN_NODES
    }

    /// The bootstrap addresses of the reached families whose table is thinner than `min`.
    fn seeds_below(&self, min: usize) -> Vec<SocketAddr> {
        self.bootstrap
            .iter()
            .filter(|a| self.families.reaches(a))
            .filter(|a| self.table_of(**a).len() < min)
            .copied()
            .collect()
    }

    /// With a thin table the bootstrap nodes of its family join a lookup.
    pub(super) fn thin_table_seeds(&self) -> Vec<SocketAddr> {
        self.seeds_below(routing::K)
    }

    /// A lookup of our own id from the bootstrap nodes when a reached family's table is
    /// thin, with back-off (a family that stays empty, such as IPv6 on a host without it,
    /// costs one lookup per back-off, at most 5 minutes apart).
    pub(super) fn maybe_bootstrap(&mut self) {
        if self.now < self.next_bootstrap {
            return;
        }
        let thin = (self.families.v4 && self.thin(false)) || (self.families.v6 && self.thin(true));
        if !thin {
            return;
        }
        let seeds = self.seeds_below(MIN_NODES);
        if seeds.is_empty() && self.node_count() == 0 {
            return;
        }
        self.next_bootstrap = self.now + self.bootstrap_backoff;
        self.bootstrap_backoff = (self.bootstrap_backoff * 2).min(5 * 60 * 1000);
        self.stats.bootstraps += 1;
        let own = self.id;
        self.start_lookup_with(own, Kind::FindNode, &seeds);
    }
}
