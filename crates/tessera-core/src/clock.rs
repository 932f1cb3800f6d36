//! The one place that reads the system clock.
//!
//! Everything else takes `now` ([`UnixTime`]) as an argument. A [`Clock`] can be frozen and
//! moved by tests, so expiry is tested without sleeping.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// A moment, in whole seconds since the unix epoch: what the store keeps and what every
/// expiry rule compares. A type of its own, so a lifetime in seconds cannot be passed where
/// a moment belongs.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct UnixTime(i64);

impl UnixTime {
    pub const fn from_secs(seconds: i64) -> Self {
        Self(seconds)
    }

    pub const fn as_secs(self) -> i64 {
        self.0
    }

    /// `seconds` later (earlier if negative), saturating at the ends of time.
    pub const fn saturating_add(self, seconds: i64) -> Self {
        Self(self.0.saturating_add(seconds))
    }

    /// Seconds from `earlier` to `self` (negative if `earlier` is later).
    pub const fn seconds_since(self, earlier: Self) -> i64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl UnixTime {
    /// The moment in RFC 3339 form, in UTC to the second: `2026-12-06T01:40:00Z`.
    pub fn rfc3339(self) -> String {
        let (days, secs) = (self.0.div_euclid(86_400), self.0.rem_euclid(86_400));
        let (year, month, day) = civil_from_days(days);
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }

    /// Reads an RFC 3339 date-time (`2026-12-06T01:40:00Z`, `2026-12-06 03:40:00.5+02:00`);
    /// fractions of a second are dropped.
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        let number = |from: usize, to: usize| -> Option<i64> {
            let digits = text.get(from..to)?;
            if !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            digits.parse().ok()
        };
        let bytes = text.as_bytes();
        let at = |i: usize| bytes.get(i).copied();
        let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
        if separators.iter().any(|&(i, c)| at(i) != Some(c))
            || !matches!(at(10), Some(b'T' | b't' | b' '))
        {
            return None;
        }
        let (year, month, day) = (number(0, 4)?, number(5, 7)?, number(8, 10)?);
        let (hour, minute, second) = (number(11, 13)?, number(14, 16)?, number(17, 19)?);
        let mut rest = text.get(19..)?;
        if let Some(fraction) = rest.strip_prefix('.') {
            let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return None;
            }
            rest = fraction.get(digits..)?;
        }
        let offset = match rest {
            "Z" | "z" => 0,
            _ => {
                let sign = match rest.get(..1)? {
                    "+" => 1,
                    "-" => -1,
                    _ => return None,
                };
                let (h, m) = rest.get(1..)?.split_once(':')?;
                if h.len() != 2
                    || m.len() != 2
                    || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit())
                {
                    return None;
                }
                sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60)
            }
        };
        let days_in_month = match month {
            2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            1..=12 => 31,
            _ => return None,
        };
        // 60: a leap second, which Unix time folds into the next.
        if !(1..=days_in_month).contains(&day) || hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        let days = days_from_civil(year, month, day);
        Some(Self(
            days * 86_400 + hour * 3600 + minute * 60 + second - offset,
        ))
    }
}

/// Year, month and day of a day counted from 1970-01-01 (the proleptic Gregorian calendar;
/// Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `seconds` later, saturating, as [`UnixTime::saturating_add`].
impl std::ops::Add<i64> for UnixTime {
    type Output = Self;

    fn add(self, seconds: i64) -> Self {
        self.saturating_add(seconds)
    }
}

impl From<i64> for UnixTime {
    fn from(seconds: i64) -> Self {
        Self(seconds)
    }
}

impl fmt::Display for UnixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A source of the current time: the system clock, or a manual one for tests.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    manual: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self { manual: None }
    }

    /// A clock that stands still at `start` until [`Clock::advance`] moves it.
    pub fn manual(start: impl Into<UnixTime>) -> Self {
        Self {
            manual: Some(Arc::new(AtomicI64::new(start.into().as_secs()))),
        }
    }

    /// Moves a manual clock forward; the system clock ignores it.
    pub fn advance(&self, seconds: i64) {
        if let Some(t) = &self.manual {
            t.fetch_add(seconds, Ordering::SeqCst);
        }
    }

    pub fn now(&self) -> UnixTime {
        match &self.manual {
            Some(t) => UnixTime(t.load(Ordering::SeqCst)),
            None => system_now(),
        }
    }
}

/// Milliseconds since the unix epoch by the system clock, whatever a [`Clock`] says. Only for
/// ordering store keys (a new token's prefix, see `token.rs`) and for the age of the test
/// suite's throw-away databases (`tessera_store::testing`); no decision of the server reads
/// it, so tests have nothing to control here.
#[allow(clippy::disallowed_methods)] // The sanctioned reader of the system clock.
pub fn system_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn system_now() -> UnixTime {
    UnixTime(i64::try_from(system_millis() / 1000).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_print_and_read_as_rfc_3339() {
        for (secs, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_796_521_200, "2026-12-06T01:40:00Z"),
            (-86_400, "1969-12-31T00:00:00Z"),
        ] {
            assert_eq!(UnixTime::from_secs(secs).rfc3339(), text);
            assert_eq!(
                UnixTime::parse_rfc3339(text),
                Some(UnixTime::from_secs(secs))
            );
        }
        let t = UnixTime::parse_rfc3339("2026-12-06 03:40:00.25+02:00");
        assert_eq!(t, Some(UnixTime::from_secs(1_796_521_200)));
        for bad in [
            "2026-12-06",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-12-06T01:40:00",
            "2026-12-06T01:40:00+0200",
            "2026-12-06T24:00:00Z",
            "+026-12-06T01:40:00Z",
            "2026-12-06T01:40:00.Z",
        ] {
            assert_eq!(UnixTime::parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn moments_add_seconds_saturating_and_serialize_as_plain_numbers() {
        let t = UnixTime::from_secs(1_000);
        assert_eq!(t + 60, UnixTime::from_secs(1_060));
        assert_eq!((t + 60).seconds_since(t), 60);
        assert_eq!(t.seconds_since(t + 60), -60);
        assert_eq!(
            UnixTime::from_secs(i64::MAX) + 1,
            UnixTime::from_secs(i64::MAX)
        );
        assert!(t < t + 1);
        assert_eq!(serde_json::to_string(&t).unwrap(), "1000");
        let back: UnixTime = serde_json::from_str("1000").unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn a_manual_clock_stands_still_until_moved() {
        let clock = Clock::manual(5);
        assert_eq!(clock.now(), UnixTime::from_secs(5));
        clock.advance(10);
        assert_eq!(clock.now(), UnixTime::from_secs(15));
    }
}
