//! The parallel transfer engine of the object-store backends.
//!
//! Uploads: every file of a checkpoint becomes one or more tasks in one queue served by
//! `concurrency` threads — a single PUT for a small file or a directory marker, and for a large
//! file a "begin" task (S3's CreateMultipartUpload) that queues one task per part, the last
//! of which completes the upload. Parts of all files are therefore in flight together. Backends
//! that cannot upload parts in parallel (GCS resumable uploads) get one task per file.
//! On the first failure the remaining tasks are skipped, multipart uploads begun are aborted, and
//! the keys already stored are returned with the error so that the caller can remove them.
//!
//! Downloads: every file is pre-sized, then fetched as ranges of `part_size` bytes by the same
//! kind of pool, each range written at its offset; a connection lost mid-range resumes at the
//! first byte not yet written.
//!
//! Memory stays bounded: bodies are streamed from and to files through fixed buffers, so a
//! transfer holds about `concurrency × 256 KiB` whatever the checkpoint's size.
//!
//! Checksums (for the checkpoint's manifest): an upload sums each request body as it is read to
//! be sent (a part's sum counts once its request succeeded; the parts' sums are combined in
//! order), a download sums each range as it is written (resumed ranges included, each byte once);
//! no byte is read a second time for them.

use super::http::{Body, Failure};
use super::manifest::{FileSum, SumCell};
use super::object_store::ObjectStore;
use super::pool::Pool;
use super::progress::{self, Progress};
use crate::error::{Error, Kind, Result};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// What to store under a key.
#[derive(Debug, Clone)]
pub enum Source {
    /// A local file of the given size.
    File(PathBuf, u64),
    /// A zero-byte directory marker.
    Marker,
    /// Bytes in memory.
    Bytes(Vec<u8>),
}

/// One object to upload.
#[derive(Debug, Clone)]
pub struct Item {
    pub key: String,
    pub source: Source,
}

enum Task {
    Put(usize),
    Begin(usize),
    Part(usize, u32),
}

struct Multipart {
    upload_id: Option<String>,
    etags: Vec<Option<String>>,
    /// The sums of the parts sent, combined in order once all are stored.
    sums: Vec<Option<FileSum>>,
    remaining: usize,
    finished: bool,
}

/// The parts of a file of `size` bytes: (count, part size), growing the part size when the
/// backend's part limit would be exceeded.
pub fn part_layout(size: u64, part_size: u64, max_parts: u64) -> (u64, u64) {
    let mut ps = part_size.max(1);
    while size.div_ceil(ps) > max_parts {
        ps *= 2;
    }
    (size.div_ceil(ps).max(1), ps)
}

/// Largest part size chosen automatically (to bound what a retry re-sends).
const MAX_AUTO_PART: u64 = 512 << 20;

/// The part size for a transfer of files of `sizes` with `concurrency` requests in flight: at
/// least `part_size`, and large enough that the transfer is about `concurrency` requests, so
/// that many files are sent whole (fewer requests, no server-side reassembly) while a few large
/// files are still split to keep every connection busy.
pub fn effective_part_size(
    part_size: u64,
    sizes: impl Iterator<Item = u64>,
    concurrency: usize,
) -> u64 {
    let total: u64 = sizes.sum();
    let share = total.div_ceil(concurrency.max(1) as u64);
    let mib = 1 << 20;
    part_size.max(share.min(MAX_AUTO_PART).div_ceil(mib) * mib)
}

/// What an upload stored: the keys, and with checksums the sum of each item's bytes as sent
/// (index-aligned with the items; `None` for folder markers).
#[derive(Debug, Default)]
pub struct Uploaded {
    pub keys: Vec<String>,
    pub sums: Vec<Option<FileSum>>,
}

