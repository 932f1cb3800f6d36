//! The demo API's Model Context Protocol endpoint: one tool, `whoami`, behind the guard.
//!
//! rmcp's streamable HTTP service runs stateless: every POST carries a whole JSON-RPC
//! exchange and is answered with JSON, so there are no sessions to keep or lose on a
//! restart, and GET and DELETE get rmcp's 405. The guard runs in front of it as a route
//! layer, so rmcp never sees a request without a valid token; rmcp hands a tool the
//! request's [`Parts`], whose extensions carry the guard's [`TokenInfo`].

use axum::routing::{MethodFilter, MethodRouter, on_service};
use std::sync::Arc;

use http::request::Parts;
use rmcp::handler::server::tool::Extension;
use rmcp::model::{CallToolResult, Implementation, ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, ServerHandler, tool, tool_handler, tool_router};
use serde_json::json;
use tessera_guard::{Guard, TokenInfo};

/// The `/mcp` route: rmcp's streamable HTTP service for POST, GET and DELETE, each needing
/// scope `scope` from `guard` first.
pub fn route<S>(guard: &Guard, scope: &str) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    let service = StreamableHttpService::new(
        || Ok(Whoami),
        NeverSessionManager::default().into(),
        config(guard),
    );
    on_service(
        MethodFilter::POST
            .or(MethodFilter::GET)
            .or(MethodFilter::DELETE),
        service,
    )
    .route_layer(guard.require(scope))
}

/// Stateless, answering in JSON; the `Host` check against DNS rebinding accepts loopback
/// names and the host of the resource the guard is bound to.
fn config(guard: &Guard) -> StreamableHttpServerConfig {
    let mut hosts = vec!["localhost".to_owned(), "127.0.0.1".into(), "::1".into()];
    let bound_host = guard
        .resource()
        .and_then(|r| url::Url::parse(r.resource().as_str()).ok())
        .and_then(|u| u.host_str().map(str::to_owned));
    hosts.extend(bound_host);
    StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_allowed_hosts(hosts)
}

/// The MCP server. It keeps nothing: `#[tool_handler]` builds the tool router per call, and
/// the stateless service makes a fresh `Whoami` per request anyway.
#[derive(Debug, Clone, Copy, Default)]
pub struct Whoami;

#[tool_router]
impl Whoami {
    /// The caller as the guard validated it.
    #[tool(description = "Who is calling: the access token's subject, client and scopes")]
    async fn whoami(
        &self,
        Extension(parts): Extension<Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        // Only a route without the guard's layer lacks the token: a programming error.
        let Some(token) = parts.extensions.get::<Arc<TokenInfo>>() else {
            tracing::error!("the MCP service is mounted without a RequireScope layer");
            return Err(ErrorData::internal_error("no validated token", None));
        };
        Ok(CallToolResult::structured(json!({
            "subject": token.subject,
            "username": token.username,
            "client_id": token.client_id,
            "scope": token.scope.to_string(),
            "audience": token.audience,
        })))
    }
}

#[tool_handler]
impl ServerHandler for Whoami {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "tessera-demo-api",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions("The Tessera demo API. Call whoami to see your access token.")
    }
}
