//! The RabbitMQ bus (lapin 4.12): topology, confirmed publishing, a self-healing consumer, and the
//! dead-letter tools (`deskpilot bus setup|dead|replay`).
//!
//! One connection per bus ([`Link`]), shared by a confirm-mode publisher channel and the consumer
//! channel. Two layers keep it alive:
//! 1. lapin's own recovery (`enable_auto_recover`): after a connection-level failure (broker close,
//!    network error, missed heartbeat) lapin reconnects and replays channels, `confirm_select`, QoS and
//!    consumers; callers wait with `Channel::wait_for_recovery`.
//! 2. our supervisor: when recovery is impossible or does not finish (a channel closed by the broker,
//!    recovery gave up or hung), the [`Link`] drops the connection and opens a fresh one, re-declaring
//!    the topology, and the consumer consumes again, with backoff capped at 10 s.

mod consumer;
mod publisher;
mod topology;

use std::{sync::Arc, time::Duration};

use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties,
    options::{
        BasicAckOptions, BasicGetOptions, BasicNackOptions, ConfirmSelectOptions, QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable, ShortString},
};
use time::OffsetDateTime;
use tokio::sync::Mutex;

use consumer::settled;
pub(crate) use consumer::{AmqpConsumer, AmqpHandle};
pub(crate) use publisher::AmqpPublisher;

use super::{
    BusError, BusSettings, Consumer, ConsumerInner, DeadLetter, HEADER_ATTEMPT, HEADER_FAILED_AT,
    HEADER_ORIGINAL_ROUTING_KEY, HEADER_REASON, Publisher, PublisherInner,
};
use crate::events::TicketEvent;

/// How long a caller waits for lapin's recovery before rebuilding the connection itself.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(15);
/// Most dead letters one listing takes off the queue (and holds in memory) to keep their order.
const MAX_DEAD_SCAN: usize = 100_000;
/// How long closing a connection we gave up on may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for the broker to open a channel or put it in confirm mode. Shorter than the
/// webhook receiver's wait for a publish, so a half-dead connection is dropped before the sender
/// gets its 503, rather than never.
const SETUP_TIMEOUT: Duration = Duration::from_secs(8);
/// Longest wait for a new connection with its topology declared (a handshake that never ends).
const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(60);

/// Connects, declares the topology and returns the publisher and the consumer (one connection).
///
/// Fails if the broker cannot be reached (lapin retries the TCP connect a few times, ~5 s) or the
/// topology cannot be declared (e.g. a queue exists with other arguments).
pub async fn connect(url: &str, settings: &BusSettings) -> Result<(Publisher, Consumer), BusError> {
    let link = Arc::new(Link::new(url, settings.clone()));
    link.channel().await?; // connects and declares; proves the broker is there
    let publisher = AmqpPublisher::new(link.clone());
    publisher.channel().await?; // confirm channel ready before the first publish
    let consumer = AmqpConsumer::start(link, publisher.clone()).await?;
    Ok((Publisher(PublisherInner::Amqp(publisher)), Consumer(ConsumerInner::Amqp(Box::new(consumer)))))
}

/// Declares the topology only (`deskpilot bus setup`). Idempotent.
pub async fn setup(url: &str, settings: &BusSettings) -> Result<(), BusError> {
    let conn = open(url, settings).await?;
    let result = declare_on(&conn, settings).await;
    close_quietly(conn).await;
    result
}

