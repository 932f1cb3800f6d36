//! Metrics for Prometheus: the process's recorder, and the listener that serves `/metrics`.
//!
//! The flows, the store wrapper and the guard record through the `metrics` facade, which has
//! one recorder per process; so does this module: [`install`] sets it once, globally, and
//! every server of the process (tests start many, `tessera demo` runs one beside the guarded
//! API) renders the same [`PrometheusHandle`]. `metrics::with_local_recorder` was not an
//! option: it scopes a recorder to a synchronous closure on one thread, while a request's
//! future moves between tokio's workers at every `.await`.
//!
//! Nothing is recorded until [`install`] runs: without `--metrics-listen` the facade stays a
//! no-op, the store is not wrapped and requests are not counted. `/metrics` has a listener of
//! its own so that it can be bound to an address only the scraper reaches; it answers
//! nothing else.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tessera_store::Store;
use tokio::net::TcpListener;

/// Bucket bounds, in seconds, of every histogram: from a cached introspection (well under a
/// millisecond) to an Argon2 queue's wait and a slow database (seconds).
const BUCKETS: [f64; 14] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// How often histogram samples are folded into their buckets between scrapes. The recorder
/// keeps each sample until then, so this bounds its memory under load: a busy node's samples
/// of one second take a megabyte or two.
const UPKEEP_EVERY: Duration = Duration::from_secs(1);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process's Prometheus recorder, unless it is installed already, and returns
/// its handle. If another recorder was set first (a program embedding the server with its
/// own), that one receives the metrics and this handle renders none of them.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new();
            let builder = match builder.set_buckets(&BUCKETS) {
                Ok(with_buckets) => with_buckets,
                // Only an empty list is refused; a summary instead of buckets still works.
                Err(_) => PrometheusBuilder::new(),
            };
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed; /metrics will be empty");
            } else {
                describe();
            }
            handle
        })
        .clone()
}

/// The `# HELP` text and unit of every metric the process records: the server's own here,
/// the others from the crates that record them.
fn describe() {
    metrics::describe_counter!(
        "tessera_http_requests_total",
        "HTTP requests answered, by route template and status"
    );
    metrics::describe_histogram!(
        "tessera_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "HTTP requests' latency, by route template"
    );
    metrics::describe_gauge!(
        "tessera_db_pool_connections",
        "PostgreSQL pool connections (size, idle), read at each scrape"
    );
    tessera_flow::describe_metrics();
    tessera_store::metered::describe();
    tessera_guard::describe_metrics();
}

/// The recorder's handle, if [`install`] has run.
pub fn installed() -> Option<PrometheusHandle> {
    HANDLE.get().cloned()
}

/// Serves `GET /metrics` on `listener` until `stop` resolves, and keeps the histograms'
/// memory bounded meanwhile.
pub async fn serve(
    listener: TcpListener,
    handle: PrometheusHandle,
    store: Arc<dyn Store>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let upkeep = {
        let handle = handle.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(UPKEEP_EVERY);
            loop {
                every.tick().await;
                handle.run_upkeep();
            }
        })
    };
    let app = Router::new()
        .route("/metrics", get(render))
        .with_state(Scrape { handle, store });
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await;
    upkeep.abort();
    served
}

#[derive(Clone)]
struct Scrape {
    handle: PrometheusHandle,
    store: Arc<dyn Store>,
}

/// The text exposition format, with the database pool sampled now: a gauge read at the
/// scrape costs nothing between scrapes.
async fn render(State(scrape): State<Scrape>) -> impl IntoResponse {
    if let Some(pool) = scrape.store.pool_usage() {
        metrics::gauge!("tessera_db_pool_connections", "state" => "size").set(f64::from(pool.size));
        metrics::gauge!("tessera_db_pool_connections", "state" => "idle").set(f64::from(pool.idle));
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        scrape.handle.render(),
    )
}
