//! SQLite reads, run on the caller's own thread.
//!
//! Every read Tessera makes is a point lookup by primary or unique key: a few B-tree pages
//! that sit in the page cache, a few microseconds of work. Handing such a lookup to another
//! thread and back (as an async driver must, since SQLite's API blocks) costs two context
//! switches, which on a small machine is more than the lookup itself. So lookups run inline,
//! on a small set of read-only connections; in WAL mode they never wait for the writer.
//!
//! Each connection keeps its read transaction (its snapshot) open from one lookup to the
//! next. Beginning one costs SQLite two `fcntl` locks on the shared-memory file and an
//! `fstat` of the database (6% of an introspection's CPU), and a lookup only needs a snapshot
//! that holds every write acknowledged so far. So a snapshot is kept until the writer commits
//! again ([`Commits`]; the writer counts a commit before it answers anyone, so no answered
//! write is ever missed), and for at most [`MAX_SNAPSHOT_AGE`], which bounds how late a
//! change made by another process (the `tessera` command line) is seen. An open snapshot also
//! holds back checkpoints (nothing written after it can be copied back, and the WAL cannot
//! restart), so the checkpointer closes snapshots that have fallen behind
//! ([`Readers::close_stale`]) and the writer closes them all before the WAL restarts
//! ([`Readers::close_all`]).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::StoreError;

/// The longest a read connection keeps one snapshot, even without a commit of our writer.
pub const MAX_SNAPSHOT_AGE: Duration = Duration::from_millis(100);

/// How many transactions the writer has committed: a snapshot taken at count `n` holds every
/// write acknowledged before the count passed `n`.
#[derive(Debug, Clone, Default)]
pub struct Commits(Arc<AtomicU64>);

impl Commits {
    /// Called by the writer after each commit, before any of its answers leave.
    pub fn count_one(&self) {
        self.0.fetch_add(1, Ordering::Release);
    }

    fn current(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

#[derive(Debug, Clone, Copy)]
struct Snapshot {
    commits: u64,
    opened: Instant,
}

impl Snapshot {
    fn is_current(&self, commits: u64) -> bool {
        self.commits == commits && self.opened.elapsed() < MAX_SNAPSHOT_AGE
    }
}

#[derive(Debug)]
struct Reader {
    conn: Connection,
    snapshot: Option<Snapshot>,
}

impl Reader {
    fn read<T>(
        &mut self,
        commits: u64,
        read: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self.snapshot.is_some_and(|s| !s.is_current(commits)) {
            self.close();
        }
        if self.snapshot.is_none() {
            // The count is read before the transaction takes its snapshot (at its first
            // statement), so the snapshot holds at least what the count says.
            if self.conn.is_autocommit() {
                self.conn.prepare_cached("BEGIN")?.execute([])?;
            }
            self.snapshot = Some(Snapshot {
                commits,
                opened: Instant::now(),
            });
        }
        let outcome = read(&self.conn);
        if outcome.is_err() {
            self.close();
        }
        outcome
    }

    /// Ends the read transaction, if one is open.
    fn close(&mut self) {
        self.snapshot = None;
        if !self.conn.is_autocommit()
            && let Err(e) = self
                .conn
                .prepare_cached("COMMIT")
                .and_then(|mut end| end.execute([]))
        {
            tracing::warn!(error = %e, "ending a SQLite read transaction failed");
        }
    }
}

#[derive(Debug)]
pub struct Readers {
    connections: Box<[Mutex<Reader>]>,
    next: AtomicUsize,
    commits: Commits,
}

impl Readers {
    pub fn new(connections: Vec<Connection>, commits: Commits) -> Result<Self, StoreError> {
        if connections.is_empty() {
            return Err(StoreError::Config("no SQLite read connection".into()));
        }
        Ok(Self {
            connections: connections
                .into_iter()
                .map(|conn| {
                    Mutex::new(Reader {
                        conn,
                        snapshot: None,
                    })
                })
                .collect(),
            next: AtomicUsize::new(0),
            commits,
        })
    }

    /// Runs `read` on a free connection, or waits for one (each is held for microseconds).
    pub fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let commits = self.commits.current();
        let count = self.connections.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count;
        let mut candidates = self.connections.iter().cycle().skip(start).take(count);
        let preferred = candidates.next();
        for connection in preferred.iter().copied().chain(candidates) {
            if let Ok(mut reader) = connection.try_lock() {
                return reader.read(commits, read);
            }
        }
        match preferred {
            Some(connection) => lock(connection).read(commits, read),
            None => Err(StoreError::Config("no SQLite read connection".into())),
        }
    }

    /// Closes the snapshots that a later commit or their age has made stale, on connections
    /// not in use at the moment (one in use is about to refresh its snapshot anyway).
    pub fn close_stale(&self) {
        let commits = self.commits.current();
        for connection in &self.connections {
            if let Ok(mut reader) = connection.try_lock()
                && reader.snapshot.is_some_and(|s| !s.is_current(commits))
            {
                reader.close();
            }
        }
    }

    /// Closes every snapshot, waiting for connections in use (a lookup holds one for
    /// microseconds, and never waits for anything itself).
    pub fn close_all(&self) {
        for connection in &self.connections {
            lock(connection).close();
        }
    }
}

#[cfg(test)]
impl Readers {
    pub fn connections_for_tests(&self) -> usize {
        self.connections.len()
    }
}

fn lock(connection: &Mutex<Reader>) -> MutexGuard<'_, Reader> {
    connection.lock().unwrap_or_else(PoisonError::into_inner)
}
