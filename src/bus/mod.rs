//! The bus: `TicketEvent`s from ingest to the worker, behind one small interface.
//!
//! Two backends return the same types:
//! - [`connect`] (RabbitMQ, `amqp/`): a topic exchange, a quorum work queue with manual acks,
//!   TTL retry-tier queues and a dead-letter queue; publishes wait for publisher confirms; the
//!   consumer reconnects by itself.
//! - [`memory::pair`] (in process, `memory.rs`): the same semantics with tokio timers for the retry
//!   tiers and the dead letters kept in memory ([`memory::MemoryBus`]).
//!
//! Delivery is at-least-once: a message can arrive again (`redelivered`, a retry whose ack was lost,
//! a replay), so the worker keys its effects on `event_id`.
//!
//! The work queue is bound to `ticket.created` and the outcomes queue
//! ([`BusSettings::outcomes`]) to `ticket.updated`. Publishing a kind no queue is bound to is an
//! [`BusError::Unroutable`] error (publishes are `mandatory`).

mod amqp;
pub mod memory;
mod settings;

use std::{fmt, time::Duration};

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::events::{EventDecodeError, TicketEvent};

pub use amqp::{connect, dead_letters, replay_dead_letters, setup};

/// Whether a consumer is consuming, for readiness: no problem while it is; the problem while it
/// waits for the broker (a lost connection being recovered, a reconnection refused).
#[derive(Clone, Default)]
pub struct BusHealth {
    /// What the consumer last ran into, until it consumes again.
    seen: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    /// The RabbitMQ link, whose connection lapin may be recovering without the consumer knowing.
    link: Option<std::sync::Arc<amqp::Link>>,
}

impl BusHealth {
    /// What keeps the consumer from consuming, if anything.
    pub async fn problem(&self) -> Option<String> {
        let seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        match (seen, &self.link) {
            (Some(problem), _) => Some(problem),
            (None, Some(link)) => link.down().await,
            (None, None) => None,
        }
    }

    fn set(&self, problem: Option<String>) {
        *self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = problem;
    }
}

impl fmt::Debug for BusHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusHealth").field("seen", &self.seen).finish_non_exhaustive()
    }
}
pub use settings::BusSettings;

/// Header: how many times the message was tried before this delivery (absent = never).
pub const HEADER_ATTEMPT: &str = "x-deskpilot-attempt";
/// Header: why the previous try failed (set by [`Delivery::retry`]).
pub const HEADER_LAST_ERROR: &str = "x-deskpilot-last-error";
/// Header: why the message was dead-lettered (set by [`Delivery::dead_letter`]).
pub const HEADER_REASON: &str = "x-deskpilot-reason";
/// Header: when the message was dead-lettered (RFC 3339).
pub const HEADER_FAILED_AT: &str = "x-deskpilot-failed-at";
/// Header: the routing key the message was first published with (kept across retries).
pub const HEADER_ORIGINAL_ROUTING_KEY: &str = "x-deskpilot-original-routing-key";

/// Where events travel: a RabbitMQ broker or the in-process bus, with the same names and tunables.
#[derive(Clone)]
pub enum Bus {
    /// RabbitMQ at `url` (which may carry a password: never print it, see [`Bus::describe`]).
    Amqp {
        /// `amqp://` or `amqps://` URL.
        url: String,
        /// Names and tunables.
        settings: BusSettings,
    },
    /// The in-process bus: one process publishes and consumes.
    Memory(memory::MemoryBus),
}

impl Bus {
    /// Names and tunables.
    pub fn settings(&self) -> &BusSettings {
        match self {
            Self::Amqp { settings, .. } => settings,
            Self::Memory(bus) => bus.settings(),
        }
    }

    /// A publisher and a consumer; on RabbitMQ one connection of their own, with the topology
    /// declared.
    pub async fn connect(&self) -> Result<(Publisher, Consumer), BusError> {
        match self {
            Self::Amqp { url, settings } => connect(url, settings).await,
            Self::Memory(bus) => Ok((bus.publisher(), bus.consumer())),
        }
    }

    /// A consumer of the outcomes queue ([`BusSettings::outcomes`]); on RabbitMQ a connection of
    /// its own, with the topology declared.
    pub async fn connect_outcomes(&self) -> Result<Consumer, BusError> {
        match self {
            Self::Amqp { url, settings } => {
                let (publisher, consumer) = connect(url, &settings.outcomes()).await?;
                publisher.close().await;
                Ok(consumer)
            }
            Self::Memory(bus) => Ok(bus.outcomes().consumer()),
        }
    }

