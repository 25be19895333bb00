//! The loop guard end to end: the poller reports new tickets, the worker (apply mode, a wiremock
//! LLM) patches them and posts its note, and the next poll does not report those writes back as
//! work; a person's change after them is reported.

use std::time::{Duration, Instant};

use deskpilot::{
    App,
    bus::Bus,
    config::{BackendConfig, Config, ConnectionConfig, Mode, UnifiedConfig},
    events::{EventKind, EventSource, TicketEvent},
    ingest::poll::{PollOutcome, PollSettings},
    store::{LedgerKey, Step},
};
use time::macros::datetime;
use tokio_util::sync::CancellationToken;
use wiremock::{
    Mock, MockServer,
    matchers::{method, path},
};

use crate::{
    helpers::*,
    ingest_poll::{CONN, Rig, summary},
};

/// Five tickets of the bundled data changed after this, three of them created after it.
const START: time::OffsetDateTime = datetime!(2026-11-23 00:00 UTC);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deskpilots_own_writes_are_not_reported_as_work() {
    let rig = Rig::new(TestStoreKind::Sqlite).await;
    let llm = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(COMPLETIONS))
        .respond_with(ok(&valid_answer(Some("cat-billing"))))
        .mount(&llm)
        .await;
    let quoted = |s: &str| format!("{s:?}");
    let env = [
        ("DESKPILOT__LLM__BASE_URL", quoted(&format!("{}/v1", llm.uri()))),
        ("DESKPILOT__LLM__MODEL", quoted(MODEL)),
    ];
    let mut config = Config::load_from(None, env).expect("the test configuration");
    let backend = BackendConfig::Unified(UnifiedConfig {
        base_url: Some(rig.sandbox.base_url.clone()),
        region: None,
        api_key: Some(KEY.into()),
        api_key_env: None,
        category_cache_secs: 300,
    });
    config.connections = vec![ConnectionConfig {
        mode: Mode::Apply,
        notes_internal_verified: true,
        ..ConnectionConfig::new(CONN, backend)
    }];
    let app = App::builder(&config)
        .bus(Bus::Amqp { url: amqp_test_url(), settings: rig.bus.clone() })
        .store(rig.store.clone())
        .build()
        .await
        .expect("the service builds");
    let stop = CancellationToken::new();
    let worker = tokio::spawn(app.serve(None, stop.clone()));

    // The poller reports the new tickets; the worker triages and applies each.
    let settings = PollSettings {
        page_size: 3,
        start: Some(START),
        own_write_tolerance: Duration::from_millis(50),
        ..PollSettings::default()
    };
    let poller = rig.poller("replica-a", settings);
    let PollOutcome::Polled(first) = poller.poll_once().await.unwrap() else { panic!("not polled") };
    let reported = rig.published().await;
    let created: Vec<&TicketEvent> = reported.iter().filter(|e| e.kind == EventKind::TicketCreated).collect();
    assert_eq!(
        (reported.len(), created.len()),
        (5, 3),
        "two of them were created before {START}: {reported:?}"
    );
    assert_eq!(first.own_writes, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    for e in &created {
        let key = LedgerKey::new(CONN, &e.ticket_id, EventKind::TicketCreated);
        loop {
            let entry = rig.store.entry(&key).await.unwrap();
            if entry.as_ref().is_some_and(|e| e.step == Step::Done) {
                let outcome = entry.unwrap().outcome.unwrap_or_default();
                assert!(outcome.starts_with("applied; note"), "ticket {}: {outcome}", e.ticket_id);
                break;
            }
            assert!(Instant::now() < deadline, "ticket {} was not triaged in time: {entry:?}", e.ticket_id);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // Every ticket changed since (deskpilot's patch and note), and none of it is work.
    let handle = deskpilot::telemetry::metrics().expect("the recorder of this binary");
    let skipped_before = own_writes_skipped(&handle.render());
    let PollOutcome::Polled(second) = poller.poll_once().await.unwrap() else { panic!("not polled") };
    assert_eq!(rig.published().await, Vec::new());
    assert_eq!((second.own_writes, second.published), (3, 0));
    assert!(own_writes_skipped(&handle.render()) >= skipped_before + 3.0);

    // A person's change after deskpilot's write is reported.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let touched = rig.touch("1087").await;
    let PollOutcome::Polled(third) = poller.poll_once().await.unwrap() else { panic!("not polled") };
    let want = TicketEvent::observed(
        EventKind::TicketUpdated,
        CONN,
        "1087",
        touched.updated_at.unwrap(),
        EventSource::Poll,
    );
    assert_eq!(summary(&rig.published().await), summary(&[want]));
    assert_eq!(third.own_writes, 0);

    stop.cancel();
    worker.await.unwrap().unwrap();
}

/// `deskpilot_ingest_own_writes_skipped_total{connection="demo",source="poll"}`.
fn own_writes_skipped(exposition: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| {
            l.starts_with("deskpilot_ingest_own_writes_skipped_total")
                && l.contains("connection=\"demo\"")
                && l.contains("source=\"poll\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
