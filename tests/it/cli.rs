//! The `deskpilot` binary end to end: help, `check`, `tickets list|get` against a sandbox started
//! in-process over a small data set, configuration errors, and `deskpilot sandbox` itself.

use std::{
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Command, Output, Stdio},
};

use deskpilot::sandbox::{self, RunningSandbox, SandboxOptions};
use serde_json::Value;
use tempfile::{NamedTempFile, TempDir};

const KEY: &str = "cli-test-key";

/// One small helpdesk: two categories, one customer, three tickets, two notes on ticket 1.
const DEMO: &str = r#"{
  "categories": [
    {"id": "cat-billing", "name": "Billing", "description": "Invoices and refunds"},
    {"id": "cat-shipping", "name": "Shipping", "description": "Where is my parcel"}
  ],
  "customers": [
    {"id": "cus-1", "name": "Ada Lovelace", "emails": [{"email": "ada@example.com"}]}
  ],
  "tickets": [
    {"id": "1", "subject": "Refund please", "customer_id": "cus-1", "status": "ACTIVE",
     "created_at": "2024-05-01T10:00:00Z", "updated_at": "2024-05-01T10:00:00Z"},
    {"id": "2", "subject": "Parcel missing", "customer_id": "cus-1", "status": "ACTIVE",
     "created_at": "2024-05-02T10:00:00Z", "updated_at": "2024-05-03T10:00:00Z"},
    {"id": "3", "subject": "Thanks!", "customer_id": "cus-1", "status": "CLOSED",
     "created_at": "2024-05-04T10:00:00Z", "updated_at": "2024-05-05T10:00:00Z"}
  ],
  "notes": [
    {"id": "n-1", "ticket_id": "1", "customer_id": "cus-1", "description": "I was charged twice.",
     "created_at": "2024-05-01T10:00:00Z", "updated_at": "2024-05-01T10:00:00Z"},
    {"id": "n-2", "ticket_id": "1", "user_id": "agent-1", "description": "Looking into it.",
     "created_at": "2024-05-01T11:00:00Z", "updated_at": "2024-05-01T11:00:00Z"}
  ]
}"#;

fn data_dir() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("demo.json"), DEMO).unwrap();
    dir
}

/// A sandbox over [`DEMO`], plus a config file pointing the `demo` connection at it.
struct Setup {
    sandbox: RunningSandbox,
    config: NamedTempFile,
    _data: TempDir,
}

async fn setup(extra: &str) -> Setup {
    let data = data_dir();
    let sandbox = sandbox::spawn(SandboxOptions {
        data_dir: Some(data.path().to_owned()),
        api_key: KEY.into(),
        ..SandboxOptions::default()
    })
    .await
    .expect("sandbox starts");
    let config = config_file(&format!(
        "[http]\nmax_retries = 0\n\n[[connections]]\nid = \"demo\"\nbackend = \"unified\"\n\
         base_url = \"{}\"\napi_key_env = \"SANDBOX_KEY\"\n{extra}",
        sandbox.base_url
    ));
    Setup { sandbox, config, _data: data }
}

fn config_file(toml: &str) -> NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(toml.as_bytes()).unwrap();
    f
}

/// The binary with a clean environment (nothing of the developer's DESKPILOT_*/OPENAI_* leaks in).
fn deskpilot(config: Option<&Path>, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_deskpilot"));
    cmd.env_clear().env("SANDBOX_KEY", KEY).env("DESKPILOT_LOG", "warn");
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    cmd.args(args);
    cmd
}

/// Runs the binary off the async runtime, which keeps serving the in-process sandbox.
async fn run(config: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = deskpilot(config, args);
    tokio::task::spawn_blocking(move || cmd.output().expect("the binary runs")).await.unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "exit {:?}\nstderr: {}", o.status, stderr(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(o)))
}

