//! The off-cluster run index: a run's checkpoints, kept in the checkpoint storage under
//! `.detcore/runs/<run_name>/`, so that running the same command again (on any node that sees the
//! storage) resumes from the newest one.
//!
//! Layout:
//! - `checkpoints/<storage_id>.json`, one record per checkpoint (`storage_id`,
//!   `steps_completed`, `report_time`, and with a retention policy the checkpoint's `metric` and,
//!   while retention deletes it, `"deleting": true`): the index itself. A record is written
//!   *before* its checkpoint is published and counts only once the checkpoint is complete, so a
//!   process killed at any point leaves no complete checkpoint unindexed. Each process writes
//!   only its own records (processes sharing a run never overwrite each other's entries), except
//!   that retention updates the records of the run it cleans up (a metric reported after its
//!   checkpoint, a deletion begun).
//! - `checkpoints.json`, a summary of the records (`{"run_name", "format": 2, "checkpoints":
//!   [...]}`), rewritten after each change (under a lock file on folder storage) for people and
//!   tools that read one file. It is never the only copy of anything: when it is unreadable,
//!   the index is rebuilt from the records (and a copy of the unreadable file is kept beside it);
//!   an index of the first format (the summary alone) is converted, any storage id that can be
//!   recovered from it is kept.
//!
//! Resuming takes the checkpoint with the most `steps_completed` that is complete, whose
//! `metadata.json` is readable and that retention is not deleting, and logs every newer one it
//! skips and why. When that one then fails verification (see [`crate::storage::manifest`]), the
//! resume falls back to the next one by the same rules ([`RunIndex::resumable_before`]).

use crate::error::{Error, Result};
use crate::json::{parse, to_metadata_file, to_wire, Map, Value};
use crate::storage::{validate_id, Storage};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The summary's `format` since records exist.
const FORMAT: i64 = 2;

/// One indexed checkpoint.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Entry {
    pub storage_id: String,
    pub steps_completed: Option<i64>,
    pub report_time: String,
    /// The value of the retention policy's metric for this checkpoint (its validation metric at
    /// the same steps, or a key of its metadata), once known.
    pub metric: Option<f64>,
    /// Retention is deleting this checkpoint: it is never resumed from, and a deletion
    /// interrupted by a crash is finished by the next retention pass.
    pub deleting: bool,
}

impl Entry {
    fn to_value(&self) -> Value {
        let mut o = obj! {
            "storage_id" => self.storage_id.as_str(),
            "steps_completed" => self.steps_completed,
            "report_time" => self.report_time.as_str(),
        };
        if let Some(m) = self.metric.filter(|m| m.is_finite()) {
            o.insert("metric", Value::from(m));
        }
        if self.deleting {
            o.insert("deleting", Value::from(true));
        }
        Value::Object(o)
    }

    /// An entry from an object with a valid `storage_id` (other fields optional).
    fn from_value(v: &Value) -> Option<Entry> {
        let id = v.get("storage_id")?.as_str()?;
        validate_id(id).ok()?;
        Some(Entry {
            storage_id: id.to_owned(),
            steps_completed: v
                .get("steps_completed")
                .filter(|s| matches!(s, Value::Number(n) if n.is_integer()))
                .and_then(Value::as_i64),
            report_time: v
                .get("report_time")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            metric: v
                .get("metric")
                .and_then(Value::as_f64)
                .filter(|m| m.is_finite()),
            deleting: v.get("deleting").and_then(Value::as_bool).unwrap_or(false),
        })
    }
}

