//! `det_info_*` and `det_dist_*` getters.

use super::boundary::{out_arg, owned_c_string, str_arg, with_ctx, write_out};
use super::handle::det_context;
use super::status::det_status;
use crate::json::{to_wire, Value};
use std::ffi::c_char;

/// `*out` = true when running under a Determined master.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_info_is_on_cluster(
    ctx: *const det_context,
    out: *mut bool,
) -> det_status {
    with_ctx("det_info_is_on_cluster", ctx, |c| {
        out_arg(out, "out")?;
        // SAFETY: checked.
        unsafe { write_out(out, c.info().on_cluster) };
        Ok(())
    })
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
    with_ctx("det_info_latest_checkpoint", ctx, |c| {
        out_arg(out, "out")?;
        let v = match &c.info().latest_checkpoint() {
            Some(id) => owned_c_string(id)?,
            None => std::ptr::null_mut(),
        };
        // SAFETY: checked.
        unsafe { write_out(out, v) };
        Ok(())
    })
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
    with_ctx("det_info_steps_completed", ctx, |c| {
        out_arg(out, "out")?;
        // SAFETY: checked.
        unsafe { write_out(out, c.info().steps_completed() as i64) };
        Ok(())
    })
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
    with_ctx("det_info_hparams_json", ctx, |c| {
        out_arg(out, "out")?;
        let s = owned_c_string(&to_wire(&Value::Object(c.info().hparams.clone())))?;
        // SAFETY: checked.
        unsafe { write_out(out, s) };
        Ok(())
    })
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
    with_ctx("det_info_get_hparam_f64", ctx, |c| {
        // SAFETY: contract.
        let name = unsafe { str_arg(name, "name") }?;
        out_arg(out, "out")?;
        let v = c.info().hparam_f64(name)?;
        // SAFETY: checked.
        unsafe { write_out(out, v) };
        Ok(())
    })
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
    with_ctx("det_info_get_hparam_i64", ctx, |c| {
        // SAFETY: contract.
        let name = unsafe { str_arg(name, "name") }?;
        out_arg(out, "out")?;
        let v = c.info().hparam_i64(name)?;
        // SAFETY: checked.
        unsafe { write_out(out, v) };
        Ok(())
    })
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
    with_ctx("det_info_get_hparam_str", ctx, |c| {
        // SAFETY: contract.
        let name = unsafe { str_arg(name, "name") }?;
        out_arg(out, "out")?;
        let v = owned_c_string(c.info().hparam_str(name)?)?;
        // SAFETY: checked.
        unsafe { write_out(out, v) };
        Ok(())
    })
}

/// `Ok(None)` for an absent hyperparameter, other errors unchanged.
fn absent_ok<T>(r: crate::error::Result<T>) -> crate::error::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == crate::error::Kind::NotFound => Ok(None),
        Err(e) => Err(e),
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
    with_ctx("det_info_get_hparam_f64_or", ctx, |c| {
        // SAFETY: contract.
        let name = unsafe { str_arg(name, "name") }?;
        out_arg(out, "out")?;
        let v = absent_ok(c.info().hparam_f64(name))?.unwrap_or(default_value);
        // SAFETY: checked.
        unsafe { write_out(out, v) };
        Ok(())
    })
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
    with_ctx("det_info_get_hparam_i64_or", ctx, |c| {
        // SAFETY: contract.
        let name = unsafe { str_arg(name, "name") }?;
        out_arg(out, "out")?;
        let v = absent_ok(c.info().hparam_i64(name))?.unwrap_or(default_value);
        // SAFETY: checked.
        unsafe { write_out(out, v) };
        Ok(())
    })
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
    with_ctx("det_info_get_hparam_str_or", ctx, |c| {
        // SAFETY: contract.
        let name = unsafe { str_arg(name, "name") }?;
        // SAFETY: contract.
        let default_value =
            unsafe { super::boundary::opt_str_arg(default_value, "default_value") }?;
        out_arg(out, "out")?;
        let v = match absent_ok(c.info().hparam_str(name))?.or(default_value) {
            Some(s) => owned_c_string(s)?,
            None => std::ptr::null_mut(),
        };
        // SAFETY: checked.
        unsafe { write_out(out, v) };
        Ok(())
    })
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
    with_ctx("det_info_run_name", ctx, |c| {
        out_arg(out, "out")?;
        let v = match &c.info().run_name {
            Some(n) => owned_c_string(n)?,
            None => std::ptr::null_mut(),
        };
        // SAFETY: checked.
        unsafe { write_out(out, v) };
        Ok(())
    })
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
    with_ctx("det_info_run_dir", ctx, |c| {
        out_arg(out, "out")?;
        let v = match &c.info().run_dir {
            Some(d) => owned_c_string(&d.to_string_lossy())?,
            None => std::ptr::null_mut(),
        };
        // SAFETY: checked.
        unsafe { write_out(out, v) };
        Ok(())
    })
}

/// This process's global rank (0 … size-1).
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_dist_rank(ctx: *const det_context, out: *mut i32) -> det_status {
    dist_get("det_dist_rank", ctx, out, |d| d.rank)
}

/// The number of processes in the job.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_dist_size(ctx: *const det_context, out: *mut i32) -> det_status {
    dist_get("det_dist_size", ctx, out, |d| d.size)
}

/// This process's rank on its node.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_dist_local_rank(ctx: *const det_context, out: *mut i32) -> det_status {
    dist_get("det_dist_local_rank", ctx, out, |d| d.local_rank)
}

/// The number of processes on this node.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_dist_local_size(ctx: *const det_context, out: *mut i32) -> det_status {
    dist_get("det_dist_local_size", ctx, out, |d| d.local_size)
}

/// The index of this process's node.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_dist_cross_rank(ctx: *const det_context, out: *mut i32) -> det_status {
    dist_get("det_dist_cross_rank", ctx, out, |d| d.cross_rank)
}

/// The number of nodes.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_dist_cross_size(ctx: *const det_context, out: *mut i32) -> det_status {
    dist_get("det_dist_cross_size", ctx, out, |d| d.cross_size)
}

fn dist_get(
    name: &'static str,
    ctx: *const det_context,
    out: *mut i32,
    f: impl FnOnce(&crate::distributed::DistributedConfig) -> u32,
) -> det_status {
    with_ctx(name, ctx, |c| {
        out_arg(out, "out")?;
        // SAFETY: checked.
        unsafe { write_out(out, f(c.distributed()) as i32) };
        Ok(())
    })
}
