//! System profiling (`ProfilerContext`, docs/protocol.md#profiler): a thread on the local
//! chief samples the machine every `sampling_interval` seconds and, every `samples_per_report`
//! samples, reports the mean of each group — `gpu`, `cpu`, `memory`, `disk`, `network` — with
//! Determined's keys and units, through the metrics path (`POST /api/v1/trials/<id>/metrics`
//! on-cluster; `metrics.jsonl` and TensorBoard off-cluster).
//!
//! | group | keys | source |
//! |---|---|---|
//! | `gpu` | `{<uuid>: {gpu_util, gpu_free_memory}}` | NVML, `dlopen`ed at run time; absent → group skipped |
//! | `cpu` | `cpu_util_simple` | `/proc/stat`, % of all CPUs since the previous sample |
//! | `memory` | `memory_free` | `MemAvailable` of `/proc/meminfo`, bytes |
//! | `disk` | `disk_iops`, `disk_throughput_read`, `disk_throughput_write`, `{<path>: {disk_util}}` | `/proc/diskstats` (whole disks, as psutil), `statvfs` of `/` and `/determined_shared_fs` |
//! | `network` | `net_throughput_sent`, `net_throughput_recv` | `/proc/net/dev`, all interfaces, bytes/s |
//!
//! Differences from Python, on purpose:
//! - Each sample is taken at the *end* of its interval, so every rate covers a whole interval
//!   (Python samples at the start, so its first rates cover a few microseconds).
//! - At `off`/close the thread takes one last sample (if at least 10 ms passed since the previous)
//!   and reports what the unfinished period collected, at once; Python instead runs the remaining
//!   samples back to back, and its close loses that last report. detcore stops the
//!   profiler before the reporter, so the last report is delivered.
//! - `off` waits for the thread to finish; a file that cannot be read skips that group's sample
//!   (logged once) instead of killing the thread.

pub mod procfs;
mod samplers;
pub mod sys;

use samplers::{samplers, Sampler};
pub use samplers::{Entry, Sample, DISK_PATHS, NVML_LIBRARY_ENV, SHARED_FS_PATH};

use crate::error::Result;
use crate::json::{Map, Number, Value};
use crate::train::TrainContext;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The last sample at stop is taken only if this much time passed since the previous one.
const MIN_FINAL_GAP: Duration = Duration::from_millis(10);

/// Python's `_average_metric_samples_depth_one`: per key (and per inner key) the sum over the
/// samples divided by the number of samples; keys in order of first appearance.
pub fn aggregate(samples: &[Sample]) -> Map {
    enum Acc {
        Num(f64),
        Nested(Vec<(String, f64)>),
    }
    let mut acc: Vec<(String, Acc)> = Vec::new();
    for s in samples {
        for (k, e) in s {
            let pos = acc.iter().position(|(ak, _)| ak == k);
            match (e, pos) {
                (Entry::Num(v), None) => acc.push((k.clone(), Acc::Num(*v))),
                (Entry::Num(v), Some(i)) => {
                    if let Acc::Num(a) = &mut acc[i].1 {
                        *a += v;
                    }
                }
                (Entry::Nested(inner), pos) => {
                    let i = match pos {
                        Some(i) => i,
                        None => {
                            acc.push((k.clone(), Acc::Nested(Vec::new())));
                            acc.len() - 1
                        }
                    };
                    if let Acc::Nested(a) = &mut acc[i].1 {
                        for (ik, iv) in inner {
                            match a.iter_mut().find(|(x, _)| x == ik) {
                                Some((_, s)) => *s += iv,
                                None => a.push((ik.clone(), *iv)),
                            }
                        }
                    }
                }
            }
        }
    }
    let n = samples.len().max(1) as f64;
    let mut out = Map::new();
    for (k, a) in acc {
        let v = match a {
            Acc::Num(s) => Value::Number(Number::Float(s / n)),
            Acc::Nested(inner) => {
                let mut m = Map::new();
                for (ik, s) in inner {
                    m.insert(ik, Value::Number(Number::Float(s / n)));
                }
                Value::Object(m)
            }
        };
        out.insert(k, v);
    }
    out
}

