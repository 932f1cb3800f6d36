//! Throttling that a burst cannot race: an attempt is counted when it begins, before its
//! password or secret is checked, so simultaneous guesses see each other.
//!
//! Sign-ins:
//! Three windows of [`WINDOW`] seconds bound the guesses, each by its own key:
//! - (username, address): [`LIMIT`] failures, after [`SLOW_AFTER`] each further attempt waits
//!   a second. This is the one an attacker at one address meets.
//! - username, from any address: [`USER_LIMIT`], high enough that the real user, at another
//!   address, still gets in while someone guesses elsewhere.
//! - address, for any username: [`ADDRESS_LIMIT`], high enough for many people behind one
//!   NAT or proxy.
//!
//! A success clears its (username, address) window and counts nowhere; an attempt that ends
//! without a verdict (the client went away) is released.
//!
//! Client authentication that would cost an Argon2 run (a secret not verified before) is
//! bounded per registered client ([`CLIENT_LIMIT`] failures) and per address
//! ([`CLIENT_ADDRESS_LIMIT`]); past either, it is refused without hashing. A client that
//! authenticated once is remembered and never meets these windows again.
//!
//! Open client registration (RFC 7591) is bounded per address ([`REGISTRATION_LIMIT`]
//! attempts, whatever their outcome), so one caller cannot fill the store with clients.
//!
//! Counts live in this node's memory, bounded by [`MOST_KEYS`]; with several nodes each has
//! its own.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tessera_core::clock::UnixTime;

use crate::measure;

pub const WINDOW: i64 = 60;
pub const LIMIT: usize = 5;
pub const SLOW_AFTER: usize = 3;
pub const USER_LIMIT: usize = 100;
pub const ADDRESS_LIMIT: usize = 100;
pub const CLIENT_LIMIT: usize = 30;
pub const CLIENT_ADDRESS_LIMIT: usize = 30;
/// Client registrations (RFC 7591, open policy) per address and [`WINDOW`].
pub const REGISTRATION_LIMIT: usize = 10;
/// Keys remembered at most; past it, windows with nothing left in them are dropped first.
const MOST_KEYS: usize = 100_000;

/// `verdict`, with a refusal counted under `which` throttle.
fn counted(verdict: Verdict, which: measure::Throttle) -> Verdict {
    if let Verdict::Refuse(_) = verdict {
        measure::throttled(which);
    }
    verdict
}

/// What to do with a sign-in attempt.
#[derive(Debug)]
pub enum Verdict {
    /// Check the password (after `delay`, if any), then settle the [`Attempt`].
    Proceed {
        attempt: Attempt,
        delay: Option<Duration>,
    },
    /// Refused without checking; the caller may retry after this many seconds.
    Refuse(i64),
}

#[derive(Clone, Default)]
pub struct Throttle {
    windows: Arc<Mutex<HashMap<Key, Window>>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    UserAtAddress(String, Option<IpAddr>),
    User(String),
    Address(IpAddr),
    Client(String),
    ClientAddress(IpAddr),
    /// Callers without a known address share one window.
    Registration(Option<IpAddr>),
}

#[derive(Default)]
struct Window {
    failures: VecDeque<UnixTime>,
    in_flight: usize,
}

impl Window {
    fn forget_before(&mut self, now: UnixTime) {
        while self
            .failures
            .front()
            .is_some_and(|t| now.seconds_since(*t) >= WINDOW)
        {
            self.failures.pop_front();
        }
    }

    fn count(&self) -> usize {
        self.failures.len() + self.in_flight
    }
}

impl Throttle {
    /// Begins an attempt to sign in as `username` from `address`, or refuses it.
    pub fn begin(&self, username: &str, address: Option<IpAddr>, now: UnixTime) -> Verdict {
        let mut keys = vec![
            (Key::UserAtAddress(username.to_owned(), address), LIMIT),
            (Key::User(username.to_owned()), USER_LIMIT),
        ];
        if let Some(ip) = address {
            keys.push((Key::Address(ip), ADDRESS_LIMIT));
        }
        counted(self.begin_with(keys, now), measure::Throttle::SignIn)
    }

    /// Begins an Argon2 check of a secret presented for the registered client `client_id`
    /// from `address`, or refuses it. Never delayed: a machine client has no one to wait.
    pub fn begin_client(&self, client_id: &str, address: Option<IpAddr>, now: UnixTime) -> Verdict {
        let mut keys = vec![(Key::Client(client_id.to_owned()), CLIENT_LIMIT)];
        if let Some(ip) = address {
            keys.push((Key::ClientAddress(ip), CLIENT_ADDRESS_LIMIT));
        }
        counted(self.begin_with(keys, now), measure::Throttle::Client)
    }

