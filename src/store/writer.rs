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

use sqlx::{
    Any, AnyConnection,
    any::{AnyArguments, AnyRow},
    pool::PoolConnection,
    query::Query,
};
use tokio::sync::{Mutex, MutexGuard};

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

pub(crate) struct Connections {
    durable: AnyConnection,
    leases: AnyConnection,
    /// A [`Writer::transaction_batch`] on `durable` did not finish (an error, or its future was
    /// dropped): its transaction may still be open, so it is rolled back before the next write.
    interrupted: bool,
}

impl SqliteWriters {
    pub(crate) fn new(durable: AnyConnection, leases: AnyConnection, wait: Duration) -> Self {
        Self { connections: Mutex::new(Some(Connections { durable, leases, interrupted: false })), wait }
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
    Sqlite {
        /// Both connections (`Some`: checked when the writer was taken).
        guard: MutexGuard<'a, Option<Connections>>,
        /// Which one this writer uses.
        durability: Durability,
    },
}

impl Writer<'_> {
    /// Whether this is a SQLite file's own write connection ([`Writer::transaction_batch`] works).
    pub(crate) fn is_sqlite_writer(&self) -> bool {
        matches!(self, Self::Sqlite { .. })
    }

    /// Runs `query`, a `BEGIN IMMEDIATE; …; COMMIT` script, in one call to the connection's
    /// thread and returns the rows its statements return. On a SQLite file's writer only (sqlx
    /// does not track a transaction opened in SQL, so a pooled connection must not run one).
    pub(crate) async fn transaction_batch(
        &mut self,
        query: Query<'_, Any, AnyArguments>,
    ) -> Result<Vec<AnyRow>, sqlx::Error> {
        let Self::Sqlite { guard, .. } = self else {
            return Err(sqlx::Error::Protocol("a transaction script needs a SQLite writer".into()));
        };
        let c = guard.as_mut().ok_or(sqlx::Error::PoolClosed)?;
        c.interrupted = true;
        match query.fetch_all(&mut c.durable).await {
            Ok(rows) => {
                c.interrupted = false;
                Ok(rows)
            }
            Err(e) => {
                // A statement failed: sqlx stops the script there, maybe inside the transaction.
                rollback(&mut c.durable).await;
                c.interrupted = false;
                Err(e)
            }
        }
    }
}

/// Ends a transaction that may be open; "no transaction is active" is the usual answer.
async fn rollback(conn: &mut AnyConnection) {
    let _ = sqlx::query("ROLLBACK").execute(conn).await;
}

impl Deref for Writer<'_> {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match self {
            Self::Pooled(c) => c,
            Self::Sqlite { guard, durability } => {
                let c = guard.as_ref().expect("checked when the writer was taken");
                match durability {
                    Durability::Durable => &c.durable,
                    Durability::Lease => &c.leases,
                }
            }
        }
    }
}

impl DerefMut for Writer<'_> {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            Self::Pooled(c) => c,
            Self::Sqlite { guard, durability } => {
                let c = guard.as_mut().expect("checked when the writer was taken");
                match durability {
                    Durability::Durable => &mut c.durable,
                    Durability::Lease => &mut c.leases,
                }
            }
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
        let mut guard = tokio::time::timeout(writers.wait, writers.connections.lock())
            .await
            .map_err(|_| StoreError::query(op)(sqlx::Error::PoolTimedOut))?;
        let c = guard.as_mut().ok_or_else(|| StoreError::query(op)(sqlx::Error::PoolClosed))?;
        if c.interrupted {
            rollback(&mut c.durable).await;
            c.interrupted = false;
        }
        Ok(Writer::Sqlite { guard, durability })
    }
}
