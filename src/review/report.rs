//! The agreement report: per connection and proposed category, how often deskpilot's proposals
//! agree with what people finally set (category and priority, with 95 % Wilson intervals), the
//! precision and coverage at each confidence threshold, the top confusions, tokens and cost per
//! ticket, and whether the category is ready for `apply_if_confident`, with the config line that
//! promotes it.
//!
//! "Correct" is the value a person left at close: only final outcomes (closed tickets) are scored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{
    store::{Outcome, Proposal},
    triage::{ModelUsage, decision::Origin, eval::metrics::Accuracy},
};

/// Confidence thresholds the report scores.
pub const THRESHOLDS: [f64; 9] = [0.0, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95];

/// Shown in place of a category id when the proposal had none.
const NO_CATEGORY: &str = "(none)";

/// The evidence a category needs before the report recommends automating it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bar {
    /// Closed tickets with a person's category, at the recommended threshold.
    pub min_closed: usize,
    /// Share of them where the person's category is the proposed one.
    pub min_precision: f64,
}

impl Default for Bar {
    fn default() -> Self {
        Self { min_closed: 50, min_precision: 0.95 }
    }
}

/// A share with its 95 % Wilson score interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Agreement {
    /// Pairs that agree, of pairs counted, and their share.
    #[serde(flatten)]
    pub accuracy: Accuracy,
    /// Lower bound of the interval.
    pub low: f64,
    /// Upper bound of the interval.
    pub high: f64,
}

impl Agreement {
    /// `agree` of `total`, with its interval.
    pub fn new(agree: usize, total: usize) -> Self {
        let (low, high) = wilson(agree, total);
        Self { accuracy: Accuracy::new(agree, total), low, high }
    }
}

/// The 95 % Wilson score interval of `k` successes in `n` trials; `(0, 1)` for no trials.
pub fn wilson(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (n, p, z) = (n as f64, k as f64 / n as f64, 1.959_963_984_540_054_f64);
    let denominator = 1.0 + z * z / n;
    let centre = p + z * z / (2.0 * n);
    let spread = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    (((centre - spread) / denominator).max(0.0), ((centre + spread) / denominator).min(1.0))
}

/// Precision and coverage when only proposals at or above `threshold` would be applied.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ThresholdPoint {
    /// The confidence threshold.
    pub threshold: f64,
    /// Share of the category's proposals at or above it.
    pub coverage: f64,
    /// Closed tickets with a person's category at or above it.
    pub closed: usize,
    /// Share of those where the person's category is the proposed one (`None`: none closed).
    pub precision: Option<f64>,
}

/// Whether a category is ready for `apply_if_confident`, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    /// Ready at `threshold`.
    pub ready: bool,
    /// The lowest threshold that meets the bar.
    pub threshold: Option<f64>,
    /// In words.
    pub text: String,
    /// The line that promotes it, for the connection's `[connections.automation]`.
    pub config_line: Option<String>,
}

/// One proposed category of one connection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CategoryReport {
    /// The connection.
    pub connection_id: String,
    /// The proposed category (`(none)` for proposals without one).
    pub category_id: String,
    /// Proposals of it.
    pub proposals: usize,
    /// Of them, with an outcome observed (open or closed).
    pub observed: usize,
    /// Of them, closed with a person's category: the ones scored.
    pub closed: usize,
    /// Proposed category = the person's, over closed tickets.
    pub category_agreement: Agreement,
    /// Proposed priority = the person's, over closed tickets with a person's priority.
    pub priority_agreement: Agreement,
    /// Precision and coverage at each of [`THRESHOLDS`].
    pub thresholds: Vec<ThresholdPoint>,
    /// The categories people chose instead, most frequent first (at most 3).
    pub confusions: Vec<(String, usize)>,
    /// Mean prompt + completion tokens per proposal.
    pub tokens_per_ticket: f64,
    /// Mean cost per proposal, in US dollars.
    pub cost_per_ticket_usd: f64,
    /// Whether to automate it.
    pub recommendation: Recommendation,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The connection reported on (`None`: all).
    pub connection: Option<String>,
    /// Proposals stored since then.
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    /// The bar recommendations are held to.
    pub bar: Bar,
    /// Proposals counted.
    pub proposals: usize,
    /// Closed tickets with a person's category.
    pub closed: usize,
    /// Category agreement over all of them.
    pub category_agreement: Agreement,
    /// Per connection and proposed category, most proposals first.
    pub categories: Vec<CategoryReport>,
    /// Proposals the stronger model (`[llm.escalation]`) was asked for.
    pub escalated: usize,
    /// Who answered how many proposals and what each model cost, most answers first.
    pub models: Vec<ModelShare>,
}

