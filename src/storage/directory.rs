//! `shared_fs` and `directory` storage: checkpoints are folders `<base>/<id>/`.
//!
//! `store_path` writes into `<base>/.detcore-staging/<id>/` (same file system as the base). Publishing
//! fsyncs every file and folder, renames the staging folder to `<base>/<id>` and fsyncs the base,
//! so a crash at any point leaves either no checkpoint or a complete one. Deletion renames the
//! checkpoint back into the staging area before removing it, for the same reason. Staging folders
//! of processes that died are removed by the next process's sweep (see [`super::staging`]).
//!
//! Modes: on-cluster the base is created as Determined creates it (0777, shared by every user's
//! trials) and the staging area is 1777; off-cluster every folder gets the process's umask.
//! detcore's bookkeeping (`.detcore/`, the run index) is never writable by other users.
//!
//! Checksums (see [`super::manifest`]): the caller writes `store_path` files straight into the
//! staging folder, so detcore never sees those bytes pass. Publishing must already visit every
//! file to fsync it; beside each file's fsync, another task of the same thread pool reads the
//! file back (from the page cache, where the caller's writes still are) and sums it, so the
//! summing pass runs on the CPUs while the flushes wait for the disk. `upload` sums while it copies (one read and one write per
//! byte through a buffer, instead of the kernel's `copy_file_range`), `download` likewise, and a
//! `restore_path` in place reads every file once to check it before handing the folder over.

