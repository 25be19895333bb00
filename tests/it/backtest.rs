//! `deskpilot backtest` end to end on the sandbox's closed tickets: with the fallback rules (the
//! report's figures, pinned), with an OpenAI-compatible double (wiremock) whose request log shows
//! the engine saw each ticket as it was opened and nothing written after, the closed-since and
//! limit filters, and a ticket closed without a category. The sandbox is never written to.

use std::{path::Path, process::Output};

use crate::helpers::*;
use deskpilot::sandbox::{self, RunningSandbox, SandboxOptions};
use serde_json::{Value, json};
use wiremock::{Request, Respond, ResponseTemplate};

/// The closed tickets of the sandbox's demo helpdesk, oldest update first, each with a category.
const CLOSED: [&str; 14] = [
    "1001", "1003", "1004", "1002", "1005", "1007", "1009", "1011", "1012", "1013", "1010", "1019", "1026",
    "1030",
];
/// Of them, closed at or after 2026-10-01.
const CLOSED_SINCE_OCTOBER: [&str; 5] = ["1013", "1010", "1019", "1026", "1030"];
/// Closed tickets whose category the rules get right.
const RULES_CATEGORY_CORRECT: u64 = 13;
/// Closed tickets whose priority the rules get right.
const RULES_PRIORITY_CORRECT: u64 = 11;

/// `deskpilot --config <config> backtest <args>`.
async fn backtest(config: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    run_with_config(config, "backtest", args, env).await
}

