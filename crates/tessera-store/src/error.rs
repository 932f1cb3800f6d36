use tessera_core::client::RegistrationError;

/// The driver's own error, kept as the source of a [`StoreError`] for logs.
pub type DriverError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A storage failure, classified by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached right now (connection refused, pool exhausted, I/O,
    /// a lock held too long). Callers answer 503 and retry later; nothing was decided.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] DriverError),
    /// A uniqueness constraint refused the write.
    #[error("record already exists")]
    Conflict,
    /// A row refers to one that no longer exists (a client deleted a moment ago).
    #[error("referenced record does not exist")]
    MissingReference,
    /// A stored row does not decode into a valid value.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A bad database URL or option.
    #[error("{0}")]
    Config(String),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Database(#[source] DriverError),
}

impl StoreError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// The error of a whole failed batch, for one of the requests in it: still
    /// `Unavailable` if it was (so the caller answers 503), otherwise a plain database
    /// error, since a conflict of the batch is not this request's conflict.
    pub(crate) fn for_batch_member(&self) -> Self {
        let message: DriverError = self.to_string().into();
        if self.is_unavailable() {
            Self::Unavailable(message)
        } else {
            Self::Database(message)
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => Self::Unavailable(Box::new(e)),
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict,
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => Self::MissingReference,
            // PostgreSQL says "shutting down" or "cannot connect now" (class 57P) while it
            // restarts; SQLite says BUSY/LOCKED when another writer holds the lock too long.
            sqlx::Error::Database(db)
                if db.code().is_some_and(|c| {
                    // 57P: shutting down; 08: connection exception; 53300: too many
                    // connections; 55000: the database refuses connections for now;
                    // 40001 and 40P01: the transaction was rolled back as a serialization
                    // failure or to break a deadlock (a client deleted while one of its
                    // refresh tokens rotates), and trying again may succeed.
                    c.starts_with("57P")
                        || c.starts_with("08")
                        || c == "40001"
                        || c == "40P01"
                        || c == "53300"
                        || c == "55000"
                        || c == "5"
                        || c == "6"
                }) =>
            {
                Self::Unavailable(Box::new(e))
            }
            _ => Self::Database(Box::new(e)),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        let code = e.sqlite_error().map(|f| (f.code, f.extended_code));
        match code {
            Some((ErrorCode::ConstraintViolation, ext))
                if ext == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                    || ext == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
            {
                Self::Conflict
            }
            Some((ErrorCode::ConstraintViolation, ext))
                if ext == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
            {
                Self::MissingReference
            }
            // A lock held too long by another process, or the disk failing or full: nothing
            // was decided, and trying again later may work.
            Some((
                ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull
                | ErrorCode::CannotOpen,
                _,
            )) => Self::Unavailable(Box::new(e)),
            _ => Self::Database(Box::new(e)),
        }
    }
}

impl From<RegistrationError> for StoreError {
    fn from(e: RegistrationError) -> Self {
        Self::Corrupt(e.to_string())
    }
}
