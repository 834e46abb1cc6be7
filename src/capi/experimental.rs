//! `det_experimental_*`: Determined's `core_context.experimental`.

use super::boundary::{str_arg, with_ctx};
use super::handle::det_context;
use super::status::det_status;
use std::ffi::c_char;

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
        // SAFETY: `checkpoint_uuid` is NULL or a NUL-terminated string that stays valid during the
        // call (the caller's guarantee in this function's # Safety).
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
            // SAFETY: `checkpoint_uuid` is NULL or a NUL-terminated string that stays valid during
            // the call (the caller's guarantee in this function's # Safety).
            let uuid = unsafe { str_arg(checkpoint_uuid, "checkpoint_uuid") }?;
            c.report_task_using(uuid, Some((model_id as i64, model_version as i64)))
        },
    )
}
