//! The demo API: two endpoints behind the guard, each answering with who called, and an MCP
//! endpoint whose one tool answers the same (see [`crate::mcp`]).

use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;

use serde::ser::{Serialize, SerializeMap, Serializer};
use tessera_guard::{Guard, Token, TokenInfo};

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

async fn data(Token(token): Token) -> Json<Answer> {
    Json(Answer {
        message: "Hello from /api/data",
        token,
    })
}

async fn restricted(Token(token): Token) -> Json<Answer> {
    Json(Answer {
        message: "Restricted data, for tokens with the restricted scope",
        token,
    })
}

/// Both endpoints' answer: who called, with what. It is written straight from the guard's
/// shared answer, which the demo's guard benchmark serves many times a second.
struct Answer {
    message: &'static str,
    token: Arc<TokenInfo>,
}

impl Serialize for Answer {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let token = &self.token;
        let mut map = serializer.serialize_map(Some(4))?;
        map.serialize_entry("message", self.message)?;
        map.serialize_entry(
            "caller",
            &token.username.as_ref().or(token.subject.as_ref()),
        )?;
        map.serialize_entry("client_id", &token.client_id)?;
        map.serialize_entry("scope", &format_args!("{}", token.scope))?;
        map.end()
    }
}
