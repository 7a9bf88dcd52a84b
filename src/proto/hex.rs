//! Hex and RFC 4648 base32 for info-hashes (magnet links accept both); pure functions.

/// Lowercase hex of `bytes`.
pub fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// Decodes exactly `N` bytes of hex (either case); `None` on any other input.
pub fn decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.as_bytes();
    if text.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *o = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// The value of one hex digit (either case).
pub fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes 32 characters of unpadded base32 (either case) into a 20-byte hash.
pub fn decode_base32_20(text: &str) -> Option<[u8; 20]> {
    let text = text.as_bytes();
    if text.len() != 32 {
        return None;
    }
    let mut out = [0u8; 20];
    let (mut acc, mut bits, mut n) = (0u64, 0u32, 0usize);
    for &c in text {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a',
            b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        acc = (acc << 5) | u64::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out[n] = (acc >> bits) as u8;
            n += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_rejects() {
        let h: [u8; 4] = decode("DEADbeef").unwrap();
        assert_eq!(encode(&h), "deadbeef");
        assert_eq!(decode::<4>("deadbee"), None);
        assert_eq!(decode::<4>("deadbeeg"), None);
        assert_eq!(decode::<2>("é1"), None);
    }

    #[test]
    fn base32_matches_hex() {
        // The same hash in both forms, cross-checked with Python's base64 module.
        let b32 = decode_base32_20("CT76LXJDDCH5LS2TUHKH6EUJ3NYKX4Y6").unwrap();
        assert_eq!(encode(&b32), "14ffe5dd23188fd5cb53a1d47f1289db70abf31e");
        assert_eq!(decode_base32_20("CT76LXJDDCH5LS2TUHKH6EUJ3NYKX4Y1"), None);
    }
}