    /// `in-process` or `RabbitMQ` with the exchange and queue, for logs and summaries.
    pub fn describe(&self) -> String {
        let s = self.settings();
        match self {
            Self::Amqp { .. } => format!("RabbitMQ (exchange {}, queue {})", s.exchange, s.queue),
            Self::Memory(_) => "in-process".to_owned(),
        }
    }
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

type Cause = Box<dyn std::error::Error + Send + Sync>;

/// What went wrong on the bus, classified by what the caller does next ([`BusError::is_retryable`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// The broker cannot be reached or the connection broke. Retry later.
    #[error("RabbitMQ connection failed ({context})")]
    Connection {
        /// What was being done.
        context: String,
        /// The client's error.
        #[source]
        source: Cause,
    },
    /// The bus was closed by this process ([`Publisher::close`]).
    #[error("the bus is closed")]
    Closed,
    /// A publish failed before the broker confirmed it. Retry (the message may exist twice).
    #[error("publish to `{exchange}` with routing key `{routing_key}` failed")]
    Publish {
        /// Exchange (`""` = the default exchange).
        exchange: String,
        /// Routing key.
        routing_key: String,
        /// The client's error.
        #[source]
        source: Cause,
    },
    /// The broker refused the message (`basic.nack`). Retry.
    #[error("the broker refused the message to `{exchange}` with routing key `{routing_key}`")]
    Nacked {
        /// Exchange.
        exchange: String,
        /// Routing key.
        routing_key: String,
    },
    /// No queue is bound for the routing key: the message was returned, not stored. Permanent
    /// until the topology changes (see [`BusSettings::kinds`]).
    #[error("no queue is bound to `{exchange}` for routing key `{routing_key}`: {reply}")]
    Unroutable {
        /// Exchange.
        exchange: String,
        /// Routing key.
        routing_key: String,
        /// The broker's reply text (`NO_ROUTE`).
        reply: String,
    },
    /// Declaring or using the topology failed: a missing exchange/queue, or one that exists with
    /// other arguments (`PRECONDITION_FAILED`). Needs an operator.
    #[error("RabbitMQ topology error ({context})")]
    Topology {
        /// What was being declared or used.
        context: String,
        /// The broker's error.
        #[source]
        source: Cause,
    },
    /// Sending the ack/nack failed. The broker redelivers the message.
    #[error("acknowledging the delivery failed")]
    Ack {
        /// The client's error.
        #[source]
        source: Cause,
    },
    /// The delivery's channel is gone (connection lost and recovered, or closed), so it can no longer
    /// be acked: the broker has requeued it and will deliver it again. Log it; nothing to do.
    #[error("the delivery's channel is gone; the broker will deliver the message again")]
    StaleDelivery,
}

impl BusError {
    /// True when trying again later can succeed (broker loss, nack); false for topology and
    /// routing errors, a closed bus, and failed acks (the broker redelivers those by itself).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Connection { .. } | Self::Publish { .. } | Self::Nacked { .. })
    }
}

/// Publishes events; cheap to clone (one shared connection and confirm channel per bus).
#[derive(Clone)]
pub struct Publisher(PublisherInner);

#[derive(Clone)]
enum PublisherInner {
    Amqp(amqp::AmqpPublisher),
    Memory(memory::MemoryBus),
}

impl Publisher {
    /// Publishes `event` to the exchange with routing key = `kind`, `message_id` = `event_id`,
    /// `content_type: application/json`, persistent and `mandatory`.
    ///
    /// Returns once the broker has confirmed it (publisher confirms). An unroutable event (no
    /// binding for its kind) is [`BusError::Unroutable`]; a connection loss is retried briefly on a
    /// fresh connection, then returned as a retryable error.
    pub async fn publish(&self, event: &TicketEvent) -> Result<(), BusError> {
        match &self.0 {
            PublisherInner::Amqp(p) => p.publish_event(event).await,
            PublisherInner::Memory(m) => m.publish_event(event),
        }
    }

    /// Waits for outstanding confirms and closes the connection; later publishes fail with
    /// [`BusError::Closed`]. Affects every clone. A no-op for the in-process bus.
    pub async fn close(&self) {
        if let PublisherInner::Amqp(p) = &self.0 {
            p.close().await;
        }
    }

