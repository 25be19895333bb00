//! Ingest cursors: where a walk over a helpdesk's `updated_at` order stands (a connection's poller,
//! or one backfill), and the lease of the one replica allowed to move it.
//!
//! A replica [`claim_cursor`](Store::claim_cursor)s a cursor, walks a page, publishes, and then
//! [`advance_cursor`](Store::advance_cursor)s it: one statement that moves the position only if
//! the caller still holds the lease, and renews it. Two replicas therefore never walk one cursor
//! at once, and a replica that stalled past its lease cannot move a cursor another has taken over.

use std::time::Duration;

use sqlx::any::AnyRow;
use time::OffsetDateTime;

use super::{
    error::StoreError,
    handle::Store,
    sql::{self, from_ms, from_opt_ms, get, json, sql, to_i64},
};

/// A change the walk handled: the ticket and its `updated_at` in epoch milliseconds.
pub type SeenChange = (String, i64);

/// An ingest cursor as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestCursor {
    /// `poll/<connection>` or `backfill/<connection>/...`.
    pub name: String,
    /// The connection walked.
    pub connection_id: String,
    /// The newest `updated_at` handled (helpdesk clock, millisecond precision); `None` before the
    /// first page.
    pub position: Option<OffsetDateTime>,
    /// Changes handled near the position, so a walk that starts again there skips them.
    pub seen: Vec<SeenChange>,
    /// Tickets looked at over the walk's life.
    pub tickets_seen: u64,
    /// Events the bus confirmed over the walk's life.
    pub published: u64,
    /// Who holds (or last held) the lease.
    pub lease_holder: Option<String>,
    /// When the lease ends (database clock); `None` once released.
    pub lease_until: Option<OffsetDateTime>,
    /// First claim.
    pub created_at: OffsetDateTime,
    /// Last change.
    pub updated_at: OffsetDateTime,
    /// When the walk reached its end (backfills only).
    pub finished_at: Option<OffsetDateTime>,
    /// While a walk is cut short: the start of its window, before which tickets were reported
    /// (see [`CursorStep::created_since`]).
    pub created_since: Option<OffsetDateTime>,
}

/// What [`Store::claim_cursor`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum CursorClaim {
    /// The caller holds the cursor now (new, released, expired, or its own).
    Held(IngestCursor),
    /// Another replica holds a live lease on it.
    Busy {
        /// The holder.
        holder: String,
        /// When its lease ends (database clock).
        until: OffsetDateTime,
    },
    /// The walk reached its end earlier (a finished backfill).
    Finished(IngestCursor),
}

/// One step of a walk, recorded by [`Store::advance_cursor`].
#[derive(Debug, Clone, Copy)]
pub struct CursorStep<'a> {
    /// The new position.
    pub position: OffsetDateTime,
    /// The changes handled near it (replaces the stored list).
    pub seen: &'a [SeenChange],
    /// Tickets looked at in this step.
    pub tickets_seen: u64,
    /// Events confirmed in this step.
    pub published: u64,
    /// The start of the window of a walk that has not reached the end of the list yet (tickets
    /// created after it were not reported as created, whatever the position); `None` once it has.
    pub created_since: Option<OffsetDateTime>,
}

macro_rules! cursor_columns {
    () => {
        "name, connection_id, position_ms, seen, tickets_seen, published, lease_holder, lease_until, \
         created_at, updated_at, finished_at, created_since_ms"
    };
}

