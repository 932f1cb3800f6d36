//! Issue 27: OpenID Connect, with the `openidconnect` crate as the relying party: discovery,
//! the code flow with PKCE and a nonce, ID tokens verified against the JWKS, userinfo,
//! `prompt` and `max_age`, signing keys sealed at rest and rotated across two nodes.

use std::collections::HashMap;
use std::time::Duration;

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet,
    CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreUserInfoClaims,
};
use openidconnect::{
    AccessToken, AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl,
    Nonce, OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope, SubjectIdentifier,
    TokenResponse,
};
use serde_json::Value;
use tessera_core::client::ClientRegistration;
use tessera_core::clock::Clock;
use tessera_core::oidc::{KeyEncryptionKey, Profile};
use tessera_demo::http_client::{HttpFuture, oauth_http};
use tessera_server::{Config, Server};

use crate::both_backends;
use crate::helpers::{
    Backend, Reply, TestApp, TestClient, fresh_database, http_client, start_app, tessera_cli,
};
use crate::person::{PASSWORD, Person, authorize_url, query_of};

const CALLBACK: &str = "http://127.0.0.1:5000/callback";

fn kek() -> (KeyEncryptionKey, String) {
    KeyEncryptionKey::generate().unwrap()
}

/// A server with OpenID Connect on (a fresh KEK), whose clock starts at the real time so the
/// RP's expiry checks hold, and which follows key rotations quickly.
async fn oidc_app(database_url: &str, kek: &KeyEncryptionKey) -> TestApp {
    let kek = kek.clone();
    start_app(
        database_url,
        Clock::manual(Clock::system().now()),
        move |c: &mut Config| {
            c.key_encryption_key = Some(kek);
            c.key_reload_interval = Duration::from_millis(200);
        },
    )
    .await
}

async fn alice(app: &TestApp) -> String {
    let id = app.user("alice", PASSWORD).await;
    let profile = Profile {
        name: Some("Alice Liddell".into()),
        email: Some("alice@example.com".into()),
        email_verified: true,
    };
    assert!(app.store.set_profile("alice", &profile).await.unwrap());
    id
}

async fn rp_client(app: &TestApp, scope: &str) -> TestClient {
    app.client(ClientRegistration {
        name: "Relying Party".into(),
        redirect_uris: vec![CALLBACK.into()],
        scope: scope.into(),
        ..Default::default()
    })
    .await
}

type Http = Box<dyn Fn(openidconnect::HttpRequest) -> HttpFuture>;

fn rp_http() -> Http {
    Box::new(oauth_http(http_client()))
}

async fn discover(base: &str, http: &Http) -> CoreProviderMetadata {
    CoreProviderMetadata::discover_async(IssuerUrl::new(base.to_owned()).unwrap(), http)
        .await
        .expect("discovery")
}

fn relying_party(metadata: CoreProviderMetadata, client: &TestClient) -> RpClient {
    CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(client.id.clone()),
        client.secret.clone().map(ClientSecret::new),
    )
    .set_redirect_uri(RedirectUrl::new(CALLBACK.into()).unwrap())
}

type RpClient = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

/// What one sign-in through the RP gave.
struct SignedIn {
    id_token: CoreIdToken,
    access_token: AccessToken,
    nonce: Nonce,
}