/// A run's checkpoint index. All methods may be called from any thread and by several
/// processes at once.
pub struct RunIndex {
    storage: Arc<dyn Storage>,
    run_name: String,
    /// `.detcore/runs/<run>`
    dir: String,
    /// The summary, `<dir>/checkpoints.json`.
    key: String,
    /// `<dir>/checkpoints/`
    records: String,
    /// Serialises this process's summary rewrites (other processes: the storage's lock).
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

/// Why the summary must be rewritten (and what to say about it).
enum Rewrite {
    /// It misses records or lists removed ones.
    Refresh,
    /// It was of the first format.
    Converted { entries: usize },
    /// It could not be read.
    Unreadable {
        why: String,
        text: String,
        records: usize,
        recovered: usize,
    },
}

/// What the summary file held.
enum Summary {
    Missing,
    /// A JSON object with a `checkpoints` array; `format` 1 for the first format (no records).
    Read {
        format: i64,
        entries: Vec<Entry>,
        text: String,
    },
    Unreadable {
        why: String,
        text: String,
    },
}

/// Every UUID-shaped string in `text` (storage ids recoverable from a damaged index).
fn uuids_in(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let shape = [8, 4, 4, 4, 12];
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i + 36 <= b.len() {
        let mut j = i;
        let mut ok = true;
        for (k, n) in shape.iter().enumerate() {
            if !b[j..j + n].iter().all(u8::is_ascii_hexdigit) {
                ok = false;
                break;
            }
            j += n;
            if k < 4 {
                if b[j] != b'-' {
                    ok = false;
                    break;
                }
                j += 1;
            }
        }
        let bounded = |p: usize| p >= b.len() || !b[p].is_ascii_alphanumeric();
        if ok && (i == 0 || !b[i - 1].is_ascii_alphanumeric()) && bounded(i + 36) {
            let id = text[i..i + 36].to_ascii_lowercase();
            if !out.contains(&id) {
                out.push(id);
            }
            i += 36;
        } else {
            i += 1;
        }
    }
    out
}

impl RunIndex {
    /// The index of `run_name` in `storage`.
    pub fn new(storage: Arc<dyn Storage>, run_name: &str) -> Result<RunIndex> {
        validate_run_name(run_name)?;
        let dir = format!(".detcore/runs/{run_name}");
        Ok(RunIndex {
            storage,
            run_name: run_name.to_owned(),
            key: format!("{dir}/checkpoints.json"),
            records: format!("{dir}/checkpoints/"),
            dir,
            lock: Mutex::new(()),
        })
    }

    /// The run's folder in the storage (`.detcore/runs/<run>`): its records and summary.
    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// The storage key of the summary (`.detcore/runs/<run>/checkpoints.json`).
    pub fn key(&self) -> &str {
        &self.key
    }

    fn record_key(&self, id: &str) -> String {
        format!("{}{id}.json", self.records)
    }

    /// Record checkpoint `entry` (durable when this returns). It counts as indexed once the
    /// checkpoint is complete in the storage: record before publishing.
    pub fn add(&self, entry: Entry) -> Result<()> {
        validate_id(&entry.storage_id)?;
        let mut v = entry.to_value();
        if let Value::Object(m) = &mut v {
            m.insert("run_name", Value::from(self.run_name.as_str()));
        }
        self.storage
            .put_aux(&self.record_key(&entry.storage_id), to_wire(&v).as_bytes())
            .map_err(|e| {
                Error::new(
                    e.kind(),
                    format!(
                        "cannot record checkpoint {} in the run index {} of {}: {}",
                        entry.storage_id,
                        self.dir,
                        self.storage.describe(),
                        e.message()
                    ),
                )
            })
    }

    /// Forget checkpoint `id` (deleted, or never stored).
    pub fn remove(&self, id: &str) -> Result<()> {
        validate_id(id)?;
        self.storage.delete_aux(&self.record_key(id))
    }

    /// Forget several checkpoints, then rewrite the summary once.
    pub fn remove_many(&self, ids: &[String]) -> Result<()> {
        let mut first_err = None;
        for id in ids {
            if let Err(e) = self.remove(id) {
                first_err.get_or_insert(e);
            }
        }
        self.write_summary();
        first_err.map_or(Ok(()), Err)
    }

