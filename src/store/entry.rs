//! The ledger's types: the key, the steps, a row ([`Entry`]) and what a claim finds.

use std::fmt;

use serde::Serialize;
use sqlx::{
    Any,
    any::{AnyArguments, AnyRow},
    query::Query,
};
use time::OffsetDateTime;

use super::{
    error::StoreError,
    record::{DecisionRecord, record_from_row},
    sql::{from_ms, from_opt_ms, get},
};
use crate::events::{EventKind, TicketEvent};

/// The ledger key: one unit of exactly-once work.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct LedgerKey {
    /// Connection (config id).
    pub connection_id: String,
    /// Ticket id in the helpdesk.
    pub ticket_id: String,
    /// Event kind.
    pub kind: EventKind,
}

impl LedgerKey {
    /// A key.
    pub fn new(connection_id: impl Into<String>, ticket_id: impl Into<String>, kind: EventKind) -> Self {
        Self { connection_id: connection_id.into(), ticket_id: ticket_id.into(), kind }
    }

    /// `query` with this key bound as its next three parameters: connection, ticket, kind.
    pub(super) fn bind<'q>(&'q self, query: Query<'q, Any, AnyArguments>) -> Query<'q, Any, AnyArguments> {
        query.bind(&self.connection_id).bind(&self.ticket_id).bind(self.kind.as_str())
    }
}

impl From<&TicketEvent> for LedgerKey {
    fn from(event: &TicketEvent) -> Self {
        Self::new(&event.connection_id, &event.ticket_id, event.kind)
    }
}

impl fmt::Display for LedgerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.connection_id, self.ticket_id, self.kind)
    }
}

/// How far the work on a key got: the steps a resumed attempt reads. Ordered; stored as
/// snake_case text; never moves backwards. (The schema's CHECK still allows `note_posted`, a step
/// that is no longer written: a note posted before the ledger knew is found by its marker.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Claimed, nothing durable yet.
    Claimed,
    /// The validated decision is recorded.
    Decided,
    /// The ticket's fields were updated on the helpdesk.
    TicketUpdated,
    /// Finished (applied, shadowed or skipped; see [`Entry::outcome`]).
    Done,
}

impl Step {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Claimed => "claimed",
            Self::Decided => "decided",
            Self::TicketUpdated => "ticket_updated",
            Self::Done => "done",
        }
    }

    /// Parses the stored text.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Claimed, Self::Decided, Self::TicketUpdated, Self::Done]
            .into_iter()
            .find(|step| step.as_str() == s)
    }

    /// Order, 0..=3 (matches the `RANK` SQL in `sql.rs`).
    pub(crate) fn rank(self) -> i64 {
        self as i64
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A ledger row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// The key.
    pub key: LedgerKey,
    /// The event that first claimed the key. Use it (not a redelivered duplicate's id) for
    /// proposals, so a resumed shadow insert finds the earlier proposal.
    pub event_id: String,
    /// Last step recorded.
    pub step: Step,
    /// A permanent failure was recorded; [`Store::claim`](super::Store::claim) answers `Done` until
    /// [`Store::reopen`](super::Store::reopen).
    pub failed: bool,
    /// The validated decision with its report and figures, from `Decided` on.
    pub decision: Option<DecisionRecord>,
    /// The internal note's id, recorded with `Done`.
    pub note_id: Option<String>,
    /// Failures recorded so far.
    pub attempts: u32,
    /// The last failure.
    pub last_error: Option<String>,
    /// `applied`, `shadowed: <why>`, `skipped: <why>`.
    pub outcome: Option<String>,
    /// The worker that holds (or last held) the lease.
    pub claimed_by: Option<String>,
    /// When the lease ends; `None` once released (failure, release or `Done`).
    #[serde(with = "time::serde::rfc3339::option")]
    pub lease_until: Option<OffsetDateTime>,
    /// First claim.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// When the decision was recorded.
    #[serde(with = "time::serde::rfc3339::option")]
    pub decided_at: Option<OffsetDateTime>,
    /// When the step reached `Done`.
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
}

/// What [`Store::claim`](super::Store::claim) found.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimOutcome {
    /// The caller holds the key now: a fresh key, an expired or released lease, or its own
    /// lease. Resume after `entry.step`.
    Claimed(Entry),
    /// Finished earlier (step `Done`, or a permanent failure: `entry.failed`). Just ack.
    Done(Entry),
    /// Another worker holds a live lease. Retry later (after `until`).
    Busy {
        /// The holding worker.
        holder: String,
        /// When its lease ends (database clock).
        until: OffsetDateTime,
    },
}

/// Reads an [`Entry`] from a row with the ledger's entry columns.
pub(crate) fn entry_from_row(row: &AnyRow) -> Result<Entry, StoreError> {
    let kind: String = get(row, "kind")?;
    let step: String = get(row, "step")?;
    let attempts: i64 = get(row, "attempts")?;
    Ok(Entry {
        key: LedgerKey {
            connection_id: get(row, "connection_id")?,
            ticket_id: get(row, "ticket_id")?,
            kind: EventKind::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt { what: "ledger.kind", detail: kind.clone() })?,
        },
        event_id: get(row, "event_id")?,
        step: Step::parse(&step).ok_or(StoreError::Corrupt { what: "ledger.step", detail: step })?,
        failed: get::<i64>(row, "failed")? != 0,
        decision: record_from_row(row)?,
        note_id: get(row, "note_id")?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        last_error: get(row, "last_error")?,
        outcome: get(row, "outcome")?,
        claimed_by: get(row, "claimed_by")?,
        lease_until: from_opt_ms("ledger.lease_until", get(row, "lease_until")?)?,
        created_at: from_ms("ledger.created_at", get(row, "created_at")?)?,
        updated_at: from_ms("ledger.updated_at", get(row, "updated_at")?)?,
        decided_at: from_opt_ms("ledger.decided_at", get(row, "decided_at")?)?,
        finished_at: from_opt_ms("ledger.finished_at", get(row, "finished_at")?)?,
    })
}
