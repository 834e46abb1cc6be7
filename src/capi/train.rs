//! `det_train_*`: metrics, training status, run metadata and the run's TensorBoard files.

use super::boundary::{
    json_object_arg, opt_str_arg, out_arg, owned_c_string, str_arg, with_ctx, write_out,
};
use super::ckpt::det_selector_fn;
use super::enums;
use super::handle::det_context;
use super::status::det_status;
use crate::error::Result;
use crate::json::{Map, Value};
use crate::train::Metrics;
use std::ffi::{c_char, c_void, CStr, CString};

fn steps_arg(steps: i64) -> Result<u64> {
    u64::try_from(steps).map_err(|_| err!(InvalidArgument, "steps_completed: {steps} is negative"))
}

/// Parse `batch_metrics_json`: NULL, or a JSON array of objects.
///
/// # Safety
/// `p` must be NULL or a NUL-terminated string.
unsafe fn batch_arg(p: *const c_char) -> Result<Option<Vec<Map>>> {
    // SAFETY: `p` is NULL or a NUL-terminated string that stays valid during the call (the
    // caller's guarantee in this function's # Safety).
    let Some(text) = (unsafe { opt_str_arg(p, "batch_metrics_json") })? else {
        return Ok(None);
    };
    match crate::json::parse(text).map_err(|e| e.context("batch_metrics_json"))? {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::Object(m) => Ok(m),
                other => Err(err!(
                    InvalidArgument,
                    "batch_metrics_json[{i}]: expected a JSON object, got {}",
                    other.type_name()
                )),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some),
        other => Err(err!(
            InvalidArgument,
            "batch_metrics_json: expected a JSON array of objects, got {}",
            other.type_name()
        )),
    }
}

/// `report_training_metrics(steps_completed, metrics, batch_metrics)`: `metrics_json` is a JSON
/// object (numbers, strings, nested objects); non-finite numbers may be written as Python does
/// (`NaN`, `Infinity`, `-Infinity`) or as C's `printf` does (`nan`, `-nan`, `inf`, `-inf`,
/// `infinity`, in any case), and reach the master as the strings `"NaN"`, `"Infinity"`,
/// `"-Infinity"`, as Determined's Python client sends them;
/// `batch_metrics_json` NULL or a JSON array of objects. Queued for the background reporter;
/// returns without waiting on disk or network (it waits only when the report queue is full).
/// A delivery failure of an earlier report (refused by the master, or not delivered after the
/// retry policy's attempts) is returned, once, by the next report call — the report given to that
/// call is queued nevertheless. On-cluster each report becomes one `POST
/// /api/v1/trials/<id>/metrics`, sent in order by a background thread that keeps retrying while
/// the master is unreachable; at most `report_queue_capacity` reports (default 16384) wait in
/// memory, beyond that the call blocks (a warning says so once) rather than drop data.
///
/// # Safety
/// `metrics_json` must be a C string; `batch_metrics_json` NULL or a C string.
#[no_mangle]
pub unsafe extern "C" fn det_train_report_training_metrics(
    ctx: *mut det_context,
    steps_completed: i64,
    metrics_json: *const c_char,
    batch_metrics_json: *const c_char,
) -> det_status {
    with_ctx("det_train_report_training_metrics", ctx, |c| {
        let steps = steps_arg(steps_completed)?;
        // SAFETY: `metrics_json` is NULL or a NUL-terminated string that stays valid during the
        // call (the caller's guarantee in this function's # Safety).
        let m = unsafe { json_object_arg(metrics_json, "metrics_json") }?;
        // SAFETY: `batch_metrics_json` is NULL or a NUL-terminated string (the caller's guarantee
        // in this function's # Safety).
        let b = unsafe { batch_arg(batch_metrics_json) }?;
        c.train()
            .report_training_metrics(steps, Metrics::Json(m), b)
    })
}

