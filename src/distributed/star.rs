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

use super::wire::{self, ByteList, Header, Kind, Op};
use crate::error::{Error, Kind as ErrKind, Result};
use crate::{bail, err, log_debug, log_warn};
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::io::{BufReader, Read};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// 2: the hello carries the job identity, and the chief accepts a member with `Accept`.
const PROTOCOL_VERSION: u32 = 2;
/// First byte of a `Reject` payload: the connecting rank is not of this group's job (it should
/// look elsewhere), or it is but conflicts with the group (it must fail).
const REJECT_FOREIGN: u8 = 1;
const REJECT_FATAL: u8 = 0;
/// How long a member waits for a chief's answer to its hello before trying elsewhere (a chief
/// answers at once, unless its accept loop is held up by a silent connection for up to 10 s).
const HELLO_ANSWER_WAIT: Duration = Duration::from_secs(30);
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

/// Receives out-of-band control values (should_preempt's horizons, freeze and decision on a
/// client; the members' replies to a freeze on the chief): `Some((op, value, sender's global
/// rank))`, or `None` when a connection failed or ended (wake up and look at [`Star::check`] or
/// [`Star::live_members`]).
pub type ControlHandler = Arc<dyn Fn(Option<(Op, u64, u32)>) + Send + Sync>;

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

enum InMsg {
    Data {
        op: Op,
        serial: u64,
        payload: Vec<u8>,
    },
    Lost(Error),
}

/// How often blocked reads wake up to look at deadlines, failures and closing.
const TICK: Duration = Duration::from_millis(50);

/// One connection to another member.
///
/// Its read half is used by the thread that needs the next message: during a collective that is
/// the calling thread itself (so the kernel wakes it directly when the answer arrives — no hop
/// through another thread, which on this kind of machine costs more than the network round
/// trip); between collectives the background reader takes it, to apply control values, answer
/// broadcasts, and notice a lost member at once.
struct Conn {
    global_rank: u32,
    write: Mutex<TcpStream>,
    acked: AtomicU64,
    said_bye: AtomicBool,
    /// A write failed or timed out: nothing more is sent on this connection (so that failing
    /// the group or closing does not wait on a member that stopped reading, once per message).
    broken: AtomicBool,
    read: Mutex<BufReader<TcpStream>>,
    /// Messages the background reader read for a later collective.
    queue: Mutex<VecDeque<InMsg>>,
    /// A calling thread holds or wants the read half.
    busy: AtomicBool,
    idle_lock: Mutex<()>,
    idle: Condvar,
    /// A clone of the socket, to wait for data without holding `read`.
    peek: TcpStream,
    /// The connection ended (end of stream, error, abort).
    ended: AtomicBool,
    /// When a calling thread last released the read half (ms since `origin`).
    last_use_ms: AtomicU64,
    origin: Instant,
    /// The background reader waits for a calling thread to release the read half (only then is
    /// a wake-up worth a system call).
    bg_waiting: AtomicBool,
}

/// While collectives follow each other closer than this, the calling threads read everything
/// and the background reader stays out of their way (it would only wake on their messages).
const QUIET: Duration = Duration::from_millis(20);