use super::fsutil::{self, create_dir_all_modes, safe_join, Modes};
use super::manifest::{self, FileSum, Manifest, Problem, Sums, MANIFEST};
use super::staging::{Area, AreaKind, Scratch};
use super::{AuxLock, Resources, Restored, Selector, Storage, StorageConfig};
use crate::error::{Error, Kind, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// Name of the staging folder inside the base.
pub const STAGING_DIR: &str = ".detcore-staging";

/// A checkpoint store in a local or shared folder.
pub struct DirectoryStorage {
    config: StorageConfig,
    base: PathBuf,
    modes: Modes,
    staging: Area,
    /// Write manifests and check restores against them.
    checksums: bool,
}

/// Threads reading, summing and fsyncing files in parallel when publishing or verifying.
const SEAL_THREADS: usize = 8;

/// A local file error while publishing, as a storage error (the kind the caller expects).
fn storage_error(e: Error) -> Error {
    Error::new(
        Kind::Storage,
        format!("checkpoint storage: {}", e.message()),
    )
}

fn storage_err(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::new(
        Kind::Storage,
        format!("checkpoint storage: {what} {}: {e}", path.display()),
    )
}

impl DirectoryStorage {
    /// A store rooted at `base` (made absolute against the current folder), creating folders
    /// with `modes`.
    pub fn new(config: StorageConfig, base: PathBuf, modes: Modes) -> DirectoryStorage {
        let base = std::path::absolute(&base).unwrap_or(base);
        let kind = match modes {
            Modes::Shared => AreaKind::Shared,
            Modes::Umask => AreaKind::Umask,
        };
        DirectoryStorage {
            config,
            staging: Area::new(base.join(STAGING_DIR), kind),
            base,
            modes,
            checksums: true,
        }
    }

    /// With `on == false`, no manifests are written and restores are not checked.
    pub fn with_checksums(mut self, on: bool) -> DirectoryStorage {
        self.checksums = on;
        self
    }

    /// Make the staged folder durable: every regular file fsynced and (with checksums) read and
    /// summed, by parallel threads; the manifest of those sums and `more` (files summed
    /// already) written; then every folder fsynced. Returns the sums.
    fn seal(&self, staged: &Path, id: &str, more: Sums) -> Result<Sums> {
        let (files, dirs) = fsutil::tree_files(staged).map_err(storage_error)?;
        let files: Vec<(String, PathBuf)> = files
            .into_iter()
            .filter(|(rel, _)| rel != MANIFEST)
            .collect();
        let sums = parking_lot::Mutex::new(more);
        let checksums = self.checksums;
        // Flushes and sums are separate tasks, interleaved (flush 0, sum 0, flush 1, ...), so
        // that from the start some threads wait on the disk while others sum on the CPUs: the
        // summing pass overlaps the flushes instead of following them.
        let mut tasks = Vec::with_capacity(files.len() * 2);
        for i in 0..files.len() {
            tasks.push((i, false));
            if checksums {
                tasks.push((i, true));
            }
        }
        super::pool::Pool::new(tasks).try_run(
            SEAL_THREADS.min(files.len() * 2).max(1),
            false,
            |(i, sum), _| {
                let (rel, path) = &files[i];
                if sum {
                    let s = manifest::sum_file(path)?;
                    sums.lock().insert(rel.clone(), s);
                    Ok(())
                } else {
                    fsutil::fsync_path(path)
                }
            },
        )?;
        let sums = sums.into_inner();
        if checksums {
            let m = staged.join(MANIFEST);
            fs::write(&m, Manifest::new(id, sums.clone()).to_bytes())
                .map_err(|e| storage_err("cannot write", &m, e))?;
            fsutil::fsync_path(&m)?;
        }
        fsutil::fsync_all(&dirs).map_err(storage_error)?;
        Ok(sums)
    }

    /// The usable manifest of the checkpoint in `dir` (`None` without one, or with checksums
    /// off).
    fn manifest_of(&self, dir: &Path, id: &str) -> Result<Option<Manifest>> {
        if !self.checksums {
            return Ok(None);
        }
        let p = dir.join(MANIFEST);
        match fs::read(&p) {
            Ok(b) => Ok(manifest::usable(id, Some(Manifest::parse(id, &b)?))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(manifest::usable(id, None)),
            Err(e) => Err(storage_err("cannot read", &p, e)),
        }
    }

    /// Read every file of the checkpoint in `dir` that `m` lists and check it; then name the
    /// files it does not list.
    fn verify_in_place(&self, dir: &Path, id: &str, m: &Manifest) -> Result<()> {
        let problems = parking_lot::Mutex::new(Vec::new());
        let entries: Vec<(&String, &FileSum)> = m.files.iter().collect();
        super::pool::Pool::new(entries.iter()).try_run(
            SEAL_THREADS.min(entries.len()).max(1),
            false,
            |(name, want), _| {
                let p = safe_join(dir, name)?;
                let problem = match fs::metadata(&p) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        Some(Problem::Missing(**want))
                    }
                    Err(e) => return Err(storage_err("cannot read", &p, e)),
                    Ok(md) if !md.is_file() => Some(Problem::Missing(**want)),
                    // A size that differs is known without reading.
                    Ok(md) if md.len() != want.size => Some(Problem::Size {
                        got: md.len(),
                        want: want.size,
                    }),
                    Ok(_) => Problem::compare(manifest::sum_file(&p)?, **want),
                };
                if let Some(pr) = problem {
                    problems.lock().push(((*name).clone(), pr));
                }
                Ok(())
            },
        )?;
        let mut problems = problems.into_inner();
        if !problems.is_empty() {
            problems.sort_by(|a, b| a.0.cmp(&b.0));
            return Err(manifest::integrity_error(id, &problems));
        }
        let (files, _) = fsutil::tree_files(dir).map_err(storage_error)?;
        let unlisted: Vec<String> = files
            .into_iter()
            .map(|(rel, _)| rel)
            .filter(|rel| rel != MANIFEST && !m.files.contains_key(rel))
            .collect();
        manifest::warn_unlisted(id, &unlisted);
        Ok(())
    }

    /// The base folder.
    pub fn base(&self) -> &Path {
        &self.base
    }

    fn ckpt_dir(&self, id: &str) -> PathBuf {
        self.base.join(id)
    }

    fn ensure_base(&self) -> Result<()> {
        create_dir_all_modes(&self.base, self.modes)
            .map_err(|e| Error::new(Kind::Storage, format!("checkpoint storage: {e}")))
    }

    /// The last step of publishing a staged folder whose files and folders are all fsynced:
    /// rename it to `<base>/<id>` and fsync the base.
    fn rename_into_place(&self, staged: &Path, id: &str) -> Result<()> {
        let dest = self.ckpt_dir(id);
        if dest.exists() {
            bail!(
                Conflict,
                "checkpoint {id} already exists in {}",
                self.describe()
            );
        }
        fs::rename(staged, &dest)
            .map_err(|e| storage_err("cannot publish checkpoint as", &dest, e))?;
        fsutil::fsync_path(&self.base)
            .map_err(|e| Error::new(Kind::Storage, format!("checkpoint storage: {e}")))?;
        Ok(())
    }

    fn existing_ckpt_dir(&self, id: &str) -> Result<PathBuf> {
        if !self.base.is_dir() {
            bail!(
                NotFound,
                "checkpoint storage folder does not exist: {}",
                self.base.display()
            );
        }
        let d = self.ckpt_dir(id);
        if !d.is_dir() {
            bail!(NotFound, "checkpoint {id} not found in {}", self.describe());
        }
        Ok(d)
    }
}

