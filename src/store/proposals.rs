//! Shadow proposals: what deskpilot would have done, stored once per `(connection, ticket,
//! event)` for a person to review (`pending` → `approved` | `rejected` | `superseded`;
//! `approved` → `applied` | `superseded`). Each review step is kept in `review_actions` with who
//! and when ([`super::review`]).
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
    sql::{self, from_ms, from_opt_ms, get, json, sql},
};

/// Most proposals one page returns.
const MAX_PAGE: u32 = 500;

/// A proposal's review state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
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
    /// Overtaken before it was applied: a person triaged the ticket first, or closed or deleted it.
    Superseded,
}

impl ProposalStatus {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Applied => "applied",
            Self::Superseded => "superseded",
        }
    }

    /// Every status, in the order a review goes through them.
    pub const ALL: [ProposalStatus; 5] =
        [Self::Pending, Self::Approved, Self::Applied, Self::Rejected, Self::Superseded];

    /// Parses the stored text.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the review flow allows `self → to`.
    pub fn can_become(self, to: ProposalStatus) -> bool {
        use ProposalStatus::*;
        matches!((self, to), (Pending, Approved | Rejected | Superseded) | (Approved, Applied | Superseded))
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
    /// The ticket's triage fields as triage read them (`act::TriageFields` JSON), to tell what a
    /// person changed since.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket_before: Option<serde_json::Value>,
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
    /// The decision as a reviewer edited it before approving (`None`: approved as proposed).
    pub approved_decision: Option<serde_json::Value>,
}

impl Proposal {
    /// The decision to apply: the reviewer's edit, else the proposal's.
    pub fn decision_to_apply(&self) -> &serde_json::Value {
        self.approved_decision.as_ref().unwrap_or(&self.stored.decision)
    }
}

impl std::ops::Deref for Proposal {
    type Target = NewProposal;

    fn deref(&self) -> &NewProposal {
        &self.stored
    }
}

/// Which proposals to list: newest first, `limit` per page; pass the last id of a page as
/// `before_id` for the next one (keyset paging, stable while new proposals arrive).
#[derive(Debug, Clone, PartialEq)]
pub struct ProposalFilter {
    /// Only this connection.
    pub connection: Option<String>,
    /// Only this status.
    pub status: Option<ProposalStatus>,
    /// Only this proposed category.
    pub category: Option<String>,
    /// Only a confidence at or above this.
    pub min_confidence: Option<f64>,
    /// Only a confidence at or below this.
    pub max_confidence: Option<f64>,
    /// Only proposals whose ticket id is this, or whose subject or decision (summary, reason,
    /// draft, tags) contains it, ignoring case.
    pub text: Option<String>,
    /// Page size (1..=500; default 50).
    pub limit: u32,
    /// Only ids below this one.
    pub before_id: Option<i64>,
}

impl Default for ProposalFilter {
    fn default() -> Self {
        Self {
            connection: None,
            status: None,
            category: None,
            min_confidence: None,
            max_confidence: None,
            text: None,
            limit: 50,
            before_id: None,
        }
    }
}

impl ProposalFilter {
    /// The text filter as a `LIKE` pattern, its wildcards escaped with `\`.
    fn like(&self) -> Option<String> {
        let text = self.text.as_deref().map(str::trim).filter(|t| !t.is_empty())?;
        let mut pattern = String::from("%");
        for c in text.to_lowercase().chars() {
            if matches!(c, '%' | '_' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('%');
        Some(pattern)
    }

    /// Binds `$1`..`$7` of [`FILTER`] (all but the status and the page).
    fn bind<'q>(
        &self,
        query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
        query
            .bind(self.connection.clone())
            .bind(self.category.clone())
            .bind(self.min_confidence.map(per_mille))
            .bind(self.max_confidence.map(per_mille))
            .bind(self.like())
            .bind(self.text.as_deref().map(str::trim).map(str::to_owned))
    }
}

/// A confidence bound in thousandths, as the filter compares it: whole numbers compare exactly
/// (and PostgreSQL through the Any driver takes a NULL float parameter badly).
fn per_mille(confidence: f64) -> i64 {
    (confidence * 1000.0).round() as i64
}

/// The conditions every list and count shares: connection, category, confidence range, text
/// (`$1`..`$6`).
macro_rules! proposal_filter {
    () => {
        "($1 IS NULL OR connection_id = $1) AND ($2 IS NULL OR category_id = $2) \
         AND ($3 IS NULL OR ROUND(confidence * 1000) >= $3) AND ($4 IS NULL OR ROUND(confidence * 1000) <= $4) \
         AND ($5 IS NULL OR ticket_id = $6 OR LOWER(COALESCE(ticket_subject, '')) LIKE $5 ESCAPE '\\' \
              OR LOWER(decision) LIKE $5 ESCAPE '\\')"
    };
}

macro_rules! proposal_columns {
    () => {
        "id, connection_id, ticket_id, event_id, decision, report, mode, why_shadowed, ticket_subject, \
         ticket_url, status, reviewed_by, review_reason, created_at, reviewed_at, applied_note_id, applied_at, \
         ticket_before, approved_decision"
    };
}

/// [`proposal_columns`] of the proposals table aliased `p`.
macro_rules! proposal_columns_p {
    () => {
        "p.id, p.connection_id, p.ticket_id, p.event_id, p.decision, p.report, p.mode, p.why_shadowed, \
         p.ticket_subject, p.ticket_url, p.status, p.reviewed_by, p.review_reason, p.created_at, p.reviewed_at, \
         p.applied_note_id, p.applied_at, p.ticket_before, p.approved_decision"
    };
}
pub(super) use {proposal_columns, proposal_columns_p};

/// Once per event: a proposal stored before for the same event is kept as it is, and the
/// no-op update makes `RETURNING` give its id too.
pub(super) const INSERT: sql::Sql = sql!(
    "INSERT INTO proposals (connection_id, ticket_id, event_id, decision, report, mode, why_shadowed, \
     ticket_subject, ticket_url, category_id, confidence, ticket_before, status, created_at) VALUES \
     ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'pending', " NOW ") ON CONFLICT (connection_id, ticket_id, event_id) \
     DO UPDATE SET event_id = excluded.event_id RETURNING id"
);
const LIST: sql::Sql = sql!("SELECT " [proposal_columns] " FROM proposals WHERE " [proposal_filter]
     " AND ($7 IS NULL OR status = $7) AND ($8 IS NULL OR id < $8) ORDER BY id DESC LIMIT $9");
const COUNTS: sql::Sql =
    sql!("SELECT status, COUNT(*) AS n FROM proposals WHERE " [proposal_filter] " GROUP BY status");
const ONE: sql::Sql = sql!("SELECT " [proposal_columns] " FROM proposals WHERE id = $1");
impl Store {
    /// Stores a proposal once per `(connection_id, ticket_id, event_id)` and returns its id (the
    /// existing proposal's id when it was stored before).
    pub async fn insert_proposal(&self, p: &NewProposal) -> Result<i64, StoreError> {
        let mut conn = self.writer.acquire("insert_proposal").await?;
        insert_on(&mut conn, self.sql(INSERT), p).await
    }

