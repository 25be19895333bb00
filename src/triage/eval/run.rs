//! Runs every case of a dataset through the engine (the worker's context, prompt, LLM and
//! validation, or the rules when no LLM is configured) with bounded concurrency, and sums the
//! outcomes into a report. Nothing is written anywhere; a case that fails is counted, not fatal.

use std::{sync::Arc, time::Instant};

use futures::StreamExt;
use serde::Serialize;

use super::{
    dataset::{Case, Expected},
    metrics::{Accuracy, Confusion, LabelScore, Percentiles},
};
use crate::{
    ticketing::{Category, PriorityLevel},
    triage::{Engine, Policy, Route, Triage, context::Gathered, decision::Origin},
};

/// The label of "no category" in confusion tables.
pub const NO_CATEGORY: &str = "(none)";

/// What the engine proposed for a case.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Proposed {
    /// Category id, or none.
    pub category: Option<String>,
    /// Priority.
    pub priority: PriorityLevel,
    /// Language code (`und` when unknown).
    pub language: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Confidence.
    pub confidence: f32,
    /// The model, or the rule that fired.
    pub origin: Origin,
    /// Why the rules decided instead of the LLM, when they did.
    pub fallback: Option<String>,
    /// Prompt tokens the server counted.
    pub prompt_tokens: u32,
    /// Completion tokens.
    pub completion_tokens: u32,
    /// Prompt tokens served from the provider's cache.
    pub cached_tokens: u32,
    /// Estimated cost in US dollars, when the model's price is configured.
    pub cost_usd: Option<f64>,
    /// LLM calls (2 when the answer was repaired).
    pub llm_calls: u32,
}

impl Proposed {
    fn of(t: &Triage) -> Self {
        let (d, r) = (&t.decision, &t.report);
        Self {
            category: d.category_id.clone(),
            priority: d.priority,
            language: d.language.clone(),
            tags: d.tags.clone(),
            confidence: d.confidence,
            origin: d.origin.clone(),
            fallback: r.fallback.clone(),
            prompt_tokens: r.usage.prompt_tokens,
            completion_tokens: r.usage.completion_tokens,
            cached_tokens: r.usage.cached_tokens,
            cost_usd: r.cost_usd,
            llm_calls: r.llm_calls,
        }
    }
}

/// One case's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseOutcome {
    /// 1-based line of the dataset (the rank in the listing, for closed tickets).
    pub line: usize,
    /// The case's id (or `line N`).
    pub id: String,
    /// The labels.
    pub expected: Expected,
    /// Whether the category is scored: false for a ticket closed without one (nobody chose a
    /// category, so there is nothing to agree with); such a case is scored on priority only.
    pub category_scored: bool,
    /// The proposal, unless the case failed.
    pub proposed: Option<Proposed>,
    /// Why no proposal was made.
    pub error: Option<String>,
    /// Time the engine took for this case, in milliseconds.
    pub latency_ms: u64,
}

impl CaseOutcome {
    /// Whether the proposed category is the expected one.
    pub fn category_correct(&self) -> bool {
        self.proposed.as_ref().is_some_and(|p| p.category == self.expected.category)
    }

    /// Whether the proposed priority is the expected one.
    pub fn priority_correct(&self) -> bool {
        self.proposed.as_ref().is_some_and(|p| p.priority == self.expected.priority)
    }

    /// Whether a scored field differs from its label (or the case failed).
    pub fn differs(&self) -> bool {
        (self.category_scored && !self.category_correct()) || !self.priority_correct()
    }
}

/// One ticket for the engine, exactly as it is to see it, and what it is scored against.
#[derive(Debug, Clone)]
pub struct Input {
    /// 1-based position (a dataset's line).
    pub line: usize,
    /// Its name in reports.
    pub id: String,
    /// The labels.
    pub expected: Expected,
    /// Whether `expected.category` is scored.
    pub category_scored: bool,
    /// Everything the engine sees.
    pub gathered: Gathered,
}

