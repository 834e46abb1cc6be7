//! On-cluster detection and the `/run/determined/info` files (docs/protocol.md#cluster-info-files).
//!
//! `cluster.json` decides the mode (Determined's only test). Its companions `trial.json`
//! (trials), `rendezvous.json` (trials) and `resources.json` are read from the same folder. A
//! missing key, a value of the wrong type or broken JSON fails with a message naming the file
//! and the key, e.g. `trial.json: key "trial_run_id" must be an integer, got string "3"`.
//! Unknown keys are ignored (newer masters may add some).

mod master_url;

pub use master_url::MasterUrl;

use crate::error::{Error, Result};
use crate::json::{field, from_object_text, Map, Value};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Where Determined writes the info files inside a task container.
pub const DEFAULT_INFO_DIR: &str = "/run/determined/info";

/// The info folder: the explicit one, else `DET_CLUSTER_INFO_DIR`, else [`DEFAULT_INFO_DIR`].
pub fn info_dir(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    match std::env::var_os("DET_CLUSTER_INFO_DIR") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(DEFAULT_INFO_DIR),
    }
}

/// True when `<dir>/cluster.json` exists — Determined's only on-cluster test.
pub fn is_on_cluster(dir: &Path) -> bool {
    dir.join("cluster.json").is_file()
}

/// `trial.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TrialInfo {
    #[serde(deserialize_with = "field::int")]
    pub trial_id: i64,
    #[serde(deserialize_with = "field::int")]
    pub experiment_id: i64,
    #[serde(deserialize_with = "field::uint32")]
    pub trial_seed: u32,
    #[serde(deserialize_with = "field::object")]
    pub hparams: Map,
    /// The master's fully defaulted experiment config.
    #[serde(deserialize_with = "field::object")]
    pub config: Map,
    #[serde(deserialize_with = "field::int")]
    pub steps_completed: i64,
    #[serde(deserialize_with = "field::int")]
    pub trial_run_id: i64,
    #[serde(default, deserialize_with = "field::bool_or_false")]
    pub debug: bool,
    #[serde(default, deserialize_with = "field::opt_string")]
    pub inter_node_network_interface: Option<String>,
}

/// `rendezvous.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RendezvousInfo {
    #[serde(deserialize_with = "field::string_list")]
    pub container_addrs: Vec<String>,
    #[serde(deserialize_with = "field::int")]
    pub container_rank: i64,
    #[serde(deserialize_with = "field::int_list")]
    pub container_slot_counts: Vec<i64>,
}

/// `resources.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ResourcesInfo {
    #[serde(deserialize_with = "field::string_list")]
    pub gpu_uuids: Vec<String>,
}

/// Determined's `ClusterInfo`: `cluster.json` (the deserialized keys) and its companions.
/// (`Debug` leaves the session token out.)
#[derive(Clone, PartialEq, Deserialize)]
pub struct ClusterInfo {
    /// The folder the files were read from.
    #[serde(skip)]
    pub dir: PathBuf,
    /// As written (Python canonicalizes it when loading; see [`MasterUrl`]).
    pub master_url: String,
    #[serde(deserialize_with = "field::string")]
    pub cluster_id: String,
    #[serde(deserialize_with = "field::string")]
    pub agent_id: String,
    #[serde(deserialize_with = "field::int_list")]
    pub slot_ids: Vec<i64>,
    #[serde(deserialize_with = "field::string")]
    pub task_id: String,
    #[serde(deserialize_with = "field::string")]
    pub allocation_id: String,
    /// The session token of `cluster.json` (the Core API authenticates with
    /// `DET_SESSION_TOKEN`, as Python does).
    #[serde(deserialize_with = "field::string")]
    pub session_token: String,
    /// `TRIAL`, `NOTEBOOK`, `SHELL`, `COMMAND`, `TENSORBOARD`, `CHECKPOINT_GC`, ...
    #[serde(deserialize_with = "field::string")]
    pub task_type: String,
    #[serde(default, deserialize_with = "field::opt_string")]
    pub master_cert_name: Option<String>,
    #[serde(default, deserialize_with = "field::opt_string")]
    pub master_cert_file: Option<String>,
    #[serde(default, deserialize_with = "field::opt_string")]
    latest_checkpoint: Option<String>,
    #[serde(skip)]
    pub trial: Option<TrialInfo>,
    #[serde(skip)]
    pub rendezvous: Option<RendezvousInfo>,
    #[serde(skip)]
    pub resources: Option<ResourcesInfo>,
}

