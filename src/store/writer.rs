//! Where writes run.
//!
//! SQLite has one writer at a time. Pooled connections writing at once collide on its lock and
//! the loser sleeps in SQLite's busy handler (1 ms, then longer) instead of queueing; a pooled
//! connection costs a round trip to its thread on every release (sqlx checks it); and every
//! connection that did not make the last change re-reads the pages it changed. So a SQLite file
//! store writes through ONE connection of its own, under an async lock, and reads through the
//! pool beside it (WAL readers do not wait for the writer).
//!
//! Its commits are flushed to disk before they return (`synchronous = FULL`), except lease writes
//! (claim, renew, release: `lease_sql!`), which run with `synchronous = NORMAL`: in WAL mode such
//! a commit survives a crash of the process and is made durable by the next flush of the same
//! WAL file. A lease lost to a power cut only frees its key early: the redelivered event claims
//! it again, sooner than a lease left by a dead process would allow.
//!
//! Lease writes and a shadowed ticket's last step are scripts of several statements sent in one
//! call ([`Writer::script`]). One that did not run to its end (an error, or its future dropped at
//! shutdown) may leave a transaction open or `synchronous` lowered, so the next write first rolls
//! back and restores `FULL`.
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

use super::{Store, StoreError, group::FinishQueue};

/// A SQLite file's write connection.
pub(crate) struct SqliteWriter {
    /// `None` once the store is closed.
    state: Mutex<Option<WriterState>>,
    /// How long a write waits for the writer before failing with a retryable error.
    wait: Duration,
    /// Shadowed tickets' last commits waiting for the writer, committed together (`group.rs`).
    pub(crate) finishes: FinishQueue,
}

/// The connection and what its last script left behind.
pub(crate) struct WriterState {
    conn: AnyConnection,
    /// A script did not run to its end: roll back and restore `synchronous` before the next write.
    interrupted: bool,
}

impl SqliteWriter {
    pub(crate) fn new(conn: AnyConnection, wait: Duration) -> Self {
        Self {
            state: Mutex::new(Some(WriterState { conn, interrupted: false })),
            wait,
            finishes: FinishQueue::default(),
        }
    }

    /// Closes the connection (waiting for a write in progress); later writes fail.
    pub(crate) async fn close(&self) {
        if let Some(mut state) = self.state.lock().await.take() {
            if state.interrupted {
                recover(&mut state.conn).await;
            }
            let _ = sqlx::Connection::close(state.conn).await;
        }
    }
}

impl std::fmt::Debug for SqliteWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteWriter").field("wait", &self.wait).finish_non_exhaustive()
    }
}

/// A connection to write on, held until dropped.
pub(crate) enum Writer<'a> {
    /// From the pool (PostgreSQL, in-memory SQLite).
    Pooled(PoolConnection<Any>),
    /// A SQLite file's write connection, under the writer lock (`Some`: checked when taken).
    Sqlite(MutexGuard<'a, Option<WriterState>>),
}

impl Writer<'_> {
    /// Runs every statement of `query` (a script, or one statement) in one call to the
    /// connection and returns the rows they return.
    pub(crate) async fn script(
        &mut self,
        query: Query<'_, Any, AnyArguments>,
    ) -> Result<Vec<AnyRow>, sqlx::Error> {
        let state = match self {
            Self::Pooled(conn) => return query.fetch_all(&mut **conn).await,
            Self::Sqlite(guard) => guard.as_mut().ok_or(sqlx::Error::PoolClosed)?,
        };
        state.interrupted = true;
        let result = query.fetch_all(&mut state.conn).await;
        if result.is_err() {
            // sqlx stops a script at its first failing statement, maybe inside its transaction.
            recover(&mut state.conn).await;
        }
        state.interrupted = false;
        result
    }
}

/// Ends a transaction a script may have left open ("no transaction is active" is the usual
/// answer) and puts `synchronous` back to `FULL`.
async fn recover(conn: &mut AnyConnection) {
    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
    if let Err(e) = sqlx::query("PRAGMA synchronous = FULL").execute(&mut *conn).await {
        tracing::error!(error = %e, "could not restore synchronous = FULL on the store's writer");
    }
}

impl Deref for Writer<'_> {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match self {
            Self::Pooled(c) => c,
            Self::Sqlite(guard) => &guard.as_ref().expect("checked when the writer was taken").conn,
        }
    }
}

