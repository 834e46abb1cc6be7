//! The AUTO-mode sink: Determined's `BatchMetricWriter` (docs/protocol.md#tensorboard-event-files).
//!
//! - `training` reports: every numeric scalar of `batch_metrics[i]` as `Determined/<name>` at step
//!   `steps_completed - len(batch_metrics) + i`; then every numeric scalar of the averaged metrics
//!   whose name appeared in no batch, at `steps_completed`.
//! - `validation` reports: names not starting with `val` get a `val_` prefix; numeric scalars as
//!   `Determined/<name>` at `steps_completed`.
//! - Custom groups are not written (as Python).
//! - Numeric scalar = a JSON number (NaN and ±Infinity included) or a boolean (Python's `bool` is an
//!   `int`); strings, nulls, lists and objects are skipped.
//! - Off-cluster only, profiler reports become `system/<group>/<key>` (nested values
//!   `system/<group>/<key>[<label>]`, e.g. `system/gpu/gpu_util[GPU-…]`), at step = the number of
//!   earlier reports of that group.
//!
//! Every record (and every checkpoint event) also asks the manager for a sync pass, as Python
//! syncs after each report and checkpoint.

use super::sync::TensorboardManager;
use super::writer::EventWriter;
use super::TensorboardMode;
use crate::error::Result;
use crate::json::{Map, Value};
use crate::train::{Control, Event, Metrics, MetricsReport, Record, Sink};
use std::collections::HashMap;
use std::sync::Arc;

/// The five groups the master stores as profiling metrics.
pub const PROFILER_GROUPS: [&str; 5] = ["gpu", "cpu", "memory", "disk", "network"];

/// Writes reported metrics to event files.
pub struct TensorboardSink {
    writer: EventWriter,
    manager: Arc<TensorboardManager>,
    write_profiler: bool,
    profiler_steps: HashMap<String, i64>,
}

/// A numeric scalar as Python's `util.is_numerical_scalar` sees it.
pub fn numeric(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => Some(n.as_f64()),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
}

fn is_profiler_report(r: &MetricsReport) -> bool {
    r.is_profiler() && PROFILER_GROUPS.contains(&&*r.group)
}

impl TensorboardSink {
    /// The reporter sink of `manager`'s AUTO mode; `None` in MANUAL mode, where nothing is
    /// written unless asked for.
    pub fn for_manager(manager: &Arc<TensorboardManager>) -> Option<Box<dyn Sink>> {
        (manager.mode() == TensorboardMode::Auto).then(|| {
            Box::new(TensorboardSink::new(
                manager.clone(),
                manager.write_profiler(),
            )) as Box<dyn Sink>
        })
    }

    /// A sink writing into the manager's folder.
    pub fn new(manager: Arc<TensorboardManager>, write_profiler: bool) -> TensorboardSink {
        TensorboardSink {
            writer: EventWriter::new(manager.local_dir()),
            manager,
            write_profiler,
            profiler_steps: HashMap::new(),
        }
    }

    /// The writer (tests).
    pub fn writer_mut(&mut self) -> &mut EventWriter {
        &mut self.writer
    }

    fn training(&mut self, r: &MetricsReport, steps: u64) {
        let steps = steps as i64;
        let mut seen: Vec<&str> = Vec::new();
        if let Some(batches) = &r.batch_metrics {
            let n = batches.len() as i64;
            for (i, b) in batches.iter().enumerate() {
                let step = steps - n + i as i64;
                let vals: Vec<(String, f64)> = b
                    .iter()
                    .filter_map(|(k, v)| numeric(v).map(|x| (format!("Determined/{k}"), x)))
                    .collect();
                let refs: Vec<(&str, f64)> = vals.iter().map(|(k, v)| (k.as_str(), *v)).collect();
                self.writer.add_scalars(&refs, step, r.time);
                for k in b.keys() {
                    if !seen.contains(&k.as_str()) {
                        seen.push(k.as_str());
                    }
                }
            }
        }
        let vals: Vec<(String, f64)> = r
            .metrics
            .numeric_scalars()
            .into_iter()
            .filter(|(k, _)| !seen.contains(k))
            .map(|(k, v)| (format!("Determined/{k}"), v))
            .collect();
        let refs: Vec<(&str, f64)> = vals.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        self.writer.add_scalars(&refs, steps, r.time);
    }

