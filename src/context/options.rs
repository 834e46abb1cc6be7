//! Options of `Context::init`, the safe Rust form of `det_init_options`: they gather every
//! domain's settings, so they live with the context that hands them out.

use crate::distributed::DistributedConfig;
use crate::preempt::PreemptMode;
use crate::tensorboard::TensorboardMode;
use std::path::PathBuf;
use std::time::Duration;

/// Everything `init` takes. `Default` gives Determined's defaults.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// A path, `file://`, `s3://…`, `gs://…`, or a JSON dict. `None`: the experiment's storage
    /// on-cluster, `$XDG_DATA_HOME/determined` (else `~/.local/share/determined`) off-cluster.
    pub checkpoint_storage: Option<String>,
    pub preempt_mode: PreemptMode,
    pub tensorboard_mode: TensorboardMode,
    /// Off-cluster run name (resume key). `None`: `DET_RUN_NAME`, `SLURM_JOB_ID`, else the
    /// program's file name.
    pub run_name: Option<String>,
    /// Off-cluster run folder (metrics.jsonl, TensorBoard). `None`: `DETCORE_RUN_DIR`, else
    /// `./detcore-runs/<run_name>`.
    pub run_dir: Option<PathBuf>,
    /// Off-cluster hyperparameters (a JSON object). `None`: `DET_HPARAMS`, else `{}`.
    pub hparams_json: Option<String>,
    /// Off-cluster searcher length. `None`: `DET_MAX_LENGTH`, else 1.
    pub searcher_max_length: Option<u64>,
    /// Signals that mean preemption. `None`: SIGTERM and SIGUSR1; `Some(vec![])`: none.
    pub preempt_signals: Option<Vec<i32>>,
    /// Preempt when this file exists. `None`: `DET_HALT_FILE`.
    pub halt_file: Option<PathBuf>,
    /// Job end time (epoch seconds). `None`: `DET_END_TIME`, else `SLURM_JOB_END_TIME`, else
    /// asked of Slurm (squeue) by the chief in a Slurm job.
    pub end_time: Option<f64>,
    /// Preempt this long before the end time. `None`: `DET_HALT_SECONDS`, else 120.
    pub halt_margin_seconds: Option<f64>,
    /// Upload cloud checkpoints in the background.
    pub async_checkpoints: bool,
    /// Where this process stands in the job. `None`: rank 0 of 1.
    pub distributed: Option<DistributedConfig>,
    /// The info folder. `None`: `DET_CLUSTER_INFO_DIR`, else `/run/determined/info`.
    pub cluster_info_dir: Option<PathBuf>,
    /// How many reports may wait in memory before report calls block.
    pub report_queue_capacity: usize,
    /// How long `close` waits for reports and acknowledgements to be delivered.
    pub close_timeout: Duration,
    /// Off-cluster under Slurm: after a checkpoint stored because of preemption, `close` asks
    /// Slurm to requeue the job (`scontrol requeue`). `false`: `DETCORE_SLURM_REQUEUE=1` decides.
    pub slurm_requeue: bool,
    /// On-cluster: TCP/TLS connect limit per master request. `None`:
    /// `DETCORE_MASTER_CONNECT_TIMEOUT` (seconds), else 20 s.
    pub master_connect_timeout: Option<Duration>,
    /// On-cluster: limit of one master request attempt, connect to last byte. `None`:
    /// `DETCORE_MASTER_TIMEOUT` (seconds), else 60 s.
    pub master_timeout: Option<Duration>,
    /// Off-cluster checkpoint retention: keep the N latest checkpoints. `None`: the storage
    /// dict's `save_trial_latest`, else `DET_SAVE_TRIAL_LATEST`; unset everywhere (and
    /// `save_trial_best` too): keep every checkpoint.
    pub save_trial_latest: Option<u32>,
    /// Off-cluster checkpoint retention: keep the N best checkpoints by `searcher_metric`.
    /// `None`: the storage dict's `save_trial_best`, else `DET_SAVE_TRIAL_BEST`.
    pub save_trial_best: Option<u32>,
    /// The metric that ranks checkpoints (a validation metric reported at a checkpoint's steps,
    /// or a key of its metadata). `None`: the storage dict's `metric`, else
    /// `DET_SEARCHER_METRIC`.
    pub searcher_metric: Option<String>,
    /// Whether a smaller `searcher_metric` is better. `None`: the storage dict's
    /// `smaller_is_better`, else `DET_SMALLER_IS_BETTER`, else true.
    pub smaller_is_better: Option<bool>,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            checkpoint_storage: None,
            preempt_mode: PreemptMode::WorkersAskChief,
            tensorboard_mode: TensorboardMode::Auto,
            run_name: None,
            run_dir: None,
            hparams_json: None,
            searcher_max_length: None,
            preempt_signals: None,
            halt_file: None,
            end_time: None,
            halt_margin_seconds: None,
            async_checkpoints: false,
            distributed: None,
            cluster_info_dir: None,
            report_queue_capacity: crate::train::reporter::DEFAULT_QUEUE_CAPACITY,
            close_timeout: Duration::from_secs(300),
            master_connect_timeout: None,
            master_timeout: None,
            slurm_requeue: false,
            save_trial_latest: None,
            save_trial_best: None,
            searcher_metric: None,
            smaller_is_better: None,
        }
    }
}
