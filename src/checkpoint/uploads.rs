//! Asynchronous checkpoints: `store_path_end` hands the staged folder to a background thread
//! and returns; the thread publishes each checkpoint (every byte stored, `metadata.json` last)
//! and only then reports it, one checkpoint after the other, in the order they were ended.
//!
//! Staging is bounded: the files of checkpoints handed off but not yet stored may hold at most
//! `budget` bytes (default [`DEFAULT_STAGING_BUDGET`], or `DETCORE_ASYNC_STAGING_BYTES`); an
//! `end` that would exceed it waits until enough earlier uploads finish (a single checkpoint
//! larger than the budget is accepted once nothing else is pending).
//!
//! A failed upload is never reported. Its error is kept and returned by the next checkpoint call
//! (`store_path_begin`, `upload`, `wait`, `close`); its staged files are removed (a local copy
//! of every failed checkpoint would fill the disk of a job whose storage is down).

use super::{CheckpointReporter, StoreScope};
use crate::error::{Error, Result};
use crate::storage::{Resources, Storage};
use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex};
use std::sync::Arc;
use std::thread::JoinHandle;

/// 8 GiB of staged checkpoint files may wait for upload.
pub const DEFAULT_STAGING_BUDGET: u64 = 8 << 30;

/// A checkpoint handed off for upload.
pub struct Job {
    pub scope: StoreScope,
    pub resources: Resources,
}

#[derive(Default)]
struct State {
    pending: usize,
    pending_bytes: u64,
    failures: Vec<Error>,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
}

/// The background uploader of a checkpoint context.
pub struct AsyncUploads {
    shared: Arc<Shared>,
    budget: u64,
    tx: Mutex<Option<Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    storage: Arc<dyn Storage>,
    reporter: Arc<dyn CheckpointReporter>,
}

fn job_bytes(r: &Resources) -> u64 {
    r.values().sum()
}

fn run(
    rx: Receiver<Job>,
    shared: Arc<Shared>,
    storage: Arc<dyn Storage>,
    reporter: Arc<dyn CheckpointReporter>,
) {
    for job in rx {
        let bytes = job_bytes(&job.resources);
        let id = job.scope.id.clone();
        // A panic (a bug) must still count the job as finished, or `wait` would never return.
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            match super::publish_recorded(
                &*storage,
                &*reporter,
                job.scope.path(),
                &id,
                &job.scope.metadata,
                job.scope.steps,
                Some(&job.resources),
            ) {
                Err(e) => Err(e.context(format!(
                    "asynchronous checkpoint {id} was not stored (its staged files were removed)"
                ))),
                Ok(_) => reporter
                    .report(&id, &job.resources, &job.scope.metadata, job.scope.steps)
                    .map_err(|e| {
                        e.context(format!(
                            "asynchronous checkpoint {id} was stored but not reported"
                        ))
                    }),
            }
        }))
        .unwrap_or_else(|p| {
            Err(err!(
                Internal,
                "asynchronous checkpoint {id}: internal error (panic: {}); its staged files were removed",
                crate::error::panic_message(&*p),
            ))
        });
        // The staged folder goes now: moved away when published, removed otherwise.
        drop(job);
        let mut st = shared.state.lock();
        st.pending -= 1;
        st.pending_bytes -= bytes;
        match res {
            Ok(()) => log_info!("asynchronous checkpoint {id} stored and reported"),
            Err(e) => {
                log_warn!("{e}");
                st.failures.push(e);
            }
        }
        drop(st);
        shared.cv.notify_all();
    }
}

impl AsyncUploads {
    /// An idle uploader (its thread starts with the first job).
    pub fn new(
        storage: Arc<dyn Storage>,
        reporter: Arc<dyn CheckpointReporter>,
        budget: u64,
    ) -> AsyncUploads {
        AsyncUploads {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                cv: Condvar::new(),
            }),
            budget: budget.max(1),
            tx: Mutex::new(None),
            thread: Mutex::new(None),
            storage,
            reporter,
        }
    }

    /// Hand `job` off, first waiting while it would exceed the staging budget.
    pub fn submit(&self, job: Job) -> Result<()> {
        let bytes = job_bytes(&job.resources);
        {
            let mut st = self.shared.state.lock();
            if st.closed {
                bail!(State, "the checkpoint context is closed");
            }
            if st.pending > 0 && st.pending_bytes + bytes > self.budget {
                log_info!(
                    "checkpoint {}: waiting for earlier uploads ({} bytes pending, staging budget {} bytes)",
                    job.scope.id,
                    st.pending_bytes,
                    self.budget
                );
                while st.pending > 0 && st.pending_bytes + bytes > self.budget {
                    self.shared.cv.wait(&mut st);
                }
            }
            st.pending += 1;
            st.pending_bytes += bytes;
        }
        let mut tx = self.tx.lock();
        if tx.is_none() {
            let (s, r) = crossbeam_channel::unbounded();
            let shared = self.shared.clone();
            let storage = self.storage.clone();
            let reporter = self.reporter.clone();
            let h = std::thread::Builder::new()
                .name("detcore-ckpt-upload".into())
                .spawn(move || run(r, shared, storage, reporter))
                .map_err(|e| err!(Internal, "cannot start the checkpoint upload thread: {e}"))?;
            *self.thread.lock() = Some(h);
            *tx = Some(s);
        }
        let sent = tx.as_ref().map(|s| s.send(job).map_err(|_| ()));
        if !matches!(sent, Some(Ok(()))) {
            let mut st = self.shared.state.lock();
            st.pending -= 1;
            st.pending_bytes -= bytes;
            bail!(Internal, "the checkpoint upload thread is gone");
        }
        Ok(())
    }

    /// Block until nothing is pending (failures are kept).
    pub fn wait_idle(&self) {
        let mut st = self.shared.state.lock();
        while st.pending > 0 {
            self.shared.cv.wait(&mut st);
        }
    }

    /// Return (and forget) the failures of uploads that already ended: the first one, with a
    /// note when there were more.
    pub fn take_failure(&self) -> Result<()> {
        let mut st = self.shared.state.lock();
        if st.failures.is_empty() {
            return Ok(());
        }
        let all = std::mem::take(&mut st.failures);
        let n = all.len();
        let first = all.into_iter().next().expect("non-empty");
        if n > 1 {
            return Err(Error::new(
                first.kind(),
                format!(
                    "{} (and {} later asynchronous checkpoints failed too)",
                    first.message(),
                    n - 1
                ),
            ));
        }
        Err(first)
    }

    /// Wait for every pending upload, then return the first failure.
    pub fn wait(&self) -> Result<()> {
        self.wait_idle();
        self.take_failure()
    }

    /// Wait for everything, stop the thread, return the first failure. Later submits fail.
    pub fn close(&self) -> Result<()> {
        self.wait_idle();
        self.shared.state.lock().closed = true;
        drop(self.tx.lock().take());
        if let Some(h) = self.thread.lock().take() {
            let _ = h.join();
        }
        self.take_failure()
    }
}

impl Drop for AsyncUploads {
    fn drop(&mut self) {
        let _ = self.close();
    }
}
