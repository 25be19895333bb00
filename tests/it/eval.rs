//! `deskpilot eval` end to end: the fallback rules on the shipped labelled set (its figures, and
//! a floor under them), an OpenAI-compatible double (wiremock) on a small hand-made set with a
//! failing case, and a dataset category the helpdesk lacks. The sandbox is never written to.

use std::{path::Path, process::Output, sync::Arc};

use crate::helpers::*;
use deskpilot::{
    ticketing::TicketReader,
    triage::{
        Engine, EngineSettings, Policy,
        eval::{EvalReport, dataset, run_cases},
        prompt::Prompts,
        rules::Rules,
    },
};
use serde_json::{Value, json};
use wiremock::{Request, Respond, ResponseTemplate};

/// The shipped labelled set, built from the sandbox's demo helpdesk.
const SHIPPED: &str = "data/eval/demo.jsonl";
/// Tickets of the demo helpdesk, each a case of the shipped set.
const SHIPPED_CASES: u64 = 89;
/// Cases whose category the rules get right (README, "Offline evaluation").
const RULES_CATEGORY_CORRECT: u64 = 87;
/// Cases whose priority the rules get right.
const RULES_PRIORITY_CORRECT: u64 = 69;

/// `deskpilot --config <config> eval <args>`.
async fn eval(config: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    run_with_config(config, "eval", args, env).await
}

#[tokio::test]
async fn the_rules_on_the_shipped_set_report_their_figures_and_write_nothing() {
    let sb = start_sandbox().await;
    let config = sandbox_config_file(&sb);
    let before = sb.snapshot("demo").await.unwrap();
    let out = eval(config.path(), &["--dataset", SHIPPED, "--connection", "demo", "--json"], &[]).await;
    let r = json_of(&out);

    assert_eq!(r["dataset"], SHIPPED);
    assert_eq!(r["connection"], "demo");
    assert_eq!(r["decided_by"], "rules");
    assert_eq!((r["cases"].as_u64(), r["decided"].as_u64()), (Some(SHIPPED_CASES), Some(SHIPPED_CASES)));
    assert_eq!(r["failures"], 0);
    let category = &r["category"]["accuracy"];
    assert_eq!(category["correct"].as_u64(), Some(RULES_CATEGORY_CORRECT), "{category}");
    assert_eq!(category["total"].as_u64(), Some(SHIPPED_CASES));
    let accuracy = category["accuracy"].as_f64().unwrap();
    assert!((accuracy - RULES_CATEGORY_CORRECT as f64 / SHIPPED_CASES as f64).abs() < 1e-9);
    assert_eq!(r["priority"]["accuracy"]["correct"].as_u64(), Some(RULES_PRIORITY_CORRECT));

    // The confusion table holds every case, its diagonal the correct ones; macro-F1 is the mean
    // of the per-category F1 listed beside it.
    let counts: Vec<Vec<u64>> = serde_json::from_value(r["category"]["confusion"]["counts"].clone()).unwrap();
    assert_eq!(counts.iter().flatten().sum::<u64>(), SHIPPED_CASES);
    assert_eq!((0..counts.len()).map(|i| counts[i][i]).sum::<u64>(), RULES_CATEGORY_CORRECT);
    let f1: Vec<f64> =
        r["category"]["per_category"].as_array().unwrap().iter().map(|s| s["f1"].as_f64().unwrap()).collect();
    let mean = f1.iter().sum::<f64>() / f1.len() as f64;
    assert!((r["category"]["macro_f1"].as_f64().unwrap() - mean).abs() < 1e-9);

    assert_eq!(r["tokens"], json!({"prompt": 0, "completion": 0, "cached": 0}), "the rules call no LLM");
    assert_eq!(r["cost_usd"], Value::Null);
    assert_eq!(r["results"].as_array().unwrap().len() as u64, SHIPPED_CASES);
    assert!(r["results"].as_array().unwrap().iter().all(|c| c["proposed"]["origin"]["kind"] == "rules"));

    let after = sb.snapshot("demo").await.unwrap();
    assert_eq!(before.tickets, after.tickets, "eval writes nothing");
    assert_eq!(before.notes, after.notes);
}

