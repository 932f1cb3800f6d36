//! The guard's own metrics, through the `metrics` facade only: the application embedding the
//! guard chooses the recorder and the exporter (the demo publishes them with the server's).
//!
//! Every series is labelled with the validator's `client_id` (the resource server's client
//! at the authorization server, an identifier and no secret), so that a process with several
//! guards tells them apart. The handles are registered when the validator is built, so the
//! hot path (a cache hit) costs one atomic increment; a recorder installed after that does
//! not see this validator.

use metrics::{
    Counter, Gauge, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram,
    gauge, histogram,
};

/// Gives the embedding application's recorder the help text and unit of each guard metric.
/// Call it once, after installing the recorder.
pub fn describe_metrics() {
    describe_counter!(
        "tessera_guard_cache_hits_total",
        "Tokens answered from the guard's cache"
    );
    describe_counter!(
        "tessera_guard_cache_misses_total",
        "Tokens the guard had to introspect"
    );
    describe_histogram!(
        "tessera_guard_introspection_duration_seconds",
        Unit::Seconds,
        "Introspection requests of the guard, from sending to a parsed answer"
    );
    describe_counter!(
        "tessera_guard_introspection_errors_total",
        "Introspections that failed (the request refused with 503)"
    );
    describe_gauge!(
        "tessera_guard_stream_connected",
        "1 while the guard's revocation stream is connected, else 0"
    );
    describe_counter!(
        "tessera_guard_stream_events_received_total",
        "Revocation events the guard received"
    );
    describe_counter!(
        "tessera_guard_stream_reconnects_total",
        "Times the guard reconnected its revocation stream"
    );
}

#[derive(Clone)]
pub(crate) struct GuardMeters {
    pub(crate) cache_hits: Counter,
    pub(crate) cache_misses: Counter,
    pub(crate) introspection_seconds: Histogram,
    pub(crate) introspection_errors: Counter,
    pub(crate) stream_connected: Gauge,
    pub(crate) stream_events: Counter,
    pub(crate) stream_reconnects: Counter,
}

impl GuardMeters {
    pub(crate) fn new(client_id: &str) -> Self {
        let id = client_id.to_owned();
        Self {
            cache_hits: counter!("tessera_guard_cache_hits_total", "client_id" => id.clone()),
            cache_misses: counter!("tessera_guard_cache_misses_total", "client_id" => id.clone()),
            introspection_seconds: histogram!(
                "tessera_guard_introspection_duration_seconds",
                "client_id" => id.clone()
            ),
            introspection_errors: counter!(
                "tessera_guard_introspection_errors_total",
                "client_id" => id.clone()
            ),
            stream_connected: gauge!("tessera_guard_stream_connected", "client_id" => id.clone()),
            stream_events: counter!(
                "tessera_guard_stream_events_received_total",
                "client_id" => id.clone()
            ),
            stream_reconnects: counter!("tessera_guard_stream_reconnects_total", "client_id" => id),
        }
    }
}
