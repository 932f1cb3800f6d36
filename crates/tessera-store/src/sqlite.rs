//! The embedded default: one SQLite file.
//!
//! WAL mode with `synchronous=FULL`: every acknowledged commit is on disk before the answer
//! leaves, so a crash or power loss loses nothing that a client was told about. Readers run
//! concurrently with the single writer.

use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::StoreError;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// The statements this dialect spells its own way.
mod dialect {
    pub const PURGE_TOKENS: &str = "DELETE FROM tokens WHERE hash IN (SELECT hash FROM tokens \
        WHERE expires_at <= $1 OR revoked_at IS NOT NULL LIMIT $2)";
    pub const PURGE_CODES: &str = "DELETE FROM authorization_codes WHERE hash IN (SELECT hash \
        FROM authorization_codes WHERE expires_at <= $1 LIMIT $2)";
    pub const PURGE_SESSIONS: &str = "DELETE FROM sessions WHERE hash IN (SELECT hash \
        FROM sessions WHERE expires_at <= $1 LIMIT $2)";
}

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file a `sqlite://PATH` URL names.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Config(format!("bad SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

impl_store_with_shared_sql!(SqliteStore, sqlx::Sqlite, MIGRATOR, dialect);
