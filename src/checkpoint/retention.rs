//! Off-cluster checkpoint retention: Determined's garbage-collection policy applied by the run
//! itself, since no master collects garbage off-cluster (on-cluster the master's GC stays in
//! charge and nothing here runs).
//!
//! The policy keeps the union of
//! - the `save_trial_latest` newest checkpoints (by `steps_completed`; equal steps share a rank,
//!   as in the master's query),
//! - the `save_trial_best` best by `metric` (smallest first unless `smaller_is_better` is
//!   false; checkpoints without a value are never "best"), where a checkpoint's value is the
//!   metric of its own metadata when it has that key, else the validation metric reported with
//!   its `steps_completed` (before or after the checkpoint),
//! - and, unlike the master, which collects garbage only when a trial has ended, the checkpoint
//!   the run would resume from (the newest), whatever the numbers say,
//! - and every checkpoint this process has open in a `restore_path` scope.
//!
//! When it runs: after each checkpoint is durable and indexed, on a background thread (the
//! caller never waits), over the run's index. Only complete indexed checkpoints are candidates:
//! a checkpoint still being written (by any rank, any process of the run) or uploaded has its
//! index record already (records come before publishing, see [`super::index`]) but is not
//! complete yet, and is never touched; the one the run resumed from stays until a newer one is
//! durable (no pass runs before). A deletion is recorded in the checkpoint's index record
//! (`"deleting": true`) before any of its files goes, and the record is removed last: a
//! deletion interrupted by a crash leaves a marked record (never resumed from, and finished by
//! the next pass), never a half-deleted checkpoint that looks like one being written. The
//! storage's own deletion keeps a checkpoint from looking complete once deletion has begun
//! (folders are moved into the staging area's locked trash first; object stores lose
//! `metadata.json` first).

use super::index::{Entry, RunIndex};
use crate::error::Result;
use crate::json::{Map, Value};
use crate::storage::config::Lifecycle;
use crate::storage::Storage;
use crate::train::{Event, Metrics, TrainContext};
use crossbeam_channel::Sender;
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::thread::JoinHandle;

/// What a run keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub save_trial_latest: u32,
    pub save_trial_best: u32,
    /// The metric that ranks checkpoints for `save_trial_best`.
    pub metric: Option<String>,
    pub smaller_is_better: bool,
}

/// Retention settings of one source (init options, storage dict, environment), each optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    pub save_trial_latest: Option<u32>,
    pub save_trial_best: Option<u32>,
    pub metric: Option<String>,
    pub smaller_is_better: Option<bool>,
}

fn env_count(name: &str) -> Result<Option<u32>> {
    match crate::env::env_nonempty(name) {
        None => Ok(None),
        Some(v) => match v.trim().parse::<u32>() {
            Ok(n) if n <= i32::MAX as u32 => Ok(Some(n)),
            _ => bail!(
                InvalidArgument,
                "{name}: {v:?} is not a number of checkpoints (0 or more)"
            ),
        },
    }
}

impl Settings {
    /// `DET_SAVE_TRIAL_LATEST`, `DET_SAVE_TRIAL_BEST`, `DET_SEARCHER_METRIC`,
    /// `DET_SMALLER_IS_BETTER`.
    pub fn from_env() -> Result<Settings> {
        let smaller_is_better = match crate::env::env_nonempty("DET_SMALLER_IS_BETTER") {
            None => None,
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" => Some(true),
                "0" | "false" | "no" => Some(false),
                _ => bail!(
                    InvalidArgument,
                    "DET_SMALLER_IS_BETTER: {v:?} is not true or false"
                ),
            },
        };
        Ok(Settings {
            save_trial_latest: env_count("DET_SAVE_TRIAL_LATEST")?,
            save_trial_best: env_count("DET_SAVE_TRIAL_BEST")?,
            metric: crate::env::env_nonempty("DET_SEARCHER_METRIC"),
            smaller_is_better,
        })
    }
}

