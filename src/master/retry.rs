//! The Core API session's retries (docs/protocol.md#retries-and-timeouts): urllib3's `Retry`, from
//! `DET_RETRY_CONFIG` (a JSON object of `Retry` keyword arguments) or Determined's default
//! `Retry(total=20, backoff_factor=0.5, allowed_methods=False)`.
//!
//! The counting follows urllib3 2.x: every failure takes one from `total` and one from the
//! counter of its class (`connect`, `read`, `status`, `other`); a read failure (the request was
//! sent, the answer lost) is only retried for methods in `allowed_methods` (all methods when it
//! is `false`); the policy is exhausted when a counter goes below zero. Before retry *k* the
//! client sleeps `backoff_factor * 2^(k-1)` seconds (none before the first retry), capped at
//! `backoff_max`, or the server's `Retry-After` on 413/429/503.
//!
//! detcore additions (documented in docs/on-cluster.md): the statuses 500, 502, 503 and 504 are
//! retried too (urllib3 only retries `status_forcelist`), counted like urllib3's status retries.

use crate::error::Result;
use crate::json::Value;
use std::time::Duration;

/// A urllib3 counter: `None` (no limit of its own), `False` (never retry this class), or a number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Count {
    Unset,
    Disabled,
    N(i64),
}

impl Count {
    fn dec(self) -> Count {
        match self {
            Count::N(n) => Count::N(n - 1),
            c => c,
        }
    }
    fn exhausted(self) -> bool {
        matches!(self, Count::N(n) if n < 0)
    }
    fn truthy(self) -> bool {
        matches!(self, Count::N(n) if n != 0)
    }
}

/// Statuses urllib3 retries when the server sends `Retry-After`.
const RETRY_AFTER_STATUSES: [u16; 3] = [413, 429, 503];
/// Statuses detcore retries in addition to `status_forcelist`.
pub const TRANSIENT_STATUSES: [u16; 4] = [500, 502, 503, 504];

/// A parsed retry policy.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub total: Count,
    pub connect: Count,
    pub read: Count,
    pub status: Count,
    pub other: Count,
    /// `None`: every method is retryable (`allowed_methods=False`).
    pub allowed_methods: Option<Vec<String>>,
    pub status_forcelist: Vec<u16>,
    pub backoff_factor: f64,
    pub backoff_max: f64,
    pub backoff_jitter: f64,
    pub respect_retry_after: bool,
}

impl Default for RetryPolicy {
    /// Determined's Core API default: `Retry(total=20, backoff_factor=0.5, allowed_methods=False)`.
    fn default() -> Self {
        RetryPolicy {
            total: Count::N(20),
            backoff_factor: 0.5,
            allowed_methods: None,
            ..RetryPolicy::urllib3_defaults()
        }
    }
}

const KNOWN_KEYS: &[&str] = &[
    "total",
    "connect",
    "read",
    "redirect",
    "status",
    "other",
    "allowed_methods",
    "method_whitelist",
    "status_forcelist",
    "backoff_factor",
    "backoff_max",
    "backoff_jitter",
    "raise_on_redirect",
    "raise_on_status",
    "history",
    "respect_retry_after_header",
    "remove_headers_on_redirect",
];

