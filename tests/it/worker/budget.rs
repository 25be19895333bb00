//! LLM budgets in the worker: a spent budget switches the next ticket to `on_budget_exhausted`
//! (the rules, the fallback model, or a hold in the broker), visible in `/metrics`; the spend is
//! read from the store, so it survives a restart and two workers share it.

use super::*;
use deskpilot::{store::DecidedBy, triage::budget::OnBudgetExhausted};

/// What one ticket costs with the mock's usage ([`USAGE`]: 1500 prompt and 120 completion tokens)
/// at gpt-4o-mini's default price (0.15 and 0.60 US dollars per million tokens).
const TICKET_USD: f64 = (1500.0 * 0.15 + 120.0 * 0.60) / 1e6;

/// One event at a time, so each ticket is checked after the one before was counted.
fn one_at_a_time(max_attempts: u32) -> WorkerSettings {
    WorkerSettings { max_in_flight: 1, max_attempts, ..settings(Duration::from_secs(30)) }
}

impl Pipeline {
    /// Starts a worker over the demo connection (shadow mode) with `config` changed by `edit`.
    async fn spawn_budgeted(&mut self, settings: WorkerSettings, edit: impl FnOnce(&mut Config)) {
        let demo = demo_connection(&self.sandbox.base_url, &shadow());
        self.start_worker_with(settings, |config| {
            config.connections = vec![demo];
            edit(config);
        })
        .await;
    }
}

/// Who decided each entry: the model's name, or `rules`.
fn deciders(entries: &[Entry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| match decided(e).expect("a decision").origin {
            Origin::Llm { model } => model,
            Origin::Rules { .. } => "rules".to_owned(),
        })
        .collect()
}

/// The value of the sample `name{labels}` in the exposition, if present.
fn sample(exposition: &str, name_and_labels: &str) -> Option<f64> {
    exposition.lines().find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The connection's daily budget lasts one and a half tickets: the first two tickets are asked of
/// the LLM (the second starts below the budget and ends above it), every later one is decided by
/// the rules without a draft, and `/metrics` shows the budget spent and the spend by model.
pub(super) async fn a_spent_budget_switches_to_the_rules_from_the_next_ticket(mut p: Pipeline) {
    let tickets = p.untriaged(4);
    p.spawn_budgeted(one_at_a_time(12), |c| {
        c.connections[0].daily_budget_usd = Some(1.5 * TICKET_USD);
    })
    .await;
    p.publish(&tickets).await;
    let entries = p.wait_done(&tickets, WAIT).await;
    p.stop_workers().await;

    assert_eq!(p.answers.asked().len(), 2, "the LLM is asked for two tickets only");
    assert_eq!(deciders(&entries), [MODEL, MODEL, "rules", "rules"]);
    let last = entries[3].decision.as_ref().unwrap();
    assert_eq!(last.decided_by, DecidedBy::Rules);
    let why = last.report["fallback"].as_str().unwrap();
    assert!(
        why.starts_with("the daily LLM budget of connection `demo` ($0.0004) is spent ($0.0006) until "),
        "{why}"
    );
    assert_eq!(decided(&entries[3]).unwrap().draft_reply, None, "the draft waits for a person");

    let metrics = deskpilot::telemetry::metrics().expect("the recorder").render();
    let labels = "{scope=\"demo\",period=\"daily\"}";
    assert_eq!(sample(&metrics, &format!("deskpilot_llm_budget_exhausted{labels}")), Some(1.0), "{metrics}");
    let spent = sample(&metrics, &format!("deskpilot_llm_budget_spent_usd{labels}")).unwrap();
    assert!((spent - 2.0 * TICKET_USD).abs() < 1e-9, "{spent}");
    let cost = format!("deskpilot_llm_cost_microdollars_total{{connection=\"demo\",model=\"{MODEL}\"}}");
    assert!(sample(&metrics, &cost).is_some_and(|c| c >= 2.0 * 297.0), "{metrics}");
}

/// `hold_until_reset`: once the overall budget is spent, events go back to the broker's delay
/// tiers and come round again without ever being tried (two tries allowed, many rounds made, no
/// dead letter, nothing recorded in the store, no LLM call).
pub(super) async fn held_events_wait_in_the_broker_without_using_their_tries(mut p: Pipeline) {
    let tickets = p.untriaged(2);
    p.spawn_budgeted(one_at_a_time(2), |c| {
        c.llm.daily_budget_usd = Some(0.5 * TICKET_USD);
        c.llm.on_budget_exhausted = OnBudgetExhausted::HoldUntilReset;
    })
    .await;
    p.publish(&tickets).await;
    p.wait_done(&tickets[..1], WAIT).await;
    // The tiers are 0.2 s and 0.5 s: three seconds are several rounds, past two tries.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(p.answers.asked(), tickets[..1], "the held ticket never reaches the LLM");
    assert!(p.bus.dead_letters().await.is_empty(), "a held event is not a failed one");
    assert_eq!(p.entry(&tickets[1]).await, None, "a held event does not touch the store");
    p.stop_workers().await;
    let counts = p.bus.counts().await;
    assert_eq!(counts.ready + counts.delayed, 1, "still in the broker: {counts:?}");
}

/// `switch_to_fallback_model` on PostgreSQL: one worker spends the budget; a worker started
/// afterwards (a restart, or another replica) reads that spend from the store and asks the
/// fallback model from its first ticket.
pub(super) async fn the_spend_is_read_from_the_store_by_a_restarted_worker(mut p: Pipeline) {
    let tickets = p.untriaged(3);
    let budgeted = |c: &mut Config| {
        c.llm.daily_budget_usd = Some(1.5 * TICKET_USD);
        c.llm.on_budget_exhausted = OnBudgetExhausted::SwitchToFallbackModel;
        c.llm.fallback_model = Some("gpt-4.1-mini".into());
    };
    p.spawn_budgeted(one_at_a_time(12), budgeted).await;
    p.publish(&tickets[..2]).await;
    let first = p.wait_done(&tickets[..2], WAIT).await;
    p.stop_workers().await;
    assert_eq!(deciders(&first), [MODEL, MODEL]);

    p.spawn_budgeted(one_at_a_time(12), budgeted).await;
    p.publish(&tickets[2..]).await;
    let later = p.wait_done(&tickets[2..], WAIT).await;
    p.stop_workers().await;
    assert_eq!(deciders(&later), ["gpt-4.1-mini"], "the new worker knows the budget is spent");
    let requests = chat_requests(&p._llm).await;
    let models: Vec<&str> = requests.iter().map(|r| r["model"].as_str().unwrap()).collect();
    assert_eq!(models, [MODEL, MODEL, "gpt-4.1-mini"]);
}
