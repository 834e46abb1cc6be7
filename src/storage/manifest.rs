//! Checkpoint manifests: the size and CRC32C of every file of a checkpoint, stored beside its
//! `metadata.json` as `.detcore-manifest.json`, so that a restore can tell a good byte from a bad
//! one.
//!
//! - **Written** by the storage backends when they store a checkpoint, from checksums computed
//!   while the bytes pass through detcore anyway: the upload's request bodies (object stores),
//!   the copy (folder `upload`), or the fsync pass before the publishing rename (folder
//!   `store_path`, whose files the caller wrote directly). It is stored before `metadata.json`,
//!   so a complete checkpoint always has its manifest.
//! - **Checked** by `download`, `restore_path` and the merge of sharded checkpoints, as the bytes
//!   are read: a file whose size or CRC32C differs from the manifest, or that is missing, fails
//!   with [`Kind::Integrity`] (`DET_ERR_STORAGE`) naming the file.
//! - A checkpoint without a manifest (written by Determined's Python client, or with checksums
//!   off) restores as before, unchecked. A manifest naming another checkpoint (copied along with
//!   a downloaded folder into a new checkpoint by another tool) is ignored with a warning.
//! - Determined's client never reads the manifest: it is one more file of the checkpoint (copied
//!   by `download`), not part of the resources reported to the master, and `metadata.json` is
//!   unchanged.
//!
//! CRC32C (Castagnoli) is what SCR, gRPC and iSCSI use for the same purpose: the `crc32c` crate
//! computes it with the SSE 4.2 / ARMv8 CRC instructions (several GB/s per core), and checksums of
//! parts computed in parallel combine into the file's ([`FileSum::then`]).

use crate::error::{Error, Kind, Result};
use crate::json::{to_metadata_file, Map, Value};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// The manifest's file name, beside `metadata.json`.
pub const MANIFEST: &str = ".detcore-manifest.json";

/// The manifest format written (readers refuse newer ones).
const FORMAT: i64 = 1;

/// The largest manifest read (about 200 bytes per file: a million files).
pub const MANIFEST_LIMIT: u64 = 256 << 20;

/// Buffer of the reading and copying passes.
const BUF: usize = 1 << 20;

/// The size and CRC32C of a file's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileSum {
    pub size: u64,
    pub crc32c: u32,
}

impl FileSum {
    /// No bytes.
    pub const EMPTY: FileSum = FileSum { size: 0, crc32c: 0 };

    /// The sum of `data`.
    pub fn of(data: &[u8]) -> FileSum {
        FileSum {
            size: data.len() as u64,
            crc32c: crc32c::crc32c(data),
        }
    }

    /// The sum of these bytes followed by `next`'s (parts computed apart, combined in order).
    pub fn then(self, next: FileSum) -> FileSum {
        FileSum {
            size: self.size + next.size,
            crc32c: crc32c::crc32c_combine(self.crc32c, next.crc32c, next.size as usize),
        }
    }

    /// The sum after appending `data`.
    pub fn append(self, data: &[u8]) -> FileSum {
        FileSum {
            size: self.size + data.len() as u64,
            crc32c: crc32c::crc32c_append(self.crc32c, data),
        }
    }
}

/// Relative file name → sum: what a backend computed while storing or reading a checkpoint.
pub type Sums = BTreeMap<String, FileSum>;

/// Receives the sum of a request body as it is read for sending (see
/// [`crate::storage::http::Body::File`]): set once the body's last byte has been read, cleared
/// when an attempt starts, so after a successful request it holds the sum of the bytes sent.
#[derive(Debug, Default)]
pub struct SumCell(AtomicU64);

impl SumCell {
    /// A cell holding nothing.
    pub const fn new() -> SumCell {
        SumCell(AtomicU64::new(0))
    }

    /// Forget the value (an attempt starts).
    pub fn clear(&self) {
        self.0.store(0, Ordering::Release);
    }

    /// Record the CRC32C of a body that was read to its end.
    pub fn set(&self, crc: u32) {
        self.0.store((1 << 32) | crc as u64, Ordering::Release);
    }

    /// The CRC32C of the last body read to its end, if any.
    pub fn get(&self) -> Option<u32> {
        let v = self.0.load(Ordering::Acquire);
        (v >> 32 == 1).then_some(v as u32)
    }
}

/// A checkpoint's manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The checkpoint it describes (a copied manifest names another one).
    pub storage_id: String,
    pub files: Sums,
}