    fn validation(&mut self, r: &MetricsReport, steps: u64) {
        let vals: Vec<(String, f64)> = r
            .metrics
            .numeric_scalars()
            .into_iter()
            .map(|(k, v)| {
                if k.starts_with("val") {
                    (format!("Determined/{k}"), v)
                } else {
                    (format!("Determined/val_{k}"), v)
                }
            })
            .collect();
        let refs: Vec<(&str, f64)> = vals.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        self.writer.add_scalars(&refs, steps as i64, r.time);
    }

    fn profiler(&mut self, r: &MetricsReport) {
        let Metrics::Json(by_agent) = &r.metrics else {
            return;
        };
        let mut vals: Vec<(String, f64)> = Vec::new();
        for (_agent, agg) in by_agent.iter() {
            let Some(agg) = agg.as_object() else { continue };
            flatten_profiler(&r.group, agg, &mut vals);
        }
        if vals.is_empty() {
            return;
        }
        let step = self.profiler_steps.entry(r.group.to_string()).or_insert(0);
        let refs: Vec<(&str, f64)> = vals.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        self.writer.add_scalars(&refs, *step, r.time);
        *step += 1;
    }
}

/// `{key: v, label: {key: v}}` → `system/<group>/<key>`, `system/<group>/<key>[<label>]`.
fn flatten_profiler(group: &str, agg: &Map, out: &mut Vec<(String, f64)>) {
    for (k, v) in agg.iter() {
        match v {
            Value::Object(inner) => {
                for (ik, iv) in inner.iter() {
                    if let Some(x) = numeric(iv) {
                        out.push((format!("system/{group}/{ik}[{k}]"), x));
                    }
                }
            }
            other => {
                if let Some(x) = numeric(other) {
                    out.push((format!("system/{group}/{k}"), x));
                }
            }
        }
    }
}

/// Events are written when the reporter's queue is empty, or when this much is buffered.
const FLUSH_BYTES: usize = 256 * 1024;

impl Sink for TensorboardSink {
    fn write(&mut self, rec: &Record, _ctl: &Control) -> Result<()> {
        match rec {
            Record::Metrics(r) => match (&*r.group, r.steps_completed) {
                ("training", Some(s)) => self.training(r, s),
                ("validation", Some(s)) => self.validation(r, s),
                _ if self.write_profiler && is_profiler_report(r) => self.profiler(r),
                _ => {}
            },
            Record::Event(Event::Checkpoint { .. }, _) => {}
            Record::Event(..) => return Ok(()),
        }
        let res = if self.writer.pending_bytes() >= FLUSH_BYTES {
            self.writer.flush()
        } else {
            Ok(())
        };
        self.manager.notify();
        res
    }

    /// The queue is empty: write what the last records added (one `write` of whole records).
    fn idle(&mut self, _ctl: &Control) -> Result<()> {
        if !self.writer.has_pending() {
            return Ok(());
        }
        let r = self.writer.flush();
        self.manager.notify();
        r
    }

    fn close(&mut self, _ctl: &Control) -> Result<()> {
        let r = self.writer.close();
        self.manager.notify();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensorboard::writer::read_events;
    use crate::tensorboard::TensorboardConfig;
    use crate::tensorboard::TensorboardMode;
    use std::path::{Path, PathBuf};
    use std::time::{Duration, SystemTime};

    fn tmp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "detcore-tbs-{name}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ))
    }

