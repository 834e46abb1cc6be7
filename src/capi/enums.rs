//! Every `DET_*` enumeration of the C ABI in one place: its constants (as the header lists them)
//! and the one conversion between a C integer and the core's enum. An unknown value is
//! `DET_ERR_INVALID_ARGUMENT` naming the parameter, the value and the constants expected.

use crate::checkpoint::{DownloadMode, UploadMode};
use crate::distributed::env::Launcher;
use crate::error::Result;
use crate::log::Level;
use crate::master::AlertLevel;
use crate::preempt::PreemptMode;
use crate::searcher::{SearcherMode, Unit};
use crate::train::EarlyExitReason;
use crate::TensorboardMode;

/// The error for a value of `what` that is none of `expected`.
#[cold]
fn unknown(what: &str, v: i32, expected: &str) -> crate::error::Error {
    err!(
        InvalidArgument,
        "{what}: unknown value {v} (expected {expected})"
    )
}

/// Log level: everything.
pub const DET_LOG_LEVEL_DEBUG: i32 = 10;
/// Log level: informational lines and above (the default).
pub const DET_LOG_LEVEL_INFO: i32 = 20;
/// Log level: warnings and errors.
pub const DET_LOG_LEVEL_WARNING: i32 = 30;
/// Log level: errors only.
pub const DET_LOG_LEVEL_ERROR: i32 = 40;
/// Log level: nothing.
pub const DET_LOG_LEVEL_OFF: i32 = 255;

/// `det_log_set_level(level)`: a `DET_LOG_LEVEL_*` value.
pub(crate) fn log_level(v: i32, what: &str) -> Result<Level> {
    Ok(match v {
        DET_LOG_LEVEL_DEBUG => Level::Debug,
        DET_LOG_LEVEL_INFO => Level::Info,
        DET_LOG_LEVEL_WARNING => Level::Warning,
        DET_LOG_LEVEL_ERROR => Level::Error,
        DET_LOG_LEVEL_OFF => Level::Off,
        v => return Err(unknown(what, v, "a DET_LOG_LEVEL_* constant")),
    })
}

/// `PreemptMode.WorkersAskChief`: every rank calls `det_should_preempt` in step and all get the
/// chief's answer (the default).
pub const DET_PREEMPT_MODE_WORKERS_ASK_CHIEF: i32 = 0;
/// `PreemptMode.ChiefOnly`: only the chief may call `det_should_preempt`.
pub const DET_PREEMPT_MODE_CHIEF_ONLY: i32 = 1;
/// `PreemptMode.WorkersAskMaster`: every rank asks independently.
pub const DET_PREEMPT_MODE_WORKERS_ASK_MASTER: i32 = 2;

/// A `DET_PREEMPT_MODE_*` value.
pub(crate) fn preempt_mode(v: i32, what: &str) -> Result<PreemptMode> {
    Ok(match v {
        DET_PREEMPT_MODE_WORKERS_ASK_CHIEF => PreemptMode::WorkersAskChief,
        DET_PREEMPT_MODE_CHIEF_ONLY => PreemptMode::ChiefOnly,
        DET_PREEMPT_MODE_WORKERS_ASK_MASTER => PreemptMode::WorkersAskMaster,
        v => return Err(unknown(what, v, "a DET_PREEMPT_MODE_* constant")),
    })
}

/// `TensorboardMode.AUTO`: reported metrics are written to TensorBoard files and synced (default).
pub const DET_TENSORBOARD_MODE_AUTO: i32 = 0;
/// `TensorboardMode.MANUAL`: nothing is written or synced automatically.
pub const DET_TENSORBOARD_MODE_MANUAL: i32 = 1;

/// A `DET_TENSORBOARD_MODE_*` value.
pub(crate) fn tensorboard_mode(v: i32, what: &str) -> Result<TensorboardMode> {
    Ok(match v {
        DET_TENSORBOARD_MODE_AUTO => TensorboardMode::Auto,
        DET_TENSORBOARD_MODE_MANUAL => TensorboardMode::Manual,
        v => return Err(unknown(what, v, "a DET_TENSORBOARD_MODE_* constant")),
    })
}

