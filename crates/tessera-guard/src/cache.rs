//! The remote validator's cache entries, which the revocation subscription evicts: a module of
//! their own, so that neither of the two imports the other.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use moka::Expiry;

use crate::info::TokenInfo;

/// A cache key: the token's `TokenKey`, which the revocation stream names too.
pub(crate) type CacheKey = [u8; 32];

/// An introspection answer, as cached: shared, so that a hit clones one pointer.
pub(crate) type Cached = Arc<Entry>;

pub(crate) struct Entry {
    pub(crate) info: Option<Arc<TokenInfo>>,
    pub(crate) ttl: Duration,
    /// The revocation stream's epoch when the introspection began.
    pub(crate) started: u64,
    pub(crate) stored_at: Instant,
    /// Set once a caller found this entry in the cache and checked it against every revocation
    /// since `started`. Any later event for its key evicts it, so hits need not look again.
    pub(crate) settled: AtomicBool,
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