impl Policy {
    /// The policy from `opts` (the init options), else the storage dict's keys, else `env`,
    /// key by key. `None` (keep every checkpoint) when neither `save_trial_latest` nor
    /// `save_trial_best` is set anywhere; an unset one of the two counts as 0.
    pub fn resolve(opts: &Settings, storage: &Lifecycle, env: &Settings) -> Result<Option<Policy>> {
        let latest = opts
            .save_trial_latest
            .or(storage.save_trial_latest)
            .or(env.save_trial_latest);
        let best = opts
            .save_trial_best
            .or(storage.save_trial_best)
            .or(env.save_trial_best);
        let metric = opts
            .metric
            .clone()
            .or_else(|| storage.metric.clone())
            .or_else(|| env.metric.clone());
        let smaller_is_better = opts
            .smaller_is_better
            .or(storage.smaller_is_better)
            .or(env.smaller_is_better)
            .unwrap_or(true);
        if let Some(n) = storage.save_experiment_best {
            log_info!(
                "checkpoint_storage: save_experiment_best={n} is applied by a Determined master across an experiment's trials; off-cluster a run is one trial, so it is not used (save_trial_best is)"
            );
        }
        if latest.is_none() && best.is_none() {
            return Ok(None);
        }
        if best.unwrap_or(0) > 0 && metric.is_none() {
            bail!(
                InvalidArgument,
                "save_trial_best={} needs a metric to rank checkpoints by: set searcher_metric in det_init_options, \"metric\" in the checkpoint_storage dict, or DET_SEARCHER_METRIC",
                best.unwrap_or(0)
            );
        }
        Ok(Some(Policy {
            save_trial_latest: latest.unwrap_or(0),
            save_trial_best: best.unwrap_or(0),
            metric,
            smaller_is_better,
        }))
    }

    /// A line for the log.
    pub fn describe(&self) -> String {
        let mut s = format!("the {} latest", self.save_trial_latest);
        if self.save_trial_best > 0 {
            s.push_str(&format!(
                " and the {} best by {:?} ({} is better)",
                self.save_trial_best,
                self.metric.as_deref().unwrap_or(""),
                if self.smaller_is_better {
                    "smaller"
                } else {
                    "larger"
                }
            ));
        }
        s.push_str(" checkpoints, and the one a restart resumes from");
        s
    }

    /// The value of the metric in a metadata object, if it holds a finite number there.
    pub fn metric_in(&self, metadata: &Map) -> Option<f64> {
        let name = self.metric.as_deref()?;
        metadata
            .get(name)
            .and_then(Value::as_f64)
            .filter(|v| v.is_finite())
    }

    /// The value of the metric in a validation report.
    pub fn metric_of(&self, metrics: &Metrics) -> Option<f64> {
        let name = self.metric.as_deref()?;
        metrics.get_f64(name).filter(|v| v.is_finite())
    }
}

/// The ids of `entries` (complete checkpoints, in index order: oldest recorded first) that
/// `policy` keeps.
pub fn keep(policy: &Policy, entries: &[&Entry]) -> BTreeSet<String> {
    let steps = |e: &Entry| e.steps_completed.unwrap_or(-1);
    let mut out = BTreeSet::new();
    // Latest: the rank of a checkpoint is 1 + the number with more steps (equal steps share it).
    for e in entries {
        let rank = 1 + entries.iter().filter(|o| steps(o) > steps(e)).count();
        if rank <= policy.save_trial_latest as usize {
            out.insert(e.storage_id.clone());
        }
    }
    // Best: by metric (the earlier recorded first among equals); no value, no rank.
    let sign = if policy.smaller_is_better { 1.0 } else { -1.0 };
    let mut ranked: Vec<(f64, usize, &Entry)> = entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| {
            e.metric
                .filter(|m| m.is_finite())
                .map(|m| (sign * m, i, *e))
        })
        .collect();
    ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    for (_, _, e) in ranked.into_iter().take(policy.save_trial_best as usize) {
        out.insert(e.storage_id.clone());
    }
    // The resume point: most steps, the last recorded among equals.
    if let Some((_, e)) = entries
        .iter()
        .enumerate()
        .max_by_key(|(i, e)| (steps(e), *i))
    {
        out.insert(e.storage_id.clone());
    }
    out
}

/// Checkpoints this process has open in `restore_path` scopes (never deleted meanwhile).
#[derive(Debug, Default)]
pub struct InUse {
    ids: Mutex<HashMap<String, usize>>,
}

impl InUse {
    /// Hold `id` until the guard is dropped.
    pub fn hold(self: &Arc<InUse>, id: &str) -> InUseGuard {
        *self.ids.lock().entry(id.to_owned()).or_insert(0) += 1;
        InUseGuard {
            set: self.clone(),
            id: id.to_owned(),
        }
    }

    fn contains(&self, id: &str) -> bool {
        self.ids.lock().contains_key(id)
    }
}

/// A checkpoint held by an open restore scope.
#[derive(Debug)]
pub struct InUseGuard {
    set: Arc<InUse>,
    id: String,
}

impl Drop for InUseGuard {
    fn drop(&mut self) {
        let mut ids = self.set.ids.lock();
        if let Some(n) = ids.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                ids.remove(&self.id);
            }
        }
    }
}

