//! Where writes run.
//!
//! SQLite has one writer at a time. Two pooled connections writing at once collide on its lock,
//! and the loser sleeps in SQLite's busy handler (1 ms, then longer) instead of queueing; and a
//! pooled connection costs a round trip to its thread on every release (sqlx checks it). So a
//! SQLite file store writes through two connections of its own, taken in turn under one async
//! lock: `durable` (`synchronous = FULL`: a commit is flushed to disk before it returns) and
//! `leases` (`synchronous = NORMAL`, for claim, renew and release: in WAL mode such a commit is
//! not flushed by itself, survives a crash of the process, and is made durable by the next
//! flush of the same WAL file). A lease lost to a power cut only frees its key early: the
//! redelivered event claims it again, sooner than a lease left by a dead process would allow.
//! Reads go through the pool, beside the writer (WAL readers do not wait for it).
//!
//! PostgreSQL and an in-memory SQLite store write through the pool.

use std::{
    ops::{Deref, DerefMut},
    time::Duration,
};

use sqlx::{Any, AnyConnection, pool::PoolConnection};
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};

use super::{Store, StoreError};

/// What a write's commit must survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// A power loss: flushed to disk before the commit returns.
    Durable,
    /// A crash of the process (a lease: losing it frees a key early, nothing else).
    Lease,
}

/// A SQLite file's two write connections.
pub(crate) struct SqliteWriters {
    /// `None` once the store is closed.
    connections: Mutex<Option<Connections>>,
    /// How long a write waits for the writer before failing with a retryable error.
    wait: Duration,
}

struct Connections {
    durable: AnyConnection,
    leases: AnyConnection,
}

impl SqliteWriters {
    pub(crate) fn new(durable: AnyConnection, leases: AnyConnection, wait: Duration) -> Self {
        Self { connections: Mutex::new(Some(Connections { durable, leases })), wait }
    }

    /// Closes both connections (waiting for a write in progress); later writes fail.
    pub(crate) async fn close(&self) {
        if let Some(c) = self.connections.lock().await.take() {
            let _ = sqlx::Connection::close(c.durable).await;
            let _ = sqlx::Connection::close(c.leases).await;
        }
    }
}

impl std::fmt::Debug for SqliteWriters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteWriters").field("wait", &self.wait).finish_non_exhaustive()
    }
}

/// A connection to write on, held until dropped.
pub(crate) enum Writer<'a> {
    /// From the pool (PostgreSQL, in-memory SQLite).
    Pooled(PoolConnection<Any>),
    /// One of a SQLite file's write connections, under the writer lock.
    Sqlite(MappedMutexGuard<'a, AnyConnection>),
}

impl Deref for Writer<'_> {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match self {
            Self::Pooled(c) => c,
            Self::Sqlite(c) => c,
        }
    }
}

impl DerefMut for Writer<'_> {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            Self::Pooled(c) => c,
            Self::Sqlite(c) => c,
        }
    }
}

impl Store {
    /// A connection for a write of this durability. `op` names the store operation for errors.
    pub(crate) async fn writer(
        &self,
        durability: Durability,
        op: &'static str,
    ) -> Result<Writer<'_>, StoreError> {
        let Some(writers) = &self.writers else {
            return self.pool.acquire().await.map(Writer::Pooled).map_err(StoreError::query(op));
        };
        let guard = tokio::time::timeout(writers.wait, writers.connections.lock())
            .await
            .map_err(|_| StoreError::query(op)(sqlx::Error::PoolTimedOut))?;
        let guard = MutexGuard::try_map(guard, |c| {
            c.as_mut().map(|c| match durability {
                Durability::Durable => &mut c.durable,
                Durability::Lease => &mut c.leases,
            })
        })
        .map_err(|_| StoreError::query(op)(sqlx::Error::PoolClosed))?;
        Ok(Writer::Sqlite(guard))
    }
}
