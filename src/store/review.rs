//! A proposal's review, step by step: each status change is a conditional update (`… WHERE
//! status = <expected>`, so of two reviewers acting at once exactly one wins) committed with the
//! `review_actions` row that says who did it, when and why.

use serde::Serialize;
use sqlx::any::AnyRow;
use time::OffsetDateTime;

use super::{
    error::StoreError,
    handle::Store,
    proposals::ProposalStatus,
    sql::{self, clip, from_ms, get, json, sql},
};

/// Longest review reason kept.
const MAX_REASON_CHARS: usize = 2000;

/// One step of a proposal's review, as kept.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReviewAction {
    /// The status the proposal moved to (`approved`, `rejected`, `applied`, `superseded`), or
    /// `apply_failed` for an attempt to apply that failed and may be tried again.
    pub action: String,
    /// Who: the reviewer's name, or `deskpilot` for what deskpilot did on its own.
    pub actor: String,
    /// Why (a rejection's reason, what superseded it, why applying failed).
    pub reason: Option<String>,
    /// What it carried: an approval's edits, what applying wrote or left alone.
    pub detail: Option<serde_json::Value>,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// A status change of a proposal, and what it records.
#[derive(Debug, Clone, Copy)]
pub struct Transition<'a> {
    /// The status the proposal must still be in.
    pub from: ProposalStatus,
    /// The status it moves to.
    pub to: ProposalStatus,
    /// Who.
    pub actor: &'a str,
    /// Why.
    pub reason: Option<&'a str>,
    /// An approval's decision as the reviewer edited it.
    pub approved_decision: Option<&'a serde_json::Value>,
    /// The note posted when it was applied.
    pub note_id: Option<&'a str>,
    /// What the step carried, for the record.
    pub detail: Option<&'a serde_json::Value>,
}

impl<'a> Transition<'a> {
    /// `from → to` by `actor`, recording nothing else.
    pub fn new(from: ProposalStatus, to: ProposalStatus, actor: &'a str) -> Self {
        Self { from, to, actor, reason: None, approved_decision: None, note_id: None, detail: None }
    }
}

const REVIEWED: sql::Sql = sql!(
    "UPDATE proposals SET status = $3, reviewed_by = $4, review_reason = $5, reviewed_at = " NOW
    ", approved_decision = $6 WHERE id = $1 AND status = $2"
);
const APPLIED: sql::Sql = sql!(
    "UPDATE proposals SET status = 'applied', applied_note_id = $3, applied_at = " NOW
    " WHERE id = $1 AND status = $2"
);
const SUPERSEDED: sql::Sql = sql!(
    "UPDATE proposals SET status = 'superseded', review_reason = COALESCE(review_reason, $3) \
     WHERE id = $1 AND status = $2"
);
const ACTION: sql::Sql = sql!(
    "INSERT INTO review_actions (proposal_id, action, actor, reason, detail, at) VALUES ($1, $2, $3, $4, $5, "
    NOW ")"
);
const ACTIONS: sql::Sql =
    sql!("SELECT action, actor, reason, detail, at FROM review_actions WHERE proposal_id = $1 ORDER BY id");

impl Store {
    /// Moves proposal `id` as `t` says if it is still in `t.from`, with its `review_actions` row,
    /// in one commit. Returns whether it moved (`false`: someone acted first, or no such
    /// proposal). A pair the review flow does not allow is [`StoreError::InvalidTransition`].
    pub async fn review_proposal(&self, id: i64, t: &Transition<'_>) -> Result<bool, StoreError> {
        use ProposalStatus::*;
        if !t.from.can_become(t.to) {
            return Err(StoreError::InvalidTransition { from: t.from.as_str(), to: t.to.as_str() });
        }
        let reason = t.reason.map(|r| clip(r, MAX_REASON_CHARS));
        let update = match t.to {
            Approved | Rejected => sqlx::query(self.sql(REVIEWED))
                .bind(id)
                .bind(t.from.as_str())
                .bind(t.to.as_str())
                .bind(t.actor.to_owned())
                .bind(reason)
                .bind(t.approved_decision.map(serde_json::Value::to_string)),
            Applied => sqlx::query(self.sql(APPLIED))
                .bind(id)
                .bind(t.from.as_str())
                .bind(t.note_id.map(str::to_owned)),
            Superseded => sqlx::query(self.sql(SUPERSEDED)).bind(id).bind(t.from.as_str()).bind(reason),
            Pending => unreachable!("no transition leads back to pending"),
        };
        let mut conn = self.writer.acquire("review_proposal").await?;
        let mut tx = conn.begin().await?;
        let moved = async {
            let moved = update.execute(&mut *tx).await.map_err(StoreError::query("review_proposal"))?;
            if moved.rows_affected() == 0 {
                return Ok(false);
            }
            sqlx::query(self.sql(ACTION))
                .bind(id)
                .bind(t.to.as_str())
                .bind(t.actor.to_owned())
                .bind(reason)
                .bind(t.detail.map(serde_json::Value::to_string))
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query("review_proposal"))?;
            Ok(true)
        }
        .await;
        match moved {
            Ok(true) => {
                tx.commit().await?;
                Ok(true)
            }
            other => {
                tx.rollback().await;
                other
            }
        }
    }

    /// Records a review step that changed no status (an attempt to apply that failed).
    pub async fn record_review_action(
        &self,
        id: i64,
        action: &str,
        actor: &str,
        reason: Option<&str>,
        detail: Option<&serde_json::Value>,
    ) -> Result<(), StoreError> {
        let query = sqlx::query(self.sql(ACTION))
            .bind(id)
            .bind(action.to_owned())
            .bind(actor.to_owned())
            .bind(reason.map(|r| clip(r, MAX_REASON_CHARS)))
            .bind(detail.map(serde_json::Value::to_string));
        self.write("record_review_action", query).await.map(drop)
    }

    /// The review steps of proposal `id`, oldest first.
    pub async fn review_actions(&self, id: i64) -> Result<Vec<ReviewAction>, StoreError> {
        let rows = sqlx::query(self.sql(ACTIONS))
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("review_actions"))?;
        rows.iter().map(action_from_row).collect()
    }
}

fn action_from_row(row: &AnyRow) -> Result<ReviewAction, StoreError> {
    Ok(ReviewAction {
        action: get(row, "action")?,
        actor: get(row, "actor")?,
        reason: get(row, "reason")?,
        detail: get::<Option<String>>(row, "detail")?
            .map(|d| json("review_actions.detail", &d))
            .transpose()?,
        at: from_ms("review_actions.at", get(row, "at")?)?,
    })
}
