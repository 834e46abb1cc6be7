//! One group of ranks connected as a star: the group's chief (group rank 0) accepts one TCP
//! connection from every other member. Used twice: for the whole job (the chief's server on
//! `chief_ip:port`) and for each node (the local chief's server on an ephemeral loopback port).
//!
//! - Every connection has a reader thread that drains the socket as soon as bytes arrive, so a
//!   sender never waits on a slow receiver's computation and the chief can run arbitrarily far
//!   ahead (unlike ZMQ PUB/SUB, nothing is ever dropped). Callers write directly.
//! - Broadcasts are acknowledged by the receiver's reader thread; the chief's `close` waits for the
//!   acknowledgements, so a value that was broadcast is known to have arrived.
//! - A lost member (process killed, socket closed) or a member that does not arrive in time fails
//!   the group: the chief aborts every other member with a message naming the lost rank, and every
//!   pending and later collective returns `DET_ERR_DISTRIBUTED` (or `DET_ERR_TIMEOUT`). No hang.
//!
//! Where each part lives: `handshake.rs` forms the group (the chief's accept loop, a member's
//! search for its job's chief, hello/welcome/reject); `transport.rs` moves frames on each
//! connection (sending, the read half handed between a calling thread and the background
//! reader); `collectives.rs` holds gather, allgather and broadcast; `control.rs` the values sent
//! outside collectives (the preemption horizon). This file holds the group's shared state, the
//! failure that ends it, and `close`.

mod collectives;
mod control;
mod handshake;
mod transport;

pub use control::ControlHandler;
pub use handshake::{listen, listen_local};
use transport::*;

use super::wire::{self, ByteList, Header, Kind, Op};
use crate::error::{Error, Kind as ErrKind, Result};
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::io::{BufReader, Read};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the chief's `close` waits for broadcast acknowledgements.
const CLOSE_ACK_WAIT: Duration = Duration::from_secs(10);
/// How long `close` may block sending its goodbye to a member that stopped reading.
const BYE_SEND_LIMIT: Duration = Duration::from_secs(1);

/// Which group a star serves (a local worker must not join the global group by mistake).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Global = 0,
    Local = 1,
}

impl Group {
    fn name(self) -> &'static str {
        match self {
            Group::Global => "global",
            Group::Local => "local",
        }
    }
}

/// Where this process sits in a group.
#[derive(Debug, Clone)]
pub struct Member {
    pub group: Group,
    /// Rank within the group (0 = the group's chief).
    pub group_rank: u32,
    pub group_size: u32,
    /// Global rank, used in every message.
    pub global_rank: u32,
    /// The job's identity (empty: none), compared in the handshake: a chief and a member of
    /// different jobs refuse each other.
    pub job: String,
}

/// How messages name a job identity.
pub fn job_name(id: &str) -> String {
    if id.is_empty() {
        "no job identity".to_owned()
    } else {
        format!("job {id:?}")
    }
}

/// The sticky failure of a group.
#[derive(Default)]
struct Failure {
    failed: AtomicBool,
    error: Mutex<Option<Error>>,
}

impl Failure {
    fn set(&self, e: Error) -> bool {
        let mut g = self.error.lock();
        if g.is_none() {
            *g = Some(e);
            self.failed.store(true, Ordering::SeqCst);
            true
        } else {
            false
        }
    }

    fn check(&self) -> Result<()> {
        if self.failed.load(Ordering::Relaxed) {
            if let Some(e) = self.error.lock().clone() {
                return Err(e);
            }
        }
        Ok(())
    }
}

struct Shared {
    me: Member,
    conns: Vec<Arc<Conn>>,
    failure: Failure,
    closing: AtomicBool,
    control: OnceLock<ControlHandler>,
    /// Control values seen so far (kept for a handler installed after they arrived).
    seen_horizon: AtomicU64,
    seen_decision: AtomicU64,
    /// The chief's freeze (its call), 0 before one.
    seen_freeze: AtomicU64,
    /// The collective timeout: how long a collective waits for a member, and how long a frame
    /// may stall half-way before the connection counts as lost.
    timeout: Duration,
    /// Client: the chief said goodbye (nothing more will come from it).
    departed: Mutex<Option<Error>>,
}

impl Shared {
    fn is_server(&self) -> bool {
        self.me.group_rank == 0
    }

