//! The store conformance suite: the same assertions against SQLite and PostgreSQL, so the two
//! implementations cannot drift apart. PostgreSQL cases skip without a server, except in CI.

// A test crate: a failed unwrap is a failed test, which is what we want.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;

use tessera_core::client::{Client, ClientRegistration, register};
use tessera_core::client_metadata::{ClientIdUrl, client_from_document};
use tessera_core::clock::UnixTime;
use tessera_core::grant::AuthorizationCodeRecord;
use tessera_core::registration::{ClientMetadata, new_initial_access_token, register_client};
use tessera_core::resource::{Audience, register_resource};
use tessera_core::scope::Scope;
use tessera_core::token::{RawToken, TokenKind, TokenRecord};
use tessera_store::{Redemption, Store, StoreError, testing};

/// A fresh PostgreSQL database, or `None` (skip) without a server, except in CI.
async fn postgres_url() -> Option<String> {
    testing::postgres_test_database()
        .await
        .expect("PostgreSQL is required in CI")
}

async fn store(postgres: bool) -> Option<Arc<dyn Store>> {
    let url = if postgres {
        postgres_url().await?
    } else {
        testing::fresh_sqlite_url().unwrap().0
    };
    let store = tessera_store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    // Migrating twice is harmless: every node runs migrations at start.
    store.migrate().await.unwrap();
    Some(store)
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    if let Some(s) = crate::store(false).await { super::$name(s).await }
                }
                #[tokio::test]
                async fn postgres() {
                    if let Some(s) = crate::store(true).await { super::$name(s).await }
                }
            }
        )*
    };
}

/// Issue 28: admin tokens, pages, an operator's changes, active families, ending sessions.
mod admin;
/// Issue 28: the audit trail, read by filter and page, purged by age.
mod audit_events;
/// Issue 27: signing keys, profiles, a code's nonce and a session's sign-in time.
mod openid_connect;
/// Issue 26: revocation events, their order, window and wake-ups.
mod revocation_events;

conformance!(
    clients_round_trip,
    duplicate_client_is_a_conflict,
    tokens_round_trip_and_revoke_once,
    family_revocation_reaches_every_live_token,
    purge_removes_only_dead_tokens_in_batches,
    deleting_a_client_deletes_its_tokens,
    deleting_a_user_deletes_only_their_tokens,
    token_insert_is_all_or_nothing,
    concurrent_writes_commit_together_but_fail_alone,
    concurrent_rotations_have_one_winner,
    a_code_is_redeemed_once_with_its_tokens,
    concurrent_redemptions_have_one_winner,
    a_failed_redemption_leaves_the_code_unredeemed,
    missing_client_reference_is_reported,
    a_client_deleted_while_issuing_leaves_no_token,
    lookups_answer_the_latest_acknowledged_state,
    resources_are_registered_with_their_clients,
    self_registered_clients_are_found_updated_and_deleted_with_their_token,
    initial_access_tokens_live_until_they_expire_then_are_purged,
    document_clients_are_stored_then_refreshed_never_over_another_client,
);

fn client(name: &str, uris: &[&str]) -> Client {
    let mut c = register(
        &ClientRegistration {
            name: name.into(),
            redirect_uris: uris.iter().map(|s| s.to_string()).collect(),
            scope: "api read".into(),
            ..Default::default()
        },
        UnixTime::from_secs(1000),
    )
    .unwrap()
    .client;
    c.secret_hash = Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into());
    c
}

/// A person; the password hash is a well-formed Argon2id string that no test verifies.
fn person(id: &str, username: &str) -> tessera_core::user::User {
    tessera_core::user::User {
        id: id.into(),
        username: tessera_core::user::Username::parse(username).unwrap(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        created_at: UnixTime::from_secs(1000),
    }
}

fn token(
    client: &Client,
    kind: TokenKind,
    family: &str,
    expires_at: i64,
) -> (RawToken, TokenRecord) {
    let raw = RawToken::generate(kind).unwrap();
    let record = TokenRecord {
        hash: raw.key(),
        kind,
        client_id: client.id.clone(),
        subject: Some("user-1".into()),
        scope: Scope::parse("api").unwrap(),
        issued_at: UnixTime::from_secs(1000),
        expires_at: UnixTime::from_secs(expires_at),
        revoked_at: None,
        rotated_at: None,
        family_id: Some(family.into()),
        audience: Audience::stored("https://a.example/ https://b.example/api"),
        username: None,
    };
    (raw, record)
}

async fn clients_round_trip(store: Arc<dyn Store>) {
    let web = client(
        "web",
        &["https://a.example/cb", "http://127.0.0.1:5000/authorize"],
    );
    let m2m = client("m2m", &[]);
    store.create_client(&web).await.unwrap();
    store.create_client(&m2m).await.unwrap();
    assert_eq!(store.get_client(&web.id).await.unwrap(), Some(web.clone()));
    assert_eq!(store.get_client("nobody").await.unwrap(), None);
    let all = store.list_clients().await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all.contains(&m2m));
    assert!(
        store
            .delete_client(&m2m.id, UnixTime::from_secs(1500))
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_client(&m2m.id, UnixTime::from_secs(1500))
            .await
            .unwrap()
    );
    assert_eq!(store.list_clients().await.unwrap(), vec![web]);
}

