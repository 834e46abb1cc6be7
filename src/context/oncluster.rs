//! The on-cluster context (docs/protocol.md#init-sequence): what `Context::init` builds when the
//! info folder has `cluster.json`.
//!
//! Init sequence for a trial, as Python's `core.init()`:
//! 1. read the info files; the session: `DET_SESSION_TOKEN` and `DET_USER` (required, as in
//!    Python), TLS from `DET_MASTER_CERT_FILE`/`DET_MASTER_CERT_NAME`, the retry policy from
//!    `DET_RETRY_CONFIG`, timeouts from `DETCORE_MASTER_CONNECT_TIMEOUT`/`DETCORE_MASTER_TIMEOUT`;
//! 2. a multi-slot container without a distributed config is refused (Python's rule);
//! 3. checkpoint storage: the caller's, else the experiment config's `checkpoint_storage`
//!    (shared_fs mounted at `/determined_shared_fs`; `DETCORE_SHARED_FS_CONTAINER_PATH`
//!    overrides that path for tests and unusual mounts);
//! 4. the searcher from `searcher.max_length`;
//! 5. `POST /api/v1/runs/start` → `storageId` (chief only: Python sends it from every rank);
//! 6. the metrics shipper, the preemption watcher (initial poll answered before init returns),
//!    the acknowledgement thread, and the local preemption sources (signals, halt file, end
//!    time) fused with the master's.
//!
//! Non-trial tasks (notebooks, commands, ...) get the off-cluster parts, as Python's dummy
//! contexts, with the cluster info attached.

use super::Context;
use super::InitOptions;
use crate::checkpoint::master::MasterCheckpointReporter;
use crate::checkpoint::CheckpointContext;
use crate::cluster_info::ClusterInfo;
use crate::distributed::{DistributedConfig, DistributedContext};
use crate::env::env_nonempty;
use crate::error::{Error, Kind, Result};
use crate::info::Info;
use crate::master::{AlertLevel, MasterClient, MasterUrl, RetryPolicy, Timeouts, TlsSettings};
use crate::preempt::longpoll::LongPollWatcher;
use crate::preempt::master::{AckSender, MasterPoll};
use crate::preempt::PreemptMode;
use crate::profiler::Profiler;
use crate::searcher::{self, SearcherContext};
use crate::storage::{self, config::SHARED_FS_CONTAINER_PATH, StorageSpec};
use crate::tensorboard::{TensorboardConfig, TensorboardManager, TensorboardSink};
use crate::train::master_backend::MasterTrainBackend;
use crate::train::master_sink::MasterSink;
use crate::train::{Reporter, TrainContext};
use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The on-cluster parts a context owns besides the common ones.
pub(crate) struct Runtime {
    pub(crate) client: Arc<MasterClient>,
    longpoll: Mutex<Option<LongPollWatcher>>,
    ack: Option<Arc<AckSender>>,
}

/// How long init waits for the initial preemption poll (Python's client timeout is 10 s).
const FIRST_POLL_WAIT: Duration = Duration::from_secs(12);

/// Where the experiment's shared_fs `host_path` is mounted: `/determined_shared_fs`, or
/// `DETCORE_SHARED_FS_CONTAINER_PATH` (tests, unusual mounts).
pub fn shared_fs_container_path() -> PathBuf {
    PathBuf::from(
        env_nonempty("DETCORE_SHARED_FS_CONTAINER_PATH")
            .unwrap_or_else(|| SHARED_FS_CONTAINER_PATH.to_owned()),
    )
}

