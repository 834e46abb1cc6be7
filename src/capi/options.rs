//! The option structs `det_init_options` and `det_distributed_config`, and the functions that
//! fill them: `det_init_options_default`, `det_distributed_config_default`,
//! `det_distributed_from_env`.

use super::boundary::{call, opt_str_arg, out_arg};
use super::enums::{self, DET_PREEMPT_MODE_WORKERS_ASK_CHIEF, DET_TENSORBOARD_MODE_AUTO};
use super::status::det_status;
use crate::distributed::env::{from_env_or_info, Env};
use crate::distributed::DistributedConfig;
use crate::error::Result;
use crate::InitOptions;
use std::ffi::c_char;
use std::path::PathBuf;
use std::time::Duration;

/// Where this process stands in a distributed job (Determined's `DistributedContext`
/// arguments). Fill it with `det_distributed_config_default(&cfg, sizeof cfg)` (rank 0 of 1),
/// then set the fields.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct det_distributed_config {
    /// `sizeof(det_distributed_config)` as the caller compiled it; set by the `_default` call.
    pub struct_size: usize,
    /// Global rank, 0 … size-1.
    pub rank: i32,
    /// Number of processes.
    pub size: i32,
    /// Rank on this node.
    pub local_rank: i32,
    /// Processes on this node.
    pub local_size: i32,
    /// Index of this node.
    pub cross_rank: i32,
    /// Number of nodes.
    pub cross_size: i32,
    /// The chief's address (required when cross_size > 1). Copied by `det_core_init`.
    pub chief_ip: *const c_char,
    /// The chief's port. 0: `DETCORE_CHIEF_PORT`, else `INTER_TRAIN_PROCESS_COMM_PORT_1`, else
    /// chosen from the job identity (the first free one of 16 ports derived from it; the workers
    /// try them in turn), else 12360 for a job without an identity.
    pub port: i32,
    /// How long workers retry connecting to the chief; <= 0 means 300 s.
    pub connect_timeout_seconds: f64,
    /// How long a collective waits for its peers before failing; <= 0 means 1800 s.
    pub collective_timeout_seconds: f64,
    /// The job's identity: every rank of one job must give the same text, two jobs different
    /// ones; a rank and a chief whose identities differ refuse each other (naming both), so two
    /// jobs on one machine never join each other. NULL: `DETCORE_JOB_ID`, else none (a rank
    /// without an identity is accepted only by a chief without one, which makes one up).
    /// `det_distributed_from_env` fills it from the launcher (Slurm's job and step, Open MPI's
    /// PMIx namespace, torchrun's run id, ...). At most 256 bytes of printable UTF-8; copied by
    /// `det_core_init`. An appended field: a program built with an older header gets NULL.
    pub job_id: *const c_char,
}

