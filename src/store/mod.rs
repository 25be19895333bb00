//! The store: SQLite (default, one file, one process) or PostgreSQL (many replicas).
//!
//! It holds the **idempotency ledger** (one row per `(connection, ticket, event kind)`: which
//! step is done, the validated decision, the lease of the worker on it), the **shadow proposals**
//! and their reviews, and the poller's **cursors**. It is what turns at-least-once delivery into
//! exactly-once effects: a redelivered event claims its key, sees how far an earlier attempt got
//! and finishes from there (DESIGN.md, "Delivery guarantees").
//!
//! **One code path, two backends.** Queries run through sqlx's `AnyPool` with portable SQL (`$N`
//! placeholders, `ON CONFLICT`, `RETURNING`, window functions); only the clock expression differs
//! (see `sql.rs`). Timestamps are epoch milliseconds and JSON is TEXT, because the Any driver
//! carries only integers, floats, text and blobs. Migrations live in `migrations/sqlite` and
//! `migrations/postgres`, are embedded in the binary and run at [`Store::connect`].
//!
//! **The database is the lock.** Every ledger write is ONE statement whose `WHERE` checks the
//! lease holder, so there is no read-modify-write window: [`Store::claim`] is a single
//! `INSERT … ON CONFLICT DO UPDATE … WHERE <claimable> RETURNING …`, which PostgreSQL runs under
//! the row lock (concurrent claimers of one key serialise and re-check the condition) and SQLite
//! runs under its single writer lock. Lease times come from the database clock, so replicas with
//! skewed clocks still agree on who holds a key.
//!
//! Knobs: the URL (`store.url`) and [`StoreOptions`] (pool size, acquire timeout). SQLite files
//! are opened with `mode=rwc` (created if missing, parent directory too), WAL journal and sqlx's
//! 5 s `busy_timeout`; their writes go through connections of the store's own under one lock
//! (`writer.rs`: no collisions on SQLite's single write lock, no disk flush for lease writes,
//! and writes arriving together share one, `group.rs` and `batch.rs`).

mod batch;
mod cursors;
mod entry;
mod error;
mod finish;
mod group;
mod ledger;
mod migrate;
mod pool;
mod proposals;
mod queue;
pub(crate) mod sql;
mod stats;
mod writer;

use std::{fmt, sync::Arc};

use sqlx::AnyPool;
use writer::SqliteWriter;

pub use entry::{ClaimOutcome, Entry, LedgerKey, Step};
pub use error::StoreError;
pub use pool::{StoreOptions, redact};
pub use proposals::{NewProposal, Proposal, ProposalFilter, ProposalStatus};
pub use stats::{ConnectionStats, ProposalCounts, Stats};

/// Which database is behind a [`Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// One SQLite file (or memory).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Backend {
    /// `"sqlite"` or `"postgres"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The store. Cheap to clone (the pool is shared).
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    /// A SQLite file's write connection (`writer.rs`); `None`: writes use the pool.
    writer: Option<Arc<SqliteWriter>>,
    backend: Backend,
}

impl Store {
    /// Opens the store at `url` with default [`StoreOptions`] and runs pending migrations.
    ///
    /// `sqlite://PATH` or `sqlite:PATH` (relative to the working directory; the file and its
    /// parent directory are created if missing), `sqlite::memory:` (one connection, gone when the
    /// store is dropped), or `postgres://USER[:PASS]@HOST[:PORT]/DB`. Errors name the URL with
    /// the password replaced by `***`.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Self::connect_with(url, &StoreOptions::default()).await
    }

    /// [`Store::connect`] with explicit pool settings.
    pub async fn connect_with(url: &str, options: &StoreOptions) -> Result<Store, StoreError> {
        let target = pool::target(url)?;
        let opened = pool::open(url, &target, options).await?;
        tracing::debug!(backend = target.backend.as_str(), url = %redact(url), "store opened");
        Ok(Store { pool: opened.pool, writer: opened.writer.map(Arc::new), backend: target.backend })
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        self.backend.as_str()
    }

    /// Which database is behind the store.
    pub fn backend_kind(&self) -> Backend {
        self.backend
    }

    /// Checks that the database answers (for health endpoints).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(StoreError::query("ping"))?;
        Ok(())
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        if let Some(writer) = &self.writer {
            writer.close().await;
        }
        self.pool.close().await;
    }

    /// The statement text for this store's backend.
    pub(crate) fn sql(&self, sql: sql::Sql) -> &'static str {
        match self.backend {
            Backend::Sqlite => sql.sqlite,
            Backend::Postgres => sql.postgres,
        }
    }
}
