//! File-system helpers shared by the storage backends: listing a checkpoint folder the way
//! Determined lists it, durable publication (fsync of files and folders), selective copies.

use crate::error::{Error, Kind, Result};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// A checkpoint's resources: relative name → size in bytes. Folders are listed as `"<rel>/"`
/// with size 0, files as `"<rel>"` (docs/protocol.md#checkpoint-resources).
pub type Resources = BTreeMap<String, u64>;

/// List `root` as Determined's `_list_directory` does: every sub-folder as `"rel/"` (0 bytes),
/// every file as `"rel"` with its size (symlinks followed for sizes; symlinked folders listed but
/// not descended).
pub fn list_resources(root: &Path) -> Result<Resources> {
    let meta =
        fs::metadata(root).map_err(|e| Error::io("cannot list checkpoint folder", root, e))?;
    if !meta.is_dir() {
        return Err(Error::new(
            Kind::Io,
            format!("checkpoint folder {} is not a folder", root.display()),
        ));
    }
    let mut out = Resources::new();
    walk(root, "", &mut out)?;
    Ok(out)
}

fn walk(dir: &Path, prefix: &str, out: &mut Resources) -> Result<()> {
    let rd = fs::read_dir(dir).map_err(|e| Error::io("cannot read folder", dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| Error::io("cannot read folder", dir, e))?;
        let name = entry.file_name();
        let name = name.to_str().ok_or_else(|| {
            Error::new(
                Kind::Io,
                format!("file name {:?} in {} is not UTF-8", name, dir.display()),
            )
        })?;
        let path = entry.path();
        let rel = format!("{prefix}{name}");
        let ft = entry
            .file_type()
            .map_err(|e| Error::io("cannot stat", &path, e))?;
        if ft.is_dir() {
            out.insert(format!("{rel}/"), 0);
            walk(&path, &format!("{rel}/"), out)?;
        } else if ft.is_symlink() {
            let m =
                fs::metadata(&path).map_err(|e| Error::io("cannot follow symlink", &path, e))?;
            if m.is_dir() {
                out.insert(format!("{rel}/"), 0);
            } else {
                out.insert(rel, m.len());
            }
        } else {
            let m = entry
                .metadata()
                .map_err(|e| Error::io("cannot stat", &path, e))?;
            out.insert(rel, m.len());
        }
    }
    Ok(())
}

/// Threads issuing fsyncs in parallel (a file system flushes several files' data at once, and
/// batches their journal commits).
const FSYNC_THREADS: usize = 8;

/// fsync every file and folder under `root` (and `root` itself), so that a rename published
/// afterwards never exposes data that a crash could lose. The fsyncs run in parallel; all have
/// completed when this returns.
pub fn fsync_tree(root: &Path) -> Result<()> {
    let mut paths = Vec::new();
    collect_tree(root, true, &mut paths)?;
    fsync_all(&paths)
}

/// fsync every folder under `root` (and `root` itself), not the files: for a tree whose files
/// were already fsynced when they were written.
pub fn fsync_folders(root: &Path) -> Result<()> {
    let mut paths = Vec::new();
    collect_tree(root, false, &mut paths)?;
    fsync_all(&paths)
}

/// Regular files as (relative name with `/`, path).
pub type NamedFiles = Vec<(String, PathBuf)>;

/// The regular files under `root`, and its folders (`root` included, deepest first), for a pass
/// over a tree about to be published.
pub fn tree_files(root: &Path) -> Result<(NamedFiles, Vec<PathBuf>)> {
    fn walk(
        dir: &Path,
        prefix: &str,
        files: &mut Vec<(String, PathBuf)>,
        dirs: &mut Vec<PathBuf>,
    ) -> Result<()> {
        let rd = fs::read_dir(dir).map_err(|e| Error::io("cannot read folder", dir, e))?;
        for entry in rd {
            let entry = entry.map_err(|e| Error::io("cannot read folder", dir, e))?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_str().ok_or_else(|| {
                Error::new(
                    Kind::Io,
                    format!("file name {:?} in {} is not UTF-8", name, dir.display()),
                )
            })?;
            let rel = format!("{prefix}{name}");
            let ft = entry
                .file_type()
                .map_err(|e| Error::io("cannot stat", &path, e))?;
            if ft.is_dir() {
                walk(&path, &format!("{rel}/"), files, dirs)?;
            } else if ft.is_file() {
                files.push((rel, path));
            }
        }
        dirs.push(dir.to_path_buf());
        Ok(())
    }
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    walk(root, "", &mut files, &mut dirs)?;
    Ok((files, dirs))
}

