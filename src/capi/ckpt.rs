//! `det_ckpt_*`: checkpoints.

use super::boundary::{
    call, json_object_arg, out_arg, owned_c_string, str_arg, with_ctx, write_out,
};
use super::enums;
use super::handle::{det_context, Registry};
use super::status::det_status;
use crate::checkpoint::{RestoreScope, StoreScope, UploadMode};
use crate::error::{Error, Result};
use crate::json::{to_wire, Map, Value};
use parking_lot::Mutex;
use std::ffi::{c_char, c_void, CString};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Size of a buffer that holds a storage id (a 36-character UUID) and its NUL.
pub const DET_STORAGE_ID_LEN: usize = 37;

/// A selector: return true to include `path` (relative to the checkpoint root, `/`-separated;
/// folders end in `/`). Called on the thread that made the detcore call, during that call;
/// `path` is valid only during the callback. It must not throw (C++) or longjmp, and must not
/// close the context.
pub type det_selector_fn =
    Option<unsafe extern "C" fn(path: *const c_char, userdata: *mut c_void) -> bool>;

/// An open `store_path` scope from `det_ckpt_store_path_begin`. Opaque. End it with
/// `det_ckpt_store_path_end` (publish) or `det_ckpt_store_path_abort` (discard), exactly once.
pub struct det_ckpt_store {
    _private: [u8; 0],
}

/// An open `restore_path` scope from `det_ckpt_restore_path_begin`. Opaque. End it with
/// `det_ckpt_restore_path_end`, exactly once.
pub struct det_ckpt_restore {
    _private: [u8; 0],
}

struct StoreEntry {
    ctx: &'static det_context,
    scope: Mutex<Option<StoreScope>>,
    path: CString,
    id: CString,
    /// Aborted by `det_core_close` while open.
    aborted_at_close: AtomicBool,
}

struct RestoreEntry {
    ctx: &'static det_context,
    scope: Mutex<Option<RestoreScope>>,
    path: CString,
    id: CString,
}

static STORES: Registry<StoreEntry> = Registry::new("store");
static RESTORES: Registry<RestoreEntry> = Registry::new("restore");

/// Move the scope out of a handle's entry just removed from its registry (a handle is removed
/// once, so only a bug finds it gone).
fn take_scope<S>(scope: &Mutex<Option<S>>, what: &str) -> Result<S> {
    scope
        .lock()
        .take()
        .ok_or_else(|| err!(State, "{what} was already ended"))
}

fn aborted_at_close(id: &CString) -> Error {
    err!(State, "store (checkpoint {}) was aborted when its context was closed (det_core_close found it still open); nothing was stored",
            id.to_string_lossy())
}

/// At `det_core_close`: abort every `store_path` scope of `shell` still open (its folder is
/// removed, nothing is stored) and end every open `restore_path` scope (a temporary download is
/// removed). The handles stay valid for `_end` (which then fails) and `_abort` (which then
/// succeeds).
pub(crate) fn close_open_scopes(shell: &det_context) {
    for e in STORES.values() {
        if !std::ptr::eq(e.ctx, shell) {
            continue;
        }
        if let Some(scope) = e.scope.lock().take() {
            e.aborted_at_close.store(true, Ordering::SeqCst);
            let path = scope.path().display().to_string();
            let id = scope.storage_id().to_owned();
            drop(scope);
            log_warn!(
                "det_core_close: checkpoint {id} was still open (det_ckpt_store_path_begin without det_ckpt_store_path_end or _abort); aborted it: nothing was stored, and its folder {path} was removed"
            );
        }
    }
    for e in RESTORES.values() {
        if !std::ptr::eq(e.ctx, shell) {
            continue;
        }
        if let Some(scope) = e.scope.lock().take() {
            log_info!(
                "det_core_close: restore of checkpoint {} was still open (det_ckpt_restore_path_begin without _end); ended it",
                scope.storage_id()
            );
        }
    }
}

