//! `PreemptMode::WorkersAskChief` without a round trip per call.
//!
//! Every rank's k-th `should_preempt` must give the same answer, as in Determined (where each call
//! is a blocking broadcast from the chief). Here the chief promises *horizons* ahead of time —
//! "no preemption through call H" — and, when one of its sources asks for preemption at call k,
//! decides "preempt from call D = max(k, H+1)" (it cannot take back what it promised). Workers
//! answer from two atomics; a worker only waits when it runs past the last horizon it received,
//! i.e. more than a window of calls ahead of the chief.
//!
//! The window adapts so that a horizon covers about [`TARGET_WINDOW`] of the chief's calls: a
//! preemption takes effect at most that long after the chief sees it, and workers that stay
//! within that distance of the chief never wait.

use super::super::distributed::wire::Op;
use crate::bail;
use crate::error::Result;
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How much of the chief's time a horizon aims to cover.
pub const TARGET_WINDOW: Duration = Duration::from_millis(100);
const MIN_WINDOW: u64 = 4;
const MAX_WINDOW: u64 = 1 << 20;
const NONE: u64 = u64::MAX;

/// Sends a control value to every worker.
pub type Send = Box<dyn Fn(Op, u64) + std::marker::Send + Sync>;
/// Returns the failure of the connection to the chief, if any.
pub type Check = Box<dyn Fn() -> Result<()> + std::marker::Send + Sync>;

struct ChiefState {
    window: u64,
    last_extend: Instant,
}

enum Role {
    Chief {
        send: Send,
        state: Mutex<ChiefState>,
        /// The horizon less half the window: a call past it extends the horizon. Written by
        /// [`Agreement::extend`] under `state`'s lock, read without it on every call.
        extend_at: AtomicU64,
    },
    Worker {
        lock: Mutex<()>,
        cond: Condvar,
        check: Check,
        timeout: Duration,
        chief: u32,
    },
}

/// The per-context agreement state.
pub struct Agreement {
    calls: AtomicU64,
    horizon: AtomicU64,
    decision: AtomicU64,
    role: Role,
}

impl Agreement {
    /// The chief's side; `send` reaches every worker.
    pub fn chief(send: Send) -> Agreement {
        Agreement {
            calls: AtomicU64::new(0),
            horizon: AtomicU64::new(0),
            decision: AtomicU64::new(NONE),
            role: Role::Chief {
                send,
                state: Mutex::new(ChiefState {
                    window: MIN_WINDOW * 4,
                    last_extend: Instant::now(),
                }),
                // Horizon 0: the first call extends it.
                extend_at: AtomicU64::new(0),
            },
        }
    }

    /// A worker's side: waits at most `timeout` for the chief (global rank `chief`); `check`
    /// reports a lost connection.
    pub fn worker(check: Check, timeout: Duration, chief: u32) -> Agreement {
        Agreement {
            calls: AtomicU64::new(0),
            horizon: AtomicU64::new(0),
            decision: AtomicU64::new(NONE),
            role: Role::Worker {
                lock: Mutex::new(()),
                cond: Condvar::new(),
                check,
                timeout,
                chief,
            },
        }
    }

    /// The answer to this rank's next call. `local` is asked on the chief only: do its own
    /// sources want preemption?
    #[inline]
    pub fn call(&self, local: impl FnOnce() -> bool) -> Result<bool> {
        let k = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        if k >= self.decision.load(Ordering::Acquire) {
            return Ok(true);
        }
        match &self.role {
            Role::Chief {
                send,
                state,
                extend_at,
            } => {
                if local() {
                    return Ok(self.decide(k, send, state));
                }
                if k > extend_at.load(Ordering::Relaxed) {
                    self.extend(k, send, state, extend_at);
                }
                Ok(false)
            }
            Role::Worker { .. } => {
                if k <= self.horizon.load(Ordering::Acquire) {
                    return Ok(false);
                }
                self.wait(k)
            }
        }
    }

    #[cold]
    fn decide(&self, k: u64, send: &Send, state: &Mutex<ChiefState>) -> bool {
        let g = state.lock();
        let mut d = self.decision.load(Ordering::Acquire);
        if d == NONE {
            d = k.max(self.horizon.load(Ordering::Relaxed) + 1);
            self.decision.store(d, Ordering::Release);
            // Sent outside the lock: a slow socket must not hold up the chief's other threads
            // (workers keep the smallest decision and the largest horizon, in any order).
            drop(g);
            send(Op::Decision, d);
        }
        k >= d
    }

    #[cold]
    fn extend(&self, k: u64, send: &Send, state: &Mutex<ChiefState>, extend_at: &AtomicU64) {
        let mut st = state.lock();
        if self.decision.load(Ordering::Acquire) != NONE {
            return;
        }
        let h = self.horizon.load(Ordering::Relaxed);
        if k + st.window / 2 <= h {
            return; // another thread extended it meanwhile
        }
        // Adapt: the calls since the last extension took `elapsed`; aim for TARGET_WINDOW.
        let elapsed = st.last_extend.elapsed();
        let covered = (st.window / 2).max(1);
        let per_call = elapsed.as_secs_f64() / covered as f64;
        let wanted = if per_call > 0.0 {
            (TARGET_WINDOW.as_secs_f64() / per_call) as u64
        } else {
            MAX_WINDOW
        };
        st.window = wanted
            .clamp(MIN_WINDOW, MAX_WINDOW)
            .min(st.window * 4)
            .max(st.window / 4)
            .max(MIN_WINDOW);
        st.last_extend = Instant::now();
        let nh = (k + st.window).max(h);
        self.horizon.store(nh, Ordering::Release);
        extend_at.store(nh - st.window / 2, Ordering::Relaxed);
        drop(st);
        send(Op::Horizon, nh);
    }