/// `report_validation_metrics(steps_completed, metrics)`: as the training form; a `null` value
/// is refused (`DET_ERR_INVALID_ARGUMENT`), as in Python.
///
/// # Safety
/// `metrics_json` must be a C string.
#[no_mangle]
pub unsafe extern "C" fn det_train_report_validation_metrics(
    ctx: *mut det_context,
    steps_completed: i64,
    metrics_json: *const c_char,
) -> det_status {
    with_ctx("det_train_report_validation_metrics", ctx, |c| {
        let steps = steps_arg(steps_completed)?;
        // SAFETY: `metrics_json` is NULL or a NUL-terminated string that stays valid during the
        // call (the caller's guarantee in this function's # Safety).
        let m = unsafe { json_object_arg(metrics_json, "metrics_json") }?;
        c.train().report_validation_metrics(steps, Metrics::Json(m))
    })
}

/// `report_metrics(group, steps_completed, metrics)`: a custom group (non-empty, no `.`, as the
/// master requires); `"training"` and `"validation"` behave as their own functions.
///
/// # Safety
/// `group` and `metrics_json` must be C strings.
#[no_mangle]
pub unsafe extern "C" fn det_train_report_metrics(
    ctx: *mut det_context,
    group: *const c_char,
    steps_completed: i64,
    metrics_json: *const c_char,
) -> det_status {
    with_ctx("det_train_report_metrics", ctx, |c| {
        // SAFETY: `group` is NULL or a NUL-terminated string that stays valid during the call (the
        // caller's guarantee in this function's # Safety).
        let group = unsafe { str_arg(group, "group") }?;
        let steps = steps_arg(steps_completed)?;
        // SAFETY: `metrics_json` is NULL or a NUL-terminated string that stays valid during the
        // call (the caller's guarantee in this function's # Safety).
        let m = unsafe { json_object_arg(metrics_json, "metrics_json") }?;
        c.train().report_metrics(group, steps, Metrics::Json(m))
    })
}

/// The typed fast path: report `n` scalar metrics `names[i] = values[i]` to `group`
/// (`"training"`, `"validation"` or a custom group) without formatting JSON. NaN and ±Inf are
/// allowed. With `n == 0`, `names` and `values` may be NULL. The arrays are copied.
///
/// # Safety
/// `group` must be a C string; `names` and `values` must hold `n` entries, each name a C string.
#[no_mangle]
pub unsafe extern "C" fn det_train_report_scalars(
    ctx: *mut det_context,
    group: *const c_char,
    steps_completed: i64,
    names: *const *const c_char,
    values: *const f64,
    n: usize,
) -> det_status {
    with_ctx("det_train_report_scalars", ctx, |c| {
        // SAFETY: `group` is NULL or a NUL-terminated string that stays valid during the call (the
        // caller's guarantee in this function's # Safety).
        let group = unsafe { str_arg(group, "group") }?;
        let steps = steps_arg(steps_completed)?;
        if n > 0 && names.is_null() {
            bail!(InvalidArgument, "names is NULL");
        }
        if n > 0 && values.is_null() {
            bail!(InvalidArgument, "values is NULL");
        }
        let (names, values) = if n == 0 {
            (&[][..], &[][..])
        } else {
            // SAFETY: both arrays hold n entries per the contract.
            unsafe {
                (
                    std::slice::from_raw_parts(names, n),
                    std::slice::from_raw_parts(values, n),
                )
            }
        };
        let mut strs: [&str; 8] = [""; 8];
        let mut heap = Vec::new();
        let store: &mut [&str] = if n <= 8 {
            &mut strs[..n]
        } else {
            heap.resize(n, "");
            &mut heap[..]
        };
        for (i, &p) in names.iter().enumerate() {
            if p.is_null() {
                bail!(InvalidArgument, "names[{i}] is NULL");
            }
            // SAFETY: `p` is not NULL (tested above) and, by this function's # Safety, each of the `n`
            // names is a NUL-terminated string.
            let b = unsafe { CStr::from_ptr(p) }.to_bytes();
            store[i] = std::str::from_utf8(b)
                .map_err(|_| err!(InvalidArgument, "names[{i}] is not valid UTF-8"))?;
        }
        c.train()
            .report_metrics(group, steps, Metrics::scalars(store, values))
    })
}