impl Conn {
    fn send(&self, h: Header, payload: &[u8]) -> Result<()> {
        if self.broken.load(Ordering::SeqCst) {
            bail!(
                Distributed,
                "cannot send to rank {}: an earlier send failed",
                self.global_rank
            );
        }
        let mut w = self.write.lock();
        wire::write_frame(&mut *w, &h, payload).map_err(|e| {
            self.broken.store(true, Ordering::SeqCst);
            let e = if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) {
                "it stopped reading (the send stalled past the collective timeout)".to_owned()
            } else {
                e.to_string()
            };
            err!(Distributed, "cannot send to rank {}: {e}", self.global_rank)
        })
    }

    /// Bound every later send to `limit` (the final goodbye).
    fn limit_sends(&self, limit: Duration) {
        let _ = self.write.lock().set_write_timeout(Some(limit));
    }

    fn shutdown(&self) {
        let _ = self.write.lock().shutdown(Shutdown::Both);
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

fn hello_payload(m: &Member) -> Vec<u8> {
    let mut p = Vec::with_capacity(16 + m.job.len());
    p.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    p.extend_from_slice(&(m.group as u32).to_le_bytes());
    p.extend_from_slice(&m.group_rank.to_le_bytes());
    p.extend_from_slice(&m.group_size.to_le_bytes());
    p.extend_from_slice(m.job.as_bytes());
    p
}

/// True if the peer of `s` closed its end (nothing it sent is left unread: a member waiting
/// for `Welcome` sends nothing).
fn peer_gone(s: &TcpStream) -> bool {
    let mut b = [0u8; 1];
    if s.set_nonblocking(true).is_err() {
        return false;
    }
    let gone = match s.peek(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    let _ = s.set_nonblocking(false);
    gone
}

/// What one attempt to join a chief at one address gave.
enum Attempt {
    /// A chief of this job took the rank: the stream, the chief's rank and the job identity.
    Joined(TcpStream, u32, String),
    /// Nobody (of detcore) answered there.
    Unreachable(String),
    /// A chief of another job (or of another detcore protocol) answered: look elsewhere.
    Foreign(String),
    /// A chief of this job refused the rank (a conflict within the job).
    Fatal(Error),
}

fn u32_at(p: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(p[i * 4..i * 4 + 4].try_into().expect("4 bytes"))
}

impl Star {
    /// The group's chief: accept `group_size - 1` members on `listener` within `connect_timeout`.
    pub fn serve(
        listener: TcpListener,
        me: Member,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<Star> {
        let n = me.group_size as usize;
        let deadline = crate::time::deadline(connect_timeout);
        let mut slots: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
        let mut ranks = vec![0u32; n];
        ranks[0] = me.global_rank;
        listener
            .set_nonblocking(true)
            .map_err(|e| err!(Distributed, "listener: {e}"))?;
        let mut missing = n - 1;
        // Identities of other jobs already warned about (a rank retries every few 100 ms).
        let mut warned = std::collections::HashSet::new();
        // A job without an identity: the chief makes one up (for messages only).
        let made_up = me
            .job
            .is_empty()
            .then(|| format!("chief-made:{}", uuid::Uuid::new_v4()));
        loop {
            if missing == 0 {
                // Before welcoming: a member that gave up on its connection meanwhile will
                // connect again; wait for it rather than start with a dead connection.
                for slot in slots.iter_mut().skip(1) {
                    if slot.as_ref().is_some_and(peer_gone) {
                        *slot = None;
                        missing += 1;
                    }
                }
                if missing == 0 {
                    break;
                }
            }
            match listener.accept() {
                Ok((mut s, peer)) => {
                    s.set_nonblocking(false).ok();
                    s.set_nodelay(true).ok();
                    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
                    let (h, p) = match wire::read_frame(&mut s) {
                        Ok(Some(x)) => x,
                        Ok(None) | Err(_) => {
                            log_debug!("ignoring a connection from {peer} that sent no hello");
                            continue;
                        }
                    };
                    let reject = |s: &mut TcpStream, code: u8, why: &str| {
                        let mut p = vec![code];
                        p.extend_from_slice(why.as_bytes());
                        let _ = wire::write_frame(
                            s,
                            &Header::new(Kind::Reject, 0, me.global_rank, 0, p.len()),
                            &p,
                        );
                    };
                    if h.kind != Kind::Hello || p.len() < 16 || u32_at(&p, 0) != PROTOCOL_VERSION {
                        reject(
                            &mut s,
                            REJECT_FOREIGN,
                            "not a detcore hello of this protocol version",
                        );
                        continue;
                    }
                    let (group, grank, gsize) = (u32_at(&p, 1), u32_at(&p, 2), u32_at(&p, 3));
                    if group != me.group as u32 {
                        reject(
                            &mut s,
                            REJECT_FOREIGN,
                            "connected to the wrong group's port",
                        );
                        continue;
                    }
                    let their_job = String::from_utf8_lossy(&p[16..]).into_owned();
                    if their_job != me.job {
                        // Another job's rank (two jobs on one machine): refuse it and keep
                        // waiting for this job's own ranks.
                        let why = format!(
                            "the chief (rank {}) at {} belongs to {}, but rank {} that connected from {peer} belongs to {}: \
                             another job uses this port",
                            me.global_rank,
                            s.local_addr().map(|a| a.to_string()).unwrap_or_default(),
                            job_name(&me.job),
                            h.sender,
                            job_name(&their_job)
                        );
                        reject(&mut s, REJECT_FOREIGN, &why);
                        if warned.insert(their_job) {
                            log_warn!("refused a rank of another job: {why}");
                        }
                        continue;
                    }
                    if gsize != me.group_size {
                        let why = format!(
                            "rank {} says the {} group has {gsize} ranks, the chief says {}",
                            h.sender,
                            me.group.name(),
                            me.group_size
                        );
                        reject(&mut s, REJECT_FATAL, &why);
                        bail!(Distributed, "{why}");
                    }
                    let g = grank as usize;
                    if g > 0 && g < n && slots[g].as_ref().is_some_and(peer_gone) {
                        // The member gave up on an earlier connection (it waited too long for
                        // our answer) and came back: the new connection replaces the old.
                        log_debug!(
                            "rank {} connected again; dropping its earlier connection",
                            h.sender
                        );
                        slots[g] = None;
                        missing += 1;
                    }
                    if g == 0 || g >= n || slots[g].is_some() {
                        let why = format!("rank {} joined the {} group as member {grank}, which is taken or invalid", h.sender, me.group.name());
                        reject(&mut s, REJECT_FATAL, &why);
                        bail!(Distributed, "{why}");
                    }
                    let accept = made_up.as_deref().unwrap_or(&me.job).as_bytes();
                    if let Err(e) = wire::write_frame(
                        &mut s,
                        &Header::new(Kind::Accept, 0, me.global_rank, 0, accept.len()),
                        accept,
                    ) {
                        log_debug!("rank {} went away during the handshake: {e}", h.sender);
                        continue;
                    }
                    s.set_read_timeout(None).ok();
                    ranks[g] = h.sender;
                    slots[g] = Some(s);
                    missing -= 1;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        let absent: Vec<String> = (1..n)
                            .filter(|&g| slots[g].is_none())
                            .map(|g| g.to_string())
                            .collect();
                        bail!(
                            Timeout,
                            "the {} group's members [{}] (group ranks) did not connect within {:.0} s",
                            me.group.name(),
                            absent.join(", "),
                            connect_timeout.as_secs_f64()
                        );
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => bail!(Distributed, "accepting connections failed: {e}"),
            }
        }
        let streams: Vec<TcpStream> = slots
            .into_iter()
            .skip(1)
            .map(|s| s.expect("all connected"))
            .collect();
        for s in &streams {
            let mut w = s;
            wire::write_frame(
                &mut w,
                &Header::new(Kind::Welcome, 0, me.global_rank, 0, 0),
                &[],
            )
            .map_err(|e| err!(Distributed, "cannot welcome a member: {e}"))?;
        }
        let job = made_up.unwrap_or_else(|| me.job.clone());
        Star::start(me, streams, ranks[1..].to_vec(), timeout, job)
    }

    /// A member: join the group's chief at one of `addrs` (`host:port`, tried in order: the
    /// chief listens on the first free one of them), retrying until `connect_timeout`. A chief
    /// of another job refuses the rank and the next address is tried; a chief of this job that
    /// refuses it (a conflict within the job) fails the call.
    pub fn join(
        addrs: &[String],
        me: Member,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<Star> {
        let deadline = crate::time::deadline(connect_timeout);
        let mut delay = Duration::from_millis(20);
        let mut last_err = String::from("no attempt");
        // Chiefs of other jobs met so far, by address (each warned about once).
        let mut foreign: Vec<(String, String)> = Vec::new();
        let (mut stream, chief_rank, job, addr) = 'found: loop {
            for addr in addrs {
                match Star::try_join(addr, &me, deadline) {
                    Attempt::Joined(s, r, job) => break 'found (s, r, job, addr.clone()),
                    Attempt::Unreachable(e) => last_err = e,
                    Attempt::Fatal(e) => return Err(e),
                    Attempt::Foreign(why) => {
                        if !foreign.iter().any(|(a, _)| a == addr) {
                            log_warn!(
                                "{why}; {}",
                                if addrs.len() > 1 {
                                    "trying the job's other ports"
                                } else {
                                    "trying again until the connect timeout"
                                }
                            );
                            foreign.push((addr.clone(), why));
                        }
                    }
                }
                if Instant::now() >= deadline {
                    break;
                }
            }
            if Instant::now() + delay > deadline {
                let place = match addrs {
                    [one] => one.clone(),
                    [first, .., last] => {
                        format!("{first} … {}", last.rsplit(':').next().unwrap_or_default())
                    }
                    [] => "no address".into(),
                };
                let others = if foreign.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; refused by another job's chief: {}",
                        foreign
                            .iter()
                            .map(|(_, w)| w.as_str())
                            .collect::<Vec<_>>()
                            .join("; ")
                    )
                };
                bail!(
                    Timeout,
                    "could not reach the {} group's chief of {} at {place} within {:.0} s (last error: {last_err}){others}",
                    me.group.name(),
                    job_name(&me.job),
                    connect_timeout.as_secs_f64()
                );
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(500));
        };
        // Accepted: wait until every member has joined.
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        stream.set_read_timeout(Some(left)).ok();
        let welcome = wire::read_frame(&mut stream).map_err(|e| {
            e.context(format!(
                "waiting for the other ranks at the chief at {addr}"
            ))
        })?;
        match welcome {
            Some((h, _)) if h.kind == Kind::Welcome => {}
            Some((h, p)) if h.kind == Kind::Reject => bail!(
                Distributed,
                "the chief at {addr} refused this rank: {}",
                String::from_utf8_lossy(p.get(1..).unwrap_or_default())
            ),
            Some(_) => bail!(Distributed, "unexpected answer from the chief at {addr}"),
            None => bail!(
                Distributed,
                "the chief at {addr} closed the connection during the handshake"
            ),
        }
        stream.set_read_timeout(None).ok();
        Star::start(me, vec![stream], vec![chief_rank], timeout, job)
    }

    /// Connect to `addr`, say hello, and read the chief's first answer.
    fn try_join(addr: &str, me: &Member, deadline: Instant) -> Attempt {
        let resolved: Vec<SocketAddr> = match addr.to_socket_addrs() {
            Ok(a) => a.collect(),
            Err(e) => return Attempt::Unreachable(format!("cannot resolve {addr}: {e}")),
        };
        let mut last = format!("{addr}: no address");
        let mut stream = None;
        for a in resolved {
            match TcpStream::connect_timeout(&a, Duration::from_secs(5)) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = format!("{a}: {e}"),
            }
        }
        let Some(mut stream) = stream else {
            return Attempt::Unreachable(last);
        };
        stream.set_nodelay(true).ok();
        let hello = hello_payload(me);
        if let Err(e) = wire::write_frame(
            &mut stream,
            &Header::new(Kind::Hello, 0, me.global_rank, 0, hello.len()),
            &hello,
        ) {
            return Attempt::Unreachable(format!("cannot greet the chief at {addr}: {e}"));
        }
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(100), HELLO_ANSWER_WAIT);
        stream.set_read_timeout(Some(wait)).ok();
        match wire::read_frame(&mut stream) {
            Ok(Some((h, p))) if h.kind == Kind::Accept => {
                let theirs = String::from_utf8_lossy(&p).into_owned();
                // The chief compared identities already; a member checks too, so that neither
                // side alone decides that two jobs are one.
                if !me.job.is_empty() && theirs != me.job {
                    return Attempt::Foreign(format!(
                        "the chief (rank {}) at {addr} belongs to {}, this rank ({}) to {}: another job uses this port",
                        h.sender,
                        job_name(&theirs),
                        me.global_rank,
                        job_name(&me.job)
                    ));
                }
                Attempt::Joined(stream, h.sender, theirs)
            }
            Ok(Some((h, p))) if h.kind == Kind::Reject => {
                let why = String::from_utf8_lossy(p.get(1..).unwrap_or_default()).into_owned();
                match p.first() {
                    Some(&REJECT_FATAL) => Attempt::Fatal(err!(
                        Distributed,
                        "the chief at {addr} refused this rank: {why}"
                    )),
                    _ => Attempt::Foreign(format!(
                        "{addr}: {}",
                        if p.first() == Some(&REJECT_FOREIGN) {
                            why
                        } else {
                            // An older detcore: its reason is the whole payload.
                            String::from_utf8_lossy(&p).into_owned()
                        }
                    )),
                }
            }
            Ok(Some(_)) => {
                Attempt::Foreign(format!("{addr}: not a detcore chief (unexpected answer)"))
            }
            Ok(None) => Attempt::Unreachable(format!(
                "the chief at {addr} closed the connection during the handshake"
            )),
            Err(e) => Attempt::Unreachable(format!("no answer from {addr}: {}", e.message())),
        }
    }

    fn start(
        me: Member,
        streams: Vec<TcpStream>,
        ranks: Vec<u32>,
        timeout: Duration,
        job: String,
    ) -> Result<Star> {
        let mut conns = Vec::new();
        for (s, r) in streams.into_iter().zip(ranks) {
            let clone = || s.try_clone().map_err(|e| err!(Distributed, "socket: {e}"));
            s.set_read_timeout(Some(TICK)).ok();
            // A member that stops reading (stopped process, dead host whose socket lingers)
            // fails the send after the collective timeout instead of blocking it forever.
            s.set_write_timeout(Some(timeout.max(Duration::from_millis(1))))
                .ok();
            conns.push(Arc::new(Conn {
                global_rank: r,
                read: Mutex::new(BufReader::with_capacity(1 << 16, clone()?)),
                peek: clone()?,
                write: Mutex::new(s),
                acked: AtomicU64::new(0),
                said_bye: AtomicBool::new(false),
                broken: AtomicBool::new(false),
                queue: Mutex::new(VecDeque::new()),
                busy: AtomicBool::new(false),
                idle_lock: Mutex::new(()),
                idle: Condvar::new(),
                ended: AtomicBool::new(false),
                last_use_ms: AtomicU64::new(0),
                origin: Instant::now(),
                bg_waiting: AtomicBool::new(false),
            }));
        }
        let shared = Arc::new(Shared {
            me,
            conns,
            failure: Failure::default(),
            closing: AtomicBool::new(false),
            control: OnceLock::new(),
            seen_horizon: AtomicU64::new(0),
            seen_decision: AtomicU64::new(u64::MAX),
            seen_freeze: AtomicU64::new(0),
            timeout,
            departed: Mutex::new(None),
        });
        let mut readers = Vec::new();
        for i in 0..shared.conns.len() {
            let sh = shared.clone();
            let t = std::thread::Builder::new()
                .name(format!("detcore-{}-rx{i}", sh.me.group.name()))
                .spawn(move || background_reader(sh, i))
                .map_err(|e| err!(Internal, "cannot start a reader thread: {e}"))?;
            readers.push(t);
        }
        Ok(Star {
            shared,
            job,
            serial: Mutex::new(0),
            last_broadcast: AtomicU64::new(0),
            readers: Mutex::new(readers),
        })
    }

    /// Route control values received from the chief to `h` (clients). Values that arrived
    /// before are replayed, so none is lost to a late installation.
    pub fn set_control_handler(&self, h: ControlHandler) {
        if self.shared.control.set(h.clone()).is_err() {
            return;
        }
        let chief = self.shared.conns.first().map_or(0, |c| c.global_rank);
        let hz = self.shared.seen_horizon.load(Ordering::SeqCst);
        if hz > 0 {
            h(Some((Op::Horizon, hz, chief)));
        }
        let f = self.shared.seen_freeze.load(Ordering::SeqCst);
        if f > 0 {
            h(Some((Op::Freeze, f, chief)));
        }
        let d = self.shared.seen_decision.load(Ordering::SeqCst);
        if d != u64::MAX {
            h(Some((Op::Decision, d, chief)));
        }
    }

    /// The job identity the group goes by (see [`Member::job`]; a chief without one makes one
    /// up, `chief-made:<uuid>`).
    pub fn job_id(&self) -> &str {
        &self.job
    }

    /// The group's failure, if it failed.
    pub fn check(&self) -> Result<()> {
        self.shared.failure.check()
    }

    /// For waits on control values (should_preempt horizons): the group's failure, or the
    /// chief's goodbye (no more horizons will come).
    pub fn check_control(&self) -> Result<()> {
        self.check()?;
        if self.shared.closing.load(Ordering::SeqCst) {
            bail!(State, "the context was closed while waiting for the chief");
        }
        match self.shared.departed.lock().clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Send a control value: the chief's to every member, a member's to the chief (never blocks
    /// for long, never fails the caller; a lost member surfaces through the group's failure).
    pub fn send_control(&self, op: Op, value: u64) {
        for c in &self.shared.conns {
            let _ = c.send(
                Header::new(
                    Kind::Control,
                    op as u8,
                    self.shared.me.global_rank,
                    value,
                    0,
                ),
                &[],
            );
        }
    }

    /// Chief: the global ranks of the members still connected (neither closed nor lost).
    pub fn live_members(&self) -> Vec<u32> {
        self.shared
            .conns
            .iter()
            .filter(|c| !c.ended.load(Ordering::SeqCst) && !c.said_bye.load(Ordering::SeqCst))
            .map(|c| c.global_rank)
            .collect()
    }

    fn next_serial(&self) -> Result<parking_lot::MutexGuard<'_, u64>> {
        self.check()?;
        let mut g = self.serial.lock();
        *g += 1;
        Ok(g)
    }

    /// The next message from member `i` for the calling thread, read from the socket by this
    /// thread itself (see [`Conn`]). Fails as soon as the group fails, or at `deadline` with the
    /// error `timed_out` builds.
    fn next_from(
        &self,
        i: usize,
        deadline: Instant,
        timed_out: impl FnOnce() -> Error,
    ) -> Result<InMsg> {
        let sh = &*self.shared;
        let c = &sh.conns[i];
        c.busy.store(true, Ordering::SeqCst);
        let mut r = c.read.lock();
        let result = loop {
            if let Some(m) = c.queue.lock().pop_front() {
                break Ok(m);
            }
            if c.ended.load(Ordering::SeqCst) {
                break Err(sh.failure.check().err().unwrap_or_else(|| {
                    err!(
                        Distributed,
                        "the connection to rank {} is closed",
                        c.global_rank
                    )
                }));
            }
            let give_up =
                || Instant::now() >= deadline || sh.failure.failed.load(Ordering::Relaxed);
            match read_one(&mut r, give_up, sh.timeout) {
                Got::Frame(h, p) => {
                    if let Some(m) = handle(sh, i, h, p) {
                        break Ok(m);
                    }
                }
                Got::Idle => {
                    break Err(sh.failure.check().err().unwrap_or_else(timed_out));
                }
                Got::End(why) => {
                    if let Some(m) = ended(sh, i, &why) {
                        break Ok(m);
                    }
                }
            }
        };
        // Leave no complete frame in the buffer: the background reader only sees the socket.
        while has_complete_frame(&r) {
            match read_one(&mut r, || true, sh.timeout) {
                Got::Frame(h, p) => {
                    if let Some(m) = handle(sh, i, h, p) {
                        c.queue.lock().push_back(m);
                    }
                }
                _ => break,
            }
        }
        drop(r);
        c.last_use_ms
            .store(c.origin.elapsed().as_millis() as u64, Ordering::Relaxed);
        c.busy.store(false, Ordering::SeqCst);
        if c.bg_waiting.load(Ordering::SeqCst) {
            let _g = c.idle_lock.lock();
            c.idle.notify_all();
        }
        result
    }

    /// The chief's wait for one message from every member for collective `serial` of `op`.
    fn collect(&self, serial: u64, op: Op) -> Result<Vec<Vec<u8>>> {
        let timeout = self.shared.timeout;
        let deadline = crate::time::deadline(timeout);
        let mut out = Vec::with_capacity(self.shared.conns.len());
        for (i, c) in self.shared.conns.iter().enumerate() {
            out.push(self.next_data(i, serial, op, deadline, || {
                err!(
                    Timeout,
                    "{} #{serial}: rank(s) [{}] did not join within {:.0} s",
                    op.collective(),
                    c.global_rank,
                    timeout.as_secs_f64()
                )
            })?);
        }
        Ok(out)
    }

    /// A member's wait for the chief's message of collective `serial`.
    fn receive(&self, serial: u64, op: Op) -> Result<Vec<u8>> {
        let timeout = self.shared.timeout;
        self.next_data(0, serial, op, crate::time::deadline(timeout), || {
            err!(
                Timeout,
                "{} #{serial}: the chief (rank {}) did not answer within {:.0} s",
                op.collective(),
                self.up().global_rank,
                timeout.as_secs_f64()
            )
        })
    }

    /// The payload of member `i`'s next message, which must be collective `serial` of `op`
    /// (see [`Star::next_from`] for `deadline` and `timed_out`). Any failure fails the group.
    fn next_data(
        &self,
        i: usize,
        serial: u64,
        op: Op,
        deadline: Instant,
        timed_out: impl FnOnce() -> Error,
    ) -> Result<Vec<u8>> {
        let sh = &*self.shared;
        let fail = |e: Error| {
            sh.fail(e.clone());
            e
        };
        match self.next_from(i, deadline, timed_out).map_err(fail)? {
            InMsg::Lost(e) => Err(fail(e)),
            InMsg::Data {
                op: o,
                serial: s,
                payload,
            } => {
                if o != op || s != serial {
                    let did = if sh.is_server() { "called" } else { "sent" };
                    return Err(fail(err!(
                        Distributed,
                        "ranks disagree on the order of collectives: {} {did} {} #{s} while rank {} called {} #{serial}",
                        sh.peer_name(i),
                        o.collective(),
                        sh.me.global_rank,
                        op.collective()
                    )));
                }
                Ok(payload)
            }
        }
    }

    fn to_all(&self, h: Header, payload: &[u8]) -> Result<()> {
        for c in &self.shared.conns {
            if let Err(e) = c.send(h, payload) {
                let e = err!(
                    Distributed,
                    "rank {} was lost: {}",
                    c.global_rank,
                    e.message()
                );
                self.shared.fail(e.clone());
                return Err(e);
            }
        }
        Ok(())
    }

    fn up(&self) -> &Conn {
        &self.shared.conns[0]
    }

    /// `gather`: the group's chief gets every member's bytes in group-rank order.
    pub fn gather(&self, data: Vec<u8>) -> Result<Option<ByteList>> {
        let s = self.next_serial()?;
        let serial = *s;
        let me = self.shared.me.global_rank;
        if self.shared.is_server() {
            let mut all = vec![data];
            all.extend(self.collect(serial, Op::Gather)?);
            self.to_all(
                Header::new(Kind::Data, Op::GatherDone as u8, me, serial, 0),
                &[],
            )?;
            Ok(Some(ByteList::Vecs(all)))
        } else {
            self.up()
                .send(
                    Header::new(Kind::Data, Op::Gather as u8, me, serial, data.len()),
                    &data,
                )
                .map_err(|e| self.lost_chief(e))?;
            self.receive(serial, Op::GatherDone)?;
            Ok(None)
        }
    }

    /// `allgather`: every member gets every member's bytes in group-rank order.
    pub fn allgather(&self, data: Vec<u8>) -> Result<ByteList> {
        let s = self.next_serial()?;
        let serial = *s;
        let me = self.shared.me.global_rank;
        if self.shared.is_server() {
            let mut all = vec![data];
            all.extend(self.collect(serial, Op::Allgather)?);
            let list = ByteList::encode(&all);
            drop(all);
            let wire = list.wire().expect("encoded");
            self.to_all(
                Header::new(
                    Kind::Data,
                    Op::AllgatherResult as u8,
                    me,
                    serial,
                    wire.len(),
                ),
                wire,
            )?;
            Ok(list)
        } else {
            self.up()
                .send(
                    Header::new(Kind::Data, Op::Allgather as u8, me, serial, data.len()),
                    &data,
                )
                .map_err(|e| self.lost_chief(e))?;
            let payload = self.receive(serial, Op::AllgatherResult)?;
            ByteList::parse(payload)
        }
    }

    /// `broadcast`: every member gets the group chief's bytes.
    pub fn broadcast(&self, data: Vec<u8>) -> Result<Vec<u8>> {
        let s = self.next_serial()?;
        let serial = *s;
        if self.shared.is_server() {
            self.to_all(
                Header::new(
                    Kind::Data,
                    Op::Broadcast as u8,
                    self.shared.me.global_rank,
                    serial,
                    data.len(),
                ),
                &data,
            )?;
            self.last_broadcast.store(serial, Ordering::SeqCst);
            Ok(data)
        } else {
            self.receive(serial, Op::Broadcast)
        }
    }

    fn lost_chief(&self, e: Error) -> Error {
        let e = err!(
            Distributed,
            "lost the connection to the chief (rank {}): {}",
            self.up().global_rank,
            e.message()
        );
        self.shared.failure.set(e.clone());
        e
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
                && self.shared.conns.iter().any(|c| {
                    c.acked.load(Ordering::SeqCst) < last && !c.said_bye.load(Ordering::SeqCst)
                })
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
                && !self.up().said_bye.load(Ordering::SeqCst)
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

/// What reading one frame gave.
enum Got {
    Frame(Header, Vec<u8>),
    /// Nothing started arriving and `give_up` said stop waiting.
    Idle,
    /// The connection ended (end of stream or error), with why.
    End(String),
}

/// Read one frame from a socket with a [`TICK`] read timeout. Before the first byte, each tick
/// asks `give_up`; once a frame has started it is read to the end, unless nothing arrives for
/// `stall_limit`.
fn read_one(
    r: &mut BufReader<TcpStream>,
    give_up: impl Fn() -> bool,
    stall_limit: Duration,
) -> Got {
    let mut hb = [0u8; wire::HEADER_LEN];
    if let Err(g) = fill(r, &mut hb, Some(&give_up), stall_limit) {
        return g;
    }
    let h = match Header::decode(&hb) {
        Ok(h) => h,
        Err(e) => return Got::End(e.message().to_owned()),
    };
    let mut payload = vec![0u8; h.len as usize];
    if let Err(g) = fill(r, &mut payload, None::<&dyn Fn() -> bool>, stall_limit) {
        return match g {
            Got::End(w) => Got::End(w),
            _ => Got::End("the connection closed in the middle of a frame".into()),
        };
    }
    Got::Frame(h, payload)
}

fn fill(
    r: &mut BufReader<TcpStream>,
    buf: &mut [u8],
    give_up: Option<&dyn Fn() -> bool>,
    stall_limit: Duration,
) -> std::result::Result<(), Got> {
    let mut got = 0;
    let mut last_progress = Instant::now();
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => {
                return Err(Got::End(if got == 0 {
                    "its connection closed".into()
                } else {
                    "the connection closed in the middle of a frame".into()
                }))
            }
            Ok(n) => {
                got += n;
                last_progress = Instant::now();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                if got == 0 {
                    if let Some(g) = give_up {
                        if g() {
                            return Err(Got::Idle);
                        }
                    }
                } else if last_progress.elapsed() > stall_limit {
                    return Err(Got::End(format!(
                        "no data for {:.0} s in the middle of a frame",
                        stall_limit.as_secs_f64()
                    )));
                }
            }
            Err(e) => return Err(Got::End(format!("its connection failed: {e}"))),
        }
    }
    Ok(())
}

/// True if the reader's buffer holds at least one whole frame.
fn has_complete_frame(r: &BufReader<TcpStream>) -> bool {
    let b = r.buffer();
    if b.len() < wire::HEADER_LEN {
        return false;
    }
    let hb: &[u8; wire::HEADER_LEN] = b[..wire::HEADER_LEN].try_into().expect("header length");
    match Header::decode(hb) {
        Ok(h) => b.len() as u64 >= wire::HEADER_LEN as u64 + h.len,
        Err(_) => true, // let the reader report it
    }
}

/// Apply a frame from member `i`; returns the message a collective must see, if any.
fn handle(sh: &Shared, i: usize, h: Header, payload: Vec<u8>) -> Option<InMsg> {
    let conn = &sh.conns[i];
    match h.kind {
        Kind::Data => match Op::from_u8(h.op) {
            Some(op) => {
                if op == Op::Broadcast && !sh.is_server() {
                    let _ = conn.send(
                        Header::new(Kind::Ack, 0, sh.me.global_rank, h.serial, 0),
                        &[],
                    );
                }
                Some(InMsg::Data {
                    op,
                    serial: h.serial,
                    payload,
                })
            }
            None => {
                let e = err!(
                    Distributed,
                    "{} sent an unknown collective op {}",
                    sh.peer_name(i),
                    h.op
                );
                sh.fail(e.clone());
                conn.ended.store(true, Ordering::SeqCst);
                Some(InMsg::Lost(e))
            }
        },
        Kind::Ack => {
            conn.acked.fetch_max(h.serial, Ordering::SeqCst);
            None
        }
        Kind::Control => {
            let op = Op::from_u8(h.op);
            match op {
                Some(Op::Horizon) => {
                    sh.seen_horizon.fetch_max(h.serial, Ordering::SeqCst);
                }
                Some(Op::Decision) => {
                    sh.seen_decision.fetch_min(h.serial, Ordering::SeqCst);
                }
                Some(Op::Freeze) => {
                    sh.seen_freeze.store(h.serial.max(1), Ordering::SeqCst);
                }
                _ => {}
            }
            if let (Some(op), Some(hd)) = (op, sh.control.get()) {
                hd(Some((op, h.serial, h.sender)));
            }
            None
        }
        Kind::Abort => {
            let e = Error::new(
                ErrKind::Distributed,
                String::from_utf8_lossy(&payload).into_owned(),
            );
            sh.failure.set(e.clone());
            conn.ended.store(true, Ordering::SeqCst);
            wake(sh);
            Some(InMsg::Lost(e))
        }
        Kind::Bye => {
            conn.said_bye.store(true, Ordering::SeqCst);
            if sh.closing.load(Ordering::SeqCst) {
                return None;
            }
            // Not a failure by itself: only a collective that still needs this member fails.
            let e = if sh.is_server() {
                err!(Distributed, "rank {} closed its context (det_core_close) while this collective still needs it", conn.global_rank)
            } else {
                err!(Distributed, "the chief (rank {}) closed its context (det_core_close) while this rank still needs it", conn.global_rank)
            };
            if !sh.is_server() {
                // Messages the chief sent before its goodbye stay readable (queued before this
                // loss); only waits for more — should_preempt horizons — fail from now on.
                *sh.departed.lock() = Some(e.clone());
            }
            // (The chief's should_preempt may be waiting for this member's reply to a freeze.)
            wake(sh);
            Some(InMsg::Lost(e))
        }
        Kind::Hello | Kind::Welcome | Kind::Reject | Kind::Accept => None,
    }
}

/// Member `i`'s connection ended; returns the loss a collective must see, if it is one.
fn ended(sh: &Shared, i: usize, why: &str) -> Option<InMsg> {
    let conn = &sh.conns[i];
    conn.ended.store(true, Ordering::SeqCst);
    if sh.closing.load(Ordering::SeqCst) || conn.said_bye.load(Ordering::SeqCst) {
        return None;
    }
    let who = if sh.is_server() {
        format!("rank {}", conn.global_rank)
    } else {
        format!("the chief (rank {})", conn.global_rank)
    };
    let e = err!(
        Distributed,
        "{who} was lost: {why} (the process died, or exited without det_core_close)"
    );
    sh.fail(e.clone());
    wake(sh);
    Some(InMsg::Lost(e))
}

/// Between collectives: wait for data without holding the read half, then read what arrived —
/// unless a calling thread wants the connection, which always has priority.
fn background_reader(sh: Arc<Shared>, i: usize) {
    let c = sh.conns[i].clone();
    let mut one = [0u8; 1];
    loop {
        if sh.closing.load(Ordering::SeqCst) || c.ended.load(Ordering::SeqCst) {
            return;
        }
        {
            let mut g = c.idle_lock.lock();
            loop {
                if sh.closing.load(Ordering::SeqCst) {
                    break;
                }
                if c.busy.load(Ordering::SeqCst) {
                    c.bg_waiting.store(true, Ordering::SeqCst);
                    if c.busy.load(Ordering::SeqCst) {
                        c.idle.wait_for(&mut g, TICK);
                    }
                    c.bg_waiting.store(false, Ordering::SeqCst);
                    continue;
                }
                // Collectives in quick succession read everything themselves.
                let since = (c.origin.elapsed().as_millis() as u64)
                    .saturating_sub(c.last_use_ms.load(Ordering::Relaxed));
                if c.last_use_ms.load(Ordering::Relaxed) > 0 && since < QUIET.as_millis() as u64 {
                    c.idle
                        .wait_for(&mut g, QUIET - Duration::from_millis(since));
                    continue;
                }
                break;
            }
        }
        match c.peek.peek(&mut one) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(_) => {} // let the read below report it
        }
        if c.busy.load(Ordering::SeqCst) {
            continue;
        }
        let Some(mut r) = c.read.try_lock() else {
            continue;
        };
        if c.busy.load(Ordering::SeqCst) {
            continue;
        }
        loop {
            match read_one(&mut r, || true, sh.timeout) {
                Got::Frame(h, p) => {
                    if let Some(m) = handle(&sh, i, h, p) {
                        c.queue.lock().push_back(m);
                    }
                }
                Got::Idle => {}
                Got::End(why) => {
                    if let Some(m) = ended(&sh, i, &why) {
                        c.queue.lock().push_back(m);
                    }
                    return;
                }
            }
            if !has_complete_frame(&r) || c.busy.load(Ordering::SeqCst) {
                break;
            }
        }
    }
}

