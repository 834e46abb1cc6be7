//! Slurm without Determined: the job's end time when Slurm does not export it, and requeueing a
//! preempted job so that it resumes by itself.
//!
//! Slurm 22.05 sets no `SLURM_JOB_END_TIME` (newer releases do, and it is honoured first): the
//! end time is then asked of Slurm once, at init, with `squeue -h -j $SLURM_JOB_ID -o %e` and
//! `SLURM_TIME_FORMAT=%s` (squeue prints the time in seconds since the epoch), bounded by a short
//! timeout and never fatal. Requeue (`scontrol requeue $SLURM_JOB_ID`) is opt-in.
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long `squeue` may take at init.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `scontrol requeue` may take at close.
pub const REQUEUE_TIMEOUT: Duration = Duration::from_secs(10);

/// The last line a command wrote to stderr (its message; earlier lines are usually context).
fn last_line(s: &str) -> &str {
    s.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no message")
}

/// The outcome of a bounded command: its exit code and output, or why there is none.
struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Run `cmd` for at most `limit`; kill it past that.
fn run(mut cmd: Command, limit: Duration) -> Result<Ran, String> {
    let name = format!("{:?}", cmd.get_program());
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {name}: {e}"))?;
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{name} did not answer within {:.0} s",
                    limit.as_secs_f64()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for {name}: {e}")),
        }
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut stdout);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    Ok(Ran {
        ok: status.success(),
        stdout,
        stderr,
    })
}

/// Parse squeue's `%e` printed with `SLURM_TIME_FORMAT=%s`: seconds since the epoch, or a word
/// for "no end time" (`N/A`, `NONE`, `Unknown`, an empty line).
pub fn parse_end_time(out: &str) -> Option<f64> {
    let line = out.lines().map(str::trim).find(|l| !l.is_empty())?;
    line.parse::<f64>()
        .ok()
        .filter(|t| t.is_finite() && *t > 0.0)
}

/// Job `job_id`'s end time as Slurm knows it, in seconds since the epoch; `None` (with a log
/// line saying why) when Slurm cannot tell.
pub fn query_end_time(job_id: &str) -> Option<f64> {
    let mut cmd = Command::new("squeue");
    cmd.args(["-h", "-j", job_id, "-o", "%e"])
        .env("SLURM_TIME_FORMAT", "%s");
    match run(cmd, QUERY_TIMEOUT) {
        Ok(r) if r.ok => match parse_end_time(&r.stdout) {
            Some(t) => {
                log_info!(
                    "Slurm job {job_id} ends at {t:.0} (from squeue; SLURM_JOB_END_TIME is not set): preemption is \
                     requested before it"
                );
                Some(t)
            }
            None => {
                log_debug!(
                    "squeue gave no end time for Slurm job {job_id}: {:?}",
                    r.stdout.trim()
                );
                None
            }
        },
        Ok(r) => {
            log_warn!(
                "cannot ask Slurm for the end time of job {job_id} (squeue failed: {}); preemption before the time \
                 limit needs DET_END_TIME, or `#SBATCH --signal=B:USR1@120` with `exec` in the batch script",
                r.stderr.trim()
            );
            None
        }
        Err(e) if e.contains("No such file") => {
            log_debug!("no squeue on this machine ({e}): the Slurm job's end time is unknown");
            None
        }
        Err(e) => {
            log_warn!(
                "cannot ask Slurm for the end time of job {job_id} ({e}); preemption before the time limit needs \
                 DET_END_TIME, or `#SBATCH --signal=B:USR1@120` with `exec` in the batch script"
            );
            None
        }
    }
}

/// `scontrol requeue <job_id>`: Slurm ends the job and queues it again (it resumes from its
/// checkpoint under the same job id). Returns whether Slurm accepted; failures are logged.
pub fn requeue(job_id: &str) -> bool {
    // Said first: Slurm ends this run (SIGTERM, then SIGKILL after its KillWait) as it requeues.
    log_info!(
        "asking Slurm to requeue job {job_id} after its preemption checkpoint (scontrol requeue): Slurm ends this run \
         now, and the job resumes from the checkpoint when it runs again"
    );
    let mut cmd = Command::new("scontrol");
    cmd.args(["requeue", job_id]);
    match run(cmd, REQUEUE_TIMEOUT) {
        Ok(r) if r.ok => {
            log_debug!("Slurm accepted to requeue job {job_id}");
            true
        }
        Ok(r) => {
            log_warn!(
                "Slurm did not requeue job {job_id} (scontrol requeue: {}): resubmit it to resume from its checkpoint \
                 (requeue needs a batch job, and `#SBATCH --requeue` where the cluster sets JobRequeue=0)",
                last_line(&r.stderr)
            );
            false
        }
        Err(e) => {
            log_warn!(
                "could not ask Slurm to requeue job {job_id} ({e}): resubmit it to resume from its checkpoint"
            );
            false
        }
    }
}

/// Whether requeue is wanted: the option, else `DETCORE_SLURM_REQUEUE=1` (or `true`/`yes`).
pub fn requeue_wanted(option: bool) -> bool {
    option
        || std::env::var("DETCORE_SLURM_REQUEUE").is_ok_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_time_words() {
        assert_eq!(parse_end_time("1796440362\n"), Some(1796440362.0));
        assert_eq!(parse_end_time("\n  1700000000  \n"), Some(1700000000.0));
        for w in ["N/A", "NONE", "Unknown", "", "2026-12-05T03:12:42"] {
            assert_eq!(parse_end_time(w), None, "{w}");
        }
    }

    #[test]
    fn bounded_commands() {
        let mut c = Command::new("sh");
        c.args(["-c", "echo 42; echo oops >&2; exit 3"]);
        let r = run(c, Duration::from_secs(5)).unwrap();
        assert!(!r.ok);
        assert_eq!((r.stdout.trim(), r.stderr.trim()), ("42", "oops"));
        let mut c = Command::new("sleep");
        c.arg("30");
        let t0 = Instant::now();
        let e = run(c, Duration::from_millis(300)).err().unwrap();
        assert!(e.contains("did not answer within"), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(5));
        let e = run(Command::new("/nonexistent/squeue"), Duration::from_secs(1))
            .err()
            .unwrap();
        assert!(e.contains("No such file"), "{e}");
    }
}
