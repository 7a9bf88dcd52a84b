//! BEP-51 as a client: [`Dht::sample_infohashes`] asks one node for a sample of the
//! info-hashes it stores; its answer (the samples, `num`, `interval` and the nodes it named
//! closest to the target), its KRPC error or its timeout comes out of [`Dht::take_samples`].
//! Answering other nodes' sample_infohashes is `serve`.

use super::{Dht, Purpose};
use crate::proto::dht::compact::CompactNode;
use crate::proto::dht::krpc::{Method, Response};
use crate::proto::dht::NodeId;
use std::net::SocketAddr;

/// Answers kept until [`Dht::take_samples`] (the oldest are dropped past this).
const MAX_SAMPLED: usize = 256;

/// What one node answered to our sample_infohashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sampled {
    pub from: SocketAddr,
    /// Its id, when it answered.
    pub id: Option<NodeId>,
    pub samples: Vec<[u8; 20]>,
    /// How many info-hashes it stores (`num`).
    pub num: Option<i64>,
    /// Seconds before its sample changes (`interval`).
    pub interval: Option<i64>,
    /// The nodes it named closest to the target.
    pub nodes: Vec<CompactNode>,
    /// Its KRPC error code, or `Some(0)` when it timed out; None for an answer.
    pub error: Option<i64>,
}

impl Dht {
    /// Sends sample_infohashes for `target` to `to`; false when the outbound budget or the
    /// transaction table is full.
    pub fn sample_infohashes(&mut self, to: SocketAddr, target: [u8; 20]) -> bool {
        let target = NodeId(target);
        self.query(
            to,
            None,
            Method::SampleInfohashes { target },
            Purpose::Sample,
        )
    }

    /// The sample_infohashes answers, errors and timeouts since the last call.
    pub fn take_samples(&mut self) -> Vec<Sampled> {
        self.samples.drain(..).collect()
    }

    /// Records what `from` answered: a response, an error code, or None for a timeout.
    pub(super) fn sampled(&mut self, from: SocketAddr, r: Result<&Response<'_>, Option<i64>>) {
        if self.samples.len() >= MAX_SAMPLED {
            self.samples.pop_front();
        }
        let s = match r {
            Ok(r) => Sampled {
                from,
                id: Some(r.id),
                samples: r.samples.iter().flatten().map(|h| h.0).collect(),
                num: r.num,
                interval: r.interval,
                nodes: r.nodes.iter().chain(r.nodes6.iter()).copied().collect(),
                error: None,
            },
            Err(code) => Sampled {
                from,
                id: None,
                samples: Vec::new(),
                num: None,
                interval: None,
                nodes: Vec::new(),
                error: Some(code.unwrap_or(0)),
            },
        };
        self.samples.push_back(s);
    }
}

#[cfg(test)]
mod tests {
    use crate::dht::testnet::settings;
    use crate::dht::Dht;
    use crate::proto::dht::krpc::{self, Body, Method};
    use crate::proto::dht::NodeId;
    use std::net::SocketAddr;

    /// Carries every queued datagram between two nodes until both are quiet.
    fn exchange(a: &mut Dht, aa: SocketAddr, b: &mut Dht, ba: SocketAddr, now: u64) {
        loop {
            let mut moved = false;
            while let Some((to, bytes)) = a.poll_send() {
                moved = true;
                if to == ba {
                    b.receive(aa, &bytes, now);
                }
            }
            while let Some((to, bytes)) = b.poll_send() {
                moved = true;
                if to == aa {
                    a.receive(ba, &bytes, now);
                }
            }
            if !moved {
                break;
            }
        }
    }

    #[test]
    fn asks_a_node_for_its_sample_and_reports_the_answer() {
        let (aa, ba): (SocketAddr, SocketAddr) = (
            "127.0.0.1:1000".parse().unwrap(),
            "127.0.0.1:2000".parse().unwrap(),
        );
        let mut a = Dht::new(None, settings(), 1, 0);
        let mut b = Dht::new(None, settings(), 2, 0);
        // b stores two announces (a get_peers for the token, then announce_peer).
        for ih in [[5u8; 20], [6u8; 20]] {
            let gp = krpc::Message::query(
                b"g1",
                NodeId([9; 20]),
                Method::GetPeers {
                    info_hash: NodeId(ih),
                },
            )
            .encode();
            let from: SocketAddr = "127.0.0.1:3000".parse().unwrap();
            b.receive(from, &gp, 0);
            let (_, reply) = b.poll_send().unwrap();
            let m = krpc::parse(&reply).unwrap();
            let Body::Response(r) = &m.body else { panic!() };
            let token = r.token.unwrap().to_vec();
            let ann = krpc::Message::query(
                b"a1",
                NodeId([9; 20]),
                Method::AnnouncePeer {
                    info_hash: NodeId(ih),
                    port: 7000,
                    implied_port: false,
                    token: &token,
                },
            )
            .encode();
            b.receive(from, &ann, 0);
            let _ = b.poll_send();
        }
        assert!(a.sample_infohashes(ba, [0; 20]));
        let (to, q) = a.poll_send().unwrap();
        assert_eq!(to, ba);
        assert!(q.windows(17).any(|w| w == b"sample_infohashes"));
        b.receive(aa, &q, 10);
        exchange(&mut a, aa, &mut b, ba, 10);
        let got = a.take_samples();
        assert_eq!(got.len(), 1, "{got:?}");
        let s = &got[0];
        assert_eq!((s.from, s.id, s.error), (ba, Some(b.id()), None));
        let mut samples = s.samples.clone();
        samples.sort_unstable();
        assert_eq!(samples, vec![[5u8; 20], [6u8; 20]]);
        assert_eq!(s.num, Some(2));
        assert!(s.interval.is_some());
        assert!(a.take_samples().is_empty(), "taken once");
    }

    #[test]
    fn a_silent_node_times_out_and_an_error_is_reported() {
        let mut a = Dht::new(None, settings(), 3, 0);
        let silent: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert!(a.sample_infohashes(silent, [1; 20]));
        let (_, q) = a.poll_send().unwrap();
        a.tick(super::super::QUERY_TIMEOUT_MS + 1);
        let got = a.take_samples();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].from, got[0].error), (silent, Some(0)));
        // A node that refuses (204, method unknown) is reported with its code.
        assert!(a.sample_infohashes(silent, [1; 20]));
        let (_, q2) = a.poll_send().unwrap();
        assert_ne!(q, q2, "a new transaction id");
        let m = krpc::parse(&q2).unwrap();
        let err = krpc::Message::error(m.t, 204, b"no").encode();
        a.receive(silent, &err, 10_000);
        let got = a.take_samples();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].error, Some(204));
    }
}
