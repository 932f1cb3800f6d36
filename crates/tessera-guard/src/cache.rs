//! The remote validator's cache entries, which the revocation subscription evicts: a module of
//! their own, so that neither of the two imports the other.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;

use crate::info::TokenInfo;

/// A cache key: the token's `TokenKey`, which the revocation stream names too.
pub(crate) type CacheKey = [u8; 32];

/// An introspection answer, as cached.
#[derive(Clone)]
pub(crate) struct Cached {
    pub(crate) info: Option<Arc<TokenInfo>>,
    pub(crate) ttl: Duration,
    /// The revocation stream's epoch when the introspection began.
    pub(crate) started: u64,
    pub(crate) stored_at: Instant,
}

/// Each entry lives for its own TTL.
pub(crate) struct PerEntryTtl;

impl Expiry<CacheKey, Cached> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &Cached,
        _at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}