    /// Rewrite the records of `changed` entries (fields other than the id changed; a record
    /// removed meanwhile is not written back). The summary's copy of a record is used instead
    /// of the record, so it must never hold the old values once the record has the new ones:
    /// first the summary is rewritten without these entries (readers then read their records),
    /// then the records, then the whole summary. A crash (or a failed write) in between leaves
    /// a summary that lacks them, which is safe, never one with their old values. Only small
    /// writes happen under the index lock (never a deletion, which a storage may answer slowly).
    fn update(&self, changed: &[Entry]) -> Result<()> {
        let _g = self.lock.lock();
        let _l = self
            .storage
            .lock_aux(&self.lock_key(), Duration::from_secs(10));
        let (entries, rewrite) = self.load()?;
        if rewrite.is_some() {
            // A summary to convert, or an unreadable one to keep a copy of: as usual first.
            self.write_summary_locked();
        }
        let others: Vec<&Entry> = entries
            .iter()
            .filter(|e| !changed.iter().any(|c| c.storage_id == e.storage_id))
            .collect();
        self.put_summary(&others)?;
        for e in changed {
            if self
                .storage
                .get_aux(&self.record_key(&e.storage_id))?
                .is_some()
            {
                self.add(e.clone())?;
            }
        }
        self.write_summary_locked();
        Ok(())
    }

    /// Record `value` as the metric of the complete checkpoints at `steps` that have none yet
    /// (a validation reported after its checkpoint; one still being stored gets its value from
    /// the retention pass that follows it). Returns whether an entry changed.
    pub fn set_metric(&self, steps: i64, value: f64) -> Result<bool> {
        let mut changed = Vec::new();
        for e in self.entries()? {
            if e.steps_completed == Some(steps)
                && e.metric.is_none()
                && !e.deleting
                && self.storage.is_complete(&e.storage_id)?
            {
                changed.push(Entry {
                    metric: Some(value),
                    ..e
                });
            }
        }
        if changed.is_empty() {
            return Ok(false);
        }
        self.update(&changed)?;
        Ok(true)
    }

    /// Mark checkpoint `entry` as being deleted by retention (durable when this returns), before
    /// any of its files is deleted.
    pub fn mark_deleting(&self, entry: &Entry) -> Result<()> {
        self.update(&[Entry {
            deleting: true,
            ..entry.clone()
        }])
    }

    fn lock_key(&self) -> String {
        format!("{}/index.lock", self.dir)
    }

    /// Every recorded checkpoint, in the order they were recorded, including ones that are not
    /// (or not yet) complete in the storage.
    pub fn entries(&self) -> Result<Vec<Entry>> {
        let (entries, rewrite) = self.load()?;
        if rewrite.is_some() {
            self.write_summary();
        }
        Ok(entries)
    }

    /// Rewrite the summary from the records (best effort: a failure is logged; the records stay
    /// authoritative).
    pub fn write_summary(&self) {
        let _g = self.lock.lock();
        let _l = self
            .storage
            .lock_aux(&self.lock_key(), Duration::from_secs(10));
        self.write_summary_locked();
    }

    /// [`RunIndex::write_summary`] with the index locks held.
    fn write_summary_locked(&self) {
        let r = self.load().and_then(|(entries, rewrite)| {
            match rewrite {
                Some(Rewrite::Converted { entries }) => log_info!(
                    "run index {}: converted its {entries} entries to one record per checkpoint",
                    self.key
                ),
                Some(Rewrite::Unreadable {
                    why,
                    text,
                    records,
                    recovered,
                }) => {
                    // Nothing is discarded: the unreadable file is kept beside the index.
                    let copy = format!(
                        "{}.unreadable-{}",
                        self.key,
                        crate::time::now_iso8601().replace(':', "")
                    );
                    let kept = match self.storage.put_aux(&copy, text.as_bytes()) {
                        Ok(()) => format!("a copy of it is kept as {copy}"),
                        Err(e) => format!("(it could not be copied aside: {e})"),
                    };
                    log_info!(
                        "run index {} is unreadable ({why}); rebuilt it from the {records} checkpoint record(s) in {} and {recovered} storage id(s) recovered from its text; {kept}",
                        self.key,
                        self.records
                    );
                }
                _ => {}
            }
            self.put_summary(&entries.iter().collect::<Vec<_>>())
        });
        if let Err(e) = r {
            log_warn!(
                "could not rewrite the run index summary {}: {e} (the checkpoint records beside it stay complete and are used instead)",
                self.key
            );
        }
    }

