//! Calendar arithmetic for rollup buckets, without reading a clock.

/// The UTC day (`YYYY-MM-DD`) of a unix timestamp in milliseconds.
pub fn utc_day(unix_ms: i64) -> String {
    let days = unix_ms.div_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The day number (days since 1970-01-01) of a `YYYY-MM-DD` date, if it is one.
pub fn parse_utc_day(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = &text[range];
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    // Round-trip to refuse dates such as 02-30.
    (utc_day(days * 86_400_000) == text).then_some(days)
}

/// A day number back to `YYYY-MM-DD`.
pub fn day_text(days: i64) -> String {
    utc_day(days.saturating_mul(86_400_000))
}

/// The day number of a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
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
    }

    #[test]
    fn parse_days() {
        assert_eq!(parse_utc_day("1970-01-01"), Some(0));
        assert_eq!(
            parse_utc_day("2026-11-21"),
            Some(1_795_219_200_000 / 86_400_000)
        );
        assert_eq!(
            day_text(parse_utc_day("2024-02-29").unwrap() + 1),
            "2024-03-01"
        );
        for bad in [
            "2026-02-30",
            "2026-13-01",
            "26-01-01",
            "2026-1-01",
            "x",
            "2026-01-01x",
            "2026-0a-01",
            "+026-01-01",
        ] {
            assert_eq!(parse_utc_day(bad), None, "{bad}");
        }
        for days in -700_000..2_900_000i64 {
            if days % 997 == 0 {
                assert_eq!(parse_utc_day(&day_text(days)), Some(days));
            }
        }
    }
}
