//! The idempotency ledger: one row per `(connection, ticket, event kind)`.
//!
//! A worker [`claim`](Store::claim)s the key with a lease, then records each step as it becomes
//! durable on the helpdesk: [`record_decision`](Store::record_decision) → `Decided`,
//! [`advance`](Store::advance) → `TicketUpdated`, [`finish`](Store::finish) → `Done`. A retry or
//! a redelivery claims the same key and resumes after the last recorded step. Every write is one
//! statement that checks the caller still holds the lease, so a worker whose lease expired and
//! was taken over gets [`StoreError::LeaseLost`] instead of overwriting the new holder's work.

use std::time::Duration;

use time::OffsetDateTime;

use super::{
    entry::{ClaimOutcome, Entry, LedgerKey, Step, entry_from_row},
    error::StoreError,
    handle::Store,
    record::{DecisionColumns, DecisionRecord},
    sql::{self, clip, from_ms, get, sql},
};

/// Longest error text kept in `last_error`.
const MAX_ERROR_CHARS: usize = 2000;
/// Longest outcome or note id kept.
pub(super) const MAX_DETAIL_CHARS: usize = 1000;

/// Columns of [`Entry`], in every statement that returns one.
macro_rules! entry_columns {
    () => {
        "connection_id, ticket_id, kind, event_id, step, failed, claimed_by, lease_until, attempts, \
         last_error, decision, report, origin, prompt_version, prompt_tokens, completion_tokens, cost_usd, \
         latency_ms, ticket_before, note_id, outcome, created_at, updated_at, decided_at, finished_at"
    };
}

/// Insert a fresh key, or take it over when it is not finished and its lease is free, expired or
/// ours. One statement: PostgreSQL locks the conflicting row and re-checks the WHERE on its latest
/// version; SQLite runs it under the database's single writer lock.
const CLAIM: sql::Sql = sql!(
    "INSERT INTO ledger (connection_id, ticket_id, kind, event_id, step, claimed_by, lease_ms, \
     lease_until, created_at, updated_at) VALUES ($1, $2, $3, $4, 'claimed', $5, $6, " NOW " + $6, "
    NOW ", " NOW ") ON CONFLICT (connection_id, ticket_id, kind) DO UPDATE SET \
     claimed_by = excluded.claimed_by, lease_ms = excluded.lease_ms, \
     lease_until = excluded.lease_until, updated_at = excluded.updated_at \
     WHERE ledger.step <> 'done' AND ledger.failed = 0 AND (ledger.lease_until IS NULL \
     OR ledger.claimed_by = excluded.claimed_by OR ledger.lease_until <= excluded.updated_at) \
     RETURNING " [entry_columns]
);
const SELECT: sql::Sql = sql!("SELECT " [entry_columns] ", " NOW " AS now_ms FROM ledger WHERE "
    "connection_id = $1 AND ticket_id = $2 AND kind = $3");
const RECORD_DECISION: sql::Sql = sql!(
    "UPDATE ledger SET decision = $5, report = $6, origin = $7, prompt_version = $8, \
     prompt_tokens = $9, completion_tokens = $10, cost_usd = $11, latency_ms = $12, ticket_before = $13, \
     step = 'decided', \
     decided_at = " NOW ", lease_until = " NOW " + lease_ms, updated_at = " NOW " WHERE "
    "connection_id = $1 AND ticket_id = $2 AND kind = $3 AND claimed_by = $4 AND lease_until IS NOT NULL \
     AND step IN ('claimed', 'decided')"
);
const ADVANCE: sql::Sql = sql!(
    "UPDATE ledger SET step = $5, outcome = COALESCE($6, outcome), lease_until = " NOW " + lease_ms, \
     updated_at = " NOW " WHERE connection_id = $1 AND ticket_id = $2 AND kind = $3 \
     AND claimed_by = $4 AND lease_until IS NOT NULL AND " RANK " <= $7"
);
const RECORD_FAILURE: sql::Sql = sql!(
    "UPDATE ledger SET attempts = attempts + 1, last_error = $5, failed = $6, lease_until = NULL, \
     updated_at = " NOW " WHERE connection_id = $1 AND ticket_id = $2 AND kind = $3 \
     AND claimed_by = $4 AND lease_until IS NOT NULL"
);
const RELEASE: sql::Sql = sql!(
    "UPDATE ledger SET lease_until = NULL, updated_at = " NOW " WHERE connection_id = $1 \
     AND ticket_id = $2 AND kind = $3 AND claimed_by = $4 AND lease_until IS NOT NULL"
);
const RENEW: sql::Sql = sql!(
    "UPDATE ledger SET lease_ms = $5, lease_until = " NOW " + $5, updated_at = " NOW " WHERE "
    "connection_id = $1 AND ticket_id = $2 AND kind = $3 AND claimed_by = $4 \
     AND lease_until IS NOT NULL AND step <> 'done' AND failed = 0 RETURNING lease_until"
);
const REOPEN: sql::Sql = sql!(
    "UPDATE ledger SET failed = 0, updated_at = " NOW " WHERE connection_id = $1 \
     AND ticket_id = $2 AND kind = $3 AND failed = 1"
);

