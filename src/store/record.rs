//! A decision as the store keeps it: typed, so the store needs nothing of triage's types.

use serde::Serialize;
use sqlx::{
    Any,
    any::{AnyArguments, AnyRow},
    query::Query,
};

use super::{
    error::StoreError,
    sql::{count, get, json, to_i64},
};

/// Who decided (the ledger's `origin` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecidedBy {
    /// The LLM.
    Llm,
    /// The rules fallback.
    Rules,
}

impl DecidedBy {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Llm => "llm",
            Self::Rules => "rules",
        }
    }

    /// Parses the stored text.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Llm, Self::Rules].into_iter().find(|by| by.as_str() == s)
    }
}

/// A validated decision as the store keeps it: the decision and report as JSON, and the figures
/// [`Store::stats`](super::Store::stats) sums.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionRecord {
    /// The validated decision.
    pub decision: serde_json::Value,
    /// The triage report.
    pub report: serde_json::Value,
    /// Who decided.
    pub decided_by: DecidedBy,
    /// The prompt templates' version.
    pub prompt_version: Option<String>,
    /// Prompt tokens.
    pub prompt_tokens: Option<u64>,
    /// Completion tokens.
    pub completion_tokens: Option<u64>,
    /// Estimated cost in US dollars.
    pub cost_usd: Option<f64>,
    /// Time spent waiting for the LLM.
    pub latency_ms: Option<u64>,
    /// The ticket's triage fields as triage read them: what acting compares the ticket with
    /// before writing, to leave alone what a person changed meanwhile.
    pub ticket_before: Option<serde_json::Value>,
}

/// A record as its ledger columns, its JSON encoded once for every statement that binds it.
pub(crate) struct DecisionColumns<'r> {
    decision: String,
    report: String,
    ticket_before: Option<String>,
    record: &'r DecisionRecord,
}

impl<'r> DecisionColumns<'r> {
    pub(crate) fn new(record: &'r DecisionRecord) -> Self {
        Self {
            decision: record.decision.to_string(),
            report: record.report.to_string(),
            ticket_before: record.ticket_before.as_ref().map(ToString::to_string),
            record,
        }
    }

    /// Binds the nine decision parameters (decision, report, origin, prompt version, prompt and
    /// completion tokens, cost, latency, ticket before) in that order; all NULL for `None`.
    ///
    /// The statement is not kept prepared: sqlx's Any driver sends a NULL `f64` to PostgreSQL as
    /// a FLOAT4 parameter, and a statement prepared with that one refuses a cost given later
    /// ("incorrect binary data format").
    pub(crate) fn bind<'q>(
        query: Query<'q, Any, AnyArguments>,
        columns: Option<&'q DecisionColumns<'_>>,
    ) -> Query<'q, Any, AnyArguments> {
        let r = columns.map(|c| c.record);
        query
            .persistent(false)
            .bind(columns.map(|c| c.decision.as_str()))
            .bind(columns.map(|c| c.report.as_str()))
            .bind(r.map(|r| r.decided_by.as_str()))
            .bind(r.and_then(|r| r.prompt_version.as_deref()))
            .bind(r.and_then(|r| r.prompt_tokens).map(to_i64))
            .bind(r.and_then(|r| r.completion_tokens).map(to_i64))
            .bind(r.and_then(|r| r.cost_usd))
            .bind(r.and_then(|r| r.latency_ms).map(to_i64))
            .bind(columns.and_then(|c| c.ticket_before.as_deref()))
    }
}

/// Reads the decision record of a ledger row (`None`: no decision recorded).
pub(crate) fn record_from_row(row: &AnyRow) -> Result<Option<DecisionRecord>, StoreError> {
    let Some(decision) = get::<Option<String>>(row, "decision")? else { return Ok(None) };
    let origin: Option<String> = get(row, "origin")?;
    let decided_by = origin.as_deref().and_then(DecidedBy::parse).ok_or_else(|| StoreError::Corrupt {
        what: "ledger.origin",
        detail: origin.clone().unwrap_or_else(|| "NULL beside a decision".into()),
    })?;
    let figure = |what: &'static str| -> Result<Option<u64>, StoreError> {
        get::<Option<i64>>(row, what)?.map(|n| count(what, n)).transpose()
    };
    Ok(Some(DecisionRecord {
        decision: json("ledger.decision", &decision)?,
        report: match get::<Option<String>>(row, "report")? {
            Some(text) => json("ledger.report", &text)?,
            None => serde_json::Value::Null,
        },
        decided_by,
        prompt_version: get(row, "prompt_version")?,
        prompt_tokens: figure("prompt_tokens")?,
        completion_tokens: figure("completion_tokens")?,
        cost_usd: get(row, "cost_usd")?,
        latency_ms: figure("latency_ms")?,
        ticket_before: match get::<Option<String>>(row, "ticket_before")? {
            Some(text) => Some(json("ledger.ticket_before", &text)?),
            None => None,
        },
    }))
}
