use crate::both_backends;
use crate::helpers::{Backend, spawn_app};

both_backends!(
    discovery_document_names_every_endpoint,
    health_and_readiness,
    every_response_carries_a_request_id
);

async fn discovery_document_names_every_endpoint(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.m2m_client("api read").await;
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let doc: serde_json::Value = app
            .http
            .get(app.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(doc["issuer"], app.base);
        assert_eq!(doc["token_endpoint"], app.url("/token"));
        assert_eq!(doc["introspection_endpoint"], app.url("/introspect"));
        assert_eq!(doc["revocation_endpoint"], app.url("/revoke"));
        assert_eq!(doc["revocation_stream_endpoint"], app.url("/revocations"));
        assert_eq!(doc["authorization_endpoint"], app.url("/authorize"));
        assert_eq!(
            doc["grant_types_supported"],
            serde_json::json!(["authorization_code", "client_credentials", "refresh_token"])
        );
        assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
        assert_eq!(
            doc["code_challenge_methods_supported"],
            serde_json::json!(["S256"])
        );
        assert_eq!(
            doc["token_endpoint_auth_methods_supported"],
            serde_json::json!(["client_secret_basic", "client_secret_post", "none"])
        );
        assert_eq!(
            doc["introspection_endpoint_auth_methods_supported"],
            serde_json::json!(["client_secret_basic", "client_secret_post"])
        );
        assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
        assert_eq!(doc["scopes_supported"], serde_json::json!(["api", "read"]));
    }
}

async fn health_and_readiness(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    assert_eq!(
        app.http
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.http
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.http
            .get(app.url("/nope"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

async fn every_response_carries_a_request_id(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let id_of = |response: &reqwest::Response| {
        response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned()
    };
    let first = app.http.get(app.url("/healthz")).send().await.unwrap();
    let second = app.http.post(app.url("/token")).send().await.unwrap();
    assert_eq!(second.status(), 400, "an error answer has one too");
    assert_ne!(id_of(&first), id_of(&second));
    assert!(!id_of(&first).is_empty());
    // A caller's own id is kept, so its logs and ours can be joined, unless it is not a
    // plain token.
    for (sent, kept) in [("edge-7f3a_42", true), ("two words", false)] {
        let answer = app
            .http
            .get(app.url("/healthz"))
            .header("x-request-id", sent)
            .send()
            .await
            .unwrap();
        assert_eq!(id_of(&answer) == sent, kept, "x-request-id: {sent}");
    }
}