/// Run `f` with the caller's selector as a Rust closure (or `None`).
fn with_selector<T>(
    selector: det_selector_fn,
    userdata: *mut c_void,
    f: impl FnOnce(Option<&mut dyn FnMut(&str) -> bool>) -> Result<T>,
) -> Result<T> {
    match selector {
        None => f(None),
        Some(cb) => {
            let mut closure = |p: &str| -> bool {
                match CString::new(p) {
                    // SAFETY: the caller promised cb is callable with a C string and its userdata.
                    Ok(c) => unsafe { cb(c.as_ptr(), userdata) },
                    Err(_) => false,
                }
            };
            f(Some(&mut closure))
        }
    }
}

fn path_str(p: &Path) -> Result<CString> {
    CString::new(p.to_string_lossy().as_bytes())
        .map_err(|_| err!(Internal, "path contains a NUL byte"))
}

/// Begin `store_path(metadata, shard)`: make a new, empty checkpoint folder to write into.
///
/// `metadata_json` must be a JSON object with an integer `"steps_completed"` (0 … 2³¹−1); it
/// is checked here, before anything is written (Python checks only after uploading). With
/// `shard == false` only the chief may call; with `shard == true` every rank must call (a
/// collective) and the files of all ranks form one checkpoint.
///
/// Write into the folder given by `det_ckpt_store_path`, then call `det_ckpt_store_path_end`
/// to publish it, or `det_ckpt_store_path_abort` to discard it. Until `_end` succeeds nothing is
/// visible as a checkpoint.
///
/// # Safety
/// `metadata_json` must be a C string; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn det_ckpt_store_path_begin(
    ctx: *mut det_context,
    metadata_json: *const c_char,
    shard: bool,
    out: *mut *mut det_ckpt_store,
) -> det_status {
    with_ctx("det_ckpt_store_path_begin", ctx, |c| {
        // SAFETY: `metadata_json` is NULL or a NUL-terminated string that stays valid during the
        // call (the caller's guarantee in this function's # Safety).
        let metadata = unsafe { json_object_arg(metadata_json, "metadata_json") }?;
        out_arg(out, "out")?;
        // SAFETY: this function's # Safety is `begin_store`'s: the pointers it passes on carry the
        // same guarantees.
        unsafe { begin_store(c, ctx, metadata, shard, out) }
    })
}

/// `det_ckpt_store_path_begin` without formatting JSON: the metadata is
/// `{"steps_completed": steps_completed}`, followed by the entries of `extra_metadata_json` (NULL,
/// or a JSON object of other metadata, e.g. `{"reason": "preempted"}`; it must not hold
/// `"steps_completed"` itself). `steps_completed` must be 0 … 2³¹−1, as the master requires.
/// Everything else is as `det_ckpt_store_path_begin`: end the scope with
/// `det_ckpt_store_path_end` or `_abort`; with `shard == true` every rank must call.
///
/// ```c
/// det_ckpt_store *store;
/// DET_CHECK(det_ckpt_store_path_begin_steps(ctx, step, NULL, false, &store));
/// ```
///
/// Errors: `DET_ERR_INVALID_ARGUMENT` for a NULL `out`, a negative or too large
/// `steps_completed`, malformed or non-object `extra_metadata_json`, or one that holds
/// `"steps_completed"`; otherwise as `det_ckpt_store_path_begin`.
///
/// # Safety
/// `extra_metadata_json` must be NULL or a C string; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn det_ckpt_store_path_begin_steps(
    ctx: *mut det_context,
    steps_completed: i64,
    extra_metadata_json: *const c_char,
    shard: bool,
    out: *mut *mut det_ckpt_store,
) -> det_status {
    with_ctx("det_ckpt_store_path_begin_steps", ctx, |c| {
        let extra = if extra_metadata_json.is_null() {
            Map::new()
        } else {
            // SAFETY: `extra_metadata_json` is NULL or a NUL-terminated string that stays valid
            // during the call (the caller's guarantee in this function's # Safety).
            unsafe { json_object_arg(extra_metadata_json, "extra_metadata_json") }?
        };
        out_arg(out, "out")?;
        let metadata = steps_metadata(steps_completed, extra)?;
        // SAFETY: this function's # Safety is `begin_store`'s: the pointers it passes on carry the
        // same guarantees.
        unsafe { begin_store(c, ctx, metadata, shard, out) }
    })
}

