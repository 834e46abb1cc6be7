//! `det_dist_*`: collectives over byte buffers, and rank information from launchers.

use super::boundary::{call, out_arg, with_ctx, write_out};
use super::handle::{det_context, Registry};
use super::options::{det_distributed_config, distributed_from_c};
use super::status::det_status;
use crate::distributed::env::{from_env_or_info, Env, Launcher};
use crate::distributed::{ByteList, DistributedConfig};
use crate::error::{Error, Kind, Result};
use std::ffi::{c_char, c_void, CString};

/// `DET_LAUNCHER_AUTO`: the first launcher whose variables are present (torchrun, DeepSpeed,
/// Horovod, Open MPI, MPICH/PMI, Slurm, in that order), else rank 0 of 1.
pub const DET_LAUNCHER_AUTO: i32 = 0;
/// torchrun / `torch.distributed.run`: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
/// GROUP_RANK, GROUP_WORLD_SIZE; chief address from DET_CHIEF_IP or MASTER_ADDR.
pub const DET_LAUNCHER_TORCH: i32 = 1;
/// The DeepSpeed launcher: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_SIZE, CROSS_RANK, CROSS_SIZE.
pub const DET_LAUNCHER_DEEPSPEED: i32 = 2;
/// horovodrun: HOROVOD_RANK, HOROVOD_SIZE, HOROVOD_LOCAL_RANK, HOROVOD_LOCAL_SIZE,
/// HOROVOD_CROSS_RANK, HOROVOD_CROSS_SIZE.
pub const DET_LAUNCHER_HOROVOD: i32 = 3;
/// Open MPI's mpirun: OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK, _LOCAL_SIZE, _NODE_RANK.
pub const DET_LAUNCHER_OPENMPI: i32 = 4;
/// MPICH / Intel MPI (PMI): PMI_RANK, PMI_SIZE, MPI_LOCALRANKID, MPI_LOCALNRANKS (block placement).
pub const DET_LAUNCHER_MPICH: i32 = 5;
/// Slurm's srun: SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NODEID, SLURM_NNODES; chief
/// address from DET_CHIEF_IP or the first host of SLURM_STEP_NODELIST / SLURM_JOB_NODELIST.
pub const DET_LAUNCHER_SLURM: i32 = 6;
/// Determined's own files, on-cluster: containers and this container's rank from
/// `rendezvous.json` (chief at the first container's address), the port from
/// `INTER_TRAIN_PROCESS_COMM_PORT_1`, processes per container from LOCAL_WORLD_SIZE/LOCAL_SIZE
/// (else 1) and this process's index from LOCAL_RANK (else 0). `DET_LAUNCHER_AUTO` picks it
/// on-cluster when no launcher's variables are set.
pub const DET_LAUNCHER_DETERMINED: i32 = 7;

/// A list of byte buffers returned by a collective (one per rank, in rank order). Opaque,
/// library-owned: read it with `det_bytes_list_len`/`det_bytes_list_get`, free it with
/// `det_bytes_list_free`.
pub struct det_bytes_list {
    _private: [u8; 0],
}

static LISTS: Registry<ByteList> = Registry::new("list");

fn launcher(v: i32) -> Result<Launcher> {
    Ok(match v {
        DET_LAUNCHER_AUTO => Launcher::Auto,
        DET_LAUNCHER_TORCH => Launcher::Torch,
        DET_LAUNCHER_DEEPSPEED => Launcher::DeepSpeed,
        DET_LAUNCHER_HOROVOD => Launcher::Horovod,
        DET_LAUNCHER_OPENMPI => Launcher::OpenMpi,
        DET_LAUNCHER_MPICH => Launcher::Mpich,
        DET_LAUNCHER_SLURM => Launcher::Slurm,
        DET_LAUNCHER_DETERMINED => Launcher::Determined,
        v => {
            return Err(Error::new(
                Kind::InvalidArgument,
                format!("launcher: unknown value {v} (expected a DET_LAUNCHER_* constant)"),
            ))
        }
    })
}