    /// Begins a client registration from `address`, or refuses it: every attempt counts,
    /// whatever its outcome (see [`Attempt::counted`]).
    pub fn begin_registration(&self, address: Option<IpAddr>, now: UnixTime) -> Verdict {
        let keys = vec![(Key::Registration(address), REGISTRATION_LIMIT)];
        counted(self.begin_with(keys, now), measure::Throttle::Registration)
    }

    /// In one step under one lock: checks every window and counts the attempt in each.
    fn begin_with(&self, keys: Vec<(Key, usize)>, now: UnixTime) -> Verdict {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        if windows.len() >= MOST_KEYS {
            windows.retain(|_, w| {
                w.forget_before(now);
                w.count() > 0
            });
        }
        let mut retry_after = None;
        for (key, limit) in &keys {
            let Some(window) = windows.get_mut(key) else {
                continue;
            };
            window.forget_before(now);
            if window.count() >= *limit {
                // In-flight attempts end within seconds; failures leave the window in turn.
                let wait = window
                    .failures
                    .front()
                    .map_or(1, |t| t.saturating_add(WINDOW).seconds_since(now));
                retry_after = Some(retry_after.unwrap_or(0).max(wait.max(1)));
            }
        }
        if let Some(seconds) = retry_after {
            return Verdict::Refuse(seconds);
        }
        let mut delay = None;
        for (key, _) in &keys {
            let window = windows.entry(key.clone()).or_default();
            // Failures slow the next attempt down; attempts still in flight only count
            // towards the limit, so one person's parallel sign-ins are not delayed.
            if matches!(key, Key::UserAtAddress(..)) && window.failures.len() >= SLOW_AFTER {
                delay = Some(Duration::from_secs(1));
            }
            window.in_flight += 1;
        }
        Verdict::Proceed {
            attempt: Attempt {
                throttle: self.clone(),
                keys: keys.into_iter().map(|(key, _)| key).collect(),
                settled: false,
            },
            delay,
        }
    }

    fn settle(&self, keys: &[Key], failed_at: Option<UnixTime>, succeeded: bool) {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        for key in keys {
            let Some(window) = windows.get_mut(key) else {
                continue;
            };
            window.in_flight = window.in_flight.saturating_sub(1);
            if let Some(at) = failed_at {
                window.failures.push_back(at);
            }
            if succeeded && matches!(key, Key::UserAtAddress(..)) {
                window.failures.clear();
            }
        }
    }
}

/// One sign-in attempt, counted in every window until it is settled.
#[derive(Debug)]
pub struct Attempt {
    throttle: Throttle,
    keys: Vec<Key>,
    settled: bool,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Throttle")
    }
}

impl Attempt {
    /// The password matched: the (username, address) window starts afresh.
    pub fn succeeded(mut self) {
        self.settled = true;
        self.throttle.settle(&self.keys, None, true);
    }

    /// The attempt counts in every window, whatever came of it (a registration).
    pub fn counted(self, now: UnixTime) {
        self.failed(now);
    }

    /// The password did not match (or the user does not exist): a failure in every window.
    pub fn failed(mut self, now: UnixTime) {
        self.settled = true;
        self.throttle.settle(&self.keys, Some(now), false);
    }
}

