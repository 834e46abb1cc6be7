//! The panic boundary and argument conversion shared by every export.
//!
//! Every `extern "C"` function body runs inside [`call`] (or [`with_ctx`] for functions on a
//! context), which catches panics (→ `DET_ERR_INTERNAL`, the context is poisoned), maps core
//! errors to status codes and records the message, prefixed with the function's name, as this
//! thread's last error.

use super::handle::det_context;
use super::status::{det_status, set_last_error_text, status_of, DET_ERR_INTERNAL, DET_OK};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::json::Map;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Run `f` as the body of the export `name`.
#[inline]
pub(crate) fn call(name: &'static str, f: impl FnOnce() -> Result<()>) -> det_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => DET_OK,
        Ok(Err(e)) => fail(name, &e),
        Err(p) => {
            set_last_error_text(&format!(
                "{name}: internal error (a bug in detcore, please report it): {}",
                crate::error::panic_message(&*p)
            ));
            DET_ERR_INTERNAL
        }
    }
}

#[cold]
pub(crate) fn fail(name: &str, e: &Error) -> det_status {
    set_last_error_text(&format!("{name}: {}", e.message()));
    status_of(e.kind())
}

/// Run `f` on the live context behind `ctx`: checks the pointer, refuses closed and poisoned
/// contexts, poisons the context if `f` panics.
#[inline]
pub(crate) fn with_ctx(
    name: &'static str,
    ctx: *const det_context,
    f: impl FnOnce(&Context) -> Result<()>,
) -> det_status {
    call(name, || {
        // SAFETY: every export's C contract (the header's preamble): a `det_context *` argument
        // is NULL or a pointer that det_core_init returned.
        let shell = unsafe { det_context::from_ptr(ctx) }?;
        shell.with_live(f)
    })
}

/// Run `f` with the context shell itself (for functions that reach the lock-free state).
#[inline]
pub(crate) fn with_shell(
    name: &'static str,
    ctx: *const det_context,
    f: impl FnOnce(&'static det_context) -> Result<()>,
) -> det_status {
    call(name, || {
        // SAFETY: as in `with_ctx`: `ctx` is NULL or from det_core_init by the C contract.
        let shell = unsafe { det_context::from_ptr(ctx) }?;
        shell.check_usable()?;
        shell.guard_panic(|| f(shell))
    })
}

/// A required input string: not NULL, valid UTF-8. `what` names the argument in messages.
///
/// # Safety
/// `p` must be NULL or point to a NUL-terminated string valid for `'a`.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, what: &str) -> Result<&'a str> {
    if p.is_null() {
        bail!(InvalidArgument, "{what} is NULL");
    }
    // SAFETY: `p` is not NULL (tested above) and points to a NUL-terminated string valid for
    // 'a (this function's # Safety).
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    std::str::from_utf8(bytes).map_err(|e| {
        err!(
            InvalidArgument,
            "{what} is not valid UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        )
    })
}

/// An optional input string: NULL → `None`.
///
/// # Safety
/// As [`str_arg`].
pub(crate) unsafe fn opt_str_arg<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: `p` is NULL or a NUL-terminated string that stays valid during the call (the
        // caller's guarantee in this function's # Safety).
        unsafe { str_arg(p, what) }.map(Some)
    }
}

/// A required JSON-object argument.
///
/// # Safety
/// As [`str_arg`].
pub(crate) unsafe fn json_object_arg(p: *const c_char, what: &str) -> Result<Map> {
    // SAFETY: `p` is NULL or a NUL-terminated string that stays valid during the call (the
    // caller's guarantee in this function's # Safety).
    let text = unsafe { str_arg(p, what) }?;
    crate::json::parse_object(text, what)
}

/// Check an out-pointer.
pub(crate) fn out_arg<T>(p: *mut T, what: &str) -> Result<()> {
    if p.is_null() {
        bail!(InvalidArgument, "{what} is NULL");
    }
    Ok(())
}

/// Write `v` through a checked out-pointer.
///
/// # Safety
/// `p` must be valid for writes (checked non-NULL by [`out_arg`]).
#[inline]
pub(crate) unsafe fn write_out<T>(p: *mut T, v: T) {
    // SAFETY: `p` is valid for writes of a `T` (this function's # Safety).
    unsafe { p.write(v) }
}

/// The body of a getter: run `f` on the live context behind `ctx` and write its result to
/// `*out` (`out` is checked first: NULL is `DET_ERR_INVALID_ARGUMENT` naming `out`). Nothing is
/// written when `f` fails.
///
/// # Safety
/// `out` must be NULL or valid for writes of a `T` (the export's own contract).
#[inline]
pub(crate) unsafe fn value_out<T>(
    name: &'static str,
    ctx: *const det_context,
    out: *mut T,
    f: impl FnOnce(&Context) -> Result<T>,
) -> det_status {
    with_ctx(name, ctx, |c| {
        out_arg(out, "out")?;
        let v = f(c)?;
        // SAFETY: `out` is not NULL (out_arg) and writable by this function's contract.
        unsafe { write_out(out, v) };
        Ok(())
    })
}

/// As [`value_out`] for a string result: `*out` receives a copy the caller frees with
/// `det_string_free`.
///
/// # Safety
/// As [`value_out`].
#[inline]
pub(crate) unsafe fn string_out(
    name: &'static str,
    ctx: *const det_context,
    out: *mut *mut c_char,
    f: impl FnOnce(&Context) -> Result<String>,
) -> det_status {
    // SAFETY: forwarded: `out` is NULL or writable by this function's contract.
    unsafe { value_out(name, ctx, out, |c| owned_c_string(&f(c)?)) }
}

/// As [`string_out`] for a result that may be absent: `*out` is NULL for `None`.
///
/// # Safety
/// As [`value_out`].
#[inline]
pub(crate) unsafe fn opt_string_out(
    name: &'static str,
    ctx: *const det_context,
    out: *mut *mut c_char,
    f: impl FnOnce(&Context) -> Result<Option<String>>,
) -> det_status {
    // SAFETY: forwarded: `out` is NULL or writable by this function's contract.
    unsafe {
        value_out(name, ctx, out, |c| match f(c)? {
            Some(s) => owned_c_string(&s),
            None => Ok(std::ptr::null_mut()),
        })
    }
}

/// A string the caller frees with `det_string_free`.
pub(crate) fn owned_c_string(s: &str) -> Result<*mut c_char> {
    CString::new(s).map(CString::into_raw).map_err(|_| {
        err!(
            Internal,
            "string with an embedded NUL byte cannot be returned to C"
        )
    })
}