/// Options of `det_core_init`. Fill with `det_init_options_default(&opts, sizeof opts)`, then
/// set what you need. Strings are copied by `det_core_init`; NULL means "the default".
#[repr(C)]
#[derive(Clone, Copy)]
pub struct det_init_options {
    /// `sizeof(det_init_options)` as the caller compiled it; set by `det_init_options_default`.
    pub struct_size: usize,
    /// Checkpoint storage: a path, `file:///path`, `s3://bucket/prefix`, `gs://bucket/prefix`,
    /// or a JSON object like Python's dict (`{"type": "directory", "container_path": "/x"}`).
    /// NULL: the experiment's storage on-cluster; off-cluster `$XDG_DATA_HOME/determined` or
    /// `~/.local/share/determined`.
    pub checkpoint_storage: *const c_char,
    /// One of `DET_PREEMPT_MODE_*`.
    pub preempt_mode: i32,
    /// One of `DET_TENSORBOARD_MODE_*`.
    pub tensorboard_mode: i32,
    /// Off-cluster run name, the key for resuming. NULL: `DET_RUN_NAME`, else `slurm-$SLURM_JOB_ID`,
    /// else the program's file name.
    pub run_name: *const c_char,
    /// Off-cluster run folder for `metrics.jsonl` and TensorBoard files. NULL: `DETCORE_RUN_DIR`,
    /// else `./detcore-runs/<run_name>`.
    pub run_dir: *const c_char,
    /// Off-cluster hyperparameters, a JSON object. NULL: `DET_HPARAMS`, else `{}`.
    pub hparams_json: *const c_char,
    /// Off-cluster searcher operation length. 0: `DET_MAX_LENGTH`, else 1.
    pub searcher_max_length: i64,
    /// Signals that mean preemption. NULL: SIGTERM and SIGUSR1.
    pub preempt_signals: *const i32,
    /// Number of entries in `preempt_signals`.
    pub preempt_signals_len: usize,
    /// Install no signal handlers at all.
    pub disable_signal_handlers: bool,
    /// Upload checkpoints in the background: `det_ckpt_store_path_end` returns once the files
    /// are handed off; `det_ckpt_wait` and `det_core_close` wait for them. At most 8 GiB
    /// (`DETCORE_ASYNC_STAGING_BYTES`) of handed-off files wait at once. Per call:
    /// `det_ckpt_store_path_end_mode`.
    pub async_checkpoints: bool,
    /// Preempt once this file exists. NULL: `DET_HALT_FILE`.
    pub halt_file: *const c_char,
    /// The job's end, in seconds since the epoch. <= 0: `DET_END_TIME`, else `SLURM_JOB_END_TIME`,
    /// else, in a Slurm job, the end time the chief asks of Slurm once at init (`squeue`, 5 s at
    /// most, never fatal); a worker without one takes the chief's.
    pub end_time: f64,
    /// Preempt this many seconds before `end_time`. < 0: `DET_HALT_SECONDS`, else 120.
    pub halt_margin_seconds: f64,
    /// Where this process stands in the job. NULL: rank 0 of 1. Copied by `det_core_init`.
    pub distributed: *const det_distributed_config,
    /// The Determined info folder. NULL: `DET_CLUSTER_INFO_DIR`, else `/run/determined/info`.
    pub cluster_info_dir: *const c_char,
    /// Reports that may wait in memory before report calls block. 0: 16384; at most 4194304.
    pub report_queue_capacity: usize,
    /// How long `det_core_close` waits to deliver reports. <= 0: 300 s.
    pub close_timeout_seconds: f64,
    /// Off-cluster under Slurm (an appended field; older programs get false): when the job stored a checkpoint after
    /// `det_should_preempt` said true, `det_core_close` on rank 0 asks Slurm to requeue it
    /// (`scontrol requeue $SLURM_JOB_ID`), so a job preempted by `--signal` or its time limit
    /// runs again and resumes from that checkpoint by itself. A failed requeue is logged, never
    /// an error of `det_core_close`. false: `DETCORE_SLURM_REQUEUE=1` turns it on.
    pub slurm_requeue: bool,
    /// Off-cluster checkpoint retention (Determined's `save_trial_latest`; this and the next
    /// three are appended fields: older programs get their defaults): keep the N newest
    /// checkpoints of the run. < 0 (the default): the `checkpoint_storage` dict's
    /// `"save_trial_latest"`, else `DET_SAVE_TRIAL_LATEST`. When neither this nor
    /// `save_trial_best` is set anywhere, every checkpoint is kept; when one is, the other
    /// counts as 0. The checkpoint a restart would resume from is always kept. Deleting happens
    /// in the background after each new checkpoint is stored. Ignored on-cluster, where the
    /// master's garbage collection applies the experiment's policy.
    pub save_trial_latest: i32,
    /// Off-cluster checkpoint retention (Determined's `save_trial_best`): keep the N best
    /// checkpoints by `searcher_metric`. < 0: the storage dict's `"save_trial_best"`, else
    /// `DET_SAVE_TRIAL_BEST`. A value > 0 needs a metric.
    pub save_trial_best: i32,
    /// The metric that ranks checkpoints for `save_trial_best`: the key of a checkpoint's
    /// metadata if it has it, else the validation metric of that name reported with the
    /// checkpoint's `steps_completed`. NULL: the storage dict's `"metric"`, else
    /// `DET_SEARCHER_METRIC`.
    pub searcher_metric: *const c_char,
    /// 1: a smaller `searcher_metric` is better; 0: a larger one. < 0: the storage dict's
    /// `"smaller_is_better"`, else `DET_SMALLER_IS_BETTER`, else 1 (Determined's default).
    pub smaller_is_better: i32,
}

/// `sizeof(det_init_options)` as first published (ABI 1). Fields are only ever appended after
/// `close_timeout_seconds`; a program compiled with this size keeps working with later
/// libraries, which give the newer fields their defaults. Never change this value.
const INIT_OPTIONS_V1_SIZE: usize =
    std::mem::offset_of!(det_init_options, close_timeout_seconds) + std::mem::size_of::<f64>();

