//! An event-file writer: what TensorFlow's `EventFileWriter` / PyTorch's `SummaryWriter` do for
//! scalars and histograms, without either.
//!
//! Events are buffered and written by [`EventWriter::flush`] in one `write` of whole records, so a
//! reader polling the file never sees a torn record (at most the start of one, which TensorBoard
//! reads again later). Files are named as PyTorch names them,
//! `events.out.tfevents.<%010d unix seconds>.<hostname>.<pid>.<n>` — the pid and the per-process
//! counter `n` make names unique even when several processes or writers start in the same
//! second — and begin with the `file_version = "brain.Event:2"` record. A file is created lazily
//! at the first flush that has events, so a writer that never writes leaves no header-only file
//! behind (Python's does, and uploads it).
//!
//! Rotation: Determined's Python writer closes the file and starts a new one whenever the
//! wall-clock second changed since the previous flush, i.e. up to one file per second. detcore's
//! names cannot collide, so it rotates when the file is [`ROTATE_AGE`] old or
//! [`ROTATE_BYTES`] large: each re-upload of the growing file stays small, and a long run does
//! not leave tens of thousands of files.

use super::proto::{self, Histogram, SummaryValue};
use super::record::append_record;
use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A file is closed and a new one started when it is this old...
pub const ROTATE_AGE: Duration = Duration::from_secs(60);
/// ... or this large.
pub const ROTATE_BYTES: u64 = 1 << 20;

static FILE_COUNTER: AtomicU64 = AtomicU64::new(0);

struct Open {
    file: File,
    path: PathBuf,
    created: SystemTime,
    len: u64,
}

/// Writes summary events into a folder.
pub struct EventWriter {
    dir: PathBuf,
    hostname: String,
    file: Option<Open>,
    buf: Vec<u8>,
    rotate_age: Duration,
    rotate_bytes: u64,
}

fn epoch(t: SystemTime) -> f64 {
    crate::time::epoch_seconds(t)
}

impl EventWriter {
    /// A writer for `dir` (created at the first flush).
    pub fn new(dir: &Path) -> EventWriter {
        EventWriter {
            dir: dir.to_path_buf(),
            hostname: crate::host::hostname(),
            file: None,
            buf: Vec::with_capacity(4096),
            rotate_age: ROTATE_AGE,
            rotate_bytes: ROTATE_BYTES,
        }
    }

    /// Change the rotation limits (tests).
    pub fn set_rotation(&mut self, age: Duration, bytes: u64) {
        self.rotate_age = age;
        self.rotate_bytes = bytes;
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file being written, if one is open.
    pub fn current_file(&self) -> Option<&Path> {
        self.file.as_ref().map(|f| f.path.as_path())
    }

    /// Queue a scalar (stored as `float32`, as TensorFlow does). NaN and ±Inf are kept.
    pub fn add_scalar(&mut self, tag: &str, value: f64, step: i64, time: SystemTime) {
        let ev = proto::encode_summary_event(
            epoch(time),
            step,
            &[SummaryValue::Scalar(tag, value as f32)],
        );
        append_record(&mut self.buf, &ev);
    }

    /// Queue several scalars of one step as one event.
    pub fn add_scalars(&mut self, values: &[(&str, f64)], step: i64, time: SystemTime) {
        if values.is_empty() {
            return;
        }
        let vals: Vec<SummaryValue<'_>> = values
            .iter()
            .map(|(t, v)| SummaryValue::Scalar(t, *v as f32))
            .collect();
        let ev = proto::encode_summary_event(epoch(time), step, &vals);
        append_record(&mut self.buf, &ev);
    }

    /// Queue the histogram of `values` (non-finite values are not counted).
    pub fn add_histogram(&mut self, tag: &str, values: &[f64], step: i64, time: SystemTime) {
        let h = Histogram::of(values);
        let ev =
            proto::encode_summary_event(epoch(time), step, &[SummaryValue::Histogram(tag, &h)]);
        append_record(&mut self.buf, &ev);
    }

    /// True when events wait to be flushed.
    pub fn has_pending(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Bytes of events waiting to be flushed.
    pub fn pending_bytes(&self) -> usize {
        self.buf.len()
    }

    fn open_new(&mut self, now: SystemTime) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| crate::error::Error::io("cannot create folder", &self.dir, e))?;
        let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        loop {
            let n = FILE_COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = self.dir.join(format!(
                "events.out.tfevents.{secs:010}.{}.{}.{n}",
                self.hostname,
                std::process::id()
            ));
            match OpenOptions::new().append(true).create_new(true).open(&path) {
                Ok(mut file) => {
                    let mut header = Vec::with_capacity(48);
                    append_record(&mut header, &proto::encode_file_version_event(epoch(now)));
                    file.write_all(&header)
                        .map_err(|e| Error::io("tensorboard: cannot write", &path, e))?;
                    self.file = Some(Open {
                        file,
                        path,
                        created: now,
                        len: header.len() as u64,
                    });
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io("tensorboard: cannot create", &path, e)),
            }
        }
    }

