//! `det_should_preempt` and friends.

use super::boundary::{out_arg, with_ctx, with_shell, write_out};
use super::handle::det_context;
use super::status::det_status;

/// `*out` = true when the job should save a checkpoint and exit: a preemption signal
/// (SIGTERM/SIGUSR1 by default), the halt file, the job's end time, or — on-cluster — the
/// master asked for it (a background thread long-polls the master). Sticky: once true, always
/// true.
///
/// The first time it returns true the preemption is acknowledged: on-cluster one `POST
/// .../signals/ack_preemption` is sent from a background thread (never from the caller's), and
/// `det_core_close` waits until it is delivered. An acknowledged preemption followed by exit
/// code 0 means "reschedule me"; exit 0 without it means "completed, never restart". Use
/// `det_should_preempt_ex` with `auto_ack = false` to acknowledge yourself with
/// `det_preempt_acknowledge`.
///
/// Cost: a few nanoseconds (atomic loads; no system call, no lock, no network). Thread-safe.
/// With `DET_PREEMPT_MODE_CHIEF_ONLY`, workers get `DET_ERR_STATE`.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_should_preempt(ctx: *mut det_context, out: *mut bool) -> det_status {
    // SAFETY: this function's # Safety is `det_should_preempt_ex`'s: the pointers it passes on
    // carry the same guarantees.
    unsafe { det_should_preempt_ex(ctx, true, out) }
}

/// `should_preempt(auto_ack)`: as `det_should_preempt`, acknowledging only if `auto_ack`.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_should_preempt_ex(
    ctx: *mut det_context,
    auto_ack: bool,
    out: *mut bool,
) -> det_status {
    with_shell("det_should_preempt", ctx, |shell| {
        out_arg(out, "out")?;
        let v = shell.preempt.should_preempt(auto_ack)?;
        // SAFETY: `out` is not NULL (out_arg above) and points to writable storage (the caller's
        // guarantee in this function's # Safety).
        unsafe { write_out(out, v) };
        Ok(())
    })
}

/// `acknowledge_preemption_signal()`: tell the master this process will exit because of the
/// preemption, so that exit code 0 means "reschedule me". Sent once per context (later calls do
/// nothing), from a background thread, and delivered before `det_core_close` returns (close's
/// result says if it could not be). Off-cluster it only records the acknowledgement.
#[no_mangle]
pub extern "C" fn det_preempt_acknowledge(ctx: *mut det_context) -> det_status {
    with_ctx("det_preempt_acknowledge", ctx, |c| {
        c.acknowledge_preemption()
    })
}

/// Seconds left until the job's end time (`DET_END_TIME`, `SLURM_JOB_END_TIME` or the
/// `end_time` option): `*known` = false when no end time is known (then `*seconds` is 0).
/// Negative once the end time has passed.
///
/// # Safety
/// `known` and `seconds` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_preempt_seconds_remaining(
    ctx: *mut det_context,
    known: *mut bool,
    seconds: *mut f64,
) -> det_status {
    with_ctx("det_preempt_seconds_remaining", ctx, |c| {
        out_arg(known, "known")?;
        out_arg(seconds, "seconds")?;
        let r = c.seconds_remaining();
        // SAFETY: `known` is not NULL (out_arg above) and points to writable storage (the caller's
        // guarantee in this function's # Safety).
        unsafe {
            write_out(known, r.is_some());
            write_out(seconds, r.unwrap_or(0.0));
        }
        Ok(())
    })
}
