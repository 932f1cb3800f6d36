//! SQLite reads, run on the caller's own thread.
//!
//! Every read Tessera makes is a point lookup by primary or unique key: a few B-tree pages
//! that sit in the page cache, a few microseconds of work. Handing such a lookup to another
//! thread and back (as an async driver must, since SQLite's API blocks) costs two context
//! switches, which on a small machine is more than the lookup itself. So lookups run inline,
//! on a small set of read-only connections; in WAL mode they never wait for the writer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use rusqlite::Connection;

use crate::StoreError;

#[derive(Debug)]
pub struct Readers {
    connections: Box<[Mutex<Connection>]>,
    next: AtomicUsize,
}

impl Readers {
    pub fn new(connections: Vec<Connection>) -> Result<Self, StoreError> {
        if connections.is_empty() {
            return Err(StoreError::Config("no SQLite read connection".into()));
        }
        Ok(Self {
            connections: connections.into_iter().map(Mutex::new).collect(),
            next: AtomicUsize::new(0),
        })
    }

    /// Runs `read` on a free connection, or waits for one (each is held for microseconds).
    pub fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let count = self.connections.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count;
        let mut candidates = self.connections.iter().cycle().skip(start).take(count);
        let preferred = candidates.next();
        for connection in preferred.iter().copied().chain(candidates) {
            if let Ok(conn) = connection.try_lock() {
                return read(&conn);
            }
        }
        match preferred {
            Some(connection) => read(&connection.lock().unwrap_or_else(PoisonError::into_inner)),
            None => Err(StoreError::Config("no SQLite read connection".into())),
        }
    }
}