/// The master client of the task, from the info files and the environment.
fn connect(ci: &ClusterInfo, opts: &InitOptions) -> Result<Arc<MasterClient>> {
    let token = env_nonempty("DET_SESSION_TOKEN").ok_or_else(|| {
        err!(
            InvalidArgument,
            "DET_SESSION_TOKEN environment variable not set."
        )
    })?; // MasterClient::new registers it as a secret for the log
    if env_nonempty("DET_USER").is_none() {
        bail!(InvalidArgument, "DET_USER environment variable not set.");
    }
    let url = MasterUrl::parse(&ci.master_url).map_err(|e| {
        Error::new(
            e.kind(),
            format!(
                "{}/cluster.json: master_url: {}",
                ci.dir.display(),
                e.message()
            ),
        )
    })?;
    let tls = if url.is_tls() {
        Some(TlsSettings::from_env(&url)?.client_config()?)
    } else {
        None
    };
    let retry = RetryPolicy::from_env()?;
    let timeouts = Timeouts::resolve(opts.master_connect_timeout, opts.master_timeout)?;
    log_debug!(
        "master {url}, connect timeout {:.0} s, request timeout {:.0} s",
        timeouts.connect.as_secs_f64(),
        timeouts.request.as_secs_f64()
    );
    Ok(Arc::new(MasterClient::new(
        url, &token, tls, retry, timeouts,
    )))
}