struct Group {
    name: &'static str,
    sampler: Box<dyn Sampler>,
    samples: Vec<Sample>,
    warned: bool,
}

/// Where the reports go (the train context; replaced in tests).
pub trait ReportTarget: Send + Sync {
    /// Report one group's `{agent_id: aggregate}`.
    fn report(&self, group: &str, metrics: Map) -> Result<()>;
}

impl ReportTarget for TrainContext {
    fn report(&self, group: &str, metrics: Map) -> Result<()> {
        self.report_profiler(group, metrics)
    }
}

struct Running {
    stop: Sender<()>,
    handle: JoinHandle<()>,
}

/// The profiler of a context.
pub struct Profiler {
    agent_id: String,
    target: Arc<dyn ReportTarget>,
    local_chief: bool,
    running: Mutex<Option<Running>>,
}

impl Profiler {
    /// A profiler reporting as `agent_id` to `target`; only a local chief ever samples.
    pub fn new(agent_id: String, target: Arc<dyn ReportTarget>, local_chief: bool) -> Profiler {
        Profiler {
            agent_id,
            target,
            local_chief,
            running: Mutex::new(None),
        }
    }

    /// The agent id reports are keyed by.
    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }

    /// True while the sampling thread runs.
    pub fn is_on(&self) -> bool {
        self.running.lock().is_some()
    }

    /// `on(sampling_interval, samples_per_report)`: idempotent (a second call, whatever its
    /// arguments, does nothing); the arguments are checked as Python checks them; on a process
    /// that is not the local chief it does nothing.
    pub fn on(&self, sampling_interval: f64, samples_per_report: i64) -> Result<()> {
        let mut running = self.running.lock();
        if running.is_some() {
            return Ok(());
        }
        if !sampling_interval.is_finite() || sampling_interval < 0.1 {
            bail!(
                InvalidArgument,
                "Sampling interval must be > 0.1, got {}.",
                py_repr(sampling_interval)
            );
        }
        if samples_per_report < 1 {
            bail!(
                InvalidArgument,
                "Samples per report specifies the number of samples to aggregate before reporting \
                 the metric. It must be an int > 1, but was specified as {samples_per_report}."
            );
        }
        if !self.local_chief {
            return Ok(());
        }
        log_info!("Starting system metrics profiling.");
        let (tx, rx) = bounded::<()>(0);
        let interval = crate::time::secs(sampling_interval);
        let per = samples_per_report as usize;
        let target = self.target.clone();
        let agent = self.agent_id.clone();
        let handle = std::thread::Builder::new()
            .name("detcore-profiler".into())
            .spawn(move || collect(interval, per, &rx, &*target, &agent))
            .map_err(|e| err!(Internal, "cannot start the profiler thread: {e}"))?;
        *running = Some(Running { stop: tx, handle });
        Ok(())
    }

    /// `off()`: idempotent; stops the thread after its last sample and report, and waits for it.
    pub fn off(&self) {
        let Some(r) = self.running.lock().take() else {
            return;
        };
        log_info!("Stopping system metrics profiling.");
        drop(r.stop);
        if r.handle.join().is_err() {
            log_warn!("profiler: the sampling thread panicked");
        }
    }
}

impl Drop for Profiler {
    fn drop(&mut self) {
        self.off();
    }
}

fn groups() -> Vec<Group> {
    samplers()
        .into_iter()
        .map(|(name, sampler)| Group {
            name,
            sampler,
            samples: Vec::new(),
            warned: false,
        })
        .collect()
}

fn sample_all(groups: &mut [Group], buf: &mut String) {
    for g in groups.iter_mut() {
        match g.sampler.sample(buf) {
            Ok(s) => g.samples.push(s),
            Err(e) => {
                if !g.warned {
                    g.warned = true;
                    log_warn!("profiler: cannot sample {} metrics: {e}", g.name);
                }
            }
        }
    }
}

fn report(groups: &mut [Group], target: &dyn ReportTarget, agent: &str, warned: &mut bool) {
    for g in groups.iter_mut() {
        let agg = aggregate(&g.samples);
        g.samples.clear();
        if agg.is_empty() {
            continue;
        }
        let mut m = Map::new();
        m.insert(agent, Value::Object(agg));
        if let Err(e) = target.report(g.name, m) {
            if !*warned {
                *warned = true;
                log_warn!(
                    "profiler: cannot report {} metrics: {}",
                    g.name,
                    e.message()
                );
            }
        }
    }
}

