//! Checkpoints in an object store (S3, GCS, Azure): the [`Storage`] semantics on top of a few
//! primitives that each backend implements ([`ObjectStore`]).
//!
//! Layout (docs/protocol.md#checkpoint-layout): file `<rel>` of `<id>` is `<base><id>/<rel>`,
//! where `<base>` is the normalized prefix plus `/` (empty without prefix); every folder is a
//! zero-byte marker object `<base><id>/<dir>/` (except on MinIO). `store_path` stages into
//! `<temp_dir or $TMPDIR>/detcore-<uid>/<id>` (a folder of this user only); publishing uploads
//! everything, then the manifest (the CRC32C of every file, computed from the request bodies as
//! they were sent), then `metadata.json`, then removes the local folder, and every failure
//! removes it too (folders of killed processes are removed by a later process, see
//! [`super::staging`]). A checkpoint is complete once its `metadata.json` exists, so nothing
//! partial ever looks complete; a failed upload removes what it had stored (best effort).
//! Downloads check each file against the manifest as they write it (see [`super::manifest`]).
//!
//! Differences from Determined's client, on purpose: listings for download and delete use the
//! prefix `<base><id>/` (with the slash: Python's `<base><id>` would also match an id that
//! extends this one); delete removes `metadata.json` first; `restore_path` downloads into a fresh
//! folder per call (`<tmp>/detcore-<uid>/restore-<id>-<random>`), so two restores of the same id
//! on one node never delete each other's files.

