//! State shared by every request handler.

use std::sync::Arc;

use tessera_core::clock::UnixTime;
use tessera_flow::{ClientMetadataSource, Flows, Settings};
use tessera_store::Store;

use crate::browser::CookieNames;
use crate::config::Config;

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
    /// Every grant and browser step, over the same store.
    pub flows: Flows,
    pub cookies: CookieNames,
    /// Whether metrics are on: requests are then counted and timed too.
    pub metered: bool,
}

impl AppState {
    /// `documents`: where client metadata documents are fetched from, if accepted;
    /// `metered`: whether metrics are on (the recorder is installed), so the store's
    /// operations and the requests are measured.
    pub fn new(
        config: Config,
        issuer: String,
        store: Arc<dyn Store>,
        documents: Option<Arc<dyn ClientMetadataSource>>,
        metered: bool,
    ) -> Self {
        let store = if metered {
            tessera_store::metered::Metered::wrap(store)
        } else {
            store
        };
        let cookies = CookieNames::new(issuer.starts_with("https://"));
        let flows = Flows::with_documents(
            store.clone(),
            Settings {
                issuer,
                lifetimes: config.lifetimes,
                pkce: config.pkce,
                clock: config.clock.clone(),
                session_ttl: config.session_ttl,
                client_cache_ttl: config.client_cache_ttl,
                registration: config.registration,
                key_encryption_key: config.key_encryption_key.clone(),
                key_reload_interval: config.key_reload_interval,
            },
            documents,
        );
        Self(Arc::new(Shared {
            store,
            config: Arc::new(config),
            flows,
            cookies,
            metered,
        }))
    }

    /// The issuer URL without a trailing slash.
    pub fn issuer(&self) -> &str {
        self.flows.issuer()
    }

    pub fn now(&self) -> UnixTime {
        self.config.clock.now()
    }
}
