//! PostgreSQL: any number of Tessera nodes on one database.
//!
//! No state lives in a node that another node needs: tokens, clients and (later) sessions
//! are rows, so a token issued on one node introspects on another and a revocation anywhere
//! is seen everywhere on the next lookup. Migrations take PostgreSQL's advisory lock (sqlx's
//! migrator does), so nodes started together apply them once. The janitor's deletes use
//! `FOR UPDATE SKIP LOCKED`, so janitors on several nodes never wait on each other.
//! Revocation events are appended by `append_revocation_events` (migration 0008), in commit
//! order, and announced with `NOTIFY`, which every node's watcher `LISTEN`s for.

mod batch;

use std::collections::HashMap;
use std::sync::PoisonError;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{Connection, FromRow, PgConnection, PgExecutor, PgPool, Postgres, Row};
use tessera_core::admin::AdminTokenRecord;
use tessera_core::audit::{AuditEvent, AuditFilter, AuditRecord};
use tessera_core::client::Client;
use tessera_core::clock::UnixTime;
use tessera_core::grant::AuthorizationCodeRecord;
use tessera_core::oidc::Profile;
use tessera_core::registration::{InitialAccessTokenRecord, Registration};
use tessera_core::resource::{Resource, ResourceUri};
use tessera_core::scope::Scope;
use tessera_core::token::{TokenKey, TokenRecord};
use tessera_core::user::User;
use tokio::sync::watch;

use crate::feed::{self, Feed};
use crate::rows::{self, Ended, TokenRow, seq_of, stored_seq};
use crate::{
    ClientOidc, FamilyOwner, Redemption, RevocationEvent, RevocationWindow, Session, StoreError,
    StoredSigningKey, TokenFamily,
};
use batch::{BatchFn, Batcher};

/// Batched statements in flight at once, per kind. One: the next batch fills while it runs,
/// and grows with the statement's latency (group commit regulates itself). Every extra lane
/// splits the same waiting requests into smaller batches, and the database pays its
/// per-statement cost more often, so each lane added made both introspection and issuance
/// slower (docs/BENCHMARKS.md, "Bounds").
const BATCH_LANES: usize = 1;
/// Three kinds of batches (lookups, inserts, revocations), each lane one statement at a
/// time: the batch pool never makes a lane wait.
const BATCH_POOL_SIZE: u32 = 3 * BATCH_LANES as u32;
/// Everything else: sessions, codes, clients, the janitor. Connections per node are the two
/// pools together (16); several nodes share one server, whose own limit
/// (`max_connections`, 100 by default) must cover them all.
const POOL_SIZE: u32 = 13;
/// For the batch pool only. With the default `auto`, PostgreSQL keeps planning
/// `hash = ANY($1)` afresh at every execution, since a custom plan for the actual array looks
/// cheaper than the generic one, and the planning then costs more than the execution
/// (docs/BENCHMARKS.md, "Bounds"). The generic plan is the same index scan. Not for the
/// general pool: there a generic plan for `expires_at <= $1 ... LIMIT $2` (the janitor)
/// could become a table scan.
const BATCH_PLAN_CACHE_MODE: &str = "SET plan_cache_mode = force_generic_plan";

/// Many token rows in one statement, each column an array (`unnest` zips them back into
/// rows). As atomic as a transaction of single inserts, in one round trip.
///
/// It also does the foreign key's work, once per statement instead of once per row (the
/// per-row referential check weighed on issuance, docs/BENCHMARKS.md, "Bounds"; migration
/// 0003 dropped it): it takes the key-share lock on each client named, as the check did, and
/// inserts nothing at all if one of them is missing (deleted), which the caller sees as a
/// row count of 0. The lock keeps a client from being deleted until this statement's
/// transaction ends; a deletion that got there first has committed by the time the lock is
/// granted, so its client is missing here ([`PgStore::delete_client`] does its part).
const INSERT_TOKENS: &str = "WITH new AS (SELECT * FROM unnest($1::bytea[], $2::int2[], \
    $3::text[], $4::text[], $5::text[], $6::int8[], $7::int8[], $8::int8[], $9::int8[], \
    $10::text[], $11::text[]) AS t (hash, kind, client_id, subject, scope, issued_at, \
    expires_at, revoked_at, rotated_at, family_id, audience)), \
    owners AS (SELECT client_id FROM clients WHERE client_id = ANY($3) FOR KEY SHARE) \
    INSERT INTO tokens (hash, kind, client_id, subject, scope, issued_at, expires_at, \
    revoked_at, rotated_at, family_id, audience) \
    SELECT * FROM new WHERE NOT EXISTS \
    (SELECT 1 FROM new n WHERE n.client_id NOT IN (SELECT client_id FROM owners))";
const SELECT_TOKENS: &str = "SELECT t.hash, t.kind, t.client_id, t.subject, t.scope, \
    t.issued_at, t.expires_at, t.revoked_at, t.rotated_at, t.family_id, t.audience, \
    u.username FROM tokens t LEFT JOIN users u ON u.id = t.subject WHERE t.hash = ANY($1)";
/// One revocation time for the batch (the latest of its requests, all within the same
/// moment): an index scan by `ANY`, where a join with `unnest` may be planned as a scan.
/// Returns the keys revoked and the last event appended (see [`appending`]).
const REVOKE_TOKENS: &str = "WITH ended AS (UPDATE tokens SET revoked_at = $2 \
    WHERE hash = ANY($1) AND revoked_at IS NULL \
    RETURNING hash, audience, kind = 0 AND expires_at > $2 AS live) \
    SELECT COALESCE(array_agg(hash), '{}'), append_revocation_events(\
    array_agg(hash) FILTER (WHERE live), array_agg(audience) FILTER (WHERE live), $2) FROM ended";

/// `ending`, a statement that ends tokens (see `rows::REVOKE_TOKEN`), made to append a
/// revocation event for each live access token it ends, in the same statement; it returns
/// how many tokens it ended and the last event appended. The events are appended once the
/// tokens are ended, and a statement of its own commits at once: the lock that appending
/// takes (migration 0008) is held for the commit only.
fn appending(ending: &str) -> String {
    format!(
        "WITH ended AS ({ending}) SELECT COUNT(*), append_revocation_events(\
         array_agg(hash) FILTER (WHERE live), array_agg(audience) FILTER (WHERE live), $2) \
         FROM ended"
    )
}

static REVOKE_FAMILY: LazyLock<String> = LazyLock::new(|| appending(rows::REVOKE_FAMILY));
static REVOKE_USER_TOKENS: LazyLock<String> = LazyLock::new(|| appending(rows::REVOKE_USER_TOKENS));
static REVOKE_CLIENT_TOKENS: LazyLock<String> =
    LazyLock::new(|| appending(rows::REVOKE_CLIENT_TOKENS));
static DELETE_USER_TOKENS: LazyLock<String> = LazyLock::new(|| appending(rows::DELETE_USER_TOKENS));
/// Run after the client's row is gone (see `delete_client`).
static DELETE_CLIENT_TOKENS: LazyLock<String> =
    LazyLock::new(|| appending(rows::DELETE_CLIENT_TOKENS));

/// The channel `append_revocation_events` notifies (migration 0008).
const REVOCATIONS_CHANNEL: &str = "tessera_revocations";
/// How often the watcher reads the last event while it cannot listen.
const REVOCATIONS_POLL: Duration = Duration::from_secs(1);
/// How many polls before the watcher tries to listen again.
const POLLS_BETWEEN_LISTENS: u32 = 10;

