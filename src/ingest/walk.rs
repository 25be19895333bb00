//! Reporting pages of ticket changes under a stored, leased cursor: what the poller and the
//! backfill share (the pages themselves come from `pages.rs`).
//!
//! After a page's events are all confirmed by the bus, the cursor moves in one statement that also
//! checks the lease: the position (newest `updated_at` handled) and the changes handled near it,
//! so a walk that starts there again, after a restart or on another replica, skips what was
//! already published instead of publishing it twice.

use std::collections::{BTreeSet, HashMap};

use time::OffsetDateTime;

use super::{loop_guard::LoopGuard, pages::Change};
use crate::{
    bus::{BusError, Publisher},
    events::{EventKind, EventSource, TicketEvent},
    store::{CursorStep, IngestCursor, SeenChange, Store, StoreError},
    ticketing::TicketingError,
};

/// Most changes a cursor remembers near its position; past it the oldest are forgotten (a walk
/// starting again may then publish those again, which the worker's ledger drops).
const MAX_SEEN: usize = 10_000;
/// Publishes awaiting their confirm at once.
const PUBLISH_CONCURRENCY: usize = 32;

/// Why a walk stopped.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// Listing the tickets failed.
    #[error(transparent)]
    Helpdesk(#[from] TicketingError),
    /// The helpdesk's list does not honour `updated_gte`, `sort=updated_at` or `offset`.
    #[error("the helpdesk's ticket list cannot be walked in updated_at order: {0}")]
    Unwalkable(String),
    /// The store failed, or the cursor's lease was lost ([`StoreError::LeaseLost`]).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A publish was not confirmed; the cursor stays where it was.
    #[error(transparent)]
    Bus(#[from] BusError),
}

impl WalkError {
    /// Whether walking again later may get further.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Helpdesk(e) => e.is_retryable(),
            Self::Unwalkable(_) => false,
            Self::Store(e) => e.is_retryable(),
            Self::Bus(e) => e.is_retryable(),
        }
    }

    /// Another replica took the cursor over (this one's lease had expired).
    pub fn is_lease_lost(&self) -> bool {
        matches!(self, Self::Store(StoreError::LeaseLost { .. }))
    }
}
/// Changes already handled near a cursor's position.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    by_time: BTreeSet<(i64, String)>,
    per_ticket: HashMap<String, u32>,
}

impl Seen {
    fn from_stored(stored: &[SeenChange]) -> Self {
        let mut seen = Self::default();
        for (ticket, ms) in stored {
            seen.insert((ticket.clone(), *ms));
        }
        seen
    }

    fn contains(&self, (ticket, ms): &SeenChange) -> bool {
        self.by_time.contains(&(*ms, ticket.clone()))
    }

    /// Whether some change of this ticket was handled near the position.
    pub(crate) fn has_ticket(&self, ticket_id: &str) -> bool {
        self.per_ticket.contains_key(ticket_id)
    }

    fn insert(&mut self, (ticket, ms): SeenChange) {
        if self.by_time.insert((ms, ticket.clone())) {
            *self.per_ticket.entry(ticket).or_default() += 1;
        }
    }

    /// Forgets changes before `min_ms`, and the oldest past [`MAX_SEEN`].
    fn prune(&mut self, min_ms: i64) {
        let keep = self.by_time.split_off(&(min_ms, String::new()));
        let over = keep.len().saturating_sub(MAX_SEEN);
        let dropped = std::mem::replace(&mut self.by_time, keep);
        let extra: Vec<_> = self.by_time.iter().take(over).cloned().collect();
        for (ms, ticket) in dropped.into_iter().chain(extra) {
            self.by_time.remove(&(ms, ticket.clone()));
            if let Some(n) = self.per_ticket.get_mut(&ticket) {
                *n -= 1;
                if *n == 0 {
                    self.per_ticket.remove(&ticket);
                }
            }
        }
    }

    fn to_stored(&self) -> Vec<SeenChange> {
        self.by_time.iter().map(|(ms, ticket)| (ticket.clone(), *ms)).collect()
    }
}

/// What one page came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Tickets looked at that were not handled before.
    pub tickets: u64,
    /// Events the bus confirmed.
    pub published: u64,
    /// Events of a kind no queue is bound to (the broker returned them; nobody consumes them).
    pub unrouted: u64,
    /// Changes explained by deskpilot's own writes, not reported.
    pub own_writes: u64,
    /// Changes handled before (the overlap, or a page asked for again).
    pub already_handled: u64,
    /// Changes outside what the walk reports (e.g. updates in a backfill of created tickets).
    pub out_of_scope: u64,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Self) {
        self.tickets += o.tickets;
        self.published += o.published;
        self.unrouted += o.unrouted;
        self.own_writes += o.own_writes;
        self.already_handled += o.already_handled;
        self.out_of_scope += o.out_of_scope;
    }
}

/// A claimed cursor and what reporting a page of changes needs.
pub(crate) struct CursorWalk<'a> {
    store: &'a Store,
    publisher: &'a Publisher,
    guard: &'a LoopGuard,
    name: &'a str,
    holder: &'a str,
    connection_id: &'a str,
    source: EventSource,
    /// How far before the position handled changes are remembered.
    overlap: time::Duration,
    /// The newest `updated_at` handled.
    pub(crate) position: Option<OffsetDateTime>,
    seen: Seen,
    /// Recorded with each page until the walk reaches the end of the list (see
    /// [`CursorStep::created_since`]).
    pub(crate) created_since: Option<OffsetDateTime>,
    /// What the cursor holds now.
    stored_created_since: Option<OffsetDateTime>,
}

