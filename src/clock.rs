//! The one clock: unix seconds from the system, unless the hidden `FACTORY_NOW` (unix
//! seconds) sets it, which tests use to step past retention periods and rate windows.
//! Every module that stamps or compares a time asks this one.

/// Now, in unix seconds.
pub fn now() -> i64 {
    std::env::var("FACTORY_NOW")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(system_now)
}

fn system_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    #[test]
    fn now_is_after_2020() {
        assert!(super::now() > 1_577_836_800);
    }
}

/// `2026-12-01 08:15 UTC`, for messages that say until when.
pub fn format(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60
    )
}

#[cfg(test)]
mod format_tests {
    #[test]
    fn formats_a_date_and_time() {
        assert_eq!(super::format(0), "1970-01-01 00:00 UTC");
        assert_eq!(super::format(1_796_112_900), "2026-12-01 08:15 UTC");
    }
}