/// No unit configured.
pub const DET_UNIT_NONE: i32 = 0;
/// `Unit.EPOCHS`.
pub const DET_UNIT_EPOCHS: i32 = 1;
/// `Unit.RECORDS`.
pub const DET_UNIT_RECORDS: i32 = 2;
/// `Unit.BATCHES`.
pub const DET_UNIT_BATCHES: i32 = 3;

/// The `DET_UNIT_*` value of the configured unit (`None`: `DET_UNIT_NONE`).
pub(crate) fn unit_to_c(u: Option<Unit>) -> i32 {
    match u {
        None => DET_UNIT_NONE,
        Some(Unit::Epochs) => DET_UNIT_EPOCHS,
        Some(Unit::Records) => DET_UNIT_RECORDS,
        Some(Unit::Batches) => DET_UNIT_BATCHES,
    }
}

/// `EarlyExitReason.INVALID_HP`: the hyperparameters cannot work; the trial ends as completed.
pub const DET_EARLY_EXIT_INVALID_HP: i32 = 1;

/// A `DET_EARLY_EXIT_*` value.
pub(crate) fn early_exit_reason(v: i32, what: &str) -> Result<EarlyExitReason> {
    match v {
        DET_EARLY_EXIT_INVALID_HP => Ok(EarlyExitReason::InvalidHp),
        v => Err(unknown(what, v, "DET_EARLY_EXIT_INVALID_HP")),
    }
}

/// `det_ckpt_store_path_end_mode`: as configured by `det_init_options.async_checkpoints`.
pub const DET_UPLOAD_MODE_DEFAULT: i32 = 0;
/// `det_ckpt_store_path_end_mode`: return once the checkpoint is stored and reported.
pub const DET_UPLOAD_MODE_SYNC: i32 = 1;
/// `det_ckpt_store_path_end_mode`: return once the files are handed off to the background
/// uploader.
pub const DET_UPLOAD_MODE_ASYNC: i32 = 2;

/// A `DET_UPLOAD_MODE_*` value.
pub(crate) fn upload_mode(v: i32, what: &str) -> Result<UploadMode> {
    Ok(match v {
        DET_UPLOAD_MODE_DEFAULT => UploadMode::Default,
        DET_UPLOAD_MODE_SYNC => UploadMode::Sync,
        DET_UPLOAD_MODE_ASYNC => UploadMode::Async,
        v => return Err(unknown(what, v, "a DET_UPLOAD_MODE_* constant")),
    })
}

/// `DownloadMode.LocalWorkersShareDownload`: the local chief downloads once per node (default).
pub const DET_DOWNLOAD_MODE_LOCAL_WORKERS_SHARE_DOWNLOAD: i32 = 0;
/// `DownloadMode.NoSharedDownload`: every rank downloads for itself.
pub const DET_DOWNLOAD_MODE_NO_SHARED_DOWNLOAD: i32 = 1;

/// A `DET_DOWNLOAD_MODE_*` value.
pub(crate) fn download_mode(v: i32, what: &str) -> Result<DownloadMode> {
    Ok(match v {
        DET_DOWNLOAD_MODE_LOCAL_WORKERS_SHARE_DOWNLOAD => DownloadMode::LocalWorkersShareDownload,
        DET_DOWNLOAD_MODE_NO_SHARED_DOWNLOAD => DownloadMode::NoSharedDownload,
        v => return Err(unknown(what, v, "a DET_DOWNLOAD_MODE_* constant")),
    })
}

/// `SearcherMode.WorkersAskChief` (default).
pub const DET_SEARCHER_MODE_WORKERS_ASK_CHIEF: i32 = 0;
/// `SearcherMode.ChiefOnly`.
pub const DET_SEARCHER_MODE_CHIEF_ONLY: i32 = 1;

/// A `DET_SEARCHER_MODE_*` value.
pub(crate) fn searcher_mode(v: i32, what: &str) -> Result<SearcherMode> {
    Ok(match v {
        DET_SEARCHER_MODE_WORKERS_ASK_CHIEF => SearcherMode::WorkersAskChief,
        DET_SEARCHER_MODE_CHIEF_ONLY => SearcherMode::ChiefOnly,
        v => return Err(unknown(what, v, "a DET_SEARCHER_MODE_* constant")),
    })
}

