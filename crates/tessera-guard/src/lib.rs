//! `tessera-guard`: protect axum (or any tower) routes with opaque OAuth 2.0 bearer tokens,
//! by scope, the way Authlib's `ResourceProtector` does.
//!
//! The key design decision: an opaque token means nothing by itself, so every check asks the
//! authorization server (RFC 7662 introspection), and the guard *fails closed*: when the
//! answer cannot be known (server down, slow, or answering nonsense) the request gets a 503,
//! never access and never a misleading 401. A bounded cache keyed by the token's SHA-256 keeps
//! the cost at one introspection per token per TTL; the TTL is the longest time a revoked token
//! can still be accepted, so it is a setting (0 turns the cache off).
//!
//! A guard bound to a [`ProtectedResource`] also checks the token's audience (RFC 8707): a
//! token issued for another resource server is refused here, so one leaked to (or phished by)
//! another server cannot be replayed against this one. The same value serves the RFC 9728
//! metadata that tells clients which authorization server to ask, and every 401 links to it.
//!
//! ```no_run
//! use axum::{Json, Router, routing::get};
//! use tessera_guard::{Guard, ProtectedResource, RemoteConfig, RemoteIntrospection, Token};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let issuer = "http://127.0.0.1:8080";
//! let validator = RemoteIntrospection::discover(
//!     issuer,
//!     RemoteConfig::new("", "my-api-client-id", "my-api-client-secret"),
//! )
//! .await?;
//! // The identifier clients pass as `resource`, and that tokens must name in `aud`.
//! let resource = ProtectedResource::new("http://127.0.0.1:5001", issuer)?
//!     .scopes_supported(["api", "restricted"])
//!     .resource_name("Demo API");
//! let guard = Guard::new(validator, "demo-api").for_resource(resource.clone());
//! let app = Router::new()
//!     .route("/api/data", get(data).route_layer(guard.require("api")))
//!     .route("/api/restricted", get(data).route_layer(guard.require("restricted")))
//!     // GET /.well-known/oauth-protected-resource
//!     .merge(resource.metadata_routes());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:5001").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//!
//! async fn data(Token(token): Token) -> Json<serde_json::Value> {
//!     Json(serde_json::json!({ "hello": token.username.as_ref().or(token.subject.as_ref()) }))
//! }
//! ```
//!
//! Answers follow RFC 6750 §3: no token, 401 with a bare `Bearer realm` challenge; a malformed
//! `Authorization` header, 400 `invalid_request`; an inactive token (unknown, expired, revoked,
//! or a refresh token) or, for a bound guard, one for another resource, 401 `invalid_token`;
//! missing scope, 403 `insufficient_scope` naming it. A bound guard's 401 challenges also
//! carry `resource_metadata` (RFC 9728 §5.1). Tokens are read from the `Authorization` header
//! only, never from the query string.
//!
//! Layout:
//! - [`Guard`], [`RequireScope`], [`Token`]: the layer and the extractor.
//! - [`ProtectedResource`]: the resource a guard is bound to, and its metadata routes.
//! - [`TokenValidator`]: how a token is checked; [`RemoteIntrospection`] is the HTTP one (the
//!   Tessera server provides a local one reading its store directly).
//! - [`bearer_token`]: the RFC 6750 §2.1 header parser.
//! - `meters`: the remote validator's metrics (cache hits and misses, introspection latency
//!   and errors, the revocation stream's state), through the `metrics` facade: install a
//!   recorder before building the validator to see them.

mod bearer;
mod cache;
mod info;
mod layer;
mod metadata;
mod meters;
mod remote;
mod revocations;
mod validator;

pub use bearer::{Bearer, bearer_token};
pub use info::{ScopeRequirement, TokenInfo};
pub use layer::{Guard, Refusal, Rejection, RequireScope, RequireScopeService, Token};
pub use metadata::{InvalidProtectedResource, ProtectedResource};
pub use meters::describe_metrics;
pub use remote::{RemoteConfig, RemoteIntrospection, parse_introspection};
pub use revocations::StreamStatus;
pub use validator::{TokenValidator, Validation, ValidationError};
