//! `create`: make a .torrent from a file or directory, print its info-hash and magnet link.

use super::{print_out, progress::Progress, with_threads, CliError};
use crate::create::{self, Options};
use crate::proto::hex;
use argh::FromArgs;
use std::path::{Path, PathBuf};

/// Create a .torrent for a file or directory; prints the info-hash and the magnet link.
/// Without --piece-length the piece length is the smallest power of two from 16 KiB to 16 MiB
/// that keeps the piece count at or below 1000.
#[derive(FromArgs)]
#[argh(subcommand, name = "create")]
pub struct Args {
    /// the file or directory to make a torrent of
    #[argh(positional)]
    path: PathBuf,
    /// where to write the torrent (default: <name>.torrent in the current directory)
    #[argh(option, short = 'o')]
    output: Option<PathBuf>,
    /// piece length in bytes, a power of two (suffixes K, M allowed, e.g. 2M)
    #[argh(option, from_str_fn(parse_piece_length))]
    piece_length: Option<u64>,
    /// tracker announce URL (repeatable; each becomes its own tier)
    #[argh(option)]
    tracker: Vec<String>,
    /// webseed URL for url-list, BEP-19 (repeatable)
    #[argh(option)]
    webseed: Vec<String>,
    /// mark the torrent private (BEP-27)
    #[argh(switch)]
    private: bool,
    /// comment stored in the torrent
    #[argh(option)]
    comment: Option<String>,
    /// source tag stored in the info dict (changes the info-hash)
    #[argh(option)]
    source: Option<String>,
    /// leave out the creation date (the same input then gives byte-identical output)
    #[argh(switch)]
    no_date: bool,
    /// hashing threads (default: one per core)
    #[argh(option)]
    threads: Option<usize>,
}

fn parse_piece_length(text: &str) -> Result<u64, String> {
    super::parse_bytes(text)
}

pub fn run(args: Args) -> Result<(), CliError> {
    for url in args.tracker.iter().chain(&args.webseed) {
        if !url.contains("://") {
            return Err(CliError::input(format!("{url:?} is not a URL")));
        }
    }
    let creation_date = (!args.no_date).then(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    });
    let opts = Options {
        piece_length: args.piece_length,
        trackers: args.tracker,
        webseeds: args.webseed,
        private: args.private,
        comment: args.comment,
        source: args.source,
        created_by: Some(concat!("torrent-gateway/", env!("CARGO_PKG_VERSION")).to_string()),
        creation_date,
    };
    let progress = Progress::start("hashing");
    let created = with_threads(args.threads, || {
        create::create(&args.path, &opts, &|t| progress.set_total(t), &|n| {
            progress.add(n)
        })
    })?
    .map_err(|e| match e {
        create::Error::Input(m) => CliError::input(m),
        io @ create::Error::Io { .. } => CliError::failed(io),
    })?;
    drop(progress);

    let output = args
        .output
        .unwrap_or_else(|| PathBuf::from(format!("{}.torrent", created.name)));
    write_atomically(&output, &created.torrent)?;
    eprintln!(
        "created {}: {} in {} pieces of {}",
        output.display(),
        super::human_bytes(created.total_length),
        created.piece_count,
        super::human_bytes(created.piece_length)
    );
    print_out(&format!(
        "{}\n{}\n",
        hex::encode(&created.info_hash),
        created.magnet
    ))
}

/// Writes through a temporary file and a rename, so a crash never leaves half a torrent.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let file_name = path
        .file_name()
        .ok_or_else(|| CliError::input(format!("{}: not a file name", path.display())))?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        CliError::failed(format!("writing {}: {e}", path.display()))
    })
}