/// `{"steps_completed": steps}` followed by `extra` (which must not name it).
fn steps_metadata(steps: i64, extra: Map) -> Result<Map> {
    if extra.contains_key("steps_completed") {
        bail!(InvalidArgument, "extra_metadata_json holds \"steps_completed\"; pass it only as the steps_completed argument");
    }
    if !(0..=i64::from(i32::MAX)).contains(&steps) {
        bail!(
            InvalidArgument,
            "steps_completed: must be between 0 and {}, got {steps}",
            i32::MAX
        );
    }
    let mut m = Map::new();
    m.insert("steps_completed", Value::from(steps));
    for (k, v) in extra {
        m.insert(k, v);
    }
    Ok(m)
}

/// Open a store scope with checked `metadata` and hand out its handle.
///
/// # Safety
/// `out` must be writable (checked non-NULL by the caller).
unsafe fn begin_store(
    c: &crate::context::Context,
    ctx: *mut det_context,
    metadata: Map,
    shard: bool,
    out: *mut *mut det_ckpt_store,
) -> Result<()> {
    let scope = c.checkpoint().store_path_begin(metadata, shard)?;
    let entry = StoreEntry {
        // SAFETY: with_ctx accepted `ctx` as a live context a moment ago.
        ctx: unsafe { det_context::from_ptr(ctx) }?,
        path: path_str(scope.path())?,
        id: CString::new(scope.storage_id()).map_err(|_| err!(Internal, "bad id"))?,
        scope: Mutex::new(Some(scope)),
        aborted_at_close: AtomicBool::new(false),
    };
    let key = STORES.insert(entry);
    // SAFETY: `out` was checked non-NULL by the calling export (out_arg) and is writable by its
    // caller's # Safety.
    unsafe { write_out(out, key as *mut det_ckpt_store) };
    Ok(())
}

/// The folder to write the checkpoint's files into (absolute path). Borrowed: valid until the
/// scope ends; do not free it.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_ckpt_store_path(
    store: *const det_ckpt_store,
    out: *mut *const c_char,
) -> det_status {
    call("det_ckpt_store_path", || {
        let e = STORES.get(store as usize)?;
        out_arg(out, "out")?;
        if e.aborted_at_close.load(Ordering::SeqCst) {
            return Err(aborted_at_close(&e.id));
        }
        // SAFETY: `out` is not NULL (out_arg above) and writable (this function's # Safety); the
        // CString it receives lives in the registry entry until the scope ends.
        unsafe { write_out(out, e.path.as_ptr()) };
        Ok(())
    })
}

/// The storage id the checkpoint will have. Borrowed: valid until the scope ends.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_ckpt_store_storage_id(
    store: *const det_ckpt_store,
    out: *mut *const c_char,
) -> det_status {
    call("det_ckpt_store_storage_id", || {
        let e = STORES.get(store as usize)?;
        out_arg(out, "out")?;
        // SAFETY: `out` is not NULL (out_arg above) and writable (this function's # Safety); the
        // CString it receives lives in the registry entry until the scope ends.
        unsafe { write_out(out, e.id.as_ptr()) };
        Ok(())
    })
}

/// End a `store_path` scope: write `metadata.json`, publish the checkpoint atomically and
/// report it (on-cluster to the master, off-cluster to the run's index). The storage id is
/// copied into `storage_id_out` (`DET_STORAGE_ID_LEN` bytes) unless it is NULL. With
/// `async_checkpoints` set at init this returns once the files are handed off (see
/// `det_ckpt_store_path_end_mode`).
///
/// The scope is ended whatever the result; on failure nothing is published. Ending a scope
/// twice, or after `_abort`, gives `DET_ERR_STATE`.
///
/// # Safety
/// `storage_id_out` must be NULL or point to `DET_STORAGE_ID_LEN` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn det_ckpt_store_path_end(
    store: *mut det_ckpt_store,
    storage_id_out: *mut c_char,
) -> det_status {
    call("det_ckpt_store_path_end", || {
        // SAFETY: this function's # Safety is `end_store`'s: the pointers it passes on carry the
        // same guarantees.
        unsafe { end_store(store, UploadMode::Default, storage_id_out) }
    })
}

