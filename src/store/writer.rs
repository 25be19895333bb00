//! Where writes run, and how long each holds the store.
//!
//! A SQLite file has one writer at a time: pooled connections writing at once would collide on
//! its lock and sleep in SQLite's busy handler instead of queueing. So a SQLite file store writes
//! through ONE connection of its own (`synchronous = FULL`: every commit is on disk before it
//! returns) under an async lock, and reads through the pool beside it (WAL readers do not wait
//! for the writer). PostgreSQL and an in-memory SQLite store write through the pool.
//!
//! Every write is one statement or one transaction on a [`WriteConn`], which times how long it
//! held the store, commit included.

use std::{
    ops::{Deref, DerefMut},
    time::{Duration, Instant},
};

use sqlx::{
    Any, AnyConnection, AnyPool, Connection, Transaction,
    any::{AnyArguments, AnyRow},
    pool::PoolConnection,
    query::Query,
};
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};

use super::{error::StoreError, sql::Backend};

/// A write that held the store longer than this is logged: on a SQLite file every other write
/// waited for it (a disk flush that stalls holds back every claim and finish).
const SLOW_WRITE: Duration = Duration::from_secs(1);

/// Where a store's writes run.
pub(crate) enum Writer {
    /// PostgreSQL, or an in-memory SQLite store (whose one pooled connection is the database).
    Pool {
        /// The store's pool.
        pool: AnyPool,
        /// The statement that begins a transaction.
        begin: &'static str,
    },
    /// A SQLite file's write connection.
    Sqlite {
        /// `None` once the store is closed.
        state: Mutex<Option<SqliteWrite>>,
        /// How long a write waits for the connection before failing with a retryable error.
        wait: Duration,
    },
}

/// A SQLite file's write connection.
pub(crate) struct SqliteWrite {
    conn: AnyConnection,
    /// A transaction was begun and not yet ended: a write whose future was dropped half-way
    /// (shutdown) leaves it open, so the next write rolls it back first.
    in_transaction: bool,
}

impl SqliteWrite {
    /// Ends a transaction left open. "No transaction is active" is a usual answer: SQLite rolls
    /// a transaction back itself when its commit fails on a full disk.
    async fn roll_back(&mut self) {
        if let Err(e) = sqlx::query("ROLLBACK").execute(&mut self.conn).await {
            tracing::debug!(error = %e, "rollback of an unfinished store transaction");
        }
        self.in_transaction = false;
    }
}

/// The statement that begins a transaction on `backend`. On SQLite it takes the write lock at
/// once: a deferred transaction that reads first can fail with SQLITE_BUSY on its first write
/// instead of waiting for the lock.
pub(crate) fn begin_statement(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "BEGIN IMMEDIATE",
        Backend::Postgres => "BEGIN",
    }
}

impl Writer {
    /// A SQLite file's writer over `conn`, whose commits are flushed to disk.
    pub(crate) fn sqlite(conn: AnyConnection, wait: Duration) -> Self {
        Self::Sqlite { state: Mutex::new(Some(SqliteWrite { conn, in_transaction: false })), wait }
    }

    /// A connection to write on, held (and timed) until dropped. `op` names the store operation
    /// for errors and the commit metric.
    pub(crate) async fn acquire(&self, op: &'static str) -> Result<WriteConn<'_>, StoreError> {
        let held = match self {
            Self::Pool { pool, begin } => {
                Held::Pooled(pool.acquire().await.map_err(StoreError::query(op))?, begin)
            }
            Self::Sqlite { state, wait } => {
                let guard = tokio::time::timeout(*wait, state.lock())
                    .await
                    .map_err(|_| StoreError::query(op)(sqlx::Error::PoolTimedOut))?;
                let mut write = MutexGuard::try_map(guard, Option::as_mut)
                    .map_err(|_| StoreError::query(op)(sqlx::Error::PoolClosed))?;
                if write.in_transaction {
                    write.roll_back().await;
                }
                Held::Sqlite(write)
            }
        };
        Ok(WriteConn { held, op, since: Instant::now() })
    }

    /// Closes a SQLite file's write connection (waiting for a write in progress); later writes
    /// fail. The pool is the store's to close.
    pub(crate) async fn close(&self) {
        if let Self::Sqlite { state, .. } = self
            && let Some(mut write) = state.lock().await.take()
        {
            if write.in_transaction {
                write.roll_back().await;
            }
            let _ = write.conn.close().await;
        }
    }
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pool { .. } => f.write_str("Writer::Pool"),
            Self::Sqlite { wait, .. } => f.debug_struct("Writer::Sqlite").field("wait", wait).finish(),
        }
    }
}

