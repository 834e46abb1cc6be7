//! The blocking master client: one keep-alive connection pool (ureq + rustls) shared by every
//! thread of a context, the allocation-token header, the retry policy, and timeouts that Python
//! lacks (a hung master can never hang a caller forever).
//!
//! Wire details kept from Python (docs/protocol.md#request-and-answer-format): the only auth header
//! is `Grpc-Metadata-x-allocation-token: Bearer <DET_SESSION_TOKEN>`; bodies are JSON without a
//! `Content-Type` header; a POST without payload sends `Content-Length: 0`.

use super::retry::{Failure, RetryPolicy};
use crate::cluster_info::MasterUrl;
use crate::error::{Error, Kind, Result};
use crate::json::{to_wire, Value};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Deserialize;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Name of the auth header of task sessions.
pub const AUTH_HEADER: &str = "Grpc-Metadata-x-allocation-token";

/// Default connect timeout (`DETCORE_MASTER_CONNECT_TIMEOUT`).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Default limit of one request attempt, connect to last byte (`DETCORE_MASTER_TIMEOUT`).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The largest answer detcore reads from the master (every request, the long poll included); a
/// larger one is an error, never cut and used.
pub const MAX_ANSWER_BYTES: usize = 64 << 20;

/// Per-attempt time limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeouts {
    /// TCP (and TLS) connection set-up.
    pub connect: Duration,
    /// One attempt, from connecting to the last byte of the answer.
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: DEFAULT_CONNECT_TIMEOUT,
            request: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

fn env_seconds(name: &str) -> Result<Option<Duration>> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => match v.trim().parse::<f64>() {
            Ok(f) if f > 0.0 && f.is_finite() => Ok(Some(crate::time::secs(f))),
            _ => Err(err!(
                InvalidArgument,
                "{name}: {v:?} is not a positive number of seconds"
            )),
        },
        _ => Ok(None),
    }
}

impl Timeouts {
    /// Explicit values first, then `DETCORE_MASTER_CONNECT_TIMEOUT` / `DETCORE_MASTER_TIMEOUT`
    /// (seconds), then the defaults.
    pub fn resolve(connect: Option<Duration>, request: Option<Duration>) -> Result<Timeouts> {
        let d = Timeouts::default();
        Ok(Timeouts {
            connect: match connect {
                Some(c) => c,
                None => env_seconds("DETCORE_MASTER_CONNECT_TIMEOUT")?.unwrap_or(d.connect),
            },
            request: match request {
                Some(r) => r,
                None => env_seconds("DETCORE_MASTER_TIMEOUT")?.unwrap_or(d.request),
            },
        })
    }
}

/// How a call retries.
#[derive(Clone, Copy, Default)]
pub struct CallOpts<'a> {
    /// Give up (with `Kind::Timeout`) once this instant passes.
    pub deadline: Option<Instant>,
    /// Polled between attempts and while sleeping: true stops retrying.
    pub stop: Option<&'a dyn Fn() -> bool>,
    /// Limit of one attempt instead of the configured one.
    pub attempt_timeout: Option<Duration>,
    /// Log retries at debug level only (background loops that log on their own).
    pub quiet: bool,
}

/// The outcome of one failed attempt.
#[derive(Debug, Clone)]
pub struct AttemptError {
    /// How the retry policy counts it; `None`: never retried (e.g. a bad certificate).
    pub failure: Option<Failure>,
    /// The HTTP status, if the master answered.
    pub status: Option<u16>,
    /// What happened, for messages.
    pub message: String,
    /// True when a time limit cut the attempt.
    pub timed_out: bool,
}

/// The master client.
pub struct MasterClient {
    url: MasterUrl,
    agent: ureq::Agent,
    tls: Option<Arc<rustls::ClientConfig>>,
    auth: String,
    retry: RetryPolicy,
    timeouts: Timeouts,
}

impl std::fmt::Debug for MasterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterClient")
            .field("url", &self.url.canonical())
            .finish_non_exhaustive()
    }
}