impl Context {
    /// Build the on-cluster context from the info files in `dir`.
    pub(super) fn init_on_cluster(opts: InitOptions, dir: &Path) -> Result<Context> {
        let ci = Arc::new(ClusterInfo::load(dir)?);
        let client = connect(&ci, &opts)?;
        if !ci.is_trial() {
            log_info!(
                "on-cluster {} task: no trial, so checkpoints, metrics and preemption work as off-cluster",
                ci.task_type
            );
            let mut ctx = Context::init_off_cluster(opts)?;
            ctx.info.on_cluster = true;
            ctx.info.cluster = Some(ci);
            ctx.oncluster = Some(Runtime {
                client,
                longpoll: Mutex::new(None),
                ack: None,
            });
            return Ok(ctx);
        }
        let trial = ci
            .trial
            .clone()
            .ok_or_else(|| err!(Internal, "trial info missing after load"))?;

        // Distributed: a multi-slot task needs a distributed config.
        let dist_cfg = match &opts.distributed {
            Some(d) => d.clone(),
            None => {
                if ci.container_addrs().len() > 1 || ci.slot_ids.len() > 1 {
                    bail!(
                        InvalidArgument,
                        "you must provide a valid DistributedContext for a multi-slot task \
                         (this container has slots {:?} in {} container(s)): set det_init_options.distributed",
                        ci.slot_ids,
                        ci.container_addrs().len()
                    );
                }
                DistributedConfig::single()
            }
        };
        // Connecting the ranks is a collective; every rank's init reaches this point.
        let dist = Arc::new(DistributedContext::new(dist_cfg)?);
        let rank = dist.config().rank;
        let is_chief = rank == 0;

        // Checkpoint storage.
        let spec: StorageSpec = match &opts.checkpoint_storage {
            Some(s) => storage::config::parse_user(s)?,
            None => {
                if is_chief && env_nonempty(super::CHECKPOINT_STORAGE_ENV).is_some() {
                    log_info!(
                        "{} is ignored on a Determined cluster: checkpoints go to the experiment's \
                         checkpoint_storage, where the master and the WebUI find them (set \
                         det_init_options.checkpoint_storage to override it)",
                        super::CHECKPOINT_STORAGE_ENV
                    );
                }
                let cs = trial.config.get("checkpoint_storage").ok_or_else(|| {
                    err!(
                        InvalidArgument,
                        "{}/trial.json: the experiment config has no checkpoint_storage",
                        dir.display()
                    )
                })?;
                storage::config::parse_experiment(cs, Some(&shared_fs_container_path()))?
            }
        };
        // The ranks must agree on the storage (a collective: all fail alike otherwise). On a
        // cluster, folders are created as Determined creates them (shared by every user's trials).
        // Checksums as the caller's storage dict or DETCORE_CHECKSUMS say; retention keys are the
        // master's business on-cluster.
        let opened =
            storage::manifest::resolve_enabled(spec.lifecycle.checksums).and_then(|checksums| {
                storage::open_with(&spec.config, storage::Modes::Shared, checksums)
            });
        crate::checkpoint::agree_on_storage(
            &dist,
            opened.as_ref().map(|s| &**s).map_err(Clone::clone),
        )?;
        let storage = opened?;
        if is_chief || dist.config().is_local_chief() {
            storage.sweep_stale();
        }
        // TensorBoard always syncs to the experiment's storage, never the caller's.
        let tb_storage = match trial.config.get("checkpoint_storage") {
            Some(cs) if opts.checkpoint_storage.is_some() => {
                let s = storage::config::parse_experiment(cs, Some(&shared_fs_container_path()))?;
                // Only TensorBoard files go there: no checkpoint, so no manifest.
                Some(storage::open_with(
                    &s.config,
                    storage::Modes::Shared,
                    false,
                )?)
            }
            _ => Some(storage.clone()),
        };

        // Searcher.
        let max_length = searcher::parse_max_length(&trial.config)?;
        let units = searcher::parse_units(&trial.config);

        // Local preemption sources (validated before anything starts).
        let sources = super::local_sources(&opts, &dist)?;

        // `POST /api/v1/runs/start`.
        let storage_backend_id = if is_chief {
            client
                .runs_start(trial.trial_id, &spec.wire)
                .map_err(|e| e.context("init"))?
        } else {
            None
        };

        // TensorBoard (AUTO: reported metrics become events), the metrics shipper, train context.
        let tb = TensorboardManager::start(TensorboardConfig::on_cluster(
            opts.tensorboard_mode,
            &ci.allocation_id,
            &ci.cluster_id,
            &trial.experiment_id.to_string(),
            Some(&trial.trial_id.to_string()),
            tb_storage,
            rank,
        ))?;
        let mut sinks: Vec<Box<dyn crate::train::Sink>> = vec![Box::new(MasterSink::new(
            client.clone(),
            trial.trial_id,
            trial.trial_run_id,
        ))];
        sinks.extend(TensorboardSink::for_manager(&tb));
        let reporter = Arc::new(Reporter::start(sinks, opts.report_queue_capacity)?);
        let train = Arc::new(TrainContext::new(
            reporter.clone(),
            Box::new(MasterTrainBackend {
                client: client.clone(),
                trial_id: trial.trial_id,
                experiment_id: trial.experiment_id,
                reporter: reporter.clone(),
                flush_timeout: opts.close_timeout,
            }),
        ));
        let checkpoint = CheckpointContext::new(
            storage,
            Arc::new(MasterCheckpointReporter {
                client: client.clone(),
                task_id: ci.task_id.clone(),
                allocation_id: ci.allocation_id.clone(),
                storage_backend_id,
            }),
            dist.clone(),
        )
        .with_async(opts.async_checkpoints);
        let profiler = Profiler::new(
            ci.agent_id.clone(),
            train.clone(),
            dist.config().is_local_chief(),
        );
        let searcher = SearcherContext::with_dist(
            max_length,
            units,
            train.clone(),
            is_chief,
            Some(dist.clone()),
        );

        // Preemption: local sources, the master's long poll, the acknowledgement thread.
        let ack = AckSender::start(client.clone(), &ci.allocation_id)?;
        let (preempt, registration, watcher) =
            super::start_preemption(&opts, &dist, &sources, Some(ack.clone()))?;
        let watch_master = is_chief || opts.preempt_mode == PreemptMode::WorkersAskMaster;
        let longpoll = if watch_master {
            Some(LongPollWatcher::start(
                preempt.clone(),
                Arc::new(MasterPoll::new(client.clone(), &ci.allocation_id)),
                FIRST_POLL_WAIT,
            )?)
        } else {
            None
        };

        let info = Info {
            on_cluster: true,
            run_name: None,
            run_dir: None,
            hparams: trial.hparams.clone(),
            resume: crate::info::resume_point(
                ci.latest_checkpoint().map(str::to_owned),
                trial.steps_completed.max(0) as u64,
            ),
            cluster: Some(ci.clone()),
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
            oncluster: Some(Runtime {
                client,
                longpoll: Mutex::new(longpoll),
                ack: Some(ack),
            }),
            // Determined requeues its own trials.
            slurm_requeue: false,
            last_checkpoint: Default::default(),
        })
    }

    /// Close sequence, on-cluster part: stop the long poll (interrupting it), then wait
    /// until `deadline` for the preemption acknowledgement, if one was requested.
    pub(super) fn close_on_cluster(&self, deadline: Instant) -> Result<()> {
        let Some(rt) = &self.oncluster else {
            return Ok(());
        };
        if let Some(mut w) = rt.longpoll.lock().take() {
            w.stop();
        }
        match &rt.ack {
            Some(a) => a.finish(deadline),
            None => Ok(()),
        }
    }

    /// `alert(title, description, level)`: `POST /api/v1/webhooks/custom`, which fires
    /// the experiment's custom webhooks. Off-cluster the alert is logged at its level instead
    /// (Python raises there).
    pub fn alert(
        &self,
        title: Option<&str>,
        description: Option<&str>,
        level: AlertLevel,
    ) -> Result<()> {
        let title = title.unwrap_or("");
        let description = description.unwrap_or("");
        let Some(rt) = &self.oncluster else {
            let line = format!("alert: {title}: {description}");
            match level {
                AlertLevel::Debug => log_debug!("{line}"),
                AlertLevel::Info => log_info!("{line}"),
                AlertLevel::Warning => log_warn!("{line}"),
                AlertLevel::Error => log_error!("{line}"),
            }
            return Ok(());
        };
        let trial = self.info.trial("alert()").map_err(|_| {
            Error::new(
                Kind::Unsupported,
                "alert() only works for trial type of task.",
            )
        })?;
        rt.client.alert(
            title,
            description,
            level,
            trial.experiment_id,
            trial.trial_id,
        )
    }

    /// `experimental.report_task_using_checkpoint(checkpoint)` and
    /// `report_task_using_model_version(model_version)` (`model` = its model id and version):
    /// link the checkpoint the trial uses to the trial, so that the metrics it reports show up
    /// with that checkpoint or model version (`POST /api/v1/trial-source-info`). Waits for the
    /// master. Off-cluster, and on-cluster for tasks that are not trials, there is nothing to link
    /// to (Python's dummy context does nothing); detcore says so in a log line.
    pub fn report_task_using(
        &self,
        checkpoint_uuid: &str,
        model: Option<(i64, i64)>,
    ) -> Result<()> {
        let what = match model {
            None => format!("report_task_using_checkpoint({checkpoint_uuid})"),
            Some((id, v)) => format!(
                "report_task_using_model_version(model {id} version {v}, checkpoint {checkpoint_uuid})"
            ),
        };
        if checkpoint_uuid.is_empty() {
            bail!(InvalidArgument, "{what}: the checkpoint uuid is empty");
        }
        let trial = match (&self.oncluster, self.info.trial("")) {
            (Some(rt), Ok(t)) => Some((rt, t.trial_id)),
            _ => None,
        };
        let Some((rt, trial_id)) = trial else {
            log_info!(
                "{what}: not recorded: {}",
                if self.oncluster.is_some() {
                    "this task is not a trial"
                } else {
                    "off-cluster there is no master to record it"
                }
            );
            return Ok(());
        };
        rt.client
            .report_trial_source_info(checkpoint_uuid, trial_id, model)
            .map_err(|e| e.context(what))
    }

    /// The master client (on-cluster).
    pub fn master(&self) -> Option<&Arc<MasterClient>> {
        self.oncluster.as_ref().map(|r| &r.client)
    }
}
