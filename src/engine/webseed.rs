//! BEP-19 webseed planning: a byte range of the torrent (whole pieces) becomes one ranged GET
//! per file it touches, with the URL BEP-19 names for that file. Pure: the `announce-N`
//! threads run the GETs (`net::announce`) and fill BEP-47 pad files with zeros locally.
//!
//! URLs: for a single-file torrent the webseed URL itself (with the torrent's name appended
//! when it ends with `/`); for a multi-file torrent `url/` + name + `/` + the path segments,
//! each percent-encoded.

use crate::proto::bt::metainfo::Info;
use crate::proto::http::escape;
use std::ops::Range;

/// Most bytes one request may cover (the pool holds them in memory until the engine takes
/// them).
pub const MAX_REQUEST_BYTES: u64 = 64 << 20;
/// Most seconds a `Retry-After` is honored for.
pub const MAX_RETRY_SECS: u64 = 3600;

/// One ranged GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub url: String,
    /// The file's index in `Info::files`.
    pub file: usize,
    /// The bytes wanted, within the file.
    pub range: Range<u64>,
    /// Where `range.start` sits in the torrent's concatenated data.
    pub torrent_offset: u64,
}

/// The GETs for one byte range of the torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The caller's name for it, echoed in the result.
    pub id: u64,
    /// The torrent bytes covered; the result is exactly this long (pad files are zeros).
    pub range: Range<u64>,
    /// The GETs in torrent order (none for pad files).
    pub parts: Vec<Part>,
    /// The torrent's piece length: the bytes are handed on cut at piece boundaries.
    pub piece_length: u64,
}

/// Why a webseed request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The server is busy (503, 429): try again after this many seconds.
    Retry(u64),
    /// The server does not have this file (404, 410): do not ask this seed for it again.
    Missing(usize),
    /// Anything else (other statuses, I/O errors, short or long bodies).
    Other(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Retry(s) => write!(f, "busy, retry after {s} s"),
            Failure::Missing(i) => write!(f, "file {i} not found on the webseed"),
            Failure::Other(e) => f.write_str(e),
        }
    }
}

/// Why a range cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// The range is empty or reaches past the torrent's end.
    OutOfBounds,
    /// The range is longer than [`MAX_REQUEST_BYTES`].
    TooLong,
    /// The webseed URL is not http(s).
    BadUrl,
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PlanError::OutOfBounds => "byte range outside the torrent",
            PlanError::TooLong => "byte range longer than one webseed request may be",
            PlanError::BadUrl => "webseed URL is not http or https",
        })
    }
}

/// The URL of file `file` on the webseed at `base` (BEP-19).
pub fn file_url(info: &Info, base: &str, file: usize) -> String {
    let name = escape::encode(info.name.as_bytes());
    if !info.multi_file {
        return match base.ends_with('/') {
            true => format!("{base}{name}"),
            false => base.to_string(),
        };
    }
    let mut url = base.to_string();
    if !url.ends_with('/') {
        url.push('/');
    }
    url.push_str(&name);
    for segment in info.files.get(file).map_or(&[][..], |f| &f.path[..]) {
        url.push('/');
        url.push_str(&escape::encode(segment.as_bytes()));
    }
    url
}

/// The torrent bytes of pieces `pieces` (clamped to the torrent).
pub fn piece_bytes(info: &Info, pieces: Range<usize>) -> Range<u64> {
    let total = info.total_length();
    let at = |p: usize| (p as u64).saturating_mul(info.piece_length).min(total);
    at(pieces.start)..at(pieces.end)
}

/// Plans the GETs that fetch `bytes` of the torrent from the webseed at `base`.
pub fn plan(info: &Info, base: &str, id: u64, bytes: Range<u64>) -> Result<Request, PlanError> {
    let lower = base.to_ascii_lowercase();
    if !lower.starts_with("http://") && !lower.starts_with("https://") {
        return Err(PlanError::BadUrl);
    }
    if bytes.start >= bytes.end || bytes.end > info.total_length() {
        return Err(PlanError::OutOfBounds);
    }
    if bytes.end - bytes.start > MAX_REQUEST_BYTES {
        return Err(PlanError::TooLong);
    }
    let parts = info
        .files_in(bytes.clone())
        .filter_map(|i| {
            let f = &info.files[i];
            let start = bytes.start.max(f.offset);
            let end = bytes.end.min(f.offset + f.length);
            (!f.padding && start < end).then(|| Part {
                url: file_url(info, base, i),
                file: i,
                range: start - f.offset..end - f.offset,
                torrent_offset: start,
            })
        })
        .collect();
    Ok(Request {
        id,
        range: bytes,
        parts,
        piece_length: info.piece_length,
    })
}

