//! The consumer and its supervisor, and settling deliveries.

use std::{sync::Arc, time::Duration};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use futures::StreamExt;
use lapin::{
    Acker, BasicProperties, Channel,
    options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions},
    types::{AMQPValue, FieldTable, LongString, ShortString},
};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{
    CLOSE_TIMEOUT, Link, RECOVERY_TIMEOUT, header_str, header_u32, original_routing_key,
    publisher::{AmqpPublisher, republish_properties},
    topology,
};
use crate::{
    bus::{
        BusError, BusHealth, Delivery, DeliveryHandle, HEADER_ATTEMPT, HEADER_FAILED_AT, HEADER_LAST_ERROR,
        HEADER_ORIGINAL_ROUTING_KEY, HEADER_REASON, Outgoing,
    },
    events::TicketEvent,
};

/// Longest wait between two reconnection attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(10);
/// Longest reason kept in a header.
const MAX_REASON_BYTES: usize = 1024;

/// Consumes the work queue on its own channel and rebuilds it when it breaks (module doc of `amqp`).
pub(crate) struct AmqpConsumer {
    link: Arc<Link>,
    publisher: AmqpPublisher,
    shutdown: CancellationToken,
    active: Option<Active>,
    /// Backoff of the current reconnection streak, and when the next attempt may run.
    reconnect: Option<(ExponentialBackoff, Instant)>,
    ended: bool,
    health: BusHealth,
}

struct Active {
    channel: Channel,
    stream: lapin::Consumer,
    generation: u64,
}

impl AmqpConsumer {
    pub(crate) async fn start(link: Arc<Link>, publisher: AmqpPublisher) -> Result<Self, BusError> {
        let active = open(&link).await?;
        let link_for_health = link.clone();
        Ok(Self {
            link,
            publisher,
            shutdown: CancellationToken::new(),
            active: Some(active),
            reconnect: None,
            ended: false,
            health: BusHealth { seen: Arc::default(), link: Some(link_for_health) },
        })
    }

    pub(crate) fn health(&self) -> BusHealth {
        self.health.clone()
    }

    pub(crate) fn set_shutdown(&mut self, token: CancellationToken) {
        self.shutdown = token;
    }

