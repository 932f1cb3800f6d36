//! The remote validator's cache of introspection answers, which the revocation subscription
//! evicts: a module of its own, so that neither of the two imports the other.
//!
//! Two tables hold the same entries. moka fills them: concurrent misses of one token share
//! one introspection, and so do its errors; it bounds their number and expires them. A hit
//! reads the hot table instead: a read lock on one of a few shards and one pointer cloned,
//! without moka's bookkeeping of each read (the hottest path of a cached guard). moka's
//! eviction listener takes what it drops out of the hot table, so both stay bounded alike.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;

use crate::info::TokenInfo;
use crate::validator::ValidationError;

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

impl Entry {
    fn expired(&self) -> bool {
        self.stored_at.elapsed() >= self.ttl
    }
}

/// Each entry lives for its own TTL.
struct PerEntryTtl;

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

/// The cached answers. Cheap to clone: clones share the entries.
#[derive(Clone)]
pub(crate) struct AnswerCache {
    answers: Cache<CacheKey, Cached>,
    hot: Arc<HotEntries>,
}

impl AnswerCache {
    pub(crate) fn new(max_entries: u64) -> Self {
        let hot = Arc::new(HotEntries::new(max_entries));
        let dropped_by_moka = hot.clone();
        let answers = Cache::builder()
            .max_capacity(max_entries)
            .expire_after(PerEntryTtl)
            .eviction_listener(move |key: Arc<CacheKey>, entry: Cached, _cause| {
                dropped_by_moka.remove_if_same(&key, &entry);
            })
            .build();
        Self { answers, hot }
    }

    /// The entry under `key`, if the hot table holds one that has not expired.
    pub(crate) fn hit(&self, key: &CacheKey) -> Option<Cached> {
        self.hot.get(key).filter(|entry| !entry.expired())
    }

    /// The entry under `key`, filled by `fill` unless moka holds it; `fill` runs once for all
    /// callers waiting on the same key, and its error is theirs too. The entry joins the hot
    /// table only if `still_current` says so of it, which the table asks under the lock that
    /// [`Self::invalidate`] takes: an eviction can thus not be undone by an answer obtained
    /// before it.
    pub(crate) async fn get_or_fill(
        &self,
        key: CacheKey,
        fill: impl Future<Output = Result<Cached, ValidationError>>,
        still_current: impl FnOnce(&Entry) -> bool,
    ) -> Result<Cached, Arc<ValidationError>> {
        let entry = self.answers.try_get_with(key, fill).await?;
        self.hot.insert_if(key, &entry, still_current);
        Ok(entry)
    }

    pub(crate) async fn invalidate(&self, key: &CacheKey) {
        self.hot.remove(key);
        self.answers.invalidate(key).await;
    }

    pub(crate) fn invalidate_all(&self) {
        self.hot.clear();
        self.answers.invalidate_all();
    }
}

/// Keys are hashed with foldhash, seeded per process: as fast as the plain 32 bytes allow,
/// and no caller can aim its tokens at one bucket without the seed.
type HotShard = HashMap<CacheKey, Cached, foldhash::quality::RandomState>;

/// Shards of the hot table: a hit locks one, so hits on other keys neither wait nor share a
/// cache line of lock state with it.
const SHARDS: usize = 16;

struct HotEntries {
    shards: [RwLock<HotShard>; SHARDS],
    /// A shard's bound, twice its share of moka's: the listener keeps the table as small as
    /// moka, save an entry put back by a caller that read it just before moka dropped it.
    /// Such strays are swept when a shard reaches the bound.
    shard_bound: usize,
}

impl HotEntries {
    fn new(max_entries: u64) -> Self {
        let share = usize::try_from(max_entries.div_ceil(SHARDS as u64)).unwrap_or(usize::MAX);
        Self {
            shards: Default::default(),
            shard_bound: share.saturating_mul(2).max(64),
        }
    }

    /// A key ends with digest bytes (it begins with the token's issue time): its last byte
    /// spreads keys evenly. A caller who grinds tokens into one shard only makes that shard
    /// the whole table.
    fn shard(&self, key: &CacheKey) -> &RwLock<HotShard> {
        let [first, ..] = &self.shards;
        let [.., last] = key;
        self.shards
            .get(usize::from(*last) % SHARDS)
            .unwrap_or(first)
    }

    fn get(&self, key: &CacheKey) -> Option<Cached> {
        let shard = self
            .shard(key)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        shard.get(key).cloned()
    }