impl MasterClient {
    /// A client for `url`, authenticating with the allocation `token`.
    pub fn new(
        url: MasterUrl,
        token: &str,
        tls: Option<Arc<rustls::ClientConfig>>,
        retry: RetryPolicy,
        timeouts: Timeouts,
    ) -> MasterClient {
        crate::log::register_secret(token);
        // Redirects are never followed: ureq would resend the allocation token to wherever the
        // `Location` points (and turn a POST into a GET whose answer looks like a success).
        let mut b = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout_connect(timeouts.connect)
            .user_agent(concat!("detcore/", env!("CARGO_PKG_VERSION")))
            .max_idle_connections_per_host(4)
            .no_delay(true);
        if let Some(cfg) = &tls {
            b = b.tls_config(cfg.clone());
        }
        MasterClient {
            url,
            agent: b.build(),
            tls,
            auth: format!("Bearer {token}"),
            retry,
            timeouts,
        }
    }

    /// The master URL.
    pub fn url(&self) -> &MasterUrl {
        &self.url
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The time limits.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// The TLS configuration (https masters).
    pub fn tls_config(&self) -> Option<&Arc<rustls::ClientConfig>> {
        self.tls.as_ref()
    }

    /// The value of the auth header.
    pub(crate) fn auth_value(&self) -> &str {
        &self.auth
    }

    /// One attempt: send `method path` with `body`, return the answer of a 2xx: its text,
    /// checked to be JSON (or empty).
    pub fn attempt(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        timeout: Duration,
    ) -> std::result::Result<String, AttemptError> {
        let url = self.url.join(path);
        let req = self
            .agent
            .request(method, &url)
            .set(AUTH_HEADER, &self.auth)
            .timeout(timeout);
        let res = match body {
            Some(b) => req.send_bytes(b.as_bytes()),
            None if method == "GET" || method == "HEAD" => req.call(),
            None => req.send_bytes(&[]),
        };
        match res {
            Ok(r) if (300..400).contains(&r.status()) => {
                let code = r.status();
                let location = r.header("location").unwrap_or("(none)").to_owned();
                let _ = read_body(r);
                Err(AttemptError {
                    failure: Some(Failure::Status {
                        code,
                        retry_after: None,
                    }),
                    status: Some(code),
                    message: redirect_message(code, &location),
                    timed_out: false,
                })
            }
            Ok(r) => {
                let status = r.status();
                let text = read_body(r).map_err(|e| AttemptError {
                    // An oversized answer would come again: not retried.
                    failure: (e.kind() != std::io::ErrorKind::InvalidData).then_some(Failure::Read),
                    status: None,
                    message: format!("reading the answer failed: {e}"),
                    timed_out: is_timeout(&e),
                })?;
                if !(200..300).contains(&status) {
                    return Err(AttemptError {
                        failure: None,
                        status: Some(status),
                        message: format!("unexpected status {status}"),
                        timed_out: false,
                    });
                }
                if text.trim().is_empty() {
                    return Ok(text);
                }
                match serde_json::from_str::<IgnoredAny>(&text) {
                    Ok(_) => Ok(text),
                    Err(e) => Err(AttemptError {
                        failure: None,
                        status: Some(status),
                        message: format!("the master's answer is not JSON: {e}"),
                        timed_out: false,
                    }),
                }
            }
            Err(ureq::Error::Status(code, r)) => {
                let retry_after = r
                    .header("retry-after")
                    .and_then(|v| v.trim().parse::<f64>().ok());
                let text = read_body(r).unwrap_or_default();
                Err(AttemptError {
                    failure: Some(Failure::Status { code, retry_after }),
                    status: Some(code),
                    message: status_message(code, &text),
                    timed_out: false,
                })
            }
            Err(ureq::Error::Transport(t)) => Err(classify(&t)),
        }
    }

    /// A request with retries per the policy (plus detcore's 5xx retries), bounded by `opts`;
    /// the answer is read into `T` with serde_json (an empty or `null` answer is
    /// `T::default()`; [`IgnoredAny`] when the answer does not matter).
    /// Errors: `Kind::NotFound` for 404, `Kind::Timeout` when a time limit ended it,
    /// `Kind::Master` otherwise; messages name the method, the path and what happened (for an
    /// answer of the wrong shape, the key).
    pub fn call<T: DeserializeOwned + Default>(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        opts: CallOpts<'_>,
    ) -> Result<T> {
        let text = body.map(to_wire);
        let mut budget = self.retry.start();
        loop {
            let mut timeout = opts.attempt_timeout.unwrap_or(self.timeouts.request);
            if let Some(d) = opts.deadline {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(err!(
                        Timeout,
                        "{method} {path}: gave up at the deadline before the master answered"
                    ));
                }
                timeout = timeout.min(left);
            }
            let e = match self.attempt(method, path, text.as_deref(), timeout) {
                Ok(answer) => return decode(method, path, &answer),
                Err(e) => e,
            };
            let retryable = match (&e.failure, e.status) {
                (None, _) => false,
                (Some(Failure::Status { retry_after, .. }), Some(code)) => {
                    budget.status_retryable(method, code, retry_after.is_some())
                }
                _ => true,
            };
            let sleep = if retryable {
                e.failure.as_ref().and_then(|f| budget.next(method, f))
            } else {
                None
            };
            let Some(sleep) = sleep else {
                return Err(self.final_error(method, path, &e, budget.retries()));
            };
            if opts.quiet || budget.retries() > 3 && !budget.retries().is_multiple_of(10) {
                log_debug!(
                    "{method} {}: {}; retry {} in {:.1} s",
                    path,
                    e.message,
                    budget.retries(),
                    sleep.as_secs_f64()
                );
            } else {
                log_warn!(
                    "{method} {}: {}; retry {} in {:.1} s",
                    path,
                    e.message,
                    budget.retries(),
                    sleep.as_secs_f64()
                );
            }
            if !sleep_interruptible(sleep, opts) {
                let mut err = self.final_error(method, path, &e, budget.retries());
                if opts.deadline.is_some_and(|d| Instant::now() >= d) {
                    err = Error::new(Kind::Timeout, err.message().to_owned());
                }
                return Err(err);
            }
        }
    }

