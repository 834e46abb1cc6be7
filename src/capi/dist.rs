//! `det_dist_*`: where this process stands in the job (ranks), the collectives over byte
//! buffers and the lists they return (`det_bytes_list_*`).

use super::boundary::{call, out_arg, value_out, with_ctx, write_out};
use super::handle::{det_context, Registry};
use super::status::det_status;
use crate::distributed::ByteList;
use crate::error::Result;
use std::ffi::c_void;

/// A list of byte buffers returned by a collective (one per rank, in rank order). Opaque,
/// library-owned: read it with `det_bytes_list_len`/`det_bytes_list_get`, free it with
/// `det_bytes_list_free`.
pub struct det_bytes_list {
    _private: [u8; 0],
}

static LISTS: Registry<ByteList> = Registry::new("list");

/// This process's global rank (0 … size-1).
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_dist_rank(ctx: *const det_context, out: *mut i32) -> det_status {
    // SAFETY: `out` is NULL or writable (this function's # Safety).
    unsafe { dist_get("det_dist_rank", ctx, out, |d| d.rank) }
}

/// The number of processes in the job.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_dist_size(ctx: *const det_context, out: *mut i32) -> det_status {
    // SAFETY: `out` is NULL or writable (this function's # Safety).
    unsafe { dist_get("det_dist_size", ctx, out, |d| d.size) }
}

/// This process's rank on its node.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_dist_local_rank(ctx: *const det_context, out: *mut i32) -> det_status {
    // SAFETY: `out` is NULL or writable (this function's # Safety).
    unsafe { dist_get("det_dist_local_rank", ctx, out, |d| d.local_rank) }
}

/// The number of processes on this node.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_dist_local_size(ctx: *const det_context, out: *mut i32) -> det_status {
    // SAFETY: `out` is NULL or writable (this function's # Safety).
    unsafe { dist_get("det_dist_local_size", ctx, out, |d| d.local_size) }
}

/// The index of this process's node.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_dist_cross_rank(ctx: *const det_context, out: *mut i32) -> det_status {
    // SAFETY: `out` is NULL or writable (this function's # Safety).
    unsafe { dist_get("det_dist_cross_rank", ctx, out, |d| d.cross_rank) }
}

/// The number of nodes.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_dist_cross_size(ctx: *const det_context, out: *mut i32) -> det_status {
    // SAFETY: `out` is NULL or writable (this function's # Safety).
    unsafe { dist_get("det_dist_cross_size", ctx, out, |d| d.cross_size) }
}

/// # Safety
/// `out` must be NULL or writable.
unsafe fn dist_get(
    name: &'static str,
    ctx: *const det_context,
    out: *mut i32,
    f: impl FnOnce(&crate::distributed::DistributedConfig) -> u32,
) -> det_status {
    // SAFETY: forwarded: `out` is NULL or writable by this function's contract.
    unsafe { value_out(name, ctx, out, |c| Ok(f(c.distributed()) as i32)) }
}

/// Copy the caller's bytes (`data` may be NULL when `len` is 0).
///
/// # Safety
/// `data` must hold `len` readable bytes, or be NULL with `len == 0`.
unsafe fn bytes_arg(data: *const c_void, len: usize) -> Result<Vec<u8>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    if data.is_null() {
        bail!(InvalidArgument, "data is NULL but len is {len}");
    }
    // SAFETY: data has len readable bytes per the contract.
    Ok(unsafe { std::slice::from_raw_parts(data as *const u8, len) }.to_vec())
}

/// Register `items` (if any) and write its handle, or NULL, to `*out`.
///
/// # Safety
/// `out` must be valid for writes (checked non-NULL by the caller).
unsafe fn list_out(out: *mut *mut det_bytes_list, items: Option<ByteList>) {
    let p = match items {
        Some(v) => LISTS.insert(v) as *mut det_bytes_list,
        None => std::ptr::null_mut(),
    };
    // SAFETY: `out` was checked non-NULL by the calling function (out_arg) and is writable by its
    // caller's # Safety.
    unsafe { write_out(out, p) };
}

