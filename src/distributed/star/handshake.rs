//! Forming a group: the chief's accept loop, a member's search for the chief of its job, and the
//! hello/welcome/reject exchange that checks both sides belong to one job and one group.

use super::*;

/// 2: the hello carries the job identity, and the chief accepts a member with `Accept`.
pub(super) const PROTOCOL_VERSION: u32 = 2;

/// First byte of a `Reject` payload: the connecting rank is not of this group's job (it should
/// look elsewhere), or it is but conflicts with the group (it must fail).
pub(super) const REJECT_FOREIGN: u8 = 1;

pub(super) const REJECT_FATAL: u8 = 0;

/// How long a member waits for a chief's answer to its hello before trying elsewhere (a chief
/// answers at once, unless its accept loop is held up by a silent connection for up to 10 s).
pub(super) const HELLO_ANSWER_WAIT: Duration = Duration::from_secs(30);

pub(super) fn hello_payload(m: &Member) -> Vec<u8> {
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
pub(super) fn peer_gone(s: &TcpStream) -> bool {
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
pub(super) enum Attempt {
    /// A chief of this job took the rank: the stream, the chief's rank and the job identity.
    Joined(TcpStream, u32, String),
    /// Nobody (of detcore) answered there.
    Unreachable(String),
    /// A chief of another job (or of another detcore protocol) answered: look elsewhere.
    Foreign(String),
    /// A chief of this job refused the rank (a conflict within the job).
    Fatal(Error),
}

pub(super) fn u32_at(p: &[u8], i: usize) -> u32 {
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
    pub(super) fn try_join(addr: &str, me: &Member, deadline: Instant) -> Attempt {
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
