//! Transfer settings of the cloud backends (part size, parallel requests, attempts, timeouts):
//! the storage config's keys, else the `DETCORE_STORAGE_*` environment variables, else defaults.

use crate::error::{Error, Kind, Result};
use std::time::Duration;

/// Transfer settings shared by the cloud backends.
#[derive(Debug, Clone, PartialEq)]
pub struct Tuning {
    /// Size of one part of a multipart/block upload and of one ranged download request.
    pub part_size: u64,
    /// Parallel requests per transfer.
    pub concurrency: usize,
    /// Attempts per request (1 = no retry).
    pub max_attempts: u32,
    /// Connect timeout, and the longest a connection may stall while reading or writing.
    pub timeout: Duration,
    /// First backoff delay; doubled after each failed attempt.
    pub backoff_base: Duration,
    /// Longest backoff delay.
    pub backoff_max: Duration,
}

/// 16 MiB parts.
pub const DEFAULT_PART_SIZE: u64 = 16 << 20;

/// 16 requests in flight.
pub const DEFAULT_CONCURRENCY: usize = 16;

/// 8 attempts per request.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            part_size: DEFAULT_PART_SIZE,
            concurrency: DEFAULT_CONCURRENCY,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            timeout: Duration::from_secs(60),
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(20),
        }
    }
}

fn env_num<T: std::str::FromStr>(name: &str) -> Result<Option<T>> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse::<T>().map(Some).map_err(|_| {
            Error::new(
                Kind::InvalidArgument,
                format!("{name}: {v:?} is not a valid number"),
            )
        }),
        _ => Ok(None),
    }
}

impl Tuning {
    /// The tuning of a storage config: its keys, else the `DETCORE_STORAGE_*` environment
    /// variables, else the defaults.
    pub fn resolve(o: &super::config::TransferOptions) -> Result<Tuning> {
        let d = Tuning::default();
        let part_size = match o.part_size {
            Some(v) => v,
            None => env_num::<u64>("DETCORE_STORAGE_PART_SIZE")?.unwrap_or(d.part_size),
        };
        if !(5 << 20..=5 << 30).contains(&part_size) {
            return Err(Error::new(
                Kind::InvalidArgument,
                format!("DETCORE_STORAGE_PART_SIZE: {part_size} is not between 5 MiB and 5 GiB"),
            ));
        }
        let concurrency = match o.concurrency {
            Some(v) => v,
            None => env_num::<usize>("DETCORE_STORAGE_CONCURRENCY")?.unwrap_or(d.concurrency),
        }
        .clamp(1, 256);
        let max_attempts = match o.max_attempts {
            Some(v) => v,
            None => env_num::<u32>("DETCORE_STORAGE_MAX_ATTEMPTS")?.unwrap_or(d.max_attempts),
        }
        .clamp(1, 100);
        let timeout = match o.timeout_seconds {
            Some(v) => v,
            None => env_num::<f64>("DETCORE_STORAGE_TIMEOUT")?.unwrap_or(d.timeout.as_secs_f64()),
        };
        if !(timeout > 0.0 && timeout <= 86400.0) {
            return Err(Error::new(
                Kind::InvalidArgument,
                format!(
                    "DETCORE_STORAGE_TIMEOUT: {timeout} is not a number of seconds in (0, 86400]"
                ),
            ));
        }
        let timeout = Duration::from_secs_f64(timeout);
        Ok(Tuning {
            part_size,
            concurrency,
            max_attempts,
            timeout,
            // Short timeouts (tests, fast local stores) get short backoffs too.
            backoff_base: d.backoff_base.min(timeout / 4),
            backoff_max: d.backoff_max.min(timeout),
        })
    }
}
