//! Failed-login throttling, per username and per client address.
//!
//! After [`SLOW_AFTER`] failures within [`WINDOW`] seconds, each further attempt waits a
//! second before it is checked; after [`LIMIT`], attempts are refused until the oldest
//! failure leaves the window, whatever the password. Counts live in this node's memory
//! (bounded); with several nodes an attacker gets at most `LIMIT` tries per node per window.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use moka::sync::Cache;
use tessera_core::clock::UnixTime;

pub const WINDOW: i64 = 60;
pub const LIMIT: usize = 5;
pub const SLOW_AFTER: usize = 3;

#[derive(Clone)]
pub struct LoginThrottle {
    failures: Cache<String, Arc<Mutex<Vec<UnixTime>>>>,
}

/// What to do with a login attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Allow, after a delay.
    Slow(Duration),
    /// Refuse; the caller may retry after this many seconds.
    Refuse(i64),
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self {
            failures: Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(WINDOW as u64 * 2))
                .build(),
        }
    }
}

impl LoginThrottle {
    /// The verdict for an attempt concerning all of `keys` (e.g. the username and the address).
    pub fn check(&self, keys: &[String], now: UnixTime) -> Verdict {
        let mut verdict = Verdict::Allow;
        for key in keys {
            let Some(entry) = self.failures.get(key) else {
                continue;
            };
            let Ok(mut times) = entry.lock() else {
                continue;
            };
            times.retain(|t| now.seconds_since(*t) < WINDOW);
            if times.len() >= LIMIT {
                let oldest = times.first().copied().unwrap_or(now);
                return Verdict::Refuse(oldest.saturating_add(WINDOW).seconds_since(now).max(1));
            }
            if times.len() >= SLOW_AFTER {
                verdict = Verdict::Slow(Duration::from_secs(1));
            }
        }
        verdict
    }

    pub fn record_failure(&self, keys: &[String], now: UnixTime) {
        for key in keys {
            let entry = self.failures.get_with(key.clone(), Default::default);
            if let Ok(mut times) = entry.lock() {
                times.retain(|t| now.seconds_since(*t) < WINDOW);
                times.push(now);
            }
        }
    }

    pub fn clear(&self, key: &str) {
        self.failures.invalidate(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slows_then_refuses_then_forgets() {
        let t = LoginThrottle::default();
        let keys = ["user:alice".to_string()];
        for i in 0..LIMIT {
            let want = if i < SLOW_AFTER {
                Verdict::Allow
            } else {
                Verdict::Slow(Duration::from_secs(1))
            };
            assert_eq!(
                t.check(&keys, UnixTime::from_secs(1000)),
                want,
                "attempt {i}"
            );
            t.record_failure(&keys, UnixTime::from_secs(1000));
        }
        assert_eq!(
            t.check(&keys, UnixTime::from_secs(1010)),
            Verdict::Refuse(50)
        );
        assert_eq!(
            t.check(&["user:bob".to_string()], UnixTime::from_secs(1010)),
            Verdict::Allow
        );
        assert_eq!(t.check(&keys, UnixTime::from_secs(1060)), Verdict::Allow);
    }
}
