//! The RabbitMQ bus against the real broker (127.0.0.1:5672, guest/guest; override with
//! `DESKPILOT_TEST_AMQP_URL`). Not skipped: without a broker these tests fail and say how to start it.
//!
//! Each test uses its own `test-<uuid>` exchange/queue names and deletes them when it ends (also on
//! failure), so the tests run in parallel and leave nothing behind.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use crate::helpers::{Proxy, require_broker};
use deskpilot::{
    bus::{self, BusError, BusSettings, Consumer, Delivery, Publisher},
    events::{EventKind, EventSource, TicketEvent},
};
use lapin::{
    Channel, Connection, ConnectionProperties,
    options::{
        BasicGetOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
    },
    types::{FieldTable, ShortString},
};

const TIERS: [Duration; 2] = [Duration::from_millis(200), Duration::from_millis(400)];
const WAIT: Duration = Duration::from_secs(10);
/// RabbitMQ expires a message by its own millisecond clock: up to about a millisecond before the
/// TTL has passed on ours.
const TTL_RESOLUTION: Duration = Duration::from_millis(5);

/// `TEST_LOG=debug cargo test --test bus_amqp` shows the bus's logs.
fn init_logs() {
    if let Ok(filter) = std::env::var("TEST_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
}

fn url() -> String {
    std::env::var("DESKPILOT_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// One test's corner of the broker: random names, a raw lapin connection for looking behind the
/// bus, and everything deleted on drop. Create it first so that it is dropped last.
struct TestBroker {
    url: String,
    settings: BusSettings,
    raw: Connection,
}

impl TestBroker {
    async fn new(configure: impl FnOnce(&mut BusSettings)) -> Self {
        let url = url();
        require_broker(&url);
        let prefix = format!("test-{}", uuid::Uuid::new_v4());
        let mut settings = BusSettings::new(format!("{prefix}.events"), format!("{prefix}.triage"));
        settings.retry_delays = TIERS.to_vec();
        settings.prefetch = 10;
        configure(&mut settings);
        let raw = Connection::connect(&url, ConnectionProperties::default()).await.expect("raw connection");
        Self { url, settings, raw }
    }

    async fn connect(&self) -> (Publisher, Consumer) {
        bus::connect(&self.url, &self.settings).await.expect("bus::connect")
    }

    /// Ready messages in `queue` (passive declare).
    async fn ready(&self, queue: &str) -> u32 {
        let channel = self.raw.create_channel().await.unwrap();
        let passive = QueueDeclareOptions { passive: true, ..Default::default() };
        let q =
            channel.queue_declare(queue.into(), passive, FieldTable::default()).await.expect("queue exists");
        let _ = channel.close(200, "OK".into()).await;
        q.message_count()
    }

    /// Waits (up to 3 s) until `queue` has `want` ready messages: a quorum queue applies returns
    /// through its log, a moment after the client sent them. Returns the last count seen.
    async fn ready_soon(&self, queue: &str, want: u32) -> u32 {
        let started = Instant::now();
        loop {
            let ready = self.ready(queue).await;
            if ready == want || started.elapsed() > Duration::from_secs(3) {
                return ready;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Publishes any body to the exchange, as another client could.
    async fn publish_raw(&self, routing_key: &str, body: &[u8]) {
        crate::helpers::publish_raw(&self.raw, &self.settings.exchange, routing_key, body).await;
    }

    /// An exclusive classic queue bound like the work queue, to look at published properties.
    async fn side_queue(&self) -> (Channel, ShortString) {
        let channel = self.raw.create_channel().await.unwrap();
        let exclusive = QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() };
        let queue = channel.queue_declare("".into(), exclusive, FieldTable::default()).await.unwrap();
        channel
            .queue_bind(
                queue.name().clone(),
                self.settings.exchange.as_str().into(),
                "ticket.created".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        (channel, queue.name().clone())
    }

    /// Closes the bus's connection from the broker side (`rabbitmqctl close_connection`), as an
    /// operator, a broker restart or a network cut would. Only this test's connection: the others
    /// run in parallel.
    async fn close_bus_connection(&self) {
        let name = format!("deskpilot {}", self.settings.queue);
        let pid = tokio::task::spawn_blocking(move || {
            for _ in 0..20 {
                let out = rabbitmqctl(&["list_connections", "-s", "pid", "client_properties"]);
                if let Some(line) = out.lines().find(|l| l.contains(&name)) {
                    return line.split_whitespace().next().expect("a pid").to_owned();
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            panic!("no broker connection named {name:?}");
        })
        .await
        .unwrap();
        tokio::task::spawn_blocking(move || rabbitmqctl(&["close_connection", &pid, "test"])).await.unwrap();
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        crate::helpers::delete_bus_topology(&self.url, &self.settings);
    }
}

fn tier_queue(s: &BusSettings, delay: Duration) -> String {
    if delay.subsec_millis() == 0 {
        format!("{}.retry.{}s", s.queue, delay.as_secs())
    } else {
        format!("{}.retry.{}ms", s.queue, delay.as_millis())
    }
}

fn rabbitmqctl(args: &[&str]) -> String {
    let out = Command::new("rabbitmqctl").args(args).output().expect("rabbitmqctl runs");
    assert!(out.status.success(), "rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn created(ticket: &str) -> TicketEvent {
    TicketEvent::new(EventKind::TicketCreated, "demo", ticket, EventSource::Manual)
}

async fn next(consumer: &mut Consumer) -> Delivery {
    match tokio::time::timeout(WAIT, consumer.next()).await {
        Ok(Some(Ok(delivery))) => delivery,
        other => panic!("expected a delivery within {WAIT:?}, got {other:?}"),
    }
}

async fn nothing_within(consumer: &mut Consumer, wait: Duration) {
    if let Ok(item) = tokio::time::timeout(wait, consumer.next()).await {
        panic!("expected no delivery, got {item:?}");
    }
}

#[tokio::test]
async fn publish_then_next_gives_the_event_with_its_properties() {
    let broker = TestBroker::new(|_| {}).await;
    let (publisher, mut consumer) = broker.connect().await;
    let (side, side_queue) = broker.side_queue().await;
    let event = created("1");
    publisher.publish(&event).await.unwrap();

    let d = next(&mut consumer).await;
    assert_eq!(d.event.as_ref().unwrap(), &event);
    assert_eq!((d.attempt, d.redelivered, d.last_error.as_deref()), (1, false, None));
    assert_eq!(d.message_id.as_deref(), Some(event.event_id.as_str()));
    assert_eq!(d.routing_key, "ticket.created");
    assert_eq!(d.body(), event.to_json());

    let copy = side.basic_get(side_queue, BasicGetOptions { no_ack: true }).await.unwrap().expect("a copy");
    let props = &copy.delivery.properties;
    assert_eq!(props.message_id().as_ref().map(|m| m.as_str()), Some(event.event_id.as_str()));
    assert_eq!(props.content_type().as_ref().map(|c| c.as_str()), Some("application/json"));
    assert_eq!(*props.delivery_mode(), Some(2), "persistent");
    assert_eq!(copy.delivery.routing_key.as_str(), "ticket.created");
    d.ack().await.unwrap();
}

#[tokio::test]
async fn ack_removes_the_message_and_an_unacked_one_comes_back() {
    let broker = TestBroker::new(|_| {}).await;
    {
        let (publisher, mut consumer) = broker.connect().await;
        publisher.publish(&created("2a")).await.unwrap();
        publisher.publish(&created("2b")).await.unwrap();
        next(&mut consumer).await.ack().await.unwrap();
        let _unacked = next(&mut consumer).await;
    } // everything dropped: the connection closes and the broker requeues what was not acked
    assert_eq!(broker.ready_soon(&broker.settings.queue, 1).await, 1);
}

#[tokio::test]
async fn retry_walks_the_tiers_with_attempt_and_last_error() {
    let broker = TestBroker::new(|_| {}).await;
    let (publisher, mut consumer) = broker.connect().await;
    let event = created("3");
    publisher.publish(&event).await.unwrap();

    let started = Instant::now();
    next(&mut consumer).await.retry("helpdesk 503", None).await.unwrap();
    let second = next(&mut consumer).await;
    assert!(started.elapsed() + TTL_RESOLUTION >= TIERS[0], "back after {:?}", started.elapsed());
    assert_eq!((second.attempt, second.last_error.as_deref()), (2, Some("helpdesk 503")));
    assert_eq!(second.event.as_ref().unwrap(), &event);
    assert_eq!(second.message_id.as_deref(), Some(event.event_id.as_str()));
    assert_eq!(second.routing_key, "ticket.created", "the original key survives the tier");

    let started = Instant::now();
    second.retry("still 503", None).await.unwrap();
    let third = next(&mut consumer).await;
    assert!(started.elapsed() + TTL_RESOLUTION >= TIERS[1], "back after {:?}", started.elapsed());
    assert_eq!((third.attempt, third.last_error.as_deref()), (3, Some("still 503")));
    third.ack().await.unwrap();
    for tier in TIERS {
        assert_eq!(broker.ready(&tier_queue(&broker.settings, tier)).await, 0);
    }
}

#[tokio::test]
async fn dead_letters_are_listed_without_loss_and_replayed() {
    let broker = TestBroker::new(|_| {}).await;
    let s = &broker.settings;
    let (publisher, mut consumer) = broker.connect().await;
    let events = [created("4a"), created("4b")];
    for event in &events {
        publisher.publish(event).await.unwrap();
    }
    for reason in ["unknown connection", "helpdesk said 404"] {
        next(&mut consumer).await.dead_letter(reason).await.unwrap();
    }
    assert_eq!(broker.ready_soon(&s.dead_queue, 2).await, 2);

    let listed = bus::dead_letters(&broker.url, s, 10).await.unwrap();
    assert_eq!(listed, bus::dead_letters(&broker.url, s, 10).await.unwrap(), "listing keeps them, in order");
    assert_eq!(listed.len(), 2, "{listed:?}");
    let letter = &listed[0];
    assert_eq!(letter.event_or_body.as_ref().unwrap(), &events[0]);
    assert_eq!((letter.reason.as_str(), letter.attempt), ("unknown connection", 1));
    assert_eq!(letter.message_id.as_deref(), Some(events[0].event_id.as_str()));
    assert_eq!(letter.routing_key, "ticket.created");
    assert!(letter.failed_at.is_some());
    assert_eq!(listed[1].reason, "helpdesk said 404");
    assert_eq!(bus::dead_letters(&broker.url, s, 1).await.unwrap(), listed[..1]);
    assert_eq!(broker.ready_soon(&s.dead_queue, 2).await, 2);

    assert_eq!(bus::replay_dead_letters(&broker.url, s, None).await.unwrap(), 2);
    assert_eq!(broker.ready(&s.dead_queue).await, 0);
    for event in &events {
        let again = next(&mut consumer).await;
        assert_eq!(
            (again.event.as_ref().unwrap(), again.attempt, again.last_error.as_deref()),
            (event, 1, None)
        );
        again.ack().await.unwrap();
    }
}

#[tokio::test]
async fn a_dropped_delivery_comes_back() {
    let broker = TestBroker::new(|_| {}).await;
    let (publisher, mut consumer) = broker.connect().await;
    let event = created("4c");
    publisher.publish(&event).await.unwrap();
    drop(next(&mut consumer).await); // e.g. the task handling it panicked
    let again = next(&mut consumer).await;
    assert_eq!((again.event.as_ref().unwrap(), again.redelivered), (&event, true));
    again.ack().await.unwrap();
}

#[tokio::test]
async fn a_missing_exchange_is_a_topology_error_until_declared_again() {
    let broker = TestBroker::new(|_| {}).await;
    let (publisher, _consumer) = broker.connect().await;
    let channel = broker.raw.create_channel().await.unwrap();
    let exchange = broker.settings.exchange.as_str();
    channel.exchange_delete(exchange.into(), ExchangeDeleteOptions::default()).await.unwrap();
    let err = publisher.publish(&created("4d")).await.unwrap_err();
    assert!(matches!(err, BusError::Topology { .. }), "{err:?}");
    assert!(!err.is_retryable());
    bus::setup(&broker.url, &broker.settings).await.unwrap();
    publisher.publish(&created("4d")).await.expect("a fresh channel after the broker closed the old one");
}

#[tokio::test]
async fn a_malformed_body_arrives_as_an_error_and_can_be_dead_lettered() {
    let broker = TestBroker::new(|_| {}).await;
    let (_publisher, mut consumer) = broker.connect().await;
    broker.publish_raw("ticket.created", b"{not json").await;
    let d = next(&mut consumer).await;
    assert!(d.event.is_err(), "{d:?}");
    assert_eq!((d.body(), d.message_id.as_deref()), (&b"{not json"[..], None));
    d.dead_letter("bad payload").await.unwrap();

    let letters = bus::dead_letters(&broker.url, &broker.settings, 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event_or_body, Err(b"{not json".to_vec()));
    assert_eq!(letters[0].reason, "bad payload");
}

#[tokio::test]
async fn updates_go_to_the_outcomes_queue_and_an_unbound_kind_is_unroutable() {
    let broker = TestBroker::new(|_| {}).await;
    let (publisher, _consumer) = broker.connect().await;
    let updated = TicketEvent::new(EventKind::TicketUpdated, "demo", "5", EventSource::Poll);
    publisher.publish(&updated).await.expect("ticket.updated is bound to the outcomes queue");
    assert_eq!(broker.ready_soon(&broker.settings.outcomes().queue, 1).await, 1);
    assert_eq!(broker.ready(&broker.settings.queue).await, 0, "the work queue takes only new tickets");
    let bus = deskpilot::bus::Bus::Amqp { url: broker.url.clone(), settings: broker.settings.clone() };
    let mut outcomes = bus.connect_outcomes().await.unwrap();
    let d = next(&mut outcomes).await;
    assert_eq!(d.event.as_ref().unwrap(), &updated);
    d.ack().await.unwrap();
    outcomes.close().await;

    // A work queue bound to updates only: its outcomes queue too, so a new ticket has no queue.
    let narrow = TestBroker::new(|s| s.kinds = vec![EventKind::TicketUpdated]).await;
    let (publisher, _consumer) = narrow.connect().await;
    let err = publisher.publish(&created("5")).await.unwrap_err();
    assert!(matches!(err, BusError::Unroutable { .. }), "{err:?}");
    assert!(!err.is_retryable());
    publisher.publish(&updated).await.expect("the channel still works");
}

#[tokio::test]
async fn requeue_redelivers_with_the_flag_and_the_same_attempt() {
    let broker = TestBroker::new(|_| {}).await;
    let (publisher, mut consumer) = broker.connect().await;
    let event = created("6");
    publisher.publish(&event).await.unwrap();
    next(&mut consumer).await.requeue().await.unwrap();
    let again = next(&mut consumer).await;
    assert_eq!((again.event.as_ref().unwrap(), again.attempt, again.redelivered), (&event, 1, true));
    again.ack().await.unwrap();
}

#[tokio::test]
async fn the_broker_dead_letters_past_the_delivery_limit() {
    let broker = TestBroker::new(|s| s.delivery_limit = 1).await;
    let (publisher, mut consumer) = broker.connect().await;
    publisher.publish(&created("7")).await.unwrap();
    // A crash loop: delivered, never acked, given back; the broker gives up by itself.
    let mut deliveries = 0;
    while let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_secs(1), consumer.next()).await {
        deliveries += 1;
        assert!(deliveries <= 3, "the delivery limit was not applied");
        d.requeue().await.unwrap();
    }
    let letters = bus::dead_letters(&broker.url, &broker.settings, 10).await.unwrap();
    let [letter] = letters.as_slice() else { panic!("one dead letter, got {letters:?}") };
    assert_eq!(letter.reason, "broker: delivery_limit");
    assert_eq!(letter.routing_key, "ticket.created");
}

#[tokio::test]
async fn the_consumer_survives_a_closed_connection() {
    init_logs();
    let broker = TestBroker::new(|_| {}).await;
    let (publisher, mut consumer) = broker.connect().await;
    let before = created("8");
    publisher.publish(&before).await.unwrap();
    let stale = next(&mut consumer).await; // in flight when the connection goes

    broker.close_bus_connection().await;
    let waiting = tokio::spawn(async move {
        let first = next(&mut consumer).await;
        (first, consumer)
    });
    let (redelivered, mut consumer) =
        tokio::time::timeout(WAIT, waiting).await.expect("redelivered").unwrap();
    assert_eq!(redelivered.event.as_ref().unwrap(), &before);
    assert!(redelivered.redelivered);
    assert!(matches!(stale.ack().await, Err(BusError::StaleDelivery)), "an ack on the dead channel fails");
    redelivered.ack().await.unwrap();

    let after = created("9");
    publisher.publish(&after).await.expect("the publisher reconnected");
    let d = next(&mut consumer).await;
    assert_eq!(d.event.as_ref().unwrap(), &after);
    d.ack().await.unwrap();
}

#[tokio::test]
async fn the_consumer_comes_back_after_the_broker_cancels_it() {
    init_logs();
    let broker = TestBroker::new(|_| {}).await;
    let (publisher, mut consumer) = broker.connect().await;
    // Deleting the queue cancels its consumers (basic.cancel from the broker): not something lapin
    // recovers, so the supervisor re-declares the topology and consumes again.
    let channel = broker.raw.create_channel().await.unwrap();
    channel.queue_delete(broker.settings.queue.as_str().into(), QueueDeleteOptions::default()).await.unwrap();
    let waiting = tokio::spawn(async move { next(&mut consumer).await });

    let event = created("10");
    let started = Instant::now();
    loop {
        match publisher.publish(&event).await {
            Ok(()) => break,
            Err(BusError::Unroutable { .. }) if started.elapsed() < WAIT => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("publish: {e:?}"),
        }
    }
    let d = tokio::time::timeout(WAIT, waiting).await.expect("delivered").unwrap();
    assert_eq!(d.event.as_ref().unwrap(), &event);
    d.ack().await.unwrap();
}

#[tokio::test]
async fn the_consumer_outlasts_an_unreachable_broker() {
    outage_then_delivery(Duration::from_secs(6), "11").await;
}

#[tokio::test]
async fn the_consumer_reconnects_after_the_clients_own_recovery_gives_up() {
    // Down for longer than lapin's own recovery tries (about 5 s): its connection then still
    // reads as reconnecting, but can no longer open a channel.
    outage_then_delivery(Duration::from_secs(10), "12").await;
}

/// Cuts the consumer off from the broker for `down` (connections cut, new ones refused: lapin's
/// recovery gives up), publishes `ticket`'s event meanwhile, restores the way and expects the
/// event delivered within 20 s.
async fn outage_then_delivery(down: Duration, ticket: &str) {
    init_logs();
    let broker = TestBroker::new(|_| {}).await;
    let proxy = Proxy::start(&broker.url).await;
    let (_publisher, mut consumer) =
        bus::connect(&proxy.url, &broker.settings).await.expect("connect via proxy");

    proxy.set_up(false);
    let waiting = tokio::spawn(async move {
        let mut failed_attempts = 0;
        loop {
            match consumer.next().await {
                Some(Ok(d)) => return (d, failed_attempts),
                Some(Err(e)) => {
                    assert!(e.is_retryable(), "{e:?}");
                    failed_attempts += 1;
                }
                None => panic!("the consumer ended"),
            }
        }
    });
    tokio::time::sleep(down).await;
    let event = created(ticket);
    broker.publish_raw("ticket.created", &event.to_json()).await;
    proxy.set_up(true);

    let (d, failed_attempts) =
        tokio::time::timeout(Duration::from_secs(20), waiting).await.expect("delivered").unwrap();
    eprintln!("reconnected after {failed_attempts} failed attempts");
    assert_eq!(d.event.as_ref().unwrap(), &event);
    d.ack().await.unwrap();
}

/// A confirm that never comes (the broker's answers lost on a connection that stays open) fails
/// the publish, retryable, after the confirm timeout and its retries, instead of hanging whoever
/// publishes: a webhook answer, a retry, shutdown. Once answers flow again, publishing works.
#[tokio::test]
async fn a_confirm_that_never_comes_times_out_into_a_retryable_error() {
    let broker = TestBroker::new(|s| s.confirm_timeout = Duration::from_millis(500)).await;
    let proxy = Proxy::start(&broker.url).await;
    let (publisher, _consumer) = bus::connect(&proxy.url, &broker.settings).await.expect("connect via proxy");
    publisher.publish(&created("21")).await.expect("published while answers flow");

    proxy.set_frozen(true);
    let started = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(30), publisher.publish(&created("22")))
        .await
        .expect("the publish gives up instead of hanging")
        .unwrap_err();
    eprintln!("gave up after {:?}: {err}", started.elapsed());
    assert!(err.is_retryable(), "{err:?}");
    assert!(format!("{err:?}").contains("no confirm from RabbitMQ within 0.5s"), "{err:?}");

    proxy.set_frozen(false);
    tokio::time::timeout(Duration::from_secs(30), publisher.publish(&created("23")))
        .await
        .expect("publishing works again")
        .expect("published once answers flow again");
}

#[tokio::test]
async fn prefetch_bounds_the_unacked_deliveries() {
    let broker = TestBroker::new(|s| s.prefetch = 2).await;
    let (publisher, mut consumer) = broker.connect().await;
    for i in 0..5 {
        publisher.publish(&created(&i.to_string())).await.unwrap();
    }
    let a = next(&mut consumer).await;
    let b = next(&mut consumer).await;
    nothing_within(&mut consumer, Duration::from_millis(300)).await;
    assert_eq!(broker.ready(&broker.settings.queue).await, 3);
    // The broker's own view (its queue metrics are refreshed every few seconds).
    let queue = broker.settings.queue.clone();
    let started = Instant::now();
    let listed = tokio::task::spawn_blocking(move || {
        let mut listed = None;
        while started.elapsed() < WAIT {
            listed = rabbitmqctl(&["list_queues", "-s", "name", "messages_ready", "messages_unacknowledged"])
                .lines()
                .find(|l| l.split_whitespace().next() == Some(queue.as_str()))
                .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "));
            if listed.as_deref() == Some("3 2") {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        listed
    })
    .await
    .unwrap();
    eprintln!("rabbitmqctl agreed after {:?}", started.elapsed());
    assert_eq!(listed.as_deref(), Some("3 2"), "ready, unacknowledged");
    a.ack().await.unwrap();
    let c = next(&mut consumer).await;
    for d in [b, c] {
        d.ack().await.unwrap();
    }
}

#[tokio::test]
async fn close_stops_consuming_and_requeues_what_was_not_handed_out() {
    let broker = TestBroker::new(|_| {}).await;
    let (publisher, mut consumer) = broker.connect().await;
    for i in 0..3 {
        publisher.publish(&created(&i.to_string())).await.unwrap();
    }
    let in_flight = next(&mut consumer).await;
    tokio::time::sleep(Duration::from_millis(100)).await; // the other two reach the client's buffer
    consumer.close().await;
    assert!(consumer.next().await.is_none());
    assert_eq!(broker.ready_soon(&broker.settings.queue, 2).await, 2, "the buffered two were given back");
    in_flight.ack().await.expect("in-flight deliveries can still be acked");
    drop((publisher, consumer));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(broker.ready(&broker.settings.queue).await, 2, "the acked one is gone");
}

#[tokio::test]
async fn setup_is_idempotent_and_refuses_changed_arguments() {
    let broker = TestBroker::new(|_| {}).await;
    bus::setup(&broker.url, &broker.settings).await.unwrap();
    bus::setup(&broker.url, &broker.settings).await.unwrap();
    let mut changed = broker.settings.clone();
    changed.delivery_limit += 1;
    let err = bus::setup(&broker.url, &changed).await.unwrap_err();
    assert!(matches!(err, BusError::Topology { .. }), "{err:?}");
    assert!(!err.is_retryable());
}