/// True if `to` is a copy of `from` made after `from` last changed: the same size, and
/// modified no earlier than `from` (a copy's time is when it was made; appending to `from`
/// afterwards moves its time past the copy's).
impl DirectoryStorage {
    /// Remove the run-index records in `dir` whose checkpoint was never completed and is not
    /// being written (no staging folder: the staging sweep already removed those of dead
    /// processes). A record is written just before its checkpoint is published, while the
    /// staging folder exists, so a live writer's record is never taken.
    fn remove_unfinished_records(&self, dir: &Path) -> usize {
        let Ok(rd) = fs::read_dir(dir) else {
            return 0;
        };
        let staging = self.base.join(STAGING_DIR);
        let mut n = 0;
        for e in rd.flatten() {
            let name = e.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if id.starts_with('.') || super::validate_id(id).is_err() {
                continue;
            }
            let done = self.ckpt_dir(id).join("metadata.json").exists();
            let staged = staging.join(id).exists() || staging.join(format!("{id}.lock")).exists();
            if !done && !staged && fs::remove_file(e.path()).is_ok() {
                n += 1;
            }
        }
        n
    }
}

fn is_current_copy(from: &Path, to: &Path) -> bool {
    match (fs::metadata(from), fs::metadata(to)) {
        (Ok(f), Ok(t)) => {
            f.len() == t.len()
                && matches!((f.modified(), t.modified()), (Ok(fm), Ok(tm)) if tm >= fm)
        }
        _ => false,
    }
}

/// Threads copying files in parallel in `upload`.
const COPY_THREADS: usize = 8;

/// Copy files in parallel and fsync each copy (a pair with an empty source names a file already
/// written, to fsync only). Each copy is `std::fs::copy`, which asks the kernel
/// (`copy_file_range`): file systems that can share extents (XFS, btrfs, bcachefs) clone them
/// (a reflink, no data copied), NFS 4.2 copies on the server, others copy in the kernel without
/// a round trip through user space; it falls back to a buffered copy where none of this works.
///
/// With `sums`, each file is copied through a buffer and summed on the way (see the module docs);
/// the sums are returned by index of `copies` (`None` for the fsync-only pairs). `what` names
/// the copy in the progress lines of a copy that lasts more than a few seconds.
fn copy_parallel(
    copies: &[(PathBuf, PathBuf)],
    sums: bool,
    what: &str,
) -> Result<Vec<Option<FileSum>>> {
    // Largest first, so that a big file does not start last.
    let mut order: Vec<(u64, usize)> = copies
        .iter()
        .enumerate()
        .map(|(i, (from, _))| (fs::metadata(from).map(|m| m.len()).unwrap_or(0), i))
        .collect();
    order.sort_by(|a, b| b.cmp(a));
    let out: Vec<parking_lot::Mutex<Option<FileSum>>> = copies
        .iter()
        .map(|_| parking_lot::Mutex::new(None))
        .collect();
    let prog = super::progress::Progress::new(what, order.iter().map(|(n, _)| n).sum());
    let pool = super::pool::Pool::new(order.into_iter().map(|(_, i)| i));
    let res = pool.try_run(COPY_THREADS.min(copies.len()).max(1), true, |i, _| {
        let (from, to) = &copies[i];
        if !from.as_os_str().is_empty() {
            if sums {
                let sum = manifest::copy_summed(from, to)?;
                prog.add(sum.size);
                *out[i].lock() = Some(sum);
            } else {
                prog.add(fsutil::copy_file(from, to)?);
            }
        }
        // Flushed here, in parallel, while other threads still copy.
        fsutil::fsync_path(to)
    });
    prog.finish(res.is_ok());
    res?;
    Ok(out
        .into_iter()
        .map(parking_lot::Mutex::into_inner)
        .collect())
}

