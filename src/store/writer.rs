//! Where writes run.
//!
//! SQLite has one writer at a time. Pooled connections writing at once collide on its lock and
//! the loser sleeps in SQLite's busy handler (1 ms, then longer) instead of queueing; a pooled
//! connection costs a round trip to its thread on every release (sqlx checks it); and every
//! connection that did not make the last change re-reads the pages it changed. So a SQLite file
//! store writes through connections of its own, under ONE async lock, and reads through the pool
//! beside it (WAL readers do not wait for the writer).
//!
//! Two write connections, because durability is a setting of the connection:
//! - the **flushed** one (`synchronous = FULL`) commits to disk before it returns; every write
//!   an ack or a helpdesk write depends on goes through it;
//! - the **lease** one (`synchronous = NORMAL`) takes claims, renewals, releases and steps short
//!   of `Done` ([`Commit::Lease`]). In WAL mode such a commit survives a crash of the process and
//!   is made durable by the next flushed commit (the same WAL file is flushed). A lease lost to a
//!   power cut only frees its key early: the redelivered event claims it again, sooner than a
//!   lease left by a dead process would allow.
//!
//! Each write is then one statement, one call to the connection's thread and, for a statement
//! with `RETURNING`, one answer back ([`Writer::row`]). Switching `synchronous` on one connection
//! instead cost two statements more per lease write, each an answer the runtime was woken for.
//!
//! A shadowed ticket's last step is one statement too (`group.rs`). Writes committed together
//! otherwise (`batch.rs`) are a transaction of several calls ([`Writer::together`]); one that did
//! not run to its end (an error, or its future dropped at shutdown) may leave it open, so the
//! next write first rolls it back.
//!
//! PostgreSQL and an in-memory SQLite store write through the pool (both kinds of commit).

use std::{
    ops::{Deref, DerefMut},
    time::{Duration, Instant},
};

use sqlx::{
    Any, AnyConnection,
    any::{AnyArguments, AnyRow},
    pool::PoolConnection,
    query::Query,
};
use tokio::sync::{Mutex, MutexGuard, oneshot};

use super::{Store, StoreError, batch::WriteQueue, group::FinishQueue};

/// How a write is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Commit {
    /// On disk before the write returns.
    Flushed,
    /// Survives a crash of the process; on disk with the next flushed commit (lease writes).
    Lease,
}

impl Commit {
    /// The metric label.
    fn as_str(self) -> &'static str {
        match self {
            Self::Flushed => "flushed",
            Self::Lease => "lease",
        }
    }
}

/// A write that took longer than this is logged: on a SQLite file every other write waited for
/// it (a disk flush that stalls holds back every claim and finish).
const SLOW_COMMIT: Duration = Duration::from_secs(1);

/// Runs one write (a statement or a batch) and records how long it took on its connection, its
/// commit and flush included: `deskpilot_store_commit_seconds{commit}`, and a warning when slow.
async fn timed<T>(commit: Commit, statements: usize, write: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let written = write.await;
    let took = started.elapsed();
    metrics::histogram!("deskpilot_store_commit_seconds", "commit" => commit.as_str())
        .record(took.as_secs_f64());
    if took >= SLOW_COMMIT {
        tracing::warn!(
            commit = commit.as_str(),
            statements,
            took_ms = took.as_millis() as u64,
            "a store write took over {}s, its commit included (on a SQLite file every other write \
             waited behind it); is the disk, or the database server, slow or saturated?",
            SLOW_COMMIT.as_secs()
        );
    }
    written
}

/// A SQLite file's write connections.
pub(crate) struct SqliteWriter {
    /// `None` once the store is closed.
    state: Mutex<Option<WriterState>>,
    /// How long a write waits for the writer before failing with a retryable error.
    wait: Duration,
    /// Shadowed tickets' last commits waiting for the writer, committed together (`group.rs`).
    pub(crate) finishes: FinishQueue,
    /// Other flushed single writes waiting for the writer, committed together (`batch.rs`).
    pub(crate) writes: WriteQueue,
}

/// The connections and what the last batch left behind.
pub(crate) struct WriterState {
    /// `synchronous = FULL`.
    conn: AnyConnection,
    /// `synchronous = NORMAL`, for [`Commit::Lease`] writes.
    lease: AnyConnection,
    /// A batch did not run to its end: roll back before the next write.
    interrupted: bool,
}