    fn report(group: &str, steps: Option<u64>, m: &str, batch: Option<&str>) -> Record {
        let map = |s: &str| crate::json::parse(s).unwrap().as_object().unwrap().clone();
        Record::Metrics(Box::new(MetricsReport {
            group: Arc::from(group),
            steps_completed: steps,
            metrics: Metrics::Json(map(m)),
            batch_metrics: batch.map(|b| {
                crate::json::parse(b)
                    .unwrap()
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_object().unwrap().clone())
                    .collect()
            }),
            time: SystemTime::now(),
            send_report_time: steps.is_none(),
            method: "report_metrics",
        }))
    }

    /// All (tag, step, value) of the event files in `dir`.
    pub(crate) fn scalars_in(dir: &Path) -> Vec<(String, i64, f32)> {
        let mut out = Vec::new();
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains("tfevents"))
            .collect();
        files.sort();
        for f in files {
            for e in read_events(&f).unwrap() {
                for (t, v) in e.scalars {
                    out.push((t, e.step, v));
                }
            }
        }
        out
    }

    #[test]
    fn determined_tags_and_steps() {
        let d = tmp("tags");
        let mgr = TensorboardManager::start(TensorboardConfig::off_cluster(
            TensorboardMode::Auto,
            &d,
            "r",
            None,
            0,
        ))
        .unwrap();
        let mut sink = TensorboardSink::new(mgr.clone(), true);
        let ctl = Control::default();
        let recs = [
            report(
                "training",
                Some(10),
                r#"{"loss": 0.5, "acc": 0.9, "name": "x", "flag": true, "nested": {"a": 1}}"#,
                Some(r#"[{"loss": 1.0, "lr": 0.1}, {"loss": 2.0, "lr": "bad"}]"#),
            ),
            report(
                "validation",
                Some(10),
                r#"{"loss": NaN, "validation_error": 0.25, "val_acc": 0.75, "note": null}"#,
                None,
            ),
            report("custom", Some(10), r#"{"loss": 333.0}"#, None),
            report("cpu", None, r#"{"host": {"cpu_util_simple": 12.5}}"#, None),
            report(
                "disk",
                None,
                r#"{"host": {"disk_iops": 3.0, "/": {"disk_util": 40.0}}}"#,
                None,
            ),
            report("cpu", None, r#"{"host": {"cpu_util_simple": 50.0}}"#, None),
        ];
        for r in &recs {
            sink.write(r, &ctl).unwrap();
        }
        sink.close(&ctl).unwrap();
        let got = scalars_in(&d.join("tensorboard"));
        let find = |t: &str| -> Vec<(i64, f32)> {
            got.iter()
                .filter(|g| g.0 == t)
                .map(|g| (g.1, g.2))
                .collect()
        };
        // Batch metrics at steps 8 and 9; "loss" and "lr" were in batches, so the averaged
        // "loss" is not written again; "acc" and the boolean are.
        assert_eq!(find("Determined/loss"), vec![(8, 1.0), (9, 2.0)]);
        assert_eq!(find("Determined/lr"), vec![(8, 0.1)]);
        assert_eq!(find("Determined/acc"), vec![(10, 0.9)]);
        assert_eq!(find("Determined/flag"), vec![(10, 1.0)]);
        assert!(find("Determined/name").is_empty());
        assert!(find("Determined/nested").is_empty());
        let vl = find("Determined/val_loss");
        assert_eq!(vl.len(), 1);
        assert!(vl[0].1.is_nan());
        assert_eq!(find("Determined/validation_error"), vec![(10, 0.25)]);
        assert_eq!(find("Determined/val_acc"), vec![(10, 0.75)]);
        assert!(find("Determined/val_note").is_empty());
        // Custom groups are not written.
        assert_eq!(got.iter().filter(|g| g.2 == 333.0).count(), 0);
        assert_eq!(
            find("system/cpu/cpu_util_simple"),
            vec![(0, 12.5), (1, 50.0)]
        );
        assert_eq!(find("system/disk/disk_util[/]"), vec![(0, 40.0)]);
        assert_eq!(find("system/disk/disk_iops"), vec![(0, 3.0)]);
        mgr.close(Duration::from_secs(5)).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn profiler_not_written_when_disabled() {
        let d = tmp("noprof");
        let mgr = TensorboardManager::start(TensorboardConfig::on_cluster(
            TensorboardMode::Auto,
            &format!("alloc-{}", uuid::Uuid::new_v4().simple()),
            "c",
            "1",
            Some("2"),
            None,
            0,
        ))
        .unwrap();
        let dir = mgr.local_dir().to_path_buf();
        let mut sink = TensorboardSink::new(mgr.clone(), false);
        let ctl = Control::default();
        sink.write(
            &report("cpu", None, r#"{"h": {"cpu_util_simple": 1.0}}"#, None),
            &ctl,
        )
        .unwrap();
        sink.write(&report("training", Some(1), r#"{"x": 1}"#, None), &ctl)
            .unwrap();
        sink.close(&ctl).unwrap();
        let got = scalars_in(&dir);
        assert_eq!(got, vec![("Determined/x".to_owned(), 1, 1.0)]);
        std::fs::remove_dir_all(&dir).unwrap();
        let _ = d;
    }
}
