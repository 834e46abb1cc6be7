//! On-cluster sink: each report is one request to the master, in order (docs/protocol.md#metrics):
//! metrics → `POST /api/v1/trials/<id>/metrics`, progress → `POST .../progress`, status →
//! `POST .../runner/metadata`.
//!
//! Unlike Python's shipper thread, which dies on the first error and then queues forever, this
//! sink never drops a report it could still deliver:
//! - a connection failure, a lost answer, a timeout or a 5xx/429 answer is retried with the
//!   policy's backoff (`DET_RETRY_CONFIG`); when the policy's budget is spent, the failure is
//!   surfaced to the next report call and the report is still retried, every `backoff_max`
//!   seconds, until it is delivered or `close`'s deadline passes (then it is counted as not
//!   delivered);
//! - a redirect (3xx) is never followed (it would send the token elsewhere); the report is kept
//!   and retried like a failed connection, and the error names the `Location`;
//! - any other answer (400, 401, 403, 404) is a refusal: the report cannot ever be delivered; the
//!   error is returned by the next report call and counted by `close`.
//!
//! A report the master keeps answering with 5xx while it answers other requests (a "poison"
//! report, e.g. one the database cannot store) would otherwise block every later report: after
//! [`POISON_CHECK_AFTER`] of 5xx answers to the same report, the sink asks the master's `/info`;
//! if the master answers that, the report is counted as refused and the next one is sent. During
//! an outage `/info` fails too, and the report keeps being retried.
//!
//! A POST whose answer was lost may be replayed (as in Python); if the replay is refused with 400
//! (the master refuses a second report of batch metrics for the same step), the first copy was
//! stored and the report counts as delivered, with a warning.

use super::record::{Event, Record};
use super::reporter::{Control, Sink};
use crate::error::{Error, Kind, Result};
use crate::json::{to_wire, Value};
use crate::master::api::{metrics_body, progress_body, status_body, TrialMetrics};
use crate::master::retry::Failure;
use crate::master::MasterClient;
use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one report may be answered with 5xx before the sink checks whether the master is
/// up (and then gives the report up as refused).
pub const POISON_CHECK_AFTER: Duration = Duration::from_secs(60);

/// [`POISON_CHECK_AFTER`], or `DETCORE_MASTER_POISON_SECONDS` (tests).
fn poison_check_after() -> Duration {
    std::env::var("DETCORE_MASTER_POISON_SECONDS")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .and_then(|v| Duration::try_from_secs_f64(v).ok())
        .unwrap_or(POISON_CHECK_AFTER)
}

/// Delivers reports to the master.
pub struct MasterSink {
    client: Arc<MasterClient>,
    trial_id: i64,
    trial_run_id: i64,
    metrics_path: String,
    progress_path: String,
    status_path: String,
    refusals: Cell<u64>,
    /// [`poison_check_after`], read once.
    poison_after: Duration,
}

impl MasterSink {
    /// A sink for trial `trial_id`, run `trial_run_id`.
    pub fn new(client: Arc<MasterClient>, trial_id: i64, trial_run_id: i64) -> MasterSink {
        MasterSink {
            client,
            trial_id,
            trial_run_id,
            metrics_path: format!("/api/v1/trials/{trial_id}/metrics"),
            progress_path: format!("/api/v1/trials/{trial_id}/progress"),
            status_path: format!("/api/v1/trials/{trial_id}/runner/metadata"),
            refusals: Cell::new(0),
            poison_after: poison_check_after(),
        }
    }

    /// Count a report the master will never take; logs the first ones.
    fn refused(&self, msg: String) -> Error {
        let n = self.refusals.get() + 1;
        self.refusals.set(n);
        if n <= 3 || n.is_multiple_of(100) {
            log_warn!("report refused ({n} so far): {msg}");
        }
        Error::new(Kind::Master, msg)
    }

