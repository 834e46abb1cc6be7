//! Facts about the machine this process runs on.

/// The host name: `/proc/sys/kernel/hostname` (what `gethostname(2)` returns on Linux), else
/// `$HOSTNAME`, else `"localhost"`. Read once per process.
pub fn hostname() -> String {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(read_hostname).clone()
}

fn read_hostname() -> String {
    let from_proc = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned());
    from_proc
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn hostname_is_not_empty() {
        let h = super::hostname();
        assert!(!h.is_empty());
        assert!(!h.contains('\n'));
    }
}
