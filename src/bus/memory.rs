//! The in-process bus: one process, no broker, the same semantics as RabbitMQ's.
//!
//! - an event goes to the work queue when its kind is bound to it ([`BusSettings::kinds`]) and to
//!   the outcomes queue beside it ([`MemoryBus::outcomes`]) when bound there; a kind neither is
//!   bound to is [`BusError::Unroutable`];
//! - each consumer holds at most `prefetch` un-acked deliveries;
//! - `retry` waits out the chosen tier on a tokio timer, then the message is ready again with the
//!   attempt headers; `dead_letter` keeps it in memory ([`MemoryBus::dead_letters`]);
//! - `requeue`, or dropping a delivery without settling it (as a closed channel would), puts it back
//!   at the head with `redelivered = true`; past `delivery_limit` such returns it is dead-lettered
//!   with reason `broker: delivery_limit`.
//!
//! Nothing survives the process: use it for one-process setups and tests.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{
    BusError, BusSettings, Consumer, ConsumerInner, DeadLetter, Delivery, DeliveryHandle, Outgoing,
    Publisher, PublisherInner,
};
use crate::events::{EventKind, TicketEvent};

/// A new in-process bus and its publisher and consumer. Inspect it through
/// [`Publisher::as_memory`].
pub fn pair(settings: &BusSettings) -> (Publisher, Consumer) {
    let bus = MemoryBus::new(settings.clone());
    (bus.publisher(), bus.consumer())
}

/// A handle on an in-process bus: make publishers and consumers, inspect the queues, list and
/// replay dead letters. Clones share the bus.
#[derive(Clone)]
pub struct MemoryBus {
    shared: Arc<Shared>,
}

struct Shared {
    settings: BusSettings,
    /// The outcomes queue beside this work queue (`None` on the outcomes queue itself).
    outcomes: Option<MemoryBus>,
    state: Mutex<State>,
    /// Woken when a message becomes ready or a delivery is settled.
    changed: Notify,
}

#[derive(Default)]
struct State {
    ready: VecDeque<Message>,
    unacked: usize,
    scheduled: usize,
    dead: VecDeque<(Message, DeadLetter)>,
}

#[derive(Debug, Clone)]
struct Message {
    body: Vec<u8>,
    message_id: Option<String>,
    routing_key: String,
    /// Tries before this one (`x-deskpilot-attempt`).
    tried: u32,
    last_error: Option<String>,
    redelivered: bool,
    /// Requeues so far (the broker's delivery count).
    returns: u32,
}

impl Message {
    fn new(body: Vec<u8>, message_id: Option<String>, routing_key: String) -> Self {
        Self { body, message_id, routing_key, tried: 0, last_error: None, redelivered: false, returns: 0 }
    }
}

impl MemoryBus {
    /// An empty bus.
    pub fn new(settings: BusSettings) -> Self {
        let outcomes = settings.outcomes();
        let outcomes = (outcomes.queue != settings.queue).then(|| Self::queue(outcomes, None));
        Self::queue(settings, outcomes)
    }

    fn queue(settings: BusSettings, outcomes: Option<MemoryBus>) -> Self {
        Self {
            shared: Arc::new(Shared {
                settings,
                outcomes,
                state: Mutex::new(State::default()),
                changed: Notify::new(),
            }),
        }
    }

    /// The outcomes queue beside this work queue (this queue itself when it is the outcomes queue).
    pub fn outcomes(&self) -> MemoryBus {
        self.shared.outcomes.clone().unwrap_or_else(|| self.clone())
    }

    /// The bus's settings.
    pub fn settings(&self) -> &BusSettings {
        &self.shared.settings
    }

    /// A publisher on this bus.
    pub fn publisher(&self) -> Publisher {
        Publisher(PublisherInner::Memory(self.clone()))
    }

    /// A consumer on this bus (several compete for the messages, each with its own prefetch).
    pub fn consumer(&self) -> Consumer {
        Consumer(ConsumerInner::Memory(MemoryConsumer {
            bus: self.clone(),
            in_flight: Arc::new(AtomicUsize::new(0)),
            shutdown: CancellationToken::new(),
            closed: false,
        }))
    }

    pub(super) fn publish_event(&self, event: &TicketEvent) -> Result<(), BusError> {
        self.publish_raw(event.kind.as_str(), event.to_json(), Some(event.event_id.clone()))
    }

    /// Publishes any body with `routing_key`, as a raw AMQP client could (tests of bad bodies).
    pub fn publish_raw(
        &self,
        routing_key: &str,
        body: impl Into<Vec<u8>>,
        message_id: Option<String>,
    ) -> Result<(), BusError> {
        let outcomes = self.shared.outcomes.as_ref().filter(|o| o.routes(routing_key));
        let here = self.routes(routing_key);
        if !here && outcomes.is_none() {
            return Err(BusError::Unroutable {
                exchange: self.settings().exchange.clone(),
                routing_key: routing_key.to_owned(),
                reply: "312 NO_ROUTE".to_owned(),
            });
        }
        let message = Message::new(body.into(), message_id, routing_key.to_owned());
        if let Some(outcomes) = outcomes {
            outcomes.push(message.clone(), false);
        }
        if here {
            self.push(message, false);
        }
        Ok(())
    }

    /// Messages waiting to be delivered.
    pub fn ready(&self) -> usize {
        self.lock().ready.len()
    }

    /// Deliveries handed out and not settled yet.
    pub fn unacked(&self) -> usize {
        self.lock().unacked
    }

    /// Messages waiting out a retry tier.
    pub fn scheduled(&self) -> usize {
        self.lock().scheduled
    }

    /// Up to `limit` dead letters, oldest first; they stay where they are.
    pub fn dead_letters(&self, limit: usize) -> Vec<DeadLetter> {
        self.lock().dead.iter().take(limit).map(|(_, letter)| letter.clone()).collect()
    }

