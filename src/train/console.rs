//! The off-cluster console: what a long job prints about its reports.
//!
//! Every report goes to `metrics.jsonl`; the console gets a summary instead of one line per
//! report. At INFO the first report is announced with the file's path, then at most one line every
//! [`SUMMARY_INTERVAL`] tells the latest step and metrics of each group and the rate of reports,
//! and a last line at close covers what came after the previous one. At DEBUG every report also
//! gets its own line, as Determined's off-cluster client prints them.

use super::record::{Event, Metrics, Record};
use crate::json::{to_wire, Value};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The shortest time between two summary lines.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(5);
/// Metrics shown per group in a summary line; the others are counted.
const MAX_METRICS_SHOWN: usize = 8;
/// A longer value (a string or a nested object) is cut to this many characters.
const MAX_VALUE_CHARS: usize = 40;

struct Latest {
    group: Arc<str>,
    steps: Option<u64>,
    metrics: Metrics,
}

/// Turns the stream of reports into a few console lines.
pub struct ConsoleSummary {
    metrics_file: PathBuf,
    interval: Duration,
    started: bool,
    last_line: Instant,
    total: u64,
    since_line: u64,
    progress: Option<f64>,
    /// The latest report of each group, in the order the groups first appeared.
    latest: Vec<Latest>,
}

impl ConsoleSummary {
    /// A summary of the reports written to `metrics_file`, one line per `interval` at most.
    pub fn new(metrics_file: PathBuf, interval: Duration) -> ConsoleSummary {
        ConsoleSummary {
            metrics_file,
            interval,
            started: false,
            last_line: Instant::now(),
            total: 0,
            since_line: 0,
            progress: None,
            latest: Vec::new(),
        }
    }

    /// Take one record into account; the line to print now, if any.
    pub fn observe(&mut self, rec: &Record, now: Instant) -> Option<String> {
        match rec {
            Record::Metrics(r) if !r.is_profiler() => {
                self.total += 1;
                self.since_line += 1;
                match self.latest.iter_mut().find(|l| l.group == r.group) {
                    Some(l) => {
                        l.steps = r.steps_completed;
                        l.metrics.clone_from(&r.metrics);
                    }
                    None => self.latest.push(Latest {
                        group: r.group.clone(),
                        steps: r.steps_completed,
                        metrics: r.metrics.clone(),
                    }),
                }
                if !self.started {
                    self.started = true;
                    self.since_line = 0;
                    self.last_line = now;
                    return Some(format!(
                        "writing every report to {} (here: a summary at most every {} s; \
                         DETCORE_LOG_LEVEL=debug prints each report); {}",
                        self.metrics_file.display(),
                        self.interval.as_secs_f64(),
                        self.describe_latest()
                    ));
                }
                self.tick(now)
            }
            Record::Event(Event::Progress { progress }, _) => {
                self.progress = Some(*progress);
                None
            }
            _ => None,
        }
    }

    /// The summary line, if reports arrived since the last one and the interval has passed.
    pub fn tick(&mut self, now: Instant) -> Option<String> {
        if self.since_line == 0 || now.duration_since(self.last_line) < self.interval {
            return None;
        }
        Some(self.line(now))
    }

    /// At close: the summary of what came after the last line, if anything did.
    pub fn finish(&mut self, now: Instant) -> Option<String> {
        if self.since_line == 0 {
            return None;
        }
        Some(self.line(now))
    }

    fn line(&mut self, now: Instant) -> String {
        let secs = now.duration_since(self.last_line).as_secs_f64();
        let rate = if secs > 0.0 {
            self.since_line as f64 / secs
        } else {
            0.0
        };
        let mut s = self.describe_latest();
        let _ = write!(
            s,
            " ({} report(s) in all, {rate:.1}/s over the last {secs:.1} s)",
            self.total
        );
        self.since_line = 0;
        self.last_line = now;
        s
    }

    /// `training step 100: loss=0.5, acc=0.9; validation step 90: loss=0.6; progress 42%`.
    fn describe_latest(&self) -> String {
        let mut s = String::new();
        for (i, l) in self.latest.iter().enumerate() {
            if i > 0 {
                s.push_str("; ");
            }
            s.push_str(&l.group);
            if let Some(step) = l.steps {
                let _ = write!(s, " step {step}");
            }
            s.push(':');
            let map = l.metrics.to_map();
            for (j, (k, v)) in map.iter().take(MAX_METRICS_SHOWN).enumerate() {
                s.push_str(if j == 0 { " " } else { ", " });
                let _ = write!(s, "{k}={}", short_value(v));
            }
            if map.len() > MAX_METRICS_SHOWN {
                let _ = write!(s, " (+{} more)", map.len() - MAX_METRICS_SHOWN);
            }
        }
        if let Some(p) = self.progress {
            let _ = write!(s, "; progress {:.0}%", p * 100.0);
        }
        s
    }
}

