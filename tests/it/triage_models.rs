//! Two models: the configured (cheap) model first, the stronger one (`[llm.escalation]`) only when
//! the cheap one is unsure or its answer stays invalid; each against its own OpenAI double. Also
//! the budget's fallback model and the rules route.

use std::sync::Arc;

use crate::helpers::*;
use deskpilot::triage::{
    Engine, EngineSettings, Escalation, Policy, Route,
    decision::Origin,
    llm::{OpenAiCompatible, Price},
    prompt::Prompts,
    rules::Rules,
};
use serde_json::{Value, json};
use wiremock::{MockServer, ResponseTemplate};

const STRONG: &str = "gpt-4o";

/// A valid answer with this category and confidence.
fn answer(category: &str, confidence: f64) -> String {
    let mut d = valid_decision(Some(category));
    d["confidence"] = json!(confidence);
    d.to_string()
}

/// 200 with `content` and this usage, shaped as OpenAI documents a chat completion.
fn answered(content: &str, prompt: u32, completion: u32) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(completion_full(
        Some(content),
        "stop",
        Tokens { prompt, completion, cached: 0 },
    ))
}

fn prices() -> std::collections::BTreeMap<String, Price> {
    let price =
        |input, output| Price { input_per_mtok: input, cached_input_per_mtok: None, output_per_mtok: output };
    [(MODEL.to_owned(), price(0.15, 0.60)), (STRONG.to_owned(), price(2.50, 10.00))].into()
}

/// The real client for `model` at `server`.
fn client(server: &MockServer, model: &str) -> Arc<OpenAiCompatible> {
    let mut settings = llm_settings(server);
    settings.model = model.to_owned();
    Arc::new(OpenAiCompatible::new(settings).expect("client builds"))
}

/// An engine asking `cheap`'s double first and `strong`'s below `below` confidence.
fn two_models(cheap: &MockServer, strong: &MockServer, below: f32) -> Engine {
    Engine::new(
        Some(client(cheap, MODEL)),
        Prompts::embedded().unwrap(),
        Rules::embedded().unwrap(),
        MODEL,
        EngineSettings { prices: prices(), ..EngineSettings::default() },
    )
    .with_escalation(Escalation { model: client(strong, STRONG), below_confidence: below })
}

#[tokio::test]
async fn an_unsure_cheap_answer_goes_to_the_stronger_model_with_both_costs_counted() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let cheap = mock_llm(answered(&answer("cat-billing", 0.55), 1000, 100), Some(1)).await;
    let strong = mock_llm(answered(&answer("cat-refunds", 0.93), 1000, 120), Some(1)).await;

    let t = two_models(&cheap, &strong, 0.7).triage(&hd, "1001", &Policy::new("demo")).await.unwrap();
    assert_eq!(t.decision.category_id.as_deref(), Some("cat-refunds"), "the stronger model's answer");
    assert_eq!(t.decision.origin, Origin::Llm { model: STRONG.into() });
    let r = &t.report;
    assert_eq!(r.escalated.as_deref(), Some("confidence 0.55 is below 0.70"));
    let models: Vec<(&str, u32)> = r.models.iter().map(|m| (m.model.as_str(), m.calls)).collect();
    assert_eq!(models, [(MODEL, 1), (STRONG, 1)]);
    let cheap_cost = (1000.0 * 0.15 + 100.0 * 0.60) / 1e6;
    let strong_cost = (1000.0 * 2.50 + 120.0 * 10.00) / 1e6;
    assert!((r.models[0].cost_usd.unwrap() - cheap_cost).abs() < 1e-12);
    assert!((r.models[1].cost_usd.unwrap() - strong_cost).abs() < 1e-12);
    assert!((r.cost_usd.unwrap() - (cheap_cost + strong_cost)).abs() < 1e-12);
    assert_eq!(r.llm_calls, 2);

    // The stronger model got the very conversation the cheap one got.
    let (asked_cheap, asked_strong) = (chat_requests(&cheap).await, chat_requests(&strong).await);
    assert_eq!(messages(&asked_cheap[0]), messages(&asked_strong[0]));
    assert_eq!(asked_cheap[0]["model"], json!(MODEL));
    assert_eq!(asked_strong[0]["model"], json!(STRONG));
}

#[tokio::test]
async fn a_confident_cheap_answer_never_reaches_the_stronger_model() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let cheap = mock_llm(answered(&answer("cat-billing", 0.86), 800, 90), Some(1)).await;
    let strong = mock_llm(answered(&answer("cat-refunds", 0.93), 800, 90), Some(0)).await;

    let t = two_models(&cheap, &strong, 0.7).triage(&hd, "1001", &Policy::new("demo")).await.unwrap();
    assert_eq!(t.decision.origin, Origin::Llm { model: MODEL.into() });
    assert_eq!(t.report.escalated, None);
    assert_eq!(t.report.models.len(), 1);
}

