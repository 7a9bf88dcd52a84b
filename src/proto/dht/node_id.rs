//! DHT node ids (BEP-5) and their binding to an IP address (BEP-42).
//!
//! A [`NodeId`] is 160 bits; the distance between two ids is their XOR read as a big-endian
//! number, so comparing two distances is comparing byte arrays. The bucket index of an id is
//! the number of leading bits it shares with ours. BEP-42 ties an id to the node's external IP:
//! the first 21 bits must equal the CRC32C (Castagnoli) of the masked IP with a 3-bit random
//! number `r`, and the last byte of the id carries `r`. Local and private addresses are exempt.
//! [`IpVotes`] learns our external IP from the `ip` fields of responses by majority. CRC32C
//! is written here (a 256-entry table built at compile time). Randomness is passed in.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Bytes in a node id (and an info-hash, and a BEP-44 target).
pub const ID_LEN: usize = 20;

/// A 160-bit DHT id; also used for info-hashes and BEP-44 targets, which share the key space.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub [u8; ID_LEN]);

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl NodeId {
    /// The id in `bytes`, which must be exactly 20 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<NodeId> {
        bytes.try_into().ok().map(NodeId)
    }

    /// XOR distance to `other`; distances compare as big-endian numbers (`Ord` on the bytes).
    pub fn distance(&self, other: &NodeId) -> NodeId {
        let mut d = [0u8; ID_LEN];
        for (i, out) in d.iter_mut().enumerate() {
            *out = self.0[i] ^ other.0[i];
        }
        NodeId(d)
    }

    /// Leading zero bits (160 for the zero id).
    pub fn leading_zeros(&self) -> u32 {
        let mut n = 0;
        for b in self.0 {
            if b == 0 {
                n += 8;
            } else {
                return n + b.leading_zeros();
            }
        }
        n
    }

    /// Number of leading bits `self` and `other` share (0..=160).
    pub fn common_prefix(&self, other: &NodeId) -> u32 {
        self.distance(other).leading_zeros()
    }

    /// Bucket index of `other` in a table owned by `self`: the shared prefix length, or
    /// `None` when the ids are equal (we never store ourselves).
    pub fn bucket_index(&self, other: &NodeId) -> Option<usize> {
        let n = self.common_prefix(other);
        (n < 160).then_some(n as usize)
    }

    /// Bit `i` (0 is the most significant bit of the first byte).
    pub fn bit(&self, i: usize) -> bool {
        i < 160 && self.0[i / 8] & (0x80 >> (i % 8)) != 0
    }

    /// Sets bit `i` to `value`.
    pub fn set_bit(&mut self, i: usize, value: bool) {
        if i < 160 {
            if value {
                self.0[i / 8] |= 0x80 >> (i % 8);
            } else {
                self.0[i / 8] &= !(0x80 >> (i % 8));
            }
        }
    }
}

const fn crc32c_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static CRC32C_TABLE: [u32; 256] = crc32c_table();

/// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), as BEP-42 uses it.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc = CRC32C_TABLE[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// The BEP-42 hash of `ip` with the random number `r` (only its low 3 bits count).
pub fn bep42_crc(ip: IpAddr, r: u8) -> u32 {
    let r = r & 7;
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let mut b = v4.octets();
            for (o, m) in b.iter_mut().zip([0x03, 0x0f, 0x3f, 0xff]) {
                *o &= m;
            }
            b[0] |= r << 5;
            crc32c(&b)
        }
        IpAddr::V6(v6) => {
            let o = v6.octets();
            let mut b = [0u8; 8];
            b.copy_from_slice(&o[..8]);
            for (x, m) in b
                .iter_mut()
                .zip([0x01, 0x03, 0x07, 0x0f, 0x1f, 0x3f, 0x7f, 0xff])
            {
                *x &= m;
            }
            b[0] |= r << 5;
            crc32c(&b)
        }
    }
}

/// A BEP-42 id for external address `ip` built from 20 random bytes: `random[19]` becomes the
/// last byte (its low 3 bits are `r`), the first 21 bits come from the hash, the rest is
/// `random`.
pub fn bep42_id(ip: IpAddr, random: [u8; ID_LEN]) -> NodeId {
    let mut id = random;
    let crc = bep42_crc(ip, random[19]).to_be_bytes();
    id[0] = crc[0];
    id[1] = crc[1];
    id[2] = (crc[2] & 0xf8) | (random[2] & 0x07);
    NodeId(id)
}

/// Addresses BEP-42 exempts from the id check: the private, link-local and loopback blocks
/// the BEP lists, their IPv6 counterparts (`::1`, `fe80::/10`, `fc00::/7`) and unspecified.
pub fn is_exempt(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            v4.is_private() || v4.is_loopback() || v4.is_link_local() || v4.is_unspecified()
        }
        IpAddr::V6(v6) => {
            let s = v6.segments()[0];
            v6.is_loopback() || v6.is_unspecified() || s & 0xffc0 == 0xfe80 || s & 0xfe00 == 0xfc00
        }
    }
}

