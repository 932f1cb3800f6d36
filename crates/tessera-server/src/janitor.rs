//! Background purge of expired and revoked tokens, and of revocation events and audit events
//! past their retention.
//!
//! Deleting in batches of [`BATCH`] keeps every transaction short, and the table stays
//! bounded under constant load. On PostgreSQL the batch is chosen with `SKIP LOCKED`, so
//! janitors on several nodes share the work instead of queueing behind each other.
//!
//! A backlog (a burst of revocations, a node back after a pause) is worked off at half
//! speed: after each batch the janitor rests as long as the batch took. Revoked tokens lie
//! at random places in the table, so a batch touches a page of every index per token, and
//! on SQLite it runs in the writer's transaction with the requests waiting there; purged
//! back to back, a backlog holds up the requests behind it (docs/BENCHMARKS.md, "Bounds"),
//! while a dead token waiting a little longer for its purge costs nothing.

use tessera_store::StoreError;
use tokio::sync::watch;

use crate::state::AppState;

pub const BATCH: u32 = 100;
/// Revocation events are purged from the start of their key's range, which costs little
/// per row, and come in hundreds a second under load: larger batches keep up.
pub const EVENT_BATCH: u32 = 1000;

/// Runs until `stop` turns true.
pub async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    let interval = state.config.janitor_interval;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        match purge_all(&state, &stop).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "janitor purged tokens"),
            Err(e) => tracing::warn!(error = %e, "janitor failed; will retry"),
        }
        match tessera_flow::keys::prune(&*state.store, state.now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(pruned = n, "janitor pruned retired signing keys"),
            Err(e) => tracing::warn!(error = %e, "janitor failed on signing keys; will retry"),
        }
        match purge_revocation_events(&state, &stop).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(purged = n, "janitor purged revocation events"),
            Err(e) => tracing::warn!(error = %e, "janitor failed on revocation events; will retry"),
        }
        match purge_audit_events(&state, &stop).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "janitor purged audit events"),
            Err(e) => tracing::warn!(error = %e, "janitor failed on audit events; will retry"),
        }
    }
}

/// Purges batch after batch until a batch comes back short.
pub async fn purge_all(state: &AppState, stop: &watch::Receiver<bool>) -> Result<u64, StoreError> {
    in_batches(stop, BATCH, || {
        state.store.purge_expired(state.now(), BATCH)
    })
    .await
}

/// Purges the revocation events older than the retention, as [`purge_all`] does tokens.
pub async fn purge_revocation_events(
    state: &AppState,
    stop: &watch::Receiver<bool>,
) -> Result<u64, StoreError> {
    let retention = seconds(state.config.revocation_event_retention);
    in_batches(stop, EVENT_BATCH, || {
        let older_than = state.now().saturating_add(-retention);
        state.store.purge_revocation_events(older_than, EVENT_BATCH)
    })
    .await
}

/// Purges the audit events older than the retention, as [`purge_all`] does tokens. They are
/// appended in time order, so a batch deletes the start of the time index, as cheaply per
/// row as revocation events.
pub async fn purge_audit_events(
    state: &AppState,
    stop: &watch::Receiver<bool>,
) -> Result<u64, StoreError> {
    let retention = seconds(state.config.audit_retention);
    in_batches(stop, EVENT_BATCH, || {
        let older_than = state.now().saturating_add(-retention);
        state.store.purge_audit_events(older_than, EVENT_BATCH)
    })
    .await
}

/// Runs `purge` (one batch of `batch` rows at most) until a batch comes back short or `stop`
/// turns true, resting after each batch as long as it took.
async fn in_batches<F, Purge>(
    stop: &watch::Receiver<bool>,
    batch: u32,
    mut purge: F,
) -> Result<u64, StoreError>
where
    F: FnMut() -> Purge,
    Purge: Future<Output = Result<u64, StoreError>>,
{
    let mut total = 0;
    loop {
        let started = tokio::time::Instant::now();
        let n = purge().await?;
        total += n;
        if n < u64::from(batch) || *stop.borrow() {
            return Ok(total);
        }
        tokio::time::sleep(started.elapsed()).await;
    }
}

fn seconds(retention: std::time::Duration) -> i64 {
    i64::try_from(retention.as_secs()).unwrap_or(i64::MAX)
}
