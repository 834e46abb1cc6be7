//! What the cloud credential chains ([`super::aws_credentials`], [`super::gcp_auth`]) share:
//! an environment to read variables from, a cache that refreshes expiring credentials before
//! they expire, a small HTTP client for credential and metadata endpoints, and the list of
//! sources tried that goes into the "no credentials found" error.
//!
//! Refresh policy of [`Refreshing`]: credentials that expire at `E`, fetched at `F`, are
//! renewed from `E - min(15 min, (E - F) / 2)` on (the *advisory* window: while a refresh fails,
//! the current ones are kept and a warning is logged) and must be renewed from
//! `E - min(2 min, (E - F) / 4)` on (the *mandatory* window: a request then waits for the
//! refresh, and fails if it fails). One thread refreshes at a time; in the advisory window the
//! others keep using the current credentials meanwhile. Hour-long credentials are thus renewed
//! 15 minutes before they expire, as botocore and google-auth do; short-lived test credentials
//! halfway through their life.

use crate::error::{Error, Kind, Result};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Where a chain reads its environment variables: the process environment, or a fixed map (unit
/// tests, which must not change the process environment other tests read concurrently).
#[derive(Debug, Clone, Default)]
pub struct Env {
    map: Option<BTreeMap<String, String>>,
}

impl Env {
    /// The process environment.
    pub fn process() -> Env {
        Env { map: None }
    }

    /// A fixed environment.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Env {
        Env {
            map: Some(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
        }
    }

    /// The value of `name`, `None` when unset or empty.
    pub fn get(&self, name: &str) -> Option<String> {
        match &self.map {
            None => crate::env::env_nonempty(name),
            Some(m) => m.get(name).filter(|v| !v.is_empty()).cloned(),
        }
    }

    /// True when `name` is set to `true` (any case), as the SDKs read boolean variables.
    pub fn flag(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }

    /// A number of seconds from `name`, else `default`.
    pub fn seconds(&self, name: &str, default: f64) -> Result<Duration> {
        match self.get(name) {
            None => Ok(crate::time::secs(default)),
            Some(v) => match v.trim().parse::<f64>() {
                Ok(s) if s > 0.0 && s <= 3600.0 => Ok(crate::time::secs(s)),
                _ => Err(err!(
                    InvalidArgument,
                    "{name}: {v:?} is not a number of seconds in (0, 3600]"
                )),
            },
        }
    }

    /// A count from `name`, else `default`.
    pub fn count(&self, name: &str, default: u32) -> Result<u32> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => match v.trim().parse::<u32>() {
                Ok(n) if (1..=20).contains(&n) => Ok(n),
                _ => Err(err!(
                    InvalidArgument,
                    "{name}: {v:?} is not a whole number from 1 to 20"
                )),
            },
        }
    }

    /// The file named by `var`, else `$HOME/<default>`.
    pub fn home_file(&self, var: &str, default: &str) -> Option<PathBuf> {
        if let Some(p) = self.get(var) {
            return Some(expand_home(&p, self));
        }
        self.get("HOME").map(|h| PathBuf::from(h).join(default))
    }
}

/// `~/x` → `$HOME/x` (the SDKs expand `~` in file paths taken from variables and config files).
pub fn expand_home(p: &str, env: &Env) -> PathBuf {
    match (p.strip_prefix("~/"), env.get("HOME")) {
        (Some(rest), Some(h)) => PathBuf::from(h).join(rest),
        _ => PathBuf::from(p),
    }
}

/// The sources a chain tried, with why each gave nothing, for the final error.
#[derive(Debug, Default)]
pub struct Tried(Vec<String>);

impl Tried {
    /// Record that `source` gave nothing because of `why`.
    pub fn add(&mut self, source: impl std::fmt::Display, why: impl std::fmt::Display) {
        self.0.push(format!("{source}: {why}"));
    }