fn ids(r: &Value) -> Vec<String> {
    r["results"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn the_rules_on_the_closed_tickets_report_their_figures_and_write_nothing() {
    let sb = start_sandbox().await;
    let config = sandbox_config_file(&sb);
    let before = sb.snapshot("demo").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("report.json");
    let args = ["--connection", "demo", "--json", "--out", out_file.to_str().unwrap()];
    let r = json_of(&backtest(config.path(), &args, &[]).await);

    assert_eq!(r["kind"], "backtest");
    assert_eq!((r["closed_tickets"].as_u64(), r["closed_since"].clone()), (Some(14), Value::Null));
    assert_eq!(r["closed_without_category"], 0);
    assert_eq!((r["connection"].as_str(), r["decided_by"].as_str()), (Some("demo"), Some("rules")));
    assert_eq!(ids(&r), CLOSED);
    assert_eq!((r["decided"].as_u64(), r["failures"].as_u64()), (Some(14), Some(0)));
    let category = &r["category"]["accuracy"];
    assert_eq!(
        (category["correct"].as_u64(), category["total"].as_u64()),
        (Some(RULES_CATEGORY_CORRECT), Some(14))
    );
    assert_eq!(r["priority"]["accuracy"]["correct"].as_u64(), Some(RULES_PRIORITY_CORRECT));
    // Scored against what people left at close: 1001 was closed as billing, HIGH.
    let first = &r["results"][0];
    assert_eq!(first["expected"], json!({"category": "cat-billing", "priority": "HIGH"}));
    assert_eq!(first["category_scored"], true);
    assert_eq!(r["tokens"], json!({"prompt": 0, "completion": 0, "cached": 0}), "the rules call no LLM");
    let file: Value = serde_json::from_slice(&std::fs::read(&out_file).unwrap()).unwrap();
    assert_eq!(file, r, "--out holds the report printed");

    // The same figures as text, under a header naming the backtest.
    let text_out = backtest(config.path(), &["--connection", "demo"], &[]).await;
    assert!(text_out.status.success());
    let text = String::from_utf8_lossy(&text_out.stdout);
    assert!(
        text.starts_with(
            "backtest of 14 closed tickets (every closed ticket) on connection demo: decided by rules\n"
        ),
        "{text}"
    );
    assert!(text.contains("category   accuracy 92.9% (13/14)"), "{text}");
    assert!(text.contains("priority   accuracy 78.6% (11/14)"), "{text}");
    assert!(
        text.contains("\n  1001: expected cat-billing HIGH, proposed cat-refunds NORMAL by rule `refund`\n"),
        "{text}"
    );

    let after = sb.snapshot("demo").await.unwrap();
    assert_eq!(before.tickets, after.tickets, "a backtest writes nothing");
    assert_eq!(before.notes, after.notes);
}

#[tokio::test]
async fn closed_since_and_limit_choose_the_tickets() {
    let sb = start_sandbox().await;
    let config = sandbox_config_file(&sb);
    let r = json_of(&backtest(config.path(), &["--closed-since", "2026-10-01", "--json"], &[]).await);
    assert_eq!(r["closed_since"], "2026-10-01T00:00:00Z");
    assert_eq!(ids(&r), CLOSED_SINCE_OCTOBER);
    let r = json_of(
        &backtest(config.path(), &["--closed-since", "2026-10-01T00:00:00Z", "--limit", "2", "--json"], &[])
            .await,
    );
    assert_eq!(ids(&r), CLOSED_SINCE_OCTOBER[..2]);
    let out = backtest(config.path(), &["--closed-since", "2026-10-01", "--limit", "2"], &[]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("backtest of 2 closed tickets since 2026-10-01T00:00:00Z on connection demo"),
        "{text}"
    );

    let out = backtest(config.path(), &["--closed-since", "2030-01-01"], &[]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("connection `demo` has no ticket closed since 2030-01-01T00:00:00Z"), "{err}");
}

/// Answers every ticket as billing, HIGH.
struct Billing;

impl Respond for Billing {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let mut d = valid_decision(Some("cat-billing"));
        d["priority"] = json!("HIGH");
        ok(&d.to_string())
    }
}

#[tokio::test]
async fn the_llm_sees_each_ticket_as_it_was_opened_and_nothing_written_after() {
    let sb = start_sandbox().await;
    let config = sandbox_config_file(&sb);
    let llm = mock_llm(Billing, Some(14)).await;
    let before = sb.snapshot("demo").await.unwrap();
    let env = [
        ("DESKPILOT__LLM__BASE_URL", format!("{}/v1", llm.uri())),
        ("DESKPILOT__LLM__MODEL", MODEL.to_owned()),
    ];
    let r = json_of(&backtest(config.path(), &["--json", "--concurrency", "3"], &env).await);
    assert_eq!(r["decided_by"], format!("llm {MODEL}"));
    assert_eq!((r["closed_tickets"].as_u64(), r["failures"].as_u64()), (Some(14), Some(0)));
    // Billing, HIGH for all: right for the 4 billing tickets and the 2 HIGH ones.
    assert_eq!(r["category"]["accuracy"]["correct"], 4);
    assert_eq!(r["priority"]["accuracy"]["correct"], 2);
    assert_eq!(r["llm_calls"], 14);

    let prompts: Vec<String> = chat_requests(&llm)
        .await
        .iter()
        .map(|body| messages(body).into_iter().map(|(_, content)| content).collect::<Vec<_>>().join("\n"))
        .collect();
    assert_eq!(prompts.len(), 14);
    let prompt_of = |id: &str| {
        prompts
            .iter()
            .find(|p| p.contains(&format!("Ticket: {id}\n")))
            .unwrap_or_else(|| panic!("no prompt for {id}"))
    };
    // Ticket 1001: its first message is there; the agent's reply two hours later, the customer's
    // later note, and the tags and priority people set are not.
    let p = prompt_of("1001");
    assert!(p.contains("I just got two emails saying my card was charged $49.00"), "{p}");
    assert!(
        !p.contains("authorization retry from our payment processor"),
        "an agent's later reply leaked: {p}"
    );
    assert!(
        !p.contains("Checked this morning and the second one is gone"),
        "a later customer note leaked: {p}"
    );
    assert!(!p.contains("double-charge"), "the tags set since leaked: {p}");
    assert!(p.contains("Current priority: NONE"), "{p}");
    assert!(!p.contains("Conversation, oldest first"), "{p}");
    // No note of any closed ticket reaches the model.
    for note in before.notes.values().filter(|n| n.ticket_id.as_deref().is_some_and(|t| CLOSED.contains(&t)))
    {
        let text = note.description.as_deref().unwrap_or_default();
        let head: String =
            text.lines().find(|l| l.trim().len() > 20).unwrap_or_default().chars().take(60).collect();
        if head.is_empty() {
            continue;
        }
        assert!(
            prompts.iter().all(|p| !p.contains(&head)),
            "note {:?} of ticket {:?} reached the model: {head}",
            note.id,
            note.ticket_id
        );
    }

    let after = sb.snapshot("demo").await.unwrap();
    assert_eq!(before.tickets, after.tickets, "a backtest writes nothing");
    assert_eq!(before.notes, after.notes);
}

/// The demo data with ticket 1005 (a feature request, LOW) closed without a category, and ticket
/// 1002 without a description (helpdesks whose tickets start with a note).
async fn edited_sandbox(dir: &Path) -> RunningSandbox {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sandbox/demo.json");
    let mut data: Value = serde_json::from_str(&std::fs::read_to_string(demo).unwrap()).unwrap();
    for t in data["tickets"].as_array_mut().unwrap() {
        match t["id"].as_str() {
            Some("1005") => t["category_id"] = Value::Null,
            Some("1002") => t["description"] = json!(""),
            _ => {}
        }
    }
    std::fs::write(dir.join("demo.json"), data.to_string()).unwrap();
    sandbox::spawn(SandboxOptions {
        data_dir: Some(dir.to_owned()),
        api_key: KEY.into(),
        webhook_url: None,
        webhook_secret: None,
        state: None,
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_ticket_closed_without_a_category_is_scored_on_priority_only_and_one_without_a_description_by_its_first_note()
 {
    let dir = tempfile::tempdir().unwrap();
    let sb = edited_sandbox(dir.path()).await;
    let config = sandbox_config_file(&sb);
    let llm = mock_llm(Billing, None).await;
    let env = [
        ("DESKPILOT__LLM__BASE_URL", format!("{}/v1", llm.uri())),
        ("DESKPILOT__LLM__MODEL", MODEL.to_owned()),
    ];

    let r = json_of(&backtest(config.path(), &["--json"], &env).await);
    assert_eq!((r["closed_tickets"].as_u64(), r["closed_without_category"].as_u64()), (Some(14), Some(1)));
    assert_eq!(r["category"]["unscored"], 1);
    // Scored on the 13 with a category; the one without is not in the confusion table.
    assert_eq!(r["category"]["accuracy"], json!({"correct": 4, "total": 13, "accuracy": 4.0 / 13.0}));
    let counts: Vec<Vec<u64>> = serde_json::from_value(r["category"]["confusion"]["counts"].clone()).unwrap();
    assert_eq!(counts.iter().flatten().sum::<u64>(), 13);
    assert_eq!(r["priority"]["accuracy"]["total"], 14);
    let case = r["results"].as_array().unwrap().iter().find(|c| c["id"] == "1005").unwrap();
    assert_eq!(
        (case["category_scored"].clone(), case["expected"]["category"].clone()),
        (json!(false), Value::Null)
    );

    // 1002 opened with no description: the model gets the customer's first note (not the
    // agent's question before it, nor the customer's later note).
    let requests = chat_requests(&llm).await;
    let p = requests
        .iter()
        .map(|body| messages(body).into_iter().map(|(_, c)| c).collect::<Vec<_>>().join("\n"))
        .find(|p| p.contains("Ticket: 1002\n"))
        .expect("a prompt for 1002");
    assert!(p.contains("Chrome 128 on Windows 11."), "{p}");
    assert!(!p.contains("Which browser and version are you using?"), "{p}");
    assert!(!p.contains("PNG worked, printed fine."), "{p}");

    let out = backtest(config.path(), &[], &env).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 closed without a category: scored on priority only"), "{text}");
    assert!(
        text.contains("1005: expected (no category at close) LOW, proposed cat-billing HIGH by the LLM"),
        "{text}"
    );
}

/// The listing asks the helpdesk for tickets updated since the bound (its `updated_gte`), waits
/// out a 429 through the connector's own retry, and keeps only the tickets closed in the window.
#[tokio::test]
async fn the_listing_filters_by_update_time_at_the_helpdesk_and_waits_out_a_429() {
    use deskpilot::{
        ticketing::unified::UnifiedClient,
        triage::eval::backtest::{Selection, closed_tickets},
    };
    use wiremock::{
        Mock, MockServer,
        matchers::{method, path, query_param},
    };

    let server = MockServer::start().await;
    let list = "/ticketing/conn_1/ticket";
    Mock::given(method("GET"))
        .and(path(list))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let ticket = |id: &str, status: &str, closed_at: Option<&str>| {
        json!({"id": id, "subject": "s", "status": status, "closed_at": closed_at,
               "created_at": "2026-10-20T09:00:00Z", "updated_at": "2026-11-03T09:00:00Z"})
    };
    let page = json!([
        ticket("in-window", "CLOSED", Some("2026-11-02T10:00:00Z")),
        ticket("still-open", "ACTIVE", None),
        // Updated in the window (a late tag), closed before it.
        ticket("closed-before", "CLOSED", Some("2026-10-25T10:00:00Z")),
        // No closing time: its last update stands in.
        ticket("no-closed-at", "CLOSED", None),
    ]);
    Mock::given(method("GET"))
        .and(path(list))
        .and(query_param("updated_gte", "2026-11-01T00:00:00Z"))
        .and(query_param("sort", "updated_at"))
        .and(query_param("order", "asc"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page))
        .mount(&server)
        .await;
    let client = UnifiedClient::new(&server.uri(), "conn_1", "k3y".into(), &fast_settings()).unwrap();
    let selection =
        Selection { closed_since: Some(time::macros::datetime!(2026-11-01 00:00 UTC)), limit: None };
    let tickets = closed_tickets(&client, selection).await.unwrap();
    let ids: Vec<&str> = tickets.iter().filter_map(|t| t.id.as_deref()).collect();
    assert_eq!(ids, ["in-window", "no-closed-at"]);
    let asked = server.received_requests().await.unwrap().iter().filter(|r| r.url.path() == list).count();
    assert_eq!(asked, 2, "the 429, then the page");
}