/// Longest lease granted (a longer one is cut to this).
const MAX_LEASE: Duration = Duration::from_secs(7 * 24 * 3600);

/// A lease in milliseconds, 1 ms ..= [`MAX_LEASE`].
fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.min(MAX_LEASE).as_millis()).unwrap_or(1).max(1)
}

/// How many times [`Store::claim`] re-reads a key whose state changed between its two statements.
const CLAIM_ROUNDS: usize = 5;

impl Store {
    /// Claims `key` for `worker` for `lease` (measured on the database clock). See
    /// [`ClaimOutcome`]; `event_id` is recorded only when the key is new.
    ///
    /// Atomic on both backends and across replicas: of many concurrent claimers of one key,
    /// exactly one gets `Claimed` and the others `Busy`. A worker id must be unique per
    /// in-flight delivery if one process may work on duplicates of a key at once: a claim by
    /// the current holder's own id is granted again.
    pub async fn claim(
        &self,
        key: &LedgerKey,
        event_id: &str,
        worker: &str,
        lease: Duration,
    ) -> Result<ClaimOutcome, StoreError> {
        let lease_ms = lease_ms(lease);
        for _ in 0..CLAIM_ROUNDS {
            let query = key.bind(sqlx::query(self.sql(CLAIM))).bind(event_id).bind(worker).bind(lease_ms);
            if let Some(row) = self.write_returning("claim", query).await?.first() {
                return Ok(ClaimOutcome::Claimed(entry_from_row(row)?));
            }
            // Not claimable when the statement ran: finished, or someone else's live lease.
            let Some((entry, now)) = self.entry_at(key).await? else { continue };
            if entry.step == Step::Done || entry.failed {
                return Ok(ClaimOutcome::Done(entry));
            }
            if let (Some(holder), Some(until)) = (&entry.claimed_by, entry.lease_until)
                && until > now
                && holder != worker
            {
                return Ok(ClaimOutcome::Busy { holder: holder.clone(), until });
            }
            // Released or expired since: try again.
        }
        Err(StoreError::Contended { key: key.to_string() })
    }

    /// Records the validated decision with its report and figures and moves the step to
    /// `Decided`. Lease holder only ([`StoreError::LeaseLost`]); a key already past `Decided`
    /// keeps its recorded decision (nothing is changed).
    pub async fn record_decision(
        &self,
        key: &LedgerKey,
        worker: &str,
        record: &DecisionRecord,
    ) -> Result<(), StoreError> {
        let columns = DecisionColumns::new(record);
        let query = key.bind(sqlx::query(self.sql(RECORD_DECISION))).bind(worker);
        let changed = self.write("record_decision", DecisionColumns::bind(query, Some(&columns))).await?;
        if changed == 0 {
            self.check_holder(key, worker).await?;
        }
        Ok(())
    }

    /// Moves the step forward, renews the lease and stores `detail` as the outcome text so far
    /// (what was kept and why). A step behind the current one changes nothing. `Done` is
    /// [`Store::finish`] with `detail` as the outcome. Lease holder only.
    pub async fn advance(
        &self,
        key: &LedgerKey,
        worker: &str,
        step: Step,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        if step == Step::Done {
            return self.finish(key, worker, None, detail.unwrap_or_default()).await;
        }
        let query = key
            .bind(sqlx::query(self.sql(ADVANCE)))
            .bind(worker)
            .bind(step.as_str())
            .bind(detail.map(|d| clip(d, MAX_DETAIL_CHARS)))
            .bind(step.rank());
        if self.write("advance", query).await? == 0 {
            self.check_holder(key, worker).await?;
        }
        Ok(())
    }

