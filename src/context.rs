//! The context: what `det_core_init` builds and `det_core_close` tears down. It assembles the
//! parts (info, storage, checkpoints, reporter, preemption, searcher), owns their threads and
//! joins them at close.

use crate::checkpoint::retention::{InUse, Policy, Retention, Settings as RetentionSettings};
use crate::checkpoint::{index::RunIndex, CheckpointContext, LocalReporter, Resume};
use crate::cluster_info;
use crate::distributed::{DistributedConfig, DistributedContext};
use crate::env::env_nonempty;
use crate::error::{Error, Result};
use crate::info::Info;
use crate::json::Map;
use crate::preempt::agreement::Agreement;
use crate::preempt::{self, signals, PreemptMode, PreemptState, Sources, Watcher};
use crate::profiler::Profiler;
use crate::searcher::{SearcherContext, Unit};
use crate::storage::{self, StorageSpec};
use crate::tensorboard::{TensorboardConfig, TensorboardManager, TensorboardSink};
use crate::train::{jsonl::JsonlSink, LocalTrainBackend, Reporter, TrainContext};
use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

// ---- on-cluster (docs/protocol.md#init-sequence): the master client, its threads, alert() ---
mod oncluster;
mod options;

pub use oncluster::shared_fs_container_path;
pub use options::InitOptions;
// ---------------------------------------------------------------------------------------------

/// A Core API context.
pub struct Context {
    info: Info,
    dist: Arc<DistributedContext>,
    reporter: Arc<Reporter>,
    train: Arc<TrainContext>,
    checkpoint: CheckpointContext,
    searcher: SearcherContext,
    preempt: Arc<PreemptState>,
    preempt_mode: PreemptMode,
    sources: Sources,
    watcher: Mutex<Watcher>,
    signals: Mutex<Option<signals::Registration>>,
    tensorboard: Arc<TensorboardManager>,
    profiler: Profiler,
    closed: AtomicBool,
    close_timeout: Duration,
    /// On-cluster parts (master client, long poll, acknowledgement); `None` off-cluster.
    oncluster: Option<oncluster::Runtime>,
    /// Off-cluster under Slurm: requeue the job at close after a preemption checkpoint.
    slurm_requeue: bool,
    /// When this process last reported a checkpoint.
    last_checkpoint: Arc<Mutex<Option<std::time::Instant>>>,
}

/// The default off-cluster checkpoint folder: `$XDG_DATA_HOME/determined`, else
/// `~/.local/share/determined` (Python's `appdirs.user_data_dir("determined")` on Linux).
pub fn default_storage_dir() -> Result<PathBuf> {
    if let Some(x) = env_nonempty("XDG_DATA_HOME") {
        return Ok(PathBuf::from(x).join("determined"));
    }
    match env_nonempty("HOME") {
        Some(h) => Ok(PathBuf::from(h).join(".local/share/determined")),
        None => bail!(
            InvalidArgument,
            "checkpoint_storage: not given, and neither XDG_DATA_HOME nor HOME is set to find the default folder"
        ),
    }
}

/// The default run name: `DET_RUN_NAME`, else `SLURM_JOB_ID`, else the program's file name.
pub fn default_run_name() -> String {
    default_run_name_and_source().0
}

/// [`default_run_name`] and where it came from, for the log line that names the run.
fn default_run_name_and_source() -> (String, &'static str) {
    if let Some(n) = env_nonempty("DET_RUN_NAME") {
        return (n, "DET_RUN_NAME");
    }
    if let Some(j) = env_nonempty("SLURM_JOB_ID") {
        return (format!("slurm-{j}"), "SLURM_JOB_ID");
    }
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned))
        .filter(|n| !n.is_empty());
    match exe {
        Some(n) => (n, "the program's file name"),
        None => ("default".into(), "no program name"),
    }
}

/// The variable that chooses the off-cluster checkpoint storage when the option is not set.
pub const CHECKPOINT_STORAGE_ENV: &str = "DETCORE_CHECKPOINT_STORAGE";

