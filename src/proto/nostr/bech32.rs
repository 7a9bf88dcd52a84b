//! Bech32 (BIP-173) for Nostr's `npub`/`nsec` keys (NIP-19): 8-bit data in 5-bit groups with
//! a human-readable prefix and a six-character checksum.

const CHARSET: &[u8; 32] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
const GEN: [u32; 5] = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];

fn polymod(values: impl Iterator<Item = u8>) -> u32 {
    let mut chk = 1u32;
    for v in values {
        let top = chk >> 25;
        chk = ((chk & 0x1ff_ffff) << 5) ^ u32::from(v);
        for (i, g) in GEN.iter().enumerate() {
            if (top >> i) & 1 == 1 {
                chk ^= g;
            }
        }
    }
    chk
}

fn hrp_expand(hrp: &str) -> impl Iterator<Item = u8> + '_ {
    hrp.bytes()
        .map(|b| b >> 5)
        .chain(std::iter::once(0))
        .chain(hrp.bytes().map(|b| b & 31))
}

fn to_5bit(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() * 8 / 5 + 1);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in data {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(((acc >> bits) & 31) as u8);
        }
    }
    if bits > 0 {
        out.push(((acc << (5 - bits)) & 31) as u8);
    }
    out
}

/// Encodes bytes under a lowercase prefix, e.g. `encode("npub", &key)`.
pub fn encode(hrp: &str, data: &[u8]) -> String {
    let values = to_5bit(data);
    let chk = polymod(
        hrp_expand(hrp)
            .chain(values.iter().copied())
            .chain([0u8; 6]),
    ) ^ 1;
    let mut out = String::with_capacity(hrp.len() + 1 + values.len() + 6);
    out.push_str(hrp);
    out.push('1');
    for v in values {
        out.push(CHARSET[v as usize] as char);
    }
    for i in 0..6 {
        out.push(CHARSET[((chk >> (5 * (5 - i))) & 31) as usize] as char);
    }
    out
}

/// Decodes a bech32 string (one case only) into its prefix and bytes.
pub fn decode(text: &str) -> Result<(String, Vec<u8>), &'static str> {
    if text.len() > 200 {
        return Err("bech32 string too long");
    }
    if text.bytes().any(|b| b.is_ascii_uppercase()) && text.bytes().any(|b| b.is_ascii_lowercase())
    {
        return Err("bech32 mixes upper and lower case");
    }
    let text = text.to_ascii_lowercase();
    let (hrp, data) = text.rsplit_once('1').ok_or("bech32 separator missing")?;
    if hrp.is_empty() || data.len() < 6 {
        return Err("bech32 string too short");
    }
    let values: Vec<u8> = data
        .bytes()
        .map(|c| CHARSET.iter().position(|&x| x == c).map(|p| p as u8))
        .collect::<Option<_>>()
        .ok_or("bad bech32 character")?;
    if polymod(hrp_expand(hrp).chain(values.iter().copied())) != 1 {
        return Err("bad bech32 checksum");
    }
    let values = &values[..values.len() - 6];
    let mut out = Vec::with_capacity(values.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &v in values {
        acc = (acc << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    if bits >= 5 || (acc & ((1 << bits) - 1)) != 0 {
        return Err("bad bech32 padding");
    }
    Ok((hrp.to_string(), out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nip19_example() {
        // The npub example from NIP-19.
        let hex = "7e7e9c42a91bfef19fa929e5fda1b72e0ebc1a4c1141673e2794234d86addf4e";
        let npub = "npub10elfcs4fr0l0r8af98jlmgdh9c8tcxjvz9qkw038js35mp4dma8qzvjptg";
        let key = crate::proto::hex::decode::<32>(hex).unwrap();
        assert_eq!(encode("npub", &key), npub);
        assert_eq!(decode(npub).unwrap(), ("npub".to_string(), key.to_vec()));
        assert_eq!(decode(&npub.to_uppercase()).unwrap().1, key.to_vec());
        let mut broken = npub.to_string();
        broken.replace_range(10..11, "q");
        assert!(decode(&broken).is_err());
        assert!(decode("npub1").is_err());
        assert!(decode("Npub1qqqqqq").is_err());
    }
}