    /// Records a failure (attempts + 1, the error text) and releases the lease so a retry can
    /// claim at once. `permanent` marks the key failed: later claims answer `Done` until
    /// [`Store::reopen`]. Lease holder only.
    pub async fn record_failure(
        &self,
        key: &LedgerKey,
        worker: &str,
        error: &str,
        permanent: bool,
    ) -> Result<(), StoreError> {
        let query = key
            .bind(sqlx::query(self.sql(RECORD_FAILURE)))
            .bind(worker)
            .bind(clip(error, MAX_ERROR_CHARS))
            .bind(i64::from(permanent));
        if self.write("record_failure", query).await? == 0 {
            return Err(self.lease_lost(key, worker).await?);
        }
        Ok(())
    }

    /// Releases the lease (e.g. at shutdown) so another worker can claim at once. Does nothing
    /// when `worker` does not hold it.
    pub async fn release(&self, key: &LedgerKey, worker: &str) -> Result<(), StoreError> {
        let query = key.bind(sqlx::query(self.sql(RELEASE))).bind(worker);
        self.write("release", query).await?;
        Ok(())
    }

    /// Extends the lease to `lease` from now (for long steps). Returns the new end. Lease holder
    /// only; not on finished or failed keys.
    pub async fn renew(
        &self,
        key: &LedgerKey,
        worker: &str,
        lease: Duration,
    ) -> Result<OffsetDateTime, StoreError> {
        let lease_ms = lease_ms(lease);
        let query = key.bind(sqlx::query(self.sql(RENEW))).bind(worker).bind(lease_ms);
        let rows = self.write_returning("renew", query).await?;
        let until: Option<i64> = rows.first().map(|row| get(row, "lease_until")).transpose()?;
        match until {
            Some(ms) => from_ms("ledger.lease_until", ms),
            None => Err(self.lease_lost(key, worker).await?),
        }
    }

    /// Clears a permanent failure so the key can be claimed again (after the cause is fixed and
    /// the dead-lettered event replayed). Returns whether the key was failed.
    pub async fn reopen(&self, key: &LedgerKey) -> Result<bool, StoreError> {
        let query = key.bind(sqlx::query(self.sql(REOPEN)));
        Ok(self.write("reopen", query).await? > 0)
    }

    /// The ledger row for `key`.
    pub async fn entry(&self, key: &LedgerKey) -> Result<Option<Entry>, StoreError> {
        Ok(self.entry_at(key).await?.map(|(entry, _)| entry))
    }

    /// The row and the database's current time.
    async fn entry_at(&self, key: &LedgerKey) -> Result<Option<(Entry, OffsetDateTime)>, StoreError> {
        let row = key
            .bind(sqlx::query(self.sql(SELECT)))
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::query("entry"))?;
        row.map(|row| Ok((entry_from_row(&row)?, from_ms("now", get(&row, "now_ms")?)?))).transpose()
    }

    /// After a holder-only write changed nothing: `LeaseLost` unless `worker` still holds the key
    /// (then the write was a no-op by design, e.g. a step that would move backwards).
    async fn check_holder(&self, key: &LedgerKey, worker: &str) -> Result<(), StoreError> {
        match self.entry(key).await? {
            Some(e) if e.claimed_by.as_deref() == Some(worker) && e.lease_until.is_some() => Ok(()),
            _ => Err(self.lease_lost(key, worker).await?),
        }
    }

    pub(super) async fn lease_lost(&self, key: &LedgerKey, worker: &str) -> Result<StoreError, StoreError> {
        let holder = self.entry(key).await?.filter(|e| e.lease_until.is_some()).and_then(|e| e.claimed_by);
        Ok(StoreError::LeaseLost { key: key.to_string(), worker: worker.to_owned(), holder })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_bounded() {
        assert_eq!(lease_ms(Duration::ZERO), 1);
        assert_eq!(lease_ms(Duration::from_secs(30)), 30_000);
        assert_eq!(lease_ms(Duration::MAX), 7 * 24 * 3600 * 1000);
    }
}
