//! The endpoints the Core API uses (docs/protocol.md#endpoints), with their bodies exactly as
//! Python's client builds them (key order included).

use super::client::{percent_encode, CallOpts, MasterClient};
use crate::error::{Kind, Result};
use crate::json::{field, Map, Number, Value};
use crate::storage::Resources;
use serde::de::IgnoredAny;
use serde::Deserialize;
use std::time::SystemTime;

/// The fields of one metrics report, as the master's API names them.
#[derive(Debug, Clone)]
pub struct TrialMetrics<'a> {
    /// `training`, `validation`, or a custom group.
    pub group: &'a str,
    /// `None` for profiler reports.
    pub steps_completed: Option<u64>,
    /// `avgMetrics`.
    pub avg_metrics: Map,
    /// `batchMetrics`, `null` when `None`.
    pub batch_metrics: Option<&'a [Map]>,
    /// `reportTime`, `null` when `None`.
    pub report_time: Option<SystemTime>,
}

/// `POST /api/v1/trials/<id>/metrics` body (docs/protocol.md#metrics).
pub fn metrics_body(trial_id: i64, trial_run_id: i64, m: TrialMetrics<'_>) -> Value {
    let batch = match m.batch_metrics {
        Some(b) => Value::Array(b.iter().cloned().map(Value::Object).collect()),
        None => Value::Null,
    };
    let report_time = m
        .report_time
        .map_or(Value::Null, |t| Value::from(crate::time::iso8601(t)));
    Value::Object(obj! {
        "group" => m.group,
        "metrics" => obj! {
            "metrics" => obj! {
                "avgMetrics" => m.avg_metrics,
                "batchMetrics" => batch,
            },
            "trialId" => trial_id,
            "trialRunId" => trial_run_id,
            "reportTime" => report_time,
            "stepsCompleted" => m.steps_completed,
        },
    })
}

/// `POST /api/v1/checkpoints` body (docs/protocol.md#checkpoint-reports): sizes as decimal strings.
#[allow(clippy::too_many_arguments)]
pub fn checkpoint_body(
    storage_id: &str,
    resources: &Resources,
    metadata: &Map,
    allocation_id: &str,
    task_id: &str,
    storage_backend_id: Option<i64>,
    report_time: &str,
) -> Value {
    let mut res = Map::new();
    for (k, v) in resources.iter() {
        res.insert(k.clone(), Value::String(v.to_string()));
    }
    Value::Object(obj! {
        "metadata" => metadata.clone(),
        "resources" => res,
        "state" => "STATE_COMPLETED",
        "training" => Map::new(),
        "uuid" => storage_id,
        "allocationId" => allocation_id,
        "reportTime" => report_time,
        "storageId" => storage_backend_id,
        "taskId" => task_id,
    })
}

/// `POST /api/v1/trials/<id>/progress` body, with Python's snake_case `is_raw`.
pub fn progress_body(progress: f64) -> Value {
    Value::Object(obj! { "progress" => Value::Number(Number::Float(progress)), "is_raw" => true })
}

/// `POST /api/v1/trials/<id>/runner/metadata` body.
pub fn status_body(status: &str) -> Value {
    Value::Object(obj! { "state" => status })
}

/// Python's alert levels: `warn`, `debug`, `error`, anything else is info.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertLevel {
    Info,
    Warning,
    Debug,
    Error,
}

impl AlertLevel {
    /// The wire value (`v1LogLevel`).
    pub fn as_str(self) -> &'static str {
        match self {
            AlertLevel::Info => "LOG_LEVEL_INFO",
            AlertLevel::Warning => "LOG_LEVEL_WARNING",
            AlertLevel::Debug => "LOG_LEVEL_DEBUG",
            AlertLevel::Error => "LOG_LEVEL_ERROR",
        }
    }
}

/// `POST /api/v1/webhooks/custom` body (docs/protocol.md#endpoints).
pub fn alert_body(
    title: &str,
    description: &str,
    level: AlertLevel,
    experiment_id: i64,
    trial_id: i64,
) -> Value {
    Value::Object(obj! {
        "data" => obj! {
            "description" => description,
            "level" => level.as_str(),
            "title" => title,
        },
        "experimentId" => experiment_id,
        "trialId" => trial_id,
    })
}

/// `POST /api/v1/trial-source-info` body: the checkpoint (and model version) the trial uses,
/// as an inference source (`ExperimentalCoreContext.report_task_using_*`).
pub fn trial_source_info_body(
    checkpoint_uuid: &str,
    trial_id: i64,
    model: Option<(i64, i64)>,
) -> Value {
    let mut info = obj! {
        "checkpointUuid" => checkpoint_uuid,
        "trialId" => trial_id,
        "trialSourceInfoType" => "TRIAL_SOURCE_INFO_TYPE_INFERENCE",
    };
    if let Some((model_id, model_version)) = model {
        info.insert("modelId", Value::from(model_id));
        info.insert("modelVersion", Value::from(model_version));
    }
    Value::Object(obj! { "trialSourceInfo" => info })
}