#[tokio::test]
async fn an_answer_still_invalid_after_its_repair_goes_to_the_stronger_model() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    // An invented category, twice: the first answer and its repair.
    let cheap = mock_llm(answered(&answer("cat-ceo", 0.9), 900, 80), Some(2)).await;
    let strong = mock_llm(answered(&answer("cat-refunds", 0.8), 900, 80), Some(1)).await;

    let t = two_models(&cheap, &strong, 0.7).triage(&hd, "1001", &Policy::new("demo")).await.unwrap();
    assert_eq!(t.decision.origin, Origin::Llm { model: STRONG.into() });
    let why = t.report.escalated.as_deref().unwrap();
    assert!(why.starts_with("the answer failed validation") && why.contains("cat-ceo"), "{why}");
    assert_eq!(t.report.models[0].calls, 2, "answer and repair by the cheap model");
}

#[tokio::test]
async fn when_the_stronger_model_fails_the_unsure_but_valid_answer_stands() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let cheap = mock_llm(answered(&answer("cat-billing", 0.4), 900, 80), Some(1)).await;
    let refused =
        openai_error(401, "Incorrect API key provided", "invalid_request_error", Some("invalid_api_key"));
    let strong = mock_llm(refused, Some(1)).await;

    let t = two_models(&cheap, &strong, 0.7).triage(&hd, "1001", &Policy::new("demo")).await.unwrap();
    assert_eq!(t.decision.origin, Origin::Llm { model: MODEL.into() });
    assert_eq!(t.decision.category_id.as_deref(), Some("cat-billing"));
    assert!(t.report.escalated.is_some());
}

#[tokio::test]
async fn the_fallback_route_asks_the_fallback_model_and_the_rules_route_asks_none() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let configured = mock_llm(answered(&answer("cat-billing", 0.5), 900, 80), Some(0)).await;
    let strong = mock_llm(answered(&answer("cat-refunds", 0.9), 900, 80), Some(0)).await;
    let fallback_model = "gpt-4.1-nano";
    let fallback = mock_llm(answered(&answer("cat-billing", 0.5), 900, 80), Some(1)).await;
    let engine =
        Arc::new(two_models(&configured, &strong, 0.7).with_fallback(client(&fallback, fallback_model)));
    let policy = Policy::new("demo");
    let gathered = Arc::new(engine.gather(&hd, "1001").await.unwrap());

    let t = engine.decide_shared(gathered.clone(), &policy, &Route::Fallback).await.unwrap();
    assert_eq!(t.decision.origin, Origin::Llm { model: fallback_model.into() });
    assert_eq!(t.report.escalated, None, "a spent budget is never escalated");

    let why = "the daily LLM budget of connection `demo` is spent".to_owned();
    let t = engine.decide_shared(gathered, &policy, &Route::Rules(why.clone())).await.unwrap();
    assert!(matches!(t.decision.origin, Origin::Rules { .. }));
    assert_eq!(t.decision.draft_reply, None, "the draft waits");
    assert_eq!(t.report.fallback, Some(why));
    assert_eq!(t.report.llm_calls, 0);
}

#[tokio::test]
async fn triage_json_names_the_answering_model_and_each_model_s_cost() {
    let sb = start_sandbox().await;
    let cheap = mock_llm(answered(&answer("cat-billing", 0.6), 1000, 100), Some(1)).await;
    let strong = mock_llm(answered(&answer("cat-refunds", 0.9), 1000, 100), Some(1)).await;
    let mut config = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    let toml = format!(
        "[llm]\nbase_url = \"{}/v1\"\nmodel = \"{MODEL}\"\n\n[llm.escalation]\nmodel = \"{STRONG}\"\n\
         below_confidence = 0.75\nbase_url = \"{}/v1\"\napi_key_env = \"STRONG_KEY\"\n\n\
         [[connections]]\nid = \"demo\"\nbackend = \"unified\"\nbase_url = \"{}\"\napi_key = \"{KEY}\"\n",
        cheap.uri(),
        strong.uri(),
        sb.base_url
    );
    std::io::Write::write_all(&mut config, toml.as_bytes()).unwrap();
    let env = [("OPENAI_API_KEY", "sk-cheap".to_owned()), ("STRONG_KEY", "sk-strong".to_owned())];
    let out = run_with_config(config.path(), "triage", &["--ticket", "1001", "--json"], &env).await;
    let v = json_of(&out);
    assert_eq!(v["decision"]["origin"], json!({"kind": "llm", "model": STRONG}));
    let models: Vec<(Value, Value)> = v["report"]["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["model"].clone(), m["calls"].clone()))
        .collect();
    assert_eq!(models, [(json!(MODEL), json!(1)), (json!(STRONG), json!(1))]);
    // Prices from the embedded defaults: gpt-4o-mini 0.15/0.60, gpt-4o 2.50/10.00 per million.
    let cost = v["report"]["cost_usd"].as_f64().unwrap();
    assert!(
        (cost - (1000.0 * 0.15 + 100.0 * 0.60 + 1000.0 * 2.50 + 100.0 * 10.0) / 1e6).abs() < 1e-12,
        "{cost}"
    );
    assert_eq!(v["report"]["escalated"], json!("confidence 0.60 is below 0.75"));
    // Each double was asked with its own key.
    assert_eq!(auth(&cheap).await, "Bearer sk-cheap");
    assert_eq!(auth(&strong).await, "Bearer sk-strong");
}

/// The `Authorization` header of the first request `server` received.
async fn auth(server: &MockServer) -> String {
    let requests = server.received_requests().await.unwrap();
    requests[0].headers["authorization"].to_str().unwrap().to_owned()
}