/// Lists up to `limit` dead letters, oldest first, without removing them.
///
/// Each message is taken with `basic.get` and all are given back (`basic.nack`, requeue, in order)
/// at the end. It takes the whole queue (up to 100 000 messages) even for a small `limit`: a
/// quorum queue serves returned messages before the others, so giving back only the first few would
/// move them behind the rest and the next listing would differ.
pub async fn dead_letters(
    url: &str,
    settings: &BusSettings,
    limit: usize,
) -> Result<Vec<DeadLetter>, BusError> {
    let conn = open(url, settings).await?;
    let result = async {
        declare_on(&conn, settings).await?;
        let channel = conn.create_channel().await.map_err(|e| connection_error("open a channel", e))?;
        let scan = count(&channel, &settings.dead_queue).await?.min(MAX_DEAD_SCAN.max(limit));
        let mut held = Vec::new();
        let mut letters = Vec::new();
        while held.len() < scan {
            let Some(message) = get(&channel, &settings.dead_queue).await? else { break };
            if letters.len() < limit {
                letters.push(dead_letter_of(&message.delivery));
            }
            held.push(message.delivery);
        }
        let given_back = held.len();
        for delivery in held {
            settled(delivery.nack(BasicNackOptions { multiple: false, requeue: true }).await)?;
        }
        // A nack has no reply and a quorum queue counts a returned message as ready a moment
        // later: wait for that, so a `dead replay` right after a listing finds every letter.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while count(&channel, &settings.dead_queue).await? < given_back
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(letters)
    }
    .await;
    close_quietly(conn).await;
    result
}

/// Moves up to `limit` dead letters (all present when it starts, if `None`) back to the exchange
/// with their original routing key, attempt reset; each is acked only after the broker confirmed
/// its re-publish. A letter whose routing key has no binding stays in the dead queue (logged).
/// Returns how many were moved.
pub async fn replay_dead_letters(
    url: &str,
    settings: &BusSettings,
    limit: Option<usize>,
) -> Result<usize, BusError> {
    let link = Arc::new(Link::new(url, settings.clone()));
    let publisher = AmqpPublisher::new(link.clone());
    let (channel, _) = link.channel().await?;
    let result = async {
        let limit = limit.unwrap_or(count(&channel, &settings.dead_queue).await?);
        let (mut moved, mut kept) = (0, Vec::new());
        while moved + kept.len() < limit {
            let Some(message) = get(&channel, &settings.dead_queue).await? else { break };
            let delivery = message.delivery;
            let letter = dead_letter_of(&delivery);
            let properties = publisher::republish_properties(&delivery.properties, FieldTable::default());
            let sent =
                publisher.publish(&settings.exchange, &letter.routing_key, &delivery.data, properties).await;
            match sent {
                Ok(()) => {
                    settled(delivery.ack(BasicAckOptions::default()).await)?;
                    moved += 1;
                }
                Err(e @ BusError::Unroutable { .. }) => {
                    tracing::warn!(error = %e, message_id = ?letter.message_id, "dead letter not replayable; kept");
                    kept.push(delivery);
                }
                Err(e) => return Err(e),
            }
        }
        for delivery in kept {
            settled(delivery.nack(BasicNackOptions { multiple: false, requeue: true }).await)?;
        }
        Ok(moved)
    }
    .await;
    publisher.close().await;
    result
}

/// Ready messages in `queue` (passive declare).
async fn count(channel: &Channel, queue: &str) -> Result<usize, BusError> {
    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
    let declared = channel
        .queue_declare(ShortString::from(queue), passive, FieldTable::default())
        .await
        .map_err(|e| connection_error(&format!("count the messages in `{queue}`"), e))?;
    Ok(declared.message_count() as usize)
}

async fn get(channel: &Channel, queue: &str) -> Result<Option<lapin::message::BasicGetMessage>, BusError> {
    channel
        .basic_get(ShortString::from(queue), BasicGetOptions { no_ack: false })
        .await
        .map_err(|e| connection_error(&format!("basic.get from `{queue}`"), e))
}

/// Reads a dead-letter queue message: our headers, or the broker's `x-death` for messages the
/// broker dead-lettered itself (delivery limit).
fn dead_letter_of(delivery: &lapin::message::Delivery) -> DeadLetter {
    let props = &delivery.properties;
    let ours = header_str(props, HEADER_REASON);
    let broker_reason = latest_death_reason(props).map(|r| format!("broker: {r}"));
    let attempt = header_u32(props, HEADER_ATTEMPT);
    DeadLetter {
        event_or_body: TicketEvent::from_json(&delivery.data).map_err(|_| delivery.data.clone()),
        attempt: if ours.is_some() { attempt.unwrap_or(1) } else { attempt.unwrap_or(0) + 1 },
        reason: ours.or(broker_reason).unwrap_or_else(|| "unknown".to_owned()),
        failed_at: header_str(props, HEADER_FAILED_AT)
            .and_then(|t| OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339).ok())
            .or_else(|| latest_death_time(props)),
        message_id: props.message_id().as_ref().map(|m| m.to_string()),
        routing_key: original_routing_key(delivery),
    }
}

