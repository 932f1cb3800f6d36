use tessera_core::client::RegistrationError;

/// A storage failure, classified by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached right now (connection refused, pool exhausted, I/O).
    /// Callers answer 503 and retry later; nothing was decided.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A uniqueness constraint refused the write.
    #[error("record already exists")]
    Conflict,
    /// A stored row does not decode into a valid value.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A bad database URL or option.
    #[error("{0}")]
    Config(String),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl StoreError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => Self::Unavailable(e),
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict,
            // PostgreSQL says "shutting down" or "cannot connect now" (class 57P) while it
            // restarts; SQLite says BUSY/LOCKED when another writer holds the lock too long.
            sqlx::Error::Database(db)
                if db.code().is_some_and(|c| {
                    // 57P: shutting down; 08: connection exception; 53300: too many
                    // connections; 55000: the database refuses connections for now.
                    c.starts_with("57P")
                        || c.starts_with("08")
                        || c == "53300"
                        || c == "55000"
                        || c == "5"
                        || c == "6"
                }) =>
            {
                Self::Unavailable(e)
            }
            _ => Self::Database(e),
        }
    }
}

impl From<RegistrationError> for StoreError {
    fn from(e: RegistrationError) -> Self {
        Self::Corrupt(e.to_string())
    }
}