enum Held<'a> {
    /// With the statement that begins a transaction on it.
    Pooled(PoolConnection<Any>, &'static str),
    Sqlite(MappedMutexGuard<'a, SqliteWrite>),
}

/// A connection to write on. Dropping it records how long it was held in
/// `deskpilot_store_commit_seconds{op}`, and warns when that was over a second.
pub(crate) struct WriteConn<'a> {
    held: Held<'a>,
    op: &'static str,
    since: Instant,
}

impl WriteConn<'_> {
    /// Runs ONE statement and returns how many rows it changed, once it has committed.
    pub(crate) async fn execute(&mut self, query: Query<'_, Any, AnyArguments>) -> Result<u64, StoreError> {
        let op = self.op;
        query.execute(&mut **self).await.map(|done| done.rows_affected()).map_err(StoreError::query(op))
    }

    /// Runs ONE statement and returns every row it returns, once it has committed. Every row is
    /// read: a statement with `RETURNING` commits after its last row, and sqlx drops the error of
    /// a statement it stops reading early (`fetch_optional`), so a commit that failed (a full
    /// disk) would pass for a write that succeeded.
    pub(crate) async fn fetch_all(
        &mut self,
        query: Query<'_, Any, AnyArguments>,
    ) -> Result<Vec<AnyRow>, StoreError> {
        let op = self.op;
        query.fetch_all(&mut **self).await.map_err(StoreError::query(op))
    }

    /// Begins a transaction; it ends with [`WriteTx::commit`] or [`WriteTx::rollback`], and is
    /// rolled back if dropped before either.
    pub(crate) async fn begin(&mut self) -> Result<WriteTx<'_>, StoreError> {
        let op = self.op;
        match &mut self.held {
            Held::Pooled(conn, begin) => {
                let tx = conn.begin_with(*begin).await.map_err(StoreError::query(op))?;
                Ok(WriteTx { tx: Tx::Pooled(tx), op })
            }
            Held::Sqlite(write) => {
                // Set first: a future dropped while BEGIN runs may leave the transaction open.
                write.in_transaction = true;
                let begin = begin_statement(Backend::Sqlite);
                if let Err(e) = sqlx::query(begin).execute(&mut write.conn).await {
                    write.roll_back().await;
                    return Err(StoreError::query(op)(e));
                }
                Ok(WriteTx { tx: Tx::Sqlite(write), op })
            }
        }
    }
}

impl Deref for WriteConn<'_> {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match &self.held {
            Held::Pooled(conn, _) => conn,
            Held::Sqlite(write) => &write.conn,
        }
    }
}

impl DerefMut for WriteConn<'_> {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match &mut self.held {
            Held::Pooled(conn, _) => conn,
            Held::Sqlite(write) => &mut write.conn,
        }
    }
}

impl Drop for WriteConn<'_> {
    fn drop(&mut self) {
        let took = self.since.elapsed();
        metrics::histogram!("deskpilot_store_commit_seconds", "op" => self.op).record(took.as_secs_f64());
        if took >= SLOW_WRITE {
            tracing::warn!(
                op = self.op,
                took_ms = took.as_millis() as u64,
                "a store write took over {}s, its commit included (on a SQLite file every other write \
                 waited behind it); is the disk, or the database server, slow or saturated?",
                SLOW_WRITE.as_secs()
            );
        }
    }
}

/// A transaction on a [`WriteConn`]; statements run on it through `&mut *tx`.
pub(crate) struct WriteTx<'c> {
    tx: Tx<'c>,
    op: &'static str,
}

enum Tx<'c> {
    /// sqlx rolls it back if it is dropped open.
    Pooled(Transaction<'c, Any>),
    /// [`SqliteWrite::in_transaction`] says whether it was left open.
    Sqlite(&'c mut SqliteWrite),
}

impl WriteTx<'_> {
    /// Commits: the transaction is on disk when this returns `Ok`. A commit that fails leaves
    /// nothing behind.
    pub(crate) async fn commit(self) -> Result<(), StoreError> {
        let committed = match self.tx {
            Tx::Pooled(tx) => tx.commit().await,
            Tx::Sqlite(write) => {
                let committed = sqlx::query("COMMIT").execute(&mut write.conn).await.map(drop);
                match committed {
                    Ok(()) => write.in_transaction = false,
                    Err(_) => write.roll_back().await,
                }
                committed
            }
        };
        committed.map_err(StoreError::query(self.op))
    }

    /// Rolls back: nothing of the transaction stays.
    pub(crate) async fn rollback(self) {
        match self.tx {
            Tx::Pooled(tx) => {
                if let Err(e) = tx.rollback().await {
                    tracing::debug!(error = %e, "rollback of a store transaction");
                }
            }
            Tx::Sqlite(write) => write.roll_back().await,
        }
    }
}