/// The routing key a message was first published with: our header, else the first `x-death`
/// routing key, else the one it arrived with.
fn original_routing_key(delivery: &lapin::message::Delivery) -> String {
    if let Some(key) = header_str(&delivery.properties, HEADER_ORIGINAL_ROUTING_KEY) {
        return key;
    }
    let earliest = deaths(&delivery.properties).last();
    let death_key = earliest.and_then(|death| match death.inner().get("routing-keys") {
        Some(AMQPValue::FieldArray(keys)) => keys.as_slice().first().and_then(value_str),
        _ => None,
    });
    death_key.unwrap_or_else(|| delivery.routing_key.to_string())
}

/// `x-death` entries, most recent first (RabbitMQ's order).
fn deaths(props: &BasicProperties) -> impl Iterator<Item = &FieldTable> {
    let deaths = match props.headers().as_ref().and_then(|h| h.inner().get("x-death")) {
        Some(AMQPValue::FieldArray(deaths)) => deaths.as_slice(),
        _ => &[],
    };
    deaths.iter().filter_map(|d| match d {
        AMQPValue::FieldTable(death) => Some(death),
        _ => None,
    })
}

fn latest_death_reason(props: &BasicProperties) -> Option<String> {
    deaths(props).next()?.inner().get("reason").and_then(value_str)
}

fn latest_death_time(props: &BasicProperties) -> Option<OffsetDateTime> {
    match deaths(props).next()?.inner().get("time")? {
        AMQPValue::Timestamp(secs) => OffsetDateTime::from_unix_timestamp(i64::try_from(*secs).ok()?).ok(),
        _ => None,
    }
}

pub(crate) fn header_str(props: &BasicProperties, name: &str) -> Option<String> {
    value_str(props.headers().as_ref()?.inner().get(name)?)
}

fn value_str(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

pub(crate) fn header_u32(props: &BasicProperties, name: &str) -> Option<u32> {
    let n: i128 = match props.headers().as_ref()?.inner().get(name)? {
        AMQPValue::ShortShortInt(n) => (*n).into(),
        AMQPValue::ShortShortUInt(n) => (*n).into(),
        AMQPValue::ShortInt(n) => (*n).into(),
        AMQPValue::ShortUInt(n) => (*n).into(),
        AMQPValue::LongInt(n) => (*n).into(),
        AMQPValue::LongUInt(n) => (*n).into(),
        AMQPValue::LongLongInt(n) => (*n).into(),
        AMQPValue::Timestamp(n) => (*n).into(),
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok()?.trim().parse().ok()?,
        _ => return None,
    };
    u32::try_from(n).ok()
}

fn connection_error(context: &str, e: lapin::Error) -> BusError {
    BusError::Connection { context: context.to_owned(), source: Box::new(e) }
}

fn timed_out(context: &str, limit: Duration) -> BusError {
    let source = format!("RabbitMQ did not answer within {}s", limit.as_secs()).into();
    BusError::Connection { context: context.to_owned(), source }
}

/// Opens a connection with lapin's recovery on; the initial TCP connect is retried ~5 s.
async fn open(url: &str, settings: &BusSettings) -> Result<Connection, BusError> {
    let properties = ConnectionProperties::default()
        .with_connection_name(format!("deskpilot {}", settings.queue).into())
        .enable_auto_recover()
        .configure_backoff(|b| {
            b.with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(2))
                .with_max_times(5)
        });
    Connection::connect(url, properties).await.map_err(|e| connection_error("connect", e))
}

