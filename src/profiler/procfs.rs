//! Readers of `/proc` that give the numbers psutil gives Determined's profiler (psutil 7,
//! `_pslinux.py`), as pure functions of the files' text so they are tested on fixed inputs.

/// Python's `round(x, 1)`: correctly rounded, half to even on the exact binary value — which is
/// what Rust's `{:.1}` formatting does too.
pub fn round1(x: f64) -> f64 {
    format!("{x:.1}").parse().unwrap_or(x)
}

/// The first line of `/proc/stat` (`cpu  user nice system idle iowait irq softirq steal guest
/// guest_nice`), in clock ticks.
pub fn parse_cpu_times(stat: &str) -> Option<Vec<f64>> {
    let line = stat.lines().next()?;
    let mut it = line.split_ascii_whitespace();
    if it.next()? != "cpu" {
        return None;
    }
    let v: Vec<f64> = it.take(10).map_while(|x| x.parse::<f64>().ok()).collect();
    (v.len() >= 4).then_some(v)
}

/// `psutil.cpu_percent()` between two readings: busy / total × 100, rounded to 0.1, where
/// total excludes guest times (already counted in user/nice) and busy excludes idle and iowait.
/// Fields that went backwards count as 0; no time elapsed gives 0.0.
pub fn cpu_percent(prev: &[f64], cur: &[f64]) -> f64 {
    let d: Vec<f64> = prev
        .iter()
        .zip(cur)
        .map(|(a, b)| (b - a).max(0.0))
        .collect();
    let get = |i: usize| d.get(i).copied().unwrap_or(0.0);
    let total: f64 = d.iter().sum::<f64>() - get(8) - get(9);
    let busy = total - get(3) - get(4);
    if total <= 0.0 {
        return 0.0;
    }
    round1(busy / total * 100.0)
}

/// `psutil.virtual_memory().available` from `/proc/meminfo`: `MemAvailable` (kB → bytes); when
/// it is missing or 0, psutil's estimate from free memory, page cache and reclaimable slab (the
/// low watermark taken as 0); when it exceeds `MemTotal` (LXC), `MemFree`.
pub fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let get = |key: &str| -> Option<u64> {
        meminfo.lines().find_map(|l| {
            let mut it = l.split_ascii_whitespace();
            (it.next()? == key).then(|| it.next()?.parse::<u64>().ok().map(|kb| kb * 1024))?
        })
    };
    let total = get("MemTotal:")?;
    let free = get("MemFree:").unwrap_or(0);
    let avail = match get("MemAvailable:") {
        Some(a) if a > 0 => a,
        _ => {
            let page_cache =
                get("Active(file):").unwrap_or(0) + get("Inactive(file):").unwrap_or(0);
            let slab = get("SReclaimable:").unwrap_or(0);
            free + page_cache - page_cache / 2 + slab - slab / 2
        }
    };
    Some(if avail > total { free } else { avail })
}

/// Disk I/O totals: `psutil.disk_io_counters()` (`perdisk=False`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskCounters {
    pub read_count: u64,
    pub write_count: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
}

/// Sum `/proc/diskstats` over the devices `is_disk` accepts — psutil counts the names that exist
/// in `/sys/block` (whole disks, including virtual ones such as loop and dm devices, not
/// partitions). Sectors are 512 bytes.
pub fn parse_diskstats(text: &str, mut is_disk: impl FnMut(&str) -> bool) -> DiskCounters {
    let mut c = DiskCounters::default();
    for line in text.lines() {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
        let (name, reads, rsect, writes, wsect) = match f.len() {
            15 => (f[3], num(2), num(5), num(7), num(9)),
            14 | 18.. => (f[2], num(3), num(5), num(7), num(9)),
            7 => (f[2], num(3), num(4), num(5), num(6)),
            _ => continue,
        };
        if !is_disk(name) {
            continue;
        }
        c.read_count += reads;
        c.write_count += writes;
        c.read_bytes += rsect * 512;
        c.write_bytes += wsect * 512;
    }
    c
}

/// `(bytes_sent, bytes_recv)` summed over every interface of `/proc/net/dev`
/// (`psutil.net_io_counters()`, loopback included).
pub fn parse_net_dev(text: &str) -> (u64, u64) {
    let (mut sent, mut recv) = (0u64, 0u64);
    for line in text.lines().skip(2) {
        let Some(colon) = line.rfind(':') else {
            continue;
        };
        let f: Vec<u64> = line[colon + 1..]
            .split_ascii_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        if f.len() >= 9 {
            recv += f[0];
            sent += f[8];
        }
    }
    (sent, recv)
}