impl Storage for DirectoryStorage {
    fn config(&self) -> &StorageConfig {
        &self.config
    }

    fn describe(&self) -> String {
        format!("{} {}", self.config.type_name(), self.base.display())
    }

    fn identity(&self) -> String {
        // shared_fs and directory name the same folder alike; `a/b/` and `a/./b` are `a/b`.
        let p: PathBuf = self.base.components().collect();
        format!("folder {}", p.display())
    }

    fn stage(&self, id: &str) -> Result<Scratch> {
        // Idempotent: the ranks of a sharded checkpoint on a shared file system all stage the
        // same (fresh, UUID-named) folder.
        self.ensure_base()?;
        self.staging
            .create(id)
            .map_err(|e| e.context("checkpoint storage: cannot create a staging folder"))
    }

    fn sweep_stale(&self) {
        self.staging.sweep();
        // Temporary files of run-index writes killed before their rename (a write takes
        // milliseconds: ten minutes old is abandoned).
        let age = std::time::Duration::from_secs(600);
        let (mut n, mut records) = (0, 0);
        if let Ok(runs) = fs::read_dir(self.base.join(".detcore/runs")) {
            for run in runs.flatten() {
                n += fsutil::remove_stale_temp_files(&run.path(), age);
                let recs = run.path().join("checkpoints");
                n += fsutil::remove_stale_temp_files(&recs, age);
                records += self.remove_unfinished_records(&recs);
            }
        }
        if n > 0 {
            log_info!(
                "removed {n} temporary file(s) of interrupted run-index writes in {}",
                self.base.join(".detcore/runs").display()
            );
        }
        if records > 0 {
            log_info!(
                "removed {records} run-index record(s) of checkpoints that were never completed (their process stopped before publishing them)"
            );
        }
    }

    fn direct_access(&self) -> bool {
        true
    }

    fn checksums(&self) -> bool {
        self.checksums
    }