    /// Write the summary listing `entries`.
    fn put_summary(&self, entries: &[&Entry]) -> Result<()> {
        let list: Vec<Value> = entries.iter().map(|e| e.to_value()).collect();
        let doc: Map = obj! {
            "run_name" => self.run_name.as_str(),
            "format" => FORMAT,
            "checkpoints" => Value::Array(list),
        };
        self.storage
            .put_aux(&self.key, to_metadata_file(&Value::Object(doc)).as_bytes())
    }

    fn read_summary(&self) -> Result<Summary> {
        let Some(data) = self.storage.get_aux(&self.key)? else {
            return Ok(Summary::Missing);
        };
        let text = String::from_utf8_lossy(&data).into_owned();
        let v = match parse(&text) {
            Ok(v) => v,
            Err(e) => {
                return Ok(Summary::Unreadable {
                    why: e.message().to_owned(),
                    text,
                })
            }
        };
        let Some(list) = v.get("checkpoints").and_then(Value::as_array) else {
            let why = if text.trim().is_empty() {
                "it is empty".to_owned()
            } else {
                format!(
                    "it holds {}, not an object with a \"checkpoints\" list",
                    v.type_name()
                )
            };
            return Ok(Summary::Unreadable { why, text });
        };
        let entries: Vec<Entry> = list.iter().filter_map(Entry::from_value).collect();
        if entries.len() != list.len() {
            // Entries of the wrong shape: their ids are recovered from the text.
            return Ok(Summary::Unreadable {
                why: format!(
                    "{} of its {} entries are not {{\"storage_id\": <a storage id>, ...}}",
                    list.len() - entries.len(),
                    list.len()
                ),
                text,
            });
        }
        let format = v.get("format").and_then(Value::as_i64).unwrap_or(1);
        Ok(Summary::Read {
            format,
            entries,
            text,
        })
    }

    /// An entry for a checkpoint known only by its id: `steps_completed` from its metadata.
    fn rebuild_entry(&self, id: &str) -> Entry {
        Entry {
            storage_id: id.to_owned(),
            steps_completed: self.readable_steps(id).ok(),
            ..Entry::default()
        }
    }

