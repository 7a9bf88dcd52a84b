//! Our `download` command with misbehaving peers (tests/support/bad_seed.rs) next to honest
//! ones: a peer sending one corrupt block of a piece the honest peers also serve is banned,
//! and only it; a peer lying in its bitfield, one that never answers, one that chokes with
//! requests queued and one that sends blocks nobody asked for cost time but never
//! correctness. Every download completes byte-identical, and the bad peer's own counters show
//! that its misbehaviour really happened during the run.

mod support;

use std::net::Ipv4Addr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use support::bad_seed::{torrent_data, BadSeed, Mode};
use support::client::{self, assert_same_file, Finished};
use support::seeders::{self, LtTorrent};
use support::{tempdir, write_file};
use torrent_gateway::proto::bt::metainfo::Metainfo;

/// 16 pieces of 64 KiB: four blocks each.
const LEN: usize = 1 << 20;
const PIECE: u32 = 65536;
/// Honest peers wait this long before each block, so the bad peer (full speed) is asked
/// for a good share of the blocks.
const HONEST_DELAY: Duration = Duration::from_millis(15);

struct Case {
    dir: tempfile::TempDir,
    meta: Metainfo,
    torrent: std::path::PathBuf,
    data: Vec<u8>,
}

fn case(name: &str) -> Case {
    let dir = tempdir();
    let file = write_file(&dir.path().join("data"), name, LEN, 77);
    let torrent = dir.path().join(format!("{name}.torrent"));
    let meta = seeders::lt_torrent(&file, &torrent, PIECE, &LtTorrent::default());
    let data = torrent_data(&meta, &dir.path().join("data"));
    Case {
        dir,
        meta,
        torrent,
        data,
    }
}

/// The bad peer's address; honest peers get 127.0.0.3 and up. Each peer on its own loopback
/// address, as on the Internet: a client may ban or limit by IP, and one address for all would
/// punish the honest peers for the bad one.
const BAD_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

impl Case {
    /// Honest peer number `n` (0, 1, ...): on 127.0.0.(3 + n), slowed down.
    fn honest(&self, n: u8) -> BadSeed {
        let ip = Ipv4Addr::new(127, 0, 0, 3 + n);
        BadSeed::start_at(
            ip,
            &self.meta,
            self.data.clone(),
            Mode::Honest,
            HONEST_DELAY,
        )
    }

    fn bad(&self, mode: Mode) -> BadSeed {
        BadSeed::start_at(BAD_IP, &self.meta, self.data.clone(), mode, Duration::ZERO)
    }

    /// Downloads from `peers` and checks the result is complete and byte-identical.
    fn download(&self, peers: &[&BadSeed]) -> Finished {
        let out = self.dir.path().join("out");
        let out_s = out.to_str().unwrap().to_string();
        let peer_args: Vec<String> = peers.iter().map(|p| p.peer_arg()).collect();
        let mut args = vec![
            self.torrent.to_str().unwrap(),
            "-o",
            &out_s,
            "--json",
            "--timeout",
            "60",
        ];
        for p in &peer_args {
            args.extend(["--peer", p.as_str()]);
        }
        let run = client::download(self.dir.path(), &args, 150);
        run.assert_complete();
        let name = &self.meta.info.name;
        assert_same_file(&out.join(name), &self.dir.path().join("data").join(name));
        run
    }
}

fn assert_not_banned(run: &Finished, peer: &BadSeed) {
    assert!(
        !run.banned().contains(&peer.peer_arg()),
        "honest {} banned: {run}",
        peer.addr
    );
}

#[test]
fn a_peer_sending_a_corrupt_block_is_banned_and_only_it() {
    // The honest peers can serve piece 5 before the bad one is asked for it (one full-suite
    // run in several): then the download is tried again, at most three times in all.
    let mut tries = 0;
    let (bad, run) = loop {
        tries += 1;
        let c = case("corrupt.bin");
        let bad = c.bad(Mode::CorruptBlock { piece: 5 });
        let (h1, h2) = (c.honest(0), c.honest(1));
        let run = c.download(&[&bad, &h1, &h2]);
        if bad.stats.corrupt_blocks.load(Relaxed) >= 1 || tries == 3 {
            break (bad, run);
        }
    };
    assert!(
        bad.stats.corrupt_blocks.load(Relaxed) >= 1,
        "the corrupt block was never asked for: {run}"
    );
    assert_eq!(run.banned(), vec![bad.peer_arg()], "{run}");
    let wasted = run.summary()["wasted"].as_u64().unwrap();
    assert!(wasted > 0, "a failed piece is wasted bytes: {run}");
}

#[test]
fn a_peer_lying_in_its_bitfield_does_not_stall_the_download() {
    let c = case("lying.bin");
    let bad = c.bad(Mode::LyingBitfield);
    let honest = c.honest(0);
    let run = c.download(&[&bad, &honest]);
    assert!(
        bad.stats.requests_dropped.load(Relaxed) > 0,
        "no request for a missing piece reached the liar: {run}"
    );
    assert_not_banned(&run, &honest);
}

#[test]
fn a_peer_that_never_answers_does_not_stall_the_download() {
    let c = case("silent.bin");
    let bad = c.bad(Mode::NeverAnswers);
    let honest = c.honest(0);
    let run = c.download(&[&bad, &honest]);
    assert!(bad.stats.requests_dropped.load(Relaxed) > 0, "{run}");
    assert_eq!(bad.bytes_served(), 0);
    assert_not_banned(&run, &honest);
}

#[test]
fn a_peer_choking_mid_request_does_not_lose_blocks() {
    let c = case("choky.bin");
    let bad = c.bad(Mode::ChokeMidRequest);
    let honest = c.honest(0);
    let run = c.download(&[&bad, &honest]);
    assert!(
        bad.stats.chokes.load(Relaxed) > 0,
        "it never had a queue to drop: {run}"
    );
    assert_not_banned(&run, &honest);
}

#[test]
fn unrequested_blocks_are_ignored() {
    let c = case("pushy.bin");
    let bad = c.bad(Mode::UnrequestedBlocks);
    let honest = c.honest(0);
    let run = c.download(&[&bad, &honest]);
    assert!(bad.stats.unrequested_blocks.load(Relaxed) > 0, "{run}");
    // The garbage was never written: no piece failed because of it, so nobody was banned.
    assert!(run.banned().is_empty(), "{run}");
    assert_not_banned(&run, &honest);
}
