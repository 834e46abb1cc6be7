//! What the training loop reports, as it travels to the background reporter.
use crate::error::Result;
use crate::json::{Map, Number, Value};
use std::sync::Arc;
use std::time::SystemTime;

/// The metric values of one report.
#[derive(Debug, Clone, PartialEq)]
pub enum Metrics {
    /// A JSON object, as given.
    Json(Map),
    /// The typed fast path: `(name, value)` pairs, in the caller's order.
    Scalars(Scalars),
}

/// Typed `(name, value)` pairs, stored in two allocations whatever their number (the report
/// call is on the training loop's hot path): the names back to back in one string, each
/// pair holding where its name ends. [`Scalars::iter`] gives the pairs back as they were
/// reported; a name may hold any character.
#[derive(Debug, Clone, PartialEq)]
pub struct Scalars {
    names: String,
    items: Vec<(usize, f64)>,
}

impl Scalars {
    /// The pairs of parallel slices (extra names or values are ignored).
    pub fn new<S: AsRef<str>>(names: &[S], values: &[f64]) -> Scalars {
        let n = names.len().min(values.len());
        let mut text = String::with_capacity(names[..n].iter().map(|s| s.as_ref().len()).sum());
        let mut items = Vec::with_capacity(n);
        for (name, v) in names[..n].iter().zip(values) {
            text.push_str(name.as_ref());
            items.push((text.len(), *v));
        }
        Scalars { names: text, items }
    }

    /// The `(name, value)` pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> + '_ {
        let mut start = 0;
        self.items.iter().map(move |&(end, v)| {
            let name = &self.names[start..end];
            start = end;
            (name, v)
        })
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl Metrics {
    /// Typed scalars from parallel slices (extra names or values are ignored).
    pub fn scalars<S: AsRef<str>>(names: &[S], values: &[f64]) -> Metrics {
        Metrics::Scalars(Scalars::new(names, values))
    }

    /// Number of metrics.
    pub fn len(&self) -> usize {
        match self {
            Metrics::Json(m) => m.len(),
            Metrics::Scalars(s) => s.len(),
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
            Metrics::Scalars(s) => {
                let mut m = Map::new();
                for (n, v) in s.iter() {
                    m.insert(n, Value::Number(Number::Float(v)));
                }
                m
            }
        }
    }

    /// Every numeric scalar `(name, value)` — what TensorBoard receives. Booleans count as
    /// numbers, as in Python.
    pub fn numeric_scalars(&self) -> Vec<(&str, f64)> {
        match self {
            Metrics::Json(m) => m
                .iter()
                .filter_map(|(k, v)| match v {
                    Value::Number(n) => Some((k.as_str(), n.as_f64())),
                    Value::Bool(b) => Some((k.as_str(), if *b { 1.0 } else { 0.0 })),
                    _ => None,
                })
                .collect(),
            Metrics::Scalars(s) => s.iter().collect(),
        }
    }

    /// The value named `name`, if it is a number.
    pub fn get_f64(&self, name: &str) -> Option<f64> {
        match self {
            Metrics::Json(m) => m.get(name).and_then(Value::as_f64),
            Metrics::Scalars(s) => s.iter().find(|(n, _)| *n == name).map(|(_, v)| v),
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
    fn scalar_names_are_kept_whole() {
        // Names reach every sink as given: nothing joins and splits them on the way.
        let m = Metrics::scalars(&["a\0b", "c"], &[1.0, 2.0]);
        assert_eq!(m.len(), 2);
        assert_eq!(m.numeric_scalars(), vec![("a\0b", 1.0), ("c", 2.0)]);
        assert_eq!(m.get_f64("a\0b"), Some(1.0));
        assert_eq!(m.get_f64("a"), None);
        assert_eq!(m.to_map().len(), 2);
    }

    #[test]
    fn groups() {
        assert!(validate_group("training").is_ok());
        assert!(validate_group("inf%er en/ce").is_ok());
        assert!(validate_group("a.b").unwrap_err().message().contains("'.'"));
        assert!(validate_group("").is_err());
    }
}