/// Runs `cases` through `engine` as tickets of a helpdesk with `categories`, at most
/// `concurrency` at a time, calling `progress` as each finishes. Outcomes come back in the
/// dataset's order.
pub async fn run_cases(
    engine: &Arc<Engine>,
    cases: &[Case],
    categories: &[Category],
    policy: &Policy,
    concurrency: usize,
    progress: impl FnMut(&CaseOutcome),
) -> Vec<CaseOutcome> {
    let inputs = cases
        .iter()
        .map(|case| {
            let (ticket, notes) = case.ticket();
            Input {
                line: case.line,
                id: case.name(),
                expected: case.expected.clone(),
                category_scored: true,
                gathered: Gathered { ticket, customer: None, notes, categories: categories.to_vec() },
            }
        })
        .collect();
    run_inputs(engine, inputs, policy, concurrency, progress).await
}

/// Runs `inputs` through `engine` (the worker's context, prompt, LLM and validation) at most
/// `concurrency` at a time, calling `progress` as each finishes. Outcomes come back in the
/// order of `line`.
pub async fn run_inputs(
    engine: &Arc<Engine>,
    inputs: Vec<Input>,
    policy: &Policy,
    concurrency: usize,
    mut progress: impl FnMut(&CaseOutcome),
) -> Vec<CaseOutcome> {
    let mut outcomes: Vec<CaseOutcome> = futures::stream::iter(inputs)
        .map(|input| async move {
            let Input { line, id, expected, category_scored, gathered } = input;
            let started = Instant::now();
            let result = engine.decide_shared(Arc::new(gathered), policy, &Route::Configured).await;
            let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            let (proposed, error) = match result {
                Ok(t) => (Some(Proposed::of(&t)), None),
                Err(e) => (None, Some(e.to_string())),
            };
            CaseOutcome { line, id, expected, category_scored, proposed, error, latency_ms }
        })
        .buffer_unordered(concurrency.max(1))
        .inspect(|outcome| progress(outcome))
        .collect()
        .await;
    outcomes.sort_by_key(|o| o.line);
    outcomes
}

/// Category figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CategoryFigures {
    /// Agreement over every case with a category to score (a failed case counts as wrong).
    pub accuracy: Accuracy,
    /// Cases not scored on category (tickets closed without one).
    pub unscored: usize,
    /// Mean F1 over the categories seen (expected or proposed, "(none)" included).
    pub macro_f1: f64,
    /// Precision, recall and F1 of each category.
    pub per_category: Vec<LabelScore>,
    /// Expected × proposed over the decided cases.
    pub confusion: Confusion,
}

/// Priority figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PriorityFigures {
    /// Agreement over every case (a failed case counts as wrong).
    pub accuracy: Accuracy,
    /// Expected × proposed over the decided cases.
    pub confusion: Confusion,
}

/// Tag figures over the cases labelled with tags.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TagFigures {
    /// Cases labelled with tags.
    pub cases: usize,
    /// Expected tags in all.
    pub expected: usize,
    /// Expected tags that were proposed.
    pub found: usize,
    /// `found / expected`.
    pub recall: f64,
}

/// Tokens summed over the cases.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TokenTotals {
    /// Prompt tokens.
    pub prompt: u64,
    /// Completion tokens.
    pub completion: u64,
    /// Prompt tokens served from the provider's cache.
    pub cached: u64,
}

/// The figures of one evaluation run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    /// The dataset file.
    pub dataset: String,
    /// The connection whose categories and policy were used.
    pub connection: String,
    /// `llm <model>`, or `rules` when no LLM is configured.
    pub decided_by: String,
    /// Cases run.
    pub cases: usize,
    /// Cases with a proposal.
    pub decided: usize,
    /// Cases without one (their errors are in `results`).
    pub failures: usize,
    /// Category agreement.
    pub category: CategoryFigures,
    /// Priority agreement.
    pub priority: PriorityFigures,
    /// Language agreement over the cases labelled with one (primary subtags compared).
    pub language: Option<Accuracy>,
    /// Tag recall over the cases labelled with tags.
    pub tags: Option<TagFigures>,
    /// Tokens the server counted.
    pub tokens: TokenTotals,
    /// Estimated cost in US dollars, when the model's price is configured.
    pub cost_usd: Option<f64>,
    /// LLM calls.
    pub llm_calls: u64,
    /// Cases the rules decided because the LLM failed.
    pub rules_fallbacks: usize,
    /// Per-case time through the engine.
    pub latency_ms: Percentiles,
    /// Every case, in the dataset's order.
    pub results: Vec<CaseOutcome>,
}

