//! `dht.dat`: our node id and good nodes as one bencoded dictionary (`id`, `nodes` compact
//! IPv4, `nodes6` compact IPv6), so a restart rejoins from them without the bootstrap hosts.
//! Reading tolerates anything: a short, corrupt or foreign file gives `None` (or no nodes).
//! The caller writes it atomically (a temporary file renamed over the old one).

use crate::proto::bt::bencode::{self, Owned};
use crate::proto::dht::compact::{self, CompactNode, NODE4_LEN, NODE6_LEN};
use crate::proto::dht::NodeId;

/// Nodes saved at most.
pub const MAX_SAVED: usize = 200;

/// The file's bytes.
pub fn encode(id: NodeId, nodes: &[CompactNode]) -> Vec<u8> {
    let (v4, v6): (Vec<CompactNode>, Vec<CompactNode>) =
        nodes.iter().take(MAX_SAVED).partition(|n| n.addr.is_ipv4());
    bencode::dict([
        ("id", Owned::Bytes(id.0.to_vec())),
        ("nodes", Owned::Bytes(compact::write_nodes(&v4, false))),
        ("nodes6", Owned::Bytes(compact::write_nodes(&v6, true))),
    ])
    .encode()
}

/// The id and nodes in `bytes`, or None when it is not a file we wrote.
pub fn decode(bytes: &[u8]) -> Option<(NodeId, Vec<CompactNode>)> {
    let v = bencode::decode(bytes).ok()?;
    let id = NodeId::from_slice(v.get("id")?.as_bytes()?)?;
    let mut nodes = Vec::new();
    for (key, len) in [("nodes", NODE4_LEN), ("nodes6", NODE6_LEN)] {
        if let Some(b) = v.get(key).and_then(|b| b.as_bytes()) {
            nodes.extend(compact::parse_nodes(b, len, MAX_SAVED).unwrap_or_default());
        }
    }
    Some((id, nodes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_tolerates_garbage() {
        let nodes = vec![
            CompactNode {
                id: NodeId([1; 20]),
                addr: "10.0.0.1:6881".parse().unwrap(),
            },
            CompactNode {
                id: NodeId([2; 20]),
                addr: "[::1]:6882".parse().unwrap(),
            },
        ];
        let bytes = encode(NodeId([9; 20]), &nodes);
        let (id, back) = decode(&bytes).unwrap();
        assert_eq!(id, NodeId([9; 20]));
        assert_eq!(back, nodes);
        assert!(decode(b"").is_none());
        assert!(decode(&bytes[..bytes.len() / 2]).is_none());
        assert!(decode(b"d2:id3:abce").is_none());
    }
}
