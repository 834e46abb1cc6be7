//! Preemption: should the training loop save and exit?
//!
//! Sources, fused into one sticky flag:
//! - POSIX signals (default SIGTERM and SIGUSR1; see [`signals`]);
//! - a halt file (`DET_HALT_FILE`): preempt once it exists;
//! - the job's end time (`DET_END_TIME`, epoch seconds, else Slurm's `SLURM_JOB_END_TIME`, else
//!   asked of Slurm with squeue, see [`slurm`]) minus a margin (`DET_HALT_SECONDS`, default
//!   [`DEFAULT_MARGIN_SECONDS`]);
//! - on-cluster, the master's long-poll ([`master`]: the poll and the acknowledgement thread).
//!
//! [`PreemptState::should_preempt`] is the hot path: one or two relaxed atomic loads while nothing
//! happened. A watcher thread checks the halt file and the clock; signal handlers set a global atomic.
//!
//! The halt file is looked for by the first `should_preempt` call itself (so a job restarted
//! while it exists stops at its first step, without waiting for the watcher's poll) and then every
//! [`HALT_FILE_POLL`]. detcore never removes it: like SCR's halt file, it stops the whole series of
//! restarts of a job until someone deletes it, and the log says so.

pub mod agreement;
pub mod longpoll;
pub mod master;
pub mod signals;
pub mod slurm;

use crate::error::Result;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Default margin before the job's end time at which preemption is requested.
pub const DEFAULT_MARGIN_SECONDS: f64 = 120.0;

/// How often the watcher looks for the halt file.
pub const HALT_FILE_POLL: Duration = Duration::from_millis(500);

/// Determined's `PreemptMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreemptMode {
    /// Every rank calls `should_preempt` in step; all get the chief's answer (default).
    WorkersAskChief,
    /// Only the chief may call.
    ChiefOnly,
    /// Every rank asks the master (or its own sources) independently.
    WorkersAskMaster,
}

/// What to watch, resolved from options and the environment.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// Signals that mean preemption (empty: no handlers installed).
    pub signals: Vec<i32>,
    /// Preempt once this file exists.
    pub halt_file: Option<PathBuf>,
    /// The job's end, in seconds since the epoch.
    pub end_time: Option<f64>,
    /// Preempt this many seconds before `end_time`.
    pub margin_seconds: f64,
}

impl Sources {
    /// Fill unset fields from `DET_HALT_FILE`, `DET_END_TIME` / `SLURM_JOB_END_TIME` and
    /// `DET_HALT_SECONDS`.
    pub fn resolve_env(
        signals: Vec<i32>,
        halt_file: Option<PathBuf>,
        end_time: Option<f64>,
        margin: Option<f64>,
    ) -> Result<Sources> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let halt_file = halt_file.or_else(|| env("DET_HALT_FILE").map(PathBuf::from));
        let end_time = match end_time {
            Some(t) => Some(t),
            None => match (env("DET_END_TIME"), env("SLURM_JOB_END_TIME")) {
                (Some(v), _) => Some(parse_seconds("DET_END_TIME", &v)?),
                (None, Some(v)) => Some(parse_seconds("SLURM_JOB_END_TIME", &v)?),
                (None, None) => None,
            },
        };
        let margin_seconds = match margin {
            Some(m) => m,
            None => match env("DET_HALT_SECONDS") {
                Some(v) => parse_seconds("DET_HALT_SECONDS", &v)?,
                None => DEFAULT_MARGIN_SECONDS,
            },
        };
        if !(margin_seconds >= 0.0 && margin_seconds.is_finite()) {
            bail!(
                InvalidArgument,
                "preempt margin: {margin_seconds} is not a non-negative number of seconds"
            );
        }
        for &s in &signals {
            signals::validate(s)?;
        }
        Ok(Sources {
            signals,
            halt_file,
            end_time,
            margin_seconds,
        })
    }
}

fn parse_seconds(name: &str, v: &str) -> Result<f64> {
    match v.trim().parse::<f64>() {
        Ok(f) if f.is_finite() && f >= 0.0 => Ok(f),
        _ => bail!(InvalidArgument, "{name}: {v:?} is not a number of seconds"),
    }
}

fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// [`PreemptState`]'s state bit: preemption was requested.
const PREEMPT: u8 = 1;
/// [`PreemptState`]'s state bit: the first `should_preempt` call has yet to look for the halt file.
const HALT_UNCHECKED: u8 = 2;