    fn final_error(&self, method: &str, path: &str, e: &AttemptError, retries: u32) -> Error {
        let after = match retries {
            0 => String::new(),
            1 => " (after 1 retry)".into(),
            n => format!(" (after {n} retries)"),
        };
        let kind = match e.status {
            Some(404) => Kind::NotFound,
            Some(_) => Kind::Master,
            None if e.timed_out => Kind::Timeout,
            None => Kind::Master,
        };
        let what = match e.status {
            Some(_) => e.message.clone(),
            None if e.timed_out => format!(
                "the master at {} did not answer in time (DETCORE_MASTER_TIMEOUT = {:.0} s per attempt)",
                self.url,
                self.timeouts.request.as_secs_f64()
            ),
            None => format!("cannot reach the master at {}: {}", self.url, e.message),
        };
        Error::new(kind, format!("{method} {path}: {what}{after}"))
    }
}

/// Sleep `d`, waking early when `opts.stop` says so or the deadline passes. False if stopped.
pub fn sleep_interruptible(d: Duration, opts: CallOpts<'_>) -> bool {
    let end = crate::time::deadline(d);
    loop {
        if opts.stop.is_some_and(|s| s()) {
            return false;
        }
        let now = Instant::now();
        if let Some(dl) = opts.deadline {
            if now >= dl {
                return false;
            }
        }
        if now >= end {
            return true;
        }
        let mut step = (end - now).min(Duration::from_millis(50));
        if let Some(dl) = opts.deadline {
            step = step.min(dl.saturating_duration_since(now));
        }
        std::thread::sleep(step);
    }
}

