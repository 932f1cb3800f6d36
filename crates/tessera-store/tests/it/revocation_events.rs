//! Issue 26's revocation events: every way a live access token ends appends one event, with
//! its key and audience, in one order that readers can page through and resume; old events
//! are purged behind a horizon; subscribers are woken.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tessera_core::client::Client;
use tessera_core::clock::UnixTime;
use tessera_core::resource::{Audience, register_resource};
use tessera_core::token::{RawToken, TokenKey, TokenKind, TokenRecord};
use tessera_store::{RevocationEvent, RevocationWindow, Store};

use crate::{client, person, token};

const NOW: UnixTime = UnixTime::from_secs(1500);
const AUDIENCE: &str = "https://a.example/ https://b.example/api";

conformance!(
    revoking_an_access_token_appends_its_event_once,
    revoking_a_family_appends_its_live_access_tokens,
    dead_tokens_and_refresh_tokens_append_nothing,
    a_password_change_appends_the_users_access_tokens,
    revoking_a_users_tokens_appends_their_events_and_counts_them,
    revoking_a_clients_tokens_appends_their_events_and_counts_them,
    deleting_a_user_appends_their_live_access_tokens,
    deleting_a_client_appends_its_live_access_tokens,
    deleting_a_resource_appends_the_live_access_tokens_of_its_client,
    events_are_in_order_and_paged_after_a_number,
    purging_moves_the_horizon_and_numbers_go_on,
    a_subscriber_is_woken_by_a_revocation,
    concurrent_revocations_never_commit_behind_a_reader,
);

/// The same database opened twice, as two nodes (or a node and the command line) would.
macro_rules! two_stores {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    if let Some((a, b)) = super::two_stores(false).await {
                        super::$name(a, b).await
                    }
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some((a, b)) = super::two_stores(true).await {
                        super::$name(a, b).await
                    }
                }
            }
        )*
    };
}

two_stores!(
    another_store_on_the_database_is_woken,
    concurrent_nodes_append_in_one_order
);

async fn two_stores(postgres: bool) -> Option<(Arc<dyn Store>, Arc<dyn Store>)> {
    let url = if postgres {
        crate::postgres_url().await?
    } else {
        tessera_store::testing::fresh_sqlite_url().unwrap().0
    };
    let a = tessera_store::connect(&url).await.unwrap();
    a.migrate().await.unwrap();
    let b = tessera_store::connect(&url).await.unwrap();
    b.migrate().await.unwrap();
    Some((a, b))
}

/// A live access token of `c` for user-1, in family `family`, for [`AUDIENCE`].
fn access(c: &Client, family: &str) -> (RawToken, TokenRecord) {
    token(c, TokenKind::Access, family, 9000)
}

async fn stored(store: &Arc<dyn Store>, records: &[TokenRecord]) {
    store.insert_tokens(records).await.unwrap();
}

/// Every event kept, in order.
async fn all_events(store: &Arc<dyn Store>) -> Vec<RevocationEvent> {
    store.revocation_events_after(0, 10_000).await.unwrap()
}

/// The keys the events after `after` name, in order, each checked for the test's audience
/// and time.
async fn keys_after(store: &Arc<dyn Store>, after: u64) -> Vec<TokenKey> {
    let events = store.revocation_events_after(after, 10_000).await.unwrap();
    for e in &events {
        assert_eq!(e.audience, Audience::stored(AUDIENCE), "{e:?}");
        assert_eq!(e.created_at, NOW);
        assert!(e.seq > after);
    }
    events.into_iter().map(|e| e.token_key).collect()
}

fn set(keys: impl IntoIterator<Item = TokenKey>) -> BTreeSet<[u8; 32]> {
    keys.into_iter().map(|k| *k.as_bytes()).collect()
}

async fn latest(store: &Arc<dyn Store>) -> u64 {
    store.revocation_window().await.unwrap().latest
}

async fn revoking_an_access_token_appends_its_event_once(store: Arc<dyn Store>) {
    assert_eq!(
        store.revocation_window().await.unwrap(),
        RevocationWindow::default()
    );
    let c = client("web", &[]);
    store.create_client(&c).await.unwrap();
    let (a, record) = access(&c, "f");
    stored(&store, &[record]).await;
    assert!(store.revoke_token(&a.key(), NOW).await.unwrap());
    assert_eq!(keys_after(&store, 0).await, [a.key()]);
    assert!(!store.revoke_token(&a.key(), NOW + 1).await.unwrap());
    assert_eq!(all_events(&store).await.len(), 1, "revoked once, one event");
    let window = store.revocation_window().await.unwrap();
    assert_eq!(window.horizon, 0);
    assert_eq!(window.latest, all_events(&store).await[0].seq);
}

