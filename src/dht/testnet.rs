//! An in-process testnet: many [`Dht`] nodes on made-up loopback addresses, a virtual clock
//! and a router that carries datagrams between them (optionally dropping some). Lookups must
//! return the true 8 closest nodes and find stored peers and BEP-44 items.

use super::items::{FoundItem, PutItem};
use super::{Dht, Settings};
use crate::proto::dht::NodeId;
use std::collections::HashMap;
use std::net::SocketAddr;

pub(super) struct Net {
    pub nodes: Vec<Dht>,
    pub addrs: Vec<SocketAddr>,
    by_addr: HashMap<SocketAddr, usize>,
    pub now: u64,
    drop_percent: u64,
    rng: u64,
    pub delivered: u64,
}

pub(super) fn settings() -> Settings {
    Settings {
        restrict_ips: false,
        inbound_per_sec: 10_000,
        outbound_per_sec: 10_000,
        ..Settings::default()
    }
}

impl Net {
    pub fn new(n: usize, drop_percent: u64, seed: u64) -> Net {
        let mut net = Net {
            nodes: Vec::new(),
            addrs: Vec::new(),
            by_addr: HashMap::new(),
            now: 1_000_000,
            drop_percent,
            rng: seed | 1,
            delivered: 0,
        };
        for i in 0..n {
            let addr: SocketAddr = format!("127.0.0.1:{}", 10_000 + i).parse().unwrap();
            let s = seed
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .wrapping_add(i as u64 * 7919 + 1);
            net.nodes.push(Dht::new(None, settings(), s, net.now));
            net.by_addr.insert(addr, i);
            net.addrs.push(addr);
        }
        net
    }

    fn roll(&mut self) -> u64 {
        super::xorshift(&mut self.rng) % 100
    }

    /// Delivers every queued datagram once (answers queue for the next round).
    pub fn round(&mut self) -> usize {
        let mut moved = 0;
        for i in 0..self.nodes.len() {
            while let Some((to, bytes)) = self.nodes[i].poll_send() {
                moved += 1;
                if self.roll() < self.drop_percent {
                    continue;
                }
                if let Some(&j) = self.by_addr.get(&to) {
                    let from = self.addrs[i];
                    self.nodes[j].receive(from, &bytes, self.now);
                    self.delivered += 1;
                }
            }
        }
        self.now += 20;
        moved
    }

    /// Runs `ms` of virtual time: rounds every 20 ms, a tick for every node every 250 ms (as
    /// often as a lookup's shortest timeout, `Dht::rto`).
    pub fn run(&mut self, ms: u64) {
        let end = self.now + ms;
        let mut next_tick = self.now;
        while self.now < end {
            if self.now >= next_tick {
                for d in &mut self.nodes {
                    d.tick(self.now);
                }
                next_tick = self.now + 250;
            }
            self.round();
        }
    }

    /// Bootstraps every node from node 0 and lets the tables fill.
    pub fn bootstrap(&mut self) {
        let seed = self.addrs[0];
        let n = self.nodes.len();
        for i in 1..n {
            self.nodes[i].set_bootstrap(vec![seed]);
            if i % 10 == 0 {
                self.run(200);
            }
        }
        self.nodes[0].set_bootstrap(vec![self.addrs[1]]);
        self.run(10_000);
    }

    /// The 8 ids closest to `target`, not counting node `except`.
    pub fn true_closest(&self, target: &NodeId, except: usize) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = (0..self.nodes.len())
            .filter(|&i| i != except)
            .map(|i| self.nodes[i].id())
            .collect();
        ids.sort_by_key(|id| id.distance(target));
        ids.truncate(8);
        ids
    }
}

fn target(i: u64) -> [u8; 20] {
    let mut t = [0u8; 20];
    let mut s = i.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1;
    for c in t.chunks_mut(8) {
        let r = super::xorshift(&mut s).to_le_bytes();
        c.copy_from_slice(&r[..c.len()]);
    }
    t
}

/// Runs 20 lookups; asserts at least `min_exact` return exactly the true 8 closest and the
/// mean overlap with the true 8 is at least `min_mean_overlap`.
fn lookups_find_true_closest(drop_percent: u64, min_exact: usize, min_mean_overlap: f64) {
    let mut net = Net::new(120, drop_percent, 42 + drop_percent);
    net.bootstrap();
    // Lost bootstrap answers are retried with back-off.
    net.run(60_000);
    let thin = net.nodes.iter().filter(|d| d.table().len() < 8).count();
    assert!(
        thin <= net.nodes.len() / 10,
        "{thin} nodes have a thin table"
    );
    let mut exact = 0;
    let mut overlaps = 0;
    let trials = 20;
    for k in 0..trials {
        let from = (k * 7 + 3) % net.nodes.len();
        let t = target(k as u64 + 1);
        assert!(net.nodes[from].find_node(t));
        net.run(60_000);
        let done = net.nodes[from].take_completed();
        let c = done
            .iter()
            .find(|c| c.target == t)
            .expect("lookup finished");
        let got: Vec<NodeId> = c.closest.iter().map(|n| n.id).collect();
        let truth = net.true_closest(&NodeId(t), from);
        if got == truth {
            exact += 1;
        }
        let overlap = got.iter().filter(|id| truth.contains(id)).count();
        overlaps += overlap;
    }
    let mean = overlaps as f64 / trials as f64;
    eprintln!("{drop_percent}% loss: {exact} of {trials} exact, mean overlap {mean}");
    assert!(
        mean >= min_mean_overlap,
        "mean overlap with the true 8: {mean}"
    );
    assert!(
        exact >= min_exact,
        "{exact} of {trials} lookups found the true 8 closest"
    );
}

