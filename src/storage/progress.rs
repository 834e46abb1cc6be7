//! Progress lines of long transfers (checkpoint uploads, downloads, restores, folder copies).
//!
//! A transfer that lasts more than [`FIRST_LINE_AFTER`] prints, at INFO, at most one line every
//! [`LINE_INTERVAL`]: bytes done of the total, throughput and the time left at that pace; when it
//! printed any, a last line says how it ended. Short transfers print nothing.
//!
//! The bytes are counted where they move: by the transfer threads, through [`Progress::add`], or
//! — for file bodies streamed by the HTTP layer, which knows nothing of transfers — through the
//! progress the calling thread registered with [`scoped`]. Bytes of an attempt that failed and
//! will be sent again are taken back with [`Progress::sub`].
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A transfer shorter than this prints nothing.
pub const FIRST_LINE_AFTER: Duration = Duration::from_secs(3);
/// The shortest time between two progress lines of one transfer.
pub const LINE_INTERVAL: Duration = Duration::from_secs(5);

/// The progress of one transfer, shared by its threads.
pub struct Progress {
    what: String,
    total: u64,
    done: AtomicU64,
    start: Instant,
    /// Milliseconds after `start` before which no line is printed.
    next_line_ms: AtomicU64,
    printed: AtomicBool,
    first_after: Duration,
    interval: Duration,
}

impl Progress {
    /// The progress of `what` (e.g. `upload to s3://bucket/prefix/<id>/`), `total` bytes.
    pub fn new(what: impl Into<String>, total: u64) -> Arc<Progress> {
        Progress::with_timing(what, total, FIRST_LINE_AFTER, LINE_INTERVAL)
    }

    fn with_timing(
        what: impl Into<String>,
        total: u64,
        first_after: Duration,
        interval: Duration,
    ) -> Arc<Progress> {
        Arc::new(Progress {
            what: what.into(),
            total,
            done: AtomicU64::new(0),
            start: Instant::now(),
            next_line_ms: AtomicU64::new(first_after.as_millis() as u64),
            printed: AtomicBool::new(false),
            first_after,
            interval,
        })
    }

    /// `n` more bytes moved; prints a line when one is due.
    pub fn add(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
        if let Some(line) = self.due_line(self.start.elapsed()) {
            log_info!("{line}");
        }
    }

    /// `n` bytes counted by an attempt that failed (they will be sent again).
    pub fn sub(&self, n: u64) {
        let _ = self
            .done
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
                Some(d.saturating_sub(n))
            });
    }

    /// Bytes done so far.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// The line to print at `elapsed`, if one is due (claimed by one thread only).
    fn due_line(&self, elapsed: Duration) -> Option<String> {
        let ms = elapsed.as_millis() as u64;
        let next = self.next_line_ms.load(Ordering::Relaxed);
        if ms < next {
            return None;
        }
        let after = ms + self.interval.as_millis() as u64;
        self.next_line_ms
            .compare_exchange(next, after, Ordering::Relaxed, Ordering::Relaxed)
            .ok()?;
        self.printed.store(true, Ordering::Relaxed);
        Some(self.line(elapsed))
    }

    fn line(&self, elapsed: Duration) -> String {
        let done = self.done().min(self.total);
        let secs = elapsed.as_secs_f64();
        let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
        let pct = if self.total > 0 {
            done as f64 * 100.0 / self.total as f64
        } else {
            100.0
        };
        let left = if rate > 0.0 {
            format!(
                ", about {} left",
                human_secs((self.total - done) as f64 / rate)
            )
        } else {
            String::new()
        };
        format!(
            "{}: {} of {} ({pct:.0}%), {}/s{left}",
            self.what,
            human_bytes(done as f64),
            human_bytes(self.total as f64),
            human_bytes(rate)
        )
    }

    /// The transfer ended: a last line if progress lines were printed.
    pub fn finish(&self, ok: bool) {
        if let Some(line) = self.final_line(ok, self.start.elapsed()) {
            log_info!("{line}");
        }
    }

    fn final_line(&self, ok: bool, elapsed: Duration) -> Option<String> {
        if !self.printed.load(Ordering::Relaxed) && elapsed < self.first_after {
            return None;
        }
        if !self.printed.load(Ordering::Relaxed) {
            // Long, but no byte moved after the threshold (e.g. one large part): say it anyway.
            self.printed.store(true, Ordering::Relaxed);
        }
        let secs = elapsed.as_secs_f64();
        let done = self.done().min(self.total);
        Some(if ok {
            format!(
                "{}: done, {} in {} ({}/s)",
                self.what,
                human_bytes(self.total as f64),
                human_secs(secs),
                human_bytes(if secs > 0.0 {
                    self.total as f64 / secs
                } else {
                    0.0
                })
            )
        } else {
            format!(
                "{}: failed after {} of {} in {}",
                self.what,
                human_bytes(done as f64),
                human_bytes(self.total as f64),
                human_secs(secs)
            )
        })
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<Progress>>> = const { RefCell::new(None) };
}

