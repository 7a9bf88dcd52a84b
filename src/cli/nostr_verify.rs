//! `nostr-verify`: check Nostr events (one JSON object per line) - id and BIP-340 signature -
//! and report how many are valid and how fast; exit 1 if any is not.

use super::{print_out, read_input, CliError};
use crate::proto::nostr::Event;
use argh::FromArgs;
use std::time::Instant;

/// Verify Nostr events, one JSON object per line (ids and signatures); exit 1 if any fails.
#[derive(FromArgs)]
#[argh(subcommand, name = "nostr-verify")]
pub struct Args {
    /// file of events, one per line
    #[argh(positional)]
    file: String,
}

pub fn run(args: Args) -> Result<(), CliError> {
    let text = read_input(&args.file)?;
    let text = String::from_utf8(text)
        .map_err(|_| CliError::input(format!("{}: not UTF-8", args.file)))?;
    let events: Vec<(usize, Event)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            Event::parse(l.as_bytes())
                .map(|e| (i + 1, e))
                .map_err(|e| CliError::input(format!("{}:{}: {e}", args.file, i + 1)))
        })
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    let bad: Vec<String> = events
        .iter()
        .filter_map(|(line, ev)| ev.verify().err().map(|e| format!("line {line}: {e}")))
        .collect();
    let took = started.elapsed().as_secs_f64();
    let rate = if took > 0.0 {
        events.len() as f64 / took
    } else {
        0.0
    };
    print_out(&format!(
        "{} events, {} valid, {} invalid; {:.0} verifications/s on one core\n",
        events.len(),
        events.len() - bad.len(),
        bad.len(),
        rate
    ))?;
    match bad.first() {
        None => Ok(()),
        Some(first) => Err(CliError::failed(format!(
            "{} invalid events, first at {first}",
            bad.len()
        ))),
    }
}
