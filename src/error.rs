//! The one error type of the core.
//!
//! Every fallible function of the safe Rust core returns [`Result<T>`]. An [`Error`] carries a
//! [`Kind`] (mapped once, in `capi`, to a `det_status` code) and a message written for the user:
//! it says what was wrong and with what value, e.g.
//! `checkpoint_storage: unknown scheme "ftp" in "ftp://x"`.

use std::fmt;

/// What class of failure an [`Error`] is. Each kind maps to one stable `det_status` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The caller passed a bad value: NULL, invalid UTF-8, malformed JSON, an unknown enum value...
    InvalidArgument,
    /// A call made in the wrong state: out of order, twice, after close, or on the wrong rank.
    State,
    /// The thing asked for does not exist (a checkpoint, an hparam, a file).
    NotFound,
    /// Two things disagree: conflicting files or metadata of a sharded checkpoint.
    Conflict,
    /// The operation is not available in this build, mode or configuration.
    Unsupported,
    /// A caller-supplied buffer is too small (copy-out functions).
    BufferTooSmall,
    /// Local file-system I/O failed.
    Io,
    /// The checkpoint storage backend failed.
    Storage,
    /// A checkpoint's bytes do not match its manifest (a flipped byte, a truncated or a missing
    /// file). Reported as `DET_ERR_STORAGE`; kept apart so that a resume can fall back to an
    /// older checkpoint on this failure and on no other.
    Integrity,
    /// The Determined master refused a request or could not be reached.
    Master,
    /// A deadline passed.
    Timeout,
    /// A collective failed: a peer died, a socket closed, ranks disagree.
    Distributed,
    /// A bug in detcore (a caught panic, an impossible state).
    Internal,
}

impl Kind {
    /// A short lowercase name, for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::InvalidArgument => "invalid argument",
            Kind::State => "invalid state",
            Kind::NotFound => "not found",
            Kind::Conflict => "conflict",
            Kind::Unsupported => "unsupported",
            Kind::BufferTooSmall => "buffer too small",
            Kind::Io => "I/O error",
            Kind::Storage => "storage error",
            Kind::Integrity => "integrity error",
            Kind::Master => "master error",
            Kind::Timeout => "timeout",
            Kind::Distributed => "distributed error",
            Kind::Internal => "internal error",
        }
    }
}

/// An error of the detcore core: a [`Kind`] and a message for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: Kind,
    message: String,
}

/// The result type of the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: Kind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// The error's kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The error's message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Prefix the message with `context: `, keeping the kind.
    pub fn context(mut self, context: impl fmt::Display) -> Error {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// An I/O error on `path` while doing `what`.
    pub fn io(what: impl fmt::Display, path: &std::path::Path, err: std::io::Error) -> Error {
        Error::new(Kind::Io, format!("{what} {}: {err}", path.display()))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// `Err(Error::new(kind, format!(...)))`, for early returns.
#[macro_export]
macro_rules! bail {
    ($kind:ident, $($fmt:tt)+) => {
        return Err($crate::error::Error::new($crate::error::Kind::$kind, format!($($fmt)+)))
    };
}

/// `Error::new(kind, format!(...))`.
#[macro_export]
macro_rules! err {
    ($kind:ident, $($fmt:tt)+) => {
        $crate::error::Error::new($crate::error::Kind::$kind, format!($($fmt)+))
    };
}

/// The message of a panic's payload (`panic!("...")` gives a `&str` or a `String`).
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_kind_and_prefixes() {
        let e = Error::new(Kind::NotFound, "no such checkpoint").context("restore_path");
        assert_eq!(e.kind(), Kind::NotFound);
        assert_eq!(e.to_string(), "restore_path: no such checkpoint");
    }
}
