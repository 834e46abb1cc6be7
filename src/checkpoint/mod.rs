//! Checkpoints (Determined's `CheckpointContext`, docs/protocol.md#checkpoint-operations): store,
//! upload, download, restore, metadata, delete.
//!
//! Differences from Python, on purpose:
//! - `metadata` must hold an integer `steps_completed` (0 … 2³¹−1), checked *before* anything is
//!   written, in both modes (Python checks after uploading, and only on-cluster);
//! - `upload` never writes `metadata.json` into the caller's folder (Python does), and
//!   `metadata.json` is always part of the checkpoint whatever the selector says;
//! - a checkpoint becomes visible only when complete (atomic publish; see the storage backends);
//! - `get_metadata` works off-cluster (it reads `metadata.json`).
//!
//! Asynchronous checkpoints (opt-in at init or per `store_path_end` call): see [`uploads`].
//! Off-cluster retention (Determined's `save_trial_latest`/`save_trial_best`): see
//! [`retention`]. Manifests and verified restores: see [`crate::storage::manifest`]; a restore
//! of the checkpoint an off-cluster run resumes from that finds it damaged falls back to the
//! newest older checkpoint of the run that verifies ([`CheckpointContext::restore_path_begin`]).

pub mod index;
pub mod master;
pub mod merge;
pub mod retention;
mod shard;
pub mod uploads;

pub(crate) use shard::agree_on_storage;

use crate::distributed::DistributedContext;
use crate::error::{Error, Kind, Result};
use crate::json::{to_metadata_file, Map, Value};
use crate::storage::manifest::MANIFEST;
use crate::storage::{self, fsutil, Resources, Restored, Scratch, Selector, Storage, Sums};
use crate::train::{Event, TrainContext};
use std::path::Path;
use std::sync::Arc;

/// Length of a storage id string (a UUID4), without the NUL.
pub const STORAGE_ID_LEN: usize = 36;

/// Python's message for a selector without a folder.
const SELECTOR_WITHOUT_DIR: &str = "ckpt_dir has to be provided if selector is not None";
/// Python's message for a sharded upload where no rank passed a folder.
const ALL_NONE_SHARDED: &str = "cannot call .upload(ckpt_dir=None, shard=True), from all ranks; at least one rank must have a valid ckpt_dir";

/// How `store_path_end` stores the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadMode {
    /// As configured at init (`async_checkpoints`).
    Default,
    /// Return once the checkpoint is stored and reported.
    Sync,
    /// Return once the files are handed off; upload and report in the background.
    Async,
}

/// Determined's `DownloadMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownloadMode {
    /// The local chief downloads once for every rank of its node (default).
    LocalWorkersShareDownload,
    /// Every rank downloads for itself.
    NoSharedDownload,
}

/// What happens around storing a checkpoint: the master is told, or the run index updated.
///
/// The order is `prepare` → the checkpoint becomes complete in storage → `report`; when storing
/// fails after `prepare`, `abandon`. Every method is required, so that a wrapper cannot drop
/// one of them silently.
pub trait CheckpointReporter: Send + Sync {
    /// Checkpoint `id`, with `metadata`, is about to become complete in storage. An error stops
    /// it: nothing is published.
    fn prepare(&self, id: &str, metadata: &Map, steps_completed: i64) -> Result<()>;
    /// Storing checkpoint `id` failed after [`CheckpointReporter::prepare`] (best effort).
    fn abandon(&self, id: &str);
    /// Checkpoint `id` is complete in storage.
    fn report(
        &self,
        id: &str,
        resources: &Resources,
        metadata: &Map,
        steps_completed: i64,
    ) -> Result<()>;
    /// Checkpoint `id` was deleted from storage.
    fn deleted(&self, id: &str) -> Result<()>;
    /// The metadata of checkpoint `id` (`None`: read `metadata.json` from the storage).
    fn get_metadata(&self, id: &str) -> Option<Result<Map>>;
}