/// The statements this dialect spells its own way.
mod dialect {
    // Expired and revoked tokens in two statements, each on its own index: with an `OR`
    // a planner may scan the table from its start for every batch.
    pub const PURGE_EXPIRED_TOKENS: &str = "DELETE FROM tokens WHERE hash IN (SELECT hash \
        FROM tokens WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)";
    pub const PURGE_REVOKED_TOKENS: &str = "DELETE FROM tokens WHERE hash IN (SELECT hash \
        FROM tokens WHERE revoked_at IS NOT NULL LIMIT $1 FOR UPDATE SKIP LOCKED)";
    pub const PURGE_CODES: &str = "DELETE FROM authorization_codes WHERE hash IN (SELECT hash \
        FROM authorization_codes WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)";
    pub const PURGE_SESSIONS: &str = "DELETE FROM sessions WHERE hash IN (SELECT hash \
        FROM sessions WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)";
    pub const PURGE_INITIAL_ACCESS_TOKENS: &str = "DELETE FROM initial_access_tokens \
        WHERE hash IN (SELECT hash FROM initial_access_tokens WHERE expires_at <= $1 \
        LIMIT $2 FOR UPDATE SKIP LOCKED)";
    pub const PURGE_AUDIT_EVENTS: &str = "DELETE FROM audit_events WHERE id IN (SELECT id \
        FROM audit_events WHERE at < $1 ORDER BY at LIMIT $2 FOR UPDATE SKIP LOCKED)";
}

/// The hot paths (introspection, issuance, revocation) go through [`Batcher`]s; everything
/// else is one statement or one transaction on the pool.
#[derive(Debug)]
pub struct PgStore {
    pool: PgPool,
    /// The general pool's connections, kept between statements (see [`HeldConnections`]).
    general: Arc<HeldConnections>,
    lookups: Batcher<TokenKey, Option<TokenRecord>>,
    inserts: Batcher<Vec<TokenRecord>, ()>,
    revocations: Batcher<(TokenKey, UnixTime), bool>,
    feed: Arc<Feed>,
}

impl PgStore {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = pool_options(POOL_SIZE).connect(url).await?;
        let batch_pool = batch_pool(url)?;
        // One connection per lane: a lane runs one statement at a time.
        let held = || HeldConnections::new(batch_pool.clone(), 1);
        let feed = Arc::new(Feed::new());
        Ok(Self {
            lookups: Batcher::start(BATCH_LANES, find_batch(held())),
            inserts: Batcher::start(BATCH_LANES, insert_batch(held())),
            revocations: Batcher::start(BATCH_LANES, revoke_batch(held(), feed.clone())),
            general: HeldConnections::new(pool.clone(), POOL_SIZE as usize),
            pool,
            feed,
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// The batchers' own connections, opened as they are first needed.
fn batch_pool(url: &str) -> Result<PgPool, StoreError> {
    Ok(pool_options(BATCH_POOL_SIZE)
        .after_connect(|conn, _| {
            Box::pin(async move {
                // A server that does not know the setting (an older PostgreSQL, a compatible
                // database) still works, only with more planning.
                if let Err(e) = sqlx::query(BATCH_PLAN_CACHE_MODE).execute(conn).await {
                    tracing::debug!(error = %e, "plan_cache_mode not set");
                }
                Ok(())
            })
        })
        .connect_lazy(url)?)
}

/// Connections taken from a pool and kept from one statement to the next.
///
/// sqlx 0.9 tests every connection given back to its pool with a round trip
/// (`PoolConnection::return_to_pool` pings: a `Sync` and its `ReadyForQuery`), whatever
/// `test_before_acquire` says. A statement run on the pool itself paid that round trip every
/// time: twice the messages, and a wake-up of the database's backend each time, which is
/// most of what a point lookup costs it (docs/BENCHMARKS.md, "Bounds"). So connections are
/// leased from here and, after a statement that succeeded, kept for the next caller; after a
/// failure, or a caller that went away mid-statement, the connection goes back to the pool,
/// whose test closes it if it is broken. A connection kept for [`KEEP_AT_MOST`] goes back
/// too, so that the pool's own lifetime rules still apply to it.
///
/// There is one permit per connection the pool may open, and a lease holds one: so a lease
/// that finds no kept connection may always open one without waiting for the pool, where
/// the kept ones (which the pool counts as in use) would otherwise never come back to it.
struct HeldConnections {
    pool: PgPool,
    permits: Arc<tokio::sync::Semaphore>,
    kept: std::sync::Mutex<Vec<Kept>>,
}

/// How long a statement waits for a connection before the store answers "unavailable".
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a connection is kept before it goes back to its pool once.
const KEEP_AT_MOST: Duration = Duration::from_secs(600);

struct Kept {
    connection: PoolConnection<Postgres>,
    since: Instant,
}

impl std::fmt::Debug for HeldConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldConnections")
            .field("available", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl HeldConnections {
    fn new(pool: PgPool, connections: usize) -> Arc<Self> {
        Arc::new(Self {
            pool,
            permits: Arc::new(tokio::sync::Semaphore::new(connections)),
            kept: std::sync::Mutex::new(Vec::with_capacity(connections)),
        })
    }

    /// A connection for one statement or transaction; call [`Lease::keep`] once it has
    /// succeeded.
    async fn lease(self: &Arc<Self>) -> Result<Lease, StoreError> {
        // Waiting for a permit is waiting for the pool: the same limit, the same error.
        let permit = tokio::time::timeout(ACQUIRE_TIMEOUT, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| StoreError::from(sqlx::Error::PoolTimedOut))?
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        let kept = self.kept_connections().pop();
        let kept = match kept {
            Some(kept) => kept,
            None => Kept {
                connection: self.pool.acquire().await?,
                since: Instant::now(),
            },
        };
        Ok(Lease {
            owner: self.clone(),
            kept,
            permit,
        })
    }

    fn kept_connections(&self) -> std::sync::MutexGuard<'_, Vec<Kept>> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A leased connection. Dropped without [`Lease::keep`], it goes back to the pool.
struct Lease {
    owner: Arc<HeldConnections>,
    kept: Kept,
    permit: tokio::sync::OwnedSemaphorePermit,
}

impl Lease {
    /// The statements went through: keep the connection for the next lease.
    fn keep(self) {
        let Self {
            owner,
            kept,
            permit,
        } = self;
        if kept.since.elapsed() < KEEP_AT_MOST {
            owner.kept_connections().push(kept);
        }
        // Only now: the next lease finds the connection.
        drop(permit);
    }
}

impl std::ops::Deref for Lease {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.kept.connection
    }
}

impl std::ops::DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.kept.connection
    }
}

fn pool_options(size: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        // A dead connection shows itself as an error of the next statement, which is
        // answered 503 and drops the connection; pinging first would cost a round trip per
        // statement to learn the same thing. (sqlx still pings a connection given back to
        // the pool, which is why the store keeps them, see `HeldConnections`.)
        .test_before_acquire(false)
}

impl PgStore {
    /// Runs `ending` (see [`appending`]) with `key` and `now` on its own; once it has
    /// committed, wakes this node's readers of revocation events if it appended any.
    async fn end_tokens(
        &self,
        ending: &'static str,
        key: &str,
        now: UnixTime,
    ) -> Result<u64, StoreError> {
        let mut conn = self.general.lease().await?;
        let ended = end(&mut *conn, ending, key, now).await?;
        conn.keep();
        self.feed.advance(ended.latest_event);
        Ok(ended.count)
    }

    /// Whether a `SELECT COUNT(*)` of one key finds any row.
    async fn exists(&self, statement: &'static str, key: &str) -> Result<bool, StoreError> {
        let mut conn = self.general.lease().await?;
        let count: i64 = sqlx::query_scalar(statement)
            .bind(key)
            .fetch_one(&mut *conn)
            .await?;
        conn.keep();
        Ok(count > 0)
    }
}

/// Runs `ending` (see [`appending`]) with `key` and `now`.
async fn end<'e>(
    executor: impl PgExecutor<'e>,
    ending: &'static str,
    key: &str,
    now: UnixTime,
) -> Result<Ended, StoreError> {
    let (count, latest): (i64, Option<i64>) = sqlx::query_as(ending)
        .bind(key)
        .bind(now.as_secs())
        .fetch_one(executor)
        .await?;
    Ok(Ended {
        count: u64::try_from(count).unwrap_or(0),
        latest_event: latest.map(seq_of),
    })
}

/// The window of revocation events.
async fn read_window(general: &Arc<HeldConnections>) -> Result<RevocationWindow, StoreError> {
    let mut conn = general.lease().await?;
    let (horizon, latest) = sqlx::query_as(rows::REVOCATION_WINDOW)
        .fetch_one(&mut *conn)
        .await?;
    conn.keep();
    Ok(rows::window(horizon, latest))
}

/// Advances `latest` with every event appended by any node, until the store is dropped:
/// from the notifications of `append_revocation_events`, or, while they cannot be received,
/// by reading the last event every [`REVOCATIONS_POLL`].
async fn watch_revocations(
    options: PgConnectOptions,
    general: Arc<HeldConnections>,
    latest: watch::Sender<u64>,
) {
    // A connection of its own, held while listening and made again when lost.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_lazy_with(options);
    loop {
        match listen(&pool).await {
            Ok(mut listener) => {
                // Events appended before the `LISTEN` took effect were announced to no one here.
                catch_up(&general, &latest).await;
                loop {
                    match listener.try_recv().await {
                        Ok(Some(notification)) => match notification.payload().parse() {
                            Ok(seq) => feed::advance(&latest, seq),
                            Err(_) => catch_up(&general, &latest).await,
                        },
                        // The connection was lost and made again: what was sent meanwhile is lost.
                        Ok(None) => catch_up(&general, &latest).await,
                        Err(e) => {
                            tracing::warn!(error = %e, "lost the revocation notifications; polling");
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for revocation notifications; polling")
            }
        }
        for _ in 0..POLLS_BETWEEN_LISTENS {
            tokio::time::sleep(REVOCATIONS_POLL).await;
            catch_up(&general, &latest).await;
        }
    }
}

/// Advances `latest` to the last event appended.
async fn catch_up(general: &Arc<HeldConnections>, latest: &watch::Sender<u64>) {
    match read_window(general).await {
        Ok(window) => feed::advance(latest, window.latest),
        Err(e) => tracing::debug!(error = %e, "revocation events not read"),
    }
}

async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(REVOCATIONS_CHANNEL).await?;
    Ok(listener)
}

/// Runs a transaction in a task of its own, which a caller that goes away cannot cancel.
///
/// sqlx 0.9.0's `Pool::begin` is not cancel-safe on PostgreSQL (sqlx issues 4385 and 4393,
/// fixed upstream after that release): a future dropped while `BEGIN` is on the wire, as
/// happens when an HTTP client hangs up, returns the connection to the pool *inside* a
/// transaction that nothing ends. Every later statement on it joins that transaction, holds
/// its locks and is never committed. Seen here as lost sessions and codes, then deadlocks,
/// under load with clients disconnecting. A detached task always runs to its end.
async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::spawn(work)
        .await
        .map_err(|e| StoreError::Unavailable(Box::new(e)))?
}

#[async_trait::async_trait]
impl crate::Store for PgStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        crate::migrations::postgres().run(&self.pool).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.general.lease().await?;
        sqlx::query("SELECT 1").execute(&mut *conn).await?;
        conn.keep();
        Ok(())
    }

