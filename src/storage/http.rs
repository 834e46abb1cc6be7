//! HTTP for the object-store backends (S3, GCS, Azure): one keep-alive ureq agent per backend,
//! request bodies streamed from files, and the one retry policy they share.
//!
//! Retries: an attempt is repeated, after an exponential backoff with jitter, when the server
//! answers 408, 429 or 5xx, or when the connection fails, is reset or stalls (the agent's read
//! and write timeouts turn a stall into an error). `Retry-After` is honoured up to the maximum
//! backoff. Any other status fails at once. Every error names the request's object and the
//! backend's error code (`s3: PUT s3://b/k: HTTP 503 SlowDown: …`).

use super::manifest::SumCell;
/// The settings the client runs with (re-exported: part of its interface).
pub use super::tuning::Tuning;
use crate::error::{Error, Kind, Result};
use crate::log::without_query_strings;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

/// The dialect of error bodies to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `<Error><Code>…</Code><Message>…</Message></Error>`.
    S3,
    /// `{"error": {"code": 404, "message": "…", "errors": [{"reason": "notFound"}]}}`.
    Gcs,
    /// `x-ms-error-code` header, `<Error><Code>…</Code><Message>…</Message></Error>` body.
    Azure,
}

impl Flavor {
    fn name(self) -> &'static str {
        match self {
            Flavor::S3 => "s3",
            Flavor::Gcs => "gcs",
            Flavor::Azure => "azure",
        }
    }
}

/// A request body.
#[derive(Debug, Clone, Copy)]
pub enum Body<'a> {
    /// No body (`Content-Length: 0` for methods that carry one).
    Empty,
    /// Bytes in memory.
    Bytes(&'a [u8]),
    /// `len` bytes of a file from `offset`, streamed. `sum`, when given, receives the CRC32C of
    /// the bytes sent (cleared when an attempt starts, set when its last byte is read).
    File {
        path: &'a Path,
        offset: u64,
        len: u64,
        sum: Option<&'a SumCell>,
    },
}

impl Body<'_> {
    /// The body's length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        }
    }

    /// True for an empty body.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One request: method, absolute URL, headers.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// A request without headers.
    pub fn new(method: &'static str, url: impl Into<String>) -> Request {
        Request {
            method,
            url: url.into(),
            headers: Vec::new(),
        }
    }

    /// Add a header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Request {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
}

/// Why one attempt failed, and whether another attempt may succeed.
#[derive(Debug)]
pub struct Failure {
    pub error: Error,
    pub retryable: bool,
    /// The server's `Retry-After`, if any.
    pub retry_after: Option<Duration>,
    /// The HTTP status, when the server answered.
    pub status: Option<u16>,
    /// The backend's error code (`NoSuchKey`, `ContainerAlreadyExists`, `notFound`), if any.
    pub code: Option<String>,
}

impl Failure {
    /// A failure that another attempt cannot fix.
    pub fn fatal(error: Error) -> Failure {
        Failure {
            error,
            retryable: false,
            retry_after: None,
            status: None,
            code: None,
        }
    }

    /// A failure worth another attempt (e.g. a body cut short).
    pub fn transient(error: Error) -> Failure {
        Failure {
            error,
            retryable: true,
            retry_after: None,
            status: None,
            code: None,
        }
    }

    /// An I/O error while streaming a body: local file errors are fatal, network ones not.
    pub fn from_io(what: &str, e: &io::Error, local: bool) -> Failure {
        let err = Error::new(
            if local { Kind::Io } else { Kind::Storage },
            format!("{what}: {e}"),
        );
        if local {
            Failure::fatal(err)
        } else {
            Failure::transient(err)
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::fatal(e)
    }
}

/// The HTTP client of one backend.
pub struct Http {
    agent: ureq::Agent,
    flavor: Flavor,
    tuning: Tuning,
}

/// A reader over `len` bytes of a file from `offset`; file errors are tagged so they are not
/// mistaken for network errors. With a [`SumCell`], the bytes read are summed and the CRC32C is
/// stored in the cell once the last one is read.
struct FileRange<'a> {
    file: File,
    left: u64,
    crc: u32,
    sum: Option<&'a SumCell>,
    /// Bytes handed to the connection, counted into the thread's transfer progress.
    sent: &'a std::cell::Cell<u64>,
}