impl RetryPolicy {
    /// urllib3's own defaults for a `Retry(**kwargs)` (what `DET_RETRY_CONFIG` starts from).
    pub fn urllib3_defaults() -> RetryPolicy {
        RetryPolicy {
            total: Count::N(10),
            connect: Count::Unset,
            read: Count::Unset,
            status: Count::Unset,
            other: Count::Unset,
            allowed_methods: Some(
                ["DELETE", "GET", "HEAD", "OPTIONS", "PUT", "TRACE"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            ),
            status_forcelist: Vec::new(),
            backoff_factor: 0.0,
            backoff_max: 120.0,
            backoff_jitter: 0.0,
            respect_retry_after: true,
        }
    }

    /// The policy from `DET_RETRY_CONFIG`, else Determined's default.
    pub fn from_env() -> Result<RetryPolicy> {
        match std::env::var("DET_RETRY_CONFIG") {
            Ok(v) => RetryPolicy::from_json(&v).map_err(|e| e.context("DET_RETRY_CONFIG")),
            Err(_) => Ok(RetryPolicy::default()),
        }
    }

    /// Parse urllib3 `Retry` keyword arguments as JSON, e.g. `{"total": 2, "backoff_factor": 0.1}`.
    pub fn from_json(text: &str) -> Result<RetryPolicy> {
        let m = crate::json::parse_object(text, "urllib3 Retry arguments")?;
        let mut p = RetryPolicy::urllib3_defaults();
        for (k, v) in m.iter() {
            match k.as_str() {
                "total" => p.total = count(k, v)?,
                "connect" => p.connect = count(k, v)?,
                "read" => p.read = count(k, v)?,
                "status" => p.status = count(k, v)?,
                "other" => p.other = count(k, v)?,
                "allowed_methods" | "method_whitelist" => {
                    p.allowed_methods = match v {
                        Value::Bool(false) | Value::Null => None,
                        Value::Array(a) => {
                            let mut out = Vec::new();
                            for x in a {
                                match x.as_str() {
                                    Some(s) => out.push(s.to_ascii_uppercase()),
                                    None => bail!(InvalidArgument, "{k:?} must be a list of method names or false, got an element of type {}", x.type_name()),
                                }
                            }
                            if out.is_empty() {
                                None
                            } else {
                                Some(out)
                            }
                        }
                        other => bail!(
                            InvalidArgument,
                            "{k:?} must be a list of method names or false, got {}",
                            other.type_name()
                        ),
                    }
                }
                "status_forcelist" => {
                    p.status_forcelist = match v {
                        Value::Null => Vec::new(),
                        Value::Array(a) => a
                            .iter()
                            .map(|x| {
                                x.as_i64()
                                    .and_then(|i| u16::try_from(i).ok())
                                    .ok_or_else(|| {
                                        err!(
                                        InvalidArgument,
                                        "\"status_forcelist\" must hold HTTP status codes, got {}",
                                        crate::json::to_wire(x)
                                    )
                                    })
                            })
                            .collect::<Result<Vec<_>>>()?,
                        other => bail!(
                            InvalidArgument,
                            "\"status_forcelist\" must be a list, got {}",
                            other.type_name()
                        ),
                    }
                }
                "backoff_factor" => p.backoff_factor = seconds(k, v)?,
                "backoff_max" => p.backoff_max = seconds(k, v)?,
                "backoff_jitter" => p.backoff_jitter = seconds(k, v)?,
                "respect_retry_after_header" => {
                    p.respect_retry_after = v.as_bool().ok_or_else(|| {
                        err!(
                            InvalidArgument,
                            "\"respect_retry_after_header\" must be true or false"
                        )
                    })?
                }
                // Accepted and irrelevant here (detcore never follows redirects).
                "redirect"
                | "raise_on_redirect"
                | "raise_on_status"
                | "history"
                | "remove_headers_on_redirect" => {}
                other => bail!(
                    InvalidArgument,
                    "unknown urllib3 Retry argument {other:?} (known: {})",
                    KNOWN_KEYS.join(", ")
                ),
            }
        }
        Ok(p)
    }

    /// True if a request with `method` may be retried after its answer was lost.
    pub fn method_retryable(&self, method: &str) -> bool {
        match &self.allowed_methods {
            None => true,
            Some(m) => m.iter().any(|x| x.eq_ignore_ascii_case(method)),
        }
    }

    /// urllib3's backoff before the retry that follows `consecutive` failures (1 = the first).
    pub fn backoff(&self, consecutive: u32) -> Duration {
        if consecutive <= 1 {
            return Duration::ZERO;
        }
        let exp = (consecutive - 1).min(62) as i32;
        let mut b = self.backoff_factor * 2f64.powi(exp);
        if self.backoff_jitter > 0.0 {
            b += crate::time::jitter() * self.backoff_jitter;
        }
        let b = b.min(self.backoff_max).max(0.0);
        Duration::try_from_secs_f64(b).unwrap_or(Duration::from_secs(120))
    }

    /// The longest backoff the policy allows (`backoff_max`, at least 1 s).
    pub fn max_backoff(&self) -> Duration {
        Duration::from_secs_f64(self.backoff_max.clamp(1.0, 3600.0))
    }

    /// A fresh retry budget for one request.
    pub fn start(&self) -> Attempts<'_> {
        Attempts {
            policy: self,
            total: self.total,
            connect: self.connect,
            read: self.read,
            status: self.status,
            other: self.other,
            failures: 0,
            retries: 0,
        }
    }
}

