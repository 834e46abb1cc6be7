//! TensorBoard: event files of reported metrics, and their sync to checkpoint storage
//! (docs/protocol.md#tensorboard-paths), with no TensorFlow, PyTorch or protobuf.
//!
//! - [`writer`] writes TFRecord-framed `Event`s ([`record`], [`proto`]).
//! - [`sink`] is the reporter sink of `TensorboardMode::Auto`: reported training and validation
//!   metrics become scalars with Determined's tags (`Determined/<name>`,
//!   `Determined/val_<name>`), written on the reporter thread, never the caller's.
//! - [`sync`] mirrors the local folder into the checkpoint storage under
//!   `<cluster_id>/tensorboard/experiment/<experiment_id>/trial/<trial_id>/` on a thread of its
//!   own: at most once a second, a final pass at close, failed uploads retried.
//!
//! [`TensorboardConfig`] holds everything the manager needs, so that both modes of a context build
//! it in a few lines: [`TensorboardConfig::on_cluster`] and [`TensorboardConfig::off_cluster`].

pub mod proto;
pub mod record;
pub mod sink;
pub mod sync;
pub mod writer;

pub use sink::TensorboardSink;
pub use sync::TensorboardManager;
pub use writer::EventWriter;

use crate::storage::Storage;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Determined's `TensorboardMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorboardMode {
    /// Reported training/validation metrics are written to event files and synced (default).
    Auto,
    /// Nothing is written or synced unless asked for.
    Manual,
}

/// Python's rate limit: a sync pass starts at most this often.
pub const MIN_SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// The cluster id used off-cluster in the sync path.
pub const OFF_CLUSTER_CLUSTER_ID: &str = "local";
/// The experiment id used off-cluster in the sync path: every run is a "trial" of it, so
/// `tensorboard --logdir <storage>/local/tensorboard/experiment/runs` compares all runs.
pub const OFF_CLUSTER_EXPERIMENT_ID: &str = "runs";

/// What a [`TensorboardManager`] needs.
#[derive(Clone)]
pub struct TensorboardConfig {
    /// AUTO: reported metrics are written and the folder is synced; MANUAL: only
    /// `upload_files` uploads.
    pub mode: TensorboardMode,
    /// The local folder (`get_tensorboard_path()`).
    pub local_dir: PathBuf,
    /// Key prefix in the storage, relative to its base, without trailing `/`:
    /// `<cluster_id>/tensorboard/experiment/<eid>/trial/<tid>`.
    pub sync_prefix: String,
    /// Where files are synced; `None` keeps them local only.
    pub storage: Option<Arc<dyn Storage>>,
    /// This process's rank, passed to the name mangler of `upload_files`.
    pub rank: u32,
    /// Also write profiler reports as scalars (`system/<group>/<key>`); off-cluster only, where
    /// TensorBoard is the only viewer of them (on-cluster the WebUI shows them).
    pub write_profiler: bool,
    /// Minimum time between the starts of two sync passes.
    pub min_sync_interval: Duration,
    /// How the local folder is created: Determined's modes on-cluster, the umask off-cluster.
    pub modes: crate::storage::Modes,
}

impl std::fmt::Debug for TensorboardConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorboardConfig")
            .field("mode", &self.mode)
            .field("local_dir", &self.local_dir)
            .field("sync_prefix", &self.sync_prefix)
            .field("storage", &self.storage.as_ref().map(|s| s.describe()))
            .field("rank", &self.rank)
            .field("write_profiler", &self.write_profiler)
            .finish()
    }
}

/// `<cluster_id>/tensorboard/experiment/<experiment_id>[/trial/<trial_id>]` (Python's
/// `get_sync_path` / `get_experiment_sync_path`).
pub fn sync_path(cluster_id: &str, experiment_id: &str, trial_id: Option<&str>) -> String {
    let mut p = format!("{cluster_id}/tensorboard/experiment/{experiment_id}");
    if let Some(t) = trial_id {
        p.push_str("/trial/");
        p.push_str(t);
    }
    p
}

