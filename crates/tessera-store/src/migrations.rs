//! The schema migrations of each backend, embedded in the binary.
//!
//! `sqlx::migrate!` would find these files itself, but it is a procedural macro whose crate
//! compiles sqlx's drivers (and SQLite's C source) a second time, for the compiler's host:
//! over a minute of a two-core machine's release build. The list below is what it would
//! produce: the version and description from each file name (`0004_some_change.sql` is
//! version 4, "some change"), the text as it is, and the checksum that sqlx records in
//! `_sqlx_migrations` (so databases migrated by the macro's build carry on unchanged). A
//! test compares the list with the directory, so a file added there and not here fails it.

use std::borrow::Cow;

use sqlx::SqlStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

macro_rules! migrations {
    ($dir:literal: $($version:literal $description:literal $file:literal,)+) => {
        Migrator::with_migrations(vec![$(Migration::new(
            $version,
            Cow::Borrowed($description),
            MigrationType::Simple,
            SqlStr::from_static(include_str!(concat!("../migrations/", $dir, "/", $file))),
            false,
        ),)+])
    };
}

pub fn sqlite() -> Migrator {
    migrations!("sqlite":
        1 "clients and tokens" "0001_clients_and_tokens.sql",
        2 "users codes sessions" "0002_users_codes_sessions.sql",
        3 "tokens in insertion order" "0003_tokens_in_insertion_order.sql",
        4 "tokens clustered on time ordered keys" "0004_tokens_clustered_on_time_ordered_keys.sql",
        5 "resources and audiences" "0005_resources_and_audiences.sql",
        6 "self registration" "0006_self_registration.sql",
        7 "revocation events" "0007_revocation_events.sql",
        8 "openid connect" "0008_openid_connect.sql",
        9 "audit events" "0009_audit_events.sql",
        10 "admin tokens" "0010_admin_tokens.sql",
    )
}

pub fn postgres() -> Migrator {
    migrations!("postgres":
        1 "clients and tokens" "0001_clients_and_tokens.sql",
        2 "users codes sessions" "0002_users_codes_sessions.sql",
        3 "token client check per statement" "0003_token_client_check_per_statement.sql",
        4 "families only for grants of people" "0004_families_only_for_grants_of_people.sql",
        5 "subject index only for people" "0005_subject_index_only_for_people.sql",
        6 "resources and audiences" "0006_resources_and_audiences.sql",
        7 "self registration" "0007_self_registration.sql",
        8 "revocation events" "0008_revocation_events.sql",
        9 "openid connect" "0009_openid_connect.sql",
        10 "audit events" "0010_audit_events.sql",
        11 "admin tokens" "0011_admin_tokens.sql",
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// What sqlx's own resolver (the one `migrate!` runs at compile time) makes of a
    /// directory, against the embedded list.
    async fn assert_matches_directory(embedded: Migrator, dir: &str) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(dir);
        let resolved = Migrator::new(dir.as_path()).await.unwrap();
        let summary = |m: &Migrator| {
            m.iter()
                .map(|m| {
                    (
                        m.version,
                        m.description.to_string(),
                        m.migration_type,
                        m.checksum.to_vec(),
                        m.no_tx,
                    )
                })
                .collect::<Vec<_>>()
        };
        assert!(!summary(&resolved).is_empty());
        assert_eq!(summary(&embedded), summary(&resolved), "{}", dir.display());
    }

    #[tokio::test]
    async fn the_embedded_sqlite_migrations_are_the_directory() {
        assert_matches_directory(sqlite(), "sqlite").await;
    }

    #[tokio::test]
    async fn the_embedded_postgres_migrations_are_the_directory() {
        assert_matches_directory(postgres(), "postgres").await;
    }
}
