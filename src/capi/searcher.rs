//! `det_searcher_*`: the hyperparameter searcher's operations.

use super::boundary::{call, out_arg, with_ctx, write_out};
use super::enums;
use super::handle::{det_context, Registry};
use super::status::det_status;
use crate::json::{Number, Value};
use crate::searcher::SearcherOp;
use std::ffi::c_char;

/// A searcher operation from `det_searcher_next_op`. Opaque. Free with `det_searcher_op_free`.
pub struct det_searcher_op {
    _private: [u8; 0],
}

struct OpEntry {
    ctx: &'static det_context,
    op: SearcherOp,
}

static OPS: Registry<OpEntry> = Registry::new("op");

/// The next searcher operation (`searcher.operations()` one step at a time): `*out` is the
/// operation, or NULL when the searcher has no more. Call `det_searcher_op_report_completed`
/// before asking for the next one (`DET_ERR_STATE` otherwise). `searcher_mode` is a
/// `DET_SEARCHER_MODE_*` value. On-cluster without `searcher.max_length` in the experiment
/// config this fails with `DET_ERR_UNSUPPORTED` and Python's message.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_searcher_next_op(
    ctx: *mut det_context,
    searcher_mode: i32,
    out: *mut *mut det_searcher_op,
) -> det_status {
    with_ctx("det_searcher_next_op", ctx, |c| {
        let mode = enums::searcher_mode(searcher_mode, "searcher_mode")?;
        out_arg(out, "out")?;
        let v = match c.searcher().next_op(mode)? {
            Some(op) => OPS.insert(OpEntry {
                // SAFETY: with_ctx accepted `ctx` as a live context a moment ago.
                ctx: unsafe { det_context::from_ptr(ctx) }?,
                op,
            }) as *mut det_searcher_op,
            None => std::ptr::null_mut(),
        };
        // SAFETY: `out` is not NULL (out_arg above) and points to writable storage (the caller's
        // guarantee in this function's # Safety).
        unsafe { write_out(out, v) };
        Ok(())
    })
}

/// The number of units (`det_searcher_get_configured_units`) the operation asks to train for.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_searcher_op_length(
    op: *const det_searcher_op,
    out: *mut i64,
) -> det_status {
    call("det_searcher_op_length", || {
        let e = OPS.get(op as usize)?;
        out_arg(out, "out")?;
        // SAFETY: `out` is not NULL (out_arg above) and points to writable storage (the caller's
        // guarantee in this function's # Safety).
        unsafe { write_out(out, e.op.length() as i64) };
        Ok(())
    })
}

/// Report that `length` units are done (chief only). Sent as the trial's progress
/// `length / max_length`, clamped to [0, 1].
#[no_mangle]
pub extern "C" fn det_searcher_op_report_progress(
    op: *mut det_searcher_op,
    length: f64,
) -> det_status {
    call("det_searcher_op_report_progress", || {
        let e = OPS.get(op as usize)?;
        e.ctx.with_live(|_| e.op.report_progress(length))
    })
}

/// Report the operation complete with its searcher metric (chief only, once).
#[no_mangle]
pub extern "C" fn det_searcher_op_report_completed(
    op: *mut det_searcher_op,
    searcher_metric: f64,
) -> det_status {
    call("det_searcher_op_report_completed", || {
        let e = OPS.get(op as usize)?;
        e.ctx.with_live(|_| {
            e.op.report_completed(Value::Number(Number::Float(searcher_metric)))
        })
    })
}

/// As `det_searcher_op_report_completed` with any JSON value (an object of metrics, say).
///
/// # Safety
/// `searcher_metric_json` must be a C string.
#[no_mangle]
pub unsafe extern "C" fn det_searcher_op_report_completed_json(
    op: *mut det_searcher_op,
    searcher_metric_json: *const c_char,
) -> det_status {
    call("det_searcher_op_report_completed_json", || {
        let e = OPS.get(op as usize)?;
        // SAFETY: `searcher_metric_json` is NULL or a NUL-terminated string that stays valid
        // during the call (the caller's guarantee in this function's # Safety).
        let text =
            unsafe { super::boundary::str_arg(searcher_metric_json, "searcher_metric_json") }?;
        let v = crate::json::parse(text).map_err(|e| e.context("searcher_metric_json"))?;
        e.ctx.with_live(|_| e.op.report_completed(v))
    })
}

/// Free an operation. NULL does nothing; freeing twice gives `DET_ERR_STATE`.
#[no_mangle]
pub extern "C" fn det_searcher_op_free(op: *mut det_searcher_op) -> det_status {
    if op.is_null() {
        return super::status::DET_OK;
    }
    call("det_searcher_op_free", || OPS.remove(op as usize).map(drop))
}

/// `get_configured_units()`: one of `DET_UNIT_*` (`DET_UNIT_NONE` when the experiment config
/// names none; off-cluster `DET_UNIT_EPOCHS`, as Python).
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_searcher_get_configured_units(
    ctx: *mut det_context,
    out: *mut i32,
) -> det_status {
    with_ctx("det_searcher_get_configured_units", ctx, |c| {
        out_arg(out, "out")?;
        let u = enums::unit_to_c(c.searcher().get_configured_units()?);
        // SAFETY: `out` is not NULL (out_arg above) and points to writable storage (the caller's
        // guarantee in this function's # Safety).
        unsafe { write_out(out, u) };
        Ok(())
    })
}

/// `acknowledge_out_of_ops()`: nothing to do in Determined 0.38; kept for API parity.
#[no_mangle]
pub extern "C" fn det_searcher_acknowledge_out_of_ops(ctx: *mut det_context) -> det_status {
    with_ctx("det_searcher_acknowledge_out_of_ops", ctx, |c| {
        c.searcher().acknowledge_out_of_ops()
    })
}
