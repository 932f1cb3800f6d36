//! Issue 28's storage: admin tokens, pages of clients, resources and users in key order,
//! an operator's changes, active token families of a user or a client, ending sessions.

use std::sync::Arc;

use tessera_core::admin::new_admin_token;
use tessera_core::clock::UnixTime;
use tessera_core::oidc::Profile;
use tessera_core::resource::register_resource;
use tessera_core::scope::Scope;
use tessera_core::token::{RawToken, TokenKind};
use tessera_store::{FamilyOwner, Session, Store, StoreError};

use crate::{client, person, token};

conformance!(
    admin_tokens_are_found_by_key_listed_and_revoked_once,
    clients_resources_and_users_come_in_pages_by_key,
    operators_change_clients_and_resources,
    active_families_of_a_user_or_a_client,
    ending_a_users_sessions_leaves_their_tokens,
);

async fn admin_tokens_are_found_by_key_listed_and_revoked_once(store: Arc<dyn Store>) {
    let now = UnixTime::from_secs(1000);
    let (token, record) = new_admin_token(now, Some(60)).unwrap();
    let (_, forever) = new_admin_token(UnixTime::from_secs(1001), None).unwrap();
    store.create_admin_token(&record).await.unwrap();
    store.create_admin_token(&forever).await.unwrap();
    assert!(matches!(
        store.create_admin_token(&record).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        store.find_admin_token(&token.key()).await.unwrap(),
        Some(record.clone())
    );
    let other = RawToken::generate(TokenKind::Access).unwrap();
    assert_eq!(store.find_admin_token(&other.key()).await.unwrap(), None);
    assert_eq!(
        store.list_admin_tokens().await.unwrap(),
        vec![record.clone(), forever.clone()]
    );
    let later = UnixTime::from_secs(1010);
    assert!(store.revoke_admin_token(&record.id, later).await.unwrap());
    assert!(!store.revoke_admin_token(&record.id, later).await.unwrap());
    assert!(!store.revoke_admin_token("nobody", later).await.unwrap());
    assert!(!store.revoke_admin_token("nul\0", later).await.unwrap());
    let found = store.find_admin_token(&token.key()).await.unwrap().unwrap();
    assert_eq!(found.revoked_at, Some(later));
    assert!(!found.is_live(later));
}

async fn clients_resources_and_users_come_in_pages_by_key(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for n in 0..5 {
        let c = client(&format!("c{n}"), &[]);
        store.create_client(&c).await.unwrap();
        ids.push(c.id.to_string());
    }
    ids.sort();
    let first = store.clients_after("", 2).await.unwrap();
    let first_ids: Vec<_> = first.iter().map(|c| c.id.to_string()).collect();
    assert_eq!(first_ids, ids[..2]);
    let rest = store.clients_after(&ids[1], 10).await.unwrap();
    let rest_ids: Vec<_> = rest.iter().map(|c| c.id.to_string()).collect();
    assert_eq!(rest_ids, ids[2..]);
    assert!(store.clients_after(&ids[4], 10).await.unwrap().is_empty());
    assert!(store.clients_after("\0", 10).await.unwrap().is_empty());

    let now = UnixTime::from_secs(1000);
    for uri in ["https://b.example/", "https://a.example/"] {
        let mut r = register_resource(uri, None, "api", now).unwrap();
        r.client.secret_hash = Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into());
        store.create_resource(&r.resource, &r.client).await.unwrap();
    }
    let page = store.resources_after("", 1).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].uri.as_str(), "https://a.example/");
    let next = store
        .resources_after(page[0].uri.as_str(), 5)
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].uri.as_str(), "https://b.example/");

    for (id, name) in [("u-b", "bob"), ("u-a", "alice"), ("u-c", "carol")] {
        store.create_user(&person(id, name)).await.unwrap();
    }
    let profile = Profile {
        name: Some("Alice".into()),
        email: None,
        email_verified: false,
    };
    store.set_profile("alice", &profile).await.unwrap();
    let users = store.users_after("", 2).await.unwrap();
    let names: Vec<_> = users.iter().map(|(u, _)| u.username.as_str()).collect();
    assert_eq!(names, ["alice", "bob"]);
    assert_eq!(users[0].1, profile);
    assert_eq!(users[1].1, Profile::default());
    let users = store.users_after("bob", 2).await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].0.username.as_str(), "carol");
}