    pub(crate) async fn next(&mut self) -> Option<Result<Delivery, BusError>> {
        loop {
            if self.ended {
                return None;
            }
            if self.shutdown.is_cancelled() {
                self.close().await;
                return None;
            }
            let Some(active) = self.active.as_mut() else {
                if let Some(error) = self.rebuild().await {
                    return Some(Err(error));
                }
                continue;
            };
            let item = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => continue,
                item = active.stream.next() => item,
            };
            match item {
                Some(Ok(delivery)) => return Some(Ok(self.wrap(delivery))),
                Some(Err(error)) => {
                    tracing::warn!(error = %error, "RabbitMQ consumer failed; waiting for recovery");
                    self.health
                        .set(Some(format!("the connection to RabbitMQ was lost ({error}); recovering")));
                    let (channel, generation) = (active.channel.clone(), active.generation);
                    let recovered = tokio::select! {
                        () = self.shutdown.cancelled() => continue,
                        recovered = tokio::time::timeout(RECOVERY_TIMEOUT, channel.wait_for_recovery(error)) => recovered,
                    };
                    let why = match recovered {
                        Ok(Ok(())) => {
                            tracing::info!("RabbitMQ connection recovered; consuming again");
                            self.health.set(None);
                            continue;
                        }
                        Ok(Err(error)) => format!("not recoverable: {error}"),
                        Err(_) => "recovery is taking too long".to_owned(),
                    };
                    tracing::warn!(why, "RabbitMQ consumer not recovered; reconnecting");
                    self.active = None;
                    self.link.abandon(generation).await;
                }
                None => {
                    // Cancelled by the broker (queue deleted, node down) or its channel closed.
                    tracing::warn!("RabbitMQ consumer was cancelled; consuming again");
                    let generation = active.generation;
                    self.drop_active(generation).await;
                }
            }
        }
    }

    /// One reconnection attempt, after the streak's backoff delay. `Some(error)` if it failed.
    async fn rebuild(&mut self) -> Option<BusError> {
        if let Some((_, at)) = &self.reconnect {
            tokio::select! {
                () = self.shutdown.cancelled() => return None,
                () = tokio::time::sleep_until(*at) => {}
            }
        }
        let opened = tokio::select! {
            () = self.shutdown.cancelled() => return None,
            opened = open(&self.link) => opened,
        };
        match opened {
            Ok(active) => {
                tracing::info!("consuming from RabbitMQ again");
                self.health.set(None);
                self.active = Some(active);
                self.reconnect = None;
                None
            }
            Err(error) => {
                let (delays, _) = self.reconnect.get_or_insert_with(|| {
                    let delays = ExponentialBuilder::default()
                        .with_min_delay(Duration::from_millis(200))
                        .with_max_delay(MAX_RECONNECT_DELAY)
                        .without_max_times()
                        .with_jitter()
                        .build();
                    (delays, Instant::now())
                });
                let delay = delays.next().unwrap_or(MAX_RECONNECT_DELAY);
                self.reconnect.as_mut().expect("set above").1 = Instant::now() + delay;
                tracing::warn!(error = %error, ?delay, "cannot consume from RabbitMQ; retrying");
                self.health.set(Some(format!("cannot consume from RabbitMQ: {error}")));
                Some(error)
            }
        }
    }

    async fn drop_active(&mut self, generation: u64) {
        self.active = None;
        self.link.repair(generation).await;
    }

    /// `basic.cancel`, then requeues what was received but not handed out.
    pub(crate) async fn close(&mut self) {
        self.shutdown.cancel();
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let Some(mut active) = self.active.take() else { return };
        let tag = active.stream.tag();
        let cancel = active.channel.basic_cancel(tag, BasicCancelOptions::default());
        if let Ok(Err(error)) = tokio::time::timeout(CLOSE_TIMEOUT, cancel).await {
            tracing::warn!(error = %error, "basic.cancel failed");
        }
        let requeue_buffered = async {
            while let Some(Ok(delivery)) = active.stream.next().await {
                let _ = delivery.nack(REQUEUE).await;
            }
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, requeue_buffered).await;
    }

    fn wrap(&self, delivery: lapin::message::Delivery) -> Delivery {
        let props = &delivery.properties;
        let channel = self.active.as_ref().map(|a| a.channel.clone());
        Delivery {
            event: TicketEvent::from_json(&delivery.data),
            attempt: header_u32(props, HEADER_ATTEMPT).unwrap_or(0).saturating_add(1),
            redelivered: delivery.redelivered,
            message_id: props.message_id().as_ref().map(|m| m.to_string()),
            routing_key: original_routing_key(&delivery),
            last_error: header_str(props, HEADER_LAST_ERROR),
            body: delivery.data,
            handle: DeliveryHandle::Amqp(Box::new(AmqpHandle {
                acker: delivery.acker,
                properties: delivery.properties,
                publisher: self.publisher.clone(),
                _channel: channel,
            })),
        }
    }
}

