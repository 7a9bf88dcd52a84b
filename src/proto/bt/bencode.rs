//! Bencode (BEP-3): a strict, bounded, zero-copy decoder that remembers the exact bytes of
//! every value, and an encoder for owned values.
//!
//! The decoder borrows from its input: strings are slices, and every [`Value`] carries `raw`,
//! the exact bytes it was decoded from, so an info-hash is the SHA-1 of the original `info`
//! bytes and never of a re-encoding. It rejects everything a canonical encoder would not
//! produce except unsorted dictionary keys (real torrents have them; duplicates are still
//! rejected), and it enforces [`Limits`] on nesting depth, string length, value count and input
//! size so hostile input costs no more than a small multiple of its own size. It never does I/O.

use std::collections::BTreeMap;
use std::fmt;

/// Bounds on what [`decode`] accepts; the defaults suit .torrent files and peer messages.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Deepest nesting of lists and dictionaries.
    pub max_depth: usize,
    /// Longest single byte string.
    pub max_str_len: usize,
    /// Most values (integers, strings, lists, dictionaries) in one document.
    pub max_values: usize,
    /// Largest input accepted at all.
    pub max_input_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 64,
            max_str_len: 64 << 20,
            max_values: 2_000_000,
            max_input_bytes: 64 << 20,
        }
    }
}

/// Why bencode could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input ended inside a value.
    UnexpectedEnd,
    /// A byte that cannot start or continue a value here.
    UnexpectedByte(u8),
    /// An integer with a leading zero, `-0`, no digits, or one that overflows i64.
    BadInteger,
    /// A string length prefix with a leading zero, no digits, or no `:`.
    BadLength,
    /// A string whose length runs past the end of the input.
    StringPastEnd(u64),
    /// A string longer than [`Limits::max_str_len`].
    StringTooLong(u64),
    /// Nesting deeper than [`Limits::max_depth`].
    TooDeep,
    /// More values than [`Limits::max_values`].
    TooManyValues,
    /// Input larger than [`Limits::max_input_bytes`].
    InputTooLarge(usize),
    /// A dictionary key that is not a byte string.
    KeyNotString,
    /// The same key twice in one dictionary.
    DuplicateKey,
    /// Bytes after the end of the top-level value.
    TrailingData,
}

/// A decoding error and the byte offset where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub offset: usize,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::UnexpectedEnd => write!(f, "unexpected end of input")?,
            ErrorKind::UnexpectedByte(b) => write!(f, "unexpected byte 0x{b:02x}")?,
            ErrorKind::BadInteger => write!(f, "non-canonical or out-of-range integer")?,
            ErrorKind::BadLength => write!(f, "malformed string length")?,
            ErrorKind::StringPastEnd(n) => {
                write!(f, "unexpected end of input in a string of {n} bytes")?
            }
            ErrorKind::StringTooLong(n) => write!(f, "string of {n} bytes exceeds the limit")?,
            ErrorKind::TooDeep => write!(f, "nesting too deep")?,
            ErrorKind::TooManyValues => write!(f, "too many values")?,
            ErrorKind::InputTooLarge(n) => write!(f, "input of {n} bytes is too large")?,
            ErrorKind::KeyNotString => write!(f, "dictionary key is not a string")?,
            ErrorKind::DuplicateKey => write!(f, "duplicate dictionary key")?,
            ErrorKind::TrailingData => write!(f, "trailing data after the value")?,
        }
        write!(f, " at byte {}", self.offset)
    }
}

impl std::error::Error for Error {}

/// A decoded value borrowing from the input, with the exact bytes it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value<'a> {
    pub kind: Kind<'a>,
    /// The bytes of this value in the original input, delimiters included.
    pub raw: &'a [u8],
    /// Offset of `raw` in the original input (for error messages).
    pub offset: usize,
}