fn count(k: &str, v: &Value) -> Result<Count> {
    match v {
        Value::Null => Ok(Count::Unset),
        Value::Bool(false) => Ok(Count::Disabled),
        Value::Bool(true) => Ok(Count::N(1)),
        Value::Number(n) if n.as_i64().is_some() => Ok(Count::N(n.as_i64().unwrap_or(0))),
        other => Err(err!(
            InvalidArgument,
            "{k:?} must be an integer, false or null, got {}",
            crate::json::to_wire(other)
        )),
    }
}

fn seconds(k: &str, v: &Value) -> Result<f64> {
    match v.as_f64() {
        Some(f) if f.is_finite() && f >= 0.0 => Ok(f),
        _ => Err(err!(
            InvalidArgument,
            "{k:?} must be a non-negative number, got {}",
            crate::json::to_wire(v)
        )),
    }
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The connection could not be made (refused, DNS, connect timeout): nothing was sent.
    Connect,
    /// The request may have been sent and the answer was lost (reset, EOF, read timeout).
    Read,
    /// The server answered `code`, with `Retry-After` seconds if it sent one.
    Status { code: u16, retry_after: Option<f64> },
    /// Anything else.
    Other,
}

/// The retry budget of one request.
#[derive(Debug, Clone)]
pub struct Attempts<'a> {
    policy: &'a RetryPolicy,
    total: Count,
    connect: Count,
    read: Count,
    status: Count,
    other: Count,
    failures: u32,
    retries: u32,
}