/// Opens a connection and declares the topology on it, within [`ESTABLISH_TIMEOUT`].
async fn establish(url: &str, settings: &BusSettings) -> Result<Connection, BusError> {
    let established = tokio::time::timeout(ESTABLISH_TIMEOUT, async {
        let conn = open(url, settings).await?;
        match declare_on(&conn, settings).await {
            Ok(()) => Ok(conn),
            Err(e) => {
                close_quietly(conn).await;
                Err(e)
            }
        }
    });
    established
        .await
        .unwrap_or_else(|_| Err(timed_out("connect and declare the topology", ESTABLISH_TIMEOUT)))
}

/// Declares the queue of `settings` and the outcomes queue beside it: whichever process connects
/// first, every binding exists before anything is published.
async fn declare_on(conn: &Connection, settings: &BusSettings) -> Result<(), BusError> {
    let channel = conn.create_channel().await.map_err(|e| connection_error("open a channel", e))?;
    topology::declare(&channel, settings).await?;
    let outcomes = settings.outcomes();
    if outcomes.queue != settings.queue {
        topology::declare(&channel, &outcomes).await?;
    }
    let _ = channel.close(200, "topology declared".into()).await;
    Ok(())
}

async fn close_quietly(conn: Connection) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, conn.close(200, "OK".into())).await;
}

/// The bus's connection, rebuilt on demand. Each rebuild bumps `generation`, so a caller reporting
/// a failure on an old connection cannot throw away a new one.
pub(crate) struct Link {
    url: String,
    settings: BusSettings,
    state: Mutex<LinkState>,
}

#[derive(Default)]
struct LinkState {
    generation: u64,
    conn: Option<Connection>,
    /// A connection being opened, when one is.
    connecting: Option<tokio::task::JoinHandle<Result<Connection, BusError>>>,
    publish: Option<Channel>,
    closed: bool,
}

impl Link {
    fn new(url: &str, settings: BusSettings) -> Self {
        Self { url: url.to_owned(), settings, state: Mutex::new(LinkState::default()) }
    }

    pub(crate) fn settings(&self) -> &BusSettings {
        &self.settings
    }

    /// A new channel on the live connection, connecting (and declaring the topology) first if the
    /// connection is gone.
    pub(crate) async fn channel(&self) -> Result<(Channel, u64), BusError> {
        let mut state = self.state.lock().await;
        let channel = self.new_channel(&mut state).await?;
        Ok((channel, state.generation))
    }