/// The answer's body as text, at most [`MAX_ANSWER_BYTES`] (a larger one is an `InvalidData`
/// error).
fn read_body(r: ureq::Response) -> std::io::Result<String> {
    let mut buf = Vec::new();
    r.into_reader()
        .take(MAX_ANSWER_BYTES as u64 + 1)
        .read_to_end(&mut buf)?;
    if buf.len() > MAX_ANSWER_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "the answer is larger than {} MiB, more than any answer of the master API; refusing it",
                MAX_ANSWER_BYTES >> 20
            ),
        ));
    }
    String::from_utf8(buf).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "the answer is not UTF-8")
    })
}

/// What a redirect answer means for the user.
pub fn redirect_message(code: u16, location: &str) -> String {
    format!(
        "the master answered {code} {} to {location}; detcore does not follow redirects (the request carries the task's token): set the master URL to the address that answers",
        match code {
            301 => "Moved Permanently",
            302 => "Found",
            303 => "See Other",
            307 => "Temporary Redirect",
            308 => "Permanent Redirect",
            _ => "(redirect)",
        }
    )
}

fn reason(code: u16) -> &'static str {
    match code {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

/// A 2xx answer's text read into `T`: the default for an empty or `null` answer, else the
/// object's keys (`POST /api/v1/runs/start: the master's answer: key "storageId" must be ...`).
fn decode<T: DeserializeOwned + Default>(method: &str, path: &str, text: &str) -> Result<T> {
    if matches!(text.trim(), "" | "null") {
        return Ok(T::default());
    }
    crate::json::from_object_text(text, format_args!("{method} {path}: the master's answer"))
        .map_err(|e| err!(Master, "{}", e.message()))
}

/// The master's error text (`_get_error_str`): `message`, else `error.message`, else
/// `error.error`; a value that is not a string counts as absent.
pub fn error_text(body: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct ErrorAnswer {
        message: Option<serde_json::Value>,
        error: Option<serde_json::Value>,
    }
    let a: ErrorAnswer = serde_json::from_str(body).ok()?;
    let text = |v: Option<&serde_json::Value>| v?.as_str().map(str::to_owned);
    text(a.message.as_ref()).or_else(|| {
        let e = a.error?;
        text(e.get("message").or_else(|| e.get("error")))
    })
}

fn status_message(code: u16, body: &str) -> String {
    let detail = match error_text(body) {
        Some(t) if !t.is_empty() => format!(": {t}"),
        _ => {
            let b = body.trim();
            if b.is_empty() {
                String::new()
            } else {
                format!(": {}", b.chars().take(300).collect::<String>())
            }
        }
    };
    match code {
        401 => format!("the master refused the allocation token (401 Unauthorized){detail}; is DET_SESSION_TOKEN the task's token and the allocation still alive?"),
        _ => format!("the master answered {code} {}{detail}", reason(code)),
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    )
}

/// Find a rustls error (certificate problems are never retried) or an I/O timeout in `t`.
fn classify(t: &ureq::Transport) -> AttemptError {
    use std::error::Error as _;
    let mut timed_out = false;
    let mut tls: Option<String> = None;
    let mut io_text: Option<String> = None;
    let mut src: Option<&(dyn std::error::Error + 'static)> = t.source();
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            timed_out |= is_timeout(io);
            match io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                Some(r) => tls = Some(tls_message(r)),
                None => {
                    io_text.get_or_insert_with(|| io.to_string());
                }
            }
        }
        if let Some(r) = s.downcast_ref::<rustls::Error>() {
            tls = Some(tls_message(r));
        }
        src = s.source();
    }
    if let Some(m) = tls {
        return AttemptError {
            failure: None,
            status: None,
            message: format!("TLS: {m}"),
            timed_out: false,
        };
    }
    let failure = match t.kind() {
        ureq::ErrorKind::Dns | ureq::ErrorKind::ConnectionFailed => Failure::Connect,
        ureq::ErrorKind::Io | ureq::ErrorKind::BadStatus | ureq::ErrorKind::BadHeader => {
            Failure::Read
        }
        _ => Failure::Other,
    };
    let detail = io_text
        .or_else(|| t.message().map(str::to_owned))
        .unwrap_or_else(|| t.kind().to_string());
    let timed_out = timed_out || detail.contains("timed out");
    let message = match failure {
        Failure::Connect if t.kind() == ureq::ErrorKind::Dns => {
            format!("DNS lookup failed: {detail}")
        }
        Failure::Connect => format!("connection failed: {detail}"),
        _ if timed_out => "no answer in time".to_owned(),
        Failure::Read => format!("the connection broke before an answer: {detail}"),
        _ => detail,
    };
    AttemptError {
        failure: Some(failure),
        status: None,
        message,
        timed_out,
    }
}

