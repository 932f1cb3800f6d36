//! Issue 28's audit trail: events appended in order, read back by filter and page, purged
//! by age in batches, their ids never reused.

use std::sync::Arc;

use tessera_core::audit::{Actor, AuditEvent, AuditFilter, AuditKind, RevocationCause};
use tessera_core::clock::UnixTime;
use tessera_store::Store;

conformance!(
    audit_events_read_back_by_filter_and_page_oldest_first,
    audit_events_are_purged_by_age_in_batches_and_ids_never_reused,
);

fn sign_in(at: i64, user: &str) -> AuditEvent {
    AuditEvent::new(
        UnixTime::from_secs(at),
        AuditKind::SignIn,
        Actor::User(user.into()),
    )
    .user(user)
    .address(Some("2001:db8::7".parse().unwrap()))
}

async fn ids(store: &Arc<dyn Store>, filter: AuditFilter) -> Vec<u64> {
    let found = store.audit_events(&filter).await.unwrap();
    found.iter().map(|r| r.id).collect()
}

async fn audit_events_read_back_by_filter_and_page_oldest_first(store: Arc<dyn Store>) {
    assert!(
        store
            .audit_events(&AuditFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    let revoked = AuditEvent::revoked(
        UnixTime::from_secs(200),
        Actor::Client("c-1".into()),
        RevocationCause::RefreshReused,
    )
    .user("alice")
    .client("c-1")
    .with("count", 2);
    let change =
        AuditEvent::change(UnixTime::from_secs(300), Actor::Cli, "client delete").client("c-2");
    let events = [sign_in(100, "alice"), revoked, change, sign_in(400, "bob")];
    let mut appended = Vec::new();
    for event in &events {
        appended.push(store.append_audit_event(event).await.unwrap());
    }
    assert!(appended.windows(2).all(|w| w[0] < w[1]), "{appended:?}");

    let all = store.audit_events(&AuditFilter::default()).await.unwrap();
    assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), appended);
    let read: Vec<_> = all.into_iter().map(|r| r.event).collect();
    assert_eq!(read, events, "every field round-trips");

    let filter = |f: fn(&mut AuditFilter)| {
        let mut filter = AuditFilter::default();
        f(&mut filter);
        filter
    };
    let [a, b, c, d] = appended[..] else {
        unreachable!()
    };
    assert_eq!(
        ids(&store, filter(|f| f.user = Some("alice".into()))).await,
        [a, b]
    );
    assert_eq!(
        ids(&store, filter(|f| f.client_id = Some("c-2".into()))).await,
        [c]
    );
    assert_eq!(
        ids(
            &store,
            filter(|f| {
                f.user = Some("alice".into());
                f.client_id = Some("c-1".into());
            })
        )
        .await,
        [b]
    );
    assert_eq!(
        ids(&store, filter(|f| f.since = Some(UnixTime::from_secs(300)))).await,
        [c, d]
    );
    assert!(
        ids(&store, filter(|f| f.user = Some("nobody\0".into())))
            .await
            .is_empty()
    );

    // Pages of two, each after the last id of the one before.
    let mut page = AuditFilter {
        limit: 2,
        ..AuditFilter::default()
    };
    assert_eq!(ids(&store, page.clone()).await, [a, b]);
    page.after = b;
    assert_eq!(ids(&store, page.clone()).await, [c, d]);
    page.after = d;
    assert!(ids(&store, page).await.is_empty());
}

async fn audit_events_are_purged_by_age_in_batches_and_ids_never_reused(store: Arc<dyn Store>) {
    for at in [100, 101, 102, 103, 104, 500, 600] {
        store
            .append_audit_event(&sign_in(at, "alice"))
            .await
            .unwrap();
    }
    let last = *ids(&store, AuditFilter::default()).await.last().unwrap();
    let cutoff = UnixTime::from_secs(500);
    let mut batches = Vec::new();
    loop {
        let purged = store.purge_audit_events(cutoff, 2).await.unwrap();
        batches.push(purged);
        if purged < 2 {
            break;
        }
    }
    assert_eq!(batches, [2, 2, 1]);
    let kept = store.audit_events(&AuditFilter::default()).await.unwrap();
    let times: Vec<_> = kept.iter().map(|r| r.event.at.as_secs()).collect();
    assert_eq!(
        times,
        [500, 600],
        "older than the cutoff purged, the rest kept"
    );

    // Purging everything, then appending: the new id is still after every one handed out.
    assert_eq!(
        store
            .purge_audit_events(UnixTime::from_secs(1_000), 100)
            .await
            .unwrap(),
        2
    );
    let next = store
        .append_audit_event(&sign_in(700, "bob"))
        .await
        .unwrap();
    assert!(next > last, "{next} after {last}");
}
