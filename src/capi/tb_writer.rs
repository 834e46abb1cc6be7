//! `det_tb_writer_*`: a TensorBoard event-file writer for the caller's own scalars and
//! histograms (what `torch.utils.tensorboard.SummaryWriter` is to a Python user).

use super::boundary::{call, out_arg, str_arg, write_out};
use super::handle::Registry;
use super::status::det_status;
use crate::error::Result;
use crate::tensorboard::writer::PacedWriter;
use parking_lot::Mutex;
use std::ffi::c_char;
use std::path::Path;
use std::time::SystemTime;

/// An event-file writer from `det_tb_writer_open`. Opaque. Thread-safe. Close it with
/// `det_tb_writer_close`, exactly once.
pub struct det_tb_writer {
    _private: [u8; 0],
}

static WRITERS: Registry<Mutex<PacedWriter>> = Registry::new("writer");

fn entry(w: *mut det_tb_writer) -> Result<std::sync::Arc<Mutex<PacedWriter>>> {
    WRITERS.get(w as usize)
}

/// Open a writer of TensorBoard event files in `dir` (created at the first write), typically the
/// folder of `det_train_get_tensorboard_path`, where AUTO mode syncs them to the checkpoint
/// storage with the metrics' events. Files are named
/// `events.out.tfevents.<seconds>.<host>.<pid>.<n>`; several writers never share a file.
/// Events are buffered and written by the first add a second or more after the previous write
/// (there is no background thread: the last events of a burst wait for the next add), by
/// `det_tb_writer_flush` and by `det_tb_writer_close`; each write is whole records, so a TensorBoard reading the files
/// meanwhile never sees a torn record.
///
/// # Safety
/// `dir` must be a C string; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn det_tb_writer_open(
    dir: *const c_char,
    out: *mut *mut det_tb_writer,
) -> det_status {
    call("det_tb_writer_open", || {
        out_arg(out, "out")?;
        // SAFETY: `dir` is NULL or a NUL-terminated string that stays valid during the call (the
        // caller's guarantee in this function's # Safety).
        let dir = unsafe { str_arg(dir, "dir") }?;
        if dir.is_empty() {
            bail!(InvalidArgument, "dir is empty");
        }
        let key = WRITERS.insert(Mutex::new(PacedWriter::new(Path::new(dir))));
        // SAFETY: `out` is not NULL (out_arg above) and points to writable storage (the caller's
        // guarantee in this function's # Safety).
        unsafe { write_out(out, key as *mut det_tb_writer) };
        Ok(())
    })
}

/// Add the scalar `tag` = `value` at `step` (stored as a 32-bit float, as TensorFlow does; NaN
/// and ±Inf are kept).
///
/// # Safety
/// `tag` must be a C string.
#[no_mangle]
pub unsafe extern "C" fn det_tb_writer_add_scalar(
    w: *mut det_tb_writer,
    tag: *const c_char,
    step: i64,
    value: f64,
) -> det_status {
    call("det_tb_writer_add_scalar", || {
        let e = entry(w)?;
        // SAFETY: `tag` is NULL or a NUL-terminated string that stays valid during the call (the
        // caller's guarantee in this function's # Safety).
        let tag = unsafe { str_arg(tag, "tag") }?;
        let r = e.lock().add_scalar(tag, value, step, SystemTime::now());
        r
    })
}

/// Add the histogram of `values[0..n]` as `tag` at `step`, with TensorFlow's default buckets
/// (shown in TensorBoard's Histograms and Distributions tabs). Non-finite values are not
/// counted. `values` may be NULL when `n` is 0. The array is read during the call only.
///
/// # Safety
/// `tag` must be a C string; `values` must hold `n` doubles.
#[no_mangle]
pub unsafe extern "C" fn det_tb_writer_add_histogram(
    w: *mut det_tb_writer,
    tag: *const c_char,
    step: i64,
    values: *const f64,
    n: usize,
) -> det_status {
    call("det_tb_writer_add_histogram", || {
        let e = entry(w)?;
        // SAFETY: `tag` is NULL or a NUL-terminated string that stays valid during the call (the
        // caller's guarantee in this function's # Safety).
        let tag = unsafe { str_arg(tag, "tag") }?;
        if n > 0 && values.is_null() {
            bail!(InvalidArgument, "values is NULL");
        }
        let vals: &[f64] = if n == 0 {
            &[]
        } else {
            // SAFETY: non-NULL and holding n doubles per the contract.
            unsafe { std::slice::from_raw_parts(values, n) }
        };
        let r = e.lock().add_histogram(tag, vals, step, SystemTime::now());
        r
    })
}

/// Write the events added so far.
#[no_mangle]
pub extern "C" fn det_tb_writer_flush(w: *mut det_tb_writer) -> det_status {
    call("det_tb_writer_flush", || {
        let e = entry(w)?;
        let r = e.lock().flush();
        r
    })
}

/// Write what is buffered, close the file and free the writer (even when writing fails: the
/// error is returned, the handle is gone). `det_tb_writer_close(NULL)` does nothing; closing
/// twice gives `DET_ERR_STATE`.
#[no_mangle]
pub extern "C" fn det_tb_writer_close(w: *mut det_tb_writer) -> det_status {
    if w.is_null() {
        return super::status::DET_OK;
    }
    call("det_tb_writer_close", || {
        let e = WRITERS.remove(w as usize)?;
        let r = e.lock().close();
        r
    })
}