fn tls_message(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(c) => format!(
            "the master's certificate was refused ({c:?}); check DET_MASTER_CERT_FILE and DET_MASTER_CERT_NAME"
        ),
        other => other.to_string(),
    }
}

/// Percent-encode a query or path component (RFC 3986 unreserved characters kept).
pub fn percent_encode(s: &str) -> String {
    crate::percent::encode(s, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_texts() {
        assert_eq!(
            error_text(
                r#"{"error": {"code": 3, "reason": "InvalidArgument", "error": "bad group"}}"#
            )
            .as_deref(),
            Some("bad group")
        );
        assert_eq!(error_text(r#"{"message": "m"}"#).as_deref(), Some("m"));
        assert_eq!(error_text("nope"), None);
        assert!(status_message(400, r#"{"error":{"error":"x"}}"#).contains("400 Bad Request: x"));
        assert!(status_message(401, "").contains("DET_SESSION_TOKEN"));
    }

    #[test]
    fn answers_are_read_into_their_structure_naming_a_wrong_key() {
        #[derive(Deserialize, Default, Debug)]
        struct Answer {
            #[serde(
                rename = "storageId",
                default,
                deserialize_with = "crate::json::field::opt_int"
            )]
            storage_id: Option<i64>,
        }
        let ok = |t: &str| decode::<Answer>("POST", "/p", t).unwrap().storage_id;
        assert_eq!(ok(""), None);
        assert_eq!(ok("null"), None);
        assert_eq!(ok(r#"{"storageId": null, "other": [1]}"#), None);
        assert_eq!(ok(r#"{"storageId": 3}"#), Some(3));
        let e = decode::<Answer>("POST", "/p", r#"{"storageId": "3"}"#).unwrap_err();
        assert_eq!(e.kind(), Kind::Master);
        assert!(
            e.message().starts_with(
                r#"POST /p: the master's answer: key "storageId" must be an integer or null, got string "3""#
            ),
            "{e}"
        );
        let e = decode::<Answer>("POST", "/p", "[1]").unwrap_err();
        assert!(
            e.message().contains("expected a JSON object, got array"),
            "{e}"
        );
        assert_eq!(
            error_text(r#"{"error": {"code": 5, "error": "no trial"}}"#).as_deref(),
            Some("no trial")
        );
        assert_eq!(
            error_text(r#"{"message": "m", "error": "x"}"#).as_deref(),
            Some("m")
        );
        assert_eq!(error_text("<html>"), None);
    }

    #[test]
    fn encodes() {
        assert_eq!(percent_encode("a b/c"), "a%20b%2Fc");
        assert_eq!(percent_encode("60"), "60");
    }

    #[test]
    fn refused_connection_is_retried_then_named() {
        // A port nobody listens on: bind then drop.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = MasterUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let policy = RetryPolicy::from_json(r#"{"total": 2, "backoff_factor": 0.01}"#).unwrap();
        let c = MasterClient::new(url, "tok-secret-123", None, policy, Timeouts::default());
        let t = Instant::now();
        let e = c
            .call::<IgnoredAny>("GET", "/api/v1/x", None, CallOpts::default())
            .unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(5));
        assert_eq!(e.kind(), Kind::Master);
        assert!(e.message().contains("cannot reach the master"), "{e}");
        assert!(e.message().contains("after 2 retries"), "{e}");
        assert!(!e.message().contains("tok-secret-123"));
    }
}
