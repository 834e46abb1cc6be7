//! The primitives that each object-store service (S3, GCS, Azure) implements, below both the
//! transfer engine ([`super::transfer`]) and the [`super::Storage`] built on them
//! ([`super::object::ObjectStorage`]).

use super::http::{Body, Failure, Http};
use super::manifest::SumCell;
use crate::error::Result;
use std::path::Path;

/// An object listed under a prefix.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
}

/// The primitives of one object-store service. Methods retry transient failures themselves
/// (through [`Http::retry`]) except [`ObjectStore::get`], which is one attempt (the caller
/// resumes ranged reads).
pub trait ObjectStore: Send + Sync {
    /// `s3`, `gcs`, `azure`.
    fn name(&self) -> &'static str;
    /// A URL naming `key` in messages: `s3://bucket/key`.
    fn url(&self, key: &str) -> String;
    /// The HTTP client (its tuning drives the transfers).
    fn http(&self) -> &Http;
    /// Store `body` as `key` in one request.
    fn put(&self, key: &str, body: Body<'_>) -> Result<()>;
    /// True if large files are uploaded as parts in parallel ([`ObjectStore::begin_parts`] …).
    fn supports_parts(&self) -> bool {
        false
    }
    /// The smallest part size and the largest number of parts.
    fn part_limits(&self) -> (u64, u64) {
        (5 << 20, 10_000)
    }
    /// Store a large file when parts are not supported (default: one streamed request).
    /// `sum`, when given, receives the CRC32C of the file's bytes as they were sent.
    fn put_large(&self, key: &str, path: &Path, size: u64, sum: Option<&SumCell>) -> Result<()> {
        self.put(
            key,
            Body::File {
                path,
                offset: 0,
                len: size,
                sum,
            },
        )
    }
    /// Begin a multipart upload of `key`; returns its id.
    fn begin_parts(&self, _key: &str) -> Result<String> {
        bail!(
            Internal,
            "{}: multipart uploads are not supported",
            self.name()
        )
    }
    /// Upload part `number` (1-based); returns what completing needs (ETag, block id).
    fn put_part(&self, _key: &str, _upload: &str, _number: u32, _body: Body<'_>) -> Result<String> {
        bail!(
            Internal,
            "{}: multipart uploads are not supported",
            self.name()
        )
    }
    /// Complete a multipart upload of `size` bytes from its parts, in order.
    fn complete_parts(
        &self,
        _key: &str,
        _upload: &str,
        _parts: &[String],
        _size: u64,
    ) -> Result<()> {
        bail!(
            Internal,
            "{}: multipart uploads are not supported",
            self.name()
        )
    }
    /// Abandon a multipart upload (best effort, errors logged).
    fn abort_parts(&self, _key: &str, _upload: &str) {}
    /// One attempt at reading `key`, or bytes `first..=last` of it.
    fn get(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
    ) -> std::result::Result<ureq::Response, Failure>;
    /// The size of `key`, `None` if it does not exist.
    fn head(&self, key: &str) -> Result<Option<u64>>;
    /// Every object whose key starts with `prefix`.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>>;
    /// Delete `keys` (missing ones are not an error).
    fn delete(&self, keys: &[String]) -> Result<()>;
    /// Whether folders get zero-byte marker objects (false on MinIO).
    fn markers_enabled(&self) -> Result<bool> {
        Ok(true)
    }
}
