//! The TensorBoard manager: owns the local folder and mirrors it into the checkpoint storage
//! (Python's `TensorboardManager`, docs/protocol.md#tensorboard-sync), on a thread of its own so
//! that neither the training loop nor the metrics reporter waits on storage.
//!
//! A *pass* uploads every file whose `(mtime, size)` differs from what was last uploaded to
//! the same key. Passes start at most once per `min_sync_interval` (1 s, for cloud request
//! quotas, as Python). AUTO mode asks for a pass after every report and checkpoint (through
//! [`TensorboardManager::notify`]) and makes a final pass at close; MANUAL mode uploads only what
//! [`TensorboardManager::upload_files`] selected.
//!
//! Differences from Python, on purpose:
//! - A failed upload is retried (with backoff, 1 s doubling to 30 s) until it succeeds or the
//!   context closes; close reports what could not be uploaded. Python drops the batch and only
//!   retries a file if it is modified again.
//! - Changes are tracked per file, not with one "last sync" timestamp, so a file modified while
//!   it was being uploaded is uploaded again, and a second `upload_files` within a second is
//!   delayed, never dropped.
//! - Files are uploaded in name order, so an event file's final version lands before the next
//!   file (which TensorBoard, reading in name order, moves on to) — and the files are read while
//!   the writer may append: event files only grow, by whole records, so any copy is a prefix of
//!   the final file and readers see at most a truncated last record, never a torn one.

use super::TensorboardConfig;
use super::TensorboardMode;
use crate::error::{Error, Kind, Result};
use crate::storage::Storage;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError};
use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// A function giving the storage name of a file from its relative name and the rank.
pub type Mangler<'a> = &'a mut dyn FnMut(&str, u32) -> Result<String>;

/// Longest wait between retries of a failed upload.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    mtime: SystemTime,
    len: u64,
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let m = std::fs::metadata(path)?;
    Ok(Stamp {
        mtime: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        len: m.len(),
    })
}

#[derive(Debug, Clone)]
struct Upload {
    path: PathBuf,
    key: String,
}

#[derive(Default)]
struct State {
    /// AUTO: a pass over the whole folder is wanted.
    scan_wanted: bool,
    /// Files named by `upload_files` (and failed ones) waiting for a pass.
    explicit: Vec<Upload>,
    stop: bool,
    /// Deadline of the final pass.
    final_deadline: Option<Instant>,
    /// Flush requests made / served (a flush waits for a pass that started after it asked).
    requested: u64,
    served: u64,
    /// The failure of the latest pass, if it had one.
    last_error: Option<Error>,
    /// Files uploaded so far (for tests and logs).
    uploaded_count: u64,
}

struct Shared {
    st: Mutex<State>,
    cv: Condvar,
    storage: Arc<dyn Storage>,
    local_dir: PathBuf,
    prefix: String,
    auto: bool,
    min_interval: Duration,
}

/// The TensorBoard side of a context.
pub struct TensorboardManager {
    mode: TensorboardMode,
    local_dir: PathBuf,
    prefix: String,
    rank: u32,
    write_profiler: bool,
    shared: Option<Arc<Shared>>,
    thread: Mutex<Option<(JoinHandle<()>, Receiver<()>)>>,
}

/// Check a relative name returned by a mangler: `/`-separated, no empty, `.` or `..` parts, not
/// absolute.
pub fn check_relative_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.starts_with('/')
        || name.contains('\\')
        || name.contains('\0')
        || name
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        bail!(
            InvalidArgument,
            "{name:?} is not a safe relative file name (no leading '/', no empty, '.' or '..' parts)"
        );
    }
    Ok(())
}

/// Every regular file under `root`, as (absolute path, relative name with `/`), sorted by name.
/// Folders that vanish while listed are skipped; symlinked folders are not followed.
fn list_files(root: &Path) -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<(PathBuf, String)>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in rd.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                log_warn!(
                    "tensorboard: skipping {} (the name is not UTF-8)",
                    entry.path().display()
                );
                continue;
            };
            let Ok(ft) = entry.file_type() else { continue };
            let rel = format!("{prefix}{name}");
            let path = entry.path();
            if ft.is_dir() {
                walk(&path, &format!("{rel}/"), out);
            } else if ft.is_file() || (ft.is_symlink() && path.is_file()) {
                out.push((path, rel));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, "", &mut out);
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