/// Whether a node that another node named (in `nodes`/`nodes6`) at `addr` may be queried:
/// never port 0, an unspecified, broadcast or multicast address; a loopback, private or
/// link-local one only when `allow_local` (we are on such a network ourselves, e.g. a
/// loopback testnet). Otherwise any remote node could point our lookups at this host's or
/// this LAN's services.
pub fn named_addr_ok(addr: SocketAddr, allow_local: bool) -> bool {
    let ip = addr.ip().to_canonical();
    let never = match ip {
        IpAddr::V4(v4) => v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast(),
        IpAddr::V6(v6) => v6.is_unspecified() || v6.is_multicast(),
    };
    addr.port() != 0 && !never && (allow_local || !is_exempt(ip))
}

/// Whether `id` is a valid BEP-42 id for a node at `ip` (always true for exempt addresses).
pub fn id_matches_ip(id: &NodeId, ip: IpAddr) -> bool {
    if is_exempt(ip) {
        return true;
    }
    let crc = bep42_crc(ip, id.0[19]).to_be_bytes();
    id.0[0] == crc[0] && id.0[1] == crc[1] && id.0[2] & 0xf8 == crc[2] & 0xf8
}

/// Votes on our external IP from the BEP-42 `ip` field of responses: one vote per voter
/// /24 (IPv4) or /64 (IPv6), the latest vote of a subnet replacing its earlier one, at most
/// `max_voters` kept (the oldest goes first). [`IpVotes::leader`] is the IP more than half of
/// the votes name, once there are enough votes.
#[derive(Debug, Clone)]
pub struct IpVotes {
    /// (voter subnet, reported IP), oldest first.
    votes: Vec<(Subnet, IpAddr)>,
    max_voters: usize,
}

/// A voter's /24 or /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subnet {
    V4([u8; 3]),
    V6([u8; 8]),
}

fn subnet(ip: IpAddr) -> Subnet {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            Subnet::V4([o[0], o[1], o[2]])
        }
        IpAddr::V6(v6) => {
            let mut k = [0u8; 8];
            k.copy_from_slice(&v6.octets()[..8]);
            Subnet::V6(k)
        }
    }
}

impl IpVotes {
    pub fn new(max_voters: usize) -> IpVotes {
        IpVotes {
            votes: Vec::new(),
            max_voters,
        }
    }

    /// Records that a node at `voter` saw us at `reported`.
    pub fn vote(&mut self, voter: IpAddr, reported: IpAddr) {
        let key = subnet(voter);
        self.votes.retain(|(k, _)| *k != key);
        if self.max_voters == 0 {
            return;
        }
        if self.votes.len() >= self.max_voters {
            self.votes.remove(0);
        }
        self.votes.push((key, reported.to_canonical()));
    }

    /// Votes kept.
    pub fn len(&self) -> usize {
        self.votes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.votes.is_empty()
    }

