//! On-cluster detection and the `/run/determined/info` files (PROTOCOL.md §2).

use std::path::{Path, PathBuf};

/// Where Determined writes the info files inside a task container.
pub const DEFAULT_INFO_DIR: &str = "/run/determined/info";

/// The info folder: the explicit one, else `DET_CLUSTER_INFO_DIR`, else [`DEFAULT_INFO_DIR`].
pub fn info_dir(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    match std::env::var_os("DET_CLUSTER_INFO_DIR") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(DEFAULT_INFO_DIR),
    }
}

/// True when `<dir>/cluster.json` exists — Determined's only on-cluster test (§2.1).
pub fn is_on_cluster(dir: &Path) -> bool {
    dir.join("cluster.json").is_file()
}