impl SqliteWriter {
    /// `conn` flushes every commit, `lease` does not (see the module's doc).
    pub(crate) fn new(conn: AnyConnection, lease: AnyConnection, wait: Duration) -> Self {
        Self {
            state: Mutex::new(Some(WriterState { conn, lease, interrupted: false })),
            wait,
            finishes: FinishQueue::default(),
            writes: WriteQueue::default(),
        }
    }

    /// Runs what is queued (a batch of finishes, then a batch of writes) on `writer`.
    async fn run_queued(&self, writer: &mut Writer<'_>) {
        self.finishes.run(writer).await;
        self.writes.run(writer).await;
    }

    /// Closes the connections (waiting for a write in progress); later writes fail.
    pub(crate) async fn close(&self) {
        if let Some(mut state) = self.state.lock().await.take() {
            if state.interrupted {
                recover(&mut state.conn).await;
            }
            let _ = sqlx::Connection::close(state.lease).await;
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
    /// From the pool (PostgreSQL, in-memory SQLite), for commits of the given kind.
    Pooled(PoolConnection<Any>, Commit),
    /// One of a SQLite file's write connections, under the writer lock (`Some`: checked when
    /// taken).
    Sqlite(MutexGuard<'a, Option<WriterState>>, Commit),
}

impl Writer<'_> {
    /// Runs ONE statement and returns how many rows it changed: one answer, after the commit.
    pub(crate) async fn changed(&mut self, query: Query<'_, Any, AnyArguments>) -> Result<u64, sqlx::Error> {
        timed(self.commit(), 1, changed(self, query)).await
    }

    /// Runs ONE statement and returns every row it returns, once it has committed. A statement
    /// commits on its own, so one cut short (its future dropped) leaves no transaction open.
    pub(crate) async fn rows(
        &mut self,
        query: Query<'_, Any, AnyArguments>,
    ) -> Result<Vec<AnyRow>, sqlx::Error> {
        timed(self.commit(), 1, query.fetch_all(&mut **self)).await
    }

    /// Runs `queries` (one statement each) in one transaction and returns each one's count of
    /// changed rows or error once the commit is on disk. A failing statement is undone alone
    /// (SQLite keeps the transaction); `Err` when the transaction could not begin or commit.
    pub(crate) async fn together(
        &mut self,
        queries: Vec<Query<'_, Any, AnyArguments>>,
    ) -> Result<Vec<Result<u64, sqlx::Error>>, sqlx::Error> {
        let (statements, commit) = (queries.len(), self.commit());
        let (conn, begin): (&mut AnyConnection, _) = match self {
            Self::Pooled(conn, _) => (conn, "BEGIN"),
            Self::Sqlite(guard, _) => {
                let state = guard.as_mut().ok_or(sqlx::Error::PoolClosed)?;
                // Until COMMIT returns, a dropped future leaves the transaction open.
                state.interrupted = true;
                // Takes the write lock at once: a deferred transaction that reads first can fail
                // with SQLITE_BUSY on its first write instead of waiting for the lock.
                (&mut state.conn, "BEGIN IMMEDIATE")
            }
        };
        let result = timed(commit, statements, async {
            sqlx::query(begin).execute(&mut *conn).await?;
            let mut results = Vec::with_capacity(queries.len());
            for query in queries {
                results.push(changed(conn, query).await);
            }
            sqlx::query("COMMIT").execute(&mut *conn).await?;
            Ok(results)
        })
        .await;
        if result.is_err() {
            recover(conn).await;
        }
        if let Self::Sqlite(guard, _) = self
            && let Some(state) = guard.as_mut()
        {
            state.interrupted = false;
        }
        result
    }

    /// Runs ONE statement and returns its first row, if any, once the statement has committed.
    /// Every row is read: a statement with `RETURNING` commits after its last row, and sqlx
    /// drops the error of a statement it stops reading early (`fetch_optional`), so a commit
    /// that failed (a full disk) would pass for a lease taken.
    pub(crate) async fn row(
        &mut self,
        query: Query<'_, Any, AnyArguments>,
    ) -> Result<Option<AnyRow>, sqlx::Error> {
        timed(self.commit(), 1, first_row(self, query)).await
    }

    /// How this writer's commits are made.
    fn commit(&self) -> Commit {
        match self {
            Self::Pooled(_, commit) | Self::Sqlite(_, commit) => *commit,
        }
    }
}

/// Runs one write on `conn` and returns its first row, reading every row so that an error of
/// the commit that follows the last one is not lost (see [`Writer::row`]).
pub(crate) async fn first_row(
    conn: &mut AnyConnection,
    query: Query<'_, Any, AnyArguments>,
) -> Result<Option<AnyRow>, sqlx::Error> {
    Ok(query.fetch_all(conn).await?.into_iter().next())
}

/// Runs one statement on `conn` and returns how many rows it changed.
async fn changed(conn: &mut AnyConnection, query: Query<'_, Any, AnyArguments>) -> Result<u64, sqlx::Error> {
    query.execute(conn).await.map(|done| done.rows_affected())
}

/// The error of a write whose batch was cut short: it may have committed or not, which the next
/// attempt reads from the ledger.
pub(crate) fn interrupted() -> sqlx::Error {
    sqlx::Error::Protocol("the batch this write was committed in was interrupted".into())
}

/// Ends a transaction a batch may have left open ("no transaction is active" is the usual
/// answer).
async fn recover(conn: &mut AnyConnection) {
    if let Err(e) = sqlx::query("ROLLBACK").execute(&mut *conn).await {
        tracing::debug!(error = %e, "rollback after an interrupted batch");
    }
}

impl Deref for Writer<'_> {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match self {
            Self::Pooled(c, _) => c,
            Self::Sqlite(guard, commit) => {
                let state = guard.as_ref().expect("checked when the writer was taken");
                match commit {
                    Commit::Flushed => &state.conn,
                    Commit::Lease => &state.lease,
                }
            }
        }
    }
}

