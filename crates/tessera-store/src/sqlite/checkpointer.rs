//! WAL checkpoints, off the writer's path, and a WAL that stays small under load.
//!
//! In WAL mode commits append to the `-wal` file, and a checkpoint copies those pages back
//! into the database file. By default SQLite checkpoints inside the commit that crosses 1000
//! WAL pages, on the committing connection: with group commit that is the writer thread, and
//! every request queued behind it would wait for the checkpoint's random writes and fsync
//! (docs/BENCHMARKS.md, "Bounds"). Here the writer never checkpoints on its own;
//! this thread runs a `PASSIVE` checkpoint, which never blocks the writer or the readers,
//! every [`INTERVAL`]. Durability does not depend on checkpoints: a commit is durable once
//! the WAL is synced, and the WAL is replayed after a crash.
//!
//! Copying pages back is not enough to keep the WAL small. A write starts again at the
//! beginning of the `-wal` file only if, when it begins, *every* frame has been copied back,
//! and under steady writes a background checkpoint never meets that moment: the file would
//! grow without bound, every append landing on new blocks that the file system must first
//! allocate and zero. So once the WAL is past [`RESTART_FRAMES`], this thread catches up
//! until a pass has little left to copy, syncing the database file as it goes, then asks the
//! writer to copy the last few frames itself between two batches ([`RestartRequest`]). No
//! write can slip in there, so that checkpoint reaches the end of the WAL, and the writer's
//! next transaction rewrites the file from its start. The syncs keep the writer's final
//! checkpoint short: it syncs the database file, and without them that sync would write back
//! every page copied since the last one while every request waits.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::Connection;

use super::readers::Readers;
use crate::StoreError;

const INTERVAL: Duration = Duration::from_millis(100);

/// WAL size, in frames of one page each (64 MiB at 4 KiB pages), past which the WAL is
/// brought back to its start. Once the file has reached its working size it is rewritten in
/// place: SQLite keeps its length, so no more blocks are allocated. Not smaller: each
/// restart syncs the database file, and the less often that happens, the more writes of
/// the same hot pages one sync covers.
const RESTART_FRAMES: i64 = 16384;

/// A catching-up pass that had at most this many frames to copy leaves the writer little
/// enough to finish between two batches (a few hundred page copies and two syncs).
const FINISH_FRAMES: i64 = 256;

/// The most catching-up passes in a row: if writes outrun checkpoints, the writer finishes
/// anyway, and its batches wait for one longer checkpoint instead of the WAL growing.
const MAX_CATCH_UP_PASSES: usize = 8;

/// The flag by which the checkpointer asks the writer for the final, short checkpoint.
#[derive(Debug, Clone, Default)]
pub struct RestartRequest(Arc<AtomicBool>);

impl RestartRequest {
    fn ask(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether a restart was asked for since the last call (and clears the request).
    pub fn take(&self) -> bool {
        self.0.swap(false, Ordering::Acquire)
    }
}

/// Dropping it stops the thread.
#[derive(Debug)]
pub struct Checkpointer {
    _stop: mpsc::Sender<()>,
}

impl Checkpointer {
    /// Starts checkpointing with `conn`, a connection to the database file at `path`.
    /// Before each checkpoint it closes the `readers`' stale snapshots, which would keep it
    /// from copying back what was written after them.
    pub fn start(
        conn: Connection,
        path: &Path,
        restart: RestartRequest,
        readers: Arc<Readers>,
    ) -> Result<Self, StoreError> {
        // fsync flushes the file, whichever descriptor asks: this one is only for syncing.
        let db_file = File::open(path).map_err(|e| {
            StoreError::Unavailable(format!("cannot open {}: {e}", path.display()).into())
        })?;
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("tessera-sqlite-checkpointer".into())
            .spawn(move || {
                // Only a timeout means "carry on": a message or a dropped sender means stop.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
                    readers.close_stale();
                    match checkpoint(&conn) {
                        Ok(wal) if wal.frames > RESTART_FRAMES => {
                            catch_up(&conn, &db_file, &readers, wal);
                            restart.ask();
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "SQLite checkpoint failed"),
                    }
                }
            })
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        Ok(Self { _stop: stop })
    }
}

/// What a `PRAGMA wal_checkpoint` reports: frames in the WAL, and frames copied back so far.
#[derive(Debug, Clone, Copy)]
pub struct WalState {
    pub frames: i64,
    pub copied: i64,
}

/// One `PASSIVE` checkpoint on `conn`.
pub fn checkpoint(conn: &Connection) -> rusqlite::Result<WalState> {
    let wal = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok(WalState {
            frames: r.get(1)?,
            copied: r.get(2)?,
        })
    })?;
    tracing::trace!(
        frames = wal.frames,
        copied = wal.copied,
        "SQLite checkpoint"
    );
    Ok(wal)
}

/// Syncs what the checkpoints copied and checkpoints again, until a pass had at most
/// [`FINISH_FRAMES`] new frames to copy.
fn catch_up(conn: &Connection, db_file: &File, readers: &Readers, mut last: WalState) {
    for pass in 0..MAX_CATCH_UP_PASSES {
        let started = std::time::Instant::now();
        if let Err(e) = db_file.sync_data() {
            tracing::warn!(error = %e, "syncing the SQLite database file failed");
            return;
        }
        readers.close_stale();
        let outcome = checkpoint(conn);
        tracing::debug!(
            pass,
            frames = last.frames,
            micros = started.elapsed().as_micros() as u64,
            "SQLite checkpoint catching up"
        );
        match outcome {
            // A smaller WAL than before: it has been restarted meanwhile.
            Ok(now) if now.frames < last.frames => return,
            Ok(now) if now.frames - last.copied <= FINISH_FRAMES => return,
            Ok(now) => last = now,
            Err(e) => {
                tracing::warn!(error = %e, "SQLite checkpoint failed");
                return;
            }
        }
    }
}
