//! Off-cluster sink: every report becomes one line of `<run_dir>/metrics.jsonl`; the console gets
//! a summary every few seconds at INFO and every report at DEBUG ([`super::console`]).
//!
//! A metrics line: `{"type": "metrics", "group": "training", "steps_completed": 10,
//! "report_time": "2026-…+00:00", "metrics": {"loss": 0.5}}` (plus `"batch_metrics"` when given).
//! Non-finite values are the strings `"NaN"`, `"Infinity"`, `"-Infinity"`, as Determined sends
//! them to the master, so every line is valid JSON. Other events (`progress`, `status`,
//! `early_exit`, `searcher_completed`, `checkpoint`, `checkpoint_deleted`) have their own `type`.

use super::console::{ConsoleSummary, SUMMARY_INTERVAL};
use super::record::{Event, Record};
use super::reporter::{Control, Sink};
use crate::error::{Error, Result};
use crate::json::{to_wire, Map, Value};
use crate::{log_debug, log_info};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Name of the metrics file in the run folder.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// Appends reports to `metrics.jsonl`.
pub struct JsonlSink {
    path: PathBuf,
    out: BufWriter<File>,
    console: ConsoleSummary,
}

impl JsonlSink {
    /// Open (append) `<run_dir>/metrics.jsonl`.
    pub fn open(run_dir: &Path) -> Result<JsonlSink> {
        let path = run_dir.join(METRICS_FILE);
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io("cannot open metrics file", &path, e))?;
        Ok(JsonlSink {
            console: ConsoleSummary::new(path.clone(), SUMMARY_INTERVAL),
            path,
            out: BufWriter::with_capacity(64 * 1024, f),
        })
    }

    fn line(&mut self, m: &Map) -> Result<()> {
        let mut s = to_wire(&Value::Object(m.clone()));
        s.push('\n');
        self.out
            .write_all(s.as_bytes())
            .map_err(|e| Error::io("cannot write metrics to", &self.path, e))
    }
}

/// The log line of a report, as Determined's dummy train context logs it.
pub fn log_line(rec: &Record) -> String {
    match rec {
        Record::Metrics(r) => {
            let metrics = to_wire(&Value::Object(r.metrics.to_map()));
            let steps = r
                .steps_completed
                .map_or("None".to_owned(), |s| s.to_string());
            match r.method {
                "report_metrics" => {
                    format!(
                        "report_metrics(group={:?}, steps_completed={steps}, metrics={metrics})",
                        &*r.group
                    )
                }
                m => format!("{m}(steps_completed={steps}, metrics={metrics})"),
            }
        }
        Record::Event(e, _) => match e {
            Event::Progress { progress } => format!("report_progress(progress={progress})"),
            Event::Status { status } => format!("status: {status}"),
            Event::EarlyExit { reason } => format!("report_early_exit(reason={reason})"),
            Event::SearcherCompleted {
                searcher_metric, ..
            } => {
                format!(
                    "SearcherOperation Complete: searcher_metric={}",
                    to_wire(searcher_metric)
                )
            }
            Event::Checkpoint { storage_id, .. } => format!("saved checkpoint {storage_id}"),
            Event::CheckpointDeleted { storage_id } => format!("deleted checkpoint {storage_id}"),
        },
    }
}

impl Sink for JsonlSink {
    fn write(&mut self, rec: &Record, _ctl: &Control) -> Result<()> {
        match rec {
            // Metrics and progress: each at DEBUG, a summary at most every few seconds at INFO.
            Record::Metrics(_) | Record::Event(Event::Progress { .. }, _) => {
                log_debug!("{}", log_line(rec));
                if let Some(line) = self.console.observe(rec, Instant::now()) {
                    log_info!("{line}");
                }
            }
            _ => log_info!("{}", log_line(rec)),
        }
        let m = match rec {
            Record::Metrics(r) => {
                let mut m = obj! {
                    "type" => "metrics",
                    "group" => &*r.group,
                    "steps_completed" => r.steps_completed,
                    "report_time" => crate::time::iso8601(r.time),
                    "metrics" => r.metrics.to_map(),
                };
                if let Some(b) = &r.batch_metrics {
                    m.insert(
                        "batch_metrics",
                        Value::Array(b.iter().cloned().map(Value::Object).collect()),
                    );
                }
                m
            }
            Record::Event(e, t) => {
                let mut m = e.to_json();
                m.insert("report_time", Value::from(crate::time::iso8601(*t)));
                m
            }
        };
        self.line(&m)
    }

    fn poll(&mut self) {
        if let Some(line) = self.console.tick(Instant::now()) {
            log_info!("{line}");
        }
    }

    fn idle(&mut self, _ctl: &Control) -> Result<()> {
        self.out
            .flush()
            .map_err(|e| Error::io("cannot write metrics to", &self.path, e))
    }

    fn close(&mut self, _ctl: &Control) -> Result<()> {
        if let Some(line) = self.console.finish(Instant::now()) {
            log_info!("{line}");
        }
        self.out
            .flush()
            .map_err(|e| Error::io("cannot write metrics to", &self.path, e))?;
        self.out
            .get_ref()
            .sync_all()
            .map_err(|e| Error::io("cannot fsync", &self.path, e))
    }
}
