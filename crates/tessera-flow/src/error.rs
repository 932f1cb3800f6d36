//! [`FlowError`]: why a flow could not complete, for the HTTP layer to map.

use tessera_core::OAuthError;
use tessera_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The request is refused with an RFC error code.
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    /// The store failed (an outage is retryable, see [`StoreError::is_unavailable`]).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Too many failed attempts lately: refused without checking; retry after so long.
    #[error("too many failed attempts; retry after {retry_after} s")]
    Throttled { retry_after: i64 },
    /// The password-hashing queue is full: retry shortly.
    #[error(transparent)]
    Busy(#[from] crate::hashing::Busy),
    /// Something that should not happen (no randomness).
    #[error("internal error: {0}")]
    Internal(String),
}

impl FlowError {
    pub fn internal(what: impl std::fmt::Display) -> Self {
        Self::Internal(what.to_string())
    }
}