/// The off-cluster storage and where its configuration came from: the option, else
/// `DETCORE_CHECKPOINT_STORAGE` (same forms), else the default folder (`None`; logged as Python
/// does).
fn off_cluster_storage_spec(opts: &InitOptions) -> Result<(StorageSpec, Option<&'static str>)> {
    if let Some(s) = &opts.checkpoint_storage {
        if env_nonempty(CHECKPOINT_STORAGE_ENV).is_some() {
            log_info!(
                "det_init_options.checkpoint_storage is set by the program, so {CHECKPOINT_STORAGE_ENV} is ignored"
            );
        }
        return Ok((
            storage::config::parse_user(s)?,
            Some("det_init_options.checkpoint_storage"),
        ));
    }
    if let Some(s) = env_nonempty(CHECKPOINT_STORAGE_ENV) {
        let spec =
            storage::config::parse_user(&s).map_err(|e| e.context(CHECKPOINT_STORAGE_ENV))?;
        return Ok((spec, Some(CHECKPOINT_STORAGE_ENV)));
    }
    let d = default_storage_dir()?;
    log_info!(
        "no storage_manager provided; storing checkpoints in {}",
        d.display()
    );
    let spec = storage::config::parse_user_string(
        d.to_str()
            .ok_or_else(|| err!(InvalidArgument, "default storage folder is not UTF-8"))?,
    )?;
    Ok((spec, None))
}

fn parse_hparams(text: &str, source: &str) -> Result<Map> {
    crate::json::parse_object(text, source)
}

/// The WorkersAskChief agreement of a multi-rank job, wired to the global group. Weak references
/// only: the C handle keeps the preemption state forever, and must not keep the sockets alive.
fn agreement_for(dist: &DistributedContext) -> Result<Arc<Agreement>> {
    let g = dist
        .global()
        .ok_or_else(|| err!(Internal, "a multi-rank job without a global group"))?;
    let weak = Arc::downgrade(g);
    if dist.config().rank == 0 {
        let w2 = weak.clone();
        let a = Arc::new(Agreement::chief(
            Box::new(move |op, v| {
                if let Some(g) = weak.upgrade() {
                    g.send_control(op, v);
                }
            }),
            Box::new(move || w2.upgrade().map(|g| g.live_members()).unwrap_or_default()),
        ));
        // The workers' replies to a freeze.
        let a2 = Arc::downgrade(&a);
        g.set_control_handler(Arc::new(move |m| {
            if let Some(a) = a2.upgrade() {
                a.on_control(m);
            }
        }));
        Ok(a)
    } else {
        let w2 = weak.clone();
        let a = Arc::new(Agreement::worker(
            Box::new(move |op, v| {
                if let Some(g) = w2.upgrade() {
                    g.send_control(op, v);
                }
            }),
            Box::new(move || match weak.upgrade() {
                Some(g) => g.check_control(),
                None => Err(err!(State, "the context's connections are closed")),
            }),
            dist.config().collective_timeout,
            0,
        ));
        let a2 = Arc::downgrade(&a);
        g.set_control_handler(Arc::new(move |m| {
            if let Some(a) = a2.upgrade() {
                a.on_control(m);
            }
        }));
        Ok(a)
    }
}

/// The local preemption sources of `opts` (signals, halt file, end time), validated before
/// anything is started. A collective in a multi-rank job: the chief's end time (given, or asked
/// of Slurm when Slurm does not export it) is every rank's that has none of its own, so the
/// ranks of a job agree and Slurm is asked once, not once per rank.
fn local_sources(opts: &InitOptions, dist: &DistributedContext) -> Result<Sources> {
    let signals_wanted = opts
        .preempt_signals
        .clone()
        .unwrap_or_else(|| vec![libc::SIGTERM, libc::SIGUSR1]);
    let mut sources = Sources::resolve_env(
        signals_wanted,
        opts.halt_file.clone(),
        opts.end_time,
        opts.halt_margin_seconds,
    )?;
    let chief_end = if dist.config().rank == 0 {
        sources.end_time.or_else(|| {
            env_nonempty("SLURM_JOB_ID").and_then(|j| preempt::slurm::query_end_time(&j))
        })
    } else {
        None
    };
    let end = if dist.config().size > 1 {
        let b = dist.broadcast(
            chief_end
                .map(f64::to_le_bytes)
                .map(Vec::from)
                .unwrap_or_default(),
        )?;
        b.get(..8)
            .map(|x| f64::from_le_bytes(x.try_into().expect("8 bytes")))
    } else {
        chief_end
    };
    if sources.end_time.is_none() {
        sources.end_time = end;
    }
    Ok(sources)
}