impl Manifest {
    /// The manifest of checkpoint `id`.
    pub fn new(id: &str, files: Sums) -> Manifest {
        Manifest {
            storage_id: id.to_owned(),
            files,
        }
    }

    /// The file's content (JSON, one object per file, in name order).
    pub fn to_bytes(&self) -> Vec<u8> {
        let files: Vec<Value> = self
            .files
            .iter()
            .map(|(name, s)| {
                Value::Object(obj! {
                    "path" => name.as_str(),
                    "size" => s.size,
                    "crc32c" => format!("{:08x}", s.crc32c),
                })
            })
            .collect();
        let doc = obj! {
            "format" => FORMAT,
            "generator" => format!("detcore {}", env!("CARGO_PKG_VERSION")),
            "storage_id" => self.storage_id.as_str(),
            "checksum" => "crc32c",
            "files" => Value::Array(files),
        };
        let mut text = to_metadata_file(&Value::Object(doc));
        text.push('\n');
        text.into_bytes()
    }

    /// Read the manifest of checkpoint `id` from `data`; a malformed one is an integrity error
    /// (the manifest itself was damaged).
    pub fn parse(id: &str, data: &[u8]) -> Result<Manifest> {
        let bad = |why: String| {
            Error::new(
                Kind::Integrity,
                format!("checkpoint {id}: its manifest {MANIFEST} is damaged ({why})"),
            )
        };
        let text = std::str::from_utf8(data).map_err(|_| bad("not UTF-8".into()))?;
        let doc = &crate::json::parse_object(text, "its text")
            .map_err(|e| bad(e.message().to_owned()))?;
        match doc.get("format").and_then(Value::as_i64) {
            Some(f) if (1..=FORMAT).contains(&f) => {}
            Some(f) => {
                return Err(Error::new(
                    Kind::Unsupported,
                    format!("checkpoint {id}: its manifest {MANIFEST} has format {f}, newer than this detcore reads ({FORMAT}); upgrade detcore or set DETCORE_CHECKSUMS=0"),
                ))
            }
            None => return Err(bad("no \"format\"".into())),
        }
        if doc.get("checksum").and_then(Value::as_str) != Some("crc32c") {
            return Err(bad("\"checksum\" is not \"crc32c\"".into()));
        }
        let storage_id =
            str_field(doc, "storage_id").ok_or_else(|| bad("no \"storage_id\"".into()))?;
        let list = doc
            .get("files")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no \"files\" list".into()))?;
        let mut files = Sums::new();
        for f in list {
            let entry = f
                .as_object()
                .ok_or_else(|| bad("a file entry is not an object".into()))?;
            let path = str_field(entry, "path")
                .ok_or_else(|| bad("a file entry has no \"path\"".into()))?;
            let size = entry
                .get("size")
                .and_then(Value::as_i64)
                .filter(|s| *s >= 0)
                .ok_or_else(|| bad(format!("{path:?} has no valid \"size\"")))?;
            let crc = entry
                .get("crc32c")
                .and_then(Value::as_str)
                .filter(|c| c.len() == 8)
                .and_then(|c| u32::from_str_radix(c, 16).ok())
                .ok_or_else(|| bad(format!("{path:?} has no valid \"crc32c\"")))?;
            files.insert(
                path,
                FileSum {
                    size: size as u64,
                    crc32c: crc,
                },
            );
        }
        Ok(Manifest { storage_id, files })
    }
}

fn str_field(m: &Map, key: &str) -> Option<String> {
    m.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// Whether checkpoints get manifests and are checked against them: the storage config's
/// `"checksums"` key when given, else `DETCORE_CHECKSUMS` (`0`/`false`/`off` turn them off),
/// else on.
pub fn resolve_enabled(config: Option<bool>) -> Result<bool> {
    if let Some(c) = config {
        return Ok(c);
    }
    match crate::env::env_nonempty("DETCORE_CHECKSUMS") {
        None => Ok(true),
        Some(v) => match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "on" | "yes" => Ok(true),
            "0" | "false" | "off" | "no" => Ok(false),
            _ => Err(Error::new(
                Kind::InvalidArgument,
                format!("DETCORE_CHECKSUMS: {v:?} is not 0 or 1"),
            )),
        },
    }
}

/// The sum of a file, read from its start (a checksum pass over a file detcore did not write).
pub fn sum_file(path: &Path) -> Result<FileSum> {
    let mut f = File::open(path).map_err(|e| Error::io("cannot read", path, e))?;
    let mut buf = vec![0u8; BUF];
    let mut sum = FileSum::EMPTY;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => return Ok(sum),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("cannot read", path, e)),
        };
        sum = sum.append(&buf[..n]);
    }
}