    /// The in-process bus behind this publisher, for tests that inspect it.
    pub fn as_memory(&self) -> Option<&memory::MemoryBus> {
        match &self.0 {
            PublisherInner::Memory(m) => Some(m),
            PublisherInner::Amqp(_) => None,
        }
    }
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.0 {
            PublisherInner::Amqp(_) => "amqp",
            PublisherInner::Memory(_) => "memory",
        };
        f.debug_tuple("Publisher").field(&kind).finish()
    }
}

/// Receives deliveries from the work queue.
pub struct Consumer(ConsumerInner);

enum ConsumerInner {
    Amqp(Box<amqp::AmqpConsumer>),
    Memory(memory::MemoryConsumer),
}

impl Consumer {
    /// The next delivery.
    ///
    /// - `Some(Ok(delivery))`: settle it with exactly one of `ack`, `retry`, `dead_letter`, `requeue`.
    /// - `Some(Err(e))`: a reconnection attempt failed (broker down); informational, the consumer keeps
    ///   trying with backoff (capped at 10 s): just call `next()` again.
    /// - `None`: the consumer ended ([`Consumer::close`] or its shutdown token). Final.
    ///
    /// Connection loss is handled inside: the consumer reconnects, re-declares the topology and
    /// consumes again. Deliveries handed out before the loss can no longer be acked
    /// ([`BusError::StaleDelivery`]); the broker delivers them again (`redelivered = true`).
    ///
    /// Cancel-safe: dropping the future (e.g. in `select!`) loses no delivery.
    pub async fn next(&mut self) -> Option<Result<Delivery, BusError>> {
        match &mut self.0 {
            ConsumerInner::Amqp(c) => c.next().await,
            ConsumerInner::Memory(c) => c.next().await.map(Ok),
        }
    }

    /// Whether this consumer is consuming (the in-process bus always is).
    pub fn health(&self) -> BusHealth {
        match &self.0 {
            ConsumerInner::Amqp(c) => c.health(),
            ConsumerInner::Memory(_) => BusHealth::default(),
        }
    }

    /// Stops consuming (`basic.cancel`): deliveries received but not yet handed out are requeued,
    /// `next()` returns `None` from now on. Deliveries already handed out can still be settled.
    pub async fn close(&mut self) {
        match &mut self.0 {
            ConsumerInner::Amqp(c) => c.close().await,
            ConsumerInner::Memory(c) => c.close(),
        }
    }

    /// Ties the consumer to a shutdown token: once `token` is cancelled, `next()` closes the consumer
    /// (as [`Consumer::close`]) and returns `None`.
    pub fn with_shutdown(mut self, token: &CancellationToken) -> Self {
        let child = token.child_token();
        match &mut self.0 {
            ConsumerInner::Amqp(c) => c.set_shutdown(child),
            ConsumerInner::Memory(c) => c.set_shutdown(child),
        }
        self
    }
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.0 {
            ConsumerInner::Amqp(_) => "amqp",
            ConsumerInner::Memory(_) => "memory",
        };
        f.debug_tuple("Consumer").field(&kind).finish()
    }
}

/// One message from the work queue. Settle it with exactly one of [`ack`](Self::ack),
/// [`retry`](Self::retry), [`dead_letter`](Self::dead_letter) or [`requeue`](Self::requeue).
/// Dropped unsettled (a panicking task), it is requeued in the background; don't rely on that.
pub struct Delivery {
    /// The event, or why the body is not one (dead-letter those).
    pub event: Result<TicketEvent, EventDecodeError>,
    /// 1-based try number: `x-deskpilot-attempt` + 1, or 1.
    pub attempt: u32,
    /// The broker delivered it before (to this or another consumer); it may have been processed.
    pub redelivered: bool,
    /// The AMQP `message_id` (= `event_id` for events published by [`Publisher::publish`]).
    pub message_id: Option<String>,
    /// The routing key it was first published with (kept across retries).
    pub routing_key: String,
    /// Why the previous try failed (`x-deskpilot-last-error`), if it was retried.
    pub last_error: Option<String>,
    body: Vec<u8>,
    handle: DeliveryHandle,
}

enum DeliveryHandle {
    Amqp(Box<amqp::AmqpHandle>),
    Memory(memory::MemoryHandle),
}

impl Delivery {
    /// Done: removes the message from the queue.
    ///
    /// [`BusError::StaleDelivery`] when the channel it came on is gone (the broker redelivers it).
    pub async fn ack(self) -> Result<(), BusError> {
        match self.handle {
            DeliveryHandle::Amqp(h) => h.ack().await,
            DeliveryHandle::Memory(h) => h.ack(),
        }
    }

