//! The embedded default: one SQLite file.
//!
//! WAL mode with `synchronous=FULL`: every acknowledged commit is on disk before the answer
//! leaves, so a crash or power loss loses nothing that a client was told about.
//!
//! The shape follows from how SQLite works (docs/BENCHMARKS.md, "Bounds"):
//! - reads are point lookups that run inline on the caller's thread ([`readers`]), on
//!   read-only connections that never wait for the writer;
//! - every write goes to one writer thread that commits whatever is queued in one
//!   transaction ([`writer`]): one fsync per batch instead of one per request, and no two
//!   connections of ours ever compete for SQLite's write lock.
//!
//! Migrations still run through sqlx's migrator, so the schema history table is the same as
//! PostgreSQL's and as earlier versions wrote it.

mod checkpointer;
mod readers;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, ToSql, params};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
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

use crate::feed::{self, Feed};
use crate::rows::{
    self, AdminTokenRow, AuditEventRow, ClientColumns, ClientRow, CodeRow, Ended, FamilyRow,
    ProfileRow, ResourceRow, RevocationEventRow, SigningKeyRow, TokenRow, UserProfileRow, UserRow,
    seq_of, storable, stored_seq,
};
use crate::{
    ClientOidc, FamilyOwner, Redemption, RevocationEvent, RevocationWindow, Session, StoreError,
    StoredSigningKey, TokenFamily,
};
use checkpointer::{Checkpointer, RestartRequest};
use readers::{Commits, Readers};
use writer::Writer;

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Page cache sizes, in KiB (SQLite's negative `cache_size`). Together they bound the
/// store's share of the server's memory: the file itself stays on disk (and in the OS page
/// cache, which is not ours).
///
/// The writer's is small on purpose: it holds what every insert walks (inner B-tree pages,
/// the growing ends of table and indexes) and the batch's dirty pages. A larger one costs at
/// every commit that split a B-tree, when SQLite scans its whole cache to drop pages parked
/// past the end of the file (docs/BENCHMARKS.md, "Bounds").
const WRITER_CACHE_KIB: i64 = 2 * 1024;
const READER_CACHE_KIB: i64 = 8 * 1024;

// Expired and revoked tokens in two statements, each on its own index: with an `OR`,
// SQLite scans the whole table from its start for every batch.
const PURGE_EXPIRED_TOKENS: &str = "DELETE FROM tokens WHERE hash IN (SELECT hash \
    FROM tokens WHERE expires_at <= ?1 LIMIT ?2)";
const PURGE_REVOKED_TOKENS: &str = "DELETE FROM tokens WHERE hash IN (SELECT hash \
    FROM tokens WHERE revoked_at IS NOT NULL LIMIT ?1)";
const PURGE_CODES: &str = "DELETE FROM authorization_codes WHERE hash IN (SELECT hash \
    FROM authorization_codes WHERE expires_at <= ?1 LIMIT ?2)";
const PURGE_SESSIONS: &str = "DELETE FROM sessions WHERE hash IN (SELECT hash \
    FROM sessions WHERE expires_at <= ?1 LIMIT ?2)";
const PURGE_INITIAL_ACCESS_TOKENS: &str = "DELETE FROM initial_access_tokens WHERE hash IN \
    (SELECT hash FROM initial_access_tokens WHERE expires_at <= ?1 LIMIT ?2)";
const APPEND_REVOCATION_EVENT: &str =
    "INSERT INTO revocation_events (token_key, audience, created_at) VALUES (?1, ?2, ?3)";

/// The oldest audit events first, by the time index.
const PURGE_AUDIT_EVENTS: &str = "DELETE FROM audit_events WHERE id IN (SELECT id \
    FROM audit_events WHERE at < ?1 ORDER BY at LIMIT ?2)";
static INSERT_AUDIT_EVENT: LazyLock<String> = LazyLock::new(|| sql(rows::INSERT_AUDIT_EVENT));

/// How often a subscribed store looks for events that other processes (the command line)
/// appended; its own are announced at once.
const OTHER_WRITERS_POLL: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    readers: Arc<Readers>,
    writer: Writer,
    feed: Feed,
    _checkpointer: Checkpointer,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file a `sqlite://PATH` URL names.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let path = path_of(url)?;
        let writer_conn = open(&path, OpenFlags::SQLITE_OPEN_CREATE)?;
        // Persistent in the file: set once by the first opener, kept by every later one.
        let mode: String =
            writer_conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Config(format!(
                "SQLite refused WAL mode for {} (journal_mode is {mode})",
                path.display()
            )));
        }
        writer_conn.pragma_update(None, "synchronous", "FULL")?;
        writer_conn.pragma_update(None, "foreign_keys", "ON")?;
        writer_conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        // Checkpoints are the checkpointer thread's job, never the writer's.
        writer_conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        // One per async worker thread (one per core), and one spare: a read holds its
        // connection for microseconds, so more would only hold more cache.
        let parallelism = std::thread::available_parallelism().map_or(1, usize::from);
        let readers = (0..parallelism + 1)
            .map(|_| {
                let conn = open(&path, OpenFlags::empty())?;
                conn.pragma_update(None, "query_only", "ON")?;
                conn.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
                Ok(conn)
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let restart = RestartRequest::default();
        let commits = Commits::default();
        let readers = Arc::new(Readers::new(readers, commits.clone())?);
        let checkpoint_conn = open(&path, OpenFlags::empty())?;
        Ok(Self {
            _checkpointer: Checkpointer::start(
                checkpoint_conn,
                &path,
                restart.clone(),
                readers.clone(),
            )?,
            writer: Writer::start(writer_conn, restart, commits, readers.clone())?,
            readers,
            feed: Feed::new(),
            path,
        })
    }

    fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.readers.read(read)
    }

    /// Runs `op`, which ends tokens, in the writer's next transaction; once that is committed,
    /// wakes the readers of revocation events if `op` appended any.
    async fn end_tokens<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> Result<(T, Ended), StoreError> + Send + 'static,
    {
        let (answer, ended) = self.writer.write(op).await?;
        self.feed.advance(ended.latest_event);
        Ok(answer)
    }
}

