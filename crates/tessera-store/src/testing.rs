//! Throw-away databases for tests and benchmarks.
//!
//! Each test gets its own database, so tests run in parallel without seeing each other's rows,
//! and PostgreSQL tests behave exactly like SQLite ones.
//!
//! Nothing drops a test's database when the test ends (a test's server may still hold it).
//! Instead the name carries its creation time, and making a new one first drops those older
//! than [`LEFTOVER_AGE`], whose runs have ended long since: a run of the suite makes about 60
//! of each, and without this they piled up on the shared server and in the temp directory.

use std::time::Duration;

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

/// Test databases and files older than this are left over from runs that have ended (the
/// whole suite takes minutes).
pub const LEFTOVER_AGE: Duration = Duration::from_secs(3600);

const DATABASE_PREFIX: &str = "tessera_test_";
const FILE_PREFIX: &str = "tessera-test-";

fn unix_seconds() -> u64 {
    tessera_core::clock::system_millis() / 1000
}

/// When a test database or file named `<prefix><seconds><separator>...` was made; `None` for
/// any other name (including those made before names carried the time).
fn made_at(name: &str, prefix: &str, separator: char) -> Option<u64> {
    let (seconds, _) = name.strip_prefix(prefix)?.split_once(separator)?;
    if seconds.len() != 10 || !seconds.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    seconds.parse().ok()
}

fn is_leftover(made: Option<u64>, now: u64) -> bool {
    made.is_some_and(|t| t.saturating_add(LEFTOVER_AGE.as_secs()) < now)
}

/// Creates an empty database named `tessera_test_<seconds>_<random>` and returns its URL,
/// after dropping the test databases older than [`LEFTOVER_AGE`].
pub async fn fresh_postgres_database(admin_url: &str) -> Result<String, StoreError> {
    let mut conn = PgConnection::connect(admin_url).await?;
    drop_leftover_databases(&mut conn).await;
    let suffix = random_b64::<9>()
        .map_err(|_| StoreError::Config("no randomness".into()))?
        .to_ascii_lowercase()
        .replace(['-', '_'], "x");
    let name = format!("{DATABASE_PREFIX}{}_{suffix}", unix_seconds());
    // The name is built from [a-z0-9x_] only, so interpolating it is safe.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    let base = admin_url.rsplit_once('/').map_or(admin_url, |(b, _)| b);
    Ok(format!("{base}/{name}"))
}

/// Best effort: a database another run is dropping at the same moment, or one still in
/// use, is left for next time.
async fn drop_leftover_databases(conn: &mut PgConnection) {
    let names: Vec<String> = match sqlx::query_scalar(
        "SELECT datname FROM pg_database WHERE datname LIKE 'tessera\\_test\\_%'",
    )
    .fetch_all(&mut *conn)
    .await
    {
        Ok(names) => names,
        Err(_) => return,
    };
    let now = unix_seconds();
    for name in names {
        let safe = name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if safe && is_leftover(made_at(&name, DATABASE_PREFIX, '_'), now) {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name}"
            )))
            .execute(&mut *conn)
            .await;
        }
    }
}

/// A fresh PostgreSQL database for a test: `Ok(None)` when the server is unreachable on a
/// laptop, but the error itself when `CI` is set, so that CI never skips a PostgreSQL test
/// (the caller's `expect` fails it).
///
/// A skip is announced by a `SKIPPED: <test>: ...` line written straight to stderr. The
/// test harness captures only `print!`/`eprint!` and drops what a passing test printed, so
/// an `eprintln!` here would vanish; the direct write shows in every `cargo test` run.
pub async fn postgres_test_database() -> Result<Option<String>, StoreError> {
    let admin_url = postgres_admin_url();
    match fresh_postgres_database(&admin_url).await {
        Ok(url) => Ok(Some(url)),
        Err(e) => {
            let line = skip_or_fail(
                e,
                &admin_url,
                std::env::var_os("CI").is_some(),
                &current_test(),
            )?;
            announce(&line);
            Ok(None)
        }
    }
}

/// What to do about an unreachable PostgreSQL: in CI, fail with `error`; elsewhere, skip
/// with the returned line, which names the test and the server it could not reach.
fn skip_or_fail(
    error: StoreError,
    admin_url: &str,
    in_ci: bool,
    test: &str,
) -> Result<String, StoreError> {
    if in_ci {
        return Err(error);
    }
    Ok(format!(
        "SKIPPED: {test}: PostgreSQL not reachable at {} ({error}); set CI=1 to make this fail",
        server_address(admin_url)
    ))
}

/// The running test's name: the harness names each test's thread after the test, and a
/// `#[tokio::test]` body runs on that thread.
fn current_test() -> String {
    std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_owned()
}

