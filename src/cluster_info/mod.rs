//! On-cluster detection and the `/run/determined/info` files (docs/protocol.md#cluster-info-files).
//!
//! `cluster.json` decides the mode (Determined's only test). Its companions `trial.json`
//! (trials), `rendezvous.json` (trials) and `resources.json` are read from the same folder. A
//! missing key, a value of the wrong type or broken JSON fails with a message naming the file
//! and the key, e.g. `trial.json: key "trial_run_id" must be an integer, got string "3"`.
//! Unknown keys are ignored (newer masters may add some).

mod master_url;

pub use master_url::MasterUrl;

use crate::error::{Error, Kind, Result};
use crate::json::{parse, to_wire, Map, Value};
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
#[derive(Debug, Clone, PartialEq)]
pub struct TrialInfo {
    pub trial_id: i64,
    pub experiment_id: i64,
    /// A uint32.
    pub trial_seed: u32,
    pub hparams: Map,
    /// The master's fully defaulted experiment config.
    pub config: Map,
    pub steps_completed: i64,
    pub trial_run_id: i64,
    pub debug: bool,
    pub inter_node_network_interface: Option<String>,
}

/// `rendezvous.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct RendezvousInfo {
    pub container_addrs: Vec<String>,
    pub container_rank: i64,
    pub container_slot_counts: Vec<i64>,
}

/// `resources.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourcesInfo {
    pub gpu_uuids: Vec<String>,
}

/// Determined's `ClusterInfo`: `cluster.json` and its companions. (`Debug` leaves the session
/// token out.)
#[derive(Clone, PartialEq)]
pub struct ClusterInfo {
    /// The folder the files were read from.
    pub dir: PathBuf,
    /// As written (Python canonicalizes it when loading; see [`MasterUrl`]).
    pub master_url: String,
    pub cluster_id: String,
    pub agent_id: String,
    pub slot_ids: Vec<i64>,
    pub task_id: String,
    pub allocation_id: String,
    /// The session token of `cluster.json` (the Core API authenticates with
    /// `DET_SESSION_TOKEN`, as Python does).
    pub session_token: String,
    /// `TRIAL`, `NOTEBOOK`, `SHELL`, `COMMAND`, `TENSORBOARD`, `CHECKPOINT_GC`, ...
    pub task_type: String,
    pub master_cert_name: Option<String>,
    pub master_cert_file: Option<String>,
    latest_checkpoint: Option<String>,
    pub trial: Option<TrialInfo>,
    pub rendezvous: Option<RendezvousInfo>,
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

/// One info file being read: its name for messages and its object.
struct File<'a> {
    name: &'a str,
    map: Map,
}

fn bad(name: &str, key: &str, want: &str, got: &Value) -> Error {
    let shown = to_wire(got);
    let shown = if shown.len() > 80 {
        format!(
            "{}...",
            &shown[..shown.char_indices().nth(77).map_or(shown.len(), |c| c.0)]
        )
    } else {
        shown
    };
    Error::new(
        Kind::InvalidArgument,
        format!(
            "{name}: key {key:?} must be {want}, got {} {shown}",
            got.type_name()
        ),
    )
}

impl File<'_> {
    fn required(&self, key: &str) -> Result<&Value> {
        self.map.get(key).ok_or_else(|| {
            Error::new(
                Kind::InvalidArgument,
                format!("{}: required key {key:?} is missing", self.name),
            )
        })
    }

    fn string(&self, key: &str) -> Result<String> {
        match self.required(key)? {
            Value::String(s) => Ok(s.clone()),
            other => Err(bad(self.name, key, "a string", other)),
        }
    }

    fn opt_string(&self, key: &str) -> Result<Option<String>> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(bad(self.name, key, "a string or null", other)),
        }
    }

    fn int(&self, key: &str) -> Result<i64> {
        let v = self.required(key)?;
        as_int(v).ok_or_else(|| bad(self.name, key, "an integer", v))
    }

    fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(bad(self.name, key, "true or false", other)),
        }
    }

    fn object(&self, key: &str) -> Result<Map> {
        match self.required(key)? {
            Value::Object(m) => Ok(m.clone()),
            other => Err(bad(self.name, key, "an object", other)),
        }
    }

    fn int_list(&self, key: &str) -> Result<Vec<i64>> {
        self.list(key, "a list of integers", as_int)
    }

    fn string_list(&self, key: &str) -> Result<Vec<String>> {
        self.list(key, "a list of strings", |x| x.as_str().map(str::to_owned))
    }

    /// The array `key`, each item converted by `item`; any other value, or an item `item`
    /// refuses, is an error naming `want` and showing the whole value.
    fn list<T>(&self, key: &str, want: &str, item: impl Fn(&Value) -> Option<T>) -> Result<Vec<T>> {
        let v = self.required(key)?;
        match v {
            Value::Array(a) => a
                .iter()
                .map(|x| item(x).ok_or_else(|| bad(self.name, key, want, v)))
                .collect(),
            other => Err(bad(self.name, key, want, other)),
        }
    }
}

