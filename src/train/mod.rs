//! Training reports: metrics, progress, status, early exit, run metadata (Determined's
//! `TrainContext`).
//!
//! Every report is validated on the caller's thread, then queued for the background
//! [`reporter::Reporter`]; the caller never waits on disk or network.

pub mod console;
pub mod jsonl;
pub mod master_backend;
pub mod master_sink;
pub mod record;
pub mod reporter;

pub use record::{validate_group, Event, Metrics, MetricsReport, Record, Scalars};
pub use reporter::{Control, Reporter, Sink};

use crate::error::Result;
use crate::json::{Map, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

/// The largest `steps_completed` the master stores (a protobuf `int32`).
pub const MAX_STEPS_COMPLETED: u64 = i32::MAX as u64;

/// Determined's `EarlyExitReason` (only `INVALID_HP` is accepted by the master).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlyExitReason {
    InvalidHp,
}

impl EarlyExitReason {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            EarlyExitReason::InvalidHp => "EXITED_REASON_INVALID_HP",
        }
    }
}

/// Check a `steps_completed` value against the master's limit.
pub fn check_steps(steps: u64) -> Result<()> {
    if steps > MAX_STEPS_COMPLETED {
        bail!(
            InvalidArgument,
            "steps_completed: {steps} exceeds the master's limit of {MAX_STEPS_COMPLETED} (a 32-bit integer)"
        );
    }
    Ok(())
}

/// Where the non-metrics calls go.
pub trait TrainBackend: Send + Sync {
    /// `get_experiment_best_validation()`: `None` when there is none.
    fn best_validation(&self) -> Result<Option<f64>>;
    /// `set_metadata(m)`: returns the run's resulting metadata.
    fn set_run_metadata(&self, m: &Map) -> Result<Map>;
    /// `get_metadata()`.
    fn get_run_metadata(&self) -> Result<Map>;
    /// `set_status`, `report_progress`, `report_early_exit` — delivered in order with the metrics
    /// (`None`: queued to the reporter as an [`Event`]).
    fn event(&self, _e: &Event) -> Option<Result<()>> {
        None
    }
}

/// The training half of a context.
pub struct TrainContext {
    reporter: Arc<Reporter>,
    backend: Box<dyn TrainBackend>,
    training: Arc<str>,
    validation: Arc<str>,
    /// Told of every validation report (off-cluster checkpoint retention ranks checkpoints by
    /// a validation metric).
    validation_observer: std::sync::OnceLock<ValidationObserver>,
}

/// A function told of every validation report (`steps`, metrics), on the reporting thread; it
/// must not block.
pub type ValidationObserver = Box<dyn Fn(u64, &Metrics) + Send + Sync>;

impl TrainContext {
    /// A train context that reports through `reporter` and asks `backend` for the rest.
    pub fn new(reporter: Arc<Reporter>, backend: Box<dyn TrainBackend>) -> TrainContext {
        TrainContext {
            reporter,
            backend,
            training: Arc::from("training"),
            validation: Arc::from("validation"),
            validation_observer: std::sync::OnceLock::new(),
        }
    }

    /// Set the function told of every validation report (once; later calls are ignored).
    pub fn observe_validations(&self, f: ValidationObserver) {
        let _ = self.validation_observer.set(f);
    }

    /// The reporter (shared with the searcher, checkpoints and the profiler).
    pub fn reporter(&self) -> &Arc<Reporter> {
        &self.reporter
    }

    fn send(
        &self,
        group: Arc<str>,
        steps: u64,
        metrics: Metrics,
        batch: Option<Vec<Map>>,
        method: &'static str,
    ) -> Result<()> {
        check_steps(steps)?;
        self.reporter.send(Record::Metrics(Box::new(MetricsReport {
            group,
            steps_completed: Some(steps),
            metrics,
            batch_metrics: batch,
            time: SystemTime::now(),
            send_report_time: false,
            method,
        })))
    }

    /// `report_training_metrics(steps_completed, metrics, batch_metrics)`.
    pub fn report_training_metrics(
        &self,
        steps: u64,
        metrics: Metrics,
        batch: Option<Vec<Map>>,
    ) -> Result<()> {
        self.send(
            self.training.clone(),
            steps,
            metrics,
            batch,
            "report_training_metrics",
        )
    }

    /// `report_validation_metrics(steps_completed, metrics)`: a `null` value is refused, as in
    /// Python.
    pub fn report_validation_metrics(&self, steps: u64, metrics: Metrics) -> Result<()> {
        if let Metrics::Json(m) = &metrics {
            if let Some((k, _)) = m.iter().find(|(_, v)| v.is_null()) {
                bail!(
                    InvalidArgument,
                    "Validation metric '{k}' returned an invalid scalar value: None"
                );
            }
        }
        if let Some(observe) = self.validation_observer.get() {
            check_steps(steps)?;
            observe(steps, &metrics);
        }
        self.send(
            self.validation.clone(),
            steps,
            metrics,
            None,
            "report_validation_metrics",
        )
    }

