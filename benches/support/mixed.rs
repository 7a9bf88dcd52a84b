//! The `lt-lookups N L` mode of benches/dht.rs: the same lookups as `lookups`, on a loopback
//! testnet of N nodes of which L are python3-libtorrent sessions (benches/lt_dht_nodes.py,
//! one python process, each session on its own 127.0.0.1 port) and N - L are ours. The two
//! kinds bootstrap from each other (libtorrent sessions get our node 0, one more of ours and
//! the previous libtorrent node; every third of ours also bootstraps from a libtorrent node,
//! and each session looks up its own id and a random target, as a bootstrap would), so
//! lookups traverse both.
//! The libtorrent node ids are read back with a BEP-43 read-only ping (they stay out of the
//! tables), so "exact 8" compares with the true closest of all N. It prints how the tables
//! mix, our lookup latencies with how many of the answers our askers got came from
//! libtorrent, and libtorrent's own get_peers lookups in the same net (timed by the python
//! side from `dht_get_peers` to the traversal's "COMPLETED" DHT log line) with how many of
//! the answers they got came from our nodes. With BENCH_LT_CPU=C the python process runs
//! pinned to core C (scripts/bench-dht: ours on core 0, libtorrent's on core 1).

use super::{id20, latencies, rng, summary, true_closest, Testnet};
use mio::Events;
use serde_json::Value;
use std::collections::{HashSet, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use torrent_gateway::proto::dht::krpc::{self, Body, Message, Method};
use torrent_gateway::proto::dht::NodeId;

/// The python process and its sessions' DHT addresses; killed on drop.
struct LtNodes {
    child: Child,
    stdin: ChildStdin,
    lines: Arc<Mutex<VecDeque<Value>>>,
    addrs: Vec<SocketAddr>,
}

impl LtNodes {
    fn spawn(count: usize) -> LtNodes {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/lt_dht_nodes.py");
        // BENCH_LT_CPU (scripts/bench-dht sets it) pins the python process to that core.
        let mut cmd = match std::env::var("BENCH_LT_CPU") {
            Ok(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", &cpu, "/usr/bin/python3"]);
                c
            }
            Err(_) => Command::new("/usr/bin/python3"),
        };
        let mut child = cmd
            .arg(script)
            .arg(count.to_string())
            .arg("1800")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start /usr/bin/python3 benches/lt_dht_nodes.py");
        let lines: Arc<Mutex<VecDeque<Value>>> = Arc::default();
        let (out, sink) = (child.stdout.take().unwrap(), Arc::clone(&lines));
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().unwrap().push_back(v);
                }
            }
        });
        let stdin = child.stdin.take().unwrap();
        let mut lt = LtNodes {
            child,
            stdin,
            lines,
            addrs: Vec::new(),
        };
        let end = Instant::now() + Duration::from_secs(120);
        let ports = loop {
            if let Some(v) = lt.take("ports") {
                break v;
            }
            let exited = lt.child.try_wait().ok().flatten().is_some();
            assert!(
                !exited && Instant::now() < end,
                "lt_dht_nodes.py did not start (is python3-libtorrent installed?)"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        lt.addrs = ports["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p.as_u64().unwrap() as u16)))
            .collect();
        assert_eq!(lt.addrs.len(), count);
        lt
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("write to lt_dht_nodes.py");
        self.stdin.flush().unwrap();
    }

    /// Removes and returns the first line that has `key`.
    fn take(&self, key: &str) -> Option<Value> {
        let mut lines = self.lines.lock().unwrap();
        let i = lines.iter().position(|v| v.get(key).is_some())?;
        lines.remove(i)
    }

    /// Sends `cmd` and runs our net until a line with `key` comes (at most `secs`).
    fn request(&mut self, net: &mut Testnet, cmd: &str, key: &str, secs: u64) -> Option<Value> {
        self.send(cmd);
        let mut events = Events::with_capacity(1024);
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            net.turn(&mut events);
            if let Some(v) = self.take(key) {
                return Some(v);
            }
        }
        None
    }
}