impl Drop for Attempt {
    /// An attempt that ends without a verdict (its caller went away before the answer) was
    /// never answered, so it taught the guesser nothing: it is released, not counted.
    fn drop(&mut self) {
        if !self.settled {
            self.throttle.settle(&self.keys, None, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> UnixTime {
        UnixTime::from_secs(s)
    }

    fn proceed(v: Verdict) -> (Attempt, Option<Duration>) {
        match v {
            Verdict::Proceed { attempt, delay } => (attempt, delay),
            Verdict::Refuse(s) => panic!("refused for {s} s"),
        }
    }

    const HOME: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 1, 1)));
    const AWAY: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 1, 2)));

    #[test]
    fn slows_then_refuses_then_forgets() {
        let t = Throttle::default();
        for i in 0..LIMIT {
            let (attempt, delay) = proceed(t.begin("alice", HOME, at(1000)));
            let want = (i >= SLOW_AFTER).then(|| Duration::from_secs(1));
            assert_eq!(delay, want, "attempt {i}");
            attempt.failed(at(1000));
        }
        assert!(matches!(
            t.begin("alice", HOME, at(1010)),
            Verdict::Refuse(50)
        ));
        proceed(t.begin("bob", HOME, at(1010))).0.failed(at(1010));
        proceed(t.begin("alice", HOME, at(1060))).0.succeeded();
    }

    #[test]
    fn attempts_in_flight_count_so_a_burst_cannot_race_past_the_limit() {
        let t = Throttle::default();
        let mut in_flight = Vec::new();
        let mut refused = 0;
        for _ in 0..150 {
            match t.begin("alice", HOME, at(1000)) {
                Verdict::Proceed { attempt, .. } => in_flight.push(attempt),
                Verdict::Refuse(_) => refused += 1,
            }
        }
        assert_eq!((in_flight.len(), refused), (LIMIT, 150 - LIMIT));
        // Released unanswered attempts free their places; failed ones keep them.
        in_flight.pop();
        let (again, _) = proceed(t.begin("alice", HOME, at(1000)));
        again.failed(at(1000));
        for attempt in in_flight {
            attempt.failed(at(1000));
        }
        assert!(matches!(
            t.begin("alice", HOME, at(1001)),
            Verdict::Refuse(59)
        ));
    }

    #[test]
    fn failures_elsewhere_do_not_lock_out_the_real_user() {
        let t = Throttle::default();
        for _ in 0..LIMIT {
            proceed(t.begin("carol", AWAY, at(1000))).0.failed(at(1000));
        }
        assert!(matches!(
            t.begin("carol", AWAY, at(1000)),
            Verdict::Refuse(_)
        ));
        let (attempt, delay) = proceed(t.begin("carol", HOME, at(1000)));
        assert_eq!(delay, None);
        attempt.succeeded();
        // Failures for five other names from one shared address do not stop bob there.
        for name in ["a", "b", "c", "d", "e"] {
            proceed(t.begin(name, HOME, at(1000))).0.failed(at(1000));
        }
        proceed(t.begin("bob", HOME, at(1000))).0.succeeded();
    }

    #[test]
    fn client_secrets_are_checked_at_most_the_limit_per_client_and_per_address() {
        let t = Throttle::default();
        for _ in 0..CLIENT_LIMIT {
            proceed(t.begin_client("rs", HOME, at(1000)))
                .0
                .failed(at(1000));
        }
        assert!(matches!(
            t.begin_client("rs", AWAY, at(1000)),
            Verdict::Refuse(60)
        ));
        proceed(t.begin_client("other", AWAY, at(1000)))
            .0
            .succeeded();
        for i in 0..CLIENT_ADDRESS_LIMIT {
            proceed(t.begin_client(&format!("c{i}"), AWAY, at(2000)))
                .0
                .failed(at(2000));
        }
        assert!(matches!(
            t.begin_client("fresh", AWAY, at(2000)),
            Verdict::Refuse(_)
        ));
        // Sign-ins from that address are another matter.
        proceed(t.begin("alice", AWAY, at(2000))).0.succeeded();
    }

    #[test]
    fn registrations_are_bounded_per_address_whatever_their_outcome() {
        let t = Throttle::default();
        for _ in 0..REGISTRATION_LIMIT {
            proceed(t.begin_registration(HOME, at(1000)))
                .0
                .counted(at(1000));
        }
        assert!(matches!(
            t.begin_registration(HOME, at(1030)),
            Verdict::Refuse(30)
        ));
        proceed(t.begin_registration(AWAY, at(1030)))
            .0
            .counted(at(1030));
        proceed(t.begin_registration(HOME, at(1060)))
            .0
            .counted(at(1060));
    }

    #[test]
    fn the_wider_windows_bound_guessing_across_addresses_and_names() {
        let t = Throttle::default();
        for i in 0..USER_LIMIT {
            let ip = IpAddr::V4(std::net::Ipv4Addr::new(
                127,
                1,
                (i / 250) as u8,
                (i % 250) as u8,
            ));
            proceed(t.begin("dave", Some(ip), at(1000)))
                .0
                .failed(at(1000));
        }
        assert!(matches!(
            t.begin("dave", AWAY, at(1000)),
            Verdict::Refuse(_)
        ));
        for i in 0..ADDRESS_LIMIT {
            proceed(t.begin(&format!("user{i}"), AWAY, at(2000)))
                .0
                .failed(at(2000));
        }
        assert!(matches!(
            t.begin("erin", AWAY, at(2000)),
            Verdict::Refuse(_)
        ));
        proceed(t.begin("erin", HOME, at(2000))).0.succeeded();
    }
}
