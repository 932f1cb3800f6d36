//! PostgreSQL: any number of Tessera nodes on one database.
//!
//! No state lives in a node that another node needs: tokens, clients and (later) sessions
//! are rows, so a token issued on one node introspects on another and a revocation anywhere
//! is seen everywhere on the next lookup. Migrations take PostgreSQL's advisory lock (sqlx's
//! migrator does), so nodes started together apply them once. The janitor's deletes use
//! `FOR UPDATE SKIP LOCKED`, so janitors on several nodes never wait on each other.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::StoreError;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// The statements this dialect spells its own way.
mod dialect {
    pub const PURGE_TOKENS: &str = "DELETE FROM tokens WHERE hash IN (SELECT hash FROM tokens \
        WHERE expires_at <= $1 OR revoked_at IS NOT NULL LIMIT $2 FOR UPDATE SKIP LOCKED)";
    pub const PURGE_CODES: &str = "DELETE FROM authorization_codes WHERE hash IN (SELECT hash \
        FROM authorization_codes WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)";
    pub const PURGE_SESSIONS: &str = "DELETE FROM sessions WHERE hash IN (SELECT hash \
        FROM sessions WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)";
}

#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl_store_with_shared_sql!(PgStore, sqlx::Postgres, MIGRATOR, dialect);