/// The floor under the rules: a change that makes them worse on the shipped set fails here.
#[tokio::test]
async fn the_rules_accuracy_on_the_shipped_set_does_not_drop() {
    let sb = start_sandbox().await;
    let categories = helpdesk(&sb, "demo").list_categories().await.unwrap();
    let cases = dataset::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join(SHIPPED)).unwrap();
    let engine = Arc::new(Engine::new(
        None,
        Prompts::embedded().unwrap(),
        Rules::embedded().unwrap(),
        MODEL,
        EngineSettings::default(),
    ));
    let outcomes = run_cases(&engine, &cases, &categories, &Policy::new("demo"), 4, |_| {}).await;
    let r = EvalReport::new(SHIPPED.into(), "demo".into(), None, outcomes);
    assert_eq!(r.failures, 0);
    let misses = || {
        r.results
            .iter()
            .filter(|o| !o.category_correct())
            .map(|o| {
                format!(
                    "{}: expected {:?}, proposed {:?}",
                    o.id,
                    o.expected.category,
                    o.proposed.as_ref().map(|p| &p.category)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        r.category.accuracy.correct as u64 >= RULES_CATEGORY_CORRECT,
        "the rules' category accuracy fell to {}/{}:\n{}",
        r.category.accuracy.correct,
        r.cases,
        misses()
    );
    assert!(
        r.priority.accuracy.correct as u64 >= RULES_PRIORITY_CORRECT,
        "the rules' priority accuracy fell to {}/{}",
        r.priority.accuracy.correct,
        r.cases
    );
}

/// Answers each case by a word of its subject: the double of a model that gets some right.
struct ByWord;

impl Respond for ByWord {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body = String::from_utf8_lossy(&req.body);
        let answer = |category: &str, priority: &str| {
            let mut d = valid_decision(Some(category));
            d["priority"] = json!(priority);
            ok(&d.to_string())
        };
        if body.contains("Refund for the double charge") {
            answer("cat-refunds", "HIGH")
        } else if body.contains("Invoice address") {
            answer("cat-refunds", "LOW")
        } else if body.contains("Everything returns 503") {
            answer("cat-outage", "URGENT")
        } else {
            openai_error(
                400,
                "This model's maximum context length is exceeded.",
                "invalid_request_error",
                None,
            )
        }
    }
}

const SMALL_SET: &str = r#"{"id": "a", "subject": "Refund for the double charge", "body": "Charged twice.", "expected": {"category": "cat-refunds", "priority": "HIGH", "language": "en"}}
{"id": "b", "subject": "Invoice address", "body": "Please change the address on our invoices.", "expected": {"category": "cat-billing", "priority": "LOW", "language": "de"}}

{"id": "c", "subject": "Everything returns 503", "body": "The whole team is down.", "notes": ["Still down."], "expected": {"category": "cat-outage", "priority": "URGENT"}}
{"id": "d", "subject": "The model chokes on this one", "body": "x", "expected": {"category": "cat-bug", "priority": "NORMAL"}}
"#;

#[tokio::test]
async fn an_openai_compatible_model_is_measured_and_a_failing_case_is_counted() {
    let sb = start_sandbox().await;
    let config = sandbox_config_file(&sb);
    let llm = mock_llm(ByWord, None).await;
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("small.jsonl");
    std::fs::write(&set, SMALL_SET).unwrap();
    let out_file = dir.path().join("report.json");
    let before = sb.snapshot("demo").await.unwrap();
    let env = [
        ("DESKPILOT__LLM__BASE_URL", format!("{}/v1", llm.uri())),
        ("DESKPILOT__LLM__MODEL", MODEL.to_owned()),
    ];
    let args =
        ["--dataset", set.to_str().unwrap(), "--out", out_file.to_str().unwrap(), "--concurrency", "2"];
    let out = eval(config.path(), &args, &env).await;
    assert!(
        out.status.success(),
        "a failing case does not fail the run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&std::fs::read(&out_file).unwrap()).unwrap();

    assert_eq!(r["decided_by"], format!("llm {MODEL}"));
    assert_eq!(
        (r["cases"].as_u64(), r["decided"].as_u64(), r["failures"].as_u64()),
        (Some(4), Some(3), Some(1))
    );
    // a and c right, b wrong (refunds for billing), d failed: 2 of 4.
    assert_eq!(r["category"]["accuracy"], json!({"correct": 2, "total": 4, "accuracy": 0.5}));
    assert_eq!(r["priority"]["accuracy"], json!({"correct": 3, "total": 4, "accuracy": 0.75}));
    assert_eq!(
        r["category"]["confusion"],
        json!({"labels": ["cat-billing", "cat-outage", "cat-refunds"],
               "counts": [[0, 0, 1], [0, 1, 0], [0, 0, 1]]})
    );
    // billing: never proposed, missed once → 0; outage 1; refunds: P 1/2, R 1/1 → 2/3.
    let macro_f1 = r["category"]["macro_f1"].as_f64().unwrap();
    assert!((macro_f1 - (0.0 + 1.0 + 2.0 / 3.0) / 3.0).abs() < 1e-9, "{macro_f1}");
    assert_eq!(
        r["priority"]["confusion"],
        json!({"labels": ["LOW", "HIGH", "URGENT"], "counts": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]})
    );
    // The double always answers "en": right for a, wrong for b (c and d are unlabelled).
    assert_eq!(r["language"], json!({"correct": 1, "total": 2, "accuracy": 0.5}));
    assert_eq!(r["tokens"], json!({"prompt": 4500, "completion": 360, "cached": 0}), "3 answers of USAGE");
    assert_eq!(r["llm_calls"], 3);
    // gpt-4o-mini: $0.15 per million prompt tokens, $0.60 per million completion tokens.
    let cost = r["cost_usd"].as_f64().unwrap();
    assert!((cost - (4500.0 * 0.15 + 360.0 * 0.60) / 1e6).abs() < 1e-12, "{cost}");
    let failed = &r["results"][3];
    assert_eq!((failed["id"].as_str(), failed["line"].as_u64()), (Some("d"), Some(5)));
    assert!(failed["error"].as_str().unwrap().contains("maximum context length"), "{failed}");
    for key in ["p50", "p90", "p99", "max"] {
        assert!(r["latency_ms"][key].is_u64(), "{key}");
    }

    // The same figures as text on stdout.
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("4 cases decided by llm {MODEL}")), "{text}");
    assert!(text.contains("category   accuracy 50.0% (2/4), macro-F1 0.556"), "{text}");
    assert!(text.contains("failures   1 of 4"), "{text}");
    assert!(
        text.contains("b (line 2): expected cat-billing LOW, proposed cat-refunds LOW by the LLM"),
        "{text}"
    );
    assert!(text.contains("d (line 5): expected cat-bug NORMAL, failed: "), "{text}");

    let after = sb.snapshot("demo").await.unwrap();
    assert_eq!(before.tickets, after.tickets, "eval writes nothing");
    assert_eq!(before.notes, after.notes);
}

#[tokio::test]
async fn a_category_the_helpdesk_lacks_is_an_error_naming_the_line() {
    let sb = start_sandbox().await;
    let config = sandbox_config_file(&sb);
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("bad.jsonl");
    let line = r#"{"subject": "s", "body": "b", "expected": {"category": "CAT", "priority": "LOW"}}"#;
    std::fs::write(
        &set,
        format!("{}\n{}\n", line.replace("CAT", "cat-bug"), line.replace("CAT", "cat-warranty")),
    )
    .unwrap();
    let out = eval(config.path(), &["--dataset", set.to_str().unwrap()], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "line 2: expected category `cat-warranty` is not an active category of connection `demo`"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("cat-account-access, cat-billing"), "lists the helpdesk's categories: {stderr}");
}
