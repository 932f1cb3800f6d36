//! Several `tessera serve` processes on one PostgreSQL database: they start together, agree
//! on every token at once, and race fairly for single-use codes and refresh tokens.

use serde_json::Value;
use tessera_core::client::ClientRegistration;

use crate::cli::Node;
use crate::helpers::{Backend, TestClient, fresh_database, http_client};
use crate::person::{PASSWORD, Person, VERIFIER, authorize_url_at};

const CALLBACK: &str = "http://127.0.0.1:5000/authorize";

async fn post(node: &Node, path: &str, client: &TestClient, form: &[(&str, &str)]) -> (u16, Value) {
    let r = http_client()
        .post(format!("{}{path}", node.base))
        .basic_auth(&client.id, client.secret.as_deref())
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn register(
    store: &dyn tessera_store::Store,
    registration: ClientRegistration,
) -> TestClient {
    let mut r =
        tessera_core::client::register(&registration, tessera_core::clock::UnixTime::from_secs(0))
            .unwrap();
    if let Some(s) = &r.secret {
        r.client.secret_hash = Some(tessera_core::secret::hash_secret(s).unwrap());
    }
    store.create_client(&r.client).await.unwrap();
    TestClient {
        id: r.client.id.into_string(),
        secret: r.secret.map(|s| s.expose().to_owned()),
    }
}

#[tokio::test]
async fn three_nodes_on_one_postgres_database() {
    let Some(url) = fresh_database(Backend::Postgres).await else {
        return;
    };
    // Started at the same moment on an empty database: the migrations are serialised by
    // PostgreSQL's advisory lock, and every node comes up.
    let args = ["--janitor-interval", "1"];
    let (a, b, c) = tokio::join!(
        Node::start_with(&url, &args),
        Node::start_with(&url, &args),
        Node::start_with(&url, &args)
    );

    let store = tessera_store::connect(&url).await.unwrap();
    let m2m = register(
        store.as_ref(),
        ClientRegistration {
            name: "m2m".into(),
            scope: "api".into(),
            ..Default::default()
        },
    )
    .await;
    let web = register(
        store.as_ref(),
        ClientRegistration {
            name: "web".into(),
            redirect_uris: vec![CALLBACK.into()],
            scope: "api".into(),
            ..Default::default()
        },
    )
    .await;
    store
        .create_user(&tessera_core::user::User {
            id: "alice-id".into(),
            username: tessera_core::user::Username::parse("alice").unwrap(),
            password_hash: tessera_core::secret::hash_secret(&tessera_core::secret::Secret::new(
                PASSWORD,
            ))
            .unwrap(),
            created_at: tessera_core::clock::UnixTime::from_secs(0),
        })
        .await
        .unwrap();

    // Issue on A, introspect on B, revoke on C, introspect on A.
    let (_, issued) = post(&a, "/token", &m2m, &[("grant_type", "client_credentials")]).await;
    let token = issued["access_token"].as_str().unwrap();
    assert_eq!(
        post(&b, "/introspect", &m2m, &[("token", token)]).await.1["active"],
        true
    );
    assert_eq!(post(&c, "/revoke", &m2m, &[("token", token)]).await.0, 200);
    assert_eq!(
        post(&a, "/introspect", &m2m, &[("token", token)]).await.1,
        serde_json::json!({"active": false})
    );

    // One code, redeemed on B and C at the same moment: exactly one token response.
    let code = Person::at(&a.base)
        .authorize(&authorize_url_at(&a.base, &web.id, CALLBACK, &[]), "alice")
        .await["code"]
        .clone();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CALLBACK),
        ("code_verifier", VERIFIER),
    ];
    let (on_b, on_c) = tokio::join!(
        post(&b, "/token", &web, &form),
        post(&c, "/token", &web, &form)
    );
    let mut statuses = [on_b.0, on_c.0];
    statuses.sort();
    assert_eq!(statuses, [200, 400], "{on_b:?} {on_c:?}");
    let winner = if on_b.0 == 200 { on_b.1 } else { on_c.1 };
    // The loser was a replay: the winner's tokens are revoked too (RFC 6749 §4.1.2).
    let winner_access = winner["access_token"].as_str().unwrap();
    assert_eq!(
        post(&a, "/introspect", &m2m, &[("token", winner_access)])
            .await
            .1["active"],
        false
    );

    // A fresh grant, then one refresh token presented on A and B at the same moment: one
    // rotation wins; the other is a reuse, which revokes the family, winner included.
    let code = Person::at(&a.base)
        .authorize(&authorize_url_at(&a.base, &web.id, CALLBACK, &[]), "alice")
        .await["code"]
        .clone();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CALLBACK),
        ("code_verifier", VERIFIER),
    ];
    let (status, tokens) = post(&c, "/token", &web, &form).await;
    assert_eq!(status, 200);
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh)];
    let (on_a, on_b) = tokio::join!(
        post(&a, "/token", &web, &form),
        post(&b, "/token", &web, &form)
    );
    let mut statuses = [on_a.0, on_b.0];
    statuses.sort();
    assert_eq!(statuses, [200, 400], "{on_a:?} {on_b:?}");
    let loser = if on_a.0 == 400 { &on_a.1 } else { &on_b.1 };
    assert_eq!(loser["error"], "invalid_grant");
    let winner = if on_a.0 == 200 { &on_a.1 } else { &on_b.1 };
    for t in [
        &winner["access_token"],
        &winner["refresh_token"],
        &tokens["access_token"],
    ] {
        assert_eq!(
            post(&c, "/introspect", &web, &[("token", t.as_str().unwrap())])
                .await
                .1["active"],
            false
        );
    }

    // Janitors on all three nodes purge 3,000 expired tokens together, without deadlock.
    let expired: Vec<_> = (0..3000)
        .map(|i| tessera_core::token::TokenRecord {
            hash: tessera_core::token::TokenKey::of(&format!("tsa_expired_{i}")),
            kind: tessera_core::token::TokenKind::Access,
            client_id: m2m.id.as_str().into(),
            subject: None,
            scope: tessera_core::scope::Scope::default(),
            issued_at: tessera_core::clock::UnixTime::from_secs(1),
            expires_at: tessera_core::clock::UnixTime::from_secs(2),
            revoked_at: None,
            rotated_at: None,
            family_id: Some(format!("f{i}").into()),
            audience: Default::default(),
            username: None,
        })
        .collect();
    for chunk in expired.chunks(500) {
        store.insert_tokens(chunk).await.unwrap();
    }
    let probe = tessera_core::token::TokenKey::of("tsa_expired_2999");
    let mut purged = false;
    for _ in 0..100 {
        if store.find_token(&probe).await.unwrap().is_none() {
            purged = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(purged, "the janitors purged the expired tokens");
    for node in [&a, &b, &c] {
        let ready = http_client()
            .get(format!("{}/readyz", node.base))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status(), 200);
    }
}
