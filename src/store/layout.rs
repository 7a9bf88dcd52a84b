//! Where a downloaded torrent's bytes go: the torrent's own file layout under the output
//! directory. Maps a byte range of the concatenated data to file spans (BEP-47 padding files
//! are zeros and never written), picks files for `--files` (indexes, ranges and globs), turns
//! that choice into piece priorities (a piece that reaches into a wanted file is fetched
//! whole), and sends the bytes of unwanted files that such pieces carry to a hidden parts
//! file, so they never land in a visible file. Paths are re-checked here before any use.

use crate::proto::bt::metainfo::{self, Info};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Where one part of a write goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// File `index` of the torrent, at `offset`.
    File { index: usize, offset: u64 },
    /// The hidden parts file (bytes of unwanted files), at the torrent offset.
    Parts { offset: u64 },
}

/// One contiguous piece of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub dest: Dest,
    /// Bytes of the range this span covers, relative to the range's start.
    pub within: Range<u64>,
}

/// A torrent's layout under a directory, with the files chosen.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
    info: Info,
    wanted: Vec<bool>,
}

impl Layout {
    /// Every path is checked (no `..`, no absolute or empty components) before anything is
    /// created. `wanted` per file (padding files are ignored); None: all.
    pub fn new(dir: &Path, info: Info, wanted: Option<Vec<bool>>) -> Result<Layout, String> {
        metainfo::check_component(&info.name).map_err(|e| format!("torrent name {e}"))?;
        for f in &info.files {
            metainfo::check_path(&f.path).map_err(|e| format!("file {} {e}", f.display_path()))?;
        }
        let wanted = wanted.unwrap_or_else(|| vec![true; info.files.len()]);
        if wanted.len() != info.files.len() {
            return Err("the file choice does not match the torrent's files".into());
        }
        let root = if info.multi_file {
            dir.join(&info.name)
        } else {
            dir.to_path_buf()
        };
        Ok(Layout { root, info, wanted })
    }

    pub fn info(&self) -> &Info {
        &self.info
    }

    /// The path of file `index` on disk.
    pub fn path(&self, index: usize) -> PathBuf {
        let mut p = self.root.clone();
        for c in &self.info.files[index].path {
            p.push(c);
        }
        p
    }

    /// The hidden file that holds bytes of unwanted files (named by the info-hash).
    pub fn parts_path(dir: &Path, info_hash_hex: &str) -> PathBuf {
        dir.join(".torrent-gateway")
            .join(format!("{info_hash_hex}.parts"))
    }

    pub fn is_wanted(&self, index: usize) -> bool {
        self.wanted[index] && !self.info.files[index].padding
    }

    /// Where the bytes `range` of the concatenated data go (padding is skipped).
    pub fn spans(&self, range: Range<u64>) -> Vec<Span> {
        let mut out = Vec::new();
        for i in self.info.files_in(range.clone()) {
            let f = &self.info.files[i];
            if f.padding || f.length == 0 {
                continue;
            }
            let start = range.start.max(f.offset);
            let end = range.end.min(f.offset + f.length);
            if start >= end {
                continue;
            }
            let dest = if self.wanted[i] {
                Dest::File {
                    index: i,
                    offset: start - f.offset,
                }
            } else {
                Dest::Parts { offset: start }
            };
            out.push(Span {
                dest,
                within: start - range.start..end - range.start,
            });
        }
        out
    }

    /// Piece priorities for the chosen files: 4 for a piece that touches a wanted file, 0
    /// for the rest.
    pub fn priorities(&self) -> Vec<u8> {
        (0..self.info.piece_count())
            .map(|p| {
                let range = self.info.piece_range(p);
                let touches = self
                    .info
                    .files_in(range)
                    .any(|i| self.is_wanted(i) && self.info.files[i].length > 0);
                if touches {
                    4
                } else {
                    0
                }
            })
            .collect()
    }
}

/// Parses a `--files` choice: comma-separated file indexes (`3`), ranges (`2-5`) and globs
/// (`*.mkv`, `season1/**`; `*` stays within a path component, `**` crosses them, `?` is one
/// character), matched against the `/`-joined path. Padding files are never chosen.
pub fn select(spec: &str, info: &Info) -> Result<Vec<bool>, String> {
    let mut wanted = vec![false; info.files.len()];
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let as_range = part
            .split_once('-')
            .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)));
        if let Ok(i) = part.parse::<usize>() {
            *wanted.get_mut(i).ok_or_else(|| {
                format!(
                    "--files: no file {i} (the torrent has {})",
                    info.files.len()
                )
            })? = true;
        } else if let Some((a, b)) = as_range {
            if a > b || b >= info.files.len() {
                return Err(format!(
                    "--files: bad range {part} (files 0-{})",
                    info.files.len().saturating_sub(1)
                ));
            }
            wanted[a..=b].iter_mut().for_each(|w| *w = true);
        } else {
            let mut any = false;
            for (i, f) in info.files.iter().enumerate() {
                if glob(part.as_bytes(), f.display_path().as_bytes()) {
                    wanted[i] = true;
                    any = true;
                }
            }
            if !any {
                return Err(format!("--files: {part:?} matches no file"));
            }
        }
    }
    for (w, f) in wanted.iter_mut().zip(&info.files) {
        *w &= !f.padding;
    }
    if !wanted.iter().any(|&w| w) {
        return Err("--files chose no file".into());
    }
    Ok(wanted)
}