/// The folders under `root` (and `root`), and with `files` its regular files too.
fn collect_tree(root: &Path, files: bool, out: &mut Vec<PathBuf>) -> Result<()> {
    let rd = fs::read_dir(root).map_err(|e| Error::io("cannot read folder", root, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| Error::io("cannot read folder", root, e))?;
        let path = entry.path();
        let ft = entry
            .file_type()
            .map_err(|e| Error::io("cannot stat", &path, e))?;
        if ft.is_dir() {
            collect_tree(&path, files, out)?;
        } else if files && ft.is_file() {
            out.push(path);
        }
    }
    out.push(root.to_path_buf());
    Ok(())
}

/// fsync `paths` with up to [`FSYNC_THREADS`] threads; the first error is returned once all
/// have been tried.
pub fn fsync_all(paths: &[PathBuf]) -> Result<()> {
    if paths.len() <= 1 {
        return paths.iter().try_for_each(|p| fsync_path(p));
    }
    super::pool::Pool::new(paths.iter())
        .try_run(FSYNC_THREADS.min(paths.len()), false, |p, _| fsync_path(p))
}

/// The process's user id.
pub fn current_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// fsync one file or folder.
pub fn fsync_path(path: &Path) -> Result<()> {
    let f = fs::File::open(path).map_err(|e| Error::io("cannot open for fsync", path, e))?;
    f.sync_all()
        .map_err(|e| Error::io("fsync failed on", path, e))
}

/// Write `data` to `path` durably and atomically: a temporary file beside it, fsync, rename,
/// fsync of the folder. A new file gets mode 0666 less the umask.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    write_atomic_mode(path, data, 0o666)
}

/// Marker in the names of [`write_atomic`]'s temporary files:
/// `.<name>.tmp-<random>-<pid>-<process start>@<host>`, so that a later process can tell one
/// left by a killed writer.
const TMP_MARKER: &str = ".tmp-";

fn temp_owner() -> String {
    let pid = std::process::id();
    format!(
        "{pid}-{}@{}",
        super::lock::process_start(pid).unwrap_or(0),
        crate::host::hostname()
    )
}

/// True if a temporary file name names a writer process of this host that is gone.
fn temp_writer_is_gone(name: &str) -> bool {
    let Some((_, owner)) = name.rsplit_once(TMP_MARKER) else {
        return false;
    };
    let Some((ids, host)) = owner.split_once('@') else {
        return false;
    };
    let mut it = ids.split('-').skip(1);
    let (Some(Ok(pid)), Some(Ok(start))) = (
        it.next().map(str::parse::<u32>),
        it.next().map(str::parse::<u64>),
    ) else {
        return false;
    };
    host == crate::host::hostname() && super::lock::process_start(pid) != Some(start)
}

/// [`write_atomic`] creating the file with `mode` (less the umask). The mode of a file that
/// existed before is replaced too: the rename puts a new file in its place.
pub fn write_atomic_mode(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}{TMP_MARKER}{}-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        uuid::Uuid::new_v4().simple(),
        temp_owner()
    ));
    let res = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| Error::io("cannot write", &tmp, e))?;
        f.write_all(data)
            .map_err(|e| Error::io("cannot write", &tmp, e))?;
        f.sync_all()
            .map_err(|e| Error::io("fsync failed on", &tmp, e))?;
        drop(f);
        fs::rename(&tmp, path).map_err(|e| Error::io("cannot rename into place", path, e))?;
        fsync_path(dir)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Remove the temporary files that [`write_atomic`] left in `dir` when its process was killed
/// between writing and renaming: those whose writer was a process of this host that is gone,
/// and (other hosts') those older than `min_age` (a write takes milliseconds, so an old one has
/// no live writer). Returns how many were removed.
pub fn remove_stale_temp_files(dir: &Path, min_age: std::time::Duration) -> usize {
    let Ok(rd) = fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with('.') || !name.contains(TMP_MARKER) {
            continue;
        }
        let Some(m) = e.metadata().ok().filter(|m| m.is_file()) else {
            continue;
        };
        let old = m
            .modified()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= min_age);
        if (old || temp_writer_is_gone(name)) && fs::remove_file(e.path()).is_ok() {
            n += 1;
        }
    }
    n
}