    /// The entries, and whether (and why) the summary should be rewritten.
    fn load(&self) -> Result<(Vec<Entry>, Option<Rewrite>)> {
        let mut ids: Vec<String> = Vec::new();
        for name in self.storage.list_aux(&self.records)? {
            match name.strip_suffix(".json") {
                Some(id) if validate_id(id).is_ok() => ids.push(id.to_owned()),
                _ => log_warn!(
                    "ignoring {}{name:?} in the run index: not a checkpoint record",
                    self.records
                ),
            }
        }
        let summary = self.read_summary()?;
        let mut known: BTreeMap<String, Entry> = BTreeMap::new();
        let rewrite = match summary {
            Summary::Missing => (!ids.is_empty()).then_some(Rewrite::Refresh),
            Summary::Read {
                format, entries, ..
            } if format >= FORMAT => {
                // Records are authoritative; a summary entry without one was removed since.
                for e in entries {
                    if ids.contains(&e.storage_id) {
                        known.insert(e.storage_id.clone(), e);
                    }
                }
                (known.len() != ids.len()).then_some(Rewrite::Refresh)
            }
            Summary::Read { entries, text, .. } => {
                // The first format: the summary was the whole index. Convert it.
                let mut recovered = entries;
                for id in uuids_in(&text) {
                    if !recovered.iter().any(|e| e.storage_id == id) {
                        recovered.push(self.rebuild_entry(&id));
                    }
                }
                let entries = recovered.len();
                self.adopt(recovered, &mut ids, &mut known);
                Some(Rewrite::Converted { entries })
            }
            Summary::Unreadable { why, text } => {
                let recovered: Vec<Entry> = uuids_in(&text)
                    .into_iter()
                    .filter(|id| !ids.contains(id))
                    .filter(|id| self.storage.is_complete(id).unwrap_or(false))
                    .map(|id| self.rebuild_entry(&id))
                    .collect();
                let recovered_n = recovered.len();
                let records = ids.len();
                self.adopt(recovered, &mut ids, &mut known);
                Some(Rewrite::Unreadable {
                    why,
                    text,
                    records,
                    recovered: recovered_n,
                })
            }
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in &ids {
            let e = match known.remove(id) {
                Some(e) => e,
                None => self.read_record(id),
            };
            out.push(e);
        }
        out.sort_by(|a, b| {
            (a.report_time.as_str(), a.storage_id.as_str())
                .cmp(&(b.report_time.as_str(), b.storage_id.as_str()))
        });
        Ok((out, rewrite))
    }

    /// Write records for `entries` recovered from an old or damaged summary (best effort) and
    /// add them to the index being loaded.
    fn adopt(
        &self,
        entries: Vec<Entry>,
        ids: &mut Vec<String>,
        known: &mut BTreeMap<String, Entry>,
    ) {
        for e in entries {
            if ids.contains(&e.storage_id) {
                continue;
            }
            if let Err(err) = self.add(e.clone()) {
                log_warn!("{err}");
            }
            ids.push(e.storage_id.clone());
            known.insert(e.storage_id.clone(), e);
        }
    }

    /// The entry of record `id`; an unreadable record is rebuilt from the checkpoint.
    fn read_record(&self, id: &str) -> Entry {
        let why = match self.storage.get_aux(&self.record_key(id)) {
            Ok(Some(data)) => match parse(&String::from_utf8_lossy(&data)) {
                Ok(v) => match Entry::from_value(&v) {
                    Some(e) if e.storage_id == id => return e,
                    _ => "it does not describe this checkpoint".to_owned(),
                },
                Err(e) => e.message().to_owned(),
            },
            Ok(None) => "it vanished".to_owned(),
            Err(e) => e.message().to_owned(),
        };
        log_info!(
            "run index record {} is unreadable ({why}); rebuilt it from the checkpoint",
            self.record_key(id)
        );
        self.rebuild_entry(id)
    }

    /// `steps_completed` from checkpoint `id`'s `metadata.json`, or why it cannot be used.
    fn readable_steps(&self, id: &str) -> std::result::Result<i64, String> {
        match self.storage.is_complete(id) {
            Ok(true) => {}
            Ok(false) => {
                return Err("it is not complete in the storage (interrupted, deleted, or still being written by another process)".into())
            }
            Err(e) => return Err(e.message().to_owned()),
        }
        let data = self
            .storage
            .read_file(id, "metadata.json")
            .map_err(|e| e.message().to_owned())?;
        let text = String::from_utf8(data).map_err(|_| "its metadata.json is not UTF-8")?;
        let m = crate::json::parse_object(&text, "its metadata.json")
            .map_err(|e| e.message().to_owned())?;
        super::check_metadata(&m).map_err(|e| format!("its metadata.json: {}", e.message()))
    }

    /// The entries in resume order: the most `steps_completed` first (as the master picks
    /// `latest_checkpoint`), the last recorded first among equals — so an asynchronous upload
    /// that finishes after a later checkpoint does not become the resume point.
    fn resume_order(&self) -> Result<Vec<Entry>> {
        let mut all = self.entries()?;
        // Stable sort: among equal steps, later entries stay later; reversed below.
        all.sort_by_key(|e| e.steps_completed.unwrap_or(-1));
        all.reverse();
        Ok(all)
    }

    /// `e` with `steps_completed` from its metadata.json if it can be resumed from (complete,
    /// readable metadata, not being deleted), else why not.
    pub fn resumable(&self, e: &Entry) -> std::result::Result<Entry, String> {
        if e.deleting {
            return Err("checkpoint retention is deleting it".into());
        }
        let steps = self.readable_steps(&e.storage_id)?;
        if e.steps_completed != Some(steps) {
            log_debug!(
                "checkpoint {}: steps_completed {steps} from its metadata.json (index: {:?})",
                e.storage_id,
                e.steps_completed
            );
        }
        Ok(Entry {
            steps_completed: Some(steps),
            ..e.clone()
        })
    }

    /// The checkpoint to resume from: the first in resume order (most `steps_completed`, the
    /// last recorded among equals) that is complete, has a readable `metadata.json` and is not
    /// being deleted by retention. Newer ones skipped are logged with the reason.
    pub fn latest(&self) -> Result<Option<Entry>> {
        let mut skipped = 0;
        for e in self.resume_order()? {
            match self.resumable(&e) {
                Ok(found) => return Ok(Some(found)),
                Err(why) => {
                    skipped += 1;
                    let line = format!(
                        "run {:?}: not resuming from checkpoint {}: {why}",
                        self.run_name, e.storage_id
                    );
                    if why.starts_with("it is not complete") || e.deleting {
                        log_info!("{line}");
                    } else {
                        log_warn!("{line}");
                    }
                }
            }
        }
        if skipped > 0 {
            log_warn!(
                "run {:?}: none of the {skipped} checkpoint(s) in its index can be resumed from; starting from scratch",
                self.run_name
            );
        }
        Ok(None)
    }

    /// The checkpoints a resume may fall back to when checkpoint `id` of the index turns out
    /// damaged: those after it in resume order, best first (empty when `id` is not in the
    /// index). Each must still pass [`RunIndex::resumable`], as in [`RunIndex::latest`].
    pub fn before_in_resume_order(&self, id: &str) -> Result<Vec<Entry>> {
        let mut all = self.resume_order()?;
        Ok(match all.iter().position(|e| e.storage_id == id) {
            Some(at) => all.split_off(at + 1),
            None => Vec::new(),
        })
    }
}

impl std::fmt::Debug for RunIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunIndex")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{open, StorageConfig};
    use crate::testutil::TempDir;

