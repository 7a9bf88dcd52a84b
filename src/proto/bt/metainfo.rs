//! Metainfo (.torrent) v1: parse and validate (BEP-3, 12, 19, 27, 47 and the common extras),
//! and build new info dicts and torrent files. Pure: bytes in, values or bytes out.
//!
//! Every path is checked before anything could reach a disk: absolute paths, `.`/`..`
//! components, empty components, separators and NUL inside a component, over-long names,
//! duplicate files and a file that is also another file's directory are all rejected. Text that
//! is not UTF-8 is shown with replacement characters and reported in `warnings`, never panicked on.

use super::bencode::{self, Kind, Owned, Value};
use sha1::{Digest, Sha1};
use std::collections::HashSet;
use std::fmt;
use std::ops::Range;

/// Smallest piece length accepted (BEP-3 clients all assume at least one 16 KiB block).
pub const MIN_PIECE_LENGTH: u64 = 16 << 10;
/// Largest piece length accepted; larger pieces only make verification coarser.
pub const MAX_PIECE_LENGTH: u64 = 1 << 30;
/// Largest .torrent file accepted.
pub const MAX_TORRENT_BYTES: usize = 32 << 20;
/// Longest single path component in bytes (the common filesystem limit).
pub const MAX_COMPONENT_BYTES: usize = 255;

/// Why a torrent file was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The bytes are not valid bencode.
    Bencode(bencode::Error),
    /// A required key is absent.
    Missing(&'static str),
    /// A key holds the wrong bencode type.
    WrongType {
        field: &'static str,
        expected: &'static str,
        found: &'static str,
    },
    /// A key's value breaks a rule of the format.
    Invalid { field: &'static str, reason: String },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Bencode(e) => write!(f, "bencode: {e}"),
            Error::Missing(field) => write!(f, "missing `{field}`"),
            Error::WrongType {
                field,
                expected,
                found,
            } => write!(f, "`{field}` must be a {expected}, found a {found}"),
            Error::Invalid { field, reason } => write!(f, "`{field}` {reason}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<bencode::Error> for Error {
    fn from(e: bencode::Error) -> Self {
        Error::Bencode(e)
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
    Error::Invalid {
        field,
        reason: reason.into(),
    }
}

/// One file of a torrent, in torrent order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Path components below the torrent's root (for a single-file torrent, just the name).
    pub path: Vec<String>,
    pub length: u64,
    /// Byte offset of the file in the torrent's concatenated data.
    pub offset: u64,
    /// A BEP-47 padding file: zeros that are never written to disk.
    pub padding: bool,
}

impl FileEntry {
    /// The path joined with `/`.
    pub fn display_path(&self) -> String {
        self.path.join("/")
    }
}

/// The validated `info` dictionary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub name: String,
    pub piece_length: u64,
    pub pieces: Vec<[u8; 20]>,
    pub files: Vec<FileEntry>,
    /// True when the dict has `files` (a directory), false for `length` (one file).
    pub multi_file: bool,
    /// BEP-27.
    pub private: bool,
    /// BEP-27 `source`, which changes the info-hash so cross-seeding trackers see a new torrent.
    pub source: Option<String>,
}

impl Info {
    pub fn total_length(&self) -> u64 {
        self.files.last().map_or(0, |f| f.offset + f.length)
    }

    pub fn piece_count(&self) -> usize {
        self.pieces.len()
    }

    /// Byte range of piece `index` in the concatenated data.
    pub fn piece_range(&self, index: usize) -> Range<u64> {
        let start = index as u64 * self.piece_length;
        start..(start + self.piece_length).min(self.total_length())
    }

    /// Indices of the files (padding included) that overlap the byte range.
    pub fn files_in(&self, bytes: Range<u64>) -> Range<usize> {
        let first = self
            .files
            .partition_point(|f| f.offset + f.length <= bytes.start);
        let end = self.files.partition_point(|f| f.offset < bytes.end);
        first..end.max(first)
    }
}

/// A parsed and validated torrent file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metainfo {
    /// SHA-1 of the exact `info` bytes found in the file.
    pub info_hash: [u8; 20],
    /// The `info` dictionary exactly as it appeared in the file.
    pub info_bytes: Vec<u8>,
    pub info: Info,
    pub announce: Option<String>,
    /// BEP-12 tiers.
    pub announce_list: Vec<Vec<String>>,
    /// BEP-19 webseeds.
    pub url_list: Vec<String>,
    /// BEP-17 HTTP seeds.
    pub httpseeds: Vec<String>,
    pub comment: Option<String>,
    pub created_by: Option<String>,
    pub creation_date: Option<i64>,
    /// Problems that did not stop parsing (non-UTF-8 text, ignored malformed optional keys).
    pub warnings: Vec<String>,
}

