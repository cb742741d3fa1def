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
