//! Issue 27's storage: ID-token signing keys (kept encrypted, rotated in one transaction,
//! pruned once retired long enough), a person's profile, and a session's sign-in time.

use std::sync::Arc;

use tessera_core::clock::UnixTime;
use tessera_core::oidc::Profile;
use tessera_core::token::{RawToken, TokenKind};
use tessera_store::{ClientOidc, Session, Store, StoreError, StoredSigningKey};

use crate::person;

conformance!(
    signing_keys_rotate_and_are_pruned_once_retired,
    profiles_are_read_by_id_and_replaced_by_username,
    a_session_knows_when_its_person_signed_in,
);

fn key(kid: &str, alg: &str, created_at: i64) -> StoredSigningKey {
    StoredSigningKey {
        kid: kid.into(),
        alg: alg.into(),
        public_jwk: format!(r#"{{"kid":"{kid}"}}"#),
        encrypted_private_key: vec![1, 2, 3, 0, 255],
        created_at: UnixTime::from_secs(created_at),
        retired_at: None,
    }
}

async fn signing_keys_rotate_and_are_pruned_once_retired(store: Arc<dyn Store>) {
    assert!(store.list_signing_keys().await.unwrap().is_empty());
    let (es, rs) = (key("k1", "ES256", 100), key("k2", "RS256", 100));
    store.insert_signing_key(&es).await.unwrap();
    store.insert_signing_key(&rs).await.unwrap();
    assert!(matches!(
        store.insert_signing_key(&es).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        store.list_signing_keys().await.unwrap(),
        vec![es.clone(), rs.clone()]
    );

    let new = [key("k3", "ES256", 200), key("k4", "RS256", 200)];
    store
        .rotate_signing_keys(&new, UnixTime::from_secs(200))
        .await
        .unwrap();
    let keys = store.list_signing_keys().await.unwrap();
    assert_eq!(keys.len(), 4);
    let retired: Vec<_> = keys
        .iter()
        .filter(|k| k.retired_at == Some(UnixTime::from_secs(200)))
        .map(|k| k.kid.as_str())
        .collect();
    assert_eq!(retired, ["k1", "k2"]);

    assert_eq!(
        store
            .prune_signing_keys(UnixTime::from_secs(199))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .prune_signing_keys(UnixTime::from_secs(200))
            .await
            .unwrap(),
        2
    );
    let kept: Vec<_> = store
        .list_signing_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kept, ["k3", "k4"]);
}

async fn profiles_are_read_by_id_and_replaced_by_username(store: Arc<dyn Store>) {
    store.create_user(&person("u-1", "alice")).await.unwrap();
    assert_eq!(
        store.get_profile("u-1").await.unwrap(),
        Some(("alice".into(), Profile::default()))
    );
    let profile = Profile {
        name: Some("Alice Liddell".into()),
        email: Some("alice@example.com".into()),
        email_verified: true,
    };
    assert!(store.set_profile("alice", &profile).await.unwrap());
    assert!(!store.set_profile("bob", &profile).await.unwrap());
    assert_eq!(
        store.get_profile("u-1").await.unwrap(),
        Some(("alice".into(), profile))
    );
    assert_eq!(store.get_profile("u-2").await.unwrap(), None);
}

async fn a_session_knows_when_its_person_signed_in(store: Arc<dyn Store>) {
    store.create_user(&person("u-1", "alice")).await.unwrap();
    let hash = RawToken::generate(TokenKind::AuthorizationCode)
        .unwrap()
        .key();
    store
        .create_session(&Session {
            hash,
            user_id: "u-1".into(),
            created_at: UnixTime::from_secs(1000),
            expires_at: UnixTime::from_secs(2000),
        })
        .await
        .unwrap();
    let at = |now| store.session_signed_in_at(&hash, UnixTime::from_secs(now));
    assert_eq!(at(1500).await.unwrap(), Some(UnixTime::from_secs(1000)));
    assert_eq!(at(2000).await.unwrap(), None);
}

conformance!(client_oidc_settings_round_trip_and_go_with_their_client);

async fn client_oidc_settings_round_trip_and_go_with_their_client(store: Arc<dyn Store>) {
    let c = crate::client("rp", &["https://rp.example/cb"]);
    store.create_client(&c).await.unwrap();
    assert_eq!(store.get_client_oidc(c.id.as_str()).await.unwrap(), None);
    let settings = ClientOidc {
        id_token_signed_response_alg: Some("RS256".into()),
        post_logout_redirect_uris: vec![
            "https://rp.example/bye".into(),
            "https://rp.example/bye?x=1".into(),
        ],
    };
    store
        .put_client_oidc(c.id.as_str(), &settings)
        .await
        .unwrap();
    assert_eq!(
        store.get_client_oidc(c.id.as_str()).await.unwrap(),
        Some(settings.clone())
    );
    let replaced = ClientOidc::default();
    store
        .put_client_oidc(c.id.as_str(), &replaced)
        .await
        .unwrap();
    assert_eq!(
        store.get_client_oidc(c.id.as_str()).await.unwrap(),
        Some(replaced)
    );
    assert!(matches!(
        store.put_client_oidc("nobody", &settings).await,
        Err(StoreError::MissingReference)
    ));
    assert!(
        store
            .delete_client(c.id.as_str(), UnixTime::from_secs(2000))
            .await
            .unwrap()
    );
    assert_eq!(store.get_client_oidc(c.id.as_str()).await.unwrap(), None);
}