/// The sum of bytes `[start, end)` of a file (read back where a transfer could not observe them).
pub fn sum_range(path: &Path, start: u64, end: u64) -> Result<FileSum> {
    use std::io::{Seek, SeekFrom};
    let mut f = File::open(path).map_err(|e| Error::io("cannot read", path, e))?;
    f.seek(SeekFrom::Start(start))
        .map_err(|e| Error::io("cannot seek in", path, e))?;
    let mut buf = vec![0u8; BUF.min(end.saturating_sub(start) as usize).max(1)];
    let mut sum = FileSum::EMPTY;
    while sum.size < end - start {
        let want = buf.len().min((end - start - sum.size) as usize);
        match f.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(Error::new(
                    Kind::Io,
                    format!(
                        "{} shrank while it was being uploaded (ends before byte {end})",
                        path.display()
                    ),
                ))
            }
            Ok(n) => sum = sum.append(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("cannot read", path, e)),
        }
    }
    Ok(sum)
}

/// Copy `from` to `to` through one buffer, summing the bytes on their way: one read and one
/// write per byte, as `cp` does, with the checksum computed on the bytes in the buffer.
pub fn copy_summed(from: &Path, to: &Path) -> Result<FileSum> {
    let cannot = |e: std::io::Error| {
        Error::new(
            Kind::Io,
            format!("cannot copy {} to {}: {e}", from.display(), to.display()),
        )
    };
    let mut src = File::open(from).map_err(cannot)?;
    let mut dst = File::create(to).map_err(cannot)?;
    if let Ok(m) = src.metadata() {
        use std::os::unix::fs::PermissionsExt;
        let _ = dst.set_permissions(std::fs::Permissions::from_mode(m.permissions().mode()));
    }
    let mut buf = vec![0u8; BUF];
    let mut sum = FileSum::EMPTY;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => return Ok(sum),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(cannot(e)),
        };
        sum = sum.append(&buf[..n]);
        dst.write_all(&buf[..n]).map_err(cannot)?;
    }
}

/// What is wrong with one file.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    /// Listed in the manifest, absent from the checkpoint.
    Missing(FileSum),
    /// Another size than the manifest's (truncated, or grown).
    Size { got: u64, want: u64 },
    /// The right size, other bytes.
    Crc { got: u32, want: u32 },
}

impl Problem {
    /// `got` (what was read) against `want` (the manifest's), if they differ.
    pub fn compare(got: FileSum, want: FileSum) -> Option<Problem> {
        if got.size != want.size {
            Some(Problem::Size {
                got: got.size,
                want: want.size,
            })
        } else if got.crc32c != want.crc32c {
            Some(Problem::Crc {
                got: got.crc32c,
                want: want.crc32c,
            })
        } else {
            None
        }
    }

    fn describe(&self, name: &str) -> String {
        match self {
            Problem::Missing(s) => {
                format!(
                    "file {name:?} is missing (its manifest lists {} bytes)",
                    s.size
                )
            }
            Problem::Size { got, want } => format!(
                "file {name:?} is {got} bytes, its manifest says {want} ({})",
                if got < want { "truncated" } else { "grown" }
            ),
            Problem::Crc { got, want } => format!(
                "file {name:?} is corrupt: its CRC32C is {got:08x}, its manifest says {want:08x}"
            ),
        }
    }
}

/// The error for the files of checkpoint `id` that failed verification (`problems` non-empty):
/// the first one named in full, the others counted and listed.
pub fn integrity_error(id: &str, problems: &[(String, Problem)]) -> Error {
    let mut msg = format!(
        "checkpoint {id} failed verification: {}",
        problems[0].1.describe(&problems[0].0)
    );
    if problems.len() > 1 {
        let others: Vec<String> = problems[1..]
            .iter()
            .take(5)
            .map(|(n, _)| format!("{n:?}"))
            .collect();
        msg.push_str(&format!(
            " (and {} more: {}{})",
            problems.len() - 1,
            others.join(", "),
            if problems.len() > 6 { ", …" } else { "" }
        ));
    }
    Error::new(Kind::Integrity, msg)
}

