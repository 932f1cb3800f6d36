//! The demo API's MCP endpoint (`/mcp`, streamable HTTP) behind a guard bound to the API's
//! resource identifier, spoken to as plain JSON-RPC over HTTP.

use std::time::Duration;

use serde_json::{Value, json};
use tessera_guard::{Guard, ProtectedResource, RemoteConfig, RemoteIntrospection};
use tokio::net::TcpListener;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, spawn_app};

both_backends!(
    whoami_answers_the_caller_until_the_token_is_revoked,
    tokens_without_audience_or_scope_never_reach_mcp,
);

/// An unauthenticated request gets the guard's challenge naming the metadata; a client's
/// token then initializes, lists `whoami` and calls it, which names the client and scope; once
/// the token is revoked (no guard cache) `/mcp` answers 401 again.
async fn whoami_answers_the_caller_until_the_token_is_revoked(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (mcp_url, resource) = serve_mcp_api(&app, "api").await;
    let client = app.m2m_client("api").await;
    let token = app.access_token(&client, None).await;

    let anonymous = reqwest::Client::new()
        .post(&mcp_url)
        .header("accept", "application/json, text/event-stream")
        .json(&initialize(1))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let challenge = header(&anonymous, "www-authenticate");
    assert!(
        challenge.contains(&format!(
            "resource_metadata=\"{resource}.well-known/oauth-protected-resource\""
        )),
        "{challenge}"
    );

    let mut session = McpSession::new(&mcp_url, &token);
    let init = session.request(initialize(1)).await;
    assert_eq!(init.status, 200);
    let result = &init.message["result"];
    assert_eq!(result["serverInfo"]["name"], "tessera-demo-api");
    assert!(result["capabilities"]["tools"].is_object(), "{result}");
    session.protocol = result["protocolVersion"].as_str().map(str::to_owned);
    let initialized = session
        .request(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await;
    assert_eq!(initialized.status, 202);

    let tools = session
        .request(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .await;
    let names: Vec<&str> = tools.message["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["whoami"], "{}", tools.message);

    let call = session.request(call_whoami(3)).await;
    assert_eq!(call.status, 200);
    let result = &call.message["result"];
    assert_ne!(result["isError"], true, "{result}");
    let caller = &result["structuredContent"];
    assert_eq!(caller["client_id"], client.id.as_str());
    assert_eq!(caller["subject"], client.id.as_str());
    assert_eq!(caller["username"], Value::Null);
    assert_eq!(caller["scope"], "api");
    assert_eq!(caller["audience"], json!([resource]));
    // Clients without structured output read the same JSON as text.
    let text: Value = serde_json::from_str(result["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(&text, caller);

    // The stateless service has no stream to GET or session to DELETE; the guard still
    // answers first.
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let bare = reqwest::Client::new()
            .request(method.clone(), &mcp_url)
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(bare.status(), 401, "{method}");
        let authorized = reqwest::Client::new()
            .request(method.clone(), &mcp_url)
            .header("accept", "text/event-stream")
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(authorized.status(), 405, "{method}");
    }

    let revoked = app
        .post_basic("/revoke", &client, &[("token", &token)])
        .await;
    assert_eq!(revoked.status, 200);
    let after = session.request(call_whoami(4)).await;
    assert_eq!(after.status, 401, "{}", after.message);
    assert!(
        after.www_authenticate.contains("error=\"invalid_token\""),
        "{}",
        after.www_authenticate
    );
}

/// A token with no audience is refused as `invalid_token`, and one for the resource without
/// scope `api` as `insufficient_scope`, before rmcp reads the body: a request that is not even
/// JSON-RPC gets the guard's answer.
async fn tokens_without_audience_or_scope_never_reach_mcp(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (mcp_url, _) = serve_mcp_api(&app, "api restricted").await;
    let nowhere = app.m2m_client("read").await;
    let nowhere = app.access_token(&nowhere, None).await;
    let narrow = app.m2m_client("restricted").await;
    let narrow = app.access_token(&narrow, None).await;

    for (token, status, error) in [
        (nowhere, 401, "invalid_token"),
        (narrow, 403, "insufficient_scope"),
    ] {
        let reply = reqwest::Client::new()
            .post(&mcp_url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .bearer_auth(&token)
            .body("not json-rpc")
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), status, "{error}");
        let challenge = header(&reply, "www-authenticate");
        assert!(
            challenge.contains(&format!("error=\"{error}\"")),
            "{challenge}"
        );
    }
}

/// Registers a resource server for a fresh port's root URI defining `scopes`, and serves the
/// demo API there behind a remote guard without a cache; returns the `/mcp` URL and the
/// resource identifier.
async fn serve_mcp_api(app: &TestApp, scopes: &str) -> (String, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let resource = format!("http://{}/", listener.local_addr().unwrap());
    let rs = app.resource_server_at(&resource, scopes).await;
    let bound = ProtectedResource::new(&resource, &app.base)
        .unwrap()
        .scopes_supported(scopes.split(' '));
    let mut config = RemoteConfig::new(app.url("/introspect"), &rs.id, rs.secret());
    config.cache_ttl = Duration::ZERO;
    config.clock = app.clock.clone();
    let guard = Guard::new(RemoteIntrospection::new(config).unwrap(), "demo").for_resource(bound);
    let api = tessera_demo::api::router(&guard);
    tokio::spawn(async move { axum::serve(listener, api).await });
    (format!("{resource}mcp"), resource)
}

fn initialize(id: u64) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "tessera-tests", "version": "1.0"},
        },
    })
}

fn call_whoami(id: u64) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "tools/call",
        "params": {"name": "whoami", "arguments": {}},
    })
}

fn header(reply: &reqwest::Response, name: &str) -> String {
    reply
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// A streamable HTTP client as the MCP specification describes one: every message is a
/// POST accepting JSON or an event stream, carrying the session id and protocol version once
/// the server has given them.
struct McpSession {
    url: String,
    token: String,
    session_id: Option<String>,
    protocol: Option<String>,
}

/// One POST's answer: the status, the challenge if any, and the JSON-RPC message (the last
/// one of an event stream), or `null` for an empty body.
struct McpReply {
    status: u16,
    www_authenticate: String,
    message: Value,
}

impl McpSession {
    fn new(url: &str, token: &str) -> Self {
        Self {
            url: url.to_owned(),
            token: token.to_owned(),
            session_id: None,
            protocol: None,
        }
    }

    async fn request(&mut self, message: Value) -> McpReply {
        let mut request = reqwest::Client::new()
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .bearer_auth(&self.token)
            .json(&message);
        if let Some(id) = &self.session_id {
            request = request.header("mcp-session-id", id);
        }
        if let Some(version) = &self.protocol {
            request = request.header("mcp-protocol-version", version);
        }
        let reply = request.send().await.unwrap();
        let status = reply.status().as_u16();
        let www_authenticate = header(&reply, "www-authenticate");
        if let Some(id) = reply.headers().get("mcp-session-id") {
            self.session_id = Some(id.to_str().unwrap().to_owned());
        }
        let event_stream = header(&reply, "content-type").starts_with("text/event-stream");
        let body = reply.text().await.unwrap();
        let message = if event_stream {
            body.lines()
                .rev()
                .filter_map(|line| line.strip_prefix("data:"))
                .find_map(|data| serde_json::from_str(data.trim()).ok())
                .unwrap_or(Value::Null)
        } else {
            serde_json::from_str(&body).unwrap_or(Value::Null)
        };
        McpReply {
            status,
            www_authenticate,
            message,
        }
    }
}
