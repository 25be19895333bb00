//! Shadow proposals: what deskpilot would have done, stored once per `(connection, ticket,
//! event)` for a person to review (`pending` → `approved` | `rejected`; `approved` → `applied`).
//!
//! Status changes are conditional updates (`… WHERE status = <expected>`), so of two reviewers
//! acting on one proposal at once exactly one wins and the other learns it lost.

use std::fmt;

use serde::Serialize;
use sqlx::{AnyConnection, any::AnyRow};
use time::OffsetDateTime;

use super::{
    error::StoreError,
    handle::Store,
    sql::{self, clip, from_ms, from_opt_ms, get, json, sql},
};

/// Longest review reason kept.
const MAX_REASON_CHARS: usize = 2000;
/// Most proposals one page returns.
const MAX_PAGE: u32 = 500;

/// A proposal's review state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProposalStatus {
    /// Waiting for a reviewer.
    Pending,
    /// Accepted; to be applied.
    Approved,
    /// Declined (with a reason).
    Rejected,
    /// Applied to the helpdesk (the note's id is kept).
    Applied,
}

impl ProposalStatus {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Applied => "applied",
        }
    }

    /// Parses the stored text.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Approved, Self::Rejected, Self::Applied].into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the review flow allows `self → to`.
    pub fn can_become(self, to: ProposalStatus) -> bool {
        use ProposalStatus::*;
        matches!((self, to), (Pending, Approved) | (Pending, Rejected) | (Approved, Applied))
    }
}

impl fmt::Display for ProposalStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A proposal to store.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewProposal {
    /// Connection.
    pub connection_id: String,
    /// Ticket.
    pub ticket_id: String,
    /// The event (use the ledger entry's `event_id`, so a resumed attempt finds its proposal).
    pub event_id: String,
    /// The validated decision (JSON).
    pub decision: serde_json::Value,
    /// The triage report (JSON).
    pub report: serde_json::Value,
    /// The connection's mode when it was shadowed (`shadow`, `apply_if_confident`).
    pub mode: String,
    /// Why it was not applied.
    pub why_shadowed: String,
    /// Ticket subject, for the review list.
    pub ticket_subject: Option<String>,
    /// Link to the ticket in the helpdesk.
    pub ticket_url: Option<String>,
}

/// A stored proposal: what was stored (reachable directly through `Deref`) plus its review state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Proposal {
    /// Id (increasing).
    pub id: i64,
    /// What was stored.
    #[serde(flatten)]
    pub stored: NewProposal,
    /// Review state.
    pub status: ProposalStatus,
    /// Who approved or rejected it.
    pub reviewed_by: Option<String>,
    /// Why (rejections; optional for approvals).
    pub review_reason: Option<String>,
    /// Stored at.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Approved or rejected at.
    #[serde(with = "time::serde::rfc3339::option")]
    pub reviewed_at: Option<OffsetDateTime>,
    /// The internal note posted when it was applied.
    pub applied_note_id: Option<String>,
    /// Applied at.
    #[serde(with = "time::serde::rfc3339::option")]
    pub applied_at: Option<OffsetDateTime>,
}

impl std::ops::Deref for Proposal {
    type Target = NewProposal;

    fn deref(&self) -> &NewProposal {
        &self.stored
    }
}

/// Which proposals to list: newest first, `limit` per page; pass the last id of a page as
/// `before_id` for the next one (keyset paging, stable while new proposals arrive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposalFilter {
    /// Only this connection.
    pub connection: Option<String>,
    /// Only this status.
    pub status: Option<ProposalStatus>,
    /// Page size (1..=500; default 50).
    pub limit: u32,
    /// Only ids below this one.
    pub before_id: Option<i64>,
}

impl Default for ProposalFilter {
    fn default() -> Self {
        Self { connection: None, status: None, limit: 50, before_id: None }
    }
}

macro_rules! proposal_columns {
    () => {
        "id, connection_id, ticket_id, event_id, decision, report, mode, why_shadowed, ticket_subject, \
         ticket_url, status, reviewed_by, review_reason, created_at, reviewed_at, applied_note_id, applied_at"
    };
}

/// Once per event: a proposal stored before for the same event is kept as it is, and the
/// no-op update makes `RETURNING` give its id too.
pub(super) const INSERT: sql::Sql = sql!(
    "INSERT INTO proposals (connection_id, ticket_id, event_id, decision, report, mode, why_shadowed, \
     ticket_subject, ticket_url, status, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
     'pending', " NOW ") ON CONFLICT (connection_id, ticket_id, event_id) \
     DO UPDATE SET event_id = excluded.event_id RETURNING id"
);
const LIST: sql::Sql = sql!("SELECT " [proposal_columns] " FROM proposals WHERE ($1 IS NULL OR connection_id = $1) \
     AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4");
const ONE: sql::Sql = sql!("SELECT " [proposal_columns] " FROM proposals WHERE id = $1");
const REVIEW: sql::Sql = sql!(
    "UPDATE proposals SET status = $3, reviewed_by = $4, review_reason = $5, reviewed_at = " NOW
    " WHERE id = $1 AND status = $2"
);
const APPLIED: sql::Sql = sql!(
    "UPDATE proposals SET status = 'applied', applied_note_id = $2, applied_at = " NOW
    " WHERE id = $1 AND status = 'approved'"
);

