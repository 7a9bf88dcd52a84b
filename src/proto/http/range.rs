//! HTTP `Range: bytes=...` parsing (RFC 9110 §14) for downloads and BEP-19 webseeds. Pure.
//!
//! One range is served (206); a header with several ranges is answered with the first
//! satisfiable one, which every BitTorrent client accepts since they send one range per
//! request. A `bytes=` header that does not parse is refused (416 with a reason) rather than
//! silently ignored, so a client bug shows; other units are ignored (200), as RFC 9110 says.
//! A well-formed range wholly outside the representation is unsatisfiable (416).

use std::ops::Range;

/// What to send for a request's Range header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ranged {
    /// No usable Range header: send everything with 200.
    Full,
    /// Send this byte range with 206.
    Partial(Range<u64>),
    /// 416 with `Content-Range: bytes */<len>`.
    Unsatisfiable,
    /// A `bytes=` header that does not parse: 416 with a reason.
    Malformed,
}

/// Most ranges looked at in one header (more are ignored, so a hostile header costs little).
pub const MAX_RANGES: usize = 16;

/// Resolves a Range header against a body of `len` bytes.
pub fn resolve(header: Option<&str>, len: u64) -> Ranged {
    let Some(header) = header else {
        return Ranged::Full;
    };
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Ranged::Full;
    };
    for part in spec.split(',').take(MAX_RANGES) {
        match parse_one(part.trim(), len) {
            Parsed::Invalid => return Ranged::Malformed,
            Parsed::Unsatisfiable => {}
            Parsed::Range(r) => return Ranged::Partial(r),
        }
    }
    Ranged::Unsatisfiable
}

enum Parsed {
    Invalid,
    Unsatisfiable,
    Range(Range<u64>),
}

fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_one(part: &str, len: u64) -> Parsed {
    let Some((first, last)) = part.split_once('-') else {
        return Parsed::Invalid;
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => match number(suffix) {
            None => Parsed::Invalid,
            Some(0) => Parsed::Unsatisfiable,
            Some(_) if len == 0 => Parsed::Unsatisfiable,
            Some(n) => Parsed::Range(len.saturating_sub(n)..len),
        },
        (start, "") => match number(start) {
            None => Parsed::Invalid,
            Some(s) if s >= len => Parsed::Unsatisfiable,
            Some(s) => Parsed::Range(s..len),
        },
        (start, end) => match (number(start), number(end)) {
            (Some(s), Some(e)) if s <= e => {
                if s >= len {
                    Parsed::Unsatisfiable
                } else {
                    Parsed::Range(s..e.saturating_add(1).min(len))
                }
            }
            _ => Parsed::Invalid,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(header: &str, len: u64, expected: Ranged) {
        assert_eq!(resolve(Some(header), len), expected, "{header:?} of {len}");
    }

    #[test]
    fn ranges_as_clients_send_them() {
        use Ranged::*;
        check("bytes=0-0", 10, Partial(0..1));
        check("bytes=9-9", 10, Partial(9..10));
        check("bytes=0-99", 10, Partial(0..10));
        check("bytes=5-", 10, Partial(5..10));
        check("bytes=-3", 10, Partial(7..10));
        check("bytes=-30", 10, Partial(0..10));
        check("bytes= 2 - 4 ", 10, Partial(2..5));
        check("bytes=20-30, 1-2", 10, Partial(1..3));
        check("bytes=10-", 10, Unsatisfiable);
        check("bytes=10-20", 10, Unsatisfiable);
        check("bytes=-0", 10, Unsatisfiable);
        check("bytes=0-", 0, Unsatisfiable);
        check("bytes=5-2", 10, Malformed);
        check("bytes=a-b", 10, Malformed);
        check("bytes=1", 10, Malformed);
        check("bytes=", 10, Malformed);
        check("bytes=99999999999999999999999-", 10, Malformed);
        check("items=0-1", 10, Full);
        assert_eq!(resolve(None, 10), Full);
    }
}
