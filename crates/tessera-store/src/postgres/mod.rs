//! PostgreSQL: any number of Tessera nodes on one database.
//!
//! No state lives in a node that another node needs: tokens, clients and (later) sessions
//! are rows, so a token issued on one node introspects on another and a revocation anywhere
//! is seen everywhere on the next lookup. Migrations take PostgreSQL's advisory lock (sqlx's
//! migrator does), so nodes started together apply them once. The janitor's deletes use
//! `FOR UPDATE SKIP LOCKED`, so janitors on several nodes never wait on each other.

mod batch;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgExecutor, PgPool, Postgres};
use tessera_core::client::Client;
use tessera_core::clock::UnixTime;
use tessera_core::grant::AuthorizationCodeRecord;
use tessera_core::scope::Scope;
use tessera_core::token::{TokenHash, TokenRecord};
use tessera_core::user::User;

use crate::rows::{self, TokenRow};
use crate::{Redemption, Session, StoreError};
use batch::{BatchFn, Batcher};

/// Batched statements in flight at once, per kind. One: the next batch fills while it runs,
/// and grows with the statement's latency (group commit regulates itself). Every extra lane
/// splits the same waiting requests into smaller batches, and the database pays its
/// per-statement cost more often: measured A/B on the benchmark's 2-core machine, 4 lanes
/// instead of 2 made introspection 13% and issuance 21% slower, and 1 instead of 2 cut the
/// database's CPU per request by a quarter (introspection and issuance alike).
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
/// cheaper than the generic one: 70-150 µs of planning for 15 µs of execution (EXPLAIN
/// ANALYZE on a 1M-token store). The generic plan is the same index scan. Not for the
/// general pool: there a generic plan for `expires_at <= $1 ... LIMIT $2` (the janitor)
/// could become a table scan.
const BATCH_PLAN_CACHE_MODE: &str = "SET plan_cache_mode = force_generic_plan";

/// Many token rows in one statement, each column an array (`unnest` zips them back into
/// rows). As atomic as a transaction of single inserts, in one round trip.
///
/// It also does the foreign key's work, once per statement instead of once per row (the
/// per-row referential check was 12% of the database's CPU when issuing tokens; migration
/// 0003 dropped it): it takes the key-share lock on each client named, as the check did, and
/// inserts nothing at all if one of them is missing (deleted), which the caller sees as a
/// row count of 0. The lock keeps a client from being deleted until this statement's
/// transaction ends; a deletion that got there first has committed by the time the lock is
/// granted, so its client is missing here ([`PgStore::delete_client`] does its part).
const INSERT_TOKENS: &str = "WITH new AS (SELECT * FROM unnest($1::bytea[], $2::int2[], \
    $3::text[], $4::text[], $5::text[], $6::int8[], $7::int8[], $8::int8[], $9::int8[], \
    $10::text[]) AS t (hash, kind, client_id, subject, scope, issued_at, expires_at, \
    revoked_at, rotated_at, family_id)), \
    owners AS (SELECT client_id FROM clients WHERE client_id = ANY($3) FOR KEY SHARE) \
    INSERT INTO tokens \
    (hash, kind, client_id, subject, scope, issued_at, expires_at, revoked_at, rotated_at, family_id) \
    SELECT * FROM new WHERE NOT EXISTS \
    (SELECT 1 FROM new n WHERE n.client_id NOT IN (SELECT client_id FROM owners))";
/// Deletes a client's tokens; run after the client's row is gone (see `delete_client`).
const DELETE_CLIENT_TOKENS: &str = "DELETE FROM tokens WHERE client_id = $1";
const SELECT_TOKENS: &str = "SELECT t.hash, t.kind, t.client_id, t.subject, t.scope, \
    t.issued_at, t.expires_at, t.revoked_at, t.rotated_at, t.family_id, u.username \
    FROM tokens t LEFT JOIN users u ON u.id = t.subject WHERE t.hash = ANY($1)";
