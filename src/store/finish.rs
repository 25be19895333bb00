//! Finishing a ledger key in ONE commit: the decision (when not recorded yet), the proposal (when
//! one is stored) and `Done` with the note id and outcome.
//!
//! Each commit is a flush to disk (an fsync of SQLite's WAL, a WAL flush in PostgreSQL), and
//! these writes have no helpdesk effect between them that a crash could separate them from: a
//! shadowed ticket is decided, proposed and done at once, and an applied ticket's note and `Done`
//! go together (a retry finds the note by its marker anyway). So the last leg of every event is
//! one transaction, not three, and nothing about what a crash can leave behind changes.

use sqlx::{Any, Connection, any::AnyArguments, query::Query};

use super::{
    Backend, Store, StoreError,
    entry::LedgerKey,
    ledger::{DecisionColumns, MAX_DETAIL_CHARS},
    proposals::{self, NewProposal},
    sql::{self, clip, get, sql},
};

/// `Done` for the lease holder, with the note id and the outcome, and the decision's columns when
/// they are given (`$7` not NULL). One statement, so the decision can never be recorded without
/// the key finishing or the other way round.
const FINISH: sql::Sql = sql!(
    "UPDATE ledger SET step = 'done', note_id = COALESCE($5, note_id), outcome = $6, \
     decision = COALESCE($7, decision), report = COALESCE($8, report), origin = COALESCE($9, origin), \
     prompt_version = COALESCE($10, prompt_version), prompt_tokens = COALESCE($11, prompt_tokens), \
     completion_tokens = COALESCE($12, completion_tokens), cost_usd = COALESCE($13, cost_usd), \
     latency_ms = COALESCE($14, latency_ms), \
     decided_at = CASE WHEN $7 IS NULL THEN decided_at ELSE " NOW " END, \
     finished_at = " NOW ", lease_until = NULL, updated_at = " NOW " \
     WHERE connection_id = $1 AND ticket_id = $2 AND kind = $3 AND claimed_by = $4 \
     AND lease_until IS NOT NULL"
);

/// Stands for the proposal's id in an outcome text until SQL puts the id in its place.
const PROPOSAL_ID: &str = "\u{1}proposal-id\u{1}";

/// [`Store::finish_with_proposal`] on a SQLite file in one call to its writer: the proposal is
/// inserted only while the key's lease is held (checked under the write lock, so the two
/// statements agree), and `Done` returns the proposal's id; no row back means the lease is lost
/// and nothing was written. `$1..$4` key and holder, `$5` outcome with `$6` standing for the id,
/// `$7..$14` the decision's columns, `$15` whether to record them, `$16..$22` the proposal.
const FINISH_WITH_PROPOSAL_SQLITE: &str = concat!(
    "BEGIN IMMEDIATE; ",
    "INSERT INTO proposals (connection_id, ticket_id, event_id, decision, report, mode, why_shadowed, \
     ticket_subject, ticket_url, status, created_at) \
     SELECT $21, $22, $16, $7, $8, $17, $18, $19, $20, 'pending', ",
    sql!(@sqlite NOW),
    " WHERE EXISTS (SELECT 1 FROM ledger WHERE connection_id = $1 AND ticket_id = $2 AND kind = $3 \
     AND claimed_by = $4 AND lease_until IS NOT NULL) \
     ON CONFLICT (connection_id, ticket_id, event_id) DO NOTHING; ",
    "UPDATE ledger SET step = 'done', \
     outcome = replace($5, $6, CAST((SELECT id FROM proposals WHERE connection_id = $21 \
     AND ticket_id = $22 AND event_id = $16) AS TEXT)), \
     decision = CASE WHEN $15 = 1 THEN $7 ELSE decision END, \
     report = CASE WHEN $15 = 1 THEN $8 ELSE report END, \
     origin = CASE WHEN $15 = 1 THEN $9 ELSE origin END, \
     prompt_version = CASE WHEN $15 = 1 THEN $10 ELSE prompt_version END, \
     prompt_tokens = CASE WHEN $15 = 1 THEN $11 ELSE prompt_tokens END, \
     completion_tokens = CASE WHEN $15 = 1 THEN $12 ELSE completion_tokens END, \
     cost_usd = CASE WHEN $15 = 1 THEN $13 ELSE cost_usd END, \
     latency_ms = CASE WHEN $15 = 1 THEN $14 ELSE latency_ms END, \
     decided_at = CASE WHEN $15 = 1 THEN ",
    sql!(@sqlite NOW),
    " ELSE decided_at END, finished_at = ",
    sql!(@sqlite NOW),
    ", lease_until = NULL, updated_at = ",
    sql!(@sqlite NOW),
    " WHERE connection_id = $1 AND ticket_id = $2 AND kind = $3 AND claimed_by = $4 \
     AND lease_until IS NOT NULL \
     RETURNING (SELECT id FROM proposals WHERE connection_id = $21 AND ticket_id = $22 \
     AND event_id = $16) AS proposal_id; ",
    "COMMIT"
);