fn collect(
    interval: Duration,
    per_report: usize,
    stop: &Receiver<()>,
    target: &dyn ReportTarget,
    agent: &str,
) {
    let mut groups = groups();
    let mut buf = String::with_capacity(8192);
    let mut in_period = 0usize;
    let mut last = Instant::now();
    let mut warned = false;
    loop {
        let stopped = !matches!(
            stop.recv_deadline(last + interval),
            Err(RecvTimeoutError::Timeout)
        );
        if stopped {
            if last.elapsed() >= MIN_FINAL_GAP {
                sample_all(&mut groups, &mut buf);
                in_period += 1;
            }
            if in_period > 0 {
                report(&mut groups, target, agent, &mut warned);
            }
            return;
        }
        last = Instant::now();
        sample_all(&mut groups, &mut buf);
        in_period += 1;
        if in_period >= per_report {
            report(&mut groups, target, agent, &mut warned);
            in_period = 0;
        }
    }
}

/// Python's `repr(float)`, non-finite values included.
fn py_repr(x: f64) -> String {
    if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        crate::json::py_float_repr(x)
    }
}

/// The agent id off-cluster: the host name.
pub fn local_agent_id() -> String {
    crate::host::hostname()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(pairs: &[(&str, f64)]) -> Entry {
        Entry::Nested(pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect())
    }

    #[test]
    fn aggregation_is_the_mean_with_one_nesting_level() {
        let s1: Sample = vec![
            (
                "GPU-a".into(),
                nested(&[("gpu_util", 10.0), ("gpu_free_memory", 100.0)]),
            ),
            (
                "GPU-b".into(),
                nested(&[("gpu_util", 50.0), ("gpu_free_memory", 10.0)]),
            ),
        ];
        let s2: Sample = vec![
            (
                "GPU-a".into(),
                nested(&[("gpu_util", 30.0), ("gpu_free_memory", 300.0)]),
            ),
            (
                "GPU-b".into(),
                nested(&[("gpu_util", 70.0), ("gpu_free_memory", 30.0)]),
            ),
        ];
        let m = aggregate(&[s1, s2]);
        assert_eq!(
            crate::json::to_wire(&Value::Object(m)),
            r#"{"GPU-a": {"gpu_util": 20.0, "gpu_free_memory": 200.0}, "GPU-b": {"gpu_util": 60.0, "gpu_free_memory": 20.0}}"#
        );
        // Python divides by the number of samples even when a key is missing from some.
        let d1: Sample = vec![
            ("disk_iops".into(), Entry::Num(4.0)),
            ("/".into(), nested(&[("disk_util", 40.0)])),
        ];
        let d2: Sample = vec![("disk_iops".into(), Entry::Num(2.0))];
        let m = aggregate(&[d1, d2]);
        assert_eq!(
            crate::json::to_wire(&Value::Object(m)),
            r#"{"disk_iops": 3.0, "/": {"disk_util": 20.0}}"#
        );
        assert!(aggregate(&[]).is_empty());
        assert!(aggregate(&[vec![], vec![]]).is_empty());
    }

    struct Capture(Mutex<Vec<(String, Map)>>);
    impl ReportTarget for Capture {
        fn report(&self, group: &str, metrics: Map) -> Result<()> {
            self.0.lock().push((group.to_owned(), metrics));
            Ok(())
        }
    }

    #[test]
    fn argument_checks_like_python() {
        let c = Arc::new(Capture(Mutex::new(Vec::new())));
        let p = Profiler::new("h".into(), c.clone(), true);
        let e = p.on(0.05, 10).unwrap_err();
        assert_eq!(e.message(), "Sampling interval must be > 0.1, got 0.05.");
        let e = p.on(f64::NAN, 10).unwrap_err();
        assert_eq!(e.message(), "Sampling interval must be > 0.1, got nan.");
        let e = p.on(1.0, 0).unwrap_err();
        assert!(
            e.message()
                .ends_with("It must be an int > 1, but was specified as 0."),
            "{e}"
        );
        assert!(!p.is_on());
        // Not the local chief: accepted, nothing runs.
        let w = Profiler::new("h".into(), c.clone(), false);
        w.on(0.1, 1).unwrap();
        assert!(!w.is_on());
        w.off();
        assert!(c.0.lock().is_empty());
    }

    /// Through the real train context and reporter: what the master's metrics POST is built from.
    #[test]
    fn reports_are_profiler_records_of_the_metrics_path() {
        use crate::train::{Control, LocalTrainBackend, Record, Reporter, Sink};
        struct Keep(Arc<Mutex<Vec<crate::train::MetricsReport>>>);
        impl Sink for Keep {
            fn write(&mut self, rec: &Record, _: &Control) -> Result<()> {
                if let Record::Metrics(r) = rec {
                    self.0.lock().push((**r).clone());
                }
                Ok(())
            }
        }
        let got = Arc::new(Mutex::new(Vec::new()));
        let rep = Arc::new(Reporter::start(vec![Box::new(Keep(got.clone()))], 64).unwrap());
        let dir = std::env::temp_dir();
        let train = Arc::new(TrainContext::new(
            rep.clone(),
            Box::new(LocalTrainBackend::new(dir)),
        ));
        let p = Profiler::new("agent-1".into(), train, true);
        p.on(0.1, 2).unwrap();
        std::thread::sleep(Duration::from_millis(250));
        p.off();
        rep.close(Duration::from_secs(5)).unwrap();
        let got = got.lock();
        assert!(got.len() >= 4);
        for r in got.iter() {
            assert!(["cpu", "memory", "disk", "network", "gpu"].contains(&&*r.group));
            assert_eq!(r.steps_completed, None);
            assert!(
                r.send_report_time,
                "reportTime is sent for profiler reports"
            );
            assert!(r.batch_metrics.is_none());
            match &r.metrics {
                crate::train::Metrics::Json(m) => {
                    assert_eq!(m.keys().collect::<Vec<_>>(), ["agent-1"]);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn reports_groups_and_a_final_report_at_off() {
        let c = Arc::new(Capture(Mutex::new(Vec::new())));
        let p = Profiler::new("agent-7".into(), c.clone(), true);
        p.on(0.1, 3).unwrap();
        // Idempotent, even with arguments that would be refused.
        p.on(0.0, 0).unwrap();
        std::thread::sleep(Duration::from_millis(450));
        p.off();
        p.off();
        assert!(!p.is_on());
        let got = c.0.lock().clone();
        let groups: Vec<&str> = got.iter().map(|(g, _)| g.as_str()).collect();
        // One full report (3 samples at 0.3 s) and the final one; no GPU here.
        assert!(groups.len() >= 8, "{groups:?}");
        assert_eq!(&groups[..4], ["cpu", "memory", "disk", "network"]);
        assert_eq!(
            &groups[groups.len() - 4..],
            ["cpu", "memory", "disk", "network"]
        );
        for (g, m) in &got {
            let agg = m.get("agent-7").and_then(Value::as_object).unwrap();
            let keys: Vec<&str> = agg.keys().map(String::as_str).collect();
            match g.as_str() {
                "cpu" => {
                    assert_eq!(keys, ["cpu_util_simple"]);
                    let v = agg.get("cpu_util_simple").unwrap().as_f64().unwrap();
                    assert!((0.0..=100.0).contains(&v), "{v}");
                }
                "memory" => {
                    let v = agg.get("memory_free").unwrap().as_f64().unwrap();
                    assert!(v > 1e6, "{v}");
                }
                "disk" => {
                    assert_eq!(
                        &keys[..3],
                        ["disk_iops", "disk_throughput_read", "disk_throughput_write"]
                    );
                    let root = agg.get("/").and_then(Value::as_object).unwrap();
                    let u = root.get("disk_util").unwrap().as_f64().unwrap();
                    assert!((0.0..=100.0).contains(&u));
                }
                "network" => assert_eq!(keys, ["net_throughput_sent", "net_throughput_recv"]),
                other => panic!("unexpected group {other}"),
            }
        }
    }
}
