//! `torrent-gateway dht get-peers | put | get | sample`: asks the Mainline DHT who has a
//! torrent, stores or fetches BEP-44 items, and asks nodes for BEP-51 samples
//! (`dht_sample`), for operators and scripts. A short-lived
//! [`crate::dht::Dht`] node runs on its own small mio loop (one UDP socket, a poll timeout
//! for its timers): it joins through the bootstrap nodes (host names resolved before the loop
//! starts), runs its lookups until they succeed or the timeout passes, and prints the result.
//! Exit 0 on success, 1 when nothing was found or stored by the timeout, 2 on bad input. It
//! announces nothing and keeps nothing after it exits.

use super::{print_out, CliError};
use crate::dht::{Dht, Settings};
use argh::FromArgs;
use mio::{Events, Interest, Poll, Token};
use serde_json::json;
use std::collections::BTreeSet;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

/// Mainline DHT queries (BEP-5)
#[derive(FromArgs)]
#[argh(subcommand, name = "dht")]
pub struct Args {
    #[argh(subcommand)]
    command: Sub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Sub {
    GetPeers(GetPeers),
    Put(super::dht_items::PutArgs),
    Get(super::dht_items::GetArgs),
    Sample(super::dht_sample::SampleArgs),
}

/// find the peers of a torrent: prints them one per line (ip:port); exit 0 when some were
/// found, 1 when none were by the timeout, 2 on bad input
#[derive(FromArgs)]
#[argh(subcommand, name = "get-peers")]
pub struct GetPeers {
    /// the info-hash (40 hex digits or 32 base32 characters) or a magnet link
    #[argh(positional)]
    info_hash: String,
    /// a DHT node to join through (host:port), repeatable (default: the public routers)
    #[argh(option)]
    bootstrap: Vec<String>,
    /// give up after this many seconds (default 30)
    #[argh(option, default = "30")]
    timeout: u64,
    /// print one JSON object (info_hash, peers, lookups, nodes) instead of lines
    #[argh(switch)]
    json: bool,
}

pub fn run(args: Args) -> Result<(), CliError> {
    match args.command {
        Sub::GetPeers(a) => get_peers(a),
        Sub::Put(a) => super::dht_items::put(a),
        Sub::Get(a) => super::dht_items::get(a),
        Sub::Sample(a) => super::dht_sample::sample(a),
    }
}

/// The info-hash of a hex or base32 string or a magnet link.
pub(super) fn parse_info_hash(text: &str) -> Result<[u8; 20], CliError> {
    let t = text.trim();
    let found = if t.starts_with("magnet:") {
        crate::proto::bt::magnet::parse(t)
            .map(|m| m.info_hash)
            .map_err(|e| CliError::input(format!("bad magnet link: {e}")))?
    } else if t.len() == 40 {
        crate::proto::hex::decode::<20>(t)
            .ok_or_else(|| CliError::input(format!("{t:?} is not a hex info-hash")))?
    } else if t.len() == 32 {
        crate::proto::hex::decode_base32_20(t)
            .ok_or_else(|| CliError::input(format!("{t:?} is not a base32 info-hash")))?
    } else {
        return Err(CliError::input(format!(
            "{t:?} is not an info-hash (40 hex digits, 32 base32 characters or a magnet link)"
        )));
    };
    Ok(found)
}

/// Resolves the bootstrap hosts (IPv4 and IPv6, `[::1]:port` too) before the loop starts; a
/// name that does not resolve is skipped with a warning, one without a port is bad input.
pub(super) fn resolve(hosts: &[String]) -> Result<Vec<SocketAddr>, CliError> {
    let mut out = Vec::new();
    for h in hosts {
        let port_ok = h
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok());
        if !port_ok {
            return Err(CliError::input(format!(
                "--bootstrap {h}: expected host:port"
            )));
        }
        match h.to_socket_addrs() {
            Ok(found) => {
                let (v4, v6): (Vec<SocketAddr>, Vec<SocketAddr>) =
                    found.partition(SocketAddr::is_ipv4);
                out.extend(v4.into_iter().take(4).chain(v6.into_iter().take(4)));
            }
            Err(e) => log::warn!("dht: bootstrap host {h}: {e}"),
        }
    }
    Ok(out)
}

/// The DHT socket for nodes at `addrs` (`loopback`: every one is on loopback): 127.0.0.1
/// (`[::1]`) when they are all on IPv4 (IPv6) loopback, `[::]` dual-stack when some is IPv6
/// (IPv4 alone where IPv6 cannot be bound and some is IPv4), else every IPv4 address.
pub(super) fn bind_for(addrs: &[SocketAddr], loopback: bool) -> Result<UdpSocket, CliError> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let any4 = addrs.iter().any(SocketAddr::is_ipv4);
    let any6 = addrs.iter().any(SocketAddr::is_ipv6);
    let ip: IpAddr = match (loopback, any4, any6) {
        (true, true, false) => Ipv4Addr::LOCALHOST.into(),
        (true, false, true) => Ipv6Addr::LOCALHOST.into(),
        (_, _, true) => Ipv6Addr::UNSPECIFIED.into(),
        _ => Ipv4Addr::UNSPECIFIED.into(),
    };
    let bind = crate::net::Net::bind_dht;
    bind(SocketAddr::new(ip, 0))
        .or_else(|e| match any4 && ip.is_ipv6() {
            true => bind(SocketAddr::from(([0, 0, 0, 0], 0))),
            false => Err(e),
        })
        .map_err(|e| CliError::failed(format!("binding the DHT socket: {e}")))
}