/// Who may write the folders detcore creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modes {
    /// Determined's on a cluster's shared file system: mode 0777 whatever the umask, as
    /// `os.makedirs(base, 0o777)` under `umask(0)` — without touching the process-wide umask.
    Shared,
    /// The process's umask decides (off-cluster: the user's choice).
    Umask,
}

/// Create `dir` and its parents with [`Modes`].
pub fn create_dir_all_modes(dir: &Path, modes: Modes) -> Result<()> {
    match modes {
        Modes::Shared => create_dir_all_0777(dir),
        Modes::Umask => {
            fs::create_dir_all(dir).map_err(|e| Error::io("cannot create folder", dir, e))
        }
    }
}

/// Create `dir` and its parents; new folders get mode 0777 regardless of the umask, as
/// Determined's `os.makedirs(base, 0o777)` under `umask(0)` — but without touching the
/// process-wide umask.
pub fn create_dir_all_0777(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        if !parent.as_os_str().is_empty() {
            create_dir_all_0777(parent)?;
        }
    }
    match fs::create_dir(dir) {
        Ok(()) => {
            use std::os::unix::fs::PermissionsExt;
            let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o777));
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(Error::io("cannot create folder", dir, e)),
    }
}

/// Create `dir` (under `root`, which must exist or is created with the umask) so that no other
/// user can write it: new folders from `root` down get mode 0775 less the umask, never writable
/// by others even with umask 0. An existing folder of this user that others can write is
/// corrected (`chmod o-w`, logged); one of another user is reported in a warning.
pub fn create_dir_all_no_other_write(root: &Path, dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    fs::create_dir_all(root).map_err(|e| Error::io("cannot create folder", root, e))?;
    let rel = dir.strip_prefix(root).unwrap_or(Path::new(""));
    let mut cur = root.to_path_buf();
    for comp in rel.components() {
        cur.push(comp);
        match fs::DirBuilder::new().mode(0o775).create(&cur) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("cannot create folder", &cur, e)),
        }
        let m = fs::metadata(&cur).map_err(|e| Error::io("cannot stat", &cur, e))?;
        let mode = m.permissions().mode();
        if mode & 0o002 != 0 {
            if m.uid() == current_uid()
                && fs::set_permissions(&cur, fs::Permissions::from_mode(mode & !0o002)).is_ok()
            {
                log_info!(
                    "{} was writable by every user; made it writable by its owner and group only (the run index there decides which checkpoint a run resumes from)",
                    cur.display()
                );
            } else {
                log_warn!(
                    "{} is writable by every user (owner uid {}): anyone can change the run index there and choose which checkpoint the run resumes from; ask its owner to run `chmod o-w` on it",
                    cur.display(),
                    m.uid()
                );
            }
        }
    }
    Ok(())
}

/// Copy the tree `src` into `dst` (created as needed), keeping what `selector` accepts. A file is
/// copied when `selector("rel")` is true; a folder is created when `selector("rel/")` is true or
/// anything inside it is copied (Determined's selective `copytree`). Returns the names copied.
pub fn copy_selected(
    src: &Path,
    dst: &Path,
    selector: &mut dyn FnMut(&str) -> bool,
) -> Result<Vec<String>> {
    copy_selected_with(src, dst, selector, &mut |from, to, _| {
        copy_file(from, to).map(|_| ())
    })
}

/// [`copy_selected`] with `copy(from, to, rel)` copying each file.
pub fn copy_selected_with(
    src: &Path,
    dst: &Path,
    selector: &mut dyn FnMut(&str) -> bool,
    copy: &mut dyn FnMut(&Path, &Path, &str) -> Result<()>,
) -> Result<Vec<String>> {
    let mut copied = Vec::new();
    copy_rec(src, dst, "", selector, copy, &mut copied)?;
    Ok(copied)
}

