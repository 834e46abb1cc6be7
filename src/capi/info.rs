//! `det_info_*`: what the context knows about this run (Determined's `ClusterInfo` and the
//! off-cluster run): hyperparameters, the checkpoint to resume from, the trial, task and
//! containers.
//!
//! The on-cluster getters fail with `DET_ERR_UNSUPPORTED` off-cluster (and the trial getters for
//! on-cluster tasks that are not trials), with a message saying so.

use super::boundary::{opt_str_arg, opt_string_out, str_arg, string_out, value_out};
use super::handle::det_context;
use super::status::det_status;
use crate::cluster_info::ClusterInfo;
use crate::context::Context;
use crate::error::Result;
use crate::json::{to_wire, Value};
use std::ffi::c_char;

fn cluster<'a>(c: &'a Context, what: &str) -> Result<&'a ClusterInfo> {
    c.info().cluster(what)
}

fn index<T: Clone>(items: &[T], index: usize, what: &str) -> Result<T> {
    items.get(index).cloned().ok_or_else(|| {
        err!(
            InvalidArgument,
            "index {index} is out of range ({} {what})",
            items.len()
        )
    })
}

/// `Ok(None)` for an absent hyperparameter, other errors unchanged.
fn absent_ok<T>(r: Result<T>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == crate::error::Kind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// `*out` = true when running under a Determined master.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_info_is_on_cluster(
    ctx: *const det_context,
    out: *mut bool,
) -> det_status {
    // SAFETY: `out` is NULL or writable (this function's # Safety).
    unsafe {
        value_out("det_info_is_on_cluster", ctx, out, |c| {
            Ok(c.info().on_cluster)
        })
    }
}

/// The storage id of the checkpoint to resume from, or NULL when there is none (a fresh start).
/// On-cluster it is the trial's latest checkpoint; off-cluster the run's newest complete one.
/// Off-cluster, when restoring it finds it damaged (a file that does not match the checkpoint's
/// manifest), the restore falls back to the newest older checkpoint that verifies, and this
/// returns that one from then on (see `det_ckpt_restore_path_begin`). Free a non-NULL result
/// with `det_string_free`.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_info_latest_checkpoint(
    ctx: *const det_context,
    out: *mut *mut c_char,
) -> det_status {
    // SAFETY: `out` is NULL or writable (this function's # Safety).
    unsafe {
        opt_string_out("det_info_latest_checkpoint", ctx, out, |c| {
            Ok(c.info().latest_checkpoint())
        })
    }
}

/// `steps_completed` of the checkpoint to resume from (0 without one).
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_info_steps_completed(
    ctx: *const det_context,
    out: *mut i64,
) -> det_status {
    // SAFETY: `out` is NULL or writable (this function's # Safety).
    unsafe {
        value_out("det_info_steps_completed", ctx, out, |c| {
            Ok(c.info().steps_completed() as i64)
        })
    }
}

/// All hyperparameters as a JSON object. Free with `det_string_free`.
///
/// Integers are kept exactly whatever their size (as Python keeps them); strings are written with
/// JSON escapes (`\u0000` for a NUL). Text that is not valid Unicode in the input (a lone UTF-16
/// surrogate such as `\ud800`, which Python keeps) comes back as U+FFFD, the replacement
/// character.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_info_hparams_json(
    ctx: *const det_context,
    out: *mut *mut c_char,
) -> det_status {
    // SAFETY: `out` is NULL or writable (this function's # Safety).
    unsafe {
        string_out("det_info_hparams_json", ctx, out, |c| {
            Ok(to_wire(&Value::Object(c.info().hparams.clone())))
        })
    }
}

