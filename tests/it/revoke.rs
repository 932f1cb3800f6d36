use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, spawn_app};

both_backends!(
    a_client_revokes_its_own_token_at_once,
    another_clients_token_is_left_alone,
    unknown_tokens_and_any_hint_answer_200,
);

async fn a_client_revokes_its_own_token_at_once(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let client = app.m2m_client("api").await;
    let token = app.access_token(&client, None).await;
    let reply = app
        .post_basic("/revoke", &client, &[("token", &token)])
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        app.introspect(&client, &token).await,
        json!({"active": false})
    );
    // Revoking again is still 200 (RFC 7009 §2.2).
    assert_eq!(
        app.post_basic("/revoke", &client, &[("token", &token)])
            .await
            .status,
        200
    );
}

async fn another_clients_token_is_left_alone(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let owner = app.m2m_client("api").await;
    let other = app.m2m_client("api").await;
    let token = app.access_token(&owner, None).await;
    let reply = app
        .post_basic("/revoke", &other, &[("token", &token)])
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(app.introspect(&owner, &token).await["active"], true);
}

async fn unknown_tokens_and_any_hint_answer_200(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let client = app.m2m_client("api").await;
    let reply = app
        .post_basic("/revoke", &client, &[("token", "tsa_nope")])
        .await;
    assert_eq!(reply.status, 200);
    // The hint is only a hint: a wrong one still finds and revokes the access token.
    let token = app.access_token(&client, None).await;
    let reply = app
        .post_basic(
            "/revoke",
            &client,
            &[("token", &token), ("token_type_hint", "refresh_token")],
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(app.introspect(&client, &token).await["active"], false);
}
