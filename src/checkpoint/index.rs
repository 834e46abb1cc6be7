//! The off-cluster run index: the list of a run's complete checkpoints, kept in the checkpoint
//! storage at `.detcore/runs/<run_name>/checkpoints.json`, so that running the same command again
//! (on any node that sees the storage) resumes from the newest one.
//!
//! The index is rewritten atomically after each checkpoint is published and after each delete. A
//! checkpoint published but not yet indexed (a crash in between) is simply not resumed from; an
//! indexed checkpoint that has disappeared is skipped.

use crate::error::Result;
use crate::json::{parse, to_metadata_file, Map, Value};
use crate::storage::Storage;
use crate::{bail, log_warn};
use parking_lot::Mutex;
use std::sync::Arc;

/// One indexed checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub storage_id: String,
    pub steps_completed: Option<i64>,
    pub report_time: String,
    /// The value of the retention policy's metric for this checkpoint (its validation metric at
    /// the same steps, or a key of its metadata), once known.
    pub metric: Option<f64>,
}

/// A run's checkpoint index.
pub struct RunIndex {
    storage: Arc<dyn Storage>,
    run_name: String,
    key: String,
    lock: Mutex<()>,
}

/// Check that `name` can name a run (it becomes a folder name).
pub fn validate_run_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 200 {
        bail!(
            InvalidArgument,
            "run_name: {name:?} must be 1 to 200 bytes long"
        );
    }
    if name == "."
        || name == ".."
        || name.contains('/')
        || name.contains('\0')
        || name.contains('\\')
    {
        bail!(
            InvalidArgument,
            "run_name: {name:?} must not contain '/' or be \".\" or \"..\""
        );
    }
    Ok(())
}

impl RunIndex {
    /// The index of `run_name` in `storage`.
    pub fn new(storage: Arc<dyn Storage>, run_name: &str) -> Result<RunIndex> {
        validate_run_name(run_name)?;
        Ok(RunIndex {
            storage,
            run_name: run_name.to_owned(),
            key: format!(".detcore/runs/{run_name}/checkpoints.json"),
            lock: Mutex::new(()),
        })
    }

    /// The storage key of the index.
    pub fn key(&self) -> &str {
        &self.key
    }

