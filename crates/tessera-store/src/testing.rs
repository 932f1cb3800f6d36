//! Throw-away databases for tests and benchmarks.
//!
//! Each test gets its own database, so tests run in parallel without seeing each other's rows,
//! and PostgreSQL tests behave exactly like SQLite ones.

use sqlx::Connection;
use sqlx::postgres::PgConnection;

use crate::StoreError;
use tessera_core::random::random_b64;

/// The server used by tests unless `TESSERA_TEST_POSTGRES_URL` names another.
pub const DEFAULT_POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The admin URL for creating test databases.
pub fn postgres_admin_url() -> String {
    std::env::var("TESSERA_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_ADMIN_URL.into())
}

/// Creates an empty database named `tessera_test_<random>` and returns its URL.
pub async fn fresh_postgres_database(admin_url: &str) -> Result<String, StoreError> {
    let mut conn = PgConnection::connect(admin_url).await?;
    let suffix = random_b64::<9>()
        .map_err(|_| StoreError::Config("no randomness".into()))?
        .to_ascii_lowercase()
        .replace(['-', '_'], "x");
    let name = format!("tessera_test_{suffix}");
    // The name is built from [a-z0-9x] only, so interpolating it is safe.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    let base = admin_url.rsplit_once('/').map_or(admin_url, |(b, _)| b);
    Ok(format!("{base}/{name}"))
}

/// A fresh PostgreSQL database for a test: `Ok(None)` (with a SKIPPED message) when the
/// server is unreachable on a laptop, but the error itself when `CI` is set, so that CI never
/// skips a PostgreSQL test silently (the caller's `unwrap` fails it).
pub async fn postgres_test_database() -> Result<Option<String>, StoreError> {
    match fresh_postgres_database(&postgres_admin_url()).await {
        Ok(url) => Ok(Some(url)),
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED: PostgreSQL unreachable ({e}); set CI=1 to make this fail");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// A fresh SQLite URL in the system's temporary directory.
pub fn fresh_sqlite_url() -> Result<(String, std::path::PathBuf), StoreError> {
    let suffix = random_b64::<9>().map_err(|_| StoreError::Config("no randomness".into()))?;
    let path = std::env::temp_dir().join(format!("tessera-test-{suffix}.db"));
    Ok((format!("sqlite://{}", path.display()), path))
}
