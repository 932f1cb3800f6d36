//! Tessera's HTTP layer: the OAuth 2.0 endpoints on axum.
//!
//! The key design decision: handlers are thin. Each one extracts the request, calls one
//! flow of `tessera-flow` (which sequences `tessera-core` decisions over the store), and
//! maps the outcome; every error becomes an HTTP answer in one place, [`error`]. The server is a value:
//! [`Server::build`] binds the socket and [`Server::run_until`] serves until a future
//! resolves, so tests, `serve` and `demo` start it the same way, on port 0 if they like.
//!
//! Layout:
//! - [`config`]: [`Config`], everything a node needs to know.
//! - [`state`]: the shared [`state::AppState`] (the store, the flows, the cookie names).
//! - [`extract`]: the strict OAuth form extractor and the `Authorization` header.
//! - [`routes`]: one module per endpoint; no route imports another.
//! - [`error`]: [`error::WebError`] (JSON answers) and the browser error pages.
//! - [`browser`]: session and CSRF cookies for the login and consent pages.
//! - [`pages`]: askama templates and the security headers of every HTML page.
//! - [`local_guard`]: the guard's validator reading the store directly (no HTTP hop).
//! - [`observe`]: the request id and log line around every request.
//! - [`janitor`]: purges expired tokens, codes and sessions in small batches.

pub mod browser;
pub mod config;
pub mod error;
pub mod extract;
pub mod janitor;
pub mod local_guard;
pub mod observe;
pub mod pages;
pub mod routes;
pub mod state;

use axum::serve::{ListenerExt, TapIo};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tessera_store::Store;
use tokio::net::{TcpListener, TcpStream};

pub use config::Config;
pub use state::AppState;

/// A bound, ready-to-run authorization server.
pub struct Server {
    listener: TapIo<TcpListener, fn(&mut TcpStream)>,
    state: AppState,
}

impl Server {
    /// Binds the listen address and prepares the state. Migrations are the caller's step, so
    /// that `tessera migrate` and tests can run them separately.
    pub async fn build(config: Config, store: Arc<dyn Store>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.listen).await?;
        let local = listener.local_addr()?;
        let listener = listener.tap_io(no_delay as fn(&mut TcpStream));
        let issuer = config
            .issuer
            .clone()
            .unwrap_or_else(|| format!("http://{local}"));
        let state = AppState::new(config, issuer, store);
        Ok(Self { listener, state })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        axum::serve::Listener::local_addr(&self.listener)
    }

    pub fn issuer(&self) -> &str {
        self.state.issuer()
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
            self.listener,
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
/// written in two parts, or a second response queued behind a first, waits for the client's
/// delayed ACK. axum 0.8 no longer sets it; Go's HTTP servers (Hydra's) and most others do.
fn no_delay(connection: &mut TcpStream) {
    if let Err(e) = connection.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY not set");
    }
}

/// Keeps a timer due within a second in the runtime's timer wheel, for as long as it runs.
///
/// Every request has a timeout ([`routes::app`]), and tokio wakes its I/O driver (an
/// `eventfd` write) whenever a new timer is due before anything the wheel held when the
/// driver last looked: between bursts the wheel is empty, so each timeout of the next burst
/// would cost a system call and a wake-up. With this timer always due sooner, registering a
/// request's timeout wakes nothing (docs/BENCHMARKS.md, "Bounds").
async fn keep_timer_wheel_primed() {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::serve::Listener;

    /// Through [`Server::build`], so the test fails if the listener it serves is not the
    /// one that sets `TCP_NODELAY`.
    #[tokio::test]
    async fn the_server_accepts_connections_that_send_without_delay() {
        let (url, path) = tessera_store::testing::fresh_sqlite_url().unwrap();
        let store = tessera_store::connect(&url).await.unwrap();
        let config = Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Config::default()
        };
        let mut server = Server::build(config, store).await.unwrap();
        let address = server.local_addr().unwrap();
        let _client = TcpStream::connect(address).await.unwrap();
        let (accepted, _) = server.listener.accept().await;
        assert!(accepted.nodelay().unwrap());
        let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _other = TcpStream::connect(plain.local_addr().unwrap())
            .await
            .unwrap();
        let (untouched, _) = plain.accept().await.unwrap();
        assert!(!untouched.nodelay().unwrap(), "Linux's default is Nagle on");
        drop(server);
        let _ = std::fs::remove_file(path);
    }
}
