//! Confirmed publishing on the shared confirm-mode channel.

use std::{sync::Arc, time::Duration};

use backon::{BackoffBuilder, ExponentialBuilder};
use lapin::{
    BasicProperties, Confirmation, ErrorKind,
    options::BasicPublishOptions,
    protocol::{AMQPErrorKind, AMQPSoftError},
    types::{FieldTable, ShortString},
};

use super::{Link, RECOVERY_TIMEOUT};
use crate::{
    bus::{BusError, BusSettings},
    events::TicketEvent,
};

/// `delivery_mode` 2: the broker writes the message to disk.
const PERSISTENT: u8 = 2;
/// Re-tries of one publish after a connection failure (~6 s in all) before the error is returned.
const PUBLISH_RETRIES: usize = 5;

/// Publishes on the [`Link`]'s confirm channel; clones share it.
#[derive(Clone)]
pub(crate) struct AmqpPublisher {
    link: Arc<Link>,
}

impl AmqpPublisher {
    pub(crate) fn new(link: Arc<Link>) -> Self {
        Self { link }
    }

    pub(crate) fn settings(&self) -> &BusSettings {
        self.link.settings()
    }

    /// Opens the confirm channel now rather than on the first publish.
    pub(crate) async fn channel(&self) -> Result<(), BusError> {
        self.link.publish_channel().await.map(drop)
    }

    pub(crate) async fn publish_event(&self, event: &TicketEvent) -> Result<(), BusError> {
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_message_id(event.event_id.as_str().into())
            .with_delivery_mode(PERSISTENT)
            .with_timestamp(time::OffsetDateTime::now_utc().unix_timestamp().try_into().unwrap_or_default());
        self.publish(&self.settings().exchange, event.kind.as_str(), &event.to_json(), properties).await
    }

    /// Publishes with `mandatory` and waits for the confirm. Connection failures are re-tried on a
    /// recovered or fresh connection (the message may then be stored twice: at-least-once).
    pub(crate) async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), BusError> {
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(2))
            .with_max_times(PUBLISH_RETRIES)
            .with_jitter()
            .build();
        let timeout = self.settings().confirm_timeout;
        loop {
            let attempt = self.try_publish(exchange, routing_key, body, properties.clone());
            let error = match tokio::time::timeout(timeout, attempt).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) if e.is_retryable() => e,
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    // A blocked or half-dead connection: the next try opens a fresh channel. The
                    // message may already be stored (at-least-once, as on any retry).
                    self.link.forget_publish_channel();
                    BusError::Publish {
                        exchange: exchange.to_owned(),
                        routing_key: routing_key.to_owned(),
                        source: format!("no confirm from RabbitMQ within {}s", timeout.as_secs_f32()).into(),
                    }
                }
            };
            let Some(delay) = delays.next() else { return Err(error) };
            tracing::warn!(error = %error, ?delay, exchange, routing_key, "publish failed; trying again");
            tokio::time::sleep(delay).await;
        }
    }

    async fn try_publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), BusError> {
        if self.link.publishing_closed().await {
            return Err(BusError::Closed);
        }
        let (channel, generation) = self.link.publish_channel().await?;
        let unanswered = ForgetUnanswered(Some(&self.link));
        // https://www.rabbitmq.com/amqp-0-9-1-reference.html#basic.publish.mandatory
        // mandatory: an unroutable message comes back (basic.return) instead of vanishing.
        let options = BasicPublishOptions { mandatory: true, ..Default::default() };
        let sent = async {
            channel
                .basic_publish(
                    ShortString::from(exchange),
                    ShortString::from(routing_key),
                    options,
                    body,
                    properties,
                )
                .await?
                .await
        };
        let publish_error = |source| BusError::Publish {
            exchange: exchange.to_owned(),
            routing_key: routing_key.to_owned(),
            source,
        };
        let sent = sent.await;
        unanswered.answered();
        match sent {
            Ok(Confirmation::Ack(None)) => Ok(()),
            Ok(Confirmation::Ack(Some(returned))) | Ok(Confirmation::Nack(Some(returned))) => {
                Err(BusError::Unroutable {
                    exchange: exchange.to_owned(),
                    routing_key: routing_key.to_owned(),
                    reply: format!("{} {}", returned.reply_code, returned.reply_text),
                })
            }
            Ok(Confirmation::Nack(None)) => {
                Err(BusError::Nacked { exchange: exchange.to_owned(), routing_key: routing_key.to_owned() })
            }
            Ok(Confirmation::NotRequested) => Err(publish_error("publisher confirms are not enabled".into())),
            Err(e) => {
                let not_found = matches!(
                    e.kind(),
                    ErrorKind::ProtocolError(amqp) if *amqp.kind() == AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)
                );
                let error = if not_found {
                    BusError::Topology {
                        context: format!("publish to `{exchange}`"),
                        source: Box::new(e.clone()),
                    }
                } else {
                    publish_error(Box::new(e.clone()))
                };
                // In its own task: a caller that gives up waiting (the webhook receiver answers 503
                // after its own timeout) must not cancel the repair, or every later publish would
                // meet the same dead channel.
                let link = self.link.clone();
                let recovery = tokio::spawn(async move {
                    match tokio::time::timeout(RECOVERY_TIMEOUT, channel.wait_for_recovery(e)).await {
                        Ok(Ok(())) => tracing::info!("publish channel recovered"),
                        _ => link.abandon(generation).await,
                    }
                });
                let _ = recovery.await;
                Err(error)
            }
        }
    }

    /// Waits for outstanding confirms and stops publishing (every clone).
    pub(crate) async fn close(&self) {
        self.link.close_publishing().await;
    }
}