    fn deliver(&self, path: &str, body: &Value, ctl: &Control) -> Result<()> {
        let text = to_wire(body);
        let policy = self.client.retry_policy();
        let mut budget = policy.start();
        let mut failures: u32 = 0;
        let mut surfaced = false;
        let mut answer_lost = false;
        let started = Instant::now();
        let mut first_5xx: Option<Instant> = None;
        loop {
            let mut timeout = self.client.timeouts().request;
            if let Some(left) = ctl.time_left() {
                if left.is_zero() {
                    return Err(Error::new(
                        Kind::Timeout,
                        format!("POST {path}: not delivered before the close deadline"),
                    ));
                }
                timeout = timeout.min(left);
            }
            let e = match self.client.attempt("POST", path, Some(&text), timeout) {
                Ok(_) => {
                    if failures > 0 {
                        log_info!(
                            "POST {path}: delivered after {failures} failed attempt(s) over {:.1} s",
                            started.elapsed().as_secs_f64()
                        );
                    }
                    return Ok(());
                }
                Err(e) => e,
            };
            let transient = match (&e.failure, e.status) {
                (None, _) => false,
                // A redirect: refused as the master's answer, but the report is kept and
                // retried (the master's address may be fixed), never counted as delivered.
                (Some(Failure::Status { .. }), Some(code)) => {
                    code >= 500 || code == 429 || code == 408 || (300..400).contains(&code)
                }
                _ => true,
            };
            if !transient {
                if e.status == Some(400) && answer_lost {
                    log_warn!(
                        "POST {path}: the master refused a replay of a report whose first answer was lost ({}); the first copy was stored",
                        e.message
                    );
                    return Ok(());
                }
                return Err(self.refused(format!("POST {path}: {}", e.message)));
            }
            if e.status.is_some_and(|c| c >= 500) {
                let since = *first_5xx.get_or_insert_with(Instant::now);
                if since.elapsed() >= self.poison_after && self.master_is_up() {
                    self.refusals.set(self.refusals.get() + 1);
                    let msg = format!(
                        "POST {path}: the master answered this report with errors for {:.0} s while answering other requests ({}); giving it up",
                        since.elapsed().as_secs_f64(),
                        e.message
                    );
                    log_warn!("{msg}");
                    return Err(Error::new(Kind::Master, msg));
                }
            } else {
                first_5xx = None;
            }
            answer_lost |= e.failure == Some(Failure::Read);
            failures += 1;
            let failure = e.failure.clone().unwrap_or(Failure::Other);
            let within = budget.next("POST", &failure);
            if failures == 1 {
                log_warn!(
                    "POST {path}: {}; reports are kept in memory and retried until the master answers",
                    e.message
                );
            } else {
                log_debug!("POST {path}: {} (attempt {})", e.message, failures + 1);
            }
            if within.is_none() && !surfaced {
                surfaced = true;
                let msg = format!(
                    "POST {path}: the master did not take the report after {failures} attempt(s) over {:.0} s ({}); reports are kept and still retried",
                    started.elapsed().as_secs_f64(),
                    e.message
                );
                log_warn!("{msg}");
                ctl.surface(Error::new(
                    if e.timed_out {
                        Kind::Timeout
                    } else {
                        Kind::Master
                    },
                    msg,
                ));
            }
            let wait = within.unwrap_or_else(|| policy.max_backoff());
            let past_deadline = || ctl.time_left().is_some_and(|l| l.is_zero());
            let opts = crate::master::client::CallOpts {
                deadline: ctl.time_left().map(crate::time::deadline),
                stop: Some(&past_deadline),
                attempt_timeout: None,
                quiet: true,
            };
            if !crate::master::client::sleep_interruptible(wait, opts) {
                return Err(Error::new(
                    Kind::Timeout,
                    format!(
                        "POST {path}: not delivered before the close deadline (last error: {})",
                        e.message
                    ),
                ));
            }
        }
    }
}

impl MasterSink {
    /// True if the master answers a cheap request (any status below 500).
    fn master_is_up(&self) -> bool {
        match self
            .client
            .attempt("GET", "/info", None, self.client.timeouts().request)
        {
            Ok(_) => true,
            Err(e) => e.status.is_some_and(|c| c < 500),
        }
    }
}

impl Sink for MasterSink {
    fn write(&mut self, rec: &Record, ctl: &Control) -> Result<()> {
        match rec {
            Record::Metrics(r) => {
                // Profiler reports are not logged (as in Python).
                if !r.is_profiler() {
                    log_info!("{}", super::jsonl::log_line(rec));
                }
                let m = TrialMetrics {
                    group: &r.group,
                    steps_completed: r.steps_completed,
                    avg_metrics: r.metrics.to_map(),
                    batch_metrics: r.batch_metrics.as_deref(),
                    report_time: r.send_report_time.then_some(r.time),
                };
                let body = metrics_body(self.trial_id, self.trial_run_id, m);
                self.deliver(&self.metrics_path, &body, ctl)
            }
            Record::Event(Event::Progress { progress }, _) => {
                log_debug!("report_progress with progress={progress}");
                self.deliver(&self.progress_path, &progress_body(*progress), ctl)
            }
            Record::Event(Event::Status { status }, _) => {
                log_debug!("set_status({status})");
                self.deliver(&self.status_path, &status_body(status), ctl)
            }
            Record::Event(e @ Event::SearcherCompleted { .. }, t) => {
                // No master call in 0.38 (the master decides from validation metrics).
                log_debug!("{}", super::jsonl::log_line(&Record::Event(e.clone(), *t)));
                Ok(())
            }
            // Early exit is sent by the trial backend itself (after a flush), and checkpoints
            // by the checkpoint layer: nothing reaches the master from here.
            Record::Event(
                Event::EarlyExit { .. }
                | Event::Checkpoint { .. }
                | Event::CheckpointDeleted { .. },
                _,
            ) => Ok(()),
        }
    }
}