/// `host:port` of a PostgreSQL URL, without the user and password.
fn server_address(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
}

/// Writes `line` to stderr past the harness's capture (see [`postgres_test_database`]).
fn announce(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// A fresh SQLite URL in the system's temporary directory, after removing the test files
/// there older than [`LEFTOVER_AGE`].
pub fn fresh_sqlite_url() -> Result<(String, std::path::PathBuf), StoreError> {
    let dir = std::env::temp_dir();
    remove_leftover_files(&dir);
    let suffix = random_b64::<9>().map_err(|_| StoreError::Config("no randomness".into()))?;
    let path = dir.join(format!("{FILE_PREFIX}{}-{suffix}.db", unix_seconds()));
    Ok((format!("sqlite://{}", path.display()), path))
}

/// Best effort, like [`drop_leftover_databases`]: the database and its `-wal` and `-shm`.
fn remove_leftover_files(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let now = unix_seconds();
    for entry in entries.flatten() {
        let name = entry.file_name();
        if is_leftover(made_at(&name.to_string_lossy(), FILE_PREFIX, '-'), now) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn only_old_names_that_carry_their_time_are_leftovers() {
        let now = 1_800_000_000;
        let old = format!("tessera_test_{}_abc", now - 3601);
        let recent = format!("tessera_test_{}_abc", now - 60);
        assert!(is_leftover(made_at(&old, DATABASE_PREFIX, '_'), now));
        assert!(!is_leftover(made_at(&recent, DATABASE_PREFIX, '_'), now));
        // Names from before the time was in them, and strangers, are never touched.
        assert!(!is_leftover(
            made_at("tessera_test_ab3x9", DATABASE_PREFIX, '_'),
            now
        ));
        assert!(!is_leftover(
            made_at("tessera_prod", DATABASE_PREFIX, '_'),
            now
        ));
        let old_file = format!("tessera-test-{}-Zx_9-.db-wal", now - 7200);
        assert!(is_leftover(made_at(&old_file, FILE_PREFIX, '-'), now));
        assert!(!is_leftover(
            made_at("tessera-test-12-ab.db", FILE_PREFIX, '-'),
            now
        ));
    }

    /// The skip line names the test and the server (never its password), and in CI there is
    /// no line but the error, so the test fails.
    #[test]
    fn an_unreachable_postgres_skips_visibly_and_fails_in_ci() {
        let url = "postgres://postgres:hunter2@127.0.0.1:5499/postgres?sslmode=disable";
        let refused = || StoreError::Config("connection refused".into());
        let line = skip_or_fail(refused(), url, false, "code_flow::replay::postgres").unwrap();
        assert_eq!(
            line,
            "SKIPPED: code_flow::replay::postgres: PostgreSQL not reachable at 127.0.0.1:5499 \
             (connection refused); set CI=1 to make this fail"
        );
        let failed = skip_or_fail(refused(), url, true, "code_flow::replay::postgres");
        assert!(matches!(failed, Err(StoreError::Config(_))), "{failed:?}");
        assert_eq!(server_address(DEFAULT_POSTGRES_ADMIN_URL), "127.0.0.1:5432");
        // The harness names the test's thread, so the line names the test that skipped.
        assert_eq!(
            current_test(),
            "testing::tests::an_unreachable_postgres_skips_visibly_and_fails_in_ci"
        );
    }

    #[tokio::test]
    async fn a_fresh_database_drops_the_leftovers_of_old_runs() {
        let admin = postgres_admin_url();
        let mut conn = match PgConnection::connect(&admin).await {
            Ok(conn) => conn,
            Err(e) => {
                let in_ci = std::env::var_os("CI").is_some();
                let line = skip_or_fail(e.into(), &admin, in_ci, &current_test())
                    .expect("PostgreSQL is required in CI");
                announce(&line);
                return;
            }
        };
        let old = format!("{DATABASE_PREFIX}{}_probe", unix_seconds() - 7200);
        let recent = format!("{DATABASE_PREFIX}{}_probe", unix_seconds() - 60);
        for name in [&old, &recent] {
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .unwrap();
        }
        let fresh = fresh_postgres_database(&admin).await.unwrap();
        let exists = "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)";
        for (name, kept, why) in [
            (&old, false, "the old run's database is dropped"),
            (&recent, true, "a recent one may still be in use"),
        ] {
            let found: bool = sqlx::query_scalar(exists)
                .bind(name)
                .fetch_one(&mut conn)
                .await
                .unwrap();
            assert_eq!(found, kept, "{why}");
        }
        let fresh_name = fresh.rsplit('/').next().unwrap_or_default().to_owned();
        for name in [recent, fresh_name] {
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name}")))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }
}