/// One revocation time for the batch (the latest of its requests, all within the same
/// moment): an index scan by `ANY`, where a join with `unnest` may be planned as a scan.
const REVOKE_TOKENS: &str = "UPDATE tokens SET revoked_at = $2 \
    WHERE hash = ANY($1) AND revoked_at IS NULL RETURNING hash";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

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
}

/// The hot paths (introspection, issuance, revocation) go through [`Batcher`]s; everything
/// else is one statement or one transaction on the pool.
#[derive(Debug)]
pub struct PgStore {
    pool: PgPool,
    lookups: Batcher<TokenHash, Option<TokenRecord>>,
    inserts: Batcher<Vec<TokenRecord>, ()>,
    revocations: Batcher<(TokenHash, UnixTime), bool>,
}

impl PgStore {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = pool_options(POOL_SIZE).connect(url).await?;
        let batch_pool = batch_pool(url)?;
        let held = || HeldConnection::new(batch_pool.clone());
        Ok(Self {
            lookups: Batcher::start(BATCH_LANES, find_batch(held())),
            inserts: Batcher::start(BATCH_LANES, insert_batch(held())),
            revocations: Batcher::start(BATCH_LANES, revoke_batch(held())),
            pool,
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

/// A statement run on a [`HeldConnection`], borrowing the connection while it runs.
type Statement<'c, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'c>>;

/// A batch lane's connection, kept from one statement to the next.
///
/// sqlx 0.9 tests every connection given back to its pool with a round trip
/// (`PoolConnection::return_to_pool` pings: a `Sync` and its `ReadyForQuery`), whatever
/// `test_before_acquire` says. A lane that borrowed a connection for each statement paid
/// that round trip for every batch: twice the messages, and a wake-up of the database's
/// backend each time. A lane runs one statement at a time, so it keeps its connection;
/// after a failed statement it gives it back (where the pool's test closes it if it is
/// broken) and takes a fresh one for the next batch.
struct HeldConnection {
    pool: PgPool,
    held: tokio::sync::Mutex<Option<PoolConnection<Postgres>>>,
}

impl HeldConnection {
    fn new(pool: PgPool) -> Arc<Self> {
        Arc::new(Self {
            pool,
            held: tokio::sync::Mutex::new(None),
        })
    }

    async fn run<T>(
        &self,
        statement: impl for<'c> FnOnce(&'c mut PgConnection) -> Statement<'c, T>,
    ) -> Result<T, StoreError> {
        let mut held = self.held.lock().await;
        let connection = match held.take() {
            Some(connection) => connection,
            None => self.pool.acquire().await?,
        };
        let connection = held.insert(connection);
        let outcome = statement(connection).await;
        if outcome.is_err() {
            held.take();
        }
        outcome
    }
}

fn pool_options(size: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(Duration::from_secs(5))
        // A dead connection shows itself as an error of the next statement, which is
        // answered 503 and drops the connection; pinging first would cost a round trip per
        // statement to learn the same thing. (sqlx still pings a connection given back to
        // the pool; the batch lanes keep theirs, see `HeldConnection`.)
        .test_before_acquire(false)
}

impl PgStore {
    /// Runs each statement with `key` as `$1`, in order, in one transaction; returns each
    /// one's row count.
    async fn execute_on_key<const N: usize>(
        &self,
        statements: [&'static str; N],
        key: &str,
    ) -> Result<[u64; N], StoreError> {
        let (pool, key) = (self.pool.clone(), key.to_owned());
        detached(async move {
            let mut tx = pool.begin().await?;
            let mut counts = [0; N];
            for (sql, count) in statements.into_iter().zip(&mut counts) {
                *count = sqlx::query(sql)
                    .bind(&key)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
            tx.commit().await?;
            Ok(counts)
        })
        .await
    }
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
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_client(&self, client: &Client) -> Result<(), StoreError> {
        let cols = rows::ClientColumns::of(client);
        sqlx::query(rows::INSERT_CLIENT)
            .bind(&client.id)
            .bind(&client.name)
            .bind(&client.secret_hash)
            .bind(client.auth_method.as_str())
            .bind(&cols.grant_types)
            .bind(&cols.scope)
            .bind(&cols.redirect_uris)
            .bind(client.skip_consent)
            .bind(client.created_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn get_client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        if !rows::storable(client_id) {
            return Ok(None);
        }
        sqlx::query_as::<_, rows::ClientRow>(rows::SELECT_CLIENT)
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await?
            .map(Client::try_from)
            .transpose()
    }

    async fn list_clients(&self) -> Result<Vec<Client>, StoreError> {
        sqlx::query_as::<_, rows::ClientRow>(rows::LIST_CLIENTS)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(Client::try_from)
            .collect()
    }

    async fn delete_client(&self, client_id: &str) -> Result<bool, StoreError> {
        if !rows::storable(client_id) {
            return Ok(false);
        }
        // Tokens have no foreign key here (see INSERT_TOKENS), so they go explicitly, and
        // after the client: deleting its row waits for any insert that holds the client's
        // key-share lock to commit, and under READ COMMITTED the second statement's snapshot
        // then holds those tokens too. The other order could miss them.
        let [clients, _tokens] = self
            .execute_on_key([rows::DELETE_CLIENT, DELETE_CLIENT_TOKENS], client_id)
            .await?;
        Ok(clients > 0)
    }

    async fn create_user(&self, user: &User) -> Result<(), StoreError> {
        sqlx::query(rows::INSERT_USER)
            .bind(&user.id)
            .bind(user.username.as_str())
            .bind(&user.password_hash)
            .bind(user.created_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn get_user_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
        if !rows::storable(username) {
            return Ok(None);
        }
        sqlx::query_as::<_, rows::UserRow>(rows::SELECT_USER_BY_NAME)
            .bind(username)
            .fetch_optional(&self.pool)
            .await?
            .map(User::try_from)
            .transpose()
    }

    async fn delete_user(&self, username: &str) -> Result<bool, StoreError> {
        if !rows::storable(username) {
            return Ok(false);
        }
        // Tokens name their user in `subject` without a foreign key (client tokens
        // have none), so they go explicitly; the rest cascades.
        let [_tokens, users] = self
            .execute_on_key([rows::DELETE_USER_TOKENS, rows::DELETE_USER], username)
            .await?;
        Ok(users > 0)
    }

    async fn set_password(&self, username: &str, password_hash: &str) -> Result<bool, StoreError> {
        if !rows::storable(username) {
            return Ok(false);
        }
        let (pool, username, password_hash) = (
            self.pool.clone(),
            username.to_owned(),
            password_hash.to_owned(),
        );
        detached(async move {
            let mut tx = pool.begin().await?;
            let done = sqlx::query(rows::SET_PASSWORD)
                .bind(&username)
                .bind(&password_hash)
                .execute(&mut *tx)
                .await?;
            sqlx::query(rows::DELETE_USER_SESSIONS)
                .bind(&username)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }

    async fn insert_tokens(&self, tokens: &[TokenRecord]) -> Result<(), StoreError> {
        self.inserts.submit(tokens.to_vec()).await
    }

    async fn find_token(&self, hash: &TokenHash) -> Result<Option<TokenRecord>, StoreError> {
        self.lookups.submit(*hash).await
    }

    async fn revoke_token(&self, hash: &TokenHash, now: UnixTime) -> Result<bool, StoreError> {
        self.revocations.submit((*hash, now)).await
    }

    async fn revoke_family(&self, family_id: &str, now: UnixTime) -> Result<u64, StoreError> {
        let done = sqlx::query(rows::REVOKE_FAMILY)
            .bind(family_id)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn rotate_refresh_token(
        &self,
        hash: &TokenHash,
        now: UnixTime,
        successors: &[TokenRecord],
    ) -> Result<bool, StoreError> {
        let (pool, hash, successors) = (self.pool.clone(), *hash, successors.to_vec());
        detached(async move {
            let mut tx = pool.begin().await?;
            let claimed = sqlx::query(rows::ROTATE_REFRESH)
                .bind(hash.as_bytes().as_slice())
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            if !claimed {
                tx.rollback().await?;
                return Ok(false);
            }
            insert_rows(&mut *tx, &successors).await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    async fn insert_code(&self, code: &AuthorizationCodeRecord) -> Result<(), StoreError> {
        sqlx::query(rows::INSERT_CODE)
            .bind(code.hash.as_bytes().as_slice())
            .bind(&code.client_id)
            .bind(&code.user_id)
            .bind(&code.redirect_uri)
            .bind(code.redirect_uri_given)
            .bind(code.scope.to_string())
            .bind(&code.code_challenge)
            .bind(code.issued_at)
            .bind(code.expires_at)
            .bind(code.redeemed_at)
            .bind(&code.family_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn find_code(
        &self,
        hash: &TokenHash,
    ) -> Result<Option<AuthorizationCodeRecord>, StoreError> {
        sqlx::query_as::<_, rows::CodeRow>(rows::SELECT_CODE)
            .bind(hash.as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await?
            .map(AuthorizationCodeRecord::try_from)
            .transpose()
    }

    async fn redeem_code(
        &self,
        hash: &TokenHash,
        now: UnixTime,
        tokens: &[TokenRecord],
    ) -> Result<Redemption, StoreError> {
        let (pool, hash, tokens) = (self.pool.clone(), *hash, tokens.to_vec());
        detached(async move {
            let mut tx = pool.begin().await?;
            let claimed = sqlx::query(rows::REDEEM_CODE)
                .bind(hash.as_bytes().as_slice())
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            if claimed {
                insert_rows(&mut *tx, &tokens).await?;
                tx.commit().await?;
                return Ok(Redemption::Redeemed);
            }
            let family: Option<String> = sqlx::query_scalar(rows::CODE_FAMILY)
                .bind(hash.as_bytes().as_slice())
                .fetch_optional(&mut *tx)
                .await?;
            tx.rollback().await?;
            Ok(match family {
                Some(family_id) => Redemption::AlreadyRedeemed { family_id },
                None => Redemption::NotFound,
            })
        })
        .await
    }

    async fn create_session(&self, session: &Session) -> Result<(), StoreError> {
        sqlx::query(rows::INSERT_SESSION)
            .bind(session.hash.as_bytes().as_slice())
            .bind(&session.user_id)
            .bind(session.created_at)
            .bind(session.expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn find_session_user(
        &self,
        hash: &TokenHash,
        now: UnixTime,
    ) -> Result<Option<User>, StoreError> {
        sqlx::query_as::<_, rows::UserRow>(rows::SELECT_SESSION_USER)
            .bind(hash.as_bytes().as_slice())
            .bind(now)
            .fetch_optional(&self.pool)
            .await?
            .map(User::try_from)
            .transpose()
    }

    async fn delete_session(&self, hash: &TokenHash) -> Result<(), StoreError> {
        sqlx::query(rows::DELETE_SESSION)
            .bind(hash.as_bytes().as_slice())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn get_consent(
        &self,
        user_id: &str,
        client_id: &str,
    ) -> Result<Option<Scope>, StoreError> {
        let scope: Option<String> = sqlx::query_scalar(rows::SELECT_CONSENT)
            .bind(user_id)
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await?;
        rows::consent_scope(scope)
    }

    async fn put_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scope: &Scope,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        sqlx::query(rows::UPSERT_CONSENT)
            .bind(user_id)
            .bind(client_id)
            .bind(scope.to_string())
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn purge_expired(&self, now: UnixTime, batch: u32) -> Result<u64, StoreError> {
        let mut most = 0;
        // (statement, whether it takes `now` before the batch size)
        for (sql, by_time) in [
            (dialect::PURGE_EXPIRED_TOKENS, true),
            (dialect::PURGE_REVOKED_TOKENS, false),
            (dialect::PURGE_CODES, true),
            (dialect::PURGE_SESSIONS, true),
        ] {
            let query = sqlx::query(sql);
            let query = if by_time { query.bind(now) } else { query };
            let done = query.bind(i64::from(batch)).execute(&self.pool).await?;
            most = most.max(done.rows_affected());
        }
        Ok(most)
    }
}

/// Stores `tokens` in one statement: all of them or none (then `MissingReference`: a client
/// of one of them does not exist).
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
    for t in tokens {
        hashes.push(t.hash.as_bytes().to_vec());
        kinds.push(rows::kind_code(t.kind));
        clients.push(t.client_id.as_str());
        subjects.push(t.subject.as_deref());
        scopes.push(t.scope.to_string());
        issued.push(t.issued_at);
        expires.push(t.expires_at);
        revoked.push(t.revoked_at);
        rotated.push(t.rotated_at);
        families.push(t.family_id.as_deref());
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
        .execute(executor)
        .await?
        .rows_affected();
    if inserted == count {
        Ok(())
    } else {
        Err(StoreError::MissingReference)
    }
}

fn find_batch(held: Arc<HeldConnection>) -> BatchFn<TokenHash, Option<TokenRecord>> {
    Arc::new(move |hashes: Vec<TokenHash>| {
        let held = held.clone();
        Box::pin(async move {
            let keys: Vec<Vec<u8>> = hashes.iter().map(|h| h.as_bytes().to_vec()).collect();
            let rows = held
                .run(|c| {
                    Box::pin(async move {
                        Ok(sqlx::query_as::<_, TokenRow>(SELECT_TOKENS)
                            .bind(keys)
                            .fetch_all(c)
                            .await?)
                    })
                })
                .await?;
            let found: HashMap<TokenHash, TokenRecord> = rows
                .into_iter()
                .map(|row| TokenRecord::try_from(row).map(|t| (t.hash, t)))
                .collect::<Result<_, _>>()?;
            // The same token asked twice in one batch: both get the row.
            Ok(hashes.iter().map(|h| Ok(found.get(h).cloned())).collect())
        })
    })
}

fn insert_batch(held: Arc<HeldConnection>) -> BatchFn<Vec<TokenRecord>, ()> {
    Arc::new(move |requests: Vec<Vec<TokenRecord>>| {
        let held = held.clone();
        Box::pin(async move {
            held.run(|c| {
                Box::pin(async move {
                    match insert_rows(&mut *c, requests.iter().flatten()).await {
                        Ok(()) => Ok(requests.iter().map(|_| Ok(())).collect()),
                        Err(e) if requests.len() == 1 => Ok(vec![Err(e)]),
                        Err(e) if e.is_unavailable() => Err(e),
                        // One request's rows spoiled the statement (a deleted client, say):
                        // try each request alone, so only that one fails.
                        Err(_) => {
                            let mut answers = Vec::with_capacity(requests.len());
                            for tokens in &requests {
                                answers.push(insert_rows(&mut *c, tokens).await);
                            }
                            Ok(answers)
                        }
                    }
                })
            })
            .await
        })
    })
}

fn revoke_batch(held: Arc<HeldConnection>) -> BatchFn<(TokenHash, UnixTime), bool> {
    Arc::new(move |requests: Vec<(TokenHash, UnixTime)>| {
        let held = held.clone();
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
            let mut changed: std::collections::HashSet<Vec<u8>> = held
                .run(|c| {
                    Box::pin(async move {
                        Ok(sqlx::query_scalar::<_, Vec<u8>>(REVOKE_TOKENS)
                            .bind(hashes)
                            .bind(now)
                            .fetch_all(c)
                            .await?)
                    })
                })
                .await?
                .into_iter()
                .collect();
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

    /// Only the batch connections plan generically; the general pool keeps the server's
    /// default, so the janitor's range deletes are planned for their actual bounds.
    #[tokio::test]
    async fn only_batch_connections_force_generic_plans() {
        let Some(url) = crate::testing::postgres_test_database()
            .await
            .expect("PostgreSQL is required in CI")
        else {
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
        let Some(url) = crate::testing::postgres_test_database()
            .await
            .expect("PostgreSQL is required in CI")
        else {
            return;
        };
        let held = HeldConnection::new(batch_pool(&url).unwrap());
        let backend = || {
            held.run(|c| {
                Box::pin(async move {
                    Ok(sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
                        .fetch_one(c)
                        .await?)
                })
            })
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
}