/// The sum recorded by `cell` for a body of `size` bytes that was sent.
fn sent_sum(cell: &SumCell, size: u64, key: &str) -> Result<FileSum> {
    match cell.get() {
        Some(crc32c) => Ok(FileSum { size, crc32c }),
        None => Err(Error::new(
            Kind::Internal,
            format!("the checksum of {key} was not computed while it was sent"),
        )),
    }
}

/// Upload `items` in parallel; with `checksums`, each file's CRC32C is computed from the bytes
/// as they are sent (per part for multipart uploads, combined in order). Returns what was
/// stored; on failure, the first error and the keys that were stored before it.
pub fn upload(
    store: &dyn ObjectStore,
    items: &[Item],
    checksums: bool,
) -> std::result::Result<Uploaded, (Error, Vec<String>)> {
    let tuning = store.http().tuning().clone();
    let parallel_parts = store.supports_parts();
    let (min_part, max_parts) = store.part_limits();
    let part_size = effective_part_size(
        tuning.part_size.max(min_part),
        items.iter().map(|it| match &it.source {
            Source::File(_, n) => *n,
            _ => 0,
        }),
        tuning.concurrency,
    );
    let multiparts: Vec<Mutex<Multipart>> = items
        .iter()
        .map(|_| {
            Mutex::new(Multipart {
                upload_id: None,
                etags: Vec::new(),
                sums: Vec::new(),
                remaining: 0,
                finished: false,
            })
        })
        .collect();
    let sums: Vec<Mutex<Option<FileSum>>> = items.iter().map(|_| Mutex::new(None)).collect();
    // Large files first, so that their parts spread over the whole transfer.
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| match &items[i].source {
        Source::File(_, n) => std::cmp::Reverse(*n),
        _ => std::cmp::Reverse(0),
    });
    let tasks: Vec<Task> = order
        .into_iter()
        .map(|i| match &items[i].source {
            Source::File(_, n) if parallel_parts && *n > part_size => Task::Begin(i),
            _ => Task::Put(i),
        })
        .collect();
    // As many threads as there will ever be requests in flight, up to the concurrency.
    let requests: u64 = tasks
        .iter()
        .map(|t| match t {
            Task::Begin(i) => match &items[*i].source {
                Source::File(_, n) => part_layout(*n, part_size, max_parts).0,
                _ => 1,
            },
            _ => 1,
        })
        .sum();
    let threads = tuning.concurrency.min(requests.max(1) as usize);
    let stored: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let total = items
        .iter()
        .map(|it| match &it.source {
            Source::File(_, n) => *n,
            Source::Bytes(b) => b.len() as u64,
            Source::Marker => 0,
        })
        .sum();
    let prog = Progress::new(
        format!(
            "upload to {}",
            store.url(&common_prefix(items.iter().map(|it| &it.key)))
        ),
        total,
    );
    // File bodies are counted as they stream (the HTTP layer counts into the thread's progress).
    let res = Pool::new(tasks).try_run(threads, true, |task, pool| {
        progress::scoped(&prog, || {
            upload_task(
                store,
                items,
                &multiparts,
                &stored,
                &sums,
                checksums,
                &prog,
                part_size,
                max_parts,
                parallel_parts,
                task,
                pool,
            )
        })
    });
    prog.finish(res.is_ok());
    let stored = stored.into_inner();
    match res {
        Ok(()) => Ok(Uploaded {
            keys: stored,
            sums: sums.into_iter().map(Mutex::into_inner).collect(),
        }),
        Err(e) => {
            for (i, m) in multiparts.iter().enumerate() {
                let m = m.lock();
                if let (Some(id), false) = (&m.upload_id, m.finished) {
                    store.abort_parts(&items[i].key, id);
                }
            }
            Err((e, stored))
        }
    }
}

/// The longest common prefix of `keys`, cut after its last `/`: the folder a transfer is about.
fn common_prefix<'a>(mut keys: impl Iterator<Item = &'a String>) -> String {
    let Some(first) = keys.next() else {
        return String::new();
    };
    let mut len = first.len();
    for k in keys {
        len = first
            .bytes()
            .zip(k.bytes())
            .take(len)
            .take_while(|(a, b)| a == b)
            .count();
    }
    let p = &first[..len];
    match p.rfind('/') {
        Some(i) => p[..=i].to_owned(),
        None => String::new(),
    }
}