impl std::fmt::Debug for ClusterInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterInfo")
            .field("dir", &self.dir)
            .field("master_url", &self.master_url)
            .field("cluster_id", &self.cluster_id)
            .field("agent_id", &self.agent_id)
            .field("slot_ids", &self.slot_ids)
            .field("task_id", &self.task_id)
            .field("allocation_id", &self.allocation_id)
            .field("task_type", &self.task_type)
            .field("trial", &self.trial)
            .field("rendezvous", &self.rendezvous)
            .field("resources", &self.resources)
            .finish_non_exhaustive()
    }
}

/// Read `<dir>/<name>`, one JSON object, into `T` (`None` if the file does not exist). Errors
/// start with the file's path.
fn read<T: DeserializeOwned>(dir: &Path, name: &str) -> Result<Option<T>> {
    let path = dir.join(name);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("cannot read cluster info file", &path, e)),
    };
    from_object_text(&text, path.display()).map(Some)
}

impl ClusterInfo {
    /// Read `cluster.json` and its companions from `dir`. Errors name the file and the key.
    pub fn load(dir: &Path) -> Result<ClusterInfo> {
        let mut info: ClusterInfo = read(dir, "cluster.json")?
            .ok_or_else(|| err!(NotFound, "{}: cluster.json does not exist", dir.display()))?;
        info.dir = dir.to_path_buf();
        info.trial = read(dir, "trial.json")?;
        info.rendezvous = read(dir, "rendezvous.json")?;
        if let Some(rv) = &info.rendezvous {
            let n = rv.container_addrs.len();
            if n == 0
                || rv.container_slot_counts.len() != n
                || rv.container_rank < 0
                || rv.container_rank as usize >= n
            {
                bail!(
                    InvalidArgument,
                    "{}: {} container_addrs, {} container_slot_counts and container_rank {} do not fit together",
                    dir.join("rendezvous.json").display(),
                    n,
                    rv.container_slot_counts.len(),
                    rv.container_rank
                );
            }
        }
        info.resources = read(dir, "resources.json")?;
        if info.is_trial() {
            for (file, missing) in [
                ("trial.json", info.trial.is_none()),
                ("rendezvous.json", info.rendezvous.is_none()),
            ] {
                if missing {
                    bail!(
                        InvalidArgument,
                        "{}: {file} is missing, but cluster.json says task_type \"TRIAL\"",
                        dir.display()
                    );
                }
            }
        }
        Ok(info)
    }

