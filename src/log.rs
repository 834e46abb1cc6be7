//! Log lines in Determined's format: `LEVEL: [pid] detcore: message` (Python's `det.LOG_FORMAT`
//! with logger name `detcore`), written to stderr in one `write` per line so that lines from
//! several threads never interleave. On-cluster the container's log shipper parses the level
//! prefix, so the WebUI's level filter works on these lines as on Python's.
//!
//! The threshold comes from `DETCORE_LOG_LEVEL` (`debug`, `info`, `warning`, `error`, `off`;
//! default `info`) and can be changed at run time. Secrets registered with [`register_secret`]
//! (the session token) are replaced by `***` in every line, so no code path can log them.

use parking_lot::RwLock;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// Log levels, with Python's ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Debug = 10,
    Info = 20,
    Warning = 30,
    Error = 40,
    Off = 255,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
            Level::Off => "OFF",
        }
    }

    /// Parse `debug`, `info`, `warning`/`warn`, `error`, `off` (any case).
    pub fn parse(s: &str) -> Option<Level> {
        match s.trim().to_ascii_lowercase().as_str() {
            "debug" => Some(Level::Debug),
            "info" => Some(Level::Info),
            "warning" | "warn" => Some(Level::Warning),
            "error" | "critical" => Some(Level::Error),
            "off" | "none" | "quiet" => Some(Level::Off),
            _ => None,
        }
    }

    fn from_u8(v: u8) -> Level {
        match v {
            10 => Level::Debug,
            20 => Level::Info,
            30 => Level::Warning,
            40 => Level::Error,
            _ => Level::Off,
        }
    }
}

const UNSET: u8 = 0;
static THRESHOLD: AtomicU8 = AtomicU8::new(UNSET);
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

fn threshold() -> Level {
    let v = THRESHOLD.load(Ordering::Relaxed);
    if v != UNSET {
        return Level::from_u8(v);
    }
    static FROM_ENV: OnceLock<Level> = OnceLock::new();
    *FROM_ENV.get_or_init(|| {
        std::env::var("DETCORE_LOG_LEVEL")
            .ok()
            .and_then(|s| Level::parse(&s))
            .unwrap_or(Level::Info)
    })
}

/// Set the process-wide threshold (overrides `DETCORE_LOG_LEVEL`).
pub fn set_level(level: Level) {
    THRESHOLD.store(level as u8, Ordering::Relaxed);
}

/// True if a line at `level` would be written.
pub fn enabled(level: Level) -> bool {
    level != Level::Off && level >= threshold()
}

/// Never print `secret` (e.g. the allocation session token); it becomes `***`.
pub fn register_secret(secret: &str) {
    if secret.len() >= 4 {
        let mut s = SECRETS.write();
        if !s.iter().any(|x| x == secret) {
            s.push(secret.to_owned());
        }
    }
}

/// Replace registered secrets in `text` with `***`.
pub fn redact(text: &str) -> String {
    let secrets = SECRETS.read();
    let mut out = text.to_owned();
    for s in secrets.iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "***");
        }
    }
    out
}

/// `text` with the query string of every URL in it cut: a presigned S3 URL or an Azure SAS URL
/// carries its signature there, which must never reach an error message or a log.
pub fn without_query_strings(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (before, after) = rest.split_at(i + 3);
        out.push_str(before);
        let end = after
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '>' | ','))
            .unwrap_or(after.len());
        // "…url: message" (how ureq names the URL of a failed request) keeps its colon.
        let end = if after[..end].ends_with(':') {
            end - 1
        } else {
            end
        };
        let url = &after[..end];
        match url.find('?') {
            Some(q) => {
                out.push_str(&url[..q]);
                out.push_str("?…");
            }
            None => out.push_str(url),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Write one line at `level` (if enabled).
pub fn write(level: Level, msg: &str) {
    if !enabled(level) {
        return;
    }
    let line = format!(
        "{}: [{}] detcore: {}\n",
        level.name(),
        std::process::id(),
        redact(msg)
    );
    #[cfg(not(test))]
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
    // Under `cargo test`, through the test harness's output capture (which only sees the
    // print macros): a test's log lines are shown when it fails, not mixed into the progress.
    #[cfg(test)]
    eprint!("{line}");
}

/// `log::info!("...", args)`.
#[macro_export]
macro_rules! log_info {
    ($($t:tt)*) => { if $crate::log::enabled($crate::log::Level::Info) { $crate::log::write($crate::log::Level::Info, &format!($($t)*)) } };
}
/// `log::warn!("...", args)`.
#[macro_export]
macro_rules! log_warn {
    ($($t:tt)*) => { if $crate::log::enabled($crate::log::Level::Warning) { $crate::log::write($crate::log::Level::Warning, &format!($($t)*)) } };
}
/// `log::error!("...", args)`.
#[macro_export]
macro_rules! log_error {
    ($($t:tt)*) => { if $crate::log::enabled($crate::log::Level::Error) { $crate::log::write($crate::log::Level::Error, &format!($($t)*)) } };
}
/// `log::debug!("...", args)`.
#[macro_export]
macro_rules! log_debug {
    ($($t:tt)*) => { if $crate::log::enabled($crate::log::Level::Debug) { $crate::log::write($crate::log::Level::Debug, &format!($($t)*)) } };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse() {
        assert_eq!(Level::parse("WARN"), Some(Level::Warning));
        assert_eq!(Level::parse("off"), Some(Level::Off));
        assert_eq!(Level::parse("verbose"), None);
    }

    #[test]
    fn secrets_are_redacted() {
        register_secret("s3cr3t-token-value");
        assert_eq!(redact("Bearer s3cr3t-token-value sent"), "Bearer *** sent");
        register_secret("ab"); // too short to be a secret worth scrubbing
        assert_eq!(redact("abc"), "abc");
    }

    #[test]
    fn query_strings_never_reach_messages() {
        let t = "https://b.s3.amazonaws.com/k/x.bin?X-Amz-Signature=abc&X-Amz-Credential=AKIA: \
                 Connection Failed: Connect error: connection refused (http://h:1/a?sig=s), done";
        let r = without_query_strings(t);
        assert!(
            !r.contains("abc") && !r.contains("AKIA") && !r.contains("sig=s"),
            "{r}"
        );
        assert!(
            r.starts_with("https://b.s3.amazonaws.com/k/x.bin?…: Connection Failed"),
            "{r}"
        );
        assert!(r.contains("(http://h:1/a?…), done"), "{r}");
        assert_eq!(without_query_strings("no url here"), "no url here");
        assert_eq!(without_query_strings("http://h/p"), "http://h/p");
    }
}