/// A DHT node on its own mio loop.
pub(super) struct Runner {
    poll: Poll,
    sock: mio::net::UdpSocket,
    /// An IPv6 socket: IPv4 destinations go out as mapped addresses (dual-stack).
    sock_v6: bool,
    pub node: Dht,
    epoch: Instant,
    buf: Vec<u8>,
}

const SOCKET: Token = Token(0);
/// The node's timers run at least this often.
const TICK: Duration = Duration::from_millis(100);

impl Runner {
    /// A node on the socket of [`bind_for`] (on loopback the per-IP rules are lifted, as
    /// all nodes share that IP).
    pub(super) fn start(bootstrap: Vec<SocketAddr>) -> Result<Runner, CliError> {
        let loopback = !bootstrap.is_empty() && bootstrap.iter().all(|a| a.ip().is_loopback());
        let std_sock = bind_for(&bootstrap, loopback)?;
        let families = crate::net::Net::dht_families(&std_sock);
        let sock_v6 = std_sock.local_addr().is_ok_and(|a| a.is_ipv6());
        let mut sock = mio::net::UdpSocket::from_std(std_sock);
        let poll = Poll::new().map_err(|e| CliError::failed(format!("mio: {e}")))?;
        poll.registry()
            .register(&mut sock, SOCKET, Interest::READABLE)
            .map_err(|e| CliError::failed(format!("mio: {e}")))?;
        let settings = Settings {
            restrict_ips: !loopback,
            ..Settings::default()
        };
        let mut node = Dht::new(None, settings, crate::net::random_u64(), 0);
        node.set_families(families);
        node.set_bootstrap(
            bootstrap
                .into_iter()
                .filter(|a| families.reaches(a))
                .collect(),
        );
        let mut r = Runner {
            poll,
            sock,
            sock_v6,
            node,
            epoch: Instant::now(),
            buf: vec![0; 65_536],
        };
        r.flush();
        Ok(r)
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Sends what the node queued; a datagram the socket will not take now is dropped (UDP
    /// may lose it anyway, and the lookup retries).
    fn flush(&mut self) {
        while let Some((to, bytes)) = self.node.poll_send() {
            let to = crate::dht::wire_addr(to, self.sock_v6);
            if let Err(e) = self.sock.send_to(&bytes, to) {
                log::debug!("dht: send to {to}: {e}");
            }
        }
    }

    /// A node joined through `hosts` (default: the public routers), resolved first.
    pub(super) fn join(hosts: &[String]) -> Result<Runner, CliError> {
        let hosts = if hosts.is_empty() {
            crate::config::default_dht_bootstrap()
        } else {
            hosts.to_vec()
        };
        let bootstrap = resolve(&hosts)?;
        if bootstrap.is_empty() {
            return Err(CliError::failed("no bootstrap node resolved"));
        }
        Runner::start(bootstrap)
    }

    /// Runs the loop until `done` says so (true) or `deadline` passes (false).
    pub(super) fn run_until(
        &mut self,
        deadline: Instant,
        mut done: impl FnMut(&mut Dht) -> bool,
    ) -> bool {
        let mut events = Events::with_capacity(64);
        let mut next_tick = Instant::now();
        loop {
            let now = Instant::now();
            if now >= next_tick {
                let ms = self.now_ms();
                self.node.tick(ms);
                next_tick = now + TICK;
            }
            self.flush();
            if done(&mut self.node) {
                return true;
            }
            if now >= deadline {
                return false;
            }
            let wait = next_tick.min(deadline).saturating_duration_since(now);
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    log::warn!("dht: poll: {e}");
                }
            }
            loop {
                match self.sock.recv_from(&mut self.buf) {
                    Ok((n, from)) => {
                        let ms = self.now_ms();
                        self.node.receive(from, &self.buf[..n], ms);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    // WouldBlock, or an ICMP error from an earlier send: read again later.
                    Err(_) => break,
                }
            }
        }
    }
}

/// The moment `--timeout` seconds from now (at least 1).
pub(super) fn deadline(secs: u64) -> Result<Instant, CliError> {
    if secs == 0 {
        return Err(CliError::input("--timeout must be at least 1"));
    }
    Ok(Instant::now() + Duration::from_secs(secs))
}

fn get_peers(args: GetPeers) -> Result<(), CliError> {
    let ih = parse_info_hash(&args.info_hash)?;
    let deadline = deadline(args.timeout)?;
    let mut r = Runner::join(&args.bootstrap)?;
    let mut peers = BTreeSet::new();
    let mut lookups = 0u32;
    let mut running = false;
    // One lookup at a time: a finished one that found nobody is started again (the table has
    // grown, and an announce may arrive meanwhile) until the timeout.
    r.run_until(deadline, |node| {
        for (target, found) in node.take_found() {
            if target == ih {
                peers.extend(found);
            }
        }
        if node.take_completed().iter().any(|c| c.target == ih) {
            running = false;
            if !peers.is_empty() {
                return true;
            }
        }
        if !running && node.get_peers(ih) {
            running = true;
            lookups += 1;
        }
        false
    });
    let hex = crate::proto::hex::encode(&ih);
    if args.json {
        let list: Vec<String> = peers.iter().map(SocketAddr::to_string).collect();
        print_out(&format!(
            "{}\n",
            json!({
                "info_hash": hex,
                "peers": list,
                "lookups": lookups,
                "nodes": r.node.node_count(),
            })
        ))?;
    } else {
        let text: String = peers.iter().map(|p| format!("{p}\n")).collect();
        print_out(&text)?;
    }
    if peers.is_empty() {
        return Err(CliError::failed(format!(
            "no peers found for {hex} in {} s ({} nodes known)",
            args.timeout,
            r.node.node_count()
        )));
    }
    Ok(())
}
