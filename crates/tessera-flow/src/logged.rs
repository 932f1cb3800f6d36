//! What an attacker can make the server log, kept small: identifiers truncated and escaped,
//! and repeated warnings limited to a few lines a second.

use std::sync::Mutex;
use std::sync::PoisonError;
use std::time::Instant;

/// Lines of one kind of warning logged per second at most; the rest are counted, and the
/// next line logged says how many were left out.
pub const LINES_PER_SECOND: u32 = 10;

/// A budget of log lines for one kind of warning (a failed sign-in, a failed client
/// authentication): a flood of them cannot flood the log.
pub struct Quota {
    state: Mutex<QuotaState>,
}

struct QuotaState {
    second: Option<Instant>,
    logged: u32,
    left_out: u64,
}

impl Quota {
    pub const fn new() -> Self {
        Self {
            state: Mutex::new(QuotaState {
                second: None,
                logged: 0,
                left_out: 0,
            }),
        }
    }

    /// `Some(n)`: log this line, and say that `n` lines were left out before it; `None`:
    /// leave it out.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let new_second = state
            .second
            .is_none_or(|start| now.duration_since(start).as_secs() >= 1);
        if new_second {
            state.second = Some(now);
            state.logged = 0;
        }
        if state.logged >= LINES_PER_SECOND {
            state.left_out += 1;
            return None;
        }
        state.logged += 1;
        Some(std::mem::take(&mut state.left_out))
    }
}

impl Default for Quota {
    fn default() -> Self {
        Self::new()
    }
}

/// An attacker-chosen identifier as a log field: at most 64 characters, control characters
/// escaped, so a request cannot flood the log or forge lines in it.
pub fn loggable(text: &str) -> String {
    const MOST: usize = 64;
    let mut out: String = text
        .chars()
        .take(MOST)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(MOST).is_some() {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_flood_of_warnings_logs_a_few_lines_a_second_and_counts_the_rest() {
        let quota = Quota::new();
        let start = Instant::now();
        let admitted = (0..1_000)
            .filter(|_| quota.admit_at(start).is_some())
            .count();
        assert_eq!(admitted, LINES_PER_SECOND as usize);
        let later = start + Duration::from_millis(1_100);
        assert_eq!(
            quota.admit_at(later),
            Some(1_000 - u64::from(LINES_PER_SECOND))
        );
        assert_eq!(quota.admit_at(later), Some(0));
    }

    #[test]
    fn logged_identifiers_are_short_and_escaped() {
        assert_eq!(loggable("alice"), "alice");
        assert_eq!(loggable("a\nb"), "a\\nb");
        let long = "x".repeat(60_000);
        assert_eq!(loggable(&long).len(), 64 + 3);
    }
}
