//! HTTP `Range: bytes=...` parsing (RFC 9110 §14) for downloads, streams and BEP-19
//! webseeds. Pure.
//!
//! One range is served (206). Several ranges are merged where they overlap or touch; if one
//! range remains it is served as a single-part 206, otherwise the header is ignored and the
//! whole representation is sent with 200, which RFC 9110 §14.2 allows ("a server MAY ignore
//! the Range header field"): we never answer multipart/byteranges, and never send only some
//! of the ranges asked for. BitTorrent clients send one range per request. A `bytes=` header
//! that does not parse is refused (416 with a reason) rather than silently ignored, so a
//! client bug shows; other units are ignored (200), as RFC 9110 says. A well-formed header
//! none of whose ranges overlaps the representation is unsatisfiable (416).

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
    let mut ranges = Vec::new();
    for part in spec.split(',').take(MAX_RANGES) {
        match parse_one(part.trim(), len) {
            Parsed::Invalid => return Ranged::Malformed,
            Parsed::Unsatisfiable => {}
            Parsed::Range(r) => ranges.push(r),
        }
    }
    ranges.sort_by_key(|r| r.start);
    let mut merged: Option<Range<u64>> = None;
    for r in ranges {
        merged = match merged {
            None => Some(r),
            // Overlapping or adjacent: one range.
            Some(m) if r.start <= m.end => Some(m.start..m.end.max(r.end)),
            // Several disjoint ranges: the whole representation (see the module doc).
            Some(_) => return Ranged::Full,
        };
    }
    merged.map_or(Ranged::Unsatisfiable, Ranged::Partial)
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
        // Several ranges: merged when they overlap or touch, else the whole file with 200.
        check("bytes=0-3,2-5", 10, Partial(0..6));
        check("bytes=4-5,0-3", 10, Partial(0..6));
        check("bytes=0-1,-2,1-8", 10, Partial(0..10));
        check("bytes=0-0,2-2", 10, Full);
        check("bytes=0-9,100-109", 1000, Full);
        check("bytes=0-1,x", 10, Malformed);
        check("bytes=20-30,40-", 10, Unsatisfiable);
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
