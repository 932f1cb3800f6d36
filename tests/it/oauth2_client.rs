//! Tessera driven by the `oauth2` crate: if an independent client library can use it with
//! nothing but the standard endpoints, other clients can too.

use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, ClientId, ClientSecret, IntrospectionUrl, Scope, TokenIntrospectionResponse,
    TokenResponse, TokenUrl,
};

use tessera_demo::http_client::oauth_http;

use crate::both_backends;
use crate::helpers::{Backend, spawn_app};

both_backends!(client_credentials_introspect_revoke_with_oauth2_crate);

async fn client_credentials_introspect_revoke_with_oauth2_crate(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let registered = app.m2m_client("api read").await;
    let http = oauth_http(app.http.clone());
    for auth_type in [AuthType::BasicAuth, AuthType::RequestBody] {
        let client = BasicClient::new(ClientId::new(registered.id.clone()))
            .set_client_secret(ClientSecret::new(registered.secret().to_owned()))
            .set_auth_type(auth_type)
            .set_token_uri(TokenUrl::new(app.url("/token")).unwrap())
            .set_introspection_url(IntrospectionUrl::new(app.url("/introspect")).unwrap());

        let token = client
            .exchange_client_credentials()
            .add_scope(Scope::new("api".into()))
            .request_async(&http)
            .await
            .expect("token");
        assert_eq!(token.scopes(), Some(&vec![Scope::new("api".into())]));
        assert!(token.refresh_token().is_none());

        let info = client
            .introspect(token.access_token())
            .set_token_type_hint("access_token")
            .request_async(&http)
            .await
            .expect("introspection");
        assert!(info.active());
        assert_eq!(
            info.client_id().map(|c| c.as_str()),
            Some(registered.id.as_str())
        );
        assert_eq!(info.scopes(), Some(&vec![Scope::new("api".into())]));

        // The oauth2 crate refuses a revocation URL that is not https (InsecureUrl), and these
        // tests run over loopback http, so revocation is a plain RFC 7009 request here.
        let revoked = app
            .post_basic(
                "/revoke",
                &registered,
                &[("token", token.access_token().secret())],
            )
            .await;
        assert_eq!(revoked.status, 200);
        let info = client
            .introspect(token.access_token())
            .request_async(&http)
            .await
            .expect("introspection");
        assert!(!info.active());

        // A scope the client may not have is refused with the standard error.
        let err = client
            .exchange_client_credentials()
            .add_scope(Scope::new("admin".into()))
            .request_async(&http)
            .await
            .unwrap_err();
        match err {
            oauth2::RequestTokenError::ServerResponse(r) => {
                assert_eq!(r.error().as_ref(), "invalid_scope")
            }
            other => panic!("unexpected error: {other:?}"),
        }
    }
}

both_backends!(code_flow_with_pkce_and_refresh_with_oauth2_crate);

/// The tutorial's flow through the `oauth2` crate: a confidential and a public client each get
/// a code with PKCE S256, exchange it, and refresh.
async fn code_flow_with_pkce_and_refresh_with_oauth2_crate(backend: Backend) {
    use oauth2::{AuthUrl, AuthorizationCode, CsrfToken, PkceCodeChallenge, RedirectUrl};
    use tessera_core::client::ClientRegistration;

    use crate::person::{PASSWORD, Person};

    const CALLBACK: &str = "http://127.0.0.1:5000/authorize";
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.user("alice", PASSWORD).await;
    let (api, _) = app.resource_server("api").await;
    let http = oauth_http(app.http.clone());
    for public in [false, true] {
        let registered = app
            .client(ClientRegistration {
                name: if public { "SPA" } else { "Web App" }.into(),
                public,
                redirect_uris: vec![CALLBACK.into()],
                scope: "api restricted".into(),
                ..Default::default()
            })
            .await;
        let mut client = BasicClient::new(ClientId::new(registered.id.clone()))
            .set_auth_uri(AuthUrl::new(app.url("/authorize")).unwrap())
            .set_token_uri(TokenUrl::new(app.url("/token")).unwrap())
            .set_redirect_uri(RedirectUrl::new(CALLBACK.into()).unwrap());
        if let Some(secret) = &registered.secret {
            client = client.set_client_secret(ClientSecret::new(secret.clone()));
        }

        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, csrf) = client
            .authorize_url(CsrfToken::new_random)
            .add_scope(Scope::new("api".into()))
            .set_pkce_challenge(challenge)
            .url();
        let params = Person::new(&app).authorize(url.as_str(), "alice").await;
        assert_eq!(&params["state"], csrf.secret());

        let token = client
            .exchange_code(AuthorizationCode::new(params["code"].clone()))
            .set_pkce_verifier(verifier)
            .request_async(&http)
            .await
            .expect("code exchange");
        assert_eq!(token.scopes(), Some(&vec![Scope::new("api".into())]));
        let info = app.introspect(&api, token.access_token().secret()).await;
        assert_eq!(info["username"], "alice");

        let refreshed = client
            .exchange_refresh_token(token.refresh_token().expect("a refresh token"))
            .request_async(&http)
            .await
            .expect("refresh");
        assert_ne!(
            refreshed.refresh_token().unwrap().secret(),
            token.refresh_token().unwrap().secret()
        );
        // The old refresh token is now a reused one: refused with the standard error.
        let err = client
            .exchange_refresh_token(token.refresh_token().unwrap())
            .request_async(&http)
            .await
            .unwrap_err();
        match err {
            oauth2::RequestTokenError::ServerResponse(r) => {
                assert_eq!(r.error().as_ref(), "invalid_grant")
            }
            other => panic!("unexpected error: {other:?}"),
        }
    }
}