enum Msg {
    /// A checkpoint was stored and indexed: run a pass.
    Stored,
    /// A validation reported a value of the metric at these steps.
    Validation(i64, f64),
}

/// Validation values remembered for checkpoints not stored yet (the newest ones).
const REMEMBERED_VALIDATIONS: usize = 4096;

struct Inner {
    policy: Policy,
    index: Arc<RunIndex>,
    storage: Arc<dyn Storage>,
    train: Arc<TrainContext>,
    in_use: Arc<InUse>,
    /// Validation values by steps, for checkpoints stored later.
    validations: Mutex<BTreeMap<i64, f64>>,
}

/// The retention of one run: the policy and its background thread (started with the first
/// message, joined by [`Retention::close`]).
pub struct Retention {
    inner: Arc<Inner>,
    tx: Mutex<Option<Sender<Msg>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    closed: Mutex<bool>,
}

impl Retention {
    /// Retention of the run indexed by `index` in `storage`.
    pub fn new(
        policy: Policy,
        index: Arc<RunIndex>,
        storage: Arc<dyn Storage>,
        train: Arc<TrainContext>,
        in_use: Arc<InUse>,
    ) -> Retention {
        Retention {
            inner: Arc::new(Inner {
                policy,
                index,
                storage,
                train,
                in_use,
                validations: Mutex::new(BTreeMap::new()),
            }),
            tx: Mutex::new(None),
            thread: Mutex::new(None),
            closed: Mutex::new(false),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// The metric value of a checkpoint being indexed: its metadata's, else a validation's at
    /// the same steps.
    pub fn metric_for(&self, steps: i64, metadata: &Map) -> Option<f64> {
        self.inner
            .policy
            .metric_in(metadata)
            .or_else(|| self.inner.validations.lock().get(&steps).copied())
    }

    /// A validation report (from the training loop's thread: remembered and queued, never
    /// waits on storage).
    pub fn on_validation(&self, steps: u64, metrics: &Metrics) {
        let Some(v) = self.inner.policy.metric_of(metrics) else {
            return;
        };
        let steps = steps as i64;
        {
            let mut m = self.inner.validations.lock();
            m.insert(steps, v);
            while m.len() > REMEMBERED_VALIDATIONS {
                m.pop_first();
            }
        }
        self.send(Msg::Validation(steps, v));
    }

    /// A checkpoint was stored and indexed: delete what the policy no longer keeps, in the
    /// background.
    pub fn stored(&self) {
        self.send(Msg::Stored);
    }

    fn send(&self, msg: Msg) {
        if *self.closed.lock() {
            return;
        }
        let mut tx = self.tx.lock();
        if tx.is_none() {
            let (s, r) = crossbeam_channel::unbounded::<Msg>();
            let inner = self.inner.clone();
            let spawned = std::thread::Builder::new()
                .name("detcore-retention".into())
                .spawn(move || {
                    while let Ok(first) = r.recv() {
                        // Everything queued meanwhile is handled in one go: one pass at most.
                        let mut batch = vec![first];
                        batch.extend(r.try_iter());
                        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            inner.handle(batch)
                        }));
                        if let Err(p) = r {
                            log_warn!(
                                "checkpoint retention: internal error (panic: {}); nothing more is deleted in this run",
                                crate::error::panic_message(&*p)
                            );
                            return;
                        }
                    }
                });
            match spawned {
                Ok(h) => {
                    *self.thread.lock() = Some(h);
                    *tx = Some(s);
                }
                Err(e) => {
                    log_warn!("cannot start the checkpoint retention thread ({e}); no checkpoint is deleted");
                    return;
                }
            }
        }
        if let Some(s) = tx.as_ref() {
            let _ = s.send(msg);
        }
    }

    /// Finish the pending work and stop the thread. Later messages are ignored.
    pub fn close(&self) {
        *self.closed.lock() = true;
        drop(self.tx.lock().take());
        if let Some(h) = self.thread.lock().take() {
            let _ = h.join();
        }
    }
}

impl Drop for Retention {
    fn drop(&mut self) {
        self.close();
    }
}

impl Inner {
    fn handle(&self, batch: Vec<Msg>) {
        let mut pass = false;
        for m in batch {
            match m {
                Msg::Stored => pass = true,
                Msg::Validation(steps, v) => {
                    if let Err(e) = self.index.set_metric(steps, v) {
                        log_warn!(
                            "checkpoint retention: could not record the metric of the checkpoint at {steps} steps in the run index: {e}"
                        );
                    }
                }
            }
        }
        if pass {
            self.pass();
        }
    }