/// `psutil.disk_usage(path).percent` from `statvfs` numbers: used / (used + available to users)
/// × 100, rounded to 0.1, where used = (blocks − free) × fragment size.
pub fn disk_usage_percent(blocks: u64, bfree: u64, bavail: u64, frsize: u64) -> f64 {
    let total = blocks as f64 * frsize as f64;
    let used = total - bfree as f64 * frsize as f64;
    let total_user = used + bavail as f64 * frsize as f64;
    if total_user <= 0.0 {
        return 0.0;
    }
    round1(used / total_user * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_like_python() {
        assert_eq!(round1(12.25), 12.2); // 12.25 is exact: half to even
        assert_eq!(round1(0.05), 0.1); // 0.05 is a little above .05 in binary
        assert_eq!(round1(99.96), 100.0);
        assert_eq!(round1(0.0), 0.0);
    }

    #[test]
    fn cpu() {
        let a = parse_cpu_times("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n").unwrap();
        let b = parse_cpu_times("cpu  160 0 70 900 70 0 0 0 10 0\n").unwrap();
        // deltas: user 60 (guest 10 of it) sys 20 idle 100 iowait 20 guest 10:
        // total 210 - 10 = 200, busy 200 - 100 - 20 = 80.
        assert_eq!(cpu_percent(&a, &b), 40.0);
        assert_eq!(cpu_percent(&a, &a), 0.0);
        // Old kernels: fewer fields.
        let c = parse_cpu_times("cpu 1 2 3 4").unwrap();
        assert_eq!(c.len(), 4);
        assert!(parse_cpu_times("intr 1 2").is_none());
        // Counters going backwards count as 0.
        assert_eq!(cpu_percent(&b, &a), 0.0);
    }

    #[test]
    fn memory() {
        let m = "MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    600 kB\n";
        assert_eq!(parse_mem_available(m), Some(600 * 1024));
        let lxc = "MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 5000 kB\n";
        assert_eq!(parse_mem_available(lxc), Some(100 * 1024));
        let old = "MemTotal: 1000 kB\nMemFree: 100 kB\nActive(file): 100 kB\nInactive(file): 100 kB\nSReclaimable: 50 kB\n";
        assert_eq!(parse_mem_available(old), Some((100 + 100 + 25) * 1024));
        assert_eq!(parse_mem_available("nothing"), None);
    }

    #[test]
    fn diskstats_counts_whole_disks_only() {
        let t = "\
   7       0 loop0 1 0 8 0 2 0 16 0 0 0 0 0 0 0 0 0 0
 254       0 vda 10 5 100 3 20 7 200 4 0 9 7 0 0 0 0 0 0
 254       1 vda1 9 0 90 0 19 0 190 0 0 0 0 0 0 0 0 0 0
   3    1   hda1 4 8 5 16
   3     0   6 hda 0 10 0 7 0 12 0 0 0 0 0
";
        let c = parse_diskstats(t, |n| !n.ends_with('1'));
        assert_eq!(
            c,
            DiskCounters {
                read_count: 1 + 10 + 6,
                write_count: 2 + 20 + 7,
                read_bytes: (8 + 100 + 10) * 512,
                write_bytes: (16 + 200 + 12) * 512,
            }
        );
        // A partition line (7 fields) is read when the filter accepts it.
        let p = parse_diskstats("   3    1   hda1 4 8 5 16", |_| true);
        assert_eq!(p.read_count, 4);
        assert_eq!(p.write_bytes, 16 * 512);
    }

    #[test]
    fn net_dev() {
        let t = "Inter-|   Receive  |  Transmit\n face |bytes packets|bytes\n    lo:    3793      41    0    0    0     0          0         0     3793      41    0    0    0     0       0          0\n  eth0: 559399752   20923    0    0    0     0          0         0  1710206   13318    0    0    0     0       0          0\n";
        assert_eq!(parse_net_dev(t), (3793 + 1710206, 3793 + 559399752));
    }

    #[test]
    fn disk_usage() {
        // df: 20 % of 264212084 1k-blocks used with 76971016 available.
        let p = disk_usage_percent(264212084, 264212084 - 18314872, 76971016, 1024);
        assert_eq!(p, round1(18314872.0 / (18314872.0 + 76971016.0) * 100.0));
        assert_eq!(disk_usage_percent(0, 0, 0, 4096), 0.0);
    }
}