/// Fill `cfg` with this process's ranks as `launcher` (a `DET_LAUNCHER_*` value) exported them.
/// `cfg` must have been initialised with `det_distributed_config_default`; its port and timeouts
/// are kept unless `DETCORE_CHIEF_PORT` or `INTER_TRAIN_PROCESS_COMM_PORT_1` is set. The chief's
/// address comes from `DET_CHIEF_IP` first. `job_id` is kept if set, else filled from
/// `DETCORE_JOB_ID`, else from the launcher (`slurm:<job>.<step>`, `openmpi:<PMIx namespace>`,
/// `torchrun:<run id>`, ...; left NULL where the launcher names no job). The strings `cfg`
/// points to (chief_ip, job_id) are owned by the library and stay valid until the process ends.
///
/// Errors (`DET_ERR_INVALID_ARGUMENT`) name the variable: `WORLD_SIZE is not set`,
/// `LOCAL_WORLD_SIZE=3 does not divide the world size 4`, `rank 4 must be less than size 4`,
/// and a Slurm batch script of several tasks (no `SLURM_STEP_ID`: start the ranks with srun).
///
/// # Safety
/// `cfg` must point to an initialised `det_distributed_config`.
#[no_mangle]
pub unsafe extern "C" fn det_distributed_from_env(
    launcher_kind: i32,
    cfg: *mut det_distributed_config,
) -> det_status {
    call("det_distributed_from_env", || {
        let l = launcher(launcher_kind)?;
        out_arg(cfg, "cfg")?;
        // SAFETY: initialised per the contract.
        let base: DistributedConfig = unsafe { distributed_from_c(cfg) }?;
        let get = |k: &str| std::env::var(k).ok();
        let info = crate::cluster_info::info_dir(None);
        let c = from_env_or_info(l, &Env::new(&get), &base, Some(&info))?;
        let chief: *const c_char = match &c.chief_ip {
            Some(ip) => intern(ip)?,
            None => std::ptr::null(),
        };
        let job: *const c_char = match &c.job_id {
            Some(j) => intern(j)?,
            None => std::ptr::null(),
        };
        // SAFETY: cfg checked; its first field is its size.
        let size = unsafe { *(cfg as *const usize) };
        // SAFETY: cfg checked; we only write fields of the struct it points to.
        unsafe {
            (*cfg).rank = c.rank as i32;
            (*cfg).size = c.size as i32;
            (*cfg).local_rank = c.local_rank as i32;
            (*cfg).local_size = c.local_size as i32;
            (*cfg).cross_rank = c.cross_rank as i32;
            (*cfg).cross_size = c.cross_size as i32;
            (*cfg).chief_ip = chief;
            (*cfg).port = c.port as i32;
            // A struct of the first published size ends before job_id.
            if size
                >= std::mem::offset_of!(det_distributed_config, job_id)
                    + std::mem::size_of::<*const c_char>()
            {
                (*cfg).job_id = job;
            }
        }
        Ok(())
    })
}

/// A C string for `s` that lives until the process ends (one copy per distinct value).
fn intern(s: &str) -> Result<*const c_char> {
    static STRINGS: parking_lot::Mutex<Vec<CString>> = parking_lot::Mutex::new(Vec::new());
    let mut all = STRINGS.lock();
    if let Some(c) = all.iter().find(|c| c.as_bytes() == s.as_bytes()) {
        return Ok(c.as_ptr());
    }
    let c = CString::new(s).map_err(|_| {
        Error::new(
            Kind::InvalidArgument,
            format!(
                "{s:?} (a chief address or job identity from the environment) contains a NUL byte"
            ),
        )
    })?;
    let p = c.as_ptr();
    all.push(c);
    Ok(p)
}

/// Copy the caller's bytes (`data` may be NULL when `len` is 0).
unsafe fn bytes_arg(data: *const c_void, len: usize) -> Result<Vec<u8>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    if data.is_null() {
        return Err(Error::new(
            Kind::InvalidArgument,
            format!("data is NULL but len is {len}"),
        ));
    }
    // SAFETY: data has len readable bytes per the contract.
    Ok(unsafe { std::slice::from_raw_parts(data as *const u8, len) }.to_vec())
}

fn list_out(out: *mut *mut det_bytes_list, items: Option<ByteList>) {
    let p = match items {
        Some(v) => LISTS.insert(v) as *mut det_bytes_list,
        None => std::ptr::null_mut(),
    };
    // SAFETY: the caller checked out.
    unsafe { write_out(out, p) };
}

type Collective = fn(&crate::distributed::DistributedContext, Vec<u8>) -> Result<Option<ByteList>>;

unsafe fn collective(
    name: &'static str,
    ctx: *mut det_context,
    data: *const c_void,
    len: usize,
    out: *mut *mut det_bytes_list,
    f: Collective,
) -> det_status {
    with_ctx(name, ctx, |c| {
        // SAFETY: contract of the calling export.
        let bytes = unsafe { bytes_arg(data, len) }?;
        out_arg(out, "out")?;
        let r = f(c.collectives(), bytes)?;
        list_out(out, r);
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
    // SAFETY: forwarded contract.
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
    // SAFETY: forwarded contract.
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
    // SAFETY: forwarded contract.
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
    // SAFETY: forwarded contract.
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
    // SAFETY: forwarded contract.
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
    // SAFETY: forwarded contract.
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
        // SAFETY: checked.
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
            Error::new(
                Kind::InvalidArgument,
                format!(
                    "index {index} is out of range (the list has {} items)",
                    l.len()
                ),
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
