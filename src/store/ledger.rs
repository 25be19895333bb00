//! The idempotency ledger: one row per `(connection, ticket, event kind)`.
//!
//! A worker [`claim`](Store::claim)s the key with a lease, then records each step as it becomes
//! durable on the helpdesk: [`record_decision`](Store::record_decision) → `Decided`,
//! [`advance`](Store::advance) → `TicketUpdated` → `NotePosted` → `Done`. A retry or a
//! redelivery claims the same key and resumes after the last recorded step. Every write is one
//! statement that checks the caller still holds the lease, so a worker whose lease expired and
//! was taken over gets [`StoreError::LeaseLost`] instead of overwriting the new holder's work.

use std::time::Duration;

use sqlx::{Any, any::AnyArguments, query::Query};
use time::OffsetDateTime;

use super::{
    Store, StoreError,
    entry::{ClaimOutcome, Entry, LedgerKey, Step, entry_from_row},
    sql::{self, clip, from_ms, get, sql},
    writer::Commit,
};
use crate::triage::decision::{Decision, Origin};

/// Longest error text kept in `last_error`.
const MAX_ERROR_CHARS: usize = 2000;
/// Longest outcome or note id kept.
pub(super) const MAX_DETAIL_CHARS: usize = 1000;

/// Columns of [`Entry`], in every statement that returns one.
macro_rules! entry_columns {
    () => {
        "connection_id, ticket_id, kind, event_id, step, failed, claimed_by, lease_until, attempts, \
         last_error, decision, report, note_id, outcome, created_at, updated_at, decided_at, finished_at"
    };
}

