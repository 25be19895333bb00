//! The bus's names and tunables.

use std::time::Duration;

use crate::events::EventKind;

/// Names and tunables of the bus. Every queue and exchange name derives from `exchange`/`queue`
/// (and `dead_queue`), so tests and tenants can use their own prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusSettings {
    /// Topic exchange the events are published to (default `deskpilot.events`).
    pub exchange: String,
    /// Quorum work queue (default `deskpilot.triage`).
    pub queue: String,
    /// The event kinds bound to `queue` (routing keys; default `ticket.created`).
    pub kinds: Vec<EventKind>,
    /// Dead-letter queue; also the name of the fanout exchange the broker dead-letters into
    /// (default: `queue` with its last dot-segment replaced by `dead`, so `deskpilot.dead`).
    pub dead_queue: String,
    /// Retry tiers, shortest first: one TTL queue `<queue>.retry.<delay>` per entry
    /// (default 5 s, 30 s, 2 min, 10 min). Must not be empty.
    pub retry_delays: Vec<Duration>,
    /// `x-delivery-limit` of the work queue: deliveries without an ack (crash loops, requeues)
    /// before the broker itself dead-letters the message (default 10).
    pub delivery_limit: u32,
    /// Un-acked deliveries handed to this consumer at once (`basic.qos`, per consumer; default 10).
    pub prefetch: u16,
    /// How long a publish waits for the broker's confirm before it counts as failed and is tried
    /// again on a fresh channel (default 30 s): a confirm that never comes must not hang a
    /// webhook, a retry or shutdown.
    pub confirm_timeout: Duration,
}

impl BusSettings {
    /// Settings for `exchange` and `queue` with the defaults for everything else.
    pub fn new(exchange: impl Into<String>, queue: impl Into<String>) -> Self {
        let queue = queue.into();
        let dead_queue = match queue.rsplit_once('.') {
            Some((prefix, _)) => format!("{prefix}.dead"),
            None => format!("{queue}.dead"),
        };
        Self {
            exchange: exchange.into(),
            queue,
            kinds: vec![EventKind::TicketCreated],
            dead_queue,
            retry_delays: [5, 30, 120, 600].into_iter().map(Duration::from_secs).collect(),
            delivery_limit: 10,
            prefetch: 10,
            confirm_timeout: Duration::from_secs(30),
        }
    }

    /// The outcomes queue beside this work queue: `queue` with its last dot-segment replaced by
    /// `outcomes` (`deskpilot.outcomes`), bound to `ticket.updated`, with its own retry tiers and
    /// the same exchange, dead-letter queue and tunables.
    pub fn outcomes(&self) -> BusSettings {
        let queue = match self.queue.rsplit_once('.') {
            Some((prefix, _)) => format!("{prefix}.outcomes"),
            None => format!("{}.outcomes", self.queue),
        };
        BusSettings { queue, kinds: vec![EventKind::TicketUpdated], ..self.clone() }
    }

    /// The delay before try `attempt + 1` after try `attempt` (1-based) failed.
    ///
    /// Tier `attempt - 1`, clamped to the last tier. When `retry_after` (e.g. a 429's
    /// `Retry-After`) is longer than that, the first tier at least as long (or the last tier).
    pub fn retry_delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let Some(&last) = self.retry_delays.last() else {
            return retry_after.unwrap_or_default();
        };
        let index = (attempt.max(1) as usize - 1).min(self.retry_delays.len() - 1);
        let tier = self.retry_delays[index];
        match retry_after {
            Some(wanted) if wanted > tier => {
                self.retry_delays.iter().copied().find(|d| *d >= wanted).unwrap_or(last)
            }
            _ => tier,
        }
    }
}

impl Default for BusSettings {
    fn default() -> Self {
        Self::new("deskpilot.events", "deskpilot.triage")
    }
}
