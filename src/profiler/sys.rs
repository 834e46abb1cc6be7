//! The profiler's two calls into C: `statvfs(3)` and NVML, loaded at run time with `dlopen` so
//! that detcore neither links nor needs the NVIDIA driver. This file and `src/capi/` are the only
//! places with `unsafe` besides the signal handler; every block says why it is sound.

use std::ffi::{c_char, c_int, c_uint, c_ulonglong, c_void, CStr, CString};
use std::path::Path;

/// The numbers of `statvfs(3)` that `psutil.disk_usage` uses.
#[derive(Debug, Clone, Copy)]
pub struct FsStats {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub frsize: u64,
}

/// `statvfs(path)`.
pub fn statvfs(path: &Path) -> std::io::Result<FsStats> {
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: `statvfs` is a plain C struct of integers, for which all-zero bytes are valid.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated string alive for the call; `st` is a valid, writable
    // `struct statvfs`. The call writes only into `st`.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(FsStats {
        blocks: st.f_blocks as u64,
        bfree: st.f_bfree as u64,
        bavail: st.f_bavail as u64,
        frsize: st.f_frsize as u64,
    })
}

/// NVML's `nvmlReturn_t`; 0 is success.
type NvmlReturn = c_int;
/// NVML's opaque `nvmlDevice_t`.
type NvmlDevice = *mut c_void;

#[repr(C)]
#[derive(Default)]
struct NvmlUtilization {
    gpu: c_uint,
    memory: c_uint,
}

#[repr(C)]
#[derive(Default)]
struct NvmlMemory {
    total: c_ulonglong,
    free: c_ulonglong,
    used: c_ulonglong,
}

/// `NVML_DEVICE_UUID_V2_BUFFER_SIZE`.
const UUID_BUFFER: usize = 96;

type FnVoid = unsafe extern "C" fn() -> NvmlReturn;
type FnCount = unsafe extern "C" fn(*mut c_uint) -> NvmlReturn;
type FnHandle = unsafe extern "C" fn(c_uint, *mut NvmlDevice) -> NvmlReturn;
type FnUuid = unsafe extern "C" fn(NvmlDevice, *mut c_char, c_uint) -> NvmlReturn;
type FnUtil = unsafe extern "C" fn(NvmlDevice, *mut NvmlUtilization) -> NvmlReturn;
type FnMem = unsafe extern "C" fn(NvmlDevice, *mut NvmlMemory) -> NvmlReturn;
type FnErr = unsafe extern "C" fn(NvmlReturn) -> *const c_char;

/// The NVML library, loaded and initialised. Not `Send`: it lives on the sampler thread.
pub struct Nvml {
    lib: *mut c_void,
    shutdown: FnVoid,
    count: FnCount,
    handle: FnHandle,
    uuid: FnUuid,
    util: FnUtil,
    mem: FnMem,
    err: FnErr,
}

/// A GPU as NVML names it.
#[derive(Clone, Copy)]
pub struct Device(NvmlDevice);

/// The default library name (the driver's, as pynvml loads it).
pub const NVML_LIBRARY: &str = "libnvidia-ml.so.1";

