//! Checkpoint storage: one [`Storage`] trait, one implementation per backend.
//!
//! Layouts are Determined's (PROTOCOL.md §5.1): a checkpoint is everything under `<base>/<id>/`
//! (shared_fs, directory) or under the key prefix `<prefix>/<id>/` (object stores), where `<id>`
//! is a UUID4. A checkpoint is *complete* when it has a `metadata.json`; detcore writes it last on
//! object stores and publishes folder checkpoints with one atomic rename, so nothing incomplete
//! ever looks complete.

pub mod azure;
pub mod config;
mod directory;
pub mod fsutil;
pub mod gcs;
pub mod http;
pub mod object;
pub mod s3;
pub mod transfer;
mod xml;

pub use config::{StorageConfig, StorageSpec};
pub use directory::DirectoryStorage;
pub use fsutil::Resources;

use crate::error::Result;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A function that decides whether a relative path (folders end in `/`) is part of a transfer.
pub type Selector<'a> = &'a mut dyn FnMut(&str) -> bool;

/// A local folder holding a checkpoint's files, from [`Storage::restore`].
#[derive(Debug, Clone)]
pub struct Restored {
    /// The folder.
    pub path: PathBuf,
    /// True when the folder is a temporary download that must be removed when done.
    pub temporary: bool,
}

/// A checkpoint storage backend.
///
/// All methods may be called from any thread. `id` is always a validated storage id (a single
/// safe path component, see [`validate_id`]).
pub trait Storage: Send + Sync {
    /// The configuration this backend was built from.
    fn config(&self) -> &StorageConfig;

    /// A one-line description for messages: `directory /data/ckpts`, `s3://bucket/prefix`.
    fn describe(&self) -> String;

    /// What the ranks of a job compare to know they use the same storage (a folder's absolute
    /// path; a bucket and prefix, and the endpoint or account when one is configured). Never
    /// holds a secret.
    fn identity(&self) -> String {
        match config::endpoint_of(self.config()) {
            Some(at) => format!("{} at {at}", self.describe()),
            None => self.describe(),
        }
    }

    /// A local folder for `store_path` to write checkpoint `id` into. Idempotent: the ranks of
    /// a sharded checkpoint that share a file system get the same folder.
    fn stage(&self, id: &str) -> Result<PathBuf>;

    /// True for folder backends (shared_fs, directory) where `stage` is inside the storage and a
    /// checkpoint is published by one rename of the whole folder.
    fn direct_access(&self) -> bool {
        false
    }

    /// The relative names (folders end in `/`) of checkpoint `id`'s objects, in the order
    /// `download` offers them to a selector.
    fn list(&self, id: &str) -> Result<Vec<String>>;

    /// Make the staged folder the complete checkpoint `id` (all of it, or only `files`, the
    /// relative names of a sharded rank's part). Consumes the staged folder.
    fn publish(&self, staged: &Path, id: &str, files: Option<&[String]>) -> Result<()>;

    /// Remove a staged folder that will not be published (a failure is only logged).
    fn discard(&self, staged: &Path) {
        if let Err(e) = fsutil::remove_tree(staged) {
            crate::log_warn!("could not remove abandoned checkpoint folder: {e}");
        }
    }

    /// Store `files` (names relative to `src`; folders end in `/`) and the in-memory `extra`
    /// files as checkpoint `id`. `extra` files are stored last.
    fn upload(
        &self,
        src: &Path,
        files: &[String],
        extra: &[(String, Vec<u8>)],
        id: &str,
    ) -> Result<()>;

    /// Copy checkpoint `id` into `dst`, keeping what `selector` accepts.
    fn download(&self, id: &str, dst: &Path, selector: Option<Selector<'_>>) -> Result<()>;

    /// A local folder with checkpoint `id`'s files: the checkpoint itself for direct-access
    /// backends (selector ignored), a temporary download otherwise.
    fn restore(&self, id: &str, selector: Option<Selector<'_>>) -> Result<Restored>;

    /// Read one file of checkpoint `id` (`Kind::NotFound` if the checkpoint or file is missing).
    fn read_file(&self, id: &str, rel: &str) -> Result<Vec<u8>>;

    /// True if checkpoint `id` is complete (has its `metadata.json`).
    fn is_complete(&self, id: &str) -> Result<bool>;

    /// Delete every object of checkpoint `id`. Deleting a missing checkpoint is not an error.
    fn delete(&self, id: &str) -> Result<()>;

    /// Read a detcore bookkeeping object (e.g. a run's checkpoint index), `None` if absent.
    /// `key` is relative to the storage base and uses `/`.
    fn get_aux(&self, key: &str) -> Result<Option<Vec<u8>>>;

    /// Atomically replace a detcore bookkeeping object.
    fn put_aux(&self, key: &str, data: &[u8]) -> Result<()>;

    /// Copy local files to keys relative to the storage base (TensorBoard sync).
    fn put_files(&self, files: &[(PathBuf, String)]) -> Result<()>;
}

/// Open the backend for `config`.
pub fn open(config: &StorageConfig) -> Result<Arc<dyn Storage>> {
    match config {
        StorageConfig::SharedFs { base } => Ok(Arc::new(DirectoryStorage::new(
            config.clone(),
            base.clone(),
        ))),
        StorageConfig::Directory { container_path } => Ok(Arc::new(DirectoryStorage::new(
            config.clone(),
            container_path.clone(),
        ))),
        StorageConfig::S3(c) => {
            let store = s3::S3Store::new(c, http::Tuning::resolve(&c.transfer)?)?;
            Ok(Arc::new(object::ObjectStorage::new(
                config.clone(),
                store,
                &c.prefix,
                c.temp_dir.clone(),
            )))
        }
        StorageConfig::Gcs(c) => {
            let store = gcs::GcsStore::new(c, http::Tuning::resolve(&c.transfer)?)?;
            Ok(Arc::new(object::ObjectStorage::new(
                config.clone(),
                store,
                &c.prefix,
                c.temp_dir.clone(),
            )))
        }
        StorageConfig::Azure(c) => {
            let store = azure::AzureStore::open(c, http::Tuning::resolve(&c.transfer)?)?;
            let prefix = store.blob_prefix().trim_end_matches('/').to_owned();
            Ok(Arc::new(object::ObjectStorage::new(
                config.clone(),
                store,
                &prefix,
                c.temp_dir.clone(),
            )))
        }
    }
}

/// Check that `id` can name a checkpoint: one path component, no `/`, not `.`/`..`, no NUL,
/// at most 255 bytes. (Determined's ids are UUID4 strings; any safe name is accepted so that
/// checkpoints made by other tools can be restored.)
pub fn validate_id(id: &str) -> Result<()> {
    if id.is_empty() {
        crate::bail!(InvalidArgument, "storage_id: empty");
    }
    if id.len() > 255
        || id == "."
        || id == ".."
        || id.contains('/')
        || id.contains('\0')
        || id.contains('\\')
    {
        crate::bail!(
            InvalidArgument,
            "storage_id: {id:?} is not a valid checkpoint id (expected a UUID)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(validate_id("0b9b2b6c-4a8a-4f5e-9d3c-2a4f6c1b9e7d").is_ok());
        for bad in ["", ".", "..", "a/b", "../x", "a\\b"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }
}