/// Runs `statement`, one of those that end tokens (see `rows::REVOKE_TOKEN`), with `key` and
/// `now`, and appends a revocation event for each live access token it ended.
fn end(
    conn: &Connection,
    statement: &str,
    key: &dyn ToSql,
    now: UnixTime,
) -> Result<Ended, StoreError> {
    let ended: Vec<(Vec<u8>, String, bool)> = conn
        .prepare_cached(statement)?
        .query_map(params![key, now.as_secs()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut append = conn.prepare_cached(APPEND_REVOCATION_EVENT)?;
    let mut done = Ended::default();
    for (hash, audience, live) in ended {
        done.count += 1;
        if live {
            append.execute(params![hash, audience, now.as_secs()])?;
            done.latest_event = Some(seq_of(conn.last_insert_rowid()));
        }
    }
    Ok(done)
}

/// Reads the revocation window.
fn window(conn: &Connection) -> Result<RevocationWindow, StoreError> {
    let (horizon, latest) = conn
        .prepare_cached(&sql(rows::REVOCATION_WINDOW))?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows::window(horizon, latest))
}

/// Advances `latest` with what other processes appended, until the store is dropped.
async fn watch_other_writers(readers: Arc<Readers>, latest: tokio::sync::watch::Sender<u64>) {
    loop {
        match readers.read(window) {
            Ok(window) => feed::advance(&latest, window.latest),
            Err(e) => tracing::debug!(error = %e, "revocation events not read"),
        }
        tokio::time::sleep(OTHER_WRITERS_POLL).await;
    }
}

/// `sqlite://PATH` or `sqlite:PATH`; an in-memory database is refused, since the writer and
/// the readers must share one database.
fn path_of(url: &str) -> Result<PathBuf, StoreError> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or_default();
    if path.is_empty() || path.contains('?') || path.contains(":memory:") {
        return Err(StoreError::Config(format!(
            "bad SQLite URL `{url}`: use sqlite://PATH (a file; no options, no :memory:)"
        )));
    }
    Ok(PathBuf::from(path))
}

fn open(path: &Path, extra: OpenFlags) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | extra;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| {
        StoreError::Unavailable(format!("cannot open {}: {e}", path.display()).into())
    })?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// The shared SQL numbers its parameters `$1`, `$2`, ... SQLite reads `$1` as a *named*
/// parameter and numbers names by first appearance, so `SET a = $2 WHERE b = $1` would bind
/// backwards; `?1`, `?2` are positional.
fn sql(shared: &str) -> String {
    shared.replace('$', "?")
}

/// The statements run for nearly every request, translated once rather than per call.
static SELECT_TOKEN: LazyLock<String> = LazyLock::new(|| sql(rows::SELECT_TOKEN));
static INSERT_TOKEN: LazyLock<String> = LazyLock::new(|| sql(rows::INSERT_TOKEN));
static REVOKE_TOKEN: LazyLock<String> = LazyLock::new(|| sql(rows::REVOKE_TOKEN));

/// Runs a one-parameter statement; whether it changed any row.
fn changed_any(
    conn: &Connection,
    statement: &str,
    key: &dyn rusqlite::ToSql,
) -> Result<bool, StoreError> {
    Ok(conn.prepare_cached(&sql(statement))?.execute([key])? > 0)
}

fn client_row(r: &Row<'_>) -> rusqlite::Result<ClientRow> {
    Ok(ClientRow {
        client_id: r.get(0)?,
        name: r.get(1)?,
        secret_hash: r.get(2)?,
        auth_method: r.get(3)?,
        grant_types: r.get(4)?,
        scope: r.get(5)?,
        redirect_uris: r.get(6)?,
        skip_consent: r.get(7)?,
        created_at: r.get(8)?,
        resource: r.get(9)?,
        self_registered: r.get(10)?,
    })
}

fn resource_row(r: &Row<'_>) -> rusqlite::Result<ResourceRow> {
    Ok(ResourceRow {
        uri: r.get(0)?,
        client_id: r.get(1)?,
        name: r.get(2)?,
        scope: r.get(3)?,
        created_at: r.get(4)?,
    })
}

/// Inserts a client; `registration_token` is the key of a self-registered client's token.
fn insert_client_row(
    conn: &Connection,
    client: &Client,
    registration_token: Option<&TokenKey>,
) -> Result<(), StoreError> {
    let cols = ClientColumns::of(client);
    conn.prepare_cached(&sql(rows::INSERT_CLIENT))?
        .execute(params![
            client.id.as_str(),
            client.name,
            client.secret_hash,
            client.auth_method.as_str(),
            cols.grant_types,
            cols.scope,
            cols.redirect_uris,
            client.skip_consent,
            client.created_at.as_secs(),
            client.self_registered,
            registration_token.map(|k| k.as_bytes().as_slice()),
        ])?;
    Ok(())
}

fn token_row(r: &Row<'_>) -> rusqlite::Result<TokenRow> {
    Ok(TokenRow {
        hash: r.get(0)?,
        kind: r.get(1)?,
        client_id: r.get(2)?,
        subject: r.get(3)?,
        scope: r.get(4)?,
        issued_at: r.get(5)?,
        expires_at: r.get(6)?,
        revoked_at: r.get(7)?,
        rotated_at: r.get(8)?,
        family_id: r.get(9)?,
        audience: r.get(10)?,
        username: r.get(11)?,
    })
}

fn user_row(r: &Row<'_>) -> rusqlite::Result<UserRow> {
    Ok(UserRow {
        id: r.get(0)?,
        username: r.get(1)?,
        password_hash: r.get(2)?,
        created_at: r.get(3)?,
    })
}

fn code_row(r: &Row<'_>) -> rusqlite::Result<CodeRow> {
    Ok(CodeRow {
        hash: r.get(0)?,
        client_id: r.get(1)?,
        user_id: r.get(2)?,
        redirect_uri: r.get(3)?,
        redirect_uri_given: r.get(4)?,
        scope: r.get(5)?,
        code_challenge: r.get(6)?,
        issued_at: r.get(7)?,
        expires_at: r.get(8)?,
        redeemed_at: r.get(9)?,
        family_id: r.get(10)?,
        audience: r.get(11)?,
        nonce: r.get(12)?,
        auth_time: r.get(13)?,
    })
}

fn admin_token_row(r: &Row<'_>) -> rusqlite::Result<AdminTokenRow> {
    Ok(AdminTokenRow {
        id: r.get(0)?,
        token_key: r.get(1)?,
        created_at: r.get(2)?,
        expires_at: r.get(3)?,
        revoked_at: r.get(4)?,
    })
}

fn signing_key_row(r: &Row<'_>) -> rusqlite::Result<SigningKeyRow> {
    Ok(SigningKeyRow {
        kid: r.get(0)?,
        alg: r.get(1)?,
        public_jwk: r.get(2)?,
        encrypted_private_key: r.get(3)?,
        created_at: r.get(4)?,
        retired_at: r.get(5)?,
    })
}

