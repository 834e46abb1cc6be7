//! `PreemptMode::WorkersAskChief` without a round trip per call.
//!
//! Every rank's k-th `should_preempt` must give the same answer, as in Determined (where each call
//! is a blocking broadcast from the chief). Here the chief promises *horizons* ahead of time —
//! "no preemption through call H" — and, when one of its sources asks for preemption at call k,
//! decides "preempt from call D = max(k, H+1)" (it cannot take back what it promised). Workers
//! answer from two atomics; a worker only waits when it runs past the last horizon it received,
//! i.e. more than a window of calls ahead of the chief.
//!
//! The lag D − k is bounded in *time*: a horizon never reaches further than the calls the chief
//! makes in [`TARGET_WINDOW`] at its measured rate (at least one call once the rate is known).
//! The first call promises nothing beyond itself (the rate is unknown: a first call right after
//! init says nothing about the training loop), so a signal seen at the chief's second call
//! already takes effect there, as in Determined. Afterwards the window follows the rate measured
//! since the previous horizon: it shrinks at once when calls slow down and grows at most
//! fourfold per horizon when they speed up. Calls faster than `TARGET_WINDOW / MAX_WINDOW` send
//! one horizon per ~`MAX_WINDOW / 2` calls, which keeps the per-call cost at an atomic or two.
//!
//! A promise given at a fast rate could still cost a long lag if the calls then slow down (a
//! window of 100 ms at 1 ms per call is 100 calls, 50 s at 0.5 s per call). So when its sources
//! fire, the chief first *freezes* the workers: each one stops answering from its horizon and
//! replies the last call it answered false (its reader thread does, whatever the training thread
//! is doing). The decision is then `max(k, c + 1)` for the largest such call `c`: the lag is how
//! far the fastest worker actually ran ahead, not how far it was allowed to. A worker that does
//! not reply within [`FREEZE_WAIT`] (an older library, a stopped process) only costs the
//! promised horizon, `max(k, H + 1)`, which is always safe.
use crate::distributed::wire::Op;
use crate::error::Result;
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The most of the chief's time a horizon may cover: the longest a preemption seen by the chief
/// can wait before every rank acts on it (or the next call, when calls are slower than this).
pub const TARGET_WINDOW: Duration = Duration::from_millis(100);
/// The largest window in calls (about 50 ms of calls at 50 ns per call).
const MAX_WINDOW: u64 = 1 << 20;
/// How much a window may grow from one horizon to the next.
const GROWTH: u64 = 4;
const NONE: u64 = u64::MAX;
/// How long the deciding chief waits for the workers' replies before it falls back to its
/// promised horizon.
pub const FREEZE_WAIT: Duration = Duration::from_secs(2);

/// The window for the next horizon: the calls that fit in [`TARGET_WINDOW`] at `per_call`
/// seconds per call (at least 1, at most [`MAX_WINDOW`]), grown at most [`GROWTH`]-fold from
/// `prev`.
fn next_window(prev: u64, per_call: f64) -> u64 {
    let fit = if per_call > 0.0 {
        (TARGET_WINDOW.as_secs_f64() / per_call).min(MAX_WINDOW as f64) as u64
    } else {
        MAX_WINDOW
    };
    fit.min((prev * GROWTH).max(GROWTH)).clamp(1, MAX_WINDOW)
}

/// Sends a control value: the chief's reaches every worker, a worker's the chief.
pub type Send = Box<dyn Fn(Op, u64) + std::marker::Send + Sync>;
/// The chief: the global ranks of the workers still connected (not closed, not lost).
pub type Live = Box<dyn Fn() -> Vec<u32> + std::marker::Send + Sync>;
/// Returns the failure of the connection to the chief, if any.
pub type Check = Box<dyn Fn() -> Result<()> + std::marker::Send + Sync>;

struct ChiefState {
    window: u64,
    /// The call and the time of the last extension (`None` before the first).
    last: Option<(u64, Instant)>,
}