/// `set_status(status)`: the trial's runner state shown in the WebUI. On-cluster it is queued in
/// order with the metrics (`POST /api/v1/trials/<id>/runner/metadata` from the background
/// thread), so the call never waits on the network (off-cluster: logged and
/// written to `metrics.jsonl`).
///
/// # Safety
/// `status` must be a C string.
#[no_mangle]
pub unsafe extern "C" fn det_train_set_status(
    ctx: *mut det_context,
    status: *const c_char,
) -> det_status {
    with_ctx("det_train_set_status", ctx, |c| {
        // SAFETY: `status` is NULL or a NUL-terminated string that stays valid during the call
        // (the caller's guarantee in this function's # Safety).
        let s = unsafe { str_arg(status, "status") }?;
        c.train().set_status(s)
    })
}

/// `report_progress(progress)`: the trial's progress, `0 <= progress <= 1`. On-cluster it is
/// queued in order with the metrics (`POST /api/v1/trials/<id>/progress`); the call never waits
/// on the network.
#[no_mangle]
pub extern "C" fn det_train_report_progress(ctx: *mut det_context, progress: f64) -> det_status {
    with_ctx("det_train_report_progress", ctx, |c| {
        c.train().report_progress(progress)
    })
}

/// `report_early_exit(reason)`: `DET_EARLY_EXIT_INVALID_HP` says the hyperparameters cannot
/// work; exit with code 0 afterwards and the trial ends as completed (the master kills the
/// allocation 10 s after the report if it is still running). On-cluster the call first delivers
/// the reports queued before it (at most the close timeout), then sends the reason and waits for
/// the master's answer: `DET_ERR_MASTER` if refused (e.g. reported twice).
#[no_mangle]
pub extern "C" fn det_train_report_early_exit(ctx: *mut det_context, reason: i32) -> det_status {
    with_ctx("det_train_report_early_exit", ctx, |c| {
        let r = enums::early_exit_reason(reason, "reason")?;
        c.train().report_early_exit(r)
    })
}

/// `get_experiment_best_validation()`: the experiment's best searcher metric so far.
/// `*found` = false when there is none yet (always off-cluster); `*out` is then 0.
///
/// # Safety
/// `found` and `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_train_get_experiment_best_validation(
    ctx: *mut det_context,
    found: *mut bool,
    out: *mut f64,
) -> det_status {
    with_ctx("det_train_get_experiment_best_validation", ctx, |c| {
        out_arg(found, "found")?;
        out_arg(out, "out")?;
        let v = c.train().get_experiment_best_validation()?;
        // SAFETY: `found` is not NULL (out_arg above) and points to writable storage (the caller's
        // guarantee in this function's # Safety).
        unsafe {
            write_out(found, v.is_some());
            write_out(out, v.unwrap_or(0.0));
        }
        Ok(())
    })
}

/// Merge `metadata_json` (a JSON object) into the run's metadata; `*out` (if not NULL)
/// receives the resulting metadata, freed with `det_string_free`. Off-cluster it is kept in
/// `<run_dir>/run_metadata.json`.
///
/// # Safety
/// `metadata_json` must be a C string; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn det_train_set_run_metadata(
    ctx: *mut det_context,
    metadata_json: *const c_char,
    out: *mut *mut c_char,
) -> det_status {
    with_ctx("det_train_set_run_metadata", ctx, |c| {
        // SAFETY: `metadata_json` is NULL or a NUL-terminated string that stays valid during the
        // call (the caller's guarantee in this function's # Safety).
        let m = unsafe { json_object_arg(metadata_json, "metadata_json") }?;
        let r = c.train().set_run_metadata(&m)?;
        if !out.is_null() {
            let s = owned_c_string(&crate::json::to_wire(&Value::Object(r)))?;
            // SAFETY: `out` is not NULL (tested above) and writable (the caller's guarantee in
            // this function's # Safety).
            unsafe { write_out(out, s) };
        }
        Ok(())
    })
}

/// The run's metadata as a JSON object. Free with `det_string_free`.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_train_get_run_metadata(
    ctx: *mut det_context,
    out: *mut *mut c_char,
) -> det_status {
    with_ctx("det_train_get_run_metadata", ctx, |c| {
        out_arg(out, "out")?;
        let r = c.train().get_run_metadata()?;
        let s = owned_c_string(&crate::json::to_wire(&Value::Object(r)))?;
        // SAFETY: `out` is not NULL (out_arg above) and points to writable storage (the caller's
        // guarantee in this function's # Safety).
        unsafe { write_out(out, s) };
        Ok(())
    })
}