    /// One page of proposals, newest first (see [`ProposalFilter`]).
    pub async fn proposals(&self, filter: &ProposalFilter) -> Result<Vec<Proposal>, StoreError> {
        let rows = filter
            .bind(sqlx::query(self.sql(LIST)))
            .bind(filter.status.map(ProposalStatus::as_str))
            .bind(filter.before_id)
            .bind(i64::from(filter.limit.clamp(1, MAX_PAGE)))
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("proposals"))?;
        rows.iter().map(proposal_from_row).collect()
    }

    /// How many proposals of each status match `filter` (its status and page left aside).
    pub async fn proposal_counts(
        &self,
        filter: &ProposalFilter,
    ) -> Result<std::collections::BTreeMap<ProposalStatus, u64>, StoreError> {
        let rows = filter
            .bind(sqlx::query(self.sql(COUNTS)))
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("proposal_counts"))?;
        let mut counts: std::collections::BTreeMap<_, _> = ProposalStatus::ALL.map(|s| (s, 0)).into();
        for row in &rows {
            let status: String = get(row, "status")?;
            let status = ProposalStatus::parse(&status)
                .ok_or(StoreError::Corrupt { what: "proposals.status", detail: status })?;
            let n: i64 = get(row, "n")?;
            counts.insert(status, u64::try_from(n).unwrap_or_default());
        }
        Ok(counts)
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
        .bind(p.ticket_url.as_deref())
        .bind(p.decision.get("category_id").and_then(serde_json::Value::as_str).map(str::to_owned))
        .bind(p.decision.get("confidence").and_then(serde_json::Value::as_f64))
        .bind(p.ticket_before.as_ref().map(serde_json::Value::to_string));
    let rows = query.fetch_all(conn).await.map_err(StoreError::query("insert_proposal"))?;
    let row = rows.first().ok_or_else(|| StoreError::Corrupt {
        what: "proposals.id",
        detail: "the insert returned no row".into(),
    })?;
    get(row, "id")
}

pub(super) fn proposal_from_row(row: &AnyRow) -> Result<Proposal, StoreError> {
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
            ticket_before: opt_json(row, "proposals.ticket_before", "ticket_before")?,
        },
        status: ProposalStatus::parse(&status)
            .ok_or(StoreError::Corrupt { what: "proposals.status", detail: status })?,
        reviewed_by: get(row, "reviewed_by")?,
        review_reason: get(row, "review_reason")?,
        created_at: from_ms("proposals.created_at", get(row, "created_at")?)?,
        reviewed_at: from_opt_ms("proposals.reviewed_at", get(row, "reviewed_at")?)?,
        applied_note_id: get(row, "applied_note_id")?,
        applied_at: from_opt_ms("proposals.applied_at", get(row, "applied_at")?)?,
        approved_decision: opt_json(row, "proposals.approved_decision", "approved_decision")?,
    })
}

fn opt_json(
    row: &AnyRow,
    what: &'static str,
    column: &'static str,
) -> Result<Option<serde_json::Value>, StoreError> {
    get::<Option<String>>(row, column)?.map(|text| json(what, &text)).transpose()
}
