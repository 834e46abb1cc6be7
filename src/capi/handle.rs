//! Handles given to C.
//!
//! A `det_context*` points to a small shell that is never freed: `det_core_close` tears the
//! context down and marks the shell closed, so that a use after close is reported
//! (`DET_ERR_STATE`) instead of reading freed memory, and so that the lock-free preemption flag
//! the hot path reads stays valid even if another thread closes concurrently. The shell costs
//! about 100 bytes per `det_core_init`.
//!
//! Short-lived handles (`det_ckpt_store*`, `det_ckpt_restore*`, `det_searcher_op*`) are keys
//! into a registry, never dereferenced: ending or freeing one twice, or using it after, is
//! reported, and a stray pointer cannot crash the library.

use crate::context::Context;
use crate::error::{Error, Result};
use crate::preempt::PreemptState;
use parking_lot::{Mutex, RwLock};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

const MAGIC_LIVE: u64 = 0x6465_7463_6f72_6531; // "detcore1"
const MAGIC_CLOSED: u64 = 0x6465_7463_6c6f_7365; // "detclose"

/// A Core API context, from `det_core_init`. Opaque. Thread-safe: any thread may call any
/// function on it. Closed (and made unusable) by `det_core_close`.
pub struct det_context {
    magic: AtomicU64,
    poisoned: AtomicBool,
    poison_msg: Mutex<String>,
    pub(crate) preempt: Arc<PreemptState>,
    inner: RwLock<Option<Context>>,
}

impl det_context {
    /// Make a shell for `ctx` and leak it (see the module docs).
    pub(crate) fn leak(ctx: Context) -> &'static det_context {
        let preempt = ctx.preempt_state().clone();
        let shell: &'static det_context = Box::leak(Box::new(det_context {
            magic: AtomicU64::new(MAGIC_LIVE),
            poisoned: AtomicBool::new(false),
            poison_msg: Mutex::new(String::new()),
            preempt,
            inner: RwLock::new(Some(ctx)),
        }));
        // Keep every shell reachable from a global, so leak checkers (LSan, valgrind) see the
        // deliberate tombstones as "still reachable", not as leaks of the caller.
        SHELLS.lock().push(ShellPtr(shell));
        shell
    }

    /// The shell behind a C pointer. NULL is `DET_ERR_INVALID_ARGUMENT`; a context closed by
    /// `det_core_close` is `DET_ERR_STATE` (its shell is never freed, so reading it is sound).
    /// Any other readable memory whose first word is not a shell's magic number is refused as
    /// `DET_ERR_INVALID_ARGUMENT`, as a best-effort diagnosis only.
    ///
    /// # Safety
    /// `p` must be NULL or a pointer returned by `det_core_init` (closed or not). Any other
    /// pointer is read as a `det_context`: if it does not point to `size_of::<det_context>()`
    /// readable, suitably aligned bytes, the behaviour is undefined (a crash, typically).
    #[inline]
    pub(crate) unsafe fn from_ptr(p: *const det_context) -> Result<&'static det_context> {
        if p.is_null() {
            bail!(InvalidArgument, "ctx is NULL");
        }
        // SAFETY: non-NULL, and by this function's contract a pointer det_core_init returned;
        // shells are leaked, never freed, so it stays readable after det_core_close.
        let shell: &'static det_context = unsafe { &*p };
        match shell.magic.load(Ordering::Acquire) {
            MAGIC_LIVE => Ok(shell),
            MAGIC_CLOSED => Err(err!(
                State,
                "ctx was closed by det_core_close; it cannot be used any more"
            )),
            _ => Err(err!(InvalidArgument, "ctx does not point to a det_context")),
        }
    }

    /// Refuse a closed or poisoned context.
    #[inline]
    pub(crate) fn check_usable(&self) -> Result<()> {
        if self.poisoned.load(Ordering::Relaxed) {
            return Err(self.poisoned_error());
        }
        if self.magic.load(Ordering::Acquire) != MAGIC_LIVE {
            bail!(
                State,
                "ctx was closed by det_core_close; it cannot be used any more"
            );
        }
        Ok(())
    }

    #[cold]
    fn poisoned_error(&self) -> Error {
        err!(Internal, "ctx is unusable after an internal error in an earlier call ({}); close it with det_core_close",
                self.poison_msg.lock())
    }

    /// Run `f`; if it panics, poison the context and let the panic go on (the boundary catches
    /// it and returns `DET_ERR_INTERNAL`).
    pub(crate) fn guard_panic<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(r) => r,
            Err(p) => {
                self.poison(&crate::error::panic_message(&*p));
                resume_unwind(p)
            }
        }
    }

    /// Mark the context unusable after a panic.
    pub(crate) fn poison(&self, msg: &str) {
        *self.poison_msg.lock() = msg.to_owned();
        self.poisoned.store(true, Ordering::SeqCst);
    }

    /// Run `f` on the live context (shared lock; `det_core_close` waits for running calls).
    #[inline]
    pub(crate) fn with_live<T>(&self, f: impl FnOnce(&Context) -> Result<T>) -> Result<T> {
        self.check_usable()?;
        let g = self.inner.read_recursive();
        let ctx = g.as_ref().ok_or_else(|| {
            err!(
                State,
                "ctx was closed by det_core_close; it cannot be used any more"
            )
        })?;
        self.guard_panic(|| f(ctx))
    }

    /// Close: mark closed, wait for running calls, tear down. Returns the close result.
    pub(crate) fn close(&self) -> Result<()> {
        if self
            .magic
            .compare_exchange(
                MAGIC_LIVE,
                MAGIC_CLOSED,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            bail!(State, "ctx was already closed");
        }
        let ctx = self.inner.write().take();
        match ctx {
            Some(c) => {
                let r = c.close();
                drop(c);
                r
            }
            None => Ok(()),
        }
    }
}