impl TensorboardManager {
    /// Create the local folder and start the sync thread (when there is a storage).
    pub fn start(cfg: TensorboardConfig) -> Result<Arc<TensorboardManager>> {
        crate::storage::fsutil::create_dir_all_modes(&cfg.local_dir, cfg.modes)
            .map_err(|e| e.context("tensorboard"))?;
        let local_dir = std::path::absolute(&cfg.local_dir).unwrap_or(cfg.local_dir.clone());
        if cfg.sync_prefix.is_empty() {
            bail!(InvalidArgument, "tensorboard: empty sync prefix");
        }
        check_relative_name(&cfg.sync_prefix).map_err(|e| e.context("tensorboard sync path"))?;
        let mut mgr = TensorboardManager {
            mode: cfg.mode,
            local_dir: local_dir.clone(),
            prefix: cfg.sync_prefix.clone(),
            rank: cfg.rank,
            write_profiler: cfg.write_profiler,
            shared: None,
            thread: Mutex::new(None),
        };
        if let Some(storage) = cfg.storage {
            let sh = Arc::new(Shared {
                st: Mutex::new(State::default()),
                cv: Condvar::new(),
                storage,
                local_dir,
                prefix: cfg.sync_prefix,
                auto: cfg.mode == TensorboardMode::Auto,
                min_interval: cfg.min_sync_interval,
            });
            let (done_tx, done_rx) = bounded::<()>(1);
            let s2 = sh.clone();
            let h = std::thread::Builder::new()
                .name("detcore-tb-sync".into())
                .spawn(move || {
                    run(&s2);
                    let _ = done_tx.send(());
                })
                .map_err(|e| err!(Internal, "cannot start the TensorBoard sync thread: {e}"))?;
            mgr.shared = Some(sh);
            *mgr.thread.lock() = Some((h, done_rx));
        }
        Ok(Arc::new(mgr))
    }

    /// The mode.
    pub fn mode(&self) -> TensorboardMode {
        self.mode
    }

    /// The local folder (`get_tensorboard_path()`).
    pub fn local_dir(&self) -> &Path {
        &self.local_dir
    }

    /// The storage key prefix files are synced under.
    pub fn sync_prefix(&self) -> &str {
        &self.prefix
    }

    /// Files uploaded so far.
    pub fn uploaded_count(&self) -> u64 {
        self.shared
            .as_ref()
            .map_or(0, |s| s.st.lock().uploaded_count)
    }

    /// Whether profiler reports are written as scalars too (off-cluster).
    pub fn write_profiler(&self) -> bool {
        self.write_profiler
    }

    /// AUTO: ask for a sync pass (rate-limited; never blocks).
    pub fn notify(&self) {
        if self.mode != TensorboardMode::Auto {
            return;
        }
        if let Some(sh) = &self.shared {
            let mut st = sh.st.lock();
            if !st.scan_wanted {
                st.scan_wanted = true;
                sh.cv.notify_all();
            }
        }
    }

    /// `upload_tensorboard_files(selector, mangler)` (MANUAL mode only): queue the files of the
    /// folder that `selector` accepts (it gets names relative to the folder, `/`-separated), each
    /// stored under the name `mangler(name, rank)` returns. Both run on the calling thread,
    /// during this call. The uploads happen on the sync thread; failures are retried; `flush`
    /// waits for them and `close` reports what failed. Returns the number of files queued.
    pub fn upload_files(
        &self,
        selector: Option<&mut dyn FnMut(&str) -> bool>,
        mangler: Option<Mangler<'_>>,
    ) -> Result<usize> {
        if self.mode == TensorboardMode::Auto {
            bail!(
                State,
                "upload_tensorboard_files can only be used in MANUAL mode"
            );
        }
        let Some(sh) = &self.shared else {
            bail!(
                Unsupported,
                "upload_tensorboard_files: this context has no storage to upload TensorBoard files to"
            );
        };
        let mut selector = selector;
        let mut mangler = mangler;
        let mut batch = Vec::new();
        for (path, rel) in list_files(&self.local_dir) {
            if let Some(sel) = selector.as_deref_mut() {
                if !sel(&rel) {
                    continue;
                }
            }
            let name = match mangler.as_deref_mut() {
                Some(m) => {
                    let n =
                        m(&rel, self.rank).map_err(|e| e.context(format!("mangler({rel:?})")))?;
                    check_relative_name(&n)
                        .map_err(|e| e.context(format!("mangler({rel:?}) returned a bad name")))?;
                    n
                }
                None => rel,
            };
            batch.push(Upload {
                path,
                key: format!("{}/{name}", self.prefix),
            });
        }
        let n = batch.len();
        let mut st = sh.st.lock();
        if st.stop {
            bail!(State, "upload_tensorboard_files: the context is closing");
        }
        st.explicit.extend(batch);
        sh.cv.notify_all();
        Ok(n)
    }