    /// The sources tried, one per line, for the message.
    pub fn lines(&self) -> String {
        self.0
            .iter()
            .enumerate()
            .map(|(i, s)| format!("\n  {}. {s}", i + 1))
            .collect()
    }
}

/// Credentials as a source hands them out, with their expiry (`None`: they do not expire).
pub struct Fetched<T> {
    pub value: T,
    pub expires: Option<SystemTime>,
}

struct Entry<T> {
    value: Arc<T>,
    expires: Option<SystemTime>,
    advisory: Option<SystemTime>,
    mandatory: Option<SystemTime>,
    /// The server refused these: renew before the next use.
    stale: bool,
}

/// The advisory and mandatory refresh times of credentials fetched at `fetched` that expire at
/// `expires` (see the module docs).
pub fn refresh_windows(fetched: SystemTime, expires: SystemTime) -> (SystemTime, SystemTime) {
    let life = expires.duration_since(fetched).unwrap_or_default();
    let advisory = expires - (life / 2).min(Duration::from_secs(15 * 60));
    let mandatory = expires - (life / 4).min(Duration::from_secs(2 * 60));
    (advisory, mandatory)
}

/// A function that fetches new credentials.
pub type FetchFn<T> = Box<dyn Fn() -> Result<Fetched<T>> + Send + Sync>;

/// Expiring credentials from one source, renewed before they expire (module docs).
pub struct Refreshing<T> {
    what: String,
    fetch: FetchFn<T>,
    current: Mutex<Entry<T>>,
    refresh: Mutex<()>,
    warned: std::sync::atomic::AtomicBool,
}

/// The shortest time credentials are used before they are fetched again, even when a source
/// hands out credentials that are (nearly) expired already: a bound on how often it is asked.
const MIN_REUSE: Duration = Duration::from_millis(250);

fn entry<T>(f: Fetched<T>, what: &str) -> Entry<T> {
    let now = SystemTime::now();
    let (advisory, mandatory) = match f.expires {
        Some(e) => {
            if e <= now + MIN_REUSE {
                log_warn!(
                    "{what} handed out credentials that expire at {}, which is not in the future (is this machine's clock right?)",
                    crate::time::iso8601(e)
                );
            }
            let (a, m) = refresh_windows(now, e);
            (Some(a.max(now + MIN_REUSE)), Some(m.max(now + MIN_REUSE)))
        }
        None => (None, None),
    };
    Entry {
        value: Arc::new(f.value),
        expires: f.expires,
        advisory,
        mandatory,
        stale: false,
    }
}

fn before(now: SystemTime, t: Option<SystemTime>) -> bool {
    t.is_none_or(|t| now < t)
}

