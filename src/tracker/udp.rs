//! The UDP tracker (BEP-15): its own mio loop on the `udp-tracker` thread, one socket on the
//! API port number, answering connect, announce and scrape from the shared registry.
//!
//! Connection ids are stateless: a keyed hash of the client's IP (not its port: libtorrent
//! keeps one id per tracker for the whole process, across sessions and source ports, as
//! aquatic and opentracker allow) and a one-minute time window (its low byte carried in the
//! id, so a check hashes once), accepted for the current and the two windows before (two to
//! three minutes, so always the full two minutes BEP-15 asks), so no table grows with
//! clients. Packets too short to carry a transaction id are dropped; every other
//! bad packet gets an error packet no larger than the request (no amplification).

use super::registry::{AnnounceIn, CompactPeers, Family};
use super::udp_batch::Batch;
use super::{canonical, Tracker};
use crate::proto::tracker::http::Event;
use crate::proto::tracker::udp::{write_scrape_stats, Request, Response, ScrapeStats, UdpEvent};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

const SOCKET: Token = Token(0);
const WAKE: Token = Token(1);
/// Seconds in a connection-id window.
const WINDOW_SECS: u32 = 60;
/// Most peers in one answer, so it fits an unfragmented datagram (IPv4 / IPv6 entries).
const MAX_PEERS_V4: usize = 200;
const MAX_PEERS_V6: usize = 70;

/// Makes and checks connection ids.
pub struct ConnectionIds {
    key: RandomState,
}

impl Default for ConnectionIds {
    fn default() -> Self {
        ConnectionIds {
            key: RandomState::new(),
        }
    }
}

impl ConnectionIds {
    /// The keyed hash of the IP and window, its low byte replaced by the window's, so a
    /// check knows which window to hash: one hash per check.
    fn make(&self, client: SocketAddr, window: u32) -> u64 {
        let h = self.key.hash_one((canonical(client.ip()), window));
        (h & !0xff) | u64::from(window & 0xff)
    }

    /// The id for `client` at time `now` (seconds).
    pub fn issue(&self, client: SocketAddr, now: u32) -> u64 {
        self.make(client, now / WINDOW_SECS)
    }

    /// Whether `id` was issued to `client`'s IP in this window or the two before.
    pub fn valid(&self, id: u64, client: SocketAddr, now: u32) -> bool {
        let w = now / WINDOW_SECS;
        let back = (w & 0xff).wrapping_sub(id as u32 & 0xff) & 0xff;
        back <= w.min(2) && id == self.make(client, w - back)
    }
}

/// Answers one request packet into `out` (left empty: send nothing). Pure apart from the
/// registry: used by the loop and by tests without sockets.
pub struct Answerer {
    tracker: Arc<Tracker>,
    /// The clock read once per batch by the loop (`None`: read it per packet).
    pub clock: Option<u32>,
    ids: ConnectionIds,
    compact: Vec<u8>,
}

impl Answerer {
    pub fn new(tracker: Arc<Tracker>) -> Answerer {
        Answerer {
            tracker,
            clock: None,
            ids: ConnectionIds::default(),
            compact: Vec::with_capacity(MAX_PEERS_V4 * 6),
        }
    }