enum Role {
    Chief {
        send: Send,
        live: Live,
        freeze_wait: Duration,
        /// The workers' replies to a freeze (rank → last call answered false), `None` outside
        /// of one; `replied` is signalled on each reply and on a lost connection.
        replies: Mutex<Option<std::collections::BTreeMap<u32, u64>>>,
        replied: Condvar,
        state: Mutex<ChiefState>,
        /// The horizon less half the window: a call past it extends the horizon. Written by
        /// [`Agreement::extend`] under `state`'s lock, read without it on every call.
        extend_at: AtomicU64,
    },
    Worker {
        lock: Mutex<()>,
        cond: Condvar,
        /// Replies to the chief.
        reply: Send,
        /// Frozen by the chief's decision in progress: horizons no longer count.
        frozen: std::sync::atomic::AtomicBool,
        check: Check,
        timeout: Duration,
        chief: u32,
    },
}

/// The per-context agreement state.
pub struct Agreement {
    /// Where the chief reads the time (a fake clock in tests).
    clock: fn() -> Instant,
    calls: AtomicU64,
    horizon: AtomicU64,
    decision: AtomicU64,
    role: Role,
}

impl Agreement {
    /// The chief's side; `send` reaches every worker, `live` names the workers still there.
    pub fn chief(send: Send, live: Live) -> Agreement {
        Self::chief_with(send, live, Instant::now, FREEZE_WAIT)
    }

    fn chief_with(
        send: Send,
        live: Live,
        clock: fn() -> Instant,
        freeze_wait: Duration,
    ) -> Agreement {
        Agreement {
            clock,
            calls: AtomicU64::new(0),
            horizon: AtomicU64::new(0),
            decision: AtomicU64::new(NONE),
            role: Role::Chief {
                send,
                live,
                freeze_wait,
                replies: Mutex::new(None),
                replied: Condvar::new(),
                state: Mutex::new(ChiefState {
                    window: 0,
                    last: None,
                }),
                // Horizon 0: the first call extends it.
                extend_at: AtomicU64::new(0),
            },
        }
    }

