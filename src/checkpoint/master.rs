//! On-cluster checkpoint reporting (docs/protocol.md#checkpoint-reports):
//! `POST /api/v1/checkpoints` after the data is stored, `GET /api/v1/checkpoints/<id>` for
//! metadata, `PATCH /api/v1/checkpoints` after a delete. Synchronous on the caller's thread, as in
//! Python (with retries and timeouts).

use super::CheckpointReporter;
use crate::error::Result;
use crate::json::Map;
use crate::master::api::checkpoint_body;
use crate::master::{CallOpts, MasterClient};
use crate::storage::Resources;
use std::sync::Arc;

/// Reports checkpoints of one allocation to the master.
pub struct MasterCheckpointReporter {
    pub client: Arc<MasterClient>,
    pub task_id: String,
    pub allocation_id: String,
    /// `storageId` from `POST /api/v1/runs/start`.
    pub storage_backend_id: Option<i64>,
}

impl CheckpointReporter for MasterCheckpointReporter {
    /// The master hears of a checkpoint only once it is complete: nothing to do before.
    fn prepare(&self, _id: &str, _metadata: &Map, _steps: i64) -> Result<()> {
        Ok(())
    }

    fn abandon(&self, _id: &str) {}

    fn report(&self, id: &str, resources: &Resources, metadata: &Map, _steps: i64) -> Result<()> {
        let body = checkpoint_body(
            id,
            resources,
            metadata,
            &self.allocation_id,
            &self.task_id,
            self.storage_backend_id,
            &crate::time::now_iso8601(),
        );
        self.client
            .call::<serde::de::IgnoredAny>(
                "POST",
                "/api/v1/checkpoints",
                Some(&body),
                CallOpts::default(),
            )
            .map_err(|e| {
                e.context(format!(
                    "checkpoint {id} is stored but the master was not told about it"
                ))
            })?;
        log_info!("Reported checkpoint to master {id}");
        Ok(())
    }

    fn deleted(&self, id: &str) -> Result<()> {
        self.client.checkpoint_deleted(id).map_err(|e| {
            e.context(format!(
                "checkpoint {id} was deleted from storage but the master was not told"
            ))
        })
    }

    fn get_metadata(&self, id: &str) -> Option<Result<Map>> {
        Some(self.client.checkpoint_metadata(id))
    }
}