/// Wait until every report queued so far has been delivered (written to `metrics.jsonl`, or
/// accepted by the master), at most `timeout_seconds`. Returns the first delivery failure, or
/// `DET_ERR_TIMEOUT`. Training loops never need this; it is for tests and for handing off
/// between phases.
#[no_mangle]
pub extern "C" fn det_train_flush(ctx: *mut det_context, timeout_seconds: f64) -> det_status {
    with_ctx("det_train_flush", ctx, |c| {
        if !(timeout_seconds > 0.0 && timeout_seconds.is_finite()) {
            bail!(
                InvalidArgument,
                "timeout_seconds: {timeout_seconds} must be a positive number"
            );
        }
        c.reporter().flush(crate::time::secs(timeout_seconds))
    })
}

// ---- TensorBoard files of the run ------------------------------------------------------

/// Size of the buffer a `det_tb_mangler_fn` writes the new name into, NUL included.
pub const DET_TB_NAME_MAX: usize = 4096;

/// A name mangler for `det_train_upload_tensorboard_files` (Python's `mangler(path, rank)`):
/// `path` is the file's name relative to the TensorBoard folder (`/`-separated), `rank` this
/// process's rank. `name` (`name_size` = `DET_TB_NAME_MAX` bytes) already holds a copy of `path`;
/// leave it to keep the name, or write a new NUL-terminated relative name (no leading `/`, no
/// `..` parts) under which the file is stored. Return false to abandon the whole upload call
/// (it then fails with `DET_ERR_INVALID_ARGUMENT`). Called on the calling thread, during the
/// call; `path` and `name` are valid only during the callback. It must not throw or longjmp.
pub type det_tb_mangler_fn = Option<
    unsafe extern "C" fn(
        path: *const c_char,
        rank: i32,
        name: *mut c_char,
        name_size: usize,
        userdata: *mut c_void,
    ) -> bool,
>;

/// The local TensorBoard folder (`get_tensorboard_path()`): `<run_dir>/tensorboard` off-cluster,
/// `$TMPDIR/tensorboard-<allocation_id>-<rank>` on-cluster (`/tmp` without `TMPDIR`, as
/// Determined's). It exists once the context is
/// initialised. Files your code writes there (event files of your own, profiler traces) are
/// uploaded with the metrics' event files in `DET_TENSORBOARD_MODE_AUTO`, or by
/// `det_train_upload_tensorboard_files` in `DET_TENSORBOARD_MODE_MANUAL`.
/// `*out` is freed with `det_string_free`.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_train_get_tensorboard_path(
    ctx: *mut det_context,
    out: *mut *mut c_char,
) -> det_status {
    with_ctx("det_train_get_tensorboard_path", ctx, |c| {
        out_arg(out, "out")?;
        let m = c.tensorboard();
        let p = m
            .local_dir()
            .to_str()
            .ok_or_else(|| err!(Internal, "the TensorBoard folder's path is not UTF-8"))?;
        let s = owned_c_string(p)?;
        // SAFETY: `out` is not NULL (out_arg above) and points to writable storage (the caller's
        // guarantee in this function's # Safety).
        unsafe { write_out(out, s) };
        Ok(())
    })
}

