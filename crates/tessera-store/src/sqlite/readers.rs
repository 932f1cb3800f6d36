//! SQLite reads, run on the caller's own thread.
//!
//! Every read is a point lookup by key on cached pages, cheaper than the two context switches
//! of handing it to another thread (as an async driver must, since SQLite's API blocks). So
//! lookups run inline, on a few read-only connections that in WAL mode never wait for the
//! writer (docs/BENCHMARKS.md, "Bounds").
//!
//! Each connection keeps its read transaction (its snapshot) open between lookups, since
//! beginning one costs file locks and an `fstat`. A snapshot is dropped once the writer
//! commits again ([`Commits`], counted before anyone is answered, so no acknowledged write is
//! missed) or after [`MAX_SNAPSHOT_AGE`], which bounds how late a change made by another
//! process (the `tessera` command line) is seen. Open snapshots hold back checkpoints, so the
//! checkpointer closes stale ones ([`Readers::close_stale`]) and the writer closes them all
//! before the WAL restarts ([`Readers::close_all`]).
//!
//! A snapshot begun after any commit also drops the connection's page cache (`pager_reset`).
//! Most commits only add rows, and a row found in an older snapshot is unchanged in the
//! newer state, so [`Readers::lookup`] keeps a snapshot that only additions have passed and
//! takes a fresh one when the row is missing; any other commit makes it stale for every read
//! ([`Commits::count_one`] tells the two apart). Under steady issuance this keeps lookups in
//! the page cache (docs/BENCHMARKS.md, "Bounds").

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::StoreError;

/// The longest a read connection keeps one snapshot, even without a commit of our writer.
pub const MAX_SNAPSHOT_AGE: Duration = Duration::from_millis(100);

/// How many transactions the writer has committed, and how many of them did more than add
/// rows: a snapshot taken at count `n` holds every write acknowledged before the count
/// passed `n`.
#[derive(Debug, Clone, Default)]
pub struct Commits(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    all: AtomicU64,
    changes: AtomicU64,
}

/// The two counts, read together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Count {
    all: u64,
    changes: u64,
}

impl Commits {
    /// Called by the writer after each commit, before any of its answers leave.
    /// `adds_only`: the transaction only inserted rows (it changed or removed none).
    pub fn count_one(&self, adds_only: bool) {
        // `changes` first: a reader that sees the new `all` also sees it.
        if !adds_only {
            self.0.changes.fetch_add(1, Ordering::Release);
        }
        self.0.all.fetch_add(1, Ordering::Release);
    }

