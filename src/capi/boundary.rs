//! The panic boundary and argument conversion shared by every export.
//!
//! Every `extern "C"` function body runs inside [`call`] (or [`with_ctx`] for functions on a
//! context), which catches panics (→ `DET_ERR_INTERNAL`, the context is poisoned), maps core
//! errors to status codes and records the message, prefixed with the function's name, as this
//! thread's last error.

use super::handle::det_context;
use super::status::{det_status, status_of, DET_ERR_INTERNAL, DET_OK};
use crate::context::Context;
use crate::error::{Error, Kind, Result};
use crate::json::Map;
use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

thread_local! {
    pub(crate) static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Replace this thread's last error message.
pub(crate) fn set_last_error_text(msg: &str) {
    let clean = msg.replace('\0', "\\0");
    let c = CString::new(crate::log::redact(&clean)).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

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
        let shell = det_context::from_ptr(ctx)?;
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
        let shell = det_context::from_ptr(ctx)?;
        shell.check_usable()?;
        match catch_unwind(AssertUnwindSafe(|| f(shell))) {
            Ok(r) => r,
            Err(p) => {
                shell.poison(&crate::error::panic_message(&*p));
                resume_unwind(p)
            }
        }
    })
}

/// Poison support for [`det_context`]: run `f` and poison on panic.
pub(crate) fn guard_panic<T>(shell: &det_context, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            shell.poison(&crate::error::panic_message(&*p));
            resume_unwind(p)
        }
    }
}

/// A required input string: not NULL, valid UTF-8. `what` names the argument in messages.
///
/// # Safety
/// `p` must be NULL or point to a NUL-terminated string valid for `'a`.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, what: &str) -> Result<&'a str> {
    if p.is_null() {
        return Err(Error::new(Kind::InvalidArgument, format!("{what} is NULL")));
    }
    // SAFETY: non-NULL, NUL-terminated per the caller's contract.
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    std::str::from_utf8(bytes).map_err(|e| {
        Error::new(
            Kind::InvalidArgument,
            format!(
                "{what} is not valid UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ),
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
        // SAFETY: forwarded contract.
        unsafe { str_arg(p, what) }.map(Some)
    }
}

/// A required JSON-object argument.
///
/// # Safety
/// As [`str_arg`].
pub(crate) unsafe fn json_object_arg(p: *const c_char, what: &str) -> Result<Map> {
    // SAFETY: forwarded contract.
    let text = unsafe { str_arg(p, what) }?;
    crate::json::parse_object(text, what)
}

/// Check an out-pointer.
pub(crate) fn out_arg<T>(p: *mut T, what: &str) -> Result<()> {
    if p.is_null() {
        return Err(Error::new(Kind::InvalidArgument, format!("{what} is NULL")));
    }
    Ok(())
}

/// Write `v` through a checked out-pointer.
///
/// # Safety
/// `p` must be valid for writes (checked non-NULL by [`out_arg`]).
#[inline]
pub(crate) unsafe fn write_out<T>(p: *mut T, v: T) {
    // SAFETY: forwarded contract.
    unsafe { p.write(v) }
}

/// A string the caller frees with `det_string_free`.
pub(crate) fn owned_c_string(s: &str) -> Result<*mut c_char> {
    CString::new(s).map(CString::into_raw).map_err(|_| {
        Error::new(
            Kind::Internal,
            "string with an embedded NUL byte cannot be returned to C",
        )
    })
}

/// Copy a storage id into a caller buffer of `DET_STORAGE_ID_LEN` bytes.
///
/// # Safety
/// `out` must point to `DET_STORAGE_ID_LEN` writable bytes.
pub(crate) unsafe fn write_storage_id(out: *mut c_char, id: &str) -> Result<()> {
    let bytes = id.as_bytes();
    if bytes.len() > crate::checkpoint::STORAGE_ID_LEN {
        return Err(Error::new(
            Kind::Internal,
            format!("storage id {id:?} is longer than DET_STORAGE_ID_LEN - 1"),
        ));
    }
    // SAFETY: out has DET_STORAGE_ID_LEN (37) bytes; we write len + 1 <= 37.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), out as *mut u8, bytes.len());
        *out.add(bytes.len()) = 0;
    }
    Ok(())
}