/// Insert a new cursor, or take it over when it is unfinished and its lease is free, expired or
/// ours: one statement, as the ledger's claim (PostgreSQL re-checks the WHERE under the row lock,
/// SQLite runs it under its single writer).
const CLAIM: sql::Sql = sql!(
    "INSERT INTO ingest_cursors (name, connection_id, lease_holder, lease_ms, lease_until, created_at, \
     updated_at) VALUES ($1, $2, $3, $4, " NOW " + $4, " NOW ", " NOW ") ON CONFLICT (name) DO UPDATE SET \
     lease_holder = excluded.lease_holder, lease_ms = excluded.lease_ms, \
     lease_until = excluded.lease_until, updated_at = excluded.updated_at \
     WHERE ingest_cursors.finished_at IS NULL AND (ingest_cursors.lease_until IS NULL \
     OR ingest_cursors.lease_holder = excluded.lease_holder \
     OR ingest_cursors.lease_until <= excluded.updated_at) RETURNING " [cursor_columns]
);
const SELECT: sql::Sql =
    sql!("SELECT " [cursor_columns] ", " NOW " AS now_ms FROM ingest_cursors WHERE name = $1");
/// The lease check and the move are one statement: no window between "do I hold it?" and the write.
const ADVANCE: sql::Sql = sql!(
    "UPDATE ingest_cursors SET position_ms = $3, seen = $4, tickets_seen = tickets_seen + $5, \
     published = published + $6, created_since_ms = $7, lease_until = " NOW " + lease_ms, \
     updated_at = " NOW " \
     WHERE name = $1 AND lease_holder = $2 AND lease_until IS NOT NULL"
);
const RELEASE: sql::Sql = sql!(
    "UPDATE ingest_cursors SET lease_until = NULL, updated_at = " NOW " WHERE name = $1 \
     AND lease_holder = $2 AND lease_until IS NOT NULL"
);
const FINISH: sql::Sql = sql!(
    "UPDATE ingest_cursors SET finished_at = " NOW ", lease_until = NULL, updated_at = " NOW " \
     WHERE name = $1 AND lease_holder = $2 AND lease_until IS NOT NULL"
);
const FORGET: sql::Sql = sql!(
    "DELETE FROM ingest_cursors WHERE name = $1 AND (lease_until IS NULL OR lease_until <= " NOW ")"
);
const LIST: &str =
    concat!("SELECT ", cursor_columns!(), " FROM ingest_cursors WHERE connection_id = $1 ORDER BY name");

/// Longest cursor lease granted.
const MAX_LEASE: Duration = Duration::from_secs(24 * 3600);

/// How many times [`Store::claim_cursor`] re-reads a cursor whose lease changed in between.
const CLAIM_ROUNDS: usize = 5;

impl Store {
    /// Claims the cursor `name` (of `connection_id`) for `holder` for `lease` (database clock),
    /// creating it if new. Of many concurrent claimers exactly one gets [`CursorClaim::Held`]; a
    /// holder claiming again renews its lease.
    pub async fn claim_cursor(
        &self,
        name: &str,
        connection_id: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<CursorClaim, StoreError> {
        let lease_ms = i64::try_from(lease.min(MAX_LEASE).as_millis()).unwrap_or(1).max(1);
        for _ in 0..CLAIM_ROUNDS {
            let query =
                sqlx::query(self.sql(CLAIM)).bind(name).bind(connection_id).bind(holder).bind(lease_ms);
            if let Some(row) = self.write_returning("claim_cursor", query).await?.first() {
                return Ok(CursorClaim::Held(cursor_from_row(row)?));
            }
            let Some((cursor, now)) = self.cursor_at(name).await? else { continue };
            if cursor.finished_at.is_some() {
                return Ok(CursorClaim::Finished(cursor));
            }
            if let (Some(holder_now), Some(until)) = (&cursor.lease_holder, cursor.lease_until)
                && until > now
                && holder_now != holder
            {
                return Ok(CursorClaim::Busy { holder: holder_now.clone(), until });
            }
        }
        Err(StoreError::Contended { key: name.to_owned() })
    }

    /// Moves the cursor to `step` and renews the lease, if `holder` still holds it; otherwise
    /// [`StoreError::LeaseLost`] and nothing changes.
    pub async fn advance_cursor(
        &self,
        name: &str,
        holder: &str,
        step: CursorStep<'_>,
    ) -> Result<(), StoreError> {
        let seen = serde_json::to_string(step.seen).expect("a list of (text, integer) serialises");
        let position_ms = epoch_ms(step.position);
        let query = sqlx::query(self.sql(ADVANCE))
            .bind(name)
            .bind(holder)
            .bind(position_ms)
            .bind(seen)
            .bind(to_i64(step.tickets_seen))
            .bind(to_i64(step.published))
            .bind(step.created_since.map(epoch_ms));
        if self.write("advance_cursor", query).await? == 0 {
            return Err(self.cursor_lost(name, holder).await?);
        }
        Ok(())
    }

    /// Releases the lease so another replica may claim at once. Does nothing when `holder` does
    /// not hold it.
    pub async fn release_cursor(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.write("release_cursor", sqlx::query(self.sql(RELEASE)).bind(name).bind(holder)).await?;
        Ok(())
    }

    /// Marks the walk finished and releases it (holder only): later claims answer
    /// [`CursorClaim::Finished`].
    pub async fn finish_cursor(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        if self.write("finish_cursor", sqlx::query(self.sql(FINISH)).bind(name).bind(holder)).await? == 0 {
            return Err(self.cursor_lost(name, holder).await?);
        }
        Ok(())
    }

    /// Deletes the cursor so a walk starts from its beginning again. Returns `false` when the
    /// cursor is unknown or someone holds a live lease on it (it is left alone).
    pub async fn forget_cursor(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.write("forget_cursor", sqlx::query(self.sql(FORGET)).bind(name)).await? > 0)
    }

