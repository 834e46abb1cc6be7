//! The samplers of the system profiler, one per group (`gpu`, `cpu`, `memory`, `disk`,
//! `network`): each reads its source (NVML, `/proc`, `statvfs`) and returns one sample with
//! Determined's keys and units. The thread that calls them, and what it does with the samples,
//! is in the module above.

use super::{procfs, sys};
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

/// Where Determined mounts the shared file system in a task container.
pub const SHARED_FS_PATH: &str = crate::storage::config::SHARED_FS_CONTAINER_PATH;

/// Paths whose usage the disk group reports (those accessible when profiling starts).
pub const DISK_PATHS: [&str; 2] = ["/", SHARED_FS_PATH];

/// Environment variable naming another NVML library to load (default `libnvidia-ml.so.1`).
pub const NVML_LIBRARY_ENV: &str = "DETCORE_NVML_LIBRARY";

/// One value of a sample: a number, or one level of labelled numbers (a GPU, a disk path).
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Num(f64),
    Nested(Vec<(String, f64)>),
}

/// One sample of a group: keys in Determined's order.
pub type Sample = Vec<(String, Entry)>;

pub(super) fn read(path: &str, buf: &mut String) -> std::io::Result<()> {
    use std::io::Read;
    buf.clear();
    std::fs::File::open(path)?.read_to_string(buf)?;
    Ok(())
}

/// A sampler of one group.
pub(super) trait Sampler {
    fn sample(&mut self, buf: &mut String) -> std::io::Result<Sample>;
}

struct Cpu {
    prev: Option<Vec<f64>>,
}

impl Sampler for Cpu {
    fn sample(&mut self, buf: &mut String) -> std::io::Result<Sample> {
        read("/proc/stat", buf)?;
        let cur = procfs::parse_cpu_times(buf).ok_or_else(|| bad_data("/proc/stat"))?;
        let pct = match &self.prev {
            Some(p) => procfs::cpu_percent(p, &cur),
            None => 0.0,
        };
        self.prev = Some(cur);
        Ok(vec![("cpu_util_simple".into(), Entry::Num(pct))])
    }
}

fn bad_data(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("{what}: unexpected format"),
    )
}

struct Memory;

impl Sampler for Memory {
    fn sample(&mut self, buf: &mut String) -> std::io::Result<Sample> {
        read("/proc/meminfo", buf)?;
        let a = procfs::parse_mem_available(buf).ok_or_else(|| bad_data("/proc/meminfo"))?;
        Ok(vec![("memory_free".into(), Entry::Num(a as f64))])
    }
}

struct Disk {
    prev: (Instant, procfs::DiskCounters),
    paths: Vec<String>,
    is_disk: HashMap<String, bool>,
}

impl Disk {
    fn counters(&mut self, buf: &mut String) -> std::io::Result<procfs::DiskCounters> {
        read("/proc/diskstats", buf)?;
        let cache = &mut self.is_disk;
        Ok(procfs::parse_diskstats(buf, |name| {
            if let Some(&b) = cache.get(name) {
                return b;
            }
            let b = Path::new("/sys/block")
                .join(name.replace('/', "!"))
                .exists();
            cache.insert(name.to_owned(), b);
            b
        }))
    }

    fn new(buf: &mut String) -> Disk {
        let paths = DISK_PATHS
            .iter()
            .filter(|p| sys::statvfs(Path::new(p)).is_ok())
            .map(|p| p.to_string())
            .collect();
        let mut d = Disk {
            prev: (Instant::now(), procfs::DiskCounters::default()),
            paths,
            is_disk: HashMap::new(),
        };
        if let Ok(c) = d.counters(buf) {
            d.prev = (Instant::now(), c);
        }
        d
    }
}

impl Sampler for Disk {
    fn sample(&mut self, buf: &mut String) -> std::io::Result<Sample> {
        let c = self.counters(buf)?;
        let now = Instant::now();
        let dt = now.duration_since(self.prev.0).as_secs_f64().max(1e-9);
        let p = self.prev.1;
        let rate = |a: u64, b: u64| b.saturating_sub(a) as f64 / dt;
        let iops =
            (c.read_count + c.write_count).saturating_sub(p.read_count + p.write_count) as f64 / dt;
        let mut s: Sample = vec![
            ("disk_iops".into(), Entry::Num(iops)),
            (
                "disk_throughput_read".into(),
                Entry::Num(rate(p.read_bytes, c.read_bytes)),
            ),
            (
                "disk_throughput_write".into(),
                Entry::Num(rate(p.write_bytes, c.write_bytes)),
            ),
        ];
        self.prev = (now, c);
        for path in &self.paths {
            if let Ok(st) = sys::statvfs(Path::new(path)) {
                let pct = procfs::disk_usage_percent(st.blocks, st.bfree, st.bavail, st.frsize);
                s.push((path.clone(), Entry::Nested(vec![("disk_util".into(), pct)])));
            }
        }
        Ok(s)
    }
}

