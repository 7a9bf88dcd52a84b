//! A BEP-15 UDP announce on a blocking socket: resolve, connect, announce, each packet
//! retransmitted on a short bounded schedule inside the job's deadline. Connection ids are
//! shared by the pool's threads, one per tracker address for 60 s (BEP-15's lifetime), in a
//! capped table. The packets are `proto::tracker::udp`'s.

use crate::proto::tracker::client::{Announce, Answer, MAX_PEERS};
use crate::proto::tracker::http::Event;
use crate::proto::tracker::udp::{self as wire, AnnounceRequest, Request, Response, UdpEvent};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

/// How long a connection id is used (BEP-15: one minute).
pub const ID_LIFETIME: Duration = Duration::from_secs(60);
/// Most tracker addresses whose connection id is kept.
pub const MAX_IDS: usize = 256;
/// Waits before each retransmission, cut short by the job's deadline.
const WAITS: [Duration; 3] = [
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
];

/// Connection ids by tracker address.
#[derive(Default)]
pub struct ConnectionIds(Mutex<HashMap<SocketAddr, (u64, Instant)>>);

impl ConnectionIds {
    fn get(&self, addr: SocketAddr) -> Option<u64> {
        let map = self.0.lock();
        map.get(&addr)
            .filter(|(_, at)| at.elapsed() < ID_LIFETIME)
            .map(|(id, _)| *id)
    }

    fn put(&self, addr: SocketAddr, id: u64) {
        let mut map = self.0.lock();
        if map.len() >= MAX_IDS {
            map.retain(|_, (_, at)| at.elapsed() < ID_LIFETIME);
            if map.len() >= MAX_IDS {
                let oldest = map.iter().min_by_key(|(_, (_, at))| *at).map(|(a, _)| *a);
                if let Some(a) = oldest {
                    map.remove(&a);
                }
            }
        }
        map.insert(addr, (id, Instant::now()));
    }

    fn forget(&self, addr: SocketAddr) {
        self.0.lock().remove(&addr);
    }
}

fn udp_event(e: Event) -> UdpEvent {
    match e {
        Event::None => UdpEvent::None,
        Event::Started => UdpEvent::Started,
        Event::Completed => UdpEvent::Completed,
        Event::Stopped => UdpEvent::Stopped,
    }
}