#[test]
fn testnet_lookups_return_the_true_8_closest() {
    lookups_find_true_closest(0, 20, 8.0);
}

#[test]
fn testnet_lookups_converge_with_30_percent_loss() {
    // With the adaptive per-query timeout, retries while retries get answered (up to 8
    // within 3 s) and bucket refreshes after bootstrap, 12 runs measured 17-20 of 20 lookups
    // with exactly the true 8 and a mean overlap of 7.8-8.0 (before: 6.15-6.6). The nodes'
    // own randomness varies a run (one run in about twenty found fewer than 15 exact); the
    // floor leaves room for that, not for a regression to the old mean.
    lookups_find_true_closest(30, 12, 7.5);
}

#[test]
fn testnet_stored_peers_are_found() {
    let mut net = Net::new(100, 0, 7);
    net.bootstrap();
    let ihs: Vec<[u8; 20]> = (0..10).map(|i| target(1000 + i)).collect();
    for (i, ih) in ihs.iter().enumerate() {
        net.nodes[i * 3 + 1].announce(*ih, 7000 + i as u16);
    }
    net.run(30_000);
    for (i, ih) in ihs.iter().enumerate() {
        let asker = 99 - i * 2;
        let _ = net.nodes[asker].take_found();
        assert!(net.nodes[asker].get_peers(*ih));
        net.run(20_000);
        let found: Vec<SocketAddr> = net.nodes[asker]
            .take_found()
            .into_iter()
            .filter(|(h, _)| h == ih)
            .flat_map(|(_, p)| p)
            .collect();
        let want: SocketAddr = format!("127.0.0.1:{}", 7000 + i).parse().unwrap();
        assert!(
            found.contains(&want),
            "peer {want} of torrent {i} found: {found:?}"
        );
    }
    let stored: usize = net.nodes.iter().map(|d| d.storage().peer_count()).sum();
    assert!(
        stored >= 10 * 4,
        "each announce reached several nodes ({stored})"
    );
}

/// The item node `asker`'s get of `target` found (after the lookup finished).
fn got_item(net: &mut Net, asker: usize, target: [u8; 20], salt: &[u8]) -> Option<FoundItem> {
    let _ = net.nodes[asker].take_completed();
    assert!(net.nodes[asker].get_item(target, salt));
    net.run(20_000);
    net.nodes[asker]
        .take_completed()
        .into_iter()
        .find(|c| c.target == target)?
        .item
}

#[test]
fn testnet_items_put_by_one_node_are_got_by_another() {
    let mut net = Net::new(60, 0, 11);
    net.bootstrap();
    // Immutable: the target is the SHA-1 of the bencoded value.
    let v = b"12:hello, world".to_vec();
    let put = PutItem {
        v: v.clone(),
        mutable: None,
    };
    let target = net.nodes[3].put_item(put).unwrap();
    net.run(20_000);
    let status = net.nodes[3].put_status(&target).unwrap();
    assert!(
        status.stored >= 4,
        "stored by {} of {}",
        status.stored,
        status.sent
    );
    let found = got_item(&mut net, 50, target, b"").expect("immutable item found");
    assert_eq!(found, FoundItem { v, mutable: None });
    // Mutable, salted: seq 1 signed by hand, then a put that follows the DHT's seq (2)
    // replaces it; a wrong salt finds nothing.
    let seed = [9u8; 32];
    let m = super::items::sign(&seed, b"salt", 1, b"i1e");
    let mutable = Some((m, b"salt".to_vec()));
    let put = PutItem {
        v: b"i1e".to_vec(),
        mutable,
    };
    assert!(net.nodes[7].put_item(put).is_some());
    net.run(20_000);
    let t = net.nodes[8].put_mutable_next(seed, b"salt", b"i2e".to_vec());
    net.run(20_000);
    assert_eq!(net.nodes[8].put_status(&t.unwrap()).unwrap().seq(), Some(2));
    let key = super::items::public_key(&seed);
    let target = crate::proto::dht::storage::mutable_target(&key, b"salt").0;
    let found = got_item(&mut net, 40, target, b"salt").expect("mutable item found");
    assert_eq!(found.v, b"i2e");
    assert_eq!(found.mutable.map(|m| (m.k, m.seq)), Some((key, 2)));
    assert!(got_item(&mut net, 41, target, b"other").is_none());
}
