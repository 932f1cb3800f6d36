//! The router: one module per endpoint, and the layers every request passes through.

pub mod authorize;
mod health;
mod introspect;
mod jwks;
mod login;
mod logout;
mod metadata;
mod register;
mod revocations;
mod revoke;
mod token;
mod userinfo;

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower::{Service, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{Any, CorsLayer};
use tower_http::timeout::TimeoutLayer;

use tessera_core::metadata::{END_SESSION_PATH, JWKS_PATH, USERINFO_PATH};
use tessera_core::registration::REGISTRATION_PATH;
use tessera_core::revocation::REVOCATION_STREAM_PATH;

use crate::error::WebError;
use crate::observe::{RequestMeters, RouteNames};
use crate::state::AppState;

pub use metadata::METADATA_PATH;

/// The route templates, as a request's log line and metrics name its route: one per route of
/// [`router`], then `other` for any path none of them serves, so that no path a client makes
/// up becomes a label.
pub const ROUTES: [&str; 16] = [
    "/",
    "/authorize",
    "/login",
    "/logout",
    "/static/tessera.css",
    "/token",
    "/revoke",
    METADATA_PATH,
    "/.well-known/openid-configuration",
    REGISTRATION_PATH,
    "/register/{client_id}",
    "/introspect",
    REVOCATION_STREAM_PATH,
    "/healthz",
    "/readyz",
    "other",
];

/// The index in [`ROUTES`] of the route serving `path`.
pub fn route_of(path: &str) -> usize {
    if let Some(index) = ROUTES.iter().position(|route| *route == path) {
        return index;
    }
    let managed = path
        .strip_prefix(REGISTRATION_PATH)
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|id| !id.is_empty() && !id.contains('/'));
    if managed { 10 } else { ROUTES.len() - 1 }
}

/// Every Tessera route, inside the layers every request passes through: the service that
/// [`crate::Server`] serves.
///
/// The layers wrap the router once, not each route (as `Router::layer` would): axum clones a
/// route's service for every request it routes there, and a layer inside that clone is cloned
/// with it (boxed, some with allocations), a cost every small request would pay
/// (docs/BENCHMARKS.md, "Bounds"). Around the router they are plain values, copied without
/// allocating.
pub fn app(
    state: AppState,
) -> impl Service<Request, Response = Response, Error = Infallible, Future: Send + Unpin>
+ Clone
+ Send
+ Sync
+ 'static {
    // Over https, every answer tells browsers to use nothing else (RFC 6797), so a first
    // visit by plain http cannot be downgraded again. The request's middleware adds the
    // header, rather than a layer of its own that every request's future would pass through.
    let hsts = state.issuer().starts_with("https://");
    let names = RouteNames {
        templates: &ROUTES,
        index_of: route_of,
    };
    let meters = state.metered.then(|| RequestMeters::new(names));
    // Top to bottom, outermost first: the request id and its log line also cover a timeout,
    // and a panic anywhere becomes a bare 500.
    ServiceBuilder::new()
        .layer(axum::middleware::from_fn(
            move |request: Request, next: axum::middleware::Next| {
                crate::observe::observe(request, next, hsts, names, meters.clone())
            },
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(30),
        ))
        .layer(CatchPanicLayer::custom(|_| {
            WebError::internal("handler panicked").into_response()
        }))
        .service(router(state))
}

/// Every Tessera route, without the layers of [`app`]: private, so that nothing serves the
/// routes without their timeout, request id and panic handling.
fn router(state: AppState) -> Router {
    // With registration off the endpoint does not exist: a 404 like any unknown path, and the
    // metadata does not name it, so there is nothing to probe or to misconfigure a client with.
    let registration = if state.config.registration.is_on() {
        Router::new()
            .route(REGISTRATION_PATH, post(register::register))
            .route(
                &format!("{REGISTRATION_PATH}/{{client_id}}"),
                get(register::read)
                    .put(register::update)
                    .delete(register::delete),
            )
    } else {
        Router::new()
    };
    Router::new()
        .route("/", get(login::home))
        .route(
            "/authorize",
            get(authorize::authorize_get).post(authorize::authorize_post),
        )
        .route("/login", get(login::login_get).post(login::login_post))
        .route(
            END_SESSION_PATH,
            get(logout::logout_get).post(logout::logout_post),
        )
        .route("/static/tessera.css", get(crate::pages::stylesheet))
        .merge(cross_origin_api())
        .merge(registration)
        .route("/introspect", post(introspect::introspect))
        .route(REVOCATION_STREAM_PATH, get(revocations::revocations))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(not_found)
        .with_state(state)
}

/// The endpoints a browser-based public client (a single-page app using PKCE) calls from its
/// own origin. They take no cookies, so allowing every origin without credentials exposes
/// nothing: each request carries its own client authentication or token.
///
/// Introspection is not among them: only confidential clients may introspect, and a browser
/// cannot keep a secret (RFC 6749 §2.1). Leaving it out also spares every introspection the
/// CORS work and headers (docs/BENCHMARKS.md, "Bounds").
fn cross_origin_api() -> Router<AppState> {
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(Duration::from_secs(3600));
    Router::new()
        .route("/token", post(token::token))
        .route("/revoke", post(revoke::revoke))
        .route(METADATA_PATH, get(metadata::metadata))
        .route("/.well-known/openid-configuration", get(metadata::metadata))
        .route(JWKS_PATH, get(jwks::jwks))
        .route(
            USERINFO_PATH,
            get(userinfo::userinfo_get).post(userinfo::userinfo_post),
        )
        .layer(cors)
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_route_is_its_own_template_and_other_paths_are_other() {
        for (index, route) in ROUTES.iter().enumerate().take(ROUTES.len() - 1) {
            if !route.contains('{') {
                assert_eq!(route_of(route), index, "{route}");
            }
        }
        assert_eq!(
            ROUTES[route_of("/register/abc-123")],
            "/register/{client_id}"
        );
        for odd in [
            "/register/",
            "/register/a/b",
            "/tokens",
            "/token/",
            "",
            "/wp-admin",
        ] {
            assert_eq!(ROUTES[route_of(odd)], "other", "{odd}");
        }
    }
}
