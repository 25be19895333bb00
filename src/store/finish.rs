//! A ledger key's last commit: `Done` with the note id and outcome, the decision when it was not
//! recorded yet, and the proposal when one is stored, in ONE transaction.
//!
//! Each commit is a flush to disk (an fsync of SQLite's WAL, a WAL flush in PostgreSQL), and
//! these writes have no helpdesk effect between them that a crash could separate them from: a
//! shadowed ticket is decided, proposed and done at once, and an applied ticket's note and `Done`
//! go together (a retry finds the note by its marker anyway). So the last leg of every event is
//! one commit, and a lost lease leaves nothing of it behind.

use super::{
    entry::LedgerKey,
    error::StoreError,
    handle::Store,
    ledger::MAX_DETAIL_CHARS,
    proposals::{self, NewProposal},
    record::{DecisionColumns, DecisionRecord},
    sql::{self, clip, sql},
};

/// `Done` for the lease holder, with the note id and the outcome, and the decision's columns when
/// they are given (`$7` not NULL).
const FINISH: sql::Sql = sql!(
    "UPDATE ledger SET step = 'done', note_id = COALESCE($5, note_id), outcome = $6, \
     decision = COALESCE($7, decision), report = COALESCE($8, report), origin = COALESCE($9, origin), \
     prompt_version = COALESCE($10, prompt_version), prompt_tokens = COALESCE($11, prompt_tokens), \
     completion_tokens = COALESCE($12, completion_tokens), cost_usd = COALESCE($13, cost_usd), \
     latency_ms = COALESCE($14, latency_ms), ticket_before = COALESCE($15, ticket_before), \
     decided_at = CASE WHEN $7 IS NULL THEN decided_at ELSE " NOW " END, \
     finished_at = " NOW ", lease_until = NULL, updated_at = " NOW " \
     WHERE connection_id = $1 AND ticket_id = $2 AND kind = $3 AND claimed_by = $4 \
     AND lease_until IS NOT NULL"
);

impl Store {
    /// Moves `key` to `Done` with `outcome` and the note posted (if any); the recorded decision
    /// stays. Lease holder only ([`StoreError::LeaseLost`]).
    pub async fn finish(
        &self,
        key: &LedgerKey,
        worker: &str,
        note_id: Option<&str>,
        outcome: &str,
    ) -> Result<(), StoreError> {
        self.finish_in_one_commit(key, worker, note_id, None, None, |_| outcome.to_owned()).await?;
        Ok(())
    }

    /// Stores `proposal` and moves `key` to `Done` (as [`Store::finish`], with
    /// `outcome(proposal id)` as the outcome) in one transaction; with `decided` (the key is still
    /// at `Claimed`) that decision is recorded as the key's. Returns the proposal's id (that of
    /// the proposal stored earlier for the same event, if any). Lease holder only; when the lease
    /// is lost nothing is written.
    pub async fn finish_with_proposal(
        &self,
        key: &LedgerKey,
        worker: &str,
        decided: Option<&DecisionRecord>,
        proposal: &NewProposal,
        outcome: impl FnOnce(&str) -> String,
    ) -> Result<i64, StoreError> {
        let describe = |id: Option<i64>| outcome(&id.map(|id| id.to_string()).unwrap_or_default());
        let id = self.finish_in_one_commit(key, worker, None, decided, Some(proposal), describe).await?;
        Ok(id.expect("the transaction returns the id of the proposal it stored"))
    }

    /// The one implementation of a key's last commit: the proposal (if any), then `Done` with the
    /// decision's columns (if any) and `outcome(proposal id)`, rolled back whole unless `worker`
    /// holds the lease. Returns the proposal's id.
    async fn finish_in_one_commit(
        &self,
        key: &LedgerKey,
        worker: &str,
        note_id: Option<&str>,
        decided: Option<&DecisionRecord>,
        proposal: Option<&NewProposal>,
        outcome: impl FnOnce(Option<i64>) -> String,
    ) -> Result<Option<i64>, StoreError> {
        let decided = decided.map(DecisionColumns::new);
        let mut conn = self.writer.acquire("finish").await?;
        let mut tx = conn.begin().await?;
        let done = async {
            let id = match proposal {
                Some(p) => Some(proposals::insert_on(&mut tx, self.sql(proposals::INSERT), p).await?),
                None => None,
            };
            let outcome = outcome(id);
            let query = key
                .bind(sqlx::query(self.sql(FINISH)))
                .bind(worker)
                .bind(note_id.map(|n| clip(n, MAX_DETAIL_CHARS)))
                .bind(clip(&outcome, MAX_DETAIL_CHARS));
            let done = DecisionColumns::bind(query, decided.as_ref())
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query("finish"))?;
            Ok((done.rows_affected() > 0).then_some(id))
        }
        .await;
        let finished = match done {
            Ok(Some(id)) => {
                tx.commit().await?;
                Some(id)
            }
            // The lease is lost: nothing of this attempt may stay, the proposal included.
            Ok(None) => {
                tx.rollback().await;
                None
            }
            Err(e) => {
                tx.rollback().await;
                return Err(e);
            }
        };
        // Released before `lease_lost` reads: an in-memory store's pool has this one connection.
        drop(conn);
        match finished {
            Some(id) => Ok(id),
            None => Err(self.lease_lost(key, worker).await?),
        }
    }
}