    pub fn answer(&mut self, packet: &[u8], from: SocketAddr, out: &mut Vec<u8>) {
        out.clear();
        let stats = &self.tracker.stats;
        let request = match Request::parse(packet) {
            Ok(r) => r,
            Err(e) => {
                match e.transaction_id {
                    Some(tid) => {
                        stats.bad_requests.add(1);
                        error(out, tid, e.reason);
                    }
                    None => stats.udp_dropped.add(1),
                }
                return;
            }
        };
        let now = self.clock.unwrap_or_else(|| self.tracker.now());
        match request {
            Request::Connect { transaction_id } => {
                stats.udp_connects.add(1);
                Response::Connect {
                    transaction_id,
                    connection_id: self.ids.issue(from, now),
                }
                .write(out);
            }
            Request::Announce(a) => {
                if !self.ids.valid(a.connection_id, from, now) {
                    stats.bad_requests.add(1);
                    return error(out, a.transaction_id, "connection id expired");
                }
                stats.udp_announces.add(1);
                let event = match a.event {
                    UdpEvent::None => Event::None,
                    UdpEvent::Started => Event::Started,
                    UdpEvent::Completed => Event::Completed,
                    UdpEvent::Stopped => Event::Stopped,
                };
                if a.port == 0 && event != Event::Stopped {
                    stats.bad_requests.add(1);
                    return error(out, a.transaction_id, "port must be from 1 to 65535");
                }
                let source = canonical(from.ip());
                let ip = match (a.ip, self.tracker.config.trust_ip_param) {
                    (ip, true) if ip != 0 => IpAddr::V4(Ipv4Addr::from(ip)),
                    _ => source,
                };
                let (family, cap) = if source.is_ipv4() {
                    (Family::V4, MAX_PEERS_V4)
                } else {
                    (Family::V6, MAX_PEERS_V6)
                };
                let asked = u32::try_from(a.num_want).ok();
                let (interval, min_interval) = self.tracker.config.intervals_for(&a.peer_id);
                let announce = AnnounceIn {
                    info_hash: a.info_hash,
                    peer_id: a.peer_id,
                    ip,
                    port: a.port,
                    left: Some(a.left),
                    event,
                    // Zero is what clients without a key send.
                    key: (a.key != 0).then_some(a.key),
                    numwant: self.tracker.numwant(asked).min(cap),
                    family,
                    min_interval,
                };
                self.compact.clear();
                match self
                    .tracker
                    .announce_at(&announce, now, &mut CompactPeers(&mut self.compact))
                {
                    Ok(c) => {
                        Response::Announce {
                            transaction_id: a.transaction_id,
                            interval,
                            leechers: c.incomplete,
                            seeders: c.complete,
                            peers: &self.compact,
                        }
                        .write(out);
                    }
                    Err(refusal) => error(out, a.transaction_id, refusal.reason()),
                }
            }
            Request::Scrape {
                connection_id,
                transaction_id,
                hashes,
            } => {
                if !self.ids.valid(connection_id, from, now) {
                    stats.bad_requests.add(1);
                    return error(out, transaction_id, "connection id expired");
                }
                stats.udp_scrapes.add(1);
                let wanted: Vec<[u8; 20]> = hashes
                    .chunks_exact(20)
                    .map(|h| h.try_into().expect("20 bytes"))
                    .collect();
                let counts = match self.tracker.scrape_many(&wanted) {
                    Ok(c) => c,
                    Err(refusal) => return error(out, transaction_id, refusal.reason()),
                };
                out.extend_from_slice(&crate::proto::tracker::udp::ACTION_SCRAPE.to_be_bytes());
                out.extend_from_slice(&transaction_id.to_be_bytes());
                for c in counts {
                    let s = ScrapeStats {
                        seeders: c.complete,
                        completed: u32::try_from(c.downloaded).unwrap_or(u32::MAX),
                        leechers: c.incomplete,
                    };
                    write_scrape_stats(out, s);
                }
            }
        }
    }
}

fn error(out: &mut Vec<u8>, transaction_id: u32, message: &str) {
    Response::Error {
        transaction_id,
        message: message.as_bytes(),
    }
    .write(out);
}

/// The running UDP tracker thread.
pub struct UdpTracker {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

impl UdpTracker {
    /// Binds the tracker's socket (before anything starts, so a taken port can be retried).
    pub fn bind(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
        std::net::UdpSocket::bind(addr)
    }

    /// Starts the `udp-tracker` thread on a socket from [`UdpTracker::bind`].
    pub fn start(std_socket: std::net::UdpSocket, tracker: Arc<Tracker>) -> io::Result<UdpTracker> {
        std_socket.set_nonblocking(true)?;
        // A larger receive buffer rides out bursts while the loop is busy.
        let sock = socket2::SockRef::from(&std_socket);
        let _ = sock.set_recv_buffer_size(4 << 20);
        let _ = sock.set_send_buffer_size(4 << 20);
        let mut socket = UdpSocket::from_std(std_socket);
        let addr = socket.local_addr()?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut socket, SOCKET, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("udp-tracker".into())
            .spawn(move || run(poll, socket, Answerer::new(tracker), &stopping))?;
        Ok(UdpTracker {
            addr,
            stop,
            waker,
            thread: Some(thread),
        })
    }