fn dl_error() -> String {
    // SAFETY: `dlerror` returns NULL or a NUL-terminated string owned by libc, valid until the
    // next dl* call on this thread; it is copied at once.
    let p = unsafe { libc::dlerror() };
    if p.is_null() {
        "unknown dlopen error".into()
    } else {
        // SAFETY: non-NULL, NUL-terminated per dlerror's contract.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

impl Nvml {
    /// `dlopen` `library` (normally [`NVML_LIBRARY`]), find the functions and `nvmlInit_v2`.
    /// The error says why NVML cannot be used.
    pub fn load(library: &str) -> Result<Nvml, String> {
        let name = CString::new(library).map_err(|_| format!("bad library name {library:?}"))?;
        // SAFETY: `name` is a valid C string; dlopen has no other preconditions. Loading runs the
        // library's initialisers, which is what loading NVML is meant to do.
        let lib = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if lib.is_null() {
            return Err(format!("cannot load {library}: {}", dl_error()));
        }
        let sym = |s: &str| -> Result<*mut c_void, String> {
            let cs = CString::new(s).map_err(|_| s.to_owned())?;
            // SAFETY: `lib` is a live handle from dlopen; `cs` a valid C string.
            let p = unsafe { libc::dlsym(lib, cs.as_ptr()) };
            if p.is_null() {
                Err(format!("{library} has no symbol {s}"))
            } else {
                Ok(p)
            }
        };
        let resolve = || -> Result<Nvml, String> {
            // SAFETY (all transmutes below): each symbol is the NVML function of that name, whose
            // C prototype (nvml.h) is exactly the function-pointer type it is converted to; the
            // pointers are non-NULL (checked by `sym`) and stay valid while `lib` is loaded,
            // which `Nvml` guarantees by closing it only in `Drop`.
            unsafe {
                Ok(Nvml {
                    lib,
                    shutdown: std::mem::transmute::<*mut c_void, FnVoid>(sym("nvmlShutdown")?),
                    count: std::mem::transmute::<*mut c_void, FnCount>(sym(
                        "nvmlDeviceGetCount_v2",
                    )?),
                    handle: std::mem::transmute::<*mut c_void, FnHandle>(sym(
                        "nvmlDeviceGetHandleByIndex_v2",
                    )?),
                    uuid: std::mem::transmute::<*mut c_void, FnUuid>(sym("nvmlDeviceGetUUID")?),
                    util: std::mem::transmute::<*mut c_void, FnUtil>(sym(
                        "nvmlDeviceGetUtilizationRates",
                    )?),
                    mem: std::mem::transmute::<*mut c_void, FnMem>(sym("nvmlDeviceGetMemoryInfo")?),
                    err: std::mem::transmute::<*mut c_void, FnErr>(sym("nvmlErrorString")?),
                })
            }
        };
        let nvml = match resolve() {
            Ok(n) => n,
            Err(e) => {
                // SAFETY: `lib` came from dlopen and no pointer into it is kept.
                unsafe { libc::dlclose(lib) };
                return Err(e);
            }
        };
        // Not initialised: unload without calling nvmlShutdown (what `Drop` would do).
        let unload = |nvml: Nvml| {
            let lib = nvml.lib;
            std::mem::forget(nvml);
            // SAFETY: `lib` came from dlopen; the forgotten `Nvml` held the only pointers into it.
            unsafe { libc::dlclose(lib) };
        };
        let init = match sym("nvmlInit_v2") {
            // SAFETY: as above, `nvmlInit_v2` has the prototype `nvmlReturn_t (void)`.
            Ok(p) => unsafe { std::mem::transmute::<*mut c_void, FnVoid>(p) },
            Err(e) => {
                unload(nvml);
                return Err(e);
            }
        };
        // SAFETY: a valid NVML entry point with no arguments.
        let rc = unsafe { init() };
        if rc != 0 {
            let msg = nvml.error(rc);
            unload(nvml);
            return Err(format!("nvmlInit failed: {msg}"));
        }
        Ok(nvml)
    }

    fn error(&self, rc: NvmlReturn) -> String {
        // SAFETY: `nvmlErrorString` accepts any return code and returns NULL or a static string.
        let p = unsafe { (self.err)(rc) };
        if p.is_null() {
            format!("NVML error {rc}")
        } else {
            // SAFETY: non-NULL, NUL-terminated, static per NVML's documentation.
            format!(
                "{} (NVML error {rc})",
                unsafe { CStr::from_ptr(p) }.to_string_lossy()
            )
        }
    }

    fn check(&self, rc: NvmlReturn, what: &str) -> Result<(), String> {
        if rc == 0 {
            Ok(())
        } else {
            Err(format!("{what}: {}", self.error(rc)))
        }
    }

    /// `nvmlDeviceGetCount`.
    pub fn device_count(&self) -> Result<u32, String> {
        let mut n: c_uint = 0;
        // SAFETY: initialised NVML; `n` is a valid out-pointer.
        let rc = unsafe { (self.count)(&mut n) };
        self.check(rc, "nvmlDeviceGetCount")?;
        Ok(n)
    }

    /// `nvmlDeviceGetHandleByIndex`.
    pub fn device(&self, index: u32) -> Result<Device, String> {
        let mut d: NvmlDevice = std::ptr::null_mut();
        // SAFETY: initialised NVML; `d` is a valid out-pointer.
        let rc = unsafe { (self.handle)(index, &mut d) };
        self.check(rc, "nvmlDeviceGetHandleByIndex")?;
        Ok(Device(d))
    }

    /// `nvmlDeviceGetUUID`, e.g. `GPU-5d2c…`.
    pub fn uuid(&self, d: Device) -> Result<String, String> {
        let mut buf = [0 as c_char; UUID_BUFFER];
        // SAFETY: `d` came from this NVML; `buf` holds UUID_BUFFER writable bytes and its size is
        // passed, so NVML writes a NUL-terminated string within it.
        let rc = unsafe { (self.uuid)(d.0, buf.as_mut_ptr(), UUID_BUFFER as c_uint) };
        self.check(rc, "nvmlDeviceGetUUID")?;
        // SAFETY: NVML NUL-terminated the string inside `buf` (success return).
        Ok(unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned())
    }

    /// `nvmlDeviceGetUtilizationRates(d).gpu`, percent.
    pub fn gpu_util(&self, d: Device) -> Result<u32, String> {
        let mut u = NvmlUtilization::default();
        // SAFETY: `d` came from this NVML; `u` is a valid `nvmlUtilization_t`.
        let rc = unsafe { (self.util)(d.0, &mut u) };
        self.check(rc, "nvmlDeviceGetUtilizationRates")?;
        Ok(u.gpu)
    }

    /// `nvmlDeviceGetMemoryInfo(d).free`, bytes.
    pub fn free_memory(&self, d: Device) -> Result<u64, String> {
        let mut m = NvmlMemory::default();
        // SAFETY: `d` came from this NVML; `m` is a valid `nvmlMemory_t` (the v1 struct that
        // `nvmlDeviceGetMemoryInfo` fills, as pynvml uses it).
        let rc = unsafe { (self.mem)(d.0, &mut m) };
        self.check(rc, "nvmlDeviceGetMemoryInfo")?;
        let _ = (m.total, m.used);
        Ok(m.free)
    }
}

impl Drop for Nvml {
    fn drop(&mut self) {
        // SAFETY: NVML was initialised by `load` (an `Nvml` exists only after a successful
        // `nvmlInit_v2`); after shutdown no function pointer is used again, and `lib` came from
        // dlopen.
        unsafe {
            (self.shutdown)();
            libc::dlclose(self.lib);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statvfs_of_root() {
        let s = statvfs(Path::new("/")).unwrap();
        assert!(s.blocks > 0 && s.frsize > 0);
        assert!(s.bfree <= s.blocks && s.bavail <= s.blocks);
        assert!(statvfs(Path::new("/no/such/path/here")).is_err());
    }

    #[test]
    fn missing_or_wrong_library_is_an_error_not_a_crash() {
        let e = Nvml::load("libdetcore-no-such-nvml.so").err().unwrap();
        assert!(e.contains("cannot load"), "{e}");
        // A real library without NVML's symbols.
        let e = Nvml::load("libc.so.6").err().unwrap();
        assert!(e.contains("has no symbol nvml"), "{e}");
    }
}