    async fn create_client(&self, client: &Client) -> Result<(), StoreError> {
        let mut conn = self.general.lease().await?;
        insert_client(&mut *conn, client, None).await?;
        conn.keep();
        Ok(())
    }

    async fn create_registration(&self, registration: &Registration) -> Result<(), StoreError> {
        let mut conn = self.general.lease().await?;
        insert_client(
            &mut *conn,
            &registration.client,
            Some(&registration.access_token),
        )
        .await?;
        conn.keep();
        Ok(())
    }

    async fn find_registration(&self, client_id: &str) -> Result<Option<Registration>, StoreError> {
        if !rows::storable(client_id) {
            return Ok(None);
        }
        let mut conn = self.general.lease().await?;
        let found = sqlx::query(rows::SELECT_REGISTRATION)
            .bind(client_id)
            .fetch_optional(&mut *conn)
            .await?;
        conn.keep();
        let Some(row) = found else {
            return Ok(None);
        };
        let token: Vec<u8> = row.try_get("registration_token")?;
        rows::registration(rows::ClientRow::from_row(&row)?, &token).map(Some)
    }

    async fn put_document_client(&self, client: &Client) -> Result<bool, StoreError> {
        if !rows::storable(client.id.as_str()) {
            return Ok(false);
        }
        let cols = rows::ClientColumns::of(client);
        let mut conn = self.general.lease().await?;
        let done = sqlx::query(rows::PUT_DOCUMENT_CLIENT)
            .bind(client.id.as_str())
            .bind(&client.name)
            .bind(&cols.grant_types)
            .bind(&cols.scope)
            .bind(&cols.redirect_uris)
            .bind(false)
            .bind(client.created_at.as_secs())
            .bind(true)
            .execute(&mut *conn)
            .await?;
        conn.keep();
        Ok(done.rows_affected() > 0)
    }

    async fn update_registration(&self, client: &Client) -> Result<bool, StoreError> {
        let cols = rows::ClientColumns::of(client);
        let mut conn = self.general.lease().await?;
        let done = sqlx::query(rows::UPDATE_REGISTRATION)
            .bind(client.id.as_str())
            .bind(&client.name)
            .bind(client.auth_method.as_str())
            .bind(&cols.grant_types)
            .bind(&cols.scope)
            .bind(&cols.redirect_uris)
            .execute(&mut *conn)
            .await?;
        conn.keep();
        Ok(done.rows_affected() > 0)
    }

    async fn create_initial_access_token(
        &self,
        token: &InitialAccessTokenRecord,
    ) -> Result<(), StoreError> {
        let mut conn = self.general.lease().await?;
        sqlx::query(rows::INSERT_INITIAL_ACCESS_TOKEN)
            .bind(token.hash.as_bytes().as_slice())
            .bind(token.created_at.as_secs())
            .bind(token.expires_at.as_secs())
            .execute(&mut *conn)
            .await?;
        conn.keep();
        Ok(())
    }

    async fn initial_access_token_is_live(
        &self,
        hash: &TokenKey,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let mut conn = self.general.lease().await?;
        let count: i64 = sqlx::query_scalar(rows::INITIAL_ACCESS_TOKEN_LIVE)
            .bind(hash.as_bytes().as_slice())
            .bind(now.as_secs())
            .fetch_one(&mut *conn)
            .await?;
        conn.keep();
        Ok(count > 0)
    }

