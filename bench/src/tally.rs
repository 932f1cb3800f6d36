//! What a load generator saw: latencies, and failures in the classes `wrk` reports, so that
//! `bench/run` reads the `flow` and `mix` generators exactly as it reads `wrk`.

use std::fmt;
use std::time::Duration;

/// Why one request (or one flow) failed.
#[derive(Debug)]
pub enum Failure {
    /// No connection could be made.
    Connect(String),
    /// The connection broke while sending or reading.
    Read(String),
    /// No complete answer within the timeout.
    Timeout(String),
    /// An answer, but not the expected one: another status, a missing redirect, a wrong body.
    Status(String),
}

impl Failure {
    pub fn status(what: impl Into<String>) -> Self {
        Self::Status(what.into())
    }
}

impl From<reqwest::Error> for Failure {
    fn from(e: reqwest::Error) -> Self {
        // reqwest's Display omits the cause ("error sending request"); the chain says why.
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        if e.is_timeout() {
            Self::Timeout(text)
        } else if e.is_connect() {
            Self::Connect(text)
        } else {
            Self::Read(text)
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(s) => write!(f, "connect: {s}"),
            Self::Read(s) => write!(f, "read: {s}"),
            Self::Timeout(s) => write!(f, "timeout: {s}"),
            Self::Status(s) => write!(f, "unexpected answer: {s}"),
        }
    }
}

/// The first failures are kept verbatim (to say what went wrong), the rest only counted.
const KEPT_FAILURES: usize = 5;

#[derive(Debug, Default)]
pub struct Tally {
    /// Units (requests or flows) that succeeded, with their latencies in µs.
    pub latencies_us: Vec<u64>,
    pub connect: u64,
    pub read: u64,
    pub timeout: u64,
    pub status: u64,
    /// HTTP requests sent, whatever their outcome.
    pub http: u64,
    pub first_failures: Vec<String>,
}

impl Tally {
    pub fn ok(&mut self, latency: Duration) {
        self.latencies_us
            .push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn fail(&mut self, failure: &Failure) {
        match failure {
            Failure::Connect(_) => self.connect += 1,
            Failure::Read(_) => self.read += 1,
            Failure::Timeout(_) => self.timeout += 1,
            Failure::Status(_) => self.status += 1,
        }
        if self.first_failures.len() < KEPT_FAILURES {
            self.first_failures.push(failure.to_string());
        }
    }

    pub fn errors(&self) -> u64 {
        self.connect + self.read + self.timeout + self.status
    }

    pub fn merge(&mut self, other: Self) {
        self.latencies_us.extend(other.latencies_us);
        self.connect += other.connect;
        self.read += other.read;
        self.timeout += other.timeout;
        self.status += other.status;
        self.http += other.http;
        for f in other.first_failures {
            if self.first_failures.len() < KEPT_FAILURES {
                self.first_failures.push(f);
            }
        }
    }

    /// Sorts the latencies; call once before [`Tally::percentile`].
    pub fn sort(&mut self) {
        self.latencies_us.sort_unstable();
    }

    /// The `p`th percentile (0–100) of the sorted latencies, nearest rank; 0 if none.
    pub fn percentile(&self, p: f64) -> u64 {
        percentile(&self.latencies_us, p)
    }

    /// The machine-readable line `bench/run` parses, in the format of `bench/lua/post.lua`.
    /// `requests` counts the successful units only; failures are in the error fields.
    pub fn result_line(&self, elapsed: Duration) -> String {
        format!(
            "RESULT requests={} duration_us={} connect={} read={} write=0 status={} timeout={} \
             p50_us={} p99_us={} max_us={} made=0 tokens=0 http={}",
            self.latencies_us.len(),
            elapsed.as_micros(),
            self.connect,
            self.read,
            self.status,
            self.timeout,
            self.percentile(50.0),
            self.percentile(99.0),
            self.latencies_us.last().copied().unwrap_or(0),
            self.http,
        )
    }

    pub fn report_failures(&self) {
        for f in &self.first_failures {
            eprintln!("  failure: {f}");
        }
        let more = self
            .errors()
            .saturating_sub(self.first_failures.len() as u64);
        if more > 0 {
            eprintln!("  ... and {more} more failures");
        }
    }
}

/// Nearest-rank percentile of sorted values; 0 for none.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    // Nearest rank: the smallest value with at least p% of the values at or below it.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.clamp(1, sorted.len()) - 1)
        .copied()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }
}
