//! Requests the poller starts itself instead of handing them to a worker: ones whose answer
//! comes from another thread that already waits on something else, so no worker should sit
//! blocked for them (the Redis tracker's announces, answered on a Redis lane's thread). The
//! poller keeps the connection while the answer is out, and the answer comes back through
//! the same channel and wake-up the workers use, so a batch of answers costs the poller one
//! wake-up.

use super::poller::Back;
use super::respond::Outgoing;
use super::router::{Method, Reply, Req};
use crossbeam_channel::Sender;
use std::sync::Arc;

/// A listener's early route.
pub trait EarlyRoute: Send + Sync {
    /// Whether the poller starts this request itself (a cheap look at method and path; only
    /// requests without a body are asked).
    fn claims(&self, method: Method, path: &str) -> bool;

    /// Starts a claimed request; its reply, immediate or not, goes to `later`.
    fn start(&self, req: &mut Req<'_>, later: Later);
}

/// Where a request the poller started is answered, from any thread. Dropped unanswered (the
/// thread that had it gave up or died), it closes the connection.
pub struct Later {
    pub(super) id: u64,
    pub(super) close: bool,
    pub(super) minor: u8,
    pub(super) back: Sender<Back>,
    pub(super) waker: Arc<mio::Waker>,
    pub(super) answered: bool,
}

impl Later {
    /// Sends `reply` on the connection.
    pub fn answer(mut self, reply: Reply) {
        self.answered = true;
        let out = Outgoing::new(reply, false, self.close, self.minor);
        self.send(Some(out));
    }

    fn send(&self, out: Option<Outgoing>) {
        if self.back.send(Back::Answer(self.id, out)).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

impl Drop for Later {
    fn drop(&mut self) {
        if !self.answered {
            self.send(None);
        }
    }
}