    async fn get_client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        if !rows::storable(client_id) {
            return Ok(None);
        }
        let mut conn = self.general.lease().await?;
        let found = sqlx::query_as::<_, rows::ClientRow>(rows::SELECT_CLIENT)
            .bind(client_id)
            .fetch_optional(&mut *conn)
            .await?;
        conn.keep();
        found.map(Client::try_from).transpose()
    }

    async fn list_clients(&self) -> Result<Vec<Client>, StoreError> {
        let mut conn = self.general.lease().await?;
        let found = sqlx::query_as::<_, rows::ClientRow>(rows::LIST_CLIENTS)
            .fetch_all(&mut *conn)
            .await?;
        conn.keep();
        found.into_iter().map(Client::try_from).collect()
    }

    async fn delete_client(&self, client_id: &str, now: UnixTime) -> Result<bool, StoreError> {
        if !rows::storable(client_id) {
            return Ok(false);
        }
        // Tokens have no foreign key here (see INSERT_TOKENS), so they go explicitly, and
        // after the client: deleting its row waits for any insert that holds the client's
        // key-share lock to commit, and under READ COMMITTED the second statement's snapshot
        // then holds those tokens too. The other order could miss them.
        let (general, client_id) = (self.general.clone(), client_id.to_owned());
        let (deleted, ended) = detached(async move {
            let mut conn = general.lease().await?;
            let mut tx = conn.begin().await?;
            let deleted = sqlx::query(rows::DELETE_CLIENT)
                .bind(&client_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let ended = end(&mut *tx, &DELETE_CLIENT_TOKENS, &client_id, now).await?;
            tx.commit().await?;
            conn.keep();
            Ok((deleted > 0, ended))
        })
        .await?;
        self.feed.advance(ended.latest_event);
        Ok(deleted)
    }

    async fn revoke_client_tokens(
        &self,
        client_id: &str,
        now: UnixTime,
    ) -> Result<Option<u64>, StoreError> {
        if !rows::storable(client_id) || !self.exists(rows::CLIENT_EXISTS, client_id).await? {
            return Ok(None);
        }
        let revoked = self
            .end_tokens(&REVOKE_CLIENT_TOKENS, client_id, now)
            .await?;
        Ok(Some(revoked))
    }

    async fn create_resource(
        &self,
        resource: &Resource,
        client: &Client,
    ) -> Result<(), StoreError> {
        let mut conn = self.general.lease().await?;
        let mut tx = conn.begin().await?;
        insert_client(&mut *tx, client, None).await?;
        sqlx::query(rows::INSERT_RESOURCE)
            .bind(resource.uri.as_str())
            .bind(resource.client_id.as_str())
            .bind(&resource.name)
            .bind(resource.scope.to_string())
            .bind(resource.created_at.as_secs())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        conn.keep();
        Ok(())
    }

    async fn list_resources(&self) -> Result<Vec<Resource>, StoreError> {
        let mut conn = self.general.lease().await?;
        let found = sqlx::query_as::<_, rows::ResourceRow>(rows::LIST_RESOURCES)
            .fetch_all(&mut *conn)
            .await?;
        conn.keep();
        found.into_iter().map(Resource::try_from).collect()
    }

    async fn delete_resource(&self, uri: &ResourceUri, now: UnixTime) -> Result<bool, StoreError> {
        let mut conn = self.general.lease().await?;
        let client_id: Option<String> = sqlx::query_scalar(rows::RESOURCE_CLIENT)
            .bind(uri.as_str())
            .fetch_optional(&mut *conn)
            .await?;
        conn.keep();
        match client_id {
            Some(client_id) => self.delete_client(&client_id, now).await,
            None => Ok(false),
        }
    }

    async fn create_user(&self, user: &User) -> Result<(), StoreError> {
        let mut conn = self.general.lease().await?;
        sqlx::query(rows::INSERT_USER)
            .bind(user.id.as_str())
            .bind(user.username.as_str())
            .bind(&user.password_hash)
            .bind(user.created_at.as_secs())
            .execute(&mut *conn)
            .await?;
        conn.keep();
        Ok(())
    }

    async fn get_user_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
        if !rows::storable(username) {
            return Ok(None);
        }
        let mut conn = self.general.lease().await?;
        let found = sqlx::query_as::<_, rows::UserRow>(rows::SELECT_USER_BY_NAME)
            .bind(username)
            .fetch_optional(&mut *conn)
            .await?;
        conn.keep();
        found.map(User::try_from).transpose()
    }

    async fn delete_user(&self, username: &str, now: UnixTime) -> Result<bool, StoreError> {
        if !rows::storable(username) {
            return Ok(false);
        }
        // Tokens name their user in `subject` without a foreign key (client tokens
        // have none), so they go explicitly; the rest cascades.
        let (general, username) = (self.general.clone(), username.to_owned());
        let (deleted, ended) = detached(async move {
            let mut conn = general.lease().await?;
            let mut tx = conn.begin().await?;
            // The user's row first, as `set_password` takes it: two changes of one user then
            // wait for each other there, never for each other's tokens and the events' lock.
            sqlx::query("SELECT 1 FROM users WHERE username = $1 FOR UPDATE")
                .bind(&username)
                .execute(&mut *tx)
                .await?;
            let ended = end(&mut *tx, &DELETE_USER_TOKENS, &username, now).await?;
            let deleted = sqlx::query(rows::DELETE_USER)
                .bind(&username)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            conn.keep();
            Ok((deleted > 0, ended))
        })
        .await?;
        self.feed.advance(ended.latest_event);
        Ok(deleted)
    }

    async fn revoke_user_tokens(
        &self,
        username: &str,
        now: UnixTime,
    ) -> Result<Option<u64>, StoreError> {
        if !rows::storable(username) || !self.exists(rows::USER_EXISTS, username).await? {
            return Ok(None);
        }
        let revoked = self.end_tokens(&REVOKE_USER_TOKENS, username, now).await?;
        Ok(Some(revoked))
    }

    async fn set_password(
        &self,
        username: &str,
        password_hash: &str,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        if !rows::storable(username) {
            return Ok(false);
        }
        let (general, username, password_hash) = (
            self.general.clone(),
            username.to_owned(),
            password_hash.to_owned(),
        );
        let (changed, ended) = detached(async move {
            let mut conn = general.lease().await?;
            let mut tx = conn.begin().await?;
            let done = sqlx::query(rows::SET_PASSWORD)
                .bind(&username)
                .bind(&password_hash)
                .execute(&mut *tx)
                .await?;
            sqlx::query(rows::DELETE_USER_SESSIONS)
                .bind(&username)
                .execute(&mut *tx)
                .await?;
            // Last: appending events holds a lock until the commit.
            let ended = end(&mut *tx, &REVOKE_USER_TOKENS, &username, now).await?;
            tx.commit().await?;
            conn.keep();
            Ok((done.rows_affected() > 0, ended))
        })
        .await?;
        self.feed.advance(ended.latest_event);
        Ok(changed)
    }

    async fn insert_tokens(&self, tokens: &[TokenRecord]) -> Result<(), StoreError> {
        self.inserts.submit(tokens.to_vec()).await
    }

    async fn find_token(&self, hash: &TokenKey) -> Result<Option<TokenRecord>, StoreError> {
        self.lookups.submit(*hash).await
    }

    async fn revoke_token(&self, hash: &TokenKey, now: UnixTime) -> Result<bool, StoreError> {
        self.revocations.submit((*hash, now)).await
    }

    async fn revoke_family(&self, family_id: &str, now: UnixTime) -> Result<u64, StoreError> {
        self.end_tokens(&REVOKE_FAMILY, family_id, now).await
    }

    async fn rotate_refresh_token(
        &self,
        hash: &TokenKey,
        now: UnixTime,
        successors: &[TokenRecord],
    ) -> Result<bool, StoreError> {
        let (general, hash, successors) = (self.general.clone(), *hash, successors.to_vec());
        detached(async move {
            let mut conn = general.lease().await?;
            let mut tx = conn.begin().await?;
            let claimed = sqlx::query(rows::ROTATE_REFRESH)
                .bind(hash.as_bytes().as_slice())
                .bind(now.as_secs())
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            if !claimed {
                tx.rollback().await?;
                conn.keep();
                return Ok(false);
            }
            insert_rows(&mut *tx, &successors).await?;
            tx.commit().await?;
            conn.keep();
            Ok(true)
        })
        .await
    }

    async fn insert_code(&self, code: &AuthorizationCodeRecord) -> Result<(), StoreError> {
        let mut conn = self.general.lease().await?;
        sqlx::query(rows::INSERT_CODE)
            .bind(code.hash.as_bytes().as_slice())
            .bind(code.client_id.as_str())
            .bind(code.user_id.as_str())
            .bind(&code.redirect_uri)
            .bind(code.redirect_uri_given)
            .bind(code.scope.to_string())
            .bind(&code.code_challenge)
            .bind(code.issued_at.as_secs())
            .bind(code.expires_at.as_secs())
            .bind(code.redeemed_at.map(UnixTime::as_secs))
            .bind(code.family_id.as_str())
            .bind(code.audience.to_string())
            .bind(&code.nonce)
            .bind(code.auth_time.map(UnixTime::as_secs))
            .execute(&mut *conn)
            .await?;
        conn.keep();
        Ok(())
    }

    async fn find_code(
        &self,
        hash: &TokenKey,
    ) -> Result<Option<AuthorizationCodeRecord>, StoreError> {
        let mut conn = self.general.lease().await?;
        let found = sqlx::query_as::<_, rows::CodeRow>(rows::SELECT_CODE)
            .bind(hash.as_bytes().as_slice())
            .fetch_optional(&mut *conn)
            .await?;
        conn.keep();
        found.map(AuthorizationCodeRecord::try_from).transpose()
    }

    async fn redeem_code(
        &self,
        hash: &TokenKey,
        now: UnixTime,
        tokens: &[TokenRecord],
    ) -> Result<Redemption, StoreError> {
        let (general, hash, tokens) = (self.general.clone(), *hash, tokens.to_vec());
        detached(async move {
            let mut conn = general.lease().await?;
            let mut tx = conn.begin().await?;
            let claimed = sqlx::query(rows::REDEEM_CODE)
                .bind(hash.as_bytes().as_slice())
                .bind(now.as_secs())
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            if claimed {
                insert_rows(&mut *tx, &tokens).await?;
                tx.commit().await?;
                conn.keep();
                return Ok(Redemption::Redeemed);
            }
            let family: Option<String> = sqlx::query_scalar(rows::CODE_FAMILY)
                .bind(hash.as_bytes().as_slice())
                .fetch_optional(&mut *tx)
                .await?;
            tx.rollback().await?;
            conn.keep();
            Ok(match family {
                Some(family_id) => Redemption::AlreadyRedeemed { family_id },
                None => Redemption::NotFound,
            })
        })
        .await
    }

    async fn create_session(&self, session: &Session) -> Result<(), StoreError> {
        let mut conn = self.general.lease().await?;
        sqlx::query(rows::INSERT_SESSION)
            .bind(session.hash.as_bytes().as_slice())
            .bind(session.user_id.as_str())
            .bind(session.created_at.as_secs())
            .bind(session.expires_at.as_secs())
            .execute(&mut *conn)
            .await?;
        conn.keep();
        Ok(())
    }

    async fn find_session_user(
        &self,
        hash: &TokenKey,
        now: UnixTime,
    ) -> Result<Option<User>, StoreError> {
        let mut conn = self.general.lease().await?;
        let found = sqlx::query_as::<_, rows::UserRow>(rows::SELECT_SESSION_USER)
            .bind(hash.as_bytes().as_slice())
            .bind(now.as_secs())
            .fetch_optional(&mut *conn)
            .await?;
        conn.keep();
        found.map(User::try_from).transpose()
    }

    async fn delete_session(&self, hash: &TokenKey) -> Result<(), StoreError> {
        let mut conn = self.general.lease().await?;
        sqlx::query(rows::DELETE_SESSION)
            .bind(hash.as_bytes().as_slice())
            .execute(&mut *conn)
            .await?;
        conn.keep();
        Ok(())
    }

    async fn session_signed_in_at(
        &self,
        hash: &TokenKey,
        now: UnixTime,
    ) -> Result<Option<UnixTime>, StoreError> {
        let mut conn = self.general.lease().await?;
        let found: Option<i64> = sqlx::query_scalar(rows::SELECT_SESSION_SIGNED_IN)
            .bind(hash.as_bytes().as_slice())
            .bind(now.as_secs())
            .fetch_optional(&mut *conn)
            .await?;
        conn.keep();
        Ok(found.map(UnixTime::from_secs))
    }

    async fn get_profile(&self, user_id: &str) -> Result<Option<(String, Profile)>, StoreError> {
        if !rows::storable(user_id) {
            return Ok(None);
        }
        let mut conn = self.general.lease().await?;
        let found = sqlx::query_as::<_, rows::ProfileRow>(rows::SELECT_PROFILE)
            .bind(user_id)
            .fetch_optional(&mut *conn)
            .await?;
        conn.keep();
        Ok(found.map(Into::into))
    }

    async fn set_profile(&self, username: &str, profile: &Profile) -> Result<bool, StoreError> {
        if !rows::storable(username) {
            return Ok(false);
        }
        let mut conn = self.general.lease().await?;
        let changed = sqlx::query(rows::UPDATE_PROFILE)
            .bind(username)
            .bind(&profile.name)
            .bind(&profile.email)
            .bind(profile.email_verified)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        conn.keep();
        Ok(changed > 0)
    }

    async fn get_client_oidc(&self, client_id: &str) -> Result<Option<ClientOidc>, StoreError> {
        if !rows::storable(client_id) {
            return Ok(None);
        }
        let mut conn = self.general.lease().await?;
        let found: Option<(Option<String>, String)> = sqlx::query_as(rows::SELECT_CLIENT_OIDC)
            .bind(client_id)
            .fetch_optional(&mut *conn)
            .await?;
        conn.keep();
        Ok(found.map(|(alg, uris)| rows::client_oidc(alg, &uris)))
    }

    async fn put_client_oidc(&self, client_id: &str, oidc: &ClientOidc) -> Result<(), StoreError> {
        if !rows::storable(client_id) {
            return Err(StoreError::MissingReference);
        }
        let mut conn = self.general.lease().await?;
        sqlx::query(rows::UPSERT_CLIENT_OIDC)
            .bind(client_id)
            .bind(&oidc.id_token_signed_response_alg)
            .bind(oidc.post_logout_redirect_uris.join(" "))
            .execute(&mut *conn)
            .await?;
        conn.keep();
        Ok(())
    }

    async fn insert_signing_key(&self, key: &StoredSigningKey) -> Result<(), StoreError> {
        let mut conn = self.general.lease().await?;
        insert_signing_key(&mut *conn, key).await?;
        conn.keep();
        Ok(())
    }

    async fn list_signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError> {
        let mut conn = self.general.lease().await?;
        let found = sqlx::query_as::<_, rows::SigningKeyRow>(rows::SELECT_SIGNING_KEYS)
            .fetch_all(&mut *conn)
            .await?;
        conn.keep();
        Ok(found.into_iter().map(Into::into).collect())
    }

    async fn rotate_signing_keys(
        &self,
        new: &[StoredSigningKey],
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let (general, new) = (self.general.clone(), new.to_vec());
        detached(async move {
            let mut conn = general.lease().await?;
            let mut tx = conn.begin().await?;
            sqlx::query(rows::RETIRE_SIGNING_KEYS)
                .bind(now.as_secs())
                .execute(&mut *tx)
                .await?;
            for key in &new {
                insert_signing_key(&mut *tx, key).await?;
            }
            tx.commit().await?;
            conn.keep();
            Ok(())
        })
        .await
    }

    async fn prune_signing_keys(&self, retired_before: UnixTime) -> Result<u64, StoreError> {
        let mut conn = self.general.lease().await?;
        let deleted = sqlx::query(rows::DELETE_RETIRED_KEYS)
            .bind(retired_before.as_secs())
            .execute(&mut *conn)
            .await?
            .rows_affected();
        conn.keep();
        Ok(deleted)
    }

    async fn get_consent(
        &self,
        user_id: &str,
        client_id: &str,
    ) -> Result<Option<Scope>, StoreError> {
        let mut conn = self.general.lease().await?;
        let scope: Option<String> = sqlx::query_scalar(rows::SELECT_CONSENT)
            .bind(user_id)
            .bind(client_id)
            .fetch_optional(&mut *conn)
            .await?;
        conn.keep();
        rows::consent_scope(scope)
    }

    async fn put_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scope: &Scope,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let mut conn = self.general.lease().await?;
        sqlx::query(rows::UPSERT_CONSENT)
            .bind(user_id)
            .bind(client_id)
            .bind(scope.to_string())
            .bind(now.as_secs())
            .execute(&mut *conn)
            .await?;
        conn.keep();
        Ok(())
    }

    async fn purge_expired(&self, now: UnixTime, batch: u32) -> Result<u64, StoreError> {
        let mut conn = self.general.lease().await?;
        let mut most = 0;
        // (statement, whether it takes `now` before the batch size)
        for (sql, by_time) in [
            (dialect::PURGE_EXPIRED_TOKENS, true),
            (dialect::PURGE_REVOKED_TOKENS, false),
            (dialect::PURGE_CODES, true),
            (dialect::PURGE_SESSIONS, true),
            (dialect::PURGE_INITIAL_ACCESS_TOKENS, true),
        ] {
            let query = sqlx::query(sql);
            let query = if by_time {
                query.bind(now.as_secs())
            } else {
                query
            };
            let done = query.bind(i64::from(batch)).execute(&mut *conn).await?;
            most = most.max(done.rows_affected());
        }
        conn.keep();
        Ok(most)
    }

    async fn revocation_events_after(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<RevocationEvent>, StoreError> {
        let mut conn = self.general.lease().await?;
        let found = sqlx::query_as::<_, rows::RevocationEventRow>(rows::REVOCATION_EVENTS_AFTER)
            .bind(stored_seq(after))
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?;
        conn.keep();
        found.into_iter().map(RevocationEvent::try_from).collect()
    }

    async fn revocation_window(&self) -> Result<RevocationWindow, StoreError> {
        read_window(&self.general).await
    }

    async fn purge_revocation_events(
        &self,
        older_than: UnixTime,
        batch: u32,
    ) -> Result<u64, StoreError> {
        let general = self.general.clone();
        // The events and the horizon move together: a reader must never find events gone
        // that the horizon does not yet cover.
        detached(async move {
            let mut conn = general.lease().await?;
            let mut tx = conn.begin().await?;
            let last: Option<i64> = sqlx::query_scalar(rows::LAST_PURGEABLE_EVENT)
                .bind(older_than.as_secs())
                .bind(i64::from(batch))
                .fetch_one(&mut *tx)
                .await?;
            let mut purged = 0;
            if let Some(last) = last {
                purged = sqlx::query(rows::PURGE_REVOCATION_EVENTS)
                    .bind(last)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                sqlx::query(rows::RAISE_REVOCATION_HORIZON)
                    .bind(last)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            conn.keep();
            Ok(purged)
        })
        .await
    }

    async fn append_audit_event(&self, event: &AuditEvent) -> Result<u64, StoreError> {
        let (actor, detail, address) = rows::AuditEventRow::columns(event);
        let mut conn = self.general.lease().await?;
        let id: i64 = sqlx::query_scalar(rows::INSERT_AUDIT_EVENT)
            .bind(event.at.as_secs())
            .bind(event.kind.as_str())
            .bind(actor)
            .bind(event.user.as_deref())
            .bind(event.client_id.as_deref())
            .bind(address)
            .bind(detail)
            .fetch_one(&mut *conn)
            .await?;
        conn.keep();
        Ok(seq_of(id))
    }

    async fn audit_events(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        if !rows::audit_filter_storable(filter) {
            return Ok(Vec::new());
        }
        // Built from constant fragments only (the values are bound): four texts in all.
        let statement = sqlx::AssertSqlSafe(rows::select_audit_events(filter));
        let mut query = sqlx::query_as::<_, rows::AuditEventRow>(statement)
            .bind(stored_seq(filter.after))
            .bind(filter.since.map_or(i64::MIN, UnixTime::as_secs))
            .bind(i64::from(filter.limit));
        for given in [&filter.user, &filter.client_id].into_iter().flatten() {
            query = query.bind(given.as_str());
        }
        let mut conn = self.general.lease().await?;
        let found = query.fetch_all(&mut *conn).await?;
        conn.keep();
        found.into_iter().map(AuditRecord::try_from).collect()
    }

    async fn purge_audit_events(
        &self,
        older_than: UnixTime,
        batch: u32,
    ) -> Result<u64, StoreError> {
        let mut conn = self.general.lease().await?;
        let done = sqlx::query(dialect::PURGE_AUDIT_EVENTS)
            .bind(older_than.as_secs())
            .bind(i64::from(batch))
            .execute(&mut *conn)
            .await?;
        conn.keep();
        Ok(done.rows_affected())
    }

    async fn create_admin_token(&self, token: &AdminTokenRecord) -> Result<(), StoreError> {
        let mut conn = self.general.lease().await?;
        sqlx::query(rows::INSERT_ADMIN_TOKEN)
            .bind(&token.id)
            .bind(token.key.as_bytes().as_slice())
            .bind(token.created_at.as_secs())
            .bind(token.expires_at.map(UnixTime::as_secs))
            .bind(token.revoked_at.map(UnixTime::as_secs))
            .execute(&mut *conn)
            .await?;
        conn.keep();
        Ok(())
    }

    async fn find_admin_token(
        &self,
        key: &TokenKey,
    ) -> Result<Option<AdminTokenRecord>, StoreError> {
        let mut conn = self.general.lease().await?;
        let found = sqlx::query_as::<_, rows::AdminTokenRow>(rows::SELECT_ADMIN_TOKEN)
            .bind(key.as_bytes().as_slice())
            .fetch_optional(&mut *conn)
            .await?;
        conn.keep();
        found.map(AdminTokenRecord::try_from).transpose()
    }

    async fn list_admin_tokens(&self) -> Result<Vec<AdminTokenRecord>, StoreError> {
        let mut conn = self.general.lease().await?;
        let found = sqlx::query_as::<_, rows::AdminTokenRow>(rows::LIST_ADMIN_TOKENS)
            .fetch_all(&mut *conn)
            .await?;
        conn.keep();
        found.into_iter().map(AdminTokenRecord::try_from).collect()
    }

    async fn revoke_admin_token(&self, id: &str, now: UnixTime) -> Result<bool, StoreError> {
        if !rows::storable(id) {
            return Ok(false);
        }
        let mut conn = self.general.lease().await?;
        let changed = sqlx::query(rows::REVOKE_ADMIN_TOKEN)
            .bind(id)
            .bind(now.as_secs())
            .execute(&mut *conn)
            .await?
            .rows_affected();
        conn.keep();
        Ok(changed > 0)
    }

    async fn clients_after(&self, after: &str, limit: u32) -> Result<Vec<Client>, StoreError> {
        if !rows::storable(after) {
            return Ok(Vec::new());
        }
        let mut conn = self.general.lease().await?;
        let found = sqlx::query_as::<_, rows::ClientRow>(rows::CLIENTS_AFTER)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?;
        conn.keep();
        found.into_iter().map(Client::try_from).collect()
    }

    async fn update_client(&self, client: &Client) -> Result<bool, StoreError> {
        let cols = rows::ClientColumns::of(client);
        let mut conn = self.general.lease().await?;
        let changed = sqlx::query(rows::UPDATE_CLIENT)
            .bind(client.id.as_str())
            .bind(&client.name)
            .bind(cols.grant_types)
            .bind(cols.scope)
            .bind(cols.redirect_uris)
            .bind(client.skip_consent)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        conn.keep();
        Ok(changed > 0)
    }

    async fn resources_after(&self, after: &str, limit: u32) -> Result<Vec<Resource>, StoreError> {
        if !rows::storable(after) {
            return Ok(Vec::new());
        }
        let mut conn = self.general.lease().await?;
        let found = sqlx::query_as::<_, rows::ResourceRow>(rows::RESOURCES_AFTER)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?;
        conn.keep();
        found.into_iter().map(Resource::try_from).collect()
    }

    async fn get_resource(&self, uri: &ResourceUri) -> Result<Option<Resource>, StoreError> {
        let mut conn = self.general.lease().await?;
        let found = sqlx::query_as::<_, rows::ResourceRow>(rows::SELECT_RESOURCE)
            .bind(uri.as_str())
            .fetch_optional(&mut *conn)
            .await?;
        conn.keep();
        found.map(Resource::try_from).transpose()
    }

    async fn update_resource(&self, resource: &Resource) -> Result<bool, StoreError> {
        let mut conn = self.general.lease().await?;
        let changed = sqlx::query(rows::UPDATE_RESOURCE)
            .bind(resource.uri.as_str())
            .bind(&resource.name)
            .bind(resource.scope.to_string())
            .execute(&mut *conn)
            .await?
            .rows_affected();
        conn.keep();
        Ok(changed > 0)
    }

    async fn users_after(
        &self,
        after: &str,
        limit: u32,
    ) -> Result<Vec<(User, Profile)>, StoreError> {
        if !rows::storable(after) {
            return Ok(Vec::new());
        }
        let mut conn = self.general.lease().await?;
        let found = sqlx::query_as::<_, rows::UserProfileRow>(rows::USERS_AFTER)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?;
        conn.keep();
        found.into_iter().map(<(User, Profile)>::try_from).collect()
    }

    async fn active_families(
        &self,
        owner: &FamilyOwner,
        now: UnixTime,
        after: &str,
        limit: u32,
    ) -> Result<Vec<TokenFamily>, StoreError> {
        let (statement, key) = match owner {
            FamilyOwner::User { username } => (rows::USER_FAMILIES, username),
            FamilyOwner::Client { client_id } => (rows::CLIENT_FAMILIES, client_id),
        };
        if !rows::storable(after) || !rows::storable(key) {
            return Ok(Vec::new());
        }
        let mut conn = self.general.lease().await?;
        let found = sqlx::query_as::<_, rows::FamilyRow>(statement)
            .bind(key)
            .bind(now.as_secs())
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?;
        conn.keep();
        Ok(found.into_iter().map(TokenFamily::from).collect())
    }

    async fn end_user_sessions(&self, username: &str) -> Result<u64, StoreError> {
        if !rows::storable(username) {
            return Ok(0);
        }
        let mut conn = self.general.lease().await?;
        let ended = sqlx::query(rows::DELETE_USER_SESSIONS)
            .bind(username)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        conn.keep();
        Ok(ended)
    }

    fn subscribe_revocations(&self) -> watch::Receiver<u64> {
        let options = (*self.pool.connect_options()).clone();
        let general = self.general.clone();
        self.feed
            .subscribe(|latest| watch_revocations(options, general, latest))
    }

    /// The general pool; the batch lanes hold one connection each, for good.
    fn pool_usage(&self) -> Option<crate::PoolUsage> {
        Some(crate::PoolUsage {
            size: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
        })
    }
}

/// Inserts a client; `registration_token` is the key of a self-registered client's token.
async fn insert_client<'e>(
    executor: impl PgExecutor<'e>,
    client: &Client,
    registration_token: Option<&TokenKey>,
) -> Result<(), StoreError> {
    let cols = rows::ClientColumns::of(client);
    sqlx::query(rows::INSERT_CLIENT)
        .bind(client.id.as_str())
        .bind(&client.name)
        .bind(&client.secret_hash)
        .bind(client.auth_method.as_str())
        .bind(&cols.grant_types)
        .bind(&cols.scope)
        .bind(&cols.redirect_uris)
        .bind(client.skip_consent)
        .bind(client.created_at.as_secs())
        .bind(client.self_registered)
        .bind(registration_token.map(|k| k.as_bytes().to_vec()))
        .execute(executor)
        .await?;
    Ok(())
}