/// Offsets of the `bool` fields of `det_init_options` (normalised when read, see `read_sized`).
const INIT_OPTIONS_BOOLS: &[usize] = &[
    std::mem::offset_of!(det_init_options, disable_signal_handlers),
    std::mem::offset_of!(det_init_options, async_checkpoints),
    std::mem::offset_of!(det_init_options, slurm_requeue),
];

/// `sizeof(det_distributed_config)` as first published (ABI 1); see [`INIT_OPTIONS_V1_SIZE`].
const DISTRIBUTED_CONFIG_V1_SIZE: usize =
    std::mem::offset_of!(det_distributed_config, collective_timeout_seconds)
        + std::mem::size_of::<f64>();

fn defaults() -> det_init_options {
    det_init_options {
        struct_size: std::mem::size_of::<det_init_options>(),
        checkpoint_storage: std::ptr::null(),
        preempt_mode: DET_PREEMPT_MODE_WORKERS_ASK_CHIEF,
        tensorboard_mode: DET_TENSORBOARD_MODE_AUTO,
        run_name: std::ptr::null(),
        run_dir: std::ptr::null(),
        hparams_json: std::ptr::null(),
        searcher_max_length: 0,
        preempt_signals: std::ptr::null(),
        preempt_signals_len: 0,
        disable_signal_handlers: false,
        async_checkpoints: false,
        halt_file: std::ptr::null(),
        end_time: 0.0,
        halt_margin_seconds: -1.0,
        distributed: std::ptr::null(),
        cluster_info_dir: std::ptr::null(),
        report_queue_capacity: 0,
        close_timeout_seconds: 0.0,
        slurm_requeue: false,
        save_trial_latest: -1,
        save_trial_best: -1,
        searcher_metric: std::ptr::null(),
        smaller_is_better: -1,
    }
}

fn dist_defaults() -> det_distributed_config {
    det_distributed_config {
        struct_size: std::mem::size_of::<det_distributed_config>(),
        rank: 0,
        size: 1,
        local_rank: 0,
        local_size: 1,
        cross_rank: 0,
        cross_size: 1,
        chief_ip: std::ptr::null(),
        port: 0,
        connect_timeout_seconds: 0.0,
        collective_timeout_seconds: 0.0,
        job_id: std::ptr::null(),
    }
}

/// Write `value` into the caller's struct of `struct_size` bytes (zeroing any newer tail).
///
/// # Safety
/// `out` must point to `struct_size` writable bytes.
unsafe fn fill<T>(out: *mut T, struct_size: usize, value: T, min: usize, what: &str) -> Result<()> {
    let ours = std::mem::size_of::<T>();
    if struct_size < min {
        bail!(InvalidArgument, "struct_size {struct_size} is smaller than the first published sizeof({what}) = {min}; pass sizeof({what})");
    }
    // SAFETY: out has struct_size writable bytes; we copy at most that many from `value`, which
    // is plain data, and zero whatever lies beyond our own size.
    unsafe {
        let n = struct_size.min(ours);
        std::ptr::copy_nonoverlapping(&value as *const T as *const u8, out as *mut u8, n);
        if struct_size > ours {
            std::ptr::write_bytes((out as *mut u8).add(ours), 0, struct_size - ours);
        }
        // Record the caller's size, not ours.
        *(out as *mut usize) = struct_size;
    }
    std::mem::forget(value);
    Ok(())
}

/// Fill `opts` with the defaults. Pass `sizeof(det_init_options)` as `struct_size` (it lets a
/// newer library fill an older program's struct safely).
///
/// Returns `DET_ERR_INVALID_ARGUMENT` if `opts` is NULL or `struct_size` is too small.
///
/// # Safety
/// `opts` must point to `struct_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn det_init_options_default(
    opts: *mut det_init_options,
    struct_size: usize,
) -> det_status {
    call("det_init_options_default", || {
        out_arg(opts, "opts")?;
        // SAFETY: not NULL (out_arg above), and the caller guarantees `struct_size` writable bytes
        // there (this function's # Safety).
        unsafe {
            fill(
                opts,
                struct_size,
                defaults(),
                INIT_OPTIONS_V1_SIZE,
                "det_init_options",
            )
        }
    })
}