/// One model (or the rules) over the reported proposals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelShare {
    /// The model's name, or `rules`.
    pub model: String,
    /// Proposals whose decision it made.
    pub answered: usize,
    /// Their share of all proposals.
    pub share: f64,
    /// Proposals it was asked for, answered or not (a first answer that was escalated).
    pub asked: usize,
    /// What it cost over all of them, in US dollars (priced models only).
    pub cost_usd: f64,
}

/// Who answered each proposal and what each model asked cost, summed by model.
fn model_shares(rows: &[(Proposal, Option<Outcome>)]) -> (usize, Vec<ModelShare>) {
    let mut shares: BTreeMap<String, ModelShare> = BTreeMap::new();
    let mut escalated = 0;
    for (p, _) in rows {
        let answered_by = match Origin::deserialize(&p.decision["origin"]) {
            Ok(Origin::Llm { model }) => model,
            Ok(Origin::Rules { .. }) | Err(_) => "rules".to_owned(),
        };
        let new = |model: &str| ModelShare {
            model: model.to_owned(),
            answered: 0,
            share: 0.0,
            asked: 0,
            cost_usd: 0.0,
        };
        shares.entry(answered_by.clone()).or_insert_with(|| new(&answered_by)).answered += 1;
        let asked: Vec<ModelUsage> = Vec::deserialize(&p.report["models"]).unwrap_or_default();
        for m in asked {
            let share = shares.entry(m.model.clone()).or_insert_with(|| new(&m.model));
            share.asked += 1;
            share.cost_usd += m.cost_usd.unwrap_or_default();
        }
        escalated += usize::from(!p.report["escalated"].is_null());
    }
    let total = rows.len().max(1) as f64;
    let mut models: Vec<ModelShare> = shares.into_values().collect();
    for m in &mut models {
        m.share = m.answered as f64 / total;
    }
    models.sort_by(|a, b| b.answered.cmp(&a.answered).then(a.model.cmp(&b.model)));
    (escalated, models)
}

/// One proposal as the report scores it.
struct Scored {
    category: String,
    priority: Option<String>,
    confidence: f64,
    tokens: u64,
    cost: f64,
    observed: bool,
    /// The person's category and priority at close.
    closed: Option<(Option<String>, Option<String>)>,
}

fn scored(p: &Proposal, o: Option<&Outcome>) -> Scored {
    let d = &p.decision;
    let usage = &p.report["usage"];
    let count = |k: &str| usage[k].as_u64().unwrap_or(0);
    Scored {
        category: d["category_id"].as_str().unwrap_or(NO_CATEGORY).to_owned(),
        priority: d["priority"].as_str().map(str::to_owned),
        confidence: d["confidence"].as_f64().unwrap_or(0.0),
        tokens: count("prompt_tokens") + count("completion_tokens"),
        cost: p.report["cost_usd"].as_f64().unwrap_or(0.0),
        observed: o.is_some(),
        closed: o.filter(|o| o.final_at.is_some()).map(|o| (o.category_id.clone(), o.priority.clone())),
    }
}

impl Report {
    /// The report over `rows` (proposals with their outcomes) under `bar`.
    pub fn new(
        connection: Option<String>,
        since: OffsetDateTime,
        bar: Bar,
        rows: &[(Proposal, Option<Outcome>)],
    ) -> Self {
        let mut groups: BTreeMap<(String, String), Vec<Scored>> = BTreeMap::new();
        for (p, o) in rows {
            let s = scored(p, o.as_ref());
            groups.entry((p.connection_id.clone(), s.category.clone())).or_default().push(s);
        }
        let mut categories: Vec<CategoryReport> =
            groups.into_iter().map(|((conn, cat), items)| category(conn, cat, &items, bar)).collect();
        categories.sort_by(|a, b| b.proposals.cmp(&a.proposals).then(a.category_id.cmp(&b.category_id)));
        let closed: usize = categories.iter().map(|c| c.closed).sum();
        let agree: usize = categories.iter().map(|c| c.category_agreement.accuracy.correct).sum();
        let (escalated, models) = model_shares(rows);
        Self {
            connection,
            since,
            bar,
            proposals: rows.len(),
            closed,
            category_agreement: Agreement::new(agree, closed),
            categories,
            escalated,
            models,
        }
    }

