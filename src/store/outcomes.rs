//! Outcomes: what people set on a proposal's ticket after triage, one row per proposal, final
//! once the ticket was seen closed (a final outcome never changes). The agreement report reads
//! them beside the proposals ([`Store::proposals_with_outcomes`]).

use serde::Serialize;
use sqlx::any::AnyRow;
use time::OffsetDateTime;

use super::{
    error::StoreError,
    handle::Store,
    proposals::{Proposal, proposal_columns, proposal_columns_p, proposal_from_row},
    sql::{self, from_ms, from_opt_ms, get, json, sql},
};

/// What people set on a proposal's ticket, as last observed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// The category a person set; `None`: no person's category (yet).
    pub category_id: Option<String>,
    /// The priority a person set (`LOW` … `URGENT`); `None`: no person's priority (yet).
    pub priority: Option<String>,
    /// The ticket's tags.
    pub tags: Vec<String>,
    /// When it was observed.
    #[serde(with = "time::serde::rfc3339")]
    pub observed_at: OffsetDateTime,
    /// When the ticket was seen closed: the outcome is final.
    #[serde(with = "time::serde::rfc3339::option")]
    pub final_at: Option<OffsetDateTime>,
}

/// An outcome to record for a proposal.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOutcome<'a> {
    /// The proposal.
    pub proposal_id: i64,
    /// Its connection.
    pub connection_id: &'a str,
    /// Its ticket.
    pub ticket_id: &'a str,
    /// A person's category, if any.
    pub category_id: Option<&'a str>,
    /// A person's priority, if any.
    pub priority: Option<&'a str>,
    /// The ticket's tags.
    pub tags: &'a [String],
    /// Whether the ticket is closed (the outcome becomes final).
    pub closed: bool,
}

/// A final outcome is never overwritten: what a person left at close is the label.
const UPSERT: sql::Sql = sql!(
    "INSERT INTO outcomes (proposal_id, connection_id, ticket_id, category_id, priority, tags, observed_at, final_at) \
     VALUES ($1, $2, $3, $4, $5, $6, " NOW ", CASE WHEN $7 = 1 THEN " NOW " ELSE NULL END) \
     ON CONFLICT (proposal_id) DO UPDATE SET category_id = excluded.category_id, priority = excluded.priority, \
     tags = excluded.tags, observed_at = excluded.observed_at, final_at = excluded.final_at \
     WHERE outcomes.final_at IS NULL"
);
const LATEST_FOR_TICKET: sql::Sql = sql!("SELECT " [proposal_columns] " FROM proposals \
     WHERE connection_id = $1 AND ticket_id = $2 ORDER BY id DESC LIMIT 1");
const WITH_OUTCOMES: sql::Sql = sql!("SELECT " [proposal_columns_p] ", o.category_id AS o_category_id, \
     o.priority AS o_priority, o.tags AS o_tags, o.observed_at AS o_observed_at, o.final_at AS o_final_at \
     FROM proposals p LEFT JOIN outcomes o ON o.proposal_id = p.id \
     WHERE ($1 IS NULL OR p.connection_id = $1) AND p.created_at >= $2 AND p.id > $3 ORDER BY p.id LIMIT $4");

/// Proposals read per round trip by [`Store::proposals_with_outcomes`].
const BATCH: i64 = 1000;

impl Store {
    /// Records what people set on a proposal's ticket; returns whether it changed anything (a
    /// final outcome stays as it was).
    pub async fn record_outcome(&self, o: &NewOutcome<'_>) -> Result<bool, StoreError> {
        let tags = serde_json::to_string(o.tags).expect("strings serialize");
        let query = sqlx::query(self.sql(UPSERT))
            .bind(o.proposal_id)
            .bind(o.connection_id.to_owned())
            .bind(o.ticket_id.to_owned())
            .bind(o.category_id.map(str::to_owned))
            .bind(o.priority.map(str::to_owned))
            .bind(tags)
            .bind(i64::from(o.closed));
        Ok(self.write("record_outcome", query).await? > 0)
    }

    /// The newest proposal for a ticket, if deskpilot made one.
    pub async fn latest_proposal_for(
        &self,
        connection: &str,
        ticket: &str,
    ) -> Result<Option<Proposal>, StoreError> {
        let row = sqlx::query(self.sql(LATEST_FOR_TICKET))
            .bind(connection.to_owned())
            .bind(ticket.to_owned())
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::query("latest_proposal_for"))?;
        row.as_ref().map(proposal_from_row).transpose()
    }

    /// Every proposal of `connection` (or all) stored since `since`, oldest first, each with its
    /// outcome if one was observed.
    pub async fn proposals_with_outcomes(
        &self,
        connection: Option<&str>,
        since: OffsetDateTime,
    ) -> Result<Vec<(Proposal, Option<Outcome>)>, StoreError> {
        let since_ms = (since.unix_timestamp_nanos() / 1_000_000) as i64;
        let mut out = Vec::new();
        let mut after = 0i64;
        loop {
            let rows = sqlx::query(self.sql(WITH_OUTCOMES))
                .bind(connection.map(str::to_owned))
                .bind(since_ms)
                .bind(after)
                .bind(BATCH)
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::query("proposals_with_outcomes"))?;
            let full = rows.len() as i64 == BATCH;
            for row in &rows {
                let p = proposal_from_row(row)?;
                after = p.id;
                out.push((p, outcome_from_row(row)?));
            }
            if !full {
                return Ok(out);
            }
        }
    }
}

fn outcome_from_row(row: &AnyRow) -> Result<Option<Outcome>, StoreError> {
    let Some(observed) = get::<Option<i64>>(row, "o_observed_at")? else { return Ok(None) };
    let tags: String = get(row, "o_tags")?;
    Ok(Some(Outcome {
        category_id: get(row, "o_category_id")?,
        priority: get(row, "o_priority")?,
        tags: json("outcomes.tags", &tags)?,
        observed_at: from_ms("outcomes.observed_at", observed)?,
        final_at: from_opt_ms("outcomes.final_at", get(row, "o_final_at")?)?,
    }))
}