    fn current(&self) -> Count {
        let all = self.0.all.load(Ordering::Acquire);
        Count {
            all,
            changes: self.0.changes.load(Ordering::Acquire),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Snapshot {
    seen: Count,
    opened: Instant,
}

impl Snapshot {
    /// Holds every acknowledged write.
    fn is_current(&self, now: Count) -> bool {
        self.seen == now && self.is_young()
    }

    /// Holds every acknowledged write but, perhaps, some added rows.
    fn lacks_only_additions(&self, now: Count) -> bool {
        self.seen.changes == now.changes && self.is_young()
    }

    fn is_young(&self) -> bool {
        self.opened.elapsed() < MAX_SNAPSHOT_AGE
    }
}

#[derive(Debug)]
struct Reader {
    conn: Connection,
    snapshot: Option<Snapshot>,
    #[cfg(test)]
    snapshots_opened: u64,
}

impl Reader {
    fn read<T>(
        &mut self,
        now: Count,
        read: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self.snapshot.is_some_and(|s| !s.is_current(now)) {
            self.close();
        }
        if self.snapshot.is_none() {
            // The count is read before the transaction takes its snapshot (at its first
            // statement), so the snapshot holds at least what the count says.
            if self.conn.is_autocommit() {
                self.conn.prepare_cached("BEGIN")?.execute([])?;
            }
            self.snapshot = Some(Snapshot {
                seen: now,
                opened: Instant::now(),
            });
            #[cfg(test)]
            {
                self.snapshots_opened += 1;
            }
        }
        self.run(read)
    }

    fn lookup<T>(
        &mut self,
        now: Count,
        find: impl Fn(&Connection) -> Result<Option<T>, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        if let Some(snapshot) = self.snapshot
            && snapshot.lacks_only_additions(now)
        {
            // Nothing found here was changed or removed since; something missing here may
            // have been added since, unless the snapshot holds every commit.
            let found = self.run(&find)?;
            if found.is_some() || snapshot.is_current(now) {
                return Ok(found);
            }
            self.close();
        }
        self.read(now, find)
    }

    fn run<T>(
        &mut self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
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
                        #[cfg(test)]
                        snapshots_opened: 0,
                    })
                })
                .collect(),
            next: AtomicUsize::new(0),
            commits,
        })
    }

    /// Runs `read` on a free connection, or waits for one (each is held for microseconds),
    /// in a snapshot that holds every acknowledged write.
    pub fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let now = self.commits.current();
        self.with_reader(|reader| reader.read(now, read))
    }

    /// Like [`Readers::read`], for a lookup of one row by its key, which it may run twice:
    /// in a snapshot that lacks only rows added since, then, if the row is not there, in a
    /// fresh one. Only for a read whose answer is that row alone, so that a row found in the
    /// older snapshot is the answer the newer state gives too.
    pub fn lookup<T>(
        &self,
        find: impl Fn(&Connection) -> Result<Option<T>, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let now = self.commits.current();
        self.with_reader(|reader| reader.lookup(now, find))
    }

    fn with_reader<T>(
        &self,
        use_reader: impl FnOnce(&mut Reader) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let count = self.connections.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count;
        let mut candidates = self.connections.iter().cycle().skip(start).take(count);
        let preferred = candidates.next();
        for connection in preferred.iter().copied().chain(candidates) {
            if let Ok(mut reader) = connection.try_lock() {
                return use_reader(&mut reader);
            }
        }
        match preferred {
            Some(connection) => use_reader(&mut lock(connection)),
            None => Err(StoreError::Config("no SQLite read connection".into())),
        }
    }

    /// Closes the snapshots that a later commit or their age has made stale, on connections
    /// not in use at the moment (one in use is about to refresh its snapshot anyway).
    pub fn close_stale(&self) {
        let now = self.commits.current();
        for connection in &self.connections {
            if let Ok(mut reader) = connection.try_lock()
                && reader.snapshot.is_some_and(|s| !s.is_current(now))
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

    /// Snapshots taken so far, over all connections.
    pub fn snapshots_opened_for_tests(&self) -> u64 {
        self.connections
            .iter()
            .map(|c| lock(c).snapshots_opened)
            .sum()
    }
}

fn lock(connection: &Mutex<Reader>) -> MutexGuard<'_, Reader> {
    connection.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use rusqlite::OptionalExtension;

    use super::*;

    fn value(c: &Connection, key: i64) -> Result<Option<String>, StoreError> {
        Ok(
            c.query_row("SELECT v FROM t WHERE k = ?1", [key], |r| r.get(0))
                .optional()?,
        )
    }

    /// One read connection, and a writer that is a plain connection counting its commits by
    /// hand as the writer thread does.
    fn readers_and_writer() -> (Readers, Connection, Commits, std::path::PathBuf) {
        let (_, path) = crate::testing::fresh_sqlite_url().unwrap();
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)",
            )
            .unwrap();
        let commits = Commits::default();
        let readers =
            Readers::new(vec![Connection::open(&path).unwrap()], commits.clone()).unwrap();
        (readers, writer, commits, path)
    }

    /// A lookup keeps its snapshot across commits that only added rows, and takes a fresh one
    /// for a row not in it or after any other commit; its answers are always the latest.
    #[test]
    fn lookups_keep_their_snapshot_until_a_change() {
        let (readers, writer, commits, path) = readers_and_writer();
        let write = |sql: &str, adds_only: bool| {
            writer.execute(sql, []).unwrap();
            commits.count_one(adds_only);
        };
        let lookup = |key: i64| readers.lookup(|c| value(c, key)).unwrap();
        write("INSERT INTO t VALUES (1, 'a')", true);
        let started = Instant::now();
        assert_eq!(lookup(1).as_deref(), Some("a"));
        let first = readers.snapshots_opened_for_tests();

        write("INSERT INTO t VALUES (2, 'b')", true);
        assert_eq!(lookup(1).as_deref(), Some("a"));
        let kept = readers.snapshots_opened_for_tests() == first;
        assert_eq!(lookup(2).as_deref(), Some("b"), "added after the snapshot");
        assert_eq!(lookup(3), None);
        let after_miss = readers.snapshots_opened_for_tests();

        write("UPDATE t SET v = 'c' WHERE k = 1", false);
        assert_eq!(
            lookup(1).as_deref(),
            Some("c"),
            "changed after the snapshot"
        );
        write("DELETE FROM t WHERE k = 2", false);
        assert_eq!(lookup(2), None, "removed after the snapshot");
        // A strict read never uses a snapshot that misses an addition.
        write("INSERT INTO t VALUES (4, 'd')", true);
        let rows: i64 = readers
            .read(|c| Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(rows, 2);

        // Snapshots also age out: only if this thread ran without a long pause is the count
        // of snapshots taken exact.
        if started.elapsed() < MAX_SNAPSHOT_AGE / 2 {
            assert!(kept, "a row found needs no fresh snapshot");
            assert_eq!(
                after_miss,
                first + 1,
                "one fresh snapshot for the missing row"
            );
            assert_eq!(readers.snapshots_opened_for_tests(), first + 4);
        }
        drop(readers);
        drop(writer);
        crate::sqlite::tests::remove_database(&path);
    }
}
