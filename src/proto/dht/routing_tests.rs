//! Tests of the routing table: never ourselves, full buckets and the replacement cache with
//! ping-before-evict, only our own bucket splitting, the IP and subnet rules (and the loopback
//! switch), node states over time, and `closest` against a brute-force sort on random ids.

use super::*;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn id(&mut self) -> NodeId {
        let mut id = [0u8; 20];
        for b in id.iter_mut() {
            *b = self.next() as u8;
        }
        NodeId(id)
    }
}

fn addr(i: u32) -> SocketAddr {
    // One node per /24: 10.(i/256).(i%256).1 would share /24s, so spread over the second
    // and third octets.
    SocketAddr::from(([11, (i >> 8) as u8, i as u8, 1], 6881))
}

/// An id sharing exactly `prefix` bits with `own`.
fn id_at(own: NodeId, prefix: usize, rng: &mut Rng) -> NodeId {
    let mut id = rng.id();
    for bit in 0..prefix {
        id.set_bit(bit, own.bit(bit));
    }
    id.set_bit(prefix, !own.bit(prefix));
    id
}

#[test]
fn never_ourselves_nor_unusable() {
    let own = NodeId([1; 20]);
    let mut t = Table::new(own, Config::default());
    assert_eq!(
        t.heard(own, addr(1), Contact::Response, 0),
        Outcome::Rejected(Reject::OwnId)
    );
    let zero = SocketAddr::from(([11, 0, 0, 1], 0));
    assert_eq!(
        t.heard(NodeId([2; 20]), zero, Contact::Response, 0),
        Outcome::Rejected(Reject::Unusable)
    );
    assert!(t.is_empty());
}

#[test]
fn full_far_bucket_caches_and_asks_for_a_ping() {
    let mut rng = Rng(7);
    let own = rng.id();
    let mut t = Table::new(own, Config::default());
    for i in 0..8 {
        let id = id_at(own, 0, &mut rng);
        assert_eq!(t.heard(id, addr(i), Contact::Response, 0), Outcome::Added);
    }
    // Our own half still splits off, so bucket 0 keeps only the far nodes.
    let newcomer = id_at(own, 0, &mut rng);
    assert_eq!(
        t.heard(newcomer, addr(100), Contact::Response, 10),
        Outcome::Cached { ping: None }
    );
    assert_eq!(t.bucket_sizes()[0], (8, 1));
    // Twenty minutes later everyone is questionable: the oldest is named.
    let later = 20 * 60;
    let first = t.nodes().next().map(|n| n.id).expect("a node");
    t.heard(first, addr(0), Contact::Response, later);
    let Outcome::Cached { ping: Some(p) } = t.heard(newcomer, addr(100), Contact::Response, later)
    else {
        panic!("expected a ping request")
    };
    assert_ne!(p.id, first);
    assert_eq!(t.failed(&p.id, later), Failed::Counted);
    assert_eq!(
        t.failed(&p.id, later + 5),
        Failed::Evicted {
            replaced_by: Some(CompactNode {
                id: newcomer,
                addr: addr(100)
            })
        }
    );
    assert!(t.get(&newcomer).is_some());
    assert!(t.get(&p.id).is_none());
    assert_eq!(t.len(), 8);
}

#[test]
fn a_bad_node_is_replaced_at_once() {
    let mut rng = Rng(9);
    let own = rng.id();
    let mut t = Table::new(own, Config::default());
    let ids: Vec<NodeId> = (0..8).map(|_| id_at(own, 0, &mut rng)).collect();
    for (i, id) in ids.iter().enumerate() {
        t.heard(*id, addr(i as u32), Contact::Response, 0);
    }
    t.failed(&ids[3], 1);
    t.failed(&ids[3], 2);
    assert_eq!(t.len(), 7, "evicted with nothing cached");
    t.heard(ids[4], addr(4), Contact::Response, 3);
    let mut t2 = Table::new(own, Config::default());
    for (i, id) in ids.iter().enumerate() {
        t2.heard(*id, addr(i as u32), Contact::Response, 0);
    }
    // Bad but still present (no replacement was cached): a newcomer takes its slot.
    if let Some(n) = t2.buckets[0].nodes.get_mut(2) {
        n.failures = MAX_FAILURES;
    }
    let newcomer = id_at(own, 0, &mut rng);
    assert_eq!(
        t2.heard(newcomer, addr(50), Contact::Query, 5),
        Outcome::Added
    );
    assert!(t2.get(&ids[2]).is_none());
    assert_eq!(
        t2.get(&newcomer).map(|n| n.status(5)),
        Some(Status::Questionable)
    );
}

#[test]
fn only_our_bucket_splits() {
    let mut rng = Rng(11);
    let own = rng.id();
    let mut t = Table::new(own, Config::default());
    let mut n = 0;
    for prefix in 0..20 {
        for _ in 0..12 {
            let id = id_at(own, prefix, &mut rng);
            t.heard(id, addr(n), Contact::Response, 0);
            n += 1;
        }
    }
    let sizes = t.bucket_sizes();
    assert!(sizes.len() >= 20, "{sizes:?}");
    for (i, (nodes, cached)) in sizes.iter().enumerate().take(20) {
        assert_eq!(*nodes, 8, "bucket {i}");
        assert_eq!(*cached, 4, "bucket {i}");
    }
    for node in t.nodes() {
        let i = (own.common_prefix(&node.id) as usize).min(sizes.len() - 1);
        assert!(t.buckets[i].nodes.iter().any(|m| m.id == node.id));
    }
    assert_eq!(t.len(), t.nodes().count());
}

