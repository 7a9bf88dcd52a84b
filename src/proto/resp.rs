//! RESP2, the Redis wire format, as the tracker's Redis lanes speak it: commands written
//! straight into a reused buffer, and replies scanned where they lie in the read buffer
//! (their ends found without allocating, their values read as borrowed views). The redis
//! crate's own connection parses every reply into a tree of owned values, which cost the
//! gateway about a fifth of its CPU per announce (allocations and the parser combinators).
//! Sizes are bounded: nesting depth, array lengths and bulk strings past the caps are errors.

/// Nesting of arrays in one reply at most (our commands get depth 1).
const MAX_DEPTH: usize = 4;
/// Elements of one array at most.
const MAX_ITEMS: i64 = 1 << 20;
/// Bytes of one bulk string at most (our replies are members and script hashes).
const MAX_BULK: i64 = 16 << 20;

/// A reply that is not RESP2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RespError(pub &'static str);

impl std::fmt::Display for RespError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bad RESP reply: {}", self.0)
    }
}

impl std::error::Error for RespError {}

/// Appends a command (an array of bulk strings) to `out`.
pub fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    header(out, b'*', args.len());
    for a in args {
        header(out, b'$', a.len());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

fn header(out: &mut Vec<u8>, kind: u8, n: usize) {
    out.push(kind);
    out.extend_from_slice(&num(n as u64));
    out.extend_from_slice(b"\r\n");
}

/// An integer argument's decimal text.
pub fn num(n: u64) -> Num {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    Num { buf, start: i }
}

/// The text of a number, for [`command`]'s arguments.
pub struct Num {
    buf: [u8; 20],
    start: usize,
}

impl std::ops::Deref for Num {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

/// One line's text (without CRLF) starting at `at`, and where the next begins.
fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(at..)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    Some((&rest[..end], at + end + 2))
}

fn int(text: &[u8]) -> Result<i64, RespError> {
    let s = std::str::from_utf8(text).map_err(|_| RespError("integer"))?;
    s.parse().map_err(|_| RespError("integer"))
}

/// The length of the complete reply at the start of `buf`; `None` while it is incomplete.
pub fn reply_len(buf: &[u8]) -> Result<Option<usize>, RespError> {
    skip(buf, 0, 0)
}

/// Where the reply starting at `at` ends.
fn skip(buf: &[u8], at: usize, depth: usize) -> Result<Option<usize>, RespError> {
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let Some((text, next)) = line(buf, at + 1) else {
        // An unfinished line: still check what we have is plausible (no endless garbage).
        return if buf.len() - at > 64 && kind != b'+' && kind != b'-' {
            Err(RespError("line too long"))
        } else {
            Ok(None)
        };
    };
    match kind {
        b'+' | b'-' => Ok(Some(next)),
        b':' => int(text).map(|_| Some(next)),
        b'$' => {
            let n = int(text)?;
            if n == -1 {
                return Ok(Some(next));
            }
            if !(0..=MAX_BULK).contains(&n) {
                return Err(RespError("bulk length"));
            }
            let end = next + n as usize;
            match buf.get(end..end + 2) {
                None => Ok(None),
                Some(b"\r\n") => Ok(Some(end + 2)),
                Some(_) => Err(RespError("bulk string not ended by CRLF")),
            }
        }
        b'*' => {
            let n = int(text)?;
            if n == -1 {
                return Ok(Some(next));
            }
            if !(0..=MAX_ITEMS).contains(&n) {
                return Err(RespError("array length"));
            }
            if depth >= MAX_DEPTH {
                return Err(RespError("nested too deep"));
            }
            let mut at = next;
            for _ in 0..n {
                match skip(buf, at, depth + 1)? {
                    Some(end) => at = end,
                    None => return Ok(None),
                }
            }
            Ok(Some(at))
        }
        _ => Err(RespError("unknown type byte")),
    }
}

/// A view of one reply, borrowed from the buffer it was read into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    Status(&'a [u8]),
    Error(&'a [u8]),
    Int(i64),
    Bulk(&'a [u8]),
    /// A null bulk string or array.
    Nil,
    Array(Items<'a>),
}

/// The elements of an array reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Items<'a> {
    buf: &'a [u8],
    at: usize,
    left: usize,
}

impl<'a> Iterator for Items<'a> {
    type Item = Reply<'a>;
    fn next(&mut self) -> Option<Reply<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let end = skip(self.buf, self.at, 1).ok().flatten()?;
        let r = read(&self.buf[self.at..end]);
        self.at = end;
        Some(r)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left))
    }
}

