//! The background reporter: one thread per context that takes records from a bounded queue and
//! hands them, in order, to the context's sinks (the `metrics.jsonl` writer off-cluster, the
//! master on-cluster, TensorBoard).
//!
//! The caller only validates and enqueues. When the queue is full (a master that is down for a
//! long time) the caller waits — reports are never dropped — and a warning says so once.
//!
//! Failures: a sink error (a report refused, or a sink that keeps retrying and says so through
//! [`Control::surface`]) is returned, once, by the next call that enqueues — the record given to
//! that call is queued nevertheless — and by `flush`. `close` returns an error naming how many
//! reports were never delivered (refused, or still undelivered at the close deadline).
//!
//! The thread is woken lazily: it drains the queue every [`IDLE_WAKE`] or as soon as the queue
//! is an eighth full (or on flush/close), so that an enqueue never pays for a futex wake-up — the
//! difference between ~100 ns and ~1 µs per report.
use super::record::Record;
use crate::error::{Error, Kind, Result};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Default number of reports the queue holds before callers wait.
pub const DEFAULT_QUEUE_CAPACITY: usize = 16_384;
/// The largest queue (its slots are allocated when the reporter starts).
pub const MAX_QUEUE_CAPACITY: usize = 1 << 22;

/// How often the reporter thread looks at the queue when nobody wakes it.
pub const IDLE_WAKE: Duration = Duration::from_millis(20);

/// A consumer of records, run on the reporter thread.
pub trait Sink: Send {
    /// Handle one record. An error is reported to the caller; the next record is still handed over.
    fn write(&mut self, rec: &Record, ctl: &Control) -> Result<()>;
    /// Called when the queue is momentarily empty (flush buffers).
    fn idle(&mut self, _ctl: &Control) -> Result<()> {
        Ok(())
    }
    /// Called at every wake of the reporter thread that finds the queue empty (every
    /// [`IDLE_WAKE`] while nothing is reported): for work due by time alone. Must be cheap.
    fn poll(&mut self) {}
    /// Called once at shutdown, after the last record.
    fn close(&mut self, _ctl: &Control) -> Result<()> {
        Ok(())
    }
}

/// Shared between the reporter and its sinks: lets long retries give up when `close` runs out
/// of time, and lets a sink that keeps retrying tell the caller about it.
#[derive(Default)]
pub struct Control {
    /// Set when `close` wants the thread to finish as soon as possible.
    pub closing: AtomicBool,
    /// Milliseconds since `origin` at which the sinks must give up, 0 = no deadline.
    deadline_ms: AtomicU64,
    origin: Option<Instant>,
    /// The error the next enqueuing call returns.
    error: Mutex<Option<Error>>,
    /// The pending error says "still retrying" (a final outcome replaces it).
    soft: AtomicBool,
    has_error: AtomicBool,
}

impl Control {
    fn new() -> Control {
        Control {
            closing: AtomicBool::new(false),
            deadline_ms: AtomicU64::new(0),
            origin: Some(Instant::now()),
            error: Mutex::new(None),
            soft: AtomicBool::new(false),
            has_error: AtomicBool::new(false),
        }
    }

    /// Make `e` the error the next report call returns (the first one is kept until taken).
    /// For sinks that keep a record and retry, so the caller learns of the trouble at once.
    pub fn surface(&self, e: Error) {
        let mut slot = self.error.lock();
        if slot.is_none() {
            *slot = Some(e);
            self.soft.store(true, Ordering::Relaxed);
            self.has_error.store(true, Ordering::Release);
        }
    }

    /// A record's final failure: kept like [`surface`](Self::surface), but it replaces a pending
    /// "still retrying" error (the caller should learn the outcome, not the progress).
    fn record(&self, e: Error) {
        let mut slot = self.error.lock();
        if slot.is_none() || self.soft.load(Ordering::Relaxed) {
            *slot = Some(e);
            self.soft.store(false, Ordering::Relaxed);
            self.has_error.store(true, Ordering::Release);
        }
    }