/// Stores `tokens` in one statement: all of them or none (then `MissingReference`: a client
/// of one of them does not exist).
async fn insert_signing_key<'e>(
    executor: impl PgExecutor<'e>,
    key: &StoredSigningKey,
) -> Result<(), StoreError> {
    sqlx::query(rows::INSERT_SIGNING_KEY)
        .bind(&key.kid)
        .bind(&key.alg)
        .bind(&key.public_jwk)
        .bind(&key.encrypted_private_key)
        .bind(key.created_at.as_secs())
        .bind(key.retired_at.map(UnixTime::as_secs))
        .execute(executor)
        .await?;
    Ok(())
}

async fn insert_rows<'e, 't>(
    executor: impl PgExecutor<'e>,
    tokens: impl IntoIterator<Item = &'t TokenRecord>,
) -> Result<(), StoreError> {
    let tokens = tokens.into_iter();
    let capacity = tokens.size_hint().0;
    let mut hashes = Vec::with_capacity(capacity);
    let mut kinds = Vec::with_capacity(capacity);
    let mut clients = Vec::with_capacity(capacity);
    let mut subjects = Vec::with_capacity(capacity);
    let mut scopes = Vec::with_capacity(capacity);
    let mut issued = Vec::with_capacity(capacity);
    let mut expires = Vec::with_capacity(capacity);
    let mut revoked = Vec::with_capacity(capacity);
    let mut rotated = Vec::with_capacity(capacity);
    let mut families = Vec::with_capacity(capacity);
    let mut audiences = Vec::with_capacity(capacity);
    for t in tokens {
        hashes.push(t.hash.as_bytes().to_vec());
        kinds.push(rows::kind_code(t.kind));
        clients.push(t.client_id.as_str());
        subjects.push(t.subject.as_deref());
        scopes.push(t.scope.to_string());
        issued.push(t.issued_at.as_secs());
        expires.push(t.expires_at.as_secs());
        revoked.push(t.revoked_at.map(UnixTime::as_secs));
        rotated.push(t.rotated_at.map(UnixTime::as_secs));
        families.push(t.family_id.as_deref());
        audiences.push(t.audience.to_string());
    }
    let count = u64::try_from(hashes.len()).unwrap_or(u64::MAX);
    let inserted = sqlx::query(INSERT_TOKENS)
        .bind(hashes)
        .bind(kinds)
        .bind(clients)
        .bind(subjects)
        .bind(scopes)
        .bind(issued)
        .bind(expires)
        .bind(revoked)
        .bind(rotated)
        .bind(families)
        .bind(audiences)
        .execute(executor)
        .await?
        .rows_affected();
    if inserted == count {
        Ok(())
    } else {
        Err(StoreError::MissingReference)
    }
}