    fn load(&self) -> Result<Vec<Entry>> {
        let Some(data) = self.storage.get_aux(&self.key)? else {
            return Ok(Vec::new());
        };
        let text = String::from_utf8_lossy(&data);
        let v = match parse(&text) {
            Ok(v) => v,
            Err(e) => {
                log_warn!(
                    "ignoring the unreadable run index {}: {}",
                    self.key,
                    e.message()
                );
                return Ok(Vec::new());
            }
        };
        let mut out = Vec::new();
        for c in v
            .get("checkpoints")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(id) = c.get("storage_id").and_then(Value::as_str) {
                out.push(Entry {
                    storage_id: id.to_owned(),
                    steps_completed: c.get("steps_completed").and_then(Value::as_i64),
                    report_time: c
                        .get("report_time")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    metric: c.get("metric").and_then(Value::as_f64),
                });
            }
        }
        Ok(out)
    }

    fn save(&self, entries: &[Entry]) -> Result<()> {
        let list: Vec<Value> = entries
            .iter()
            .map(|e| {
                let mut o = obj! {
                    "storage_id" => e.storage_id.as_str(),
                    "steps_completed" => e.steps_completed,
                    "report_time" => e.report_time.as_str(),
                };
                if let Some(m) = e.metric.filter(|m| m.is_finite()) {
                    o.insert("metric", Value::from(m));
                }
                Value::Object(o)
            })
            .collect();
        let doc: Map =
            obj! { "run_name" => self.run_name.as_str(), "checkpoints" => Value::Array(list) };
        self.storage
            .put_aux(&self.key, to_metadata_file(&Value::Object(doc)).as_bytes())
    }

    /// Record a newly published checkpoint as the newest.
    pub fn add(&self, entry: Entry) -> Result<()> {
        let _g = self.lock.lock();
        let mut all = self.load()?;
        all.retain(|e| e.storage_id != entry.storage_id);
        all.push(entry);
        self.save(&all)
    }

    /// Forget a deleted checkpoint.
    pub fn remove(&self, storage_id: &str) -> Result<()> {
        let _g = self.lock.lock();
        let mut all = self.load()?;
        let before = all.len();
        all.retain(|e| e.storage_id != storage_id);
        if all.len() != before {
            self.save(&all)?;
        }
        Ok(())
    }

    /// Forget several deleted checkpoints (one rewrite of the index).
    pub fn remove_many(&self, storage_ids: &[String]) -> Result<()> {
        let _g = self.lock.lock();
        let mut all = self.load()?;
        let before = all.len();
        all.retain(|e| !storage_ids.contains(&e.storage_id));
        if all.len() != before {
            self.save(&all)?;
        }
        Ok(())
    }

    /// Record `value` as the metric of the checkpoints at `steps` that have none yet (a
    /// validation reported after its checkpoint). Returns whether an entry changed.
    pub fn set_metric(&self, steps: i64, value: f64) -> Result<bool> {
        let _g = self.lock.lock();
        let mut all = self.load()?;
        let mut changed = false;
        for e in all.iter_mut() {
            if e.steps_completed == Some(steps) && e.metric.is_none() {
                e.metric = Some(value);
                changed = true;
            }
        }
        if changed {
            self.save(&all)?;
        }
        Ok(changed)
    }

    /// All entries, oldest first.
    pub fn entries(&self) -> Result<Vec<Entry>> {
        let _g = self.lock.lock();
        self.load()
    }

    /// The newest indexed checkpoint that is still complete in the storage: the one with the
    /// most `steps_completed` (as the master picks `DET_LATEST_CHECKPOINT`), the last recorded
    /// among equals — so an asynchronous upload that finishes after a later checkpoint does not
    /// become the resume point.
    pub fn latest(&self) -> Result<Option<Entry>> {
        let mut all = self.entries()?;
        // Stable sort: among equal steps, later entries stay later.
        all.sort_by_key(|e| e.steps_completed.unwrap_or(-1));
        for e in all.into_iter().rev() {
            if self.storage.is_complete(&e.storage_id)? {
                return Ok(Some(e));
            }
            log_warn!(
                "run index lists checkpoint {} but it is missing or incomplete; skipping it",
                e.storage_id
            );
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{open, StorageConfig};

    fn complete(base: &std::path::Path, id: &str) {
        let d = base.join(id);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("metadata.json"), "{}").unwrap();
    }

    fn entry(id: &str, steps: Option<i64>) -> Entry {
        Entry {
            storage_id: id.into(),
            steps_completed: steps,
            report_time: "2026-01-01T00:00:00Z".into(),
            metric: None,
        }
    }

    #[test]
    fn latest_is_most_steps_then_last_recorded_and_skips_incomplete() {
        let base = std::env::temp_dir().join(format!("detcore-idx-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&base).unwrap();
        let storage = open(&StorageConfig::SharedFs { base: base.clone() }).unwrap();
        let idx = RunIndex::new(storage, "run").unwrap();
        assert_eq!(idx.latest().unwrap(), None);
        for id in ["a", "b", "c", "d"] {
            complete(&base, id);
        }
        // An asynchronous upload of step 20 finished after the step-30 checkpoint was indexed.
        idx.add(entry("a", Some(10))).unwrap();
        idx.add(entry("c", Some(30))).unwrap();
        idx.add(entry("b", Some(20))).unwrap();
        assert_eq!(idx.latest().unwrap().unwrap().storage_id, "c");
        // Equal steps: the one recorded last wins.
        idx.add(entry("d", Some(30))).unwrap();
        assert_eq!(idx.latest().unwrap().unwrap().storage_id, "d");
        // A checkpoint that vanished from the storage is skipped.
        std::fs::remove_dir_all(base.join("d")).unwrap();
        assert_eq!(idx.latest().unwrap().unwrap().storage_id, "c");
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn metrics_and_removals_persist() {
        let base = std::env::temp_dir().join(format!("detcore-idx-{}", uuid::Uuid::new_v4()));
        let storage = open(&StorageConfig::SharedFs { base: base.clone() }).unwrap();
        let idx = RunIndex::new(storage.clone(), "run").unwrap();
        let mut with_metric = entry("a", Some(10));
        with_metric.metric = Some(0.5);
        idx.add(with_metric).unwrap();
        idx.add(entry("b", Some(20))).unwrap();
        idx.add(entry("c", Some(30))).unwrap();
        // A validation after its checkpoint; an earlier value is kept.
        assert!(idx.set_metric(20, 0.25).unwrap());
        assert!(!idx.set_metric(10, 9.0).unwrap());
        assert!(!idx.set_metric(99, 1.0).unwrap());
        idx.remove_many(&["a".into(), "c".into(), "zz".into()])
            .unwrap();
        // Read back by a new index over the same storage (another process).
        let again = RunIndex::new(storage, "run").unwrap();
        let all = again.entries().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(
            (all[0].storage_id.as_str(), all[0].metric),
            ("b", Some(0.25))
        );
        std::fs::remove_dir_all(&base).unwrap();
    }
}
