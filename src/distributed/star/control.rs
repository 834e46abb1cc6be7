//! The control channel beside the collectives: small values (the preemption horizon) that any
//! member may send at any time and the group applies as they arrive, outside any collective.

use super::*;

/// Receives out-of-band control values (should_preempt's horizons, freeze and decision on a
/// client; the members' replies to a freeze on the chief): `Some((op, value, sender's global
/// rank))`, or `None` when a connection failed or ended (wake up and look at [`Star::check`] or
/// [`Star::live_members`]).
pub type ControlHandler = Arc<dyn Fn(Option<(Op, u64, u32)>) + Send + Sync>;

impl Star {
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
            .filter(|c| c.is_live())
            .map(|c| c.global_rank)
            .collect()
    }
}