impl EvalReport {
    /// Sums `results` up; `model` is the configured LLM, if any.
    pub fn new(dataset: String, connection: String, model: Option<&str>, results: Vec<CaseOutcome>) -> Self {
        let decided_by = model.map_or_else(|| "rules".to_owned(), |m| format!("llm {m}"));
        let cases = results.len();
        let decided: Vec<(&CaseOutcome, &Proposed)> =
            results.iter().filter_map(|o| o.proposed.as_ref().map(|p| (o, p))).collect();
        let label = |c: &Option<String>| c.clone().unwrap_or_else(|| NO_CATEGORY.to_owned());
        let confusion = Confusion::of(
            decided
                .iter()
                .filter(|(o, _)| o.category_scored)
                .map(|(o, p)| (label(&o.expected.category), label(&p.category))),
        );
        let scored = results.iter().filter(|o| o.category_scored);
        let category = CategoryFigures {
            accuracy: Accuracy::new(
                scored.clone().filter(|o| o.category_correct()).count(),
                scored.clone().count(),
            ),
            unscored: results.iter().filter(|o| !o.category_scored).count(),
            macro_f1: confusion.macro_f1(),
            per_category: confusion.scores(),
            confusion,
        };
        let priority = PriorityFigures {
            accuracy: Accuracy::new(results.iter().filter(|o| o.priority_correct()).count(), cases),
            confusion: Confusion::ordered(
                &PriorityLevel::ALL.map(PriorityLevel::as_str),
                decided.iter().map(|(o, p)| (o.expected.priority.as_str(), p.priority.as_str())),
            ),
        };
        let primary = |code: &str| code.split('-').next().unwrap_or_default().to_ascii_lowercase();
        let labelled: Vec<&CaseOutcome> = results.iter().filter(|o| o.expected.language.is_some()).collect();
        let language = (!labelled.is_empty()).then(|| {
            let correct = labelled
                .iter()
                .filter(|o| {
                    let expected = o.expected.language.as_deref().map(primary);
                    o.proposed.as_ref().is_some_and(|p| Some(primary(&p.language)) == expected)
                })
                .count();
            Accuracy::new(correct, labelled.len())
        });
        let tags = tag_figures(&results);
        let mut tokens = TokenTotals::default();
        let (mut cost, mut priced, mut llm_calls) = (0.0, false, 0u64);
        for (_, p) in &decided {
            tokens.prompt += u64::from(p.prompt_tokens);
            tokens.completion += u64::from(p.completion_tokens);
            tokens.cached += u64::from(p.cached_tokens);
            llm_calls += u64::from(p.llm_calls);
            if let Some(c) = p.cost_usd {
                cost += c;
                priced = true;
            }
        }
        let latencies: Vec<u64> = results.iter().map(|o| o.latency_ms).collect();
        Self {
            dataset,
            connection,
            decided_by,
            cases,
            decided: decided.len(),
            failures: cases - decided.len(),
            category,
            priority,
            language,
            tags,
            tokens,
            cost_usd: priced.then_some(cost),
            llm_calls,
            rules_fallbacks: match model {
                Some(_) => decided.iter().filter(|(_, p)| matches!(p.origin, Origin::Rules { .. })).count(),
                None => 0,
            },
            latency_ms: Percentiles::of(&latencies),
            results,
        }
    }
}

fn tag_figures(results: &[CaseOutcome]) -> Option<TagFigures> {
    let labelled: Vec<&CaseOutcome> = results.iter().filter(|o| o.expected.tags.is_some()).collect();
    if labelled.is_empty() {
        return None;
    }
    let (mut expected, mut found) = (0, 0);
    for o in &labelled {
        let want = o.expected.tags.as_deref().unwrap_or_default();
        expected += want.len();
        if let Some(p) = &o.proposed {
            found += want.iter().filter(|t| p.tags.iter().any(|q| q.eq_ignore_ascii_case(t))).count();
        }
    }
    let recall = if expected == 0 { 0.0 } else { found as f64 / expected as f64 };
    Some(TagFigures { cases: labelled.len(), expected, found, recall })
}