    fn complete(base: &std::path::Path, id: &str, steps: i64) {
        let d = base.join(id);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("metadata.json"),
            format!("{{\"steps_completed\": {steps}}}"),
        )
        .unwrap();
    }

    fn entry(id: &str, steps: Option<i64>) -> Entry {
        Entry {
            storage_id: id.into(),
            steps_completed: steps,
            report_time: crate::time::now_iso8601(),
            ..Entry::default()
        }
    }

    fn setup() -> (TempDir, std::path::PathBuf, RunIndex) {
        let td = TempDir::new("idx");
        let base = td.path().to_path_buf();
        let storage = open(&StorageConfig::SharedFs { base: base.clone() }).unwrap();
        let idx = RunIndex::new(storage, "run").unwrap();
        (td, base, idx)
    }

    const A: &str = "0b9b2b6c-4a8a-4f5e-9d3c-2a4f6c1b9e7a";
    const B: &str = "0b9b2b6c-4a8a-4f5e-9d3c-2a4f6c1b9e7b";
    const C: &str = "0b9b2b6c-4a8a-4f5e-9d3c-2a4f6c1b9e7c";
    const D: &str = "0b9b2b6c-4a8a-4f5e-9d3c-2a4f6c1b9e7d";

    fn ids(entries: &[Entry]) -> Vec<&str> {
        entries.iter().map(|e| e.storage_id.as_str()).collect()
    }

