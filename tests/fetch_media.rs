//! Fetch-through with a real media player's access pattern: an MP4 made by Debian's ffmpeg
//! (`testsrc`, no `+faststart`, so the index, the `moov` atom, sits at the end) is seeded
//! only by python3-libtorrent; `ffprobe` reads its duration straight from `/stream/...`
//! (it must seek to the end for the index and back), and `ffmpeg -ss 5` extracts a frame
//! from the middle.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};
use support::require_tool;
use support::seeders::{self, LtOptions, LtTorrent};
use support::server::{request, Server};
use support::tempdir;

/// Offset of the first top-level MP4 box of type `kind`.
fn box_offset(mp4: &[u8], kind: &[u8; 4]) -> Option<usize> {
    let mut at = 0;
    while at + 8 <= mp4.len() {
        let size = u32::from_be_bytes(mp4[at..at + 4].try_into().unwrap()) as usize;
        if &mp4[at + 4..at + 8] == kind {
            return Some(at);
        }
        if size < 8 {
            return None;
        }
        at += size;
    }
    None
}

#[test]
fn ffprobe_and_ffmpeg_read_an_mp4_with_its_index_at_the_end() {
    let ffmpeg = require_tool("ffmpeg");
    let ffprobe = require_tool("ffprobe");
    let dir = tempdir();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mp4 = data.join("clip.mp4");
    let o = Command::new(&ffmpeg)
        .args(["-v", "error", "-f", "lavfi", "-i"])
        .arg("testsrc=duration=10:size=320x240:rate=25")
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .arg(&mp4)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bytes = std::fs::read(&mp4).unwrap();
    let (moov, mdat) = (box_offset(&bytes, b"moov"), box_offset(&bytes, b"mdat"));
    assert!(
        moov.unwrap() > mdat.unwrap(),
        "the index must be at the end for this test: moov {moov:?} mdat {mdat:?}"
    );

    let torrent = dir.path().join("clip.torrent");
    // Small pieces: the index, the middle and the start are different pieces.
    let meta = seeders::lt_torrent(&mp4, &torrent, 16384, &LtTorrent::default());
    let seed = seeders::libtorrent(&torrent, &data, LtOptions::default());
    let ih = seeders::hex(&meta.info_hash);
    let gw = Server::start(&dir.path().join("gw"), "[fetch]\nwait_secs = 20\n");
    let magnet = format!("magnet:?xt=urn:btih:{ih}&x.pe={}", seed.peer_arg());
    let r = request(gw.addr, "POST", "/api/torrents", &[], magnet.as_bytes());
    assert!(r.status == 201 || r.status == 202, "{}", r.text());
    // Straight away: the stream itself waits (bounded) for the metadata.
    let url = format!("http://{}/stream/{ih}/clip.mp4", gw.addr);
    let o = Command::new(&ffprobe)
        .args(["-v", "error", "-show_entries", "format=duration"])
        .args(["-of", "default=noprint_wrappers=1:nokey=1"])
        .arg(&url)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let duration: f64 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
    assert!((duration - 10.0).abs() < 0.1, "duration {duration}");

    let png = dir.path().join("frame.png");
    let o = Command::new(&ffmpeg)
        .args(["-v", "error", "-ss", "5", "-i"])
        .arg(&url)
        .args(["-frames:v", "1"])
        .arg(&png)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let frame = std::fs::read(&png).unwrap();
    assert!(frame.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let o = Command::new(&ffprobe)
        .args(["-v", "error", "-show_entries", "stream=width,height"])
        .args(["-of", "csv=p=0"])
        .arg(&png)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "320,240");

    // The players read the end and the middle, so the pieces cached are those they asked
    // for; the file's bytes come out identical too.
    let until = Instant::now() + Duration::from_secs(5);
    while gw.get(&format!("/api/torrents/{ih}")).json()["stats"]["readers"] != 0 {
        assert!(Instant::now() < until, "readers not released");
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = gw.get(&format!("/stream/{ih}/0"));
    assert!(r.body == bytes, "the streamed MP4 differs");
}