/// Something that tells the master a preemption was acknowledged (on-cluster).
pub trait Acknowledger: Send + Sync {
    /// Queue the acknowledgement; it must be delivered before the context closes.
    fn acknowledge(&self);
}

/// The shared, lock-free preemption state. The C handle keeps it alive for the hot path.
pub struct PreemptState {
    /// [`PREEMPT`] once a source asked for preemption (sticky), and [`HALT_UNCHECKED`] until
    /// the first call looked for the halt file: one word, so that the hot path reads one atomic.
    state: AtomicU8,
    use_signals: bool,
    /// Set for workers of a `ChiefOnly` context: `should_preempt` is refused with this message.
    refuse: Option<String>,
    /// `WorkersAskChief` with several ranks: the answer comes from the chief's horizons.
    agreement: OnceLock<Arc<agreement::Agreement>>,
    /// Whether this rank acknowledges preemptions (the chief, or every rank in WorkersAskMaster).
    acks: bool,
    announced: AtomicBool,
    acked: AtomicBool,
    reason: Mutex<Option<String>>,
    acknowledger: OnceLock<Arc<dyn Acknowledger>>,
    /// When `should_preempt` first answered true (a checkpoint after it is a preemption's).
    answered_at: OnceLock<std::time::Instant>,
    /// The halt file, looked for by the first `should_preempt` call.
    halt_file: OnceLock<PathBuf>,
    /// The halt file's INFO line was logged.
    halt_logged: AtomicBool,
}

impl PreemptState {
    /// A state that listens to the process's preemption signals if `use_signals`.
    pub fn new(use_signals: bool) -> PreemptState {
        PreemptState::with_mode(use_signals, PreemptMode::WorkersAskChief, 0)
    }

    /// A state for a process of `rank` in `mode`.
    pub fn with_mode(use_signals: bool, mode: PreemptMode, rank: u32) -> PreemptState {
        let refuse = (mode == PreemptMode::ChiefOnly && rank != 0).then(|| {
            format!(
                "PreemptContext was configured with preempt_mode=ChiefOnly but .should_preempt() was called from non-chief worker of rank={rank}"
            )
        });
        PreemptState {
            state: AtomicU8::new(0),
            use_signals,
            refuse,
            agreement: OnceLock::new(),
            acks: rank == 0 || mode == PreemptMode::WorkersAskMaster,
            announced: AtomicBool::new(false),
            acked: AtomicBool::new(false),
            reason: Mutex::new(None),
            acknowledger: OnceLock::new(),
            answered_at: OnceLock::new(),
            halt_file: OnceLock::new(),
            halt_logged: AtomicBool::new(false),
        }
    }

    /// Preempt when `path` exists: looked for at the first `should_preempt` call (the
    /// [`Watcher`] polls it afterwards).
    pub fn set_halt_file(&self, path: PathBuf) {
        if self.halt_file.set(path).is_ok() {
            self.state.fetch_or(HALT_UNCHECKED, Ordering::SeqCst);
        }
    }

    /// True once a source requested preemption (the sticky bit only; pending signals aside).
    #[inline]
    fn preempting(&self) -> bool {
        self.state.load(Ordering::Relaxed) & PREEMPT != 0
    }

    /// The halt file exists: request preemption, and say once at INFO what that means.
    #[cold]
    pub fn halt_file_seen(&self, f: &Path) {
        if !self.halt_logged.swap(true, Ordering::SeqCst) {
            log_info!(
                "halt file {} exists: this run saves and stops at its next should_preempt. detcore \
                 never removes it: every restart of this job stops the same way until you delete it \
                 (rm {})",
                f.display(),
                f.display()
            );
        }
        self.trigger(&format!("halt file {} exists", f.display()));
    }

    /// The first call's look for the halt file; true if it exists.
    #[cold]
    #[inline(never)]
    fn first_halt_check(&self) -> bool {
        if self.state.fetch_and(!HALT_UNCHECKED, Ordering::SeqCst) & HALT_UNCHECKED == 0 {
            return self.preempting();
        }
        match self.halt_file.get() {
            Some(f) if f.exists() => {
                self.halt_file_seen(f);
                true
            }
            _ => false,
        }
    }

    /// True when `state` (as just read) or a pending signal asks for preemption; the first call
    /// with a halt file also looks for it. While nothing happened, `state` is 0: one test, then
    /// the signal check.
    #[inline]
    fn wants(&self, state: u8) -> bool {
        if state != 0 {
            return state & PREEMPT != 0 || self.first_halt_check() || self.signal_pending();
        }
        self.signal_pending()
    }