/// `{"metadata": {...}}` of the run-metadata calls.
#[derive(Deserialize, Default)]
struct MetadataAnswer {
    metadata: Option<Value>,
}

/// An object's entries; `{}` for anything else (the master sends `null` for no metadata).
fn object_or_empty(v: Option<Value>) -> Map {
    match v {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

impl MasterClient {
    /// `POST /api/v1/runs/start`: register the run's checkpoint storage; returns `storageId`.
    pub fn runs_start(&self, run_id: i64, checkpoint_storage: &Value) -> Result<Option<i64>> {
        let body = Value::Object(obj! {
            "runId" => run_id,
            "checkpointStorage" => checkpoint_storage.clone(),
        });
        #[derive(Deserialize, Default)]
        struct Answer {
            #[serde(rename = "storageId", default, deserialize_with = "field::opt_int")]
            storage_id: Option<i64>,
        }
        let r: Answer = self.call(
            "POST",
            "/api/v1/runs/start",
            Some(&body),
            CallOpts::default(),
        )?;
        Ok(r.storage_id)
    }

    /// `GET /api/v1/checkpoints/<uuid>` → `checkpoint.metadata` (`{}` when absent).
    pub fn checkpoint_metadata(&self, storage_id: &str) -> Result<Map> {
        let path = format!("/api/v1/checkpoints/{}", percent_encode(storage_id));
        #[derive(Deserialize, Default)]
        struct Answer {
            checkpoint: Option<Checkpoint>,
        }
        #[derive(Deserialize)]
        struct Checkpoint {
            metadata: Option<Value>,
        }
        let r: Answer = self
            .call("GET", &path, None, CallOpts::default())
            .map_err(|e| {
                if e.kind() == Kind::NotFound {
                    err!(
                        NotFound,
                        "checkpoint {storage_id} is not known to the master ({e})"
                    )
                } else {
                    e
                }
            })?;
        Ok(r.checkpoint
            .map_or_else(Map::new, |c| object_or_empty(c.metadata)))
    }

    /// `PATCH /api/v1/checkpoints`: mark the checkpoint deleted (no resources left).
    pub fn checkpoint_deleted(&self, storage_id: &str) -> Result<()> {
        let body = Value::Object(obj! {
            "checkpoints" => vec![Value::Object(obj! {
                "uuid" => storage_id,
                "resources" => obj! { "resources" => Map::new() },
            })],
        });
        self.call::<IgnoredAny>(
            "PATCH",
            "/api/v1/checkpoints",
            Some(&body),
            CallOpts::default(),
        )
        .map(|_| ())
    }

    /// `GET /api/v1/experiments/<id>/searcher/best_searcher_validation_metric`; 404 → `None`.
    pub fn best_validation(&self, experiment_id: i64) -> Result<Option<f64>> {
        let path =
            format!("/api/v1/experiments/{experiment_id}/searcher/best_searcher_validation_metric");
        #[derive(Deserialize, Default)]
        struct Answer {
            metric: Option<Value>,
        }
        match self.call::<Answer>("GET", &path, None, CallOpts::default()) {
            Ok(v) => match v.metric.as_ref() {
                Some(Value::Number(n)) => Ok(Some(n.as_f64())),
                Some(Value::String(s)) => match s.as_str() {
                    "NaN" => Ok(Some(f64::NAN)),
                    "Infinity" => Ok(Some(f64::INFINITY)),
                    "-Infinity" => Ok(Some(f64::NEG_INFINITY)),
                    other => other
                        .parse::<f64>()
                        .map(Some)
                        .map_err(|_| err!(Master, "GET {path}: metric {other:?} is not a number")),
                },
                other => Err(err!(
                    Master,
                    "GET {path}: no numeric \"metric\" in the answer ({})",
                    other.map_or("missing".into(), crate::json::to_wire)
                )),
            },
            Err(e) if e.kind() == Kind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /api/v1/runs/<id>/metadata` → the run's resulting metadata.
    pub fn set_run_metadata(&self, run_id: i64, metadata: &Map) -> Result<Map> {
        let body = Value::Object(obj! { "metadata" => metadata.clone(), "runId" => run_id });
        let path = format!("/api/v1/runs/{run_id}/metadata");
        let r: MetadataAnswer = self.call("POST", &path, Some(&body), CallOpts::default())?;
        Ok(object_or_empty(r.metadata))
    }

    /// `GET /api/v1/runs/<id>/metadata`.
    pub fn get_run_metadata(&self, run_id: i64) -> Result<Map> {
        let path = format!("/api/v1/runs/{run_id}/metadata");
        let r: MetadataAnswer = self.call("GET", &path, None, CallOpts::default())?;
        Ok(object_or_empty(r.metadata))
    }

    /// `POST /api/v1/trials/<id>/early_exit`.
    pub fn report_early_exit(&self, trial_id: i64, reason: &str) -> Result<()> {
        let body = Value::Object(obj! { "reason" => reason });
        let path = format!("/api/v1/trials/{trial_id}/early_exit");
        self.call::<IgnoredAny>("POST", &path, Some(&body), CallOpts::default())
            .map(|_| ())
    }

    /// `POST /api/v1/webhooks/custom`.
    pub fn alert(
        &self,
        title: &str,
        description: &str,
        level: AlertLevel,
        experiment_id: i64,
        trial_id: i64,
    ) -> Result<()> {
        let body = alert_body(title, description, level, experiment_id, trial_id);
        self.call::<IgnoredAny>(
            "POST",
            "/api/v1/webhooks/custom",
            Some(&body),
            CallOpts::default(),
        )
        .map(|_| ())
    }

    /// `POST /api/v1/trial-source-info`.
    pub fn report_trial_source_info(
        &self,
        checkpoint_uuid: &str,
        trial_id: i64,
        model: Option<(i64, i64)>,
    ) -> Result<()> {
        let body = trial_source_info_body(checkpoint_uuid, trial_id, model);
        self.call::<IgnoredAny>(
            "POST",
            "/api/v1/trial-source-info",
            Some(&body),
            CallOpts::default(),
        )
        .map(|_| ())
    }

    /// `POST /api/v1/allocations/<aid>/signals/ack_preemption` (no body).
    pub fn ack_preemption(&self, allocation_id: &str, opts: CallOpts<'_>) -> Result<()> {
        let path = format!(
            "/api/v1/allocations/{}/signals/ack_preemption",
            percent_encode(allocation_id)
        );
        self.call::<IgnoredAny>("POST", &path, None, opts)
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::to_wire;

    #[test]
    fn metrics_body_is_pythons() {
        let m = TrialMetrics {
            group: "training",
            steps_completed: Some(10),
            avg_metrics: obj! { "loss" => 0.5, "x" => f64::NAN },
            batch_metrics: None,
            report_time: None,
        };
        assert_eq!(
            to_wire(&metrics_body(3, 2, m)),
            r#"{"group": "training", "metrics": {"metrics": {"avgMetrics": {"loss": 0.5, "x": "NaN"}, "batchMetrics": null}, "trialId": 3, "trialRunId": 2, "reportTime": null, "stepsCompleted": 10}}"#
        );
    }

    #[test]
    fn other_bodies() {
        let mut res = Resources::new();
        res.insert("a/".into(), 0);
        res.insert("a/b".into(), 1234);
        let m = crate::checkpoint::parse_metadata(r#"{"steps_completed": 5}"#).unwrap();
        let b = checkpoint_body("id", &res, &m, "aid", "tid", Some(3), "T");
        assert_eq!(
            to_wire(&b),
            r#"{"metadata": {"steps_completed": 5}, "resources": {"a/": "0", "a/b": "1234"}, "state": "STATE_COMPLETED", "training": {}, "uuid": "id", "allocationId": "aid", "reportTime": "T", "storageId": 3, "taskId": "tid"}"#
        );
        assert_eq!(
            to_wire(&trial_source_info_body("c-1", 7, None)),
            r#"{"trialSourceInfo": {"checkpointUuid": "c-1", "trialId": 7, "trialSourceInfoType": "TRIAL_SOURCE_INFO_TYPE_INFERENCE"}}"#
        );
        assert_eq!(
            to_wire(&trial_source_info_body("c-1", 7, Some((4, 2)))),
            r#"{"trialSourceInfo": {"checkpointUuid": "c-1", "trialId": 7, "trialSourceInfoType": "TRIAL_SOURCE_INFO_TYPE_INFERENCE", "modelId": 4, "modelVersion": 2}}"#
        );
        assert_eq!(
            to_wire(&progress_body(0.5)),
            r#"{"progress": 0.5, "is_raw": true}"#
        );
        assert_eq!(
            to_wire(&alert_body("t", "", AlertLevel::Warning, 1, 2)),
            r#"{"data": {"description": "", "level": "LOG_LEVEL_WARNING", "title": "t"}, "experimentId": 1, "trialId": 2}"#
        );
    }
}
