//! What a process knows about its task: hyperparameters, the checkpoint to resume from, and —
//! on-cluster — the trial and cluster (Determined's `ClusterInfo`).

use crate::cluster_info::ClusterInfo;
use crate::error::Result;
use crate::json::{Map, Value};
use std::path::PathBuf;
use std::sync::Arc;

/// The task's information.
#[derive(Debug, Clone, Default)]
pub struct Info {
    /// True when running under a Determined master.
    pub on_cluster: bool,
    /// Off-cluster run name.
    pub run_name: Option<String>,
    /// Off-cluster run folder.
    pub run_dir: Option<PathBuf>,
    /// The hyperparameters.
    pub hparams: Map,
    /// The checkpoint to resume from, and its `steps_completed` (0 without one). Shared with
    /// the checkpoint context: off-cluster, a resume that finds it damaged moves it to the
    /// newest checkpoint that verifies.
    pub resume: SharedResume,
    /// On-cluster: the task's `/run/determined/info` files (Determined's `ClusterInfo`).
    pub cluster: Option<Arc<ClusterInfo>>,
}

/// The checkpoint a task resumes from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResumePoint {
    pub storage_id: Option<String>,
    pub steps_completed: u64,
}

/// A [`ResumePoint`] read by `info` and moved by a checkpoint fallback.
pub type SharedResume = Arc<parking_lot::RwLock<ResumePoint>>;

/// A shared resume point.
pub fn resume_point(storage_id: Option<String>, steps_completed: u64) -> SharedResume {
    Arc::new(parking_lot::RwLock::new(ResumePoint {
        storage_id,
        steps_completed,
    }))
}

impl Info {
    /// The checkpoint to resume from.
    pub fn latest_checkpoint(&self) -> Option<String> {
        self.resume.read().storage_id.clone()
    }

    /// `steps_completed` of the checkpoint to resume from (0 without one).
    pub fn steps_completed(&self) -> u64 {
        self.resume.read().steps_completed
    }

    /// The cluster info, or `Kind::Unsupported` off-cluster (`what` names the caller's item).
    pub fn cluster(&self, what: &str) -> Result<&ClusterInfo> {
        match &self.cluster {
            Some(c) => Ok(c),
            None => bail!(
                Unsupported,
                "{what} is only known on-cluster (no cluster.json was found at init)"
            ),
        }
    }

    /// The trial info, or `Kind::Unsupported` off-cluster and for non-trial tasks.
    pub fn trial(&self, what: &str) -> Result<&crate::cluster_info::TrialInfo> {
        let c = self.cluster(what)?;
        match &c.trial {
            Some(t) if c.is_trial() => Ok(t),
            _ => bail!(
                Unsupported,
                "{what} is only known for trials (this task's type is {:?})",
                c.task_type
            ),
        }
    }

    /// Look up an hparam: the exact top-level name first, else a dotted path into nested
    /// objects (`"optimizer.lr"`).
    pub fn hparam(&self, name: &str) -> Result<&Value> {
        if let Some(v) = self.hparams.get(name) {
            return Ok(v);
        }
        if name.contains('.') {
            let mut cur: Option<&Value> = None;
            let mut map = &self.hparams;
            for part in name.split('.') {
                let v = map.get(part);
                match v {
                    Some(Value::Object(m)) => {
                        map = m;
                        cur = v;
                    }
                    Some(x) => {
                        cur = Some(x);
                        map = &EMPTY;
                    }
                    None => {
                        cur = None;
                        break;
                    }
                }
            }
            if let Some(v) = cur {
                return Ok(v);
            }
        }
        bail!(
            NotFound,
            "hparam {name:?} not found (have: {})",
            self.hparam_names()
        )
    }

    fn hparam_names(&self) -> String {
        if self.hparams.is_empty() {
            return "none".into();
        }
        self.hparams
            .keys()
            .map(|k| format!("{k:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// An hparam as `f64` (integers converted).
    pub fn hparam_f64(&self, name: &str) -> Result<f64> {
        let v = self.hparam(name)?;
        v.as_f64().ok_or_else(|| {
            err!(
                InvalidArgument,
                "hparam {name:?} is {} {}, not a number",
                v.type_name(),
                crate::json::to_wire(v)
            )
        })
    }

    /// An hparam as `i64` (floats with an integral value accepted).
    pub fn hparam_i64(&self, name: &str) -> Result<i64> {
        let v = self.hparam(name)?;
        v.as_i64().ok_or_else(|| match v {
            Value::Number(n) if n.is_integer() => err!(
                InvalidArgument,
                "hparam {name:?} is the integer {}, outside the range of a 64-bit integer; read it exactly with det_info_hparams_json",
                crate::json::to_wire(v)
            ),
            _ => err!(
                InvalidArgument,
                "hparam {name:?} is {} {}, not an integer",
                v.type_name(),
                crate::json::to_wire(v)
            ),
        })
    }

    /// An hparam as a string (strings only). A string holding a NUL character (`\u0000`)
    /// is refused: a C string would end there.
    pub fn hparam_str(&self, name: &str) -> Result<&str> {
        let v = self.hparam(name)?;
        let s = v.as_str().ok_or_else(|| {
            err!(
                InvalidArgument,
                "hparam {name:?} is {} {}, not a string",
                v.type_name(),
                crate::json::to_wire(v)
            )
        })?;
        if let Some(i) = s.find('\0') {
            return Err(err!(
                InvalidArgument,
                "hparam {name:?} holds a NUL character (\\u0000) at byte {i}, which a C string cannot hold; read it with det_info_hparams_json (JSON escapes it)"
            ));
        }
        Ok(s)
    }
}

static EMPTY: Map = Map::new();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_lookups() {
        let hp = crate::json::parse(
            r#"{"lr": 0.1, "n": 3, "name": "mlp", "opt": {"beta": 0.9}, "a.b": 1}"#,
        )
        .unwrap();
        let info = Info {
            hparams: hp.as_object().unwrap().clone(),
            ..Default::default()
        };
        assert_eq!(info.hparam_f64("lr").unwrap(), 0.1);
        assert_eq!(info.hparam_f64("n").unwrap(), 3.0);
        assert_eq!(info.hparam_i64("n").unwrap(), 3);
        assert_eq!(info.hparam_str("name").unwrap(), "mlp");
        assert_eq!(info.hparam_f64("opt.beta").unwrap(), 0.9);
        assert_eq!(info.hparam_i64("a.b").unwrap(), 1);
        assert!(info
            .hparam_i64("lr")
            .unwrap_err()
            .message()
            .contains("not an integer"));
        assert!(info
            .hparam_str("n")
            .unwrap_err()
            .message()
            .contains("not a string"));
        let e = info.hparam_f64("missing").unwrap_err();
        assert_eq!(e.kind(), crate::error::Kind::NotFound);
        assert!(e.message().contains("\"lr\""));
        assert!(info.hparam("opt.beta.x").is_err());
    }
}