impl Store {
    /// Stores a proposal once per `(connection_id, ticket_id, event_id)` and returns its id (the
    /// existing proposal's id when it was stored before).
    pub async fn insert_proposal(&self, p: &NewProposal) -> Result<i64, StoreError> {
        let mut conn = self.writer.acquire("insert_proposal").await?;
        insert_on(&mut conn, self.sql(INSERT), p).await
    }

    /// One page of proposals, newest first (see [`ProposalFilter`]).
    pub async fn proposals(&self, filter: &ProposalFilter) -> Result<Vec<Proposal>, StoreError> {
        let rows = sqlx::query(self.sql(LIST))
            .bind(filter.connection.as_deref())
            .bind(filter.status.map(ProposalStatus::as_str))
            .bind(filter.before_id)
            .bind(i64::from(filter.limit.clamp(1, MAX_PAGE)))
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("proposals"))?;
        rows.iter().map(proposal_from_row).collect()
    }

    /// One proposal.
    pub async fn proposal(&self, id: i64) -> Result<Option<Proposal>, StoreError> {
        let row = sqlx::query(self.sql(ONE))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::query("proposal"))?;
        row.as_ref().map(proposal_from_row).transpose()
    }

    /// Moves a proposal from `from` to `to` if it is still in `from`; returns whether it moved
    /// (`false`: another reviewer acted first, or no such proposal).
    ///
    /// `pending → approved | rejected` records `by` and `reason`; `approved → applied` records
    /// `reason` as the applied note's id (see [`Store::mark_proposal_applied`]). Other pairs are
    /// [`StoreError::InvalidTransition`].
    pub async fn set_proposal_status(
        &self,
        id: i64,
        from: ProposalStatus,
        to: ProposalStatus,
        by: Option<&str>,
        reason: Option<&str>,
    ) -> Result<bool, StoreError> {
        if !from.can_become(to) {
            return Err(StoreError::InvalidTransition { from: from.as_str(), to: to.as_str() });
        }
        let query = if to == ProposalStatus::Applied {
            sqlx::query(self.sql(APPLIED)).bind(id).bind(reason)
        } else {
            sqlx::query(self.sql(REVIEW))
                .bind(id)
                .bind(from.as_str())
                .bind(to.as_str())
                .bind(by)
                .bind(reason.map(|r| clip(r, MAX_REASON_CHARS)))
        };
        Ok(self.write("set_proposal_status", query).await? > 0)
    }

    /// `approved → applied` with the posted note's id; returns whether it moved.
    pub async fn mark_proposal_applied(&self, id: i64, note_id: &str) -> Result<bool, StoreError> {
        self.set_proposal_status(id, ProposalStatus::Approved, ProposalStatus::Applied, None, Some(note_id))
            .await
    }
}

/// Runs [`INSERT`] (its text for the store's backend) on a write connection or a transaction's
/// and returns the proposal's id. Every row is read, as for any write with `RETURNING`
/// ([`WriteConn::fetch_all`](super::writer::WriteConn::fetch_all)).
pub(super) async fn insert_on(
    conn: &mut AnyConnection,
    insert: &'static str,
    p: &NewProposal,
) -> Result<i64, StoreError> {
    let query = sqlx::query(insert)
        .bind(&p.connection_id)
        .bind(&p.ticket_id)
        .bind(&p.event_id)
        .bind(p.decision.to_string())
        .bind(p.report.to_string())
        .bind(&p.mode)
        .bind(&p.why_shadowed)
        .bind(p.ticket_subject.as_deref())
        .bind(p.ticket_url.as_deref());
    let rows = query.fetch_all(conn).await.map_err(StoreError::query("insert_proposal"))?;
    let row = rows.first().ok_or_else(|| StoreError::Corrupt {
        what: "proposals.id",
        detail: "the insert returned no row".into(),
    })?;
    get(row, "id")
}

fn proposal_from_row(row: &AnyRow) -> Result<Proposal, StoreError> {
    let status: String = get(row, "status")?;
    Ok(Proposal {
        id: get(row, "id")?,
        stored: NewProposal {
            connection_id: get(row, "connection_id")?,
            ticket_id: get(row, "ticket_id")?,
            event_id: get(row, "event_id")?,
            decision: json("proposals.decision", &get::<String>(row, "decision")?)?,
            report: json("proposals.report", &get::<String>(row, "report")?)?,
            mode: get(row, "mode")?,
            why_shadowed: get(row, "why_shadowed")?,
            ticket_subject: get(row, "ticket_subject")?,
            ticket_url: get(row, "ticket_url")?,
        },
        status: ProposalStatus::parse(&status)
            .ok_or(StoreError::Corrupt { what: "proposals.status", detail: status })?,
        reviewed_by: get(row, "reviewed_by")?,
        review_reason: get(row, "review_reason")?,
        created_at: from_ms("proposals.created_at", get(row, "created_at")?)?,
        reviewed_at: from_opt_ms("proposals.reviewed_at", get(row, "reviewed_at")?)?,
        applied_note_id: get(row, "applied_note_id")?,
        applied_at: from_opt_ms("proposals.applied_at", get(row, "applied_at")?)?,
    })
}