/// A resource and its client are created together, the client knows its resource, a second
/// resource under the same identifier is a conflict that leaves no client behind, and deleting
/// the resource deletes its client.
async fn resources_are_registered_with_their_clients(store: Arc<dyn Store>) {
    let now = UnixTime::from_secs(1000);
    let mut api = register_resource("https://API.example", Some("API"), "api read", now).unwrap();
    api.client.secret_hash = Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into());
    store
        .create_resource(&api.resource, &api.client)
        .await
        .unwrap();
    assert_eq!(
        store.list_resources().await.unwrap(),
        [api.resource.clone()]
    );
    let client = store.get_client(&api.client.id).await.unwrap().unwrap();
    assert_eq!(
        client.resource.as_ref().unwrap().as_str(),
        "https://api.example/"
    );
    assert_eq!(client, api.client);

    let mut again = register_resource("https://api.example/", None, "", now).unwrap();
    again.client.secret_hash = api.client.secret_hash.clone();
    let err = store
        .create_resource(&again.resource, &again.client)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict), "{err:?}");
    assert_eq!(store.get_client(&again.client.id).await.unwrap(), None);
    assert_eq!(store.list_clients().await.unwrap().len(), 1);

    assert!(
        store
            .delete_resource(&api.resource.uri, UnixTime::from_secs(1500))
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_resource(&api.resource.uri, UnixTime::from_secs(1500))
            .await
            .unwrap()
    );
    assert!(store.list_resources().await.unwrap().is_empty());
    assert_eq!(store.get_client(&api.client.id).await.unwrap(), None);
}

async fn duplicate_client_is_a_conflict(store: Arc<dyn Store>) {
    let c = client("web", &[]);
    store.create_client(&c).await.unwrap();
    assert!(matches!(
        store.create_client(&c).await,
        Err(StoreError::Conflict)
    ));
}

async fn tokens_round_trip_and_revoke_once(store: Arc<dyn Store>) {
    let c = client("m2m", &[]);
    store.create_client(&c).await.unwrap();
    let (raw, record) = token(&c, TokenKind::Access, "f1", 5000);
    store
        .insert_tokens(std::slice::from_ref(&record))
        .await
        .unwrap();
    assert_eq!(
        store.find_token(&raw.key()).await.unwrap(),
        Some(record.clone())
    );
    assert!(
        store
            .revoke_token(&raw.key(), UnixTime::from_secs(2000))
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_token(&raw.key(), UnixTime::from_secs(3000))
            .await
            .unwrap(),
        "already revoked"
    );
    let found = store.find_token(&raw.key()).await.unwrap().unwrap();
    assert_eq!(
        found.revoked_at,
        Some(UnixTime::from_secs(2000)),
        "the first revocation time is kept"
    );
    assert!(!found.is_active(UnixTime::from_secs(2500)));
}