/// `det_ckpt_store_path_end` with an explicit upload mode (`DET_UPLOAD_MODE_*`).
///
/// With `DET_UPLOAD_MODE_ASYNC` (or `_DEFAULT` when `async_checkpoints` was set at init) it
/// writes `metadata.json`, hands the folder to a background thread and returns: do not touch the
/// folder afterwards. The checkpoint is stored (every file, `metadata.json` last) and only then
/// reported to the master (on-cluster) or the run index (off-cluster), in the order the scopes
/// were ended. The storage id is valid at once, but the checkpoint exists only once stored: call
/// `det_ckpt_wait` before relying on it (e.g. before restoring it elsewhere).
///
/// Staging is bounded: when the checkpoints handed off and not yet stored would exceed the
/// staging budget (8 GiB, or `DETCORE_ASYNC_STAGING_BYTES` bytes), this call waits for earlier
/// uploads first. A failed asynchronous upload is never reported; its error is returned by the
/// next `det_ckpt_store_path_begin`, `det_ckpt_upload`, `det_ckpt_wait` or `det_core_close`,
/// and its staged files are removed (a job whose storage is down must not fill its disk).
///
/// A synchronous end waits for pending asynchronous ones first (reports stay in order).
/// An unknown `upload_mode` gives `DET_ERR_INVALID_ARGUMENT` and leaves the scope open.
///
/// # Safety
/// `storage_id_out` must be NULL or point to `DET_STORAGE_ID_LEN` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn det_ckpt_store_path_end_mode(
    store: *mut det_ckpt_store,
    upload_mode: i32,
    storage_id_out: *mut c_char,
) -> det_status {
    call("det_ckpt_store_path_end_mode", || {
        let mode = enums::upload_mode(upload_mode, "upload_mode")?;
        // SAFETY: this function's # Safety is `end_store`'s: the pointers it passes on carry the
        // same guarantees.
        unsafe { end_store(store, mode, storage_id_out) }
    })
}

/// # Safety
/// `storage_id_out` must be NULL or point to `DET_STORAGE_ID_LEN` writable bytes.
unsafe fn end_store(
    store: *mut det_ckpt_store,
    mode: UploadMode,
    storage_id_out: *mut c_char,
) -> Result<()> {
    let e = STORES.remove(store as usize)?;
    if e.aborted_at_close.load(Ordering::SeqCst) {
        return Err(aborted_at_close(&e.id));
    }
    let scope = take_scope(&e.scope, "store")?;
    let id = e
        .ctx
        .with_live(|c| c.checkpoint().store_path_end_mode(scope, mode))?;
    if !storage_id_out.is_null() {
        // SAFETY: `storage_id_out` is not NULL (tested above) and has DET_STORAGE_ID_LEN writable
        // bytes (the calling export's # Safety).
        unsafe { write_storage_id(storage_id_out, &id) }?;
    }
    Ok(())
}

/// Abandon a `store_path` scope (e.g. the code that writes the files failed): its folder is
/// removed; nothing is published or reported. `NULL` does nothing.
///
/// `det_core_close` aborts the scopes still open (logging a warning for each): aborting such a
/// scope afterwards returns `DET_OK` and frees the handle; ending it returns `DET_ERR_STATE`.
#[no_mangle]
pub extern "C" fn det_ckpt_store_path_abort(store: *mut det_ckpt_store) -> det_status {
    if store.is_null() {
        return super::status::DET_OK;
    }
    call("det_ckpt_store_path_abort", || {
        let e = STORES.remove(store as usize)?;
        if e.aborted_at_close.load(Ordering::SeqCst) {
            return Ok(());
        }
        let scope = take_scope(&e.scope, "store")?;
        e.ctx.with_live(|c| c.checkpoint().store_path_abort(scope))
    })
}