/// The four bencode types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind<'a> {
    Int(i64),
    Bytes(&'a [u8]),
    List(Vec<Value<'a>>),
    /// Keys in input order (which is sorted for canonical input).
    Dict(Vec<(&'a [u8], Value<'a>)>),
}

impl<'a> Value<'a> {
    pub fn as_int(&self) -> Option<i64> {
        match self.kind {
            Kind::Int(i) => Some(i),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self.kind {
            Kind::Bytes(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&'a str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    pub fn as_list(&self) -> Option<&[Value<'a>]> {
        match &self.kind {
            Kind::List(l) => Some(l),
            _ => None,
        }
    }

    pub fn as_dict(&self) -> Option<&[(&'a [u8], Value<'a>)]> {
        match &self.kind {
            Kind::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// Looks a key up in a dictionary; `None` for a missing key or a non-dictionary.
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        self.as_dict()?
            .iter()
            .find(|(k, _)| *k == key.as_bytes())
            .map(|(_, v)| v)
    }

    /// The name of this value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Int(_) => "integer",
            Kind::Bytes(_) => "string",
            Kind::List(_) => "list",
            Kind::Dict(_) => "dictionary",
        }
    }

    /// Copies the value into an owned tree (keys re-sorted, so encoding it is canonical).
    pub fn to_owned_value(&self) -> Owned {
        match &self.kind {
            Kind::Int(i) => Owned::Int(*i),
            Kind::Bytes(b) => Owned::Bytes(b.to_vec()),
            Kind::List(l) => Owned::List(l.iter().map(Value::to_owned_value).collect()),
            Kind::Dict(d) => Owned::Dict(
                d.iter()
                    .map(|(k, v)| (k.to_vec(), v.to_owned_value()))
                    .collect(),
            ),
        }
    }
}

/// Decodes exactly one value that must span the whole input, with default limits.
pub fn decode(input: &[u8]) -> Result<Value<'_>, Error> {
    decode_with(input, Limits::default())
}

/// Decodes exactly one value that must span the whole input.
pub fn decode_with(input: &[u8], limits: Limits) -> Result<Value<'_>, Error> {
    let (value, end) = decode_prefix_with(input, limits)?;
    if end != input.len() {
        return Err(Error {
            kind: ErrorKind::TrailingData,
            offset: end,
        });
    }
    Ok(value)
}

/// Decodes one value from the start of `input` and returns it with the offset just past it.
/// Peer extension messages (BEP-9) put raw data after a bencoded header, hence this form.
pub fn decode_prefix_with(input: &[u8], limits: Limits) -> Result<(Value<'_>, usize), Error> {
    if input.len() > limits.max_input_bytes {
        return Err(Error {
            kind: ErrorKind::InputTooLarge(input.len()),
            offset: 0,
        });
    }
    let mut d = Decoder {
        input,
        pos: 0,
        limits,
        values: 0,
    };
    let v = d.value(0)?;
    Ok((v, d.pos))
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
    limits: Limits,
    values: usize,
}

impl<'a> Decoder<'a> {
    fn err<T>(&self, kind: ErrorKind, offset: usize) -> Result<T, Error> {
        Err(Error { kind, offset })
    }

    fn peek(&self) -> Result<u8, Error> {
        match self.input.get(self.pos) {
            Some(&b) => Ok(b),
            None => self.err(ErrorKind::UnexpectedEnd, self.pos),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, Error> {
        let start = self.pos;
        self.values += 1;
        if self.values > self.limits.max_values {
            return self.err(ErrorKind::TooManyValues, start);
        }
        let kind = match self.peek()? {
            b'i' => {
                self.pos += 1;
                Kind::Int(self.integer(b'e')?)
            }
            b'0'..=b'9' => Kind::Bytes(self.string()?),
            b'l' | b'd' if depth >= self.limits.max_depth => {
                return self.err(ErrorKind::TooDeep, start);
            }
            b'l' => {
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Kind::List(items)
            }
            b'd' => {
                self.pos += 1;
                Kind::Dict(self.dict_entries(depth)?)
            }
            other => return self.err(ErrorKind::UnexpectedByte(other), start),
        };
        Ok(Value {
            kind,
            raw: &self.input[start..self.pos],
            offset: start,
        })
    }

    fn dict_entries(&mut self, depth: usize) -> Result<Vec<(&'a [u8], Value<'a>)>, Error> {
        let mut entries: Vec<(&'a [u8], Value<'a>)> = Vec::new();
        let mut sorted = true;
        while self.peek()? != b'e' {
            let key_at = self.pos;
            if !self.peek()?.is_ascii_digit() {
                return self.err(ErrorKind::KeyNotString, key_at);
            }
            let key = self.string()?;
            if let Some((prev, _)) = entries.last() {
                if key == *prev {
                    return self.err(ErrorKind::DuplicateKey, key_at);
                }
                sorted &= key > *prev;
            }
            let value = self.value(depth + 1)?;
            entries.push((key, value));
        }
        let end = self.pos;
        self.pos += 1;
        if !sorted {
            let mut keys: Vec<&[u8]> = entries.iter().map(|(k, _)| *k).collect();
            keys.sort_unstable();
            if keys.windows(2).any(|w| w[0] == w[1]) {
                return self.err(ErrorKind::DuplicateKey, end);
            }
        }
        Ok(entries)
    }

    /// Parses digits up to `terminator`, canonical form only.
    fn integer(&mut self, terminator: u8) -> Result<i64, Error> {
        let start = self.pos;
        let rest = &self.input[start..];
        let Some(len) = rest.iter().position(|&b| b == terminator) else {
            // Name the first byte that cannot belong to an integer, if any.
            return match rest
                .iter()
                .position(|&b| !(b.is_ascii_digit() || b == b'-'))
            {
                Some(i) => self.err(ErrorKind::UnexpectedByte(rest[i]), start + i),
                None => self.err(ErrorKind::UnexpectedEnd, self.input.len()),
            };
        };
        let text = &rest[..len];
        let (negative, digits) = match text.split_first() {
            Some((b'-', d)) => (true, d),
            _ => (false, text),
        };
        let canonical = !digits.is_empty()
            && digits.iter().all(u8::is_ascii_digit)
            && !(digits[0] == b'0' && (digits.len() > 1 || negative));
        if !canonical || digits.len() > 19 {
            return self.err(ErrorKind::BadInteger, start);
        }
        let mut n: i64 = 0;
        for &d in digits {
            let digit = i64::from(d - b'0');
            n = match n.checked_mul(10).and_then(|n| {
                if negative {
                    n.checked_sub(digit)
                } else {
                    n.checked_add(digit)
                }
            }) {
                Some(n) => n,
                None => return self.err(ErrorKind::BadInteger, start),
            };
        }
        self.pos = start + len + 1;
        Ok(n)
    }

    fn string(&mut self) -> Result<&'a [u8], Error> {
        let start = self.pos;
        let rest = &self.input[start..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || (rest[0] == b'0' && digits > 1) || digits > 19 {
            return self.err(ErrorKind::BadLength, start);
        }
        match rest.get(digits) {
            Some(b':') => {}
            Some(_) => return self.err(ErrorKind::BadLength, start),
            None => return self.err(ErrorKind::UnexpectedEnd, self.input.len()),
        }
        // 19 digits always fit in u64.
        let len = rest[..digits]
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        let body = start + digits + 1;
        let available = (self.input.len() - body) as u64;
        if len > available {
            return self.err(ErrorKind::StringPastEnd(len), start);
        }
        if len > self.limits.max_str_len as u64 {
            return self.err(ErrorKind::StringTooLong(len), start);
        }
        self.pos = body + len as usize;
        Ok(&self.input[body..self.pos])
    }
}

/// An owned bencode value for building documents; dictionaries are sorted by construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owned {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Owned>),
    Dict(BTreeMap<Vec<u8>, Owned>),
    /// Bytes that are already bencode (such as a stored `info` dict), written verbatim.
    Raw(Vec<u8>),
}

impl Owned {
    pub fn str(s: &str) -> Owned {
        Owned::Bytes(s.as_bytes().to_vec())
    }

    /// Encodes the value.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Owned::Int(i) => {
                out.push(b'i');
                out.extend_from_slice(i.to_string().as_bytes());
                out.push(b'e');
            }
            Owned::Bytes(b) => encode_bytes(b, out),
            Owned::List(items) => {
                out.push(b'l');
                items.iter().for_each(|v| v.encode_into(out));
                out.push(b'e');
            }
            Owned::Dict(entries) => {
                out.push(b'd');
                for (k, v) in entries {
                    encode_bytes(k, out);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
            Owned::Raw(raw) => out.extend_from_slice(raw),
        }
    }
}

fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

/// Builds an [`Owned::Dict`] from `(key, value)` pairs.
pub fn dict<const N: usize>(entries: [(&str, Owned); N]) -> Owned {
    Owned::Dict(
        entries
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check_err(input: &[u8], kind: ErrorKind, offset: usize) {
        assert_eq!(decode(input), Err(Error { kind, offset }), "{input:?}");
    }

    #[test]
    fn decodes_each_type_with_raw_spans() {
        let input = b"d4:infod6:lengthi5ee4:listl1:ai-3eee";
        let v = decode(input).unwrap();
        assert_eq!(v.raw, &input[..]);
        let info = v.get("info").unwrap();
        assert_eq!(info.raw, b"d6:lengthi5ee");
        assert_eq!(info.offset, 7);
        assert_eq!(info.get("length").unwrap().as_int(), Some(5));
        let list = v.get("list").unwrap().as_list().unwrap();
        assert_eq!(list[0].as_bytes(), Some(&b"a"[..]));
        assert_eq!(list[1].as_int(), Some(-3));
    }

    #[test]
    fn rejects_non_canonical_and_broken_input() {
        check_err(b"i-0e", ErrorKind::BadInteger, 1);
        check_err(b"i03e", ErrorKind::BadInteger, 1);
        check_err(b"ie", ErrorKind::BadInteger, 1);
        check_err(b"i-e", ErrorKind::BadInteger, 1);
        check_err(b"i9223372036854775808e", ErrorKind::BadInteger, 1);
        check_err(b"i12", ErrorKind::UnexpectedEnd, 3);
        check_err(b"i1x2e", ErrorKind::BadInteger, 1);
        check_err(b"03:abc", ErrorKind::BadLength, 0);
        check_err(b"4:abc", ErrorKind::StringPastEnd(4), 0);
        check_err(b"1000000000:x", ErrorKind::StringPastEnd(1_000_000_000), 0);
        let small = Limits {
            max_str_len: 3,
            ..Limits::default()
        };
        assert_eq!(
            decode_with(b"4:abcd", small).unwrap_err().kind,
            ErrorKind::StringTooLong(4)
        );
        check_err(b"l1:a", ErrorKind::UnexpectedEnd, 4);
        check_err(b"d1:a", ErrorKind::UnexpectedEnd, 4);
        check_err(b"di1ei2ee", ErrorKind::KeyNotString, 1);
        check_err(b"d1:ai1e1:ai2ee", ErrorKind::DuplicateKey, 7);
        check_err(b"d1:bi1e1:ai2e1:bi3ee", ErrorKind::DuplicateKey, 19);
        check_err(b"i1ei2e", ErrorKind::TrailingData, 3);
        check_err(b"x", ErrorKind::UnexpectedByte(b'x'), 0);
        check_err(b"", ErrorKind::UnexpectedEnd, 0);
    }

    #[test]
    fn extremes_are_bounded() {
        assert_eq!(
            decode(b"i-9223372036854775808e").unwrap().as_int(),
            Some(i64::MIN)
        );
        let deep = "l".repeat(100_000);
        check_err(deep.as_bytes(), ErrorKind::TooDeep, 64);
        let limits = Limits {
            max_values: 10,
            ..Limits::default()
        };
        let many = format!("l{}e", "i0e".repeat(20));
        assert_eq!(
            decode_with(many.as_bytes(), limits).unwrap_err().kind,
            ErrorKind::TooManyValues
        );
        // Unsorted keys are accepted (real torrents have them), order kept.
        let v = decode(b"d1:bi1e1:ai2ee").unwrap();
        assert_eq!(v.get("a").unwrap().as_int(), Some(2));
    }

    #[test]
    fn error_names_the_offset() {
        let e = decode(b"d4:name").unwrap_err();
        assert_eq!(e.to_string(), "unexpected end of input at byte 7");
    }

    #[test]
    fn prefix_decoding_reports_the_end() {
        let (v, end) = decode_prefix_with(b"d1:xi1eeRAW", Limits::default()).unwrap();
        assert_eq!(v.get("x").unwrap().as_int(), Some(1));
        assert_eq!(end, 8);
    }

    fn owned_strategy() -> impl Strategy<Value = Owned> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(Owned::Int),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(Owned::Bytes),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Owned::List),
                proptest::collection::btree_map(
                    proptest::collection::vec(any::<u8>(), 0..8),
                    inner,
                    0..8
                )
                .prop_map(Owned::Dict),
            ]
        })
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(v in owned_strategy()) {
            let bytes = v.encode();
            let decoded = decode(&bytes).unwrap();
            prop_assert_eq!(decoded.raw, &bytes[..]);
            prop_assert_eq!(decoded.to_owned_value(), v);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(v) = decode(&bytes) {
                // Whatever decodes re-encodes to the same bytes when it was sorted.
                prop_assert_eq!(v.raw, &bytes[..]);
            }
        }
    }
}