impl Metainfo {
    /// Every tracker URL: the announce-list tiers in order, else `announce`, without repeats.
    /// The tracker tiers (BEP-12): `announce-list`, or the one `announce`.
    pub fn tiers(&self) -> Vec<Vec<String>> {
        if self.announce_list.is_empty() {
            self.announce.iter().map(|a| vec![a.clone()]).collect()
        } else {
            self.announce_list.clone()
        }
    }

    /// A torrent known from its verified info dict and a magnet's trackers and webseeds.
    pub fn from_magnet(
        info_hash: [u8; 20],
        info_bytes: Vec<u8>,
        info: Info,
        trackers: &[String],
        webseeds: &[String],
    ) -> Metainfo {
        Metainfo {
            info_hash,
            info_bytes,
            info,
            announce: trackers.first().cloned(),
            announce_list: trackers.iter().map(|t| vec![t.clone()]).collect(),
            url_list: webseeds.to_vec(),
            httpseeds: Vec::new(),
            comment: None,
            created_by: None,
            creation_date: None,
            warnings: Vec::new(),
        }
    }

    pub fn trackers(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let all = self.announce_list.iter().flatten().chain(&self.announce);
        for url in all {
            if !out.contains(url) {
                out.push(url.clone());
            }
        }
        out
    }
}

/// Parses and validates a torrent file.
pub fn parse(bytes: &[u8]) -> Result<Metainfo, Error> {
    let limits = bencode::Limits {
        max_input_bytes: MAX_TORRENT_BYTES,
        max_str_len: MAX_TORRENT_BYTES,
        ..bencode::Limits::default()
    };
    let root = bencode::decode_with(bytes, limits)?;
    if root.as_dict().is_none() {
        return Err(wrong_type("torrent", "dictionary", &root));
    }
    let mut warnings = Vec::new();
    let info_value = root.get("info").ok_or(Error::Missing("info"))?;
    let info = parse_info(info_value, &mut warnings)?;

    let announce = optional_text(&root, "announce", &mut warnings);
    let mut announce_list = Vec::new();
    if let Some(tiers) = root.get("announce-list").and_then(Value::as_list) {
        for tier in tiers {
            let urls: Vec<String> = match &tier.kind {
                Kind::List(urls) => urls.iter().filter_map(url_text).collect(),
                _ => url_text(tier).into_iter().collect(),
            };
            if !urls.is_empty() {
                announce_list.push(urls);
            }
        }
    }
    let url_list = string_or_list(&root, "url-list");
    let httpseeds = string_or_list(&root, "httpseeds");
    let comment = optional_text(&root, "comment", &mut warnings);
    let created_by = optional_text(&root, "created by", &mut warnings);
    let creation_date = root.get("creation date").and_then(Value::as_int);

    Ok(Metainfo {
        info_hash: Sha1::digest(info_value.raw).into(),
        info_bytes: info_value.raw.to_vec(),
        info,
        announce,
        announce_list,
        url_list,
        httpseeds,
        comment,
        created_by,
        creation_date,
        warnings,
    })
}

/// Parses and validates a bare info dict (as fetched with BEP-9 ut_metadata).
pub fn parse_info_bytes(bytes: &[u8]) -> Result<Info, Error> {
    let value = bencode::decode(bytes)?;
    parse_info(&value, &mut Vec::new())
}

fn wrong_type(field: &'static str, expected: &'static str, found: &Value<'_>) -> Error {
    Error::WrongType {
        field,
        expected,
        found: found.type_name(),
    }
}

fn url_text(v: &Value<'_>) -> Option<String> {
    v.as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
}

fn string_or_list(dict: &Value<'_>, key: &str) -> Vec<String> {
    match dict.get(key).map(|v| &v.kind) {
        Some(Kind::List(items)) => items.iter().filter_map(url_text).collect(),
        Some(Kind::Bytes(_)) => dict.get(key).and_then(url_text).into_iter().collect(),
        _ => Vec::new(),
    }
}