/// The code flow with PKCE and a nonce, as the RP drives it, `person` signing in.
async fn sign_in(rp: &RpClient, http: &Http, person: &Person, scopes: &[&str]) -> SignedIn {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = rp.authorize_url(
        CoreAuthenticationFlow::AuthorizationCode,
        CsrfToken::new_random,
        Nonce::new_random,
    );
    for scope in scopes {
        request = request.add_scope(Scope::new((*scope).into()));
    }
    let (url, csrf, nonce) = request.set_pkce_challenge(challenge).url();
    let params = person.authorize(url.as_str(), "alice").await;
    assert_eq!(&params["state"], csrf.secret(), "{params:?}");
    let token = rp
        .exchange_code(AuthorizationCode::new(params["code"].clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(http)
        .await
        .expect("code exchange");
    SignedIn {
        id_token: token.id_token().expect("an ID token").clone(),
        access_token: token.access_token().clone(),
        nonce,
    }
}

both_backends!(issue_27_openidconnect_rp_signs_in_verifies_and_reads_userinfo);

async fn issue_27_openidconnect_rp_signs_in_verifies_and_reads_userinfo(backend: Backend) {
    let Some(url) = fresh_database(backend).await else {
        return;
    };
    let app = oidc_app(&url, &kek().0).await;
    let sub = alice(&app).await;
    let client = rp_client(&app, "openid profile email api").await;
    let http = rp_http();
    let metadata = discover(&app.base, &http).await;
    let rp = relying_party(metadata, &client);

    let signed_in = sign_in(&rp, &http, &Person::new(&app), &["profile", "email"]).await;
    let verifier = rp.id_token_verifier();
    let claims = signed_in
        .id_token
        .claims(&verifier, &signed_in.nonce)
        .expect("a valid ID token");
    assert_eq!(claims.subject().as_str(), sub);
    assert_eq!(
        claims.name().and_then(|n| n.get(None)).map(|n| n.as_str()),
        Some("Alice Liddell")
    );
    assert_eq!(
        claims.preferred_username().map(|u| u.as_str()),
        Some("alice")
    );
    assert_eq!(
        claims.email().map(|e| e.as_str()),
        Some("alice@example.com")
    );
    assert_eq!(claims.email_verified(), Some(true));
    assert!(claims.auth_time().is_some());
    let at_hash = AccessTokenHash::from_token(
        &signed_in.access_token,
        signed_in.id_token.signing_alg().unwrap(),
        signed_in.id_token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(claims.access_token_hash(), Some(&at_hash));

    // Userinfo answers the same person, with the opaque access token.
    let info: CoreUserInfoClaims = rp
        .user_info(
            signed_in.access_token.clone(),
            Some(SubjectIdentifier::new(sub.clone())),
        )
        .unwrap()
        .request_async(&http)
        .await
        .expect("userinfo");
    assert_eq!(
        info.name().and_then(|n| n.get(None)).map(|n| n.as_str()),
        Some("Alice Liddell")
    );
    let token = signed_in.access_token.secret();
    let posted = Reply::from(
        app.http
            .post(app.url("/userinfo"))
            .form(&[("access_token", token.as_str())])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(posted.status, 200);
    assert_eq!(posted.body["sub"], sub.as_str());
    assert_eq!(posted.body["email"], "alice@example.com");

    // Only `openid`: no profile claims, in the ID token or at userinfo.
    let bare = sign_in(&rp, &http, &Person::new(&app), &[]).await;
    let claims = bare.id_token.claims(&verifier, &bare.nonce).unwrap();
    assert!(claims.name().is_none() && claims.email().is_none());
    let reply = userinfo(&app, bare.access_token.secret()).await;
    assert_eq!(reply.body, serde_json::json!({ "sub": sub }));

    // RFC 6750 errors: no token is a bare challenge (§3.1), a bad token is 401 invalid_token,
    // a token without openid is 403.
    let reply = Reply::from(app.http.get(app.url("/userinfo")).send().await.unwrap()).await;
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.header("www-authenticate").unwrap(),
        "Bearer realm=\"tessera\""
    );
    let reply = userinfo(&app, "tsa_not-a-token").await;
    assert_eq!(reply.status, 401);
    assert!(
        reply
            .header("www-authenticate")
            .unwrap()
            .contains("invalid_token")
    );
    let code = Person::new(&app)
        .authorize(
            &authorize_url(&app, &client.id, CALLBACK, &[("scope", "api")]),
            "alice",
        )
        .await["code"]
        .clone();
    let plain = exchange(&app, &client, &code).await;
    assert!(plain.body.get("id_token").is_none());
    let reply = userinfo(&app, plain.body["access_token"].as_str().unwrap()).await;
    assert_eq!(reply.status, 403);
    assert!(
        reply
            .header("www-authenticate")
            .unwrap()
            .contains("insufficient_scope")
    );

    // Both discovery documents carry the OpenID Connect fields; the JWKS may be cached.
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let doc: Value = app
            .http
            .get(app.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(doc["jwks_uri"], app.url("/jwks"), "{path}");
        assert_eq!(doc["userinfo_endpoint"], app.url("/userinfo"));
        assert_eq!(doc["end_session_endpoint"], app.url("/logout"));
        assert_eq!(
            doc["subject_types_supported"],
            serde_json::json!(["public"])
        );
        assert_eq!(
            doc["id_token_signing_alg_values_supported"],
            serde_json::json!(["ES256", "RS256"])
        );
        let scopes = doc["scopes_supported"].as_array().unwrap();
        for scope in ["openid", "profile", "email"] {
            assert!(scopes.iter().any(|s| s == scope), "{path}: {scope}");
        }
    }
    let jwks = app.http.get(app.url("/jwks")).send().await.unwrap();
    assert_eq!(
        jwks.headers()["cache-control"].to_str().unwrap(),
        "public, max-age=60"
    );
}

async fn userinfo(app: &TestApp, token: &str) -> Reply {
    Reply::from(
        app.http
            .get(app.url("/userinfo"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn exchange(app: &TestApp, client: &TestClient, code: &str) -> Reply {
    app.post_basic(
        "/token",
        client,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", CALLBACK),
            ("code_verifier", crate::person::VERIFIER),
        ],
    )
    .await
}

both_backends!(issue_27_prompt_and_max_age);

/// OIDC Core §3.1.2.1: `prompt=none` never shows a page, `prompt=login` and an exceeded
/// `max_age` sign in again, `prompt=consent` asks again; errors go to the client with state.
async fn issue_27_prompt_and_max_age(backend: Backend) {
    let Some(url) = fresh_database(backend).await else {
        return;
    };
    let app = oidc_app(&url, &kek().0).await;
    alice(&app).await;
    let client = rp_client(&app, "openid profile").await;
    let person = Person::new(&app);
    let at = |extra: &[(&str, &str)]| {
        let mut extra = extra.to_vec();
        extra.push(("scope", "openid"));
        authorize_url(&app, &client.id, CALLBACK, &extra)
    };
    let error_of = |location: Option<&str>| -> HashMap<String, String> {
        query_of(location.expect("a redirect to the client"))
    };

    // Not signed in: prompt=none is login_required, sent to the client with state.
    let page = person.get(&at(&[("prompt", "none")])).await;
    let params = error_of(page.location());
    assert_eq!(params["error"], "login_required");
    assert_eq!(params["state"], "s-123");

    // Signed in, consent given once: prompt=none now issues a code without a page.
    person.authorize(&at(&[]), "alice").await;
    let page = person.get(&at(&[("prompt", "none")])).await;
    assert!(error_of(page.location()).contains_key("code"));

    // prompt=none for a scope not consented to: consent_required.
    let page = person
        .get(&authorize_url(
            &app,
            &client.id,
            CALLBACK,
            &[("prompt", "none"), ("scope", "openid profile")],
        ))
        .await;
    assert_eq!(error_of(page.location())["error"], "consent_required");

    // prompt=consent asks again even though consent was given.
    let page = person.get(&at(&[("prompt", "consent")])).await;
    assert!(page.is_consent(), "{}", page.body);

    // prompt=login signs in again though the session is live; then the flow completes.
    let page = person.get(&at(&[("prompt", "login")])).await;
    let page = follow_local(&person, page).await;
    assert!(page.is_login(), "{}", page.body);
    let params = query_of(
        &person
            .authorize_as(&at(&[("prompt", "login")]), "alice", PASSWORD)
            .await,
    );
    assert!(params.contains_key("code"), "{params:?}");

    // max_age: a sign-in older than it is a new sign-in (and login_required with none).
    app.clock.advance(120);
    let page = person
        .get(&at(&[("max_age", "60"), ("prompt", "none")]))
        .await;
    assert_eq!(error_of(page.location())["error"], "login_required");
    let page = follow_local(&person, person.get(&at(&[("max_age", "60")])).await).await;
    assert!(page.is_login(), "{}", page.body);
    let page = person.get(&at(&[("max_age", "600")])).await;
    assert!(error_of(page.location()).contains_key("code"));

    // Malformed values are invalid_request, at the client.
    for bad in [("prompt", "none login"), ("max_age", "-5")] {
        let page = person.get(&at(&[bad])).await;
        assert_eq!(
            error_of(page.location())["error"],
            "invalid_request",
            "{bad:?}"
        );
    }
}

/// Follows redirects within Tessera (to the login page).
async fn follow_local(person: &Person, mut page: crate::person::Page) -> crate::person::Page {
    while let Some(location) = page.location().filter(|l| l.starts_with('/')) {
        page = person.get(location).await;
    }
    page
}

#[tokio::test]
async fn issue_27_the_rp_rejects_a_wrong_nonce_and_a_wrong_audience() {
    let Some(url) = fresh_database(Backend::Sqlite).await else {
        return;
    };
    let app = oidc_app(&url, &kek().0).await;
    alice(&app).await;
    let client = rp_client(&app, "openid").await;
    let other = rp_client(&app, "openid").await;
    let http = rp_http();
    let metadata = discover(&app.base, &http).await;
    let rp = relying_party(metadata.clone(), &client);
    let signed_in = sign_in(&rp, &http, &Person::new(&app), &[]).await;

    let verifier = rp.id_token_verifier();
    assert!(
        signed_in
            .id_token
            .claims(&verifier, &Nonce::new("replayed".into()))
            .is_err()
    );
    let someone_else = relying_party(metadata, &other);
    assert!(
        signed_in
            .id_token
            .claims(&someone_else.id_token_verifier(), &signed_in.nonce)
            .is_err()
    );
    assert!(
        signed_in
            .id_token
            .claims(&verifier, &signed_in.nonce)
            .is_ok()
    );
}

both_backends!(issue_27_without_a_kek_openid_is_invalid_scope);

async fn issue_27_without_a_kek_openid_is_invalid_scope(backend: Backend) {
    let Some(app) = crate::helpers::spawn_app(backend).await else {
        return;
    };
    alice(&app).await;
    let client = rp_client(&app, "openid api").await;
    let page = Person::new(&app)
        .get(&authorize_url(
            &app,
            &client.id,
            CALLBACK,
            &[("scope", "openid")],
        ))
        .await;
    let params = query_of(page.location().unwrap());
    assert_eq!(params["error"], "invalid_scope");
    let doc: Value = app
        .http
        .get(app.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc.get("jwks_uri").is_none(), "{doc}");
    let jwks: Value = app
        .http
        .get(app.url("/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks, serde_json::json!({ "keys": [] }));
}

both_backends!(issue_27_keys_are_sealed_and_need_their_kek);

/// A dump of the signing keys shows no private key, and a node refuses to start with keys
/// but without the KEK, or with another one.
async fn issue_27_keys_are_sealed_and_need_their_kek(backend: Backend) {
    let Some(url) = fresh_database(backend).await else {
        return;
    };
    let (kek, _) = kek();
    let app = oidc_app(&url, &kek).await;
    let dump = dump_signing_keys(&url).await;
    assert_eq!(dump.len(), 2);
    // The algorithm identifiers of PKCS #8 (id-ecPublicKey, rsaEncryption) and a JWK's
    // private member would show a key in clear; sealed bytes show none of them.
    let ec_oid: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    let rsa_oid: &[u8] = &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
    ];
    for row in &dump {
        for needle in [ec_oid, rsa_oid, b"PRIVATE KEY", b"\"d\":"] {
            assert!(
                !row.windows(needle.len()).any(|w| w == needle),
                "a private key in clear"
            );
        }
    }
    drop(app);

    let store = tessera_store::connect(&url).await.unwrap();
    let config = |kek: Option<KeyEncryptionKey>| Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        key_encryption_key: kek,
        ..Config::default()
    };
    let refused = Server::build(config(None), store.clone())
        .await
        .err()
        .unwrap();
    assert!(
        refused.to_string().contains("key-encryption key"),
        "{refused}"
    );
    let refused = Server::build(config(Some(self::kek().0)), store.clone())
        .await
        .err()
        .unwrap();
    assert!(refused.to_string().contains("does not open"), "{refused}");
    assert!(Server::build(config(Some(kek)), store).await.is_ok());
}

/// Every column of every row of `signing_keys`, as bytes.
async fn dump_signing_keys(url: &str) -> Vec<Vec<u8>> {
    type Row = (String, String, String, Vec<u8>, i64, Option<i64>);
    let sql = "SELECT kid, alg, public_jwk, encrypted_private_key, created_at, retired_at \
               FROM signing_keys";
    let rows: Vec<Row> = if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query_as(sql).fetch_all(&pool).await.unwrap()
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query_as(sql).fetch_all(&pool).await.unwrap()
    };
    rows.into_iter()
        .map(|(kid, alg, jwk, sealed, created, retired)| {
            let mut row = format!("{kid}|{alg}|{jwk}|{created}|{retired:?}|").into_bytes();
            row.extend(sealed);
            row
        })
        .collect()
}

#[tokio::test]
async fn issue_27_key_rotation_across_two_nodes_on_postgres() {
    let Some(url) = fresh_database(Backend::Postgres).await else {
        return;
    };
    let (kek, kek_text) = kek();
    let a = oidc_app(&url, &kek).await;
    let b = oidc_app(&url, &kek).await;
    alice(&a).await;
    let client = rp_client(&a, "openid").await;
    let http = rp_http();

    // Signed on A before the rotation.
    let rp_a = relying_party(discover(&a.base, &http).await, &client);
    let before = sign_in(&rp_a, &http, &Person::new(&a), &[]).await;
    let old_kid = kid_of(&before.id_token);
    assert_eq!(jwks(&a).await, jwks(&b).await);

    rotate_keys(&url, &kek_text, &format!("tessera-kek-{}", a.addr.port())).await;

    // Both nodes publish the new keys beside the old ones, the same set.
    let published =
        wait_for(|| async { jwks(&b).await.len() == 4 && jwks(&a).await.len() == 4 }).await;
    assert!(published);
    assert_eq!(jwks(&a).await, jwks(&b).await);

    // B signs with a new key; the old token still verifies against B's JWKS.
    let rp_b = relying_party(discover(&b.base, &http).await, &client);
    let after = sign_in(&rp_b, &http, &Person::new(&b), &[]).await;
    assert_ne!(kid_of(&after.id_token), old_kid);
    assert!(
        after
            .id_token
            .claims(&rp_b.id_token_verifier(), &after.nonce)
            .is_ok()
    );
    // Each test node is its own issuer; what matters here is B's key set.
    let verifier = verifier_with(&a, &b, &client).await;
    before.id_token.claims(&verifier, &before.nonce).unwrap();

    // Once its ID tokens have expired, pruning takes the old key out of both JWKS.
    // The CLI retired them at its own (system) time; an hour later they are still published.
    let retired = Clock::system().now();
    let hour_later = retired.saturating_add(3600);
    assert_eq!(
        tessera_flow::keys::prune(a.store.as_ref(), hour_later)
            .await
            .unwrap(),
        0
    );
    let later = retired.saturating_add(3600 + tessera_flow::keys::PRUNE_MARGIN);
    assert_eq!(
        tessera_flow::keys::prune(a.store.as_ref(), later)
            .await
            .unwrap(),
        2
    );
    let gone = wait_for(|| async { jwks(&a).await.len() == 2 && jwks(&b).await.len() == 2 }).await;
    assert!(gone);
    let kids: Vec<String> = jwks(&b)
        .await
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    assert!(!kids.contains(&old_kid));
    let verifier = verifier_with(&a, &b, &client).await;
    assert!(before.id_token.claims(&verifier, &before.nonce).is_err());
    assert!(
        after
            .id_token
            .claims(&verifier_with(&b, &b, &client).await, &after.nonce)
            .is_ok()
    );
}

/// A verifier of `issuer`'s ID tokens for `client` that trusts the keys `keys` publishes.
async fn verifier_with(
    issuer: &TestApp,
    keys: &TestApp,
    client: &TestClient,
) -> CoreIdTokenVerifier<'static> {
    let set: CoreJsonWebKeySet = keys
        .http
        .get(keys.url("/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    CoreIdTokenVerifier::new_confidential_client(
        ClientId::new(client.id.clone()),
        ClientSecret::new(client.secret().to_owned()),
        IssuerUrl::new(issuer.base.clone()).unwrap(),
        set,
    )
    .set_allowed_algs([
        CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    ])
}

fn kid_of(token: &CoreIdToken) -> String {
    let text = token.to_string();
    let header = text.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header).unwrap(),
    )
    .unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

async fn jwks(app: &TestApp) -> Vec<Value> {
    let body = app
        .http
        .get(app.url("/jwks"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    // The RP's own JWK Set type reads it, too.
    let set: CoreJsonWebKeySet = serde_json::from_slice(&body).unwrap();
    let raw: Value = serde_json::from_slice(&body).unwrap();
    let keys = raw["keys"].as_array().unwrap().clone();
    assert_eq!(set.keys().len(), keys.len());
    keys
}

async fn wait_for<F, Fut>(check: F) -> bool
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn issue_27_cli_profiles_and_keys() {
    let Some(url) = fresh_database(Backend::Sqlite).await else {
        return;
    };
    let out = tessera_cli(
        &url,
        &[
            "user",
            "create",
            "carol",
            "--password-stdin",
            "--email",
            "carol@example.com",
            "--name",
            "Carol Ann",
        ],
        &format!("{PASSWORD}\n"),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A fresh connection for each look: another process's writes reach an open SQLite
    // store's readers only after a short while.
    let store = || async { tessera_store::connect(&url).await.unwrap() };
    let user = store()
        .await
        .get_user_by_username("carol")
        .await
        .unwrap()
        .unwrap();
    let (_, profile) = store().await.get_profile(&user.id).await.unwrap().unwrap();
    assert_eq!(profile.name.as_deref(), Some("Carol Ann"));
    assert!(!profile.email_verified);
    let out = tessera_cli(
        &url,
        &["user", "update", "carol", "--email-verified", "true"],
        "",
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, profile) = store().await.get_profile(&user.id).await.unwrap().unwrap();
    assert!(profile.email_verified);
    assert_eq!(profile.email.as_deref(), Some("carol@example.com"));

    // Rotating needs the KEK; listing shows no private part.
    let out = tessera_cli(&url, &["keys", "rotate"], "").await;
    assert!(!out.status.success());
    let out = tessera_cli(&url, &["keys", "list", "--json"], "").await;
    assert!(out.status.success());
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed, serde_json::json!([]));

    let created = crate::cli::created(
        &url,
        &[
            "client",
            "create",
            "--name",
            "rp",
            "--redirect-uri",
            CALLBACK,
            "--scope",
            "openid",
            "--post-logout-redirect-uri",
            AFTER_LOGOUT,
            "--id-token-signed-response-alg",
            "RS256",
            "--json",
        ],
    )
    .await;
    let oidc = store()
        .await
        .get_client_oidc(&created.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(oidc.post_logout_redirect_uris, [AFTER_LOGOUT]);
    assert_eq!(oidc.id_token_signed_response_alg.as_deref(), Some("RS256"));

    // Keys made with a KEK file; then `serve` without the KEK refuses to start.
    let kek_text = format!("{}\n", kek().1);
    rotate_keys(
        &url,
        &kek_text,
        &format!("tessera-cli-kek-{}", std::process::id()),
    )
    .await;
    let out = tessera_cli(&url, &["keys", "list", "--json"], "").await;
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let algs: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["alg"].as_str().unwrap())
        .collect();
    assert_eq!(algs.len(), 2);
    assert!(algs.contains(&"ES256") && algs.contains(&"RS256"));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("encrypted"));
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tessera_cli(&url, &["serve", "--listen", "127.0.0.1:0"], ""),
    )
    .await
    .expect("serve should refuse to start, not run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("key-encryption key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const AFTER_LOGOUT: &str = "http://127.0.0.1:5000/signed-out";

both_backends!(issue_27_rp_initiated_logout);

/// RP-Initiated Logout 1.0 through the RP's own logout request: the end-session endpoint from
/// discovery, the ID token as hint, a registered post-logout URI and `state`; a confirmation
/// with a CSRF-protected POST first. The client's RS256 choice signs its ID tokens.
async fn issue_27_rp_initiated_logout(backend: Backend) {
    use openidconnect::{
        CsrfToken, LogoutRequest, PostLogoutRedirectUrl, ProviderMetadataWithLogout,
    };
    let Some(url) = fresh_database(backend).await else {
        return;
    };
    let app = oidc_app(&url, &kek().0).await;
    alice(&app).await;
    let client = rp_client(&app, "openid").await;
    let settings = tessera_store::ClientOidc {
        id_token_signed_response_alg: Some("RS256".into()),
        post_logout_redirect_uris: vec![AFTER_LOGOUT.into()],
    };
    app.store
        .put_client_oidc(&client.id, &settings)
        .await
        .unwrap();
    let http = rp_http();
    let rp = relying_party(discover(&app.base, &http).await, &client);
    let person = Person::new(&app);
    let signed_in = sign_in(&rp, &http, &person, &[]).await;
    assert_eq!(
        signed_in.id_token.signing_alg().unwrap(),
        &CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256
    );

    let with_logout = ProviderMetadataWithLogout::discover_async(
        IssuerUrl::new(app.base.clone()).unwrap(),
        &http,
    )
    .await
    .unwrap();
    let end_session = with_logout
        .additional_metadata()
        .end_session_endpoint
        .clone()
        .expect("end_session_endpoint");
    let logout = |uri: &str| {
        LogoutRequest::from(end_session.clone())
            .set_id_token_hint(&signed_in.id_token)
            .set_post_logout_redirect_uri(PostLogoutRedirectUrl::new(uri.into()).unwrap())
            .set_state(CsrfToken::new("bye-1".into()))
            .http_get_url()
    };

    // An unregistered (even slightly different) URI is refused, and signs nobody out.
    let page = person
        .get(logout(&format!("{AFTER_LOGOUT}/")).as_str())
        .await;
    assert_eq!(page.status, 400, "{}", page.body);

    // The registered one: a confirmation page, whose form without its CSRF field fails.
    let page = person.get(logout(AFTER_LOGOUT).as_str()).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Sign out of Tessera?"), "{}", page.body);
    let fields = page.hidden_fields();
    let forged: Vec<_> = fields
        .iter()
        .filter(|(n, _)| n != "csrf_token")
        .cloned()
        .collect();
    assert_eq!(person.post("/logout", &forged).await.status, 403);
    let done = person.post("/logout", &fields).await;
    assert_eq!(done.status, 303);
    assert_eq!(
        done.location(),
        Some(&*format!("{AFTER_LOGOUT}?state=bye-1"))
    );

    // Signed out: prompt=none now needs a sign-in.
    let page = person
        .get(&authorize_url(
            &app,
            &client.id,
            CALLBACK,
            &[("scope", "openid"), ("prompt", "none")],
        ))
        .await;
    assert_eq!(
        query_of(page.location().unwrap())["error"],
        "login_required"
    );

    // An expired hint still names its client: with no session, straight back to it.
    app.clock.advance(2 * 3600);
    let page = person.get(logout(AFTER_LOGOUT).as_str()).await;
    assert_eq!(page.status, 303);
    assert_eq!(
        page.location(),
        Some(&*format!("{AFTER_LOGOUT}?state=bye-1"))
    );

    // A hint that is not ours, or another client's id beside it, is refused.
    let forged_hint = format!("{}x", signed_in.id_token);
    let mut url = url::Url::parse(&app.url("/logout")).unwrap();
    url.query_pairs_mut()
        .append_pair("id_token_hint", &forged_hint)
        .append_pair("post_logout_redirect_uri", AFTER_LOGOUT);
    assert_eq!(person.get(url.as_str()).await.status, 400);
    let mut url = logout(AFTER_LOGOUT);
    url.query_pairs_mut()
        .append_pair("client_id", "someone-else");
    assert_eq!(person.get(url.as_str()).await.status, 400);
}

#[tokio::test]
async fn issue_27_dynamic_registration_takes_the_openid_fields() {
    let Some(url) = fresh_database(Backend::Sqlite).await else {
        return;
    };
    let kek = kek().0;
    let app = start_app(
        &url,
        Clock::manual(Clock::system().now()),
        move |c: &mut Config| {
            c.key_encryption_key = Some(kek);
            c.registration = tessera_core::registration::RegistrationPolicy::Open;
        },
    )
    .await;
    let register = |body: Value| {
        let http = app.http.clone();
        let url = app.url("/register");
        async move { Reply::from(http.post(url).json(&body).send().await.unwrap()).await }
    };
    let reply = register(serde_json::json!({
        "client_name": "RP",
        "redirect_uris": [CALLBACK],
        "scope": "openid profile",
        "post_logout_redirect_uris": [AFTER_LOGOUT],
        "id_token_signed_response_alg": "RS256",
    }))
    .await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    assert_eq!(
        reply.body["post_logout_redirect_uris"],
        serde_json::json!([AFTER_LOGOUT])
    );
    assert_eq!(reply.body["id_token_signed_response_alg"], "RS256");
    let id = reply.body["client_id"].as_str().unwrap();
    let stored = app.store.get_client_oidc(id).await.unwrap().unwrap();
    assert_eq!(stored.post_logout_redirect_uris, [AFTER_LOGOUT]);
    for bad in [
        serde_json::json!({"redirect_uris": [CALLBACK], "id_token_signed_response_alg": "none"}),
        serde_json::json!({"redirect_uris": [CALLBACK], "post_logout_redirect_uris": ["not a uri"]}),
    ] {
        let reply = register(bad).await;
        assert_eq!(reply.status, 400);
        assert_eq!(reply.body["error"], "invalid_client_metadata");
    }
}

/// `tessera keys rotate` with the KEK in a temporary file named `file_name`.
async fn rotate_keys(url: &str, kek_text: &str, file_name: &str) {
    let kek_file = std::env::temp_dir().join(file_name);
    std::fs::write(&kek_file, kek_text).unwrap();
    let kek_arg = kek_file.to_str().unwrap();
    let out = tessera_cli(
        url,
        &["keys", "rotate", "--key-encryption-key-file", kek_arg],
        "",
    )
    .await;
    std::fs::remove_file(&kek_file).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