impl Drop for LtNodes {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The node ids behind `addrs`, from a read-only ping each (a few tries, bounded).
fn ping_ids(addrs: &[SocketAddr]) -> Vec<Option<NodeId>> {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut ids = vec![None; addrs.len()];
    let mut buf = [0u8; 1500];
    for _ in 0..5 {
        for (i, a) in addrs.iter().enumerate().filter(|(i, _)| ids[*i].is_none()) {
            let t = (i as u16).to_be_bytes();
            let mut q = Message::query(&t, NodeId([0x77; 20]), Method::Ping);
            q.ro = true;
            let _ = sock.send_to(&q.encode(), a);
        }
        let end = Instant::now() + Duration::from_millis(500);
        while ids.contains(&None) && Instant::now() < end {
            let Ok((len, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            if let Ok(Message {
                body: Body::Response(r),
                ..
            }) = krpc::parse(&buf[..len])
            {
                if let Some(i) = addrs.iter().position(|a| *a == from) {
                    ids[i] = Some(r.id);
                }
            }
        }
        if !ids.contains(&None) {
            break;
        }
    }
    ids
}

fn hex(b: &[u8; 20]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<NodeId> {
    let b: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    NodeId::from_slice(&b?)
}

/// libtorrent's lookups: (ms, exact 8, answers, answers from our nodes, for an announced
/// info-hash whether peers were found).
type LtDone = (u64, bool, usize, usize, Option<bool>);

pub fn lt_lookups(n: usize, l: usize) {
    assert!(
        l >= 1 && n >= l + 8,
        "lt-lookups N L needs 1 <= L and 8 of ours"
    );
    let ours = n - l;
    let mut net = Testnet::new(ours);
    let mut lt = LtNodes::spawn(l);
    net.lt = lt.addrs.iter().copied().collect();
    let our_addrs: HashSet<SocketAddr> = net.nodes.iter().map(|x| x.addr).collect();
    let first = net.nodes[0].addr;
    for j in 0..l {
        let mut to = vec![first, net.nodes[1 + (j * 7) % (ours - 1)].addr];
        if j > 0 {
            to.push(lt.addrs[j - 1]);
        }
        let to: Vec<String> = to.iter().map(SocketAddr::to_string).collect();
        lt.send(&format!("add {j} {}", to.join(" ")));
    }
    for i in 1..ours {
        let mut boot = vec![first];
        if i % 3 == 0 {
            boot.push(lt.addrs[(i / 3) % l]);
        }
        net.nodes[i].dht.set_bootstrap(boot);
        if i % 20 == 0 {
            net.run_for(Duration::from_millis(100));
        }
    }
    let second = net.nodes[1].addr;
    net.nodes[0].dht.set_bootstrap(vec![second, lt.addrs[0]]);
    net.run_for(Duration::from_secs(5));
    // Without router nodes libtorrent makes no bootstrap lookup of its own: each session
    // looks up its own id (and one random target), as a bootstrap would, so that our nodes
    // near it hear of it.
    let mut lt_ids = ping_ids(&lt.addrs);
    for (j, id) in lt_ids.iter_mut().enumerate() {
        if id.is_none() {
            // No answer to the ping: an id our tables hold for that address, if any.
            *id = net
                .nodes
                .iter()
                .flat_map(|x| x.dht.table().nodes())
                .find(|x| x.addr == lt.addrs[j])
                .map(|x| x.id);
        }
    }
    let unknown = lt_ids.iter().filter(|x| x.is_none()).count();
    let mut s = 0x51ed_2026u64;
    for (j, id) in lt_ids.iter().enumerate() {
        let own = id.map_or_else(|| id20(&mut s), |id| id.0);
        lt.send(&format!("warm {j} {}", hex(&own)));
        lt.send(&format!("warm {j} {}", hex(&id20(&mut s))));
        if j % 10 == 9 {
            net.run_for(Duration::from_millis(200));
        }
    }
    net.run_for(Duration::from_secs(8));
    let mut ids: Vec<NodeId> = net.nodes.iter().map(|x| x.dht.id()).collect();
    ids.extend(lt_ids.iter().flatten());
    let lt_tables: Vec<u64> = lt
        .request(&mut net, "tables", "tables", 20)
        .and_then(|v| {
            v["tables"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_u64).collect())
        })
        .unwrap_or_default();
    let entries: usize = net.nodes.iter().map(|x| x.dht.table().len()).sum();
    let lt_entries: usize = net
        .nodes
        .iter()
        .flat_map(|x| x.dht.table().nodes())
        .filter(|x| net.lt.contains(&x.addr))
        .count();
    println!(
        "lt-lookups net: {n} nodes, {l} of them libtorrent; our tables mean {:.1} ({:.1} of them libtorrent nodes), libtorrent tables mean {:.1} (min {}, max {}, {} of {l} answered); {unknown} libtorrent ids unknown",
        entries as f64 / ours as f64,
        lt_entries as f64 / ours as f64,
        lt_tables.iter().sum::<u64>() as f64 / lt_tables.len().max(1) as f64,
        lt_tables.iter().min().copied().unwrap_or(0),
        lt_tables.iter().max().copied().unwrap_or(0),
        lt_tables.len(),
    );
    // Announces to look up with get_peers (by our nodes: Debian's 2.0.8 binding cannot
    // call dht_announce).
    let ihs: Vec<[u8; 20]> = (0..20).map(|_| id20(&mut s)).collect();
    for (i, ih) in ihs.iter().enumerate() {
        net.nodes[(i * 13 + 5) % ours]
            .dht
            .announce(*ih, 6000 + i as u16);
    }
    net.run_for(Duration::from_secs(5));
    let mut plan = Vec::new();
    for k in 0..100 {
        let asker = (rng(&mut s) as usize) % ours;
        if k % 2 == 0 {
            plan.push((asker, id20(&mut s), false));
        } else {
            plan.push((asker, ihs[k % ihs.len()], true));
        }
    }
    let (done, lost) = net.time_lookups(&plan);
    let (exact, lat) = summary(&net, &ids, &done);
    let answers: u64 = done.iter().map(|d| d.answers).sum();
    let lt_answers: u64 = done.iter().map(|d| d.lt_answers).sum();
    let in8: usize = done
        .iter()
        .map(|d| {
            d.closest
                .iter()
                .filter(|c| net.lt.contains(&c.addr))
                .count()
        })
        .sum();
    let gp: Vec<_> = done.iter().filter(|d| ihs.contains(&d.target)).collect();
    println!(
        "lookups {n} nodes, {l} libtorrent: {} lookups, {lat}, unfinished {lost}, exact 8 {exact} of {}; {lt_answers} of {answers} answers from libtorrent ({:.0}%), {in8} of {} found closest are libtorrent; get_peers found the peer in {} of {}",
        done.len(),
        done.len(),
        100.0 * lt_answers as f64 / answers.max(1) as f64,
        done.iter().map(|d| d.closest.len()).sum::<usize>(),
        gp.iter().filter(|d| d.peers > 0).count(),
        gp.len(),
    );
    let mut lt_done: Vec<LtDone> = Vec::new();
    let mut lt_lost = 0;
    for k in 0..40 {
        let j = (rng(&mut s) as usize) % l;
        let target = if k % 2 == 0 {
            id20(&mut s)
        } else {
            ihs[k % ihs.len()]
        };
        let cmd = format!("lookup {j} {}", hex(&target));
        let Some(v) = lt.request(&mut net, &cmd, "lookup", 40) else {
            lt_lost += 1;
            continue;
        };
        let Some(ms) = v["ms"].as_f64() else {
            lt_lost += 1;
            continue;
        };
        let mut got: Vec<NodeId> = v["closest"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|x| unhex(x.as_str()?))
            .collect();
        got.sort_by_key(|id| id.distance(&NodeId(target)));
        let me = lt_ids[j].unwrap_or_default();
        let exact = got == true_closest(&ids, &target, me);
        let from: Vec<&str> = v["responders"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let ours_answered = from
            .iter()
            .filter(|a| a.parse().is_ok_and(|a| our_addrs.contains(&a)))
            .count();
        let peers = (k % 2 == 1).then(|| v["peers"].as_u64().unwrap_or(0) > 0);
        lt_done.push((ms.round() as u64, exact, from.len(), ours_answered, peers));
    }
    let lt_answers: usize = lt_done.iter().map(|d| d.2).sum();
    let our_answers: usize = lt_done.iter().map(|d| d.3).sum();
    println!(
        "libtorrent get_peers {n} nodes, {l} libtorrent: {} lookups, {}, unfinished {lt_lost}, exact 8 {} of {}; {our_answers} of {lt_answers} answers from our nodes ({:.0}%); found the peer in {} of {}",
        lt_done.len(),
        latencies(lt_done.iter().map(|d| d.0).collect()),
        lt_done.iter().filter(|d| d.1).count(),
        lt_done.len(),
        100.0 * our_answers as f64 / lt_answers.max(1) as f64,
        lt_done.iter().filter(|d| d.4 == Some(true)).count(),
        lt_done.iter().filter(|d| d.4.is_some()).count(),
    );
    let later = ping_ids(&lt.addrs);
    let changed = later
        .iter()
        .zip(&lt_ids)
        .filter(|(a, b)| a.is_some() && b.is_some() && a != b)
        .count();
    if changed > 0 {
        println!("lt-lookups: {changed} libtorrent nodes changed their id during the run");
    }
}
