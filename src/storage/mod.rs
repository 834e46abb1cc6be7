//! Checkpoint storage: one [`Storage`] trait, one implementation per backend.
//!
//! Layouts: docs/protocol.md#checkpoint-layout. A checkpoint is everything under `<base>/<id>/`
//! (shared_fs, directory) or under the key prefix `<prefix>/<id>/` (object stores), where `<id>`
//! is a UUID4. A checkpoint is *complete* when it has a `metadata.json`; detcore writes it last on
//! object stores and publishes folder checkpoints with one atomic rename, so nothing incomplete
//! ever looks complete.

pub mod aws_credentials;
pub mod azure;
pub mod config;
pub mod credentials;
mod directory;
pub mod fsutil;
pub mod gcp_auth;
pub mod gcs;
pub mod http;
pub mod lock;
pub mod manifest;
pub mod object;
pub mod object_store;
pub mod pool;
pub mod progress;
pub mod s3;
pub mod staging;
#[cfg(test)]
pub(crate) mod testserver;
pub mod transfer;
pub mod tuning;
mod xml;

pub use config::{StorageConfig, StorageSpec};
pub use directory::DirectoryStorage;
pub use fsutil::{Modes, Resources};
pub use manifest::{FileSum, Sums};
pub use staging::Scratch;

use crate::error::Result;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A function that decides whether a relative path (folders end in `/`) is part of a transfer.
pub type Selector<'a> = &'a mut dyn FnMut(&str) -> bool;

/// A local folder holding a checkpoint's files, from [`Storage::restore`].
#[derive(Debug)]
pub struct Restored {
    /// The folder.
    pub path: PathBuf,
    /// A temporary download: removed when this is dropped. `None`: the checkpoint itself (or
    /// another rank's download), never removed here.
    pub scratch: Option<Scratch>,
}

impl Restored {
    /// True when the folder is a temporary download.
    pub fn is_temporary(&self) -> bool {
        self.scratch.is_some()
    }
}