/// One hyperparameter as a double (integers converted). `name` is a top-level key, or a dotted
/// path into nested objects (`"optimizer.lr"`). `DET_ERR_NOT_FOUND` if absent,
/// `DET_ERR_INVALID_ARGUMENT` if not a number.
///
/// # Safety
/// `name` must be a C string; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn det_info_get_hparam_f64(
    ctx: *const det_context,
    name: *const c_char,
    out: *mut f64,
) -> det_status {
    // SAFETY: `name` is NULL or a C string, `out` NULL or writable (this function's # Safety).
    unsafe {
        value_out("det_info_get_hparam_f64", ctx, out, |c| {
            let name = str_arg(name, "name")?;
            c.info().hparam_f64(name)
        })
    }
}

/// One hyperparameter as a 64-bit integer (a float with an integral value is accepted). An
/// integer outside the range of `int64_t` gives `DET_ERR_INVALID_ARGUMENT` (read it exactly with
/// `det_info_hparams_json`).
///
/// # Safety
/// `name` must be a C string; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn det_info_get_hparam_i64(
    ctx: *const det_context,
    name: *const c_char,
    out: *mut i64,
) -> det_status {
    // SAFETY: `name` is NULL or a C string, `out` NULL or writable (this function's # Safety).
    unsafe {
        value_out("det_info_get_hparam_i64", ctx, out, |c| {
            let name = str_arg(name, "name")?;
            c.info().hparam_i64(name)
        })
    }
}

/// One hyperparameter that is a string. Free the result with `det_string_free`.
/// `DET_ERR_INVALID_ARGUMENT` if it is not a string, or if it holds a NUL character (`\u0000`),
/// which a C string cannot hold (read it with `det_info_hparams_json`).
///
/// # Safety
/// `name` must be a C string; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn det_info_get_hparam_str(
    ctx: *const det_context,
    name: *const c_char,
    out: *mut *mut c_char,
) -> det_status {
    // SAFETY: `name` is NULL or a C string, `out` NULL or writable (this function's # Safety).
    unsafe {
        string_out("det_info_get_hparam_str", ctx, out, |c| {
            let name = str_arg(name, "name")?;
            c.info().hparam_str(name).map(str::to_owned)
        })
    }
}

/// As `det_info_get_hparam_f64`, with a default: `*out = default_value` when the hyperparameter
/// is absent. A value of another type (a string, `null`, an object) is still an error
/// (`DET_ERR_INVALID_ARGUMENT` naming it and its value), so a typo in a config is not silently
/// replaced by the default.
///
/// ```c
/// double lr;
/// DET_CHECK(det_info_get_hparam_f64_or(ctx, "optimizer.lr", 0.01, &lr));
/// ```
///
/// # Safety
/// `name` must be a C string; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn det_info_get_hparam_f64_or(
    ctx: *const det_context,
    name: *const c_char,
    default_value: f64,
    out: *mut f64,
) -> det_status {
    // SAFETY: `name` is NULL or a C string, `out` NULL or writable (this function's # Safety).
    unsafe {
        value_out("det_info_get_hparam_f64_or", ctx, out, |c| {
            let name = str_arg(name, "name")?;
            Ok(absent_ok(c.info().hparam_f64(name))?.unwrap_or(default_value))
        })
    }
}

/// As `det_info_get_hparam_i64`, with a default: `*out = default_value` when the hyperparameter
/// is absent; a value that is not an integer is an error (`DET_ERR_INVALID_ARGUMENT`).
///
/// # Safety
/// `name` must be a C string; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn det_info_get_hparam_i64_or(
    ctx: *const det_context,
    name: *const c_char,
    default_value: i64,
    out: *mut i64,
) -> det_status {
    // SAFETY: `name` is NULL or a C string, `out` NULL or writable (this function's # Safety).
    unsafe {
        value_out("det_info_get_hparam_i64_or", ctx, out, |c| {
            let name = str_arg(name, "name")?;
            Ok(absent_ok(c.info().hparam_i64(name))?.unwrap_or(default_value))
        })
    }
}