impl<T> Refreshing<T> {
    /// Start from credentials just fetched (`first`); `what` names the source in messages.
    pub fn new(what: impl Into<String>, first: Fetched<T>, fetch: FetchFn<T>) -> Refreshing<T> {
        let what = what.into();
        Refreshing {
            fetch,
            current: Mutex::new(entry(first, &what)),
            what,
            refresh: Mutex::new(()),
            warned: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The source's name.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// When the current credentials expire.
    pub fn expires(&self) -> Option<SystemTime> {
        self.current.lock().expires
    }

    fn store(&self, f: Fetched<T>) -> Arc<T> {
        let e = entry(f, &self.what);
        let v = e.value.clone();
        log_debug!(
            "renewed the credentials of {}{}",
            self.what,
            match e.expires {
                Some(t) => format!(" (valid until {})", crate::time::iso8601(t)),
                None => String::new(),
            }
        );
        *self.current.lock() = e;
        self.warned
            .store(false, std::sync::atomic::Ordering::Relaxed);
        v
    }

    /// Current credentials, renewed first when they are due (module docs).
    pub fn get(&self) -> Result<Arc<T>> {
        let (value, usable) = {
            let c = self.current.lock();
            let now = SystemTime::now();
            if !c.stale && before(now, c.advisory) {
                return Ok(c.value.clone());
            }
            (c.value.clone(), !c.stale && before(now, c.mandatory))
        };
        if usable {
            // Advisory: one thread renews, the others go on with what they have.
            let Some(_g) = self.refresh.try_lock() else {
                return Ok(value);
            };
            // Renewed by another thread meanwhile.
            let now_current = self.current.lock().value.clone();
            if !Arc::ptr_eq(&now_current, &value) {
                return Ok(now_current);
            }
            return match (self.fetch)() {
                Ok(f) => Ok(self.store(f)),
                Err(e) => {
                    if !self.warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                        let until = self.current.lock().mandatory;
                        log_warn!(
                            "could not renew the credentials of {} ({e}); the current ones are used until {}",
                            self.what,
                            until.map(crate::time::iso8601).unwrap_or_default()
                        );
                    }
                    Ok(value)
                }
            };
        }
        // Mandatory: wait for the renewal.
        let _g = self.refresh.lock();
        {
            let c = self.current.lock();
            if !Arc::ptr_eq(&c.value, &value) && !c.stale && before(SystemTime::now(), c.mandatory)
            {
                return Ok(c.value.clone());
            }
        }
        match (self.fetch)() {
            Ok(f) => Ok(self.store(f)),
            Err(e) => Err(Error::new(
                e.kind(),
                format!(
                    "the credentials of {} expired and could not be renewed: {}",
                    self.what,
                    e.message()
                ),
            )),
        }
    }

    /// The server refused credentials (expired or revoked): if the current ones are those
    /// (`refused` says so), renew them before the next use.
    pub fn invalidate(&self, refused: impl Fn(&T) -> bool) {
        let mut c = self.current.lock();
        if refused(&c.value) && !c.stale {
            log_info!(
                "the storage refused the credentials of {}; renewing them",
                self.what
            );
            c.stale = true;
        }
    }
}

/// A blocking HTTP client for credential endpoints: `timeout` for connecting and for each read.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(timeout)
        .timeout_read(timeout)
        .timeout_write(timeout)
        .redirects(0)
        .user_agent(&format!("detcore/{}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Why a call to a credential endpoint failed.
#[derive(Debug)]
pub enum CallError {
    /// No answer: the connection failed (`connect`), or the answer did not come in time.
    Transport { connect: bool, message: String },
    /// The server answered with a non-2xx status.
    Status { status: u16, body: String },
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Transport { message, .. } => write!(f, "{message}"),
            CallError::Status { status, body } => {
                write!(f, "HTTP {status}")?;
                let b: String = body.trim().chars().take(300).collect();
                if !b.is_empty() {
                    write!(f, ": {}", crate::log::redact(&b))?;
                }
                Ok(())
            }
        }
    }
}

impl CallError {
    /// Worth another attempt: no answer, 429 or 5xx.
    pub fn retryable(&self) -> bool {
        match self {
            CallError::Transport { .. } => true,
            CallError::Status { status, .. } => *status == 429 || *status >= 500,
        }
    }