fn find_batch(held: Arc<HeldConnections>) -> BatchFn<TokenKey, Option<TokenRecord>> {
    Arc::new(move |hashes: Vec<TokenKey>| {
        let held = held.clone();
        Box::pin(async move {
            let keys: Vec<Vec<u8>> = hashes.iter().map(|h| h.as_bytes().to_vec()).collect();
            let mut conn = held.lease().await?;
            let rows = sqlx::query_as::<_, TokenRow>(SELECT_TOKENS)
                .bind(keys)
                .fetch_all(&mut *conn)
                .await?;
            conn.keep();
            let found: HashMap<TokenKey, TokenRecord> = rows
                .into_iter()
                .map(|row| TokenRecord::try_from(row).map(|t| (t.hash, t)))
                .collect::<Result<_, _>>()?;
            // The same token asked twice in one batch: both get the row.
            Ok(hashes.iter().map(|h| Ok(found.get(h).cloned())).collect())
        })
    })
}

fn insert_batch(held: Arc<HeldConnections>) -> BatchFn<Vec<TokenRecord>, ()> {
    Arc::new(move |requests: Vec<Vec<TokenRecord>>| {
        let held = held.clone();
        Box::pin(async move {
            let mut conn = held.lease().await?;
            let answers = match insert_rows(&mut *conn, requests.iter().flatten()).await {
                Ok(()) => requests.iter().map(|_| Ok(())).collect(),
                Err(e) if requests.len() == 1 => vec![Err(e)],
                Err(e) if e.is_unavailable() => return Err(e),
                // One request's rows spoiled the statement (a deleted client, say): try
                // each request alone, so only that one fails.
                Err(_) => {
                    let mut answers = Vec::with_capacity(requests.len());
                    for tokens in &requests {
                        answers.push(insert_rows(&mut *conn, tokens).await);
                    }
                    answers
                }
            };
            conn.keep();
            Ok(answers)
        })
    })
}

