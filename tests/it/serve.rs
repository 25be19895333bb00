//! `deskpilot serve` / `ingest` as `App` runs them: the sandbox's signed webhooks reach the
//! receiver, the bus and the worker, which writes its note in apply mode.

use std::time::{Duration, Instant};

use deskpilot::{
    App,
    app::{Services, parts},
    config::{BackendConfig, Config, Mode},
    sandbox::{self, SandboxOptions},
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::helpers::{
    KEY, amqp_test_url, create_demo_ticket, delete_bus_topology, http_client, mock_llm, ok, require_broker,
    valid_answer,
};

/// The embedded defaults on the real broker with random names, a SQLite store in `dir`, the LLM
/// at `llm`, and the demo connection on `sandbox_url` in apply mode with a webhook secret.
pub fn serve_config(dir: &std::path::Path, llm: &str, sandbox_url: &str, secret: &str) -> Config {
    let prefix = format!("test-{}", uuid::Uuid::new_v4());
    let env = [
        ("DESKPILOT__STORE__URL", format!("\"sqlite://{}\"", dir.join("serve.db").display())),
        ("DESKPILOT__SERVER__ADDR", "\"127.0.0.1:0\"".to_owned()),
        ("DESKPILOT__BUS__URL", format!("\"{}\"", amqp_test_url())),
        ("DESKPILOT__BUS__EXCHANGE", format!("\"{prefix}.events\"")),
        ("DESKPILOT__BUS__QUEUE", format!("\"{prefix}.triage\"")),
        ("DESKPILOT__WORKER__RETRY_DELAYS_SECS", "[1]".to_owned()),
        ("DESKPILOT__LLM__BASE_URL", format!("\"{llm}/v1\"")),
    ];
    let mut config = Config::load_from(None, env.map(|(k, v)| (k.to_owned(), v))).expect("config");
    let demo = &mut config.connections[0];
    let BackendConfig::Unified(u) = &mut demo.backend else { panic!("the default connection is unified") };
    u.base_url = Some(sandbox_url.to_owned());
    u.api_key = Some(KEY.into());
    demo.mode = Mode::Apply;
    demo.notes_internal_verified = true;
    demo.webhook_secret = Some(secret.into());
    config
}

/// The notes of `ticket` in the sandbox's demo connection.
async fn notes(sandbox: &sandbox::RunningSandbox, ticket: &str) -> Vec<Value> {
    let desk = sandbox.snapshot("demo").await.expect("the demo connection");
    desk.notes
        .values()
        .filter(|n| n.ticket_id.as_deref() == Some(ticket))
        .map(|n| serde_json::to_value(n).unwrap())
        .collect()
}

#[tokio::test]
async fn a_ticket_created_in_the_sandbox_reaches_the_worker_through_its_signed_webhook() {
    require_broker(&amqp_test_url());
    let llm = mock_llm(ok(&valid_answer(Some("cat-billing"))), None).await;
    let dir = tempfile::tempdir().unwrap();
    // The service's address first: the sandbox is told where to deliver.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let service = format!("http://{}", listener.local_addr().unwrap());
    let sandbox = sandbox::spawn(SandboxOptions {
        api_key: KEY.into(),
        webhook_url: Some(format!("{service}/webhooks/demo")),
        webhook_secret: Some("workspace-secret".into()),
        ..SandboxOptions::default()
    })
    .await
    .unwrap();
    let config = serve_config(dir.path(), &llm.uri(), &sandbox.base_url, "workspace-secret");
    let bus_settings = parts::bus_settings(&config);
    let app = App::builder(&config).services(Services::ALL).build().await.unwrap();
    let shutdown = CancellationToken::new();
    let serving = tokio::spawn(app.serve(Some(listener), shutdown.clone()));
    let started = Instant::now();
    while http_client().get(format!("{service}/readyz")).send().await.map(|r| r.status().as_u16()).ok()
        != Some(200)
    {
        assert!(started.elapsed() < Duration::from_secs(20), "the service never got ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let created = create_demo_ticket(
        &sandbox.base_url,
        KEY,
        "Charged twice",
        "I was charged twice for my plan this month.",
    )
    .await;
    let ticket = created["id"].as_str().expect("the new ticket's id");
    while notes(&sandbox, ticket).await.is_empty() {
        assert!(started.elapsed() < Duration::from_secs(30), "no note was written for ticket {ticket}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let written = notes(&sandbox, ticket).await;
    assert_eq!(written.len(), 1, "{written:?}");
    let desk = sandbox.snapshot("demo").await.unwrap();
    assert_eq!(desk.tickets[ticket].category_id.as_deref(), Some("cat-billing"), "the triage was applied");

    // The sandbox reports deskpilot's own patch and note as `updated` webhooks: the loop guard
    // recognises them, so they do not come back as work.
    let own_writes = || {
        let exposition = deskpilot::telemetry::metrics().expect("the recorder is ours").render();
        exposition
            .lines()
            .find_map(|l| {
                l.strip_prefix(
                    r#"deskpilot_ingest_own_writes_skipped_total{connection="demo",source="webhook"}"#,
                )?
                .trim()
                .parse::<f64>()
                .ok()
            })
            .unwrap_or(0.0)
    };
    while own_writes() < 1.0 {
        assert!(started.elapsed() < Duration::from_secs(30), "deskpilot's own writes came back unrecognised");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(20), serving).await.expect("serve stops").unwrap().unwrap();
    delete_bus_topology(&amqp_test_url(), &bus_settings);
}