/// An integer that fits in i64.
fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) if n.is_integer() => n.as_i64(),
        _ => None,
    }
}

/// Read `<dir>/<name>` as a JSON object (`None` if the file does not exist).
fn read_object<'a>(dir: &Path, name: &'a str) -> Result<Option<File<'a>>> {
    let path = dir.join(name);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("cannot read cluster info file", &path, e)),
    };
    let v = parse(&text).map_err(|e| {
        Error::new(
            Kind::InvalidArgument,
            format!("{}: broken JSON: {}", path.display(), e.message()),
        )
    })?;
    match v {
        Value::Object(map) => Ok(Some(File { name, map })),
        other => Err(Error::new(
            Kind::InvalidArgument,
            format!(
                "{}: expected a JSON object, got {}",
                path.display(),
                other.type_name()
            ),
        )),
    }
}

impl ClusterInfo {
    /// Read `cluster.json` and its companions from `dir`. Errors name the file and the key.
    pub fn load(dir: &Path) -> Result<ClusterInfo> {
        let in_dir = |e: Error| {
            if e.message().starts_with('/') {
                e
            } else {
                Error::new(e.kind(), format!("{}/{}", dir.display(), e.message()))
            }
        };
        let c = read_object(dir, "cluster.json")
            .map_err(in_dir)?
            .ok_or_else(|| {
                Error::new(
                    Kind::NotFound,
                    format!("{}: cluster.json does not exist", dir.display()),
                )
            })?;
        let mut info = (|| -> Result<ClusterInfo> {
            Ok(ClusterInfo {
                dir: dir.to_path_buf(),
                master_url: c.string("master_url")?,
                cluster_id: c.string("cluster_id")?,
                agent_id: c.string("agent_id")?,
                slot_ids: c.int_list("slot_ids")?,
                task_id: c.string("task_id")?,
                allocation_id: c.string("allocation_id")?,
                session_token: c.string("session_token")?,
                task_type: c.string("task_type")?,
                master_cert_name: c.opt_string("master_cert_name")?,
                master_cert_file: c.opt_string("master_cert_file")?,
                latest_checkpoint: c.opt_string("latest_checkpoint")?,
                trial: None,
                rendezvous: None,
                resources: None,
            })
        })()
        .map_err(in_dir)?;

        if let Some(t) = read_object(dir, "trial.json").map_err(in_dir)? {
            info.trial = Some(
                (|| -> Result<TrialInfo> {
                    let seed = t.int("trial_seed")?;
                    Ok(TrialInfo {
                        trial_id: t.int("trial_id")?,
                        experiment_id: t.int("experiment_id")?,
                        trial_seed: u32::try_from(seed).map_err(|_| {
                            bad(t.name, "trial_seed", "a uint32", &Value::from(seed))
                        })?,
                        hparams: t.object("hparams")?,
                        config: t.object("config")?,
                        steps_completed: t.int("steps_completed")?,
                        trial_run_id: t.int("trial_run_id")?,
                        debug: t.bool_or("debug", false)?,
                        inter_node_network_interface: t
                            .opt_string("inter_node_network_interface")?,
                    })
                })()
                .map_err(in_dir)?,
            );
        }
        if let Some(r) = read_object(dir, "rendezvous.json").map_err(in_dir)? {
            let rv = (|| -> Result<RendezvousInfo> {
                Ok(RendezvousInfo {
                    container_addrs: r.string_list("container_addrs")?,
                    container_rank: r.int("container_rank")?,
                    container_slot_counts: r.int_list("container_slot_counts")?,
                })
            })()
            .map_err(in_dir)?;
            let n = rv.container_addrs.len();
            if n == 0
                || rv.container_slot_counts.len() != n
                || rv.container_rank < 0
                || rv.container_rank as usize >= n
            {
                return Err(in_dir(Error::new(
                    Kind::InvalidArgument,
                    format!(
                        "rendezvous.json: {} container_addrs, {} container_slot_counts and container_rank {} do not fit together",
                        n,
                        rv.container_slot_counts.len(),
                        rv.container_rank
                    ),
                )));
            }
            info.rendezvous = Some(rv);
        }
        if let Some(r) = read_object(dir, "resources.json").map_err(in_dir)? {
            info.resources = Some(ResourcesInfo {
                gpu_uuids: r.string_list("gpu_uuids").map_err(in_dir)?,
            });
        }
        if info.is_trial() {
            if info.trial.is_none() {
                return Err(Error::new(
                    Kind::InvalidArgument,
                    format!(
                        "{}: trial.json is missing, but cluster.json says task_type \"TRIAL\"",
                        dir.display()
                    ),
                ));
            }
            if info.rendezvous.is_none() {
                return Err(Error::new(
                    Kind::InvalidArgument,
                    format!(
                        "{}: rendezvous.json is missing, but cluster.json says task_type \"TRIAL\"",
                        dir.display()
                    ),
                ));
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