    /// A worker's side: waits at most `timeout` for the chief (global rank `chief`); `check`
    /// reports a lost connection; `reply` reaches the chief.
    pub fn worker(reply: Send, check: Check, timeout: Duration, chief: u32) -> Agreement {
        Agreement {
            clock: Instant::now,
            calls: AtomicU64::new(0),
            horizon: AtomicU64::new(0),
            decision: AtomicU64::new(NONE),
            role: Role::Worker {
                lock: Mutex::new(()),
                cond: Condvar::new(),
                reply,
                frozen: std::sync::atomic::AtomicBool::new(false),
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
        // SeqCst on the worker's counter and horizon, against the freeze (see `on_control`).
        // (On x86 the read-modify-write is a full barrier anyway, and the load a plain move.)
        let k = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if k >= self.decision.load(Ordering::Acquire) {
            return Ok(true);
        }
        match &self.role {
            Role::Chief {
                send,
                state,
                extend_at,
                ..
            } => {
                if local() {
                    return Ok(self.decide(k, state));
                }
                if k > extend_at.load(Ordering::Relaxed) {
                    self.extend(k, send, state, extend_at);
                }
                Ok(false)
            }
            Role::Worker { .. } => {
                if k <= self.horizon.load(Ordering::SeqCst) {
                    return Ok(false);
                }
                self.wait(k)
            }
        }
    }

    #[cold]
    fn decide(&self, k: u64, state: &Mutex<ChiefState>) -> bool {
        let Role::Chief {
            send,
            live,
            freeze_wait,
            replies,
            replied,
            ..
        } = &self.role
        else {
            unreachable!("chief only")
        };
        // Held through the freeze: no other thread extends the horizon meanwhile.
        let g = state.lock();
        let mut d = self.decision.load(Ordering::Acquire);
        if d == NONE {
            let promised = self.horizon.load(Ordering::Relaxed);
            let expected = live();
            *replies.lock() = Some(Default::default());
            send(Op::Freeze, k);
            let deadline = Instant::now() + *freeze_wait;
            let mut r = replies.lock();
            let ran_to = loop {
                let got = r.as_ref().expect("set above");
                let now_live = live();
                let waiting = expected
                    .iter()
                    .any(|w| now_live.contains(w) && !got.contains_key(w));
                if !waiting {
                    // Every worker still there froze: the furthest any of them went.
                    break got.values().copied().max().unwrap_or(0).min(promised);
                }
                if replied.wait_until(&mut r, deadline).timed_out() {
                    let missing: Vec<u32> = expected
                        .iter()
                        .copied()
                        .filter(|w| !r.as_ref().is_some_and(|g| g.contains_key(w)))
                        .collect();
                    log_warn!(
                        "should_preempt: rank(s) {missing:?} did not answer the chief within {:.1} s; \
                         preempting after the calls already promised to them (call {})",
                        freeze_wait.as_secs_f64(),
                        promised + 1
                    );
                    break promised;
                }
            };
            *r = None;
            drop(r);
            // Every call this rank has begun (other threads included) answers consistently.
            d = (ran_to + 1).max(k).max(self.calls.load(Ordering::SeqCst));
            self.decision.store(d, Ordering::Release);
            drop(g);
            send(Op::Decision, d);
        }
        k >= d
    }

    #[cold]
    fn extend(&self, k: u64, send: &Send, state: &Mutex<ChiefState>, extend_at: &AtomicU64) {
        // (The horizon is sent outside the lock, so a slow socket does not hold up the chief's
        // other threads; a worker ignores a horizon that arrives after a freeze.)
        let mut st = state.lock();
        if self.decision.load(Ordering::Acquire) != NONE {
            return;
        }
        let h = self.horizon.load(Ordering::Relaxed);
        if k <= extend_at.load(Ordering::Relaxed) {
            return; // another thread extended it meanwhile
        }
        let now = (self.clock)();
        // The first call promises only itself; later ones follow the rate measured since the
        // last extension.
        st.window = match st.last {
            None => 0,
            Some((k0, t0)) => {
                let per_call =
                    now.saturating_duration_since(t0).as_secs_f64() / (k - k0).max(1) as f64;
                next_window(st.window, per_call)
            }
        };
        st.last = Some((k, now));
        let nh = (k + st.window).max(h);
        self.horizon.store(nh, Ordering::Release);
        // Extend again once the calls have used up half of the window (rounded up), so a worker
        // keeping pace with the chief never waits.
        extend_at.store(nh - st.window.div_ceil(2), Ordering::Relaxed);
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
            ..
        } = &self.role
        else {
            unreachable!("workers only")
        };
        let deadline = crate::time::deadline(*timeout);
        let mut g = lock.lock();
        loop {
            // Once the decision is known it answers every call (after a freeze the horizon no
            // longer does).
            let d = self.decision.load(Ordering::Acquire);
            if d != NONE {
                return Ok(k >= d);
            }
            if k <= self.horizon.load(Ordering::SeqCst) {
                return Ok(false);
            }
            check().map_err(|e| e.context(format!("should_preempt call {k}")))?;
            if cond.wait_until(&mut g, deadline).timed_out() {
                let d = self.decision.load(Ordering::Acquire);
                if d != NONE {
                    return Ok(k >= d);
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

    /// The handler for control values (`None`: a connection failed or ended; look again).
    /// On a worker, from the chief: horizons, the freeze, the decision. On the chief, from
    /// worker `sender`: its reply to the freeze.
    pub fn on_control(&self, msg: Option<(Op, u64, u32)>) {
        match &self.role {
            Role::Worker {
                lock,
                cond,
                reply,
                frozen,
                ..
            } => {
                match msg {
                    Some((Op::Horizon, h, _)) if !frozen.load(Ordering::SeqCst) => {
                        self.horizon.fetch_max(h, Ordering::SeqCst);
                    }
                    Some((Op::Freeze, _, _)) => {
                        // From now on every call waits for the decision. A call that read the
                        // horizon before the swap counted itself before it (SeqCst), so `c`
                        // covers every call answered false; none went past the old horizon.
                        frozen.store(true, Ordering::SeqCst);
                        let h = self.horizon.swap(0, Ordering::SeqCst);
                        let c = self.calls.load(Ordering::SeqCst).min(h);
                        reply(Op::Frozen, c);
                    }
                    Some((Op::Decision, d, _)) => {
                        self.decision.fetch_min(d, Ordering::AcqRel);
                    }
                    _ => {}
                }
                let _g = lock.lock();
                cond.notify_all();
            }
            Role::Chief {
                replies, replied, ..
            } => {
                let mut r = replies.lock();
                if let (Some(got), Some((Op::Frozen, c, sender))) = (r.as_mut(), msg) {
                    got.insert(sender, c);
                }
                replied.notify_all();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A chief and `n` workers wired in-process (the chief's messages reach every worker, the
    /// workers' replies the chief), as the sockets would.
    fn wired(n: u32, clock: fn() -> Instant) -> (Arc<Agreement>, Vec<Arc<Agreement>>) {
        let chief_slot: Arc<std::sync::OnceLock<std::sync::Weak<Agreement>>> = Arc::default();
        let workers: Vec<Arc<Agreement>> = (1..=n)
            .map(|rank| {
                let slot = chief_slot.clone();
                Arc::new(Agreement::worker(
                    Box::new(move |op, v| {
                        if let Some(c) = slot.get().and_then(|w| w.upgrade()) {
                            c.on_control(Some((op, v, rank)));
                        }
                    }),
                    Box::new(|| Ok(())),
                    Duration::from_secs(10),
                    0,
                ))
            })
            .collect();
        let ws = workers.clone();
        let chief = Arc::new(Agreement::chief_with(
            Box::new(move |op, v| {
                for w in &ws {
                    w.on_control(Some((op, v, 0)));
                }
            }),
            Box::new(move || (1..=n).collect()),
            clock,
            FREEZE_WAIT,
        ));
        chief_slot.set(Arc::downgrade(&chief)).ok().unwrap();
        (chief, workers)
    }

    /// Every rank stops at the same call index, whatever the relative speeds.
    #[test]
    fn same_answer_at_the_same_call() {
        for trial in 0..20u64 {
            let (chief, workers) = wired(1 + (trial % 3) as u32, Instant::now);
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
            let wts: Vec<_> = workers
                .into_iter()
                .enumerate()
                .map(|(i, worker)| {
                    std::thread::spawn(move || {
                        let mut k = 0u64;
                        loop {
                            k += 1;
                            if (trial + i as u64) % 3 == 1 {
                                std::thread::yield_now();
                            }
                            if worker.call(|| unreachable!()).unwrap() {
                                return k;
                            }
                        }
                    })
                })
                .collect();
            let kc = ct.join().unwrap();
            for wt in wts {
                assert_eq!(kc, wt.join().unwrap(), "trial {trial}");
            }
            assert!(kc >= preempt_at_chief_call);
        }
    }

    thread_local! {
        /// The fake clock of the calling thread: nanoseconds past `base()`.
        static FAKE_NS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    fn base() -> Instant {
        static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *BASE.get_or_init(Instant::now)
    }

    fn fake_now() -> Instant {
        base() + Duration::from_nanos(FAKE_NS.with(|c| c.get()))
    }

    fn advance(ns: u64) {
        FAKE_NS.with(|c| c.set(c.get() + ns));
    }

    type Sent = Arc<parking_lot::Mutex<Vec<(Op, u64)>>>;

    /// A chief whose one worker never answers a freeze: its decisions fall back to the horizon
    /// it promised, which is what the window bounds.
    fn recording_chief() -> (Agreement, Sent) {
        let sent: Sent = Arc::default();
        let s2 = sent.clone();
        let chief = Agreement::chief_with(
            Box::new(move |op, v| s2.lock().push((op, v))),
            Box::new(|| vec![1]),
            fake_now,
            Duration::ZERO,
        );
        (chief, sent)
    }

    /// The chief promises only its first call (the rate is unknown), then extends the horizon
    /// before its calls reach it: a worker keeping pace with the chief never waits.
    #[test]
    fn chief_keeps_its_horizon_ahead() {
        let (chief, sent) = recording_chief();
        assert!(!chief.call(|| false).unwrap());
        assert_eq!(sent.lock().as_slice(), [(Op::Horizon, 1)]);
        for k in 2..=100_000u64 {
            advance(50); // 50 ns per call
            assert!(!chief.call(|| false).unwrap());
            let (op, h) = *sent.lock().last().unwrap();
            assert_eq!(op, Op::Horizon);
            assert!(k < h, "call {k} reached the horizon {h}");
        }
        let horizons: Vec<u64> = sent.lock().iter().map(|&(_, h)| h).collect();
        assert!(horizons.windows(2).all(|w| w[0] < w[1]), "{horizons:?}");
        // Few messages: the window grew to thousands of calls.
        assert!(
            horizons.len() < 40,
            "{} horizons for 100 000 calls",
            horizons.len()
        );
        // A preemption seen at call k: the workers are frozen; one does not answer, so the
        // decision comes after the last horizon promised.
        let last = *horizons.last().unwrap();
        assert!(chief.call(|| true).unwrap() == (100_001 > last));
        let v = sent.lock();
        assert_eq!(
            v[v.len() - 2..],
            [
                (Op::Freeze, 100_001),
                (Op::Decision, 100_001u64.max(last + 1))
            ]
        );
    }

    /// Where the chief's calls take `period_ns` each: the call at which every rank answers true
    /// when the chief's sources want preemption from its call `signal_at` on.
    fn decision_at(periods: &[(u64, u64)], signal_at: u64) -> u64 {
        let (chief, sent) = recording_chief();
        let mut k = 0u64;
        for &(calls, period_ns) in periods {
            for _ in 0..calls {
                k += 1;
                advance(period_ns);
                if chief.call(|| k >= signal_at).unwrap() {
                    let d = sent.lock().iter().find(|m| m.0 == Op::Decision).unwrap().1;
                    assert_eq!(d, k, "the chief answers true at the decided call");
                    return d;
                }
            }
        }
        panic!("no decision after {k} calls");
    }

    /// The lag from the chief seeing the signal to every rank's true is at most max(1 call,
    /// TARGET_WINDOW of calls) at every call rate, from the first calls on (a window sized in
    /// calls once gave 65 calls at 0.2 s per call, 26 calls after 40 calls at 0.5 s).
    #[test]
    fn the_lag_is_bounded_in_time() {
        let target = TARGET_WINDOW.as_nanos() as u64;
        for period in [
            50,
            1_000,
            100_000,
            1_000_000,
            20_000_000,
            50_000_000,
            200_000_000,
            500_000_000,
            5_000_000_000,
        ] {
            let allowed = (target / period).max(1);
            for signal_at in [1, 2, 3, 5, 10, 41, 100, 1000, 100_000] {
                if period >= 50_000_000 && signal_at > 1000 {
                    continue;
                }
                let d = decision_at(&[(u64::MAX, period)], signal_at);
                assert!(
                    d - signal_at <= allowed,
                    "{period} ns per call, signal at call {signal_at}: true at call {d} ({} > {allowed} calls later)",
                    d - signal_at
                );
            }
        }
        // As in Determined, a signal seen at the chief's second call takes effect there.
        assert_eq!(decision_at(&[(u64::MAX, 1_000)], 2), 2);
    }

    /// A slowdown after a window was promised at a fast rate: the promised calls alone would
    /// make a long lag (here 10 000 calls at 0.5 s), but the frozen workers tell the chief how
    /// far they really went, so every rank stops at the next call.
    #[test]
    fn a_slowdown_costs_only_the_calls_really_made() {
        // Without the workers' answers: the promise is kept, whatever it costs.
        let (chief, sent) = recording_chief();
        let mut k = 0;
        for _ in 0..10_000 {
            k += 1;
            advance(10_000); // 10 µs per call: windows of 10 000 calls
            assert!(!chief.call(|| false).unwrap());
        }
        for _ in 0..5 {
            k += 1;
            advance(500_000_000);
            assert!(!chief.call(|| false).unwrap());
        }
        let promised = sent.lock().last().unwrap().1;
        assert!(promised > k + 1000, "horizon {promised} at call {k}");
        assert!(!chief.call(|| true).unwrap());
        assert_eq!(
            sent.lock().last().copied(),
            Some((Op::Decision, promised + 1))
        );

        // With a worker keeping pace with the chief (one call behind it, or one ahead).
        for lead in [-1i64, 0, 1] {
            let (chief, workers) = wired(1, fake_now);
            let w = &workers[0];
            let mut wk = 0u64;
            let mut ck = 0u64;
            let signal_at = 10_005;
            let d = loop {
                ck += 1;
                advance(if ck <= 10_000 { 10_000 } else { 500_000_000 });
                if chief.call(|| ck >= signal_at).unwrap() {
                    break ck;
                }
                // The worker catches up to `lead` calls from the chief (once the window allows
                // it to be ahead).
                let target = ck as i64 + if ck > 2 { lead } else { lead.min(0) };
                while ck < signal_at && (wk as i64) < target {
                    wk += 1;
                    if w.call(|| unreachable!()).unwrap() {
                        panic!("the worker stopped at call {wk} before the chief decided");
                    }
                }
            };
            let expect = if lead > 0 {
                signal_at + lead as u64
            } else {
                signal_at
            };
            assert_eq!(d, expect, "lead {lead}");
            // The worker answers true from the decided call on, false before it.
            while wk + 1 < d {
                wk += 1;
                assert!(!w.call(|| unreachable!()).unwrap(), "call {wk}");
            }
            assert!(w.call(|| unreachable!()).unwrap());
        }
    }

    /// Determined's chief answers true at its first call after the signal, and so do the workers
    /// (Determined broadcasts at every call). Here too, from the second call on.
    #[test]
    fn the_first_call_after_the_signal_answers_true() {
        let (chief, workers) = wired(2, Instant::now);
        assert!(!chief.call(|| false).unwrap());
        for w in &workers {
            assert!(!w.call(|| unreachable!()).unwrap());
        }
        assert!(chief.call(|| true).unwrap());
        assert!(chief.call(|| true).unwrap());
        for w in &workers {
            assert!(w.call(|| unreachable!()).unwrap());
        }
    }

    #[test]
    fn window_sizes() {
        assert_eq!(next_window(0, 0.5), 1);
        assert_eq!(next_window(0, 1e-6), GROWTH);
        assert_eq!(next_window(4, 1e-6), 16);
        assert_eq!(next_window(1 << 19, 1e-9), MAX_WINDOW);
        assert_eq!(next_window(1000, 1e-3), 100);
        assert_eq!(next_window(1000, 0.0), MAX_WINDOW.min(4000));
        assert_eq!(next_window(100, 30.0), 1);
    }

    #[test]
    fn worker_times_out_and_reports_failures() {
        let w = Agreement::worker(
            Box::new(|_, _| {}),
            Box::new(|| Ok(())),
            Duration::from_millis(100),
            0,
        );
        let e = w.call(|| false).unwrap_err();
        assert_eq!(e.kind(), crate::error::Kind::Timeout);
        assert!(e.message().contains("every rank must call"), "{e}");
        let w = Agreement::worker(
            Box::new(|_, _| {}),
            Box::new(|| Err(err!(Distributed, "the chief (rank 0) was lost"))),
            Duration::from_secs(5),
            0,
        );
        let e = w.call(|| false).unwrap_err();
        assert!(e.message().contains("was lost"), "{e}");
    }
}
