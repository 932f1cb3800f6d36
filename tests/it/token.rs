use crate::both_backends;
use crate::helpers::{Backend, spawn_app};

both_backends!(
    client_credentials_with_basic_auth,
    client_credentials_with_post_auth,
    absent_scope_means_the_clients_scope,
);

async fn client_credentials_with_basic_auth(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let client = app.m2m_client("api read").await;
    let reply = app
        .post_basic(
            "/token",
            &client,
            &[("grant_type", "client_credentials"), ("scope", "api")],
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(reply.header("pragma"), Some("no-cache"));
    assert_eq!(reply.body["token_type"], "Bearer");
    assert_eq!(reply.body["expires_in"], 3600);
    assert_eq!(reply.body["scope"], "api");
    // No refresh token for client_credentials (RFC 6749 §4.4.3).
    assert!(reply.body.get("refresh_token").is_none());
    let token = reply.body["access_token"].as_str().unwrap();
    assert!(
        token.starts_with("tsa_") && token.len() >= 4 + 43,
        "{token}"
    );
}

async fn client_credentials_with_post_auth(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let client = app.m2m_client("api").await;
    let reply = app
        .http
        .post(app.url("/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client.id.as_str()),
            ("client_secret", client.secret()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let body: serde_json::Value = reply.json().await.unwrap();
    assert_eq!(body["scope"], "api");
}

async fn absent_scope_means_the_clients_scope(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let client = app.m2m_client("read api").await;
    let token = app.access_token(&client, None).await;
    let info = app.introspect(&client, &token).await;
    assert_eq!(info["scope"], "api read");
    // Tokens are unique even when issued in the same second to the same client.
    assert_ne!(token, app.access_token(&client, None).await);
}

both_backends!(browser_apps_may_call_the_token_endpoint_cross_origin);

/// A single-page app (public client with PKCE) calls `/token` from its own origin.
async fn browser_apps_may_call_the_token_endpoint_cross_origin(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let preflight = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/token"))
        .header("origin", "https://spa.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 200);
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "*",
        "any origin, and never with credentials"
    );
    assert!(
        preflight
            .headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
    let client = app.m2m_client("api").await;
    let r = app
        .http
        .post(app.url("/token"))
        .header("origin", "https://spa.example")
        .basic_auth(&client.id, client.secret.as_deref())
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    // The browser pages are not opened to other origins.
    let page = app
        .http
        .get(app.url("/login"))
        .header("origin", "https://spa.example")
        .send()
        .await
        .unwrap();
    assert!(page.headers().get("access-control-allow-origin").is_none());
}