    /// A preemption signal arrived (and is now the reason, if none was before).
    #[inline]
    fn signal_pending(&self) -> bool {
        if self.use_signals && signals::is_pending() {
            self.trigger_signal();
            return true;
        }
        false
    }

    /// The local answer: has any source asked for preemption? Sticky.
    /// With `auto_ack`, the first true answer also acknowledges (on-cluster: one POST, sent
    /// from a background thread).
    #[inline]
    pub fn should_preempt(&self, auto_ack: bool) -> Result<bool> {
        if let Some(msg) = &self.refuse {
            return Err(err!(State, "{msg}"));
        }
        if let Some(a) = self.agreement.get() {
            return self.agreed(a, auto_ack);
        }
        if !self.wants(self.state.load(Ordering::Relaxed)) {
            return Ok(false);
        }
        self.on_true(auto_ack);
        Ok(true)
    }

    /// True once preemption was requested, without side effects.
    #[inline]
    pub fn is_set(&self) -> bool {
        self.preempting() || (self.use_signals && signals::is_pending())
    }

    #[inline]
    fn agreed(&self, a: &agreement::Agreement, auto_ack: bool) -> Result<bool> {
        let v = a.call(|| self.local_wants())?;
        if v {
            if !self.preempting() {
                self.trigger("the chief decided to preempt");
            }
            self.on_true(auto_ack);
        }
        Ok(v)
    }

    /// This rank's own sources (signals, halt file, end time, master).
    #[inline]
    fn local_wants(&self) -> bool {
        self.wants(self.state.load(Ordering::Relaxed))
    }

    /// Make the answers come from the chief (WorkersAskChief with several ranks).
    pub fn set_agreement(&self, a: Arc<agreement::Agreement>) {
        let _ = self.agreement.set(a);
    }

    #[cold]
    fn trigger_signal(&self) {
        if let Some(sig) = signals::pending() {
            self.trigger(&format!("received {}", signals::name(sig)));
        }
    }

    #[cold]
    fn on_true(&self, auto_ack: bool) {
        if !self.announced.swap(true, Ordering::Relaxed) {
            let _ = self.answered_at.set(std::time::Instant::now());
            let why = self
                .reason
                .lock()
                .clone()
                .unwrap_or_else(|| "requested".into());
            log_info!("preemption signal received ({why}); save a checkpoint and exit");
        }
        if auto_ack && self.acks && !self.acked.load(Ordering::Relaxed) {
            self.acknowledge();
        }
    }

    /// When `should_preempt` first answered true, if it did.
    pub fn answered_at(&self) -> Option<std::time::Instant> {
        self.answered_at.get().copied()
    }

    /// Request preemption because of `why` (idempotent; the first reason is kept).
    pub fn trigger(&self, why: &str) {
        {
            let mut r = self.reason.lock();
            if r.is_none() {
                *r = Some(why.to_owned());
            }
        }
        self.state.fetch_or(PREEMPT, Ordering::SeqCst);
    }

    /// Why preemption was requested, if it was.
    pub fn reason(&self) -> Option<String> {
        if self.is_set() && self.reason.lock().is_none() {
            self.trigger_signal();
        }
        self.reason.lock().clone()
    }

    /// Acknowledge the preemption (once per context; later calls do nothing).
    pub fn acknowledge(&self) {
        if self.acked.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(a) = self.acknowledger.get() {
            a.acknowledge();
        }
    }

    /// True once acknowledged.
    pub fn acknowledged(&self) -> bool {
        self.acked.load(Ordering::SeqCst)
    }

    /// Set who delivers acknowledgements (on-cluster).
    pub fn set_acknowledger(&self, a: Arc<dyn Acknowledger>) {
        let _ = self.acknowledger.set(a);
    }
}