    /// The report as text, for a terminal.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let pct = |x: f64| format!("{:.0} %", x * 100.0);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "agreement report for {} since {}: {} proposals, {} closed with a person's category, category agreement {} [{}–{}]",
            self.connection.as_deref().unwrap_or("every connection"),
            crate::ticketing::model::format_timestamp(self.since),
            self.proposals,
            self.closed,
            pct(self.category_agreement.accuracy.accuracy),
            pct(self.category_agreement.low),
            pct(self.category_agreement.high),
        );
        let _ = writeln!(
            out,
            "bar for automation: at least {} closed tickets and {} precision\n",
            self.bar.min_closed,
            pct(self.bar.min_precision)
        );
        if !self.models.is_empty() {
            let answered: Vec<String> = self
                .models
                .iter()
                .map(|m| {
                    format!(
                        "{} {} ({}, asked {}, ${:.4})",
                        m.model,
                        m.answered,
                        pct(m.share),
                        m.asked,
                        m.cost_usd
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "answered by: {}; {} sent to the stronger model\n",
                answered.join(", "),
                self.escalated
            );
        }
        for c in &self.categories {
            let a = &c.category_agreement;
            let p = &c.priority_agreement;
            let _ = writeln!(
                out,
                "{} / {}: {} proposals, {} observed, {} closed; category {} [{}–{}] over {}, priority {} over {}; {:.0} tokens, ${:.4} per ticket",
                c.connection_id,
                c.category_id,
                c.proposals,
                c.observed,
                c.closed,
                pct(a.accuracy.accuracy),
                pct(a.low),
                pct(a.high),
                a.accuracy.total,
                pct(p.accuracy.accuracy),
                p.accuracy.total,
                c.tokens_per_ticket,
                c.cost_per_ticket_usd,
            );
            let curve: Vec<String> = c
                .thresholds
                .iter()
                .filter(|t| t.threshold > 0.0)
                .map(|t| {
                    format!(
                        "≥{:.2}: {} of proposals, {}",
                        t.threshold,
                        pct(t.coverage),
                        t.precision.map_or("no closed".to_owned(), |p| format!(
                            "{} precise over {}",
                            pct(p),
                            t.closed
                        ))
                    )
                })
                .collect();
            let _ = writeln!(out, "    {}", curve.join("; "));
            if !c.confusions.is_empty() {
                let confusions: Vec<String> =
                    c.confusions.iter().map(|(cat, n)| format!("{cat} ×{n}")).collect();
                let _ = writeln!(out, "    people chose instead: {}", confusions.join(", "));
            }
            let _ = writeln!(out, "    {}", c.recommendation.text);
            if let Some(line) = &c.recommendation.config_line {
                let _ = writeln!(out, "    promote: {line}");
            }
        }
        out
    }
}

