//! The command line: argh definitions, dispatch, exit codes and one-line error reporting.
//!
//! Exit codes: 0 success, 1 a verification or operational failure, 2 bad usage or bad input.
//! Every error is printed once as `error: <cause>` on stderr; a broken stdout pipe ends the
//! program quietly.

mod create;
mod dht;
mod dht_items;
mod dht_sample;
mod download;
mod info;
mod logging;
mod nostr_verify;
mod progress;
mod serve;
mod verify;

use argh::FromArgs;
use std::fmt;
use std::io::Write;
use std::process::ExitCode;

/// torrent-gateway: a BitTorrent gateway (serve) and a CLI to create, inspect and verify
/// torrents.
#[derive(FromArgs)]
struct Cli {
    #[argh(subcommand)]
    command: Command,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    Create(create::Args),
    Dht(dht::Args),
    Download(download::Args),
    Info(info::Args),
    NostrVerify(nostr_verify::Args),
    Serve(serve::Args),
    Verify(verify::Args),
}

/// A failure to report: its message and the exit code it maps to.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

impl CliError {
    /// Bad usage or bad input (exit 2).
    pub fn input(message: impl fmt::Display) -> Self {
        CliError {
            code: 2,
            message: message.to_string(),
        }
    }

    /// A verification or operational failure (exit 1).
    pub fn failed(message: impl fmt::Display) -> Self {
        CliError {
            code: 1,
            message: message.to_string(),
        }
    }
}

/// Runs the program with the process arguments and returns its exit code.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let cli = match Cli::from_args(&["torrent-gateway"], argv.get(1..).unwrap_or_default()) {
        Ok(cli) => cli,
        Err(early) => {
            return match early.status {
                Ok(()) => {
                    print!("{}", early.output);
                    ExitCode::SUCCESS
                }
                Err(()) => {
                    eprint!("{}", early.output);
                    ExitCode::from(2)
                }
            };
        }
    };
    // The server reports its addresses at info level; the one-shot commands stay quiet.
    let level = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    let format = match &cli.command {
        Command::Serve(a) => a.log_format,
        _ => None,
    };
    logging::init(level, format);
    let result = match cli.command {
        Command::Create(a) => create::run(a),
        Command::Dht(a) => dht::run(a),
        Command::Download(a) => download::run(a),
        Command::Info(a) => info::run(a),
        Command::NostrVerify(a) => nostr_verify::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Verify(a) => verify::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

/// Writes text to stdout; a closed pipe (`| head`) is not an error.
pub(crate) fn print_out(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CliError::failed(format!("writing output: {e}")))
        }
        _ => Ok(()),
    }
}

/// Reads a file given on the command line; a missing file is bad input.
fn read_input(path: &str) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::IsADirectory => {
            CliError::input(format!("{path}: {e}"))
        }
        _ => CliError::failed(format!("{path}: {e}")),
    })
}

/// Loads and validates a torrent file named on the command line.
fn load_torrent(path: &str) -> Result<crate::proto::bt::metainfo::Metainfo, CliError> {
    let bytes = read_input(path)?;
    crate::proto::bt::metainfo::parse(&bytes)
        .map_err(|e| CliError::input(format!("bad torrent file {path}: {e}")))
}

/// Runs `f` on a rayon pool of `threads` workers (the global pool when `None`).
fn with_threads<T: Send>(
    threads: Option<usize>,
    f: impl FnOnce() -> T + Send,
) -> Result<T, CliError> {
    match threads {
        None => Ok(f()),
        Some(0) => Err(CliError::input("--threads must be at least 1")),
        Some(n) => {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .map_err(|e| CliError::failed(format!("starting {n} threads: {e}")))?;
            Ok(pool.install(f))
        }
    }
}

/// Parses a byte count with an optional binary suffix: `262144`, `256K`, `2M`, `2MiB`.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(format!("unknown unit in {text:?} (use K, M or G)")),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a byte count"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// A byte count for people: `1.5 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts() {
        assert_eq!(parse_bytes("262144"), Ok(262_144));
        assert_eq!(parse_bytes("256K"), Ok(262_144));
        assert_eq!(parse_bytes("2MiB"), Ok(2 << 20));
        assert!(parse_bytes("2X").is_err());
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("99999999999999G").is_err());
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 19), "1.5 MiB");
    }
}