struct Network {
    prev: (Instant, (u64, u64)),
}

impl Network {
    fn new(buf: &mut String) -> Network {
        let c = read("/proc/net/dev", buf)
            .map(|_| procfs::parse_net_dev(buf))
            .unwrap_or((0, 0));
        Network {
            prev: (Instant::now(), c),
        }
    }
}

impl Sampler for Network {
    fn sample(&mut self, buf: &mut String) -> std::io::Result<Sample> {
        read("/proc/net/dev", buf)?;
        let (sent, recv) = procfs::parse_net_dev(buf);
        let now = Instant::now();
        let dt = now.duration_since(self.prev.0).as_secs_f64().max(1e-9);
        let (ps, pr) = self.prev.1;
        self.prev = (now, (sent, recv));
        Ok(vec![
            (
                "net_throughput_sent".into(),
                Entry::Num(sent.saturating_sub(ps) as f64 / dt),
            ),
            (
                "net_throughput_recv".into(),
                Entry::Num(recv.saturating_sub(pr) as f64 / dt),
            ),
        ])
    }
}

struct Gpu {
    nvml: Option<sys::Nvml>,
    devices: Vec<(String, sys::Device)>,
}

impl Gpu {
    /// Load NVML and check every call on every device, as Python does: any failure disables
    /// GPU metrics (logged), nothing else.
    fn new() -> Gpu {
        let lib = crate::env::env_nonempty(NVML_LIBRARY_ENV)
            .unwrap_or_else(|| sys::NVML_LIBRARY.to_owned());
        let probe = || -> std::result::Result<(sys::Nvml, Vec<(String, sys::Device)>), String> {
            let nvml = sys::Nvml::load(&lib)?;
            let mut devs = Vec::new();
            for i in 0..nvml.device_count()? {
                let d = nvml.device(i)?;
                let uuid = nvml.uuid(d)?;
                nvml.free_memory(d)?;
                nvml.gpu_util(d)?;
                devs.push((uuid, d));
            }
            Ok((nvml, devs))
        };
        match probe() {
            Ok((nvml, devices)) => {
                log_info!("profiler: NVML found {} GPU(s)", devices.len());
                Gpu {
                    nvml: Some(nvml),
                    devices,
                }
            }
            Err(e) => {
                log_info!(
                    "profiler: NVML is not available ({e}); GPU metrics will not be collected"
                );
                Gpu {
                    nvml: None,
                    devices: Vec::new(),
                }
            }
        }
    }
}

impl Sampler for Gpu {
    fn sample(&mut self, _buf: &mut String) -> std::io::Result<Sample> {
        let Some(nvml) = &self.nvml else {
            return Ok(Vec::new());
        };
        let mut s = Vec::with_capacity(self.devices.len());
        for (uuid, d) in &self.devices {
            let util = nvml.gpu_util(*d);
            let free = nvml.free_memory(*d);
            match (util, free) {
                (Ok(u), Ok(f)) => s.push((
                    uuid.clone(),
                    Entry::Nested(vec![
                        ("gpu_util".into(), f64::from(u)),
                        ("gpu_free_memory".into(), f as f64),
                    ]),
                )),
                (Err(e), _) | (_, Err(e)) => {
                    return Err(std::io::Error::other(format!("{uuid}: {e}")));
                }
            }
        }
        Ok(s)
    }
}

/// Every group's sampler, in Determined's order; the CPU sampler has taken its first reading
/// (its rates are differences).
pub(super) fn samplers() -> Vec<(&'static str, Box<dyn Sampler>)> {
    let mut buf = String::new();
    let cpu = {
        let mut c = Cpu { prev: None };
        let _ = c.sample(&mut buf);
        c
    };
    vec![
        ("gpu", Box::new(Gpu::new())),
        ("cpu", Box::new(cpu)),
        ("memory", Box::new(Memory)),
        ("disk", Box::new(Disk::new(&mut buf))),
        ("network", Box::new(Network::new(&mut buf))),
    ]
}