fn category(connection_id: String, category_id: String, items: &[Scored], bar: Bar) -> CategoryReport {
    let closed: Vec<&Scored> =
        items.iter().filter(|s| s.closed.as_ref().is_some_and(|(cat, _)| cat.is_some())).collect();
    let agrees =
        |s: &Scored| s.closed.as_ref().and_then(|(cat, _)| cat.as_deref()) == Some(s.category.as_str());
    let category_agreement = Agreement::new(closed.iter().filter(|s| agrees(s)).count(), closed.len());
    let with_priority: Vec<&Scored> =
        items.iter().filter(|s| s.closed.as_ref().is_some_and(|(_, p)| p.is_some())).collect();
    let priority_agreement = Agreement::new(
        with_priority.iter().filter(|s| s.closed.as_ref().and_then(|(_, p)| p.clone()) == s.priority).count(),
        with_priority.len(),
    );
    let thresholds: Vec<ThresholdPoint> = THRESHOLDS
        .iter()
        .map(|&t| {
            let above = items.iter().filter(|s| at_least(s.confidence, t)).count();
            let scored: Vec<&&Scored> = closed.iter().filter(|s| at_least(s.confidence, t)).collect();
            let agree = scored.iter().filter(|s| agrees(s)).count();
            ThresholdPoint {
                threshold: t,
                coverage: if items.is_empty() { 0.0 } else { above as f64 / items.len() as f64 },
                closed: scored.len(),
                precision: (!scored.is_empty()).then(|| agree as f64 / scored.len() as f64),
            }
        })
        .collect();
    let mut confusions: BTreeMap<String, usize> = BTreeMap::new();
    for s in closed.iter().filter(|s| !agrees(s)) {
        if let Some((Some(cat), _)) = &s.closed {
            *confusions.entry(cat.clone()).or_default() += 1;
        }
    }
    let mut confusions: Vec<(String, usize)> = confusions.into_iter().collect();
    confusions.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    confusions.truncate(3);
    let n = items.len().max(1) as f64;
    let recommendation = recommend(&category_id, &thresholds, closed.len(), bar);
    CategoryReport {
        proposals: items.len(),
        observed: items.iter().filter(|s| s.observed).count(),
        closed: closed.len(),
        category_agreement,
        priority_agreement,
        thresholds,
        confusions,
        tokens_per_ticket: items.iter().map(|s| s.tokens as f64).sum::<f64>() / n,
        cost_per_ticket_usd: items.iter().map(|s| s.cost).sum::<f64>() / n,
        recommendation,
        connection_id,
        category_id,
    }
}

/// Whether `confidence` reaches `threshold`, to the thousandth: confidences are stored as `f32`,
/// so a proposal at 0.7 reads back as 0.69999999.
fn at_least(confidence: f64, threshold: f64) -> bool {
    (confidence * 1000.0).round() >= (threshold * 1000.0).round()
}

