//! What the training loop reports, as it travels to the background reporter.

use crate::bail;
use crate::error::Result;
use crate::json::{Map, Number, Value};
use std::sync::Arc;
use std::time::SystemTime;

/// The metric values of one report.
#[derive(Debug, Clone, PartialEq)]
pub enum Metrics {
    /// A JSON object, as given.
    Json(Map),
    /// The typed fast path: names joined by NUL bytes, and one value per name.
    Scalars { names: String, values: Vec<f64> },
}

impl Metrics {
    /// Typed scalars from parallel slices.
    pub fn scalars<S: AsRef<str>>(names: &[S], values: &[f64]) -> Metrics {
        let cap = names.iter().map(|n| n.as_ref().len() + 1).sum();
        let mut joined = String::with_capacity(cap);
        for (i, n) in names.iter().enumerate() {
            if i > 0 {
                joined.push('\0');
            }
            joined.push_str(n.as_ref());
        }
        Metrics::Scalars {
            names: joined,
            values: values.to_vec(),
        }
    }

    /// Number of metrics.
    pub fn len(&self) -> usize {
        match self {
            Metrics::Json(m) => m.len(),
            Metrics::Scalars { values, .. } => values.len(),
        }
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The metrics as a JSON object (Python's dict).
    pub fn to_map(&self) -> Map {
        match self {
            Metrics::Json(m) => m.clone(),
            Metrics::Scalars { names, values } => {
                let mut m = Map::new();
                if !values.is_empty() {
                    for (n, v) in names.split('\0').zip(values) {
                        m.insert(n, Value::Number(Number::Float(*v)));
                    }
                }
                m
            }
        }
    }

    /// Every numeric scalar `(name, value)` — what TensorBoard receives. Booleans count as
    /// numbers, as in Python.
    pub fn numeric_scalars(&self) -> Vec<(String, f64)> {
        match self {
            Metrics::Json(m) => m
                .iter()
                .filter_map(|(k, v)| match v {
                    Value::Number(n) => Some((k.clone(), n.as_f64())),
                    Value::Bool(b) => Some((k.clone(), if *b { 1.0 } else { 0.0 })),
                    _ => None,
                })
                .collect(),
            Metrics::Scalars { names, values } => {
                if values.is_empty() {
                    return Vec::new();
                }
                names
                    .split('\0')
                    .map(str::to_owned)
                    .zip(values.iter().copied())
                    .collect()
            }
        }
    }
}

/// One metrics report (`POST /api/v1/trials/<id>/metrics` on-cluster).
#[derive(Debug, Clone)]
pub struct MetricsReport {
    /// `training`, `validation`, or a custom group.
    pub group: Arc<str>,
    /// `None` for profiler reports.
    pub steps_completed: Option<u64>,
    pub metrics: Metrics,
    pub batch_metrics: Option<Vec<Map>>,
    /// When the caller reported.
    pub time: SystemTime,
    /// Whether `reportTime` is sent to the master (profiler reports only, as in Python).
    pub send_report_time: bool,
    /// The public method that made the report, for log lines.
    pub method: &'static str,
}

impl MetricsReport {
    /// A system profiler report (the only reports without a step).
    pub fn is_profiler(&self) -> bool {
        self.steps_completed.is_none()
    }
}

/// Other events of a run, written to `metrics.jsonl` off-cluster.
#[derive(Debug, Clone)]
pub enum Event {
    /// `report_progress(p)` / a searcher op's progress.
    Progress { progress: f64 },
    /// `set_status(s)`.
    Status { status: String },
    /// `report_early_exit(reason)`.
    EarlyExit { reason: String },
    /// A searcher operation completed.
    SearcherCompleted { length: u64, searcher_metric: Value },
    /// A checkpoint was stored.
    Checkpoint {
        storage_id: String,
        steps_completed: Option<i64>,
    },
    /// A checkpoint was deleted.
    CheckpointDeleted { storage_id: String },
}

impl Event {
    /// The `type` field and the other fields of its `metrics.jsonl` line.
    pub fn to_json(&self) -> Map {
        match self {
            Event::Progress { progress } => obj! { "type" => "progress", "progress" => *progress },
            Event::Status { status } => obj! { "type" => "status", "status" => status.as_str() },
            Event::EarlyExit { reason } => {
                obj! { "type" => "early_exit", "reason" => reason.as_str() }
            }
            Event::SearcherCompleted {
                length,
                searcher_metric,
            } => obj! {
                "type" => "searcher_completed", "length" => *length, "searcher_metric" => searcher_metric.clone()
            },
            Event::Checkpoint {
                storage_id,
                steps_completed,
            } => obj! {
                "type" => "checkpoint", "storage_id" => storage_id.as_str(), "steps_completed" => *steps_completed
            },
            Event::CheckpointDeleted { storage_id } => {
                obj! { "type" => "checkpoint_deleted", "storage_id" => storage_id.as_str() }
            }
        }
    }
}

/// What goes through the reporter's queue.
#[derive(Debug)]
pub enum Record {
    Metrics(Box<MetricsReport>),
    Event(Event, SystemTime),
}

/// The master's rule for metric groups: non-empty and no `.`.
pub fn validate_group(group: &str) -> Result<()> {
    if group.is_empty() {
        bail!(
            InvalidArgument,
            "group: a metric group name must not be empty"
        );
    }
    if group.contains('.') {
        bail!(
            InvalidArgument,
            "group: {group:?} contains '.', which the master refuses in metric group names"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_round_trip() {
        let m = Metrics::scalars(&["loss", "acc"], &[0.5, f64::NAN]);
        let map = m.to_map();
        assert_eq!(map.len(), 2);
        assert_eq!(map.get("loss").unwrap().as_f64(), Some(0.5));
        assert!(map.get("acc").unwrap().as_f64().unwrap().is_nan());
        assert_eq!(Metrics::scalars::<&str>(&[], &[]).to_map().len(), 0);
    }

    #[test]
    fn groups() {
        assert!(validate_group("training").is_ok());
        assert!(validate_group("inf%er en/ce").is_ok());
        assert!(validate_group("a.b").unwrap_err().message().contains("'.'"));
        assert!(validate_group("").is_err());
    }
}
