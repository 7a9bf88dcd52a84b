//! A progress bar on stderr, drawn by its own thread only when stderr is a terminal.

use crate::hash::Counter;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Shared between the workers that count and the thread that draws.
#[derive(Default)]
struct State {
    done: Counter,
    total: AtomicU64,
    stop: AtomicBool,
}

/// A running progress bar; dropping it erases the bar.
pub struct Progress {
    state: Arc<State>,
    drawer: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts a bar labelled `label` (drawn only if stderr is a terminal).
    pub fn start(label: &'static str) -> Progress {
        let state = Arc::new(State::default());
        let drawer = std::io::stderr().is_terminal().then(|| {
            let state = Arc::clone(&state);
            std::thread::Builder::new()
                .name("progress".into())
                .spawn(move || draw_until_stopped(label, &state))
                .ok()
        });
        Progress {
            state,
            drawer: drawer.flatten(),
        }
    }

    pub fn set_total(&self, total: u64) {
        self.state.total.store(total, Ordering::Relaxed);
    }

    pub fn add(&self, n: u64) {
        self.state.done.add(n);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.drawer.take() {
            handle.thread().unpark();
            let _ = handle.join();
        }
    }
}

fn draw_until_stopped(label: &str, state: &State) {
    let started = Instant::now();
    let mut err = std::io::stderr();
    while !state.stop.load(Ordering::Relaxed) {
        std::thread::park_timeout(Duration::from_millis(100));
        let total = state.total.load(Ordering::Relaxed).max(1);
        let done = state.done.get().min(total);
        let filled = (done * 30 / total) as usize;
        let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-3);
        let _ = write!(
            err,
            "\r{label} [{}{}] {:3}% {}/s ",
            "#".repeat(filled),
            ".".repeat(30 - filled),
            done * 100 / total,
            super::human_bytes(rate as u64)
        );
    }
    let _ = write!(err, "\r{}\r", " ".repeat(label.len() + 60));
}