/// One task of [`upload`].
#[allow(clippy::too_many_arguments)]
fn upload_task(
    store: &dyn ObjectStore,
    items: &[Item],
    multiparts: &[Mutex<Multipart>],
    stored: &Mutex<Vec<String>>,
    sums: &[Mutex<Option<FileSum>>],
    checksums: bool,
    prog: &Progress,
    part_size: u64,
    max_parts: u64,
    parallel_parts: bool,
    task: Task,
    pool: &Pool<Task>,
) -> Result<()> {
    match task {
        Task::Put(i) => {
            let it = &items[i];
            let cell = SumCell::new();
            let cell_ref = checksums.then_some(&cell);
            match &it.source {
                Source::Marker => store.put(&it.key, Body::Empty)?,
                Source::Bytes(b) => {
                    store.put(&it.key, Body::Bytes(b))?;
                    prog.add(b.len() as u64);
                    if checksums {
                        *sums[i].lock() = Some(FileSum::of(b));
                    }
                }
                Source::File(p, n) => {
                    if !parallel_parts && *n > part_size {
                        store.put_large(&it.key, p, *n, cell_ref)?
                    } else {
                        let body = Body::File {
                            path: p,
                            offset: 0,
                            len: *n,
                            sum: cell_ref,
                        };
                        store.put(&it.key, body)?
                    }
                    if checksums {
                        *sums[i].lock() = Some(sent_sum(&cell, *n, &it.key)?);
                    }
                }
            }
            stored.lock().push(it.key.clone());
            Ok(())
        }
        Task::Begin(i) => {
            let it = &items[i];
            let Source::File(_, size) = &it.source else {
                return Ok(());
            };
            let (count, _) = part_layout(*size, part_size, max_parts);
            let id = store.begin_parts(&it.key)?;
            {
                let mut m = multiparts[i].lock();
                m.upload_id = Some(id);
                m.etags = vec![None; count as usize];
                m.sums = vec![None; count as usize];
                m.remaining = count as usize;
            }
            for p in 0..count {
                pool.push(Task::Part(i, p as u32));
            }
            Ok(())
        }
        Task::Part(i, p) => {
            let it = &items[i];
            let Source::File(path, size) = &it.source else {
                return Ok(());
            };
            let (_, ps) = part_layout(*size, part_size, max_parts);
            let offset = p as u64 * ps;
            let len = ps.min(size - offset);
            let upload_id = multiparts[i].lock().upload_id.clone().unwrap_or_default();
            let cell = SumCell::new();
            let body = Body::File {
                path,
                offset,
                len,
                sum: checksums.then_some(&cell),
            };
            let tag = store.put_part(&it.key, &upload_id, p + 1, body)?;
            let part_sum = if checksums {
                Some(sent_sum(&cell, len, &it.key)?)
            } else {
                None
            };
            let complete = {
                let mut m = multiparts[i].lock();
                m.etags[p as usize] = Some(tag);
                m.sums[p as usize] = part_sum;
                m.remaining -= 1;
                (m.remaining == 0).then(|| {
                    let tags = m
                        .etags
                        .iter()
                        .map(|t| t.clone().unwrap_or_default())
                        .collect::<Vec<_>>();
                    let sum = m
                        .sums
                        .iter()
                        .try_fold(FileSum::EMPTY, |acc, s| s.map(|s| acc.then(s)));
                    (tags, sum)
                })
            };
            if let Some((tags, sum)) = complete {
                store.complete_parts(&it.key, &upload_id, &tags, *size)?;
                multiparts[i].lock().finished = true;
                if checksums {
                    *sums[i].lock() = sum;
                }
                stored.lock().push(it.key.clone());
            }
            Ok(())
        }
    }
}

