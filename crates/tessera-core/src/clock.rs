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
