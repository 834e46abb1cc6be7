//! Preemption told by the master (on-cluster): the long poll (`GET .../signals/preemption`) and the
//! acknowledgement (`POST .../signals/ack_preemption`, sent from its own thread).

use super::longpoll::PreemptionPoll;
use super::Acknowledger;
use crate::error::{Error, Kind, Result};
use crate::master::client::{percent_encode, CallOpts, MasterClient};
use crate::master::longpoll::{self, Cancel};
use crossbeam_channel::{bounded, Receiver, Sender};
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// `GET /api/v1/allocations/<aid>/signals/preemption?timeout_seconds=<n>`, interruptible.
pub struct MasterPoll {
    client: Arc<MasterClient>,
    path: String,
    cancel: Arc<Cancel>,
}

impl MasterPoll {
    /// A poller for `allocation_id`.
    pub fn new(client: Arc<MasterClient>, allocation_id: &str) -> MasterPoll {
        MasterPoll {
            client,
            path: format!(
                "/api/v1/allocations/{}/signals/preemption",
                percent_encode(allocation_id)
            ),
            cancel: Arc::new(Cancel::default()),
        }
    }
}

impl PreemptionPoll for MasterPoll {
    fn poll(&self, longpoll_seconds: u64) -> Result<bool> {
        let timeout = Duration::from_secs(longpoll_seconds + 10);
        let r = longpoll::get(
            &self.client,
            &self.path,
            &format!("timeout_seconds={longpoll_seconds}"),
            timeout,
            &self.cancel,
        )?;
        let text = String::from_utf8_lossy(&r.body);
        if (300..400).contains(&r.status) {
            bail!(
                Master,
                "GET {}: {}",
                self.path,
                crate::master::client::redirect_message(
                    r.status,
                    r.location.as_deref().unwrap_or("(none)")
                )
            );
        }
        if r.status != 200 {
            let detail = crate::master::client::error_text(&text).unwrap_or_default();
            bail!(
                Master,
                "GET {}: the master answered {} {detail}",
                self.path,
                r.status
            );
        }
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| err!(Master, "GET {}: the master's answer: {e}", self.path))?;
        // Anything but JSON `true` is "no", as in Python.
        Ok(v.get("preempt") == Some(&serde_json::Value::Bool(true)))
    }

    fn cancel(&self) {
        self.cancel.cancel();
    }
}

#[derive(Default)]
struct AckShared {
    requested: AtomicBool,
    done: Mutex<Option<Result<()>>>,
    cv: Condvar,
    /// Milliseconds since `origin` after which the thread gives up; 0 = none.
    deadline_ms: AtomicU64,
    origin: Option<Instant>,
}

impl AckShared {
    fn deadline(&self) -> Option<Instant> {
        match self.deadline_ms.load(Ordering::SeqCst) {
            0 => None,
            ms => self.origin.map(|o| o + Duration::from_millis(ms)),
        }
    }
}

/// Sends the preemption acknowledgement from its own thread (the caller of `should_preempt`
/// never waits on the network), retrying until it is delivered or close's deadline passes.
///
/// The thread owns the master client; the sender itself (kept by the preemption state, which
/// may outlive the context) holds only the channel, so dropping or finishing it ends the thread
/// and releases the client's connections.
pub struct AckSender {
    tx: Mutex<Option<Sender<()>>>,
    shared: Arc<AckShared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl AckSender {
    /// Start the (idle) acknowledgement thread for `allocation_id`.
    pub fn start(client: Arc<MasterClient>, allocation_id: &str) -> Result<Arc<AckSender>> {
        let (tx, rx) = bounded::<()>(1);
        let shared = Arc::new(AckShared {
            origin: Some(Instant::now()),
            ..Default::default()
        });
        let sh = shared.clone();
        let aid = allocation_id.to_owned();
        let t = std::thread::Builder::new()
            .name("detcore-preempt-ack".into())
            .spawn(move || run_ack(&client, &aid, &sh, rx))
            .map_err(|e| err!(Internal, "cannot start the acknowledgement thread: {e}"))?;
        Ok(Arc::new(AckSender {
            tx: Mutex::new(Some(tx)),
            shared,
            thread: Mutex::new(Some(t)),
        }))
    }

    /// Wait, until `deadline`, for the acknowledgement (if one was requested) to be delivered,
    /// then stop and join the thread.
    pub fn finish(&self, deadline: Instant) -> Result<()> {
        let ms = deadline
            .saturating_duration_since(self.shared.origin.unwrap_or_else(Instant::now))
            .as_millis()
            .max(1) as u64;
        self.shared.deadline_ms.store(ms, Ordering::SeqCst);
        // Under the sender's lock, so that an acknowledgement is either queued before the
        // channel closes (and then waited for) or not requested at all.
        let requested = {
            let mut tx = self.tx.lock();
            drop(tx.take());
            self.shared.requested.load(Ordering::SeqCst)
        };
        let mut res = Ok(());
        if requested {
            let mut g = self.shared.done.lock();
            while g.is_none() {
                let now = Instant::now();
                // The thread's own calls end at the deadline; allow it a moment to record it.
                let limit = deadline + Duration::from_secs(2);
                if now >= limit {
                    break;
                }
                self.shared.cv.wait_for(&mut g, limit - now);
            }
            res = match g.take() {
                Some(Ok(())) => Ok(()),
                Some(Err(e)) => Err(Error::new(
                    e.kind(),
                    format!(
                        "the preemption acknowledgement was not delivered, so the master will treat exit 0 as completion, not as a reason to reschedule: {}",
                        e.message()
                    ),
                )),
                None => Err(err!(
                    Timeout,
                    "the preemption acknowledgement was not delivered before the close deadline"
                )),
            };
        }
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
        res
    }
}

impl Acknowledger for AckSender {
    fn acknowledge(&self) {
        let tx = self.tx.lock();
        if let Some(tx) = tx.as_ref() {
            if !self.shared.requested.swap(true, Ordering::SeqCst) {
                let _ = tx.try_send(());
            }
        }
    }
}

fn run_ack(client: &MasterClient, allocation_id: &str, sh: &AckShared, rx: Receiver<()>) {
    if rx.recv().is_err() {
        return; // closed without a preemption
    }
    let mut attempts = 0u32;
    let result = loop {
        let deadline = sh.deadline();
        let stop = || sh.deadline().is_some_and(|d| Instant::now() >= d);
        let opts = CallOpts {
            deadline,
            stop: Some(&stop),
            attempt_timeout: None,
            quiet: false,
        };
        attempts += 1;
        match client.ack_preemption(allocation_id, opts) {
            Ok(()) => {
                log_info!("preemption acknowledged to the master");
                break Ok(());
            }
            Err(e) if stop() => break Err(e),
            Err(e)
                if e.kind() == Kind::Timeout
                    || (e.kind() == Kind::Master && !e.message().contains(" answered 4")) =>
            {
                // Connection trouble beyond the policy's budget: keep trying until close.
                log_warn!(
                    "preemption acknowledgement not delivered yet (attempt {attempts}): {e}; retrying"
                );
                let wait = client.retry_policy().max_backoff();
                if !crate::master::client::sleep_interruptible(wait, opts) {
                    break Err(e);
                }
            }
            Err(e) => break Err(e),
        }
    };
    if let Err(e) = &result {
        log_warn!("the preemption acknowledgement was not delivered: {e}");
    }
    *sh.done.lock() = Some(result);
    sh.cv.notify_all();
}