    /// The IP named by a strict majority of at least `min_votes` votes.
    pub fn leader(&self, min_votes: usize) -> Option<IpAddr> {
        if self.votes.len() < min_votes.max(1) {
            return None;
        }
        let mut best: Option<(IpAddr, usize)> = None;
        for (_, ip) in &self.votes {
            let n = self.votes.iter().filter(|(_, other)| other == ip).count();
            if best.is_none_or(|(_, m)| n > m) {
                best = Some((*ip, n));
            }
        }
        best.filter(|(_, n)| 2 * n > self.votes.len())
            .map(|(ip, _)| ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn id(hex: &str) -> NodeId {
        NodeId(crate::proto::hex::decode::<20>(hex).expect("hex"))
    }

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    /// The test vectors of BEP-42 (IP, rand, example id); the bold parts are checked.
    const VECTORS: [(&str, u8, &str); 5] = [
        (
            "124.31.75.21",
            1,
            "5fbfbff10c5d6a4ec8a88e4c6ab4c28b95eee401",
        ),
        (
            "21.75.31.124",
            86,
            "5a3ce9c14e7a08645677bbd1cfe7d8f956d53256",
        ),
        (
            "65.23.51.170",
            22,
            "a5d43220bc8f112a3d426c84764f8c2a1150e616",
        ),
        (
            "84.124.73.14",
            65,
            "1b0321dd1bb1fe518101ceef99462b947a01ff41",
        ),
        (
            "43.213.53.83",
            90,
            "e56f6cbf5b7c4be0237986d5243b87aa6d51305a",
        ),
    ];

    #[test]
    fn bep42_vectors() {
        for (ip, r, example) in VECTORS {
            let ip: IpAddr = ip.parse().expect("ip");
            let example = id(example);
            assert!(id_matches_ip(&example, ip), "{ip}");
            let mut random = example.0;
            random[19] = r;
            let built = bep42_id(ip, random);
            assert_eq!(built, example, "{ip}");
            let crc = bep42_crc(ip, r).to_be_bytes();
            assert_eq!(&crc[..2], &example.0[..2]);
            // Flipping a bit in the first 21 breaks it; the low 3 bits of byte 2 are free.
            for bit in [0, 7, 15, 20] {
                let mut bad = example;
                bad.set_bit(bit, !bad.bit(bit));
                assert!(!id_matches_ip(&bad, ip), "{ip} bit {bit}");
            }
            let mut free = example;
            free.set_bit(23, !free.bit(23));
            assert!(id_matches_ip(&free, ip));
            // A different r in the last byte does not match.
            let mut other_r = example;
            other_r.0[19] ^= 1;
            assert!(!id_matches_ip(&other_r, ip));
        }
    }

    #[test]
    fn ipv6_and_mapped_addresses() {
        let ip: IpAddr = "2001:db8:1234:5678::1".parse().expect("ip");
        let built = bep42_id(ip, [7; 20]);
        assert!(id_matches_ip(&built, ip));
        assert!(!id_matches_ip(&NodeId([7; 20]), ip));
        let mapped = IpAddr::V6(Ipv4Addr::new(124, 31, 75, 21).to_ipv6_mapped());
        assert!(id_matches_ip(&id(VECTORS[0].2), mapped));
    }

    #[test]
    fn named_nodes_on_local_addresses_are_queried_only_from_a_local_network() {
        for a in [
            "127.0.0.1:6881",
            "10.0.0.5:6881",
            "192.168.1.1:53",
            "[::1]:6881",
        ] {
            let a: SocketAddr = a.parse().unwrap();
            assert!(!named_addr_ok(a, false), "{a} from a public node");
            assert!(named_addr_ok(a, true), "{a} on a loopback testnet");
        }
        for a in [
            "0.0.0.0:6881",
            "255.255.255.255:6881",
            "224.0.0.1:6881",
            "[::]:6881",
            "[ff02::1]:6881",
            "1.2.3.4:0",
            "[::ffff:127.0.0.1]:80",
        ] {
            let a: SocketAddr = a.parse().unwrap();
            assert!(!named_addr_ok(a, false), "{a}");
            if a.port() != 0 && !a.ip().to_canonical().is_loopback() {
                assert!(!named_addr_ok(a, true), "{a} never");
            }
        }
        assert!(named_addr_ok("1.2.3.4:6881".parse().unwrap(), false));
        assert!(named_addr_ok("[2001:db8::1]:6881".parse().unwrap(), false));
    }

    #[test]
    fn local_addresses_are_exempt() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.3.4",
            "127.0.0.1",
            "::1",
            "fe80::1",
            "fd00::5",
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert!(is_exempt(ip), "{ip}");
            assert!(id_matches_ip(&NodeId([0xab; 20]), ip));
        }
        for ip in ["8.8.8.8", "172.32.0.1", "2001:db8::1"] {
            assert!(!is_exempt(ip.parse().expect("ip")), "{ip}");
        }
        assert!(!is_exempt(IpAddr::V6(Ipv6Addr::new(
            0x2a00, 0, 0, 0, 0, 0, 0, 1
        ))));
    }

    #[test]
    fn distance_and_buckets() {
        let a = NodeId([0; 20]);
        let mut b = a;
        b.set_bit(0, true);
        assert_eq!(a.bucket_index(&b), Some(0));
        assert_eq!(a.bucket_index(&a), None);
        let mut c = a;
        c.set_bit(159, true);
        assert_eq!(a.bucket_index(&c), Some(159));
        assert!(a.distance(&c) < a.distance(&b));
        assert_eq!(a.distance(&b), b.distance(&a));
        assert_eq!(NodeId([0; 20]).leading_zeros(), 160);
        assert_eq!(format!("{:?}", NodeId([0xab; 20])).len(), 40);
        assert!(NodeId::from_slice(&[0; 19]).is_none());
    }

    #[test]
    fn external_ip_by_majority_of_subnets() {
        let ours: IpAddr = "203.0.113.9".parse().expect("ip");
        let liar: IpAddr = "198.51.100.1".parse().expect("ip");
        let mut v = IpVotes::new(10);
        assert_eq!(v.leader(1), None);
        // Many voters from one /24 count once.
        for last in 1..=50u8 {
            v.vote(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)), liar);
        }
        assert_eq!(v.len(), 1);
        for third in 1..=3u8 {
            v.vote(IpAddr::V4(Ipv4Addr::new(8, 8, third, 1)), ours);
        }
        assert_eq!(v.leader(5), None, "not enough votes");
        assert_eq!(v.leader(3), Some(ours));
        let v6: IpAddr = "2001:db8:1:2::3".parse().expect("ip");
        v.vote(v6, liar);
        v.vote("2001:db8:1:2::4".parse().expect("ip"), liar);
        assert_eq!(v.len(), 5);
        v.vote("2001:db8:9::1".parse().expect("ip"), liar);
        assert_eq!(v.leader(3), None, "3 of 6 is no majority");
        let mut small = IpVotes::new(2);
        for third in 1..=5u8 {
            small.vote(IpAddr::V4(Ipv4Addr::new(9, 9, third, 1)), ours);
        }
        assert_eq!(small.len(), 2);
        assert!(IpVotes::new(0).is_empty());
    }
}