/// `upload(ckpt_dir, metadata, shard, selector)`: store the files of `dir` that `selector`
/// accepts (NULL: all) as a new checkpoint, and report it. `metadata.json` is written into the
/// checkpoint, never into `dir`. The new storage id is copied into `storage_id_out`
/// (`DET_STORAGE_ID_LEN` bytes).
///
/// With `shard == true` every rank must call (a collective); ranks with nothing to store pass
/// `dir = NULL`; files listed by several ranks must be identical; metadata is merged; every rank
/// gets the same id or the same error. With `shard == false` only the chief may call.
///
/// # Safety
/// `dir` and `metadata_json` must be C strings; `storage_id_out` must point to
/// `DET_STORAGE_ID_LEN` writable bytes; `selector` (if set) must be callable with `userdata`.
#[no_mangle]
pub unsafe extern "C" fn det_ckpt_upload(
    ctx: *mut det_context,
    dir: *const c_char,
    metadata_json: *const c_char,
    shard: bool,
    selector: det_selector_fn,
    userdata: *mut c_void,
    storage_id_out: *mut c_char,
) -> det_status {
    with_ctx("det_ckpt_upload", ctx, |c| {
        // SAFETY: `dir` is NULL or a NUL-terminated string that stays valid during the call (the
        // caller's guarantee in this function's # Safety).
        let dir = unsafe { super::boundary::opt_str_arg(dir, "dir") }?;
        // SAFETY: `metadata_json` is NULL or a NUL-terminated string that stays valid during the
        // call (the caller's guarantee in this function's # Safety).
        let metadata = unsafe { json_object_arg(metadata_json, "metadata_json") }?;
        out_arg(storage_id_out, "storage_id_out")?;
        let id = with_selector(selector, userdata, |sel| {
            c.checkpoint()
                .upload(dir.map(Path::new), metadata, shard, sel)
        })?;
        // SAFETY: `storage_id_out` is not NULL (checked above) and has DET_STORAGE_ID_LEN writable
        // bytes (this function's # Safety).
        unsafe { write_storage_id(storage_id_out, &id) }
    })
}

/// `download(storage_id, ckpt_dir, download_mode, selector)`: copy the checkpoint's files that
/// `selector` accepts (NULL: all) into `dir` (created if needed). `download_mode` is a
/// `DET_DOWNLOAD_MODE_*` value. `DET_ERR_NOT_FOUND` if the checkpoint does not exist. Files are
/// checked against the checkpoint's manifest as they are written: on a mismatch the call
/// returns `DET_ERR_STORAGE` naming the file and removes the files it wrote (a single-process
/// off-cluster run downloading its resume point falls back as `det_ckpt_restore_path_begin`
/// does).
///
/// # Safety
/// `storage_id` and `dir` must be C strings; `selector` (if set) callable with `userdata`.
#[no_mangle]
pub unsafe extern "C" fn det_ckpt_download(
    ctx: *mut det_context,
    storage_id: *const c_char,
    dir: *const c_char,
    download_mode: i32,
    selector: det_selector_fn,
    userdata: *mut c_void,
) -> det_status {
    with_ctx("det_ckpt_download", ctx, |c| {
        // SAFETY: `storage_id` is NULL or a NUL-terminated string that stays valid during the call
        // (the caller's guarantee in this function's # Safety).
        let id = unsafe { str_arg(storage_id, "storage_id") }?;
        // SAFETY: `dir` is NULL or a NUL-terminated string that stays valid during the call (the
        // caller's guarantee in this function's # Safety).
        let dir = unsafe { str_arg(dir, "dir") }?;
        let mode = enums::download_mode(download_mode, "download_mode")?;
        with_selector(selector, userdata, |sel| {
            c.checkpoint().download(id, Path::new(dir), mode, sel)
        })
    })
}

