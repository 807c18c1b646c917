//! Calendar arithmetic for rollup buckets, without reading a clock.

use std::fmt;
use std::str::FromStr;

const DAY_MS: i64 = 86_400_000;

/// A UTC calendar day: its number of days since 1970-01-01, whose first millisecond
/// fits a unix timestamp in milliseconds (out-of-range numbers saturate to the ends).
/// Written, parsed and serialized as `YYYY-MM-DD`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UtcDay(i64);

/// A text that is not a `YYYY-MM-DD` date.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a date like 2026-01-31")]
pub struct DayError(pub String);

impl UtcDay {
    /// The day a unix timestamp in milliseconds falls in.
    pub fn of_unix_ms(unix_ms: i64) -> Self {
        Self(unix_ms.div_euclid(DAY_MS))
    }

    /// The day with this number (days since 1970-01-01).
    pub fn from_number(days: i64) -> Self {
        Self::of_unix_ms(days.saturating_mul(DAY_MS))
    }

    /// Days since 1970-01-01.
    pub fn number(self) -> i64 {
        self.0
    }

    /// The day's first millisecond as a unix timestamp.
    pub fn start_ms(self) -> i64 {
        self.0 * DAY_MS
    }

    /// The day `days` later (earlier when negative).
    pub fn plus_days(self, days: i64) -> Self {
        Self::from_number(self.0.saturating_add(days))
    }

    /// Year, month (1–12) and day of the month (1–31).
    pub fn civil(self) -> (i64, u32, u32) {
        civil_from_days(self.0)
    }

    /// The first day of this day's month.
    pub fn first_of_month(self) -> Self {
        let (y, m, _) = self.civil();
        Self::from_number(days_from_civil(y, i64::from(m), 1))
    }

    /// The first day of the month after this day's.
    pub fn first_of_next_month(self) -> Self {
        let (y, m, _) = self.civil();
        let (ny, nm) = if m == 12 {
            (y + 1, 1)
        } else {
            (y, i64::from(m) + 1)
        };
        Self::from_number(days_from_civil(ny, nm, 1))
    }

    /// The month bucket of this day, `YYYY-MM`.
    pub fn month_text(self) -> String {
        let (y, m, _) = self.civil();
        format!("{y:04}-{m:02}")
    }
}

impl fmt::Display for UtcDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.civil();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

impl FromStr for UtcDay {
    type Err = DayError;

    fn from_str(text: &str) -> Result<Self, DayError> {
        let refused = || DayError(text.to_owned());
        let bytes = text.as_bytes();
        if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
            return Err(refused());
        }
        let num = |range: std::ops::Range<usize>| -> Option<i64> {
            let part = &text[range];
            part.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| part.parse().ok())?
        };
        let (Some(y), Some(m), Some(d)) = (num(0..4), num(5..7), num(8..10)) else {
            return Err(refused());
        };
        if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
            return Err(refused());
        }
        let day = Self::from_number(days_from_civil(y, m, d));
        // Round-trip to refuse dates such as 02-30.
        if day.to_string() == text {
            Ok(day)
        } else {
            Err(refused())
        }
    }
}

impl serde::Serialize for UtcDay {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for UtcDay {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// How finely rollups are summed: by UTC day or by UTC month.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    #[default]
    Day,
    Month,
}

impl FromStr for Granularity {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        match text {
            "day" => Ok(Self::Day),
            "month" => Ok(Self::Month),
            _ => Err(()),
        }
    }
}

impl Granularity {
    /// The bucket a unix timestamp in milliseconds falls in: `YYYY-MM-DD` or `YYYY-MM`.
    pub fn bucket_of_ms(self, unix_ms: i64) -> String {
        let day = UtcDay::of_unix_ms(unix_ms);
        match self {
            Self::Day => day.to_string(),
            Self::Month => day.month_text(),
        }
    }

    /// The bucket of a day as stored (`YYYY-MM-DD`): the day itself, or its month
    /// (its first seven characters).
    pub fn bucket_of_day(self, day: String) -> String {
        match self {
            Self::Day => day,
            Self::Month => day.get(..7).map(str::to_owned).unwrap_or(day),
        }
    }
}

/// The UTC day (`YYYY-MM-DD`) of a unix timestamp in milliseconds.
pub fn utc_day(unix_ms: i64) -> String {
    UtcDay::of_unix_ms(unix_ms).to_string()
}

/// The day number (days since 1970-01-01) of a `YYYY-MM-DD` date, if it is one.
pub fn parse_utc_day(text: &str) -> Option<i64> {
    text.parse::<UtcDay>().ok().map(UtcDay::number)
}

/// A day number back to `YYYY-MM-DD`.
pub fn day_text(days: i64) -> String {
    UtcDay::from_number(days).to_string()
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

    #[test]
    fn days_and_their_months() {
        let leap: UtcDay = "2024-02-29".parse().unwrap();
        assert_eq!(leap.first_of_month().to_string(), "2024-02-01");
        assert_eq!(leap.first_of_next_month().to_string(), "2024-03-01");
        assert_eq!(leap.month_text(), "2024-02");
        assert_eq!(leap.plus_days(1).to_string(), "2024-03-01");
        let december = UtcDay::of_unix_ms(1_796_083_200_000 + 86_399_999);
        assert_eq!(december.to_string(), "2026-12-01");
        assert_eq!(december.first_of_next_month().to_string(), "2027-01-01");
        assert_eq!(december.start_ms(), 1_796_083_200_000);
        assert_eq!(
            "2026-02-30".parse::<UtcDay>(),
            Err(DayError("2026-02-30".into()))
        );
        // The ends saturate instead of overflowing.
        assert_eq!(UtcDay::from_number(i64::MAX), UtcDay::of_unix_ms(i64::MAX));
        assert_eq!(UtcDay::from_number(i64::MIN), UtcDay::of_unix_ms(i64::MIN));
        assert_eq!(day_text(i64::MAX), utc_day(i64::MAX));
    }

    #[test]
    fn buckets() {
        // 2024-02-29T23:59:59.999Z, the last millisecond of a leap day.
        let at = 1_709_251_199_999;
        assert_eq!(Granularity::Day.bucket_of_ms(at), "2024-02-29");
        assert_eq!(Granularity::Month.bucket_of_ms(at), "2024-02");
        assert_eq!(Granularity::Month.bucket_of_ms(at + 1), "2024-03");
        assert_eq!(
            Granularity::Day.bucket_of_day("2024-02-29".into()),
            "2024-02-29"
        );
        assert_eq!(
            Granularity::Month.bucket_of_day("2024-02-29".into()),
            "2024-02"
        );
        assert_eq!(Granularity::Month.bucket_of_day("2024".into()), "2024");
    }

    #[test]
    fn a_day_travels_as_its_text() {
        let day: UtcDay = "2026-11-21".parse().unwrap();
        assert_eq!(serde_json::to_string(&day).unwrap(), "\"2026-11-21\"");
        assert_eq!(
            serde_json::from_str::<UtcDay>("\"2026-11-21\"").unwrap(),
            day
        );
        assert!(serde_json::from_str::<UtcDay>("\"2026-11-31\"").is_err());
    }
}