    /// The cursor `name`.
    pub async fn cursor(&self, name: &str) -> Result<Option<IngestCursor>, StoreError> {
        Ok(self.cursor_at(name).await?.map(|(cursor, _)| cursor))
    }

    /// Every cursor of a connection, by name.
    pub async fn cursors_of(&self, connection_id: &str) -> Result<Vec<IngestCursor>, StoreError> {
        let rows = sqlx::query(LIST)
            .bind(connection_id)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("cursors_of"))?;
        rows.iter().map(cursor_from_row).collect()
    }

    async fn cursor_at(&self, name: &str) -> Result<Option<(IngestCursor, OffsetDateTime)>, StoreError> {
        let row = sqlx::query(self.sql(SELECT))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::query("cursor"))?;
        row.map(|row| Ok((cursor_from_row(&row)?, from_ms("now", get(&row, "now_ms")?)?))).transpose()
    }

    async fn cursor_lost(&self, name: &str, holder: &str) -> Result<StoreError, StoreError> {
        let now = self.cursor(name).await?;
        let holder_now = now.filter(|c| c.lease_until.is_some()).and_then(|c| c.lease_holder);
        Ok(StoreError::LeaseLost { key: name.to_owned(), worker: holder.to_owned(), holder: holder_now })
    }
}

/// A time as epoch milliseconds (rounded down), as the store keeps times.
pub(crate) fn epoch_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000)).unwrap_or(i64::MAX)
}

fn cursor_from_row(row: &AnyRow) -> Result<IngestCursor, StoreError> {
    let count = |what: &'static str| -> Result<u64, StoreError> { sql::count(what, get(row, what)?) };
    let seen: String = get(row, "seen")?;
    Ok(IngestCursor {
        name: get(row, "name")?,
        connection_id: get(row, "connection_id")?,
        position: from_opt_ms("ingest_cursors.position_ms", get(row, "position_ms")?)?,
        seen: json("ingest_cursors.seen", &seen)?,
        tickets_seen: count("tickets_seen")?,
        published: count("published")?,
        lease_holder: get(row, "lease_holder")?,
        lease_until: from_opt_ms("ingest_cursors.lease_until", get(row, "lease_until")?)?,
        created_at: from_ms("ingest_cursors.created_at", get(row, "created_at")?)?,
        updated_at: from_ms("ingest_cursors.updated_at", get(row, "updated_at")?)?,
        finished_at: from_opt_ms("ingest_cursors.finished_at", get(row, "finished_at")?)?,
        created_since: from_opt_ms("ingest_cursors.created_since_ms", get(row, "created_since_ms")?)?,
    })
}
