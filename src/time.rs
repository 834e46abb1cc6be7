//! Timestamps as Python's `datetime.now(timezone.utc).isoformat()` writes them:
//! `2025-03-19T12:34:56.123456+00:00`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Format `t` as ISO-8601 UTC with microseconds and a `+00:00` offset.
pub fn iso8601(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let micros = d.subsec_micros();
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, dd) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{micros:06}+00:00",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// The current time, formatted by [`iso8601`].
pub fn now_iso8601() -> String {
    iso8601(SystemTime::now())
}

/// Seconds since the epoch as `f64`.
pub fn epoch_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The longest wait detcore schedules (about 34 years): longer requested waits (a timeout of
/// `1e300` or `INFINITY` seconds) mean "wait as long as it takes" and are cut to this, so that
/// converting them to a `Duration` or adding them to an `Instant` cannot overflow.
pub const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(1 << 30);

/// `f` seconds as a `Duration`: NaN and negative values give zero, huge ones [`MAX_WAIT`].
pub fn secs(f: f64) -> std::time::Duration {
    if f.is_nan() || f <= 0.0 {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::try_from_secs_f64(f)
        .unwrap_or(MAX_WAIT)
        .min(MAX_WAIT)
}

/// The instant `d` from now; `d` is cut to [`MAX_WAIT`] so the addition cannot overflow.
pub fn deadline(d: std::time::Duration) -> std::time::Instant {
    let now = std::time::Instant::now();
    now.checked_add(d.min(MAX_WAIT)).unwrap_or(now)
}

/// A pseudo-random fraction in `[0, 1)` for retry jitter (xorshift seeded by the clock; no
/// RNG dependency).
pub fn jitter() -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut x = STATE.load(Ordering::Relaxed);
    if x == 0 {
        x = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    STATE.store(x, Ordering::Relaxed);
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_like_python() {
        let t = UNIX_EPOCH + Duration::new(1_742_387_696, 123_456_789);
        assert_eq!(iso8601(t), "2025-03-19T12:34:56.123456+00:00");
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00.000000+00:00");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(&iso8601(leap)[..10], "2000-02-29");
    }
    #[test]
    fn secs_and_deadline_never_panic() {
        use std::time::Duration;
        assert_eq!(secs(f64::NAN), Duration::ZERO);
        assert_eq!(secs(-1.0), Duration::ZERO);
        assert_eq!(secs(1.5), Duration::from_millis(1500));
        assert_eq!(secs(1e300), MAX_WAIT);
        assert_eq!(secs(f64::INFINITY), MAX_WAIT);
        assert!(deadline(Duration::MAX) > std::time::Instant::now());
    }
}