    /// The same, as an [`Error`] of `kind` saying what was asked.
    pub fn into_error(self, kind: Kind, what: &str) -> Error {
        Error::new(kind, format!("{what}: {self}"))
    }
}

/// One request: `headers` and an optional body. Returns the answer's body (at most 1 MiB) and
/// the headers asked for in `want` (lowercase names).
pub fn call(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    want: &[&str],
) -> std::result::Result<(String, Vec<Option<String>>), CallError> {
    let mut r = agent.request(method, url);
    for (k, v) in headers {
        r = r.set(k, v);
    }
    let res = match body {
        Some(b) => r.send_bytes(b),
        None if method == "PUT" || method == "POST" => r.send_bytes(&[]),
        None => r.call(),
    };
    let read = |resp: ureq::Response| -> String {
        let mut s = String::new();
        let _ = resp.into_reader().take(1 << 20).read_to_string(&mut s);
        s
    };
    match res {
        Ok(resp) => {
            let hs = want
                .iter()
                .map(|h| resp.header(h).map(str::to_owned))
                .collect();
            let mut s = String::new();
            resp.into_reader()
                .take(1 << 20)
                .read_to_string(&mut s)
                .map_err(|e| CallError::Transport {
                    connect: false,
                    message: format!("{method} {url}: reading the answer: {e}"),
                })?;
            Ok((s, hs))
        }
        Err(ureq::Error::Status(status, resp)) => Err(CallError::Status {
            status,
            body: read(resp),
        }),
        Err(ureq::Error::Transport(t)) => Err(CallError::Transport {
            connect: matches!(
                t.kind(),
                ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Dns
            ),
            message: crate::log::without_query_strings(&format!("{method} {url}: {t}")),
        }),
    }
}

#[allow(clippy::too_many_arguments)]
/// [`call`] up to `attempts` times while the failure is retryable, pausing `pause` between.
pub fn call_retrying(
    agent: &ureq::Agent,
    attempts: u32,
    pause: Duration,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    want: &[&str],
) -> std::result::Result<(String, Vec<Option<String>>), CallError> {
    let mut n = 1;
    loop {
        match call(agent, method, url, headers, body, want) {
            Err(e) if e.retryable() && n < attempts => {
                log_debug!("{e} (attempt {n} of {attempts})");
                std::thread::sleep(pause);
                n += 1;
            }
            other => return other,
        }
    }
}

/// A timestamp of a credential answer (`2024-05-01T12:00:00Z`, RFC 3339).
pub fn parse_timestamp(s: &str, what: &str) -> Result<SystemTime> {
    let t: jiff::Timestamp = s.trim().parse().map_err(|e| {
        err!(
            Storage,
            "{what}: the expiration {s:?} is not an RFC 3339 timestamp: {e}"
        )
    })?;
    Ok(SystemTime::from(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn windows() {
        let f = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let (a, m) = refresh_windows(f, f + Duration::from_secs(3600));
        assert_eq!(a, f + Duration::from_secs(45 * 60));
        assert_eq!(m, f + Duration::from_secs(58 * 60));
        let (a, m) = refresh_windows(f, f + Duration::from_secs(8));
        assert_eq!(a, f + Duration::from_secs(4));
        assert_eq!(m, f + Duration::from_secs(6));
        // Already expired: both now-ish, never in the future.
        let (a, m) = refresh_windows(f, f - Duration::from_secs(5));
        assert!(a <= f && m <= f);
    }

    fn counting(life: Duration, fail_from: u32) -> (Arc<AtomicU32>, Refreshing<u32>) {
        let n = Arc::new(AtomicU32::new(0));
        let n2 = n.clone();
        let fetch: FetchFn<u32> = Box::new(move || {
            let k = n2.fetch_add(1, Ordering::SeqCst) + 1;
            if k >= fail_from {
                return Err(err!(Storage, "source down"));
            }
            Ok(Fetched {
                value: k,
                expires: Some(SystemTime::now() + life),
            })
        });
        let first = Fetched {
            value: 0,
            expires: Some(SystemTime::now() + life),
        };
        (n, Refreshing::new("test source", first, fetch))
    }

    #[test]
    fn renewed_in_the_advisory_window_and_kept_when_renewal_fails() {
        let (n, r) = counting(Duration::from_millis(800), u32::MAX);
        assert_eq!(*r.get().unwrap(), 0);
        assert_eq!(
            n.load(Ordering::SeqCst),
            0,
            "fresh credentials are not fetched again"
        );
        std::thread::sleep(Duration::from_millis(450));
        assert_eq!(*r.get().unwrap(), 1, "renewed halfway through their life");
        // A failing source in the advisory window: the current ones are kept.
        let (n, r) = counting(Duration::from_millis(800), 1);
        std::thread::sleep(Duration::from_millis(450));
        assert_eq!(*r.get().unwrap(), 0);
        assert_eq!(n.load(Ordering::SeqCst), 1);
        // In the mandatory window a failure is an error naming the source.
        std::thread::sleep(Duration::from_millis(250));
        let e = r.get().unwrap_err();
        assert!(
            e.message().contains("test source") && e.message().contains("source down"),
            "{e}"
        );
    }

    #[test]
    fn expired_credentials_from_the_source_are_not_fetched_at_every_request() {
        let (n, r) = counting(Duration::ZERO, u32::MAX);
        for _ in 0..100 {
            r.get().unwrap();
        }
        assert_eq!(n.load(Ordering::SeqCst), 0);
        std::thread::sleep(MIN_REUSE + Duration::from_millis(20));
        r.get().unwrap();
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }

    /// Many threads at once: one renewal. In the advisory window the others go on with the
    /// current credentials meanwhile; in the mandatory window they wait for the renewal.
    #[test]
    fn one_renewal_for_many_threads() {
        for (life, wait) in [(800, 450), (800, 700)] {
            let n = Arc::new(AtomicU32::new(0));
            let n2 = n.clone();
            let fetch: FetchFn<u32> = Box::new(move || {
                std::thread::sleep(Duration::from_millis(200));
                Ok(Fetched {
                    value: n2.fetch_add(1, Ordering::SeqCst) + 1,
                    expires: Some(SystemTime::now() + Duration::from_secs(3600)),
                })
            });
            let first = Fetched {
                value: 0,
                expires: Some(SystemTime::now() + Duration::from_millis(life)),
            };
            let r = Arc::new(Refreshing::new("slow source", first, fetch));
            std::thread::sleep(Duration::from_millis(wait));
            let got: Vec<u32> = (0..8)
                .map(|_| {
                    let r = r.clone();
                    std::thread::spawn(move || *r.get().unwrap())
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|t| t.join().unwrap())
                .collect();
            assert_eq!(n.load(Ordering::SeqCst), 1, "{got:?}");
            if wait == 700 {
                assert!(
                    got.iter().all(|v| *v == 1),
                    "mandatory: all wait for the new ones: {got:?}"
                );
            } else {
                assert!(got.contains(&1), "{got:?}");
            }
            assert_eq!(*r.get().unwrap(), 1);
        }
    }

    #[test]
    fn invalidated_credentials_are_renewed_once() {
        let (n, r) = counting(Duration::from_secs(3600), u32::MAX);
        let used = *r.get().unwrap();
        r.invalidate(|v| *v == used);
        r.invalidate(|v| *v == used);
        assert_eq!(*r.get().unwrap(), 1);
        // A second refusal of the old value does not throw away the new one.
        r.invalidate(|v| *v == used);
        assert_eq!(*r.get().unwrap(), 1);
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn env_values() {
        let e = Env::from_pairs(&[("A", "TRUE"), ("B", ""), ("T", "2.5"), ("HOME", "/h")]);
        assert!(e.flag("A") && !e.flag("B") && !e.flag("C"));
        assert_eq!(e.get("B"), None);
        assert_eq!(e.seconds("T", 1.0).unwrap(), Duration::from_millis(2500));
        assert_eq!(e.seconds("U", 1.0).unwrap(), Duration::from_secs(1));
        assert!(e.seconds("A", 1.0).is_err());
        assert_eq!(
            e.home_file("X", ".aws/config"),
            Some(PathBuf::from("/h/.aws/config"))
        );
        let e = Env::from_pairs(&[("X", "~/c"), ("HOME", "/h")]);
        assert_eq!(e.home_file("X", "d"), Some(PathBuf::from("/h/c")));
        assert_eq!(
            parse_timestamp("2024-05-01T12:00:00Z", "x").unwrap(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_714_564_800)
        );
        assert!(parse_timestamp("tomorrow", "x").is_err());
    }
}
