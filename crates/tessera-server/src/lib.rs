//! Tessera's HTTP layer: the OAuth 2.0 endpoints on axum.
//!
//! The key design decision: handlers are thin. Each one extracts the request, calls one
//! function (a `tessera-core` decision around `Store` I/O), and maps the result; every error
//! becomes an HTTP answer in exactly one place, [`error::WebError`]. The server is a value:
//! [`Server::build`] binds the socket and [`Server::run_until`] serves until a future
//! resolves, so tests, `serve` and `demo` start it the same way, on port 0 if they like.
//!
//! Layout:
//! - [`config`]: [`Config`], everything a node needs to know.
//! - [`state`]: the shared [`state::AppState`] (store, clock, caches).
//! - [`extract`]: the strict OAuth form extractor and the `Authorization` header.
//! - [`client_auth`]: authenticating clients, with a cache of verified credentials.
//! - [`routes`]: one module per endpoint.
//! - [`browser`]: session and CSRF cookies for the login and consent pages.
//! - [`pages`]: askama templates and the security headers of every HTML page.
//! - [`throttle`]: failed-login throttling.
//! - [`local_guard`]: the guard's validator reading the store directly (no HTTP hop).
//! - [`observe`]: the request id and log line around every request.
//! - [`janitor`]: purges expired tokens, codes and sessions in small batches.

pub mod browser;
pub mod client_auth;
pub mod config;
pub mod error;
pub mod extract;
mod hashing;
pub mod janitor;
pub mod local_guard;
pub mod observe;
pub mod pages;
pub mod routes;
pub mod state;
pub mod throttle;

use axum::serve::ListenerExt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tessera_store::Store;
use tokio::net::TcpListener;

pub use config::Config;
pub use state::AppState;

/// A bound, ready-to-run authorization server.
pub struct Server {
    listener: TcpListener,
    state: AppState,
}

impl Server {
    /// Binds the listen address and prepares the state. Migrations are the caller's step, so
    /// that `tessera migrate` and tests can run them separately.
    pub async fn build(config: Config, store: Arc<dyn Store>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.listen).await?;
        let local = listener.local_addr()?;
        let issuer = config
            .issuer
            .clone()
            .unwrap_or_else(|| format!("http://{local}"));
        let state = AppState::new(config, issuer, store);
        Ok(Self { listener, state })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn issuer(&self) -> &str {
        &self.state.issuer
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves requests and runs the janitor until `shutdown` resolves, then finishes the
    /// requests in flight.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_janitor, janitor_stopped) = tokio::sync::watch::channel(false);
        let janitor = tokio::spawn(janitor::run(self.state.clone(), janitor_stopped));
        let primer = tokio::spawn(keep_timer_wheel_primed());
        let app = routes::app(self.state);
        let served = axum::serve(
            self.listener.tap_io(no_delay),
            axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<
                SocketAddr,
            >(app),
        )
        .with_graceful_shutdown(shutdown)
        .await;
        let _ = stop_janitor.send(true);
        let _ = janitor.await;
        primer.abort();
        served
    }
}

/// Sends each response as soon as it is written. Without `TCP_NODELAY`, Nagle's algorithm
/// holds a write back while an earlier one of the connection is unacknowledged: a response
/// written in two parts (a page streamed after its head) or a second response queued behind
/// a first waits for the client's delayed ACK, up to 40 ms on Linux. axum 0.8 no longer
/// sets it; Go's HTTP servers (Hydra's) and most others do.
fn no_delay(connection: &mut tokio::net::TcpStream) {
    if let Err(e) = connection.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY not set");
    }
}

/// Keeps a timer due within a second in the runtime's timer wheel, for as long as it runs.
///
/// Every request has a timeout ([`routes::app`]), and tokio wakes its I/O driver (an
/// `eventfd` write from the registering thread) whenever a new timer is due before anything
/// the wheel held when the driver last looked. On a loaded server that was every request:
/// between bursts no request is in flight, so the wheel is empty, and each timeout of the
/// next burst counted as the earliest. That cost a system call and a wake-up per request,
/// about a tenth of an introspection's CPU (docs/BENCHMARKS-LOG.md). With this timer always due
/// sooner, registering a request's timeout wakes nothing.
async fn keep_timer_wheel_primed() {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[tokio::test]
    async fn accepted_connections_send_without_delay() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(address).await.unwrap();
        let (mut accepted, _) = listener.accept().await.unwrap();
        assert!(!accepted.nodelay().unwrap(), "Linux's default is Nagle on");
        super::no_delay(&mut accepted);
        assert!(accepted.nodelay().unwrap());
    }
}
