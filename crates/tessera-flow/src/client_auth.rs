//! Client authentication at the token, introspection and revocation endpoints: its one home.
//!
//! Secrets are Argon2id-hashed at rest, and verifying one costs tens of milliseconds of CPU,
//! while a resource server authenticates on every introspection. [`ClientAuthenticator`]
//! owns the three things that make that affordable, and nothing else reads them:
//! - the clients recently read from the store (reused for `client_cache_ttl`, so a deleted
//!   or changed client takes effect on every node within that time);
//! - a memo of successful Argon2 verifications, keyed by SHA-256 of the stored hash and the
//!   presented secret: the clear secret is never kept, and a new secret means a new stored
//!   hash, so entries cannot go stale;
//! - [`RecentCredentials`]: `Authorization: Basic` headers that passed, for no longer than
//!   the registration they were checked against may be reused, so the next request with the
//!   same header skips decoding and hashing (docs/BENCHMARKS.md, "Bounds").

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use moka::future::Cache;
use sha2::{Digest, Sha256};
use tessera_core::OAuthError;
use tessera_core::client::Client;
use tessera_core::client_auth::{check_body_beside_basic, presented_client};
use tessera_core::clock::UnixTime;
use tessera_core::form::FormParams;
use tessera_core::secret::Secret;
use tessera_store::{Store, StoreError};

use crate::error::FlowError;
use crate::hashing::Purpose;
use crate::logged::{Quota, loggable};
use crate::throttle::{Throttle, Verdict};

/// A flood of failed client authentications logs a few lines a second, not one each.
static FAILED: Quota = Quota::new();
static THROTTLED: Quota = Quota::new();

/// Who may pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed {
    /// Only clients with a secret (introspection: a public client cannot prove anything).
    ConfidentialOnly,
    /// Confidential clients with their secret, public clients by `client_id` (RFC 7009 §2.1).
    AnyClient,
}

/// Finds clients and authenticates them, with the caches that make that cheap.
pub struct ClientAuthenticator {
    store: Arc<dyn Store>,
    /// Only clients that exist are kept, so a client registered a moment ago is never hidden
    /// by an earlier miss. `None` when clients are not cached.
    clients: Option<Cache<String, ReadClient>>,
    verified: Cache<[u8; 32], ()>,
    recent: Option<RecentCredentials>,
    throttle: Throttle,
}

/// A client's registration as read from the store at `read_at` (before the read began, so
/// that an age computed from it is never too young).
#[derive(Debug, Clone)]
struct ReadClient {
    client: Arc<Client>,
    read_at: Instant,
}

impl ClientAuthenticator {
    /// `client_cache_ttl` zero: every request reads the client from the store.
    pub fn new(store: Arc<dyn Store>, client_cache_ttl: Duration, throttle: Throttle) -> Self {
        Self {
            store,
            clients: (!client_cache_ttl.is_zero()).then(|| {
                Cache::builder()
                    .max_capacity(10_000)
                    .time_to_live(client_cache_ttl)
                    .build()
            }),
            verified: Cache::builder()
                .max_capacity(10_000)
                .time_to_idle(Duration::from_secs(600))
                .build(),
            recent: RecentCredentials::new(client_cache_ttl),
            throttle,
        }
    }

    /// The client registered under `client_id`, from the cache or the store.
    pub async fn client(&self, client_id: &str) -> Result<Option<Arc<Client>>, StoreError> {
        Ok(self.read_client(client_id).await?.map(|read| read.client))
    }