impl Read for FileRange<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let n = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let got = self.file.read(&mut buf[..n])?;
        if got == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was being uploaded",
            ));
        }
        self.left -= got as u64;
        if let Some(cell) = self.sum {
            self.crc = crc32c::crc32c_append(self.crc, &buf[..got]);
            if self.left == 0 {
                cell.set(self.crc);
            }
        }
        self.sent.set(self.sent.get() + got as u64);
        super::progress::add_current(got as u64);
        Ok(got)
    }
}

/// Open the reader of a file body (a local error is fatal).
fn open_range<'a>(
    path: &Path,
    offset: u64,
    len: u64,
    sum: Option<&'a SumCell>,
    sent: &'a std::cell::Cell<u64>,
) -> Result<FileRange<'a>> {
    let mut file = File::open(path).map_err(|e| Error::io("cannot open", path, e))?;
    if offset > 0 {
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| Error::io("cannot seek in", path, e))?;
    }
    if let Some(cell) = sum {
        cell.clear();
        if len == 0 {
            cell.set(0);
        }
    }
    Ok(FileRange {
        file,
        left: len,
        crc: 0,
        sum,
        sent,
    })
}

fn parse_retry_after(v: Option<&str>) -> Option<Duration> {
    let s = v?.trim();
    s.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && *x >= 0.0)
        .map(crate::time::secs)
}

/// Extract `(code, message)` from an error response.
pub fn parse_error_body(flavor: Flavor, header_code: Option<&str>, body: &str) -> (String, String) {
    match flavor {
        Flavor::S3 | Flavor::Azure => {
            let (mut code, mut message) = (String::new(), String::new());
            if let Ok(doc) = super::xml::parse(body) {
                code = doc.child_text("Code").unwrap_or_default();
                message = doc.child_text("Message").unwrap_or_default();
            }
            if let Some(h) = header_code {
                if code.is_empty() {
                    code = h.to_owned();
                }
            }
            // Azure messages carry RequestId/Time lines; keep the first line.
            let message = message.lines().next().unwrap_or("").trim().to_owned();
            (code, message)
        }
        Flavor::Gcs => {
            let v = crate::json::parse(body).ok();
            let err = v.as_ref().and_then(|v| v.get("error"));
            let message = err
                .and_then(|e| e.get("message"))
                .and_then(|m| m.as_str())
                .unwrap_or("")
                .to_owned();
            let code = err
                .and_then(|e| e.get("errors"))
                .and_then(|e| e.as_array())
                .and_then(|a| a.first())
                .and_then(|e| e.get("reason"))
                .and_then(|r| r.as_str())
                .unwrap_or("")
                .to_owned();
            (
                code,
                if message.is_empty() {
                    body.trim().chars().take(200).collect()
                } else {
                    message
                },
            )
        }
    }
}

/// True for statuses worth retrying.
pub fn retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}

impl Http {
    /// A client for `flavor` with `tuning`'s timeouts and a connection pool sized for its
    /// concurrency.
    pub fn new(flavor: Flavor, tuning: Tuning) -> Http {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(tuning.timeout.min(Duration::from_secs(30)))
            .timeout_read(tuning.timeout)
            .timeout_write(tuning.timeout)
            .max_idle_connections(tuning.concurrency * 2 + 4)
            .max_idle_connections_per_host(tuning.concurrency * 2 + 4)
            .no_delay(true)
            .redirects(0)
            .user_agent(&format!("detcore/{}", env!("CARGO_PKG_VERSION")))
            .build();
        Http {
            agent,
            flavor,
            tuning,
        }
    }