    fn take(&self) -> Option<Error> {
        if !self.has_error.load(Ordering::Acquire) {
            return None;
        }
        let mut slot = self.error.lock();
        self.has_error.store(false, Ordering::Release);
        slot.take()
    }

    /// True once `close` was asked to finish within a deadline.
    pub fn closing_started(&self) -> bool {
        self.deadline_ms.load(Ordering::SeqCst) != 0
    }

    /// Time left before the close deadline, if one is set.
    pub fn time_left(&self) -> Option<Duration> {
        let d = self.deadline_ms.load(Ordering::SeqCst);
        if d == 0 {
            return None;
        }
        let now = self
            .origin
            .map(|o| o.elapsed().as_millis() as u64)
            .unwrap_or(0);
        Some(Duration::from_millis(d.saturating_sub(now)))
    }

    /// True once the close deadline has passed.
    pub fn expired(&self) -> bool {
        self.time_left().is_some_and(|t| t.is_zero())
    }

    fn set_deadline(&self, after: Duration) {
        let now = self
            .origin
            .map(|o| o.elapsed().as_millis() as u64)
            .unwrap_or(0);
        self.deadline_ms
            .store(now + after.as_millis().max(1) as u64, Ordering::SeqCst);
    }
}

enum Msg {
    Rec(Record),
    Barrier(Sender<()>),
    Close,
}

struct Shared {
    /// Records accepted but not yet handed to every sink.
    pending: AtomicU64,
    /// Records a sink gave up on (close deadline passed).
    dropped: AtomicU64,
    /// Records a sink refused (an error other than the deadline).
    failed: AtomicU64,
    /// The last error a sink returned (kept after the caller took it, for `close`).
    last: Mutex<Option<Error>>,
    ctl: Control,
}

/// The reporter: a queue and the thread that drains it.
pub struct Reporter {
    tx: Sender<Msg>,
    shared: Arc<Shared>,
    thread: Mutex<Option<(JoinHandle<()>, Receiver<()>)>>,
    /// The reporter thread, to unpark it.
    waker: std::thread::Thread,
    /// Queue length at which an enqueue wakes the thread.
    wake_at: usize,
    warned_full: AtomicBool,
    capacity: usize,
}

impl Reporter {
    /// Start the thread with `sinks`, holding at most `capacity` records.
    pub fn start(sinks: Vec<Box<dyn Sink>>, capacity: usize) -> Result<Reporter> {
        let capacity = capacity.clamp(1, MAX_QUEUE_CAPACITY);
        let (tx, rx) = bounded::<Msg>(capacity);
        let shared = Arc::new(Shared {
            pending: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            last: Mutex::new(None),
            ctl: Control::new(),
        });
        let (done_tx, done_rx) = bounded::<()>(1);
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("detcore-reporter".into())
            .spawn(move || {
                run(rx, sinks, &sh);
                let _ = done_tx.send(());
            })
            .map_err(|e| err!(Internal, "cannot start the reporter thread: {e}"))?;
        Ok(Reporter {
            tx,
            shared,
            waker: thread.thread().clone(),
            thread: Mutex::new(Some((thread, done_rx))),
            wake_at: (capacity / 8).max(1),
            warned_full: AtomicBool::new(false),
            capacity,
        })
    }