    /// Moves up to `limit` (or all) dead letters back to the queue, attempt reset. Letters whose
    /// routing key is not consumed stay dead. Returns how many were moved.
    pub fn replay_dead_letters(&self, limit: Option<usize>) -> usize {
        let mut state = self.lock();
        let (mut moved, mut kept) = (0, VecDeque::new());
        while moved < limit.unwrap_or(usize::MAX) {
            let Some((message, letter)) = state.dead.pop_front() else { break };
            if self.routes(&message.routing_key) {
                state.ready.push_back(Message::new(message.body, message.message_id, message.routing_key));
                moved += 1;
            } else {
                kept.push_back((message, letter));
            }
        }
        kept.append(&mut state.dead);
        state.dead = kept;
        drop(state);
        self.shared.changed.notify_waiters();
        moved
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn push(&self, message: Message, front: bool) {
        let mut state = self.lock();
        if front {
            state.ready.push_front(message);
        } else {
            state.ready.push_back(message);
        }
        drop(state);
        self.shared.changed.notify_waiters();
    }

    fn dead_letter(&self, message: Message, reason: String, attempt: u32) {
        let letter = DeadLetter {
            event_or_body: TicketEvent::from_json(&message.body).map_err(|_| message.body.clone()),
            reason,
            attempt,
            failed_at: Some(OffsetDateTime::now_utc()),
            message_id: message.message_id.clone(),
            routing_key: message.routing_key.clone(),
        };
        self.lock().dead.push_back((message, letter));
    }
}

impl MemoryBus {
    /// Whether `routing_key` is bound to this queue.
    fn routes(&self, routing_key: &str) -> bool {
        EventKind::parse(routing_key).is_some_and(|kind| self.settings().kinds.contains(&kind))
    }
}

/// Consumes an in-process bus.
pub(crate) struct MemoryConsumer {
    bus: MemoryBus,
    in_flight: Arc<AtomicUsize>,
    shutdown: CancellationToken,
    closed: bool,
}

impl MemoryConsumer {
    pub(super) fn set_shutdown(&mut self, token: CancellationToken) {
        self.shutdown = token;
    }

    pub(super) fn close(&mut self) {
        self.closed = true;
        self.shutdown.cancel();
    }

    pub(super) async fn next(&mut self) -> Option<Delivery> {
        loop {
            if self.closed || self.shutdown.is_cancelled() {
                self.closed = true;
                return None;
            }
            let changed = self.bus.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(delivery) = self.take() {
                return Some(delivery);
            }
            tokio::select! {
                () = changed => {}
                () = self.shutdown.cancelled() => {}
            }
        }
    }

    fn take(&self) -> Option<Delivery> {
        if self.in_flight.load(Ordering::SeqCst) >= usize::from(self.bus.settings().prefetch.max(1)) {
            return None;
        }
        let mut state = self.bus.lock();
        let message = state.ready.pop_front()?;
        state.unacked += 1;
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        drop(state);
        Some(Delivery {
            event: TicketEvent::from_json(&message.body),
            attempt: message.tried.saturating_add(1),
            redelivered: message.redelivered,
            message_id: message.message_id.clone(),
            routing_key: message.routing_key.clone(),
            last_error: message.last_error.clone(),
            body: message.body.clone(),
            handle: DeliveryHandle::Memory(MemoryHandle {
                bus: self.bus.clone(),
                in_flight: self.in_flight.clone(),
                message: Some(message),
            }),
        })
    }
}

/// Settles an in-process delivery; dropping it unsettled requeues it.
pub(crate) struct MemoryHandle {
    bus: MemoryBus,
    in_flight: Arc<AtomicUsize>,
    /// `None` once settled.
    message: Option<Message>,
}

impl MemoryHandle {
    pub(super) fn ack(mut self) -> Result<(), BusError> {
        self.settle();
        Ok(())
    }

    pub(super) fn requeue(mut self) -> Result<(), BusError> {
        if let Some(message) = self.settle() {
            self.bus.give_back(message);
        }
        Ok(())
    }

    pub(super) fn retry(
        mut self,
        out: Outgoing,
        reason: &str,
        retry_after: Option<Duration>,
    ) -> Result<(), BusError> {
        self.settle();
        let delay = self.bus.settings().retry_delay(out.attempt, retry_after);
        let mut message = Message::new(out.body, out.message_id, out.routing_key);
        message.tried = out.attempt;
        message.last_error = Some(reason.to_owned());
        self.bus.lock().scheduled += 1;
        let bus = self.bus.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            bus.lock().scheduled -= 1;
            bus.push(message, false);
        });
        Ok(())
    }

    pub(super) fn dead_letter(mut self, out: Outgoing, reason: &str) -> Result<(), BusError> {
        if let Some(message) = self.settle() {
            self.bus.dead_letter(message, reason.to_owned(), out.attempt);
        }
        Ok(())
    }

    fn settle(&mut self) -> Option<Message> {
        let message = self.message.take()?;
        self.bus.lock().unacked -= 1;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.bus.shared.changed.notify_waiters();
        Some(message)
    }
}

impl Drop for MemoryHandle {
    fn drop(&mut self) {
        if let Some(message) = self.settle() {
            self.bus.give_back(message);
        }
    }
}

impl MemoryBus {
    /// A requeue: back to the head, or dead past the delivery limit.
    fn give_back(&self, mut message: Message) {
        message.returns += 1;
        message.redelivered = true;
        if message.returns > self.settings().delivery_limit {
            let attempt = message.tried.saturating_add(1);
            self.dead_letter(message, "broker: delivery_limit".to_owned(), attempt);
        } else {
            self.push(message, true);
        }
    }
}