fn revoke_batch(
    held: Arc<HeldConnections>,
    feed: Arc<Feed>,
) -> BatchFn<(TokenKey, UnixTime), bool> {
    Arc::new(move |requests: Vec<(TokenKey, UnixTime)>| {
        let (held, feed) = (held.clone(), feed.clone());
        Box::pin(async move {
            let hashes: Vec<Vec<u8>> = requests
                .iter()
                .map(|(h, _)| h.as_bytes().to_vec())
                .collect();
            let now = requests
                .iter()
                .map(|(_, now)| *now)
                .max()
                .unwrap_or_default();
            let mut conn = held.lease().await?;
            let (changed, latest): (Vec<Vec<u8>>, Option<i64>) = sqlx::query_as(REVOKE_TOKENS)
                .bind(hashes)
                .bind(now.as_secs())
                .fetch_one(&mut *conn)
                .await?;
            conn.keep();
            feed.advance(latest.map(seq_of));
            let mut changed: std::collections::HashSet<Vec<u8>> = changed.into_iter().collect();
            // A token revoked twice in one batch changed once: the first request gets `true`.
            Ok(requests
                .iter()
                .map(|(h, _)| Ok(changed.remove(h.as_bytes().as_slice())))
                .collect())
        })
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// A fresh database, or `None` (skip) without a server, except in CI.
    async fn database() -> Option<String> {
        crate::testing::postgres_test_database()
            .await
            .expect("PostgreSQL is required in CI")
    }

    /// Only the batch connections plan generically; the general pool keeps the server's
    /// default, so the janitor's range deletes are planned for their actual bounds.
    #[tokio::test]
    async fn only_batch_connections_force_generic_plans() {
        let Some(url) = database().await else {
            return;
        };
        let mode = |pool: PgPool| async move {
            sqlx::query_scalar::<_, String>("SHOW plan_cache_mode")
                .fetch_one(&pool)
                .await
                .unwrap()
        };
        assert_eq!(mode(batch_pool(&url).unwrap()).await, "force_generic_plan");
        let general = pool_options(1).connect(&url).await.unwrap();
        assert_eq!(mode(general).await, "auto");
    }

    /// A lane keeps one backend from statement to statement (no connection goes back to
    /// the pool, so sqlx's ping on release never runs), and after its backend dies it fails
    /// one statement and then carries on with a new one.
    #[tokio::test]
    async fn a_lane_keeps_its_connection_and_replaces_a_dead_one() {
        let Some(url) = database().await else {
            return;
        };
        let held = HeldConnections::new(batch_pool(&url).unwrap(), 1);
        let backend = || async {
            let mut conn = held.lease().await?;
            let pid = sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
                .fetch_one(&mut *conn)
                .await?;
            conn.keep();
            Ok::<_, StoreError>(pid)
        };
        let first = backend().await.unwrap();
        for _ in 0..5 {
            assert_eq!(backend().await.unwrap(), first, "the same connection");
        }
        let admin = pool_options(1).connect(&url).await.unwrap();
        let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(first)
            .fetch_one(&admin)
            .await
            .unwrap();
        assert!(killed);
        let mut failed = 0;
        let mut next = None;
        for _ in 0..3 {
            match backend().await {
                Ok(pid) => {
                    next = Some(pid);
                    break;
                }
                Err(_) => failed += 1,
            }
        }
        assert!(
            failed <= 1,
            "{failed} statements failed after the backend died"
        );
        let next = next.expect("a new connection");
        assert_ne!(next, first);
        assert_eq!(backend().await.unwrap(), next, "and it is kept in turn");
    }

    /// More callers than connections, some of them giving theirs back to the pool: each
    /// waits for a permit, never for the pool (whose connections the kept ones hold), and no
    /// more backends are opened than there are permits. A starved caller would wait for the
    /// pool's 5-second acquire timeout, past this test's own limit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn more_callers_than_connections_all_get_one() {
        let Some(url) = database().await else {
            return;
        };
        let held = HeldConnections::new(pool_options(2).connect_lazy(&url).unwrap(), 2);
        let callers = (0..24).map(|i| {
            let held = held.clone();
            tokio::spawn(async move {
                let mut conn = held.lease().await.unwrap();
                let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid() FROM pg_sleep(0.005)")
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap();
                if i % 3 != 0 {
                    conn.keep();
                }
                pid
            })
        });
        let all = async {
            let mut backends = std::collections::HashSet::new();
            for caller in callers.collect::<Vec<_>>() {
                backends.insert(caller.await.unwrap());
            }
            backends
        };
        let backends = tokio::time::timeout(Duration::from_secs(4), all)
            .await
            .expect("a caller waited for the pool");
        assert!(
            (1..=2).contains(&backends.len()),
            "{} backends",
            backends.len()
        );
    }

    /// A caller that finds every connection leased waits as long as it would for the
    /// pool, then hears "unavailable" (a 503), instead of waiting for ever behind statements
    /// that hang.
    #[tokio::test]
    async fn a_lease_waits_no_longer_than_the_pool_would() {
        let Some(url) = database().await else {
            return;
        };
        let held = HeldConnections::new(pool_options(1).connect_lazy(&url).unwrap(), 1);
        let busy = held.lease().await.unwrap();
        let started = Instant::now();
        let waited = tokio::time::timeout(2 * ACQUIRE_TIMEOUT, held.lease())
            .await
            .expect("the lease waited past the pool's timeout");
        assert!(matches!(waited, Err(StoreError::Unavailable(_))));
        assert!(started.elapsed() >= ACQUIRE_TIMEOUT);
        busy.keep();
        held.lease().await.unwrap().keep();
    }
}
