//! The in-process bus: the same behaviour as the RabbitMQ bus (`bus_amqp`).

use std::time::{Duration, Instant};

use deskpilot::{
    bus::{BusError, BusSettings, Consumer, Delivery, Publisher, memory},
    events::{EventKind, EventSource, TicketEvent},
};
use tokio_util::sync::CancellationToken;

const TIERS: [Duration; 2] = [Duration::from_millis(100), Duration::from_millis(200)];

fn settings() -> BusSettings {
    let mut s = BusSettings::new("test.events", "test.triage");
    s.retry_delays = TIERS.to_vec();
    s.prefetch = 10;
    s
}

fn bus(settings: &BusSettings) -> (Publisher, Consumer, memory::MemoryBus) {
    let (publisher, consumer) = memory::pair(settings);
    let bus = publisher.as_memory().expect("a memory publisher").clone();
    (publisher, consumer, bus)
}

fn created(ticket: &str) -> TicketEvent {
    TicketEvent::new(EventKind::TicketCreated, "demo", ticket, EventSource::Manual)
}

async fn next(consumer: &mut Consumer) -> Delivery {
    tokio::time::timeout(Duration::from_secs(5), consumer.next())
        .await
        .expect("a delivery within 5 s")
        .expect("the consumer is open")
        .expect("no bus error")
}

async fn nothing_within(consumer: &mut Consumer, wait: Duration) {
    if let Ok(item) = tokio::time::timeout(wait, consumer.next()).await {
        panic!("expected no delivery, got {item:?}");
    }
}

#[test]
fn default_names_are_the_documented_ones() {
    let s = BusSettings::default();
    assert_eq!(
        (s.exchange.as_str(), s.queue.as_str(), s.dead_queue.as_str()),
        ("deskpilot.events", "deskpilot.triage", "deskpilot.dead")
    );
    assert_eq!(s.retry_delays, [5, 30, 120, 600].map(Duration::from_secs));
    assert_eq!(s.delivery_limit, 10);
    assert_eq!(BusSettings::new("x", "plain").dead_queue, "plain.dead");
}

#[test]
fn retry_delay_walks_the_tiers_and_honours_retry_after() {
    let s = BusSettings::default();
    let secs = |n| Duration::from_secs(n);
    let cases = [
        (1, None, secs(5)),
        (2, None, secs(30)),
        (4, None, secs(600)),
        (9, None, secs(600)),             // clamped to the last tier
        (1, Some(secs(3)), secs(5)),      // shorter than the tier: the tier
        (1, Some(secs(45)), secs(120)),   // the first tier at least as long
        (1, Some(secs(3600)), secs(600)), // longer than every tier: the last
        (0, None, secs(5)),
    ];
    for (attempt, retry_after, want) in cases {
        assert_eq!(
            s.retry_delay(attempt, retry_after),
            want,
            "attempt {attempt}, retry_after {retry_after:?}"
        );
    }
}

#[tokio::test]
async fn publish_then_next_gives_the_event_at_attempt_one() {
    let (publisher, mut consumer, bus) = bus(&settings());
    let event = created("1");
    publisher.publish(&event).await.unwrap();
    let d = next(&mut consumer).await;
    assert_eq!(d.event.as_ref().unwrap(), &event);
    assert_eq!((d.attempt, d.redelivered), (1, false));
    assert_eq!(d.message_id.as_deref(), Some(event.event_id.as_str()));
    assert_eq!(d.routing_key, "ticket.created");
    assert_eq!(d.body(), event.to_json());
    assert_eq!((bus.ready(), bus.unacked()), (0, 1));
    d.ack().await.unwrap();
    assert_eq!((bus.ready(), bus.unacked()), (0, 0));
    nothing_within(&mut consumer, Duration::from_millis(50)).await;
}

#[tokio::test]
async fn retry_walks_the_tiers_with_attempt_and_last_error() {
    let (publisher, mut consumer, bus) = bus(&settings());
    let event = created("2");
    publisher.publish(&event).await.unwrap();
    let first = next(&mut consumer).await;
    let started = Instant::now();
    first.retry("helpdesk 503", None).await.unwrap();
    assert_eq!((bus.unacked(), bus.scheduled()), (0, 1));

    let second = next(&mut consumer).await;
    assert!(started.elapsed() >= TIERS[0], "came back after {:?}", started.elapsed());
    assert_eq!(second.attempt, 2);
    assert_eq!(second.last_error.as_deref(), Some("helpdesk 503"));
    assert_eq!(second.event.as_ref().unwrap(), &event);
    let started = Instant::now();
    second.retry("still 503", None).await.unwrap();

    let third = next(&mut consumer).await;
    assert!(started.elapsed() >= TIERS[1], "came back after {:?}", started.elapsed());
    assert_eq!((third.attempt, third.last_error.as_deref()), (3, Some("still 503")));
    third.ack().await.unwrap();
    assert_eq!((bus.ready(), bus.unacked(), bus.scheduled()), (0, 0, 0));
}