fn ids(v: &Value) -> Vec<&str> {
    v.as_array().expect("a JSON array").iter().map(|t| t["id"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn help_lists_the_commands() {
    let o = run(None, &["--help"]).await;
    assert!(o.status.success());
    let help = stdout(&o);
    for word in ["sandbox", "check", "tickets", "ingest", "serve", "webhooks", "--config", "--log-format"] {
        assert!(help.contains(word), "`{word}` missing from:\n{help}");
    }
    let o = run(None, &["tickets", "list", "--help"]).await;
    for word in ["--connection", "--updated-gte", "--limit", "--all", "--query", "--compact"] {
        assert!(stdout(&o).contains(word), "`{word}` missing from:\n{}", stdout(&o));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn check_summarises_the_config_and_tries_every_connection() {
    let s = setup("").await;
    let o = run(Some(s.config.path()), &["check"]).await;
    let out = stdout(&o);
    assert!(o.status.success(), "stdout: {out}\nstderr: {}", stderr(&o));
    for line in [
        "llm:     model gpt-4o-mini at https://api.openai.com/v1; no key",
        "bus:     in-process",
        "store:   sqlite://data/deskpilot.db",
        &format!("  demo: unified at {}, mode shadow", s.sandbox.base_url),
        "    OK: 2 categories: Billing, Shipping",
    ] {
        assert!(out.contains(line), "`{line}` missing from:\n{out}");
    }
    assert!(!out.contains(KEY), "the key must never be printed:\n{out}");
    assert!(!out.contains("warning: no allowed_tags"), "shadow mode writes no tags:\n{out}");

    // Apply mode without allowed_tags: the check says which tags will be written.
    let applying = setup("mode = \"apply\"\n").await;
    let o = run(Some(applying.config.path()), &["check"]).await;
    let out = stdout(&o);
    assert!(
        out.contains("    warning: no allowed_tags: only tags already used on this helpdesk's tickets"),
        "{out}"
    );

    // A second connection the sandbox does not serve: its probe fails, and so does the check.
    let s = setup("").await;
    let gone = format!(
        "\n[[connections]]\nid = \"gone\"\nbackend = \"unified\"\nbase_url = \"{}\"\napi_key_env = \"SANDBOX_KEY\"\n",
        s.sandbox.base_url
    );
    let config = config_file(&format!("{}{gone}", std::fs::read_to_string(s.config.path()).unwrap()));
    let o = run(Some(config.path()), &["check"]).await;
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "a failed connection fails the check:\n{out}");
    assert!(out.contains("    OK: 2 categories"), "{out}");
    assert!(
        out.contains(&format!("  gone: unified at {}, mode shadow\n    FAILED: ", s.sandbox.base_url)),
        "{out}"
    );
    assert!(stderr(&o).contains("error: 1 of 2 connections failed: gone"), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread")]
async fn tickets_list_prints_a_json_array() {
    let s = setup("").await;
    let config = Some(s.config.path());

    let all = json(&run(config, &["tickets", "list", "--connection", "demo"]).await);
    assert_eq!(ids(&all), ["1", "2", "3"]);
    assert_eq!(all[0]["subject"], "Refund please");

    let first_page = json(&run(config, &["tickets", "list", "--connection", "demo", "--limit", "2"]).await);
    assert_eq!(ids(&first_page), ["1", "2"]);

    let o =
        run(config, &["tickets", "list", "--connection", "demo", "--limit", "2", "--all", "--compact"]).await;
    assert_eq!(stdout(&o).lines().count(), 1, "--compact prints one line");
    assert_eq!(ids(&json(&o)), ["1", "2", "3"], "--all follows every page");

    let since = ["tickets", "list", "--connection", "demo", "--updated-gte", "2024-05-03T00:00:00Z"];
    assert_eq!(ids(&json(&run(config, &since).await)), ["2", "3"]);

    let found = json(&run(config, &["tickets", "list", "--connection", "demo", "--query", "parcel"]).await);
    assert_eq!(ids(&found), ["2"]);

    // One connection configured: --connection may be left out.
    assert_eq!(ids(&json(&run(config, &["tickets", "list"]).await)).len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn tickets_get_prints_the_ticket_and_optionally_its_conversation() {
    let s = setup("").await;
    let config = Some(s.config.path());

    let ticket = json(&run(config, &["tickets", "get", "--connection", "demo", "2"]).await);
    assert_eq!(ticket["id"], "2");
    assert_eq!(ticket["subject"], "Parcel missing");

    let full = json(&run(config, &["tickets", "get", "--connection", "demo", "1", "--with-notes"]).await);
    assert_eq!(full["ticket"]["id"], "1");
    assert_eq!(full["customer"]["name"], "Ada Lovelace");
    let notes: Vec<_> = full["notes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert_eq!(notes, ["n-1", "n-2"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_ticket_fails_with_a_clear_message() {
    let s = setup("").await;
    let o = run(Some(s.config.path()), &["tickets", "get", "--connection", "demo", "nope"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty(), "nothing on stdout: {}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains(
            "error: could not read ticket `nope` of connection `demo`\n  caused by: ticket nope not found"
        ),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_connection_lists_the_configured_ones() {
    let s = setup("").await;
    let o = run(Some(s.config.path()), &["tickets", "list", "--connection", "prod"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("error: unknown connection `prod`; configured connections: demo"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test]
async fn a_bad_config_exits_1_naming_the_key_and_the_file() {
    let bad = config_file("[worker]\nconcurrency = \"lots\"\n");
    let o = run(Some(bad.path()), &["check"]).await;
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    let at = format!("worker.concurrency in {}: invalid type", bad.path().display());
    assert!(err.starts_with("error: invalid configuration\n  caused by: "), "{err}");
    assert!(err.contains(&at), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let o = run(Some(Path::new("/nonexistent/deskpilot.toml")), &["check"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot read config file `/nonexistent/deskpilot.toml`"), "{}", stderr(&o));
}

#[tokio::test]
async fn usage_errors_exit_2_with_an_example() {
    let o = run(None, &["tickets", "list", "--updated-gte", "yesterday"]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("expected an RFC 3339 date-time such as 2024-05-01T00:00:00Z"),
        "{}",
        stderr(&o)
    );
    assert_eq!(run(None, &["frobnicate"]).await.status.code(), Some(2));
}

/// `deskpilot sandbox` as a child process: announces its address, serves, stops on SIGTERM.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn the_sandbox_command_serves_until_sigterm() {
    let data = data_dir();
    let data_path = data.path().to_str().unwrap().to_owned();
    let mut child =
        deskpilot(None, &["sandbox", "--addr", "127.0.0.1:0", "--data", &data_path, "--api-key", KEY])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let base_url = line
        .strip_prefix("sandbox helpdesk listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_owned();

    let config = config_file(&format!(
        "[[connections]]\nid = \"demo\"\nbackend = \"unified\"\nbase_url = \"{base_url}\"\napi_key = \"{KEY}\"\n"
    ));
    let listed = json(&run(Some(config.path()), &["tickets", "list", "--compact"]).await);
    assert_eq!(ids(&listed), ["1", "2", "3"]);

    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert!(status.success(), "a graceful stop exits 0, got {status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn check_shows_the_stronger_model_and_the_budgets() {
    let s = setup("daily_budget_usd = 2.5\n").await;
    let mut cmd = deskpilot(Some(s.config.path()), &["check"]);
    cmd.env("DESKPILOT__LLM__MONTHLY_BUDGET_USD", "100")
        .env("DESKPILOT__LLM__ON_BUDGET_EXHAUSTED", "switch_to_fallback_model")
        .env("DESKPILOT__LLM__FALLBACK_MODEL", "gpt-4.1-mini")
        .env("DESKPILOT__LLM__ESCALATION__MODEL", "gpt-4o")
        .env("DESKPILOT__LLM__ESCALATION__BELOW_CONFIDENCE", "0.7");
    let o = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    let out = stdout(&o);
    assert!(o.status.success(), "stdout: {out}\nstderr: {}", stderr(&o));
    for line in [
        "         stronger model gpt-4o at the same server, below confidence 0.70 or after an invalid answer",
        "         budgets (UTC): overall none a day, $100.00 a month; demo $2.50 a day, none a month; \
         once spent: switch_to_fallback_model (gpt-4.1-mini)",
    ] {
        assert!(out.contains(line), "`{line}` missing from:\n{out}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn check_shows_how_llm_calls_are_limited() {
    let s = setup("").await;
    let mut cmd = deskpilot(Some(s.config.path()), &["check"]);
    cmd.env("DESKPILOT__LLM__BASE_URL", "\"http://127.0.0.1:9/v1\"")
        .env("DESKPILOT__LLM__REQUESTS_PER_MINUTE", "500")
        .env("DESKPILOT__LLM__TOKENS_PER_MINUTE", "200000");
    let o = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    let out = stdout(&o);
    assert!(o.status.success(), "stdout: {out}\nstderr: {}", stderr(&o));
    let line = "         calls: adaptive concurrency, following the server's rate-limit headers, paced within \
                500 requests and 200000 tokens a minute";
    assert!(out.contains(line), "`{line}` missing from:\n{out}");
}

#[tokio::test]
async fn triage_without_an_llm_prints_the_rules_decision_and_says_so() {
    let s = setup("").await;
    let out = run(Some(s.config.path()), &["triage", "--connection", "demo", "--ticket", "1"]).await;
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("no LLM is configured"), "{text}");
    assert!(text.contains("decided by rules (rule `refund`)"), "{text}");
    assert!(text.contains("draft reply  (none)"), "{text}");
    assert!(text.contains("privacy: pseudonymise; replaced "), "{text}");
}

#[tokio::test]
async fn triage_asks_an_openai_compatible_endpoint_and_writes_nothing() {
    use wiremock::{
        Mock, MockServer, ResponseTemplate,
        matchers::{method, path},
    };
    let s = setup("").await;
    let llm = MockServer::start().await;
    let answer = serde_json::json!({
        "category_id": "cat-billing", "priority": "HIGH", "tags": ["refund"], "language": "en",
        "sentiment": "negative", "summary": "Charged twice, wants a refund.",
        "draft_reply": "Sorry about the double charge, we are checking it.", "confidence": 0.9,
        "needs_human": false, "reason": "Duplicate charge."
    });
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "local-model",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": answer.to_string()}}],
            "usage": {"prompt_tokens": 900, "completion_tokens": 80, "total_tokens": 980}
        })))
        .expect(1)
        .mount(&llm)
        .await;
    let before = s.sandbox.snapshot("demo").await.unwrap();
    let mut cmd =
        deskpilot(Some(s.config.path()), &["triage", "--connection", "demo", "--ticket", "1", "--json"]);
    cmd.env("DESKPILOT__LLM__BASE_URL", format!("{}/v1", llm.uri()))
        .env("DESKPILOT__LLM__MODEL", "local-model");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    let v = json(&out);
    assert_eq!(v["decision"]["category_id"], "cat-billing");
    assert_eq!(v["decision"]["origin"], serde_json::json!({"kind": "llm", "model": "local-model"}));
    assert_eq!(v["report"]["usage"]["prompt_tokens"], 900);
    assert!(v["report"]["prompt_tokens"].as_u64().unwrap() > 0);
    // What was kept from the LLM: kinds and counts, never a value.
    let privacy = &v["report"]["privacy"];
    assert_eq!(privacy["mode"], "pseudonymise");
    let replaced = privacy["replaced"].as_object().expect("counts per kind");
    assert!(replaced.values().all(|n| n.as_u64().is_some()), "{privacy}");
    assert!(privacy["invented"].as_array().is_some_and(Vec::is_empty), "{privacy}");
    let after = s.sandbox.snapshot("demo").await.unwrap();
    assert_eq!(before.tickets, after.tickets, "triage writes nothing");
    assert_eq!(before.notes, after.notes);
}

#[tokio::test]
async fn demo_runs_the_whole_pipeline_on_the_embedded_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("nested/demo.db");
    let store = store.to_str().unwrap();
    for mode in ["shadow", "apply"] {
        let out = run(None, &["demo", "--once", "--limit", "5", "--mode", mode, "--store", store]).await;
        assert!(out.status.success(), "stderr: {}", stderr(&out));
        let text = stdout(&out);
        assert!(text.contains("5 untriaged tickets, mode"), "{text}");
        assert!(text.contains("demo: review the proposals at http://127.0.0.1:"), "{text}");
        assert!(text.contains("per category: cat-"), "{text}");
        // They reach the worker as the sandbox's signed webhooks, through the service's receiver.
        assert!(
            text.contains("to the sandbox's ticket webhooks; they arrive signed at http://127.0.0.1:"),
            "{text}"
        );
        assert!(text.contains("0 dead-lettered"), "{text}");
        assert!(text.contains("5 decided (0 by the LLM, 5 by rules), 5 done, 0 failed"), "{text}");
        // The fallback rules' decisions ask for a person, so apply mode shadows them as well.
        assert!(text.contains("5 proposals stored"), "{mode}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_register_subscribes_created_and_updated_and_list_shows_them() {
    let s = setup("").await;
    let config = Some(s.config.path());
    let hook = "https://deskpilot.example.com/webhooks/demo";
    let o = run(config, &["webhooks", "register", "--connection", "demo", "--url", hook]).await;
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains(&format!("subscribed: wh-00001 ticket created of connection demo -> {hook}")),
        "{out}"
    );
    assert!(
        out.contains(&format!("subscribed: wh-00002 ticket updated of connection demo -> {hook}")),
        "{out}"
    );
    assert!(out.contains("has no webhook_secret yet"), "{out}");

    let o = run(config, &["webhooks", "list", "--connection", "demo", "--json"]).await;
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    let listed: Vec<Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let got: Vec<(&str, &str)> =
        listed.iter().map(|s| (s["event"].as_str().unwrap(), s["hook_url"].as_str().unwrap())).collect();
    assert_eq!(got, [("created", hook), ("updated", hook)]);
    let o = run(config, &["webhooks", "list"]).await;
    assert!(stdout(&o).contains("wh-00002  demo  ticketing_ticket updated  -> https://"), "{}", stdout(&o));

    let o = run(config, &["webhooks", "register", "--connection", "demo", "--url", "ftp://x"]).await;
    assert_eq!(o.status.code(), Some(2), "a bad URL is a usage error");
    assert!(stderr(&o).contains("expected an http:// or https:// URL"), "{}", stderr(&o));
}

#[tokio::test]
async fn backfill_publishes_a_window_once_resumably_and_reports_it() {
    let amqp = crate::helpers::amqp_test_url();
    crate::helpers::require_broker(&amqp);
    let bus = crate::helpers::random_bus_settings(&[std::time::Duration::from_secs(1)]);
    let dir = tempfile::tempdir().unwrap();
    let s = setup(&format!(
        "\n[bus]\nurl = \"{amqp}\"\nexchange = \"{}\"\nqueue = \"{}\"\n\n[store]\nurl = \"sqlite://{}\"\n",
        bus.exchange,
        bus.queue,
        dir.path().join("store.db").display()
    ))
    .await;
    let args = ["backfill", "--connection", "demo", "--since", "2024-05-02", "--kind", "created"];
    let first = json(&run(Some(s.config.path()), &args).await);
    assert_eq!(first["status"], "finished", "{first}");
    assert_eq!((first["published"].as_u64(), first["this_run"]["published"].as_u64()), (Some(2), Some(2)));
    assert_eq!(first["window"]["kind"], "created");
    assert_eq!(first["this_run"]["out_of_scope"], 0, "ticket 1 is before the window: not even listed");

    // The same window again: already done, nothing published; --restart walks it again.
    let again = run(Some(s.config.path()), &args).await;
    assert_eq!(json(&again)["status"], "already_finished");
    assert!(stderr(&again).contains("--restart"), "{}", stderr(&again));
    let restarted = json(&run(Some(s.config.path()), &[&args[..], &["--restart"]].concat()).await);
    assert_eq!(
        (restarted["status"].as_str(), restarted["this_run"]["published"].as_u64()),
        (Some("finished"), Some(2))
    );
    assert_eq!(ready_in_work_queue(&amqp, &bus.queue).await, 4, "ticket.created twice for each of 2 tickets");

    let backwards =
        run(Some(s.config.path()), &[&args[..], &["--until", "2024-05-01T00:00:00Z"]].concat()).await;
    assert!(!backwards.status.success());
    assert!(
        stderr(&backwards).contains("--until 2024-05-01T00:00:00Z is before --since"),
        "{}",
        stderr(&backwards)
    );
    let bad = run(Some(s.config.path()), &["backfill", "--connection", "demo", "--since", "yesterday"]).await;
    assert!(stderr(&bad).contains("neither an RFC 3339 time"), "{}", stderr(&bad));
    crate::helpers::delete_bus_topology(&amqp, &bus);
}

/// Messages ready in the work queue `queue`.
async fn ready_in_work_queue(amqp: &str, queue: &str) -> u32 {
    let conn = lapin::Connection::connect(amqp, lapin::ConnectionProperties::default()).await.unwrap();
    let channel = conn.create_channel().await.unwrap();
    let passive = lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
    let declared =
        channel.queue_declare(queue.into(), passive, lapin::types::FieldTable::default()).await.unwrap();
    let _ = conn.close(200, "OK".into()).await;
    declared.message_count()
}

/// Waits for the first stdout line of `child` that starts with `prefix`; the rest of that line.
fn line_starting(child: &mut std::process::Child, prefix: &str) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    line.strip_prefix(prefix).unwrap_or_else(|| panic!("unexpected first line: {line:?}")).to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sandboxs_signed_webhooks_reach_deskpilot_serve_which_writes_its_note() {
    let llm = crate::helpers::mock_llm(crate::helpers::ok(&crate::helpers::valid_answer(None)), None).await;
    let dir = tempfile::tempdir().unwrap();
    let data = data_dir();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let hook = format!("http://127.0.0.1:{port}/webhooks/demo");
    let data_path = data.path().to_str().unwrap();
    let sandbox_args = [
        "sandbox",
        "--addr",
        "127.0.0.1:0",
        "--data",
        data_path,
        "--api-key",
        KEY,
        "--webhook-url",
        &hook,
        "--webhook-secret",
        "workspace-secret",
    ];
    let mut sandbox =
        deskpilot(None, &sandbox_args).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let rest = line_starting(&mut sandbox, "sandbox helpdesk listening on ");
    let base_url = rest.split_whitespace().next().unwrap().to_owned();

    let config = config_file(&format!(
        "[llm]\nbase_url = \"{}/v1\"\n\n[store]\nurl = \"sqlite://{}\"\n\n[server]\naddr = \"127.0.0.1:{port}\"\n\n\
         [[connections]]\nid = \"demo\"\nbackend = \"unified\"\nbase_url = \"{base_url}\"\napi_key = \"{KEY}\"\n\
         mode = \"apply\"\nnotes_internal_verified = true\nwebhook_secret = \"workspace-secret\"\n",
        llm.uri(),
        dir.path().join("serve.db").display()
    ));
    let mut serve = deskpilot(Some(config.path()), &["serve"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let http = crate::helpers::http_client();
    let ready = format!("http://127.0.0.1:{port}/readyz");
    let started = std::time::Instant::now();
    while http.get(&ready).send().await.map(|r| r.status().as_u16()).ok() != Some(200) {
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "deskpilot serve never got ready");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let ticket =
        crate::helpers::create_demo_ticket(&base_url, KEY, "Charged twice", "Two charges for one plan.")
            .await["id"]
            .as_str()
            .unwrap()
            .to_owned();
    loop {
        let notes: Value = http
            .get(format!("{base_url}/ticketing/demo/note"))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if notes.as_array().unwrap().iter().any(|n| n["ticket_id"] == ticket.as_str()) {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(40), "no note for ticket {ticket}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    for child in [&mut serve, &mut sandbox] {
        assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    }
    let status =
        tokio::task::spawn_blocking(move || (serve.wait_with_output().unwrap(), sandbox.wait().unwrap()))
            .await
            .unwrap();
    assert!(status.0.status.success(), "serve stops cleanly: {}", String::from_utf8_lossy(&status.0.stderr));
    assert!(status.1.success());
}

/// `proposals list|show|approve|reject` over a store holding a proposal whose ticket text tries
/// markup, template syntax and terminal escapes: it is printed inert, and the actions are those of
/// the review page (approving twice applies once; a rejected proposal stays rejected).
#[tokio::test]
async fn proposals_are_listed_shown_approved_and_rejected_from_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("review.db").display());
    let s = setup(&format!("notes_internal_verified = true\n\n[store]\nurl = \"{url}\"\n")).await;
    let store = deskpilot::store::Store::connect(&url).await.unwrap();
    let hostile = "<script>alert(1)</script> {{ config }} \u{1b}[2J<b>bold</b>";
    let decision = serde_json::json!({
        "category_id": "cat-billing", "priority": "HIGH", "tags": [], "language": "en",
        "sentiment": "neutral", "summary": hostile, "draft_reply": "We refunded the double charge.",
        "confidence": 0.9, "needs_human": false, "reason": "Mentions a double charge.",
        "origin": {"kind": "llm", "model": "m"}
    });
    let mut ids = Vec::new();
    for ticket in ["1", "2"] {
        let p = deskpilot::store::NewProposal {
            connection_id: "demo".into(),
            ticket_id: ticket.into(),
            event_id: format!("evt-{ticket}"),
            decision: decision.clone(),
            report: serde_json::json!({}),
            mode: "shadow".into(),
            why_shadowed: "connection is in shadow mode".into(),
            ticket_subject: Some(hostile.into()),
            ticket_url: None,
            ticket_before: None,
        };
        ids.push(store.insert_proposal(&p).await.unwrap().to_string());
    }
    store.close().await;
    let config = Some(s.config.path());

    let list = run(config, &["proposals", "list"]).await;
    assert!(list.status.success(), "{}", stderr(&list));
    let text = stdout(&list);
    assert!(text.contains("pending 2"), "{text}");
    assert!(
        text.contains("<script>alert(1)</script> {{ config }} \\u{1b}[2J"),
        "escapes shown, not run: {text}"
    );
    assert!(!text.contains('\u{1b}'), "no raw escape reaches the terminal");
    let show = run(config, &["proposals", "show", &ids[0]]).await;
    assert!(show.status.success(), "{}", stderr(&show));
    assert!(
        !stdout(&show).contains('\u{1b}') && stdout(&show).contains("I was charged twice."),
        "{}",
        stdout(&show)
    );

    let approve = run(config, &["proposals", "approve", &ids[0], "--as", "ana"]).await;
    assert!(
        stdout(&approve).contains("approved and applied: internal note"),
        "{}{}",
        stdout(&approve),
        stderr(&approve)
    );
    let again = run(config, &["proposals", "approve", &ids[0], "--as", "ben"]).await;
    assert!(stdout(&again).contains("was applied already (approved by ana)"), "{}", stdout(&again));
    let notes = s.sandbox.snapshot("demo").await.unwrap().notes;
    let drafts =
        notes.values().filter(|n| n.description.as_deref().is_some_and(|d| d.contains("deskpilot-ref:")));
    assert_eq!(drafts.count(), 1, "one note for two approvals");

    let reject = run(config, &["proposals", "reject", &ids[1], "--reason", "bad_draft", "--as", "ana"]).await;
    assert!(reject.status.success(), "{}", stderr(&reject));
    let late = run(config, &["proposals", "approve", &ids[1]]).await;
    assert!(!late.status.success() && stderr(&late).contains("was rejected by ana"), "{}", stderr(&late));
    let bad = run(config, &["proposals", "reject", &ids[1], "--reason", "meh"]).await;
    assert!(stderr(&bad).contains("use one of wrong_category"), "{}", stderr(&bad));
    let listed = json(&run(config, &["proposals", "list", "--status", "applied", "--json"]).await);
    assert_eq!(listed["proposals"].as_array().unwrap().len(), 1);
    assert_eq!(listed["counts"]["rejected"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn review_serves_the_page_alone_and_refuses_to_start_without_access() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("review.db").display());
    let s = setup(&format!("\n[store]\nurl = \"{url}\"\n")).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");

    let o = run(Some(s.config.path()), &["review", "--listen", &listen]).await;
    assert!(!o.status.success());
    assert!(stderr(&o).contains("the review page needs a token: set [review] token_env"), "{}", stderr(&o));
    let open = config_file(&format!(
        "[[connections]]\nid = \"demo\"\nbackend = \"unified\"\nbase_url = \"{}\"\napi_key_env = \"SANDBOX_KEY\"\n\n\
         [store]\nurl = \"{url}\"\n\n[review]\nallow_anonymous_loopback = true\n",
        s.sandbox.base_url
    ));
    let o = run(Some(open.path()), &["review", "--listen", "0.0.0.0:0"]).await;
    assert!(!o.status.success());
    assert!(stderr(&o).contains("0.0.0.0:0 is not one"), "{}", stderr(&o));

    let mut child = deskpilot(Some(s.config.path()), &["review", "--listen", &listen])
        .env("DESKPILOT__REVIEW__TOKEN", "t0ken")
        .spawn()
        .unwrap();
    let client = crate::helpers::http_client();
    let mut answered = None;
    for _ in 0..100 {
        if let Ok(r) = client.get(format!("http://{listen}/review")).bearer_auth("t0ken").send().await {
            answered = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let r = answered.expect("`deskpilot review` answers");
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("No proposal matches."));
    let unauthorized = client.get(format!("http://{listen}/review")).send().await.unwrap();
    assert_eq!(unauthorized.status(), 401);
    let _ = child.kill();
    let _ = child.wait();
}

/// The live demo: after the backlog, new tickets are created in the sandbox, arrive as its signed
/// webhooks and are shown one line each as they are decided; SIGTERM (as Ctrl-C) stops it cleanly.
#[tokio::test]
async fn the_live_demo_shows_new_tickets_as_they_are_decided_and_stops_on_a_signal() {
    live_demo(None).await;
}

/// The same with an OpenAI-compatible endpoint (a double) deciding: drafts and tokens are shown.
#[tokio::test]
async fn the_live_demo_with_an_llm_shows_its_drafts() {
    let answer = crate::helpers::ok(&crate::helpers::valid_answer(Some("cat-billing")));
    let llm = crate::helpers::mock_llm(answer, None).await;
    live_demo(Some(&llm.uri())).await;
}

async fn live_demo(llm: Option<&str>) {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("live.db");
    let mut command =
        deskpilot(None, &["demo", "--limit", "1", "--tickets", "3", "--store", store.to_str().unwrap()]);
    if let Some(url) = llm {
        command
            .env("DESKPILOT__LLM__BASE_URL", format!("{url}/v1"))
            .env("DESKPILOT__LLM__MODEL", "gpt-4o-mini");
    }
    let mut child =
        command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let done = line.contains("new tickets decided");
            seen.push(line);
            if done {
                break;
            }
        }
        seen
    });
    let lines = tokio::time::timeout(std::time::Duration::from_secs(60), lines)
        .await
        .expect("three new tickets are decided within a minute")
        .unwrap();
    let text = lines.join("\n");
    let header = if llm.is_some() { "decided by LLM gpt-4o-mini" } else { "decided by the fallback rules" };
    assert!(text.contains(header), "the header says who decides: {text}");
    if llm.is_some() {
        assert!(
            text.contains("Hi Tom, thanks for reaching out") && !text.contains(" 0 tokens"),
            "drafts and tokens: {text}"
        );
    }
    let live: Vec<&String> = lines.iter().filter(|l| l.starts_with('#') && l.contains(" → ")).collect();
    assert_eq!(live.len(), 3, "one line per new ticket: {text}");
    assert!(live.iter().any(|l| l.contains("[de]")) && live.iter().any(|l| l.contains("[fr]")), "{text}");
    assert!(text.contains("demo: 3 of 3 new tickets decided"), "{text}");
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert!(status.success(), "SIGTERM stops the demo cleanly: {status:?}");
}