/// Off-cluster reporting: the run index and `metrics.jsonl`, and the retention policy told of
/// each checkpoint once it is stored and indexed.
///
/// The checkpoint's index record is written *before* the checkpoint is published (a record counts
/// only once its checkpoint is complete), so that storing and indexing are one outcome: a failed
/// record write (a full disk) publishes nothing, and a process killed at any point leaves either
/// an indexed complete checkpoint or none. The record holds the checkpoint's value of the
/// retention metric when it is known by then (from its metadata, or a validation reported
/// earlier at the same steps).
pub struct LocalReporter {
    pub index: Arc<index::RunIndex>,
    pub train: Arc<TrainContext>,
    pub retention: Option<Arc<retention::Retention>>,
}

impl CheckpointReporter for LocalReporter {
    fn prepare(&self, id: &str, metadata: &Map, steps: i64) -> Result<()> {
        self.index.add(index::Entry {
            storage_id: id.to_owned(),
            steps_completed: Some(steps),
            report_time: crate::time::now_iso8601(),
            metric: self
                .retention
                .as_ref()
                .and_then(|r| r.metric_for(steps, metadata)),
            deleting: false,
        })
    }

    fn abandon(&self, id: &str) {
        if let Err(e) = self.index.remove(id) {
            log_warn!("checkpoint {id} was not stored, and its run index record remains (it is ignored while the checkpoint is incomplete): {e}");
        }
    }

    fn report(&self, id: &str, _resources: &Resources, _metadata: &Map, steps: i64) -> Result<()> {
        // The checkpoint is stored and indexed: what follows cannot undo that.
        self.index.write_summary();
        if let Some(r) = &self.retention {
            r.stored();
        }
        if let Err(e) = self.train.report_event(Event::Checkpoint {
            storage_id: id.to_owned(),
            steps_completed: Some(steps),
        }) {
            log_warn!("checkpoint {id} is stored and indexed, but its line in metrics.jsonl was not written: {e}");
        }
        Ok(())
    }

    fn deleted(&self, id: &str) -> Result<()> {
        self.index.remove(id)?;
        self.index.write_summary();
        self.train.report_event(Event::CheckpointDeleted {
            storage_id: id.to_owned(),
        })
    }

    /// Off-cluster the metadata is the checkpoint's own `metadata.json`.
    fn get_metadata(&self, _id: &str) -> Option<Result<Map>> {
        None
    }
}

/// Publish the staged folder as checkpoint `id`, recorded with `reporter` first; a failed
/// publish withdraws the record.
pub(crate) fn publish_recorded(
    storage: &dyn Storage,
    reporter: &dyn CheckpointReporter,
    staged: &Path,
    id: &str,
    metadata: &Map,
    steps: i64,
    files: Option<&Resources>,
) -> Result<Sums> {
    reporter.prepare(id, metadata, steps)?;
    storage.publish(staged, id, files).inspect_err(|_| {
        reporter.abandon(id);
    })
}

/// A new borrow of an optional selector, for one of several calls.
fn reborrow<'a>(s: &'a mut Option<Selector<'_>>) -> Option<Selector<'a>> {
    match s {
        Some(f) => Some(&mut **f),
        None => None,
    }
}

/// The error when the resume point and all `tried - 1` older checkpoints failed verification.
fn no_fallback(first: &Error, tried: usize) -> Error {
    let older = match tried - 1 {
        0 => "the run has no older complete checkpoint".to_owned(),
        1 => "the one older checkpoint of the run is damaged too".to_owned(),
        n => format!("its {n} older checkpoints are damaged too"),
    };
    Error::new(
        Kind::Integrity,
        format!(
            "{}; {older}, so there is nothing to resume from (start over with a new run name, or remove the damaged checkpoints with det_ckpt_delete)",
            first.message()
        ),
    )
}

/// Check the metadata of a checkpoint and return its `steps_completed`.
pub fn check_metadata(m: &Map) -> Result<i64> {
    match m.get("steps_completed") {
        None => Err(err!(
            InvalidArgument,
            "metadata: a checkpoint's metadata must hold an integer \"steps_completed\" (the master requires it), and it has none"
        )),
        Some(Value::Number(n)) if n.is_integer() => match n.as_i64() {
            Some(s) if (0..=i32::MAX as i64).contains(&s) => Ok(s),
            _ => Err(err!(
                InvalidArgument,
                "metadata: \"steps_completed\" must be between 0 and {}, got {}",
                i32::MAX,
                crate::json::to_wire(&Value::Number(n.clone()))
            )),
        },
        Some(other) => Err(err!(
            InvalidArgument,
            "metadata: \"steps_completed\" must be an integer, got {} {}",
            other.type_name(),
            crate::json::to_wire(other)
        )),
    }
}