async fn operators_change_clients_and_resources(store: Arc<dyn Store>) {
    let mut web = client("web", &["https://a.example/cb"]);
    store.create_client(&web).await.unwrap();
    web.name = "Web app".into();
    web.scope = Scope::parse("read").unwrap();
    web.skip_consent = true;
    web.redirect_uris = vec![tessera_core::client::RedirectUri::stored(
        "https://b.example/cb",
    )];
    assert!(store.update_client(&web).await.unwrap());
    assert_eq!(store.get_client(&web.id).await.unwrap(), Some(web.clone()));
    let ghost = client("ghost", &[]);
    assert!(!store.update_client(&ghost).await.unwrap());

    let now = UnixTime::from_secs(1000);
    let mut api = register_resource("https://api.example", None, "api", now).unwrap();
    api.client.secret_hash = Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into());
    store
        .create_resource(&api.resource, &api.client)
        .await
        .unwrap();
    let mut resource = api.resource.clone();
    assert_eq!(
        store.get_resource(&resource.uri).await.unwrap(),
        Some(resource.clone())
    );
    resource.name = "The API".into();
    resource.scope = Scope::parse("api write").unwrap();
    assert!(store.update_resource(&resource).await.unwrap());
    assert_eq!(
        store.get_resource(&resource.uri).await.unwrap(),
        Some(resource.clone())
    );
    let other = tessera_core::resource::ResourceUri::parse("https://other.example").unwrap();
    assert_eq!(store.get_resource(&other).await.unwrap(), None);
}

async fn active_families_of_a_user_or_a_client(store: Arc<dyn Store>) {
    let web = client("web", &["https://a.example/cb"]);
    store.create_client(&web).await.unwrap();
    store.create_user(&person("user-1", "alice")).await.unwrap();
    let (_, a1) = token(&web, TokenKind::Access, "fam-a", 2000);
    let (_, a2) = token(&web, TokenKind::Refresh, "fam-a", 5000);
    let (_, b1) = token(&web, TokenKind::Refresh, "fam-b", 3000);
    let (_, expired) = token(&web, TokenKind::Access, "fam-c", 1100);
    let (_, mut revoked) = token(&web, TokenKind::Refresh, "fam-d", 3000);
    revoked.revoked_at = Some(UnixTime::from_secs(1001));
    let mut m2m = token(&web, TokenKind::Access, "unused", 3000).1;
    m2m.family_id = None;
    m2m.subject = None;
    store
        .insert_tokens(&[a1, a2, b1, expired, revoked, m2m])
        .await
        .unwrap();
    let now = UnixTime::from_secs(1200);
    let user = FamilyOwner::User {
        username: "alice".into(),
    };
    let families = store.active_families(&user, now, "", 10).await.unwrap();
    let ids: Vec<_> = families.iter().map(|f| f.family_id.as_str()).collect();
    assert_eq!(ids, ["fam-a", "fam-b"]);
    let a = &families[0];
    assert_eq!(a.tokens, 2);
    assert_eq!(a.client_id, web.id);
    assert_eq!(a.subject.as_deref(), Some("user-1"));
    assert_eq!(a.issued_at, UnixTime::from_secs(1000));
    assert_eq!(a.expires_at, UnixTime::from_secs(5000));
    let page = store
        .active_families(&user, now, "fam-a", 10)
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    let of_client = FamilyOwner::Client {
        client_id: web.id.to_string(),
    };
    let families = store.active_families(&of_client, now, "", 1).await.unwrap();
    assert_eq!(families.len(), 1);
    assert_eq!(families[0].family_id.as_str(), "fam-a");
    let nobody = FamilyOwner::User {
        username: "nobody".into(),
    };
    assert!(
        store
            .active_families(&nobody, now, "", 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn ending_a_users_sessions_leaves_their_tokens(store: Arc<dyn Store>) {
    let web = client("web", &["https://a.example/cb"]);
    store.create_client(&web).await.unwrap();
    store.create_user(&person("user-1", "alice")).await.unwrap();
    let (raw, access) = token(&web, TokenKind::Access, "fam-a", 5000);
    store.insert_tokens(&[access]).await.unwrap();
    let session_id = RawToken::generate(TokenKind::Access).unwrap();
    let session = Session {
        hash: session_id.key(),
        user_id: "user-1".into(),
        created_at: UnixTime::from_secs(1000),
        expires_at: UnixTime::from_secs(9000),
    };
    store.create_session(&session).await.unwrap();
    let now = UnixTime::from_secs(1100);
    assert!(
        store
            .find_session_user(&session.hash, now)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(store.end_user_sessions("alice").await.unwrap(), 1);
    assert_eq!(store.end_user_sessions("alice").await.unwrap(), 0);
    assert_eq!(store.end_user_sessions("nobody").await.unwrap(), 0);
    assert!(
        store
            .find_session_user(&session.hash, now)
            .await
            .unwrap()
            .is_none()
    );
    let found = store.find_token(&raw.key()).await.unwrap().unwrap();
    assert!(found.is_active(now));
}
