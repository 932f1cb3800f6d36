//! State shared by every request handler.

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use tessera_store::Store;

use crate::browser::CookieNames;
use crate::config::Config;
use crate::throttle::LoginThrottle;

/// Cheap to clone: everything inside is shared.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub config: Arc<Config>,
    /// The issuer URL without a trailing slash.
    pub issuer: Arc<str>,
    /// Memo of successful Argon2 verifications, keyed by SHA-256 of (stored hash, secret).
    /// Entries can never be stale: a new secret means a new stored hash, hence a new key.
    pub verified_credentials: Cache<[u8; 32], ()>,
    pub cookies: CookieNames,
    pub login_throttle: LoginThrottle,
}

impl AppState {
    pub fn new(config: Config, issuer: String, store: Arc<dyn Store>) -> Self {
        let cookies = CookieNames::new(issuer.starts_with("https://"));
        Self {
            store,
            cookies,
            login_throttle: LoginThrottle::default(),
            issuer: issuer.trim_end_matches('/').into(),
            config: Arc::new(config),
            verified_credentials: Cache::builder()
                .max_capacity(10_000)
                .time_to_idle(Duration::from_secs(600))
                .build(),
        }
    }

    pub fn now(&self) -> i64 {
        self.config.clock.now()
    }
}