fn insert_signing_key_row(conn: &Connection, key: &StoredSigningKey) -> Result<(), StoreError> {
    conn.prepare_cached(&sql(rows::INSERT_SIGNING_KEY))?
        .execute(params![
            key.kid,
            key.alg,
            key.public_jwk,
            key.encrypted_private_key,
            key.created_at.as_secs(),
            key.retired_at.map(UnixTime::as_secs),
        ])?;
    Ok(())
}

fn insert_token_rows(conn: &Connection, tokens: &[TokenRecord]) -> Result<(), StoreError> {
    let mut insert = conn.prepare_cached(&INSERT_TOKEN)?;
    for t in tokens {
        insert.execute(params![
            t.hash.as_bytes().as_slice(),
            rows::kind_code(t.kind),
            t.client_id.as_str(),
            t.subject.as_deref(),
            t.scope.to_string(),
            t.issued_at.as_secs(),
            t.expires_at.as_secs(),
            t.revoked_at.map(UnixTime::as_secs),
            t.rotated_at.map(UnixTime::as_secs),
            t.family_id.as_deref(),
            t.audience.to_string(),
        ])?;
    }
    Ok(())
}

/// Whether a `SELECT COUNT(*)` of one key finds any row.
fn exists(conn: &Connection, statement: &str, key: &str) -> Result<bool, StoreError> {
    let count: i64 = conn
        .prepare_cached(&sql(statement))?
        .query_row([key], |r| r.get(0))?;
    Ok(count > 0)
}

/// Runs each statement with `username` as `$1`; returns the last one's row count.
fn execute_on_username(
    conn: &Connection,
    statements: &[&str],
    username: &str,
) -> Result<u64, StoreError> {
    let mut last = 0;
    for statement in statements {
        last = conn.prepare_cached(&sql(statement))?.execute([username])?;
    }
    Ok(last as u64)
}