fn optional_text(dict: &Value<'_>, key: &str, warnings: &mut Vec<String>) -> Option<String> {
    let bytes = dict.get(key)?.as_bytes()?;
    Some(lossy(bytes, key, warnings))
}

fn lossy(bytes: &[u8], what: &str, warnings: &mut Vec<String>) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => {
            let s = String::from_utf8_lossy(bytes).into_owned();
            warnings.push(format!("{what} {s:?} is not valid UTF-8"));
            s
        }
    }
}

fn required_int(dict: &Value<'_>, field: &'static str, key: &str) -> Result<i64, Error> {
    let v = dict.get(key).ok_or(Error::Missing(field))?;
    v.as_int().ok_or_else(|| wrong_type(field, "integer", v))
}

/// Prefers the `<key>.utf-8` variant some clients add when it is valid UTF-8.
fn text_bytes<'a>(dict: &Value<'a>, key: &str) -> Option<&'a [u8]> {
    dict.get(&format!("{key}.utf-8"))
        .and_then(Value::as_str)
        .map(str::as_bytes)
        .or_else(|| dict.get(key).and_then(Value::as_bytes))
}

fn parse_info(info: &Value<'_>, warnings: &mut Vec<String>) -> Result<Info, Error> {
    if info.as_dict().is_none() {
        return Err(wrong_type("info", "dictionary", info));
    }
    let name_bytes = match text_bytes(info, "name") {
        Some(b) => b,
        None => match info.get("name") {
            Some(v) => return Err(wrong_type("info.name", "string", v)),
            None => return Err(Error::Missing("info.name")),
        },
    };
    let name = lossy(name_bytes, "name", warnings);
    check_component(&name).map_err(|r| invalid("info.name", r))?;

    let piece_length = required_int(info, "info.piece length", "piece length")?;
    let piece_length = u64::try_from(piece_length).unwrap_or(0);
    if !piece_length.is_power_of_two()
        || !(MIN_PIECE_LENGTH..=MAX_PIECE_LENGTH).contains(&piece_length)
    {
        return Err(invalid(
            "info.piece length",
            format!(
                "must be a power of two from {MIN_PIECE_LENGTH} to {MAX_PIECE_LENGTH}, got {piece_length}"
            ),
        ));
    }

    let pieces_value = info.get("pieces").ok_or(Error::Missing("info.pieces"))?;
    let pieces_raw = pieces_value
        .as_bytes()
        .ok_or_else(|| wrong_type("info.pieces", "string", pieces_value))?;
    if pieces_raw.len() % 20 != 0 {
        return Err(invalid(
            "info.pieces",
            format!("length {} is not a multiple of 20", pieces_raw.len()),
        ));
    }

    let (files, multi_file) = match (info.get("length"), info.get("files")) {
        (Some(_), Some(_)) => {
            return Err(invalid("info", "has both `length` and `files`"));
        }
        (Some(_), None) => {
            let length = non_negative(required_int(info, "info.length", "length")?, "info.length")?;
            let file = FileEntry {
                path: vec![name.clone()],
                length,
                offset: 0,
                padding: false,
            };
            (vec![file], false)
        }
        (None, Some(list)) => (parse_files(list, warnings)?, true),
        (None, None) => return Err(Error::Missing("info.length or info.files")),
    };

    let total = files.last().map_or(0, |f| f.offset + f.length);
    let expected = total.div_ceil(piece_length);
    if pieces_raw.len() as u64 / 20 != expected {
        return Err(invalid(
            "info.pieces",
            format!(
                "holds {} hashes but {total} bytes in pieces of {piece_length} need {expected}",
                pieces_raw.len() / 20
            ),
        ));
    }
    let pieces = pieces_raw
        .chunks_exact(20)
        .map(|c| c.try_into().expect("chunks of 20"))
        .collect();

    let private = info.get("private").and_then(Value::as_int) == Some(1);
    let source = optional_text(info, "source", warnings);
    Ok(Info {
        name,
        piece_length,
        pieces,
        files,
        multi_file,
        private,
        source,
    })
}

fn non_negative(n: i64, field: &'static str) -> Result<u64, Error> {
    u64::try_from(n).map_err(|_| invalid(field, format!("is negative ({n})")))
}

