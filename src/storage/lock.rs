//! Advisory file locks between processes (`flock(2)`).
//!
//! The kernel releases a process's locks when it dies, however it dies (`kill -9` included), so a
//! lock that nobody holds is proof that its owners are gone. `flock` works on local file systems
//! and on NFS (Linux emulates it with byte-range locks there); some parallel file systems refuse
//! it (Lustre mounted without `-o flock`): callers are told ([`Locked::Unsupported`]) and fall back
//! to a weaker rule of their own.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Shared (several holders) or exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Shared,
    Exclusive,
}

/// The outcome of a lock attempt.
#[derive(Debug)]
pub enum Locked {
    /// The lock is held (until the file is closed or [`unlock`] is called).
    Yes,
    /// Another process holds a conflicting lock.
    Busy,
    /// The file system does not support locks.
    Unsupported(io::Error),
}

fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOLCK | libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL)
    )
}

/// Try once to lock `f` without waiting.
pub fn try_lock(f: &File, mode: Mode) -> io::Result<Locked> {
    let op = match mode {
        Mode::Shared => libc::LOCK_SH,
        Mode::Exclusive => libc::LOCK_EX,
    } | libc::LOCK_NB;
    loop {
        // SAFETY: flock on a valid, open descriptor owned by `f`.
        if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
            return Ok(Locked::Yes);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) => return Ok(Locked::Busy),
            _ if unsupported(&e) => return Ok(Locked::Unsupported(e)),
            _ => return Err(e),
        }
    }
}

/// Lock `f`, waiting at most `wait` (polling: a blocking `flock` could not be given up).
pub fn lock_within(f: &File, mode: Mode, wait: Duration) -> io::Result<Locked> {
    let end = Instant::now() + wait;
    let mut pause = Duration::from_millis(1);
    loop {
        match try_lock(f, mode)? {
            Locked::Busy if Instant::now() < end => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return Ok(other),
        }
    }
}

/// Release the lock held on `f` (closing `f` does too).
pub fn unlock(f: &File) {
    // SAFETY: flock on a valid, open descriptor owned by `f`.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
}

/// The start time of process `pid` (clock ticks since boot, field 22 of `/proc/<pid>/stat`), to
/// tell a live process from a later one that reuses its pid. `None` when there is no such process.
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_holders_exclude_an_exclusive_one() {
        let d = crate::testutil::TempDir::new("lock");
        let p = d.path().join("l");
        let a = File::create(&p).unwrap();
        let b = File::open(&p).unwrap();
        let c = File::open(&p).unwrap();
        assert!(matches!(try_lock(&a, Mode::Shared).unwrap(), Locked::Yes));
        assert!(matches!(try_lock(&b, Mode::Shared).unwrap(), Locked::Yes));
        assert!(matches!(
            try_lock(&c, Mode::Exclusive).unwrap(),
            Locked::Busy
        ));
        let t = Instant::now();
        assert!(matches!(
            lock_within(&c, Mode::Exclusive, Duration::from_millis(30)).unwrap(),
            Locked::Busy
        ));
        assert!(t.elapsed() >= Duration::from_millis(30));
        unlock(&a);
        drop(b);
        assert!(matches!(
            try_lock(&c, Mode::Exclusive).unwrap(),
            Locked::Yes
        ));
    }

    #[test]
    fn process_start_tells_live_processes() {
        assert!(process_start(std::process::id()).is_some());
        assert_eq!(process_start(u32::MAX - 7), None);
    }
}