/// Begin `restore_path(storage_id, download_mode, selector)`: a local folder with the
/// checkpoint's files. For folder storage (shared_fs, directory) it is the checkpoint itself
/// (read it, do not change it; the selector is ignored); for object storage a temporary
/// download removed by `det_ckpt_restore_path_end`.
///
/// When the checkpoint has a manifest (detcore writes one beside `metadata.json`), every file
/// is checked against its size and CRC32C before this returns: a flipped byte, a truncated or a
/// missing file gives `DET_ERR_STORAGE` with a message naming the checkpoint and the file, and
/// no folder. Checkpoints without a manifest (written by Determined's Python client) are not
/// checked. Off-cluster, restoring the run's resume point (`det_info_latest_checkpoint`) that
/// turns out damaged restores the newest older checkpoint of the run that verifies instead: a
/// warning names the damaged one and why, `det_ckpt_restore_storage_id` and
/// `det_info_latest_checkpoint` then name the one restored. In a job of several processes that
/// fallback needs `DET_DOWNLOAD_MODE_LOCAL_WORKERS_SHARE_DOWNLOAD`, called by every rank (so
/// that all restore the same checkpoint). `DETCORE_CHECKSUMS=0` turns checking off.
/// Lifetimes: `storage_id` is only read during this call (free the string from
/// `det_info_latest_checkpoint` with `det_string_free` whenever it suits you). The folder, and
/// the path string from `det_ckpt_restore_path`, are valid until `det_ckpt_restore_path_end`:
/// keep the scope open until every file is read — if your model build or data-loader set-up
/// reads the checkpoint lazily, end the scope after it. To keep files beyond the scope, copy
/// them, or use `det_ckpt_download` into a folder you own. Each scope holds no lock: several may
/// be open at once, on any threads.
///
/// # Safety
/// `storage_id` must be a C string; `out` writable; `selector` (if set) callable with `userdata`.
#[no_mangle]
pub unsafe extern "C" fn det_ckpt_restore_path_begin(
    ctx: *mut det_context,
    storage_id: *const c_char,
    download_mode: i32,
    selector: det_selector_fn,
    userdata: *mut c_void,
    out: *mut *mut det_ckpt_restore,
) -> det_status {
    with_ctx("det_ckpt_restore_path_begin", ctx, |c| {
        // SAFETY: `storage_id` is NULL or a NUL-terminated string that stays valid during the call
        // (the caller's guarantee in this function's # Safety).
        let id = unsafe { str_arg(storage_id, "storage_id") }?;
        let mode = enums::download_mode(download_mode, "download_mode")?;
        out_arg(out, "out")?;
        let scope = with_selector(selector, userdata, |sel| {
            c.checkpoint().restore_path_begin(id, mode, sel)
        })?;
        let entry = RestoreEntry {
            // SAFETY: with_ctx accepted `ctx` as a live context a moment ago.
            ctx: unsafe { det_context::from_ptr(ctx) }?,
            path: path_str(scope.path())?,
            id: CString::new(scope.storage_id()).map_err(|_| err!(Internal, "bad id"))?,
            scope: Mutex::new(Some(scope)),
        };
        let key = RESTORES.insert(entry);
        // SAFETY: `out` is not NULL (out_arg above) and points to writable storage (the caller's
        // guarantee in this function's # Safety).
        unsafe { write_out(out, key as *mut det_ckpt_restore) };
        Ok(())
    })
}

/// The folder holding the restored checkpoint (an absolute path). Borrowed: the string and the
/// folder it names are valid until `det_ckpt_restore_path_end`; do not free it. Copy the string
/// (`strdup`) if you need the name later, but not the files: for object storage the folder is
/// removed when the scope ends.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_ckpt_restore_path(
    restore: *const det_ckpt_restore,
    out: *mut *const c_char,
) -> det_status {
    call("det_ckpt_restore_path", || {
        let e = RESTORES.get(restore as usize)?;
        out_arg(out, "out")?;
        // SAFETY: `out` is not NULL (out_arg above) and writable (this function's # Safety); the
        // CString it receives lives in the registry entry until the scope ends.
        unsafe { write_out(out, e.path.as_ptr()) };
        Ok(())
    })
}

