//! `det_train_*`: metrics and training status.

use super::boundary::{
    json_object_arg, opt_str_arg, out_arg, owned_c_string, str_arg, with_ctx, write_out,
};
use super::handle::det_context;
use super::options::DET_EARLY_EXIT_INVALID_HP;
use super::status::det_status;
use crate::error::{Error, Kind, Result};
use crate::json::{Map, Value};
use crate::train::{EarlyExitReason, Metrics};
use std::ffi::{c_char, CStr};

fn steps_arg(steps: i64) -> Result<u64> {
    u64::try_from(steps).map_err(|_| {
        Error::new(
            Kind::InvalidArgument,
            format!("steps_completed: {steps} is negative"),
        )
    })
}

/// Parse `batch_metrics_json`: NULL, or a JSON array of objects.
unsafe fn batch_arg(p: *const c_char) -> Result<Option<Vec<Map>>> {
    // SAFETY: forwarded contract.
    let Some(text) = (unsafe { opt_str_arg(p, "batch_metrics_json") })? else {
        return Ok(None);
    };
    match crate::json::parse(text).map_err(|e| e.context("batch_metrics_json"))? {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::Object(m) => Ok(m),
                other => Err(Error::new(
                    Kind::InvalidArgument,
                    format!(
                        "batch_metrics_json[{i}]: expected a JSON object, got {}",
                        other.type_name()
                    ),
                )),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some),
        other => Err(Error::new(
            Kind::InvalidArgument,
            format!(
                "batch_metrics_json: expected a JSON array of objects, got {}",
                other.type_name()
            ),
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
        // SAFETY: contract.
        let m = unsafe { json_object_arg(metrics_json, "metrics_json") }?;
        // SAFETY: contract.
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
        // SAFETY: contract.
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
        // SAFETY: contract.
        let group = unsafe { str_arg(group, "group") }?;
        let steps = steps_arg(steps_completed)?;
        // SAFETY: contract.
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
        // SAFETY: contract.
        let group = unsafe { str_arg(group, "group") }?;
        let steps = steps_arg(steps_completed)?;
        if n > 0 && names.is_null() {
            return Err(Error::new(Kind::InvalidArgument, "names is NULL"));
        }
        if n > 0 && values.is_null() {
            return Err(Error::new(Kind::InvalidArgument, "values is NULL"));
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
                return Err(Error::new(
                    Kind::InvalidArgument,
                    format!("names[{i}] is NULL"),
                ));
            }
            // SAFETY: non-NULL C string per the contract.
            let b = unsafe { CStr::from_ptr(p) }.to_bytes();
            store[i] = std::str::from_utf8(b).map_err(|_| {
                Error::new(
                    Kind::InvalidArgument,
                    format!("names[{i}] is not valid UTF-8"),
                )
            })?;
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
        // SAFETY: contract.
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
        let r = match reason {
            DET_EARLY_EXIT_INVALID_HP => EarlyExitReason::InvalidHp,
            v => {
                return Err(Error::new(
                    Kind::InvalidArgument,
                    format!("reason: unknown value {v} (expected DET_EARLY_EXIT_INVALID_HP)"),
                ))
            }
        };
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
        // SAFETY: checked.
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
        // SAFETY: contract.
        let m = unsafe { json_object_arg(metadata_json, "metadata_json") }?;
        let r = c.train().set_run_metadata(&m)?;
        if !out.is_null() {
            let s = owned_c_string(&crate::json::to_wire(&Value::Object(r)))?;
            // SAFETY: non-NULL.
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
        // SAFETY: checked.
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
            return Err(Error::new(
                Kind::InvalidArgument,
                format!("timeout_seconds: {timeout_seconds} must be a positive number"),
            ));
        }
        c.reporter().flush(crate::time::secs(timeout_seconds))
    })
}