/// Fill `cfg` with rank 0 of 1 and default ports and timeouts. Pass
/// `sizeof(det_distributed_config)` as `struct_size`.
///
/// # Safety
/// `cfg` must point to `struct_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn det_distributed_config_default(
    cfg: *mut det_distributed_config,
    struct_size: usize,
) -> det_status {
    call("det_distributed_config_default", || {
        out_arg(cfg, "cfg")?;
        // SAFETY: not NULL (out_arg above), and the caller guarantees `struct_size` writable bytes
        // there (this function's # Safety).
        unsafe {
            fill(
                cfg,
                struct_size,
                dist_defaults(),
                DISTRIBUTED_CONFIG_V1_SIZE,
                "det_distributed_config",
            )
        }
    })
}

/// Read a caller struct whose first field is its size: at least our size is required; a
/// larger (newer) struct is accepted and its tail ignored.
///
/// # Safety
/// `p` must point to a struct whose first field is a valid `struct_size`.
unsafe fn read_sized<T: Copy>(
    p: *const T,
    defaults: T,
    min: usize,
    bools: &[usize],
    what: &str,
) -> Result<T> {
    // SAFETY: the first field of every sized struct is a size_t.
    let size = unsafe { *(p as *const usize) };
    let ours = std::mem::size_of::<T>();
    if size < min {
        bail!(InvalidArgument, "{what}.struct_size is {size}, expected at least {min}; initialise it with {what}_default(&x, sizeof x)");
    }
    // An older caller's struct (smaller, but at least the first published size) is read as far
    // as it goes, the fields appended since keep their defaults; a newer caller's larger struct
    // is read up to our size.
    let n = size.min(ours);
    let mut v = std::mem::MaybeUninit::new(defaults);
    let bytes = v.as_mut_ptr() as *mut u8;
    // SAFETY: the caller's struct has `size` readable bytes; we copy min(size, ours) of them over
    // a value of T made of plain data (pointers, integers, doubles, bools). A C `bool` (or a
    // Fortran `logical(c_bool)`, or an uninitialised byte) may hold any value, which a Rust
    // `bool` must not: each bool byte at `bools` is made 0 or 1 before the value is used.
    unsafe {
        std::ptr::copy_nonoverlapping(p as *const u8, bytes, n);
        for &off in bools {
            if off < n {
                let b = bytes.add(off);
                *b = u8::from(*b != 0);
            }
        }
        Ok(v.assume_init())
    }
}

fn seconds(v: f64, default: Duration, what: &str) -> Result<Duration> {
    if v.is_nan() {
        bail!(InvalidArgument, "{what} is NaN");
    }
    if v <= 0.0 {
        return Ok(default);
    }
    // Huge values (INFINITY included) mean "as long as it takes".
    Ok(crate::time::secs(v))
}

fn nonneg(v: i32, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| err!(InvalidArgument, "distributed: {what} is negative ({v})"))
}

/// Convert a `det_distributed_config`.
///
/// # Safety
/// `p` must be a valid pointer to an initialised config.
pub(crate) unsafe fn distributed_from_c(
    p: *const det_distributed_config,
) -> Result<DistributedConfig> {
    // SAFETY: this function's # Safety is `read_sized`'s: the pointers it passes on carry the same
    // guarantees.
    let c = unsafe {
        read_sized(
            p,
            dist_defaults(),
            DISTRIBUTED_CONFIG_V1_SIZE,
            &[],
            "det_distributed_config",
        )
    }?;
    let c = &c;
    let d = DistributedConfig::single();
    let port = match c.port {
        0 => 0,
        p if (1..=65535).contains(&p) => p as u16,
        p => {
            bail!(InvalidArgument, "distributed: port {p} is out of range")
        }
    };
    let cfg = DistributedConfig {
        rank: nonneg(c.rank, "rank")?,
        size: nonneg(c.size, "size")?,
        local_rank: nonneg(c.local_rank, "local_rank")?,
        local_size: nonneg(c.local_size, "local_size")?,
        cross_rank: nonneg(c.cross_rank, "cross_rank")?,
        cross_size: nonneg(c.cross_size, "cross_size")?,
        // SAFETY: chief_ip is NULL or a C string, per the struct's contract.
        chief_ip: unsafe { opt_str_arg(c.chief_ip, "distributed.chief_ip") }?.map(str::to_owned),
        port,
        connect_timeout: seconds(
            c.connect_timeout_seconds,
            d.connect_timeout,
            "distributed.connect_timeout_seconds",
        )?,
        collective_timeout: seconds(
            c.collective_timeout_seconds,
            d.collective_timeout,
            "distributed.collective_timeout_seconds",
        )?,
        // SAFETY: job_id is NULL or a C string, per the struct's contract (a V1 struct has
        // none: read_sized left the default NULL).
        job_id: unsafe { opt_str_arg(c.job_id, "distributed.job_id") }?.map(str::to_owned),
    };
    cfg.validate()?;
    Ok(cfg)
}

