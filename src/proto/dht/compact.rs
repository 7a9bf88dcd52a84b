//! Compact encodings of the DHT: peers (BEP-5 `values`, BEP-42 `ip`) are the IP's bytes then
//! a big-endian port, 6 bytes for IPv4 and 18 for IPv6; node infos (`nodes`, BEP-32 `nodes6`)
//! are a 20-byte id then a compact address, 26 or 38 bytes. IPv4-mapped IPv6 addresses are
//! written as IPv4. Parsing checks lengths exactly and never panics.

use super::node_id::{NodeId, ID_LEN};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Length of a compact IPv4 address and port.
pub const PEER4_LEN: usize = 6;
/// Length of a compact IPv6 address and port.
pub const PEER6_LEN: usize = 18;
/// Length of a compact IPv4 node info.
pub const NODE4_LEN: usize = ID_LEN + PEER4_LEN;
/// Length of a compact IPv6 node info.
pub const NODE6_LEN: usize = ID_LEN + PEER6_LEN;

/// A node as `nodes`/`nodes6` carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CompactNode {
    pub id: NodeId,
    pub addr: SocketAddr,
}

/// `addr` with an IPv4-mapped IPv6 address turned into IPv4.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Parses a 6- or 18-byte compact address.
pub fn parse_addr(b: &[u8]) -> Option<SocketAddr> {
    match b.len() {
        PEER4_LEN => {
            let ip = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
            Some(SocketAddr::new(
                IpAddr::V4(ip),
                u16::from_be_bytes([b[4], b[5]]),
            ))
        }
        PEER6_LEN => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&b[..16]);
            let port = u16::from_be_bytes([b[16], b[17]]);
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(o)), port))
        }
        _ => None,
    }
}

/// Appends the compact form of `addr` (6 bytes for IPv4 and mapped IPv4, else 18).
pub fn write_addr(addr: SocketAddr, out: &mut Vec<u8>) {
    match addr.ip().to_canonical() {
        IpAddr::V4(v4) => out.extend_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out.extend_from_slice(&v6.octets()),
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

/// The compact form of `addr`.
pub fn addr_bytes(addr: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(PEER6_LEN);
    write_addr(addr, &mut out);
    out
}

/// Why a `nodes`/`nodes6` string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodesError {
    /// The length is not a multiple of the entry size.
    BadLength,
    /// More entries than allowed.
    TooMany,
}

/// Parses concatenated node infos of `entry` bytes each (26 or 38), at most `max` of them.
pub fn parse_nodes(b: &[u8], entry: usize, max: usize) -> Result<Vec<CompactNode>, NodesError> {
    if entry != NODE4_LEN && entry != NODE6_LEN || b.len() % entry != 0 {
        return Err(NodesError::BadLength);
    }
    if b.len() / entry > max {
        return Err(NodesError::TooMany);
    }
    b.chunks_exact(entry)
        .map(|c| {
            let id = NodeId::from_slice(&c[..ID_LEN]).ok_or(NodesError::BadLength)?;
            let addr = parse_addr(&c[ID_LEN..]).ok_or(NodesError::BadLength)?;
            Ok(CompactNode { id, addr })
        })
        .collect()
}

/// Concatenates the nodes of one family: IPv4 (and mapped) ones when `v6` is false, the
/// others when it is true; nodes of the other family are skipped.
pub fn write_nodes(nodes: &[CompactNode], v6: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(nodes.len() * if v6 { NODE6_LEN } else { NODE4_LEN });
    for n in nodes {
        if n.addr.ip().to_canonical().is_ipv6() == v6 {
            out.extend_from_slice(&n.id.0);
            write_addr(n.addr, &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip() {
        for a in ["1.2.3.4:6881", "[2001:db8::7]:443", "0.0.0.0:0"] {
            let addr: SocketAddr = a.parse().expect("addr");
            let b = addr_bytes(addr);
            assert_eq!(parse_addr(&b), Some(addr));
        }
        let mapped: SocketAddr = "[::ffff:1.2.3.4]:80".parse().expect("addr");
        assert_eq!(addr_bytes(mapped), vec![1, 2, 3, 4, 0, 80]);
        assert_eq!(canonical(mapped), "1.2.3.4:80".parse().expect("addr"));
        assert_eq!(parse_addr(&[0; 5]), None);
        assert_eq!(parse_addr(&[0; 17]), None);
    }

    #[test]
    fn nodes_round_trip_and_limits() {
        let nodes = [
            CompactNode {
                id: NodeId([1; 20]),
                addr: "9.8.7.6:5".parse().expect("addr"),
            },
            CompactNode {
                id: NodeId([2; 20]),
                addr: "[2001:db8::1]:6".parse().expect("addr"),
            },
        ];
        let v4 = write_nodes(&nodes, false);
        let v6 = write_nodes(&nodes, true);
        assert_eq!(v4.len(), NODE4_LEN);
        assert_eq!(v6.len(), NODE6_LEN);
        assert_eq!(parse_nodes(&v4, NODE4_LEN, 8), Ok(vec![nodes[0]]));
        assert_eq!(parse_nodes(&v6, NODE6_LEN, 8), Ok(vec![nodes[1]]));
        assert_eq!(
            parse_nodes(&v4[1..], NODE4_LEN, 8),
            Err(NodesError::BadLength)
        );
        assert_eq!(
            parse_nodes(&[0; 52], NODE4_LEN, 1),
            Err(NodesError::TooMany)
        );
        assert_eq!(parse_nodes(&[], NODE4_LEN, 8), Ok(vec![]));
        assert_eq!(parse_nodes(&[0; 10], 5, 8), Err(NodesError::BadLength));
    }
}