    #[test]
    fn metrics_deletions_and_fallbacks() {
        let (_td, base, idx) = setup();
        for (id, s) in [(A, 10), (B, 20), (C, 30)] {
            complete(&base, id, s);
            let mut e = entry(id, Some(s));
            if id == A {
                e.metric = Some(0.5);
            }
            idx.add(e).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        idx.write_summary();
        // A validation after its checkpoint sets its metric; an earlier value is kept.
        assert!(idx.set_metric(20, 0.25).unwrap());
        assert!(!idx.set_metric(10, 9.0).unwrap());
        assert!(!idx.set_metric(99, 1.0).unwrap());
        // Read back by another index over the same storage (another process), and the summary
        // rewritten with the new value.
        let again = RunIndex::new(
            open(&StorageConfig::SharedFs { base: base.clone() }).unwrap(),
            "run",
        )
        .unwrap();
        let all = again.entries().unwrap();
        let metrics: Vec<_> = all.iter().map(|e| e.metric).collect();
        assert_eq!(
            (ids(&all), metrics),
            (vec![A, B, C], vec![Some(0.5), Some(0.25), None])
        );
        let text = std::fs::read_to_string(base.join(idx.key())).unwrap();
        assert!(text.contains("\"metric\": 0.25"), "{text}");
        // What an update leaves after a crash before its record is written: a summary without
        // the entry, whose record is then read (never an old copy of its values).
        idx.put_summary(&all.iter().filter(|e| e.storage_id != B).collect::<Vec<_>>())
            .unwrap();
        assert_eq!(again.entries().unwrap()[1].metric, Some(0.25));
        // What a resume falls back to from C: the others, best first.
        assert_eq!(ids(&idx.before_in_resume_order(C).unwrap()), [B, A]);
        assert!(idx.before_in_resume_order(D).unwrap().is_empty());
        // A checkpoint being deleted is neither the resume point nor a fallback, even while it
        // is still complete (a deletion interrupted before its files went).
        idx.mark_deleting(&all[2]).unwrap();
        let all = again.entries().unwrap();
        assert!(all[2].deleting && !all[1].deleting);
        assert_eq!(again.latest().unwrap().unwrap().storage_id, B);
        assert!(again.resumable(&all[2]).is_err());
        assert_eq!(again.resumable(&all[1]).unwrap().steps_completed, Some(20));
        let text = std::fs::read_to_string(base.join(idx.key())).unwrap();
        assert!(text.contains("\"deleting\": true"), "{text}");
        // An update never writes back a record removed meanwhile.
        idx.remove(A).unwrap();
        idx.update(&[Entry {
            metric: Some(1.0),
            ..all[0].clone()
        }])
        .unwrap();
        assert_eq!(ids(&again.entries().unwrap()), [B, C]);
        idx.remove_many(&[C.to_owned()]).unwrap();
        assert_eq!(ids(&again.entries().unwrap()), [B]);
        let text = std::fs::read_to_string(base.join(idx.key())).unwrap();
        assert!(!text.contains(C), "{text}");
    }

    #[test]
    fn latest_is_most_steps_then_last_recorded_and_skips_incomplete() {
        let (_td, base, idx) = setup();
        assert_eq!(idx.latest().unwrap(), None);
        for (id, s) in [(A, 10), (B, 20), (C, 30), (D, 30)] {
            complete(&base, id, s);
        }
        // An asynchronous upload of step 20 finished after the step-30 checkpoint was indexed.
        idx.add(entry(A, Some(10))).unwrap();
        idx.add(entry(C, Some(30))).unwrap();
        idx.add(entry(B, Some(20))).unwrap();
        assert_eq!(idx.latest().unwrap().unwrap().storage_id, C);
        // Equal steps: the one recorded last wins.
        std::thread::sleep(Duration::from_millis(2));
        idx.add(entry(D, Some(30))).unwrap();
        assert_eq!(idx.latest().unwrap().unwrap().storage_id, D);
        // A checkpoint that vanished from the storage is skipped.
        std::fs::remove_dir_all(base.join(D)).unwrap();
        assert_eq!(idx.latest().unwrap().unwrap().storage_id, C);
        // So is one whose metadata.json is unreadable.
        for bad in ["garbage", "", "[1, 2]", "{\"steps_completed\": \"30\"}"] {
            std::fs::write(base.join(C).join("metadata.json"), bad).unwrap();
            assert_eq!(idx.latest().unwrap().unwrap().storage_id, B, "{bad:?}");
        }
        idx.write_summary();
        let text = std::fs::read_to_string(base.join(idx.key())).unwrap();
        assert!(text.contains("\"format\": 2") && text.contains(A), "{text}");
    }

    #[test]
    fn a_corrupt_summary_is_rebuilt_from_the_records() {
        let (_td, base, idx) = setup();
        for (id, s) in [(A, 10), (B, 20)] {
            complete(&base, id, s);
            idx.add(entry(id, Some(s))).unwrap();
        }
        idx.write_summary();
        let summary = base.join(idx.key());
        for bad in [
            "garbage",
            "",
            "{\"checkpoints\": [{\"storage_id\": 5}]}",
            "[]",
            "{\"run_name\": \"run\", \"checkpoints\": [",
        ] {
            std::fs::write(&summary, bad).unwrap();
            let l = idx.latest().unwrap().unwrap();
            assert_eq!((l.storage_id.as_str(), l.steps_completed), (B, Some(20)));
            // Rewritten, and the next store keeps every entry.
            let text = std::fs::read_to_string(&summary).unwrap();
            assert!(text.contains(A) && text.contains(B), "{bad:?}: {text}");
        }
        let copies = std::fs::read_dir(summary.parent().unwrap())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_str()
                    .unwrap()
                    .contains(".unreadable-")
            })
            .count();
        assert!(copies >= 1);
        // A damaged record is rebuilt from its checkpoint.
        std::fs::write(
            base.join(format!(".detcore/runs/run/checkpoints/{B}.json")),
            "x",
        )
        .unwrap();
        std::fs::write(&summary, "x").unwrap();
        assert_eq!(idx.latest().unwrap().unwrap().steps_completed, Some(20));
    }

    #[test]
    fn a_first_format_index_is_converted_and_damaged_ids_recovered() {
        let (_td, base, idx) = setup();
        for (id, s) in [(A, 10), (B, 20), (C, 30)] {
            complete(&base, id, s);
        }
        let summary = base.join(idx.key());
        std::fs::create_dir_all(summary.parent().unwrap()).unwrap();
        // Truncated in the middle of the third entry: its id is still recoverable.
        let old = format!(
            "{{\"run_name\": \"run\", \"checkpoints\": [{{\"storage_id\": \"{A}\", \"steps_completed\": 10}}, {{\"storage_id\": \"{B}\", \"steps_completed\": 20}}, {{\"storage_id\": \"{C}\", \"steps_"
        );
        std::fs::write(&summary, &old).unwrap();
        assert_eq!(idx.latest().unwrap().unwrap().storage_id, C);
        assert_eq!(idx.entries().unwrap().len(), 3);
        // Well-formed first format: converted to records.
        std::fs::remove_dir_all(base.join(".detcore")).unwrap();
        std::fs::create_dir_all(summary.parent().unwrap()).unwrap();
        std::fs::write(
            &summary,
            format!("{{\"checkpoints\": [{{\"storage_id\": \"{A}\", \"steps_completed\": 10}}]}}"),
        )
        .unwrap();
        assert_eq!(idx.latest().unwrap().unwrap().storage_id, A);
        assert!(base
            .join(format!(".detcore/runs/run/checkpoints/{A}.json"))
            .is_file());
    }

    #[test]
    fn unsafe_names_are_refused() {
        let (_td, base, idx) = setup();
        complete(&base, A, 1);
        idx.add(entry(A, Some(1))).unwrap();
        let recs = base.join(".detcore/runs/run/checkpoints");
        std::fs::write(recs.join("..json"), "{}").unwrap();
        std::fs::write(
            recs.join(format!("{B}.json")),
            "{\"storage_id\": \"/etc\", \"steps_completed\": 99}",
        )
        .unwrap();
        assert!(idx.add(entry("../x", Some(1))).is_err());
        assert!(idx.add(entry("/abs", Some(1))).is_err());
        let all = idx.entries().unwrap();
        assert!(all.iter().all(|e| e.storage_id == A || e.storage_id == B));
        assert_eq!(idx.latest().unwrap().unwrap().storage_id, A);
        assert_eq!(uuids_in(&format!("x{A}y {B} {C}0")), [B.to_owned()]);
    }

    #[test]
    fn removing_and_concurrent_writers() {
        let (_td, base, idx) = setup();
        let idx = Arc::new(idx);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let idx = idx.clone();
                let base = base.clone();
                std::thread::spawn(move || {
                    for i in 0..10 {
                        let id = uuid::Uuid::new_v4().to_string();
                        complete(&base, &id, t * 100 + i);
                        idx.add(entry(&id, Some(t * 100 + i))).unwrap();
                        idx.write_summary();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let all = idx.entries().unwrap();
        assert_eq!(all.len(), 80);
        idx.remove(&all[0].storage_id).unwrap();
        idx.write_summary();
        assert_eq!(idx.entries().unwrap().len(), 79);
        let text = std::fs::read_to_string(base.join(idx.key())).unwrap();
        assert_eq!(uuids_in(&text).len(), 79);
    }
}
