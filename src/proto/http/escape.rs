//! Percent-encoding (RFC 3986) for URLs, query strings and magnet links; pure functions.
//!
//! Only the unreserved set `A-Z a-z 0-9 - . _ ~` goes out unescaped, so any byte string
//! (an info-hash, a file name, a path segment) survives a round trip. Decoding is strict: a `%`
//! must be followed by two hex digits, and `+` stays a literal `+` (trackers depend on it).

/// True for the bytes RFC 3986 calls unreserved.
pub fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Percent-encodes every byte that is not unreserved.
pub fn encode(bytes: &[u8]) -> String {
    encode_keeping(bytes, |_| false)
}

/// Percent-encodes every byte that is neither unreserved nor accepted by `keep`.
pub fn encode_keeping(bytes: &[u8], keep: impl Fn(u8) -> bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if is_unreserved(b) || keep(b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
    out
}

/// Why a percent-encoded string could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Byte offset of the bad `%` escape.
    pub offset: usize,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bad percent escape at byte {}", self.offset)
    }
}

/// Decodes `%XX` escapes; everything else, `+` included, is taken literally.
pub fn decode(text: &str) -> Result<Vec<u8>, DecodeError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            match hex.and_then(crate::proto::hex::decode::<1>) {
                Some([b]) => out.push(b),
                None => return Err(DecodeError { offset: i }),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plus_is_literal_and_escapes_are_strict() {
        assert_eq!(decode("a+b%2B%20").unwrap(), b"a+b+ ");
        assert_eq!(decode("%2"), Err(DecodeError { offset: 0 }));
        assert_eq!(decode("ab%zz"), Err(DecodeError { offset: 2 }));
        assert_eq!(encode(b"a b/c+~"), "a%20b%2Fc%2B~");
        assert_eq!(encode_keeping(b"a/b c", |b| b == b'/'), "a/b%20c");
    }

    proptest! {
        #[test]
        fn round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(decode(&encode(&bytes)).unwrap(), bytes);
        }
    }
}
