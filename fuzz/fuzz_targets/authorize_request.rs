//! `authorize::UnverifiedRequest::parse`: the query string of `GET /authorize` (and the form
//! of the POST), the only request a stranger's link can make a browser send. Accepted requests
//! are also validated against a fixed public client, since `validate` decides where errors go.
//!
//! Properties: never panics; an accepted request names exactly one non-empty client_id; a
//! validated request or a redirected error only ever targets the registered redirect URI, and
//! a validated request for this public client has a PKCE challenge and an allowed scope.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tessera_core::authorize::{AuthorizeError, PkcePolicy, UnverifiedRequest};
use tessera_core::client::{Client, GrantType, RedirectUri, TokenEndpointAuthMethod};
use tessera_core::clock::UnixTime;
use tessera_core::form::pairs;
use tessera_core::scope::Scope;

const REDIRECT: &str = "https://app.example/cb";

static CLIENT: LazyLock<Option<Client>> = LazyLock::new(|| {
    Some(Client {
        id: "c".into(),
        name: "app".into(),
        secret_hash: None,
        auth_method: TokenEndpointAuthMethod::None,
        grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        scope: Scope::parse("api read").ok()?,
        redirect_uris: vec![RedirectUri::parse(REDIRECT).ok()?],
        skip_consent: false,
        created_at: UnixTime::from_secs(0),
        resource: None,
        self_registered: false,
    })
});

fuzz_target!(|data: &[u8]| {
    let Ok(request) = UnverifiedRequest::parse(data) else {
        return;
    };
    assert!(!request.client_id.is_empty());
    let decoded = pairs(data).unwrap_or_default();
    let ids = decoded.iter().filter(|(n, _)| n == "client_id").count();
    assert_eq!(ids, 1, "accepted with {ids} client_id");
    let Some(client) = CLIENT.as_ref() else {
        return;
    };
    match request.validate(client, PkcePolicy::default()) {
        Ok(valid) => {
            assert_eq!(valid.redirect_uri.as_str(), REDIRECT);
            assert!(
                valid.code_challenge.is_some(),
                "a public client without PKCE"
            );
            assert!(valid.scope.is_subset(&client.scope));
        }
        Err(AuthorizeError::Redirect { redirect_uri, .. }) => {
            assert_eq!(redirect_uri.as_str(), REDIRECT);
        }
        Err(AuthorizeError::Show(_)) => {}
    }
});
