//! On-cluster information (`det_info_*` of Determined's `ClusterInfo`) and `det_core_alert`.
//!
//! Every getter here fails with `DET_ERR_UNSUPPORTED` off-cluster (and the trial getters for
//! on-cluster tasks that are not trials), with a message saying so.

use super::boundary::{opt_str_arg, out_arg, owned_c_string, str_arg, with_ctx, write_out};
use super::handle::det_context;
use super::status::det_status;
use crate::cluster_info::ClusterInfo;
use crate::context::Context;
use crate::error::{Error, Kind, Result};
use crate::json::{to_wire, Value};
use crate::master::AlertLevel;
use std::ffi::c_char;

/// `det_core_alert` level: `"info"` (`LOG_LEVEL_INFO`), the default.
pub const DET_ALERT_LEVEL_INFO: i32 = 0;
/// `det_core_alert` level: `"warn"` (`LOG_LEVEL_WARNING`).
pub const DET_ALERT_LEVEL_WARN: i32 = 1;
/// `det_core_alert` level: `"debug"` (`LOG_LEVEL_DEBUG`).
pub const DET_ALERT_LEVEL_DEBUG: i32 = 2;
/// `det_core_alert` level: `"error"` (`LOG_LEVEL_ERROR`).
pub const DET_ALERT_LEVEL_ERROR: i32 = 3;

fn string_out(
    name: &'static str,
    ctx: *const det_context,
    out: *mut *mut c_char,
    f: impl FnOnce(&Context) -> Result<String>,
) -> det_status {
    with_ctx(name, ctx, |c| {
        out_arg(out, "out")?;
        let s = owned_c_string(&f(c)?)?;
        // SAFETY: checked.
        unsafe { write_out(out, s) };
        Ok(())
    })
}

fn value_out<T>(
    name: &'static str,
    ctx: *const det_context,
    out: *mut T,
    f: impl FnOnce(&Context) -> Result<T>,
) -> det_status {
    with_ctx(name, ctx, |c| {
        out_arg(out, "out")?;
        let v = f(c)?;
        // SAFETY: checked.
        unsafe { write_out(out, v) };
        Ok(())
    })
}

fn cluster<'a>(c: &'a Context, what: &str) -> Result<&'a ClusterInfo> {
    c.info().cluster(what)
}

fn index<T: Clone>(items: &[T], index: usize, what: &str) -> Result<T> {
    items.get(index).cloned().ok_or_else(|| {
        Error::new(
            Kind::InvalidArgument,
            format!("index {index} is out of range ({} {what})", items.len()),
        )
    })
}

/// The trial's id (`info.trial.trial_id`). The run id used by run metadata is the same number.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_info_trial_id(ctx: *const det_context, out: *mut i64) -> det_status {
    value_out("det_info_trial_id", ctx, out, |c| {
        Ok(c.info().trial("the trial id")?.trial_id)
    })
}

/// The experiment's id (`info.trial.experiment_id`).
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_info_experiment_id(
    ctx: *const det_context,
    out: *mut i64,
) -> det_status {
    value_out("det_info_experiment_id", ctx, out, |c| {
        Ok(c.info().trial("the experiment id")?.experiment_id)
    })
}

/// The trial's random seed (`info.trial.trial_seed`), a 32-bit unsigned integer.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_info_trial_seed(ctx: *const det_context, out: *mut u32) -> det_status {
    value_out("det_info_trial_seed", ctx, out, |c| {
        Ok(c.info().trial("the trial seed")?.trial_seed)
    })
}

/// The trial's run id: 1 for the first allocation of the trial, incremented by the master for
/// every new allocation (restart after a failure or a preemption).
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_info_trial_run_id(
    ctx: *const det_context,
    out: *mut i64,
) -> det_status {
    value_out("det_info_trial_run_id", ctx, out, |c| {
        Ok(c.info().trial("the trial run id")?.trial_run_id)
    })
}

/// The experiment config, as the master sent it (fully defaulted), as a JSON object. Its shape
/// may change between Determined versions; prefer hparams and `det_info_user_data_json`.
/// Free with `det_string_free`.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_info_experiment_config_json(
    ctx: *const det_context,
    out: *mut *mut c_char,
) -> det_status {
    string_out("det_info_experiment_config_json", ctx, out, |c| {
        Ok(to_wire(&Value::Object(
            c.info().trial("the experiment config")?.config.clone(),
        )))
    })
}

