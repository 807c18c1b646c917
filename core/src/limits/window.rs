//! The fixed windows counters live in: the UTC minute, day and month.

use crate::policy::Period;
use crate::time::UtcDay;

const MINUTE_MS: i64 = 60_000;
pub(super) const DAY_MS: i64 = 86_400_000;
/// Counters outlive their window a little, so a late settlement still finds them.
pub(super) const GRACE_MS: i64 = 60_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Window {
    Minute,
    Day,
    Month,
}

impl Window {
    /// The number of the window `now_ms` falls in (minutes, days or months since 1970).
    pub fn id(self, now_ms: i64) -> i64 {
        match self {
            Self::Minute => now_ms.div_euclid(MINUTE_MS),
            Self::Day => now_ms.div_euclid(DAY_MS),
            Self::Month => {
                let (y, m, _) = UtcDay::of_unix_ms(now_ms).civil();
                y * 12 + i64::from(m) - 1
            }
        }
    }

    /// When the window holding `now_ms` ends.
    pub fn end_ms(self, now_ms: i64) -> i64 {
        match self {
            Self::Minute => (now_ms.div_euclid(MINUTE_MS) + 1) * MINUTE_MS,
            Self::Day => (now_ms.div_euclid(DAY_MS) + 1) * DAY_MS,
            Self::Month => UtcDay::of_unix_ms(now_ms).first_of_next_month().start_ms(),
        }
    }
}

impl From<Period> for Window {
    fn from(p: Period) -> Self {
        match p {
            Period::Day => Self::Day,
            Period::Month => Self::Month,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::fixtures::NOW;

    #[test]
    fn windows_and_their_ends() {
        assert_eq!(Window::Minute.end_ms(NOW) - NOW, 30_000);
        assert_eq!(Window::Minute.id(NOW), NOW / 60_000);
        assert_eq!(crate::time::utc_day(Window::Day.end_ms(NOW)), "2026-11-22");
        assert_eq!(
            crate::time::utc_day(Window::Month.end_ms(NOW)),
            "2026-12-01"
        );
        let december = Window::Month.end_ms(NOW) + 1;
        assert_eq!(Window::Month.id(december), Window::Month.id(NOW) + 1);
        assert_eq!(
            crate::time::utc_day(Window::Month.end_ms(december)),
            "2027-01-01"
        );
    }
}