/// Lookups repeated on every read connection (SQLite keeps a snapshot per connection, and
/// across commits that only add tokens): each answers with every acknowledged write, the
/// issue of a token after the snapshot and the revocation of one found in it.
async fn lookups_answer_the_latest_acknowledged_state(store: Arc<dyn Store>) {
    // More than the read connections of any machine this runs on, round-robin.
    let on_every_reader = 2 * std::thread::available_parallelism().map_or(1, usize::from) + 2;
    let c = client("m2m", &[]);
    store.create_client(&c).await.unwrap();
    let mut issued = Vec::new();
    for round in 0..20 {
        let (raw, record) = token(&c, TokenKind::Access, "f", 5000);
        store
            .insert_tokens(std::slice::from_ref(&record))
            .await
            .unwrap();
        issued.push((raw, record));
        let (newest, _) = issued.last().unwrap();
        for _ in 0..on_every_reader {
            assert!(store.find_token(&newest.key()).await.unwrap().is_some());
        }
        // Every third round, revoke the oldest live token; it must read revoked at once.
        if round % 3 == 2 {
            let (oldest, record) = issued
                .iter_mut()
                .find(|(_, r)| r.revoked_at.is_none())
                .unwrap();
            assert!(
                store
                    .revoke_token(&oldest.key(), UnixTime::from_secs(1500))
                    .await
                    .unwrap()
            );
            record.revoked_at = Some(UnixTime::from_secs(1500));
        }
        for (raw, record) in &issued {
            for _ in 0..on_every_reader {
                let found = store.find_token(&raw.key()).await.unwrap().unwrap();
                assert_eq!(found.revoked_at, record.revoked_at);
            }
        }
    }
}

async fn family_revocation_reaches_every_live_token(store: Arc<dyn Store>) {
    let c = client("web", &["https://a.example/cb"]);
    store.create_client(&c).await.unwrap();
    let (a1, r1) = token(&c, TokenKind::Access, "fam", 5000);
    let (a2, r2) = token(&c, TokenKind::Refresh, "fam", 9000);
    let (other, r3) = token(&c, TokenKind::Access, "other", 5000);
    // A client_credentials token: no subject, no family.
    let (lone, mut r4) = token(&c, TokenKind::Access, "unused", 5000);
    r4.subject = None;
    r4.family_id = None;
    store.insert_tokens(&[r1, r2, r3, r4]).await.unwrap();
    assert_eq!(
        store
            .revoke_family("fam", UnixTime::from_secs(1500))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .revoke_family("fam", UnixTime::from_secs(1600))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .revoke_family("", UnixTime::from_secs(1600))
            .await
            .unwrap(),
        0
    );
    for (raw, revoked) in [(&a1, true), (&a2, true), (&other, false), (&lone, false)] {
        let found = store.find_token(&raw.key()).await.unwrap().unwrap();
        assert_eq!(found.revoked_at.is_some(), revoked);
    }
    let found = store.find_token(&lone.key()).await.unwrap().unwrap();
    assert_eq!((found.subject, found.family_id), (None, None));
}

async fn purge_removes_only_dead_tokens_in_batches(store: Arc<dyn Store>) {
    let c = client("m2m", &[]);
    store.create_client(&c).await.unwrap();
    let mut records = Vec::new();
    for i in 0..7 {
        records.push(token(&c, TokenKind::Access, "f", 1500 + i).1); // expire by 2000
    }
    let (live, live_record) = token(&c, TokenKind::Access, "f", 9000);
    let (revoked, revoked_record) = token(&c, TokenKind::Access, "g", 9000);
    records.push(live_record);
    records.push(revoked_record);
    store.insert_tokens(&records).await.unwrap();
    store
        .revoke_token(&revoked.key(), UnixTime::from_secs(1200))
        .await
        .unwrap();
    // 7 expired and 1 revoked, in batches of 3 of each kind: 3 expired and the revoked one,
    // 3 expired, the last expired one, then the caller stops.
    let mut batches = Vec::new();
    loop {
        let n = store
            .purge_expired(UnixTime::from_secs(2000), 3)
            .await
            .unwrap();
        batches.push(n);
        if n < 3 {
            break;
        }
    }
    assert_eq!(batches, vec![3, 3, 1]);
    assert_eq!(
        store
            .purge_expired(UnixTime::from_secs(2000), 3)
            .await
            .unwrap(),
        0
    );
    assert!(store.find_token(&live.key()).await.unwrap().is_some());
    assert!(store.find_token(&revoked.key()).await.unwrap().is_none());
}

async fn deleting_a_client_deletes_its_tokens(store: Arc<dyn Store>) {
    let c = client("m2m", &[]);
    store.create_client(&c).await.unwrap();
    let (raw, record) = token(&c, TokenKind::Access, "f", 9000);
    store.insert_tokens(&[record]).await.unwrap();
    store
        .delete_client(&c.id, UnixTime::from_secs(1500))
        .await
        .unwrap();
    assert_eq!(store.find_token(&raw.key()).await.unwrap(), None);
}