    /// Determined's `ClusterInfo` as JSON: the keys of `cluster.json` (`master_url`
    /// canonical, as Python makes it), then its companions as `"trial"`, `"rendezvous"` and
    /// `"resources"` (`null` when the file is absent). The values are the files', so
    /// `latest_checkpoint` is kept for tasks that are not trials (Python's property hides it).
    /// Holds the session token.
    pub fn to_json(&self) -> Result<Value> {
        let url = MasterUrl::parse(&self.master_url)
            .map_err(|e| e.context(format!("{}/cluster.json: master_url", self.dir.display())))?;
        let opt = |s: &Option<String>| s.as_deref().map_or(Value::Null, Value::from);
        let ints = |v: &[i64]| Value::Array(v.iter().map(|&i| Value::from(i)).collect());
        let strs = |v: &[String]| Value::Array(v.iter().map(|s| Value::from(s.as_str())).collect());
        let trial = self.trial.as_ref().map_or(Value::Null, |t| {
            Value::Object(obj! {
                "trial_id" => t.trial_id,
                "experiment_id" => t.experiment_id,
                "trial_seed" => t.trial_seed as i64,
                "hparams" => Value::Object(t.hparams.clone()),
                "config" => Value::Object(t.config.clone()),
                "steps_completed" => t.steps_completed,
                "trial_run_id" => t.trial_run_id,
                "debug" => t.debug,
                "inter_node_network_interface" => opt(&t.inter_node_network_interface),
            })
        });
        let rendezvous = self.rendezvous.as_ref().map_or(Value::Null, |r| {
            Value::Object(obj! {
                "container_addrs" => strs(&r.container_addrs),
                "container_rank" => r.container_rank,
                "container_slot_counts" => ints(&r.container_slot_counts),
            })
        });
        let resources = self.resources.as_ref().map_or(Value::Null, |r| {
            Value::Object(obj! { "gpu_uuids" => strs(&r.gpu_uuids) })
        });
        Ok(Value::Object(obj! {
            "master_url" => url.canonical(),
            "cluster_id" => self.cluster_id.as_str(),
            "agent_id" => self.agent_id.as_str(),
            "slot_ids" => ints(&self.slot_ids),
            "task_id" => self.task_id.as_str(),
            "allocation_id" => self.allocation_id.as_str(),
            "session_token" => self.session_token.as_str(),
            "task_type" => self.task_type.as_str(),
            "master_cert_name" => opt(&self.master_cert_name),
            "master_cert_file" => opt(&self.master_cert_file),
            "latest_checkpoint" => opt(&self.latest_checkpoint),
            "trial" => trial,
            "rendezvous" => rendezvous,
            "resources" => resources,
        }))
    }

    /// True for trial tasks.
    pub fn is_trial(&self) -> bool {
        self.task_type == "TRIAL"
    }

    /// The checkpoint to resume from (trials only, as in Python).
    pub fn latest_checkpoint(&self) -> Option<&str> {
        if self.is_trial() {
            self.latest_checkpoint.as_deref()
        } else {
            None
        }
    }

    /// Addresses of the allocation's containers, by rank (`["127.0.0.1"]` for non-trials).
    pub fn container_addrs(&self) -> Vec<String> {
        match &self.rendezvous {
            Some(r) if self.is_trial() => r.container_addrs.clone(),
            _ => vec!["127.0.0.1".into()],
        }
    }

    /// Slots of each container, by rank (`[len(slot_ids)]` for non-trials).
    pub fn container_slot_counts(&self) -> Vec<i64> {
        match &self.rendezvous {
            Some(r) if self.is_trial() => r.container_slot_counts.clone(),
            _ => vec![self.slot_ids.len() as i64],
        }
    }

    /// This container's rank (0 for non-trials).
    pub fn container_rank(&self) -> i64 {
        match &self.rendezvous {
            Some(r) if self.is_trial() => r.container_rank,
            _ => 0,
        }
    }

    /// The GPUs of this container (empty without `resources.json`).
    pub fn gpu_uuids(&self) -> Vec<String> {
        self.resources
            .as_ref()
            .map(|r| r.gpu_uuids.clone())
            .unwrap_or_default()
    }

    /// The experiment config (`{}` for non-trials).
    pub fn experiment_config(&self) -> Map {
        self.trial
            .as_ref()
            .map(|t| t.config.clone())
            .unwrap_or_default()
    }