    /// Tries again later: re-publishes the body to the retry tier chosen by
    /// [`BusSettings::retry_delay`]`(attempt, retry_after)` with `x-deskpilot-attempt = attempt` and
    /// `x-deskpilot-last-error = reason`, waits for the broker's confirm, then acks this delivery.
    ///
    /// If the publish fails the delivery is given back (requeued, `redelivered = true`) and the error
    /// returned. If only the final ack fails ([`BusError::StaleDelivery`]) the message exists twice,
    /// the copy in the tier and the redelivered original: at-least-once, dedupe on `event_id`.
    pub async fn retry(self, reason: &str, retry_after: Option<Duration>) -> Result<(), BusError> {
        let outgoing = Outgoing::from_delivery(&self);
        match self.handle {
            DeliveryHandle::Amqp(h) => h.retry(outgoing, reason, retry_after).await,
            DeliveryHandle::Memory(h) => h.retry(outgoing, reason, retry_after),
        }
    }

    /// Brings it back after `delay` (the first retry tier at least as long, or the last) without
    /// counting this delivery as a try: `x-deskpilot-attempt` stays as it came. For an event that
    /// waits for something other than its own success (a spent LLM budget). Failures behave as
    /// in [`retry`](Self::retry).
    pub async fn postpone(self, reason: &str, delay: Duration) -> Result<(), BusError> {
        let mut outgoing = Outgoing::from_delivery(&self);
        outgoing.attempt = self.attempt.saturating_sub(1);
        match self.handle {
            DeliveryHandle::Amqp(h) => h.retry(outgoing, reason, Some(delay)).await,
            DeliveryHandle::Memory(h) => h.retry(outgoing, reason, Some(delay)),
        }
    }

    /// Gives up: publishes the original body to the dead-letter queue with `x-deskpilot-reason`,
    /// `x-deskpilot-attempt`, `x-deskpilot-failed-at` (RFC 3339) and
    /// `x-deskpilot-original-routing-key`, waits for the confirm, then acks this delivery. Failures
    /// behave as in [`retry`](Self::retry).
    pub async fn dead_letter(self, reason: &str) -> Result<(), BusError> {
        let outgoing = Outgoing::from_delivery(&self);
        match self.handle {
            DeliveryHandle::Amqp(h) => h.dead_letter(outgoing, reason).await,
            DeliveryHandle::Memory(h) => h.dead_letter(outgoing, reason),
        }
    }

    /// Gives it back now (`basic.nack`, requeue): delivered again soon, `redelivered = true`, same
    /// `attempt`. Use on shutdown. On RabbitMQ < 4.3 every requeue counts toward `delivery_limit`.
    pub async fn requeue(self) -> Result<(), BusError> {
        match self.handle {
            DeliveryHandle::Amqp(h) => h.requeue().await,
            DeliveryHandle::Memory(h) => h.requeue(),
        }
    }

    /// The raw message body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("event", &self.event)
            .field("attempt", &self.attempt)
            .field("redelivered", &self.redelivered)
            .field("message_id", &self.message_id)
            .field("routing_key", &self.routing_key)
            .field("last_error", &self.last_error)
            .finish_non_exhaustive()
    }
}

/// What a delivery's retry or dead-letter publishes: the original message.
struct Outgoing {
    body: Vec<u8>,
    message_id: Option<String>,
    routing_key: String,
    attempt: u32,
}

impl Outgoing {
    fn from_delivery(d: &Delivery) -> Self {
        Self {
            body: d.body.clone(),
            message_id: d.message_id.clone(),
            routing_key: d.routing_key.clone(),
            attempt: d.attempt,
        }
    }
}

/// A message in the dead-letter queue, as listed by [`dead_letters`] / [`memory::MemoryBus::dead_letters`].
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The event, or the raw body when it is not one.
    pub event_or_body: Result<TicketEvent, Vec<u8>>,
    /// Why: `x-deskpilot-reason`, or `broker: <x-death reason>` (e.g. `broker: delivery_limit`)
    /// for messages the broker dead-lettered itself.
    pub reason: String,
    /// The try that failed.
    pub attempt: u32,
    /// When it was dead-lettered, if known.
    pub failed_at: Option<OffsetDateTime>,
    /// The AMQP `message_id`.
    pub message_id: Option<String>,
    /// The routing key it was first published with (where a replay sends it).
    pub routing_key: String,
}