/// `DET_LAUNCHER_AUTO`: the first launcher whose variables are present (torchrun, DeepSpeed,
/// Horovod, Open MPI, MPICH/PMI, Slurm, in that order), else rank 0 of 1.
pub const DET_LAUNCHER_AUTO: i32 = 0;
/// torchrun / `torch.distributed.run`: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
/// GROUP_RANK, GROUP_WORLD_SIZE; chief address from DET_CHIEF_IP or MASTER_ADDR.
pub const DET_LAUNCHER_TORCH: i32 = 1;
/// The DeepSpeed launcher: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_SIZE, CROSS_RANK, CROSS_SIZE.
pub const DET_LAUNCHER_DEEPSPEED: i32 = 2;
/// horovodrun: HOROVOD_RANK, HOROVOD_SIZE, HOROVOD_LOCAL_RANK, HOROVOD_LOCAL_SIZE,
/// HOROVOD_CROSS_RANK, HOROVOD_CROSS_SIZE.
pub const DET_LAUNCHER_HOROVOD: i32 = 3;
/// Open MPI's mpirun: OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK, _LOCAL_SIZE, _NODE_RANK.
pub const DET_LAUNCHER_OPENMPI: i32 = 4;
/// MPICH / Intel MPI (PMI): PMI_RANK, PMI_SIZE, MPI_LOCALRANKID, MPI_LOCALNRANKS (block placement).
pub const DET_LAUNCHER_MPICH: i32 = 5;
/// Slurm's srun: SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NODEID, SLURM_NNODES; chief
/// address from DET_CHIEF_IP or the first host of SLURM_STEP_NODELIST / SLURM_JOB_NODELIST.
pub const DET_LAUNCHER_SLURM: i32 = 6;
/// Determined's own files, on-cluster: containers and this container's rank from
/// `rendezvous.json` (chief at the first container's address), the port from
/// `INTER_TRAIN_PROCESS_COMM_PORT_1`, processes per container from LOCAL_WORLD_SIZE/LOCAL_SIZE
/// (else 1) and this process's index from LOCAL_RANK (else 0). `DET_LAUNCHER_AUTO` picks it
/// on-cluster when no launcher's variables are set.
pub const DET_LAUNCHER_DETERMINED: i32 = 7;

/// A `DET_LAUNCHER_*` value.
pub(crate) fn launcher(v: i32, what: &str) -> Result<Launcher> {
    Ok(match v {
        DET_LAUNCHER_AUTO => Launcher::Auto,
        DET_LAUNCHER_TORCH => Launcher::Torch,
        DET_LAUNCHER_DEEPSPEED => Launcher::DeepSpeed,
        DET_LAUNCHER_HOROVOD => Launcher::Horovod,
        DET_LAUNCHER_OPENMPI => Launcher::OpenMpi,
        DET_LAUNCHER_MPICH => Launcher::Mpich,
        DET_LAUNCHER_SLURM => Launcher::Slurm,
        DET_LAUNCHER_DETERMINED => Launcher::Determined,
        v => return Err(unknown(what, v, "a DET_LAUNCHER_* constant")),
    })
}

/// `det_core_alert` level: `"info"` (`LOG_LEVEL_INFO`), the default.
pub const DET_ALERT_LEVEL_INFO: i32 = 0;
/// `det_core_alert` level: `"warn"` (`LOG_LEVEL_WARNING`).
pub const DET_ALERT_LEVEL_WARN: i32 = 1;
/// `det_core_alert` level: `"debug"` (`LOG_LEVEL_DEBUG`).
pub const DET_ALERT_LEVEL_DEBUG: i32 = 2;
/// `det_core_alert` level: `"error"` (`LOG_LEVEL_ERROR`).
pub const DET_ALERT_LEVEL_ERROR: i32 = 3;

/// A `DET_ALERT_LEVEL_*` value.
pub(crate) fn alert_level(v: i32, what: &str) -> Result<AlertLevel> {
    Ok(match v {
        DET_ALERT_LEVEL_INFO => AlertLevel::Info,
        DET_ALERT_LEVEL_WARN => AlertLevel::Warning,
        DET_ALERT_LEVEL_DEBUG => AlertLevel::Debug,
        DET_ALERT_LEVEL_ERROR => AlertLevel::Error,
        v => return Err(unknown(what, v, "a DET_ALERT_LEVEL_* constant")),
    })
}