/// As `det_info_get_hparam_str`, with a default: when the hyperparameter is absent, `*out` is a
/// copy of `default_value` (or NULL when `default_value` is NULL); a value that is not a string
/// is an error (`DET_ERR_INVALID_ARGUMENT`). Free a non-NULL result with `det_string_free`.
///
/// # Safety
/// `name` must be a C string; `default_value` NULL or a C string; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn det_info_get_hparam_str_or(
    ctx: *const det_context,
    name: *const c_char,
    default_value: *const c_char,
    out: *mut *mut c_char,
) -> det_status {
    // SAFETY: `name` and `default_value` are NULL or C strings, `out` NULL or writable (this
    // function's # Safety).
    unsafe {
        opt_string_out("det_info_get_hparam_str_or", ctx, out, |c| {
            let name = str_arg(name, "name")?;
            let default_value = opt_str_arg(default_value, "default_value")?;
            Ok(absent_ok(c.info().hparam_str(name))?
                .or(default_value)
                .map(str::to_owned))
        })
    }
}

/// Off-cluster run name (NULL on-cluster). Free with `det_string_free`.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_info_run_name(
    ctx: *const det_context,
    out: *mut *mut c_char,
) -> det_status {
    // SAFETY: `out` is NULL or writable (this function's # Safety).
    unsafe {
        opt_string_out("det_info_run_name", ctx, out, |c| {
            Ok(c.info().run_name.clone())
        })
    }
}

/// Off-cluster run folder, an absolute path (NULL on-cluster). Free with `det_string_free`.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_info_run_dir(
    ctx: *const det_context,
    out: *mut *mut c_char,
) -> det_status {
    // SAFETY: `out` is NULL or writable (this function's # Safety).
    unsafe {
        opt_string_out("det_info_run_dir", ctx, out, |c| {
            Ok(c.info()
                .run_dir
                .as_ref()
                .map(|d| d.to_string_lossy().into_owned()))
        })
    }
}

/// The trial's id (`info.trial.trial_id`). The run id used by run metadata is the same number.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_info_trial_id(ctx: *const det_context, out: *mut i64) -> det_status {
    // SAFETY: `out` is NULL or writable (this function's # Safety).
    unsafe {
        value_out("det_info_trial_id", ctx, out, |c| {
            Ok(c.info().trial("the trial id")?.trial_id)
        })
    }
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
    // SAFETY: `out` is NULL or writable (this function's # Safety).
    unsafe {
        value_out("det_info_experiment_id", ctx, out, |c| {
            Ok(c.info().trial("the experiment id")?.experiment_id)
        })
    }
}