    async fn read_client(&self, client_id: &str) -> Result<Option<ReadClient>, StoreError> {
        let fetch = async {
            let read_at = Instant::now();
            let client = self.store.get_client(client_id).await?;
            Ok::<_, StoreError>(client.map(|client| ReadClient {
                client: Arc::new(client),
                read_at,
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

    /// Forgets what this node remembers of a client changed or deleted through it (RFC 7592),
    /// so that its next request here meets the new registration; other nodes see the
    /// change within the cache's lifetime, as for any change.
    pub async fn forget(&self, client_id: &str) {
        if let Some(cache) = &self.clients {
            cache.invalidate(client_id).await;
        }
        if let Some(recent) = &self.recent {
            recent.forget(client_id);
        }
    }

    /// Authenticates the client a request from `address` claims to be, or answers
    /// `invalid_client` (or, under a flood of wrong secrets, [`FlowError::Throttled`] and
    /// [`FlowError::Busy`], both without hashing).
    ///
    /// No span of its own: this runs on every token, introspection and revocation request,
    /// and a span with a field costs a formatted string each time. The failure says who.
    pub async fn authenticate(
        &self,
        authorization: Option<&[u8]>,
        form: &FormParams,
        allowed: Allowed,
        address: Option<IpAddr>,
        now: UnixTime,
    ) -> Result<Arc<Client>, FlowError> {
        if let (Some(recent), Some(header)) = (&self.recent, authorization)
            && let Some(client) = recent.passed(header)
        {
            check_body_beside_basic(&client.id, form)?;
            return Ok(client);
        }
        // Boxed: the flows that authenticate hold this future inline otherwise, a kilobyte of
        // caches' futures moved with each of them on every request, memo hit or not.
        Box::pin(self.authenticate_presented(authorization, form, allowed, address, now)).await
    }

    /// [`Self::authenticate`] without the memo: the client's registration, then its secret.
    async fn authenticate_presented(
        &self,
        authorization: Option<&[u8]>,
        form: &FormParams,
        allowed: Allowed,
        address: Option<IpAddr>,
        now: UnixTime,
    ) -> Result<Arc<Client>, FlowError> {
        let presented = presented_client(authorization, form)?
            .ok_or_else(|| OAuthError::invalid_client(false))?;
        let basic = presented.used_basic();
        let read = self.read_client(presented.client_id()).await?;
        let authenticated = match (&read, presented.secret()) {
            (Some(r), None) => r.client.is_public() && allowed == Allowed::AnyClient,
            (Some(r), Some(secret)) => match &r.client.secret_hash {
                Some(hash) => {
                    let attempt = Presented {
                        client_id: &r.client.id,
                        address,
                        now,
                    };
                    self.verify_cached(hash, secret, attempt).await?
                }
                None => false,
            },
            // Client ids are not secrets (RFC 6749 §2.2), so an unknown one is answered
            // without the cost of a dummy hash: a flood of invented ids costs nothing.
            (None, _) => false,
        };
        match read {
            Some(read) if authenticated => {
                if let (Some(recent), Some(header), true) = (&self.recent, authorization, basic) {
                    recent.remember(header, &read.client, read.read_at);
                }
                Ok(read.client)
            }
            _ => {
                if let Some(left_out) = FAILED.admit() {
                    tracing::info!(
                        client_id = %loggable(presented.client_id()),
                        basic,
                        left_out,
                        "client authentication failed"
                    );
                }
                Err(OAuthError::invalid_client(basic).into())
            }
        }
    }

    async fn verify_cached(
        &self,
        stored: &str,
        secret: &Secret,
        presented: Presented<'_>,
    ) -> Result<bool, FlowError> {
        let key: [u8; 32] = Sha256::new()
            .chain_update(stored.as_bytes())
            .chain_update([0u8])
            .chain_update(secret.expose().as_bytes())
            .finalize()
            .into();
        if self.verified.contains_key(&key) {
            return Ok(true);
        }
        // Boxed: the Argon2 run's future (the moka entry, the hashing queue) is larger than
        // the rest of the authentication, which a request without a memo hit allocates.
        Box::pin(self.verify_uncached(key, stored, secret, presented)).await
    }

    /// The Argon2 run for credentials not verified recently, behind the throttle.
    async fn verify_uncached(
        &self,
        key: [u8; 32],
        stored: &str,
        secret: &Secret,
        presented: Presented<'_>,
    ) -> Result<bool, FlowError> {
        // Concurrent first requests with the same credentials share one Argon2 run, and only
        // that run meets the throttle: a client's own burst of correct requests counts once,
        // while every distinct wrong secret counts. Only a success is cached: a failure is an
        // `Err` here, which moka does not store.
        let verified = self
            .verified
            .try_get_with(key, async {
                let attempt = match self.throttle.begin_client(
                    presented.client_id,
                    presented.address,
                    presented.now,
                ) {
                    Verdict::Refuse(retry_after) => {
                        if let Some(left_out) = THROTTLED.admit() {
                            tracing::info!(
                                client_id = %presented.client_id,
                                left_out,
                                "client authentication throttled"
                            );
                        }
                        return Err(Unverified::Throttled(retry_after));
                    }
                    Verdict::Proceed { attempt, .. } => attempt,
                };
                let stored = Some(stored.to_owned());
                match verify_blocking(Purpose::ClientAuthentication, stored, secret.clone()).await {
                    Ok(true) => {
                        attempt.succeeded();
                        Ok(())
                    }
                    Ok(false) => {
                        attempt.failed(presented.now);
                        Err(Unverified::Wrong)
                    }
                    // Not checked at all: the attempt is released, not counted.
                    Err(_) => Err(Unverified::Busy),
                }
            })
            .await;
        match verified {
            Ok(()) => Ok(true),
            Err(e) => match *e {
                Unverified::Wrong => Ok(false),
                Unverified::Busy => Err(crate::hashing::Busy.into()),
                Unverified::Throttled(retry_after) => Err(FlowError::Throttled { retry_after }),
            },
        }
    }
}

/// Why a secret did not pass.
#[derive(Debug, Clone, Copy)]
enum Unverified {
    Wrong,
    Busy,
    Throttled(i64),
}

/// Who presented a secret, for the throttle.
#[derive(Debug, Clone, Copy)]
struct Presented<'a> {
    client_id: &'a str,
    address: Option<IpAddr>,
    now: UnixTime,
}

/// Argon2 is CPU-bound: it runs on the hashing threads ([`crate::hashing`]), one per core,
/// from a bounded queue per purpose.
pub(crate) async fn verify_blocking(
    purpose: Purpose,
    stored: Option<String>,
    secret: Secret,
) -> Result<bool, FlowError> {
    Ok(crate::hashing::verify(purpose, stored, secret).await?)
}

/// SHA-256's block size: a key that fills one block is compressed on its own.
const KEY_BYTES: usize = 64;

/// The most headers remembered: each is one confidential client (a resource server, say)
/// that authenticated within the last [`RecentCredentials`] lifetime.
const MOST_REMEMBERED: usize = 10_000;

/// `Authorization: Basic` headers that passed [`authenticate`], and the client each one
/// proved to be, until the registration that was checked is older than the clients' cache
/// lifetime.
///
/// A lock and a map instead of a `moka` cache: this is read on every introspection, and
/// moka's bookkeeping of each read costs more than the rest of the lookup. Entries need no
/// eviction policy: they expire within seconds, and only credentials that passed can be
/// added, so the bound guards against a pathological number of clients, not an attacker.
///
/// The header is kept as SHA-256 under a random key of this process, so the memory holds
/// no secret, and nothing that could be checked against a guess offline elsewhere.
pub struct RecentCredentials {
    /// SHA-256 that has absorbed the key: one whole 64-byte block, compressed once here and
    /// not again for every request.
    keyed: Sha256,
    lifetime: Duration,
    passed: RwLock<HashMap<[u8; 32], Passed>>,
}

struct Passed {
    client: Arc<Client>,
    until: Instant,
}

impl RecentCredentials {
    /// `None` (nothing remembered) when clients are not cached (`lifetime` zero), or when
    /// the OS has no randomness for the key.
    pub fn new(lifetime: Duration) -> Option<Self> {
        if lifetime.is_zero() {
            return None;
        }
        let key = tessera_core::random::random_bytes::<KEY_BYTES>().ok()?;
        Some(Self {
            keyed: Sha256::new_with_prefix(key),
            lifetime,
            passed: RwLock::new(HashMap::new()),
        })
    }

    fn digest(&self, header: &[u8]) -> [u8; 32] {
        self.keyed.clone().chain_update(header).finalize().into()
    }

    /// Drops every header that proved to be `client_id`.
    fn forget(&self, client_id: &str) {
        self.passed
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, p| p.client.id.as_str() != client_id);
    }

    /// The client `header` proved to be, if it passed recently enough.
    pub fn passed(&self, header: &[u8]) -> Option<Arc<Client>> {
        self.passed_at(header, Instant::now())
    }

    fn passed_at(&self, header: &[u8], now: Instant) -> Option<Arc<Client>> {
        let digest = self.digest(header);
        let passed = self.passed.read().unwrap_or_else(PoisonError::into_inner);
        passed
            .get(&digest)
            .filter(|p| p.until > now)
            .map(|p| p.client.clone())
    }

    /// Remembers that `header` proved to be `client`, whose registration was read at
    /// `read_at`.
    pub fn remember(&self, header: &[u8], client: &Arc<Client>, read_at: Instant) {
        self.remember_at(header, client, read_at, Instant::now());
    }

    fn remember_at(&self, header: &[u8], client: &Arc<Client>, read_at: Instant, now: Instant) {
        let until = read_at + self.lifetime;
        if until <= now {
            return;
        }
        let digest = self.digest(header);
        let mut passed = self.passed.write().unwrap_or_else(PoisonError::into_inner);
        if passed.len() >= MOST_REMEMBERED {
            passed.retain(|_, p| p.until > now);
            if passed.len() >= MOST_REMEMBERED {
                return;
            }
        }
        passed.insert(
            digest,
            Passed {
                client: client.clone(),
                until,
            },
        );
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.passed.read().map_or(0, |p| p.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(id: &str) -> Arc<Client> {
        let registration = tessera_core::client::ClientRegistration {
            name: id.into(),
            scope: "api".into(),
            ..Default::default()
        };
        let mut registered = tessera_core::client::register(
            &registration,
            tessera_core::clock::UnixTime::from_secs(0),
        )
        .unwrap();
        registered.client.id = id.into();
        Arc::new(registered.client)
    }

    #[test]
    fn a_remembered_header_passes_until_its_registration_is_too_old() {
        let recent = RecentCredentials::new(Duration::from_secs(60)).unwrap();
        let (a, b) = (client("a"), client("b"));
        recent.remember(b"Basic YTpz", &a, Instant::now());
        recent.remember(b"Basic Yjpz", &b, Instant::now());
        assert_eq!(
            recent.passed(b"Basic YTpz").map(|c| c.id.clone()),
            Some("a".into())
        );
        assert_eq!(
            recent.passed(b"Basic Yjpz").map(|c| c.id.clone()),
            Some("b".into())
        );
        assert!(recent.passed(b"Basic YTpt").is_none());
        assert!(
            recent.passed(b"basic YTpz").is_none(),
            "only the exact header"
        );

        // A registration read longer ago than the lifetime is not remembered at all, and
        // one that ages past it stops passing.
        let start = Instant::now();
        let later = start + Duration::from_secs(61);
        recent.remember_at(b"Basic Yzpz", &a, start, later);
        assert!(recent.passed_at(b"Basic Yzpz", later).is_none());
        assert!(recent.passed_at(b"Basic YTpz", later).is_none());
        assert!(recent.passed_at(b"Basic YTpz", start).is_some());
    }

    #[test]
    fn nothing_is_remembered_when_clients_are_not_cached() {
        assert!(RecentCredentials::new(Duration::ZERO).is_none());
    }

    #[test]
    fn the_memory_is_bounded_and_expired_entries_make_room() {
        let recent = RecentCredentials::new(Duration::from_secs(60)).unwrap();
        let a = client("a");
        let start = Instant::now();
        for i in 0..MOST_REMEMBERED + 5 {
            recent.remember_at(format!("Basic {i}").as_bytes(), &a, start, start);
        }
        assert_eq!(recent.len(), MOST_REMEMBERED);
        assert!(recent.passed_at(b"Basic 0", start).is_some());
        let later = start + Duration::from_secs(61);
        recent.remember_at(b"Basic new", &a, later, later);
        assert_eq!(recent.len(), 1, "the expired ones were dropped");
        assert!(recent.passed_at(b"Basic new", later).is_some());
    }

    #[test]
    fn the_header_is_not_kept_in_clear() {
        let recent = RecentCredentials::new(Duration::from_secs(60)).unwrap();
        let other = RecentCredentials::new(Duration::from_secs(60)).unwrap();
        let header = b"Basic c2VjcmV0";
        // Keyed: a plain SHA-256 of the header, which anyone could check a guess against
        // offline, is not what is kept.
        let plain: [u8; 32] = Sha256::digest(header).into();
        assert_ne!(recent.digest(header), plain);
        assert_ne!(
            recent.digest(header),
            other.digest(header),
            "keyed per process"
        );
        // The prepared state is cloned, never advanced: the same header, the same digest.
        assert_eq!(recent.digest(header), recent.digest(header));
        assert_ne!(recent.digest(header), recent.digest(b"Basic c2VjcmV1"));
    }
}
