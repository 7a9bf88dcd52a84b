//! What a download's engine knows of each of its peers, for the API's peer list and
//! per-source counts (`GET /api/p2p/peers/<ih>`, `GET /api/torrents/<ih>`) and the peer
//! list's ranking: rate, choke and snub state, blocks in flight and their queue time, hash
//! failures. Read-only; the loop copies it out once a tick.

use super::Download;
use crate::engine::PeerId;
use std::net::SocketAddr;

/// One engine peer (a connection or a webseed) as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRate {
    pub id: PeerId,
    pub addr: SocketAddr,
    pub web: bool,
    /// Payload bytes per second received from it, smoothed over ticks.
    pub rate: u64,
    pub choking: bool,
    pub snubbed: bool,
    pub in_flight: usize,
    /// Pieces it has.
    pub pieces: usize,
    /// Milliseconds its requests in flight take at its rate (None: no rate yet).
    pub queue_ms: Option<u64>,
    /// Failed pieces it sent a block of.
    pub hash_failures: u32,
}

impl Download {
    /// Every engine peer, in no particular order.
    pub fn peer_rates(&self) -> Vec<PeerRate> {
        self.peers
            .iter()
            .map(|(id, p)| PeerRate {
                id: *id,
                addr: p.addr,
                web: p.web,
                rate: p.rate,
                choking: p.choking,
                snubbed: p.snubbed,
                in_flight: p.asked.len(),
                pieces: p.bits.count() as usize,
                queue_ms: (p.rate > 0).then(|| {
                    p.asked.len() as u64 * u64::from(crate::engine::BLOCK) * 1000 / p.rate
                }),
                hash_failures: p.hash_failures,
            })
            .collect()
    }
}
