//! What the flows count, through the `metrics` facade: a no-op until the binary installs a
//! recorder, so the flows neither know nor care whether metrics are on.
//!
//! Every name and label here is a literal, one arm per value: the `metrics` macros then build
//! a static key, so recording on the token and introspection paths allocates nothing. Labels
//! take a handful of values each; nothing a client sends becomes a label.

use std::time::Duration;

use metrics::{
    Counter, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use tessera_core::client::GrantType;

/// Gives the installed recorder the help text and unit of every metric the flows record (the
/// `# HELP` lines of Prometheus). Call it once, after installing the recorder.
pub fn describe() {
    describe_counter!(
        "tessera_tokens_issued_total",
        "Token responses, by the grant that earned them"
    );
    describe_counter!(
        "tessera_introspections_total",
        "Introspection answers, by whether the token was active to the caller"
    );
    describe_counter!(
        "tessera_revocations_total",
        "Revocation requests, by what they came to (revoked, not_owned, unknown)"
    );
    describe_counter!("tessera_sign_ins_total", "People signed in");
    describe_counter!(
        "tessera_sign_in_failures_total",
        "Sign-ins refused for a wrong username or password"
    );
    describe_counter!(
        "tessera_audit_events_unrecorded_total",
        "Audit events the store refused; each is logged at ERROR"
    );
    describe_counter!(
        "tessera_throttle_refusals_total",
        "Attempts refused unchecked by a throttle (sign_in, client, registration)"
    );
    describe_gauge!(
        "tessera_hashing_queue_depth",
        "Password-hashing jobs waiting, by queue"
    );
    describe_histogram!(
        "tessera_hashing_wait_seconds",
        Unit::Seconds,
        "How long a password-hashing job waited for a thread, by queue"
    );
    describe_counter!(
        "tessera_hashing_busy_total",
        "Password-hashing jobs refused because their queue was full"
    );
    describe_gauge!(
        "tessera_revocation_stream_subscribers",
        "Revocation streams (GET /revocations) open on this node"
    );
    describe_counter!(
        "tessera_revocation_events_sent_total",
        "Revocation events sent to resource servers"
    );
}

/// A password-hashing queue (the hashing module's purposes, named here so that this module
/// imports none of the flows that call it).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Queue {
    SignIn,
    Client,
}

/// What a revocation request came to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RevocationOutcome {
    Revoked,
    NotOwned,
    Unknown,
}

/// The counters of the token, introspection and revocation endpoints, registered with the
/// recorder once, when the flows are made: counting a request is then an atomic add, not a
/// registry lookup. Flows made before a recorder is installed count nothing.
pub(crate) struct EndpointMeters {
    issued: [Counter; 3],
    introspected_active: Counter,
    introspected_inactive: Counter,
    revocations: [Counter; 3],
}

impl EndpointMeters {
    pub(crate) fn register() -> Self {
        Self {
            issued: [
                counter!("tessera_tokens_issued_total", "grant_type" => "authorization_code"),
                counter!("tessera_tokens_issued_total", "grant_type" => "client_credentials"),
                counter!("tessera_tokens_issued_total", "grant_type" => "refresh_token"),
            ],
            introspected_active: counter!("tessera_introspections_total", "active" => "true"),
            introspected_inactive: counter!("tessera_introspections_total", "active" => "false"),
            revocations: [
                counter!("tessera_revocations_total", "outcome" => "revoked"),
                counter!("tessera_revocations_total", "outcome" => "not_owned"),
                counter!("tessera_revocations_total", "outcome" => "unknown"),
            ],
        }
    }

    /// A token response, by the grant that earned it.
    pub(crate) fn token_issued(&self, grant: GrantType) {
        let [code, client_credentials, refresh] = &self.issued;
        match grant {
            GrantType::AuthorizationCode => code,
            GrantType::ClientCredentials => client_credentials,
            GrantType::RefreshToken => refresh,
        }
        .increment(1);
    }

    /// An introspection answered, active or not.
    pub(crate) fn introspected(&self, active: bool) {
        if active {
            self.introspected_active.increment(1);
        } else {
            self.introspected_inactive.increment(1);
        }
    }

    /// A revocation request answered (each is a 200, RFC 7009 §2.2), by what it came to.
    pub(crate) fn revocation(&self, outcome: RevocationOutcome) {
        let [revoked, not_owned, unknown] = &self.revocations;
        match outcome {
            RevocationOutcome::Revoked => revoked,
            RevocationOutcome::NotOwned => not_owned,
            RevocationOutcome::Unknown => unknown,
        }
        .increment(1);
    }
}

pub(crate) fn signed_in() {
    counter!("tessera_sign_ins_total").increment(1);
}

/// A wrong username or password; a throttled attempt is a [`Throttle`] refusal instead.
pub(crate) fn sign_in_failed() {
    counter!("tessera_sign_in_failures_total").increment(1);
}

/// An audit event that could not be written (the audit module says what happens then).
pub(crate) fn audit_unrecorded() {
    counter!("tessera_audit_events_unrecorded_total").increment(1);
}

/// Which throttle refused an attempt.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Throttle {
    SignIn,
    Client,
    Registration,
}

pub(crate) fn throttled(which: Throttle) {
    match which {
        Throttle::SignIn => {
            counter!("tessera_throttle_refusals_total", "throttle" => "sign_in").increment(1);
        }
        Throttle::Client => {
            counter!("tessera_throttle_refusals_total", "throttle" => "client").increment(1);
        }
        Throttle::Registration => {
            counter!("tessera_throttle_refusals_total", "throttle" => "registration").increment(1);
        }
    }
}

/// The jobs waiting in a password-hashing queue.
pub(crate) fn hashing_queued(queue: Queue, depth: usize) {
    let depth = depth as f64;
    match queue {
        Queue::SignIn => gauge!("tessera_hashing_queue_depth", "queue" => "sign_in").set(depth),
        Queue::Client => {
            gauge!("tessera_hashing_queue_depth", "queue" => "client").set(depth);
        }
    }
}

/// How long a job waited in its queue before a hashing thread took it.
pub(crate) fn hashing_waited(queue: Queue, waited: Duration) {
    let seconds = waited.as_secs_f64();
    match queue {
        Queue::SignIn => {
            histogram!("tessera_hashing_wait_seconds", "queue" => "sign_in").record(seconds);
        }
        Queue::Client => {
            histogram!("tessera_hashing_wait_seconds", "queue" => "client").record(seconds);
        }
    }
}

/// A hashing queue was full: the caller was told to come back.
pub(crate) fn hashing_busy(queue: Queue) {
    match queue {
        Queue::SignIn => counter!("tessera_hashing_busy_total", "queue" => "sign_in").increment(1),
        Queue::Client => {
            counter!("tessera_hashing_busy_total", "queue" => "client").increment(1);
        }
    }
}

/// A revocation stream opened (`1.0`) or closed (`-1.0`).
pub(crate) fn stream_subscribers(change: f64) {
    gauge!("tessera_revocation_stream_subscribers").increment(change);
}

/// A revocation event sent to a resource server.
pub(crate) fn revocation_event_sent() {
    counter!("tessera_revocation_events_sent_total").increment(1);
}
