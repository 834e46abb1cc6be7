//! `det_train_*` functions of TensorBoard: the folder, manual uploads, waiting for the sync.

use super::boundary::{out_arg, owned_c_string, with_ctx, write_out};
use super::ckpt::det_selector_fn;
use super::handle::det_context;
use super::status::det_status;
use crate::error::{Error, Kind, Result};
use std::ffi::{c_char, c_void, CStr, CString};

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
        let p = m.local_dir().to_str().ok_or_else(|| {
            Error::new(Kind::Internal, "the TensorBoard folder's path is not UTF-8")
        })?;
        let s = owned_c_string(p)?;
        // SAFETY: checked.
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
    let cpath = CString::new(path).map_err(|_| {
        Error::new(
            Kind::InvalidArgument,
            format!("{path:?} contains a NUL byte"),
        )
    })?;
    let bytes = path.as_bytes();
    if bytes.len() >= DET_TB_NAME_MAX {
        return Err(Error::new(
            Kind::InvalidArgument,
            format!("{path:?} is longer than DET_TB_NAME_MAX - 1 bytes"),
        ));
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
        return Err(Error::new(
            Kind::InvalidArgument,
            "the mangler returned false; nothing was uploaded",
        ));
    }
    let raw: Vec<u8> = buf.iter().map(|c| *c as u8).collect();
    let Ok(name) = CStr::from_bytes_until_nul(&raw) else {
        return Err(Error::new(
            Kind::InvalidArgument,
            format!("the name written by the mangler is not NUL-terminated within DET_TB_NAME_MAX ({DET_TB_NAME_MAX}) bytes"),
        ));
    };
    name.to_str().map(str::to_owned).map_err(|_| {
        Error::new(
            Kind::InvalidArgument,
            "the name written by the mangler is not valid UTF-8",
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
            return Err(Error::new(
                Kind::InvalidArgument,
                format!("timeout_seconds: {timeout_seconds} must be a positive number"),
            ));
        }
        c.flush_tensorboard(crate::time::secs(timeout_seconds))
    })
}