    /// The listing is not used: making the folder durable walks it anyway (every file and folder
    /// is fsynced, symbolic links are not followed).
    fn publish(&self, staged: &Path, id: &str, _files: Option<&Resources>) -> Result<Sums> {
        let sums = self.seal(staged, id, Sums::new())?;
        self.rename_into_place(staged, id)?;
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
        // Removed when dropped, on every failure path (after success it was renamed away).
        let scratch = self.stage(id)?;
        let staged = scratch.path().to_path_buf();
        (|| {
            let mut copies = Vec::new();
            let mut names = Vec::new();
            let mut sums = Sums::new();
            for name in files {
                if name == MANIFEST {
                    continue; // a stale copy; this checkpoint gets its own
                }
                let to = safe_join(&staged, name)?;
                if name.ends_with('/') {
                    fs::create_dir_all(&to)
                        .map_err(|e| storage_err("cannot create folder", &to, e))?;
                } else {
                    let from = safe_join(src, name)
                        .map_err(|e| Error::new(Kind::InvalidArgument, e.message().to_owned()))?;
                    if let Some(p) = to.parent() {
                        fs::create_dir_all(p)
                            .map_err(|e| storage_err("cannot create folder", p, e))?;
                    }
                    copies.push((from, to));
                    names.push(name.clone());
                }
            }
            for (name, data) in extra {
                let to = safe_join(&staged, name)?;
                fs::write(&to, data).map_err(|e| storage_err("cannot write", &to, e))?;
                copies.push((PathBuf::new(), to));
                names.push(name.clone());
                if self.checksums {
                    sums.insert(name.clone(), FileSum::of(data));
                }
            }
            // Every file is fsynced by the thread that wrote it; the folders remain.
            let copied = copy_parallel(
                &copies,
                self.checksums,
                &format!("copy of checkpoint {id} to {}", self.base.display()),
            )?;
            for (name, sum) in names.into_iter().zip(copied) {
                if let Some(sum) = sum {
                    sums.insert(name, sum);
                }
            }
            if self.checksums && sums.contains_key("metadata.json") {
                let mut all = prior.clone();
                all.extend(sums.iter().map(|(k, v)| (k.clone(), *v)));
                let m = staged.join(MANIFEST);
                fs::write(&m, Manifest::new(id, all).to_bytes())
                    .map_err(|e| storage_err("cannot write", &m, e))?;
                fsutil::fsync_path(&m)?;
            }
            fsutil::fsync_folders(&staged)
                .map_err(|e| Error::new(Kind::Storage, format!("checkpoint storage: {e}")))?;
            self.rename_into_place(&staged, id)?;
            Ok(sums)
        })()
    }

    fn list(&self, id: &str) -> Result<Vec<String>> {
        let src = self.existing_ckpt_dir(id)?;
        let mut names = Vec::new();
        // A selector that refuses every name is offered them all and copies nothing.
        fsutil::copy_selected(&src, Path::new("/"), &mut |n: &str| {
            names.push(n.to_owned());
            false
        })?;
        Ok(names)
    }

