//! Figures per connection, from the ledger and the proposals.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{
    error::StoreError,
    handle::Store,
    proposals::ProposalStatus,
    sql::{count, get},
};

/// Figures for every connection seen (or one).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Per connection, by id.
    pub connections: Vec<ConnectionStats>,
}

impl Stats {
    /// The figures of one connection.
    pub fn connection(&self, id: &str) -> Option<&ConnectionStats> {
        self.connections.iter().find(|c| c.connection_id == id)
    }
}

/// Figures of one connection.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ConnectionStats {
    /// Connection id.
    pub connection_id: String,
    /// Ledger keys seen.
    pub tickets: u64,
    /// Keys with a recorded decision.
    pub decided: u64,
    /// … decided by the LLM.
    pub decided_by_llm: u64,
    /// … decided by the rules fallback.
    pub decided_by_rules: u64,
    /// Keys finished (`Done`).
    pub done: u64,
    /// Keys failed permanently.
    pub failed: u64,
    /// Prompt tokens (server-reported) over all decisions.
    pub prompt_tokens: u64,
    /// Completion tokens over all decisions.
    pub completion_tokens: u64,
    /// Estimated cost in US dollars (decisions whose model has a price).
    pub cost_usd: f64,
    /// Median LLM latency of LLM decisions, in milliseconds (the lower middle value).
    pub latency_p50_ms: Option<u64>,
    /// Mean LLM latency of LLM decisions, in milliseconds.
    pub latency_avg_ms: Option<f64>,
    /// Proposals by status.
    pub proposals: ProposalCounts,
}

/// Proposals by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ProposalCounts {
    /// Waiting for review.
    pub pending: u64,
    /// Approved, not applied yet.
    pub approved: u64,
    /// Rejected.
    pub rejected: u64,
    /// Applied.
    pub applied: u64,
    /// Overtaken by a person before it was applied.
    pub superseded: u64,
}

// PostgreSQL's SUM(bigint) and AVG are NUMERIC, which the Any driver cannot carry: cast back.
const LEDGER: &str = "SELECT connection_id, COUNT(*) AS tickets, COUNT(decision) AS decided, \
     CAST(COALESCE(SUM(CASE WHEN origin = 'llm' THEN 1 ELSE 0 END), 0) AS BIGINT) AS by_llm, \
     CAST(COALESCE(SUM(CASE WHEN origin = 'rules' THEN 1 ELSE 0 END), 0) AS BIGINT) AS by_rules, \
     CAST(COALESCE(SUM(CASE WHEN step = 'done' THEN 1 ELSE 0 END), 0) AS BIGINT) AS done, \
     CAST(COALESCE(SUM(failed), 0) AS BIGINT) AS failed, \
     CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT) AS prompt_tokens, \
     CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) AS completion_tokens, \
     CAST(COALESCE(SUM(cost_usd), 0.0) AS DOUBLE PRECISION) AS cost_usd, \
     CAST(AVG(CASE WHEN origin = 'llm' THEN latency_ms END) AS DOUBLE PRECISION) AS latency_avg_ms \
     FROM ledger WHERE ($1 IS NULL OR connection_id = $1) GROUP BY connection_id";
const MEDIAN: &str = "SELECT connection_id, latency_ms FROM (SELECT connection_id, latency_ms, \
     ROW_NUMBER() OVER (PARTITION BY connection_id ORDER BY latency_ms) AS rn, \
     COUNT(*) OVER (PARTITION BY connection_id) AS n FROM ledger WHERE origin = 'llm' \
     AND latency_ms IS NOT NULL AND ($1 IS NULL OR connection_id = $1)) ranked WHERE rn = (n + 1) / 2";
const PROPOSALS: &str = "SELECT connection_id, status, COUNT(*) AS n FROM proposals \
     WHERE ($1 IS NULL OR connection_id = $1) GROUP BY connection_id, status";