/// Convert `det_init_options` into the core's options, checking every field.
///
/// # Safety
/// `p` must be a valid pointer to initialised options.
pub(crate) unsafe fn options_from_c(p: *const det_init_options) -> Result<InitOptions> {
    // SAFETY: this function's # Safety is `read_sized`'s: the pointers it passes on carry the same
    // guarantees.
    let o = unsafe {
        read_sized(
            p,
            defaults(),
            INIT_OPTIONS_V1_SIZE,
            INIT_OPTIONS_BOOLS,
            "det_init_options",
        )
    }?;
    let o = &o;
    let s = |ptr: *const c_char, what: &str| -> Result<Option<String>> {
        // SAFETY: each string field is NULL or a C string, per the struct's contract.
        Ok(unsafe { opt_str_arg(ptr, what) }?.map(str::to_owned))
    };
    let preempt_mode = enums::preempt_mode(o.preempt_mode, "opts.preempt_mode")?;
    let tensorboard_mode = enums::tensorboard_mode(o.tensorboard_mode, "opts.tensorboard_mode")?;
    let searcher_max_length = match o.searcher_max_length {
        0 => None,
        n if n > 0 => Some(n as u64),
        n => {
            bail!(
                InvalidArgument,
                "opts.searcher_max_length: {n} is negative (0 means the default)"
            )
        }
    };
    let preempt_signals = if o.disable_signal_handlers {
        Some(Vec::new())
    } else if o.preempt_signals.is_null() {
        if o.preempt_signals_len != 0 {
            bail!(
                InvalidArgument,
                "opts.preempt_signals is NULL but preempt_signals_len is not 0"
            );
        }
        None
    } else {
        // SAFETY: the caller guarantees preempt_signals_len readable entries.
        let sl = unsafe { std::slice::from_raw_parts(o.preempt_signals, o.preempt_signals_len) };
        Some(sl.to_vec())
    };
    let end_time = if o.end_time.is_nan() {
        bail!(InvalidArgument, "opts.end_time is NaN");
    } else if o.end_time > 0.0 {
        Some(o.end_time)
    } else {
        None
    };
    let halt_margin_seconds = if o.halt_margin_seconds.is_nan() {
        bail!(InvalidArgument, "opts.halt_margin_seconds is NaN");
    } else if o.halt_margin_seconds >= 0.0 {
        Some(o.halt_margin_seconds)
    } else {
        None
    };
    let distributed = if o.distributed.is_null() {
        None
    } else {
        // SAFETY: `distributed` is not NULL (tested above) and, by det_init_options' documented
        // contract, points to a config initialised with det_distributed_config_default.
        Some(unsafe { distributed_from_c(o.distributed) }?)
    };
    let count = |v: i32| (v >= 0).then_some(v as u32);
    let smaller_is_better = match o.smaller_is_better {
        v if v < 0 => None,
        0 => Some(false),
        1 => Some(true),
        v => {
            bail!(
                InvalidArgument,
                "opts.smaller_is_better: {v} is not 0, 1, or negative (the default)"
            )
        }
    };
    let searcher_metric = s(o.searcher_metric, "opts.searcher_metric")?;
    if searcher_metric.as_deref() == Some("") {
        bail!(
            InvalidArgument,
            "opts.searcher_metric is empty (NULL means the default)"
        );
    }
    let defaults = InitOptions::default();
    Ok(InitOptions {
        save_trial_latest: count(o.save_trial_latest),
        save_trial_best: count(o.save_trial_best),
        searcher_metric,
        smaller_is_better,
        checkpoint_storage: s(o.checkpoint_storage, "opts.checkpoint_storage")?,
        preempt_mode,
        tensorboard_mode,
        run_name: s(o.run_name, "opts.run_name")?,
        run_dir: s(o.run_dir, "opts.run_dir")?.map(PathBuf::from),
        hparams_json: s(o.hparams_json, "opts.hparams_json")?,
        searcher_max_length,
        preempt_signals,
        halt_file: s(o.halt_file, "opts.halt_file")?.map(PathBuf::from),
        end_time,
        halt_margin_seconds,
        async_checkpoints: o.async_checkpoints,
        distributed,
        cluster_info_dir: s(o.cluster_info_dir, "opts.cluster_info_dir")?.map(PathBuf::from),
        report_queue_capacity: match o.report_queue_capacity {
            0 => defaults.report_queue_capacity,
            n if n > crate::train::reporter::MAX_QUEUE_CAPACITY => {
                bail!(InvalidArgument, "opts.report_queue_capacity: {n} is more than the maximum {} (the queue's slots are allocated up front)",
                        crate::train::reporter::MAX_QUEUE_CAPACITY)
            }
            n => n,
        },
        close_timeout: seconds(
            o.close_timeout_seconds,
            defaults.close_timeout,
            "opts.close_timeout_seconds",
        )?,
        slurm_requeue: o.slurm_requeue,
        ..defaults
    })
}

