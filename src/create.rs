//! Torrent creation from a file or directory on disk: walk, map, hash in parallel, build.
//!
//! Files of a directory are ordered by their `/`-joined relative path compared as bytes (the
//! order mktorrent uses, so the same content gives the same info-hash). Empty files are kept.
//! Symbolic links to files are followed; links to directories are not, so a loop cannot hang
//! the walk. Every name must be UTF-8 and pass the same path checks that parsing applies.

use crate::hash::{self, Content, Part};
use crate::proto::bt::magnet::Magnet;
use crate::proto::bt::metainfo::{self, NewInfo, TorrentExtras};
use crate::store::mmap::MappedFile;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Most files in one created torrent.
pub const MAX_FILES: usize = 1_000_000;
/// Target piece count for the automatic piece length.
pub const AUTO_MAX_PIECES: u64 = 1000;
/// Bounds of the automatic piece length.
pub const AUTO_MIN_PIECE: u64 = 16 << 10;
pub const AUTO_MAX_PIECE: u64 = 16 << 20;

/// The automatic piece length: the smallest power of two from 16 KiB to 16 MiB that keeps the
/// piece count at or below 1000 (1 GiB gets 2 MiB pieces, 100 MB gets 128 KiB).
pub fn auto_piece_length(total: u64) -> u64 {
    let mut len = AUTO_MIN_PIECE;
    while len < AUTO_MAX_PIECE && total.div_ceil(len) > AUTO_MAX_PIECES {
        len *= 2;
    }
    len
}

/// What to create.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub piece_length: Option<u64>,
    pub trackers: Vec<String>,
    pub webseeds: Vec<String>,
    pub private: bool,
    pub comment: Option<String>,
    pub source: Option<String>,
    pub created_by: Option<String>,
    /// Seconds since the epoch for `creation date`; `None` leaves it out.
    pub creation_date: Option<i64>,
}

/// A created torrent.
#[derive(Debug, Clone)]
pub struct Created {
    pub torrent: Vec<u8>,
    pub info_hash: [u8; 20],
    pub name: String,
    pub total_length: u64,
    pub piece_length: u64,
    pub piece_count: usize,
    pub magnet: String,
}

