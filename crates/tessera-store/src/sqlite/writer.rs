//! The one SQLite writer, with group commit.
//!
//! SQLite lets one connection write at a time, and with `synchronous=FULL` every commit is an
//! fsync. Giving each request its own transaction therefore costs one fsync per token, and
//! several writer connections fight over the lock through SQLite's busy handler, which
//! *sleeps* (1, 2, 5, ... 100 ms) instead of waiting for the lock to be released.
//!
//! Instead, one thread owns the only writing connection. Requests queue their operation; the
//! thread takes every operation waiting, runs them in one `BEGIN IMMEDIATE ... COMMIT`, and
//! answers each request only after the commit is durable. If one operation fails (a
//! duplicate, a deleted client), the batch is rolled back and run again with each operation
//! in its own savepoint, so the failure stays alone. Savepoints are not the normal path:
//! every page first touched inside one is copied to a statement journal, which costs more
//! than the insert itself. Durability is unchanged — nothing is
//! acknowledged before its commit — while the fsync is shared by the whole batch, and a
//! single writer never meets `SQLITE_BUSY` from its own process.

use std::sync::{Arc, mpsc};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::checkpointer::{RestartRequest, checkpoint};
use super::readers::{Commits, Readers};
use crate::StoreError;

/// The most operations in one transaction: bounds how long a batch holds the write lock.
const MAX_BATCH: usize = 512;

/// An operation queued for the writer.
trait Job: Send {
    /// Runs inside the batch's transaction and keeps the outcome. Returns whether it
    /// succeeded. May run twice, if the first run's transaction was rolled back.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Delivers the job's outcome once the batch is committed (or failed to commit).
    fn finish(self: Box<Self>, commit: Result<(), &StoreError>);
    /// Whether the job only inserts rows, changing and removing none (see `Commits`).
    fn adds_only(&self) -> bool;
}

struct Pending<T, F> {
    op: F,
    adds_only: bool,
    outcome: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for Pending<T, F>
where
    T: Send,
    F: Fn(&Connection) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let outcome = (self.op)(conn);
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn finish(self: Box<Self>, commit: Result<(), &StoreError>) {
        let outcome = match (self.outcome, commit) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (_, Err(e)) => Err(e.for_batch_member()),
            (None, Ok(())) => Err(StoreError::Config("write operation never ran".into())),
        };
        // The requester may have gone away (a dropped HTTP request); the write stands.
        let _ = self.reply.send(outcome);
    }

    fn adds_only(&self) -> bool {
        self.adds_only
    }
}

/// The handle requests use to reach the writer thread. Dropping the last handle ends the
/// thread after it has finished what was queued.
#[derive(Debug, Clone)]
pub struct Writer {
    queue: mpsc::Sender<Box<dyn Job>>,
}

impl Writer {
    /// Starts the writer thread on `conn`, which must be the only connection that writes.
    /// It counts its commits in `commits`, which `readers` watch to refresh their snapshots.
    pub fn start(
        conn: Connection,
        restart: RestartRequest,
        commits: Commits,
        readers: Arc<Readers>,
    ) -> Result<Self, StoreError> {
        let (queue, jobs) = mpsc::channel();
        let thread = WriterThread {
            conn,
            restart,
            commits,
            readers,
        };
        std::thread::Builder::new()
            .name("tessera-sqlite-writer".into())
            .spawn(move || thread.write_loop(&jobs))
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        Ok(Self { queue })
    }

    /// Runs `op` in the writer's next transaction and returns its result once that
    /// transaction is committed. `op` must not return an error after writing something it
    /// wants kept: an error rolls back everything `op` wrote. It may be run a second time
    /// after its first run was rolled back, so it must depend only on the database.
    pub async fn write<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(op, false).await
    }

    /// Like [`Writer::write`], for an `op` that only inserts rows: it changes and removes
    /// none. Readers' lookups may then keep their snapshot across its commit
    /// ([`super::readers::Readers::lookup`]), so getting this wrong would let them answer
    /// from a state older than an acknowledged change.
    pub async fn add<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(op, true).await
    }

    async fn submit<T, F>(&self, op: F, adds_only: bool) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Pending {
            op,
            adds_only,
            outcome: None,
            reply,
        });
        self.queue.send(job).map_err(|_| writer_gone())?;
        answer.await.map_err(|_| writer_gone())?
    }
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable("the SQLite writer thread has stopped".into())
}

/// What the writer thread owns.
struct WriterThread {
    conn: Connection,
    restart: RestartRequest,
    commits: Commits,
    readers: Arc<Readers>,
}

impl WriterThread {
    fn write_loop(&self, jobs: &mpsc::Receiver<Box<dyn Job>>) {
        // `recv` fails only when every handle is dropped: the store is gone.
        while let Ok(first) = jobs.recv() {
            let mut batch = Vec::with_capacity(16);
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.run_batch(batch);
            if self.restart.take() {
                self.prepare_restart();
            }
        }
    }

    /// The checkpointer has copied back all but the last few frames: copying those here,
    /// where no write can slip in, lets the next transaction restart the WAL, provided no
    /// reader holds a snapshot that uses the WAL. So snapshots are closed before (an older
    /// one would stop the copy short of the end) and after (one opened meanwhile uses the
    /// WAL); those opened after that read only the database file, since every frame is in it.
    fn prepare_restart(&self) {
        let started = std::time::Instant::now();
        self.readers.close_all();
        match checkpoint(&self.conn) {
            Ok(wal) => tracing::debug!(
                frames = wal.frames,
                copied = wal.copied,
                micros = started.elapsed().as_micros() as u64,
                "SQLite WAL ready to restart"
            ),
            Err(e) => tracing::warn!(error = %e, "SQLite checkpoint on the writer failed"),
        }
        self.readers.close_all();
    }

    fn run_batch(&self, mut batch: Vec<Box<dyn Job>>) {
        let conn = &self.conn;
        let outcome = begin(conn).and_then(|()| {
            if batch.iter_mut().all(|job| job.run(conn)) {
                return conn.execute_batch("COMMIT");
            }
            // Some job failed: undo the batch, and run it again with each job isolated.
            conn.execute_batch("ROLLBACK")?;
            if batch.len() == 1 {
                return Ok(());
            }
            begin(conn)?;
            for job in &mut batch {
                run_in_savepoint(conn, job.as_mut())?;
            }
            conn.execute_batch("COMMIT")
        });
        if let Err(e) = &outcome {
            tracing::warn!(error = %e, jobs = batch.len(), "SQLite writer batch failed");
            // After a failed COMMIT SQLite may or may not have rolled back already.
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
        }
        // Before any answer: a reader that sees the new count takes a fresh snapshot.
        self.commits
            .count_one(batch.iter().all(|job| job.adds_only()));
        let commit = outcome.map_err(StoreError::from);
        for job in batch {
            job.finish(commit.as_ref().map(|_| ()));
        }
    }
}

fn begin(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    Ok(())
}

fn run_in_savepoint(conn: &Connection, job: &mut dyn Job) -> Result<(), rusqlite::Error> {
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    if job.run(conn) {
        conn.prepare_cached("RELEASE job")?.execute([])?;
    } else {
        conn.prepare_cached("ROLLBACK TO job")?.execute([])?;
        conn.prepare_cached("RELEASE job")?.execute([])?;
    }
    Ok(())
}
