//! Answering queries: ping, find_node, get_peers (with a write token bound to the querier's
//! IP), announce_peer (token checked, peer stored within the storage caps), BEP-44 get/put
//! and BEP-51 sample_infohashes. Every answer carries our id and the querier's address
//! (`ip`, BEP-42); refusals are KRPC errors echoing the transaction id. `nodes` come from
//! the IPv4 table and `nodes6` from the IPv6 one, as BEP-32's `want` asks (`n4`, `n6`), or
//! in the querier's family without it; get_peers `values` are peers of the querier's family.

use super::{Dht, VERSION};
use crate::proto::dht::krpc::{self, code, Message, Method, Query, Response};
use crate::proto::dht::routing::K;
use crate::proto::dht::NodeId;
use std::net::SocketAddr;

/// Peers in one get_peers answer (keeps the datagram well under 1500 bytes).
const MAX_VALUES: usize = 50;
/// Info-hashes in one sample_infohashes answer.
const MAX_SAMPLES: usize = 20;

impl Dht {
    /// The encoded answer to query `q` of `msg` from `from`.
    pub(super) fn answer(&mut self, from: SocketAddr, msg: &Message<'_>, q: &Query<'_>) -> Vec<u8> {
        let secs = self.now / 1000;
        let token = self.tokens.issue(from.ip());
        let mut r = Response {
            id: self.id,
            ..Response::default()
        };
        // BEP-32: `want` names the families of nodes asked for; without it, the querier's.
        let (n4, n6) = match q.want {
            krpc::Want {
                n4: false,
                n6: false,
            } => (from.is_ipv4(), from.is_ipv6()),
            w => (w.n4, w.n6),
        };
        let nodes = |dht: &Dht, r: &mut Response<'_>, target: &NodeId| {
            if n4 {
                r.nodes = dht.table.closest(target, K, secs);
            }
            if n6 {
                r.nodes6 = dht.table6.closest(target, K, secs);
            }
        };
        match &q.method {
            Method::Ping => {}
            Method::FindNode { target } => nodes(self, &mut r, target),
            Method::GetPeers { info_hash } => {
                let start = self.random() as usize;
                r.values = self
                    .storage
                    .peers(info_hash, secs, from.is_ipv6(), MAX_VALUES, start);
                let own = (self.own_ip_for(from), self.announced_port(&info_hash.0));
                if let (Some(ip), Some(port)) = own {
                    if r.values.len() < MAX_VALUES {
                        r.values.push(SocketAddr::new(ip, port));
                    }
                }
                nodes(self, &mut r, info_hash);
                r.token = Some(&token);
            }
            Method::AnnouncePeer {
                info_hash,
                token: t,
                ..
            } => {
                if !self.tokens.check(from.ip(), t, secs) {
                    return self.error(msg.t, code::PROTOCOL, "bad token");
                }
                let port = q.method.announced_port(from.port()).unwrap_or(0);
                if port == 0 {
                    return self.error(msg.t, code::PROTOCOL, "port 0");
                }
                let jitter = self.random();
                let peer = SocketAddr::new(from.ip(), port);
                if self
                    .storage
                    .announce(*info_hash, peer, secs, jitter)
                    .is_err()
                {
                    return self.error(msg.t, code::SERVER, "storage full");
                }
            }
            Method::Get { target, seq } => {
                r.token = Some(&token);
                nodes(self, &mut r, target);
                if let Some(item) = self.storage.get(target, secs) {
                    match &item.mutable {
                        None => r.value = Some(&item.v),
                        Some(m) => {
                            r.seq = Some(m.seq);
                            if seq.is_none_or(|s| m.seq > s) {
                                r.value = Some(&item.v);
                                r.k = Some(m.k);
                                r.sig = Some(m.sig);
                            }
                        }
                    }
                }
                let mut reply = Message::response(msg.t, r);
                reply.ip = Some(from);
                reply.version = Some(VERSION);
                return reply.encode();
            }
            Method::Put(p) => {
                if !self.tokens.check(from.ip(), p.token, secs) {
                    return self.error(msg.t, code::PROTOCOL, "bad token");
                }
                let res = match &p.mutable {
                    None => self.storage.put_immutable(p.v, secs),
                    Some(m) => self.storage.put_mutable(m, p.v, secs),
                };
                if let Err(e) = res {
                    return self.error(msg.t, e.code(), "put refused");
                }
            }
            Method::SampleInfohashes { target } => {
                let start = self.random() as usize;
                r.samples = Some(self.storage.sample(MAX_SAMPLES, start));
                r.interval = Some(300);
                r.num = Some(self.storage.info_hash_count() as i64);
                nodes(self, &mut r, target);
            }
        }
        let mut reply = Message::response(msg.t, r);
        reply.ip = Some(from);
        reply.version = Some(VERSION);
        reply.encode()
    }

    fn error(&self, t: &[u8], code: i64, text: &str) -> Vec<u8> {
        krpc::Message::error(t, code, text.as_bytes()).encode()
    }
}
