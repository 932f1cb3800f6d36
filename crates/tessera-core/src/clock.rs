//! The one place that reads the system clock.
//!
//! Everything else takes `now` (unix seconds) as an argument. A [`Clock`] can be frozen and
//! moved by tests, so expiry is tested without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Seconds since the unix epoch, as stored in the database.
pub type UnixTime = i64;

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
    pub fn manual(start: UnixTime) -> Self {
        Self {
            manual: Some(Arc::new(AtomicI64::new(start))),
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
            Some(t) => t.load(Ordering::SeqCst),
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
    i64::try_from(system_millis() / 1000).unwrap_or(i64::MAX)
}