    /// Wait until a sync pass that starts after this call has finished (at most `timeout`);
    /// returns that pass's failure, if any. AUTO mode scans the whole folder.
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        let Some(sh) = &self.shared else {
            return Ok(());
        };
        let deadline = crate::time::deadline(timeout);
        let mut st = sh.st.lock();
        if st.stop {
            bail!(
                State,
                "the TensorBoard sync has stopped (the context is closing)"
            );
        }
        st.requested += 1;
        let want = st.requested;
        if sh.auto {
            st.scan_wanted = true;
        }
        sh.cv.notify_all();
        while st.served < want {
            if sh.cv.wait_until(&mut st, deadline).timed_out() && st.served < want {
                return Err(st.last_error.clone().unwrap_or_else(|| {
                    err!(
                        Timeout,
                        "TensorBoard files were not synced within {:.1} s",
                        timeout.as_secs_f64()
                    )
                }));
            }
        }
        match &st.last_error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Stop the sync thread after a final pass (AUTO: the whole folder; MANUAL: what
    /// `upload_files` queued), retrying failures until `deadline` has passed. Later calls do
    /// nothing.
    pub fn close(&self, deadline: Duration) -> Result<()> {
        let Some((handle, done)) = self.thread.lock().take() else {
            return Ok(());
        };
        let Some(sh) = &self.shared else {
            return Ok(());
        };
        {
            let mut st = sh.st.lock();
            st.stop = true;
            st.final_deadline = Some(crate::time::deadline(deadline));
            sh.cv.notify_all();
        }
        match done.recv_timeout(deadline + Duration::from_secs(2)) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                let _ = handle.join();
            }
            Err(RecvTimeoutError::Timeout) => {
                return Err(err!(
                    Timeout,
                    "TensorBoard files were still uploading to {} after the close deadline of {:.1} s",
                    sh.storage.describe(),
                    deadline.as_secs_f64()
                ));
            }
        }
        let st = sh.st.lock();
        match &st.last_error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }
}

impl Drop for TensorboardManager {
    fn drop(&mut self) {
        let _ = self.close(Duration::from_secs(10));
    }
}

/// What one pass did.
struct PassResult {
    failed: Vec<Upload>,
    first_error: Option<Error>,
    uploaded: u64,
}