fn parse_files(list: &Value<'_>, warnings: &mut Vec<String>) -> Result<Vec<FileEntry>, Error> {
    let items = list
        .as_list()
        .ok_or_else(|| wrong_type("info.files", "list", list))?;
    if items.is_empty() {
        return Err(invalid("info.files", "is empty"));
    }
    let mut files = Vec::with_capacity(items.len());
    let mut offset: u64 = 0;
    let mut seen: HashSet<Vec<String>> = HashSet::new();
    let mut dirs: HashSet<Vec<String>> = HashSet::new();
    for item in items {
        if item.as_dict().is_none() {
            return Err(wrong_type("info.files[]", "dictionary", item));
        }
        let length = non_negative(
            required_int(item, "info.files[].length", "length")?,
            "info.files[].length",
        )?;
        let padding = item
            .get("attr")
            .and_then(Value::as_bytes)
            .is_some_and(|a| a.contains(&b'p'));
        let path_value = item
            .get("path.utf-8")
            .filter(|v| {
                v.as_list()
                    .is_some_and(|l| l.iter().all(|c| c.as_str().is_some()))
            })
            .or_else(|| item.get("path"))
            .ok_or(Error::Missing("info.files[].path"))?;
        let components = path_value
            .as_list()
            .ok_or_else(|| wrong_type("info.files[].path", "list", path_value))?;
        let mut path = Vec::with_capacity(components.len());
        for c in components {
            let bytes = c
                .as_bytes()
                .ok_or_else(|| wrong_type("info.files[].path[]", "string", c))?;
            path.push(lossy(bytes, "file path component", warnings));
        }
        check_path(&path).map_err(|r| invalid("info.files[].path", r))?;
        if !padding {
            for depth in 1..path.len() {
                dirs.insert(path[..depth].to_vec());
            }
            let clash = dirs.contains(&path) || !seen.insert(path.clone());
            let parent_is_file = (1..path.len()).any(|d| seen.contains(&path[..d]));
            if clash || parent_is_file {
                return Err(invalid(
                    "info.files[].path",
                    format!("{:?} clashes with another file", path.join("/")),
                ));
            }
        }
        files.push(FileEntry {
            path,
            length,
            offset,
            padding,
        });
        offset = offset
            .checked_add(length)
            .ok_or_else(|| invalid("info.files", "total length overflows"))?;
    }
    Ok(files)
}

/// Checks one path component: a plain file or directory name, nothing that escapes the root.
pub fn check_component(c: &str) -> Result<(), String> {
    if c.is_empty() {
        return Err("has an empty component".into());
    }
    if c == "." || c == ".." {
        return Err(format!("has a {c:?} component"));
    }
    if c.contains(['/', '\\', '\0']) {
        return Err(format!("component {c:?} contains a separator or NUL"));
    }
    if c.len() > MAX_COMPONENT_BYTES {
        return Err(format!(
            "has a component of {} bytes (limit {MAX_COMPONENT_BYTES})",
            c.len()
        ));
    }
    Ok(())
}

/// Checks a whole relative path (at least one component, each one safe).
pub fn check_path(path: &[String]) -> Result<(), String> {
    if path.is_empty() {
        return Err("is empty".into());
    }
    path.iter().try_for_each(|c| check_component(c))
}

/// What goes into a new info dict.
#[derive(Debug, Clone)]
pub struct NewInfo<'a> {
    pub name: &'a str,
    pub piece_length: u64,
    pub pieces: &'a [[u8; 20]],
    /// `None` for a single file of the given length; `Some` lists (path, length) of a directory.
    pub files: Option<&'a [(Vec<String>, u64)]>,
    pub single_length: u64,
    pub private: bool,
    pub source: Option<&'a str>,
}

/// Builds a canonical info dict (the bytes whose SHA-1 is the info-hash).
pub fn build_info(new: &NewInfo<'_>) -> Vec<u8> {
    let mut info = bencode::dict([
        ("name", Owned::str(new.name)),
        ("piece length", Owned::Int(new.piece_length as i64)),
        ("pieces", Owned::Bytes(new.pieces.concat())),
    ]);
    let Owned::Dict(map) = &mut info else {
        unreachable!("dict() builds a dictionary")
    };
    match new.files {
        None => {
            map.insert(b"length".to_vec(), Owned::Int(new.single_length as i64));
        }
        Some(files) => {
            let list = files
                .iter()
                .map(|(path, length)| {
                    bencode::dict([
                        ("length", Owned::Int(*length as i64)),
                        (
                            "path",
                            Owned::List(path.iter().map(|c| Owned::str(c)).collect()),
                        ),
                    ])
                })
                .collect();
            map.insert(b"files".to_vec(), Owned::List(list));
        }
    }
    if new.private {
        map.insert(b"private".to_vec(), Owned::Int(1));
    }
    if let Some(source) = new.source {
        map.insert(b"source".to_vec(), Owned::str(source));
    }
    info.encode()
}

