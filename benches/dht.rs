//! DHT figures for scripts/bench-dht (a plain program, no harness; prints one line per
//! figure): `lookups N` runs N of our nodes on real UDP sockets on 127.0.0.1 in one thread
//! (one mio poll), bootstraps them from node 0 and times find_node and get_peers lookups
//! (p50/p95, and how many found exactly the true 8 closest), then again with a tenth of the
//! nodes dead; `lt-lookups N L` does the same on a net where L of the N nodes are
//! python3-libtorrent sessions (benches/lt_dht_nodes.py; see benches/support/mixed.rs) and
//! times libtorrent's own get_peers lookups there too; `answer` times how many queries one
//! node answers per second on this core (ping / find_node / get_peers mix from 2,048
//! addresses, the datagrams built beforehand, encoding the answers included); `memory` fills
//! storage with peers and routing tables with nodes and reports the RssAnon delta of this
//! process per entry. Everything stays on loopback.

#[path = "support/mixed.rs"]
mod mixed;

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use torrent_gateway::dht::{Dht, Settings};
use torrent_gateway::proto::dht::compact::CompactNode;
use torrent_gateway::proto::dht::krpc::{self, Body, Message, Method};
use torrent_gateway::proto::dht::routing::{Config, Contact, Table};
use torrent_gateway::proto::dht::storage::{Limits, Storage};
use torrent_gateway::proto::dht::NodeId;

fn rng(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

fn id20(s: &mut u64) -> [u8; 20] {
    let mut b = [0u8; 20];
    for c in b.chunks_mut(8) {
        c.copy_from_slice(&rng(s).to_le_bytes()[..c.len()]);
    }
    b
}

fn settings() -> Settings {
    Settings {
        restrict_ips: false,
        inbound_per_sec: 100_000,
        outbound_per_sec: 100_000,
        ..Settings::default()
    }
}

struct Node {
    dht: Dht,
    sock: UdpSocket,
    addr: SocketAddr,
    dead: bool,
    /// KRPC responses this node received, and how many came from `Testnet::lt` addresses
    /// (counted only when that set is not empty).
    answers: u64,
    lt_answers: u64,
}

/// One finished lookup of [`Testnet::time_lookups`].
struct Done {
    asker: usize,
    target: [u8; 20],
    ms: u64,
    closest: Vec<CompactNode>,
    peers: usize,
    /// Responses the asker received while its lookup ran, and how many from libtorrent.
    answers: u64,
    lt_answers: u64,
}

struct Testnet {
    nodes: Vec<Node>,
    poll: Poll,
    epoch: Instant,
    buf: Vec<u8>,
    next_tick: Instant,
    /// Addresses of libtorrent nodes in the net (the `lt-lookups` mode), whose answers count.
    lt: HashSet<SocketAddr>,
}

impl Testnet {
    fn new(n: usize) -> Testnet {
        let poll = Poll::new().unwrap();
        let mut nodes = Vec::new();
        for i in 0..n {
            let mut sock = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            poll.registry()
                .register(&mut sock, Token(i), Interest::READABLE)
                .unwrap();
            let addr = sock.local_addr().unwrap();
            let dht = Dht::new(None, settings(), 0x5eed + i as u64 * 7919, 0);
            nodes.push(Node {
                dht,
                sock,
                addr,
                dead: false,
                answers: 0,
                lt_answers: 0,
            });
        }
        Testnet {
            nodes,
            poll,
            epoch: Instant::now(),
            buf: vec![0; 65_536],
            next_tick: Instant::now(),
            lt: HashSet::new(),
        }
    }

    fn ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// One turn of the loop: datagrams in, ticks every 100 ms, datagrams out.
    fn turn(&mut self, events: &mut Events) {
        let now = Instant::now();
        let ms = self.ms();
        if now >= self.next_tick {
            for n in self.nodes.iter_mut().filter(|n| !n.dead) {
                n.dht.tick(ms);
            }
            self.next_tick = now + Duration::from_millis(100);
        }
        for n in self.nodes.iter_mut() {
            while let Some((to, bytes)) = n.dht.poll_send() {
                if !n.dead {
                    let _ = n.sock.send_to(&bytes, to);
                }
            }
        }
        let _ = self.poll.poll(events, Some(Duration::from_millis(5)));
        for e in events.iter() {
            let n = &mut self.nodes[e.token().0];
            while let Ok((len, from)) = n.sock.recv_from(&mut self.buf) {
                if n.dead {
                    continue;
                }
                let bytes = &self.buf[..len];
                if !self.lt.is_empty()
                    && matches!(
                        krpc::parse(bytes),
                        Ok(Message {
                            body: Body::Response(_),
                            ..
                        })
                    )
                {
                    n.answers += 1;
                    n.lt_answers += u64::from(self.lt.contains(&from));
                }
                n.dht.receive(from, bytes, ms);
            }
        }
    }

    fn run_for(&mut self, d: Duration) {
        let mut events = Events::with_capacity(1024);
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.turn(&mut events);
        }
    }

    /// Runs lookups (asker, target, get_peers rather than find_node) one after another;
    /// returns those that finished and how many did not within 30 s.
    fn time_lookups(&mut self, targets: &[(usize, [u8; 20], bool)]) -> (Vec<Done>, usize) {
        let mut events = Events::with_capacity(1024);
        let mut out = Vec::new();
        let mut unfinished = 0;
        for &(asker, t, peers) in targets {
            let _ = self.nodes[asker].dht.take_completed();
            let started = if peers {
                self.nodes[asker].dht.get_peers(t)
            } else {
                self.nodes[asker].dht.find_node(t)
            };
            if !started {
                continue;
            }
            let (answers, lt_answers) = (self.nodes[asker].answers, self.nodes[asker].lt_answers);
            let end = Instant::now() + Duration::from_secs(30);
            let mut done = None;
            while done.is_none() && Instant::now() < end {
                self.turn(&mut events);
                done = self.nodes[asker]
                    .dht
                    .take_completed()
                    .into_iter()
                    .find(|c| c.target == t);
            }
            let n = &self.nodes[asker];
            match done {
                Some(c) => out.push(Done {
                    asker,
                    target: t,
                    ms: c.ms,
                    closest: c.closest,
                    peers: c.peers,
                    answers: n.answers - answers,
                    lt_answers: n.lt_answers - lt_answers,
                }),
                None => unfinished += 1,
            }
        }
        (out, unfinished)
    }
}

