//! Scratch folders that detcore makes and must always remove: the staging folder of a checkpoint
//! being written, the trash of a checkpoint being deleted, a temporary restore.
//!
//! Every such folder `<area>/<name>` has an owner lock file `<area>/<name>.lock`, created and
//! locked (`flock`, shared: the ranks of a sharded checkpoint on one file system all hold it)
//! *before* the folder exists, and held until the folder is gone:
//! - while the process lives, [`Scratch`] removes its folder when dropped — on success the folder
//!   was already moved away (published), on every failure path it is removed;
//! - a process that dies (`kill -9`, a crash, a node reboot) loses its locks, and the next
//!   [`Area::sweep`] (at every `det_core_init`) removes each folder whose lock nobody holds.
//!   A folder whose owner still lives is never touched.
//!
//! On a file system without locks the lock file names its owner (host, pid, process start time):
//! the sweep then removes only folders whose owner was a process of this host that is gone.
//! Folders without a lock file (made by something else) are left alone and counted in a log line.

use super::fsutil::current_uid;
use super::lock::{self, Locked, Mode};
use crate::error::{Error, Kind, Result};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Suffix of an owner lock file.
const LOCK_SUFFIX: &str = ".lock";

/// How the area folder itself is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AreaKind {
    /// Shared by every user of a cluster's file system (Determined's shared_fs): mode 1777 (like
    /// `/tmp`: anyone may create, only the owner may remove or rename).
    Shared,
    /// Created with the process's umask.
    Umask,
    /// This user's alone, in a folder others can write (`$TMPDIR`): mode 0700, and an existing
    /// folder must be a real folder owned by this user.
    Private,
}

/// A folder holding scratch folders.
#[derive(Debug, Clone)]
pub struct Area {
    root: PathBuf,
    kind: AreaKind,
}

/// A scratch folder owned by this process: removed (with its lock file) when dropped, whatever
/// is still in it.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
    lock_path: PathBuf,
    lock: Option<File>,
}

fn storage_err(e: Error) -> Error {
    Error::new(Kind::Storage, e.message().to_owned())
}

/// `host pid start`: who owns a scratch folder, for file systems without locks.
fn owner_line() -> String {
    let pid = std::process::id();
    format!(
        "{} {pid} {}\n",
        crate::host::hostname(),
        lock::process_start(pid).unwrap_or(0)
    )
}

/// True if the owner named by a lock file's `text` is a process of this host that is gone.
fn owner_is_gone(text: &str) -> bool {
    let mut it = text.split_whitespace();
    let (Some(host), Some(pid), Some(start)) = (it.next(), it.next(), it.next()) else {
        return false;
    };
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
        return false;
    };
    host == crate::host::hostname() && lock::process_start(pid) != Some(start)
}

/// The size of everything under `p` (for log lines).
fn tree_bytes(p: &Path) -> u64 {
    let Ok(m) = fs::symlink_metadata(p) else {
        return 0;
    };
    if !m.is_dir() {
        return m.len();
    }
    fs::read_dir(p)
        .map(|rd| rd.flatten().map(|e| tree_bytes(&e.path())).sum())
        .unwrap_or(0)
}