    /// `report_metrics(group, steps_completed, metrics)`.
    pub fn report_metrics(&self, group: &str, steps: u64, metrics: Metrics) -> Result<()> {
        match group {
            "training" => self.report_training_metrics(steps, metrics, None),
            "validation" => self.report_validation_metrics(steps, metrics),
            _ => {
                validate_group(group)?;
                self.send(Arc::from(group), steps, metrics, None, "report_metrics")
            }
        }
    }

    /// A profiler report (no step, with `reportTime`). Sent from the profiler's thread, so an
    /// earlier delivery error is left for the user's next report call.
    pub fn report_profiler(&self, group: &str, metrics: Map) -> Result<()> {
        validate_group(group)?;
        self.reporter
            .send_background(Record::Metrics(Box::new(MetricsReport {
                group: Arc::from(group),
                steps_completed: None,
                metrics: Metrics::Json(metrics),
                batch_metrics: None,
                time: SystemTime::now(),
                send_report_time: true,
                method: "report_metrics",
            })))
    }

    fn event(&self, e: Event) -> Result<()> {
        match self.backend.event(&e) {
            Some(r) => r,
            None => self.reporter.send(Record::Event(e, SystemTime::now())),
        }
    }

    /// `set_status(status)`: the runner state shown in the WebUI.
    pub fn set_status(&self, status: &str) -> Result<()> {
        self.event(Event::Status {
            status: status.to_owned(),
        })
    }

    /// `report_progress(progress)`, `0 <= progress <= 1`.
    pub fn report_progress(&self, progress: f64) -> Result<()> {
        if !(0.0..=1.0).contains(&progress) {
            bail!(
                InvalidArgument,
                "progress: {progress} must be between 0 and 1"
            );
        }
        self.event(Event::Progress { progress })
    }

    /// `report_early_exit(reason)`.
    pub fn report_early_exit(&self, reason: EarlyExitReason) -> Result<()> {
        self.event(Event::EarlyExit {
            reason: reason.as_str().to_owned(),
        })
    }

    /// Queue another event (searcher, checkpoints).
    pub fn report_event(&self, e: Event) -> Result<()> {
        self.event(e)
    }

    /// `get_experiment_best_validation()`.
    pub fn get_experiment_best_validation(&self) -> Result<Option<f64>> {
        self.backend.best_validation()
    }

    /// `set_metadata(metadata)` of the run; returns the resulting metadata.
    pub fn set_run_metadata(&self, m: &Map) -> Result<Map> {
        self.backend.set_run_metadata(m)
    }

    /// `get_metadata()` of the run.
    pub fn get_run_metadata(&self) -> Result<Map> {
        self.backend.get_run_metadata()
    }
}

/// Off-cluster: no best validation, run metadata in `<run_dir>/run_metadata.json` (Python's
/// dummy context crashes here instead: it has no session).
pub struct LocalTrainBackend {
    pub run_dir: PathBuf,
    lock: parking_lot::Mutex<()>,
}

impl LocalTrainBackend {
    /// A backend keeping run metadata in `run_dir`.
    pub fn new(run_dir: PathBuf) -> LocalTrainBackend {
        LocalTrainBackend {
            run_dir,
            lock: parking_lot::Mutex::new(()),
        }
    }

    fn path(&self) -> PathBuf {
        self.run_dir.join("run_metadata.json")
    }
}

/// Merge `src` into `dst`: objects recursively, other values replaced.
pub fn merge_into(dst: &mut Map, src: &Map) {
    for (k, v) in src.iter() {
        match (dst.get_mut(k), v) {
            (Some(Value::Object(d)), Value::Object(s)) => merge_into(d, s),
            _ => dst.insert(k.clone(), v.clone()),
        }
    }
}

impl TrainBackend for LocalTrainBackend {
    fn best_validation(&self) -> Result<Option<f64>> {
        Ok(None)
    }

    fn set_run_metadata(&self, m: &Map) -> Result<Map> {
        let _g = self.lock.lock();
        let mut cur = self.get_unlocked()?;
        merge_into(&mut cur, m);
        let text = crate::json::to_metadata_file(&Value::Object(cur.clone()));
        crate::storage::fsutil::write_atomic(&self.path(), text.as_bytes())?;
        Ok(cur)
    }

    fn get_run_metadata(&self) -> Result<Map> {
        let _g = self.lock.lock();
        self.get_unlocked()
    }
}

impl LocalTrainBackend {
    fn get_unlocked(&self) -> Result<Map> {
        let p = self.path();
        match std::fs::read_to_string(&p) {
            Ok(t) => {
                crate::json::parse_object(&t, p.display()).map_err(|e| err!(Io, "{}", e.message()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
            Err(e) => Err(crate::error::Error::io("cannot read", &p, e)),
        }
    }
}
