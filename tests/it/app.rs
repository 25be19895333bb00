//! The service as `App` wires it: one router for every HTTP surface, one shutdown signal.

use std::time::Duration;

use deskpilot::{
    App,
    config::Config,
    events::{EventKind, EventSource, TicketEvent},
    store::{LedgerKey, Step},
};
use tokio_util::sync::CancellationToken;

/// The embedded defaults with the demo connection on `sandbox`, a SQLite store in `dir` and the
/// server on a free port.
fn config(sandbox: &deskpilot::sandbox::RunningSandbox, dir: &std::path::Path) -> Config {
    let env = [
        ("DESKPILOT__STORE__URL".to_owned(), format!("\"sqlite://{}\"", dir.join("app.db").display())),
        ("DESKPILOT__SERVER__ADDR".to_owned(), "\"127.0.0.1:0\"".to_owned()),
    ];
    let mut config = Config::load_from(None, env).expect("config");
    let deskpilot::config::BackendConfig::Unified(u) = &mut config.connections[0].backend else {
        panic!("the default connection is unified")
    };
    u.base_url = Some(sandbox.base_url.clone());
    u.api_key = Some(crate::helpers::KEY.into());
    config
}

async fn get(url: &str) -> (u16, String) {
    let response =
        crate::helpers::http_client().get(url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn serve_answers_health_readiness_and_metrics_until_shutdown() {
    let sandbox = crate::helpers::start_sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let app = App::build(&config(&sandbox, dir.path())).await.expect("the app builds");

    // The router alone: up, but not ready, since no worker takes events.
    let idle = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let idle_url = format!("http://{}", idle.local_addr().unwrap());
    let router = app.router();
    tokio::spawn(async move { axum::serve(idle, router).await });
    assert_eq!(get(&format!("{idle_url}/healthz")).await.0, 200);
    let (status, body) = get(&format!("{idle_url}/readyz")).await;
    assert_eq!((status, body.as_str()), (503, "not ready: the worker is not taking events\n"));

    // One event through the whole service, decided by the rules (no LLM is configured).
    let event = TicketEvent::new(EventKind::TicketCreated, "demo", "1044", EventSource::Manual);
    app.publisher().await.unwrap().publish(&event).await.unwrap();
    let store = app.store().clone();

    let listener = app.bind().await.unwrap().expect("server.addr is set");
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let serving = tokio::spawn(app.serve(Some(listener), shutdown.clone()));

    assert_eq!(get(&format!("{url}/healthz")).await, (200, "ok\n".to_owned()));
    let started = std::time::Instant::now();
    loop {
        let (status, body) = get(&format!("{url}/readyz")).await;
        if status == 200 {
            assert_eq!(body, "ready\n");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never ready: {status} {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let key = LedgerKey::from(&event);
    while store.entry(&key).await.unwrap().is_none_or(|e| e.step != Step::Done) {
        assert!(started.elapsed() < Duration::from_secs(20), "the event was not handled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, metrics) = get(&format!("{url}/metrics")).await;
    assert_eq!(status, 200);
    // The recorder is the process's, shared with other tests: look for the series, not a count.
    assert!(metrics.contains(r#"deskpilot_events_total{outcome="acked"}"#), "{metrics}");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), serving)
        .await
        .expect("serve returns after shutdown")
        .unwrap()
        .expect("serve ends cleanly");
    assert!(
        crate::helpers::http_client().get(format!("{url}/healthz")).send().await.is_err(),
        "the server is gone"
    );
}
