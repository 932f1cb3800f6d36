use crate::both_backends;
use crate::helpers::{Backend, spawn_app};

both_backends!(
    discovery_document_names_every_endpoint,
    health_and_readiness
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