/// Forgets the publish channel when dropped before [`Self::answered`]: a caller that stopped
/// waiting for a confirm (the webhook receiver's own timeout) may have been waiting on a channel
/// that never answers, and the next publish must not wait on it too.
struct ForgetUnanswered<'a>(Option<&'a Link>);

impl ForgetUnanswered<'_> {
    fn answered(mut self) {
        self.0 = None;
    }
}

impl Drop for ForgetUnanswered<'_> {
    fn drop(&mut self) {
        if let Some(link) = self.0 {
            link.forget_publish_channel();
        }
    }
}

/// Properties for re-publishing a received message (retry, dead letter, replay): its own
/// properties, persistent, with `headers` over its headers minus the broker's dead-lettering
/// history and our own `x-deskpilot-*` (callers set those they want).
///
/// `x-death` must go: RabbitMQ drops a message dead-lettered into a queue already in its `x-death`
/// without a rejection in between (its cycle detection), which a replayed message would hit on its
/// next retry.
pub(crate) fn republish_properties(original: &BasicProperties, headers: FieldTable) -> BasicProperties {
    let mut table = FieldTable::default();
    if let Some(old) = original.headers() {
        for (key, value) in old.inner() {
            let k = key.as_str();
            let broker_history = k == "x-death"
                || k.starts_with("x-first-death-")
                || k.starts_with("x-last-death-")
                || k == "x-delivery-count";
            if !broker_history && !k.starts_with("x-deskpilot-") {
                table.insert(key.clone(), value.clone());
            }
        }
    }
    for (key, value) in headers.inner() {
        table.insert(key.clone(), value.clone());
    }
    let mut props = BasicProperties::default().with_delivery_mode(PERSISTENT).with_headers(table);
    if let Some(v) = original.content_type() {
        props = props.with_content_type(v.clone());
    }
    if let Some(v) = original.content_encoding() {
        props = props.with_content_encoding(v.clone());
    }
    if let Some(v) = original.message_id() {
        props = props.with_message_id(v.clone());
    }
    if let Some(v) = original.correlation_id() {
        props = props.with_correlation_id(v.clone());
    }
    if let Some(v) = original.timestamp() {
        props = props.with_timestamp(*v);
    }
    if let Some(v) = original.kind() {
        props = props.with_type(v.clone());
    }
    if let Some(v) = original.app_id() {
        props = props.with_app_id(v.clone());
    }
    props
}