/// The `data` field of the experiment config (Python's `info.user_data`), as JSON; `{}` when
/// absent or for non-trial tasks. Free with `det_string_free`.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_info_user_data_json(
    ctx: *const det_context,
    out: *mut *mut c_char,
) -> det_status {
    string_out("det_info_user_data_json", ctx, out, |c| {
        Ok(to_wire(&cluster(c, "user data")?.user_data()))
    })
}

/// The task type: `"TRIAL"`, `"NOTEBOOK"`, `"SHELL"`, `"COMMAND"`, `"TENSORBOARD"`,
/// `"CHECKPOINT_GC"`, ... Free with `det_string_free`.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_info_task_type(
    ctx: *const det_context,
    out: *mut *mut c_char,
) -> det_status {
    string_out("det_info_task_type", ctx, out, |c| {
        Ok(cluster(c, "the task type")?.task_type.clone())
    })
}

/// The task's id. Free with `det_string_free`.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_info_task_id(
    ctx: *const det_context,
    out: *mut *mut c_char,
) -> det_status {
    string_out("det_info_task_id", ctx, out, |c| {
        Ok(cluster(c, "the task id")?.task_id.clone())
    })
}

/// The allocation's id (changes with every restart of the trial). Free with `det_string_free`.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_info_allocation_id(
    ctx: *const det_context,
    out: *mut *mut c_char,
) -> det_status {
    string_out("det_info_allocation_id", ctx, out, |c| {
        Ok(cluster(c, "the allocation id")?.allocation_id.clone())
    })
}

/// The cluster's id. Free with `det_string_free`.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_info_cluster_id(
    ctx: *const det_context,
    out: *mut *mut c_char,
) -> det_status {
    string_out("det_info_cluster_id", ctx, out, |c| {
        Ok(cluster(c, "the cluster id")?.cluster_id.clone())
    })
}

/// The id of the agent (node) this container runs on. Free with `det_string_free`.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_info_agent_id(
    ctx: *const det_context,
    out: *mut *mut c_char,
) -> det_status {
    string_out("det_info_agent_id", ctx, out, |c| {
        Ok(cluster(c, "the agent id")?.agent_id.clone())
    })
}

/// The master's URL, canonical (`scheme://host:port[/prefix]`). Free with `det_string_free`.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_info_master_url(
    ctx: *const det_context,
    out: *mut *mut c_char,
) -> det_status {
    string_out("det_info_master_url", ctx, out, |c| match c.master() {
        Some(m) => Ok(m.url().canonical()),
        None => Err(Error::new(
            Kind::Unsupported,
            "the master URL is only known on-cluster (no cluster.json was found at init)",
        )),
    })
}

/// The number of containers of the allocation (1 for non-trial tasks).
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_info_container_count(
    ctx: *const det_context,
    out: *mut usize,
) -> det_status {
    value_out("det_info_container_count", ctx, out, |c| {
        Ok(cluster(c, "the containers")?.container_addrs().len())
    })
}

/// The address of container `index` (0 … count-1, in container-rank order; `"127.0.0.1"` for
/// non-trial tasks). Container 0's address is the chief's (`chief_ip` of a distributed job).
/// Free with `det_string_free`.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_info_container_addr(
    ctx: *const det_context,
    index: usize,
    out: *mut *mut c_char,
) -> det_status {
    string_out("det_info_container_addr", ctx, out, |c| {
        self::index(
            &cluster(c, "the containers")?.container_addrs(),
            index,
            "containers",
        )
    })
}

/// The number of slots (GPUs) of container `index`.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_info_container_slot_count(
    ctx: *const det_context,
    index: usize,
    out: *mut i32,
) -> det_status {
    value_out("det_info_container_slot_count", ctx, out, |c| {
        let n = self::index(
            &cluster(c, "the containers")?.container_slot_counts(),
            index,
            "containers",
        )?;
        Ok(n as i32)
    })
}