    /// How messages name member `i`: "rank N" on the chief's side, "the chief" on a member's.
    fn peer_name(&self, i: usize) -> String {
        if self.is_server() {
            format!("rank {}", self.conns[i].global_rank)
        } else {
            "the chief".to_owned()
        }
    }

    /// Fail the group and tell every other member (server side) why.
    fn fail(&self, e: Error) {
        if self.failure.set(e.clone()) && self.is_server() {
            for c in &self.conns {
                let _ = c.send(
                    Header::new(Kind::Abort, 0, self.me.global_rank, 0, e.message().len()),
                    e.message().as_bytes(),
                );
            }
        }
    }
}

/// A group's connections and collectives.
pub struct Star {
    shared: Arc<Shared>,
    /// The job identity the group goes by (the chief's; made up by it for a job without one).
    job: String,
    /// Serializes collectives and numbers them.
    serial: Mutex<u64>,
    /// Chief: serial of the last broadcast (what `close` waits to see acknowledged).
    last_broadcast: AtomicU64,
    readers: Mutex<Vec<JoinHandle<()>>>,
}

impl Star {
    /// The job identity the group goes by (see [`Member::job`]; a chief without one makes one
    /// up, `chief-made:<uuid>`).
    pub fn job_id(&self) -> &str {
        &self.job
    }

    /// The group's failure, if it failed.
    pub fn check(&self) -> Result<()> {
        self.shared.failure.check()
    }