/// Reports checkpoints through `inner` and remembers when the last one was reported (a
/// checkpoint after preemption is what opt-in Slurm requeue waits for).
struct TimedReporter {
    inner: Arc<dyn crate::checkpoint::CheckpointReporter>,
    last: Arc<Mutex<Option<std::time::Instant>>>,
}

impl crate::checkpoint::CheckpointReporter for TimedReporter {
    fn prepare(&self, id: &str, metadata: &Map, steps_completed: i64) -> Result<()> {
        self.inner.prepare(id, metadata, steps_completed)
    }

    fn abandon(&self, id: &str) {
        self.inner.abandon(id)
    }

    fn report(
        &self,
        id: &str,
        resources: &crate::storage::Resources,
        metadata: &Map,
        steps_completed: i64,
    ) -> Result<()> {
        self.inner
            .report(id, resources, metadata, steps_completed)?;
        *self.last.lock() = Some(std::time::Instant::now());
        Ok(())
    }

    fn deleted(&self, id: &str) -> Result<()> {
        self.inner.deleted(id)
    }

    fn get_metadata(&self, id: &str) -> Option<Result<Map>> {
        self.inner.get_metadata(id)
    }
}

/// Preemption, set up last (nothing after it can fail once signal handlers are installed): the
/// state, the WorkersAskChief agreement of a multi-rank job, the acknowledger (on-cluster), the
/// signal handlers and the watcher of the halt file and end time.
fn start_preemption(
    opts: &InitOptions,
    dist: &DistributedContext,
    sources: &Sources,
    ack: Option<Arc<dyn preempt::Acknowledger>>,
) -> Result<(Arc<PreemptState>, Option<signals::Registration>, Watcher)> {
    let preempt = Arc::new(PreemptState::with_mode(
        !sources.signals.is_empty(),
        opts.preempt_mode,
        dist.config().rank,
    ));
    if dist.config().size > 1 && opts.preempt_mode == PreemptMode::WorkersAskChief {
        preempt.set_agreement(agreement_for(dist)?);
    }
    if let Some(a) = ack {
        preempt.set_acknowledger(a);
    }
    let registration = if sources.signals.is_empty() {
        None
    } else {
        Some(signals::install(&sources.signals)?)
    };
    if let Some(f) = &sources.halt_file {
        preempt.set_halt_file(f.clone());
    }
    let watcher = Watcher::start(preempt.clone(), sources)?;
    Ok((preempt, registration, watcher))
}

impl Context {
    /// Build a context from `opts`: on-cluster when the info folder has `cluster.json`, else
    /// off-cluster.
    pub fn init(opts: InitOptions) -> Result<Context> {
        let dir = cluster_info::info_dir(opts.cluster_info_dir.as_deref());
        if cluster_info::is_on_cluster(&dir) {
            return Context::init_on_cluster(opts, &dir);
        }
        Context::init_off_cluster(opts)
    }