#[test]
fn ip_and_subnet_rules() {
    let mut rng = Rng(13);
    let own = rng.id();
    let mut t = Table::new(own, Config::default());
    let a = id_at(own, 0, &mut rng);
    let b = id_at(own, 0, &mut rng);
    let c = id_at(own, 1, &mut rng);
    let ip = |last: u8, port: u16| SocketAddr::from(([198, 51, 100, last], port));
    assert_eq!(
        t.heard(a, ip(1, 1000), Contact::Response, 0),
        Outcome::Added
    );
    assert_eq!(
        t.heard(b, ip(1, 1001), Contact::Response, 0),
        Outcome::Rejected(Reject::IpInUse)
    );
    assert_eq!(
        t.heard(b, ip(2, 1000), Contact::Response, 0),
        Outcome::Rejected(Reject::SubnetInUse)
    );
    assert_eq!(
        t.heard(c, ip(2, 1000), Contact::Response, 0),
        Outcome::Rejected(Reject::SubnetInUse),
        "one bucket before any split"
    );
    for k in 0..7 {
        let far = id_at(own, 0, &mut rng);
        let at = SocketAddr::from(([203, 0, k, 1], 1000));
        assert_eq!(t.heard(far, at, Contact::Response, 0), Outcome::Added);
    }
    assert_eq!(
        t.heard(c, ip(2, 1000), Contact::Response, 0),
        Outcome::Added,
        "split off"
    );
    assert_eq!(
        t.heard(a, ip(9, 1000), Contact::Response, 0),
        Outcome::Rejected(Reject::AddressChanged)
    );
    let v6 = |x: u16| SocketAddr::new(IpAddr::V6([0x2001, 0xdb8, 1, 2, 0, 0, 0, x].into()), 9);
    let mut t6 = Table::new(own, Config::default());
    assert_eq!(t6.heard(a, v6(1), Contact::Response, 0), Outcome::Added);
    assert_eq!(
        t6.heard(b, v6(2), Contact::Response, 0),
        Outcome::Rejected(Reject::SubnetInUse)
    );

    let loopback = Config {
        restrict_ips: false,
        ..Config::default()
    };
    let mut l = Table::new(own, loopback);
    for port in 1..=8u16 {
        let id = id_at(own, 0, &mut rng);
        let at = SocketAddr::from(([127, 0, 0, 1], port));
        assert_eq!(l.heard(id, at, Contact::Response, 0), Outcome::Added);
    }
    let at = SocketAddr::from(([127, 0, 0, 1], 1));
    assert_eq!(
        l.heard(id_at(own, 1, &mut rng), at, Contact::Response, 0),
        Outcome::Rejected(Reject::IpInUse)
    );
}

#[test]
fn node_states_over_time() {
    let mut n = Node::new(NodeId([1; 20]), addr(1));
    n.touch(Contact::Query, 0);
    assert_eq!(n.status(0), Status::Questionable, "never answered");
    n.touch(Contact::Response, 10);
    assert_eq!(n.status(10 + GOOD_FOR_SECS - 1), Status::Good);
    assert_eq!(n.status(10 + GOOD_FOR_SECS), Status::Questionable);
    n.touch(Contact::Query, 2000);
    assert_eq!(
        n.status(2001),
        Status::Good,
        "answered once and queried us lately"
    );
    n.failures = 1;
    assert_eq!(n.status(2001), Status::Questionable);
    n.failures = MAX_FAILURES;
    assert_eq!(n.status(2001), Status::Bad);
    n.touch(Contact::Response, 2002);
    assert_eq!(n.status(2002), Status::Good);
}

#[test]
fn closest_matches_brute_force() {
    let mut rng = Rng(17);
    let own = rng.id();
    let loopback = Config {
        restrict_ips: false,
        ..Config::default()
    };
    let mut t = Table::new(own, loopback);
    for i in 0..2000u32 {
        let at = SocketAddr::from(([127, 0, 0, 1], 1 + i as u16));
        t.heard(rng.id(), at, Contact::Response, 0);
    }
    assert!(t.len() > 50);
    for _ in 0..50 {
        let target = rng.id();
        let got = t.closest(&target, 8, 0);
        let mut all: Vec<NodeId> = t.nodes().map(|n| n.id).collect();
        all.sort_by_key(|id| id.distance(&target));
        let want: Vec<NodeId> = all.into_iter().take(8).collect();
        assert_eq!(got.iter().map(|c| c.id).collect::<Vec<_>>(), want);
    }
    let near = t.closest(&own, 8, 0);
    assert!(near.iter().all(|c| c.id != own));
}

#[test]
fn refresh_targets_land_in_their_bucket() {
    let mut rng = Rng(19);
    let own = rng.id();
    let mut t = Table::new(own, Config::default());
    for prefix in 0..6 {
        for k in 0..9 {
            t.heard(
                id_at(own, prefix, &mut rng),
                addr(prefix as u32 * 16 + k),
                Contact::Response,
                0,
            );
        }
    }
    let n = t.bucket_sizes().len();
    for i in 0..n {
        let id = t.id_in_bucket(i, rng.id().0);
        assert_eq!(t.index(&id), i);
    }
    assert_eq!(t.stale_buckets(0, 900), Vec::<usize>::new());
    assert_eq!(t.stale_buckets(900, 900).len(), n);
    assert!(t.questionable(0).is_empty());
    assert_eq!(t.questionable(GOOD_FOR_SECS).len(), t.len());
    let some = t.nodes().next().map(|n| n.id).expect("node");
    assert!(t.remove(&some));
    assert!(!t.remove(&some));
}
