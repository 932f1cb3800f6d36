//! Background purge of expired and revoked tokens.
//!
//! Deleting in batches of [`BATCH`] keeps every transaction short, so the janitor never
//! holds a lock long enough to delay issuance or introspection, and the table stays bounded
//! under constant load. On PostgreSQL the batch is chosen with `SKIP LOCKED`, so janitors on
//! several nodes share the work instead of queueing behind each other.

use tokio::sync::watch;

use crate::state::AppState;

pub const BATCH: u32 = 500;

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
    }
}

/// Purges batch after batch until a batch comes back short.
pub async fn purge_all(
    state: &AppState,
    stop: &watch::Receiver<bool>,
) -> Result<u64, tessera_store::StoreError> {
    let mut total = 0;
    loop {
        let n = state.store.purge_expired(state.now(), BATCH).await?;
        total += n;
        if n < u64::from(BATCH) || *stop.borrow() {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}