use super::fsutil::{self, safe_join};
use super::http::Body;
use super::manifest::{self, FileSum, Manifest, Problem, Sums, MANIFEST};
use super::object_store::{ObjectInfo, ObjectStore};
use super::staging::{Area, AreaKind, Scratch};
use super::transfer::{self, Fetch, Item, Source};
use super::{Resources, Restored, Selector, Storage, StorageConfig};
use crate::error::{Error, Kind, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// A [`Storage`] over an [`ObjectStore`].
pub struct ObjectStorage<S: ObjectStore> {
    config: StorageConfig,
    store: S,
    /// `""` or `"<prefix>/"`.
    base: String,
    /// Staging folders and temporary restores.
    scratch: Area,
    /// Write manifests and check downloads against them.
    checksums: bool,
}

impl<S: ObjectStore> ObjectStorage<S> {
    /// Checkpoints in `store` under `prefix` (already normalized), staged in `temp_dir`.
    pub fn new(config: StorageConfig, store: S, prefix: &str, temp_dir: Option<PathBuf>) -> Self {
        let base = if prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", prefix.trim_end_matches('/'))
        };
        ObjectStorage {
            config,
            store,
            base,
            scratch: Area::new(
                temp_dir
                    .unwrap_or_else(std::env::temp_dir)
                    .join(format!("detcore-{}", fsutil::current_uid())),
                AreaKind::Private,
            ),
            checksums: true,
        }
    }

    /// With `on == false`, no manifests are written and downloads are not checked.
    pub fn with_checksums(mut self, on: bool) -> Self {
        self.checksums = on;
        self
    }

    fn ckpt_prefix(&self, id: &str) -> String {
        format!("{}{id}/", self.base)
    }

    fn key(&self, id: &str, rel: &str) -> String {
        format!("{}{id}/{rel}", self.base)
    }

    fn aux_key(&self, key: &str) -> Result<String> {
        if key.is_empty() || key.starts_with('/') || key.split('/').any(|c| c == ".." || c == ".") {
            bail!(
                InvalidArgument,
                "storage key {key:?} is not a safe relative key"
            );
        }
        Ok(format!("{}{key}", self.base))
    }

    /// Store `names` of `src` (folders end in `/`) and `extra`, all under checkpoint `id`;
    /// `metadata.json` (from `names` or `extra`) goes last, and before it the manifest of every
    /// file stored by this call and of `prior` (files stored earlier, by other ranks). Returns
    /// the sums of the files stored (empty without checksums). A file named like the manifest
    /// at the top of `src` is never stored (it would be a stale copy).
    fn store_checkpoint(
        &self,
        src: &Path,
        names: &[String],
        sizes: Option<&Resources>,
        extra: &[(String, Vec<u8>)],
        id: &str,
        prior: &Sums,
    ) -> Result<Sums> {
        let markers = if names.iter().any(|n| n.ends_with('/')) {
            self.store.markers_enabled()?
        } else {
            true
        };
        let mut first = Vec::new();
        let mut first_names = Vec::new();
        let mut last: Vec<(String, Item)> = Vec::new();
        for name in names {
            // Refuse names that could not be a relative path inside the checkpoint.
            safe_join(src, name)?;
            if name.ends_with('/') {
                if markers {
                    first.push(Item {
                        key: self.key(id, name),
                        source: Source::Marker,
                    });
                    first_names.push(name.clone());
                }
                continue;
            }
            if name == MANIFEST {
                continue;
            }
            let path = safe_join(src, name)?;
            // The caller's listing gives the size; otherwise the file is measured here.
            let size = match sizes.and_then(|s| s.get(name)) {
                Some(&n) => n,
                None => fs::metadata(&path)
                    .map_err(|e| Error::io("cannot upload", &path, e))?
                    .len(),
            };
            let item = Item {
                key: self.key(id, name),
                source: Source::File(path, size),
            };
            if name == "metadata.json" {
                last.push((name.clone(), item));
            } else {
                first.push(item);
                first_names.push(name.clone());
            }
        }
        for (name, data) in extra {
            safe_join(src, name)?;
            last.push((
                name.clone(),
                Item {
                    key: self.key(id, name),
                    source: Source::Bytes(data.clone()),
                },
            ));
        }
        let uploaded = match transfer::upload(&self.store, &first, self.checksums) {
            Ok(s) => s,
            Err((e, stored)) => {
                self.remove_partial(id, &stored);
                return Err(e);
            }
        };
        let mut stored = uploaded.keys;
        let mut sums = Sums::new();
        for (name, sum) in first_names.into_iter().zip(uploaded.sums) {
            if let Some(sum) = sum {
                sums.insert(name, sum);
            }
        }
        // The manifest goes right before metadata.json, covering every file of the checkpoint:
        // the completing objects' sums come from their bytes (in memory, or metadata.json read
        // back from the staging folder).
        if self.checksums {
            if let Some(at) = last.iter().position(|(n, _)| n == "metadata.json") {
                for (name, item) in &last {
                    let sum = match &item.source {
                        Source::Bytes(b) => FileSum::of(b),
                        Source::File(p, _) => manifest::sum_file(p)?,
                        Source::Marker => continue,
                    };
                    sums.insert(name.clone(), sum);
                }
                let mut all = prior.clone();
                all.extend(sums.iter().map(|(k, v)| (k.clone(), *v)));
                let bytes = Manifest::new(id, all).to_bytes();
                last.insert(
                    at,
                    (
                        MANIFEST.to_owned(),
                        Item {
                            key: self.key(id, MANIFEST),
                            source: Source::Bytes(bytes),
                        },
                    ),
                );
            }
        }
        // The completing objects, one by one: once metadata.json exists the checkpoint counts.
        for (_, item) in &last {
            match transfer::upload(&self.store, std::slice::from_ref(item), false) {
                Ok(u) => stored.extend(u.keys),
                Err((e, s)) => {
                    stored.extend(s);
                    self.remove_partial(id, &stored);
                    return Err(e);
                }
            }
        }
        Ok(sums)
    }

    fn remove_partial(&self, id: &str, keys: &[String]) {
        if keys.is_empty() {
            return;
        }
        match self.store.delete(keys) {
            Ok(()) => log_info!(
                "removed the {} objects already stored for the failed checkpoint {id}",
                keys.len()
            ),
            Err(e) => log_warn!(
                "could not remove the partial upload of checkpoint {id} ({} objects): {e}",
                keys.len()
            ),
        }
    }

    fn list_checkpoint(&self, id: &str) -> Result<Vec<ObjectInfo>> {
        let prefix = self.ckpt_prefix(id);
        self.store.list(&prefix)
    }

    /// The objects of checkpoint `id` as (relative name, local path under `dst`, object), every
    /// key checked before any of it becomes a local path; `NotFound` for no objects.
    fn entries(&self, id: &str, dst: &Path) -> Result<Vec<(String, PathBuf, ObjectInfo)>> {
        let prefix = self.ckpt_prefix(id);
        let objects = self.list_checkpoint(id)?;
        if objects.is_empty() {
            bail!(NotFound, "checkpoint {id} not found in {}", self.describe());
        }
        // Check every key before any of it becomes a local path.
        let mut entries = Vec::with_capacity(objects.len());
        for o in objects {
            // A listing answer is not trusted: a key outside the asked prefix is refused
            // (slicing it would panic or place a file outside `dst`).
            let Some(rel) = o.key.strip_prefix(prefix.as_str()).map(str::to_owned) else {
                bail!(
                    Storage,
                    "checkpoint {id}: {} lists {:?}, which is not under {prefix:?}",
                    self.describe(),
                    o.key
                );
            };
            if rel.is_empty() {
                continue; // a marker of the checkpoint folder itself
            }
            let path = safe_join(dst, &rel).map_err(|e| {
                Error::new(
                    Kind::Storage,
                    format!(
                        "checkpoint {id}: {} lists {:?}: {}",
                        self.describe(),
                        o.key,
                        e.message()
                    ),
                )
            })?;
            entries.push((rel, path, o));
        }
        Ok(entries)
    }

    fn get_bytes(&self, key: &str, limit: u64) -> Result<Vec<u8>> {
        let url = self.store.url(key);
        self.store.http().retry(|_| {
            let resp = self.store.get(key, None)?;
            super::http::read_body(resp, limit, &url)
        })
    }
}