impl Store {
    /// Moves `key` to `Done` in one statement, with `outcome` and the note posted (if any); the
    /// recorded decision stays. Lease holder only ([`StoreError::LeaseLost`]).
    pub async fn finish(
        &self,
        key: &LedgerKey,
        worker: &str,
        note_id: Option<&str>,
        outcome: &str,
    ) -> Result<(), StoreError> {
        let mut writer = self.writer("finish").await?;
        let done = self
            .finish_query(key, worker, note_id, outcome, None)
            .execute(&mut *writer)
            .await
            .map_err(StoreError::query("finish"))?;
        drop(writer);
        match done.rows_affected() {
            0 => Err(self.lease_lost(key, worker).await?),
            _ => Ok(()),
        }
    }

    /// Stores `proposal` and moves `key` to `Done` (as [`Store::finish`], with
    /// `outcome(proposal id)` as the outcome) in one transaction; with `record_decision` (the key
    /// is still at `Claimed`) the proposal's decision and report are recorded as the key's.
    /// Returns the proposal's id (that of the proposal stored earlier for the same event, if any).
    /// Lease holder only; when the lease is lost nothing is written.
    pub async fn finish_with_proposal(
        &self,
        key: &LedgerKey,
        worker: &str,
        record_decision: bool,
        proposal: &NewProposal,
        outcome: impl FnOnce(&str) -> String,
    ) -> Result<i64, StoreError> {
        // Encoded once for both tables.
        let columns = DecisionColumns::new(&proposal.decision, &proposal.report)?;
        let mut writer = self.writer("finish").await?;
        if writer.is_sqlite_writer() {
            // One call: the proposal's id goes into the outcome in SQL.
            let outcome = outcome(PROPOSAL_ID);
            let query = sqlx::query(FINISH_WITH_PROPOSAL_SQLITE)
                .bind(&key.connection_id)
                .bind(&key.ticket_id)
                .bind(key.kind.as_str())
                .bind(worker)
                .bind(clip(&outcome, MAX_DETAIL_CHARS))
                .bind(PROPOSAL_ID);
            let query = DecisionColumns::bind(query, Some(&columns))
                .bind(i64::from(record_decision))
                .bind(&proposal.event_id)
                .bind(&proposal.mode)
                .bind(&proposal.why_shadowed)
                .bind(proposal.ticket_subject.as_deref())
                .bind(proposal.ticket_url.as_deref())
                .bind(&proposal.connection_id)
                .bind(&proposal.ticket_id);
            let rows = writer.script(query).await.map_err(StoreError::query("finish"))?;
            drop(writer);
            return match rows.first() {
                Some(row) => get(row, "proposal_id"),
                None => Err(self.lease_lost(key, worker).await?),
            };
        }
        let mut tx = match self.backend {
            // Takes the write lock at once: a deferred transaction that reads first can fail with
            // SQLITE_BUSY on its first write instead of waiting for the lock.
            Backend::Sqlite => writer.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => writer.begin().await,
        }
        .map_err(StoreError::query("finish"))?;
        let id = proposals::insert_on(self, &mut tx, proposal, columns.texts()).await?;
        let outcome = outcome(&id.to_string());
        let decided = record_decision.then_some(&columns);
        let done = self
            .finish_query(key, worker, None, &outcome, decided)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("finish"))?;
        if done.rows_affected() == 0 {
            // Nothing of this attempt may stay: the proposal goes with the rollback.
            tx.rollback().await.map_err(StoreError::query("finish"))?;
            drop(writer);
            return Err(self.lease_lost(key, worker).await?);
        }
        tx.commit().await.map_err(StoreError::query("finish"))?;
        Ok(id)
    }

    fn finish_query<'q>(
        &self,
        key: &'q LedgerKey,
        worker: &'q str,
        note_id: Option<&'q str>,
        outcome: &'q str,
        decided: Option<&'q DecisionColumns>,
    ) -> Query<'q, Any, AnyArguments> {
        let query = sqlx::query(self.sql(FINISH))
            .bind(&key.connection_id)
            .bind(&key.ticket_id)
            .bind(key.kind.as_str())
            .bind(worker)
            .bind(note_id.map(|n| clip(n, MAX_DETAIL_CHARS)))
            .bind(clip(outcome, MAX_DETAIL_CHARS));
        DecisionColumns::bind(query, decided)
    }
}