/// The background thread watching the halt file and the clock.
pub struct Watcher {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Start watching `sources` (no thread if there is nothing to watch).
    pub fn start(state: Arc<PreemptState>, sources: &Sources) -> Result<Watcher> {
        let halt_file = sources.halt_file.clone();
        let deadline = sources.end_time.map(|t| t - sources.margin_seconds);
        if let Some(d) = deadline {
            let left = d - now_epoch();
            if left <= 0.0 {
                log_warn!(
                    "the job ends in {:.0} s, within the {:.0} s preemption margin: preempting now",
                    left + sources.margin_seconds,
                    sources.margin_seconds
                );
            }
        }
        if halt_file.is_none() && deadline.is_none() {
            return Ok(Watcher {
                stop: None,
                thread: None,
            });
        }
        let (tx, rx) = bounded::<()>(1);
        let thread = std::thread::Builder::new()
            .name("detcore-preempt".into())
            .spawn(move || watch(state, rx, halt_file, deadline))
            .map_err(|e| err!(Internal, "cannot start the preemption watcher thread: {e}"))?;
        Ok(Watcher {
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// Stop and join the thread.
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop();
    }
}

fn watch(
    state: Arc<PreemptState>,
    stop: Receiver<()>,
    halt_file: Option<PathBuf>,
    deadline: Option<f64>,
) {
    loop {
        if let Some(f) = &halt_file {
            if f.exists() {
                state.halt_file_seen(f);
                return;
            }
        }
        let mut wait = if halt_file.is_some() {
            HALT_FILE_POLL
        } else {
            Duration::from_secs(3600)
        };
        if let Some(d) = deadline {
            let left = d - now_epoch();
            if left <= 0.0 {
                state.trigger("the job's end time is near");
                return;
            }
            wait = wait.min(crate::time::secs(left));
        }
        match stop.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
    }
}

/// Seconds until the job's end time, if one is known.
pub fn seconds_remaining(sources: &Sources) -> Option<f64> {
    sources.end_time.map(|t| t - now_epoch())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sticky_and_acknowledged_once() {
        struct Count(std::sync::atomic::AtomicUsize);
        impl Acknowledger for Count {
            fn acknowledge(&self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let s = PreemptState::new(false);
        let c = Arc::new(Count(0.into()));
        s.set_acknowledger(c.clone());
        assert!(!s.should_preempt(true).unwrap());
        s.trigger("test");
        assert!(s.should_preempt(false).unwrap());
        assert_eq!(c.0.load(Ordering::SeqCst), 0);
        assert!(s.should_preempt(true).unwrap());
        assert!(s.should_preempt(true).unwrap());
        assert_eq!(c.0.load(Ordering::SeqCst), 1);
        assert_eq!(s.reason().as_deref(), Some("test"));
    }

    #[test]
    fn chief_only_refuses_workers() {
        let s = PreemptState::with_mode(false, PreemptMode::ChiefOnly, 2);
        assert!(s
            .should_preempt(true)
            .unwrap_err()
            .message()
            .contains("rank=2"));
        let s = PreemptState::with_mode(false, PreemptMode::ChiefOnly, 0);
        assert!(!s.should_preempt(true).unwrap());
    }

    #[test]
    fn halt_file_and_deadline() {
        let dir = crate::testutil::TempDir::new("halt");
        let f = dir.path().join("HALT");
        let s = Arc::new(PreemptState::new(false));
        let src = Sources {
            halt_file: Some(f.clone()),
            ..Default::default()
        };
        let mut w = Watcher::start(s.clone(), &src).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(!s.is_set());
        std::fs::write(&f, b"").unwrap();
        let t0 = std::time::Instant::now();
        while !s.is_set() && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(s.is_set());
        w.stop();

        let s = Arc::new(PreemptState::new(false));
        let src = Sources {
            end_time: Some(now_epoch() + 0.3),
            margin_seconds: 0.1,
            ..Default::default()
        };
        let mut w = Watcher::start(s.clone(), &src).unwrap();
        assert!(!s.is_set());
        std::thread::sleep(Duration::from_millis(600));
        assert!(s.is_set());
        assert!(s.reason().unwrap().contains("end time"));
        w.stop();
    }

    #[test]
    fn halt_file_is_seen_by_the_first_call_without_a_watcher() {
        let dir = std::env::temp_dir().join(format!("detcore-halt1-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("HALT");
        std::fs::write(&f, b"").unwrap();
        let s = PreemptState::new(false);
        s.set_halt_file(f.clone());
        assert!(!s.is_set());
        assert!(s.should_preempt(false).unwrap());
        assert!(s.reason().unwrap().contains("halt file"));
        // Only the first call looks: a file created later is the watcher's to find.
        let s = PreemptState::new(false);
        s.set_halt_file(dir.join("LATER"));
        assert!(!s.should_preempt(false).unwrap());
        std::fs::write(dir.join("LATER"), b"").unwrap();
        assert!(!s.should_preempt(false).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn env_parsing_errors_name_the_variable() {
        let e = parse_seconds("DET_END_TIME", "tomorrow").unwrap_err();
        assert!(e.message().contains("DET_END_TIME"));
        assert!(Sources::resolve_env(vec![libc::SIGKILL], None, None, Some(1.0)).is_err());
        assert!(Sources::resolve_env(vec![], None, None, Some(-1.0)).is_err());
    }
}