/// The lowest threshold whose closed tickets meet the bar, if any.
fn recommend(category_id: &str, curve: &[ThresholdPoint], closed: usize, bar: Bar) -> Recommendation {
    let pct = |x: f64| format!("{:.0} %", x * 100.0);
    if category_id == NO_CATEGORY {
        return Recommendation {
            ready: false,
            threshold: None,
            text: "no category was proposed: nothing to automate".into(),
            config_line: None,
        };
    }
    let meets = |t: &&ThresholdPoint| {
        t.closed >= bar.min_closed && t.precision.is_some_and(|p| p >= bar.min_precision)
    };
    if let Some(t) = curve.iter().filter(|t| t.threshold > 0.0).find(meets) {
        let precision = t.precision.unwrap_or_default();
        return Recommendation {
            ready: true,
            threshold: Some(t.threshold),
            text: format!(
                "ready for apply_if_confident at ≥ {:.2}: {} agreement over {} closed tickets",
                t.threshold,
                pct(precision),
                t.closed
            ),
            config_line: Some(format!("[connections.automation] {category_id} = {:.2}", t.threshold)),
        };
    }
    let text = if closed < bar.min_closed {
        format!(
            "not enough evidence yet: {closed} closed tickets with a person's category (the bar is {})",
            bar.min_closed
        )
    } else {
        let best = curve
            .iter()
            .filter(|t| t.threshold > 0.0 && t.closed >= bar.min_closed)
            .filter_map(|t| t.precision.map(|p| (p, t.threshold)))
            .fold((0.0, 0.0), |a, b| if b.0 > a.0 { b } else { a });
        format!(
            "not ready: at most {} agreement (at ≥ {:.2}) where at least {} tickets closed; the bar is {}",
            pct(best.0),
            best.1,
            bar.min_closed,
            pct(bar.min_precision)
        )
    };
    Recommendation { ready: false, threshold: None, text, config_line: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wilson_interval_matches_hand_computed_values() {
        let (low, high) = wilson(8, 10);
        assert!((low - 0.4902).abs() < 1e-4 && (high - 0.9433).abs() < 1e-4, "{low} {high}");
        assert_eq!(wilson(0, 0), (0.0, 1.0));
        let (low, high) = wilson(0, 5);
        assert!(low == 0.0 && (high - 0.4345).abs() < 1e-4, "{high}");
    }

    /// A pending proposal decided by `origin` after asking `models` (name, cost).
    fn proposal(id: i64, origin: serde_json::Value, models: &[(&str, f64)], escalated: bool) -> Proposal {
        let models: Vec<_> =
            models.iter().map(|(m, c)| serde_json::json!({"model": m, "calls": 1, "usage": {"prompt_tokens": 10, "completion_tokens": 1, "cached_tokens": 0}, "cost_usd": c})).collect();
        let report = serde_json::json!({
            "usage": {"prompt_tokens": 10, "completion_tokens": 1},
            "cost_usd": models.iter().map(|m| m["cost_usd"].as_f64().unwrap()).sum::<f64>(),
            "models": models,
            "escalated": if escalated { serde_json::json!("confidence 0.50 is below 0.70") } else { serde_json::Value::Null },
        });
        Proposal {
            id,
            stored: crate::store::NewProposal {
                connection_id: "demo".into(),
                ticket_id: id.to_string(),
                event_id: format!("e{id}"),
                decision: serde_json::json!({"category_id": "cat-billing", "priority": "HIGH", "confidence": 0.8, "origin": origin}),
                report,
                mode: "shadow".into(),
                why_shadowed: "shadow".into(),
                ticket_subject: None,
                ticket_url: None,
                ticket_before: None,
            },
            status: crate::store::ProposalStatus::Pending,
            reviewed_by: None,
            review_reason: None,
            created_at: OffsetDateTime::UNIX_EPOCH,
            reviewed_at: None,
            applied_note_id: None,
            applied_at: None,
            approved_decision: None,
        }
    }

    #[test]
    fn the_share_answered_by_each_model_and_its_cost_are_reported() {
        let llm = |m: &str| serde_json::json!({"kind": "llm", "model": m});
        let rows = [
            proposal(1, llm("cheap"), &[("cheap", 0.001)], false),
            proposal(2, llm("cheap"), &[("cheap", 0.001)], false),
            proposal(3, llm("strong"), &[("cheap", 0.001), ("strong", 0.02)], true),
            proposal(4, serde_json::json!({"kind": "rules", "rule": "refund"}), &[], false),
        ]
        .map(|p| (p, None));
        let r = Report::new(None, OffsetDateTime::UNIX_EPOCH, Bar::default(), &rows);
        assert_eq!(r.escalated, 1);
        let shares: Vec<(&str, usize, f64, usize)> =
            r.models.iter().map(|m| (m.model.as_str(), m.answered, m.share, m.asked)).collect();
        assert_eq!(shares, [("cheap", 2, 0.5, 3), ("rules", 1, 0.25, 0), ("strong", 1, 0.25, 1)]);
        assert!((r.models[0].cost_usd - 0.003).abs() < 1e-12);
        assert!((r.models[2].cost_usd - 0.02).abs() < 1e-12);
        let text = r.to_text();
        assert!(
            text.contains("answered by: cheap 2 (50 %, asked 3, $0.0030), rules 1 (25 %, asked 0, $0.0000), strong 1 (25 %, asked 1, $0.0200); 1 sent to the stronger model"),
            "{text}"
        );
    }

    #[test]
    fn the_lowest_threshold_that_meets_the_bar_is_recommended() {
        let point =
            |threshold, closed, precision| ThresholdPoint { threshold, coverage: 1.0, closed, precision };
        let curve = [
            point(0.0, 10, Some(0.7)),
            point(0.8, 6, Some(0.9)),
            point(0.9, 4, Some(1.0)),
            point(0.95, 1, Some(1.0)),
        ];
        let r = recommend("cat-outage", &curve, 10, Bar { min_closed: 4, min_precision: 0.95 });
        assert_eq!(r.threshold, Some(0.9));
        assert_eq!(r.config_line.as_deref(), Some("[connections.automation] cat-outage = 0.90"));
        assert!(r.text.contains("100 % agreement over 4 closed tickets"), "{}", r.text);
        let r = recommend("cat-outage", &curve, 10, Bar { min_closed: 5, min_precision: 0.95 });
        assert!(!r.ready && r.text.contains("at most 90 % agreement (at ≥ 0.80)"), "{}", r.text);
        let r = recommend("cat-outage", &curve, 10, Bar { min_closed: 50, min_precision: 0.95 });
        assert!(r.text.contains("not enough evidence yet: 10 closed"), "{}", r.text);
    }
}
