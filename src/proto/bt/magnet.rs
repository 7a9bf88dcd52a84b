//! Magnet links (BEP-9, BEP-53): parse and build `xt=urn:btih:`, `dn`, `tr`, `ws`, `xl`, `so`
//! and `x.pe`. Pure: strings in, values or strings out.
//!
//! Parameters may come in any order, repeated, or with the `.N` index suffix some clients
//! write (`tr.1=`). Values are percent-decoded strictly; `+` is read as a space only in `dn`,
//! where clients use it that way, and is literal everywhere else. Unknown parameters are ignored.

use crate::proto::hex;
use crate::proto::http::escape;
use std::fmt;
use std::ops::RangeInclusive;

/// Longest magnet link accepted.
pub const MAX_MAGNET_BYTES: usize = 64 << 10;
/// Most `tr`, `ws` and `x.pe` values kept (further ones are dropped).
pub const MAX_URLS: usize = 100;
/// Most BEP-53 `so` ranges kept.
pub const MAX_SELECT_RANGES: usize = 1000;

/// A parsed magnet link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Magnet {
    pub info_hash: [u8; 20],
    /// `dn`: the display name.
    pub name: Option<String>,
    /// `tr`: tracker URLs, in order.
    pub trackers: Vec<String>,
    /// `ws`: webseed URLs (BEP-19).
    pub webseeds: Vec<String>,
    /// `xl`: exact length in bytes.
    pub length: Option<u64>,
    /// `so`: BEP-53 file indices to download, as inclusive ranges.
    pub select_only: Vec<RangeInclusive<u32>>,
    /// `x.pe`: peer addresses (`host:port`) to try directly.
    pub peers: Vec<String>,
}

/// Why a magnet link was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    NotMagnet,
    TooLong(usize),
    /// No `xt=urn:btih:` parameter (a v2-only `urn:btmh:` link says so).
    NoInfoHash {
        v2_only: bool,
    },
    BadInfoHash(String),
    BadEscape {
        param: String,
        offset: usize,
    },
    BadValue {
        param: &'static str,
        value: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotMagnet => write!(f, "not a magnet link (expected `magnet:?`)"),
            Error::TooLong(n) => write!(f, "magnet link of {n} bytes is too long"),
            Error::NoInfoHash { v2_only: true } => {
                write!(f, "v2-only magnet links (urn:btmh) are not supported yet")
            }
            Error::NoInfoHash { v2_only: false } => write!(f, "no `xt=urn:btih:` parameter"),
            Error::BadInfoHash(h) => {
                write!(
                    f,
                    "info-hash {h:?} is neither 40 hex nor 32 base32 characters"
                )
            }
            Error::BadEscape { param, offset } => {
                write!(f, "bad percent escape in `{param}` at byte {offset}")
            }
            Error::BadValue { param, value } => write!(f, "bad `{param}` value {value:?}"),
        }
    }
}

impl std::error::Error for Error {}

/// Parses a magnet link.
pub fn parse(uri: &str) -> Result<Magnet, Error> {
    if uri.len() > MAX_MAGNET_BYTES {
        return Err(Error::TooLong(uri.len()));
    }
    let query = uri
        .get(..8)
        .filter(|p| p.eq_ignore_ascii_case("magnet:?"))
        .map(|_| &uri[8..])
        .ok_or(Error::NotMagnet)?;
    let mut magnet = Magnet::default();
    let mut info_hash = None;
    let mut v2_seen = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
        // `tr.1` and friends: drop a numeric index suffix.
        let key = match key.rsplit_once('.') {
            Some((base, idx)) if !idx.is_empty() && idx.bytes().all(|b| b.is_ascii_digit()) => base,
            _ => key,
        };
        let decoded = |plus_is_space: bool| -> Result<String, Error> {
            let text = if plus_is_space {
                raw.replace('+', " ")
            } else {
                raw.to_string()
            };
            let bytes = escape::decode(&text).map_err(|e| Error::BadEscape {
                param: key.to_string(),
                offset: e.offset,
            })?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        };
        match key {
            "xt" => {
                let value = decoded(false)?;
                if let Some(h) = strip_prefix_ignore_case(&value, "urn:btih:") {
                    if info_hash.is_none() {
                        let parsed = hex::decode::<20>(h).or_else(|| hex::decode_base32_20(h));
                        info_hash = Some(parsed.ok_or_else(|| Error::BadInfoHash(h.into()))?);
                    }
                } else if strip_prefix_ignore_case(&value, "urn:btmh:").is_some() {
                    v2_seen = true;
                }
            }
            "dn" => magnet.name = Some(decoded(true)?),
            "tr" => push_capped(&mut magnet.trackers, decoded(false)?),
            "ws" => push_capped(&mut magnet.webseeds, decoded(false)?),
            "x.pe" => push_capped(&mut magnet.peers, decoded(false)?),
            "xl" => {
                let value = decoded(false)?;
                magnet.length = Some(
                    value
                        .parse()
                        .map_err(|_| Error::BadValue { param: "xl", value })?,
                );
            }
            "so" => {
                let value = decoded(false)?;
                magnet.select_only =
                    parse_select_only(&value).ok_or(Error::BadValue { param: "so", value })?;
            }
            _ => {}
        }
    }
    magnet.info_hash = info_hash.ok_or(Error::NoInfoHash { v2_only: v2_seen })?;
    Ok(magnet)
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn push_capped(list: &mut Vec<String>, value: String) {
    if list.len() < MAX_URLS && !value.is_empty() && !list.contains(&value) {
        list.push(value);
    }
}

