//! The collectives over a star: gather, allgather and broadcast, numbered by a serial so that
//! every member pairs the same calls.

use super::*;

impl Star {
    pub(super) fn next_serial(&self) -> Result<parking_lot::MutexGuard<'_, u64>> {
        self.check()?;
        let mut g = self.serial.lock();
        *g += 1;
        Ok(g)
    }

    /// The chief's wait for one message from every member for collective `serial` of `op`.
    pub(super) fn collect(&self, serial: u64, op: Op) -> Result<Vec<Vec<u8>>> {
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
    pub(super) fn receive(&self, serial: u64, op: Op) -> Result<Vec<u8>> {
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
    pub(super) fn next_data(
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

    pub(super) fn to_all(&self, h: Header, payload: &[u8]) -> Result<()> {
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

    pub(super) fn up(&self) -> &Conn {
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

    pub(super) fn lost_chief(&self, e: Error) -> Error {
        let e = err!(
            Distributed,
            "lost the connection to the chief (rank {}): {}",
            self.up().global_rank,
            e.message()
        );
        self.shared.failure.set(e.clone());
        e
    }
}