    /// Take the error a sink reported, if any (each error is returned once).
    pub fn take_error(&self) -> Result<()> {
        match self.shared.ctl.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Enqueue `rec`; waits while the queue is full. Then returns an earlier delivery failure,
    /// if one is pending (the record is queued either way).
    #[inline]
    pub fn send(&self, rec: Record) -> Result<()> {
        // Taken before enqueueing: the error returned is always an earlier report's, never this
        // one's (the reporter thread may handle this record before the call returns).
        let earlier = if self.shared.ctl.has_error.load(Ordering::Relaxed) {
            self.earlier_failure()
        } else {
            Ok(())
        };
        self.enqueue(rec)?;
        earlier
    }

    /// Enqueue `rec` for a background producer (the profiler): like [`Reporter::send`], but an
    /// earlier sink error is left for the caller's next report instead of being taken here.
    pub fn send_background(&self, rec: Record) -> Result<()> {
        self.enqueue(rec)
    }

    /// Queue `rec` (waits while the queue is full); wakes the reporter thread only once the
    /// queue is filling up.
    #[inline]
    fn enqueue(&self, rec: Record) -> Result<()> {
        self.shared.pending.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(Msg::Rec(rec)) {
            Ok(()) => {
                if self.tx.len() >= self.wake_at {
                    self.waker.unpark();
                }
                Ok(())
            }
            Err(TrySendError::Full(msg)) => self.send_slow(msg),
            Err(TrySendError::Disconnected(_)) => {
                self.shared.pending.fetch_sub(1, Ordering::Relaxed);
                Err(err!(
                    State,
                    "the context is closed; the report was not accepted"
                ))
            }
        }
    }

    #[cold]
    fn earlier_failure(&self) -> Result<()> {
        match self.shared.ctl.take() {
            Some(e) => Err(Error::new(
                e.kind(),
                format!(
                    "an earlier report was not delivered: {} (this report was queued)",
                    e.message()
                ),
            )),
            None => Ok(()),
        }
    }

    #[cold]
    fn send_slow(&self, msg: Msg) -> Result<()> {
        if !self.warned_full.swap(true, Ordering::Relaxed) {
            log_warn!(
                "the report queue is full ({} reports waiting to be delivered); report calls now wait \
                 for the background reporter instead of dropping data",
                self.capacity
            );
        }
        self.waker.unpark();
        self.tx.send(msg).map_err(|_| {
            self.shared.pending.fetch_sub(1, Ordering::Relaxed);
            err!(State, "the context is closed; the report was not accepted")
        })
    }

    /// Records accepted and not yet handed to every sink.
    pub fn pending(&self) -> u64 {
        self.shared.pending.load(Ordering::Relaxed)
    }

    /// Wait until every record enqueued so far has been handled, at most `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        let (btx, brx) = bounded(1);
        self.waker.unpark();
        self.tx
            .send_timeout(Msg::Barrier(btx), timeout)
            .map_err(|_| {
                err!(
                    Timeout,
                    "reports were not delivered within {:.1} s",
                    timeout.as_secs_f64()
                )
            })?;
        brx.recv_timeout(timeout).map_err(|_| {
            err!(
                Timeout,
                "{} reports were not delivered within {:.1} s",
                self.pending(),
                timeout.as_secs_f64()
            )
        })?;
        self.take_error()
    }

    /// Deliver what is queued, within `deadline`, then stop the thread. Returns the first sink
    /// error, or a timeout naming how many reports were not delivered.
    pub fn close(&self, deadline: Duration) -> Result<()> {
        let Some((handle, done)) = self.thread.lock().take() else {
            return Ok(());
        };
        self.shared.ctl.set_deadline(deadline);
        let start = Instant::now();
        self.waker.unpark();
        let _ = self.tx.send_timeout(Msg::Close, deadline);
        self.waker.unpark();
        match done.recv_timeout(deadline.saturating_sub(start.elapsed())) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                let _ = handle.join();
            }
            Err(RecvTimeoutError::Timeout) => {
                self.shared.ctl.closing.store(true, Ordering::SeqCst);
                // Give the sinks a moment to notice; never wait without bound.
                if done.recv_timeout(Duration::from_secs(2)).is_ok() {
                    let _ = handle.join();
                } else {
                    let n = self.pending();
                    return Err(Error::new(
                        Kind::Timeout,
                        format!(
                            "{n} report(s) were not delivered before the close deadline of {:.1} s",
                            deadline.as_secs_f64()
                        ),
                    ));
                }
            }
        }
        let late = self.pending() + self.shared.dropped.load(Ordering::Relaxed);
        let refused = self.shared.failed.load(Ordering::Relaxed);
        let first = match self.take_error() {
            Err(e) => Err(e),
            Ok(()) => match self.shared.last.lock().clone() {
                Some(e) if late + refused > 0 => Err(e),
                _ => Ok(()),
            },
        };
        if late + refused > 0 {
            let mut msg = format!("{} report(s) were not delivered", late + refused);
            let mut why = Vec::new();
            if late > 0 {
                why.push(format!(
                    "{late} still undelivered when the close deadline of {:.1} s passed",
                    deadline.as_secs_f64()
                ));
            }
            if refused > 0 {
                why.push(format!("{refused} refused"));
            }
            msg.push_str(&format!(" ({})", why.join(", ")));
            if let Err(e) = &first {
                msg.push_str(&format!("; last error: {}", e.message()));
            }
            let kind = match (&first, late > 0) {
                (_, true) => Kind::Timeout,
                (Err(e), false) => e.kind(),
                (Ok(()), false) => Kind::Io,
            };
            return Err(Error::new(kind, msg));
        }
        first
    }
}

