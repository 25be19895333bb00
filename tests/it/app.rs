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
pub fn config(sandbox: &deskpilot::sandbox::RunningSandbox, dir: &std::path::Path) -> Config {
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

/// Polls `/readyz` until its status is `want`; returns the body.
async fn ready_becomes(url: &str, want: u16, within: Duration) -> String {
    let started = std::time::Instant::now();
    loop {
        let (status, body) = get(&format!("{url}/readyz")).await;
        if status == want {
            return body;
        }
        assert!(started.elapsed() < within, "/readyz stayed {status} ({body}), wanted {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A connection whose helpdesk does not answer makes `/readyz` 503, naming it; once the helpdesk
/// answers again, 200. (Before, `/readyz` looked at the store only.)
#[tokio::test]
async fn readiness_names_a_helpdesk_that_does_not_answer_until_it_is_back() {
    let sandbox = crate::helpers::start_sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&sandbox, dir.path());
    // A second connection at a port nothing listens on (yet).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    // The sandbox's second connection, at the wrong address.
    let mut away = config.connections[0].clone();
    away.id = "acme-retail".into();
    let deskpilot::config::BackendConfig::Unified(u) = &mut away.backend else { unreachable!() };
    u.base_url = Some(format!("http://{addr}"));
    config.connections.push(away);
    config.http.max_retries = 0;

    let app = App::build(&config).await.unwrap();
    let listener = app.bind().await.unwrap().unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let serving = tokio::spawn(app.serve(Some(listener), shutdown.clone()));

    let body = ready_becomes(&url, 503, Duration::from_secs(10)).await;
    assert!(body.contains("connection `acme-retail` does not answer"), "{body}");
    assert!(!body.contains("connection `demo`"), "{body}");

    // The helpdesk comes (back) up at that address.
    let stop = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind(addr).await.expect("the port is free again");
    let opts = deskpilot::sandbox::SandboxOptions {
        api_key: crate::helpers::KEY.into(),
        ..deskpilot::sandbox::SandboxOptions::default()
    };
    tokio::spawn(deskpilot::sandbox::serve(listener, opts, stop.clone()));
    assert_eq!(ready_becomes(&url, 200, Duration::from_secs(15)).await, "ready\n");

    shutdown.cancel();
    stop.cancel();
    serving.await.unwrap().unwrap();
}

/// The worker's broker refusing it (its permissions on the virtual host revoked and its
/// connections closed) makes `/readyz` 503 naming the broker; with the permissions back it
/// reconnects and `/readyz` is 200 again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_names_the_broker_while_it_refuses_the_worker() {
    use crate::helpers::rabbitmqctl;
    crate::helpers::require_broker(&crate::helpers::amqp_test_url());
    let vhost = format!("test-ready-{}", uuid::Uuid::new_v4().simple());
    rabbitmqctl(&["add_vhost", &vhost]);
    let grant = || rabbitmqctl(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"]);
    grant();

    let sandbox = crate::helpers::start_sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&sandbox, dir.path());
    config.bus.url = format!("amqp://guest:guest@127.0.0.1:5672/{vhost}").into();
    let app = App::build(&config).await.unwrap();
    let listener = app.bind().await.unwrap().unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let serving = tokio::spawn(app.serve(Some(listener), shutdown.clone()));
    assert_eq!(ready_becomes(&url, 200, Duration::from_secs(10)).await, "ready\n");

    rabbitmqctl(&["clear_permissions", "-p", &vhost, "guest"]);
    rabbitmqctl(&["close_all_connections", "--vhost", &vhost, "--limit", "100", "readiness test"]);
    let body = ready_becomes(&url, 503, Duration::from_secs(40)).await;
    assert!(body.contains("the broker:"), "{body}");

    grant();
    assert_eq!(ready_becomes(&url, 200, Duration::from_secs(60)).await, "ready\n");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(20), serving).await.unwrap().unwrap().unwrap();
    rabbitmqctl(&["delete_vhost", &vhost]);
}

/// The worker process consumes the outcomes queue too: a `ticket.updated` after a person filed and
/// closed the ticket records what they set against deskpilot's proposal, final.
#[tokio::test]
async fn a_ticket_s_update_records_what_the_person_set_against_the_proposal() {
    use deskpilot::ticketing::{TicketPatch, TicketStatus, Ticketing};
    let sandbox = crate::helpers::start_sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let app = App::build(&config(&sandbox, dir.path())).await.expect("the app builds");
    let publisher = app.publisher().await.unwrap();
    let store = app.store().clone();
    let shutdown = CancellationToken::new();
    let serving = tokio::spawn(app.serve(None, shutdown.clone()));

    publisher
        .publish(&TicketEvent::new(EventKind::TicketCreated, "demo", "1064", EventSource::Manual))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    while store.latest_proposal_for("demo", "1064").await.unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(20), "no proposal was stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let person = crate::helpers::helpdesk(&sandbox, "demo");
    let patch = TicketPatch {
        category_id: Some("cat-refunds".into()),
        priority: Some("low".into()),
        status: Some(TicketStatus::Closed),
        ..TicketPatch::default()
    };
    person.update_ticket("1064", &patch).await.unwrap();
    publisher
        .publish(&TicketEvent::new(EventKind::TicketUpdated, "demo", "1064", EventSource::Webhook))
        .await
        .unwrap();
    let outcome = loop {
        let rows =
            store.proposals_with_outcomes(Some("demo"), time::OffsetDateTime::UNIX_EPOCH).await.unwrap();
        if let Some(o) = rows.into_iter().find_map(|(p, o)| o.filter(|_| p.ticket_id == "1064")) {
            break o;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no outcome was recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        (outcome.category_id.as_deref(), outcome.priority.as_deref()),
        (Some("cat-refunds"), Some("LOW"))
    );
    assert!(outcome.final_at.is_some(), "closed: final");
    shutdown.cancel();
    serving.await.unwrap().expect("serve ends cleanly");
}