async fn deleting_a_user_deletes_only_their_tokens(store: Arc<dyn Store>) {
    let c = client("web", &[]);
    store.create_client(&c).await.unwrap();
    for (id, name) in [("user-1", "alice"), ("user-2", "bob")] {
        store.create_user(&person(id, name)).await.unwrap();
    }
    let (alices, alices_record) = token(&c, TokenKind::Access, "f1", 9000);
    let (bobs, mut bobs_record) = token(&c, TokenKind::Access, "f2", 9000);
    bobs_record.subject = Some("user-2".into());
    // A client_credentials token: no subject, no family.
    let (clients, mut clients_record) = token(&c, TokenKind::Access, "-", 9000);
    (clients_record.subject, clients_record.family_id) = (None, None);
    store
        .insert_tokens(&[alices_record, bobs_record, clients_record])
        .await
        .unwrap();

    assert!(
        store
            .delete_user("alice", UnixTime::from_secs(1500))
            .await
            .unwrap()
    );
    assert_eq!(store.find_token(&alices.key()).await.unwrap(), None);
    let bobs = store.find_token(&bobs.key()).await.unwrap().unwrap();
    assert_eq!(bobs.username.as_deref(), Some("bob"));
    let clients = store.find_token(&clients.key()).await.unwrap().unwrap();
    assert_eq!(clients.subject, None);
}

async fn token_insert_is_all_or_nothing(store: Arc<dyn Store>) {
    let c = client("m2m", &[]);
    store.create_client(&c).await.unwrap();
    let (first, r1) = token(&c, TokenKind::Access, "f", 9000);
    // The second record names a client that does not exist, so the whole insert must fail.
    let (_, mut r2) = token(&c, TokenKind::Refresh, "f", 9000);
    r2.client_id = "no-such-client".into();
    assert!(store.insert_tokens(&[r1, r2]).await.is_err());
    assert_eq!(store.find_token(&first.key()).await.unwrap(), None);
}

