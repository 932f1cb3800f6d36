use serde_json::json;
use tessera_core::client::ClientRegistration;
use tessera_core::scope::Scope;
use tessera_core::token::{TokenKey, TokenKind, TokenRecord};

use crate::both_backends;
use crate::helpers::{Backend, spawn_app, spawn_app_with};

both_backends!(
    active_token_reports_its_claims,
    inactive_tokens_reveal_nothing,
    expiry_is_exclusive_and_follows_the_clock,
    only_confidential_clients_may_introspect,
    the_store_never_sees_the_clear_token,
    tokens_from_before_the_time_prefix_still_work,
    browsers_may_not_call_introspection_cross_origin,
    a_deleted_caller_is_refused_within_the_client_cache_lifetime,
);

async fn active_token_reports_its_claims(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let owner = app.m2m_client("api read").await;
    let (resource_server, rs_uri) = app.resource_server("api read").await;
    let token = app.access_token(&owner, Some("api")).await;
    let now = app.clock.now();
    let info = app.introspect(&resource_server, &token).await;
    assert_eq!(
        info,
        json!({
            "active": true,
            "scope": "api",
            "client_id": owner.id,
            "token_type": "Bearer",
            "exp": now + 3600,
            "iat": now,
            "sub": owner.id,
            "iss": app.base,
            "aud": [rs_uri],
            "token_use": "access_token",
        })
    );
}

async fn inactive_tokens_reveal_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let rs = app.m2m_client("").await;
    let real = app.access_token(&rs, None).await;
    let truncated = &real[..real.len() - 1];
    for token in [
        "tsa_unknown",
        "not a token at all",
        truncated,
        "%00",
        "tsr_x",
    ] {
        assert_eq!(
            app.introspect(&rs, token).await,
            json!({"active": false}),
            "{token}"
        );
    }
    app.post_basic("/revoke", &rs, &[("token", &real)]).await;
    assert_eq!(app.introspect(&rs, &real).await, json!({"active": false}));
}

async fn expiry_is_exclusive_and_follows_the_clock(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let client = app.m2m_client("api").await;
    let token = app.access_token(&client, None).await;
    app.clock.advance(3599);
    assert_eq!(app.introspect(&client, &token).await["active"], true);
    app.clock.advance(1);
    assert_eq!(
        app.introspect(&client, &token).await,
        json!({"active": false})
    );
}

async fn only_confidential_clients_may_introspect(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let owner = app.m2m_client("api").await;
    let token = app.access_token(&owner, None).await;
    let public = app
        .client(ClientRegistration {
            name: "spa".into(),
            public: true,
            redirect_uris: vec!["http://127.0.0.1:5000/cb".into()],
            ..Default::default()
        })
        .await;
    let reply = app
        .http
        .post(app.url("/introspect"))
        .form(&[("token", token.as_str()), ("client_id", public.id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 401);
    let body: serde_json::Value = reply.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
}

async fn the_store_never_sees_the_clear_token(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let client = app.m2m_client("api").await;
    let token = app.access_token(&client, None).await;
    let record = app
        .store
        .find_token(&TokenKey::of(&token))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.hash, TokenKey::of(&token));
    assert_ne!(record.hash.as_bytes().as_slice(), token.as_bytes());
}

/// A token issued before keys began with the issue time (`tsa_` + 43 characters, stored under
/// its plain SHA-256) is still found, introspected and revoked. It has no audience either,
/// so only its own client learns about it.
async fn tokens_from_before_the_time_prefix_still_work(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let owner = app.m2m_client("api").await;
    let (resource_server, _) = app.resource_server("api read").await;
    let legacy = "tsa_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG";
    let now = app.clock.now();
    app.store
        .insert_tokens(&[TokenRecord {
            // Not of the generated shape, so its key is the plain SHA-256 (tessera-core's
            // token tests check that), as it was when such tokens were issued.
            hash: TokenKey::of(legacy),
            kind: TokenKind::Access,
            client_id: owner.id.as_str().into(),
            subject: None,
            scope: Scope::parse("api").unwrap(),
            issued_at: now,
            expires_at: now + 60,
            revoked_at: None,
            rotated_at: None,
            family_id: None,
            audience: Default::default(),
            username: None,
        }])
        .await
        .unwrap();
    let info = app.introspect(&owner, legacy).await;
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["client_id"], owner.id.as_str());
    let info = app.introspect(&resource_server, legacy).await;
    assert_eq!(info, json!({ "active": false }));

    let revoked = app
        .post_basic("/revoke", &owner, &[("token", legacy)])
        .await;
    assert_eq!(revoked.status, 200);
    let info = app.introspect(&owner, legacy).await;
    assert_eq!(info, json!({ "active": false }));
}

/// Only confidential clients introspect, and a browser cannot keep a secret (RFC 6749
/// §2.1), so the endpoint answers no CORS preflight and grants no origin: a page that got
/// hold of a secret still cannot read the answers.
async fn browsers_may_not_call_introspection_cross_origin(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let preflight = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/introspect"))
        .header("origin", "https://spa.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_ne!(preflight.status(), 200);
    assert!(
        preflight
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    let rs = app.m2m_client("").await;
    let token = app.access_token(&rs, None).await;
    let answer = app
        .http
        .post(app.url("/introspect"))
        .header("origin", "https://spa.example")
        .basic_auth(&rs.id, rs.secret.as_deref())
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "the request itself is served");
    assert!(
        answer
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

/// A resource server introspects with the same Basic header every time, and the server
/// remembers headers that passed; that memory must not outlive the registration it checked.
async fn a_deleted_caller_is_refused_within_the_client_cache_lifetime(backend: Backend) {
    let lifetime = std::time::Duration::from_millis(400);
    let Some(app) = spawn_app_with(backend, |c| c.client_cache_ttl = lifetime).await else {
        return;
    };
    let owner = app.m2m_client("api").await;
    let (rs, _) = app.resource_server("api restricted read").await;
    let token = app.access_token(&owner, Some("api")).await;
    for _ in 0..3 {
        assert_eq!(app.introspect(&rs, &token).await["active"], true);
    }
    // With the header remembered, the body is still held to RFC 6749 §2.3.
    let twice = app
        .post_basic(
            "/introspect",
            &rs,
            &[("token", &token), ("client_secret", "x")],
        )
        .await;
    assert_eq!(twice.status, 400, "{:?}", twice.body);
    assert_eq!(twice.body["error"], "invalid_request");
    let other = app
        .post_basic(
            "/introspect",
            &rs,
            &[("token", &token), ("client_id", &owner.id)],
        )
        .await;
    assert_eq!(other.status, 400, "{:?}", other.body);
    let same = app
        .post_basic(
            "/introspect",
            &rs,
            &[("token", &token), ("client_id", &rs.id)],
        )
        .await;
    assert_eq!(same.status, 200, "{:?}", same.body);

    assert!(
        app.store
            .delete_client(&rs.id, app.clock.now())
            .await
            .unwrap()
    );
    tokio::time::sleep(lifetime + std::time::Duration::from_millis(100)).await;
    let refused = app
        .post_basic("/introspect", &rs, &[("token", &token)])
        .await;
    assert_eq!(refused.status, 401, "{:?}", refused.body);
    assert_eq!(refused.body["error"], "invalid_client");
}