impl Attempts<'_> {
    /// Retries granted so far.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// True if a response with `code` is one the policy retries for `method`.
    pub fn status_retryable(&self, method: &str, code: u16, has_retry_after: bool) -> bool {
        let p = self.policy;
        if TRANSIENT_STATUSES.contains(&code) || p.status_forcelist.contains(&code) {
            return code >= 500 || p.method_retryable(method);
        }
        p.method_retryable(method)
            && self.total.truthy()
            && p.respect_retry_after
            && has_retry_after
            && RETRY_AFTER_STATUSES.contains(&code)
    }

    /// Count `f` against the budget. Returns how long to sleep before the next attempt, or
    /// `None` when the request must fail now.
    pub fn next(&mut self, method: &str, f: &Failure) -> Option<Duration> {
        if self.total == Count::Disabled {
            return None;
        }
        self.total = self.total.dec();
        match f {
            Failure::Connect => {
                if self.connect == Count::Disabled {
                    return None;
                }
                self.connect = self.connect.dec();
            }
            Failure::Read => {
                if self.read == Count::Disabled || !self.policy.method_retryable(method) {
                    return None;
                }
                self.read = self.read.dec();
            }
            Failure::Other => self.other = self.other.dec(),
            Failure::Status { .. } => self.status = self.status.dec(),
        }
        self.failures += 1;
        if [self.total, self.connect, self.read, self.status, self.other]
            .iter()
            .any(|c| c.exhausted())
        {
            return None;
        }
        self.retries += 1;
        if let Failure::Status {
            retry_after: Some(s),
            ..
        } = f
        {
            if self.policy.respect_retry_after {
                return Some(Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::ZERO));
            }
        }
        Some(self.policy.backoff(self.failures))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_determined_policy() {
        let p = RetryPolicy::default();
        assert!(p.method_retryable("POST"));
        let mut a = p.start();
        let mut sleeps = Vec::new();
        while let Some(d) = a.next("POST", &Failure::Read) {
            sleeps.push(d.as_secs_f64());
        }
        assert_eq!(sleeps.len(), 20);
        assert_eq!(&sleeps[..6], &[0.0, 1.0, 2.0, 4.0, 8.0, 16.0]);
        assert_eq!(sleeps[19], 120.0);
        let total: f64 = sleeps.iter().sum();
        assert!((total - 1567.0).abs() < 1.0, "{total}");
    }

    #[test]
    fn env_config_uses_urllib3_defaults() {
        let p = RetryPolicy::from_json(r#"{"total": 2, "backoff_factor": 0.1}"#).unwrap();
        // POST is not in urllib3's default allowed methods: a lost answer is not replayed...
        assert_eq!(p.start().next("POST", &Failure::Read), None);
        // ...but a refused connection (nothing sent) is retried for any method.
        let mut a = p.start();
        assert_eq!(a.next("POST", &Failure::Connect), Some(Duration::ZERO));
        assert_eq!(
            a.next("POST", &Failure::Connect),
            Some(Duration::from_secs_f64(0.2))
        );
        assert_eq!(a.next("POST", &Failure::Connect), None);
        assert!(p.start().next("GET", &Failure::Read).is_some());

        let p = RetryPolicy::from_json(r#"{"total": 0}"#).unwrap();
        assert_eq!(p.start().next("GET", &Failure::Connect), None);
        let p = RetryPolicy::from_json(r#"{"total": false}"#).unwrap();
        assert_eq!(p.start().next("GET", &Failure::Connect), None);
        let p = RetryPolicy::from_json(r#"{"total": null, "connect": 1}"#).unwrap();
        let mut a = p.start();
        assert!(a.next("GET", &Failure::Connect).is_some());
        assert!(a.next("GET", &Failure::Connect).is_none());
        let p = RetryPolicy::from_json(
            r#"{"total": 3, "allowed_methods": false, "backoff_factor": 10, "backoff_max": 15}"#,
        )
        .unwrap();
        let mut a = p.start();
        a.next("POST", &Failure::Read);
        assert_eq!(
            a.next("POST", &Failure::Read),
            Some(Duration::from_secs(15))
        );
    }

    #[test]
    fn statuses() {
        let p = RetryPolicy::from_json(r#"{"total": 5, "status_forcelist": [418]}"#).unwrap();
        let a = p.start();
        assert!(a.status_retryable("GET", 418, false));
        assert!(!a.status_retryable("POST", 418, false));
        assert!(a.status_retryable("POST", 503, false));
        assert!(a.status_retryable("POST", 500, false));
        assert!(!a.status_retryable("GET", 400, false));
        assert!(a.status_retryable("GET", 429, true));
        assert!(!a.status_retryable("GET", 429, false));
        let mut a = p.start();
        assert_eq!(
            a.next(
                "GET",
                &Failure::Status {
                    code: 429,
                    retry_after: Some(3.0)
                }
            ),
            Some(Duration::from_secs(3))
        );
    }

    #[test]
    fn bad_configs_are_named() {
        for (text, want) in [
            ("[1]", "JSON object"),
            (r#"{"totl": 1}"#, "unknown urllib3 Retry argument \"totl\""),
            (r#"{"total": "x"}"#, "\"total\" must be an integer"),
            (r#"{"backoff_factor": -1}"#, "non-negative"),
            (r#"{"allowed_methods": 3}"#, "list of method names"),
            ("{", ""),
        ] {
            let e = RetryPolicy::from_json(text).unwrap_err();
            assert!(e.message().contains(want), "{text}: {e}");
        }
    }
}