/// Many writes in flight at once (SQLite commits them as one batch): each acknowledged one is
/// readable, and one failing write (a duplicate) fails alone without undoing its neighbours.
async fn concurrent_writes_commit_together_but_fail_alone(store: Arc<dyn Store>) {
    let c = client("m2m", &[]);
    store.create_client(&c).await.unwrap();
    let (_, duplicate) = token(&c, TokenKind::Access, "dup", 9000);
    store
        .insert_tokens(std::slice::from_ref(&duplicate))
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let store = store.clone();
        let record = if i % 50 == 7 {
            duplicate.clone()
        } else {
            token(&c, TokenKind::Access, &format!("f{i}"), 9000).1
        };
        tasks.spawn(async move {
            let outcome = store.insert_tokens(std::slice::from_ref(&record)).await;
            (record, outcome)
        });
    }
    let (mut stored, mut conflicts) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        let (record, outcome) = joined.unwrap();
        match outcome {
            Ok(()) => {
                stored += 1;
                assert_eq!(store.find_token(&record.hash).await.unwrap(), Some(record));
            }
            Err(StoreError::Conflict) => {
                conflicts += 1;
                assert_eq!(record.hash, duplicate.hash);
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!((stored, conflicts), (196, 4));
}

/// A person and a code issued to them for `c`, stored.
async fn stored_code(store: &Arc<dyn Store>, c: &Client, family: &str) -> AuthorizationCodeRecord {
    let person = person(&format!("user-{family}"), &format!("person-{family}"));
    store.create_user(&person).await.unwrap();
    let code = AuthorizationCodeRecord {
        hash: RawToken::generate(TokenKind::AuthorizationCode)
            .unwrap()
            .key(),
        client_id: c.id.clone(),
        user_id: person.id,
        redirect_uri: "https://a.example/cb".into(),
        redirect_uri_given: true,
        scope: Scope::parse("api").unwrap(),
        code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
        issued_at: UnixTime::from_secs(1000),
        expires_at: UnixTime::from_secs(1060),
        redeemed_at: None,
        family_id: family.into(),
        audience: Audience::stored("https://a.example/"),
        nonce: Some(format!("nonce-{family}")),
        auth_time: Some(UnixTime::from_secs(990)),
    };
    store.insert_code(&code).await.unwrap();
    code
}

/// RFC 6749 §4.1.2: a code is used once. The first exchange stores its tokens and marks the
/// code; a second one is told the first one's family (to revoke it) and stores nothing.
async fn a_code_is_redeemed_once_with_its_tokens(store: Arc<dyn Store>) {
    let c = client("web", &["https://a.example/cb"]);
    store.create_client(&c).await.unwrap();
    let code = stored_code(&store, &c, "fam-1").await;
    assert_eq!(
        store.find_code(&code.hash).await.unwrap(),
        Some(code.clone())
    );
    let (access, first) = token(&c, TokenKind::Access, "fam-1", 9000);
    assert_eq!(
        store
            .redeem_code(&code.hash, UnixTime::from_secs(1010), &[first])
            .await
            .unwrap(),
        Redemption::Redeemed
    );
    let stored = store.find_token(&access.key()).await.unwrap().unwrap();
    assert_eq!(stored.family_id.as_deref(), Some("fam-1"));
    let redeemed = store.find_code(&code.hash).await.unwrap().unwrap();
    assert_eq!(redeemed.redeemed_at, Some(UnixTime::from_secs(1010)));

    let (again, second) = token(&c, TokenKind::Access, "fam-1", 9000);
    assert_eq!(
        store
            .redeem_code(&code.hash, UnixTime::from_secs(1020), &[second])
            .await
            .unwrap(),
        Redemption::AlreadyRedeemed {
            family_id: "fam-1".into()
        }
    );
    assert_eq!(store.find_token(&again.key()).await.unwrap(), None);
    let unknown = RawToken::generate(TokenKind::AuthorizationCode)
        .unwrap()
        .key();
    let (_, third) = token(&c, TokenKind::Access, "fam-1", 9000);
    assert_eq!(
        store
            .redeem_code(&unknown, UnixTime::from_secs(1030), &[third])
            .await
            .unwrap(),
        Redemption::NotFound
    );
}

/// Many exchanges of one code at once: exactly one wins, and only its token is stored.
async fn concurrent_redemptions_have_one_winner(store: Arc<dyn Store>) {
    let c = client("web", &["https://a.example/cb"]);
    store.create_client(&c).await.unwrap();
    let code = stored_code(&store, &c, "fam-2").await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..16 {
        let store = store.clone();
        let (raw, record) = token(&c, TokenKind::Access, "fam-2", 9000);
        tasks.spawn(async move {
            let outcome = store
                .redeem_code(
                    &code.hash,
                    UnixTime::from_secs(1010) + i,
                    std::slice::from_ref(&record),
                )
                .await
                .unwrap();
            let stored = store.find_token(&raw.key()).await.unwrap().is_some();
            (outcome, stored)
        });
    }
    let mut winners = 0;
    while let Some(joined) = tasks.join_next().await {
        let (outcome, stored) = joined.unwrap();
        match outcome {
            Redemption::Redeemed => {
                winners += 1;
                assert!(stored, "the winner's token is stored");
            }
            Redemption::AlreadyRedeemed { family_id } => {
                assert_eq!(family_id, "fam-2");
                assert!(!stored, "a loser's token is not stored");
            }
            Redemption::NotFound => panic!("the code was not found"),
        }
    }
    assert_eq!(winners, 1);
}

/// An exchange whose tokens name a client that does not exist stores nothing and leaves the
/// code unredeemed: the claim and the tokens are one write. The code then redeems normally,
/// with an access and a refresh token.
async fn a_failed_redemption_leaves_the_code_unredeemed(store: Arc<dyn Store>) {
    let c = client("web", &["https://a.example/cb"]);
    store.create_client(&c).await.unwrap();
    let code = stored_code(&store, &c, "fam-3").await;
    let ghost = client("ghost", &["https://a.example/cb"]);
    let (orphan, record) = token(&ghost, TokenKind::Access, "fam-3", 9000);
    let (_, sibling) = token(&c, TokenKind::Refresh, "fam-3", 9000);
    assert!(matches!(
        store
            .redeem_code(&code.hash, UnixTime::from_secs(1010), &[sibling, record])
            .await,
        Err(StoreError::MissingReference)
    ));
    assert_eq!(store.find_token(&orphan.key()).await.unwrap(), None);
    let unredeemed = store.find_code(&code.hash).await.unwrap().unwrap();
    assert_eq!(unredeemed.redeemed_at, None);

    let (access, first) = token(&c, TokenKind::Access, "fam-3", 9000);
    let (refresh, second) = token(&c, TokenKind::Refresh, "fam-3", 9000);
    assert_eq!(
        store
            .redeem_code(&code.hash, UnixTime::from_secs(1020), &[first, second])
            .await
            .unwrap(),
        Redemption::Redeemed
    );
    assert!(store.find_token(&access.key()).await.unwrap().is_some());
    assert!(store.find_token(&refresh.key()).await.unwrap().is_some());
    let redeemed = store.find_code(&code.hash).await.unwrap().unwrap();
    assert_eq!(redeemed.redeemed_at, Some(UnixTime::from_secs(1020)));
}

async fn concurrent_rotations_have_one_winner(store: Arc<dyn Store>) {
    let c = client("web", &["https://a.example/cb"]);
    store.create_client(&c).await.unwrap();
    let (refresh, record) = token(&c, TokenKind::Refresh, "fam", 9000);
    store.insert_tokens(&[record]).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let store = store.clone();
        let successor = token(&c, TokenKind::Refresh, "fam", 9000).1;
        let hash = refresh.key();
        tasks.spawn(async move {
            let won = store
                .rotate_refresh_token(
                    &hash,
                    UnixTime::from_secs(2000) + i,
                    std::slice::from_ref(&successor),
                )
                .await
                .unwrap();
            let found = store.find_token(&successor.hash).await.unwrap();
            // A loser's successor must not exist: nothing of a lost rotation is stored.
            assert_eq!(found.is_some(), won);
            won
        });
    }
    let mut winners = 0;
    while let Some(won) = tasks.join_next().await {
        winners += usize::from(won.unwrap());
    }
    assert_eq!(winners, 1);
    let old = store.find_token(&refresh.key()).await.unwrap().unwrap();
    assert!(old.rotated_at.is_some());
}

