//! POSIX signals as a preemption source.
//!
//! The handler only stores the signal number in an atomic and chains to the handler that was
//! installed before (when that was a function — never to `SIG_DFL`, which for SIGTERM would kill
//! the process, nor `SIG_IGN`). Handlers are installed when the first context that wants them is
//! created and the previous ones restored when the last such context closes — unless the program
//! replaced detcore's handler meanwhile: then the program's handler stays (restoring would undo
//! the program's choice), and that signal no longer preempts through detcore. A program that
//! installs its own handler while a context is open keeps detcore's by chaining to it: save the
//! `struct sigaction` that `sigaction(2)` returns as the old action and call its `sa_sigaction`
//! (detcore's is an `SA_SIGINFO` handler) from the new handler.
//!
//! Only asynchronous signals can mean preemption: SIGKILL and SIGSTOP cannot be caught; the
//! signals a fault raises in the program itself (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS,
//! SIGABRT, and SIGPIPE from a write to a closed pipe) are refused, since a handler that returns
//! from a fault runs the faulting instruction again forever; and glibc keeps the signals between
//! 32 and `SIGRTMIN` for its own threads.

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
        libc::SIGKILL => "SIGKILL",
        libc::SIGSTOP => "SIGSTOP",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGSYS => "SIGSYS",
        libc::SIGABRT => "SIGABRT",
        libc::SIGPIPE => "SIGPIPE",
        _ => return format!("signal {sig}"),
    };
    n.to_owned()
}

/// Check that `sig` can mean preemption (see the module docs).
pub fn validate(sig: i32) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::new(
            Kind::InvalidArgument,
            format!("preempt_signals: {} {why}", name(sig)),
        ))
    };
    if sig <= 0 || sig as usize >= MAX_SIG || sig > libc::SIGRTMAX() {
        return bad("is not a signal number");
    }
    match sig {
        libc::SIGKILL | libc::SIGSTOP => bad("cannot be caught"),
        libc::SIGSEGV
        | libc::SIGBUS
        | libc::SIGFPE
        | libc::SIGILL
        | libc::SIGTRAP
        | libc::SIGSYS
        | libc::SIGABRT
        | libc::SIGPIPE => bad(
            "is raised by a fault in the program itself, not sent to ask for preemption: a handler that returns would run the faulting instruction again forever",
        ),
        s if s > 31 && s < libc::SIGRTMIN() => bad(&format!(
            "is reserved by the C library for its threads (use SIGRTMIN = {} or above for real-time signals)",
            libc::SIGRTMIN()
        )),
        _ => Ok(()),
    }
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
        // On failure the handlers installed so far are released with the lock held (a
        // `Registration` dropped here would take the lock again and never return).
        // SAFETY: querying with a NULL new action is always valid.
        if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } != 0 {
            let e = std::io::Error::last_os_error();
            release(&mut inst, &done);
            return Err(Error::new(
                Kind::InvalidArgument,
                format!(
                    "preempt_signals: the system refuses a handler for {} ({e})",
                    name(sig)
                ),
            ));
        }
        PREV_HANDLER[sig as usize].store(old.sa_sigaction, Ordering::SeqCst);
        PREV_FLAGS[sig as usize].store(old.sa_flags as usize, Ordering::SeqCst);
        // SAFETY: installing a valid SA_SIGINFO handler.
        if unsafe { libc::sigaction(sig, &new, std::ptr::null_mut()) } != 0 {
            let e = std::io::Error::last_os_error();
            release(&mut inst, &done);
            return Err(Error::new(
                Kind::InvalidArgument,
                format!(
                    "preempt_signals: the system refuses a handler for {} ({e})",
                    name(sig)
                ),
            ));
        }
        inst.entries.push((sig, 1, old));
        done.push(sig);
    }
    Ok(Registration { signals: done })
}

/// Release one registration of `signals`; the last one restores the previous handler if
/// detcore's is still the one installed.
fn release(inst: &mut Installed, signals: &[i32]) {
    for sig in signals {
        if let Some(i) = inst.entries.iter().position(|e| e.0 == *sig) {
            inst.entries[i].1 -= 1;
            if inst.entries[i].1 == 0 {
                let (_, _, old) = inst.entries.remove(i);
                if is_ours(*sig) {
                    // SAFETY: restoring the action that was in place before ours.
                    unsafe { libc::sigaction(*sig, &old, std::ptr::null_mut()) };
                } else {
                    log_info!(
                        "{}: the program replaced detcore's handler after det_core_init; leaving the program's handler in place",
                        name(*sig)
                    );
                }
            }
        }
    }
}

/// True if detcore's handler is the one installed for `sig`.
fn is_ours(sig: i32) -> bool {
    // SAFETY: zeroed sigaction is a valid value to receive the current action into.
    let mut cur: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: querying with a NULL new action is always valid.
    if unsafe { libc::sigaction(sig, std::ptr::null(), &mut cur) } != 0 {
        return false;
    }
    cur.sa_sigaction == on_signal as *const () as usize
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut inst = INSTALLED.lock();
        release(&mut inst, &self.signals);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_signals_that_cannot_mean_preemption() {
        for (sig, why) in [
            (0, "not a signal number"),
            (65, "not a signal number"),
            (libc::SIGKILL, "cannot be caught"),
            (libc::SIGSTOP, "cannot be caught"),
            (libc::SIGSEGV, "fault"),
            (libc::SIGBUS, "fault"),
            (libc::SIGFPE, "fault"),
            (libc::SIGILL, "fault"),
            (libc::SIGABRT, "fault"),
            (32, "reserved by the C library"),
            (33, "reserved by the C library"),
        ] {
            let e = validate(sig).unwrap_err();
            assert_eq!(e.kind(), Kind::InvalidArgument);
            assert!(e.message().contains(why), "{sig}: {e}");
        }
        for sig in [
            libc::SIGTERM,
            libc::SIGUSR1,
            libc::SIGRTMIN(),
            libc::SIGRTMAX(),
        ] {
            validate(sig).unwrap();
        }
    }

    #[test]
    fn a_refused_handler_fails_without_hanging() {
        // glibc refuses its reserved signals: install() must return an error and release what
        // it had installed (it used to deadlock on its own lock).
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(install(&[libc::SIGUSR2, 32]).map(|_| ()));
        });
        let r = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("install() hung");
        let e = r.unwrap_err();
        assert_eq!(e.kind(), Kind::InvalidArgument, "{e}");
        assert!(
            !is_ours(libc::SIGUSR2),
            "the first handler was not released"
        );
    }
}