    /// The transfer settings.
    pub fn tuning(&self) -> &Tuning {
        &self.tuning
    }

    /// Send one attempt of `req` with `body`; `what` names the object for messages (e.g.
    /// `s3://bucket/key`). 2xx and 3xx answers are returned; others become a [`Failure`].
    pub fn send(
        &self,
        req: &Request,
        body: Body<'_>,
        what: &str,
    ) -> std::result::Result<ureq::Response, Failure> {
        let mut r = self.agent.request(req.method, &req.url);
        for (k, v) in &req.headers {
            r = r.set(k, v);
        }
        let method = req.method;
        let sent = std::cell::Cell::new(0u64);
        let res = match body {
            Body::Empty => {
                if matches!(method, "PUT" | "POST") {
                    r.set("Content-Length", "0").send_bytes(&[])
                } else {
                    r.call()
                }
            }
            Body::Bytes(b) => r.send_bytes(b),
            Body::File {
                path,
                offset,
                len,
                sum,
            } => {
                let reader = open_range(path, offset, len, sum, &sent)?;
                r.set("Content-Length", &len.to_string()).send(reader)
            }
        };
        if res.is_err() {
            // Not stored: the bytes sent by this attempt will be sent again.
            super::progress::sub_current(sent.get());
        }
        match res {
            Ok(resp) => Ok(resp),
            Err(ureq::Error::Status(status, resp)) => {
                Err(self.status_failure(method, what, status, resp))
            }
            Err(ureq::Error::Transport(t)) => {
                use ureq::ErrorKind as K;
                // A local file error surfaces as an Io transport error with our message.
                let retryable = !matches!(
                    t.kind(),
                    K::InvalidUrl
                        | K::UnknownScheme
                        | K::InsecureRequestHttpsOnly
                        | K::InvalidProxyUrl
                ) && !t
                    .to_string()
                    .contains("the file shrank while it was being uploaded");
                let msg = without_query_strings(&t.to_string());
                Err(Failure {
                    error: Error::new(
                        Kind::Storage,
                        format!("{}: {method} {what}: {msg}", self.flavor.name()),
                    ),
                    retryable,
                    retry_after: None,
                    status: None,
                    code: None,
                })
            }
        }
    }

    /// One unauthenticated `GET url`: the `Server` header of whatever answer comes back.
    pub fn server_header(&self, url: &str) -> std::result::Result<Option<String>, Failure> {
        let resp = match self.agent.get(url).call() {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(ureq::Error::Transport(t)) => {
                return Err(Failure::transient(Error::new(
                    Kind::Storage,
                    format!(
                        "{}: GET {}",
                        self.flavor.name(),
                        without_query_strings(&format!("{url}: {t}"))
                    ),
                )))
            }
        };
        Ok(resp.header("server").map(str::to_owned))
    }

    /// Turn an error answer into a [`Failure`] naming the object and the backend's code.
    pub fn status_failure(
        &self,
        method: &str,
        what: &str,
        status: u16,
        resp: ureq::Response,
    ) -> Failure {
        let header_code = resp.header("x-ms-error-code").map(str::to_owned);
        let retry_after = parse_retry_after(resp.header("retry-after"));
        let mut body = String::new();
        let _ = resp.into_reader().take(64 << 10).read_to_string(&mut body);
        let (code, message) = parse_error_body(self.flavor, header_code.as_deref(), &body);
        let kind = if status == 404 {
            Kind::NotFound
        } else {
            Kind::Storage
        };
        let mut text = format!("{}: {method} {what}: HTTP {status}", self.flavor.name());
        if !code.is_empty() {
            text.push(' ');
            text.push_str(&code);
        }
        if !message.is_empty() {
            text.push_str(": ");
            text.push_str(&message);
        }
        if status == 401 || status == 403 {
            text.push_str(" (check the storage credentials and their permissions)");
        }
        Failure {
            error: Error::new(kind, text),
            retryable: retryable_status(status),
            retry_after,
            status: Some(status),
            code: if code.is_empty() { None } else { Some(code) },
        }
    }