/// Checkpoint files larger than this cannot be read whole through `read_file`.
const READ_LIMIT: u64 = 1 << 30;

impl<S: ObjectStore> Storage for ObjectStorage<S> {
    fn config(&self) -> &StorageConfig {
        &self.config
    }

    fn describe(&self) -> String {
        self.store.url(self.base.trim_end_matches('/'))
    }

    fn stage(&self, id: &str) -> Result<Scratch> {
        self.scratch
            .create(id)
            .map_err(|e| e.context("cannot create a staging folder"))
    }

    fn sweep_stale(&self) {
        self.scratch.sweep();
    }

    fn checksums(&self) -> bool {
        self.checksums
    }

    fn publish(&self, staged: &Path, id: &str, files: Option<&Resources>) -> Result<Sums> {
        let listed;
        let files = match files {
            Some(f) => f,
            None => {
                listed = fsutil::list_resources(staged)?;
                &listed
            }
        };
        let names: Vec<String> = files.keys().cloned().collect();
        let sums = self.store_checkpoint(staged, &names, Some(files), &[], id, &Sums::new())?;
        if let Err(e) = fsutil::remove_tree(staged) {
            log_warn!("checkpoint {id} is stored, but its local copy could not be removed: {e}");
        }
        Ok(sums)
    }

    fn upload(
        &self,
        src: &Path,
        files: &[String],
        extra: &[(String, Vec<u8>)],
        id: &str,
        prior: &Sums,
    ) -> Result<Sums> {
        self.store_checkpoint(src, files, None, extra, id, prior)
    }

    fn list(&self, id: &str) -> Result<Vec<String>> {
        let entries = self.entries(id, Path::new("/"))?;
        Ok(entries.into_iter().map(|(rel, _, _)| rel).collect())
    }

    fn download(&self, id: &str, dst: &Path, selector: Option<Selector<'_>>) -> Result<()> {
        let entries = self.entries(id, dst)?;
        // The manifest first (one small read), so that each file is checked as it arrives.
        let mut manifest_bytes = None;
        if self.checksums {
            if let Some((_, _, o)) = entries.iter().find(|(rel, _, _)| rel == MANIFEST) {
                manifest_bytes = Some(self.get_bytes(&o.key, manifest::MANIFEST_LIMIT)?);
            }
        }
        let manifest = match &manifest_bytes {
            Some(b) => manifest::usable(id, Some(Manifest::parse(id, b)?)),
            None => manifest::usable(id, None),
        };
        let mut sel = selector;
        let mut fetches = Vec::new();
        let mut names = Vec::new();
        let mut written = Vec::new();
        let mut listed = std::collections::BTreeSet::new();
        let mut problems = Vec::new();
        for (rel, path, o) in entries {
            listed.insert(rel.clone());
            if let Some(s) = sel.as_mut() {
                if !s(&rel) {
                    continue;
                }
            }
            // `dst` is created with the first entry selected: a selector that accepts nothing
            // leaves no folder behind (as in Determined).
            fs::create_dir_all(dst)
                .map_err(|e| Error::io("cannot create download folder", dst, e))?;
            if rel.ends_with('/') {
                fs::create_dir_all(&path)
                    .map_err(|e| Error::io("cannot create folder", &path, e))?;
                continue;
            }
            if let (Some(bytes), true) = (&manifest_bytes, rel == MANIFEST) {
                if let Some(p) = path.parent() {
                    fs::create_dir_all(p).map_err(|e| Error::io("cannot create folder", p, e))?;
                }
                fs::write(&path, bytes).map_err(|e| Error::io("cannot write", &path, e))?;
                written.push(path);
                continue;
            }
            // A size that differs from the manifest's is known from the listing: that file is
            // not fetched at all.
            if let Some(want) = manifest.as_ref().and_then(|m| m.files.get(&rel)) {
                if want.size != o.size {
                    problems.push((
                        rel,
                        Problem::Size {
                            got: o.size,
                            want: want.size,
                        },
                    ));
                    continue;
                }
            }
            names.push(rel);
            fetches.push(Fetch {
                key: o.key,
                size: o.size,
                dest: path,
            });
        }
        if let Some(m) = &manifest {
            for (name, want) in &m.files {
                if !listed.contains(name) && sel.as_mut().is_none_or(|s| s(name)) {
                    problems.push((name.clone(), Problem::Missing(*want)));
                }
            }
        }
        let fail = |problems: &mut Vec<(String, Problem)>, written: &[PathBuf]| {
            // Nothing this call wrote is left to be trusted.
            for p in written {
                let _ = fs::remove_file(p);
            }
            problems.sort_by(|a, b| a.0.cmp(&b.0));
            manifest::integrity_error(id, problems)
        };
        if !problems.is_empty() {
            return Err(fail(&mut problems, &written));
        }
        let got = transfer::download(&self.store, &fetches, manifest.is_some())?;
        written.extend(fetches.iter().map(|f| f.dest.clone()));
        if let Some(m) = &manifest {
            let mut unlisted = Vec::new();
            for (name, sum) in names.iter().zip(got) {
                match (m.files.get(name), sum) {
                    (Some(want), Some(sum)) => {
                        if let Some(p) = Problem::compare(sum, *want) {
                            problems.push((name.clone(), p));
                        }
                    }
                    _ => unlisted.push(name.clone()),
                }
            }
            if !problems.is_empty() {
                return Err(fail(&mut problems, &written));
            }
            manifest::warn_unlisted(id, &unlisted);
        }
        Ok(())
    }