/// Parse caller metadata JSON (must be an object).
pub fn parse_metadata(text: &str) -> Result<Map> {
    crate::json::parse_object(text, "metadata")
}

/// An open `store_path` scope: the caller writes files into [`StoreScope::path`], then ends it.
/// Dropping a scope that was not published removes its folder.
#[derive(Debug)]
pub struct StoreScope {
    id: String,
    staged: Scratch,
    metadata: Map,
    steps: i64,
    /// Written by every rank (a collective ends it).
    shard: bool,
}

impl StoreScope {
    /// The storage id the checkpoint will have.
    pub fn storage_id(&self) -> &str {
        &self.id
    }
    /// The folder to write into.
    pub fn path(&self) -> &Path {
        self.staged.path()
    }
}

/// An open `restore_path` scope.
#[derive(Debug)]
pub struct RestoreScope {
    id: String,
    restored: Restored,
    /// Shared by the ranks of a node (a local collective ends it).
    shared: bool,
    /// Keeps retention from deleting the checkpoint while it is open.
    _hold: retention::InUseGuard,
}

impl RestoreScope {
    /// The folder holding the checkpoint's files (read it; do not modify it).
    pub fn path(&self) -> &Path {
        &self.restored.path
    }
    /// The checkpoint restored (after a resume fallback, not the one asked for).
    pub fn storage_id(&self) -> &str {
        &self.id
    }
}

/// Off-cluster: the run's resume point and index, for a restore of the resume point that finds
/// it damaged.
pub struct Resume {
    pub point: crate::info::SharedResume,
    pub index: Arc<index::RunIndex>,
}

/// The checkpoint half of a context.
pub struct CheckpointContext {
    storage: Arc<dyn Storage>,
    reporter: Arc<dyn CheckpointReporter>,
    dist: Arc<DistributedContext>,
    async_default: bool,
    uploads: uploads::AsyncUploads,
    /// Checkpoints open in restore scopes.
    in_use: Arc<retention::InUse>,
    retention: Option<Arc<retention::Retention>>,
    resume: Option<Resume>,
}