async fn revoking_a_family_appends_its_live_access_tokens(store: Arc<dyn Store>) {
    let c = client("web", &[]);
    store.create_client(&c).await.unwrap();
    let (a1, r1) = access(&c, "fam");
    let (a2, r2) = access(&c, "fam");
    let (_refresh, r3) = token(&c, TokenKind::Refresh, "fam", 9000);
    let (other, r4) = access(&c, "other");
    stored(&store, &[r1, r2, r3, r4]).await;
    assert_eq!(store.revoke_family("fam", NOW).await.unwrap(), 3);
    assert_eq!(set(keys_after(&store, 0).await), set([a1.key(), a2.key()]));
    assert!(store.find_token(&other.key()).await.unwrap().is_some());
}

/// Expired and already revoked access tokens are refused by every guard already, and a
/// refresh token is never presented to one: none of them gets an event.
async fn dead_tokens_and_refresh_tokens_append_nothing(store: Arc<dyn Store>) {
    let c = client("web", &[]);
    store.create_client(&c).await.unwrap();
    let (_, expired) = token(&c, TokenKind::Access, "fam", NOW.as_secs());
    let (revoked, revoked_record) = access(&c, "fam");
    let (refresh, refresh_record) = token(&c, TokenKind::Refresh, "lone", 9000);
    stored(&store, &[expired, revoked_record, refresh_record]).await;
    assert!(
        store
            .revoke_token(&revoked.key(), NOW + (-100))
            .await
            .unwrap()
    );
    let before = all_events(&store).await.len();
    assert_eq!(before, 1);
    assert_eq!(store.revoke_family("fam", NOW).await.unwrap(), 1);
    assert!(store.revoke_token(&refresh.key(), NOW).await.unwrap());
    assert_eq!(all_events(&store).await.len(), before);
    // Deleting the client ends the same dead tokens: still nothing.
    assert!(store.delete_client(&c.id, NOW).await.unwrap());
    assert_eq!(all_events(&store).await.len(), before);
}

/// Two users' tokens and a client_credentials token (no subject); only the first user's
/// access tokens are theirs.
async fn tokens_of_two_users(store: &Arc<dyn Store>) -> (Client, Vec<TokenKey>, Vec<TokenKey>) {
    let c = client("web", &[]);
    store.create_client(&c).await.unwrap();
    for (id, name) in [("user-1", "alice"), ("user-2", "bob")] {
        store.create_user(&person(id, name)).await.unwrap();
    }
    let (a1, r1) = access(&c, "f1");
    let (a2, r2) = access(&c, "f2");
    let (_, r3) = token(&c, TokenKind::Refresh, "f1", 9000);
    let (b1, mut r4) = access(&c, "f3");
    r4.subject = Some("user-2".into());
    let (m, mut r5) = access(&c, "-");
    (r5.subject, r5.family_id) = (None, None);
    stored(store, &[r1, r2, r3, r4, r5]).await;
    (c, vec![a1.key(), a2.key()], vec![b1.key(), m.key()])
}

async fn a_password_change_appends_the_users_access_tokens(store: Arc<dyn Store>) {
    let (_, alices, _) = tokens_of_two_users(&store).await;
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$bmV3$aGFzaA";
    assert!(store.set_password("alice", hash, NOW).await.unwrap());
    assert_eq!(set(keys_after(&store, 0).await), set(alices));
    assert!(!store.set_password("nobody", hash, NOW).await.unwrap());
}

async fn revoking_a_users_tokens_appends_their_events_and_counts_them(store: Arc<dyn Store>) {
    let (_, alices, _) = tokens_of_two_users(&store).await;
    assert_eq!(
        store.revoke_user_tokens("alice", NOW).await.unwrap(),
        Some(3)
    );
    assert_eq!(set(keys_after(&store, 0).await), set(alices));
    let mark = latest(&store).await;
    assert_eq!(
        store.revoke_user_tokens("alice", NOW).await.unwrap(),
        Some(0)
    );
    assert_eq!(store.revoke_user_tokens("nobody", NOW).await.unwrap(), None);
    assert_eq!(latest(&store).await, mark);
}