/// Run `f` with `p` as this thread's current progress (what [`add_current`] counts into).
pub fn scoped<R>(p: &Arc<Progress>, f: impl FnOnce() -> R) -> R {
    let prev = CURRENT.with(|c| c.replace(Some(p.clone())));
    struct Restore(Option<Arc<Progress>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            CURRENT.with(|c| *c.borrow_mut() = prev);
        }
    }
    let _restore = Restore(prev);
    f()
}

/// Count `n` bytes into this thread's current progress, if any.
pub fn add_current(n: u64) {
    CURRENT.with(|c| {
        if let Some(p) = c.borrow().as_ref() {
            p.add(n);
        }
    });
}

/// Take back `n` bytes from this thread's current progress, if any.
pub fn sub_current(n: u64) {
    CURRENT.with(|c| {
        if let Some(p) = c.borrow().as_ref() {
            p.sub(n);
        }
    });
}

/// `1.5 GiB`, `312.0 MiB`, `12 B`.
pub fn human_bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `42 s`, `3 min 5 s`, `2 h 10 min`.
pub fn human_secs(s: f64) -> String {
    let s = if s.is_finite() { s.max(0.0) } else { 0.0 };
    if s < 60.0 {
        format!("{s:.0} s")
    } else if s < 3600.0 {
        format!("{} min {} s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!(
            "{} h {} min",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn lines_start_after_the_threshold_and_are_spaced() {
        let p = Progress::with_timing(
            "upload to s3://b/c/",
            1000 * MIB,
            Duration::from_secs(3),
            Duration::from_secs(5),
        );
        p.done.store(100 * MIB, Ordering::Relaxed);
        assert_eq!(p.due_line(Duration::from_secs(2)), None);
        let l = p.due_line(Duration::from_secs(4)).unwrap();
        assert_eq!(
            l,
            "upload to s3://b/c/: 100.0 MiB of 1000.0 MiB (10%), 25.0 MiB/s, about 36 s left"
        );
        // Claimed: nothing until the interval has passed.
        assert_eq!(p.due_line(Duration::from_secs(4)), None);
        assert_eq!(p.due_line(Duration::from_secs(8)), None);
        p.done.store(500 * MIB, Ordering::Relaxed);
        let l = p.due_line(Duration::from_secs(10)).unwrap();
        assert!(
            l.contains("500.0 MiB of 1000.0 MiB (50%), 50.0 MiB/s, about 10 s left"),
            "{l}"
        );
        let end = p.final_line(true, Duration::from_secs(20)).unwrap();
        assert_eq!(
            end,
            "upload to s3://b/c/: done, 1000.0 MiB in 20 s (50.0 MiB/s)"
        );
    }

    #[test]
    fn short_transfers_print_nothing() {
        let p = Progress::new("x", 10);
        p.add(10);
        assert_eq!(p.final_line(true, Duration::from_millis(500)), None);
        // A long one that never got a progress line still gets its last line.
        assert!(p.final_line(false, Duration::from_secs(4)).is_some());
    }

    #[test]
    fn failed_attempts_are_taken_back_and_the_current_progress_is_per_thread() {
        let p = Progress::new("x", 100);
        scoped(&p, || {
            add_current(60);
            sub_current(20);
            std::thread::scope(|s| {
                s.spawn(|| add_current(1000)); // another thread: not counted
            });
        });
        add_current(5); // outside the scope: not counted
        assert_eq!(p.done(), 40);
        p.sub(1000);
        assert_eq!(p.done(), 0);
        let failed = p.final_line(false, Duration::from_secs(9)).unwrap();
        assert_eq!(failed, "x: failed after 0 B of 100 B in 9 s");
    }

    #[test]
    fn units() {
        assert_eq!(human_bytes(12.0), "12 B");
        assert_eq!(human_bytes(1536.0 * MIB as f64), "1.5 GiB");
        assert_eq!(human_secs(185.0), "3 min 5 s");
        assert_eq!(human_secs(7800.0), "2 h 10 min");
        assert_eq!(human_secs(f64::INFINITY), "0 s");
    }
}