type Collective = fn(&crate::distributed::DistributedContext, Vec<u8>) -> Result<Option<ByteList>>;

/// The body of the collectives: copy the caller's bytes, run `f`, return its list.
///
/// # Safety
/// `data` must hold `len` readable bytes (or be NULL with `len == 0`); `out` must be NULL or
/// writable.
unsafe fn collective(
    name: &'static str,
    ctx: *mut det_context,
    data: *const c_void,
    len: usize,
    out: *mut *mut det_bytes_list,
    f: Collective,
) -> det_status {
    with_ctx(name, ctx, |c| {
        // SAFETY: `data` holds `len` readable bytes, or is NULL with `len == 0` (this function's
        // # Safety, which is the calling export's).
        let bytes = unsafe { bytes_arg(data, len) }?;
        out_arg(out, "out")?;
        let r = f(c.collectives(), bytes)?;
        // SAFETY: `out` is not NULL (out_arg above) and writable (this function's # Safety).
        unsafe { list_out(out, r) };
        Ok(())
    })
}

/// `gather(x)`: the chief's `*out` receives every rank's bytes in rank order; on other ranks
/// `*out` is NULL. Every rank must call it (a collective). Fails with `DET_ERR_DISTRIBUTED`
/// naming the rank when a peer is lost, `DET_ERR_TIMEOUT` when peers do not arrive in time.
///
/// # Safety
/// `data` must hold `len` bytes (NULL allowed with `len == 0`); `out` writable.
#[no_mangle]
pub unsafe extern "C" fn det_dist_gather(
    ctx: *mut det_context,
    data: *const c_void,
    len: usize,
    out: *mut *mut det_bytes_list,
) -> det_status {
    // SAFETY: this function's # Safety is `collective`'s: the pointers it passes on carry the same
    // guarantees.
    unsafe { collective("det_dist_gather", ctx, data, len, out, |d, b| d.gather(b)) }
}

/// `allgather(x)`: every rank's `*out` receives every rank's bytes in rank order. A collective.
///
/// # Safety
/// As `det_dist_gather`.
#[no_mangle]
pub unsafe extern "C" fn det_dist_allgather(
    ctx: *mut det_context,
    data: *const c_void,
    len: usize,
    out: *mut *mut det_bytes_list,
) -> det_status {
    // SAFETY: this function's # Safety is `collective`'s: the pointers it passes on carry the same
    // guarantees.
    unsafe {
        collective("det_dist_allgather", ctx, data, len, out, |d, b| {
            d.allgather(b).map(Some)
        })
    }
}

/// `broadcast(x)`: every rank's `*out` receives one item, the chief's bytes (other ranks' data
/// is ignored; they may pass NULL, 0). A collective.
///
/// # Safety
/// As `det_dist_gather`.
#[no_mangle]
pub unsafe extern "C" fn det_dist_broadcast(
    ctx: *mut det_context,
    data: *const c_void,
    len: usize,
    out: *mut *mut det_bytes_list,
) -> det_status {
    // SAFETY: this function's # Safety is `collective`'s: the pointers it passes on carry the same
    // guarantees.
    unsafe {
        collective("det_dist_broadcast", ctx, data, len, out, |d, b| {
            d.broadcast(b).map(|x| Some(ByteList::Vecs(vec![x])))
        })
    }
}

/// `gather_local(x)`: as `det_dist_gather` among the ranks of this node, to the local chief
/// (in local-rank order). Every rank of the job must call it.
///
/// # Safety
/// As `det_dist_gather`.
#[no_mangle]
pub unsafe extern "C" fn det_dist_gather_local(
    ctx: *mut det_context,
    data: *const c_void,
    len: usize,
    out: *mut *mut det_bytes_list,
) -> det_status {
    // SAFETY: this function's # Safety is `collective`'s: the pointers it passes on carry the same
    // guarantees.
    unsafe {
        collective("det_dist_gather_local", ctx, data, len, out, |d, b| {
            d.gather_local(b)
        })
    }
}