#[async_trait::async_trait]
impl crate::Store for SqliteStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(&self.path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        // A pool of one, not a bare connection: the migrator's `Acquire` bound on
        // `&mut SqliteConnection` is not general enough inside an `async_trait` method.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        let migrated = crate::migrations::sqlite().run(&pool).await;
        pool.close().await;
        // Snapshots taken before the migration predate its tables: start afresh.
        self.readers.close_all();
        migrated?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached("SELECT 1")?
                .query_row([], |r| r.get::<_, i64>(0))?)
        })?;
        Ok(())
    }

    async fn create_client(&self, client: &Client) -> Result<(), StoreError> {
        let client = client.clone();
        self.writer
            .write(move |c| insert_client_row(c, &client, None))
            .await
    }

    async fn create_registration(&self, registration: &Registration) -> Result<(), StoreError> {
        let registration = registration.clone();
        self.writer
            .write(move |c| {
                insert_client_row(c, &registration.client, Some(&registration.access_token))
            })
            .await
    }

    async fn find_registration(&self, client_id: &str) -> Result<Option<Registration>, StoreError> {
        if !storable(client_id) {
            return Ok(None);
        }
        self.read(|c| {
            c.prepare_cached(&sql(rows::SELECT_REGISTRATION))?
                .query_row([client_id], |r| {
                    Ok((client_row(r)?, r.get::<_, Vec<u8>>(11)?))
                })
                .optional()?
                .map(|(client, token)| rows::registration(client, &token))
                .transpose()
        })
    }

    async fn put_document_client(&self, client: &Client) -> Result<bool, StoreError> {
        let client = client.clone();
        self.writer
            .write(move |c| {
                let cols = ClientColumns::of(&client);
                let changed =
                    c.prepare_cached(&sql(rows::PUT_DOCUMENT_CLIENT))?
                        .execute(params![
                            client.id.as_str(),
                            client.name,
                            cols.grant_types,
                            cols.scope,
                            cols.redirect_uris,
                            false,
                            client.created_at.as_secs(),
                            true,
                        ])?;
                Ok(changed > 0)
            })
            .await
    }

    async fn update_registration(&self, client: &Client) -> Result<bool, StoreError> {
        let client = client.clone();
        self.writer
            .write(move |c| {
                let cols = ClientColumns::of(&client);
                let changed =
                    c.prepare_cached(&sql(rows::UPDATE_REGISTRATION))?
                        .execute(params![
                            client.id.as_str(),
                            client.name,
                            client.auth_method.as_str(),
                            cols.grant_types,
                            cols.scope,
                            cols.redirect_uris,
                        ])?;
                Ok(changed > 0)
            })
            .await
    }

    async fn create_initial_access_token(
        &self,
        token: &InitialAccessTokenRecord,
    ) -> Result<(), StoreError> {
        let token = token.clone();
        self.writer
            .write(move |c| {
                c.prepare_cached(&sql(rows::INSERT_INITIAL_ACCESS_TOKEN))?
                    .execute(params![
                        token.hash.as_bytes().as_slice(),
                        token.created_at.as_secs(),
                        token.expires_at.as_secs(),
                    ])?;
                Ok(())
            })
            .await
    }

    async fn initial_access_token_is_live(
        &self,
        hash: &TokenKey,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        self.read(|c| {
            let count: i64 = c
                .prepare_cached(&sql(rows::INITIAL_ACCESS_TOKEN_LIVE))?
                .query_row(params![hash.as_bytes().as_slice(), now.as_secs()], |r| {
                    r.get(0)
                })?;
            Ok(count > 0)
        })
    }

    async fn create_resource(
        &self,
        resource: &Resource,
        client: &Client,
    ) -> Result<(), StoreError> {
        let (resource, client) = (resource.clone(), client.clone());
        // The writer runs each write in one transaction: both rows or neither.
        self.writer
            .write(move |c| {
                insert_client_row(c, &client, None)?;
                c.prepare_cached(&sql(rows::INSERT_RESOURCE))?
                    .execute(params![
                        resource.uri.as_str(),
                        resource.client_id.as_str(),
                        resource.name,
                        resource.scope.to_string(),
                        resource.created_at.as_secs(),
                    ])?;
                Ok(())
            })
            .await
    }

    async fn list_resources(&self) -> Result<Vec<Resource>, StoreError> {
        self.read(|c| {
            let mut statement = c.prepare_cached(&sql(rows::LIST_RESOURCES))?;
            let rows = statement.query_map([], resource_row)?;
            rows.map(|row| Resource::try_from(row?)).collect()
        })
    }

    async fn delete_resource(&self, uri: &ResourceUri, now: UnixTime) -> Result<bool, StoreError> {
        let client_id: Option<String> = self.read(|c| {
            Ok(c.prepare_cached(&sql(rows::RESOURCE_CLIENT))?
                .query_row([uri.as_str()], |r| r.get(0))
                .optional()?)
        })?;
        match client_id {
            Some(client_id) => self.delete_client(&client_id, now).await,
            None => Ok(false),
        }
    }

    async fn get_client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        if !storable(client_id) {
            return Ok(None);
        }
        self.read(|c| {
            c.prepare_cached(&sql(rows::SELECT_CLIENT))?
                .query_row([client_id], client_row)
                .optional()?
                .map(Client::try_from)
                .transpose()
        })
    }

    async fn list_clients(&self) -> Result<Vec<Client>, StoreError> {
        self.read(|c| {
            let mut statement = c.prepare_cached(&sql(rows::LIST_CLIENTS))?;
            let rows = statement.query_map([], client_row)?;
            rows.map(|row| Client::try_from(row?)).collect()
        })
    }

    async fn delete_client(&self, client_id: &str, now: UnixTime) -> Result<bool, StoreError> {
        if !storable(client_id) {
            return Ok(false);
        }
        let client_id = client_id.to_owned();
        // The tokens would go with the client (a foreign key), but unseen: first, for their
        // events.
        self.end_tokens(move |c| {
            let ended = end(c, &sql(rows::DELETE_CLIENT_TOKENS), &client_id, now)?;
            Ok((changed_any(c, rows::DELETE_CLIENT, &client_id)?, ended))
        })
        .await
    }

    async fn revoke_client_tokens(
        &self,
        client_id: &str,
        now: UnixTime,
    ) -> Result<Option<u64>, StoreError> {
        if !storable(client_id) {
            return Ok(None);
        }
        let client_id = client_id.to_owned();
        self.end_tokens(move |c| {
            if !exists(c, rows::CLIENT_EXISTS, &client_id)? {
                return Ok((None, Ended::default()));
            }
            let ended = end(c, &sql(rows::REVOKE_CLIENT_TOKENS), &client_id, now)?;
            Ok((Some(ended.count), ended))
        })
        .await
    }

    async fn create_user(&self, user: &User) -> Result<(), StoreError> {
        let user = user.clone();
        self.writer
            .write(move |c| {
                c.prepare_cached(&sql(rows::INSERT_USER))?.execute(params![
                    user.id.as_str(),
                    user.username.as_str(),
                    user.password_hash,
                    user.created_at.as_secs(),
                ])?;
                Ok(())
            })
            .await
    }

    async fn get_user_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
        if !storable(username) {
            return Ok(None);
        }
        self.read(|c| {
            c.prepare_cached(&sql(rows::SELECT_USER_BY_NAME))?
                .query_row([username], user_row)
                .optional()?
                .map(User::try_from)
                .transpose()
        })
    }

    async fn delete_user(&self, username: &str, now: UnixTime) -> Result<bool, StoreError> {
        if !storable(username) {
            return Ok(false);
        }
        let username = username.to_owned();
        // Tokens name their user in `subject` without a foreign key (client tokens have
        // none), so they go explicitly; the rest cascades.
        self.end_tokens(move |c| {
            let ended = end(c, &sql(rows::DELETE_USER_TOKENS), &username, now)?;
            let deleted = execute_on_username(c, &[rows::DELETE_USER], &username)?;
            Ok((deleted > 0, ended))
        })
        .await
    }

    async fn revoke_user_tokens(
        &self,
        username: &str,
        now: UnixTime,
    ) -> Result<Option<u64>, StoreError> {
        if !storable(username) {
            return Ok(None);
        }
        let username = username.to_owned();
        self.end_tokens(move |c| {
            if !exists(c, rows::USER_EXISTS, &username)? {
                return Ok((None, Ended::default()));
            }
            let ended = end(c, &sql(rows::REVOKE_USER_TOKENS), &username, now)?;
            Ok((Some(ended.count), ended))
        })
        .await
    }

    async fn set_password(
        &self,
        username: &str,
        password_hash: &str,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        if !storable(username) {
            return Ok(false);
        }
        let (username, password_hash) = (username.to_owned(), password_hash.to_owned());
        self.end_tokens(move |c| {
            let changed = c
                .prepare_cached(&sql(rows::SET_PASSWORD))?
                .execute([&username, &password_hash])?;
            execute_on_username(c, &[rows::DELETE_USER_SESSIONS], &username)?;
            let ended = end(c, &sql(rows::REVOKE_USER_TOKENS), &username, now)?;
            Ok((changed > 0, ended))
        })
        .await
    }

    async fn insert_tokens(&self, tokens: &[TokenRecord]) -> Result<(), StoreError> {
        let tokens = tokens.to_vec();
        // Plain inserts: lookups of other tokens keep their snapshots (and page caches).
        self.writer
            .add(move |c| insert_token_rows(c, &tokens))
            .await
    }

    async fn find_token(&self, hash: &TokenKey) -> Result<Option<TokenRecord>, StoreError> {
        // The token's row and its user's name: a user is never renamed, and deleting one is a
        // change that every reader sees at once.
        self.readers.lookup(|c| {
            c.prepare_cached(&SELECT_TOKEN)?
                .query_row([hash.as_bytes().as_slice()], token_row)
                .optional()?
                .map(TokenRecord::try_from)
                .transpose()
        })
    }

    async fn revoke_token(&self, hash: &TokenKey, now: UnixTime) -> Result<bool, StoreError> {
        let hash = *hash;
        self.end_tokens(move |c| {
            let ended = end(c, &REVOKE_TOKEN, &hash.as_bytes().as_slice(), now)?;
            Ok((ended.count > 0, ended))
        })
        .await
    }

    async fn revoke_family(&self, family_id: &str, now: UnixTime) -> Result<u64, StoreError> {
        let family_id = family_id.to_owned();
        self.end_tokens(move |c| {
            let ended = end(c, &sql(rows::REVOKE_FAMILY), &family_id, now)?;
            Ok((ended.count, ended))
        })
        .await
    }

    async fn rotate_refresh_token(
        &self,
        hash: &TokenKey,
        now: UnixTime,
        successors: &[TokenRecord],
    ) -> Result<bool, StoreError> {
        let (hash, successors) = (*hash, successors.to_vec());
        self.writer
            .write(move |c| {
                let claimed = c
                    .prepare_cached(&sql(rows::ROTATE_REFRESH))?
                    .execute(params![hash.as_bytes().as_slice(), now.as_secs()])?
                    == 1;
                if claimed {
                    insert_token_rows(c, &successors)?;
                }
                Ok(claimed)
            })
            .await
    }

    async fn insert_code(&self, code: &AuthorizationCodeRecord) -> Result<(), StoreError> {
        let code = code.clone();
        self.writer
            .write(move |c| {
                c.prepare_cached(&sql(rows::INSERT_CODE))?.execute(params![
                    code.hash.as_bytes().as_slice(),
                    code.client_id.as_str(),
                    code.user_id.as_str(),
                    code.redirect_uri,
                    code.redirect_uri_given,
                    code.scope.to_string(),
                    code.code_challenge,
                    code.issued_at.as_secs(),
                    code.expires_at.as_secs(),
                    code.redeemed_at.map(UnixTime::as_secs),
                    code.family_id.as_str(),
                    code.audience.to_string(),
                    code.nonce,
                    code.auth_time.map(UnixTime::as_secs),
                ])?;
                Ok(())
            })
            .await
    }

    async fn find_code(
        &self,
        hash: &TokenKey,
    ) -> Result<Option<AuthorizationCodeRecord>, StoreError> {
        self.read(|c| {
            c.prepare_cached(&sql(rows::SELECT_CODE))?
                .query_row([hash.as_bytes().as_slice()], code_row)
                .optional()?
                .map(AuthorizationCodeRecord::try_from)
                .transpose()
        })
    }

    async fn redeem_code(
        &self,
        hash: &TokenKey,
        now: UnixTime,
        tokens: &[TokenRecord],
    ) -> Result<Redemption, StoreError> {
        let (hash, tokens) = (*hash, tokens.to_vec());
        self.writer
            .write(move |c| {
                let key = hash.as_bytes().as_slice();
                let claimed = c
                    .prepare_cached(&sql(rows::REDEEM_CODE))?
                    .execute(params![key, now.as_secs()])?
                    == 1;
                if claimed {
                    insert_token_rows(c, &tokens)?;
                    return Ok(Redemption::Redeemed);
                }
                let family: Option<String> = c
                    .prepare_cached(&sql(rows::CODE_FAMILY))?
                    .query_row([key], |r| r.get(0))
                    .optional()?;
                Ok(match family {
                    Some(family_id) => Redemption::AlreadyRedeemed { family_id },
                    None => Redemption::NotFound,
                })
            })
            .await
    }

    async fn create_session(&self, session: &Session) -> Result<(), StoreError> {
        let session = session.clone();
        self.writer
            .write(move |c| {
                c.prepare_cached(&sql(rows::INSERT_SESSION))?
                    .execute(params![
                        session.hash.as_bytes().as_slice(),
                        session.user_id.as_str(),
                        session.created_at.as_secs(),
                        session.expires_at.as_secs(),
                    ])?;
                Ok(())
            })
            .await
    }

    async fn find_session_user(
        &self,
        hash: &TokenKey,
        now: UnixTime,
    ) -> Result<Option<User>, StoreError> {
        self.read(|c| {
            c.prepare_cached(&sql(rows::SELECT_SESSION_USER))?
                .query_row(params![hash.as_bytes().as_slice(), now.as_secs()], user_row)
                .optional()?
                .map(User::try_from)
                .transpose()
        })
    }

    async fn delete_session(&self, hash: &TokenKey) -> Result<(), StoreError> {
        let hash = *hash;
        self.writer
            .write(move |c| {
                changed_any(c, rows::DELETE_SESSION, &hash.as_bytes().as_slice()).map(drop)
            })
            .await
    }

    async fn session_signed_in_at(
        &self,
        hash: &TokenKey,
        now: UnixTime,
    ) -> Result<Option<UnixTime>, StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached(&sql(rows::SELECT_SESSION_SIGNED_IN))?
                .query_row(params![hash.as_bytes().as_slice(), now.as_secs()], |r| {
                    r.get::<_, i64>(0)
                })
                .optional()?
                .map(UnixTime::from_secs))
        })
    }

    async fn get_profile(&self, user_id: &str) -> Result<Option<(String, Profile)>, StoreError> {
        if !storable(user_id) {
            return Ok(None);
        }
        self.read(|c| {
            Ok(c.prepare_cached(&sql(rows::SELECT_PROFILE))?
                .query_row([user_id], |r| {
                    Ok(ProfileRow {
                        username: r.get(0)?,
                        name: r.get(1)?,
                        email: r.get(2)?,
                        email_verified: r.get(3)?,
                    })
                })
                .optional()?
                .map(Into::into))
        })
    }

    async fn set_profile(&self, username: &str, profile: &Profile) -> Result<bool, StoreError> {
        if !storable(username) {
            return Ok(false);
        }
        let (username, profile) = (username.to_owned(), profile.clone());
        self.writer
            .write(move |c| {
                let changed = c
                    .prepare_cached(&sql(rows::UPDATE_PROFILE))?
                    .execute(params![
                        username,
                        profile.name,
                        profile.email,
                        profile.email_verified,
                    ])?;
                Ok(changed > 0)
            })
            .await
    }

    async fn get_client_oidc(&self, client_id: &str) -> Result<Option<ClientOidc>, StoreError> {
        if !storable(client_id) {
            return Ok(None);
        }
        self.read(|c| {
            Ok(c.prepare_cached(&sql(rows::SELECT_CLIENT_OIDC))?
                .query_row([client_id], |r| {
                    Ok(rows::client_oidc(r.get(0)?, &r.get::<_, String>(1)?))
                })
                .optional()?)
        })
    }

    async fn put_client_oidc(&self, client_id: &str, oidc: &ClientOidc) -> Result<(), StoreError> {
        if !storable(client_id) {
            return Err(StoreError::MissingReference);
        }
        let (client_id, oidc) = (client_id.to_owned(), oidc.clone());
        self.writer
            .write(move |c| {
                c.prepare_cached(&sql(rows::UPSERT_CLIENT_OIDC))?
                    .execute(params![
                        client_id,
                        oidc.id_token_signed_response_alg,
                        oidc.post_logout_redirect_uris.join(" "),
                    ])?;
                Ok(())
            })
            .await
    }

    async fn insert_signing_key(&self, key: &StoredSigningKey) -> Result<(), StoreError> {
        let key = key.clone();
        self.writer
            .write(move |c| insert_signing_key_row(c, &key))
            .await
    }

    async fn list_signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError> {
        // Through the writer, which sees every process's commits: on a reader this rare read
        // would leave a snapshot that the node's next lookups reuse, so a node just started
        // would not see another process's writes of the moment.
        self.writer
            .write(|c| {
                let mut statement = c.prepare_cached(&sql(rows::SELECT_SIGNING_KEYS))?;
                let rows = statement.query_map([], signing_key_row)?;
                rows.map(|r| Ok(r?.into())).collect()
            })
            .await
    }

    async fn rotate_signing_keys(
        &self,
        new: &[StoredSigningKey],
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let new = new.to_vec();
        self.writer
            .write(move |c| {
                c.prepare_cached(&sql(rows::RETIRE_SIGNING_KEYS))?
                    .execute([now.as_secs()])?;
                for key in &new {
                    insert_signing_key_row(c, key)?;
                }
                Ok(())
            })
            .await
    }

    async fn prune_signing_keys(&self, retired_before: UnixTime) -> Result<u64, StoreError> {
        self.writer
            .write(move |c| {
                let deleted = c
                    .prepare_cached(&sql(rows::DELETE_RETIRED_KEYS))?
                    .execute([retired_before.as_secs()])?;
                Ok(deleted as u64)
            })
            .await
    }

    async fn get_consent(
        &self,
        user_id: &str,
        client_id: &str,
    ) -> Result<Option<Scope>, StoreError> {
        let scope: Option<String> = self.read(|c| {
            Ok(c.prepare_cached(&sql(rows::SELECT_CONSENT))?
                .query_row([user_id, client_id], |r| r.get(0))
                .optional()?)
        })?;
        rows::consent_scope(scope)
    }

    async fn put_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scope: &Scope,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let (user_id, client_id, scope) =
            (user_id.to_owned(), client_id.to_owned(), scope.to_string());
        self.writer
            .write(move |c| {
                c.prepare_cached(&sql(rows::UPSERT_CONSENT))?
                    .execute(params![user_id, client_id, scope, now.as_secs()])?;
                Ok(())
            })
            .await
    }

    async fn purge_expired(&self, now: UnixTime, batch: u32) -> Result<u64, StoreError> {
        self.writer
            .write(move |c| {
                let mut most = 0;
                for (statement, by_time) in [
                    (PURGE_EXPIRED_TOKENS, true),
                    (PURGE_REVOKED_TOKENS, false),
                    (PURGE_CODES, true),
                    (PURGE_SESSIONS, true),
                    (PURGE_INITIAL_ACCESS_TOKENS, true),
                ] {
                    let mut statement = c.prepare_cached(statement)?;
                    let done = if by_time {
                        statement.execute(params![now.as_secs(), batch])?
                    } else {
                        statement.execute(params![batch])?
                    };
                    most = most.max(done as u64);
                }
                Ok(most)
            })
            .await
    }

    async fn revocation_events_after(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<RevocationEvent>, StoreError> {
        self.read(|c| {
            let mut statement = c.prepare_cached(&sql(rows::REVOCATION_EVENTS_AFTER))?;
            let rows = statement.query_map(params![stored_seq(after), limit], |r| {
                Ok(RevocationEventRow {
                    seq: r.get(0)?,
                    token_key: r.get(1)?,
                    audience: r.get(2)?,
                    created_at: r.get(3)?,
                })
            })?;
            rows.map(|row| RevocationEvent::try_from(row?)).collect()
        })
    }

    async fn revocation_window(&self) -> Result<RevocationWindow, StoreError> {
        self.read(window)
    }

    async fn purge_revocation_events(
        &self,
        older_than: UnixTime,
        batch: u32,
    ) -> Result<u64, StoreError> {
        self.writer
            .write(move |c| {
                let last: Option<i64> = c
                    .prepare_cached(&sql(rows::LAST_PURGEABLE_EVENT))?
                    .query_row(params![older_than.as_secs(), batch], |r| r.get(0))?;
                let Some(last) = last else {
                    return Ok(0);
                };
                let purged = c
                    .prepare_cached(&sql(rows::PURGE_REVOCATION_EVENTS))?
                    .execute([last])?;
                c.prepare_cached(&sql(rows::RAISE_REVOCATION_HORIZON))?
                    .execute([last])?;
                Ok(purged as u64)
            })
            .await
    }

    async fn create_admin_token(&self, token: &AdminTokenRecord) -> Result<(), StoreError> {
        let token = token.clone();
        self.writer
            .write(move |c| {
                c.prepare_cached(&sql(rows::INSERT_ADMIN_TOKEN))?
                    .execute(params![
                        token.id,
                        token.key.as_bytes().as_slice(),
                        token.created_at.as_secs(),
                        token.expires_at.map(UnixTime::as_secs),
                        token.revoked_at.map(UnixTime::as_secs),
                    ])?;
                Ok(())
            })
            .await
    }

    async fn find_admin_token(
        &self,
        key: &TokenKey,
    ) -> Result<Option<AdminTokenRecord>, StoreError> {
        self.read(|c| {
            c.prepare_cached(&sql(rows::SELECT_ADMIN_TOKEN))?
                .query_row([key.as_bytes().as_slice()], admin_token_row)
                .optional()?
                .map(AdminTokenRecord::try_from)
                .transpose()
        })
    }

    async fn list_admin_tokens(&self) -> Result<Vec<AdminTokenRecord>, StoreError> {
        self.read(|c| {
            let mut statement = c.prepare_cached(&sql(rows::LIST_ADMIN_TOKENS))?;
            let rows = statement.query_map([], admin_token_row)?;
            rows.map(|row| AdminTokenRecord::try_from(row?)).collect()
        })
    }

    async fn revoke_admin_token(&self, id: &str, now: UnixTime) -> Result<bool, StoreError> {
        if !storable(id) {
            return Ok(false);
        }
        let id = id.to_owned();
        self.writer
            .write(move |c| {
                let changed = c
                    .prepare_cached(&sql(rows::REVOKE_ADMIN_TOKEN))?
                    .execute(params![id, now.as_secs()])?;
                Ok(changed > 0)
            })
            .await
    }

    async fn clients_after(&self, after: &str, limit: u32) -> Result<Vec<Client>, StoreError> {
        if !storable(after) {
            return Ok(Vec::new());
        }
        self.read(|c| {
            let mut statement = c.prepare_cached(&sql(rows::CLIENTS_AFTER))?;
            let rows = statement.query_map(params![after, i64::from(limit)], client_row)?;
            rows.map(|row| Client::try_from(row?)).collect()
        })
    }

    async fn update_client(&self, client: &Client) -> Result<bool, StoreError> {
        let client = client.clone();
        self.writer
            .write(move |c| {
                let cols = ClientColumns::of(&client);
                let changed = c
                    .prepare_cached(&sql(rows::UPDATE_CLIENT))?
                    .execute(params![
                        client.id.as_str(),
                        client.name,
                        cols.grant_types,
                        cols.scope,
                        cols.redirect_uris,
                        client.skip_consent,
                    ])?;
                Ok(changed > 0)
            })
            .await
    }

    async fn resources_after(&self, after: &str, limit: u32) -> Result<Vec<Resource>, StoreError> {
        if !storable(after) {
            return Ok(Vec::new());
        }
        self.read(|c| {
            let mut statement = c.prepare_cached(&sql(rows::RESOURCES_AFTER))?;
            let rows = statement.query_map(params![after, i64::from(limit)], resource_row)?;
            rows.map(|row| Resource::try_from(row?)).collect()
        })
    }

    async fn get_resource(&self, uri: &ResourceUri) -> Result<Option<Resource>, StoreError> {
        self.read(|c| {
            c.prepare_cached(&sql(rows::SELECT_RESOURCE))?
                .query_row([uri.as_str()], resource_row)
                .optional()?
                .map(Resource::try_from)
                .transpose()
        })
    }

    async fn update_resource(&self, resource: &Resource) -> Result<bool, StoreError> {
        let resource = resource.clone();
        self.writer
            .write(move |c| {
                let changed = c
                    .prepare_cached(&sql(rows::UPDATE_RESOURCE))?
                    .execute(params![
                        resource.uri.as_str(),
                        resource.name,
                        resource.scope.to_string(),
                    ])?;
                Ok(changed > 0)
            })
            .await
    }

    async fn users_after(
        &self,
        after: &str,
        limit: u32,
    ) -> Result<Vec<(User, Profile)>, StoreError> {
        if !storable(after) {
            return Ok(Vec::new());
        }
        self.read(|c| {
            let mut statement = c.prepare_cached(&sql(rows::USERS_AFTER))?;
            let rows = statement.query_map(params![after, i64::from(limit)], |r| {
                Ok(UserProfileRow {
                    id: r.get(0)?,
                    username: r.get(1)?,
                    password_hash: r.get(2)?,
                    created_at: r.get(3)?,
                    name: r.get(4)?,
                    email: r.get(5)?,
                    email_verified: r.get(6)?,
                })
            })?;
            rows.map(|row| <(User, Profile)>::try_from(row?)).collect()
        })
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
        if !storable(after) || !storable(key) {
            return Ok(Vec::new());
        }
        self.read(|c| {
            let mut statement = c.prepare_cached(&sql(statement))?;
            let rows =
                statement.query_map(params![key, now.as_secs(), after, i64::from(limit)], |r| {
                    Ok(FamilyRow {
                        family_id: r.get(0)?,
                        client_id: r.get(1)?,
                        subject: r.get(2)?,
                        issued_at: r.get(3)?,
                        expires_at: r.get(4)?,
                        tokens: r.get(5)?,
                    })
                })?;
            Ok(rows
                .map(|row| row.map(TokenFamily::from))
                .collect::<Result<_, _>>()?)
        })
    }

    async fn end_user_sessions(&self, username: &str) -> Result<u64, StoreError> {
        if !storable(username) {
            return Ok(0);
        }
        let username = username.to_owned();
        self.writer
            .write(move |c| execute_on_username(c, &[rows::DELETE_USER_SESSIONS], &username))
            .await
    }

    async fn append_audit_event(&self, event: &AuditEvent) -> Result<u64, StoreError> {
        let event = event.clone();
        self.writer
            .write(move |c| {
                let (actor, detail, address) = AuditEventRow::columns(&event);
                let id: i64 = c.prepare_cached(&INSERT_AUDIT_EVENT)?.query_row(
                    params![
                        event.at.as_secs(),
                        event.kind.as_str(),
                        actor,
                        event.user,
                        event.client_id,
                        address,
                        detail,
                    ],
                    |r| r.get(0),
                )?;
                Ok(seq_of(id))
            })
            .await
    }

    async fn audit_events(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        if !rows::audit_filter_storable(filter) {
            return Ok(Vec::new());
        }
        let statement = sql(&rows::select_audit_events(filter));
        self.read(|c| {
            let mut statement = c.prepare_cached(&statement)?;
            let mut bound: Vec<&dyn ToSql> = Vec::with_capacity(5);
            let after = stored_seq(filter.after);
            let since = filter.since.map_or(i64::MIN, UnixTime::as_secs);
            bound.extend([&after as &dyn ToSql, &since, &filter.limit]);
            bound.extend(filter.user.iter().map(|u| u as &dyn ToSql));
            bound.extend(filter.client_id.iter().map(|c| c as &dyn ToSql));
            let rows = statement.query_map(bound.as_slice(), |r| {
                Ok(AuditEventRow {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    kind: r.get(2)?,
                    actor: r.get(3)?,
                    username: r.get(4)?,
                    client_id: r.get(5)?,
                    address: r.get(6)?,
                    detail: r.get(7)?,
                })
            })?;
            rows.map(|row| AuditRecord::try_from(row?)).collect()
        })
    }

    async fn purge_audit_events(
        &self,
        older_than: UnixTime,
        batch: u32,
    ) -> Result<u64, StoreError> {
        self.writer
            .write(move |c| {
                let purged = c
                    .prepare_cached(PURGE_AUDIT_EVENTS)?
                    .execute(params![older_than.as_secs(), batch])?;
                Ok(purged as u64)
            })
            .await
    }

    fn subscribe_revocations(&self) -> tokio::sync::watch::Receiver<u64> {
        let readers = self.readers.clone();
        self.feed
            .subscribe(|latest| watch_other_writers(readers, latest))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// A store on a fresh file, with a table `scratch (n, data)` of its own.
    async fn store_with_scratch_table() -> (SqliteStore, PathBuf) {
        let (url, path) = crate::testing::fresh_sqlite_url().unwrap();
        let store = SqliteStore::connect(&url).await.unwrap();
        store
            .writer
            .write(|c| {
                c.execute_batch("CREATE TABLE scratch (n INTEGER PRIMARY KEY, data BLOB)")?;
                Ok(())
            })
            .await
            .unwrap();
        (store, path)
    }

    /// `.cargo/config.toml` builds SQLite without STAT4: with it, once anyone runs `ANALYZE`
    /// on the file, every lookup's statement is prepared again whenever its bound key
    /// changes (docs/BENCHMARKS.md, "Bounds").
    #[tokio::test]
    async fn the_bundled_sqlite_is_built_without_stat4() {
        let (store, _path) = store_with_scratch_table().await;
        let options: Vec<String> = store
            .read(|c| {
                let mut statement = c.prepare("PRAGMA compile_options")?;
                let names = statement.query_map([], |r| r.get(0))?;
                Ok(names.collect::<Result<_, _>>()?)
            })
            .unwrap();
        assert!(
            options.iter().any(|o| o.starts_with("THREADSAFE")),
            "{options:?}"
        );
        assert!(!options.iter().any(|o| o.contains("STAT4")), "{options:?}");
        assert!(!options.iter().any(|o| o.contains("FTS5")), "{options:?}");
    }

    fn scratch_rows(store: &SqliteStore) -> i64 {
        store
            .read(|c| Ok(c.query_row("SELECT count(*) FROM scratch", [], |r| r.get(0))?))
            .unwrap()
    }

    /// Read connections keep their snapshot between lookups; a write must still be seen by
    /// every lookup that starts after it was acknowledged, on every read connection.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_see_every_acknowledged_write() {
        let (store, path) = store_with_scratch_table().await;
        let readers = store.readers.connections_for_tests();
        for n in 1..=50_i64 {
            // Every connection holds a snapshot taken before the write.
            for _ in 0..readers {
                assert_eq!(scratch_rows(&store), n - 1);
            }
            store
                .writer
                .write(move |c| Ok(c.execute("INSERT INTO scratch (n) VALUES (?1)", [n])?))
                .await
                .unwrap();
            for _ in 0..readers {
                assert_eq!(scratch_rows(&store), n);
            }
        }
        drop(store);
        remove_database(&path);
    }

    /// A change made by another process (the command line) is seen once the snapshots that
    /// predate it have aged out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_see_other_processes_writes_after_the_snapshot_age() {
        let (store, path) = store_with_scratch_table().await;
        let readers = store.readers.connections_for_tests();
        for _ in 0..readers {
            assert_eq!(scratch_rows(&store), 0);
        }
        let other = Connection::open(&path).unwrap();
        other.busy_timeout(BUSY_TIMEOUT).unwrap();
        other
            .execute("INSERT INTO scratch (n) VALUES (1)", [])
            .unwrap();
        tokio::time::sleep(readers::MAX_SNAPSHOT_AGE + Duration::from_millis(20)).await;
        for _ in 0..readers {
            assert_eq!(scratch_rows(&store), 1);
        }
        drop(other);
        drop(store);
        remove_database(&path);
    }

    pub(super) fn remove_database(path: &Path) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    /// Under steady writes the WAL must come back to its start instead of growing: here
    /// 150 MiB of writes, with the checkpointer restarting the WAL once it passes 64 MiB,
    /// while a lookup after every write keeps read snapshots open.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_stays_small_under_steady_writes() {
        let (store, path) = store_with_scratch_table().await;
        let wal = PathBuf::from(format!("{}-wal", path.display()));
        let mut largest = 0;
        // 600 commits of 256 KiB (64 pages) each; the table never holds more than a few rows.
        // The pauses leave a busy test machine time to run the checkpointer thread.
        for n in 0..600_i64 {
            if n % 10 == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            store
                .writer
                .write(move |c| {
                    c.execute(
                        "INSERT INTO scratch (n, data) VALUES (?1, randomblob(262144))",
                        [n],
                    )?;
                    c.execute("DELETE FROM scratch WHERE n < ?1", [n - 4])?;
                    Ok(())
                })
                .await
                .unwrap();
            assert!(scratch_rows(&store) >= 1);
            largest = largest.max(std::fs::metadata(&wal).unwrap().len());
        }
        let written = 600 * 64 * 4096;
        assert!(
            largest < written * 2 / 3,
            "the WAL grew to {largest} bytes for {written} bytes written"
        );
        drop(store);
        remove_database(&path);
    }

    /// Migration 0004 moves the tokens of a store made before it into the clustered table:
    /// every row and field survives, and a token issued then is found under its old key.
    #[tokio::test]
    async fn tokens_survive_the_move_to_the_clustered_table() {
        use crate::Store;
        let (url, path) = crate::testing::fresh_sqlite_url().unwrap();
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap();
        crate::migrations::sqlite().run_to(3, &pool).await.unwrap();
        let legacy = "tsr_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG";
        sqlx::query(
            "INSERT INTO clients (client_id, name, secret_hash, auth_method, grant_types, \
             scope, redirect_uris, skip_consent, created_at) \
             VALUES ('c1', 'one', NULL, 'none', 'authorization_code', 'api', '', 0, 1)",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("INSERT INTO users (id, username, password_hash, created_at) VALUES ('u1', 'ann', 'x', 1)")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO tokens (hash, kind, client_id, subject, scope, issued_at, expires_at, \
             revoked_at, family_id, rotated_at) VALUES (?, 1, 'c1', 'u1', 'api', 10, 4000000000, \
             NULL, 'fam', 20)",
        )
        .bind(TokenKey::of(legacy).as_bytes().as_slice())
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;

        let store = SqliteStore::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        let found = store
            .find_token(&TokenKey::of(legacy))
            .await
            .unwrap()
            .expect("the token survived the migration");
        assert_eq!(found.kind, tessera_core::token::TokenKind::Refresh);
        assert_eq!(found.client_id, "c1");
        assert_eq!(found.subject.as_deref(), Some("u1"));
        assert_eq!(found.username.as_deref(), Some("ann"));
        let (issued, expires) = (found.issued_at.as_secs(), found.expires_at.as_secs());
        assert_eq!((issued, expires), (10, 4_000_000_000));
        let rotated = found.rotated_at.map(UnixTime::as_secs);
        assert_eq!((found.revoked_at, rotated), (None, Some(20)));
        assert_eq!(found.family_id.as_deref(), Some("fam"));
        let clustered: String = store
            .read(|c| {
                Ok(c.query_row(
                    "SELECT sql FROM sqlite_schema WHERE name = 'tokens'",
                    [],
                    |r| r.get(0),
                )?)
            })
            .unwrap();
        assert!(clustered.contains("WITHOUT ROWID"), "{clustered}");
        drop(store);
        remove_database(&path);
    }
}