    /// Close the group: the chief first waits (bounded) for every broadcast to be acknowledged;
    /// everyone says goodbye and the reader threads are joined.
    pub fn close(&self) {
        if self.shared.closing.swap(true, Ordering::SeqCst) {
            return;
        }
        // A thread waiting for the chief's control values (should_preempt) stops waiting.
        wake(&self.shared);
        let last = self.last_broadcast.load(Ordering::SeqCst);
        if self.shared.is_server() && !self.shared.failure.failed.load(Ordering::SeqCst) {
            let deadline = crate::time::deadline(CLOSE_ACK_WAIT);
            while Instant::now() < deadline
                && self
                    .shared
                    .conns
                    .iter()
                    .any(|c| c.acked() < last && !c.said_bye())
                && !self.shared.failure.failed.load(Ordering::SeqCst)
            {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        for c in &self.shared.conns {
            c.limit_sends(BYE_SEND_LIMIT);
            let _ = c.send(
                Header::new(Kind::Bye, 0, self.shared.me.global_rank, last, 0),
                &[],
            );
        }
        if !self.shared.is_server() {
            // Give the chief a moment to read our goodbye before the socket goes away.
            let deadline = Instant::now() + Duration::from_millis(200);
            while Instant::now() < deadline
                && !self.up().said_bye()
                && self.readers.lock().iter().any(|t| !t.is_finished())
            {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        for c in &self.shared.conns {
            c.shutdown();
        }
        for t in self.readers.lock().drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Star {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::handshake::hello_payload;
    use super::*;

    /// A group of two over loopback: (chief, member).
    fn pair(timeout: Duration) -> (Star, Star) {
        let (listener, port) = listen_local().unwrap();
        let member = |r: u32| Member {
            group: Group::Local,
            group_rank: r,
            group_size: 2,
            global_rank: r,
            job: "test".into(),
        };
        let m = member(1);
        let t = std::thread::spawn(move || {
            Star::join(
                &[format!("127.0.0.1:{port}")],
                m,
                Duration::from_secs(10),
                timeout,
            )
        });
        let chief = Star::serve(listener, member(0), Duration::from_secs(10), timeout).unwrap();
        (chief, t.join().unwrap().unwrap())
    }

    #[test]
    fn timeouts_name_the_missing_side() {
        let (chief, member) = pair(Duration::from_millis(200));
        let e = chief.gather(b"x".to_vec()).unwrap_err();
        assert_eq!(e.kind(), ErrKind::Timeout);
        let want = "gather #1: rank(s) [1] did not join within 0 s";
        assert_eq!(e.message(), want);
        // The chief tells the member why the group failed.
        assert_eq!(member.broadcast(Vec::new()).unwrap_err().message(), want);
        assert_eq!(chief.check().unwrap_err().message(), want);

        let (_chief, member) = pair(Duration::from_millis(200));
        let e = member.allgather(Vec::new()).unwrap_err();
        assert_eq!(e.kind(), ErrKind::Timeout);
        let want = "allgather #1: the chief (rank 0) did not answer within 0 s";
        assert_eq!(e.message(), want);
        assert_eq!(member.check().unwrap_err().message(), want);
    }

    #[test]
    fn disagreements_name_both_sides() {
        let (chief, member) = pair(Duration::from_secs(10));
        let t = std::thread::spawn(move || {
            let e = member.gather(Vec::new()).unwrap_err();
            (member, e)
        });
        chief.broadcast(b"b".to_vec()).unwrap();
        let (member, e) = t.join().unwrap();
        assert_eq!(e.kind(), ErrKind::Distributed);
        assert_eq!(
            e.message(),
            "ranks disagree on the order of collectives: the chief sent broadcast #1 while rank 1 called gather #1"
        );
        assert_eq!(member.check().unwrap_err().message(), e.message());
        let e = chief.allgather(Vec::new()).unwrap_err();
        assert_eq!(e.kind(), ErrKind::Distributed);
        assert_eq!(
            e.message(),
            "ranks disagree on the order of collectives: rank 1 called gather #1 while rank 0 called allgather #2"
        );
        assert_eq!(chief.check().unwrap_err().message(), e.message());
    }

    #[test]
    fn collectives_of_two() {
        let (chief, member) = pair(Duration::from_secs(10));
        let t = std::thread::spawn(move || {
            assert!(member.gather(b"m".to_vec()).unwrap().is_none());
            let all = member.allgather(b"m".to_vec()).unwrap().into_vecs();
            let b = member.broadcast(Vec::new()).unwrap();
            (all, b)
        });
        let g = chief.gather(b"c".to_vec()).unwrap().unwrap().into_vecs();
        assert_eq!(g, vec![b"c".to_vec(), b"m".to_vec()]);
        let all = chief.allgather(b"c".to_vec()).unwrap().into_vecs();
        assert_eq!(chief.broadcast(b"v".to_vec()).unwrap(), b"v");
        let (member_all, b) = t.join().unwrap();
        assert_eq!(all, member_all);
        assert_eq!(b, b"v");
    }

    fn global(r: u32, size: u32, job: &str) -> Member {
        Member {
            group: Group::Global,
            group_rank: r,
            group_size: size,
            global_rank: r,
            job: job.into(),
        }
    }

    /// A rank of another job is refused (naming both jobs) and the chief keeps waiting for its
    /// own rank, which then joins.
    #[test]
    fn another_jobs_rank_is_refused() {
        let (listener, port) = listen_local().unwrap();
        let addr = vec![format!("127.0.0.1:{port}")];
        let chief = std::thread::spawn(move || {
            Star::serve(
                listener,
                global(0, 2, "slurm:1.0"),
                Duration::from_secs(20),
                Duration::from_secs(20),
            )
        });
        let e = Star::join(
            &addr,
            global(1, 2, "slurm:2.0"),
            Duration::from_millis(600),
            Duration::from_secs(5),
        )
        .err()
        .expect("a rank of another job must not join");
        assert_eq!(e.kind(), ErrKind::Timeout);
        assert!(
            e.message().contains("belongs to job \"slurm:1.0\"")
                && e.message().contains("belongs to job \"slurm:2.0\""),
            "{e}"
        );
        let own = Star::join(
            &addr,
            global(1, 2, "slurm:1.0"),
            Duration::from_secs(20),
            Duration::from_secs(20),
        )
        .unwrap();
        let chief = chief.join().unwrap().unwrap();
        assert_eq!((chief.job_id(), own.job_id()), ("slurm:1.0", "slurm:1.0"));
        // A chief with an identity refuses a rank without one, and the reverse.
        let (listener, port) = listen_local().unwrap();
        let addr = vec![format!("127.0.0.1:{port}")];
        let t = std::thread::spawn(move || {
            Star::serve(
                listener,
                global(0, 2, ""),
                Duration::from_secs(3),
                Duration::from_secs(5),
            )
        });
        let e = Star::join(
            &addr,
            global(1, 2, "x"),
            Duration::from_millis(600),
            Duration::from_secs(5),
        )
        .err()
        .unwrap();
        assert!(e.message().contains("no job identity"), "{e}");
        // Two ranks without identity join; they go by the chief's made-up one.
        let w = Star::join(
            &addr,
            global(1, 2, ""),
            Duration::from_secs(20),
            Duration::from_secs(5),
        )
        .unwrap();
        let c = t.join().unwrap().unwrap();
        assert!(c.job_id().starts_with("chief-made:"), "{}", c.job_id());
        assert_eq!(w.job_id(), c.job_id());
    }

    /// A member tries the addresses in turn: past another job's chief to its own.
    #[test]
    fn member_passes_another_jobs_chief() {
        let (la, pa) = listen_local().unwrap();
        let (lb, pb) = listen_local().unwrap();
        let addrs = vec![format!("127.0.0.1:{pa}"), format!("127.0.0.1:{pb}")];
        let other = std::thread::spawn(move || {
            Star::serve(
                la,
                global(0, 2, "openmpi:7"),
                Duration::from_secs(3),
                Duration::from_secs(5),
            )
        });
        let mine = std::thread::spawn(move || {
            Star::serve(
                lb,
                global(0, 2, "openmpi:8"),
                Duration::from_secs(20),
                Duration::from_secs(5),
            )
        });
        let w = Star::join(
            &addrs,
            global(1, 2, "openmpi:8"),
            Duration::from_secs(20),
            Duration::from_secs(5),
        )
        .unwrap();
        let c = mine.join().unwrap().unwrap();
        let t = std::thread::spawn(move || w.allgather(b"w".to_vec()));
        assert_eq!(
            c.allgather(b"c".to_vec()).unwrap().into_vecs(),
            vec![b"c".to_vec(), b"w".to_vec()]
        );
        t.join().unwrap().unwrap();
        // The other job's chief is still waiting for its own rank (and times out).
        let e = other.join().unwrap().err().unwrap();
        assert_eq!(e.kind(), ErrKind::Timeout, "{e}");
    }

    /// A chief of the same job that refuses a rank (sizes disagree) fails the rank at once.
    #[test]
    fn conflict_within_a_job_fails_at_once() {
        let (listener, port) = listen_local().unwrap();
        let t = std::thread::spawn(move || {
            Star::serve(
                listener,
                global(0, 3, "j"),
                Duration::from_secs(20),
                Duration::from_secs(5),
            )
        });
        let t0 = Instant::now();
        let e = Star::join(
            &[format!("127.0.0.1:{port}")],
            global(1, 2, "j"),
            Duration::from_secs(20),
            Duration::from_secs(5),
        )
        .err()
        .unwrap();
        assert_eq!(e.kind(), ErrKind::Distributed);
        assert!(
            e.message()
                .contains("says the global group has 2 ranks, the chief says 3"),
            "{e}"
        );
        assert!(t0.elapsed() < Duration::from_secs(10));
        assert!(t.join().unwrap().is_err());
    }

    /// A member that gave up on its first connection (it waited too long for the answer) and
    /// comes back is taken again, not refused as a duplicate nor welcomed on the dead one.
    #[test]
    fn member_that_reconnects_replaces_its_old_connection() {
        let (listener, port) = listen_local().unwrap();
        // The first connection says hello and goes away before the chief gets to it.
        let mut first = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let hello = hello_payload(&global(1, 2, "j"));
        wire::write_frame(
            &mut first,
            &Header::new(Kind::Hello, 0, 1, 0, hello.len()),
            &hello,
        )
        .unwrap();
        drop(first);
        let chief = std::thread::spawn(move || {
            Star::serve(
                listener,
                global(0, 2, "j"),
                Duration::from_secs(20),
                Duration::from_secs(5),
            )
        });
        std::thread::sleep(Duration::from_millis(100));
        let w = Star::join(
            &[format!("127.0.0.1:{port}")],
            global(1, 2, "j"),
            Duration::from_secs(20),
            Duration::from_secs(5),
        )
        .unwrap();
        let c = chief.join().unwrap().unwrap();
        let t = std::thread::spawn(move || w.broadcast(Vec::new()));
        assert_eq!(c.broadcast(b"ok".to_vec()).unwrap(), b"ok");
        assert_eq!(t.join().unwrap().unwrap(), b"ok");
    }
}
