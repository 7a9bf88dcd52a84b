//! `verify`: recheck data against a torrent; exit 1 naming bad pieces and their files.

use super::{load_torrent, print_out, progress::Progress, with_threads, CliError};
use crate::verify;
use argh::FromArgs;
use std::fmt::Write;
use std::path::PathBuf;

/// Recheck data on disk against a torrent's piece hashes. PATH is the torrent's file or top
/// directory, or the directory that holds it under the torrent's name.
#[derive(FromArgs)]
#[argh(subcommand, name = "verify")]
pub struct Args {
    /// the .torrent file
    #[argh(positional)]
    torrent: String,
    /// the data to check
    #[argh(positional)]
    path: PathBuf,
    /// hashing threads (default: one per core)
    #[argh(option)]
    threads: Option<usize>,
}

pub fn run(args: Args) -> Result<(), CliError> {
    let meta = load_torrent(&args.torrent)?;
    if !args.path.exists() {
        return Err(CliError::input(format!(
            "{}: no such file or directory",
            args.path.display()
        )));
    }
    let progress = Progress::start("verifying");
    progress.set_total(meta.info.total_length());
    let report = with_threads(args.threads, || {
        verify::verify(&meta, &args.path, &|n| progress.add(n))
    })?
    .map_err(CliError::failed)?;
    drop(progress);

    let mut out = String::new();
    for problem in &report.file_problems {
        let _ = writeln!(out, "file {problem}");
    }
    for &piece in &report.bad_pieces {
        let files = verify::files_of_piece(&meta, piece);
        let _ = writeln!(out, "piece {piece} bad: {}", files.join(", "));
    }
    if report.ok() {
        let _ = writeln!(
            out,
            "ok: {} pieces verified in {}",
            report.piece_count,
            report.root.display()
        );
    }
    print_out(&out)?;
    if report.ok() {
        Ok(())
    } else {
        Err(CliError::failed(format!(
            "{} of {} pieces failed in {}",
            report.bad_pieces.len(),
            report.piece_count,
            report.root.display()
        )))
    }
}
