//! The on-cluster preemption watcher (docs/protocol.md#preemption): a thread that long-polls.
//!
//! 1. an initial poll with `timeout_seconds=0` (client timeout 10 s); a failure counts as "no";
//! 2. then polls with `timeout_seconds=60` (client timeout 70 s) until the answer is "yes" or the
//!    context closes; after a failure other than a timeout it waits 10 s.
//!
//! "Yes" is sticky: it sets the context's [`PreemptState`] and the thread ends. Unlike Python's
//! daemon thread, this one is joined at close: [`PreemptionPoll::cancel`] interrupts the request
//! in flight, so close never waits for the long poll.

use super::PreemptState;
use crate::error::{Kind, Result};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The long poll of the first request.
pub const INITIAL_POLL_SECONDS: u64 = 0;
/// The long poll of the following requests.
pub const POLL_SECONDS: u64 = 60;
/// How long the watcher waits after a failed poll.
pub const ERROR_SLEEP: Duration = Duration::from_secs(10);

/// Asks whether the allocation is preempted.
pub trait PreemptionPoll: Send + Sync + 'static {
    /// Wait up to `longpoll_seconds` on the server for a preemption signal (the client's own
    /// limit is `longpoll_seconds + 10`). `Ok(true)`: preempted.
    fn poll(&self, longpoll_seconds: u64) -> Result<bool>;
    /// Interrupt the poll in flight and make later polls fail at once (from another thread).
    fn cancel(&self);
}

/// The watcher thread.
pub struct LongPollWatcher {
    poller: Arc<dyn PreemptionPoll>,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl LongPollWatcher {
    /// Start watching; waits at most `first_answer` for the initial poll's answer, so that the
    /// first `should_preempt` after init already knows it (Python's first call blocks instead).
    pub fn start(
        state: Arc<PreemptState>,
        poller: Arc<dyn PreemptionPoll>,
        first_answer: Duration,
    ) -> Result<LongPollWatcher> {
        let (stop_tx, stop_rx) = bounded::<()>(1);
        let (first_tx, first_rx) = bounded::<()>(1);
        let p = poller.clone();
        let thread = std::thread::Builder::new()
            .name("detcore-preempt-poll".into())
            .spawn(move || watch(state, p, stop_rx, first_tx))
            .map_err(|e| err!(Internal, "cannot start the preemption watcher: {e}"))?;
        let _ = first_rx.recv_timeout(first_answer);
        Ok(LongPollWatcher {
            poller,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Stop the thread (interrupting its request) and join it.
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
            self.poller.cancel();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for LongPollWatcher {
    fn drop(&mut self) {
        self.stop();
    }
}

fn stopped(rx: &Receiver<()>) -> bool {
    !matches!(rx.try_recv(), Err(crossbeam_channel::TryRecvError::Empty))
}

fn watch(
    state: Arc<PreemptState>,
    poller: Arc<dyn PreemptionPoll>,
    stop: Receiver<()>,
    first: Sender<()>,
) {
    let initial = match poller.poll(INITIAL_POLL_SECONDS) {
        Ok(v) => v,
        Err(e) => {
            if !stopped(&stop) {
                log_warn!("failure during initial preemption API check (continuing): {e}");
            }
            false
        }
    };
    if initial {
        state.trigger("the master asked for preemption");
    }
    let _ = first.send(());
    if initial {
        return;
    }
    let mut failing = false;
    while !stopped(&stop) {
        match poller.poll(POLL_SECONDS) {
            Ok(true) => {
                log_debug!("the master asked for preemption");
                state.trigger("the master asked for preemption");
                return;
            }
            Ok(false) => {
                if failing {
                    log_info!("preemption API reachable again");
                    failing = false;
                }
            }
            Err(_) if stopped(&stop) => return,
            Err(e) if e.kind() == Kind::Timeout => {
                log_warn!("timeout communicating with preemption API (retrying): {e}");
            }
            Err(e) => {
                if failing {
                    log_debug!("failure communicating with preemption API (retrying in 10s): {e}");
                } else {
                    log_warn!("failure communicating with preemption API (retrying in 10s): {e}");
                    failing = true;
                }
                match stop.recv_timeout(ERROR_SLEEP) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::{Condvar, Mutex};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Instant;

    /// A fake master: answers after `preempt_at` polls, blocks otherwise until cancelled.
    struct Fake {
        calls: AtomicUsize,
        preempt_at: usize,
        cancelled: AtomicBool,
        m: Mutex<()>,
        cv: Condvar,
        fail_first: bool,
    }
    impl PreemptionPoll for Fake {
        fn poll(&self, secs: u64) -> Result<bool> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if self.cancelled.load(Ordering::SeqCst) {
                return Err(err!(State, "cancelled"));
            }
            if n == 0 {
                assert_eq!(secs, 0);
                if self.fail_first {
                    return Err(err!(Master, "down"));
                }
            } else {
                assert_eq!(secs, 60);
            }
            if n >= self.preempt_at {
                return Ok(true);
            }
            if n == 0 {
                return Ok(false);
            }
            let mut g = self.m.lock();
            while !self.cancelled.load(Ordering::SeqCst) {
                self.cv.wait_for(&mut g, Duration::from_millis(100));
            }
            Err(err!(State, "cancelled"))
        }
        fn cancel(&self) {
            self.cancelled.store(true, Ordering::SeqCst);
            self.cv.notify_all();
        }
    }

    fn fake(preempt_at: usize, fail_first: bool) -> Arc<Fake> {
        Arc::new(Fake {
            calls: AtomicUsize::new(0),
            preempt_at,
            cancelled: AtomicBool::new(false),
            m: Mutex::new(()),
            cv: Condvar::new(),
            fail_first,
        })
    }

    #[test]
    fn initial_yes_is_known_when_start_returns() {
        let s = Arc::new(PreemptState::new(false));
        let f = fake(0, false);
        let mut w = LongPollWatcher::start(s.clone(), f.clone(), Duration::from_secs(5)).unwrap();
        assert!(s.is_set());
        w.stop();
        assert_eq!(f.calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn close_interrupts_a_long_poll() {
        let s = Arc::new(PreemptState::new(false));
        let f = fake(usize::MAX, true);
        let mut w = LongPollWatcher::start(s.clone(), f.clone(), Duration::from_secs(5)).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(!s.is_set());
        let t = Instant::now();
        w.stop();
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert_eq!(f.calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn second_poll_yes_is_sticky() {
        let s = Arc::new(PreemptState::new(false));
        let f = fake(1, false);
        let mut w = LongPollWatcher::start(s.clone(), f, Duration::from_secs(5)).unwrap();
        let t = Instant::now();
        while !s.is_set() && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(s.should_preempt(false).unwrap());
        assert!(s.reason().unwrap().contains("master"));
        w.stop();
    }
}