/// The storage id of the checkpoint a `restore_path` scope restored: the one asked for, or
/// after an off-cluster resume fallback the older checkpoint restored instead (see
/// `det_ckpt_restore_path_begin`). Borrowed: valid until the scope ends; do not free it.
/// `DET_ERR_STATE` for an ended scope, `DET_ERR_INVALID_ARGUMENT` for NULL.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_ckpt_restore_storage_id(
    restore: *const det_ckpt_restore,
    out: *mut *const c_char,
) -> det_status {
    call("det_ckpt_restore_storage_id", || {
        let e = RESTORES.get(restore as usize)?;
        out_arg(out, "out")?;
        // SAFETY: `out` is not NULL (out_arg above) and writable (this function's # Safety); the
        // CString it receives lives in the registry entry until the scope ends.
        unsafe { write_out(out, e.id.as_ptr()) };
        Ok(())
    })
}

/// End a `restore_path` scope (a temporary download is removed). The scope is ended whatever
/// the result; ending it twice gives `DET_ERR_STATE`.
#[no_mangle]
pub extern "C" fn det_ckpt_restore_path_end(restore: *mut det_ckpt_restore) -> det_status {
    call("det_ckpt_restore_path_end", || {
        let e = RESTORES.remove(restore as usize)?;
        let scope = take_scope(&e.scope, "restore")?;
        e.ctx.with_live(|c| c.checkpoint().restore_path_end(scope))
    })
}

/// The metadata of a checkpoint, as a JSON object (non-finite numbers as the strings `"NaN"`,
/// `"Infinity"`, `"-Infinity"`). Works off-cluster too (it reads `metadata.json`). Free with
/// `det_string_free`.
///
/// # Safety
/// `storage_id` must be a C string; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn det_ckpt_get_metadata(
    ctx: *mut det_context,
    storage_id: *const c_char,
    out: *mut *mut c_char,
) -> det_status {
    with_ctx("det_ckpt_get_metadata", ctx, |c| {
        // SAFETY: `storage_id` is NULL or a NUL-terminated string that stays valid during the call
        // (the caller's guarantee in this function's # Safety).
        let id = unsafe { str_arg(storage_id, "storage_id") }?;
        out_arg(out, "out")?;
        let m = c.checkpoint().get_metadata(id)?;
        let s = owned_c_string(&to_wire(&Value::Object(m)))?;
        // SAFETY: `out` is not NULL (out_arg above) and points to writable storage (the caller's
        // guarantee in this function's # Safety).
        unsafe { write_out(out, s) };
        Ok(())
    })
}

/// Delete a checkpoint: its files first, then its record (master or run index). Deleting a
/// checkpoint that is not in the storage is not an error.
///
/// # Safety
/// `storage_id` must be a C string.
#[no_mangle]
pub unsafe extern "C" fn det_ckpt_delete(
    ctx: *mut det_context,
    storage_id: *const c_char,
) -> det_status {
    with_ctx("det_ckpt_delete", ctx, |c| {
        // SAFETY: `storage_id` is NULL or a NUL-terminated string that stays valid during the call
        // (the caller's guarantee in this function's # Safety).
        let id = unsafe { str_arg(storage_id, "storage_id") }?;
        c.checkpoint().delete(id)
    })
}

/// Wait until every asynchronous checkpoint upload has been stored and reported; returns the
/// first failure among them (not returned before by another call; a status of
/// `DET_ERR_STORAGE` and the message name the checkpoint and the cause). Returns at once when
/// nothing is pending. `det_core_close` waits the same way.
#[no_mangle]
pub extern "C" fn det_ckpt_wait(ctx: *mut det_context) -> det_status {
    with_ctx("det_ckpt_wait", ctx, |c| c.checkpoint().wait())
}

/// Copy a storage id into a caller buffer of `DET_STORAGE_ID_LEN` bytes.
///
/// # Safety
/// `out` must point to `DET_STORAGE_ID_LEN` writable bytes.
unsafe fn write_storage_id(out: *mut c_char, id: &str) -> Result<()> {
    let bytes = id.as_bytes();
    if bytes.len() > crate::checkpoint::STORAGE_ID_LEN {
        return Err(err!(
            Internal,
            "storage id {id:?} is longer than DET_STORAGE_ID_LEN - 1"
        ));
    }
    // SAFETY: out has DET_STORAGE_ID_LEN (37) bytes; we write len + 1 <= 37.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), out as *mut u8, bytes.len());
        *out.add(bytes.len()) = 0;
    }
    Ok(())
}