    pub fn healthy(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(mut poll: Poll, socket: UdpSocket, mut answerer: Answerer, stop: &AtomicBool) {
    let mut events = Events::with_capacity(16);
    let mut batch = Batch::default();
    let fd = socket.as_raw_fd();
    while !stop.load(Ordering::SeqCst) {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            log::error!("udp tracker: poll failed: {e}");
            return;
        }
        // Edge-triggered: drain the socket every time it is reported readable, a batch of
        // datagrams per system call each way.
        loop {
            match batch.receive(fd) {
                Ok(0) => break,
                Ok(_) => {
                    answerer.clock = Some(answerer.tracker.now());
                    batch.answer_each(|packet, from, out| answerer.answer(packet, from, out));
                    if let Err(e) = batch.send_answers(fd) {
                        log::trace!("udp tracker: send: {e}");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // ICMP errors from earlier sends surface here; they concern one client only.
                Err(e) => log::trace!("udp tracker: receive: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{TrackerConfig, TrackerMode};
    use crate::proto::tracker::udp::{read_scrape_stats, AnnounceRequest};

    fn answerer(mode: TrackerMode) -> Answerer {
        let config = TrackerConfig {
            mode,
            ..TrackerConfig::default()
        };
        let hosted: super::super::HostedFn = Box::new(|h| h[0] == 1);
        Answerer::new(Arc::new(
            Tracker::new(config, hosted, Default::default()).unwrap(),
        ))
    }

    fn announce(cid: u64, ih: u8, peer: u8, port: u16) -> Vec<u8> {
        let mut p = Vec::new();
        Request::Announce(AnnounceRequest {
            connection_id: cid,
            transaction_id: 9,
            info_hash: [ih; 20],
            peer_id: [peer; 20],
            downloaded: 0,
            left: 5,
            uploaded: 0,
            event: UdpEvent::Started,
            ip: 0,
            key: 1,
            num_want: -1,
            port,
            options: &[2, 3, b'/', b'a', b'b'],
        })
        .write(&mut p);
        p
    }

    fn connect(a: &mut Answerer, from: SocketAddr) -> u64 {
        let mut p = Vec::new();
        Request::Connect { transaction_id: 5 }.write(&mut p);
        let mut out = Vec::new();
        a.answer(&p, from, &mut out);
        match Response::parse(&out, 6) {
            Some(Response::Connect {
                transaction_id: 5,
                connection_id,
            }) => connection_id,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn connect_announce_scrape() {
        let mut a = answerer(TrackerMode::Hosted);
        let c1: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let c2: SocketAddr = "127.0.0.2:4001".parse().unwrap();
        let v6: SocketAddr = "[::1]:4002".parse().unwrap();
        let mut out = Vec::new();
        let id1 = connect(&mut a, c1);
        a.answer(&announce(id1, 1, 1, 7001), c1, &mut out);
        let id2 = connect(&mut a, c2);
        assert_ne!(id1, id2);
        a.answer(&announce(id2, 1, 2, 7002), c2, &mut out);
        match Response::parse(&out, 6).unwrap() {
            Response::Announce {
                transaction_id: 9,
                leechers: 2,
                seeders: 0,
                peers,
                ..
            } => assert_eq!(peers, [127, 0, 0, 1, 0x1b, 0x59]),
            other => panic!("{other:?}"),
        }
        let id3 = connect(&mut a, v6);
        a.answer(&announce(id3, 1, 3, 7003), v6, &mut out);
        let Some(Response::Announce { peers, .. }) = Response::parse(&out, 18) else {
            panic!("{out:?}")
        };
        assert!(peers.is_empty(), "an IPv6 client gets IPv6 peers only");
        let mut p = Vec::new();
        Request::Scrape {
            connection_id: id1,
            transaction_id: 3,
            hashes: &[[1u8; 20], [2; 20]].concat(),
        }
        .write(&mut p);
        a.answer(&p, c1, &mut out);
        let Some(Response::Scrape { stats, .. }) = Response::parse(&out, 6) else {
            panic!()
        };
        let stats = read_scrape_stats(stats);
        assert_eq!((stats[0].leechers, stats[1].leechers), (3, 0));
    }

    #[test]
    fn bad_packets_get_errors_or_nothing() {
        let mut a = answerer(TrackerMode::Hosted);
        let c: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let mut out = Vec::new();
        a.answer(&[0; 10], c, &mut out);
        assert!(out.is_empty());
        let id = connect(&mut a, c);
        for (packet, from, reason) in [
            (announce(id ^ 1, 1, 1, 1), c, "connection id expired"),
            (
                announce(id, 1, 1, 1),
                "127.0.0.2:4000".parse().unwrap(),
                "connection id expired",
            ),
            (announce(id, 1, 1, 0), c, "port must be"),
            (announce(id, 2, 1, 1), c, "not authorized"),
            (
                announce(id, 1, 1, 1)[..97].to_vec(),
                c,
                "announce too short",
            ),
        ] {
            a.answer(&packet, from, &mut out);
            match Response::parse(&out, 6) {
                Some(Response::Error {
                    transaction_id: 9,
                    message,
                }) => {
                    let m = String::from_utf8_lossy(message);
                    assert!(m.contains(reason), "{m}");
                    assert!(out.len() <= packet.len().max(16 + 64), "no amplification");
                }
                other => panic!("{reason}: {other:?}"),
            }
        }
    }

    #[test]
    fn connection_ids_live_two_minutes_and_follow_the_ip_only() {
        let ids = ConnectionIds::default();
        let c: SocketAddr = "10.0.0.1:1".parse().unwrap();
        // Issued at the end of a window: still the full two minutes.
        let id = ids.issue(c, 119);
        assert!(ids.valid(id, c, 119));
        assert!(ids.valid(id, c, 239));
        assert!(!ids.valid(id, c, 240));
        let id = ids.issue(c, 61);
        assert!(ids.valid(id, c, 239));
        assert!(!ids.valid(id, c, 240));
        // Another source port of the same IP (libtorrent's second session) is fine; the
        // IPv4-mapped form is the same IP; another IP is not.
        assert!(ids.valid(id, "10.0.0.1:2".parse().unwrap(), 61));
        assert!(ids.valid(id, "[::ffff:10.0.0.1]:3".parse().unwrap(), 61));
        assert!(!ids.valid(id, "10.0.0.2:1".parse().unwrap(), 61));
    }
}
