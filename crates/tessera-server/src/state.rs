//! State shared by every request handler.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use tessera_core::client::Client;
use tessera_store::{Store, StoreError};

use crate::browser::CookieNames;
use crate::client_auth::RecentCredentials;
use crate::config::Config;
use crate::throttle::LoginThrottle;

/// Cheap to clone (axum clones it for every request): one shared [`Shared`].
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub store: Arc<dyn Store>,
    pub config: Arc<Config>,
    /// The issuer URL without a trailing slash.
    pub issuer: Arc<str>,
    /// Memo of successful Argon2 verifications, keyed by SHA-256 of (stored hash, secret).
    /// Entries can never be stale: a new secret means a new stored hash, hence a new key.
    pub verified_credentials: Cache<[u8; 32], ()>,
    /// Registered clients recently read from the store (see [`Config::client_cache_ttl`]).
    /// Only clients that exist are kept, so a client registered a moment ago is never
    /// hidden by an earlier miss. Shared, not copied: a client is read on every token,
    /// introspection and revocation request, and a copy is a dozen allocations.
    clients: Option<Cache<String, ReadClient>>,
    /// Basic credentials that passed recently (none when clients are not cached).
    pub recent_credentials: Option<RecentCredentials>,
    pub cookies: CookieNames,
    pub login_throttle: LoginThrottle,
}

impl AppState {
    pub fn new(config: Config, issuer: String, store: Arc<dyn Store>) -> Self {
        let cookies = CookieNames::new(issuer.starts_with("https://"));
        let ttl = config.client_cache_ttl;
        Self(Arc::new(Shared {
            clients: (!ttl.is_zero()).then(|| {
                Cache::builder()
                    .max_capacity(10_000)
                    .time_to_live(ttl)
                    .build()
            }),
            recent_credentials: RecentCredentials::new(ttl),
            store,
            cookies,
            login_throttle: LoginThrottle::default(),
            issuer: issuer.trim_end_matches('/').into(),
            config: Arc::new(config),
            verified_credentials: Cache::builder()
                .max_capacity(10_000)
                .time_to_idle(Duration::from_secs(600))
                .build(),
        }))
    }

    /// The client registered under `client_id`, from the cache or the store.
    pub async fn client(&self, client_id: &str) -> Result<Option<Arc<Client>>, StoreError> {
        Ok(self.read_client(client_id).await?.map(|read| read.client))
    }

    /// [`AppState::client`], and when that registration was read from the store.
    pub async fn read_client(&self, client_id: &str) -> Result<Option<ReadClient>, StoreError> {
        let fetch =
            async {
                let read_at = Instant::now();
                Ok::<_, StoreError>(self.store.get_client(client_id).await?.map(|client| {
                    ReadClient {
                        client: Arc::new(client),
                        read_at,
                    }
                }))
            };
        let Some(cache) = &self.clients else {
            return fetch.await;
        };
        if let Some(read) = cache.get(client_id).await {
            return Ok(Some(read));
        }
        let found = fetch.await?;
        if let Some(read) = &found {
            cache.insert(client_id.to_owned(), read.clone()).await;
        }
        Ok(found)
    }

    pub fn now(&self) -> i64 {
        self.config.clock.now()
    }
}

/// A client's registration as read from the store at `read_at` (before the read began, so
/// that an age computed from it is never too young).
#[derive(Debug, Clone)]
pub struct ReadClient {
    pub client: Arc<Client>,
    pub read_at: Instant,
}