    /// Write the queued events: rotate if the file is due, create one if needed, and append
    /// everything in one write.
    pub fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let now = SystemTime::now();
        if let Some(f) = &self.file {
            let age = now.duration_since(f.created).unwrap_or_default();
            if age >= self.rotate_age || f.len >= self.rotate_bytes {
                self.file = None;
            }
        }
        if self.file.is_none() {
            self.open_new(now)?;
        }
        let Some(f) = self.file.as_mut() else {
            return Ok(());
        };
        match f.file.write_all(&self.buf) {
            Ok(()) => {
                f.len += self.buf.len() as u64;
                self.buf.clear();
                Ok(())
            }
            Err(e) => {
                // The file may now end inside a record; start a new file next time so that the
                // events already written stay readable.
                let path = f.path.clone();
                self.file = None;
                self.buf.clear();
                Err(Error::io("tensorboard: cannot write", &path, e))
            }
        }
    }

    /// Flush and close the current file.
    pub fn close(&mut self) -> Result<()> {
        let r = self.flush();
        if let Some(f) = self.file.take() {
            let _ = f.file.sync_all();
        }
        r
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// A [`PacedWriter`] writes its buffered events once this much waits ...
pub const PACED_FLUSH_BYTES: usize = 64 * 1024;
/// ... or at the first event added this long after its previous write.
pub const PACED_FLUSH_AFTER: Duration = Duration::from_secs(1);

/// An [`EventWriter`] for a caller's own events (`det_tb_writer_*`), with the flush policy of
/// a writer that has no thread of its own: each add writes the buffered events when
/// [`PACED_FLUSH_BYTES`] wait or [`PACED_FLUSH_AFTER`] has passed since the previous write, so
/// a burst of adds costs one `write` per second at most, while the last events of a burst wait
/// for the next add, [`PacedWriter::flush`] or [`PacedWriter::close`].
pub struct PacedWriter {
    writer: EventWriter,
    last_write: std::time::Instant,
    flush_bytes: usize,
    flush_after: Duration,
}

impl PacedWriter {
    /// A writer of event files in `dir` (created at the first write).
    pub fn new(dir: &Path) -> PacedWriter {
        PacedWriter::with_policy(dir, PACED_FLUSH_BYTES, PACED_FLUSH_AFTER)
    }

    /// As [`PacedWriter::new`] with other thresholds (tests).
    pub fn with_policy(dir: &Path, flush_bytes: usize, flush_after: Duration) -> PacedWriter {
        PacedWriter {
            writer: EventWriter::new(dir),
            last_write: std::time::Instant::now(),
            flush_bytes,
            flush_after,
        }
    }

    /// Add a scalar; writes the buffer when the policy says so.
    pub fn add_scalar(&mut self, tag: &str, value: f64, step: i64, time: SystemTime) -> Result<()> {
        self.writer.add_scalar(tag, value, step, time);
        self.maybe_flush()
    }

    /// Add a histogram of `values`; writes the buffer when the policy says so.
    pub fn add_histogram(
        &mut self,
        tag: &str,
        values: &[f64],
        step: i64,
        time: SystemTime,
    ) -> Result<()> {
        self.writer.add_histogram(tag, values, step, time);
        self.maybe_flush()
    }

    /// Bytes of events waiting to be written.
    pub fn pending_bytes(&self) -> usize {
        self.writer.pending_bytes()
    }

    fn maybe_flush(&mut self) -> Result<()> {
        if self.writer.pending_bytes() >= self.flush_bytes
            || self.last_write.elapsed() >= self.flush_after
        {
            self.flush()?;
        }
        Ok(())
    }

    /// Write every buffered event now.
    pub fn flush(&mut self) -> Result<()> {
        let r = self.writer.flush();
        self.last_write = std::time::Instant::now();
        r
    }

    /// Write what is buffered and close the file.
    pub fn close(&mut self) -> Result<()> {
        self.writer.close()
    }
}

/// Read every event of `path` (for tests and tools). Stops at a truncated last record; a
/// checksum error is an error.
pub fn read_events(path: &Path) -> Result<Vec<proto::DecodedEvent>> {
    let data = std::fs::read(path).map_err(|e| Error::io("cannot read", path, e))?;
    let (recs, r) = super::record::read_records(&data);
    if let Err(super::record::ReadError::Corrupt { offset, what }) = r {
        bail!(Io, "{}: bad {what} at offset {offset}", path.display());
    }
    recs.into_iter()
        .map(|r| {
            proto::decode_event(r)
                .ok_or_else(|| err!(Io, "{}: an event does not decode", path.display()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "detcore-tbw-{name}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        d
    }

    fn files(d: &Path) -> Vec<PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn paced_writer_writes_by_size_and_by_age() {
        let d = tmp("paced");
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        // Never by age: small adds wait, the add that crosses the size limit writes them all.
        let mut w = PacedWriter::with_policy(&d, 200, Duration::from_secs(3600));
        w.add_scalar("a", 1.0, 1, t).unwrap();
        assert!(w.pending_bytes() > 0 && w.pending_bytes() < 200);
        assert!(!d.exists(), "nothing written below the size limit");
        while w.pending_bytes() > 0 {
            w.add_scalar("a", 2.0, 2, t).unwrap();
        }
        assert_eq!(
            files(&d).len(),
            1,
            "written once the size limit was reached"
        );
        w.add_histogram("h", &[1.0, 2.0], 3, t).unwrap();
        assert!(w.pending_bytes() > 0);
        w.close().unwrap();
        let n = read_events(&files(&d)[0]).unwrap().len();
        // Always by age (limit 0): every add writes.
        let d2 = tmp("paced-age");
        let mut w = PacedWriter::with_policy(&d2, usize::MAX, Duration::ZERO);
        w.add_scalar("a", 1.0, 1, t).unwrap();
        assert_eq!(
            w.pending_bytes(),
            0,
            "written at once when the previous write is old enough"
        );
        w.close().unwrap();
        assert!(n >= 3);
        let _ = std::fs::remove_dir_all(&d);
        let _ = std::fs::remove_dir_all(&d2);
    }

    #[test]
    fn lazy_file_header_and_events() {
        let d = tmp("lazy");
        let mut w = EventWriter::new(&d);
        w.flush().unwrap();
        assert!(!d.exists(), "no file without events");
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        w.add_scalar("Determined/loss", 0.5, 10, t);
        w.add_scalars(&[("a", 1.0), ("b", f64::NAN)], 11, t);
        w.add_histogram("h", &[1.0, 2.0, 3.0], 12, t);
        w.flush().unwrap();
        let fs = files(&d);
        assert_eq!(fs.len(), 1);
        let name = fs[0].file_name().unwrap().to_str().unwrap().to_owned();
        let parts: Vec<&str> = name.split('.').collect();
        assert!(name.starts_with("events.out.tfevents."), "{name}");
        assert_eq!(parts[3].len(), 10, "{name}");
        assert!(name.contains(&format!(".{}.", std::process::id())));
        let evs = read_events(&fs[0]).unwrap();
        assert_eq!(evs.len(), 4);
        assert_eq!(evs[0].file_version.as_deref(), Some(proto::FILE_VERSION));
        assert_eq!(evs[1].scalars, vec![("Determined/loss".to_owned(), 0.5)]);
        assert_eq!(evs[1].step, 10);
        assert_eq!(evs[1].wall_time, 1_700_000_000.25);
        assert!(evs[2].scalars[1].1.is_nan());
        assert_eq!(evs[3].histograms, vec![("h".to_owned(), 3.0)]);
        w.close().unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn rotation_by_size_and_age() {
        let d = tmp("rot");
        let mut w = EventWriter::new(&d);
        w.set_rotation(Duration::from_secs(3600), 200);
        for i in 0..20 {
            w.add_scalar("x", i as f64, i, SystemTime::now());
            w.flush().unwrap();
        }
        let fs = files(&d);
        assert!(fs.len() > 2, "{fs:?}");
        let mut steps = Vec::new();
        for f in &fs {
            let evs = read_events(f).unwrap();
            assert!(
                evs[0].file_version.is_some(),
                "every file starts with the header"
            );
            steps.extend(evs[1..].iter().map(|e| e.step));
        }
        steps.sort();
        assert_eq!(steps, (0..20).collect::<Vec<_>>());
        w.set_rotation(Duration::ZERO, u64::MAX);
        let before = files(&d).len();
        w.add_scalar("x", 1.0, 1, SystemTime::now());
        w.flush().unwrap();
        assert_eq!(files(&d).len(), before + 1);
        drop(w);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