/// Fill `cfg` with this process's ranks as `launcher` (a `DET_LAUNCHER_*` value) exported them.
/// `cfg` must have been initialised with `det_distributed_config_default`; its port and timeouts
/// are kept unless `DETCORE_CHIEF_PORT` or `INTER_TRAIN_PROCESS_COMM_PORT_1` is set. The chief's
/// address comes from `DET_CHIEF_IP` first. `job_id` is kept if set, else filled from
/// `DETCORE_JOB_ID`, else from the launcher (`slurm:<job>.<step>`, `openmpi:<PMIx namespace>`,
/// `torchrun:<run id>`, ...; left NULL where the launcher names no job). The strings `cfg`
/// points to (chief_ip, job_id) are owned by the library and stay valid until the process ends.
///
/// Errors (`DET_ERR_INVALID_ARGUMENT`) name the variable: `WORLD_SIZE is not set`,
/// `LOCAL_WORLD_SIZE=3 does not divide the world size 4`, `rank 4 must be less than size 4`,
/// and a Slurm batch script of several tasks (no `SLURM_STEP_ID`: start the ranks with srun).
///
/// # Safety
/// `cfg` must point to an initialised `det_distributed_config`.
#[no_mangle]
pub unsafe extern "C" fn det_distributed_from_env(
    launcher_kind: i32,
    cfg: *mut det_distributed_config,
) -> det_status {
    call("det_distributed_from_env", || {
        let l = enums::launcher(launcher_kind, "launcher")?;
        out_arg(cfg, "cfg")?;
        // SAFETY: `cfg` is not NULL (out_arg above) and points to a config initialised with
        // det_distributed_config_default (this function's # Safety).
        let base: DistributedConfig = unsafe { distributed_from_c(cfg) }?;
        let get = |k: &str| std::env::var(k).ok();
        let info = crate::cluster_info::info_dir(None);
        let c = from_env_or_info(l, &Env::new(&get), &base, Some(&info))?;
        let chief: *const c_char = match &c.chief_ip {
            Some(ip) => crate::intern::intern(ip)
                .map_err(|e| e.context("the chief address from the environment"))?
                .as_ptr(),
            None => std::ptr::null(),
        };
        let job: *const c_char = match &c.job_id {
            Some(j) => crate::intern::intern(j)
                .map_err(|e| e.context("the job identity from the environment"))?
                .as_ptr(),
            None => std::ptr::null(),
        };
        // SAFETY: cfg checked; its first field is its size.
        let size = unsafe { *(cfg as *const usize) };
        // SAFETY: cfg checked; we only write fields of the struct it points to.
        unsafe {
            (*cfg).rank = c.rank as i32;
            (*cfg).size = c.size as i32;
            (*cfg).local_rank = c.local_rank as i32;
            (*cfg).local_size = c.local_size as i32;
            (*cfg).cross_rank = c.cross_rank as i32;
            (*cfg).cross_size = c.cross_size as i32;
            (*cfg).chief_ip = chief;
            (*cfg).port = c.port as i32;
            // A struct of the first published size ends before job_id.
            if size
                >= std::mem::offset_of!(det_distributed_config, job_id)
                    + std::mem::size_of::<*const c_char>()
            {
                (*cfg).job_id = job;
            }
        }
        Ok(())
    })
}