/// A cross-process lock on a bookkeeping object, held until dropped.
pub struct AuxLock(#[allow(dead_code)] std::fs::File);

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
    /// a sharded checkpoint that share a file system get the same folder. The folder is removed
    /// when the returned [`Scratch`] is dropped, unless publishing moved it away; if the process
    /// dies first, [`Storage::sweep_stale`] of a later process removes it.
    fn stage(&self, id: &str) -> Result<Scratch>;

    /// Remove what processes that died left behind (staging folders, temporary downloads),
    /// never anything a live process still uses. Logs what it removed.
    fn sweep_stale(&self) {}

    /// True for folder backends (shared_fs, directory) where `stage` is inside the storage and a
    /// checkpoint is published by one rename of the whole folder.
    fn direct_access(&self) -> bool {
        false
    }

    /// True when checkpoints get a manifest (the size and CRC32C of every file) and downloads
    /// and restores are checked against it (see [`manifest`]).
    fn checksums(&self) -> bool;

    /// The relative names (folders end in `/`) of checkpoint `id`'s objects, in the order
    /// `download` offers them to a selector.
    fn list(&self, id: &str) -> Result<Vec<String>>;

    /// Make the staged folder the complete checkpoint `id`. `files` is the caller's listing of
    /// what to store (relative names, folders ending in `/`, sizes; all of the folder, or a
    /// sharded rank's part), so the folder is not listed and its files not measured again;
    /// `None`: all of the folder, listed here. Consumes the staged folder. When the files
    /// include `metadata.json`, the manifest is stored before it. Returns the sums of the files
    /// stored, computed as they were stored (empty without checksums).
    fn publish(&self, staged: &Path, id: &str, files: Option<&Resources>) -> Result<Sums>;

    /// Store `files` (names relative to `src`; folders end in `/`) and the in-memory `extra`
    /// files as checkpoint `id`. `extra` files are stored last. When `metadata.json` is among
    /// them, the manifest stored before it lists every file stored here and those of `prior`
    /// (stored earlier, e.g. by the other ranks of a sharded checkpoint). Returns the sums of
    /// the files stored (empty without checksums).
    fn upload(
        &self,
        src: &Path,
        files: &[String],
        extra: &[(String, Vec<u8>)],
        id: &str,
        prior: &Sums,
    ) -> Result<Sums>;

    /// Copy checkpoint `id` into `dst`, keeping what `selector` accepts. With a manifest, every
    /// file copied is checked against it as it is written, and a file the manifest lists that
    /// `selector` would keep must exist: on a mismatch the call fails with `Kind::Integrity`
    /// naming the file, and removes the files it wrote.
    fn download(&self, id: &str, dst: &Path, selector: Option<Selector<'_>>) -> Result<()>;

    /// A local folder with checkpoint `id`'s files: the checkpoint itself for direct-access
    /// backends (selector ignored; with a manifest every file is read and checked first), a
    /// temporary download otherwise (checked as `download` does; removed when the [`Restored`]
    /// is dropped, and at once when the check fails).
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

    /// Atomically replace a detcore bookkeeping object. On folder storage no other user may
    /// write it or the folders created for it.
    fn put_aux(&self, key: &str, data: &[u8]) -> Result<()>;

    /// The names of the bookkeeping objects directly under `prefix` (which ends in `/`),
    /// relative to it; empty when there are none.
    fn list_aux(&self, prefix: &str) -> Result<Vec<String>>;

    /// Delete a bookkeeping object (a missing one is not an error).
    fn delete_aux(&self, key: &str) -> Result<()>;

    /// An exclusive lock between processes named by `key` (a lock file on folder storage),
    /// waiting at most `wait`; `None` where the storage has no locks or the wait ran out (the
    /// caller must stay correct without it).
    fn lock_aux(&self, _key: &str, _wait: std::time::Duration) -> Option<AuxLock> {
        None
    }

    /// Copy local files to keys relative to the storage base (TensorBoard sync).
    fn put_files(&self, files: &[(PathBuf, String)]) -> Result<()>;
}

/// Open the backend for `config`; folders are created with the process's umask (off-cluster),
/// and checksums are on unless `DETCORE_CHECKSUMS` turns them off.
pub fn open(config: &StorageConfig) -> Result<Arc<dyn Storage>> {
    open_with(config, Modes::Umask, manifest::resolve_enabled(None)?)
}

/// Open the backend for `config`, creating folders with `modes` (on-cluster: Determined's
/// [`Modes::Shared`]); `checksums` turns manifests and verification on or off.
pub fn open_with(
    config: &StorageConfig,
    modes: Modes,
    checksums: bool,
) -> Result<Arc<dyn Storage>> {
    match config {
        StorageConfig::SharedFs { base } => Ok(Arc::new(
            DirectoryStorage::new(config.clone(), base.clone(), modes).with_checksums(checksums),
        )),
        StorageConfig::Directory { container_path } => Ok(Arc::new(
            DirectoryStorage::new(config.clone(), container_path.clone(), modes)
                .with_checksums(checksums),
        )),
        StorageConfig::S3(c) => {
            let store = s3::S3Store::new(c, tuning::Tuning::resolve(&c.transfer)?)?;
            Ok(Arc::new(
                object::ObjectStorage::new(config.clone(), store, &c.prefix, c.temp_dir.clone())
                    .with_checksums(checksums),
            ))
        }
        StorageConfig::Gcs(c) => {
            let store = gcs::GcsStore::new(c, tuning::Tuning::resolve(&c.transfer)?)?;
            Ok(Arc::new(
                object::ObjectStorage::new(config.clone(), store, &c.prefix, c.temp_dir.clone())
                    .with_checksums(checksums),
            ))
        }
        StorageConfig::Azure(c) => {
            let store = azure::AzureStore::open(c, tuning::Tuning::resolve(&c.transfer)?)?;
            let prefix = store.blob_prefix().trim_end_matches('/').to_owned();
            Ok(Arc::new(
                object::ObjectStorage::new(config.clone(), store, &prefix, c.temp_dir.clone())
                    .with_checksums(checksums),
            ))
        }
    }
}

/// Check that `id` can name a checkpoint: one path component, no `/`, not `.`/`..`, no NUL,
/// at most 255 bytes. (Determined's ids are UUID4 strings; any safe name is accepted so that
/// checkpoints made by other tools can be restored.)
pub fn validate_id(id: &str) -> Result<()> {
    if id.is_empty() {
        bail!(InvalidArgument, "storage_id: empty");
    }
    if id.len() > 255
        || id == "."
        || id == ".."
        || id.contains('/')
        || id.contains('\0')
        || id.contains('\\')
    {
        bail!(
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
