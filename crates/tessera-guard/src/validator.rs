//! [`TokenValidator`]: how a guard learns what a token means.
//!
//! Two implementations exist: [`crate::RemoteIntrospection`] asks any RFC 7662 server over
//! HTTP, and the Tessera server crate provides a local one that reads its own store. Both fail
//! closed: when the answer cannot be known, the request is refused with a 503, never let in.

use std::sync::Arc;

use async_trait::async_trait;

use crate::info::TokenInfo;

/// Why a token could not be validated (as opposed to being invalid).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ValidationError {
    #[error("the authorization server could not be reached: {0}")]
    Unreachable(String),
    #[error("the authorization server answered {0}")]
    BadStatus(u16),
    #[error("the introspection response is malformed: {0}")]
    Malformed(String),
    #[error("validation failed: {0}")]
    Other(String),
}

/// What a validator says of a token: `Ok(Some(info))` if active, `Ok(None)` if not. The
/// answer is shared, so that a cached one reaches the handler without a copy.
pub type Validation = Result<Option<Arc<TokenInfo>>, ValidationError>;

/// Answers what a bearer token means.
#[async_trait]
pub trait TokenValidator: Send + Sync + 'static {
    async fn validate(&self, token: &str) -> Validation;

    /// The answer, if the validator has it at hand without waiting (a cache hit); `None`:
    /// ask [`Self::validate`]. The guard tries this first, so that a hit costs no future.
    fn validate_now(&self, _token: &str) -> Option<Validation> {
        None
    }
}