async fn missing_client_reference_is_reported(store: Arc<dyn Store>) {
    let c = client("gone", &[]);
    store.create_client(&c).await.unwrap();
    store
        .delete_client(&c.id, UnixTime::from_secs(1500))
        .await
        .unwrap();
    let (_, record) = token(&c, TokenKind::Access, "f", 9000);
    assert!(matches!(
        store.insert_tokens(&[record]).await,
        Err(StoreError::MissingReference)
    ));
}

/// Issuance racing with the client's deletion: every insert either lands before the
/// deletion (and is deleted with the client) or fails with `MissingReference`; no token of
/// a deleted client survives, whether inserted alone, in a batch, or by a rotation.
async fn a_client_deleted_while_issuing_leaves_no_token(store: Arc<dyn Store>) {
    for round in 0..6 {
        let c = client(&format!("racer-{round}"), &[]);
        store.create_client(&c).await.unwrap();
        let (refresh, record) = token(&c, TokenKind::Refresh, "fam", 9000);
        store.insert_tokens(&[record]).await.unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        let mut hashes = Vec::new();
        for i in 0..16 {
            let (raw, record) = token(&c, TokenKind::Access, "fam", 9000);
            hashes.push(raw.key());
            let store = store.clone();
            if i == 8 {
                let (store, id) = (store.clone(), c.id.clone());
                // As an operator would: again, if the database rolled it back.
                tasks.spawn(async move {
                    loop {
                        match store.delete_client(&id, UnixTime::from_secs(1500)).await {
                            Err(e) if e.is_unavailable() => continue,
                            done => return done.map(|_| ()),
                        }
                    }
                });
            }
            if i == 12 {
                let hash = refresh.key();
                tasks.spawn(async move {
                    store
                        .rotate_refresh_token(
                            &hash,
                            UnixTime::from_secs(2000),
                            std::slice::from_ref(&record),
                        )
                        .await
                        .map(|_| ())
                });
            } else {
                tasks.spawn(async move { store.insert_tokens(&[record]).await });
            }
        }
        while let Some(outcome) = tasks.join_next().await {
            match outcome.unwrap() {
                Ok(()) | Err(StoreError::MissingReference) => {}
                // A rotation and the deletion can deadlock on PostgreSQL (each holds a row
                // the other needs); the database rolls one back, which is retryable.
                Err(e) if e.is_unavailable() => {}
                Err(e) => panic!("round {round}: unexpected error {e}"),
            }
        }
        hashes.push(refresh.key());
        for hash in &hashes {
            assert_eq!(store.find_token(hash).await.unwrap(), None, "round {round}");
        }
    }
}

