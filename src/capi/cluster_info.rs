//! `det_cluster_info_json`: Determined's `get_cluster_info()`, without a context.

use super::boundary::{call, opt_str_arg, out_arg, owned_c_string, write_out};
use super::status::det_status;
use crate::cluster_info::ClusterInfo;
use crate::json::to_wire;
use std::ffi::c_char;

/// `determined.get_cluster_info()`, without a context: reads the info files of the task
/// container — `cluster.json` and its companions `trial.json`, `rendezvous.json`,
/// `resources.json` — from `info_dir` (NULL: `$DET_CLUSTER_INFO_DIR`, else
/// `/run/determined/info`, as `det_core_init` chooses), checks them as `det_core_init` does, and
/// returns them as one JSON object in `*out`: the keys of `cluster.json` (`master_url`
/// canonical), then `"trial"`, `"rendezvous"` and `"resources"` (each `null` when its file is
/// absent). Off-cluster (no `cluster.json`) `*out` is set to NULL and `DET_OK` returned. A broken
/// file is `DET_ERR_INVALID_ARGUMENT` naming the file and the key. The object holds the task's
/// session token (`"session_token"`), a credential: do not log it. Free a non-NULL result with
/// `det_string_free`. Thread-safe.
///
/// # Safety
/// `info_dir` must be NULL or a C string; `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_cluster_info_json(
    info_dir: *const c_char,
    out: *mut *mut c_char,
) -> det_status {
    call("det_cluster_info_json", || {
        // SAFETY: `info_dir` is NULL or a NUL-terminated string that stays valid during the call
        // (the caller's guarantee in this function's # Safety).
        let dir = unsafe { opt_str_arg(info_dir, "info_dir") }?;
        out_arg(out, "out")?;
        let dir = crate::cluster_info::info_dir(dir.map(std::path::Path::new));
        let v = if crate::cluster_info::is_on_cluster(&dir) {
            let json = ClusterInfo::load(&dir)?.to_json()?;
            owned_c_string(&to_wire(&json))?
        } else {
            std::ptr::null_mut()
        };
        // SAFETY: `out` is not NULL (out_arg above) and points to writable storage (the caller's
        // guarantee in this function's # Safety).
        unsafe { write_out(out, v) };
        Ok(())
    })
}