impl CheckpointContext {
    /// Checkpoints in `storage`, reported through `reporter`, for a process placed by `dist`.
    pub fn new(
        storage: Arc<dyn Storage>,
        reporter: Arc<dyn CheckpointReporter>,
        dist: Arc<DistributedContext>,
    ) -> CheckpointContext {
        let budget = std::env::var("DETCORE_ASYNC_STAGING_BYTES")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|v| *v > 0)
            .unwrap_or(uploads::DEFAULT_STAGING_BUDGET);
        CheckpointContext {
            uploads: uploads::AsyncUploads::new(storage.clone(), reporter.clone(), budget),
            storage,
            reporter,
            dist,
            async_default: false,
            in_use: Arc::new(retention::InUse::default()),
            retention: None,
            resume: None,
        }
    }

    /// Off-cluster: apply `retention` (stopped at close), and fall back from a damaged resume
    /// point as `resume` says. `in_use` must be the set given to the retention.
    pub fn with_lifecycle(
        mut self,
        in_use: Arc<retention::InUse>,
        retention: Option<Arc<retention::Retention>>,
        resume: Option<Resume>,
    ) -> CheckpointContext {
        self.in_use = in_use;
        self.retention = retention;
        self.resume = resume;
        self
    }

    fn rank(&self) -> u32 {
        self.dist.config().rank
    }

    /// True when `shard` asks for a collective (more than one rank).
    fn sharded(&self, shard: bool) -> bool {
        shard && self.dist.config().size > 1
    }

    /// Make `store_path_end` asynchronous by default (`async_checkpoints` of the init options),
    /// with at most `DETCORE_ASYNC_STAGING_BYTES` bytes (else 8 GiB) staged and waiting for
    /// upload.
    pub fn with_async(mut self, by_default: bool) -> CheckpointContext {
        self.async_default = by_default;
        self
    }

    /// The storage backend.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    fn chief_only(&self, what: &str) -> Result<()> {
        if self.rank() != 0 {
            bail!(
                State,
                "cannot call CheckpointContext.{what}(shard=False) from non-chief worker (rank={})",
                self.rank()
            );
        }
        Ok(())
    }

    /// Begin `store_path(metadata, shard)`: checks the metadata, picks a new storage id and
    /// returns the (empty) folder to write into.
    ///
    /// With `shard` and several ranks this is a collective: every rank calls it, the metadata of
    /// all ranks is merged and checked here (before anything is written), and every rank gets the
    /// same id and writes its own files.
    pub fn store_path_begin(&self, metadata: Map, shard: bool) -> Result<StoreScope> {
        if self.sharded(shard) {
            // An earlier asynchronous failure is shared with every rank in the first collective.
            return self.shard_store_begin(metadata);
        }
        if !shard {
            self.chief_only("store_path")?;
        }
        let steps = check_metadata(&metadata)?;
        self.uploads.take_failure()?;
        let id = uuid::Uuid::new_v4().to_string();
        let staged = self.storage.stage(&id)?;
        Ok(StoreScope {
            id,
            staged,
            metadata,
            steps,
            shard: false,
        })
    }

    /// End a `store_path` scope: write `metadata.json`, publish the checkpoint, report it.
    /// Returns the storage id. On error nothing is published.
    pub fn store_path_end(&self, scope: StoreScope) -> Result<String> {
        self.store_path_end_mode(scope, UploadMode::Default)
    }

    /// `store_path_end` with an explicit [`UploadMode`]. Asynchronously, it returns once
    /// `metadata.json` is written and the folder handed off; the checkpoint is reported after
    /// every byte is stored, and a failure comes back from a later call (see [`uploads`]).
    /// A sharded scope is always stored synchronously (its end is a collective).
    pub fn store_path_end_mode(&self, scope: StoreScope, mode: UploadMode) -> Result<String> {
        if scope.shard {
            return self.shard_store_end(scope, false);
        }
        let is_async = match mode {
            UploadMode::Default => self.async_default,
            UploadMode::Sync => false,
            UploadMode::Async => true,
        };
        let prepared = (|| -> Result<Resources> {
            let meta_path = scope.path().join("metadata.json");
            std::fs::write(
                &meta_path,
                to_metadata_file(&Value::Object(scope.metadata.clone())),
            )
            .map_err(|e| Error::io("cannot write", &meta_path, e))?;
            let mut resources = fsutil::list_resources(scope.path())?;
            // detcore's own file, written when the checkpoint is stored; never reported.
            resources.remove(MANIFEST);
            Ok(resources)
        })();
        if is_async {
            let resources = prepared.map_err(|e| self.not_stored(&scope, e))?;
            let id = scope.id.clone();
            self.uploads.submit(uploads::Job { scope, resources })?;
            return Ok(id);
        }
        // Keep reports in order: earlier asynchronous checkpoints first.
        self.uploads.wait_idle();
        let resources = prepared
            .and_then(|resources| {
                publish_recorded(
                    &*self.storage,
                    &*self.reporter,
                    scope.path(),
                    &scope.id,
                    &scope.metadata,
                    scope.steps,
                    Some(&resources),
                )?;
                Ok(resources)
            })
            .map_err(|e| self.not_stored(&scope, e))?;
        self.reporter
            .report(&scope.id, &resources, &scope.metadata, scope.steps)?;
        Ok(scope.id)
    }

    /// A failed `store_path_end`: `e` says so (the staged folder goes with the scope).
    fn not_stored(&self, scope: &StoreScope, e: Error) -> Error {
        e.context(format!(
            "store_path: checkpoint {} was not stored",
            scope.id
        ))
    }

    /// Abandon a `store_path` scope: nothing is published or reported. A sharded scope is
    /// abandoned by every rank (the others' `end` fails, naming this rank).
    pub fn store_path_abort(&self, scope: StoreScope) -> Result<()> {
        if scope.shard {
            return self.shard_store_end(scope, true).map(|_| ());
        }
        scope
            .staged
            .remove()
            .map_err(|e| Error::new(Kind::Storage, format!("store_path_abort: {}", e.message())))
    }

    /// `upload(ckpt_dir, metadata, shard, selector)`: store the files of `dir` that `selector`
    /// accepts as a new checkpoint. Returns the storage id.
    ///
    /// With `shard` and several ranks this is a collective; ranks with nothing to store pass
    /// `None` as `dir`.
    pub fn upload(
        &self,
        dir: Option<&Path>,
        metadata: Map,
        shard: bool,
        selector: Option<Selector<'_>>,
    ) -> Result<String> {
        if self.sharded(shard) {
            return self.shard_upload(dir, metadata, selector);
        }
        if !shard {
            self.chief_only("upload")?;
        }
        let dir = dir.ok_or_else(|| {
            if shard && selector.is_some() {
                err!(InvalidArgument, "dir is NULL: {SELECTOR_WITHOUT_DIR}")
            } else if shard {
                err!(
                    InvalidArgument,
                    "dir is NULL: {ALL_NONE_SHARDED}"
                )
            } else {
                err!(
                    InvalidArgument,
                    "dir is NULL: cannot call .upload(ckpt_dir=None, shard=False), which would result in doing nothing at all"
                )
            }
        })?;
        let steps = check_metadata(&metadata)?;
        self.uploads.take_failure()?;
        self.uploads.wait_idle();
        let mut resources =
            fsutil::list_resources(dir).map_err(|e| e.context("upload: ckpt_dir"))?;
        resources.remove("metadata.json");
        // A manifest in the folder (e.g. it holds a downloaded checkpoint) belongs to another
        // checkpoint; this one gets its own.
        resources.remove(MANIFEST);
        if let Some(sel) = selector {
            resources.retain(|name, _| sel(name));
        }
        let meta_text = to_metadata_file(&Value::Object(metadata.clone())).into_bytes();
        let files: Vec<String> = resources.keys().cloned().collect();
        resources.insert("metadata.json".into(), meta_text.len() as u64);
        let id = uuid::Uuid::new_v4().to_string();
        self.reporter
            .prepare(&id, &metadata, steps)
            .and_then(|()| {
                self.storage
                    .upload(
                        dir,
                        &files,
                        &[("metadata.json".to_owned(), meta_text)],
                        &id,
                        &Sums::new(),
                    )
                    .inspect_err(|_| self.reporter.abandon(&id))
            })
            .map_err(|e| e.context(format!("upload: checkpoint {id} was not stored")))?;
        self.reporter.report(&id, &resources, &metadata, steps)?;
        Ok(id)
    }

    /// `download(storage_id, ckpt_dir, mode, selector)`. Files are checked against the
    /// checkpoint's manifest as they are written (see [`Storage::download`]).
    ///
    /// `LocalWorkersShareDownload` with several ranks per node is a collective of the node's
    /// ranks: the local chief of each node downloads once (what any local rank's selector
    /// wants) into `dir`, which every rank of the node must name alike.
    ///
    /// A single-process run that downloads its resume point and finds it damaged falls back as
    /// [`restore_path_begin`](Self::restore_path_begin) does (into the same `dir`; the damaged
    /// checkpoint's files are removed first) and `info`'s resume point says which.
    pub fn download(
        &self,
        id: &str,
        dir: &Path,
        mode: DownloadMode,
        mut selector: Option<Selector<'_>>,
    ) -> Result<()> {
        storage::validate_id(id)?;
        if mode == DownloadMode::LocalWorkersShareDownload && self.dist.config().local_size > 1 {
            return self.shared_download(id, dir, selector);
        }
        if let Some(r) = self
            .fallback_for(id)
            .filter(|_| self.dist.config().size == 1)
        {
            return self
                .resume_with_fallback(r, id, |c| {
                    self.storage.download(c, dir, reborrow(&mut selector))
                })
                .map(|_| ());
        }
        self.storage.download(id, dir, selector)
    }

    /// Begin `restore_path(storage_id, mode, selector)`. With a manifest, every file is checked
    /// before the folder is handed over (see [`Storage::restore`]); a mismatch fails with
    /// `Kind::Integrity` naming the file.
    ///
    /// Folder storage restores in place on every rank without coordination. On object stores
    /// `LocalWorkersShareDownload` with several ranks is a collective (begin and end): the local
    /// chief downloads once, and removes the folder only after every local rank has ended.
    ///
    /// Off-cluster, a restore of the run's resume point (`info`'s latest checkpoint) that finds
    /// it damaged falls back to the newest older checkpoint of the run that verifies: the log
    /// says which failed and why, the damaged one leaves the run's index (its files stay for
    /// inspection), the scope's [`RestoreScope::storage_id`] and `info`'s resume point name the
    /// one restored. In a job of several processes the fallback needs every rank to agree, so
    /// it happens only with `LocalWorkersShareDownload` (a collective of every rank, as in
    /// Determined); with `NoSharedDownload` each rank fails alone. A named checkpoint other
    /// than the resume point never falls back.
    pub fn restore_path_begin(
        &self,
        id: &str,
        mode: DownloadMode,
        mut selector: Option<Selector<'_>>,
    ) -> Result<RestoreScope> {
        storage::validate_id(id)?;
        let cfg = self.dist.config();
        let fallback = self.fallback_for(id);
        let shared = mode == DownloadMode::LocalWorkersShareDownload;
        if shared && cfg.size > 1 && fallback.is_some() {
            // Every rank takes part, so that all agree on the checkpoint restored.
            return self.shared_restore_begin(id, selector, fallback);
        }
        if shared && cfg.local_size > 1 && !self.storage.direct_access() {
            return self.shared_restore_begin(id, selector, None);
        }
        if let Some(r) = fallback.filter(|_| cfg.size == 1) {
            let (rid, restored) = self.resume_with_fallback(r, id, |c| {
                self.storage.restore(c, reborrow(&mut selector))
            })?;
            return Ok(self.scope(rid, restored, false));
        }
        let restored = self.storage.restore(id, selector)?;
        Ok(self.scope(id.to_owned(), restored, false))
    }

    fn scope(&self, id: String, restored: Restored, shared: bool) -> RestoreScope {
        RestoreScope {
            _hold: self.in_use.hold(&id),
            id,
            restored,
            shared,
        }
    }

    /// The resume point, when `id` names it and a damaged one may be replaced.
    fn fallback_for(&self, id: &str) -> Option<&Resume> {
        self.resume.as_ref().filter(|r| {
            self.storage.checksums() && r.point.read().storage_id.as_deref() == Some(id)
        })
    }

    /// The next of `candidates` (from [`index::RunIndex::before_in_resume_order`]) that the
    /// run could resume from, by the rules of [`index::RunIndex::latest`].
    pub(crate) fn next_resumable(
        r: &Resume,
        candidates: &mut impl Iterator<Item = index::Entry>,
    ) -> Option<index::Entry> {
        for e in candidates.by_ref() {
            match r.index.resumable(&e) {
                Ok(e) => return Some(e),
                Err(why) => log_info!(
                    "resume: not falling back to checkpoint {}: {why}",
                    e.storage_id
                ),
            }
        }
        None
    }

    /// Run `attempt` on the resume point `id`, then on each older checkpoint while they fail
    /// verification. Returns the id that worked and its result.
    fn resume_with_fallback<T>(
        &self,
        r: &Resume,
        id: &str,
        mut attempt: impl FnMut(&str) -> Result<T>,
    ) -> Result<(String, T)> {
        let first = match attempt(id) {
            Err(e) if e.kind() == Kind::Integrity => e,
            other => return other.map(|t| (id.to_owned(), t)),
        };
        let mut failed = vec![(id.to_owned(), first.message().to_owned())];
        let mut candidates = r.index.before_in_resume_order(id)?.into_iter();
        while let Some(c) = Self::next_resumable(r, &mut candidates) {
            match attempt(&c.storage_id) {
                Ok(t) => {
                    self.fell_back(r, &failed, &c);
                    return Ok((c.storage_id, t));
                }
                Err(e) if e.kind() == Kind::Integrity => {
                    failed.push((c.storage_id.clone(), e.message().to_owned()))
                }
                Err(e) => {
                    return Err(e.context(format!(
                        "{}; restoring the older checkpoint {} instead failed",
                        first.message(),
                        c.storage_id
                    )))
                }
            }
        }
        Err(no_fallback(&first, failed.len()))
    }

    /// The resume point moved from the damaged checkpoints `failed` to `to`: say so, take the
    /// damaged ones out of the run's index (chief), and tell `info`.
    fn fell_back(&self, r: &Resume, failed: &[(String, String)], to: &index::Entry) {
        for (id, why) in failed {
            log_warn!(
                "resume: {why}; checkpoint {id} is no longer a resume point of this run (its files stay in {} for inspection; det_ckpt_delete removes them)",
                self.storage.describe()
            );
        }
        log_warn!(
            "resume: resuming from checkpoint {} (steps_completed={}) instead of {}",
            to.storage_id,
            to.steps_completed
                .map_or("unknown".into(), |s| s.to_string()),
            failed[0].0
        );
        if self.rank() == 0 {
            let ids: Vec<String> = failed.iter().map(|(id, _)| id.clone()).collect();
            if let Err(e) = r.index.remove_many(&ids) {
                log_warn!(
                    "resume: could not take the damaged checkpoints out of the run index: {e}"
                );
            }
        }
        *r.point.write() = crate::info::ResumePoint {
            storage_id: Some(to.storage_id.clone()),
            steps_completed: to.steps_completed.unwrap_or(0).max(0) as u64,
        };
    }

    /// End a `restore_path` scope: a temporary download is removed.
    pub fn restore_path_end(&self, scope: RestoreScope) -> Result<()> {
        if scope.shared {
            return self.shared_restore_end(scope);
        }
        match scope.restored.scratch {
            Some(s) => s.remove(),
            None => Ok(()),
        }
    }

    /// `get_metadata(storage_id)`.
    pub fn get_metadata(&self, id: &str) -> Result<Map> {
        storage::validate_id(id)?;
        if let Some(r) = self.reporter.get_metadata(id) {
            return r;
        }
        let data = self.storage.read_file(id, "metadata.json")?;
        let text = String::from_utf8(data)
            .map_err(|_| err!(Storage, "checkpoint {id}: metadata.json is not UTF-8"))?;
        crate::json::parse_object(&text, format!("checkpoint {id}: metadata.json"))
            .map_err(|e| err!(Storage, "{}", e.message()))
    }

    /// `delete(storage_id)`: remove the data, then tell the master / the index.
    pub fn delete(&self, id: &str) -> Result<()> {
        storage::validate_id(id)?;
        // A checkpoint still uploading is finished (or failed) before it is deleted.
        self.uploads.wait_idle();
        self.storage.delete(id)?;
        self.reporter.deleted(id)
    }

    /// Wait until every asynchronous checkpoint is stored and reported; returns the first
    /// failure among those not yet returned.
    pub fn wait(&self) -> Result<()> {
        self.uploads.wait()
    }

    /// Wait for pending uploads and stop the upload thread, then let retention finish its
    /// deletions and stop its thread (at context close).
    pub fn close(&self) -> Result<()> {
        let r = self.uploads.close();
        if let Some(ret) = &self.retention {
            ret.close();
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_rules() {
        let ok = parse_metadata(r#"{"steps_completed": 5}"#).unwrap();
        assert_eq!(check_metadata(&ok).unwrap(), 5);
        for (text, want) in [
            (r#"{}"#, "has none"),
            (r#"{"steps_completed": 1.5}"#, "integer, got number 1.5"),
            (r#"{"steps_completed": "5"}"#, "integer, got string"),
            (r#"{"steps_completed": true}"#, "integer, got bool"),
            (r#"{"steps_completed": -1}"#, "between 0 and"),
            (r#"{"steps_completed": 3000000000}"#, "between 0 and"),
        ] {
            let e = check_metadata(&parse_metadata(text).unwrap()).unwrap_err();
            assert!(e.message().contains(want), "{text}: {e}");
        }
        assert!(parse_metadata("[1]")
            .unwrap_err()
            .message()
            .contains("object"));
        assert!(parse_metadata("{").is_err());
    }
}