fn wake(sh: &Shared) {
    if let Some(hd) = sh.control.get() {
        hd(None);
    }
}

/// Bind the global chief's listener on all interfaces at the first free port of `ports`. With
/// `wait` (a job with an identity, whose workers cannot mistake another job's chief for theirs),
/// ports in use are tried again until `deadline`: another detcore job holds its port only until
/// its ranks have joined. Returns the listener and its port.
pub fn listen(ports: &[u16], wait: bool, deadline: Instant) -> Result<(TcpListener, u16)> {
    let mut warned = false;
    loop {
        let mut last = None;
        for &port in ports {
            match TcpListener::bind(("0.0.0.0", port)) {
                Ok(l) => return Ok((l, port)),
                Err(e) => last = Some((port, e)),
            }
        }
        let (port, e) = last.ok_or_else(|| err!(Internal, "no port to listen on"))?;
        let which = match ports {
            [one] => format!("port {one}"),
            _ => format!("ports {}–{}", ports[0], ports[ports.len() - 1]),
        };
        if !wait {
            bail!(
                Distributed,
                "the chief cannot listen on {which}: {e} (another job on this machine may use it; give every rank \
                 the same DETCORE_JOB_ID, unique to the job, so that detcore picks a free port, or set DETCORE_CHIEF_PORT \
                 or det_distributed_config.port)"
            );
        }
        if Instant::now() >= deadline {
            bail!(
                Distributed,
                "the chief cannot listen on {which}: {e} (still in use at the connect timeout; set DETCORE_CHIEF_PORT \
                 or det_distributed_config.port to a free port)"
            );
        }
        if !warned {
            log_warn!(
                "the chief cannot listen on {which} yet ({e}, port {port} last); another job may be starting on this \
                 machine: trying again until the connect timeout"
            );
            warned = true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Bind a local chief's listener on an ephemeral loopback port.
pub fn listen_local() -> Result<(TcpListener, u16)> {
    let l = TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| err!(Distributed, "cannot listen on loopback: {e}"))?;
    let port = l.local_addr().map_err(|e| err!(Distributed, "{e}"))?.port();
    Ok((l, port))
}

#[cfg(test)]
mod tests {
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