/// `allgather_local(x)`: as `det_dist_allgather` among the ranks of this node.
///
/// # Safety
/// As `det_dist_gather`.
#[no_mangle]
pub unsafe extern "C" fn det_dist_allgather_local(
    ctx: *mut det_context,
    data: *const c_void,
    len: usize,
    out: *mut *mut det_bytes_list,
) -> det_status {
    // SAFETY: this function's # Safety is `collective`'s: the pointers it passes on carry the same
    // guarantees.
    unsafe {
        collective("det_dist_allgather_local", ctx, data, len, out, |d, b| {
            d.allgather_local(b).map(Some)
        })
    }
}

/// `broadcast_local(x)`: every rank receives its local chief's bytes.
///
/// # Safety
/// As `det_dist_gather`.
#[no_mangle]
pub unsafe extern "C" fn det_dist_broadcast_local(
    ctx: *mut det_context,
    data: *const c_void,
    len: usize,
    out: *mut *mut det_bytes_list,
) -> det_status {
    // SAFETY: this function's # Safety is `collective`'s: the pointers it passes on carry the same
    // guarantees.
    unsafe {
        collective("det_dist_broadcast_local", ctx, data, len, out, |d, b| {
            d.broadcast_local(b).map(|x| Some(ByteList::Vecs(vec![x])))
        })
    }
}

/// Wait until every rank of the job has called `det_dist_barrier`. A collective.
#[no_mangle]
pub extern "C" fn det_dist_barrier(ctx: *mut det_context) -> det_status {
    with_ctx("det_dist_barrier", ctx, |c| c.collectives().barrier())
}

/// The number of buffers in `list`.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_bytes_list_len(
    list: *const det_bytes_list,
    out: *mut usize,
) -> det_status {
    call("det_bytes_list_len", || {
        let l = LISTS.get(list as usize)?;
        out_arg(out, "out")?;
        // SAFETY: `out` is not NULL (out_arg above) and points to writable storage (the caller's
        // guarantee in this function's # Safety).
        unsafe { write_out(out, l.len()) };
        Ok(())
    })
}

/// Buffer `index` of `list`: `*data` points to `*len` bytes owned by the list (valid until
/// `det_bytes_list_free`; NULL when `*len` is 0). `DET_ERR_INVALID_ARGUMENT` if `index` is out
/// of range.
///
/// # Safety
/// `data` and `len` must be writable.
#[no_mangle]
pub unsafe extern "C" fn det_bytes_list_get(
    list: *const det_bytes_list,
    index: usize,
    data: *mut *const c_void,
    len: *mut usize,
) -> det_status {
    call("det_bytes_list_get", || {
        let l = LISTS.get(list as usize)?;
        out_arg(data, "data")?;
        out_arg(len, "len")?;
        let item = l.get(index).ok_or_else(|| {
            err!(
                InvalidArgument,
                "index {index} is out of range (the list has {} items)",
                l.len()
            )
        })?;
        let p = if item.is_empty() {
            std::ptr::null()
        } else {
            item.as_ptr() as *const c_void
        };
        // SAFETY: checked; the bytes live in the registry entry until the list is freed.
        unsafe {
            write_out(data, p);
            write_out(len, item.len());
        }
        Ok(())
    })
}

/// Free a list from a collective. NULL does nothing; freeing twice gives `DET_ERR_STATE`.
#[no_mangle]
pub extern "C" fn det_bytes_list_free(list: *mut det_bytes_list) -> det_status {
    if list.is_null() {
        return super::status::DET_OK;
    }
    call("det_bytes_list_free", || {
        LISTS.remove(list as usize).map(drop)
    })
}