fn copy_rec(
    src: &Path,
    dst: &Path,
    prefix: &str,
    selector: &mut dyn FnMut(&str) -> bool,
    copy: &mut dyn FnMut(&Path, &Path, &str) -> Result<()>,
    copied: &mut Vec<String>,
) -> Result<bool> {
    let mut entries: Vec<_> = fs::read_dir(src)
        .map_err(|e| Error::io("cannot read folder", src, e))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::io("cannot read folder", src, e))?;
    entries.sort_by_key(|e| e.file_name());
    let mut any = false;
    for entry in entries {
        let name = entry.file_name();
        let name = name.to_str().ok_or_else(|| {
            Error::new(
                Kind::Io,
                format!("file name {:?} in {} is not UTF-8", name, src.display()),
            )
        })?;
        let from = entry.path();
        let to = dst.join(name);
        let rel = format!("{prefix}{name}");
        let is_dir = fs::metadata(&from)
            .map_err(|e| Error::io("cannot stat", &from, e))?
            .is_dir();
        if is_dir {
            let dir_rel = format!("{rel}/");
            let wanted = selector(&dir_rel);
            if wanted {
                fs::create_dir_all(&to).map_err(|e| Error::io("cannot create folder", &to, e))?;
            }
            let inner = copy_rec(&from, &to, &dir_rel, selector, copy, copied)?;
            if wanted || inner {
                copied.push(dir_rel);
                any = true;
            }
        } else if selector(&rel) {
            fs::create_dir_all(dst).map_err(|e| Error::io("cannot create folder", dst, e))?;
            copy(&from, &to, &rel)?;
            copied.push(rel);
            any = true;
        }
    }
    Ok(any)
}

/// Copy one file (the kernel's `copy_file_range` where the file system supports it).
pub fn copy_file(from: &Path, to: &Path) -> Result<u64> {
    fs::copy(from, to).map_err(|e| {
        Error::new(
            Kind::Io,
            format!("cannot copy {} to {}: {e}", from.display(), to.display()),
        )
    })
}

/// Remove a folder tree, ignoring "not found".
pub fn remove_tree(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("cannot remove", path, e)),
    }
}