/// Sends `packet` and waits for a response with transaction id `tid`, retransmitting on the
/// schedule until `deadline`.
fn exchange(
    sock: &UdpSocket,
    packet: &[u8],
    tid: u32,
    peer_len: usize,
    deadline: Instant,
    mut on: impl FnMut(Response<'_>) -> Option<Result<Answer, String>>,
) -> Result<Answer, String> {
    let mut buf = vec![0u8; 2048];
    for wait in WAITS {
        sock.send(packet).map_err(|e| format!("udp send: {e}"))?;
        let until = (Instant::now() + wait).min(deadline);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            sock.set_read_timeout(Some(left))
                .map_err(|e| format!("udp: {e}"))?;
            let n = match sock.recv(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                // An ICMP port unreachable shows up here on a connected socket.
                Err(e) => return Err(format!("udp tracker unreachable: {e}")),
            };
            let Some(r) = Response::parse(&buf[..n], peer_len) else {
                continue;
            };
            let matches = match &r {
                Response::Connect { transaction_id, .. }
                | Response::Announce { transaction_id, .. }
                | Response::Scrape { transaction_id, .. }
                | Response::Error { transaction_id, .. } => *transaction_id == tid,
            };
            if matches {
                if let Some(out) = on(r) {
                    return out;
                }
            }
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    Err("udp tracker did not answer".into())
}

fn error_text(message: &[u8]) -> String {
    format!(
        "tracker refused: {}",
        String::from_utf8_lossy(&message[..message.len().min(200)])
    )
}

/// Gets a connection id for `addr` (cached or by a connect exchange).
fn connection_id(
    ids: &ConnectionIds,
    sock: &UdpSocket,
    addr: SocketAddr,
    deadline: Instant,
) -> Result<(u64, bool), String> {
    if let Some(id) = ids.get(addr) {
        return Ok((id, true));
    }
    let tid = crate::net::random_u64() as u32;
    let mut packet = Vec::new();
    Request::Connect {
        transaction_id: tid,
    }
    .write(&mut packet);
    let mut id = 0;
    exchange(sock, &packet, tid, 6, deadline, |r| match r {
        Response::Connect { connection_id, .. } => {
            id = connection_id;
            Some(Ok(empty_answer()))
        }
        Response::Error { message, .. } => Some(Err(error_text(message))),
        _ => None,
    })?;
    ids.put(addr, id);
    Ok((id, false))
}

fn empty_answer() -> Answer {
    Answer {
        interval: 0,
        min_interval: None,
        complete: None,
        incomplete: None,
        peers: Vec::new(),
        warning: None,
        tracker_id: None,
    }
}

fn peers_of(bytes: &[u8], peer_len: usize) -> Vec<SocketAddr> {
    bytes
        .chunks_exact(peer_len)
        .take(MAX_PEERS)
        .map(|c| {
            let ip = match peer_len {
                6 => IpAddr::V4(Ipv4Addr::new(c[0], c[1], c[2], c[3])),
                _ => {
                    let a: [u8; 16] = c[..16].try_into().expect("16 bytes");
                    IpAddr::V6(Ipv6Addr::from(a))
                }
            };
            SocketAddr::new(ip, u16::from_be_bytes([c[peer_len - 2], c[peer_len - 1]]))
        })
        .filter(|p| p.port() != 0)
        .collect()
}

/// Announces `a` to the UDP tracker at `url` within `timeout`.
pub fn announce(
    ids: &ConnectionIds,
    url: &str,
    a: &Announce,
    timeout: Duration,
) -> Result<Answer, String> {
    let deadline = Instant::now() + timeout;
    let (host, port, path) = wire::split_url(url).ok_or("not a udp://host:port URL")?;
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("resolving {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let peer_len = if addr.is_ipv4() { 6 } else { 18 };
    let sock = UdpSocket::bind(local).map_err(|e| format!("udp bind: {e}"))?;
    sock.connect(addr)
        .map_err(|e| format!("udp connect: {e}"))?;
    let options = wire::url_data_options(path.as_bytes());
    // A cached id the tracker no longer accepts gets one fresh connect.
    for _ in 0..2 {
        let (connection_id, cached) = connection_id(ids, &sock, addr, deadline)?;
        let tid = crate::net::random_u64() as u32;
        let mut packet = Vec::new();
        Request::Announce(AnnounceRequest {
            connection_id,
            transaction_id: tid,
            info_hash: a.info_hash,
            peer_id: a.peer_id,
            downloaded: a.downloaded,
            left: a.left,
            uploaded: a.uploaded,
            event: udp_event(a.event),
            ip: 0,
            key: a.key,
            num_want: i32::try_from(a.numwant).unwrap_or(i32::MAX),
            port: a.port,
            options: &options,
        })
        .write(&mut packet);
        let result = exchange(&sock, &packet, tid, peer_len, deadline, |r| match r {
            Response::Announce {
                interval,
                leechers,
                seeders,
                peers,
                ..
            } => Some(Ok(Answer {
                interval: interval.clamp(30, 86_400),
                complete: Some(seeders),
                incomplete: Some(leechers),
                peers: peers_of(peers, peer_len),
                ..empty_answer()
            })),
            Response::Error { message, .. } => Some(Err(error_text(message))),
            _ => None,
        });
        match result {
            Err(_) if cached && Instant::now() < deadline => ids.forget(addr),
            other => return other,
        }
    }
    Err("udp tracker did not answer".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_peers_both_families() {
        let v4 = [127, 0, 0, 1, 0x1a, 0xe1, 10, 0, 0, 1, 0, 0];
        assert_eq!(peers_of(&v4, 6), ["127.0.0.1:6881".parse().unwrap()]);
        let mut v6 = [0u8; 18];
        v6[15] = 1;
        v6[17] = 80;
        assert_eq!(peers_of(&v6, 18), ["[::1]:80".parse().unwrap()]);
    }

    #[test]
    fn the_id_table_is_capped_and_expires() {
        let ids = ConnectionIds::default();
        for p in 0..MAX_IDS as u16 + 10 {
            ids.put(SocketAddr::from(([127, 0, 0, 1], p + 1)), u64::from(p));
        }
        assert_eq!(ids.0.lock().len(), MAX_IDS);
        let a = SocketAddr::from(([127, 0, 0, 1], 1000));
        ids.put(a, 7);
        assert_eq!(ids.get(a), Some(7));
        ids.forget(a);
        assert_eq!(ids.get(a), None);
    }

    #[test]
    fn a_silent_tracker_fails_within_the_deadline() {
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let url = format!("udp://{}/announce", silent.local_addr().unwrap());
        let a = Announce {
            info_hash: [1; 20],
            peer_id: [2; 20],
            port: 1,
            uploaded: 0,
            downloaded: 0,
            left: 0,
            event: Event::Started,
            numwant: 10,
            key: 0,
            tracker_id: None,
        };
        let t = Instant::now();
        let r = announce(
            &ConnectionIds::default(),
            &url,
            &a,
            Duration::from_millis(300),
        );
        assert_eq!(r, Err("udp tracker did not answer".into()));
        assert!(t.elapsed() < Duration::from_secs(2));
        let mut buf = [0u8; 64];
        let n = silent.recv(&mut buf).unwrap();
        assert!(matches!(
            Request::parse(&buf[..n]),
            Ok(Request::Connect { .. })
        ));
    }
}