    /// One pass: finish interrupted deletions, then delete what the policy does not keep.
    fn pass(&self) {
        let entries = match self.index.entries() {
            Ok(e) => e,
            Err(e) => {
                log_warn!("checkpoint retention: cannot read the run index ({e}); nothing is deleted this time");
                return;
            }
        };
        let mut complete = Vec::new();
        let mut unfinished = Vec::new();
        for e in entries {
            if e.deleting {
                unfinished.push(e);
                continue;
            }
            match self.storage.is_complete(&e.storage_id) {
                Ok(true) => complete.push(e),
                // Being written (by this or another process), or never finished: not ours.
                Ok(false) => {}
                Err(err) => {
                    log_warn!(
                        "checkpoint retention: cannot tell whether checkpoint {} is complete ({err}); nothing is deleted this time",
                        e.storage_id
                    );
                    return;
                }
            }
        }
        // Metrics of validations this process saw that did not reach the index (reported
        // while the checkpoint was being recorded).
        let mut filled = Vec::new();
        {
            let seen = self.validations.lock();
            for e in complete.iter_mut().filter(|e| e.metric.is_none()) {
                if let Some((s, v)) = e
                    .steps_completed
                    .and_then(|s| seen.get(&s).map(|v| (s, *v)))
                {
                    e.metric = Some(v);
                    filled.push((s, v));
                }
            }
        }
        for (steps, v) in filled {
            if let Err(e) = self.index.set_metric(steps, v) {
                log_warn!(
                    "checkpoint retention: could not record the metric of the checkpoint at {steps} steps in the run index: {e}"
                );
            }
        }
        let complete_refs: Vec<&Entry> = complete.iter().collect();
        let keep = keep(&self.policy, &complete_refs);
        let mut gone = Vec::new();
        for e in unfinished {
            match self.storage.delete(&e.storage_id) {
                Ok(()) => {
                    log_info!(
                        "checkpoint retention: finished deleting checkpoint {} (an earlier deletion was interrupted)",
                        e.storage_id
                    );
                    gone.push(e.storage_id.clone());
                }
                Err(err) => log_warn!(
                    "checkpoint retention: could not delete what is left of checkpoint {}: {err}; tried again after the next checkpoint",
                    e.storage_id
                ),
            }
        }
        for e in &complete {
            if keep.contains(&e.storage_id) {
                continue;
            }
            if self.in_use.contains(&e.storage_id) {
                log_info!(
                    "checkpoint retention: checkpoint {} is open in a restore_path scope; deleted after the next checkpoint instead",
                    e.storage_id
                );
                continue;
            }
            if let Err(err) = self.index.mark_deleting(e) {
                log_warn!(
                    "checkpoint retention: could not record the deletion of checkpoint {} in the run index ({err}); it is kept for now",
                    e.storage_id
                );
                continue;
            }
            match self.storage.delete(&e.storage_id) {
                Ok(()) => {
                    log_info!(
                        "checkpoint retention: deleted checkpoint {} (steps_completed={}): the policy keeps {}",
                        e.storage_id,
                        e.steps_completed
                            .map_or("unknown".into(), |s| s.to_string()),
                        self.policy.describe()
                    );
                    gone.push(e.storage_id.clone());
                }
                Err(err) => log_warn!(
                    "checkpoint retention: could not delete checkpoint {}: {err}; tried again after the next checkpoint",
                    e.storage_id
                ),
            }
        }
        if gone.is_empty() {
            return;
        }
        if let Err(e) = self.index.remove_many(&gone) {
            log_warn!("checkpoint retention: deleted {} checkpoint(s) but could not update the run index ({e}); their records stay marked as being deleted and are removed by the next pass", gone.len());
            return;
        }
        for id in gone {
            if let Err(e) = self
                .train
                .report_event(Event::CheckpointDeleted { storage_id: id })
            {
                log_warn!(
                    "checkpoint retention: could not record a deletion in metrics.jsonl: {e}"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(id: &str, steps: i64, metric: Option<f64>) -> Entry {
        Entry {
            storage_id: id.into(),
            steps_completed: Some(steps),
            report_time: String::new(),
            metric,
            deleting: false,
        }
    }

    fn policy(latest: u32, best: u32) -> Policy {
        Policy {
            save_trial_latest: latest,
            save_trial_best: best,
            metric: Some("loss".into()),
            smaller_is_better: true,
        }
    }

    fn kept(p: &Policy, entries: &[Entry]) -> Vec<String> {
        let refs: Vec<&Entry> = entries.iter().collect();
        keep(p, &refs).into_iter().collect()
    }

    #[test]
    fn determined_examples_for_one_trial() {
        // Trial 2 of the experiment-config reference: checkpoints 6..10, metrics
        // null, 0.2, 0.3, null, null (smaller is better).
        let t = vec![
            e("6", 6, None),
            e("7", 7, Some(0.2)),
            e("8", 8, Some(0.3)),
            e("9", 9, None),
            e("10", 10, None),
        ];
        assert_eq!(kept(&policy(0, 1), &t), ["10", "7"]); // + the resume point
        assert_eq!(kept(&policy(0, 3), &t), ["10", "7", "8"]);
        assert_eq!(kept(&policy(1, 0), &t), ["10"]);
        assert_eq!(kept(&policy(3, 0), &t), ["10", "8", "9"]);
        assert_eq!(kept(&policy(1, 1), &t), ["10", "7"]);
        // 0 and 0 keep only what a restart needs.
        assert_eq!(kept(&policy(0, 0), &t), ["10"]);
        let larger = Policy {
            smaller_is_better: false,
            ..policy(0, 1)
        };
        assert_eq!(kept(&larger, &t), ["10", "8"]);
    }

    #[test]
    fn ties_and_oddities() {
        // Equal steps share a latest rank (both kept); the resume point is the last recorded.
        let t = vec![e("a", 5, None), e("b", 10, None), e("c", 10, None)];
        assert_eq!(kept(&policy(1, 0), &t), ["b", "c"]);
        // Equal metrics: the earlier recorded is best; NaN is never best.
        let t = vec![
            e("a", 1, Some(0.5)),
            e("b", 2, Some(0.5)),
            e("c", 3, Some(f64::NAN)),
            e("d", 4, None),
        ];
        assert_eq!(kept(&policy(0, 1), &t), ["a", "d"]);
        assert!(kept(&policy(2, 2), &[]).is_empty());
    }

    #[test]
    fn twenty_checkpoints_leave_three() {
        // The best (smallest loss) is early: latest 2 + best 1 = 3 distinct checkpoints.
        let t: Vec<Entry> = (1..=20)
            .map(|i| {
                e(
                    &format!("c{i:02}"),
                    i * 10,
                    Some(if i == 4 { 0.01 } else { 1.0 / i as f64 }),
                )
            })
            .collect();
        assert_eq!(kept(&policy(2, 1), &t), ["c04", "c19", "c20"]);
    }

    #[test]
    fn resolution_order_and_errors() {
        let none = Settings::default();
        let lc = Lifecycle::default();
        assert_eq!(Policy::resolve(&none, &lc, &none).unwrap(), None);
        let env = Settings {
            save_trial_latest: Some(5),
            metric: Some("env_metric".into()),
            ..Settings::default()
        };
        let storage = Lifecycle {
            save_trial_latest: Some(3),
            smaller_is_better: Some(false),
            ..Lifecycle::default()
        };
        let opts = Settings {
            save_trial_latest: Some(2),
            save_trial_best: Some(1),
            ..Settings::default()
        };
        let p = Policy::resolve(&opts, &storage, &env).unwrap().unwrap();
        assert_eq!(
            p,
            Policy {
                save_trial_latest: 2,
                save_trial_best: 1,
                metric: Some("env_metric".into()),
                smaller_is_better: false,
            }
        );
        let p = Policy::resolve(&none, &storage, &none).unwrap().unwrap();
        assert_eq!((p.save_trial_latest, p.save_trial_best), (3, 0));
        assert!(!p.smaller_is_better);
        let e = Policy::resolve(
            &Settings {
                save_trial_best: Some(1),
                ..Settings::default()
            },
            &lc,
            &none,
        )
        .unwrap_err();
        assert!(e.message().contains("needs a metric"), "{e}");
    }

    #[test]
    fn metric_values() {
        let p = policy(1, 1);
        let meta = crate::json::parse(r#"{"loss": 0.5, "x": "no"}"#).unwrap();
        assert_eq!(p.metric_in(meta.as_object().unwrap()), Some(0.5));
        assert_eq!(
            p.metric_of(&Metrics::scalars(&["acc", "loss"], &[0.9, 0.25])),
            Some(0.25)
        );
        assert_eq!(p.metric_of(&Metrics::scalars(&["acc"], &[0.9])), None);
        assert_eq!(p.metric_of(&Metrics::scalars(&["loss"], &[f64::NAN])), None);
    }
}