    /// Run `attempt` until it succeeds, fails for good, or the attempts are used up. The
    /// argument is the attempt number (1-based). The final error says how many attempts were
    /// made when more than one was.
    pub fn retry<T>(
        &self,
        mut attempt: impl FnMut(u32) -> std::result::Result<T, Failure>,
    ) -> Result<T> {
        let max = self.tuning.max_attempts.max(1);
        let mut n = 1;
        loop {
            match attempt(n) {
                Ok(v) => return Ok(v),
                Err(f) if !f.retryable || n >= max => {
                    return Err(if n > 1 {
                        Error::new(
                            f.error.kind(),
                            format!("{} (gave up after {n} attempts)", f.error.message()),
                        )
                    } else {
                        f.error
                    })
                }
                Err(f) => {
                    let exp = self
                        .tuning
                        .backoff_base
                        .saturating_mul(1u32 << (n - 1).min(16))
                        .min(self.tuning.backoff_max);
                    let delay = match f.retry_after {
                        Some(ra) => ra.min(self.tuning.backoff_max).max(exp / 2),
                        None => exp.mul_f64(0.5 + 0.5 * crate::time::jitter()),
                    };
                    log_debug!("{} (attempt {n} of {max}; retrying in {delay:?})", f.error);
                    std::thread::sleep(delay);
                    n += 1;
                }
            }
        }
    }
}

/// Read a response body (at most `limit` bytes); a connection lost midway is retryable.
pub fn read_body(
    resp: ureq::Response,
    limit: u64,
    what: &str,
) -> std::result::Result<Vec<u8>, Failure> {
    let mut out = Vec::new();
    resp.into_reader()
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| Failure::from_io(&format!("reading the answer for {what}"), &e, false))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies() {
        let (c, m) = parse_error_body(
            Flavor::S3,
            None,
            "<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><Message>The key &amp; more</Message></Error>",
        );
        assert_eq!((c.as_str(), m.as_str()), ("NoSuchKey", "The key & more"));
        let (c, m) = parse_error_body(
            Flavor::Gcs,
            None,
            r#"{"error": {"code": 404, "message": "No such object: b/o", "errors": [{"reason": "notFound"}]}}"#,
        );
        assert_eq!(
            (c.as_str(), m.as_str()),
            ("notFound", "No such object: b/o")
        );
        let (c, _) = parse_error_body(Flavor::Azure, Some("BlobNotFound"), "");
        assert_eq!(c, "BlobNotFound");
        assert!(retryable_status(503) && retryable_status(429) && !retryable_status(404));
    }

    #[test]
    fn retry_gives_up_and_counts() {
        let t = Tuning {
            max_attempts: 3,
            backoff_base: Duration::from_millis(1),
            backoff_max: Duration::from_millis(2),
            ..Tuning::default()
        };
        let http = Http::new(Flavor::S3, t);
        let mut calls = 0;
        let r: Result<()> = http.retry(|_| {
            calls += 1;
            Err(Failure::transient(Error::new(Kind::Storage, "boom")))
        });
        assert_eq!(calls, 3);
        assert!(r
            .unwrap_err()
            .message()
            .contains("gave up after 3 attempts"));
        let mut calls = 0;
        let r: Result<()> = http.retry(|_| {
            calls += 1;
            Err(Failure::fatal(Error::new(Kind::Storage, "nope")))
        });
        assert_eq!(calls, 1);
        assert_eq!(r.unwrap_err().message(), "nope");
        let mut calls = 0;
        let r = http.retry(|n| {
            calls += 1;
            if n < 2 {
                Err(Failure::transient(Error::new(Kind::Storage, "x")))
            } else {
                Ok(7)
            }
        });
        assert_eq!((r.unwrap(), calls), (7, 2));
    }
}