fn pct(v: &mut [u64], p: f64) -> u64 {
    v.sort_unstable();
    if v.is_empty() {
        return 0;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// The 8 of `ids` closest to `target`, not counting `except` (the asker), closest first.
fn true_closest(ids: &[NodeId], target: &[u8; 20], except: NodeId) -> Vec<NodeId> {
    let target = NodeId(*target);
    let mut v: Vec<NodeId> = ids.iter().copied().filter(|id| *id != except).collect();
    v.sort_by_key(|id| id.distance(&target));
    v.truncate(8);
    v
}

/// How many of `done` found exactly the true 8 closest of `ids`, and the latencies "p50 ..
/// ms, p95 .. ms, max .. ms".
fn summary(net: &Testnet, ids: &[NodeId], done: &[Done]) -> (usize, String) {
    let exact = done
        .iter()
        .filter(|d| {
            let got: Vec<NodeId> = d.closest.iter().map(|c| c.id).collect();
            got == true_closest(ids, &d.target, net.nodes[d.asker].dht.id())
        })
        .count();
    (exact, latencies(done.iter().map(|d| d.ms).collect()))
}

fn latencies(mut ms: Vec<u64>) -> String {
    format!(
        "p50 {} ms, p95 {} ms, max {} ms",
        pct(&mut ms, 0.5),
        pct(&mut ms, 0.95),
        ms.last().copied().unwrap_or(0)
    )
}

fn lookups(n: usize) {
    let mut net = Testnet::new(n);
    let first = net.nodes[0].addr;
    for i in 1..n {
        net.nodes[i].dht.set_bootstrap(vec![first]);
        if i % 20 == 0 {
            net.run_for(Duration::from_millis(100));
        }
    }
    let second = net.nodes[1].addr;
    net.nodes[0].dht.set_bootstrap(vec![second]);
    net.run_for(Duration::from_secs(8));
    let tables: Vec<usize> = net.nodes.iter().map(|x| x.dht.table().len()).collect();
    let mean_table = tables.iter().sum::<usize>() as f64 / n as f64;
    // Announces to look up with get_peers.
    let mut s = 0x1234_5678u64;
    let ihs: Vec<[u8; 20]> = (0..20).map(|_| id20(&mut s)).collect();
    for (i, ih) in ihs.iter().enumerate() {
        net.nodes[(i * 13 + 5) % n]
            .dht
            .announce(*ih, 6000 + i as u16);
    }
    net.run_for(Duration::from_secs(5));
    let mut plan = Vec::new();
    for k in 0..100 {
        let asker = (rng(&mut s) as usize) % n;
        if k % 2 == 0 {
            plan.push((asker, id20(&mut s), false));
        } else {
            plan.push((asker, ihs[k % ihs.len()], true));
        }
    }
    let ids: Vec<NodeId> = net.nodes.iter().map(|x| x.dht.id()).collect();
    let (all, lost) = net.time_lookups(&plan);
    let (exact, lat) = summary(&net, &ids, &all);
    println!(
        "lookups {n} nodes (mean table {mean_table:.1}): {} lookups, {lat}, unfinished {lost}, exact 8 {exact} of {}",
        all.len(),
        all.len()
    );
    // A tenth of the nodes go silent (not node 0, not the askers' own).
    for i in (3..n).step_by(10) {
        net.nodes[i].dead = true;
    }
    let plan: Vec<(usize, [u8; 20], bool)> = (0..60)
        .map(|k| {
            let mut asker = (rng(&mut s) as usize) % n;
            if net.nodes[asker].dead {
                asker = (asker + 1) % n;
            }
            (asker, id20(&mut s), k % 2 == 1)
        })
        .collect();
    let live: Vec<NodeId> = net
        .nodes
        .iter()
        .filter(|x| !x.dead)
        .map(|x| x.dht.id())
        .collect();
    let (dead, lost) = net.time_lookups(&plan);
    let (exact, lat) = summary(&net, &live, &dead);
    println!(
        "lookups {n} nodes, 10% dead: {} lookups, {lat}, unfinished {lost}, exact 8 {exact} of {} (of the live nodes)",
        dead.len(),
        dead.len()
    );
}

fn answer() {
    let mut s = 0x9999u64;
    let mut d = Dht::new(None, settings(), 77, 0);
    // A table to answer find_node / get_peers from.
    let mut now = 0u64;
    for i in 0..1_000u32 {
        let from = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 6881));
        let ping = Message::query(b"pp", NodeId(id20(&mut s)), Method::Ping).encode();
        d.receive(from, &ping, now);
    }
    while d.poll_send().is_some() {}
    let mut queries: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
    for i in 0..2_048u32 {
        let from = SocketAddr::from(([11, (i >> 16) as u8, (i >> 8) as u8, i as u8], 7000));
        let id = NodeId(id20(&mut s));
        let target = NodeId(id20(&mut s));
        let m = match i % 3 {
            0 => Method::Ping,
            1 => Method::FindNode { target },
            _ => Method::GetPeers { info_hash: target },
        };
        queries.push((from, Message::query(b"aa", id, m).encode()));
    }
    let started = Instant::now();
    let mut answered = 0u64;
    let mut bytes = 0u64;
    while started.elapsed() < Duration::from_secs(5) {
        now += 1;
        for (from, q) in &queries {
            d.receive(*from, q, now);
        }
        while let Some((_, b)) = d.poll_send() {
            answered += 1;
            bytes += b.len() as u64;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "answer: {:.0} queries/s on one core (ping/find_node/get_peers, {} table nodes, {:.0} bytes/answer)",
        answered as f64 / secs,
        d.table().len(),
        bytes as f64 / answered.max(1) as f64
    );
}

fn rss_anon() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

fn memory() {
    let mut s = 0x4242u64;
    // Peers: 2,000 info-hashes x 100 peers.
    let before = rss_anon();
    let mut st = Storage::new(Limits {
        max_info_hashes: 2_000,
        max_peers_per_hash: 500,
        ..Limits::default()
    });
    let mut n = 0u64;
    for h in 0..2_000u32 {
        let ih = NodeId(id20(&mut s));
        for p in 0..100u32 {
            let v = h * 100 + p;
            let addr = SocketAddr::from(([12, (v >> 16) as u8, (v >> 8) as u8, v as u8], 6881));
            if st.announce(ih, addr, 1000, rng(&mut s)).is_ok() {
                n += 1;
            }
        }
    }
    let after = rss_anon();
    println!(
        "memory: {:.1} bytes per stored peer ({n} peers in {} info-hashes, RssAnon +{} KiB)",
        after.saturating_sub(before) as f64 / n as f64,
        st.info_hash_count(),
        after.saturating_sub(before) >> 10
    );
    // Routing tables: 100 tables, each filled bucket by bucket (8 nodes and 8 replacements
    // in every one of the buckets our own id's splits make).
    let before = rss_anon();
    let mut tables = Vec::new();
    let mut nodes = 0usize;
    for t in 0..100u32 {
        let own = NodeId(id20(&mut s));
        let mut table = Table::new(
            own,
            Config {
                restrict_ips: false,
                ..Config::default()
            },
        );
        for round in 0..40u32 {
            for depth in 0..20usize {
                let id = table.id_in_bucket(depth, id20(&mut s));
                let v = t * 100_000 + round * 1000 + depth as u32;
                let addr = SocketAddr::from(([13, (v >> 16) as u8, (v >> 8) as u8, v as u8], 6881));
                let _ = table.heard(id, addr, Contact::Response, 1000);
            }
        }
        nodes += table.len();
        tables.push(table);
    }
    let after = rss_anon();
    println!(
        "memory: {:.1} bytes per routing-table node ({nodes} nodes in {} tables, replacements included in the cost, RssAnon +{} KiB)",
        after.saturating_sub(before) as f64 / nodes as f64,
        tables.len(),
        after.saturating_sub(before) >> 10
    );
    std::hint::black_box((&st, &tables));
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.first().map(String::as_str) {
        Some("lookups") => lookups(args.get(1).and_then(|n| n.parse().ok()).unwrap_or(200)),
        Some("lt-lookups") => mixed::lt_lookups(
            args.get(1).and_then(|n| n.parse().ok()).unwrap_or(200),
            args.get(2).and_then(|n| n.parse().ok()).unwrap_or(50),
        ),
        Some("answer") => answer(),
        Some("memory") => memory(),
        // `cargo test --all-targets` runs every bench target once, with no arguments: the
        // figures come from scripts/bench-dht, so there is nothing to measure here.
        None => println!("dht bench: run scripts/bench-dht for figures"),
        _ => {
            eprintln!("usage: dht lookups [N] | lt-lookups [N] [L] | answer | memory");
            std::process::exit(2);
        }
    }
}
