//! A small pool of threads over a work queue, shared by the transfer engine, the directory
//! backend's copies, parallel deletes and fsyncs.

use crate::error::{Error, Result};
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;

/// A small work queue whose tasks may queue more tasks; `run` returns when all are done.
pub struct Pool<T> {
    state: Mutex<(VecDeque<T>, usize)>,
    cv: Condvar,
}

impl<T: Send> Pool<T> {
    /// A pool holding `tasks`.
    pub fn new(tasks: impl IntoIterator<Item = T>) -> Pool<T> {
        let q: VecDeque<T> = tasks.into_iter().collect();
        let n = q.len();
        Pool {
            state: Mutex::new((q, n)),
            cv: Condvar::new(),
        }
    }

    /// Queue another task (from inside a running task).
    pub fn push(&self, t: T) {
        let mut s = self.state.lock();
        s.0.push_back(t);
        s.1 += 1;
        drop(s);
        self.cv.notify_one();
    }

    fn next(&self) -> Option<T> {
        let mut s = self.state.lock();
        loop {
            if let Some(t) = s.0.pop_front() {
                return Some(t);
            }
            if s.1 == 0 {
                return None;
            }
            self.cv.wait(&mut s);
        }
    }

    fn done(&self) {
        let mut s = self.state.lock();
        s.1 -= 1;
        let finished = s.1 == 0;
        drop(s);
        if finished {
            self.cv.notify_all();
        }
    }

    /// Serve the tasks with `threads` threads calling `work(task, pool)`.
    ///
    /// A task that panics still counts as done (so the other threads finish instead of waiting
    /// for it forever); the first panic is re-raised here once every thread has stopped. When
    /// no thread can be started the tasks run on the calling thread.
    pub fn run(&self, threads: usize, work: impl Fn(T, &Pool<T>) + Sync) {
        let panicked: Mutex<Option<Box<dyn std::any::Any + Send>>> = Mutex::new(None);
        let serve = || {
            while let Some(t) = self.next() {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(t, self)));
                self.done();
                if let Err(p) = r {
                    panicked.lock().get_or_insert(p);
                }
            }
        };
        std::thread::scope(|s| {
            let mut started = 0;
            for i in 0..threads.max(1) {
                let serve = &serve;
                match std::thread::Builder::new()
                    .name(format!("detcore-xfer-{i}"))
                    .spawn_scoped(s, serve)
                {
                    Ok(_) => started += 1,
                    Err(e) => {
                        log_warn!("cannot start transfer thread {i}: {e}");
                        break;
                    }
                }
            }
            if started == 0 {
                serve();
            }
        });
        if let Some(p) = panicked.into_inner() {
            std::panic::resume_unwind(p);
        }
    }
}

impl<T: Send> Pool<T> {
    /// [`run`](Pool::run) for fallible work: the first error is returned once every thread has
    /// stopped. With `stop_on_error`, tasks not yet started are skipped after an error (a
    /// transfer that failed); without, every task still runs (deletes, fsyncs).
    pub fn try_run(
        &self,
        threads: usize,
        stop_on_error: bool,
        work: impl Fn(T, &Pool<T>) -> Result<()> + Sync,
    ) -> Result<()> {
        let failed: Mutex<Option<Error>> = Mutex::new(None);
        self.run(threads, |t, pool| {
            if stop_on_error && failed.lock().is_some() {
                return;
            }
            if let Err(e) = work(t, pool) {
                failed.lock().get_or_insert(e);
            }
        });
        failed.into_inner().map_or(Ok(()), Err)
    }
}