impl DerefMut for Writer<'_> {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            Self::Pooled(c) => c,
            Self::Sqlite(guard) => &mut guard.as_mut().expect("checked when the writer was taken").conn,
        }
    }
}

impl Store {
    /// Runs one write statement on a writer and returns how many rows it changed. `op` names the
    /// store operation for errors.
    pub(crate) async fn write(
        &self,
        op: &'static str,
        query: Query<'_, Any, AnyArguments>,
    ) -> Result<u64, StoreError> {
        let mut writer = self.writer(op).await?;
        let done = query.execute(&mut *writer).await.map_err(StoreError::query(op))?;
        Ok(done.rows_affected())
    }

    /// Runs a script (every statement of it, as [`Writer::script`]) on a writer and returns the
    /// rows it returns: for lease writes (`lease_sql!`) and statements with `RETURNING`.
    pub(crate) async fn write_script(
        &self,
        op: &'static str,
        query: Query<'_, Any, AnyArguments>,
    ) -> Result<Vec<AnyRow>, StoreError> {
        let mut writer = self.writer(op).await?;
        writer.script(query).await.map_err(StoreError::query(op))
    }

    /// A connection to write on. `op` names the store operation for errors.
    pub(crate) async fn writer(&self, op: &'static str) -> Result<Writer<'_>, StoreError> {
        let Some(writer) = &self.writer else {
            return self.pool.acquire().await.map(Writer::Pooled).map_err(StoreError::query(op));
        };
        let mut guard = tokio::time::timeout(writer.wait, writer.state.lock())
            .await
            .map_err(|_| StoreError::query(op)(sqlx::Error::PoolTimedOut))?;
        let state = guard.as_mut().ok_or_else(|| StoreError::query(op)(sqlx::Error::PoolClosed))?;
        if state.interrupted {
            recover(&mut state.conn).await;
            state.interrupted = false;
        }
        Ok(Writer::Sqlite(guard))
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;

    use super::*;
    use crate::{events::EventKind, store::LedgerKey};

    async fn synchronous(store: &Store) -> i64 {
        let mut writer = store.writer("test").await.unwrap();
        sqlx::query_scalar("PRAGMA synchronous").fetch_one(&mut *writer).await.unwrap()
    }

    #[tokio::test]
    async fn lease_writes_leave_the_writer_flushing_every_commit() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = Store::connect(&url).await.unwrap();
        const FULL: i64 = 2;
        assert_eq!(synchronous(&store).await, FULL);
        let key = LedgerKey::new("demo", "1", EventKind::TicketCreated);
        store.claim(&key, "e1", "w1", Duration::from_secs(30)).await.unwrap();
        store.renew(&key, "w1", Duration::from_secs(60)).await.unwrap();
        assert_eq!(synchronous(&store).await, FULL, "a lease script puts FULL back");

        // A lease write abandoned after its first poll (its script may stop half-way, or have
        // finished already: either way the writer must be sound afterwards).
        let other = LedgerKey::new("demo", "2", EventKind::TicketCreated);
        {
            let mut cut = pin!(store.claim(&other, "e2", "w1", Duration::from_secs(30)));
            let _ = futures::poll!(cut.as_mut());
        }
        assert_eq!(synchronous(&store).await, FULL, "the next write restores FULL first");

        // What a script cut short leaves: a transaction open with synchronous lowered.
        {
            let mut writer = store.writer("test").await.unwrap();
            let Writer::Sqlite(guard) = &mut writer else { panic!("a SQLite file has its own writer") };
            let state = guard.as_mut().unwrap();
            sqlx::raw_sql("PRAGMA synchronous = NORMAL; BEGIN IMMEDIATE")
                .execute(&mut state.conn)
                .await
                .unwrap();
            state.interrupted = true;
        }
        assert_eq!(synchronous(&store).await, FULL);
        let third = LedgerKey::new("demo", "3", EventKind::TicketCreated);
        store.claim(&third, "e3", "w1", Duration::from_secs(30)).await.unwrap();
        store.close().await;
        let reopened = Store::connect(&url).await.unwrap();
        assert!(reopened.entry(&third).await.unwrap().is_some(), "committed, not left in a transaction");
        store.close().await;
    }
}
