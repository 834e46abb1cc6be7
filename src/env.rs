//! Reading the process environment: the one place below every domain that does it, so any
//! layer can read its variables without importing a higher one.

/// The value of environment variable `k`, `None` when unset or empty.
pub(crate) fn env_nonempty(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}
