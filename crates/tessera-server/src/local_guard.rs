//! [`LocalValidator`]: the guard's token check straight from the store, with no HTTP hop.
//!
//! For a resource server in the same process as Tessera, or on the same database: every
//! request reads the token's row, so a revocation takes effect on the very next request.

use std::sync::Arc;

use async_trait::async_trait;
use tessera_core::clock::Clock;
use tessera_core::token::TokenKey;
use tessera_guard::{TokenInfo, TokenValidator, ValidationError};
use tessera_store::Store;

#[derive(Clone)]
pub struct LocalValidator {
    store: Arc<dyn Store>,
    clock: Clock,
}

impl LocalValidator {
    pub fn new(store: Arc<dyn Store>, clock: Clock) -> Self {
        Self { store, clock }
    }
}

#[async_trait]
impl TokenValidator for LocalValidator {
    async fn validate(&self, token: &str) -> Result<Option<Arc<TokenInfo>>, ValidationError> {
        let record = self
            .store
            .find_token(&TokenKey::of(token))
            .await
            .map_err(|e| ValidationError::Unreachable(e.to_string()))?;
        let now = self.clock.now();
        Ok(record.filter(|r| r.is_active_access_token(now)).map(|r| {
            Arc::new(TokenInfo {
                subject: Some(
                    r.subject
                        .map_or_else(|| r.client_id.to_string(), |s| s.into_string()),
                ),
                username: r.username,
                client_id: Some(r.client_id.into_string()),
                scope: r.scope,
                expires_at: Some(r.expires_at),
                issued_at: Some(r.issued_at),
                audience: r.audience.iter().map(|u| u.as_str().to_owned()).collect(),
            })
        }))
    }
}
