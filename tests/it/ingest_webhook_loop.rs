//! The loop guard on the webhook path: the sandbox announces deskpilot's own patch and note as
//! `updated` deliveries, like any other change; the receiver does not report them as work, and
//! reports a person's change made after them.

use std::time::{Duration, Instant};

use deskpilot::{
    App,
    app::{Services, parts},
    events::{EventKind, TicketEvent},
    sandbox::{self, SandboxOptions},
    store::{LedgerKey, Step},
    ticketing::{TicketPatch, Ticketing},
};
use lapin::{
    options::{BasicGetOptions, QueueBindOptions, QueueDeclareOptions},
    types::FieldTable,
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::{
    helpers::{
        KEY, amqp_test_url, create_demo_ticket, delete_bus_topology, helpdesk, http_client, mock_llm, ok,
        require_broker, valid_answer,
    },
    serve::serve_config,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deskpilots_own_writes_announced_by_webhook_are_not_work_and_a_persons_change_is() {
    require_broker(&amqp_test_url());
    let llm = mock_llm(ok(&valid_answer(Some("cat-billing"))), None).await;
    let dir = tempfile::tempdir().unwrap();
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
    let mut config = serve_config(dir.path(), &llm.uri(), &sandbox.base_url, "workspace-secret");
    // Same machine, same clock: only changes within deskpilot's write itself are its own.
    config.ingest.own_write_tolerance_secs = 0;
    let bus = parts::bus_settings(&config);
    let app = App::builder(&config).services(Services::ALL).build().await.unwrap();
    let store = app.store().clone();
    let shutdown = CancellationToken::new();
    let serving = tokio::spawn(app.serve(Some(listener), shutdown.clone()));
    let started = Instant::now();
    while http_client().get(format!("{service}/readyz")).send().await.map(|r| r.status().as_u16()).ok()
        != Some(200)
    {
        assert!(started.elapsed() < Duration::from_secs(20), "the service never got ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every event on the exchange, `ticket.updated` included.
    let raw =
        lapin::Connection::connect(&amqp_test_url(), lapin::ConnectionProperties::default()).await.unwrap();
    let channel = raw.create_channel().await.unwrap();
    let exclusive = QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() };
    let observer = channel.queue_declare("".into(), exclusive, FieldTable::default()).await.unwrap();
    let observer = observer.name().as_str().to_owned();
    let all = QueueBindOptions::default();
    channel
        .queue_bind(
            observer.as_str().into(),
            bus.exchange.as_str().into(),
            "#".into(),
            all,
            FieldTable::default(),
        )
        .await
        .unwrap();

    // A customer's ticket: created → webhook → worker → deskpilot's patch and note → two
    // `updated` webhooks, both deskpilot's own.
    let created = create_demo_ticket(
        &sandbox.base_url,
        KEY,
        "Charged twice",
        "I was charged twice for my plan this month.",
    )
    .await;
    let ticket = created["id"].as_str().expect("the new ticket's id").to_owned();
    let key = LedgerKey::new("demo", &ticket, EventKind::TicketCreated);
    loop {
        let entry = store.entry(&key).await.unwrap();
        if entry.as_ref().is_some_and(|e| e.step == Step::Done) {
            assert!(entry.unwrap().outcome.unwrap().starts_with("applied; note"));
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "ticket {ticket} was not applied: {entry:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A person's change afterwards: its delivery comes after those of deskpilot's writes (one
    // sender, in order), so once it is on the bus the others were handled.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let person = helpdesk(&sandbox, "demo")
        .update_ticket(&ticket, &TicketPatch { priority: Some("urgent".into()), ..TicketPatch::default() })
        .await
        .unwrap();
    let mut events: Vec<TicketEvent> = Vec::new();
    while !events.iter().any(|e| e.kind == EventKind::TicketUpdated) {
        assert!(started.elapsed() < Duration::from_secs(30), "the person's change never came: {events:?}");
        match channel.basic_get(observer.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap() {
            Some(m) => events.push(TicketEvent::from_json(&m.delivery.data).unwrap()),
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let seen: Vec<(EventKind, time::OffsetDateTime)> =
        events.iter().map(|e| (e.kind, e.occurred_at)).collect();
    assert_eq!(
        seen,
        [
            (EventKind::TicketCreated, created_at(&created)),
            (EventKind::TicketUpdated, person.updated_at.unwrap())
        ],
        "the creation and the person's change; nothing for deskpilot's own patch and note"
    );

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(20), serving).await.expect("serve stops").unwrap().unwrap();
    let _ = raw.close(200, "OK".into()).await;
    delete_bus_topology(&amqp_test_url(), &bus);
}

fn created_at(ticket: &Value) -> time::OffsetDateTime {
    let text = ticket["updated_at"].as_str().expect("updated_at");
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
}