struct ShellPtr(#[allow(dead_code)] &'static det_context);
static SHELLS: Mutex<Vec<ShellPtr>> = Mutex::new(Vec::new());

static NEXT_HANDLE: AtomicUsize = AtomicUsize::new(0x1000);

/// A table of live short-lived handles of one type. The value handed to C is a unique key
/// shaped like an aligned pointer; it is never reused.
pub(crate) struct Registry<T> {
    items: Mutex<BTreeMap<usize, Arc<T>>>,
    kind: &'static str,
}

impl<T> Registry<T> {
    pub(crate) const fn new(kind: &'static str) -> Registry<T> {
        Registry {
            items: Mutex::new(BTreeMap::new()),
            kind,
        }
    }

    /// Register `item`; returns its key.
    pub(crate) fn insert(&self, item: T) -> usize {
        let key = NEXT_HANDLE.fetch_add(16, Ordering::Relaxed);
        self.items.lock().insert(key, Arc::new(item));
        key
    }

    /// The live item for `key`.
    pub(crate) fn get(&self, key: usize) -> Result<Arc<T>> {
        if key == 0 {
            bail!(InvalidArgument, "{} is NULL", self.kind);
        }
        self.items
            .lock()
            .get(&key)
            .cloned()
            .ok_or_else(|| self.gone())
    }

    /// Every live item (a snapshot).
    pub(crate) fn values(&self) -> Vec<Arc<T>> {
        self.items.lock().values().cloned().collect()
    }

    /// Remove and return the item for `key` (end/free).
    pub(crate) fn remove(&self, key: usize) -> Result<Arc<T>> {
        if key == 0 {
            bail!(InvalidArgument, "{} is NULL", self.kind);
        }
        self.items.lock().remove(&key).ok_or_else(|| self.gone())
    }

    fn gone(&self) -> Error {
        err!(
            State,
            "{} is not open: it was already ended or freed, or never returned by detcore",
            self.kind
        )
    }
}