/// `upload_tensorboard_files(selector, mangler)`, `DET_TENSORBOARD_MODE_MANUAL` only (else
/// `DET_ERR_STATE`): queue the files of the TensorBoard folder that `selector` accepts (NULL:
/// all; it gets each file's name relative to the folder), stored in the checkpoint storage under
/// `<cluster_id>/tensorboard/experiment/<experiment_id>/trial/<trial_id>/<name>`, where `name` is
/// what `mangler` makes of it (NULL: unchanged). Callbacks run on this thread, during this call.
///
/// Returns once the files are listed; the upload runs in the background. Unlike Python, a
/// second call within a second is not ignored, and failed uploads are retried until they
/// succeed; `det_train_flush_tensorboard` waits for them, and `det_core_close` reports files
/// that could not be uploaded. A file that has not changed since it was uploaded under the same
/// name is not uploaded again.
///
/// # Safety
/// `selector`/`mangler`, when not NULL, must be callable with their userdata.
#[no_mangle]
pub unsafe extern "C" fn det_train_upload_tensorboard_files(
    ctx: *mut det_context,
    selector: det_selector_fn,
    selector_userdata: *mut c_void,
    mangler: det_tb_mangler_fn,
    mangler_userdata: *mut c_void,
) -> det_status {
    with_ctx("det_train_upload_tensorboard_files", ctx, |c| {
        let m = c.tensorboard();
        let mut sel_closure = selector.map(|cb| {
            move |p: &str| -> bool {
                match CString::new(p) {
                    // SAFETY: the caller promised cb is callable with a C string and its userdata.
                    Ok(cs) => unsafe { cb(cs.as_ptr(), selector_userdata) },
                    Err(_) => false,
                }
            }
        });
        let mut mangle_closure = mangler.map(|cb| {
            move |p: &str, rank: u32| -> Result<String> {
                call_mangler(cb, mangler_userdata, p, rank)
            }
        });
        m.upload_files(
            sel_closure
                .as_mut()
                .map(|f| f as &mut dyn FnMut(&str) -> bool),
            mangle_closure
                .as_mut()
                .map(|f| f as &mut dyn FnMut(&str, u32) -> Result<String>),
        )
        .map(|_| ())
    })
}

type ManglerFn = unsafe extern "C" fn(*const c_char, i32, *mut c_char, usize, *mut c_void) -> bool;

fn call_mangler(cb: ManglerFn, userdata: *mut c_void, path: &str, rank: u32) -> Result<String> {
    let cpath =
        CString::new(path).map_err(|_| err!(InvalidArgument, "{path:?} contains a NUL byte"))?;
    let bytes = path.as_bytes();
    if bytes.len() >= DET_TB_NAME_MAX {
        bail!(
            InvalidArgument,
            "{path:?} is longer than DET_TB_NAME_MAX - 1 bytes"
        );
    }
    let mut buf = vec![0 as c_char; DET_TB_NAME_MAX];
    for (d, s) in buf.iter_mut().zip(bytes) {
        *d = *s as c_char;
    }
    let rank = i32::try_from(rank).unwrap_or(i32::MAX);
    // SAFETY: the caller promised cb is callable with its userdata; `cpath` is a C string and
    // `buf` holds DET_TB_NAME_MAX writable bytes, both alive for the call.
    let ok = unsafe {
        cb(
            cpath.as_ptr(),
            rank,
            buf.as_mut_ptr(),
            DET_TB_NAME_MAX,
            userdata,
        )
    };
    if !ok {
        bail!(
            InvalidArgument,
            "the mangler returned false; nothing was uploaded"
        );
    }
    let raw: Vec<u8> = buf.iter().map(|c| *c as u8).collect();
    let Ok(name) = CStr::from_bytes_until_nul(&raw) else {
        bail!(InvalidArgument, "the name written by the mangler is not NUL-terminated within DET_TB_NAME_MAX ({DET_TB_NAME_MAX}) bytes");
    };
    name.to_str().map(str::to_owned).map_err(|_| {
        err!(
            InvalidArgument,
            "the name written by the mangler is not valid UTF-8"
        )
    })
}

/// Wait until the TensorBoard files are in the checkpoint storage: in AUTO mode the reports
/// queued so far are delivered (their events written) and a sync pass that starts after this
/// call has finished; in MANUAL mode the uploads queued so far are done. At most
/// `timeout_seconds`. Returns the failure of that pass (the uploads are still retried in the
/// background), or `DET_ERR_TIMEOUT`. Training loops never need this; it is for tests and for
/// handing off between phases.
#[no_mangle]
pub extern "C" fn det_train_flush_tensorboard(
    ctx: *mut det_context,
    timeout_seconds: f64,
) -> det_status {
    with_ctx("det_train_flush_tensorboard", ctx, |c| {
        if !(timeout_seconds > 0.0 && timeout_seconds.is_finite()) {
            bail!(
                InvalidArgument,
                "timeout_seconds: {timeout_seconds} must be a positive number"
            );
        }
        c.flush_tensorboard(crate::time::secs(timeout_seconds))
    })
}