impl Deref for WriteTx<'_> {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match &self.tx {
            Tx::Pooled(tx) => tx,
            Tx::Sqlite(write) => &write.conn,
        }
    }
}

impl DerefMut for WriteTx<'_> {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match &mut self.tx {
            Tx::Pooled(tx) => tx,
            Tx::Sqlite(write) => &mut write.conn,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;

    use super::*;
    use crate::{
        events::EventKind,
        store::{LedgerKey, Step, Store},
    };

    async fn file_store() -> (Store, String, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        (Store::connect(&url).await.unwrap(), url, dir)
    }

    #[tokio::test]
    async fn a_sqlite_file_writes_on_one_flushed_connection_and_ends_what_a_cut_write_left_open() {
        let (store, url, _dir) = file_store().await;
        const FULL: i64 = 2;
        let mut conn = store.writer.acquire("test").await.unwrap();
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(&mut *conn).await.unwrap();
        assert_eq!(synchronous, FULL);

        // A transaction whose future was dropped before its end (shutdown): left open.
        let abandoned = LedgerKey::new("demo", "1", EventKind::TicketCreated);
        let mut tx = conn.begin().await.unwrap();
        sqlx::query(
            "INSERT INTO ledger (connection_id, ticket_id, kind, event_id, created_at, updated_at) \
             VALUES ('demo', '1', 'ticket.created', 'e1', 0, 0)",
        )
        .execute(&mut *tx)
        .await
        .unwrap();
        drop(tx);
        drop(conn);

        // A claim abandoned after its first poll: it ran or it did not, the writer is sound.
        let cut = LedgerKey::new("demo", "2", EventKind::TicketCreated);
        {
            let mut claim = pin!(store.claim(&cut, "e2", "w1", Duration::from_secs(30)));
            let _ = futures::poll!(claim.as_mut());
        }

        // The next write rolls the open transaction back first, then commits its own.
        let key = LedgerKey::new("demo", "3", EventKind::TicketCreated);
        store.claim(&key, "e3", "w1", Duration::from_secs(30)).await.unwrap();
        store.finish(&key, "w1", None, "done").await.unwrap();
        store.close().await;
        let reopened = Store::connect(&url).await.unwrap();
        assert!(reopened.entry(&abandoned).await.unwrap().is_none(), "the open transaction was rolled back");
        assert!(reopened.entry(&key).await.unwrap().is_some_and(|e| e.step == Step::Done));
        reopened.close().await;
    }

    #[tokio::test]
    async fn a_row_returned_by_a_write_whose_commit_fails_is_an_error() {
        let (store, _url, _dir) = file_store().await;
        let mut conn = store.writer.acquire("test").await.unwrap();
        // A deferred foreign key is checked at commit: the statement returns its row first.
        sqlx::raw_sql(
            "PRAGMA foreign_keys = ON; CREATE TABLE parent (id INTEGER PRIMARY KEY); \
             CREATE TABLE child (id INTEGER PRIMARY KEY, \
             parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)",
        )
        .execute(&mut *conn)
        .await
        .unwrap();
        let orphan = sqlx::query("INSERT INTO child (parent) VALUES (7) RETURNING id");
        let Err(err) = conn.fetch_all(orphan).await else { panic!("the commit failed: expected an error") };
        assert!(crate::http::error_chain(&err).contains("FOREIGN KEY"), "{err:?}");
        let count: i64 =
            sqlx::query_scalar("SELECT count(*) FROM child").fetch_one(&mut *conn).await.unwrap();
        assert_eq!(count, 0);
        let kept =
            conn.fetch_all(sqlx::query("INSERT INTO parent (id) VALUES (7) RETURNING id")).await.unwrap();
        assert_eq!(kept.len(), 1);
        drop(conn);
        store.close().await;
    }
}