fn run(rx: Receiver<Msg>, mut sinks: Vec<Box<dyn Sink>>, sh: &Shared) {
    let record_error = |e: Error| sh.ctl.record(e);
    // Run every sink's `idle`; false if one failed (it is then asked again at the next wake).
    let idle = |sinks: &mut Vec<Box<dyn Sink>>| {
        let mut ok = true;
        for s in sinks.iter_mut() {
            if let Err(e) = s.idle(&sh.ctl) {
                record_error(e);
                ok = false;
            }
        }
        ok
    };
    // Records were handled since the sinks were last idle.
    let mut dirty = false;
    loop {
        let msg = match rx.try_recv() {
            Ok(m) => m,
            Err(crossbeam_channel::TryRecvError::Disconnected) => break,
            Err(crossbeam_channel::TryRecvError::Empty) => {
                if dirty {
                    dirty = !idle(&mut sinks);
                }
                for s in sinks.iter_mut() {
                    s.poll();
                }
                // Not blocked in the channel: senders never pay for waking us (see module docs).
                std::thread::park_timeout(IDLE_WAKE);
                continue;
            }
        };
        match msg {
            Msg::Rec(rec) => {
                dirty = true;
                let mut dropped = false;
                let mut failed = false;
                for s in sinks.iter_mut() {
                    if let Err(e) = s.write(&rec, &sh.ctl) {
                        *sh.last.lock() = Some(e.clone());
                        if e.kind() == Kind::Timeout && sh.ctl.closing_started() {
                            dropped = true;
                        } else {
                            failed = true;
                        }
                        record_error(e);
                    }
                }
                if dropped {
                    sh.dropped.fetch_add(1, Ordering::Relaxed);
                } else if failed {
                    sh.failed.fetch_add(1, Ordering::Relaxed);
                }
                sh.pending.fetch_sub(1, Ordering::Relaxed);
            }
            Msg::Barrier(b) => {
                dirty = !idle(&mut sinks);
                let _ = b.send(());
            }
            Msg::Close => break,
        }
    }
    for s in sinks.iter_mut() {
        if let Err(e) = s.close(&sh.ctl) {
            record_error(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::{Event, Record};
    use super::*;
    use std::time::SystemTime;

    struct Collect(Arc<Mutex<Vec<String>>>, Duration);
    impl Sink for Collect {
        fn write(&mut self, rec: &Record, _: &Control) -> Result<()> {
            std::thread::sleep(self.1);
            if let Record::Event(Event::Status { status }, _) = rec {
                if status == "fail" {
                    return Err(err!(Io, "sink failed on {status}"));
                }
                self.0.lock().push(status.clone());
            }
            Ok(())
        }
    }

    fn status(s: &str) -> Record {
        Record::Event(Event::Status { status: s.into() }, SystemTime::now())
    }

    #[test]
    fn in_order_and_errors_surface_once() {
        let out = Arc::new(Mutex::new(Vec::new()));
        let r = Reporter::start(vec![Box::new(Collect(out.clone(), Duration::ZERO))], 4).unwrap();
        for i in 0..100 {
            r.send(status(&i.to_string())).unwrap();
        }
        r.flush(Duration::from_secs(5)).unwrap();
        assert_eq!(
            *out.lock(),
            (0..100).map(|i| i.to_string()).collect::<Vec<_>>()
        );
        r.send(status("fail")).unwrap();
        r.flush(Duration::from_secs(5)).unwrap_err();
        r.send(status("after")).unwrap();
        r.send(status("fail")).unwrap();
        r.flush(Duration::from_secs(5)).unwrap_err();
        r.send(status("fail")).unwrap();
        r.flush(Duration::from_secs(5)).unwrap_err();
        // The next report call returns the pending failure, and its record is queued anyway.
        r.send(status("fail")).unwrap();
        let t = Instant::now();
        while r.pending() > 0 && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let e = r.send(status("queued")).unwrap_err();
        assert!(
            e.message().contains("earlier report was not delivered"),
            "{e}"
        );
        assert!(e.message().contains("sink failed"), "{e}");
        r.send(status("last")).unwrap();
        let e = r.close(Duration::from_secs(5)).unwrap_err();
        assert!(
            e.message().contains("4 report(s) were not delivered"),
            "{e}"
        );
        assert!(e.message().contains("refused"), "{e}");
        assert_eq!(
            &out.lock()[100..],
            &["after".to_string(), "queued".into(), "last".into()]
        );
        assert!(r.send(status("closed")).is_err());
    }

    #[test]
    fn a_retrying_sink_surfaces_without_dropping() {
        struct Retrying(Arc<Mutex<Vec<String>>>, Arc<AtomicBool>);
        impl Sink for Retrying {
            fn write(&mut self, rec: &Record, ctl: &Control) -> Result<()> {
                if let Record::Event(Event::Status { status }, _) = rec {
                    if status == "slow" {
                        ctl.surface(err!(Master, "master down, still retrying"));
                        self.1.store(true, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    self.0.lock().push(status.clone());
                }
                Ok(())
            }
        }
        let out = Arc::new(Mutex::new(Vec::new()));
        let retrying = Arc::new(AtomicBool::new(false));
        let r =
            Reporter::start(vec![Box::new(Retrying(out.clone(), retrying.clone()))], 8).unwrap();
        r.send(status("slow")).unwrap();
        // The reporter thread wakes within IDLE_WAKE (lazily); wait until the sink is retrying.
        let t = Instant::now();
        while !retrying.load(Ordering::SeqCst) {
            assert!(t.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(2));
        }
        let e = r.send(status("next")).unwrap_err();
        assert!(e.message().contains("still retrying"), "{e}");
        r.close(Duration::from_secs(5)).unwrap();
        assert_eq!(*out.lock(), vec!["slow".to_string(), "next".into()]);
    }

    #[test]
    fn close_deadline_names_undelivered() {
        let out = Arc::new(Mutex::new(Vec::new()));
        let r = Reporter::start(
            vec![Box::new(Collect(out, Duration::from_millis(300)))],
            100,
        )
        .unwrap();
        for i in 0..20 {
            r.send(status(&i.to_string())).unwrap();
        }
        let t = Instant::now();
        let e = r.close(Duration::from_millis(500)).unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(4));
        assert_eq!(e.kind(), Kind::Timeout);
        assert!(e.message().contains("not delivered"), "{e}");
    }

    #[test]
    fn background_sends_leave_errors_for_the_caller() {
        let out = Arc::new(Mutex::new(Vec::new()));
        let r = Reporter::start(vec![Box::new(Collect(out.clone(), Duration::ZERO))], 4).unwrap();
        r.send(status("fail")).unwrap();
        r.send(status("x")).unwrap();
        let t = Instant::now();
        while r.pending() > 0 {
            assert!(t.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(5));
        }
        // The profiler's send neither fails nor takes the pending error...
        r.send_background(status("bg")).unwrap();
        // ... which the caller's next report still gets.
        let e = r.send(status("next")).unwrap_err();
        assert!(e.message().contains("sink failed"), "{e}");
        // The refused report is counted at close.
        let e = r.close(Duration::from_secs(5)).unwrap_err();
        assert!(
            e.message().contains("1 report(s) were not delivered"),
            "{e}"
        );
        assert!(out.lock().contains(&"bg".to_owned()));
    }
}
