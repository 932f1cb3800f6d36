//! WAL checkpoints, off the writer's path.
//!
//! In WAL mode commits append to the `-wal` file, and a checkpoint copies those pages back
//! into the database file. By default SQLite checkpoints inside the commit that crosses 1000
//! WAL pages, on the committing connection: with group commit that is the writer thread, and
//! every request queued behind it waited for the checkpoint's random writes and fsync (a p99
//! of a second in the benchmark's profile). Here the writer never checkpoints; this thread
//! runs a `PASSIVE` checkpoint, which never blocks the writer or the readers, every
//! [`INTERVAL`]. Durability does not depend on checkpoints: a commit is durable once the WAL
//! is synced, and the WAL is replayed after a crash.

use std::sync::mpsc;
use std::time::Duration;

use rusqlite::Connection;

use crate::StoreError;

const INTERVAL: Duration = Duration::from_millis(500);

/// Dropping it stops the thread.
#[derive(Debug)]
pub struct Checkpointer {
    _stop: mpsc::Sender<()>,
}

impl Checkpointer {
    pub fn start(conn: Connection) -> Result<Self, StoreError> {
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("tessera-sqlite-checkpointer".into())
            .spawn(move || {
                // Only a timeout means "carry on": a message or a dropped sender means stop.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
                    let outcome = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                        Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                    });
                    match outcome {
                        Ok((wal_pages, copied)) => {
                            tracing::trace!(wal_pages, copied, "SQLite checkpoint");
                        }
                        Err(e) => tracing::warn!(error = %e, "SQLite checkpoint failed"),
                    }
                }
            })
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        Ok(Self { _stop: stop })
    }
}