    fn restore(&self, id: &str, selector: Option<Selector<'_>>) -> Result<Restored> {
        // Removed on failure (the drop) and when the restore scope ends.
        let scratch = self.scratch.create(&format!(
            "restore-{id}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ))?;
        self.download(id, scratch.path(), selector)?;
        // A restore yields a folder even when the selector accepted nothing.
        fs::create_dir_all(scratch.path())
            .map_err(|e| Error::io("cannot create folder", scratch.path(), e))?;
        Ok(Restored {
            path: scratch.path().to_path_buf(),
            scratch: Some(scratch),
        })
    }

    fn read_file(&self, id: &str, rel: &str) -> Result<Vec<u8>> {
        safe_join(Path::new("/"), rel)?;
        let key = self.key(id, rel);
        self.get_bytes(&key, READ_LIMIT).map_err(|e| {
            if e.kind() == Kind::NotFound {
                Error::new(
                    Kind::NotFound,
                    format!(
                        "checkpoint {id} has no file {rel:?} in {} ({})",
                        self.describe(),
                        e.message()
                    ),
                )
            } else {
                e
            }
        })
    }

    fn is_complete(&self, id: &str) -> Result<bool> {
        Ok(self.store.head(&self.key(id, "metadata.json"))?.is_some())
    }

    fn delete(&self, id: &str) -> Result<()> {
        let objects = self.list_checkpoint(id)?;
        if objects.is_empty() {
            log_info!(
                "checkpoint {id} is not in {}; nothing to delete",
                self.describe()
            );
            return Ok(());
        }
        // metadata.json first: a half-deleted checkpoint never looks complete.
        let meta = self.key(id, "metadata.json");
        let (first, rest): (Vec<String>, Vec<String>) =
            objects.into_iter().map(|o| o.key).partition(|k| *k == meta);
        if !first.is_empty() {
            self.store.delete(&first)?;
        }
        self.store.delete(&rest)
    }

    fn get_aux(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let k = self.aux_key(key)?;
        match self.get_bytes(&k, READ_LIMIT) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == Kind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn put_aux(&self, key: &str, data: &[u8]) -> Result<()> {
        let k = self.aux_key(key)?;
        self.store.put(&k, Body::Bytes(data))
    }

    fn list_aux(&self, prefix: &str) -> Result<Vec<String>> {
        let p = self.aux_key(prefix)?;
        let mut out: Vec<String> = self
            .store
            .list(&p)?
            .into_iter()
            .filter_map(|o| o.key.strip_prefix(p.as_str()).map(str::to_owned))
            .filter(|rel| !rel.is_empty() && !rel.contains('/'))
            .collect();
        out.sort();
        Ok(out)
    }

    fn delete_aux(&self, key: &str) -> Result<()> {
        let k = self.aux_key(key)?;
        self.store.delete(&[k])
    }

    fn put_files(&self, files: &[(PathBuf, String)]) -> Result<()> {
        let mut items = Vec::with_capacity(files.len());
        for (path, key) in files {
            let size = fs::metadata(path)
                .map_err(|e| Error::io("cannot upload", path, e))?
                .len();
            items.push(Item {
                key: self.aux_key(key)?,
                source: Source::File(path.clone(), size),
            });
        }
        transfer::upload(&self.store, &items, false)
            .map(|_| ())
            .map_err(|(e, _)| e)
    }
}