    fn init_off_cluster(opts: InitOptions) -> Result<Context> {
        let dist_cfg = opts
            .distributed
            .clone()
            .unwrap_or_else(DistributedConfig::single);
        let dist = Arc::new(DistributedContext::new(dist_cfg)?);
        let rank = dist.config().rank;

        // Hyperparameters and searcher.
        let hparams = match (&opts.hparams_json, env_nonempty("DET_HPARAMS")) {
            (Some(t), _) => parse_hparams(t, "hparams_json")?,
            (None, Some(t)) => parse_hparams(&t, "DET_HPARAMS")?,
            (None, None) => Map::new(),
        };
        let max_length = match opts.searcher_max_length {
            Some(0) => bail!(InvalidArgument, "searcher_max_length: must be at least 1"),
            Some(n) => n,
            None => match env_nonempty("DET_MAX_LENGTH") {
                Some(v) => match v.trim().parse::<u64>() {
                    Ok(n) if n > 0 => n,
                    _ => bail!(
                        InvalidArgument,
                        "DET_MAX_LENGTH: {v:?} is not a positive integer"
                    ),
                },
                None => 1,
            },
        };

        // Preemption sources (validated before anything is created).
        let sources = local_sources(&opts, &dist)?;

        // Storage.
        let (spec, storage_source) = off_cluster_storage_spec(&opts)?;
        // Checksums and the retention policy (from the options, the storage dict and the
        // environment) are checked with the storage, so that a rank that refuses them fails
        // with the others at the collective below.
        let opened =
            storage::manifest::resolve_enabled(spec.lifecycle.checksums).and_then(|checksums| {
                let policy = Policy::resolve(
                    &RetentionSettings {
                        save_trial_latest: opts.save_trial_latest,
                        save_trial_best: opts.save_trial_best,
                        metric: opts.searcher_metric.clone(),
                        smaller_is_better: opts.smaller_is_better,
                    },
                    &spec.lifecycle,
                    &RetentionSettings::from_env()?,
                )?;
                // Off-cluster, folders get the process's umask (the user's choice).
                let storage = storage::open_with(&spec.config, storage::Modes::Umask, checksums)?;
                Ok((storage, policy))
            });
        // The ranks must agree on the storage (a collective: all fail alike otherwise).
        crate::checkpoint::agree_on_storage(
            &dist,
            opened.as_ref().map(|(s, _)| &**s).map_err(Clone::clone),
        )?;
        let (storage, policy) = opened?;
        // The storage chosen by the batch script is named (the run's INFO line below names the
        // storage too; the default folder has its own line).
        if let (0, Some(source @ CHECKPOINT_STORAGE_ENV)) = (rank, storage_source) {
            log_info!("checkpoint storage: {} (from {source})", storage.describe());
        }
        // What killed processes left behind (never what a live one still uses).
        storage.sweep_stale();

        // Run name and folder.
        let (run_name, run_name_source) = match &opts.run_name {
            Some(n) => (n.clone(), "det_init_options.run_name"),
            None => default_run_name_and_source(),
        };
        crate::checkpoint::index::validate_run_name(&run_name)?;
        let run_dir = match (&opts.run_dir, env_nonempty("DETCORE_RUN_DIR")) {
            (Some(d), _) => d.clone(),
            (None, Some(d)) => PathBuf::from(d),
            (None, None) => Path::new("detcore-runs").join(&run_name),
        };
        std::fs::create_dir_all(&run_dir)
            .map_err(|e| Error::io("run_dir: cannot create", &run_dir, e))?;
        let run_dir = std::path::absolute(&run_dir).unwrap_or(run_dir);

        // Resume point.
        let index = Arc::new(RunIndex::new(storage.clone(), &run_name)?);
        let latest = index.latest()?;
        if rank == 0 {
            match &latest {
                Some(l) => log_info!(
                    "run {run_name:?} (name from {run_name_source}): resuming from checkpoint {} \
                     (steps_completed={}) in {}; to start fresh instead, use another run name \
                     (DET_RUN_NAME or det_init_options.run_name) or delete the folder {}/ in that storage \
                     (the run's index; the checkpoints stay)",
                    l.storage_id,
                    l.steps_completed
                        .map_or("unknown".into(), |s| s.to_string()),
                    storage.describe(),
                    index.dir()
                ),
                None => log_info!(
                    "run {run_name:?} (name from {run_name_source}): no checkpoint of this run in \
                     {}, starting fresh",
                    storage.describe()
                ),
            }
        }

        // TensorBoard (AUTO: a sink writes reported metrics as events) and the reporter.
        let tb = TensorboardManager::start(TensorboardConfig::off_cluster(
            opts.tensorboard_mode,
            &run_dir,
            &run_name,
            Some(storage.clone()),
            rank,
        ))?;
        let mut sink = JsonlSink::open(&run_dir)?;
        if rank == 0 {
            let resumes_from = latest
                .as_ref()
                .map(|l| (l.storage_id.as_str(), l.steps_completed));
            // A full disk does not stop training: the record is dropped with this warning, and
            // later lines that cannot be written fail their report calls as usual.
            if let Err(e) = sink.write_run_start(&run_name, resumes_from) {
                log_warn!(
                    "{}: the run_start record of this run is missing from the metrics file",
                    e.message()
                );
            }
        }
        let mut sinks: Vec<Box<dyn crate::train::Sink>> = vec![Box::new(sink)];
        sinks.extend(TensorboardSink::for_manager(&tb));
        let reporter = Arc::new(Reporter::start(sinks, opts.report_queue_capacity)?);
        let train = Arc::new(TrainContext::new(
            reporter.clone(),
            Box::new(LocalTrainBackend::new(run_dir.clone())),
        ));
        // Retention runs on the chief, which indexes the checkpoints.
        let in_use = Arc::new(InUse::default());
        let retention = match policy {
            Some(p) if rank == 0 => {
                log_info!(
                    "run {run_name:?}: checkpoint retention keeps {}",
                    p.describe()
                );
                let r = Arc::new(Retention::new(
                    p,
                    index.clone(),
                    storage.clone(),
                    train.clone(),
                    in_use.clone(),
                ));
                let weak = Arc::downgrade(&r);
                train.observe_validations(Box::new(move |steps, metrics| {
                    if let Some(r) = weak.upgrade() {
                        r.on_validation(steps, metrics);
                    }
                }));
                Some(r)
            }
            _ => None,
        };
        let resume_point = crate::info::resume_point(
            latest.as_ref().map(|l| l.storage_id.clone()),
            latest
                .as_ref()
                .and_then(|l| l.steps_completed)
                .unwrap_or(0)
                .max(0) as u64,
        );
        let last_checkpoint = Arc::new(Mutex::new(None));
        let checkpoint = CheckpointContext::new(
            storage.clone(),
            Arc::new(TimedReporter {
                inner: Arc::new(LocalReporter {
                    index: index.clone(),
                    train: train.clone(),
                    retention: retention.clone(),
                }),
                last: last_checkpoint.clone(),
            }),
            dist.clone(),
        )
        .with_async(opts.async_checkpoints)
        .with_lifecycle(
            in_use,
            retention,
            Some(Resume {
                point: resume_point.clone(),
                index: index.clone(),
            }),
        );
        let profiler = Profiler::new(
            crate::profiler::local_agent_id(),
            train.clone(),
            dist.config().is_local_chief(),
        );
        let searcher = SearcherContext::with_dist(
            Some(max_length),
            Some(Unit::Epochs),
            train.clone(),
            rank == 0,
            Some(dist.clone()),
        );

        // Preemption last: nothing above can fail after handlers are installed.
        let (preempt, registration, watcher) = start_preemption(&opts, &dist, &sources, None)?;

        let info = Info {
            on_cluster: false,
            run_name: Some(run_name),
            run_dir: Some(run_dir),
            hparams,
            resume: resume_point,
            cluster: None,
        };
        Ok(Context {
            info,
            dist,
            reporter,
            train,
            checkpoint,
            searcher,
            preempt,
            preempt_mode: opts.preempt_mode,
            sources,
            watcher: Mutex::new(watcher),
            signals: Mutex::new(registration),
            tensorboard: tb,
            profiler,
            closed: AtomicBool::new(false),
            close_timeout: opts.close_timeout,
            oncluster: None,
            slurm_requeue: preempt::slurm::requeue_wanted(opts.slurm_requeue),
            last_checkpoint,
        })
    }