/// Remove a folder tree that another process may be removing at the same time.
fn remove_tree_tolerant(p: &Path) -> std::io::Result<()> {
    for _ in 0..3 {
        match fs::remove_dir_all(p) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                if !p.exists() {
                    return Ok(());
                }
                if e.kind() == std::io::ErrorKind::PermissionDenied {
                    return Err(e);
                }
            }
        }
    }
    match fs::remove_dir_all(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn same_file(f: &File, path: &Path) -> bool {
    match (f.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

impl Area {
    /// An area rooted at `root` (created on first use).
    pub fn new(root: PathBuf, kind: AreaKind) -> Area {
        Area { root, kind }
    }

    /// The area folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn ensure_root(&self) -> Result<()> {
        match self.kind {
            AreaKind::Shared => {
                super::fsutil::create_dir_all_modes(&self.root, super::fsutil::Modes::Shared)?;
                // Sticky, like /tmp: other users' processes may not remove a live folder.
                if let Ok(m) = fs::metadata(&self.root) {
                    if m.uid() == current_uid() && m.permissions().mode() & 0o7777 != 0o1777 {
                        let _ = fs::set_permissions(&self.root, fs::Permissions::from_mode(0o1777));
                    }
                }
                Ok(())
            }
            AreaKind::Umask => {
                super::fsutil::create_dir_all_modes(&self.root, super::fsutil::Modes::Umask)
            }
            AreaKind::Private => {
                if let Some(parent) = self.root.parent() {
                    fs::create_dir_all(parent)
                        .map_err(|e| Error::io("cannot create folder", parent, e))?;
                }
                match fs::DirBuilder::new().mode(0o700).create(&self.root) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let m = fs::symlink_metadata(&self.root)
                            .map_err(|e| Error::io("cannot stat", &self.root, e))?;
                        if !m.is_dir() || m.uid() != current_uid() || m.mode() & 0o022 != 0 {
                            return Err(Error::new(
                                Kind::Storage,
                                format!(
                                    "refusing the scratch folder {}: it must be a folder owned by this user (uid {}) that no one else can write; remove it or set temp_dir",
                                    self.root.display(),
                                    current_uid()
                                ),
                            ));
                        }
                        Ok(())
                    }
                    Err(e) => Err(Error::io("cannot create folder", &self.root, e)),
                }
            }
        }
    }

    /// Take ownership of the scratch folder `name` without creating it (e.g. to rename
    /// something into it).
    pub fn claim(&self, name: &str) -> Result<Scratch> {
        self.ensure_root().map_err(storage_err)?;
        let path = self.root.join(name);
        let lock_path = self.root.join(format!("{name}{LOCK_SUFFIX}"));
        for _ in 0..20 {
            let f = match OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .open(&lock_path)
            {
                Ok(f) => f,
                // Another user's lock (a sharded checkpoint's shared staging): read-only works.
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    File::open(&lock_path)
                        .map_err(|e| storage_err(Error::io("cannot open", &lock_path, e)))?
                }
                // The area was just removed as empty by another process's last scratch folder.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    self.ensure_root().map_err(storage_err)?;
                    continue;
                }
                Err(e) => {
                    return Err(storage_err(Error::io(
                        "cannot create lock file",
                        &lock_path,
                        e,
                    )))
                }
            };
            let locked = lock::lock_within(&f, Mode::Shared, Duration::from_secs(5))
                .map_err(|e| storage_err(Error::io("cannot lock", &lock_path, e)))?;
            match locked {
                Locked::Yes => {
                    // A sweep may have removed an orphaned lock file between open and lock.
                    if !same_file(&f, &lock_path) {
                        continue;
                    }
                    if f.metadata().map(|m| m.len() == 0).unwrap_or(false) {
                        let _ = (&f).write_all(owner_line().as_bytes());
                    }
                    return Ok(Scratch {
                        path,
                        lock_path,
                        lock: Some(f),
                    });
                }
                Locked::Unsupported(e) => {
                    log_debug!(
                        "{}: no file locks here ({e}); the lock file names the owner instead",
                        lock_path.display()
                    );
                    let _ = f.set_len(0);
                    let _ = (&f).write_all(owner_line().as_bytes());
                    return Ok(Scratch {
                        path,
                        lock_path,
                        lock: None,
                    });
                }
                Locked::Busy => continue,
            }
        }
        Err(Error::new(
            Kind::Storage,
            format!(
                "cannot take the lock {}: another process holds it",
                lock_path.display()
            ),
        ))
    }

    /// Take ownership of the scratch folder `name` and create it (an existing one, e.g. the
    /// shared staging folder of a sharded checkpoint, is kept).
    pub fn create(&self, name: &str) -> Result<Scratch> {
        let s = self.claim(name)?;
        fs::create_dir_all(&s.path).map_err(|e| {
            Error::new(
                Kind::Storage,
                format!("cannot create folder {}: {e}", s.path.display()),
            )
        })?;
        Ok(s)
    }

    /// Remove the scratch folders of processes that ended without removing them. Returns how
    /// many folders were removed and their size.
    pub fn sweep(&self) -> (usize, u64) {
        let Ok(rd) = fs::read_dir(&self.root) else {
            return (0, 0);
        };
        let names: Vec<String> = rd
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .collect();
        let (mut removed, mut bytes, mut unowned) = (0usize, 0u64, 0usize);
        for name in &names {
            if let Some(folder) = name.strip_suffix(LOCK_SUFFIX) {
                // A lock file whose folder is gone (its owner died after removing the folder).
                if !names.iter().any(|n| n == folder) {
                    self.remove_if_unowned(folder, false);
                }
                continue;
            }
            if !names.contains(&format!("{name}{LOCK_SUFFIX}")) {
                unowned += 1;
                continue;
            }
            if let Some(b) = self.remove_if_unowned(name, true) {
                removed += 1;
                bytes += b;
            }
        }
        if removed > 0 {
            log_info!(
                "removed {removed} folder(s) ({:.1} MB) left in {} by processes that ended without cleaning up (interrupted checkpoints)",
                bytes as f64 / 1e6,
                self.root.display()
            );
        }
        // Nothing left: the area goes too (a later claim makes it again).
        let _ = fs::remove_dir(&self.root);
        if unowned > 0 {
            log_info!(
                "{unowned} folder(s) in {} have no owner lock (made by another program or an older detcore); they are left alone: remove them by hand once nothing uses them",
                self.root.display()
            );
        }
        (removed, bytes)
    }

    /// Remove scratch folder `name` (and its lock file) if no live process owns it; returns its
    /// size when a folder was removed.
    fn remove_if_unowned(&self, name: &str, has_folder: bool) -> Option<u64> {
        let path = self.root.join(name);
        let lock_path = self.root.join(format!("{name}{LOCK_SUFFIX}"));
        let mut f = File::open(&lock_path).ok()?;
        match lock::try_lock(&f, Mode::Exclusive) {
            Ok(Locked::Yes) => {
                if !same_file(&f, &lock_path) {
                    return None;
                }
            }
            Ok(Locked::Unsupported(_)) => {
                let mut text = String::new();
                let _ = f.read_to_string(&mut text);
                if !owner_is_gone(&text) {
                    return None;
                }
            }
            Ok(Locked::Busy) | Err(_) => return None,
        }
        let size = if has_folder { tree_bytes(&path) } else { 0 };
        if let Err(e) = remove_tree_tolerant(&path) {
            log_debug!("cannot remove the stale folder {}: {e}", path.display());
            return None;
        }
        let _ = fs::remove_file(&lock_path);
        has_folder.then_some(size)
    }
}

