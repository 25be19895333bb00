//! The poller's cursor per connection (an opaque text, e.g. the last `updated_gte` used).

use super::{
    error::StoreError,
    handle::Store,
    sql::{self, sql},
};

const GET: &str = "SELECT cursor FROM poll_cursors WHERE connection_id = $1";
const SET: sql::Sql = sql!(
    "INSERT INTO poll_cursors (connection_id, cursor, updated_at) VALUES ($1, $2, " NOW ") \
     ON CONFLICT (connection_id) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at"
);

impl Store {
    /// The stored poll cursor of a connection.
    pub async fn poll_cursor(&self, connection_id: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar(GET)
            .bind(connection_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::query("poll_cursor"))
    }

    /// Stores (replaces) the poll cursor of a connection.
    pub async fn set_poll_cursor(&self, connection_id: &str, cursor: &str) -> Result<(), StoreError> {
        let query = sqlx::query(self.sql(SET)).bind(connection_id).bind(cursor);
        self.write("set_poll_cursor", query).await?;
        Ok(())
    }
}
