//! Helpers of the unit tests.

use std::path::{Path, PathBuf};

/// A fresh folder under `$TMPDIR`, removed with everything in it when dropped (a test that
/// fails still cleans up: the drop runs while the panic unwinds).
pub struct TempDir(PathBuf);

impl TempDir {
    /// `$TMPDIR/detcore-<tag>-<uuid>`, created.
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("detcore-{tag}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&p).expect("cannot create a test folder");
        TempDir(p)
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
