//! The [`Store`] handle: the read pool, where writes run, and the store's lifecycle.

use std::sync::Arc;

use sqlx::{
    Any, AnyPool,
    any::{AnyArguments, AnyRow},
    query::Query,
};

use super::{
    error::StoreError,
    pool::{self, StoreOptions, redact},
    sql::{Backend, Sql},
    writer::Writer,
};

/// The store. Cheap to clone (the pool and the writer are shared).
#[derive(Debug, Clone)]
pub struct Store {
    /// Reads (and, on PostgreSQL and in memory, writes too).
    pub(super) pool: AnyPool,
    pub(super) writer: Arc<Writer>,
    pub(super) backend: Backend,
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
        Ok(Store { pool: opened.pool, writer: Arc::new(opened.writer), backend: target.backend })
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

    /// Closes the store, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }

    /// The statement text for this store's backend.
    pub(crate) fn sql(&self, sql: Sql) -> &'static str {
        sql.text(self.backend)
    }

    /// Runs one write statement and returns how many rows it changed. `op` names the store
    /// operation for errors and the commit metric.
    pub(crate) async fn write(
        &self,
        op: &'static str,
        query: Query<'_, Any, AnyArguments>,
    ) -> Result<u64, StoreError> {
        self.writer.acquire(op).await?.execute(query).await
    }

    /// Runs one write statement with `RETURNING` and returns its rows, once it has committed.
    pub(crate) async fn write_returning(
        &self,
        op: &'static str,
        query: Query<'_, Any, AnyArguments>,
    ) -> Result<Vec<AnyRow>, StoreError> {
        self.writer.acquire(op).await?.fetch_all(query).await
    }
}