/// Insert a fresh key, or take it over when it is not finished and its lease is free, expired or
/// ours. Claims, renewals and releases are lease writes ([`Commit::Lease`]). One statement:
/// PostgreSQL locks the conflicting row and re-checks the WHERE on its latest version; SQLite runs
/// it under the database's single writer lock.
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
     prompt_tokens = $9, completion_tokens = $10, cost_usd = $11, latency_ms = $12, step = 'decided', \
     decided_at = " NOW ", lease_until = " NOW " + lease_ms, updated_at = " NOW " WHERE "
    "connection_id = $1 AND ticket_id = $2 AND kind = $3 AND claimed_by = $4 AND lease_until IS NOT NULL \
     AND step IN ('claimed', 'decided')"
);
const ADVANCE: sql::Sql = sql!(
    "UPDATE ledger SET step = $5, \
     note_id = CASE WHEN $5 = 'note_posted' THEN COALESCE($6, note_id) ELSE note_id END, \
     outcome = CASE WHEN $5 = 'note_posted' THEN outcome ELSE COALESCE($6, outcome) END, \
     finished_at = CASE WHEN $5 = 'done' THEN " NOW " ELSE finished_at END, \
     lease_until = CASE WHEN $5 = 'done' THEN NULL ELSE " NOW " + lease_ms END, \
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
            let claimed = self.write_lease_row("claim", query).await?;
            if let Some(row) = claimed {
                return Ok(ClaimOutcome::Claimed(entry_from_row(&row)?));
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

    /// Records the validated decision and the triage report (`Report` as JSON: tokens, cost,
    /// latency and prompt version are also kept in columns for [`Store::stats`]) and moves the
    /// step to `Decided`. Lease holder only ([`StoreError::LeaseLost`]); a key already past
    /// `Decided` keeps its recorded decision (nothing is changed).
    pub async fn record_decision(
        &self,
        key: &LedgerKey,
        worker: &str,
        decision: &Decision,
        report_json: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let columns = DecisionColumns::new(decision, report_json)?;
        let query = key.bind(sqlx::query(self.sql(RECORD_DECISION))).bind(worker);
        let changed = self.write("record_decision", DecisionColumns::bind(query, Some(&columns))).await?;
        if changed == 0 {
            self.check_holder(key, worker).await?;
        }
        Ok(())
    }

    /// Moves the step forward and stores `detail`: the note id for `NotePosted`, the outcome text
    /// (`applied`, `shadowed: <why>`, `skipped: <why>`) for the others. `Done` releases the
    /// lease and is flushed to disk before this returns; an earlier step is a lease write: losing
    /// it to a power cut only makes the next attempt redo a step that is safe to redo (the ticket
    /// is re-read and patched only where it differs; a note is found by its marker). A step at or
    /// behind the current one changes nothing. Lease holder only.
    pub async fn advance(
        &self,
        key: &LedgerKey,
        worker: &str,
        step: Step,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        let query = key
            .bind(sqlx::query(self.sql(ADVANCE)))
            .bind(worker)
            .bind(step.as_str())
            .bind(detail.map(|d| clip(d, MAX_DETAIL_CHARS)))
            .bind(step.rank());
        // Only `Done` must survive a power cut (the event is acked after it).
        let changed = match step {
            Step::Done => self.write("advance", query).await?,
            _ => self.write_on("advance", Commit::Lease, query).await?,
        };
        if changed == 0 {
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
        self.write_on("release", Commit::Lease, query).await?;
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
        let row = self.write_lease_row("renew", query).await?;
        let until: Option<i64> = row.map(|row| get(&row, "lease_until")).transpose()?;
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

/// A decision as its ledger columns: the Decision and Report JSON texts and the figures.
pub(super) struct DecisionColumns {
    decision: String,
    report: String,
    figures: Figures,
}

impl DecisionColumns {
    pub(super) fn new(decision: &Decision, report: &serde_json::Value) -> Result<Self, StoreError> {
        Ok(Self {
            decision: serde_json::to_string(decision)
                .map_err(|source| StoreError::Encode { what: "decision", source })?,
            report: report.to_string(),
            figures: Figures::read(decision, report),
        })
    }

    /// The decision's and the report's JSON texts.
    pub(super) fn texts(&self) -> (&str, &str) {
        (&self.decision, &self.report)
    }

    /// Binds the eight decision parameters (decision, report, origin, prompt version, prompt and
    /// completion tokens, cost, latency) in that order; all NULL for `None`.
    ///
    /// The statement is not kept prepared: sqlx's Any driver sends a NULL `f64` to PostgreSQL as
    /// a FLOAT4 parameter, and a statement prepared with that one refuses a cost given later
    /// ("incorrect binary data format").
    pub(super) fn bind<'q>(
        query: Query<'q, Any, AnyArguments>,
        columns: Option<&'q DecisionColumns>,
    ) -> Query<'q, Any, AnyArguments> {
        let f = columns.map(|c| &c.figures);
        query
            .persistent(false)
            .bind(columns.map(|c| c.decision.as_str()))
            .bind(columns.map(|c| c.report.as_str()))
            .bind(f.map(|f| f.origin))
            .bind(f.and_then(|f| f.prompt_version.as_deref()))
            .bind(f.and_then(|f| f.prompt_tokens))
            .bind(f.and_then(|f| f.completion_tokens))
            .bind(f.and_then(|f| f.cost_usd))
            .bind(f.and_then(|f| f.latency_ms))
    }
}

/// The figures kept in columns, read leniently from a triage `Report` as JSON.
struct Figures {
    origin: &'static str,
    prompt_version: Option<String>,
    prompt_tokens: Option<i64>,
    completion_tokens: Option<i64>,
    cost_usd: Option<f64>,
    latency_ms: Option<i64>,
}

impl Figures {
    /// Tokens are the server-reported usage; when a server reports none although the LLM was
    /// called, prompt tokens fall back to our own count (`prompt_tokens`).
    fn read(decision: &Decision, report: &serde_json::Value) -> Self {
        let int = |v: &serde_json::Value| {
            v.as_i64().or_else(|| v.as_u64().map(|u| i64::try_from(u).unwrap_or(i64::MAX)))
        };
        let usage = &report["usage"];
        let calls = int(&report["llm_calls"]).unwrap_or(0);
        let mut prompt_tokens = int(&usage["prompt_tokens"]);
        if prompt_tokens.unwrap_or(0) == 0 && calls > 0 {
            prompt_tokens = int(&report["prompt_tokens"]).or(prompt_tokens);
        }
        Figures {
            origin: match decision.origin {
                Origin::Llm { .. } => "llm",
                Origin::Rules { .. } => "rules",
            },
            prompt_version: report["prompt_version"].as_str().map(str::to_owned),
            prompt_tokens,
            completion_tokens: int(&usage["completion_tokens"]),
            cost_usd: report["cost_usd"].as_f64(),
            latency_ms: int(&report["llm_latency_ms"]),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{ticketing::model::PriorityLevel, triage::decision::Sentiment};

    fn decision(origin: Origin) -> Decision {
        Decision {
            category_id: None,
            priority: PriorityLevel::Normal,
            tags: vec![],
            language: "en".into(),
            sentiment: Sentiment::Neutral,
            summary: "s".into(),
            draft_reply: None,
            confidence: 0.5,
            needs_human: true,
            reason: "r".into(),
            origin,
        }
    }

    #[test]
    fn figures_come_from_the_report() {
        let llm = decision(Origin::Llm { model: "m".into() });
        let report = json!({"prompt_version": "v1", "prompt_tokens": 900, "llm_calls": 1, "cost_usd": 0.5,
                            "usage": {"prompt_tokens": 1000, "completion_tokens": 80}, "llm_latency_ms": 700});
        let f = Figures::read(&llm, &report);
        assert_eq!((f.origin, f.prompt_version.as_deref()), ("llm", Some("v1")));
        assert_eq!((f.prompt_tokens, f.completion_tokens, f.latency_ms), (Some(1000), Some(80), Some(700)));
        assert_eq!(f.cost_usd, Some(0.5));

        // The server reported no usage: our own count stands in for the prompt.
        let report = json!({"prompt_tokens": 900, "llm_calls": 1, "usage": {"prompt_tokens": 0, "completion_tokens": 0}});
        assert_eq!(Figures::read(&llm, &report).prompt_tokens, Some(900));

        // Rules, or a report that is not a Report at all: nothing is invented.
        let f = Figures::read(&decision(Origin::Rules { rule: "r".into() }), &json!({}));
        assert_eq!((f.origin, f.prompt_tokens, f.cost_usd, f.latency_ms), ("rules", None, None, None));
    }

    #[test]
    fn leases_are_bounded() {
        assert_eq!(lease_ms(Duration::ZERO), 1);
        assert_eq!(lease_ms(Duration::from_secs(30)), 30_000);
        assert_eq!(lease_ms(Duration::MAX), 7 * 24 * 3600 * 1000);
    }
}