impl<'a> CursorWalk<'a> {
    /// A walk of the cursor `name` held by `holder`, reporting changes of `connection_id` as
    /// `source`, starting where `cursor` stands.
    pub(crate) fn resume(
        parts: (&'a Store, &'a Publisher, &'a LoopGuard),
        cursor: &'a IngestCursor,
        holder: &'a str,
        source: EventSource,
        overlap: time::Duration,
    ) -> Self {
        let (store, publisher, guard) = parts;
        Self {
            store,
            publisher,
            guard,
            name: &cursor.name,
            holder,
            connection_id: &cursor.connection_id,
            source,
            overlap,
            position: cursor.position,
            seen: Seen::from_stored(&cursor.seen),
            created_since: None,
            stored_created_since: cursor.created_since,
        }
    }

    /// Reports a page: every change not handled before, classified by `classify` (`None` = not
    /// reported), not explained by deskpilot's own write, is published; once the bus confirmed
    /// them all the cursor moves past the page. Nothing moves when a publish fails. `last` says
    /// the list ended with this page.
    pub(crate) async fn report(
        &mut self,
        page: &[Change],
        last: bool,
        classify: impl Fn(&Change, &Seen) -> Option<EventKind>,
    ) -> Result<Tally, WalkError> {
        let mut tally = Tally::default();
        let mut events = Vec::new();
        for change in page {
            if self.seen.contains(&change.key()) {
                tally.already_handled += 1;
                continue;
            }
            tally.tickets += 1;
            let Some(kind) = classify(change, &self.seen) else {
                tally.out_of_scope += 1;
                continue;
            };
            let own = self
                .guard
                .is_own_write(self.connection_id, &change.ticket_id, change.updated_at, self.source)
                .await?;
            if own {
                tally.own_writes += 1;
                continue;
            }
            let (connection, ticket) = (self.connection_id, &change.ticket_id);
            events.push(TicketEvent::observed(kind, connection, ticket, change.updated_at, self.source));
        }
        self.publish(&events, &mut tally).await?;

        let created_since = if last { None } else { self.created_since };
        let newest = page.last().map(|c| c.updated_at);
        let Some(position) = self.position.max(newest) else { return Ok(tally) };
        if newest.is_none() && created_since == self.stored_created_since {
            return Ok(tally);
        }
        for change in page {
            self.seen.insert(change.key());
        }
        self.seen.prune(epoch_ms(position - self.overlap));
        let stored = self.seen.to_stored();
        let step = CursorStep {
            position,
            seen: &stored,
            tickets_seen: tally.tickets,
            published: tally.published,
            created_since,
        };
        self.store.advance_cursor(self.name, self.holder, step).await?;
        self.position = Some(position);
        self.stored_created_since = created_since;
        Ok(tally)
    }

    async fn publish(&self, events: &[TicketEvent], tally: &mut Tally) -> Result<(), WalkError> {
        let mut failure = None;
        for chunk in events.chunks(PUBLISH_CONCURRENCY) {
            let mut confirms = Vec::with_capacity(chunk.len());
            for event in chunk {
                confirms.push(self.publisher.publish(event));
            }
            for (event, result) in chunk.iter().zip(futures::future::join_all(confirms).await) {
                let labels = [
                    ("connection", self.connection_id.to_owned()),
                    ("source", self.source.as_str().to_owned()),
                    ("kind", event.kind.as_str().to_owned()),
                ];
                match result {
                    Ok(()) => {
                        tally.published += 1;
                        metrics::counter!("deskpilot_ingest_events_total", &labels).increment(1);
                    }
                    // Nobody consumes this kind yet: the broker returned it rather than store it.
                    Err(BusError::Unroutable { .. }) => {
                        tally.unrouted += 1;
                        metrics::counter!("deskpilot_ingest_unrouted_total", &labels).increment(1);
                    }
                    Err(e) => failure = failure.or(Some(e)),
                }
            }
        }
        match failure {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

/// A time as epoch milliseconds (rounded down), as cursors keep times.
pub(crate) fn epoch_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_forgets_what_is_before_the_overlap_and_past_its_cap() {
        let mut seen = Seen::default();
        seen.insert(("a".into(), 10));
        seen.insert(("a".into(), 20));
        seen.insert(("b".into(), 30));
        seen.prune(15);
        assert!(!seen.contains(&("a".into(), 10)) && seen.contains(&("a".into(), 20)));
        assert!(seen.has_ticket("a") && seen.has_ticket("b"));
        seen.prune(25);
        assert!(!seen.has_ticket("a"));
        for i in 0..(MAX_SEEN as i64 + 5) {
            seen.insert((format!("t{i}"), 100 + i));
        }
        seen.prune(0);
        assert_eq!(seen.to_stored().len(), MAX_SEEN);
        assert!(!seen.has_ticket("b") && !seen.has_ticket("t0") && seen.has_ticket("t10"));
    }
}
