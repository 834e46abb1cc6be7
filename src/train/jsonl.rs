//! Off-cluster sink: every report becomes one line of `<run_dir>/metrics.jsonl`; the console gets
//! a summary every few seconds at INFO and every report at DEBUG ([`super::console`]).
//!
//! A metrics line: `{"type": "metrics", "group": "training", "steps_completed": 10,
//! "report_time": "2026-…+00:00", "metrics": {"loss": 0.5}}` (plus `"batch_metrics"` when given).
//! Non-finite values are the strings `"NaN"`, `"Infinity"`, `"-Infinity"`, as Determined sends
//! them to the master, so every line is valid JSON. Other events (`progress`, `status`,
//! `early_exit`, `searcher_completed`, `checkpoint`, `checkpoint_deleted`) have their own `type`.
//!
//! Lines are written whole (buffered by line, never split between two writes by the buffer), and
//! a last line cut short by a process killed while writing it is repaired when the file is opened
//! again, so every line of the file is valid JSON after any number of kills.
//!
//! Each run of the program starts with a `run_start` line (written by the chief at init, before
//! any report): `{"type": "run_start", "run_name": "demo", "pid": 4242, "host": "node7",
//! "resumes_from": {"storage_id": "…", "steps_completed": 100}, "report_time": "…"}`
//! (`"resumes_from": null` on a fresh start). A run killed after its last checkpoint repeats the
//! steps since that checkpoint when it is restarted, so the same step may be reported twice; the
//! record tells which process wrote which lines, and a reader keeps the last record per step.

use super::console::{ConsoleSummary, SUMMARY_INTERVAL};
use super::record::{Event, Record};
use super::reporter::{Control, Sink};
use crate::error::{Error, Result};
use crate::json::{to_wire, Map, Value};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Name of the metrics file in the run folder.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// Lines are written once this many bytes are buffered (and at every idle moment and close).
const BUFFER_BYTES: usize = 64 * 1024;

/// Appends reports to `metrics.jsonl`.
pub struct JsonlSink {
    path: PathBuf,
    file: File,
    /// Whole lines not yet written.
    buf: Vec<u8>,
    console: ConsoleSummary,
}

/// Repair the end of `f` if its last line was cut short (a process killed while writing it):
/// a complete JSON object without its newline gets the newline, anything else after the last
/// newline is removed. Returns the bytes removed.
fn repair_tail(f: &File, path: &Path) -> Result<u64> {
    let len = f
        .metadata()
        .map_err(|e| Error::io("cannot stat", path, e))?
        .len();
    let mut end = len;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut keep = 0;
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let n = (end - start) as usize;
        f.read_exact_at(&mut chunk[..n], start)
            .map_err(|e| Error::io("cannot read", path, e))?;
        if let Some(i) = chunk[..n].iter().rposition(|&b| b == b'\n') {
            keep = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    if keep == len {
        return Ok(0);
    }
    let mut tail = vec![0u8; (len - keep) as usize];
    f.read_exact_at(&mut tail, keep)
        .map_err(|e| Error::io("cannot read", path, e))?;
    let complete = std::str::from_utf8(&tail)
        .ok()
        .and_then(|t| crate::json::parse(t).ok())
        .is_some_and(|v| v.as_object().is_some());
    if complete {
        (&*f)
            .write_all(b"\n")
            .map_err(|e| Error::io("cannot write", path, e))?;
        return Ok(0);
    }
    f.set_len(keep)
        .map_err(|e| Error::io("cannot repair", path, e))?;
    log_warn!(
        "{}: its last line was cut short (a process stopped while writing it); removed those {} bytes so that every line stays valid JSON",
        path.display(),
        len - keep
    );
    Ok(len - keep)
}

impl JsonlSink {
    /// Open (append) `<run_dir>/metrics.jsonl`, repairing a last line cut short.
    pub fn open(run_dir: &Path) -> Result<JsonlSink> {
        let path = run_dir.join(METRICS_FILE);
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io("cannot open metrics file", &path, e))?;
        repair_tail(&file, &path)?;
        Ok(JsonlSink {
            console: ConsoleSummary::new(path.clone(), SUMMARY_INTERVAL),
            path,
            file,
            buf: Vec::with_capacity(BUFFER_BYTES),
        })
    }

    /// Append this process's `run_start` record (see the module docs) and flush it at once, so
    /// that it precedes every report of the run even if the process dies soon after. A write
    /// failure is returned (and logged by the caller).
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
        self.flush()
    }

    fn line(&mut self, m: &Map) -> Result<()> {
        self.buf
            .extend_from_slice(to_wire(&Value::Object(m.clone())).as_bytes());
        self.buf.push(b'\n');
        if self.buf.len() >= BUFFER_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Write the buffered lines (one append).
    fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let r = self
            .file
            .write_all(&self.buf)
            .map_err(|e| Error::io("cannot write metrics to", &self.path, e));
        self.buf.clear();
        r
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
        self.flush()
    }

    fn close(&mut self, _ctl: &Control) -> Result<()> {
        if let Some(line) = self.console.finish(Instant::now()) {
            log_info!("{line}");
        }
        self.flush()?;
        self.file
            .sync_all()
            .map_err(|e| Error::io("cannot fsync", &self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_cut_short_is_repaired_on_open() {
        let d = crate::testutil::TempDir::new("jsonl");
        let p = d.path().join(METRICS_FILE);
        let good = "{\"type\": \"metrics\", \"steps_completed\": 1}\n";
        // Cut in the middle of a line (longer than one read chunk, to cross chunk borders).
        let long_partial = format!("{{\"type\": \"metrics\", \"m\": \"{}", "x".repeat(100_000));
        for (tail, want_cut) in [
            ("{\"type\": \"met", 13u64),
            (long_partial.as_str(), long_partial.len() as u64),
            ("", 0),
        ] {
            std::fs::write(&p, format!("{good}{tail}")).unwrap();
            let f = OpenOptions::new().read(true).append(true).open(&p).unwrap();
            assert_eq!(repair_tail(&f, &p).unwrap(), want_cut);
            assert_eq!(std::fs::read_to_string(&p).unwrap(), good);
        }
        // A complete record without its newline keeps the record.
        std::fs::write(&p, format!("{good}{{\"a\": 1}}")).unwrap();
        let f = OpenOptions::new().read(true).append(true).open(&p).unwrap();
        assert_eq!(repair_tail(&f, &p).unwrap(), 0);
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            format!("{good}{{\"a\": 1}}\n")
        );
        // No newline at all: the whole partial line goes.
        std::fs::write(&p, "{\"a\"").unwrap();
        let f = OpenOptions::new().read(true).append(true).open(&p).unwrap();
        assert_eq!(repair_tail(&f, &p).unwrap(), 4);
        assert_eq!(std::fs::read(&p).unwrap(), b"");
    }
}