    fn insert_if(&self, key: CacheKey, entry: &Cached, still_current: impl FnOnce(&Entry) -> bool) {
        let mut shard = self
            .shard(&key)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if !still_current(entry) {
            return;
        }
        // A caller may come back with an answer older than the one another just put here.
        if shard
            .get(&key)
            .is_some_and(|held| held.stored_at > entry.stored_at)
        {
            return;
        }
        if shard.len() >= self.shard_bound && !shard.contains_key(&key) {
            shard.retain(|_, held| !held.expired());
            if shard.len() >= self.shard_bound {
                shard.clear();
            }
        }
        shard.insert(key, entry.clone());
    }

    fn remove(&self, key: &CacheKey) {
        let mut shard = self
            .shard(key)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        shard.remove(key);
    }

    /// Removes `entry` only: a newer answer under the same key stays.
    fn remove_if_same(&self, key: &CacheKey, entry: &Cached) {
        let mut shard = self
            .shard(key)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if shard.get(key).is_some_and(|held| Arc::ptr_eq(held, entry)) {
            shard.remove(key);
        }
    }

    fn clear(&self) {
        for shard in &self.shards {
            shard
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ttl: Duration) -> Cached {
        Arc::new(Entry {
            info: None,
            ttl,
            started: 0,
            stored_at: Instant::now(),
            settled: AtomicBool::new(false),
        })
    }

    fn key(n: u8) -> CacheKey {
        let mut key = [0; 32];
        key[0] = n;
        key[31] = n;
        key
    }

    async fn fill(cache: &AnswerCache, key: CacheKey, answer: &Cached) -> Cached {
        let answer = answer.clone();
        cache
            .get_or_fill(key, async move { Ok(answer) }, |_| true)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_filled_entry_is_a_hit_until_invalidated() {
        let cache = AnswerCache::new(100);
        let answer = entry(Duration::from_secs(60));
        assert!(cache.hit(&key(1)).is_none());
        fill(&cache, key(1), &answer).await;
        assert!(Arc::ptr_eq(&cache.hit(&key(1)).unwrap(), &answer));
        cache.invalidate(&key(1)).await;
        assert!(cache.hit(&key(1)).is_none());
        fill(&cache, key(2), &answer).await;
        cache.invalidate_all();
        assert!(cache.hit(&key(2)).is_none());
    }

    #[tokio::test]
    async fn an_answer_no_longer_current_stays_out_of_the_hot_table() {
        let cache = AnswerCache::new(100);
        let answer = entry(Duration::from_secs(60));
        let given = cache
            .get_or_fill(key(1), async { Ok(answer.clone()) }, |_| false)
            .await
            .unwrap();
        // The caller still gets moka's answer (admission decides about it); hits do not.
        assert!(Arc::ptr_eq(&given, &answer));
        assert!(cache.hit(&key(1)).is_none());
    }

    #[tokio::test]
    async fn an_expired_entry_is_no_hit() {
        let cache = AnswerCache::new(100);
        fill(&cache, key(1), &entry(Duration::ZERO)).await;
        assert!(cache.hit(&key(1)).is_none());
    }

    #[tokio::test]
    async fn entries_moka_drops_leave_the_hot_table() {
        let cache = AnswerCache::new(100);
        fill(&cache, key(1), &entry(Duration::from_millis(20))).await;
        let held = || {
            cache
                .hot
                .shard(&key(1))
                .read()
                .unwrap()
                .contains_key(&key(1))
        };
        assert!(held());
        // moka's timer wheel expires entries on ticks of about a second.
        for _ in 0..50 {
            if !held() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            cache.answers.run_pending_tasks().await;
        }
        panic!("moka expired the entry, but it is still in the hot table");
    }

    #[test]
    fn an_older_answer_does_not_replace_a_newer_one() {
        let hot = HotEntries::new(100);
        let newer = entry(Duration::from_secs(60));
        let older = Arc::new(Entry {
            info: None,
            ttl: Duration::from_secs(60),
            started: 0,
            stored_at: newer.stored_at - Duration::from_secs(1),
            settled: AtomicBool::new(false),
        });
        hot.insert_if(key(1), &newer, |_| true);
        hot.insert_if(key(1), &older, |_| true);
        assert!(Arc::ptr_eq(&hot.get(&key(1)).unwrap(), &newer));
        hot.remove_if_same(&key(1), &older);
        assert!(hot.get(&key(1)).is_some());
        hot.remove_if_same(&key(1), &newer);
        assert!(hot.get(&key(1)).is_none());
    }

    #[test]
    fn a_shard_stays_within_its_bound() {
        let hot = HotEntries::new(16);
        let bound = hot.shard_bound;
        let live = entry(Duration::from_secs(60));
        // Every key in shard 0: its last byte is a multiple of the shard count.
        for n in 0..(bound * 3) {
            let mut key = [0; 32];
            key[..8].copy_from_slice(&(n as u64).to_le_bytes());
            hot.insert_if(key, &live, |_| true);
            assert!(hot.shards[0].read().unwrap().len() <= bound);
        }
    }
}