/// This container's rank among the allocation's containers (0 for non-trial tasks).
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_info_container_rank(
    ctx: *const det_context,
    out: *mut i32,
) -> det_status {
    value_out("det_info_container_rank", ctx, out, |c| {
        Ok(cluster(c, "the container rank")?.container_rank() as i32)
    })
}

/// The number of slots assigned to this container.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_info_slot_id_count(
    ctx: *const det_context,
    out: *mut usize,
) -> det_status {
    value_out("det_info_slot_id_count", ctx, out, |c| {
        Ok(cluster(c, "the slot ids")?.slot_ids.len())
    })
}

/// Slot id `index` of this container (0 … count-1).
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_info_slot_id(
    ctx: *const det_context,
    index: usize,
    out: *mut i32,
) -> det_status {
    value_out("det_info_slot_id", ctx, out, |c| {
        Ok(self::index(&cluster(c, "the slot ids")?.slot_ids, index, "slots")? as i32)
    })
}

/// The number of GPU UUIDs of this container (0 without `resources.json`).
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_info_gpu_uuid_count(
    ctx: *const det_context,
    out: *mut usize,
) -> det_status {
    value_out("det_info_gpu_uuid_count", ctx, out, |c| {
        Ok(cluster(c, "the GPU UUIDs")?.gpu_uuids().len())
    })
}

/// GPU UUID `index` of this container. Free with `det_string_free`.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_info_gpu_uuid(
    ctx: *const det_context,
    index: usize,
    out: *mut *mut c_char,
) -> det_status {
    string_out("det_info_gpu_uuid", ctx, out, |c| {
        self::index(&cluster(c, "the GPU UUIDs")?.gpu_uuids(), index, "GPUs")
    })
}

/// The trial's `debug` flag, from the experiment config (Python's `info.trial._debug`).
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_info_trial_debug(
    ctx: *const det_context,
    out: *mut bool,
) -> det_status {
    value_out("det_info_trial_debug", ctx, out, |c| {
        Ok(c.info().trial("the debug flag")?.debug)
    })
}

/// The network interface the experiment config names for traffic between nodes
/// (`DET_INTER_NODE_NETWORK_INTERFACE`; Python's `info.trial._inter_node_network_interface`), or
/// NULL when none is set. Free a non-NULL result with `det_string_free`.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_info_inter_node_network_interface(
    ctx: *const det_context,
    out: *mut *mut c_char,
) -> det_status {
    with_ctx("det_info_inter_node_network_interface", ctx, |c| {
        out_arg(out, "out")?;
        let v = match &c
            .info()
            .trial("the inter-node network interface")?
            .inter_node_network_interface
        {
            Some(s) => owned_c_string(s)?,
            None => std::ptr::null_mut(),
        };
        // SAFETY: checked.
        unsafe { write_out(out, v) };
        Ok(())
    })
}

/// `determined.get_cluster_info()`, without a context: reads the info files of the task
/// container — `cluster.json` and its companions `trial.json`, `rendezvous.json`,
/// `resources.json` — from `info_dir` (NULL: `$DET_CLUSTER_INFO_DIR`, else
/// `/run/determined/info`, as `det_core_init` chooses), checks them as `det_core_init` does, and
/// returns them as one JSON object in `*out`: the keys of `cluster.json` (`master_url`
/// canonical), then `"trial"`, `"rendezvous"` and `"resources"` (each `null` when its file is
/// absent). Off-cluster (no `cluster.json`) `*out` is set to NULL and `DET_OK` returned. A broken
/// file is `DET_ERR_INVALID_ARGUMENT` naming the file and the key. The object holds the task's
/// session token (`"session_token"`), a credential: do not log it. Free a non-NULL result with
/// `det_string_free`. Thread-safe.
///
/// # Safety
/// `info_dir` must be NULL or a C string; `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_cluster_info_json(
    info_dir: *const c_char,
    out: *mut *mut c_char,
) -> det_status {
    super::boundary::call("det_cluster_info_json", || {
        // SAFETY: contract.
        let dir = unsafe { opt_str_arg(info_dir, "info_dir") }?;
        out_arg(out, "out")?;
        let dir = crate::cluster_info::info_dir(dir.map(std::path::Path::new));
        let v = if crate::cluster_info::is_on_cluster(&dir) {
            let json = ClusterInfo::load(&dir)?.to_json()?;
            owned_c_string(&to_wire(&json))?
        } else {
            std::ptr::null_mut()
        };
        // SAFETY: checked.
        unsafe { write_out(out, v) };
        Ok(())
    })
}