    /// Flush reports, stop and join every thread, restore signal handlers. Later calls do
    /// nothing. Returns the first failure (e.g. reports not delivered).
    pub fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        // The profiler first: its last report must still reach the reporter (Python loses it).
        self.profiler.off();
        self.watcher.lock().stop();
        let deadline = crate::time::deadline(self.close_timeout);
        let left = || {
            deadline
                .saturating_duration_since(std::time::Instant::now())
                .max(Duration::from_secs(1))
        };
        // The master's long poll stops, and a pending acknowledgement is delivered first.
        let ack = self.close_on_cluster(deadline);
        // Pending asynchronous checkpoints are stored and reported before reports are flushed.
        let ckpt = self.checkpoint.close();
        let reports = self.reporter.close(left());
        // Then the final TensorBoard sync, which sees the events the reporter just wrote.
        let tb = self.tensorboard.close(left());
        // Before the signal handlers go: Slurm ends the job (SIGTERM) as it requeues it.
        self.requeue_if_preempted(&ckpt);
        drop(self.signals.lock().take());
        self.dist.close();
        // Every failure is named, the first one's kind is returned.
        let errors: Vec<Error> = [ckpt, reports, ack, tb]
            .into_iter()
            .filter_map(|r| r.err())
            .collect();
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.into_iter().next().expect("one")),
            _ => Err(Error::new(
                errors[0].kind(),
                errors
                    .iter()
                    .map(|e| e.message())
                    .collect::<Vec<_>>()
                    .join("; "),
            )),
        }
    }

    /// Opt-in requeue (off-cluster, under Slurm, on the chief): a job that stored a checkpoint
    /// after `should_preempt` said true asks Slurm to run it again; it resumes from that
    /// checkpoint under the same job id (and run name `slurm-<job id>`).
    fn requeue_if_preempted(&self, checkpoints_closed: &Result<()>) {
        if !self.slurm_requeue || self.oncluster.is_some() || self.dist.config().rank != 0 {
            return;
        }
        let Some(job) = env_nonempty("SLURM_JOB_ID") else {
            log_warn!("Slurm requeue was asked for, but this process is not in a Slurm job (no SLURM_JOB_ID)");
            return;
        };
        let Some(preempted) = self.preempt.answered_at() else {
            log_debug!("Slurm job {job} was not preempted: not requeueing it");
            return;
        };
        match *self.last_checkpoint.lock() {
            Some(t) if t >= preempted && checkpoints_closed.is_ok() => {
                preempt::slurm::requeue(&job);
            }
            _ => log_warn!(
                "Slurm job {job} was preempted but stored no checkpoint after it (or its last checkpoint failed): \
                 not requeueing it, it would start over"
            ),
        }
    }

    /// True once `close` ran.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// The task's information.
    pub fn info(&self) -> &Info {
        &self.info
    }

    /// This process's place in the job.
    pub fn distributed(&self) -> &DistributedConfig {
        self.dist.config()
    }

    /// Collectives over the job's processes.
    pub fn collectives(&self) -> &Arc<DistributedContext> {
        &self.dist
    }

    /// Training reports.
    pub fn train(&self) -> &TrainContext {
        &self.train
    }

    /// Checkpoints.
    pub fn checkpoint(&self) -> &CheckpointContext {
        &self.checkpoint
    }

    /// The searcher.
    pub fn searcher(&self) -> &SearcherContext {
        &self.searcher
    }

    /// The preemption state (shared with the C handle for the lock-free hot path).
    pub fn preempt_state(&self) -> &Arc<PreemptState> {
        &self.preempt
    }

    /// `should_preempt(auto_ack)`, honouring the preemption mode.
    pub fn should_preempt(&self, auto_ack: bool) -> Result<bool> {
        self.preempt.should_preempt(auto_ack)
    }

    /// `acknowledge_preemption_signal()`.
    pub fn acknowledge_preemption(&self) -> Result<()> {
        self.preempt.acknowledge();
        Ok(())
    }

    /// The preemption mode.
    pub fn preempt_mode(&self) -> PreemptMode {
        self.preempt_mode
    }

    /// Seconds until the job's end time, if known.
    pub fn seconds_remaining(&self) -> Option<f64> {
        preempt::seconds_remaining(&self.sources)
    }

    /// The TensorBoard manager (folder, sync, manual uploads).
    pub fn tensorboard(&self) -> &Arc<TensorboardManager> {
        &self.tensorboard
    }

    /// The system profiler.
    pub fn profiler(&self) -> &Profiler {
        &self.profiler
    }

    /// The reporter (for flushing in tests and close).
    pub fn reporter(&self) -> &Arc<Reporter> {
        &self.reporter
    }

    /// Deliver the reports queued so far (in AUTO mode their TensorBoard events are then
    /// written), then wait for a TensorBoard sync pass that starts afterwards; at most `timeout`
    /// in all.
    pub fn flush_tensorboard(&self, timeout: Duration) -> Result<()> {
        let start = std::time::Instant::now();
        if self.tensorboard.mode() == crate::tensorboard::TensorboardMode::Auto {
            self.reporter.flush(timeout)?;
        }
        self.tensorboard
            .flush(timeout.saturating_sub(start.elapsed()))
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        let _ = self.close();
    }
}