/// Declare, QoS, consume, on a new channel of the link's connection. Declaring every time brings
/// back a queue deleted under a live connection (the broker then cancels our consumer).
async fn open(link: &Link) -> Result<Active, BusError> {
    let (channel, generation) = link.channel().await?;
    let settings = link.settings();
    if let Err(e) = topology::declare(&channel, settings).await {
        link.repair(generation).await;
        return Err(e);
    }
    let consumed = async {
        // Per-consumer prefetch; `global: true` is rejected from RabbitMQ 4.3.
        channel.basic_qos(settings.prefetch, BasicQosOptions { global: false }).await?;
        channel
            .basic_consume(
                ShortString::from(settings.queue.as_str()),
                ShortString::from(""),
                BasicConsumeOptions {
                    // https://www.rabbitmq.com/amqp-0-9-1-reference.html#domain.no-ack
                    // Manual acks: a message leaves the queue only once its effects are durable.
                    no_ack: false,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
    }
    .await;
    match consumed {
        Ok(stream) => Ok(Active { channel, stream, generation }),
        Err(e) => {
            link.repair(generation).await;
            let context = format!("consume `{}`", settings.queue);
            if e.is_amqp_error() {
                Err(BusError::Topology { context, source: Box::new(e) })
            } else {
                Err(BusError::Connection { context, source: Box::new(e) })
            }
        }
    }
}

/// Settles one delivery: acks on its own channel, publishes through the bus's publisher. Dropped
/// unsettled (e.g. a panicking task), it gives the message back, as the in-process bus does.
pub(crate) struct AmqpHandle {
    acker: Acker,
    properties: BasicProperties,
    publisher: AmqpPublisher,
    /// Keeps the channel open while the delivery is in flight, even after the consumer is closed.
    _channel: Option<Channel>,
}

const REQUEUE: BasicNackOptions = BasicNackOptions { multiple: false, requeue: true };

impl AmqpHandle {
    pub(crate) async fn ack(self) -> Result<(), BusError> {
        settled(self.acker.ack(BasicAckOptions::default()).await)
    }

    pub(crate) async fn requeue(self) -> Result<(), BusError> {
        settled(self.acker.nack(REQUEUE).await)
    }

    pub(crate) async fn retry(
        self,
        out: Outgoing,
        reason: &str,
        retry_after: Option<Duration>,
    ) -> Result<(), BusError> {
        let settings = self.publisher.settings();
        let tier = topology::tier_queue(settings, settings.retry_delay(out.attempt, retry_after));
        let mut headers = FieldTable::default();
        headers.insert(HEADER_ATTEMPT.into(), AMQPValue::LongLongInt(out.attempt.into()));
        headers.insert(HEADER_LAST_ERROR.into(), text(reason));
        headers.insert(HEADER_ORIGINAL_ROUTING_KEY.into(), text(&out.routing_key));
        let properties = republish_properties(&self.properties, headers);
        // The default exchange routes to the queue named by the routing key.
        self.publish_then_ack(&tier, &out.body, properties).await
    }

    pub(crate) async fn dead_letter(self, out: Outgoing, reason: &str) -> Result<(), BusError> {
        let failed_at = OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default();
        let mut headers = FieldTable::default();
        headers.insert(HEADER_REASON.into(), text(reason));
        headers.insert(HEADER_ATTEMPT.into(), AMQPValue::LongLongInt(out.attempt.into()));
        headers.insert(HEADER_FAILED_AT.into(), text(&failed_at));
        headers.insert(HEADER_ORIGINAL_ROUTING_KEY.into(), text(&out.routing_key));
        let properties = republish_properties(&self.properties, headers);
        let dead_queue = self.publisher.settings().dead_queue.clone();
        self.publish_then_ack(&dead_queue, &out.body, properties).await
    }

    /// Publishes a copy to `queue` (default exchange) and acks the original once confirmed. If the
    /// publish fails the original is given back (nack, requeue) so it does not sit un-acked.
    async fn publish_then_ack(
        self,
        queue: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), BusError> {
        if let Err(error) = self.publisher.publish("", queue, body, properties).await {
            let _ = self.acker.nack(REQUEUE).await;
            return Err(error);
        }
        self.ack().await
    }
}

impl Drop for AmqpHandle {
    fn drop(&mut self) {
        if self.acker.usable()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            tracing::warn!("delivery dropped without being settled; requeueing it");
            let acker = self.acker.clone();
            runtime.spawn(async move {
                let _ = acker.nack(REQUEUE).await;
            });
        }
    }
}

/// `Ok(false)`: the acker was poisoned (its channel closed or the connection was recovered), so
/// nothing was sent and the broker will redeliver.
pub(crate) fn settled(result: lapin::Result<bool>) -> Result<(), BusError> {
    match result {
        Ok(true) => Ok(()),
        Ok(false) => Err(BusError::StaleDelivery),
        Err(e) => Err(BusError::Ack { source: Box::new(e) }),
    }
}

fn text(s: &str) -> AMQPValue {
    let mut end = s.len().min(MAX_REASON_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    AMQPValue::LongString(LongString::from(&s[..end]))
}