/// The on-cluster local folder, Python's `get_base_path`:
/// `<base or the temporary folder>/tensorboard-<allocation_id>-<HOROVOD_RANK, else 0>`. The
/// temporary folder is `$TMPDIR`, else `/tmp` (Python's fixed `/tmp`, where Determined's
/// container links `/tmp/tensorboard` to it): two runs with their own `TMPDIR` never share it.
pub fn on_cluster_local_dir(
    base: Option<&Path>,
    allocation_id: &str,
    horovod_rank: Option<&str>,
) -> PathBuf {
    let rank = horovod_rank
        .and_then(|r| r.trim().parse::<i64>().ok())
        .unwrap_or(0);
    base.map_or_else(std::env::temp_dir, Path::to_path_buf)
        .join(format!("tensorboard-{allocation_id}-{rank}"))
}

impl TensorboardConfig {
    /// On-cluster: the folder `$TMPDIR/tensorboard-<allocation_id>-<HOROVOD_RANK or 0>` and the sync
    /// path of the trial. `storage` should be the *experiment's* checkpoint storage, where the
    /// master's TensorBoard task reads, as Python does (even when `init` got another
    /// `checkpoint_storage`).
    pub fn on_cluster(
        mode: TensorboardMode,
        allocation_id: &str,
        cluster_id: &str,
        experiment_id: &str,
        trial_id: Option<&str>,
        storage: Option<Arc<dyn Storage>>,
        rank: u32,
    ) -> TensorboardConfig {
        let horovod = std::env::var("HOROVOD_RANK").ok();
        TensorboardConfig {
            mode,
            local_dir: on_cluster_local_dir(None, allocation_id, horovod.as_deref()),
            sync_prefix: sync_path(cluster_id, experiment_id, trial_id),
            storage,
            rank,
            write_profiler: false,
            min_sync_interval: MIN_SYNC_INTERVAL,
            modes: crate::storage::Modes::Shared,
        }
    }

    /// Off-cluster: the folder `<run_dir>/tensorboard`, synced to
    /// `local/tensorboard/experiment/runs/trial/<run_name>/` in the checkpoint storage.
    pub fn off_cluster(
        mode: TensorboardMode,
        run_dir: &Path,
        run_name: &str,
        storage: Option<Arc<dyn Storage>>,
        rank: u32,
    ) -> TensorboardConfig {
        TensorboardConfig {
            mode,
            local_dir: run_dir.join("tensorboard"),
            sync_prefix: sync_path(
                OFF_CLUSTER_CLUSTER_ID,
                OFF_CLUSTER_EXPERIMENT_ID,
                Some(run_name),
            ),
            storage,
            rank,
            write_profiler: true,
            min_sync_interval: MIN_SYNC_INTERVAL,
            modes: crate::storage::Modes::Umask,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_cluster_layout() {
        let c = TensorboardConfig::on_cluster(
            TensorboardMode::Auto,
            "a1b2.3",
            "c0ffee",
            "17",
            Some("42"),
            None,
            0,
        );
        assert_eq!(c.sync_prefix, "c0ffee/tensorboard/experiment/17/trial/42");
        let tmp = std::env::temp_dir();
        assert!(c.local_dir.starts_with(&tmp));
        assert!(!c.write_profiler);
        assert_eq!(
            on_cluster_local_dir(None, "a1b2.3", None),
            tmp.join("tensorboard-a1b2.3-0")
        );
        assert_eq!(
            on_cluster_local_dir(None, "x", Some("3")),
            tmp.join("tensorboard-x-3")
        );
        assert_eq!(
            on_cluster_local_dir(Some(Path::new("/scratch")), "x", Some("junk")),
            PathBuf::from("/scratch/tensorboard-x-0")
        );
        assert_eq!(sync_path("c", "1", None), "c/tensorboard/experiment/1");
    }

    #[test]
    fn off_cluster_layout() {
        let c = TensorboardConfig::off_cluster(
            TensorboardMode::Manual,
            Path::new("/r/run7"),
            "run7",
            None,
            0,
        );
        assert_eq!(c.local_dir, PathBuf::from("/r/run7/tensorboard"));
        assert_eq!(
            c.sync_prefix,
            "local/tensorboard/experiment/runs/trial/run7"
        );
        assert!(c.write_profiler);
    }
}
