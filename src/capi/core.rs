//! `det_core_*`: the context's life (`det_core_init`, `det_core_close`) and `det_core_alert`;
//! and what belongs to no area: the library version (`det_version*`) and `det_string_free`.

use super::boundary::{call, opt_str_arg, out_arg, with_ctx, write_out};
use super::enums;
use super::handle::det_context;
use super::options::{det_init_options, options_from_c};
use super::status::det_status;
use crate::context::Context;
use crate::error::Kind;
use std::ffi::{c_char, CString};

/// Create a context: on-cluster when `/run/determined/info/cluster.json` exists (or
/// `$DET_CLUSTER_INFO_DIR/cluster.json`), else off-cluster. `opts` may be NULL for all defaults.
///
/// On success `*out` receives the context; close it with `det_core_close`. On failure nothing is
/// created and `*out` is untouched.
///
/// On-cluster (a trial) it reads the info files (`cluster.json`, `trial.json`,
/// `rendezvous.json`, `resources.json`), needs `DET_SESSION_TOKEN` and `DET_USER`, sends
/// `POST /api/v1/runs/start` and waits for the first answer of the preemption long poll, as
/// Python's `core.init()` + `__enter__` do. Settings from the environment: `DET_RETRY_CONFIG`
/// (urllib3 `Retry` arguments as JSON), `DET_MASTER_CERT_FILE` (a PEM path or `noverify`),
/// `DET_MASTER_CERT_NAME`, `DETCORE_MASTER_CONNECT_TIMEOUT` and `DETCORE_MASTER_TIMEOUT`
/// (seconds; defaults 20 and 60). See docs/on-cluster.md.
///
/// Errors: `DET_ERR_INVALID_ARGUMENT` (a bad option, info file or setting, named in the message,
/// e.g. `.../trial.json: key "trial_run_id" must be an integer, got string "3"`),
/// `DET_ERR_UNSUPPORTED`, `DET_ERR_STORAGE`/`DET_ERR_IO` (storage or run folder unusable),
/// `DET_ERR_MASTER`/`DET_ERR_TIMEOUT` (on-cluster: the master refused or could not be reached).
///
/// # Safety
/// `opts` must be NULL or point to options initialised with `det_init_options_default`;
/// `out` must point to writable storage for a pointer.
#[no_mangle]
pub unsafe extern "C" fn det_core_init(
    opts: *const det_init_options,
    out: *mut *mut det_context,
) -> det_status {
    call("det_core_init", || {
        out_arg(out, "out")?;
        let o = if opts.is_null() {
            crate::InitOptions::default()
        } else {
            // SAFETY: `opts` is not NULL (tested above) and points to options initialised with
            // det_init_options_default (this function's # Safety).
            unsafe { options_from_c(opts) }?
        };
        let ctx = Context::init(o)?;
        let shell = det_context::leak(ctx);
        // SAFETY: `out` is not NULL (out_arg above) and writable (this function's # Safety).
        unsafe { write_out(out, shell as *const det_context as *mut det_context) };
        Ok(())
    })
}

/// Close a context: deliver queued reports (waiting at most the close timeout), stop and join
/// every background thread, restore signal handlers. The context cannot be used afterwards
/// whatever the result; using it gives `DET_ERR_STATE`. `det_core_close(NULL)` does nothing.
///
/// On-cluster it also interrupts the preemption long poll and, if a preemption was
/// acknowledged, waits (within the same deadline) until the master has the acknowledgement.
/// Then exit the process: exit code 0 after an acknowledged preemption means "reschedule me"
/// (the master restarts the trial from its latest checkpoint); exit 0 without it means the trial
/// is complete; a non-zero exit is a failure (retried up to `max_restarts`).
///
/// A checkpoint scope still open (`det_ckpt_store_path_begin` without `_end` or `_abort`) is
/// aborted: nothing is stored, its folder is removed, and a warning names it; a restore scope
/// still open is ended (a temporary download is removed).
///
/// Waits for calls running on other threads to return first. Returns the first failure of the
/// teardown, e.g. `DET_ERR_TIMEOUT` naming how many reports were not delivered before the
/// deadline. Closing twice gives `DET_ERR_STATE`.
///
/// The context's memory is not given back: a tombstone of about 100 bytes stays at its address
/// until the process ends, so that any later call on it (a use after close) is refused with
/// `DET_ERR_STATE` instead of reading freed memory.
///
/// # Safety
/// `ctx` must be NULL or a pointer `det_core_init` returned (closed or not).
#[no_mangle]
pub unsafe extern "C" fn det_core_close(ctx: *mut det_context) -> det_status {
    if ctx.is_null() {
        return super::status::DET_OK;
    }
    call("det_core_close", || {
        // SAFETY: `ctx` is not NULL (tested above) and a pointer det_core_init returned (this
        // function's # Safety).
        match unsafe { det_context::from_ptr(ctx) } {
            Ok(shell) => {
                let r = shell.close();
                // Nothing can begin a new scope now; the open ones are aborted.
                super::ckpt::close_open_scopes(shell);
                r
            }
            Err(e) if e.kind() == Kind::State => Err(err!(
                State,
                "ctx was already closed by an earlier det_core_close"
            )),
            Err(e) => Err(e),
        }
    })
}

/// The library version, `"MAJOR.MINOR.PATCH"`. Static; never free it.
#[no_mangle]
pub extern "C" fn det_version() -> *const c_char {
    static V: std::sync::OnceLock<CString> = std::sync::OnceLock::new();
    V.get_or_init(|| CString::new(crate::VERSION).unwrap_or_default())
        .as_ptr()
}

/// The library version as `MAJOR * 10000 + MINOR * 100 + PATCH` (compare with
/// `DET_VERSION_NUMBER`).
#[no_mangle]
pub extern "C" fn det_version_number() -> u32 {
    let p = |s: &str| s.parse::<u32>().unwrap_or(0);
    p(env!("CARGO_PKG_VERSION_MAJOR")) * 10000
        + p(env!("CARGO_PKG_VERSION_MINOR")) * 100
        + p(env!("CARGO_PKG_VERSION_PATCH"))
}

/// Free a string returned by detcore (`char **out` results). NULL does nothing. Freeing the same
/// string twice, or a string detcore did not return, is forbidden.
///
/// # Safety
/// `s` must be NULL or a string returned by detcore and not yet freed.
#[no_mangle]
pub unsafe extern "C" fn det_string_free(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: `s` is not NULL and, by this function's # Safety, a string detcore returned
        // (made by CString::into_raw in owned_c_string) and not freed yet.
        drop(unsafe { CString::from_raw(s) });
    }
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
        // SAFETY: `title` is NULL or a NUL-terminated string that stays valid during the call (the
        // caller's guarantee in this function's # Safety).
        let title = unsafe { opt_str_arg(title, "title") }?;
        // SAFETY: `description` is NULL or a NUL-terminated string that stays valid during the
        // call (the caller's guarantee in this function's # Safety).
        let description = unsafe { opt_str_arg(description, "description") }?;
        let level = enums::alert_level(level, "level")?;
        c.alert(title, description, level)
    })
}