/// Glob match: `*` (no `/`), `**` (anything), `?` (one non-`/` byte), other bytes literally.
fn glob(pat: &[u8], text: &[u8]) -> bool {
    match pat.first() {
        None => text.is_empty(),
        Some(b'*') if pat.get(1) == Some(&b'*') => {
            let rest = &pat[2..];
            let rest = rest.strip_prefix(b"/").unwrap_or(rest);
            (0..=text.len()).any(|i| glob(rest, &text[i..]))
        }
        Some(b'*') => {
            let rest = &pat[1..];
            for i in 0..=text.len() {
                if glob(rest, &text[i..]) {
                    return true;
                }
                if text.get(i) == Some(&b'/') {
                    return false;
                }
            }
            false
        }
        Some(b'?') => text.first().is_some_and(|&c| c != b'/') && glob(&pat[1..], &text[1..]),
        Some(&c) => text.first() == Some(&c) && glob(&pat[1..], &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::bt::metainfo::FileEntry;

    fn info(files: &[(&str, u64, bool)], piece_length: u64) -> Info {
        let mut offset = 0;
        let files: Vec<FileEntry> = files
            .iter()
            .map(|&(p, len, padding)| {
                let f = FileEntry {
                    path: p.split('/').map(String::from).collect(),
                    length: len,
                    offset,
                    padding,
                };
                offset += len;
                f
            })
            .collect();
        let pieces = offset.div_ceil(piece_length) as usize;
        Info {
            name: "show".into(),
            piece_length,
            pieces: vec![[0; 20]; pieces],
            files,
            multi_file: true,
            private: false,
            source: None,
        }
    }

    #[test]
    fn spans_skip_padding_and_send_unwanted_bytes_to_parts() {
        let i = info(
            &[
                ("a.mkv", 10, false),
                (".pad/6", 6, true),
                ("s1/b.srt", 20, false),
                ("empty", 0, false),
            ],
            16,
        );
        let l = Layout::new(Path::new("/out"), i, Some(vec![true, false, false, true])).unwrap();
        assert_eq!(l.path(2), PathBuf::from("/out/show/s1/b.srt"));
        // Piece 0 (0..16): a.mkv's 10 bytes, padding. Piece 1 (16..32): b.srt (unwanted).
        assert_eq!(
            l.spans(0..16),
            vec![Span {
                dest: Dest::File {
                    index: 0,
                    offset: 0
                },
                within: 0..10
            }]
        );
        assert_eq!(
            l.spans(16..32),
            vec![Span {
                dest: Dest::Parts { offset: 16 },
                within: 0..16
            }]
        );
        assert_eq!(l.priorities(), vec![4, 0, 0]);
        let all = Layout::new(Path::new("/out"), l.info().clone(), None).unwrap();
        assert_eq!(all.priorities(), vec![4, 4, 4]);
        assert_eq!(
            all.spans(8..20),
            vec![
                Span {
                    dest: Dest::File {
                        index: 0,
                        offset: 8
                    },
                    within: 0..2
                },
                Span {
                    dest: Dest::File {
                        index: 2,
                        offset: 0
                    },
                    within: 8..12
                }
            ]
        );
    }

    #[test]
    fn hostile_paths_are_refused_before_anything() {
        for bad in ["../etc/passwd", "a/../../b", "/abs", "a//b"] {
            let mut i = info(&[("x", 1, false)], 16);
            i.files[0].path = bad.split('/').map(String::from).collect();
            assert!(Layout::new(Path::new("/out"), i, None).is_err(), "{bad}");
        }
        let mut i = info(&[("x", 1, false)], 16);
        i.name = "..".into();
        assert!(Layout::new(Path::new("/out"), i, None).is_err());
    }

    #[test]
    fn file_choices_by_index_range_and_glob() {
        let i = info(
            &[
                ("s1/e1.mkv", 1, false),
                ("s1/e1.srt", 1, false),
                ("s2/e1.mkv", 1, false),
                ("pad", 1, true),
            ],
            16,
        );
        assert_eq!(select("0,2", &i).unwrap(), vec![true, false, true, false]);
        assert_eq!(
            select("1-3", &i).unwrap(),
            vec![false, true, true, false],
            "padding never"
        );
        assert!(select("*.mkv", &i).is_err(), "* stays within one component");
        assert_eq!(
            select("**/*.mkv", &i).unwrap(),
            vec![true, false, true, false]
        );
        assert_eq!(select("s1/*", &i).unwrap(), vec![true, true, false, false]);
        assert_eq!(
            select("s?/e1.srt", &i).unwrap(),
            vec![false, true, false, false]
        );
        assert!(select("9", &i).is_err());
        assert!(select("3-1", &i).is_err());
        assert!(select("*.avi", &i).is_err());
        assert!(select("3", &i).is_err(), "only padding chosen");
    }
}