/// Callers that give up half-way (an HTTP client hanging up) must not leave a pooled
/// PostgreSQL connection inside a transaction: sqlx 0.9.0's `Pool::begin` does so when
/// cancelled during `BEGIN`, after which later writes on that connection are never
/// committed. Hundreds of transactional calls are cut short at varying points; afterwards no
/// session of the database may sit "idle in transaction", and new writes must be committed
/// (seen from another connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cancelled_callers_leave_no_open_transaction() {
    use sqlx::Connection;
    let Some(url) = postgres_url().await else {
        return;
    };
    let store = tessera_store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let c = client("web", &["https://a.example/cb"]);
    store.create_client(&c).await.unwrap();

    for round in 0..300u64 {
        let (refresh, record) = token(&c, TokenKind::Refresh, "fam", 9000);
        store.insert_tokens(&[record]).await.unwrap();
        let successor = token(&c, TokenKind::Refresh, "fam", 9000).1;
        // Cut short after 0..300 turns of the scheduler (timers are too coarse): before,
        // during or after BEGIN's round trip.
        let give_up = async {
            for _ in 0..round {
                tokio::task::yield_now().await;
            }
        };
        let hash = refresh.key();
        tokio::select! {
            biased;
            _ = store.rotate_refresh_token(&hash, UnixTime::from_secs(2000), std::slice::from_ref(&successor)) => {}
            () = give_up => {}
        }
    }

    let mut observer = sqlx::PgConnection::connect(&url).await.unwrap();
    let open_transactions = || {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND state LIKE 'idle in transaction%'",
        )
    };
    // Detached work finishes by itself; give it a moment, then look.
    let mut open = -1;
    for _ in 0..50 {
        open = open_transactions().fetch_one(&mut observer).await.unwrap();
        if open == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(open, 0, "sessions left idle in a transaction");

    // Every pooled connection still commits: write through all of them, read from outside.
    let mut written = Vec::new();
    for i in 0..40 {
        let (raw, record) = token(&c, TokenKind::Access, &format!("after{i}"), 9000);
        store.insert_tokens(&[record]).await.unwrap();
        written.push(raw.key());
    }
    for hash in written {
        let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM tokens WHERE hash = $1")
            .bind(hash.as_bytes().as_slice())
            .fetch_one(&mut observer)
            .await
            .unwrap();
        assert_eq!(
            seen, 1,
            "an acknowledged write is not visible to another session"
        );
    }
}

/// Tokens without a subject (client_credentials) take no entry in PostgreSQL's subject index
/// (migration 0005), and deleting a user's tokens still finds them through it: `subject = x`
/// must imply the index's `subject IS NOT NULL`, or the planner falls back to reading the
/// whole table.
#[tokio::test]
async fn postgres_subject_index_is_partial_and_serves_user_deletion() {
    use sqlx::Connection;
    let Some(url) = postgres_url().await else {
        return;
    };
    let store = tessera_store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let definition: String = sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes WHERE tablename = 'tokens' AND indexname = 'tokens_subject'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(
        definition.ends_with("WHERE (subject IS NOT NULL)"),
        "{definition}"
    );
    // A small table is read whole whatever the indexes; forbid that to see what is possible.
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut conn)
        .await
        .unwrap();
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN DELETE FROM tokens WHERE subject = (SELECT id FROM users WHERE username = 'alice')",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(
        plan.iter().any(|line| line.contains("tokens_subject")),
        "{plan:#?}"
    );
}

async fn self_registered_clients_are_found_updated_and_deleted_with_their_token(
    store: Arc<dyn Store>,
) {
    let metadata = ClientMetadata {
        client_name: Some("Self".into()),
        redirect_uris: Some(vec!["https://self.example/cb".into()]),
        ..Default::default()
    };
    let offered = Scope::parse("api read").unwrap();
    let mut new = register_client(&metadata, &offered, UnixTime::from_secs(1000)).unwrap();
    new.registration.client.secret_hash =
        Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into());
    let registration = new.registration;
    let id = registration.client.id.to_string();
    store.create_registration(&registration).await.unwrap();
    assert_eq!(
        store.find_registration(&id).await.unwrap(),
        Some(registration.clone())
    );
    let read = store.get_client(&id).await.unwrap().unwrap();
    assert!(read.self_registered);
    assert_eq!(read, registration.client);
    // An operator's client is not a registration, and cannot be updated as one.
    let operated = client("operated", &["https://op.example/cb"]);
    store.create_client(&operated).await.unwrap();
    assert!(
        !store
            .get_client(&operated.id)
            .await
            .unwrap()
            .unwrap()
            .self_registered
    );
    assert_eq!(store.find_registration(&operated.id).await.unwrap(), None);
    assert!(!store.update_registration(&operated).await.unwrap());
    assert_eq!(store.find_registration("nobody").await.unwrap(), None);
    assert_eq!(store.find_registration("a\0b").await.unwrap(), None);

    let mut changed = registration.client.clone();
    changed.name = "Renamed".into();
    changed.scope = Scope::parse("read").unwrap();
    changed.redirect_uris = vec![tessera_core::client::RedirectUri::stored(
        "https://self.example/2",
    )];
    assert!(store.update_registration(&changed).await.unwrap());
    let found = store.find_registration(&id).await.unwrap().unwrap();
    assert_eq!(found.client, changed);
    assert_eq!(found.access_token, registration.access_token);
    assert_eq!(found.client.secret_hash, registration.client.secret_hash);

    assert!(
        store
            .delete_client(&id, UnixTime::from_secs(1500))
            .await
            .unwrap()
    );
    assert_eq!(store.find_registration(&id).await.unwrap(), None);
}