async fn revoking_a_clients_tokens_appends_their_events_and_counts_them(store: Arc<dyn Store>) {
    let (c, alices, others) = tokens_of_two_users(&store).await;
    let bystander = client("other", &[]);
    store.create_client(&bystander).await.unwrap();
    let (untouched, record) = access(&bystander, "f9");
    stored(&store, &[record]).await;
    assert_eq!(
        store.revoke_client_tokens(&c.id, NOW).await.unwrap(),
        Some(5)
    );
    assert_eq!(
        set(keys_after(&store, 0).await),
        set(alices.into_iter().chain(others))
    );
    assert_eq!(
        store.revoke_client_tokens(&c.id, NOW).await.unwrap(),
        Some(0)
    );
    assert_eq!(
        store.revoke_client_tokens("nobody", NOW).await.unwrap(),
        None
    );
    let found = store.find_token(&untouched.key()).await.unwrap().unwrap();
    assert_eq!(found.revoked_at, None);
}

async fn deleting_a_user_appends_their_live_access_tokens(store: Arc<dyn Store>) {
    let (_, alices, _) = tokens_of_two_users(&store).await;
    assert!(store.delete_user("alice", NOW).await.unwrap());
    assert_eq!(set(keys_after(&store, 0).await), set(alices));
    assert!(!store.delete_user("alice", NOW).await.unwrap());
}

async fn deleting_a_client_appends_its_live_access_tokens(store: Arc<dyn Store>) {
    let (c, alices, others) = tokens_of_two_users(&store).await;
    assert!(store.delete_client(&c.id, NOW).await.unwrap());
    assert_eq!(
        set(keys_after(&store, 0).await),
        set(alices.into_iter().chain(others))
    );
}

/// A resource server's client has no grant of its own, but whatever tokens it holds end
/// with it, with their events.
async fn deleting_a_resource_appends_the_live_access_tokens_of_its_client(store: Arc<dyn Store>) {
    let mut api = register_resource("https://api.example", None, "api", NOW + (-500)).unwrap();
    api.client.secret_hash = Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into());
    store
        .create_resource(&api.resource, &api.client)
        .await
        .unwrap();
    let (a, mut record) = access(&api.client, "-");
    (record.subject, record.family_id) = (None, None);
    stored(&store, &[record]).await;
    assert!(store.delete_resource(&api.resource.uri, NOW).await.unwrap());
    assert_eq!(keys_after(&store, 0).await, [a.key()]);
}

async fn events_are_in_order_and_paged_after_a_number(store: Arc<dyn Store>) {
    let c = client("web", &[]);
    store.create_client(&c).await.unwrap();
    let mut revoked = Vec::new();
    for i in 0..7 {
        let (a, record) = access(&c, &format!("f{i}"));
        stored(&store, &[record]).await;
        assert!(store.revoke_token(&a.key(), NOW).await.unwrap());
        revoked.push(a.key());
    }
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = store.revocation_events_after(after, 3).await.unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        after = last.seq;
        paged.extend(page);
    }
    assert!(paged.windows(2).all(|w| w[0].seq < w[1].seq), "{paged:?}");
    let keys: Vec<TokenKey> = paged.iter().map(|e| e.token_key).collect();
    assert_eq!(keys, revoked, "in the order of the revocations");
    assert_eq!(latest(&store).await, after);
    let from_third = store
        .revocation_events_after(paged[2].seq, 100)
        .await
        .unwrap();
    assert_eq!(from_third, paged[3..]);
}

async fn purging_moves_the_horizon_and_numbers_go_on(store: Arc<dyn Store>) {
    let c = client("web", &[]);
    store.create_client(&c).await.unwrap();
    let revoke_at = |at: i64| {
        let store = store.clone();
        let (a, record) = access(&c, "f");
        async move {
            stored(&store, &[record]).await;
            assert!(
                store
                    .revoke_token(&a.key(), UnixTime::from_secs(at))
                    .await
                    .unwrap()
            );
        }
    };
    for at in [1500, 1600, 1700] {
        revoke_at(at).await;
    }
    let events = all_events(&store).await;
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        store
            .purge_revocation_events(UnixTime::from_secs(1650), 1)
            .await
            .unwrap(),
        1
    );
    let window = store.revocation_window().await.unwrap();
    assert_eq!((window.horizon, window.latest), (seqs[0], seqs[2]));
    assert!(!window.can_resume_after(0), "the first event is gone");
    assert!(window.can_resume_after(seqs[0]));
    assert!(!window.can_resume_after(seqs[2] + 1), "ahead of the store");
    assert_eq!(
        store
            .purge_revocation_events(UnixTime::from_secs(1650), 10)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .purge_revocation_events(UnixTime::from_secs(1650), 10)
            .await
            .unwrap(),
        0
    );
    assert_eq!(all_events(&store).await, events[2..]);
    assert_eq!(store.revocation_window().await.unwrap().horizon, seqs[1]);
    // Everything goes; the window still knows where it ends, and numbers are never reused.
    assert_eq!(
        store
            .purge_revocation_events(UnixTime::from_secs(2000), 10)
            .await
            .unwrap(),
        1
    );
    let empty = store.revocation_window().await.unwrap();
    assert_eq!((empty.horizon, empty.latest), (seqs[2], seqs[2]));
    assert!(empty.can_resume_after(seqs[2]));
    revoke_at(1800).await;
    let next = all_events(&store).await;
    assert_eq!(next.len(), 1);
    assert!(next[0].seq > seqs[2]);
}