    /// `config["data"]` for trials, `{}` otherwise (Python's `user_data`).
    pub fn user_data(&self) -> Value {
        match &self.trial {
            Some(t) if self.is_trial() => t
                .config
                .get("data")
                .cloned()
                .unwrap_or(Value::Object(Map::new())),
            _ => Value::Object(Map::new()),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::json::to_wire;

    /// Write a valid trial's info files into `dir`.
    pub(crate) fn write_trial(dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join("cluster.json"),
            r#"{"master_url": "http://127.0.0.1:8080", "cluster_id": "c1", "agent_id": "a1",
                "slot_ids": [0], "task_id": "t1", "allocation_id": "t1.a1", "session_token": "s",
                "task_type": "TRIAL", "master_cert_name": null, "master_cert_file": null,
                "latest_checkpoint": "ck"}"#,
        )
        .unwrap();
        std::fs::write(
            dir.join("trial.json"),
            r#"{"trial_id": 7, "experiment_id": 3, "trial_seed": 42, "hparams": {"lr": 0.1},
                "config": {"searcher": {"max_length": {"batches": 100}}, "data": {"x": 1}},
                "steps_completed": 50, "trial_run_id": 2, "debug": false,
                "inter_node_network_interface": null}"#,
        )
        .unwrap();
        std::fs::write(
            dir.join("rendezvous.json"),
            r#"{"container_addrs": ["10.0.0.1"], "container_rank": 0, "container_slot_counts": [1]}"#,
        )
        .unwrap();
        std::fs::write(dir.join("resources.json"), r#"{"gpu_uuids": ["GPU-1"]}"#).unwrap();
    }

    fn tmp() -> PathBuf {
        std::env::temp_dir().join(format!("detcore-ci-{}", uuid::Uuid::new_v4()))
    }

    #[test]
    fn reads_a_trial() {
        let d = tmp();
        write_trial(&d);
        assert!(is_on_cluster(&d));
        let i = ClusterInfo::load(&d).unwrap();
        assert_eq!(i.allocation_id, "t1.a1");
        assert_eq!(i.latest_checkpoint(), Some("ck"));
        let t = i.trial.as_ref().unwrap();
        assert_eq!(
            (t.trial_id, t.experiment_id, t.trial_seed, t.trial_run_id),
            (7, 3, 42, 2)
        );
        assert_eq!(i.container_addrs(), vec!["10.0.0.1"]);
        assert_eq!(i.gpu_uuids(), vec!["GPU-1"]);
        assert_eq!(to_wire(&i.user_data()), r#"{"x": 1}"#);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn errors_name_file_and_key() {
        let d = tmp();
        let cases: &[(&str, &str, &str)] = &[
            (
                "trial.json",
                r#""trial_run_id": 2"#,
                r#"trial.json: key "trial_run_id" must be an integer, got string "3""#,
            ),
            (
                "trial.json",
                r#""trial_id": 7, "#,
                r#"trial.json: required key "trial_id" is missing"#,
            ),
            (
                "cluster.json",
                r#""slot_ids": [0]"#,
                r#"cluster.json: key "slot_ids" must be a list of integers, got string"#,
            ),
            (
                "rendezvous.json",
                r#""container_rank": 0"#,
                r#"rendezvous.json: key "container_rank" must be an integer, got number 0.5"#,
            ),
        ];
        for (file, from, want) in cases {
            write_trial(&d);
            let p = d.join(file);
            let text = std::fs::read_to_string(&p).unwrap();
            let replaced = match *file {
                "trial.json" if from.contains("trial_run_id") => {
                    text.replace(from, r#""trial_run_id": "3""#)
                }
                "trial.json" => text.replace(from, ""),
                "cluster.json" => text.replace(from, r#""slot_ids": "0""#),
                _ => text.replace(from, r#""container_rank": 0.5"#),
            };
            assert_ne!(replaced, text);
            std::fs::write(&p, replaced).unwrap();
            let e = ClusterInfo::load(&d).unwrap_err();
            assert!(e.message().contains(want), "{e}");
            assert!(
                e.message()
                    .starts_with(&format!("{}/{file}: ", d.display())),
                "{e}"
            );
        }
        write_trial(&d);
        std::fs::write(d.join("trial.json"), "{\"trial_id\": ").unwrap();
        let e = ClusterInfo::load(&d).unwrap_err();
        assert!(e.message().contains("trial.json: broken JSON"), "{e}");
        write_trial(&d);
        std::fs::remove_file(d.join("trial.json")).unwrap();
        let e = ClusterInfo::load(&d).unwrap_err();
        assert!(e.message().contains("trial.json is missing"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