async fn document_clients_are_stored_then_refreshed_never_over_another_client(
    store: Arc<dyn Store>,
) {
    let url = "https://app.example/client.json";
    let document = |name: &str, uri: &str| {
        format!(r#"{{"client_id":"{url}","client_name":"{name}","redirect_uris":["{uri}"]}}"#)
    };
    let parsed = ClientIdUrl::parse(url).unwrap();
    let offered = Scope::parse("api read").unwrap();
    let first = client_from_document(
        &parsed,
        document("App", "https://app.example/cb").as_bytes(),
        &offered,
        UnixTime::from_secs(1000),
    )
    .unwrap();
    assert!(store.put_document_client(&first).await.unwrap());
    assert_eq!(store.get_client(url).await.unwrap().as_ref(), Some(&first));
    assert_eq!(
        store.find_registration(url).await.unwrap(),
        None,
        "no registration access token manages it"
    );

    // The document changed: the row follows it and keeps its creation time.
    let second = client_from_document(
        &parsed,
        document("App 2", "https://app.example/cb2").as_bytes(),
        &offered,
        UnixTime::from_secs(2000),
    )
    .unwrap();
    assert!(store.put_document_client(&second).await.unwrap());
    let read = store.get_client(url).await.unwrap().unwrap();
    assert_eq!(read.name, "App 2 (app.example)");
    assert!(
        read.registered_redirect_uri("https://app.example/cb2")
            .is_some()
    );
    assert!(
        read.registered_redirect_uri("https://app.example/cb")
            .is_none()
    );
    assert_eq!(read.created_at, UnixTime::from_secs(1000));
    assert!(read.self_registered && read.is_public() && !read.skip_consent);

    // A client registered otherwise is never replaced by a document's.
    let operated = client("operated", &["https://op.example/cb"]);
    store.create_client(&operated).await.unwrap();
    let mut posing = second.clone();
    posing.id = operated.id.clone();
    assert!(!store.put_document_client(&posing).await.unwrap());
    assert_eq!(
        store.get_client(&operated.id).await.unwrap().as_ref(),
        Some(&operated)
    );
    assert!(
        store
            .delete_client(url, UnixTime::from_secs(1500))
            .await
            .unwrap()
    );
}

async fn initial_access_tokens_live_until_they_expire_then_are_purged(store: Arc<dyn Store>) {
    let (token, record) = new_initial_access_token(UnixTime::from_secs(1000), 600).unwrap();
    assert_eq!(record.expires_at, UnixTime::from_secs(1600));
    store.create_initial_access_token(&record).await.unwrap();
    let key = token.key();
    assert!(
        store
            .initial_access_token_is_live(&key, UnixTime::from_secs(1599))
            .await
            .unwrap()
    );
    assert!(
        !store
            .initial_access_token_is_live(&key, UnixTime::from_secs(1600))
            .await
            .unwrap()
    );
    let other = tessera_core::token::TokenKey::of("tsi_unknown");
    assert!(
        !store
            .initial_access_token_is_live(&other, UnixTime::from_secs(1000))
            .await
            .unwrap()
    );
    // Another, longer-lived token survives the purge of the first.
    let (_, lasting) = new_initial_access_token(UnixTime::from_secs(1000), 6000).unwrap();
    store.create_initial_access_token(&lasting).await.unwrap();
    assert!(matches!(
        store.create_initial_access_token(&lasting).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        store
            .purge_expired(UnixTime::from_secs(1700), 100)
            .await
            .unwrap(),
        1
    );
    assert!(
        !store
            .initial_access_token_is_live(&key, UnixTime::from_secs(1000))
            .await
            .unwrap()
    );
    assert!(
        store
            .initial_access_token_is_live(&lasting.hash, UnixTime::from_secs(1700))
            .await
            .unwrap()
    );
}
