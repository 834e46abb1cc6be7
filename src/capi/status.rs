//! Status codes and this thread's last error message: the bottom of the C ABI (it imports
//! nothing from the other capi files; `handle` and `boundary` build on it).

use crate::error::Kind;
use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};

thread_local! {
    /// The message of the last failed call on this thread (`det_last_error_message`).
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Replace this thread's last error message (NUL bytes escaped, secrets redacted).
pub(crate) fn set_last_error_text(msg: &str) {
    let clean = msg.replace('\0', "\\0");
    let c = CString::new(crate::log::redact(&clean)).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// The result of every detcore call: `DET_OK` (0) or one of the `DET_ERR_*` codes. Values are
/// stable across releases. Caller errors are 1–9, environment errors 10–19, bugs 99.
pub type det_status = i32;

/// Success.
pub const DET_OK: det_status = 0;
/// An argument is wrong: NULL, invalid UTF-8, malformed JSON, an unknown enum value, out of range.
pub const DET_ERR_INVALID_ARGUMENT: det_status = 1;
/// A call made in the wrong state: out of order, twice, on a closed handle, or on the wrong rank.
pub const DET_ERR_STATE: det_status = 2;
/// What was asked for does not exist (checkpoint, hparam, file).
pub const DET_ERR_NOT_FOUND: det_status = 3;
/// Two things disagree (sharded checkpoint files or metadata, an existing checkpoint id).
pub const DET_ERR_CONFLICT: det_status = 4;
/// Not available in this build, mode or configuration.
pub const DET_ERR_UNSUPPORTED: det_status = 5;
/// A caller-supplied buffer is too small (copy-out functions); the needed length is returned.
pub const DET_ERR_BUFFER_TOO_SMALL: det_status = 6;
/// Local file-system I/O failed.
pub const DET_ERR_IO: det_status = 10;
/// The checkpoint storage failed.
pub const DET_ERR_STORAGE: det_status = 11;
/// The Determined master refused a request or could not be reached.
pub const DET_ERR_MASTER: det_status = 12;
/// A deadline passed.
pub const DET_ERR_TIMEOUT: det_status = 13;
/// A collective failed: a peer died, a connection closed, ranks disagree.
pub const DET_ERR_DISTRIBUTED: det_status = 14;
/// A bug in detcore (a caught panic). The handle it happened on is poisoned.
pub const DET_ERR_INTERNAL: det_status = 99;

/// The status code of an error kind.
pub(crate) fn status_of(kind: Kind) -> det_status {
    match kind {
        Kind::InvalidArgument => DET_ERR_INVALID_ARGUMENT,
        Kind::State => DET_ERR_STATE,
        Kind::NotFound => DET_ERR_NOT_FOUND,
        Kind::Conflict => DET_ERR_CONFLICT,
        Kind::Unsupported => DET_ERR_UNSUPPORTED,
        Kind::BufferTooSmall => DET_ERR_BUFFER_TOO_SMALL,
        Kind::Io => DET_ERR_IO,
        Kind::Storage | Kind::Integrity => DET_ERR_STORAGE,
        Kind::Master => DET_ERR_MASTER,
        Kind::Timeout => DET_ERR_TIMEOUT,
        Kind::Distributed => DET_ERR_DISTRIBUTED,
        Kind::Internal => DET_ERR_INTERNAL,
    }
}

/// The name of a status code, e.g. `"DET_ERR_NOT_FOUND"`; `"DET_UNKNOWN_STATUS"` for values
/// detcore never returns. The string is static; never free it. Thread-safe.
#[no_mangle]
pub extern "C" fn det_status_name(status: det_status) -> *const c_char {
    let s: &'static CStr = match status {
        DET_OK => c"DET_OK",
        DET_ERR_INVALID_ARGUMENT => c"DET_ERR_INVALID_ARGUMENT",
        DET_ERR_STATE => c"DET_ERR_STATE",
        DET_ERR_NOT_FOUND => c"DET_ERR_NOT_FOUND",
        DET_ERR_CONFLICT => c"DET_ERR_CONFLICT",
        DET_ERR_UNSUPPORTED => c"DET_ERR_UNSUPPORTED",
        DET_ERR_BUFFER_TOO_SMALL => c"DET_ERR_BUFFER_TOO_SMALL",
        DET_ERR_IO => c"DET_ERR_IO",
        DET_ERR_STORAGE => c"DET_ERR_STORAGE",
        DET_ERR_MASTER => c"DET_ERR_MASTER",
        DET_ERR_TIMEOUT => c"DET_ERR_TIMEOUT",
        DET_ERR_DISTRIBUTED => c"DET_ERR_DISTRIBUTED",
        DET_ERR_INTERNAL => c"DET_ERR_INTERNAL",
        _ => c"DET_UNKNOWN_STATUS",
    };
    s.as_ptr()
}

/// The message of the last failed call on this thread, e.g.
/// `det_ckpt_restore_path_begin: checkpoint 1b6c… not found in directory /data/ckpts`.
///
/// Never NULL (an empty string when no call has failed). The pointer is borrowed: it stays valid
/// until the next failing detcore call on the same thread. Only meaningful right after a call
/// returned a status other than `DET_OK` — a successful call does not clear it.
#[no_mangle]
pub extern "C" fn det_last_error_message() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Copy the last error message of this thread into `buf` (for Fortran, ctypes and others that
/// cannot hold a borrowed pointer).
///
/// Writes at most `cap - 1` bytes and a terminating NUL (nothing when `cap` is 0; `buf` may then
/// be NULL), and the full length without the NUL to `*len` when `len` is not NULL. Returns
/// `DET_OK`, or `DET_ERR_BUFFER_TOO_SMALL` when the message was truncated. Never changes the
/// last error itself.
///
/// # Safety
/// `buf` must point to `cap` writable bytes (or be NULL with `cap == 0`); `len` must be NULL or
/// point to a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn det_last_error_copy(
    buf: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> det_status {
    LAST_ERROR.with(|e| {
        let e = e.borrow();
        let bytes = e.as_bytes();
        if !len.is_null() {
            // SAFETY: caller guarantees len points to a writable size_t.
            unsafe { *len = bytes.len() };
        }
        if cap == 0 || buf.is_null() {
            return if bytes.is_empty() {
                DET_OK
            } else {
                DET_ERR_BUFFER_TOO_SMALL
            };
        }
        let n = bytes.len().min(cap - 1);
        // SAFETY: buf has cap >= n + 1 writable bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf as *mut u8, n);
            *buf.add(n) = 0;
        }
        if n < bytes.len() {
            DET_ERR_BUFFER_TOO_SMALL
        } else {
            DET_OK
        }
    })
}
