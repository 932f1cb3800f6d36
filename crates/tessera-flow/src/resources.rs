//! The registered resource servers, as the flows read them: a snapshot of the store's list,
//! read again once it is older than the client cache's TTL, so that every grant does not
//! cost a query. A resource registered on another node is seen at once anyway: a request
//! naming a resource the snapshot lacks reads the store again (at most once a second, so
//! made-up identifiers cannot turn every request into a query).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tessera_core::client::Client;
use tessera_core::resource::{Audience, Resource, grant_audience};
use tessera_core::scope::Scope;
use tessera_store::Store;

use crate::error::FlowError;

/// How soon a request for an unknown resource may read the store again.
const MISS_REREAD: Duration = Duration::from_secs(1);

pub struct Resources {
    store: Arc<dyn Store>,
    ttl: Duration,
    snapshot: Mutex<Option<Snapshot>>,
}

#[derive(Clone)]
struct Snapshot {
    read_at: Instant,
    resources: Arc<[Resource]>,
}

impl Resources {
    pub fn new(store: Arc<dyn Store>, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            snapshot: Mutex::new(None),
        }
    }

    /// The audience of a new grant (see [`grant_audience`]), decided on a snapshot that
    /// holds every resource `requested` names if the store does.
    pub async fn audience(
        &self,
        requested: &Audience,
        client: &Client,
        scope: &Scope,
    ) -> Result<Audience, FlowError> {
        let snapshot = self.current().await?;
        let known = |s: &Snapshot| {
            requested
                .iter()
                .all(|u| s.resources.iter().any(|r| &r.uri == u))
        };
        let snapshot = if known(&snapshot) || snapshot.read_at.elapsed() < MISS_REREAD {
            snapshot
        } else {
            self.reread().await?
        };
        Ok(grant_audience(
            requested,
            &snapshot.resources,
            client,
            scope,
        )?)
    }

    /// Every scope a registered resource server defines: what a self-registered client may
    /// ask for (a scope no resource defines would grant access to nothing).
    pub async fn offered_scope(&self) -> Result<Scope, FlowError> {
        let snapshot = self.current().await?;
        Ok(snapshot
            .resources
            .iter()
            .fold(Scope::default(), |all, r| all.union(&r.scope)))
    }

    async fn current(&self) -> Result<Snapshot, FlowError> {
        let cached = self.lock().clone();
        match cached {
            Some(s) if s.read_at.elapsed() < self.ttl => Ok(s),
            _ => self.reread().await,
        }
    }

    async fn reread(&self) -> Result<Snapshot, FlowError> {
        let resources: Arc<[Resource]> = self.store.list_resources().await?.into();
        let snapshot = Snapshot {
            read_at: Instant::now(),
            resources,
        };
        *self.lock() = Some(snapshot.clone());
        Ok(snapshot)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Snapshot>> {
        self.snapshot.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
