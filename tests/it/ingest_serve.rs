//! `deskpilot serve` without webhooks: the connection's poller (on by default without a webhook
//! secret) finds a ticket created in the sandbox, and the worker in the same process triages it.

use std::time::{Duration, Instant};

use deskpilot::{
    App,
    app::Services,
    bus::Bus,
    config::{BackendConfig, Config, ConnectionConfig, UnifiedConfig},
    events::{EventKind, EventSource},
    ingest::poll::Poller,
    store::{LedgerKey, Step},
};

use crate::{
    helpers::*,
    ingest_poll::{CONN, Rig},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_polls_a_new_ticket_through_to_the_worker() {
    let rig = Rig::new(TestStoreKind::Sqlite).await;
    // No LLM configured: the worker decides with its rules and, in shadow mode, proposes.
    let mut config = Config::load_from(None, [("DESKPILOT__SERVER__ADDR", "\"\"")]).expect("config");
    let backend = BackendConfig::Unified(UnifiedConfig {
        base_url: Some(rig.sandbox.base_url.clone()),
        region: None,
        api_key: Some(KEY.into()),
        api_key_env: None,
        category_cache_secs: 300,
    });
    config.connections =
        vec![ConnectionConfig { poll_interval_secs: Some(1), ..ConnectionConfig::new(CONN, backend) }];
    let app = App::builder(&config)
        .bus(Bus::Amqp { url: amqp_test_url(), settings: rig.bus.clone() })
        .store(rig.store.clone())
        .services(Services::ALL)
        .build()
        .await
        .expect("the service builds");
    let stop = tokio_util::sync::CancellationToken::new();
    let serving = tokio::spawn(app.serve(None, stop.clone()));

    // The first poll starts a minute back (the bundled tickets are older); wait for it.
    let cursor = Poller::cursor_name(CONN);
    let started = Instant::now();
    while rig.store.cursor(&cursor).await.unwrap().and_then(|c| c.position).is_none() {
        assert!(started.elapsed() < Duration::from_secs(20), "the poller never polled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ticket = rig.create("The export button does nothing").await;
    let id = ticket.id.clone().unwrap();
    let key = LedgerKey::new(CONN, &id, EventKind::TicketCreated);
    loop {
        let entry = rig.store.entry(&key).await.unwrap();
        if entry.as_ref().is_some_and(|e| e.step == Step::Done) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "ticket {id} never reached the worker: {entry:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events = rig.published().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (events[0].kind, events[0].source, events[0].ticket_id.as_str()),
        (EventKind::TicketCreated, EventSource::Poll, id.as_str())
    );

    stop.cancel();
    serving.await.unwrap().unwrap();
    let cursor = rig.store.cursor(&cursor).await.unwrap().unwrap();
    assert_eq!(cursor.lease_until, None, "the poller released its cursor at shutdown");
}