/// One object to download into a local file.
#[derive(Debug, Clone)]
pub struct Fetch {
    pub key: String,
    pub size: u64,
    pub dest: PathBuf,
}

/// Bytes gathered from a response before they are written to the file: the HTTP client hands
/// the body over in pieces of at most 8 KiB (ureq's socket buffer), and one `pwrite` per piece
/// would double the system calls of a download.
const BUF: usize = 256 << 10;

/// Fetch bytes `[start, end)` of `key` into `file` at the same offsets, resuming after a lost
/// connection at the first byte not yet written. Returns the sum of the bytes written (each is
/// written once, in order, whatever the retries), computed when `checksums`.
fn fetch_range(
    store: &dyn ObjectStore,
    f: &Fetch,
    file: &File,
    start: u64,
    end: u64,
    checksums: bool,
    prog: &Progress,
) -> Result<FileSum> {
    let url = store.url(&f.key);
    // `pos`: the first byte not yet written; `buf[..held]` holds the bytes that follow it.
    let mut pos = start;
    let mut buf = vec![0u8; BUF.min((end - start) as usize).max(1)];
    let sum = std::cell::Cell::new(FileSum::EMPTY);
    let write = |buf: &[u8], at: u64| {
        if checksums {
            sum.set(sum.get().append(buf));
        }
        file.write_all_at(buf, at).map_err(|e| {
            Failure::from_io(&format!("cannot write {}", f.dest.display()), &e, true)
        })?;
        prog.add(buf.len() as u64);
        Ok::<(), Failure>(())
    };
    store.http().retry(|_| {
        let resp = store.get(&f.key, Some((pos, end - 1)))?;
        let mut r = resp.into_reader();
        let mut held = 0usize;
        while pos < end {
            let want = buf.len().min((end - pos) as usize);
            let failure = match r.read(&mut buf[held..want]) {
                Ok(0) => Failure::transient(Error::new(
                    Kind::Storage,
                    format!(
                        "{}: GET {url}: the answer ended at byte {} of {end}",
                        store.name(),
                        pos + held as u64
                    ),
                )),
                Ok(n) => {
                    held += n;
                    if held == want {
                        write(&buf[..held], pos)?;
                        pos += held as u64;
                        held = 0;
                    }
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => Failure::from_io(
                    &format!(
                        "{}: GET {url} (at byte {})",
                        store.name(),
                        pos + held as u64
                    ),
                    &e,
                    false,
                ),
            };
            // Keep what arrived, so that the next attempt asks only for the rest.
            write(&buf[..held], pos)?;
            pos += held as u64;
            return Err(failure);
        }
        Ok(())
    })?;
    Ok(sum.get())
}

/// Download `fetches` in parallel (each file pre-sized, then filled by ranges). With
/// `checksums`, returns the sum of each file's bytes as written (index-aligned with `fetches`),
/// from the ranges' sums combined in order.
pub fn download(
    store: &dyn ObjectStore,
    fetches: &[Fetch],
    checksums: bool,
) -> Result<Vec<Option<FileSum>>> {
    let tuning = store.http().tuning().clone();
    let part = effective_part_size(
        tuning.part_size.max(1 << 20),
        fetches.iter().map(|f| f.size),
        tuning.concurrency,
    );
    let mut files = Vec::with_capacity(fetches.len());
    let mut tasks = Vec::new();
    for (i, f) in fetches.iter().enumerate() {
        if let Some(p) = f.dest.parent() {
            fs::create_dir_all(p).map_err(|e| Error::io("cannot create folder", p, e))?;
        }
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&f.dest)
            .map_err(|e| Error::io("cannot create", &f.dest, e))?;
        file.set_len(f.size)
            .map_err(|e| Error::io("cannot size", &f.dest, e))?;
        files.push(file);
        let mut off = 0;
        while off < f.size {
            let end = (off + part).min(f.size);
            tasks.push((i, off, end));
            off = end;
        }
    }
    // Per file, the sums of its ranges by offset (empty files have none).
    let ranges: Vec<Mutex<BTreeMap<u64, FileSum>>> = fetches
        .iter()
        .map(|_| Mutex::new(BTreeMap::new()))
        .collect();
    if !tasks.is_empty() {
        // Nothing but empty files (or nothing selected) needs no threads.
        let threads = tuning.concurrency.min(tasks.len());
        let prog = Progress::new(
            format!(
                "download from {}",
                store.url(&common_prefix(fetches.iter().map(|f| &f.key)))
            ),
            fetches.iter().map(|f| f.size).sum(),
        );
        let res = Pool::new(tasks).try_run(threads, true, |(i, start, end), _| {
            let sum = fetch_range(store, &fetches[i], &files[i], start, end, checksums, &prog)?;
            ranges[i].lock().insert(start, sum);
            Ok(())
        });
        prog.finish(res.is_ok());
        res?;
    }
    Ok(ranges
        .into_iter()
        .map(|r| {
            checksums.then(|| {
                r.into_inner()
                    .into_values()
                    .fold(FileSum::EMPTY, FileSum::then)
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn transfers_are_named_by_their_common_folder() {
        let keys = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let k = keys(&["p/ck1/a/x.bin", "p/ck1/a/y.bin", "p/ck1/metadata.json"]);
        assert_eq!(common_prefix(k.iter()), "p/ck1/");
        let k = keys(&["p/ck1/model.bin"]);
        assert_eq!(common_prefix(k.iter()), "p/ck1/");
        assert_eq!(common_prefix(keys(&["top"]).iter()), "");
        assert_eq!(common_prefix(std::iter::empty()), "");
    }

    #[test]
    fn layout_respects_part_limits() {
        assert_eq!(part_layout(0, 8, 10), (1, 8));
        assert_eq!(part_layout(16, 8, 10), (2, 8));
        assert_eq!(part_layout(17, 8, 10), (3, 8));
        assert_eq!(part_layout(100, 8, 10), (7, 16));
    }

    #[test]
    fn part_size_grows_with_the_transfer() {
        let mib = 1u64 << 20;
        // 16 files of 64 MiB over 16 connections: each file whole.
        assert_eq!(
            effective_part_size(16 * mib, std::iter::repeat_n(64 * mib, 16), 16),
            64 * mib
        );
        // One 1 GiB file: 16 parts of 64 MiB.
        assert_eq!(
            effective_part_size(16 * mib, std::iter::once(1024 * mib), 16),
            64 * mib
        );
        // Small transfers keep the configured size; huge ones are capped.
        assert_eq!(
            effective_part_size(16 * mib, std::iter::once(mib), 16),
            16 * mib
        );
        assert_eq!(
            effective_part_size(16 * mib, std::iter::once(1 << 40), 16),
            512 * mib
        );
    }

    #[test]
    fn a_panicking_task_does_not_hang_the_pool() {
        let pool = Pool::new(0..64u32);
        let ran = std::sync::atomic::AtomicU32::new(0);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.run(4, |t, _| {
                if t == 3 {
                    panic!("task 3 failed");
                }
                ran.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            })
        }));
        let msg = r.expect_err("the panic is re-raised");
        assert_eq!(msg.downcast_ref::<&str>(), Some(&"task 3 failed"));
        assert_eq!(ran.load(std::sync::atomic::Ordering::SeqCst), 63);
    }

    #[test]
    fn pool_runs_spawned_tasks() {
        let pool = Pool::new(0..10u32);
        let sum = AtomicUsize::new(0);
        pool.run(4, |t, p| {
            sum.fetch_add(t as usize, Ordering::SeqCst);
            if t < 10 {
                p.push(t + 100);
            }
        });
        // 0..10 plus 100..110.
        assert_eq!(sum.load(Ordering::SeqCst), 45 + 1045);
    }
}