fn short_value(v: &Value) -> String {
    let t = match v {
        Value::String(s) => s.clone(),
        _ => to_wire(v),
    };
    if t.chars().count() <= MAX_VALUE_CHARS {
        return t;
    }
    let mut cut: String = t.chars().take(MAX_VALUE_CHARS).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::record::MetricsReport;
    use std::time::SystemTime;

    fn report(group: &str, step: u64, loss: f64) -> Record {
        Record::Metrics(Box::new(MetricsReport {
            group: Arc::from(group),
            steps_completed: Some(step),
            metrics: Metrics::scalars(&["loss"], &[loss]),
            batch_metrics: None,
            time: SystemTime::now(),
            send_report_time: false,
            method: "report_training_metrics",
        }))
    }

    #[test]
    fn one_line_per_interval_and_a_last_one_at_close() {
        let t0 = Instant::now();
        let mut c = ConsoleSummary::new(PathBuf::from("/r/metrics.jsonl"), Duration::from_secs(5));
        let first = c.observe(&report("training", 1, 1.0), t0).unwrap();
        assert!(first.contains("/r/metrics.jsonl"), "{first}");
        assert!(first.contains("training step 1: loss=1"), "{first}");
        // 999 reports within the interval: no line.
        for step in 2..=1000 {
            let t = t0 + Duration::from_millis(step);
            assert_eq!(
                c.observe(&report("training", step, 1.0 / step as f64), t),
                None
            );
        }
        assert_eq!(c.tick(t0 + Duration::from_secs(4)), None);
        // The interval has passed: the next report prints the latest values and the rate.
        let t = t0 + Duration::from_secs(5);
        let line = c.observe(&report("validation", 1000, 0.25), t).unwrap();
        assert!(line.contains("training step 1000: loss=0.001"), "{line}");
        assert!(line.contains("validation step 1000: loss=0.25"), "{line}");
        assert!(line.contains("1001 report(s) in all, 200.0/s"), "{line}");
        // Nothing new: no line at idle or close.
        assert_eq!(c.tick(t + Duration::from_secs(60)), None);
        assert_eq!(c.finish(t + Duration::from_secs(60)), None);
        // One more report, then close: it is summarised.
        assert_eq!(
            c.observe(&report("training", 1001, 0.5), t + Duration::from_secs(1)),
            None
        );
        let last = c.finish(t + Duration::from_secs(2)).unwrap();
        assert!(last.contains("training step 1001: loss=0.5"), "{last}");
        assert!(last.contains("1002 report(s) in all"), "{last}");
    }

    #[test]
    fn idle_prints_a_pending_summary_once_the_interval_passed() {
        let t0 = Instant::now();
        let mut c = ConsoleSummary::new(PathBuf::from("m"), Duration::from_secs(5));
        c.observe(&report("training", 1, 1.0), t0).unwrap();
        assert_eq!(c.observe(&report("training", 2, 0.5), t0), None);
        let progress = Record::Event(Event::Progress { progress: 0.42 }, SystemTime::now());
        assert_eq!(c.observe(&progress, t0), None);
        assert_eq!(c.tick(t0 + Duration::from_secs(3)), None);
        let line = c.tick(t0 + Duration::from_secs(6)).unwrap();
        assert!(
            line.contains("training step 2: loss=0.5; progress 42%"),
            "{line}"
        );
        assert_eq!(c.tick(t0 + Duration::from_secs(20)), None);
    }

    #[test]
    fn many_metrics_and_long_values_are_shortened() {
        let names: Vec<String> = (0..12).map(|i| format!("m{i}")).collect();
        let values: Vec<f64> = (0..12).map(f64::from).collect();
        let mut c = ConsoleSummary::new(PathBuf::from("m"), Duration::from_secs(5));
        let rec = Record::Metrics(Box::new(MetricsReport {
            group: Arc::from("training"),
            steps_completed: Some(3),
            metrics: Metrics::scalars(&names, &values),
            batch_metrics: None,
            time: SystemTime::now(),
            send_report_time: false,
            method: "report_training_metrics",
        }));
        let line = c.observe(&rec, Instant::now()).unwrap();
        assert!(line.contains("m7=7.0 (+4 more)"), "{line}");
        assert!(!line.contains("m8="), "{line}");
        assert_eq!(
            short_value(&Value::from("x".repeat(100))).chars().count(),
            41
        );
    }
}