/// Parses BEP-53 `0,2,4-6`.
fn parse_select_only(value: &str) -> Option<Vec<RangeInclusive<u32>>> {
    let mut out = Vec::new();
    for part in value.split(',') {
        if out.len() == MAX_SELECT_RANGES {
            return None;
        }
        let range = match part.split_once('-') {
            Some((a, b)) => a.parse().ok()?..=b.parse().ok()?,
            None => {
                let i = part.parse().ok()?;
                i..=i
            }
        };
        if range.is_empty() {
            return None;
        }
        out.push(range);
    }
    Some(out)
}

impl Magnet {
    /// Builds the magnet link, hex info-hash first, every value percent-encoded.
    pub fn to_uri(&self) -> String {
        let mut uri = format!("magnet:?xt=urn:btih:{}", hex::encode(&self.info_hash));
        if let Some(name) = &self.name {
            uri.push_str("&dn=");
            uri.push_str(&escape::encode(name.as_bytes()));
        }
        if let Some(length) = self.length {
            uri.push_str(&format!("&xl={length}"));
        }
        for (key, list) in [
            ("tr", &self.trackers),
            ("ws", &self.webseeds),
            ("x.pe", &self.peers),
        ] {
            for value in list {
                uri.push('&');
                uri.push_str(key);
                uri.push('=');
                uri.push_str(&escape::encode(value.as_bytes()));
            }
        }
        if !self.select_only.is_empty() {
            let parts: Vec<String> = self
                .select_only
                .iter()
                .map(|r| {
                    if r.start() == r.end() {
                        r.start().to_string()
                    } else {
                        format!("{}-{}", r.start(), r.end())
                    }
                })
                .collect();
            uri.push_str("&so=");
            uri.push_str(&parts.join(","));
        }
        uri
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEX: &str = "14ffe5dd23188fd5cb53a1d47f1289db70abf31e";

    #[test]
    fn parses_every_parameter() {
        let uri = format!(
            "magnet:?xt=urn:btih:{HEX}&dn=My+File%20x&tr=http%3A%2F%2Fa%2Fannounce&tr.1=udp://b:1\
             &ws=http://w/f&xl=123&so=0,2,4-6&x.pe=127.0.0.1:6881&foo=bar"
        );
        let m = parse(&uri).unwrap();
        assert_eq!(hex::encode(&m.info_hash), HEX);
        assert_eq!(m.name.as_deref(), Some("My File x"));
        assert_eq!(m.trackers, vec!["http://a/announce", "udp://b:1"]);
        assert_eq!(m.webseeds, vec!["http://w/f"]);
        assert_eq!(m.length, Some(123));
        assert_eq!(m.select_only, vec![0..=0, 2..=2, 4..=6]);
        assert_eq!(m.peers, vec!["127.0.0.1:6881"]);
    }

    #[test]
    fn base32_and_case_insensitive_prefixes() {
        let m = parse("MAGNET:?xt=URN:BTIH:CT76LXJDDCH5LS2TUHKH6EUJ3NYKX4Y6").unwrap();
        assert_eq!(hex::encode(&m.info_hash), HEX);
    }

    #[test]
    fn rejects_bad_links() {
        assert_eq!(parse("http://x"), Err(Error::NotMagnet));
        assert_eq!(
            parse("magnet:?dn=x"),
            Err(Error::NoInfoHash { v2_only: false })
        );
        assert_eq!(
            parse("magnet:?xt=urn:btmh:1220abcd"),
            Err(Error::NoInfoHash { v2_only: true })
        );
        assert!(matches!(
            parse("magnet:?xt=urn:btih:zz"),
            Err(Error::BadInfoHash(_))
        ));
        assert!(matches!(
            parse(&format!("magnet:?xt=urn:btih:{HEX}&dn=%zz")),
            Err(Error::BadEscape { .. })
        ));
        assert!(matches!(
            parse(&format!("magnet:?xt=urn:btih:{HEX}&xl=-1")),
            Err(Error::BadValue { param: "xl", .. })
        ));
        assert!(matches!(
            parse(&format!("magnet:?xt=urn:btih:{HEX}&so=5-2")),
            Err(Error::BadValue { param: "so", .. })
        ));
        assert!(matches!(
            parse(&format!(
                "magnet:?xt=urn:btih:{HEX}&tr={}",
                "a".repeat(70_000)
            )),
            Err(Error::TooLong(_))
        ));
    }

    fn magnet_strategy() -> impl Strategy<Value = Magnet> {
        let text = "\\PC{0,24}";
        (
            any::<[u8; 20]>(),
            proptest::option::of(text),
            proptest::collection::vec(".{1,24}", 0..4),
            proptest::collection::vec(".{1,24}", 0..3),
            proptest::option::of(any::<u64>()),
            proptest::collection::vec((0u32..100, 0u32..5), 0..4),
        )
            .prop_map(|(info_hash, name, trackers, webseeds, length, so)| {
                let dedup = |v: Vec<String>| {
                    let mut out = Vec::new();
                    v.into_iter().for_each(|s| push_capped(&mut out, s));
                    out
                };
                Magnet {
                    info_hash,
                    name,
                    trackers: dedup(trackers),
                    webseeds: dedup(webseeds),
                    length,
                    select_only: so.into_iter().map(|(a, n)| a..=a + n).collect(),
                    peers: Vec::new(),
                }
            })
    }

    proptest! {
        #[test]
        fn build_parse_round_trip(m in magnet_strategy()) {
            prop_assert_eq!(parse(&m.to_uri()).unwrap(), m);
        }

        #[test]
        fn arbitrary_text_never_panics(s in "magnet:\\?.{0,200}") {
            let _ = parse(&s);
        }
    }
}
