//! Off-cluster sink: every report becomes one line of `<run_dir>/metrics.jsonl` and one log line.
//!
//! A metrics line: `{"type": "metrics", "group": "training", "steps_completed": 10,
//! "report_time": "2026-…+00:00", "metrics": {"loss": 0.5}}` (plus `"batch_metrics"` when given).
//! Non-finite values are the strings `"NaN"`, `"Infinity"`, `"-Infinity"`, as Determined sends
//! them to the master, so every line is valid JSON. Other events (`progress`, `status`,
//! `early_exit`, `searcher_completed`, `checkpoint`, `checkpoint_deleted`) have their own `type`.
//!
//! Each run of the program starts with a `run_start` line (written by the chief at init, before
//! any report): `{"type": "run_start", "run_name": "demo", "pid": 4242, "host": "node7",
//! "resumes_from": {"storage_id": "…", "steps_completed": 100}, "report_time": "…"}`
//! (`"resumes_from": null` on a fresh start). A run killed after its last checkpoint repeats the
//! steps since that checkpoint when it is restarted, so the same step may be reported twice; the
//! record tells which process wrote which lines, and a reader keeps the last record per step.

use super::record::{Event, Record};
use super::reporter::{Control, Sink};
use crate::error::{Error, Result};
use crate::json::{to_wire, Map, Value};
use crate::log_info;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Name of the metrics file in the run folder.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// Appends reports to `metrics.jsonl`.
pub struct JsonlSink {
    path: PathBuf,
    out: BufWriter<File>,
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
            path,
            out: BufWriter::with_capacity(64 * 1024, f),
        })
    }

    /// Append this process's `run_start` record (see the module docs) and flush it at once, so
    /// that it precedes every report of the run even if the process dies soon after. On a write
    /// failure the record stays buffered (written by the next successful flush).
    /// `resumes_from`: the storage id and `steps_completed` of the checkpoint the run resumes
    /// from, `None` on a fresh start.
    pub fn write_run_start(
        &mut self,
        run_name: &str,
        resumes_from: Option<(&str, Option<i64>)>,
    ) -> Result<()> {
        let resumes_from = resumes_from.map(|(id, steps)| {
            Value::Object(obj! { "storage_id" => id, "steps_completed" => steps })
        });
        let m = obj! {
            "type" => "run_start",
            "run_name" => run_name,
            "pid" => u64::from(std::process::id()),
            "host" => crate::host::hostname(),
            "resumes_from" => resumes_from,
            "report_time" => crate::time::now_iso8601(),
        };
        self.line(&m)?;
        self.out
            .flush()
            .map_err(|e| Error::io("cannot write metrics to", &self.path, e))
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
            // Profiler reports are not logged by Python's profiler; keep them out of the log.
            Record::Metrics(r) if r.is_profiler() => {
                crate::log_debug!("{}", log_line(rec))
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

    fn idle(&mut self, _ctl: &Control) -> Result<()> {
        self.out
            .flush()
            .map_err(|e| Error::io("cannot write metrics to", &self.path, e))
    }

    fn close(&mut self, _ctl: &Control) -> Result<()> {
        self.out
            .flush()
            .map_err(|e| Error::io("cannot write metrics to", &self.path, e))?;
        self.out
            .get_ref()
            .sync_all()
            .map_err(|e| Error::io("cannot fsync", &self.path, e))
    }
}