/// The seconds a `Retry-After` header asks for (delta-seconds; capped at
/// [`MAX_RETRY_SECS`]). An HTTP-date or garbage gives `None` (the caller picks a default).
pub fn retry_after(header: &str) -> Option<u64> {
    let h = header.trim();
    if h.is_empty() || h.len() > 20 || !h.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        h.parse::<u64>()
            .map_or(MAX_RETRY_SECS, |s| s.min(MAX_RETRY_SECS)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::bt::metainfo::FileEntry;

    fn info(files: &[(&[&str], u64, bool)], piece_length: u64) -> Info {
        let mut offset = 0;
        let files: Vec<FileEntry> = files
            .iter()
            .map(|(path, length, padding)| {
                let f = FileEntry {
                    path: path.iter().map(|s| s.to_string()).collect(),
                    length: *length,
                    offset,
                    padding: *padding,
                };
                offset += length;
                f
            })
            .collect();
        let pieces = offset.div_ceil(piece_length) as usize;
        Info {
            name: "my dir".into(),
            piece_length,
            pieces: vec![[0; 20]; pieces],
            multi_file: files.len() > 1,
            files,
            private: false,
            source: None,
        }
    }

    #[test]
    fn single_file_urls() {
        let one = info(&[(&["my dir"], 100, false)], 16384);
        assert_eq!(file_url(&one, "http://h/x.bin", 0), "http://h/x.bin");
        assert_eq!(file_url(&one, "http://h/d/", 0), "http://h/d/my%20dir");
        let r = plan(&one, "https://h/f", 9, 0..100).unwrap();
        assert_eq!(r.id, 9);
        assert_eq!(
            r.parts,
            [Part {
                url: "https://h/f".into(),
                file: 0,
                range: 0..100,
                torrent_offset: 0
            }]
        );
    }

    #[test]
    fn multi_file_splits_per_file_and_skips_padding() {
        let t = info(
            &[
                (&["a.bin"], 10, false),
                (&[".pad", "16374"], 16374, true),
                (&["sub dir", "b&c.bin"], 20000, false),
                (&["empty"], 0, false),
                (&["z"], 5, false),
            ],
            16384,
        );
        assert_eq!(
            file_url(&t, "http://h/seed", 2),
            "http://h/seed/my%20dir/sub%20dir/b%26c.bin"
        );
        let r = plan(&t, "http://h/", 1, piece_bytes(&t, 0..3)).unwrap();
        assert_eq!(r.range, 0..36389);
        let got: Vec<(usize, Range<u64>, u64)> = r
            .parts
            .iter()
            .map(|p| (p.file, p.range.clone(), p.torrent_offset))
            .collect();
        assert_eq!(got, [(0, 0..10, 0), (2, 0..20000, 16384), (4, 0..5, 36384)]);
        assert_eq!(r.parts[0].url, "http://h/my%20dir/a.bin");
        // The second piece alone: the middle of file 2.
        let r = plan(&t, "http://h/", 2, piece_bytes(&t, 1..2)).unwrap();
        let got: Vec<(usize, Range<u64>)> =
            r.parts.iter().map(|p| (p.file, p.range.clone())).collect();
        assert_eq!(got, [(2, 0..16384)]);
        assert_eq!(piece_bytes(&t, 2..99), 32768..36389);
    }

    #[test]
    fn bad_plans() {
        let t = info(&[(&["x"], 100, false)], 16384);
        assert_eq!(plan(&t, "ftp://h/", 0, 0..1), Err(PlanError::BadUrl));
        assert_eq!(plan(&t, "http://h/", 0, 5..5), Err(PlanError::OutOfBounds));
        assert_eq!(
            plan(&t, "http://h/", 0, 0..101),
            Err(PlanError::OutOfBounds)
        );
        let big = info(&[(&["x"], 1 << 30, false)], 1 << 20);
        assert_eq!(
            plan(&big, "http://h/", 0, 0..MAX_REQUEST_BYTES + 1),
            Err(PlanError::TooLong)
        );
    }

    #[test]
    fn retry_after_values() {
        assert_eq!(retry_after(" 120 "), Some(120));
        assert_eq!(retry_after("0"), Some(0));
        assert_eq!(retry_after("99999999"), Some(MAX_RETRY_SECS));
        assert_eq!(retry_after("99999999999999999999"), Some(MAX_RETRY_SECS));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(retry_after("-1"), None);
        assert_eq!(retry_after(""), None);
    }
}