impl<'a> Reply<'a> {
    /// The reply's integer (also an integer sent as a bulk string); 0 otherwise.
    pub fn int(&self) -> i64 {
        match self {
            Reply::Int(n) => *n,
            Reply::Bulk(b) => std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            _ => 0,
        }
    }

    /// An error reply's text.
    pub fn error(&self) -> Option<String> {
        match self {
            Reply::Error(e) => Some(String::from_utf8_lossy(e).into_owned()),
            _ => None,
        }
    }
}

/// Reads the one complete reply `buf` holds (as [`reply_len`] found it); anything else reads
/// as an error reply.
pub fn read(buf: &[u8]) -> Reply<'_> {
    let Some((text, next)) = line(buf, 1) else {
        return Reply::Error(b"incomplete reply");
    };
    match buf[0] {
        b'+' => Reply::Status(text),
        b'-' => Reply::Error(text),
        b':' => int(text).map_or(Reply::Error(b"bad integer"), Reply::Int),
        b'$' => match int(text) {
            Ok(-1) => Reply::Nil,
            Ok(n) if n >= 0 && buf.len() >= next + n as usize => {
                Reply::Bulk(&buf[next..next + n as usize])
            }
            _ => Reply::Error(b"bad bulk string"),
        },
        b'*' => match int(text) {
            Ok(-1) => Reply::Nil,
            Ok(n) if n >= 0 => Reply::Array(Items {
                buf,
                at: next,
                left: n as usize,
            }),
            _ => Reply::Error(b"bad array"),
        },
        _ => Reply::Error(b"unknown reply"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        command(&mut out, &[b"ZRANGE", b"k", &num(0), &num(1234567)]);
        assert_eq!(
            out,
            b"*4\r\n$6\r\nZRANGE\r\n$1\r\nk\r\n$1\r\n0\r\n$7\r\n1234567\r\n"
        );
        assert_eq!(&*num(u64::MAX), b"18446744073709551615");
    }

    #[test]
    fn replies_are_found_whole_and_read_in_place() {
        let buf = b"*3\r\n:1\r\n$3\r\nab\n\r\n*2\r\n$-1\r\n+OK\r\n-ERR x\r\n";
        let n = reply_len(buf).unwrap().unwrap();
        assert_eq!(&buf[n..], b"-ERR x\r\n");
        let Reply::Array(items) = read(&buf[..n]) else {
            panic!("array")
        };
        let got: Vec<Reply<'_>> = items.collect();
        assert_eq!(got[0], Reply::Int(1));
        assert_eq!(
            got[1],
            Reply::Bulk(b"ab\n"),
            "bulk strings may hold CRLF bytes"
        );
        let Reply::Array(inner) = got[2] else {
            panic!("nested")
        };
        assert_eq!(
            inner.collect::<Vec<_>>(),
            vec![Reply::Nil, Reply::Status(b"OK")]
        );
        assert_eq!(read(&buf[n..]).error().as_deref(), Some("ERR x"));
        assert_eq!(Reply::Bulk(b"42").int(), 42);
    }

    #[test]
    fn partial_replies_wait_for_more_bytes() {
        let whole = b"*2\r\n$5\r\nhello\r\n:7\r\n";
        for cut in 0..whole.len() {
            assert_eq!(reply_len(&whole[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(reply_len(whole), Ok(Some(whole.len())));
    }

    #[test]
    fn bad_replies_are_errors_not_panics() {
        for bad in [
            &b"?what\r\n"[..],
            b":12x\r\n",
            b"$3\r\nabcd\r\n",
            b"$99999999999\r\n",
            b"*-5\r\n",
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
            b"$123456789012345678901234567890123456789012345678901234567890123456789",
        ] {
            assert!(
                reply_len(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(read(b"$5\r\nab"), Reply::Error(_)));
        assert!(matches!(read(b""), Reply::Error(_)));
    }
}
