//! Declares the RabbitMQ topology, idempotently, with the same arguments every time.
//!
//! ```text
//! exchange <exchange> (topic) ──ticket.created──▶ queue <queue> (quorum, x-delivery-limit,
//!                                                  │     dead-letters to exchange <dead_queue>)
//!     ▲ default exchange, TTL expiry              │ Delivery::retry: publish to a tier
//!     └─────── queue <queue>.retry.<delay> ◀──────┘ (quorum, x-message-ttl = delay)
//! exchange <dead_queue> (fanout) ──▶ queue <dead_queue> (quorum)  ◀── Delivery::dead_letter
//! ```
//!
//! Queue arguments cannot change after a queue exists: declaring it again with other arguments is a
//! `PRECONDITION_FAILED` ([`BusError::Topology`]). To change `delivery_limit`, delete the queue
//! (after draining it) or move the setting to a policy.

use std::time::Duration;

use lapin::{
    Channel, ExchangeKind,
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, LongString, ShortString},
};

use crate::bus::{BusError, BusSettings};

/// `x-delivery-limit` of the dead-letter queue. Listing dead letters takes and requeues them, and
/// on RabbitMQ 4.0–4.2 each requeue counts; from 4.0 the default limit is 20 and a message over it
/// with no dead-letter exchange is dropped. A high explicit limit keeps dead letters listable.
const DEAD_QUEUE_DELIVERY_LIMIT: i32 = 1_000_000;

/// The retry-tier queue for `delay`: `<queue>.retry.<secs>s`, or `<queue>.retry.<ms>ms` below a
/// whole second.
pub(crate) fn tier_queue(settings: &BusSettings, delay: Duration) -> String {
    if delay.subsec_millis() == 0 && delay.as_secs() > 0 {
        format!("{}.retry.{}s", settings.queue, delay.as_secs())
    } else {
        format!("{}.retry.{}ms", settings.queue, delay.as_millis())
    }
}

/// The exchange the work queue dead-letters into: named like the dead-letter queue.
pub(crate) fn dead_exchange(settings: &BusSettings) -> &str {
    &settings.dead_queue
}

/// Declares everything (see the module doc). Safe to run any number of times, by any replica.
pub(crate) async fn declare(channel: &Channel, settings: &BusSettings) -> Result<(), BusError> {
    if settings.retry_delays.is_empty() || settings.retry_delays.iter().any(Duration::is_zero) {
        let source = "retry_delays must list at least one delay, none of them zero".into();
        return Err(BusError::Topology { context: "settings".to_owned(), source });
    }
    let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
    exchange(channel, &settings.exchange, ExchangeKind::Topic, durable).await?;
    exchange(channel, dead_exchange(settings), ExchangeKind::Fanout, durable).await?;

    let mut dead_args = quorum();
    dead_args.insert("x-delivery-limit".into(), AMQPValue::LongInt(DEAD_QUEUE_DELIVERY_LIMIT));
    queue(channel, &settings.dead_queue, dead_args).await?;
    bind(channel, &settings.dead_queue, dead_exchange(settings), "").await?;

    let mut work_args = quorum();
    let limit = i32::try_from(settings.delivery_limit).unwrap_or(i32::MAX);
    work_args.insert("x-delivery-limit".into(), AMQPValue::LongInt(limit));
    work_args.insert("x-dead-letter-exchange".into(), long_string(dead_exchange(settings)));
    at_least_once_dead_lettering(&mut work_args);
    queue(channel, &settings.queue, work_args).await?;
    for kind in &settings.kinds {
        bind(channel, &settings.queue, &settings.exchange, kind.as_str()).await?;
    }

    for delay in &settings.retry_delays {
        let mut args = quorum();
        let ttl = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
        // Expired messages go through the default exchange straight back to the work queue.
        args.insert("x-dead-letter-exchange".into(), long_string(""));
        args.insert("x-dead-letter-routing-key".into(), long_string(&settings.queue));
        at_least_once_dead_lettering(&mut args);
        queue(channel, &tier_queue(settings, *delay), args).await?;
    }
    Ok(())
}

fn quorum() -> FieldTable {
    let mut args = FieldTable::default();
    // Quorum queues: replicated, durable; required for delivery-limit and at-least-once dead-lettering.
    args.insert("x-queue-type".into(), long_string("quorum"));
    args
}

/// Without this the broker's own dead-lettering (delivery limit, TTL expiry) is at-most-once: a
/// message can be lost if the target queue is unavailable at that moment. `at-least-once` needs
/// `reject-publish` overflow (https://www.rabbitmq.com/docs/quorum-queues#dead-lettering).
fn at_least_once_dead_lettering(args: &mut FieldTable) {
    args.insert("x-dead-letter-strategy".into(), long_string("at-least-once"));
    args.insert("x-overflow".into(), long_string("reject-publish"));
}

fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

async fn exchange(
    channel: &Channel,
    name: &str,
    kind: ExchangeKind,
    options: ExchangeDeclareOptions,
) -> Result<(), BusError> {
    channel
        .exchange_declare(ShortString::from(name), kind, options, FieldTable::default())
        .await
        .map_err(|e| topology_error(format!("declare exchange `{name}`"), e))
}

async fn queue(channel: &Channel, name: &str, args: FieldTable) -> Result<(), BusError> {
    channel
        .queue_declare(ShortString::from(name), QueueDeclareOptions::durable(), args)
        .await
        .map(drop)
        .map_err(|e| topology_error(format!("declare queue `{name}`"), e))
}

async fn bind(channel: &Channel, queue: &str, exchange: &str, key: &str) -> Result<(), BusError> {
    channel
        .queue_bind(
            ShortString::from(queue),
            ShortString::from(exchange),
            ShortString::from(key),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| topology_error(format!("bind `{queue}` to `{exchange}` with `{key}`"), e))
}

/// A broker refusal (soft/hard AMQP error) is a topology problem; anything else is the connection.
fn topology_error(context: String, e: lapin::Error) -> BusError {
    if e.is_amqp_error() {
        BusError::Topology { context, source: Box::new(e) }
    } else {
        BusError::Connection { context, source: Box::new(e) }
    }
}
