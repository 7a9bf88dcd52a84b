//! Recheck of data on disk against a torrent's piece hashes (rayon), naming bad pieces and the
//! files they touch.
//!
//! The content path is the torrent's data itself (the file, or the top directory), or the
//! directory that holds it under the torrent's name, as a download client saves it. Missing
//! files and short files are holes: the pieces over them fail. Padding files are zeros and are
//! never read from disk.

use crate::hash::{self, Content, Part};
use crate::proto::bt::metainfo::Metainfo;
use crate::store::mmap::MappedFile;
use std::io;
use std::path::{Path, PathBuf};

/// The outcome of a recheck.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub root: PathBuf,
    pub piece_count: usize,
    /// Indices of pieces whose data is missing or does not match.
    pub bad_pieces: Vec<usize>,
    /// One line per file that is missing or has the wrong size.
    pub file_problems: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.bad_pieces.is_empty() && self.file_problems.is_empty()
    }
}

/// Where the torrent's data is, given what the user pointed at.
pub fn content_root(meta: &Metainfo, path: &Path) -> PathBuf {
    let nested = path.join(&meta.info.name);
    let use_nested = if meta.info.multi_file {
        nested.is_dir()
    } else {
        path.is_dir()
    };
    if use_nested {
        nested
    } else {
        path.to_path_buf()
    }
}

/// Rechecks every piece; I/O errors other than a missing file are returned.
pub fn verify(meta: &Metainfo, path: &Path, progress: &(dyn Fn(u64) + Sync)) -> io::Result<Report> {
    let root = content_root(meta, path);
    let info = &meta.info;
    let mut file_problems = Vec::new();
    let mut maps = Vec::with_capacity(info.files.len());
    for f in &info.files {
        if f.padding {
            maps.push(None);
            continue;
        }
        let file_path = if info.multi_file {
            f.path.iter().fold(root.clone(), |p, c| p.join(c))
        } else {
            root.clone()
        };
        match MappedFile::open(&file_path) {
            Ok(m) => {
                let len = m.bytes().len() as u64;
                if len != f.length {
                    file_problems.push(format!(
                        "{}: {len} bytes, expected {}",
                        f.display_path(),
                        f.length
                    ));
                }
                maps.push(Some(m));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                file_problems.push(format!("{}: missing", f.display_path()));
                maps.push(None);
            }
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("{}: {e}", file_path.display()),
                ))
            }
        }
    }

    let mut content = Content::new();
    for (f, map) in info.files.iter().zip(&maps) {
        match map {
            _ if f.padding => content.push(Part::Zeros(f.length)),
            Some(m) => {
                let data = m.bytes();
                let have = (data.len() as u64).min(f.length);
                content.push(Part::Data(&data[..have as usize]));
                content.push(Part::Missing(f.length - have));
            }
            None => content.push(Part::Missing(f.length)),
        }
    }
    let hashes = hash::piece_hashes(&content, info.piece_length, progress);
    let bad_pieces = hashes
        .iter()
        .zip(&info.pieces)
        .enumerate()
        .filter(|(_, (got, want))| got.as_ref() != Some(*want))
        .map(|(i, _)| i)
        .collect();
    Ok(Report {
        root,
        piece_count: info.piece_count(),
        bad_pieces,
        file_problems,
    })
}

/// Paths of the non-padding files that piece `index` touches.
pub fn files_of_piece(meta: &Metainfo, index: usize) -> Vec<String> {
    let info = &meta.info;
    info.files[info.files_in(info.piece_range(index))]
        .iter()
        .filter(|f| !f.padding && f.length > 0)
        .map(|f| f.display_path())
        .collect()
}
