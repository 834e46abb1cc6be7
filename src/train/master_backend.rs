//! On-cluster train backend. Which calls wait on the network:
//! - synchronous (the caller waits; retries and timeouts of the master client): best
//!   validation, run metadata set/get, early exit (after the queued reports are delivered, so
//!   the master sees them before the exit reason);
//! - queued in order with the metrics (the caller never waits): status and progress — see
//!   [`super::master_sink`].

use super::{Event, Reporter, TrainBackend};
use crate::error::Result;
use crate::json::Map;
use crate::master::MasterClient;
use std::sync::Arc;
use std::time::Duration;

/// Asks the master.
pub struct MasterTrainBackend {
    pub client: Arc<MasterClient>,
    pub trial_id: i64,
    pub experiment_id: i64,
    pub reporter: Arc<Reporter>,
    /// How long an early exit waits for the queued reports.
    pub flush_timeout: Duration,
}

impl TrainBackend for MasterTrainBackend {
    fn best_validation(&self) -> Result<Option<f64>> {
        // The answer must reflect the validation metrics this process already reported: deliver
        // the queued reports first (bounded; a delivery problem is logged, not fatal here).
        if let Err(e) = self.reporter.flush(self.flush_timeout) {
            log_warn!("get_experiment_best_validation: earlier reports: {e}");
        }
        self.client.best_validation(self.experiment_id)
    }

    fn set_run_metadata(&self, m: &Map) -> Result<Map> {
        self.client.set_run_metadata(self.trial_id, m)
    }

    fn get_run_metadata(&self) -> Result<Map> {
        self.client.get_run_metadata(self.trial_id)
    }

    fn event(&self, e: &Event) -> Option<Result<()>> {
        match e {
            Event::EarlyExit { reason } => {
                log_info!("report_early_exit({reason})");
                if let Err(e) = self.reporter.flush(self.flush_timeout) {
                    log_warn!("report_early_exit: earlier reports: {e}");
                }
                Some(self.client.report_early_exit(self.trial_id, reason))
            }
            _ => None,
        }
    }
}
