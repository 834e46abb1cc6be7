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
use crate::{bail, err, log_debug};
use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const PROTOCOL_VERSION: u32 = 1;
/// How long the chief's `close` waits for broadcast acknowledgements.
const CLOSE_ACK_WAIT: Duration = Duration::from_secs(10);

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
}

/// Receives out-of-band control values (preemption horizons and decisions) on a client:
/// `Some((op, value))`, or `None` when the connection to the chief failed (wake up and look at
/// [`Star::check`]).
pub type ControlHandler = Arc<dyn Fn(Option<(Op, u64)>) + Send + Sync>;

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

struct Conn {
    global_rank: u32,
    write: Mutex<TcpStream>,
    acked: AtomicU64,
    said_bye: AtomicBool,
}

impl Conn {
    fn send(&self, h: Header, payload: &[u8]) -> Result<()> {
        let mut w = self.write.lock();
        wire::write_frame(&mut *w, &h, payload)
            .map_err(|e| err!(Distributed, "cannot send to rank {}: {e}", self.global_rank))
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
}

impl Shared {
    fn is_server(&self) -> bool {
        self.me.group_rank == 0
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
    inbound: Receiver<(usize, InMsg)>,
    /// Serializes collectives and numbers them.
    serial: Mutex<u64>,
    /// Chief: serial of the last broadcast (what `close` waits to see acknowledged).
    last_broadcast: AtomicU64,
    /// Server: per-member messages that arrived early.
    pending: Mutex<Vec<VecDeque<InMsg>>>,
    readers: Mutex<Vec<JoinHandle<()>>>,
    timeout: Duration,
}

fn hello_payload(m: &Member) -> Vec<u8> {
    let mut p = Vec::with_capacity(16);
    p.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    p.extend_from_slice(&(m.group as u32).to_le_bytes());
    p.extend_from_slice(&m.group_rank.to_le_bytes());
    p.extend_from_slice(&m.group_size.to_le_bytes());
    p
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
        let deadline = Instant::now() + connect_timeout;
        let mut slots: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
        let mut ranks = vec![0u32; n];
        ranks[0] = me.global_rank;
        listener
            .set_nonblocking(true)
            .map_err(|e| err!(Distributed, "listener: {e}"))?;
        let mut missing = n - 1;
        while missing > 0 {
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
                    let reject = |s: &mut TcpStream, why: &str| {
                        let _ = wire::write_frame(
                            s,
                            &Header::new(Kind::Reject, 0, me.global_rank, 0, why.len()),
                            why.as_bytes(),
                        );
                    };
                    if h.kind != Kind::Hello || p.len() < 16 || u32_at(&p, 0) != PROTOCOL_VERSION {
                        reject(&mut s, "not a detcore hello of this protocol version");
                        continue;
                    }
                    let (group, grank, gsize) = (u32_at(&p, 1), u32_at(&p, 2), u32_at(&p, 3));
                    if group != me.group as u32 {
                        reject(&mut s, "connected to the wrong group's port");
                        continue;
                    }
                    if gsize != me.group_size {
                        let why = format!(
                            "rank {} says the {} group has {gsize} ranks, the chief says {}",
                            h.sender,
                            me.group.name(),
                            me.group_size
                        );
                        reject(&mut s, &why);
                        bail!(Distributed, "{why}");
                    }
                    let g = grank as usize;
                    if g == 0 || g >= n || slots[g].is_some() {
                        let why = format!("rank {} joined the {} group as member {grank}, which is taken or invalid", h.sender, me.group.name());
                        reject(&mut s, &why);
                        bail!(Distributed, "{why}");
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
        Star::start(me, streams, ranks[1..].to_vec(), timeout)
    }

    /// A member: connect to the group's chief at `addr`, retrying until `connect_timeout`.
    pub fn join(
        addr: &str,
        me: Member,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<Star> {
        let deadline = Instant::now() + connect_timeout;
        let mut delay = Duration::from_millis(20);
        let mut last_err = String::from("no attempt");
        let mut stream = loop {
            let addrs: Vec<SocketAddr> = match addr.to_socket_addrs() {
                Ok(a) => a.collect(),
                Err(e) => {
                    last_err = format!("cannot resolve {addr}: {e}");
                    Vec::new()
                }
            };
            let mut connected = None;
            for a in addrs {
                match TcpStream::connect_timeout(&a, Duration::from_secs(5)) {
                    Ok(s) => {
                        connected = Some(s);
                        break;
                    }
                    Err(e) => last_err = format!("{a}: {e}"),
                }
            }
            if let Some(s) = connected {
                break s;
            }
            if Instant::now() + delay > deadline {
                bail!(
                    Timeout,
                    "could not reach the {} group's chief at {addr} within {:.0} s (last error: {last_err})",
                    me.group.name(),
                    connect_timeout.as_secs_f64()
                );
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(500));
        };
        stream.set_nodelay(true).ok();
        let hello = hello_payload(&me);
        wire::write_frame(
            &mut stream,
            &Header::new(Kind::Hello, 0, me.global_rank, 0, hello.len()),
            &hello,
        )
        .map_err(|e| err!(Distributed, "cannot greet the chief at {addr}: {e}"))?;
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        stream.set_read_timeout(Some(left)).ok();
        let welcome = wire::read_frame(&mut stream)
            .map_err(|e| e.context(format!("waiting for the chief at {addr}")))?;
        let chief_rank = match welcome {
            Some((h, _)) if h.kind == Kind::Welcome => h.sender,
            Some((h, p)) if h.kind == Kind::Reject => {
                bail!(
                    Distributed,
                    "the chief at {addr} refused this rank: {}",
                    String::from_utf8_lossy(&p)
                )
            }
            Some(_) => bail!(Distributed, "unexpected answer from the chief at {addr}"),
            None => bail!(
                Distributed,
                "the chief at {addr} closed the connection during the handshake"
            ),
        };
        stream.set_read_timeout(None).ok();
        Star::start(me, vec![stream], vec![chief_rank], timeout)
    }

    fn start(
        me: Member,
        streams: Vec<TcpStream>,
        ranks: Vec<u32>,
        timeout: Duration,
    ) -> Result<Star> {
        let (tx, rx) = unbounded::<(usize, InMsg)>();
        let mut conns = Vec::new();
        let mut reads = Vec::new();
        for (s, r) in streams.into_iter().zip(ranks) {
            let read = s
                .try_clone()
                .map_err(|e| err!(Distributed, "socket: {e}"))?;
            conns.push(Arc::new(Conn {
                global_rank: r,
                write: Mutex::new(s),
                acked: AtomicU64::new(0),
                said_bye: AtomicBool::new(false),
            }));
            reads.push(read);
        }
        let n_peers = conns.len();
        let shared = Arc::new(Shared {
            me,
            conns,
            failure: Failure::default(),
            closing: AtomicBool::new(false),
            control: OnceLock::new(),
            seen_horizon: AtomicU64::new(0),
            seen_decision: AtomicU64::new(u64::MAX),
        });
        let mut readers = Vec::new();
        for (i, read) in reads.into_iter().enumerate() {
            let sh = shared.clone();
            let tx = tx.clone();
            let t = std::thread::Builder::new()
                .name(format!("detcore-{}-rx{i}", sh.me.group.name()))
                .spawn(move || reader(sh, i, read, tx))
                .map_err(|e| err!(Internal, "cannot start a reader thread: {e}"))?;
            readers.push(t);
        }
        Ok(Star {
            shared,
            inbound: rx,
            serial: Mutex::new(0),
            last_broadcast: AtomicU64::new(0),
            pending: Mutex::new((0..n_peers).map(|_| VecDeque::new()).collect()),
            readers: Mutex::new(readers),
            timeout,
        })
    }

    /// This process's place in the group.
    pub fn member(&self) -> &Member {
        &self.shared.me
    }

    /// Route control values received from the chief to `h` (clients). Values that arrived
    /// before are replayed, so none is lost to a late installation.
    pub fn set_control_handler(&self, h: ControlHandler) {
        if self.shared.control.set(h.clone()).is_err() {
            return;
        }
        let hz = self.shared.seen_horizon.load(Ordering::SeqCst);
        if hz > 0 {
            h(Some((Op::Horizon, hz)));
        }
        let d = self.shared.seen_decision.load(Ordering::SeqCst);
        if d != u64::MAX {
            h(Some((Op::Decision, d)));
        }
    }

    /// The group's failure, if it failed.
    pub fn check(&self) -> Result<()> {
        self.shared.failure.check()
    }

    /// Chief: send a control value to every member (never blocks for long, never fails the caller;
    /// a lost member surfaces through the group's failure).
    pub fn send_control(&self, op: Op, value: u64) {
        if !self.shared.is_server() {
            return;
        }
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

    fn next_serial(&self) -> Result<parking_lot::MutexGuard<'_, u64>> {
        self.check()?;
        let mut g = self.serial.lock();
        *g += 1;
        Ok(g)
    }

    /// The chief's wait for one message from every member for collective `serial` of `op`.
    fn collect(&self, serial: u64, op: Op) -> Result<Vec<Vec<u8>>> {
        let n = self.shared.conns.len();
        let mut got: Vec<Option<Vec<u8>>> = vec![None; n];
        let mut have = 0;
        let deadline = Instant::now() + self.timeout;
        let mut pending = self.pending.lock();
        for (i, q) in pending.iter_mut().enumerate() {
            if let Some(m) = q.pop_front() {
                self.accept(i, m, serial, op, &mut got, &mut have)?;
            }
        }
        while have < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.inbound.recv_timeout(left) {
                Ok((i, m)) => {
                    if got[i].is_some() {
                        pending[i].push_back(m);
                    } else {
                        self.accept(i, m, serial, op, &mut got, &mut have)?;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let absent: Vec<String> = (0..n)
                        .filter(|&i| got[i].is_none())
                        .map(|i| self.shared.conns[i].global_rank.to_string())
                        .collect();
                    let e = err!(
                        Timeout,
                        "{} #{serial}: rank(s) [{}] did not join within {:.0} s",
                        op.collective(),
                        absent.join(", "),
                        self.timeout.as_secs_f64()
                    );
                    self.shared.fail(e.clone());
                    return Err(e);
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return self
                        .check()
                        .and(Err(err!(Distributed, "the group is closed")))
                }
            }
        }
        Ok(got.into_iter().map(|g| g.expect("all received")).collect())
    }

    fn accept(
        &self,
        i: usize,
        m: InMsg,
        serial: u64,
        op: Op,
        got: &mut [Option<Vec<u8>>],
        have: &mut usize,
    ) -> Result<()> {
        match m {
            InMsg::Lost(e) => {
                self.shared.fail(e.clone());
                Err(e)
            }
            InMsg::Data {
                op: o,
                serial: s,
                payload,
            } => {
                if o != op || s != serial {
                    let e = err!(
                        Distributed,
                        "ranks disagree on the order of collectives: rank {} called {} #{s} while rank {} called {} #{serial}",
                        self.shared.conns[i].global_rank,
                        o.collective(),
                        self.shared.me.global_rank,
                        op.collective()
                    );
                    self.shared.fail(e.clone());
                    return Err(e);
                }
                got[i] = Some(payload);
                *have += 1;
                Ok(())
            }
        }
    }

    /// A member's wait for the chief's message of collective `serial`.
    fn receive(&self, serial: u64, op: Op) -> Result<Vec<u8>> {
        let deadline = Instant::now() + self.timeout;
        match self.inbound.recv_deadline(deadline) {
            Ok((
                _,
                InMsg::Data {
                    op: o,
                    serial: s,
                    payload,
                },
            )) => {
                if o != op || s != serial {
                    let e = err!(
                        Distributed,
                        "ranks disagree on the order of collectives: the chief sent {} #{s} while rank {} called {} #{serial}",
                        o.collective(),
                        self.shared.me.global_rank,
                        op.collective()
                    );
                    self.shared.failure.set(e.clone());
                    return Err(e);
                }
                Ok(payload)
            }
            Ok((_, InMsg::Lost(e))) => {
                self.shared.failure.set(e.clone());
                Err(e)
            }
            Err(RecvTimeoutError::Timeout) => {
                let e = err!(
                    Timeout,
                    "{} #{serial}: the chief (rank {}) did not answer within {:.0} s",
                    op.collective(),
                    self.shared.conns[0].global_rank,
                    self.timeout.as_secs_f64()
                );
                self.shared.failure.set(e.clone());
                Err(e)
            }
            Err(RecvTimeoutError::Disconnected) => self
                .check()
                .and(Err(err!(Distributed, "the group is closed"))),
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
        if self.shared.conns.is_empty() {
            return Ok(Some(ByteList::Vecs(vec![data])));
        }
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
        if self.shared.conns.is_empty() {
            return Ok(ByteList::Vecs(vec![data]));
        }
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
        if self.shared.conns.is_empty() {
            return Ok(data);
        }
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
        let last = self.last_broadcast.load(Ordering::SeqCst);
        if self.shared.is_server() && !self.shared.failure.failed.load(Ordering::SeqCst) {
            let deadline = Instant::now() + CLOSE_ACK_WAIT;
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

fn reader(sh: Arc<Shared>, i: usize, s: TcpStream, tx: Sender<(usize, InMsg)>) {
    let mut s = std::io::BufReader::with_capacity(1 << 16, s);
    let conn = sh.conns[i].clone();
    let who = if sh.is_server() {
        format!("rank {}", conn.global_rank)
    } else {
        "the chief".to_owned()
    };
    loop {
        match wire::read_frame(&mut s) {
            Ok(Some((h, payload))) => match h.kind {
                Kind::Data => match Op::from_u8(h.op) {
                    Some(op) => {
                        if op == Op::Broadcast && !sh.is_server() {
                            let _ = conn.send(
                                Header::new(Kind::Ack, 0, sh.me.global_rank, h.serial, 0),
                                &[],
                            );
                        }
                        let _ = tx.send((
                            i,
                            InMsg::Data {
                                op,
                                serial: h.serial,
                                payload,
                            },
                        ));
                    }
                    None => {
                        let e = err!(Distributed, "{who} sent an unknown collective op {}", h.op);
                        sh.fail(e.clone());
                        let _ = tx.send((i, InMsg::Lost(e)));
                        return;
                    }
                },
                Kind::Ack => {
                    conn.acked.fetch_max(h.serial, Ordering::SeqCst);
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
                        _ => {}
                    }
                    if let (Some(op), Some(hd)) = (op, sh.control.get()) {
                        hd(Some((op, h.serial)));
                    }
                }
                Kind::Abort => {
                    let e = Error::new(
                        ErrKind::Distributed,
                        String::from_utf8_lossy(&payload).into_owned(),
                    );
                    sh.failure.set(e.clone());
                    let _ = tx.send((i, InMsg::Lost(e)));
                    wake(&sh);
                    return;
                }
                Kind::Bye => {
                    conn.said_bye.store(true, Ordering::SeqCst);
                    if !sh.closing.load(Ordering::SeqCst) {
                        // Not a failure by itself: only a collective that still needs this member
                        // fails (it finds this message in its queue).
                        let e = if sh.is_server() {
                            err!(Distributed, "rank {} closed its context (det_core_close) while this collective still needs it", conn.global_rank)
                        } else {
                            err!(Distributed, "the chief (rank {}) closed its context (det_core_close) while this rank still needs it", conn.global_rank)
                        };
                        if !sh.is_server() {
                            sh.failure.set(e.clone());
                            wake(&sh);
                        }
                        let _ = tx.send((i, InMsg::Lost(e)));
                    }
                }
                Kind::Hello | Kind::Welcome | Kind::Reject => {}
            },
            Ok(None) | Err(_) => {
                if !sh.closing.load(Ordering::SeqCst) && !conn.said_bye.load(Ordering::SeqCst) {
                    let e = err!(
                        Distributed,
                        "{} was lost: its connection closed (the process died, or exited without det_core_close)",
                        if sh.is_server() { format!("rank {}", conn.global_rank) } else { format!("the chief (rank {})", conn.global_rank) }
                    );
                    sh.fail(e.clone());
                    let _ = tx.send((i, InMsg::Lost(e)));
                    wake(&sh);
                }
                return;
            }
        }
    }
}

fn wake(sh: &Shared) {
    if let Some(hd) = sh.control.get() {
        hd(None);
    }
}

/// Bind the global chief's listener on all interfaces at `port`.
pub fn listen(port: u16) -> Result<TcpListener> {
    TcpListener::bind(("0.0.0.0", port)).map_err(|e| {
        err!(
            Distributed,
            "the chief cannot listen on port {port}: {e} (another job on this machine may use it; set DETCORE_CHIEF_PORT or det_distributed_config.port)"
        )
    })
}

/// Bind a local chief's listener on an ephemeral loopback port.
pub fn listen_local() -> Result<(TcpListener, u16)> {
    let l = TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| err!(Distributed, "cannot listen on loopback: {e}"))?;
    let port = l.local_addr().map_err(|e| err!(Distributed, "{e}"))?.port();
    Ok((l, port))
}