/// The LLM cost of the decisions recorded since the start of a day and of a month (epoch ms),
/// per connection.
const SPEND: &str = "SELECT connection_id, \
     CAST(COALESCE(SUM(CASE WHEN decided_at >= $1 THEN cost_usd END), 0.0) AS DOUBLE PRECISION) AS day_usd, \
     CAST(COALESCE(SUM(cost_usd), 0.0) AS DOUBLE PRECISION) AS month_usd \
     FROM ledger WHERE decided_at >= $2 AND cost_usd IS NOT NULL GROUP BY connection_id";

/// What the LLM cost one connection since the start of a day and of a month.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Spend {
    /// Since the day's start, US dollars.
    pub day_usd: f64,
    /// Since the month's start, US dollars.
    pub month_usd: f64,
}

impl Store {
    /// The LLM cost of the decisions recorded since `day_start` and since `month_start`, by
    /// connection id (connections without a priced decision are left out).
    pub async fn llm_spend(
        &self,
        day_start: time::OffsetDateTime,
        month_start: time::OffsetDateTime,
    ) -> Result<BTreeMap<String, Spend>, StoreError> {
        let ms = |t: time::OffsetDateTime| (t.unix_timestamp_nanos() / 1_000_000) as i64;
        let rows = sqlx::query(SPEND)
            .bind(ms(day_start))
            .bind(ms(month_start))
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("llm_spend"))?;
        rows.iter()
            .map(|row| {
                let spend = Spend { day_usd: get(row, "day_usd")?, month_usd: get(row, "month_usd")? };
                Ok((get(row, "connection_id")?, spend))
            })
            .collect()
    }

    /// Figures per connection (all connections, or just `connection`), by connection id.
    pub async fn stats(&self, connection: Option<&str>) -> Result<Stats, StoreError> {
        let mut by_id: BTreeMap<String, ConnectionStats> = BTreeMap::new();

        let ledger = sqlx::query(LEDGER)
            .bind(connection)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("stats"))?;
        for row in &ledger {
            let id: String = get(row, "connection_id")?;
            let s = slot(&mut by_id, id);
            s.tickets = count("stats.tickets", get(row, "tickets")?)?;
            s.decided = count("stats.decided", get(row, "decided")?)?;
            s.decided_by_llm = count("stats.by_llm", get(row, "by_llm")?)?;
            s.decided_by_rules = count("stats.by_rules", get(row, "by_rules")?)?;
            s.done = count("stats.done", get(row, "done")?)?;
            s.failed = count("stats.failed", get(row, "failed")?)?;
            s.prompt_tokens = count("stats.prompt_tokens", get(row, "prompt_tokens")?)?;
            s.completion_tokens = count("stats.completion_tokens", get(row, "completion_tokens")?)?;
            s.cost_usd = get(row, "cost_usd")?;
            s.latency_avg_ms = get(row, "latency_avg_ms")?;
        }

        let medians = sqlx::query(MEDIAN)
            .bind(connection)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("stats"))?;
        for row in &medians {
            let id: String = get(row, "connection_id")?;
            slot(&mut by_id, id).latency_p50_ms = Some(count("stats.latency", get(row, "latency_ms")?)?);
        }

        let proposals = sqlx::query(PROPOSALS)
            .bind(connection)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("stats"))?;
        for row in &proposals {
            let id: String = get(row, "connection_id")?;
            let status: String = get(row, "status")?;
            let n = count("stats.proposals", get(row, "n")?)?;
            let counts = &mut slot(&mut by_id, id).proposals;
            match ProposalStatus::parse(&status) {
                Some(ProposalStatus::Pending) => counts.pending = n,
                Some(ProposalStatus::Approved) => counts.approved = n,
                Some(ProposalStatus::Rejected) => counts.rejected = n,
                Some(ProposalStatus::Applied) => counts.applied = n,
                Some(ProposalStatus::Superseded) => counts.superseded = n,
                None => return Err(StoreError::Corrupt { what: "proposals.status", detail: status }),
            }
        }
        Ok(Stats { connections: by_id.into_values().collect() })
    }
}

fn slot(map: &mut BTreeMap<String, ConnectionStats>, id: String) -> &mut ConnectionStats {
    map.entry(id.clone()).or_insert_with(|| ConnectionStats { connection_id: id, ..Default::default() })
}