/// Why a torrent could not be created.
#[derive(Debug)]
pub enum Error {
    /// The input is unusable (bad path, bad name, bad option): the user must change it.
    Input(String),
    /// Reading the input failed.
    Io { path: PathBuf, source: io::Error },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Input(m) => f.write_str(m),
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for Error {}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A file found by the walk.
struct Found {
    rel: Vec<String>,
    path: PathBuf,
}

/// Creates a torrent for `path` on the current rayon pool. `on_total` is told the byte count
/// before hashing starts; `progress` then receives hashed byte counts from worker threads.
pub fn create(
    path: &Path,
    opts: &Options,
    on_total: &dyn Fn(u64),
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Created, Error> {
    let meta = fs::metadata(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => {
            Error::Input(format!("{}: no such file or directory", path.display()))
        }
        _ => io_err(path)(e),
    })?;
    let name = root_name(path)?;
    let single = meta.is_file();
    let found = if single {
        vec![Found {
            rel: vec![name.clone()],
            path: path.to_path_buf(),
        }]
    } else if meta.is_dir() {
        let mut found = Vec::new();
        walk(path, &mut Vec::new(), &mut found)?;
        if found.is_empty() {
            return Err(Error::Input(format!(
                "{}: directory has no files",
                path.display()
            )));
        }
        found.sort_by_cached_key(|f| f.rel.join("/"));
        found
    } else {
        return Err(Error::Input(format!(
            "{}: not a regular file or directory",
            path.display()
        )));
    };

    let maps = found
        .iter()
        .map(|f| MappedFile::open(&f.path).map_err(io_err(&f.path)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut content = Content::new();
    maps.iter()
        .for_each(|m| content.push(Part::Data(m.bytes())));
    let total = content.len();

    let piece_length = match opts.piece_length {
        Some(len) => {
            if !len.is_power_of_two()
                || !(metainfo::MIN_PIECE_LENGTH..=metainfo::MAX_PIECE_LENGTH).contains(&len)
            {
                return Err(Error::Input(format!(
                    "piece length must be a power of two from {} to {}, got {len}",
                    metainfo::MIN_PIECE_LENGTH,
                    metainfo::MAX_PIECE_LENGTH
                )));
            }
            len
        }
        None => auto_piece_length(total),
    };
    on_total(total);
    let pieces = hash::piece_hashes(&content, piece_length, progress)
        .into_iter()
        .collect::<Option<Vec<_>>>()
        // Every part is Data, so no piece can be missing unless a file shrank under us.
        .ok_or_else(|| Error::Input("a file changed while it was being hashed".into()))?;

    let file_list: Vec<(Vec<String>, u64)> = found
        .iter()
        .zip(&maps)
        .map(|(f, m)| (f.rel.clone(), m.bytes().len() as u64))
        .collect();
    let info = metainfo::build_info(&NewInfo {
        name: &name,
        piece_length,
        pieces: &pieces,
        files: (!single).then_some(&file_list[..]),
        single_length: total,
        private: opts.private,
        source: opts.source.as_deref(),
    });
    let torrent = metainfo::build_torrent(
        &info,
        &TorrentExtras {
            trackers: &opts.trackers,
            webseeds: &opts.webseeds,
            comment: opts.comment.as_deref(),
            created_by: opts.created_by.as_deref(),
            creation_date: opts.creation_date,
        },
    );
    // Parse what we built: the same validation any downloader applies, and the info-hash.
    let parsed = metainfo::parse(&torrent)
        .map_err(|e| Error::Input(format!("created torrent does not validate: {e}")))?;
    let magnet = Magnet {
        info_hash: parsed.info_hash,
        name: Some(name.clone()),
        trackers: opts.trackers.clone(),
        webseeds: opts.webseeds.clone(),
        length: Some(total),
        ..Magnet::default()
    };
    Ok(Created {
        torrent,
        info_hash: parsed.info_hash,
        name,
        total_length: total,
        piece_length,
        piece_count: pieces.len(),
        magnet: magnet.to_uri(),
    })
}

/// The torrent name: the last component of the path as given (or of its canonical form for
/// paths such as `.`).
fn root_name(path: &Path) -> Result<String, Error> {
    let canonical;
    let named = match path.file_name() {
        Some(n) => n,
        None => {
            canonical = fs::canonicalize(path).map_err(io_err(path))?;
            canonical
                .file_name()
                .ok_or_else(|| Error::Input(format!("{}: has no name", path.display())))?
        }
    };
    utf8_component(named, path)
}

fn utf8_component(name: &std::ffi::OsStr, at: &Path) -> Result<String, Error> {
    let s = name
        .to_str()
        .ok_or_else(|| Error::Input(format!("{}: name is not valid UTF-8", at.display())))?;
    metainfo::check_component(s)
        .map_err(|r| Error::Input(format!("{}: name {r}", at.display())))?;
    Ok(s.to_string())
}

fn walk(dir: &Path, rel: &mut Vec<String>, found: &mut Vec<Found>) -> Result<(), Error> {
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io_err(&path))?;
        rel.push(utf8_component(&entry.file_name(), &path)?);
        if kind.is_dir() {
            walk(&path, rel, found)?;
        } else if kind.is_file() || (kind.is_symlink() && path.is_file()) {
            if found.len() == MAX_FILES {
                return Err(Error::Input(format!("more than {MAX_FILES} files")));
            }
            found.push(Found {
                rel: rel.clone(),
                path,
            });
        }
        rel.pop();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_piece_length_rule() {
        assert_eq!(auto_piece_length(0), 16 << 10);
        assert_eq!(auto_piece_length(1000 * (16 << 10)), 16 << 10);
        assert_eq!(auto_piece_length(1000 * (16 << 10) + 1), 32 << 10);
        assert_eq!(auto_piece_length(100_000_000), 128 << 10);
        assert_eq!(auto_piece_length(1 << 30), 2 << 20);
        assert_eq!(auto_piece_length(1 << 40), 16 << 20);
    }
}