/// Log the files of checkpoint `id` that were read but that its manifest does not list (they
/// cannot be checked).
pub fn warn_unlisted(id: &str, unlisted: &[String]) {
    if unlisted.is_empty() {
        return;
    }
    let shown: Vec<String> = unlisted.iter().take(5).map(|n| format!("{n:?}")).collect();
    log_warn!(
        "checkpoint {id}: {} file(s) not in its manifest were not verified: {}{}",
        unlisted.len(),
        shown.join(", "),
        if unlisted.len() > 5 { ", …" } else { "" }
    );
}

/// A manifest read from a checkpoint, or why there is none to check against.
pub fn usable(id: &str, manifest: Option<Manifest>) -> Option<Manifest> {
    match manifest {
        None => {
            log_debug!("checkpoint {id} has no manifest; its files are not verified");
            None
        }
        Some(m) if m.storage_id != id => {
            log_warn!(
                "checkpoint {id}: its manifest {MANIFEST} describes checkpoint {} (it was copied along with that checkpoint's files); the files are not verified",
                m.storage_id
            );
            None
        }
        Some(m) => Some(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_combine_like_one_pass() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let whole = FileSum::of(&data);
        for cut in [0, 1, 4096, 99_999, 100_000] {
            let (a, b) = data.split_at(cut);
            assert_eq!(FileSum::of(a).then(FileSum::of(b)), whole, "cut {cut}");
            assert_eq!(FileSum::of(a).append(b), whole, "cut {cut}");
        }
        // The CRC32C check value of "123456789".
        assert_eq!(FileSum::of(b"123456789").crc32c, 0xe306_9283);
        assert_eq!(FileSum::of(b""), FileSum::EMPTY);
    }

    #[test]
    fn manifests_round_trip_and_damage_is_an_integrity_error() {
        let mut files = Sums::new();
        files.insert("metadata.json".into(), FileSum::of(b"{}"));
        files.insert("a dir/w \"1\".bin".into(), FileSum::of(&[7u8; 1000]));
        let m = Manifest::new("abc", files);
        let bytes = m.to_bytes();
        assert_eq!(Manifest::parse("abc", &bytes).unwrap(), m);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("\"checksum\": \"crc32c\""), "{text}");
        for broken in [
            &bytes[..bytes.len() / 2],
            b"[1]".as_slice(),
            b"\xff".as_slice(),
            text.replace("crc32c\": \"", "crc32c\": \"zz").as_bytes(),
        ] {
            let e = Manifest::parse("abc", broken).unwrap_err();
            assert_eq!(e.kind(), Kind::Integrity, "{e}");
            assert!(e.message().contains(MANIFEST), "{e}");
        }
        let newer = text.replace("\"format\": 1", "\"format\": 9");
        assert_eq!(
            Manifest::parse("abc", newer.as_bytes()).unwrap_err().kind(),
            Kind::Unsupported
        );
    }

    #[test]
    fn problems_are_named() {
        let want = FileSum::of(b"hello");
        assert_eq!(Problem::compare(FileSum::of(b"hello"), want), None);
        let p = vec![
            (
                "w.bin".to_owned(),
                Problem::compare(FileSum::of(b"hell"), want).unwrap(),
            ),
            (
                "x".to_owned(),
                Problem::compare(FileSum::of(b"hellp"), want).unwrap(),
            ),
            ("y".to_owned(), Problem::Missing(want)),
        ];
        let e = integrity_error("ck", &p);
        assert_eq!(e.kind(), Kind::Integrity);
        assert!(
            e.message()
                .contains("file \"w.bin\" is 4 bytes, its manifest says 5 (truncated)"),
            "{e}"
        );
        assert!(e.message().contains("(and 2 more: \"x\", \"y\")"), "{e}");
        assert!(integrity_error("ck", &p[1..])
            .message()
            .contains("is corrupt: its CRC32C"));
        assert!(integrity_error("ck", &p[2..])
            .message()
            .contains("is missing"));
    }

    #[test]
    fn summed_copies_and_reads() {
        let d = std::env::temp_dir().join(format!("detcore-manifest-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&d).unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(d.join("a"), &data).unwrap();
        let s = copy_summed(&d.join("a"), &d.join("b")).unwrap();
        assert_eq!(s, FileSum::of(&data));
        assert_eq!(std::fs::read(d.join("b")).unwrap(), data);
        assert_eq!(sum_file(&d.join("b")).unwrap(), s);
        assert!(sum_file(&d.join("nope")).is_err());
        let cell = SumCell::new();
        assert_eq!(cell.get(), None);
        cell.set(0);
        assert_eq!(cell.get(), Some(0));
        cell.clear();
        assert_eq!(cell.get(), None);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