fn pass(
    sh: &Shared,
    scan: bool,
    explicit: Vec<Upload>,
    done: &mut HashMap<String, (PathBuf, Stamp)>,
) -> PassResult {
    let mut todo: Vec<(Upload, Stamp)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut res = PassResult {
        failed: Vec::new(),
        first_error: None,
        uploaded: 0,
    };
    let mut consider = |u: Upload, res: &mut PassResult| {
        if !seen.insert(u.key.clone()) {
            return;
        }
        match stamp(&u.path) {
            Ok(s) => {
                if !done
                    .get(&u.key)
                    .is_some_and(|(p, t)| *p == u.path && *t == s)
                {
                    todo.push((u, s));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                log_warn!(
                    "tensorboard: {} was removed before it could be uploaded",
                    u.path.display()
                );
            }
            Err(e) => {
                res.first_error
                    .get_or_insert_with(|| Error::io("tensorboard: cannot stat", &u.path, e));
                res.failed.push(u);
            }
        }
    };
    for u in explicit {
        consider(u, &mut res);
    }
    if scan {
        for (path, rel) in list_files(&sh.local_dir) {
            let key = format!("{}/{rel}", sh.prefix);
            consider(Upload { path, key }, &mut res);
        }
    }
    todo.sort_by(|a, b| a.0.key.cmp(&b.0.key));
    for (u, s) in todo {
        match sh.storage.put_files(&[(u.path.clone(), u.key.clone())]) {
            Ok(()) => {
                done.insert(u.key.clone(), (u.path.clone(), s));
                res.uploaded += 1;
            }
            Err(e) => {
                res.first_error.get_or_insert_with(|| {
                    Error::new(
                        e.kind(),
                        format!(
                            "tensorboard: cannot upload {} to {} (key {}): {}",
                            u.path.display(),
                            sh.storage.describe(),
                            u.key,
                            e.message()
                        ),
                    )
                });
                res.failed.push(u);
            }
        }
    }
    res
}

fn run(sh: &Shared) {
    let mut done: HashMap<String, (PathBuf, Stamp)> = HashMap::new();
    let mut last_start: Option<Instant> = None;
    let mut backoff = Duration::ZERO;
    let mut retry_at: Option<Instant> = None;
    loop {
        let mut st = sh.st.lock();
        loop {
            if st.stop {
                break;
            }
            let work = st.scan_wanted || !st.explicit.is_empty() || st.requested > st.served;
            if work {
                let now = Instant::now();
                let mut ready = last_start.map_or(now, |t| t + sh.min_interval);
                if let Some(r) = retry_at {
                    ready = ready.max(r);
                }
                if now >= ready {
                    break;
                }
                sh.cv.wait_until(&mut st, ready);
            } else {
                sh.cv.wait(&mut st);
            }
        }
        if st.stop {
            drop(st);
            final_passes(sh, &mut done, backoff);
            return;
        }
        let scan = std::mem::take(&mut st.scan_wanted);
        let explicit = std::mem::take(&mut st.explicit);
        let serving = st.requested;
        drop(st);
        last_start = Some(Instant::now());
        let r = pass(sh, scan, explicit, &mut done);
        let mut st = sh.st.lock();
        st.uploaded_count += r.uploaded;
        st.served = st.served.max(serving);
        match r.first_error {
            None => {
                backoff = Duration::ZERO;
                retry_at = None;
                st.last_error = None;
            }
            Some(e) => {
                backoff = if backoff.is_zero() {
                    Duration::from_secs(1)
                } else {
                    (backoff * 2).min(MAX_BACKOFF)
                };
                retry_at = Some(Instant::now() + backoff);
                log_warn!(
                    "{} ({} file(s) not uploaded; retrying in {} s)",
                    e.message(),
                    r.failed.len(),
                    backoff.as_secs()
                );
                st.explicit.extend(r.failed);
                if sh.auto {
                    st.scan_wanted = true;
                }
                st.last_error = Some(e);
            }
        }
        sh.cv.notify_all();
    }
}

/// Passes at close: everything pending (AUTO: the whole folder), retried until it all succeeded
/// or the deadline passed.
fn final_passes(sh: &Shared, done: &mut HashMap<String, (PathBuf, Stamp)>, mut backoff: Duration) {
    let (deadline, mut explicit) = {
        let mut st = sh.st.lock();
        (
            st.final_deadline.unwrap_or_else(Instant::now),
            std::mem::take(&mut st.explicit),
        )
    };
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let r = pass(sh, sh.auto, std::mem::take(&mut explicit), done);
        let mut st = sh.st.lock();
        st.uploaded_count += r.uploaded;
        st.served = st.requested;
        let Some(e) = r.first_error else {
            st.last_error = None;
            sh.cv.notify_all();
            if attempt > 1 {
                log_info!("tensorboard: the final sync succeeded after {attempt} attempts");
            }
            return;
        };
        let n = r.failed.len();
        explicit = r.failed;
        backoff = if backoff.is_zero() {
            Duration::from_millis(500)
        } else {
            (backoff * 2).min(Duration::from_secs(5))
        };
        let now = Instant::now();
        if now + backoff >= deadline {
            let e = Error::new(
                if e.kind() == Kind::Internal {
                    Kind::Storage
                } else {
                    e.kind()
                },
                format!(
                    "{n} TensorBoard file(s) were not uploaded before the context closed: {}",
                    e.message()
                ),
            );
            log_warn!("{}", e.message());
            st.last_error = Some(e);
            sh.cv.notify_all();
            return;
        }
        log_warn!(
            "{} ({n} file(s) not uploaded; retrying in {:.1} s)",
            e.message(),
            backoff.as_secs_f64()
        );
        st.last_error = Some(e);
        drop(st);
        std::thread::sleep(backoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{self, StorageConfig};

    struct Dirs {
        root: PathBuf,
        local: PathBuf,
        store: PathBuf,
    }

    impl Drop for Dirs {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }

    fn dirs(name: &str) -> Dirs {
        let root = std::env::temp_dir().join(format!(
            "detcore-tbsync-{name}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        Dirs {
            local: root.join("run"),
            store: root.join("store"),
            root,
        }
    }

    fn manager(d: &Dirs, mode: TensorboardMode, interval: Duration) -> Arc<TensorboardManager> {
        let st = storage::open(&StorageConfig::Directory {
            container_path: d.store.clone(),
        })
        .unwrap();
        let mut cfg = TensorboardConfig::off_cluster(mode, &d.local, "run1", Some(st), 3);
        cfg.min_sync_interval = interval;
        TensorboardManager::start(cfg).unwrap()
    }

    const PREFIX: &str = "local/tensorboard/experiment/runs/trial/run1";

    #[test]
    fn auto_mirrors_changes_in_the_storage_layout() {
        let d = dirs("auto");
        let m = manager(&d, TensorboardMode::Auto, Duration::from_millis(300));
        let tb = m.local_dir().to_path_buf();
        assert!(tb.is_dir(), "the folder is created");
        std::fs::write(tb.join("a.txt"), "one").unwrap();
        std::fs::create_dir_all(tb.join("sub/deeper")).unwrap();
        std::fs::write(tb.join("sub/deeper/b.bin"), [1u8, 2, 3]).unwrap();
        m.notify();
        m.flush(Duration::from_secs(10)).unwrap();
        let dst = d.store.join(PREFIX);
        assert_eq!(std::fs::read_to_string(dst.join("a.txt")).unwrap(), "one");
        assert_eq!(
            std::fs::read(dst.join("sub/deeper/b.bin")).unwrap(),
            [1, 2, 3]
        );
        let n = m.uploaded_count();
        assert_eq!(n, 2);
        // Unchanged files are not uploaded again; a grown file is.
        std::fs::write(tb.join("a.txt"), "one two").unwrap();
        let t = Instant::now();
        m.flush(Duration::from_secs(10)).unwrap();
        assert_eq!(m.uploaded_count(), n + 1);
        assert_eq!(
            std::fs::read_to_string(dst.join("a.txt")).unwrap(),
            "one two"
        );
        // The second pass waited for the rate limit (it started < 300 ms after the first).
        assert!(
            t.elapsed() >= Duration::from_millis(100),
            "{:?}",
            t.elapsed()
        );
        // Final pass at close picks up the last change without a notify.
        std::fs::write(tb.join("late.txt"), "x").unwrap();
        m.close(Duration::from_secs(10)).unwrap();
        assert_eq!(std::fs::read_to_string(dst.join("late.txt")).unwrap(), "x");
        // Closing twice is a no-op.
        m.close(Duration::from_secs(1)).unwrap();
    }

    #[test]
    fn failed_uploads_are_retried() {
        let d = dirs("retry");
        // A regular file where the storage needs a folder makes every upload fail, for real.
        std::fs::create_dir_all(&d.store).unwrap();
        std::fs::write(d.store.join("local"), "in the way").unwrap();
        let m = manager(&d, TensorboardMode::Auto, Duration::from_millis(50));
        std::fs::write(m.local_dir().join("ev.tfevents"), "data").unwrap();
        m.notify();
        let e = m.flush(Duration::from_secs(10)).unwrap_err();
        assert!(e.message().contains("cannot upload"), "{e}");
        assert!(e.message().contains("ev.tfevents"), "{e}");
        // The file did not change; the retry uploads it once the storage works again.
        std::fs::remove_file(d.store.join("local")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !d.store.join(PREFIX).join("ev.tfevents").exists() {
            assert!(
                Instant::now() < deadline,
                "the failed upload was never retried"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        m.close(Duration::from_secs(10)).unwrap();
    }

    #[test]
    fn close_reports_what_could_not_be_uploaded() {
        let d = dirs("closefail");
        std::fs::create_dir_all(&d.store).unwrap();
        std::fs::write(d.store.join("local"), "in the way").unwrap();
        let m = manager(&d, TensorboardMode::Auto, Duration::from_millis(50));
        std::fs::write(m.local_dir().join("x"), "data").unwrap();
        let t = Instant::now();
        let e = m.close(Duration::from_millis(1500)).unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(6));
        assert!(
            e.message()
                .contains("1 TensorBoard file(s) were not uploaded"),
            "{e}"
        );
    }

    #[test]
    fn manual_uploads_with_selector_and_mangler() {
        let d = dirs("manual");
        let m = manager(&d, TensorboardMode::Manual, Duration::from_millis(50));
        let tb = m.local_dir().to_path_buf();
        std::fs::create_dir_all(tb.join("prof")).unwrap();
        std::fs::write(tb.join("prof/host.pt.trace.json"), "{}").unwrap();
        std::fs::write(tb.join("skip.log"), "no").unwrap();
        // Nothing is synced automatically.
        m.notify();
        m.flush(Duration::from_secs(5)).unwrap();
        assert!(!d.store.join(PREFIX).exists());
        let mut seen = Vec::new();
        let mut sel = |p: &str| {
            seen.push(p.to_owned());
            !p.ends_with(".log")
        };
        let mut mangle = |p: &str, rank: u32| Ok(format!("{p}#{rank}"));
        let n = m.upload_files(Some(&mut sel), Some(&mut mangle)).unwrap();
        assert_eq!(n, 1);
        assert_eq!(seen, vec!["prof/host.pt.trace.json", "skip.log"]);
        // Queued, not dropped, even right after the previous pass.
        m.upload_files(None, None).unwrap();
        m.flush(Duration::from_secs(10)).unwrap();
        let dst = d.store.join(PREFIX);
        assert!(dst.join("prof/host.pt.trace.json#3").is_file());
        assert!(dst.join("prof/host.pt.trace.json").is_file());
        assert!(dst.join("skip.log").is_file());
        // A mangler may not escape the sync folder.
        let mut bad = |_: &str, _: u32| Ok("../../escape".to_owned());
        let e = m.upload_files(None, Some(&mut bad)).unwrap_err();
        assert_eq!(e.kind(), Kind::InvalidArgument);
        assert!(e.message().contains("../../escape"), "{e}");
        let mut failing = |_: &str, _: u32| Err(err!(InvalidArgument, "user said no"));
        let e = m.upload_files(None, Some(&mut failing)).unwrap_err();
        assert!(e.message().contains("user said no"), "{e}");
        m.close(Duration::from_secs(5)).unwrap();
        // MANUAL mode makes no final pass of its own.
        std::fs::write(tb.join("after.txt"), "x").unwrap();
        assert!(!dst.join("after.txt").exists());
    }

    #[test]
    fn upload_files_refused_in_auto_mode() {
        let d = dirs("autoref");
        let m = manager(&d, TensorboardMode::Auto, Duration::from_millis(50));
        let e = m.upload_files(None, None).unwrap_err();
        assert_eq!(e.kind(), Kind::State);
        assert_eq!(
            e.message(),
            "upload_tensorboard_files can only be used in MANUAL mode"
        );
        m.close(Duration::from_secs(5)).unwrap();
    }

    #[test]
    fn relative_names() {
        for ok in ["a", "a/b.c", "x#1/y"] {
            check_relative_name(ok).unwrap();
        }
        for bad in ["", "/a", "a//b", "a/../b", "./a", "a/", "a\\b"] {
            assert!(check_relative_name(bad).is_err(), "{bad:?}");
        }
    }
}