/// The optional top-level keys of a new torrent file.
#[derive(Debug, Clone, Default)]
pub struct TorrentExtras<'a> {
    /// Tracker URLs, one tier each; the first is also `announce`.
    pub trackers: &'a [String],
    pub webseeds: &'a [String],
    pub comment: Option<&'a str>,
    pub created_by: Option<&'a str>,
    pub creation_date: Option<i64>,
}

/// Wraps verbatim info bytes into a torrent file.
pub fn build_torrent(info_bytes: &[u8], extras: &TorrentExtras<'_>) -> Vec<u8> {
    let mut map = std::collections::BTreeMap::new();
    map.insert(b"info".to_vec(), Owned::Raw(info_bytes.to_vec()));
    if let Some(first) = extras.trackers.first() {
        map.insert(b"announce".to_vec(), Owned::str(first));
    }
    if extras.trackers.len() > 1 {
        let tiers = extras
            .trackers
            .iter()
            .map(|t| Owned::List(vec![Owned::str(t)]))
            .collect();
        map.insert(b"announce-list".to_vec(), Owned::List(tiers));
    }
    if !extras.webseeds.is_empty() {
        let seeds = extras.webseeds.iter().map(|w| Owned::str(w)).collect();
        map.insert(b"url-list".to_vec(), Owned::List(seeds));
    }
    if let Some(c) = extras.comment {
        map.insert(b"comment".to_vec(), Owned::str(c));
    }
    if let Some(c) = extras.created_by {
        map.insert(b"created by".to_vec(), Owned::str(c));
    }
    if let Some(d) = extras.creation_date {
        map.insert(b"creation date".to_vec(), Owned::Int(d));
    }
    Owned::Dict(map).encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single(length: u64, piece_length: u64) -> Vec<u8> {
        let n = length.div_ceil(piece_length) as usize;
        let pieces = vec![[7u8; 20]; n];
        let info = build_info(&NewInfo {
            name: "a.bin",
            piece_length,
            pieces: &pieces,
            files: None,
            single_length: length,
            private: false,
            source: None,
        });
        build_torrent(&info, &TorrentExtras::default())
    }

    /// A torrent around a hand-written info dict.
    fn with_info(info: &str) -> Vec<u8> {
        format!("d4:info{info}e").into_bytes()
    }

    fn check_invalid(info: &str, expected: &str) {
        let err = parse(&with_info(info)).unwrap_err().to_string();
        assert!(err.contains(expected), "{info}: {err}");
    }

    #[test]
    fn single_file_round_trip() {
        let bytes = single(40_000, 16_384);
        let m = parse(&bytes).unwrap();
        assert_eq!(m.info.total_length(), 40_000);
        assert_eq!(m.info.piece_count(), 3);
        assert_eq!(m.info.piece_range(2), 32_768..40_000);
        assert_eq!(m.info_hash, <[u8; 20]>::from(Sha1::digest(&m.info_bytes)));
        assert!(!m.info.multi_file);
        assert_eq!(m.info.files[0].path, vec!["a.bin"]);
    }

    #[test]
    fn info_hash_uses_original_bytes_even_unsorted() {
        // Keys out of order: a re-encoding would sort them and change the hash.
        let info = "d12:piece lengthi16384e4:name1:x6:lengthi1e6:pieces20:aaaaaaaaaaaaaaaaaaaae";
        let m = parse(&with_info(info)).unwrap();
        assert_eq!(m.info_bytes, info.as_bytes());
        assert_eq!(m.info_hash, <[u8; 20]>::from(Sha1::digest(info.as_bytes())));
    }

    #[test]
    fn trackers_webseeds_and_extras() {
        let info = String::from_utf8(single(1, 16_384)).unwrap();
        let info = &info["d4:info".len()..info.len() - 1];
        let text = format!(
            "d8:announce6:http:113:announce-listll6:http:16:http:2el5:udp:3ee7:comment2:hi\
             13:creation datei99e4:info{info}8:url-list4:ws:1e"
        );
        let m = parse(text.as_bytes()).unwrap();
        assert_eq!(m.trackers(), vec!["http:1", "http:2", "udp:3"]);
        assert_eq!(m.url_list, vec!["ws:1"]);
        assert_eq!(m.comment.as_deref(), Some("hi"));
        assert_eq!(m.creation_date, Some(99));
    }

    #[test]
    fn multi_file_with_padding_and_file_lookup() {
        let pieces = "a".repeat(40);
        let info = format!(
            "d5:filesld6:lengthi10e4:pathl1:aeed4:attr1:p6:lengthi16374e4:pathl4:.pad5:16374eed\
             6:lengthi5e4:pathl3:dir1:beee4:name4:root12:piece lengthi16384e6:pieces40:{pieces}e"
        );
        let m = parse(&with_info(&info)).unwrap();
        assert!(m.info.multi_file);
        assert!(m.info.files[1].padding);
        assert_eq!(m.info.files[2].offset, 16_384);
        assert_eq!(m.info.files_in(m.info.piece_range(0)), 0..2);
        assert_eq!(m.info.files_in(m.info.piece_range(1)), 2..3);
        assert_eq!(m.info.files[2].display_path(), "dir/b");
    }

    #[test]
    fn rejects_bad_info() {
        let p20 = "a".repeat(20);
        check_invalid(
            &format!("d6:lengthi1e4:name1:x12:piece lengthi1000e6:pieces20:{p20}e"),
            "power of two",
        );
        check_invalid(
            "d6:lengthi1e4:name1:x12:piece lengthi16384e6:pieces3:abce",
            "not a multiple of 20",
        );
        check_invalid(
            &format!("d6:lengthi99999e4:name1:x12:piece lengthi16384e6:pieces20:{p20}e"),
            "need 7",
        );
        check_invalid(
            &format!("d6:lengthi-1e4:name1:x12:piece lengthi16384e6:pieces20:{p20}e"),
            "negative",
        );
        check_invalid(
            &format!("d6:lengthi1e4:name2:..12:piece lengthi16384e6:pieces20:{p20}e"),
            "\"..\" component",
        );
        check_invalid("d4:name1:x12:piece lengthi16384e6:pieces0:e", "missing");
        check_invalid("i1e", "`info` must be a dictionary");
    }

    fn files_info(paths: &[&str]) -> String {
        let files: String = paths
            .iter()
            .map(|p| {
                let comps: String = p.split('/').map(|c| format!("{}:{c}", c.len())).collect();
                format!("d6:lengthi1e4:pathl{comps}ee")
            })
            .collect();
        let n = paths.len().div_ceil(16_384).max(1);
        let pieces = "a".repeat(20 * n);
        format!(
            "d5:filesl{files}e4:name1:x12:piece lengthi16384e6:pieces{}:{pieces}e",
            pieces.len()
        )
    }

    #[test]
    fn rejects_hostile_paths() {
        check_invalid(&files_info(&["../etc/passwd"]), "\"..\" component");
        check_invalid(&files_info(&["a//b"]), "empty component");
        check_invalid(&files_info(&["a/./b"]), "\".\" component");
        check_invalid(&files_info(&["a\\..\\b"]), "separator");
        check_invalid(&files_info(&["a\0b"]), "NUL");
        check_invalid(&files_info(&["a", "a"]), "clashes");
        check_invalid(&files_info(&["a", "a/b"]), "clashes");
        check_invalid(&files_info(&["a/b", "a"]), "clashes");
        check_invalid(&files_info(&[&"n".repeat(300)]), "300 bytes");
        let empty_path = "d5:filesld6:lengthi1e4:pathleee4:name1:x12:piece lengthi16384e\
                          6:pieces20:aaaaaaaaaaaaaaaaaaaae";
        check_invalid(empty_path, "is empty");
    }

    #[test]
    fn non_utf8_names_are_reported_not_fatal() {
        let info =
            "d6:lengthi1e4:name2:\u{00ff}12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaae";
        let mut bytes = with_info(info);
        // Replace the two UTF-8 bytes of U+00FF with two invalid bytes.
        let at = bytes.windows(2).position(|w| w == [0xc3, 0xbf]).unwrap();
        bytes[at] = 0xff;
        bytes[at + 1] = 0xfe;
        let m = parse(&bytes).unwrap();
        assert_eq!(m.info.name, "\u{fffd}\u{fffd}");
        assert!(
            m.warnings[0].contains("not valid UTF-8"),
            "{:?}",
            m.warnings
        );
    }
}