    #[cold]
    fn wait(&self, k: u64) -> Result<bool> {
        let Role::Worker {
            lock,
            cond,
            check,
            timeout,
            chief,
        } = &self.role
        else {
            unreachable!("workers only")
        };
        let deadline = crate::time::deadline(*timeout);
        let mut g = lock.lock();
        loop {
            if k >= self.decision.load(Ordering::Acquire) {
                return Ok(true);
            }
            if k <= self.horizon.load(Ordering::Acquire) {
                return Ok(false);
            }
            check().map_err(|e| e.context(format!("should_preempt call {k}")))?;
            if cond.wait_until(&mut g, deadline).timed_out() {
                if k >= self.decision.load(Ordering::Acquire) {
                    return Ok(true);
                }
                if k <= self.horizon.load(Ordering::Acquire) {
                    return Ok(false);
                }
                check()?;
                bail!(
                    Timeout,
                    "should_preempt call {k}: the chief (rank {chief}) made no matching call within {:.0} s \
                     (with preempt_mode WorkersAskChief every rank must call det_should_preempt equally often)",
                    timeout.as_secs_f64()
                );
            }
        }
    }

    /// A worker's handler for control values from the chief (`None`: the connection failed).
    pub fn on_control(&self, msg: Option<(Op, u64)>) {
        match msg {
            Some((Op::Horizon, h)) => {
                self.horizon.fetch_max(h, Ordering::AcqRel);
            }
            Some((Op::Decision, d)) => {
                self.decision.fetch_min(d, Ordering::AcqRel);
            }
            _ => {}
        }
        if let Role::Worker { lock, cond, .. } = &self.role {
            let _g = lock.lock();
            cond.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::err;
    use std::sync::Arc;

    /// A chief and a worker wired in-process: every rank stops at the same call index, whatever
    /// the relative speeds.
    #[test]
    fn same_answer_at_the_same_call() {
        for trial in 0..20u64 {
            let worker: Arc<Agreement> = Arc::new(Agreement::worker(
                Box::new(|| Ok(())),
                Duration::from_secs(10),
                0,
            ));
            let w2 = worker.clone();
            let chief = Arc::new(Agreement::chief(Box::new(move |op, v| {
                w2.on_control(Some((op, v)))
            })));
            let preempt_at_chief_call = 50 + trial * 37;
            let c = chief.clone();
            let ct = std::thread::spawn(move || {
                let mut k = 0u64;
                loop {
                    k += 1;
                    if trial % 3 == 0 {
                        std::thread::yield_now();
                    }
                    if c.call(|| k >= preempt_at_chief_call).unwrap() {
                        return k;
                    }
                }
            });
            let wt = std::thread::spawn(move || {
                let mut k = 0u64;
                loop {
                    k += 1;
                    if trial % 3 == 1 {
                        std::thread::yield_now();
                    }
                    if worker.call(|| unreachable!()).unwrap() {
                        return k;
                    }
                }
            });
            let (kc, kw) = (ct.join().unwrap(), wt.join().unwrap());
            assert_eq!(kc, kw, "trial {trial}");
            assert!(kc >= preempt_at_chief_call);
        }
    }

    /// The chief promises a horizon at its first call, and extends it before its calls reach
    /// it: a worker keeping pace with the chief never waits.
    #[test]
    fn chief_keeps_its_horizon_ahead() {
        let sent = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let s2 = sent.clone();
        let chief = Agreement::chief(Box::new(move |op, v| s2.lock().push((op, v))));
        assert!(!chief.call(|| false).unwrap());
        assert!(
            matches!(sent.lock().as_slice(), [(Op::Horizon, h)] if *h > 1),
            "{:?}",
            sent.lock()
        );
        for k in 2..=100_000u64 {
            assert!(!chief.call(|| false).unwrap());
            let (op, h) = *sent.lock().last().unwrap();
            assert_eq!(op, Op::Horizon);
            assert!(k < h, "call {k} reached the horizon {h}");
        }
        let horizons: Vec<u64> = sent.lock().iter().map(|&(_, h)| h).collect();
        assert!(horizons.windows(2).all(|w| w[0] < w[1]), "{horizons:?}");
        // A preemption seen at call k takes effect after the last horizon promised.
        let last = *horizons.last().unwrap();
        assert!(chief.call(|| true).unwrap() == (100_001 > last));
        assert_eq!(
            sent.lock().last().copied(),
            Some((Op::Decision, 100_001u64.max(last + 1)))
        );
    }

    #[test]
    fn worker_times_out_and_reports_failures() {
        let w = Agreement::worker(Box::new(|| Ok(())), Duration::from_millis(100), 0);
        let e = w.call(|| false).unwrap_err();
        assert_eq!(e.kind(), crate::error::Kind::Timeout);
        assert!(e.message().contains("every rank must call"), "{e}");
        let w = Agreement::worker(
            Box::new(|| Err(err!(Distributed, "the chief (rank 0) was lost"))),
            Duration::from_secs(5),
            0,
        );
        let e = w.call(|| false).unwrap_err();
        assert!(e.message().contains("was lost"), "{e}");
    }
}
