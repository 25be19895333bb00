//! Finishing a ledger key in ONE commit: the decision (when not recorded yet), the proposal (when
//! one is stored) and `Done` with the note id and outcome.
//!
//! Each commit is a flush to disk (an fsync of SQLite's WAL, a WAL flush in PostgreSQL), and
//! these writes have no helpdesk effect between them that a crash could separate them from: a
//! shadowed ticket is decided, proposed and done at once, and an applied ticket's note and `Done`
//! go together (a retry finds the note by its marker anyway). So the last leg of every event is
//! one transaction, not three, and nothing about what a crash can leave behind changes. On a
//! SQLite file, shadowed tickets finishing at the same time share that transaction (`group.rs`).

use sqlx::{Any, Connection, any::AnyArguments, query::Query};

use super::{
    Backend, Store, StoreError,
    entry::LedgerKey,
    group::{Finish, PROPOSAL_ID},
    ledger::{DecisionColumns, MAX_DETAIL_CHARS},
    proposals::{self, NewProposal},
    sql::{self, clip, sql},
    writer::{SqliteWriter, interrupted},
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
        match self.write("finish", self.finish_query(key, worker, note_id, outcome, None)).await? {
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
        if let Some(sqlite) = &self.writer {
            return self
                .finish_grouped(sqlite, key, worker, record_decision, proposal, columns, outcome)
                .await;
        }
        let mut writer = self.writer("finish").await?;
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

    /// [`Store::finish_with_proposal`] on a SQLite file: queued, and committed by whichever
    /// finisher takes the writer next, together with every other finish waiting (`group.rs`).
    #[allow(clippy::too_many_arguments)]
    async fn finish_grouped(
        &self,
        sqlite: &SqliteWriter,
        key: &LedgerKey,
        worker: &str,
        record_decision: bool,
        proposal: &NewProposal,
        columns: DecisionColumns,
        outcome: impl FnOnce(&str) -> String,
    ) -> Result<i64, StoreError> {
        let finish = Finish {
            key: key.clone(),
            worker: worker.to_owned(),
            outcome: outcome(PROPOSAL_ID),
            columns,
            record_decision,
            connection_id: proposal.connection_id.clone(),
            ticket_id: proposal.ticket_id.clone(),
            event_id: proposal.event_id.clone(),
            mode: proposal.mode.clone(),
            why_shadowed: proposal.why_shadowed.clone(),
            ticket_subject: proposal.ticket_subject.clone(),
            ticket_url: proposal.ticket_url.clone(),
        };
        let (_queued, done) = sqlite.finishes.push(finish);
        match self.await_queued(sqlite, "finish", done).await? {
            Ok(Ok(Some(id))) => Ok(id),
            Ok(Ok(None)) => Err(self.lease_lost(key, worker).await?),
            Ok(Err(e)) => Err(StoreError::query("finish")(e)),
            Err(_) => Err(StoreError::query("finish")(interrupted())),
        }
    }

    fn finish_query<'q>(
        &self,
        key: &'q LedgerKey,
        worker: &'q str,
        note_id: Option<&'q str>,
        outcome: &'q str,
        decided: Option<&'q DecisionColumns>,
    ) -> Query<'q, Any, AnyArguments> {
        let query = key
            .bind(sqlx::query(self.sql(FINISH)))
            .bind(worker)
            .bind(note_id.map(|n| clip(n, MAX_DETAIL_CHARS)))
            .bind(clip(outcome, MAX_DETAIL_CHARS));
        DecisionColumns::bind(query, decided)
    }
}