/// The trial's random seed (`info.trial.trial_seed`), a 32-bit unsigned integer.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_info_trial_seed(ctx: *const det_context, out: *mut u32) -> det_status {
    // SAFETY: `out` is NULL or writable (this function's # Safety).
    unsafe {
        value_out("det_info_trial_seed", ctx, out, |c| {
            Ok(c.info().trial("the trial seed")?.trial_seed)
        })
    }
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
    // SAFETY: `out` is NULL or writable (this function's # Safety).
    unsafe {
        value_out("det_info_trial_run_id", ctx, out, |c| {
            Ok(c.info().trial("the trial run id")?.trial_run_id)
        })
    }
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
    // SAFETY: `out` is NULL or writable (this function's # Safety).
    unsafe {
        string_out("det_info_experiment_config_json", ctx, out, |c| {
            Ok(to_wire(&Value::Object(
                c.info().trial("the experiment config")?.config.clone(),
            )))
        })
    }
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
    // SAFETY: `out` is NULL or writable (this function's # Safety).
    unsafe {
        string_out("det_info_user_data_json", ctx, out, |c| {
            Ok(to_wire(&cluster(c, "user data")?.user_data()))
        })
    }
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
    // SAFETY: `out` is NULL or writable (this function's # Safety).
    unsafe {
        string_out("det_info_task_type", ctx, out, |c| {
            Ok(cluster(c, "the task type")?.task_type.clone())
        })
    }
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
    // SAFETY: `out` is NULL or writable (this function's # Safety).
    unsafe {
        string_out("det_info_task_id", ctx, out, |c| {
            Ok(cluster(c, "the task id")?.task_id.clone())
        })
    }
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
    // SAFETY: `out` is NULL or writable (this function's # Safety).
    unsafe {
        string_out("det_info_allocation_id", ctx, out, |c| {
            Ok(cluster(c, "the allocation id")?.allocation_id.clone())
        })
    }
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
    // SAFETY: `out` is NULL or writable (this function's # Safety).
    unsafe {
        string_out("det_info_cluster_id", ctx, out, |c| {
            Ok(cluster(c, "the cluster id")?.cluster_id.clone())
        })
    }
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
    // SAFETY: `out` is NULL or writable (this function's # Safety).
    unsafe {
        string_out("det_info_agent_id", ctx, out, |c| {
            Ok(cluster(c, "the agent id")?.agent_id.clone())
        })
    }
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
    // SAFETY: `out` is NULL or writable (this function's # Safety).
    unsafe {
        string_out("det_info_master_url", ctx, out, |c| match c.master() {
            Some(m) => Ok(m.url().canonical()),
            None => Err(err!(
                Unsupported,
                "the master URL is only known on-cluster (no cluster.json was found at init)"
            )),
        })
    }
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
    // SAFETY: `out` is NULL or writable (this function's # Safety).
    unsafe {
        value_out("det_info_container_count", ctx, out, |c| {
            Ok(cluster(c, "the containers")?.container_addrs().len())
        })
    }
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
    // SAFETY: `out` is NULL or writable (this function's # Safety).
    unsafe {
        string_out("det_info_container_addr", ctx, out, |c| {
            self::index(
                &cluster(c, "the containers")?.container_addrs(),
                index,
                "containers",
            )
        })
    }
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
    // SAFETY: `out` is NULL or writable (this function's # Safety).
    unsafe {
        value_out("det_info_container_slot_count", ctx, out, |c| {
            let n = self::index(
                &cluster(c, "the containers")?.container_slot_counts(),
                index,
                "containers",
            )?;
            Ok(n as i32)
        })
    }
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
    // SAFETY: `out` is NULL or writable (this function's # Safety).
    unsafe {
        value_out("det_info_container_rank", ctx, out, |c| {
            Ok(cluster(c, "the container rank")?.container_rank() as i32)
        })
    }
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
    // SAFETY: `out` is NULL or writable (this function's # Safety).
    unsafe {
        value_out("det_info_slot_id_count", ctx, out, |c| {
            Ok(cluster(c, "the slot ids")?.slot_ids.len())
        })
    }
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
    // SAFETY: `out` is NULL or writable (this function's # Safety).
    unsafe {
        value_out("det_info_slot_id", ctx, out, |c| {
            Ok(self::index(&cluster(c, "the slot ids")?.slot_ids, index, "slots")? as i32)
        })
    }
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
    // SAFETY: `out` is NULL or writable (this function's # Safety).
    unsafe {
        value_out("det_info_gpu_uuid_count", ctx, out, |c| {
            Ok(cluster(c, "the GPU UUIDs")?.gpu_uuids().len())
        })
    }
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
    // SAFETY: `out` is NULL or writable (this function's # Safety).
    unsafe {
        string_out("det_info_gpu_uuid", ctx, out, |c| {
            self::index(&cluster(c, "the GPU UUIDs")?.gpu_uuids(), index, "GPUs")
        })
    }
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
    // SAFETY: `out` is NULL or writable (this function's # Safety).
    unsafe {
        value_out("det_info_trial_debug", ctx, out, |c| {
            Ok(c.info().trial("the debug flag")?.debug)
        })
    }
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
    // SAFETY: `out` is NULL or writable (this function's # Safety).
    unsafe {
        opt_string_out("det_info_inter_node_network_interface", ctx, out, |c| {
            Ok(c.info()
                .trial("the inter-node network interface")?
                .inter_node_network_interface
                .clone())
        })
    }
}
