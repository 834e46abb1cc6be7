//! POSIX signals as a preemption source.
//!
//! The handler only stores the signal number in an atomic and chains to the handler that was
//! installed before (when that was a function — never to `SIG_DFL`, which for SIGTERM would kill
//! the process, nor `SIG_IGN`). Handlers are installed when the first context that wants them is
//! created and the previous ones restored when the last such context closes.

use crate::error::{Error, Kind, Result};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

/// The number of the first preemption signal received since the handlers were installed, or 0.
static PENDING: AtomicI32 = AtomicI32::new(0);

/// Previous `sa_sigaction` values and flags per signal number, for chaining from the handler.
/// Written only while the handler for that signal is not installed.
const MAX_SIG: usize = 65;
static PREV_HANDLER: [AtomicUsize; MAX_SIG] = [const { AtomicUsize::new(0) }; MAX_SIG];
static PREV_FLAGS: [AtomicUsize; MAX_SIG] = [const { AtomicUsize::new(0) }; MAX_SIG];

struct Installed {
    /// signal → (refcount, previous sigaction)
    entries: Vec<(i32, usize, libc::sigaction)>,
}

// SAFETY: libc::sigaction is plain data.
unsafe impl Send for Installed {}

static INSTALLED: Mutex<Installed> = Mutex::new(Installed {
    entries: Vec::new(),
});

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, uctx: *mut libc::c_void) {
    // Async-signal-safe: atomics and a call through a function pointer only.
    let _ = PENDING.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
    let idx = sig as usize;
    if idx >= MAX_SIG {
        return;
    }
    let prev = PREV_HANDLER[idx].load(Ordering::SeqCst);
    if prev == libc::SIG_DFL || prev == libc::SIG_IGN || prev == 0 {
        return;
    }
    let flags = PREV_FLAGS[idx].load(Ordering::SeqCst) as libc::c_int;
    if flags & libc::SA_SIGINFO != 0 {
        // SAFETY: prev was installed by the process as an SA_SIGINFO handler with this signature.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(prev) };
        f(sig, info, uctx);
    } else {
        // SAFETY: prev was installed by the process as a plain handler with this signature.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(prev) };
        f(sig);
    }
}

/// The pending preemption signal, if one arrived.
#[inline]
pub fn pending() -> Option<i32> {
    match PENDING.load(Ordering::Relaxed) {
        0 => None,
        s => Some(s),
    }
}

/// True if a preemption signal arrived.
#[inline]
pub fn is_pending() -> bool {
    PENDING.load(Ordering::Relaxed) != 0
}

/// A name for messages: `SIGTERM`.
pub fn name(sig: i32) -> String {
    let n = match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGINT => "SIGINT",
        libc::SIGHUP => "SIGHUP",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGALRM => "SIGALRM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGCONT => "SIGCONT",
        libc::SIGPWR => "SIGPWR",
        _ => return format!("signal {sig}"),
    };
    n.to_owned()
}

/// Check that `sig` can be caught.
pub fn validate(sig: i32) -> Result<()> {
    if sig <= 0 || sig as usize >= MAX_SIG || sig == libc::SIGKILL || sig == libc::SIGSTOP {
        return Err(Error::new(
            Kind::InvalidArgument,
            format!("preempt_signals: {sig} is not a signal that can be caught"),
        ));
    }
    Ok(())
}

/// A registration of handlers; dropping it restores the previous handlers when no other
/// registration needs them.
pub struct Registration {
    signals: Vec<i32>,
}

/// Install the preemption handler for `signals` (already validated).
pub fn install(signals: &[i32]) -> Result<Registration> {
    let mut inst = INSTALLED.lock();
    let mut done = Vec::new();
    for &sig in signals {
        if done.contains(&sig) {
            continue;
        }
        if let Some(e) = inst.entries.iter_mut().find(|e| e.0 == sig) {
            e.1 += 1;
            done.push(sig);
            continue;
        }
        if inst.entries.is_empty() {
            // A fresh installation: forget a signal from an earlier, closed context.
            PENDING.store(0, Ordering::SeqCst);
        }
        // SAFETY: zeroed sigaction is a valid "empty" value; we fill the fields we use.
        let mut new: libc::sigaction = unsafe { std::mem::zeroed() };
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        new.sa_sigaction = on_signal as *const () as usize;
        new.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        // SAFETY: sa_mask is a valid sigset_t to initialise.
        unsafe { libc::sigemptyset(&mut new.sa_mask) };
        // Read the current handler first so the chain pointer is in place before ours runs.
        // SAFETY: querying with a NULL new action is always valid.
        if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } != 0 {
            let e = std::io::Error::last_os_error();
            drop(Registration { signals: done });
            return Err(Error::new(
                Kind::Internal,
                format!("sigaction({}) failed: {e}", name(sig)),
            ));
        }
        PREV_HANDLER[sig as usize].store(old.sa_sigaction, Ordering::SeqCst);
        PREV_FLAGS[sig as usize].store(old.sa_flags as usize, Ordering::SeqCst);
        // SAFETY: installing a valid SA_SIGINFO handler.
        if unsafe { libc::sigaction(sig, &new, std::ptr::null_mut()) } != 0 {
            let e = std::io::Error::last_os_error();
            drop(Registration { signals: done });
            return Err(Error::new(
                Kind::Internal,
                format!("sigaction({}) failed: {e}", name(sig)),
            ));
        }
        inst.entries.push((sig, 1, old));
        done.push(sig);
    }
    Ok(Registration { signals: done })
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut inst = INSTALLED.lock();
        for sig in &self.signals {
            if let Some(i) = inst.entries.iter().position(|e| e.0 == *sig) {
                inst.entries[i].1 -= 1;
                if inst.entries[i].1 == 0 {
                    let (_, _, old) = inst.entries.remove(i);
                    // SAFETY: restoring the action that was in place before ours.
                    unsafe { libc::sigaction(*sig, &old, std::ptr::null_mut()) };
                }
            }
        }
    }
}