async fn a_subscriber_is_woken_by_a_revocation(store: Arc<dyn Store>) {
    let c = client("web", &[]);
    store.create_client(&c).await.unwrap();
    let (a, record) = access(&c, "f");
    stored(&store, &[record]).await;
    let mut feed = store.subscribe_revocations();
    feed.borrow_and_update();
    let revoked = store.revoke_token(&a.key(), NOW).await.unwrap();
    assert!(revoked);
    tokio::time::timeout(Duration::from_secs(1), feed.changed())
        .await
        .expect("woken within a second")
        .unwrap();
    // A copy: a `watch` borrow held across an await blocks the sender.
    let woken_at = *feed.borrow();
    assert_eq!(woken_at, latest(&store).await);
}

/// Writers revoking at once while a reader pages after the last number it has seen: the
/// reader never misses an event, which it would if one could commit with a number below
/// one already read.
async fn concurrent_revocations_never_commit_behind_a_reader(store: Arc<dyn Store>) {
    concurrent_revocations(store.clone(), store).await;
}

async fn concurrent_nodes_append_in_one_order(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    concurrent_revocations(a, b).await;
}

async fn concurrent_revocations(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    const WRITERS: usize = 8;
    const EACH: usize = 15;
    let c = client("web", &[]);
    a.create_client(&c).await.unwrap();
    let mut tokens = Vec::new();
    for _ in 0..WRITERS * EACH {
        let (raw, record) = access(&c, "f");
        tokens.push(raw.key());
        stored(&a, &[record]).await;
    }
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (store, done) = (a.clone(), done.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut after = 0;
            loop {
                // Read before the page: if every writer had finished, the page holds the rest.
                let finished = done.load(Ordering::SeqCst);
                let page = store.revocation_events_after(after, 7).await.unwrap();
                if page.is_empty() && finished {
                    return seen;
                }
                if let Some(last) = page.last() {
                    after = last.seq;
                }
                seen.extend(page.into_iter().map(|e| e.token_key));
                tokio::task::yield_now().await;
            }
        })
    };
    let writers: Vec<_> = tokens
        .chunks(EACH)
        .enumerate()
        .map(|(i, keys)| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let keys = keys.to_vec();
            tokio::spawn(async move {
                for key in keys {
                    assert!(store.revoke_token(&key, NOW).await.unwrap());
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    // What another SQLite store commits reaches this one's readers within their snapshot age.
    tokio::time::sleep(Duration::from_millis(300)).await;
    done.store(true, Ordering::SeqCst);
    let seen = reader.await.unwrap();
    assert_eq!(set(seen.iter().copied()), set(tokens));
    assert_eq!(
        seen.len(),
        WRITERS * EACH,
        "the reader missed or repeated events"
    );
}

/// Another node, or the command line, appends: a subscriber learns of it within its poll
/// (SQLite) or at once (PostgreSQL's notification).
async fn another_store_on_the_database_is_woken(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let c = client("web", &[]);
    a.create_client(&c).await.unwrap();
    let (raw, record) = access(&c, "f");
    stored(&a, &[record]).await;
    let mut feed = b.subscribe_revocations();
    // The watcher starts with a look at the table: let it, so the wake-up below is the event's.
    tokio::time::sleep(Duration::from_millis(300)).await;
    feed.borrow_and_update();
    assert!(a.revoke_token(&raw.key(), NOW).await.unwrap());
    tokio::time::timeout(Duration::from_secs(3), feed.changed())
        .await
        .expect("woken within the poll")
        .unwrap();
    let woken_at = *feed.borrow();
    assert_eq!(woken_at, latest(&a).await);
    assert_eq!(keys_after(&b, 0).await, [raw.key()]);
}