impl Scratch {
    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Remove the folder now (what dropping does), reporting a failure.
    pub fn remove(self) -> Result<()> {
        let r =
            remove_tree_tolerant(&self.path).map_err(|e| Error::io("cannot remove", &self.path, e));
        drop(self);
        r
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = remove_tree_tolerant(&self.path) {
            log_warn!(
                "could not remove the scratch folder {}: {e}",
                self.path.display()
            );
        }
        match self.lock.take() {
            // The last holder (an exclusive lock is free) removes the lock file.
            Some(f) => {
                if matches!(lock::try_lock(&f, Mode::Exclusive), Ok(Locked::Yes))
                    && same_file(&f, &self.lock_path)
                {
                    let _ = fs::remove_file(&self.lock_path);
                }
            }
            None => {
                let _ = fs::remove_file(&self.lock_path);
            }
        }
        // The last scratch folder of the area takes the (then empty) area with it, so that
        // nothing of detcore stays in $TMPDIR or the storage base.
        if let Some(root) = self.lock_path.parent() {
            let _ = fs::remove_dir(root);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_scratch_is_removed_with_its_lock() {
        let d = crate::testutil::TempDir::new("staging");
        let area = Area::new(d.path().join("area"), AreaKind::Umask);
        let s = area.create("x").unwrap();
        fs::write(s.path().join("f"), b"data").unwrap();
        assert!(d.path().join("area/x.lock").is_file());
        // A sweep leaves a live owner's folder alone.
        assert_eq!(area.sweep(), (0, 0));
        assert!(s.path().is_dir());
        drop(s);
        assert!(!area.root().exists(), "the empty area is removed");
    }

    #[test]
    fn shared_holders_keep_the_lock_file_until_the_last_one() {
        let d = crate::testutil::TempDir::new("staging");
        let area = Area::new(d.path().join("area"), AreaKind::Umask);
        let a = area.create("x").unwrap();
        let b = area.create("x").unwrap();
        // The folder moves away (published); the first holder's drop keeps the lock file.
        fs::rename(a.path(), d.path().join("published")).unwrap();
        drop(a);
        assert!(d.path().join("area/x.lock").exists());
        drop(b);
        assert!(!d.path().join("area").exists());
        assert!(d.path().join("published").is_dir());
    }

    #[test]
    fn sweep_removes_dead_owners_folders_only() {
        let d = crate::testutil::TempDir::new("staging");
        let root = d.path().join("area");
        let area = Area::new(root.clone(), AreaKind::Umask);
        // A dead owner: a folder and an unlocked lock file (as after kill -9).
        fs::create_dir_all(root.join("dead/sub")).unwrap();
        fs::write(root.join("dead/sub/f"), vec![0u8; 1000]).unwrap();
        fs::write(root.join("dead.lock"), b"host 1 1\n").unwrap();
        // An orphaned lock file, and a folder without lock (someone else's).
        fs::write(root.join("gone.lock"), b"").unwrap();
        fs::create_dir_all(root.join("foreign")).unwrap();
        let live = area.create("live").unwrap();
        assert_eq!(area.sweep(), (1, 1000));
        let mut left: Vec<String> = fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["foreign", "live", "live.lock"]);
        drop(live);
    }

    #[test]
    fn owner_lines_name_dead_processes_of_this_host() {
        let me = owner_line();
        assert!(!owner_is_gone(&me));
        let host = crate::host::hostname();
        assert!(owner_is_gone(&format!("{host} {} 1", u32::MAX - 7)));
        // Same pid, other start time: the pid was reused.
        assert!(owner_is_gone(&format!("{host} {} 1", std::process::id())));
        assert!(!owner_is_gone(&format!("other-host-x {} 1", u32::MAX - 7)));
        assert!(!owner_is_gone("garbage"));
    }

    #[test]
    fn private_area_refuses_a_foreign_or_open_folder() {
        let d = crate::testutil::TempDir::new("staging");
        let root = d.path().join("p");
        fs::create_dir(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o777)).unwrap();
        let e = Area::new(root.clone(), AreaKind::Private)
            .create("x")
            .unwrap_err();
        assert!(e.message().contains("no one else can write"), "{e}");
        fs::remove_dir(&root).unwrap();
        std::os::unix::fs::symlink(d.path(), &root).unwrap();
        assert!(Area::new(root.clone(), AreaKind::Private)
            .create("x")
            .is_err());
        fs::remove_file(&root).unwrap();
        let s = Area::new(root.clone(), AreaKind::Private)
            .create("x")
            .unwrap();
        assert_eq!(fs::metadata(&root).unwrap().mode() & 0o777, 0o700);
        drop(s);
    }
}