impl DerefMut for Writer<'_> {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            Self::Pooled(c, _) => c,
            Self::Sqlite(guard, commit) => {
                let state = guard.as_mut().expect("checked when the writer was taken");
                match commit {
                    Commit::Flushed => &mut state.conn,
                    Commit::Lease => &mut state.lease,
                }
            }
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
        if let Some(sqlite) = &self.writer {
            let (_queued, done) = sqlite.writes.push(query);
            return match self.await_queued(sqlite, op, done).await? {
                Ok(written) => written.map_err(StoreError::query(op)),
                Err(_) => Err(StoreError::query(op)(interrupted())),
            };
        }
        self.write_on(op, Commit::Flushed, query).await
    }

    /// Runs one write statement, committed as `commit` says, on its own (not queued) and returns
    /// how many rows it changed: one answer from the connection, after the commit.
    pub(crate) async fn write_on(
        &self,
        op: &'static str,
        commit: Commit,
        query: Query<'_, Any, AnyArguments>,
    ) -> Result<u64, StoreError> {
        self.writer_for(op, commit).await?.changed(query).await.map_err(StoreError::query(op))
    }

    /// Waits for the answer to something queued on a SQLite file's writer (`group.rs`,
    /// `batch.rs`), taking the writer to run the queues whenever it is free first. `Err` inside:
    /// the holder that took it was dropped mid-batch (shutdown).
    pub(crate) async fn await_queued<T>(
        &self,
        sqlite: &SqliteWriter,
        op: &'static str,
        mut done: oneshot::Receiver<T>,
    ) -> Result<Result<T, oneshot::error::RecvError>, StoreError> {
        loop {
            tokio::select! {
                biased;
                answer = &mut done => return Ok(answer),
                writer = self.writer(op) => sqlite.run_queued(&mut writer?).await,
            }
        }
    }

    /// Runs one lease write ([`Commit::Lease`]) with `RETURNING` and returns its first row
    /// (`None`: no row changed).
    pub(crate) async fn write_lease_row(
        &self,
        op: &'static str,
        query: Query<'_, Any, AnyArguments>,
    ) -> Result<Option<AnyRow>, StoreError> {
        let mut writer = self.writer_for(op, Commit::Lease).await?;
        writer.row(query).await.map_err(StoreError::query(op))
    }

    /// A connection to write on, whose commits are flushed. `op` names the store operation for
    /// errors.
    pub(crate) async fn writer(&self, op: &'static str) -> Result<Writer<'_>, StoreError> {
        self.writer_for(op, Commit::Flushed).await
    }

    /// A connection to write on, whose commits are as `commit` says.
    async fn writer_for(&self, op: &'static str, commit: Commit) -> Result<Writer<'_>, StoreError> {
        let Some(writer) = &self.writer else {
            let conn = self.pool.acquire().await.map_err(StoreError::query(op))?;
            return Ok(Writer::Pooled(conn, commit));
        };
        let mut guard = tokio::time::timeout(writer.wait, writer.state.lock())
            .await
            .map_err(|_| StoreError::query(op)(sqlx::Error::PoolTimedOut))?;
        let state = guard.as_mut().ok_or_else(|| StoreError::query(op)(sqlx::Error::PoolClosed))?;
        if state.interrupted {
            recover(&mut state.conn).await;
            state.interrupted = false;
        }
        Ok(Writer::Sqlite(guard, commit))
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;

    use super::*;
    use crate::{events::EventKind, store::LedgerKey};

    async fn synchronous(store: &Store, commit: Commit) -> i64 {
        let mut writer = store.writer_for("test", commit).await.unwrap();
        sqlx::query_scalar("PRAGMA synchronous").fetch_one(&mut *writer).await.unwrap()
    }

    #[tokio::test]
    async fn lease_writes_have_a_connection_of_their_own_and_the_rest_are_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = Store::connect(&url).await.unwrap();
        const NORMAL: i64 = 1;
        const FULL: i64 = 2;
        assert_eq!(synchronous(&store, Commit::Flushed).await, FULL);
        assert_eq!(synchronous(&store, Commit::Lease).await, NORMAL);
        let key = LedgerKey::new("demo", "1", EventKind::TicketCreated);
        store.claim(&key, "e1", "w1", Duration::from_secs(30)).await.unwrap();
        store.renew(&key, "w1", Duration::from_secs(60)).await.unwrap();
        store.finish(&key, "w1", None, "done").await.unwrap();
        assert!(store.entry(&key).await.unwrap().is_some_and(|e| e.step == crate::store::Step::Done));

        // A lease write abandoned after its first poll (it ran or it did not; either way the
        // writer must be sound afterwards).
        let other = LedgerKey::new("demo", "2", EventKind::TicketCreated);
        {
            let mut cut = pin!(store.claim(&other, "e2", "w1", Duration::from_secs(30)));
            let _ = futures::poll!(cut.as_mut());
        }
        // What a batch cut short leaves: a transaction open on the flushed connection.
        {
            let mut writer = store.writer("test").await.unwrap();
            let Writer::Sqlite(guard, _) = &mut writer else { panic!("a SQLite file has its own writer") };
            let state = guard.as_mut().unwrap();
            sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut state.conn).await.unwrap();
            state.interrupted = true;
        }
        // The next write rolls it back first, so the lease connection is not locked out.
        let third = LedgerKey::new("demo", "3", EventKind::TicketCreated);
        store.claim(&third, "e3", "w1", Duration::from_secs(30)).await.unwrap();
        store.close().await;
        let reopened = Store::connect(&url).await.unwrap();
        assert!(reopened.entry(&third).await.unwrap().is_some(), "committed, not left in a transaction");
        assert!(reopened.entry(&key).await.unwrap().is_some_and(|e| e.step == crate::store::Step::Done));
        reopened.close().await;
    }

    #[tokio::test]
    async fn a_row_returned_by_a_write_whose_commit_fails_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = Store::connect(&url).await.unwrap();
        let mut writer = store.writer_for("test", Commit::Lease).await.unwrap();
        // A deferred foreign key is checked at commit: the statement returns its row first.
        sqlx::raw_sql(
            "PRAGMA foreign_keys = ON; CREATE TABLE parent (id INTEGER PRIMARY KEY); \
             CREATE TABLE child (id INTEGER PRIMARY KEY, \
             parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)",
        )
        .execute(&mut *writer)
        .await
        .unwrap();
        let orphan = sqlx::query("INSERT INTO child (parent) VALUES (7) RETURNING id");
        let Err(err) = writer.row(orphan).await else { panic!("the commit failed: expected an error") };
        assert!(err.to_string().contains("FOREIGN KEY"), "{err}");
        let count: i64 =
            sqlx::query_scalar("SELECT count(*) FROM child").fetch_one(&mut *writer).await.unwrap();
        assert_eq!(count, 0);
        let kept = writer.row(sqlx::query("INSERT INTO parent (id) VALUES (7) RETURNING id")).await.unwrap();
        assert!(kept.is_some());
        drop(writer);
        store.close().await;
    }
}
