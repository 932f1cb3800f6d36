//! The demo API: two endpoints behind the guard, each answering with who called, and an MCP
//! endpoint whose one tool answers the same (see [`crate::mcp`]).

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tessera_guard::{Guard, Token};

/// `GET /api/data` needs scope `api`; `GET /api/restricted` needs scope `restricted`; `/mcp`
/// (MCP over streamable HTTP) needs scope `api`. A guard bound to a resource also serves its
/// RFC 9728 metadata.
pub fn router(guard: &Guard) -> Router {
    let routes = Router::new()
        .route("/api/data", get(data).route_layer(guard.require("api")))
        .route(
            "/api/restricted",
            get(restricted).route_layer(guard.require("restricted")),
        )
        .route("/mcp", crate::mcp::route(guard, "api"));
    match guard.resource() {
        Some(resource) => routes.merge(resource.metadata_routes()),
        None => routes,
    }
}

async fn data(Token(token): Token) -> Json<Value> {
    Json(json!({
        "message": "Hello from /api/data",
        "caller": token.username.as_ref().or(token.subject.as_ref()),
        "client_id": token.client_id,
        "scope": token.scope.to_string(),
    }))
}

async fn restricted(Token(token): Token) -> Json<Value> {
    Json(json!({
        "message": "Restricted data, for tokens with the restricted scope",
        "caller": token.username.as_ref().or(token.subject.as_ref()),
        "client_id": token.client_id,
        "scope": token.scope.to_string(),
    }))
}