    /// The shared confirm-mode channel for publishing.
    pub(crate) async fn publish_channel(&self) -> Result<(Channel, u64), BusError> {
        let mut state = self.state.lock().await;
        if let Some(channel) = &state.publish
            && (channel.status().connected() || channel.status().reconnecting())
        {
            return Ok((channel.clone(), state.generation));
        }
        let channel = self.new_channel(&mut state).await?;
        match tokio::time::timeout(SETUP_TIMEOUT, channel.confirm_select(ConfirmSelectOptions::default()))
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(connection_error("enable publisher confirms", e)),
            Err(_) => {
                discard(&mut state);
                return Err(timed_out("enable publisher confirms", SETUP_TIMEOUT));
            }
        }
        state.publish = Some(channel.clone());
        Ok((channel, state.generation))
    }

    /// After a failure on `generation`: forgets the publish channel if it died, and the connection
    /// if it is neither connected nor being recovered by lapin.
    pub(crate) async fn repair(&self, generation: u64) {
        let mut state = self.state.lock().await;
        if state.generation != generation {
            return;
        }
        if state.publish.as_ref().is_some_and(|c| !(c.status().connected() || c.status().reconnecting())) {
            state.publish = None;
        }
        if state.conn.as_ref().is_some_and(|c| !alive(c)) {
            tracing::warn!(generation, "RabbitMQ connection lost; a new one will be opened");
            discard(&mut state);
        }
    }

    /// After lapin's recovery failed or did not finish on `generation`: forgets the publish channel,
    /// and the connection unless it is plainly connected. Status alone cannot decide here: when
    /// lapin's reconnection gives up, its connection and channels keep reading as reconnecting.
    pub(crate) async fn abandon(&self, generation: u64) {
        let mut state = self.state.lock().await;
        if state.generation != generation {
            return;
        }
        state.publish = None;
        if state.conn.as_ref().is_some_and(|c| !c.status().connected()) {
            tracing::warn!(generation, "RabbitMQ connection did not recover; a new one will be opened");
            discard(&mut state);
        }
    }

    /// Drops the publish channel (the next publish opens a new one), closing it in the background.
    /// Does nothing while another task holds the link (it is connecting, and will set a channel).
    pub(crate) fn forget_publish_channel(&self) {
        let Ok(mut state) = self.state.try_lock() else { return };
        if let Some(channel) = state.publish.take() {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, channel.close(200, "OK".into())).await;
            });
        }
    }

    /// Waits for outstanding confirms and closes the publish channel; publishing is refused after.
    pub(crate) async fn close_publishing(&self) {
        let mut state = self.state.lock().await;
        state.closed = true;
        if let Some(channel) = state.publish.take() {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, channel.wait_for_confirms()).await;
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, channel.close(200, "OK".into())).await;
        }
    }

    /// Why the connection is not up, if it is not (lapin may be recovering it).
    pub(crate) async fn down(&self) -> Option<String> {
        let state = self.state.lock().await;
        match &state.conn {
            Some(conn) if conn.status().connected() => None,
            Some(conn) if conn.status().reconnecting() => {
                Some("the connection to RabbitMQ was lost; reconnecting".into())
            }
            Some(_) => Some("the connection to RabbitMQ is closed; a new one will be opened".into()),
            None => Some("not connected to RabbitMQ".into()),
        }
    }

    pub(crate) async fn publishing_closed(&self) -> bool {
        self.state.lock().await.closed
    }

    /// A new channel on the live connection. A connection that cannot open one is dropped, so the
    /// next call opens a new one: once lapin's own recovery has given up, its connection can still
    /// read as reconnecting, and every later attempt would fail on it for good.
    async fn new_channel(&self, state: &mut LinkState) -> Result<Channel, BusError> {
        let conn = self.live(state).await?;
        let error = match tokio::time::timeout(SETUP_TIMEOUT, conn.create_channel()).await {
            Ok(Ok(channel)) => return Ok(channel),
            Ok(Err(e)) => connection_error("open a channel", e),
            Err(_) => timed_out("open a channel", SETUP_TIMEOUT),
        };
        tracing::warn!(generation = state.generation, error = %error, "RabbitMQ connection cannot open a channel; a new one will be opened");
        discard(state);
        Err(error)
    }

    async fn live<'a>(&self, state: &'a mut LinkState) -> Result<&'a Connection, BusError> {
        if state.conn.as_ref().is_some_and(|c| !alive(c)) {
            discard(state);
        }
        if state.conn.is_none() {
            // Connecting runs in its own task and the handle stays in the state: a caller that
            // stops waiting (the webhook receiver answers 503 after its own timeout) leaves it
            // running for the next caller, instead of starting over each time on a slow broker.
            let (url, settings) = (self.url.clone(), self.settings.clone());
            let connecting = state
                .connecting
                .get_or_insert_with(|| tokio::spawn(async move { establish(&url, &settings).await }));
            let established = connecting.await;
            state.connecting = None;
            let conn = established
                .map_err(|e| BusError::Connection { context: "connect".into(), source: e.into() })??;
            state.generation += 1;
            tracing::info!(generation = state.generation, "connected to RabbitMQ");
            state.conn = Some(conn);
        }
        Ok(state.conn.as_ref().expect("connected above"))
    }
}

fn alive(conn: &Connection) -> bool {
    let status = conn.status();
    status.connected() || status.connecting() || status.reconnecting()
}

/// Drops the connection: closed in the background (it may hang if the socket is half dead).
fn discard(state: &mut LinkState) {
    state.publish = None;
    if let Some(conn) = state.conn.take() {
        tokio::spawn(close_quietly(conn));
    }
}
