//! What every request gets around it: a request id, a log line, and, with metrics on, its
//! count and latency.
//!
//! One middleware instead of four tower-http layers (set and propagate a request id, mark
//! secret headers, trace). Each of those is a future wrapped around the next and a few
//! allocations per request, and the UUID behind the id is a `getrandom` system call: together
//! a large share of a small request's CPU (docs/BENCHMARKS.md, "Bounds"). The behaviour is
//! the same:
//! - an `x-request-id` the client sent (visible ASCII, at most 128 bytes) is kept, otherwise
//!   the server makes one: a random prefix per process and a counter, unique across nodes
//!   without a random draw per request; either way it is echoed in the response;
//! - each request is a `DEBUG` span and line (`request_id`, method, path, `route`, `status`,
//!   `latency_us`), never with its headers or query, so `Authorization`, cookies and the
//!   codes in a redirect cannot reach a log; a 5xx is a `WARN` line with the same fields, to
//!   find the cause logged where it happened.
//!
//! A request's route is its template from the router's list ([`RouteNames`]), found by the path, not
//! axum's `MatchedPath`: that is set inside the router, out of this middleware's sight, and
//! a static string is a label the metrics take without allocating. Their handles are
//! registered once per route and status ([`RequestMeters`]), so counting a request is two
//! atomic operations and a histogram sample.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Counter, Histogram};
use tracing::Instrument;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

const LONGEST_ID: usize = 128;

/// This process's part of every id it makes: 48 random bits (8 characters).
static PREFIX: LazyLock<String> = LazyLock::new(|| {
    tessera_core::random::random_b64::<6>().unwrap_or_else(|_| {
        // No randomness at start: fall back on the process id, still distinct per node
        // most of the time; the ids only correlate log lines.
        format!("pid{}", std::process::id())
    })
});

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// `PREFIX-counter`, without `format!`: that was most of the cost of this middleware.
fn new_request_id() -> HeaderValue {
    request_id(COUNTER.fetch_add(1, Ordering::Relaxed))
}

fn request_id(n: u64) -> HeaderValue {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(n);
    let mut id = Vec::with_capacity(PREFIX.len() + 1 + digits.len());
    id.extend_from_slice(PREFIX.as_bytes());
    id.push(b'-');
    id.extend_from_slice(digits.as_bytes());
    HeaderValue::from_maybe_shared(Bytes::from(id))
        .unwrap_or_else(|_| HeaderValue::from_static("-"))
}

fn acceptable(id: &HeaderValue) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty() && bytes.len() <= LONGEST_ID && bytes.iter().all(u8::is_ascii_graphic)
}

/// The statuses whose counters a route keeps at hand; others are looked up by name.
const STATUSES: [u16; 16] = [
    200, 201, 204, 302, 303, 304, 400, 401, 403, 404, 405, 413, 415, 429, 500, 503,
];

/// The router's route templates, and which of them serves a path (the last names every path
/// none serves). The router passes them in, so that this module needs nothing of it.
#[derive(Clone, Copy)]
pub struct RouteNames {
    pub templates: &'static [&'static str],
    pub index_of: fn(&str) -> usize,
}

impl RouteNames {
    fn of(&self, path: &str) -> (usize, &'static str) {
        let index = (self.index_of)(path);
        (index, self.templates.get(index).copied().unwrap_or("other"))
    }
}

/// The request metrics of one server: per route, its latency histogram and a counter per
/// status, each registered with the recorder on first use.
pub struct RequestMeters {
    routes: Vec<RouteMeters>,
}

struct RouteMeters {
    template: &'static str,
    latency: OnceLock<Histogram>,
    by_status: [OnceLock<Counter>; STATUSES.len()],
}

impl RequestMeters {
    /// Meters for every route; made after the recorder is installed (a handle registered
    /// before it would record nowhere).
    pub fn new(names: RouteNames) -> Arc<Self> {
        Arc::new(Self {
            routes: names
                .templates
                .iter()
                .map(|template| RouteMeters {
                    template,
                    latency: OnceLock::new(),
                    by_status: Default::default(),
                })
                .collect(),
        })
    }

    fn record(&self, route: usize, status: u16, seconds: f64) {
        let Some(meters) = self.routes.get(route) else {
            return;
        };
        let template = meters.template;
        meters
            .latency
            .get_or_init(|| {
                metrics::histogram!("tessera_http_request_duration_seconds", "route" => template)
            })
            .record(seconds);
        let counter = STATUSES
            .iter()
            .position(|s| *s == status)
            .and_then(|i| meters.by_status.get(i));
        match counter {
            Some(cell) => cell
                .get_or_init(|| request_counter(template, status))
                .increment(1),
            None => request_counter(template, status).increment(1),
        }
    }
}

fn request_counter(route: &'static str, status: u16) -> Counter {
    let mut digits = itoa::Buffer::new();
    let status = digits.format(status).to_owned();
    metrics::counter!("tessera_http_requests_total", "route" => route, "status" => status)
}

/// The middleware, outermost around every request; with `hsts` (the issuer is https) every
/// answer also carries `Strict-Transport-Security`; with `meters`, the request is counted.
pub async fn observe(
    mut request: Request,
    next: Next,
    hsts: bool,
    names: RouteNames,
    meters: Option<Arc<RequestMeters>>,
) -> Response {
    let id = match request.headers().get(&X_REQUEST_ID) {
        Some(sent) if acceptable(sent) => sent.clone(),
        _ => {
            let made = new_request_id();
            request
                .headers_mut()
                .insert(X_REQUEST_ID.clone(), made.clone());
            made
        }
    };
    let method = request.method().clone();
    let uri = request.uri().clone();
    let (route_index, route) = names.of(uri.path());
    let id_text = String::from_utf8_lossy(id.as_bytes());
    let span =
        tracing::debug_span!("request", %method, path = uri.path(), route, request_id = %id_text);
    let started = Instant::now();
    let mut response = next.run(request).instrument(span).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    if let Some(meters) = &meters {
        meters.record(route_index, status, elapsed.as_secs_f64());
    }
    let latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    if response.status().is_server_error() {
        tracing::warn!(request_id = %id_text, %method, path = uri.path(), route, status, latency_us, "request failed");
    } else {
        tracing::debug!(request_id = %id_text, %method, path = uri.path(), route, status, latency_us, "request");
    }
    let headers = response.headers_mut();
    headers.insert(X_REQUEST_ID.clone(), id);
    if hsts {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_ids_are_distinct_and_acceptable() {
        let (a, b) = (new_request_id(), new_request_id());
        assert_ne!(a, b);
        assert!(acceptable(&a) && acceptable(&b));
        for n in [0, 7, 10, 1234567890, u64::MAX] {
            assert_eq!(
                request_id(n).to_str().unwrap(),
                format!("{}-{n}", PREFIX.as_str())
            );
        }
    }

    #[test]
    fn odd_ids_from_clients_are_replaced() {
        assert!(!acceptable(&HeaderValue::from_static("")));
        assert!(!acceptable(&HeaderValue::from_static("has space")));
        let long = "x".repeat(LONGEST_ID + 1);
        assert!(!acceptable(
            &HeaderValue::from_str(&long).unwrap_or(HeaderValue::from_static(""))
        ));
        assert!(acceptable(&HeaderValue::from_static("trace-1234_abc")));
    }
}
