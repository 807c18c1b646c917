//! Calendar arithmetic for rollup buckets, without reading a clock.

/// The UTC day (`YYYY-MM-DD`) of a unix timestamp in milliseconds.
pub fn utc_day(unix_ms: i64) -> String {
    let days = unix_ms.div_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The UTC month (`YYYY-MM`) of a unix timestamp in milliseconds.
pub fn utc_month(unix_ms: i64) -> String {
    let days = unix_ms.div_euclid(86_400_000);
    let (y, m, _) = civil_from_days(days);
    format!("{y:04}-{m:02}")
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_days() {
        assert_eq!(utc_day(0), "1970-01-01");
        assert_eq!(utc_day(86_399_999), "1970-01-01");
        assert_eq!(utc_day(86_400_000), "1970-01-02");
        assert_eq!(utc_day(-1), "1969-12-31");
        // 2024-02-29T12:00:00Z, a leap day.
        assert_eq!(utc_day(1_709_208_000_000), "2024-02-29");
        // 2026-11-21T00:00:00Z
        assert_eq!(utc_day(1_795_219_200_000), "2026-11-21");
        assert_eq!(utc_month(1_795_219_200_000), "2026-11");
    }
}
