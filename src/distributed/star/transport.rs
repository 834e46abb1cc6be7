//! Frames on one member's connection: sending, and reading with a read half that is handed
//! between the calling thread (during a collective) and the connection's background reader
//! (between collectives), which applies control values, acknowledges broadcasts and notices a
//! lost member at once.

use super::*;

pub(super) enum InMsg {
    Data {
        op: Op,
        serial: u64,
        payload: Vec<u8>,
    },
    Lost(Error),
}

/// How often blocked reads wake up to look at deadlines, failures and closing.
pub(super) const TICK: Duration = Duration::from_millis(50);

/// One connection to another member.
///
/// Its read half is used by the thread that needs the next message: during a collective that is
/// the calling thread itself (so the kernel wakes it directly when the answer arrives — no hop
/// through another thread, which on this kind of machine costs more than the network round
/// trip); between collectives the background reader takes it, to apply control values, answer
/// broadcasts, and notice a lost member at once.
pub(super) struct Conn {
    pub(super) global_rank: u32,
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
pub(super) const QUIET: Duration = Duration::from_millis(20);

impl Conn {
    /// Neither closed by the member nor lost.
    pub(super) fn is_live(&self) -> bool {
        !self.ended.load(Ordering::SeqCst) && !self.said_bye()
    }

    /// The member said goodbye (it closed its end in order).
    pub(super) fn said_bye(&self) -> bool {
        self.said_bye.load(Ordering::SeqCst)
    }

    /// The serial of the last broadcast this member acknowledged.
    pub(super) fn acked(&self) -> u64 {
        self.acked.load(Ordering::SeqCst)
    }

    pub(super) fn send(&self, h: Header, payload: &[u8]) -> Result<()> {
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
    pub(super) fn limit_sends(&self, limit: Duration) {
        let _ = self.write.lock().set_write_timeout(Some(limit));
    }

    pub(super) fn shutdown(&self) {
        let _ = self.write.lock().shutdown(Shutdown::Both);
    }
}

/// What reading one frame gave.
pub(super) enum Got {
    Frame(Header, Vec<u8>),
    /// Nothing started arriving and `give_up` said stop waiting.
    Idle,
    /// The connection ended (end of stream or error), with why.
    End(String),
}

/// Read one frame from a socket with a [`TICK`] read timeout. Before the first byte, each tick
/// asks `give_up`; once a frame has started it is read to the end, unless nothing arrives for
/// `stall_limit`.
pub(super) fn read_one(
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

pub(super) fn fill(
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
            Err(e) if would_block(&e) => {
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
pub(super) fn has_complete_frame(r: &BufReader<TcpStream>) -> bool {
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
pub(super) fn handle(sh: &Shared, i: usize, h: Header, payload: Vec<u8>) -> Option<InMsg> {
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
pub(super) fn ended(sh: &Shared, i: usize, why: &str) -> Option<InMsg> {
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
pub(super) fn background_reader(sh: Arc<Shared>, i: usize) {
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
            Err(e) if would_block(&e) => continue,
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

pub(super) fn wake(sh: &Shared) {
    if let Some(hd) = sh.control.get() {
        hd(None);
    }
}

impl Star {
    pub(super) fn start(
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

    /// The next message from member `i` for the calling thread, read from the socket by this
    /// thread itself (see [`Conn`]). Fails as soon as the group fails, or at `deadline` with the
    /// error `timed_out` builds.
    pub(super) fn next_from(
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
}

/// A socket read that timed out or was interrupted (try again), rather than failed.
fn would_block(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted
    )
}