#[tokio::test]
async fn dead_letters_are_listed_without_loss_and_replayed() {
    let (publisher, mut consumer, bus) = bus(&settings());
    let event = created("3");
    publisher.publish(&event).await.unwrap();
    next(&mut consumer).await.dead_letter("unknown connection").await.unwrap();

    let listed = bus.dead_letters(10);
    assert_eq!(listed, bus.dead_letters(10), "listing does not remove");
    let [letter] = listed.as_slice() else { panic!("one dead letter, got {listed:?}") };
    assert_eq!(letter.event_or_body.as_ref().unwrap(), &event);
    assert_eq!((letter.reason.as_str(), letter.attempt), ("unknown connection", 1));
    assert_eq!(letter.message_id.as_deref(), Some(event.event_id.as_str()));
    assert_eq!(letter.routing_key, "ticket.created");
    assert!(letter.failed_at.is_some());

    assert_eq!(bus.replay_dead_letters(None), 1);
    assert!(bus.dead_letters(10).is_empty());
    let again = next(&mut consumer).await;
    assert_eq!((again.event.as_ref().unwrap(), again.attempt), (&event, 1));
    again.ack().await.unwrap();
}

#[tokio::test]
async fn a_malformed_body_arrives_as_an_error_and_can_be_dead_lettered() {
    let (_publisher, mut consumer, bus) = bus(&settings());
    bus.publish_raw("ticket.created", b"{not json".to_vec(), None).unwrap();
    let d = next(&mut consumer).await;
    assert!(d.event.is_err(), "{d:?}");
    assert_eq!(d.body(), b"{not json");
    d.dead_letter("bad payload").await.unwrap();
    let letters = bus.dead_letters(10);
    assert_eq!(letters[0].event_or_body, Err(b"{not json".to_vec()));
    assert_eq!(letters[0].reason, "bad payload");
}

#[tokio::test]
async fn updates_go_to_the_outcomes_queue_and_an_unbound_kind_is_unroutable() {
    let (publisher, _consumer, bus) = bus(&settings());
    let updated = TicketEvent::new(EventKind::TicketUpdated, "demo", "4", EventSource::Poll);
    publisher.publish(&updated).await.unwrap();
    assert_eq!((bus.ready(), bus.outcomes().ready()), (0, 1), "only the outcomes queue takes updates");
    let mut outcomes = bus.outcomes().consumer();
    let d = next(&mut outcomes).await;
    assert_eq!(d.event.as_ref().unwrap(), &updated);
    d.ack().await.unwrap();
    publisher.publish(&created("4")).await.unwrap();
    assert_eq!((bus.ready(), bus.outcomes().ready()), (1, 0), "and the work queue only new tickets");

    let err = bus.publish_raw("ticket.deleted", b"{}".to_vec(), None).unwrap_err();
    assert!(matches!(err, BusError::Unroutable { .. }), "{err:?}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn requeue_redelivers_with_the_flag_and_the_same_attempt() {
    let (publisher, mut consumer, _bus) = bus(&settings());
    let event = created("5");
    publisher.publish(&event).await.unwrap();
    next(&mut consumer).await.requeue().await.unwrap();
    let again = next(&mut consumer).await;
    assert_eq!((again.event.as_ref().unwrap(), again.attempt, again.redelivered), (&event, 1, true));
    again.ack().await.unwrap();
}

#[tokio::test]
async fn prefetch_bounds_the_unacked_deliveries() {
    let mut s = settings();
    s.prefetch = 2;
    let (publisher, mut consumer, bus) = bus(&s);
    for i in 0..5 {
        publisher.publish(&created(&i.to_string())).await.unwrap();
    }
    let a = next(&mut consumer).await;
    let b = next(&mut consumer).await;
    nothing_within(&mut consumer, Duration::from_millis(100)).await;
    assert_eq!((bus.ready(), bus.unacked()), (3, 2));
    a.ack().await.unwrap();
    let c = next(&mut consumer).await;
    assert_eq!((bus.ready(), bus.unacked()), (2, 2));
    for d in [b, c] {
        d.ack().await.unwrap();
    }
}

#[tokio::test]
async fn an_unsettled_delivery_comes_back_and_dies_past_the_delivery_limit() {
    let mut s = settings();
    s.delivery_limit = 2;
    let (publisher, mut consumer, bus) = bus(&s);
    publisher.publish(&created("6")).await.unwrap();
    for round in 1..=2 {
        let d = next(&mut consumer).await;
        assert_eq!(d.redelivered, round > 1);
        drop(d); // as if the worker crashed: the "channel" gives it back
    }
    let d = next(&mut consumer).await;
    assert!(d.redelivered);
    d.requeue().await.unwrap(); // the third return is past the limit
    nothing_within(&mut consumer, Duration::from_millis(50)).await;
    let letters = bus.dead_letters(10);
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason, "broker: delivery_limit");
}

#[tokio::test]
async fn close_ends_the_consumer_while_in_flight_deliveries_can_still_be_acked() {
    let (publisher, mut consumer, bus) = bus(&settings());
    publisher.publish(&created("7")).await.unwrap();
    let in_flight = next(&mut consumer).await;
    consumer.close().await;
    assert!(consumer.next().await.is_none());
    in_flight.ack().await.unwrap();
    assert_eq!(bus.unacked(), 0);

    let shutdown = CancellationToken::new();
    let mut consumer = bus.consumer().with_shutdown(&shutdown);
    let waiting = tokio::spawn(async move { consumer.next().await.is_none() });
    tokio::time::sleep(Duration::from_millis(20)).await;
    shutdown.cancel();
    assert!(tokio::time::timeout(Duration::from_secs(1), waiting).await.unwrap().unwrap());
}