/// A path under `root` for the relative name `rel` (which uses `/`), refusing anything that
/// could land outside `root`: absolute names, `..` components, NUL bytes, empty names.
pub fn safe_join(root: &Path, rel: &str) -> Result<PathBuf> {
    let trimmed = rel.trim_end_matches('/');
    if trimmed.is_empty() {
        return Err(Error::new(
            Kind::Storage,
            format!("refusing empty object name {rel:?}"),
        ));
    }
    if rel.starts_with('/') || rel.contains('\0') || rel.contains('\\') {
        return Err(Error::new(
            Kind::Storage,
            format!(
                "refusing unsafe object name {rel:?}: it could escape {}",
                root.display()
            ),
        ));
    }
    let mut out = root.to_path_buf();
    for comp in trimmed.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                return Err(Error::new(
                    Kind::Storage,
                    format!(
                        "refusing unsafe object name {rel:?}: \"..\" would escape {}",
                        root.display()
                    ),
                ))
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> crate::testutil::TempDir {
        crate::testutil::TempDir::new("fsutil")
    }

    #[test]
    fn lists_like_determined() {
        let td = tmp();
        let d = td.path().to_path_buf();
        fs::create_dir_all(d.join("a/b")).unwrap();
        fs::write(d.join("a/b/x.bin"), b"12345").unwrap();
        fs::write(d.join("top"), b"").unwrap();
        fs::create_dir(d.join("empty")).unwrap();
        let r = list_resources(&d).unwrap();
        let want: Resources = [
            ("a/", 0),
            ("a/b/", 0),
            ("a/b/x.bin", 5),
            ("empty/", 0),
            ("top", 0),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
        assert_eq!(r, want);
        assert!(list_resources(&d.join("nope")).is_err());
        assert!(list_resources(&d.join("top")).is_err());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn selective_copy() {
        let src_td = tmp();
        let src = src_td.path().to_path_buf();
        let dst_td = tmp();
        let dst = dst_td.path().join("out");
        fs::create_dir_all(src.join("keep/deep")).unwrap();
        fs::create_dir_all(src.join("skip")).unwrap();
        fs::create_dir_all(src.join("emptykeep")).unwrap();
        fs::write(src.join("keep/deep/w"), b"w").unwrap();
        fs::write(src.join("skip/s"), b"s").unwrap();
        fs::write(src.join("root.txt"), b"r").unwrap();
        let mut sel =
            |p: &str| p.starts_with("keep/deep/w") || p == "emptykeep/" || p == "root.txt";
        let mut copied = copy_selected(&src, &dst, &mut sel).unwrap();
        copied.sort();
        assert_eq!(
            copied,
            [
                "emptykeep/",
                "keep/",
                "keep/deep/",
                "keep/deep/w",
                "root.txt"
            ]
        );
        assert!(dst.join("keep/deep/w").is_file());
        assert!(dst.join("emptykeep").is_dir());
        assert!(!dst.join("skip").exists());
    }

    #[test]
    fn safe_join_refuses_escapes() {
        let root = Path::new("/dst");
        assert_eq!(
            safe_join(root, "a/b/c").unwrap(),
            PathBuf::from("/dst/a/b/c")
        );
        assert_eq!(
            safe_join(root, "a/./b/").unwrap(),
            PathBuf::from("/dst/a/b")
        );
        for bad in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "",
            "/",
            "a\0b",
            "..",
            "a\\..\\b",
        ] {
            assert!(safe_join(root, bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn fsyncs_cover_the_tree_and_report_failures() {
        let td = tmp();
        let d = td.path().to_path_buf();
        fs::create_dir_all(d.join("a/b")).unwrap();
        for (i, name) in ["x", "a/y", "a/b/z"].iter().enumerate() {
            fs::write(d.join(name), vec![i as u8; 1000]).unwrap();
        }
        let mut all = Vec::new();
        collect_tree(&d, true, &mut all).unwrap();
        let rel = |v: &[PathBuf]| {
            let mut r: Vec<String> = v
                .iter()
                .map(|p| p.strip_prefix(&d).unwrap().to_string_lossy().into_owned())
                .collect();
            r.sort();
            r
        };
        assert_eq!(rel(&all), ["", "a", "a/b", "a/b/z", "a/y", "x"]);
        let mut dirs = Vec::new();
        collect_tree(&d, false, &mut dirs).unwrap();
        assert_eq!(rel(&dirs), ["", "a", "a/b"]);
        fsync_tree(&d).unwrap();
        fsync_folders(&d).unwrap();
        // One missing path among many: the others are still fsynced, the error names it.
        let mut paths = all.clone();
        paths.insert(2, d.join("gone"));
        let e = fsync_all(&paths).unwrap_err();
        assert!(e.message().contains("gone"), "{e}");
        assert!(fsync_tree(&d.join("gone")).is_err());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn atomic_write_replaces() {
        let td = tmp();
        let d = td.path().to_path_buf();
        let p = d.join("f.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1);
    }

    #[test]
    fn atomic_write_modes_and_stale_temp_files() {
        use std::os::unix::fs::PermissionsExt;
        let td = tmp();
        let d = td.path().to_path_buf();
        let p = d.join("index.json");
        write_atomic_mode(&p, b"x", 0o664).unwrap();
        let mode = fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o002, 0, "{mode:o}");
        // A temporary file of a killed writer (and a file that only looks similar).
        let stale = d.join(".index.json.tmp-abc-1-1@elsewhere");
        fs::write(&stale, b"partial").unwrap();
        fs::write(d.join("keep.tmp-1"), b"").unwrap();
        // A live writer's (this process).
        let live = d.join(format!(".index.json.tmp-abc-{}", temp_owner()));
        fs::write(&live, b"partial").unwrap();
        assert_eq!(
            remove_stale_temp_files(&d, std::time::Duration::from_secs(3600)),
            0
        );
        // A dead writer of this host goes at once.
        let dead = d.join(format!(
            ".index.json.tmp-abc-{}-1@{}",
            u32::MAX - 7,
            crate::host::hostname()
        ));
        fs::write(&dead, b"partial").unwrap();
        assert_eq!(
            remove_stale_temp_files(&d, std::time::Duration::from_secs(3600)),
            1
        );
        assert!(!dead.exists() && live.exists());
        fs::remove_file(&live).unwrap();
        assert_eq!(remove_stale_temp_files(&d, std::time::Duration::ZERO), 1);
        assert!(!stale.exists() && p.exists() && d.join("keep.tmp-1").exists());
    }

    #[test]
    fn folders_no_other_user_can_write() {
        use std::os::unix::fs::PermissionsExt;
        let td = tmp();
        let root = td.path().to_path_buf();
        let open = root.join("a");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        create_dir_all_no_other_write(&root, &root.join("a/b/c")).unwrap();
        for p in ["a", "a/b", "a/b/c"] {
            let mode = fs::metadata(root.join(p)).unwrap().permissions().mode();
            assert_eq!(mode & 0o002, 0, "{p}: {mode:o}");
        }
    }
}