/// `Context.alert(title, description, level)`: fire the experiment's custom webhooks
/// (`POST /api/v1/webhooks/custom`). `title` and `description` may be NULL (empty strings);
/// `level` is a `DET_ALERT_LEVEL_*` value. Synchronous: returns once the master accepted it
/// (`DET_ERR_MASTER`/`DET_ERR_TIMEOUT` otherwise). Off-cluster the alert is logged at its level
/// and `DET_OK` returned; on-cluster tasks that are not trials get `DET_ERR_UNSUPPORTED`.
///
/// # Safety
/// `title` and `description` must be NULL or C strings.
#[no_mangle]
pub unsafe extern "C" fn det_core_alert(
    ctx: *mut det_context,
    title: *const c_char,
    description: *const c_char,
    level: i32,
) -> det_status {
    with_ctx("det_core_alert", ctx, |c| {
        // SAFETY: contract.
        let title = unsafe { opt_str_arg(title, "title") }?;
        // SAFETY: contract.
        let description = unsafe { opt_str_arg(description, "description") }?;
        let level = match level {
            DET_ALERT_LEVEL_INFO => AlertLevel::Info,
            DET_ALERT_LEVEL_WARN => AlertLevel::Warning,
            DET_ALERT_LEVEL_DEBUG => AlertLevel::Debug,
            DET_ALERT_LEVEL_ERROR => AlertLevel::Error,
            v => {
                return Err(Error::new(
                    Kind::InvalidArgument,
                    format!("level: unknown value {v} (expected a DET_ALERT_LEVEL_* constant)"),
                ))
            }
        };
        c.alert(title, description, level)
    })
}

/// `core_context.experimental.report_task_using_checkpoint(checkpoint)`: record that this trial
/// uses checkpoint `checkpoint_uuid` (e.g. for batch inference), so that the metrics it reports
/// are listed with that checkpoint (`POST /api/v1/trial-source-info`, as an inference source).
/// Synchronous: returns once the master accepted it (`DET_ERR_MASTER`/`DET_ERR_TIMEOUT`
/// otherwise). Off-cluster, and on-cluster in tasks that are not trials, there is nothing to
/// record: a log line says so and `DET_OK` is returned (Python's dummy context does nothing).
/// `DET_ERR_INVALID_ARGUMENT` for a NULL, empty or non-UTF-8 `checkpoint_uuid`. Any rank may
/// call it; thread-safe.
///
/// # Safety
/// `checkpoint_uuid` must be a C string.
#[no_mangle]
pub unsafe extern "C" fn det_experimental_report_task_using_checkpoint(
    ctx: *mut det_context,
    checkpoint_uuid: *const c_char,
) -> det_status {
    with_ctx("det_experimental_report_task_using_checkpoint", ctx, |c| {
        // SAFETY: contract.
        let uuid = unsafe { str_arg(checkpoint_uuid, "checkpoint_uuid") }?;
        c.report_task_using(uuid, None)
    })
}

/// `core_context.experimental.report_task_using_model_version(model_version)`: as
/// `det_experimental_report_task_using_checkpoint` for the checkpoint of a model version, also
/// recording the model's id (`model_id`) and the version's number (`model_version`), as the
/// master's model registry numbers them.
///
/// # Safety
/// `checkpoint_uuid` must be a C string.
#[no_mangle]
pub unsafe extern "C" fn det_experimental_report_task_using_model_version(
    ctx: *mut det_context,
    checkpoint_uuid: *const c_char,
    model_id: i32,
    model_version: i32,
) -> det_status {
    with_ctx(
        "det_experimental_report_task_using_model_version",
        ctx,
        |c| {
            // SAFETY: contract.
            let uuid = unsafe { str_arg(checkpoint_uuid, "checkpoint_uuid") }?;
            c.report_task_using(uuid, Some((model_id as i64, model_version as i64)))
        },
    )
}