    fn download(&self, id: &str, dst: &Path, selector: Option<Selector<'_>>) -> Result<()> {
        let src = self.existing_ckpt_dir(id)?;
        let manifest = self.manifest_of(&src, id)?;
        // `dst` is created with the first file or folder copied: a selector that accepts
        // nothing leaves no folder behind (as in Determined).
        let mut all = |_: &str| true;
        let sel: Selector<'_> = match selector {
            Some(s) => s,
            None => &mut all,
        };
        let mut sums = Sums::new();
        let mut written = Vec::new();
        let summing = manifest.is_some();
        fsutil::copy_selected_with(&src, dst, sel, &mut |from, to, rel| {
            written.push(to.to_path_buf());
            if summing && rel != MANIFEST {
                sums.insert(rel.to_owned(), manifest::copy_summed(from, to)?);
            } else {
                fsutil::copy_file(from, to)?;
            }
            Ok(())
        })?;
        let Some(m) = manifest else {
            return Ok(());
        };
        let mut problems = Vec::new();
        let mut unlisted = Vec::new();
        for (name, got) in &sums {
            match m.files.get(name) {
                Some(want) => {
                    if let Some(p) = Problem::compare(*got, *want) {
                        problems.push((name.clone(), p));
                    }
                }
                None => unlisted.push(name.clone()),
            }
        }
        for (name, want) in &m.files {
            if !sums.contains_key(name) && !safe_join(&src, name)?.is_file() && sel(name) {
                problems.push((name.clone(), Problem::Missing(*want)));
            }
        }
        if !problems.is_empty() {
            // Nothing this call wrote is left to be trusted.
            for p in &written {
                let _ = fs::remove_file(p);
            }
            problems.sort_by(|a, b| a.0.cmp(&b.0));
            return Err(manifest::integrity_error(id, &problems));
        }
        manifest::warn_unlisted(id, &unlisted);
        Ok(())
    }

    fn restore(&self, id: &str, selector: Option<Selector<'_>>) -> Result<Restored> {
        let path = self.existing_ckpt_dir(id)?;
        if selector.is_some() {
            log_warn!(
                "restore_path: the selector is ignored for {} storage, which restores in place",
                self.config.type_name()
            );
        }
        if let Some(m) = self.manifest_of(&path, id)? {
            self.verify_in_place(&path, id, &m)?;
        }
        Ok(Restored {
            path,
            scratch: None,
        })
    }

    fn read_file(&self, id: &str, rel: &str) -> Result<Vec<u8>> {
        let dir = self.existing_ckpt_dir(id)?;
        let p = safe_join(&dir, rel)?;
        fs::read(&p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::new(
                    Kind::NotFound,
                    format!("checkpoint {id} has no file {rel:?}"),
                )
            } else {
                storage_err("cannot read", &p, e)
            }
        })
    }

    fn is_complete(&self, id: &str) -> Result<bool> {
        Ok(self.ckpt_dir(id).join("metadata.json").is_file())
    }

    fn delete(&self, id: &str) -> Result<()> {
        let dir = self.ckpt_dir(id);
        if !dir.exists() {
            log_info!(
                "checkpoint {id} is not in {}; nothing to delete",
                self.describe()
            );
            return Ok(());
        }
        // Move it out of sight first, so that a half-deleted checkpoint never looks complete
        // (a process killed meanwhile leaves trash that a later sweep removes).
        let trash = self
            .staging
            .claim(&format!("{id}.deleting-{}", uuid::Uuid::new_v4().simple()))?;
        fs::rename(&dir, trash.path())
            .map_err(|e| storage_err("cannot delete checkpoint", &dir, e))?;
        let _ = fsutil::fsync_path(&self.base);
        trash
            .remove()
            .map_err(|e| Error::new(Kind::Storage, format!("checkpoint storage: {e}")))
    }

    fn get_aux(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let p = safe_join(&self.base, key)?;
        match fs::read(&p) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(storage_err("cannot read", &p, e)),
        }
    }

    fn put_aux(&self, key: &str, data: &[u8]) -> Result<()> {
        let p = safe_join(&self.base, key)?;
        self.ensure_base()?;
        if let Some(parent) = p.parent() {
            fsutil::create_dir_all_no_other_write(&self.base, parent)
                .map_err(|e| Error::new(Kind::Storage, format!("checkpoint storage: {e}")))?;
        }
        fsutil::write_atomic_mode(&p, data, 0o664)
            .map_err(|e| Error::new(Kind::Storage, format!("checkpoint storage: {e}")))
    }

    fn list_aux(&self, prefix: &str) -> Result<Vec<String>> {
        let dir = safe_join(&self.base, prefix)?;
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(storage_err("cannot list", &dir, e)),
        };
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(|e| storage_err("cannot list", &dir, e))?;
            let name = e.file_name();
            // Hidden names are temporary files of atomic writes.
            match name.to_str() {
                Some(n) if !n.starts_with('.') && e.file_type().is_ok_and(|t| t.is_file()) => {
                    out.push(n.to_owned())
                }
                _ => {}
            }
        }
        out.sort();
        Ok(out)
    }

    fn delete_aux(&self, key: &str) -> Result<()> {
        let p = safe_join(&self.base, key)?;
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(storage_err("cannot remove", &p, e)),
        }
    }

    fn lock_aux(&self, key: &str, wait: std::time::Duration) -> Option<AuxLock> {
        use super::lock::{lock_within, Locked, Mode};
        use std::os::unix::fs::OpenOptionsExt;
        let p = safe_join(&self.base, key).ok()?;
        let parent = p.parent()?;
        self.ensure_base().ok()?;
        fsutil::create_dir_all_no_other_write(&self.base, parent).ok()?;
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o664)
            .open(&p)
            .or_else(|_| fs::File::open(&p))
            .ok()?;
        match lock_within(&f, Mode::Exclusive, wait) {
            Ok(Locked::Yes) => Some(AuxLock(f)),
            Ok(Locked::Busy) => {
                log_warn!(
                    "{}: still locked by another process after {:.0} s; going on without the lock",
                    p.display(),
                    wait.as_secs_f64()
                );
                None
            }
            Ok(Locked::Unsupported(e)) => {
                log_debug!("{}: no file locks on this file system ({e})", p.display());
                None
            }
            Err(e) => {
                log_debug!("{}: cannot lock: {e}", p.display());
                None
            }
        }
    }

    fn put_files(&self, files: &[(PathBuf, String)]) -> Result<()> {
        for (from, key) in files {
            let to = safe_join(&self.base, key)?;
            if is_current_copy(from, &to) {
                continue; // e.g. a resumed run's TensorBoard files, synced by the last process
            }
            if let Some(parent) = to.parent() {
                create_dir_all_modes(parent, self.modes)
                    .map_err(|e| Error::new(Kind::Storage, format!("checkpoint storage: {e}")))?;
            }
            fsutil::copy_file(from, &to)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_files_skips_current_copies_and_recopies_changed_files() {
        let td = crate::testutil::TempDir::new("dir");
        let root = td.path();
        let (src, base) = (root.join("src"), root.join("base"));
        fs::create_dir_all(&src).unwrap();
        let storage = DirectoryStorage::new(
            StorageConfig::SharedFs { base: base.clone() },
            base.clone(),
            Modes::Umask,
        );
        let f = src.join("events");
        fs::write(&f, b"one").unwrap();
        let files = [(f.clone(), "tb/events".to_owned())];
        storage.put_files(&files).unwrap();
        let dest = base.join("tb/events");
        assert_eq!(fs::read(&dest).unwrap(), b"one");
        // Unchanged source: not copied again (a marker of the same size survives).
        fs::write(&dest, b"ONE").unwrap();
        storage.put_files(&files).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"ONE");
        // Appended source: copied again.
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&f, b"one two").unwrap();
        storage.put_files(&files).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"one two");
    }

    fn sample(dir: &Path) -> Sums {
        fs::create_dir_all(dir.join("sub/empty")).unwrap();
        let files: [(&str, Vec<u8>); 4] = [
            ("w.bin", (0..200_000u32).map(|i| (i % 253) as u8).collect()),
            ("sub/opt.txt", b"momentum".to_vec()),
            ("sub/zero", Vec::new()),
            ("metadata.json", b"{\"steps_completed\": 1}".to_vec()),
        ];
        for (name, data) in &files {
            fs::write(dir.join(name), data).unwrap();
        }
        files
            .iter()
            .map(|(n, d)| (n.to_string(), FileSum::of(d)))
            .collect()
    }

    fn fresh() -> (crate::testutil::TempDir, PathBuf, DirectoryStorage) {
        let td = crate::testutil::TempDir::new("dirsum");
        let base = td.path().to_path_buf();
        let storage = DirectoryStorage::new(
            StorageConfig::SharedFs { base: base.clone() },
            base.clone(),
            Modes::Umask,
        );
        (td, base, storage)
    }

    #[test]
    fn publish_writes_a_manifest_and_restores_check_it() {
        let (_td, base, st) = fresh();
        let id = "ck1";
        let scratch = st.stage(id).unwrap();
        let staged = scratch.path();
        let want = sample(staged);
        fs::write(staged.join(MANIFEST), b"stale").unwrap();
        assert_eq!(st.publish(staged, id, None).unwrap(), want);
        drop(scratch);
        let dir = base.join(id);
        let m = Manifest::parse(id, &fs::read(dir.join(MANIFEST)).unwrap()).unwrap();
        assert_eq!(m.files, want);
        assert_eq!(st.restore(id, None).unwrap().path, dir);
        // Every way a byte can go bad, each named; restoring the good bytes heals it.
        let good = fs::read(dir.join("w.bin")).unwrap();
        let mut flipped = good.clone();
        flipped[123_456] ^= 0x80;
        let cases: [(&str, Option<Vec<u8>>, &str); 3] = [
            (
                "w.bin",
                Some(flipped),
                "file \"w.bin\" is corrupt: its CRC32C is",
            ),
            (
                "w.bin",
                Some(good[..1000].to_vec()),
                "is 1000 bytes, its manifest says 200000 (truncated)",
            ),
            (
                "sub/opt.txt",
                None,
                "file \"sub/opt.txt\" is missing (its manifest lists 8 bytes)",
            ),
        ];
        for (name, data, msg) in cases {
            let p = dir.join(name);
            let before = fs::read(&p).unwrap();
            match &data {
                Some(d) => fs::write(&p, d).unwrap(),
                None => fs::remove_file(&p).unwrap(),
            }
            let e = st.restore(id, None).unwrap_err();
            assert_eq!(e.kind(), Kind::Integrity, "{e}");
            assert!(e.message().contains(msg), "{name}: {e}");
            assert!(
                e.message()
                    .starts_with("checkpoint ck1 failed verification"),
                "{e}"
            );
            // A download fails alike and keeps none of the files it copied.
            let dl = base.join("dl");
            let e = st.download(id, &dl, None).unwrap_err();
            assert!(e.message().contains(msg), "{e}");
            let (left, _) = fsutil::tree_files(&dl).unwrap();
            assert!(left.is_empty(), "{left:?}");
            // ... unless its selector leaves the bad file out.
            let mut sel = |p: &str| p != name;
            st.download(id, &base.join("dl2"), Some(&mut sel)).unwrap();
            fs::write(&p, before).unwrap();
            st.restore(id, None).unwrap();
        }
        // A file the manifest does not list is read but not checked (a warning names it).
        fs::write(dir.join("extra"), b"x").unwrap();
        st.restore(id, None).unwrap();
        // Damaged manifest.
        fs::write(dir.join(MANIFEST), b"{").unwrap();
        assert_eq!(st.restore(id, None).unwrap_err().kind(), Kind::Integrity);
        // Checksums off: nothing is checked, and no manifest is written.
        let off = DirectoryStorage::new(st.config.clone(), base.clone(), Modes::Umask)
            .with_checksums(false);
        off.restore(id, None).unwrap();
        let scratch = off.stage("ck2").unwrap();
        sample(scratch.path());
        assert!(off.publish(scratch.path(), "ck2", None).unwrap().is_empty());
        drop(scratch);
        assert!(!base.join("ck2").join(MANIFEST).exists());
        // A checkpoint without a manifest (Determined's client) restores unchecked.
        st.restore("ck2", None).unwrap();
        // A manifest of another checkpoint (copied along) is not used.
        fs::copy(base.join("ck1/w.bin"), base.join("ck2/w.bin")).unwrap();
        let m = Manifest::new("ck1", Sums::new());
        fs::write(base.join("ck2").join(MANIFEST), m.to_bytes()).unwrap();
        st.restore("ck2", None).unwrap();
    }

    #[test]
    fn upload_sums_while_copying() {
        let (_td, base, st) = fresh();
        let src = base.join("src");
        fs::create_dir_all(&src).unwrap();
        let mut want = sample(&src);
        let meta = want.remove("metadata.json").unwrap();
        fs::remove_file(src.join("metadata.json")).unwrap();
        // A manifest in the source folder (a downloaded checkpoint) is not copied.
        fs::write(src.join(MANIFEST), b"old").unwrap();
        let mut names: Vec<String> = want.keys().cloned().collect();
        names.push("sub/".into());
        names.push(MANIFEST.into());
        let extra = [(
            "metadata.json".to_owned(),
            b"{\"steps_completed\": 1}".to_vec(),
        )];
        let mut prior = Sums::new();
        prior.insert("from/another/rank".into(), FileSum::of(b"r"));
        let sums = st.upload(&src, &names, &extra, "up", &prior).unwrap();
        want.insert("metadata.json".into(), meta);
        assert_eq!(sums, want);
        let m = Manifest::parse("up", &fs::read(base.join("up").join(MANIFEST)).unwrap()).unwrap();
        want.insert("from/another/rank".into(), FileSum::of(b"r"));
        assert_eq!(m.files, want);
    }
}
