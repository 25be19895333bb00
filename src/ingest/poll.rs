//! The `updated_gte` poller: the fallback where a helpdesk sends no webhooks, and the recovery
//! path where it does (a delivery lost while deskpilot was down is found by the next poll).
//!
//! Every `interval` a [`Poller`] claims its connection's cursor (`poll/<connection>`) in the store,
//! lists the tickets updated since the cursor's position minus `overlap` (for helpdesks whose
//! lists lag behind their writes, and clock skew), oldest first, page by page, and publishes
//! `ticket.created` for a ticket created since then (and not reported before) and
//! `ticket.updated` otherwise. Changes explained by deskpilot's own writes are skipped
//! ([`LoopGuard`]). The cursor moves only after every event of a page is confirmed by the bus
//! (see `walk.rs`), so a restart between pages loses nothing and repeats nothing.
//!
//! **Replicas.** The cursor carries a lease (database clock). The replica holding it keeps it
//! from cycle to cycle (each claim renews it); the others find it busy and wait. When the holder
//! stops it releases the lease; when it dies the lease runs out after [`PollSettings::lease`] and
//! another replica carries on from the stored position. A replica whose lease was taken over
//! cannot move the cursor: the lease check and the move are one statement.

use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::{
    loop_guard::{self, LoopGuard},
    pages::{Change, Pages},
    walk::{CursorWalk, Seen, Tally, WalkError},
};
use crate::{
    bus::Publisher,
    events::{EventKind, EventSource},
    store::{CursorClaim, CursorStep, Store},
    ticketing::{DynTicketReader, PAGE_SIZE},
};

/// Default time between polls of a connection without a webhook secret.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Default overlap of a poll with the one before.
pub const DEFAULT_OVERLAP: Duration = Duration::from_secs(60);

/// How a connection is polled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollSettings {
    /// Time between the end of one poll and the start of the next.
    pub interval: Duration,
    /// How far before the cursor's position each poll starts again.
    pub overlap: Duration,
    /// Tickets asked for per page.
    pub page_size: u32,
    /// How long the cursor stays claimed without a renewal; another replica takes over after it.
    pub lease: Duration,
    /// The first `updated_gte` of a connection never polled before; `None` = now minus `overlap`
    /// (the history before is for `deskpilot backfill`).
    pub start: Option<OffsetDateTime>,
    /// How far a change may lie from deskpilot's own write and still be taken for it.
    pub own_write_tolerance: Duration,
}

impl PollSettings {
    /// Settings for polling every `interval` with `overlap`: full pages, and a lease that outlives
    /// two intervals so the holder keeps the cursor between its polls.
    pub fn new(interval: Duration, overlap: Duration) -> Self {
        Self {
            interval,
            overlap,
            page_size: PAGE_SIZE,
            lease: interval * 2 + Duration::from_secs(30),
            start: None,
            own_write_tolerance: loop_guard::DEFAULT_TOLERANCE,
        }
    }
}

impl Default for PollSettings {
    fn default() -> Self {
        Self::new(DEFAULT_INTERVAL, DEFAULT_OVERLAP)
    }
}

/// What one poll did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollOutcome {
    /// This replica polled: what the pages came to.
    Polled(Tally),
    /// Another replica holds the cursor.
    Busy {
        /// The replica holding it.
        holder: String,
        /// When its lease ends unless renewed.
        until: OffsetDateTime,
    },
}

/// Polls one connection.
pub struct Poller {
    connection_id: String,
    reader: DynTicketReader,
    store: Store,
    publisher: Publisher,
    guard: LoopGuard,
    settings: PollSettings,
    holder: String,
}

impl Poller {
    /// A poller of `connection_id` through `reader`, publishing on `publisher`, its cursor and
    /// the loop guard's ledger in `store`. `holder` names this replica (unique per process, e.g.
    /// [`replica_id`]).
    pub fn new(
        connection_id: impl Into<String>,
        reader: DynTicketReader,
        store: Store,
        publisher: Publisher,
        settings: PollSettings,
        holder: impl Into<String>,
    ) -> Self {
        let guard = LoopGuard::new(store.clone()).with_tolerance(settings.own_write_tolerance);
        Self {
            connection_id: connection_id.into(),
            reader,
            store,
            publisher,
            guard,
            settings,
            holder: holder.into(),
        }
    }

    /// The name of a connection's poll cursor in the store.
    pub fn cursor_name(connection_id: &str) -> String {
        format!("poll/{connection_id}")
    }

    /// The connection polled.
    pub fn connection_id(&self) -> &str {
        &self.connection_id
    }

    /// One poll: claim the cursor, walk every page from it, publish, move it.
    pub async fn poll_once(&self) -> Result<PollOutcome, WalkError> {
        self.poll(&CancellationToken::new()).await
    }

    /// [`Poller::poll_once`], ending after the page in progress once `stop` is cancelled.
    async fn poll(&self, stop: &CancellationToken) -> Result<PollOutcome, WalkError> {
        let name = Self::cursor_name(&self.connection_id);
        let cursor = match self
            .store
            .claim_cursor(&name, &self.connection_id, &self.holder, self.settings.lease)
            .await?
        {
            CursorClaim::Held(cursor) => cursor,
            CursorClaim::Busy { holder, until } => return Ok(PollOutcome::Busy { holder, until }),
            CursorClaim::Finished(_) => {
                return Err(WalkError::Unwalkable(format!("the cursor `{name}` is marked finished")));
            }
        };
        let overlap = time::Duration::try_from(self.settings.overlap).unwrap_or(time::Duration::ZERO);
        let from = match cursor.position {
            Some(position) => position - overlap,
            None => self.settings.start.unwrap_or_else(|| OffsetDateTime::now_utc() - overlap),
        };
        // Tickets created after the start of a walk cut short were not reported yet, even where
        // the position has moved past their creation.
        let created_since = cursor.created_since.unwrap_or(from);
        let parts = (&self.store, &self.publisher, &self.guard);
        let mut walk = CursorWalk::resume(parts, &cursor, &self.holder, EventSource::Poll, overlap);
        walk.created_since = Some(created_since);
        let mut pages = Pages::new(self.reader.as_ref(), from, self.settings.page_size);
        let mut tally = Tally::default();
        while !stop.is_cancelled()
            && let Some(page) = pages.next().await?
        {
            let classify = |change: &Change, seen: &Seen| Some(classify(change, created_since, seen));
            tally += walk.report(&page, pages.ended(), classify).await?;
        }
        if walk.position.is_none() {
            // Nothing yet: remember where this poll started, so the next one does not start from a
            // later "now" and miss what changed in between.
            let step =
                CursorStep { position: from, seen: &[], tickets_seen: 0, published: 0, created_since: None };
            self.store.advance_cursor(&name, &self.holder, step).await?;
        }
        if let Some(position) = walk.position {
            metrics::gauge!("deskpilot_poll_position_seconds", "connection" => self.connection_id.clone())
                .set(position.unix_timestamp() as f64);
        }
        Ok(PollOutcome::Polled(tally))
    }

    /// Polls every `interval` until `shutdown`, then releases the cursor so another replica can
    /// take over at once. A poll in progress at shutdown ends after its current page, so what was
    /// published is recorded and nobody publishes it again.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(
            connection = %self.connection_id,
            interval_secs = self.settings.interval.as_secs(),
            overlap_secs = self.settings.overlap.as_secs(),
            "poller started"
        );
        while !shutdown.is_cancelled() {
            let outcome = self.poll(&shutdown).await;
            self.record(&outcome);
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(self.settings.interval) => {}
            }
        }
        let name = Self::cursor_name(&self.connection_id);
        if let Err(e) = self.store.release_cursor(&name, &self.holder).await {
            tracing::warn!(connection = %self.connection_id, error = %e, "could not release the poll cursor");
        }
        tracing::info!(connection = %self.connection_id, "poller stopped");
    }

    fn record(&self, outcome: &Result<PollOutcome, WalkError>) {
        let connection = self.connection_id.as_str();
        let result = match outcome {
            Ok(PollOutcome::Polled(t)) => {
                tracing::debug!(
                    connection,
                    tickets = t.tickets,
                    published = t.published,
                    own_writes = t.own_writes,
                    "polled"
                );
                "ok"
            }
            Ok(PollOutcome::Busy { holder, .. }) => {
                tracing::debug!(connection, holder, "another replica holds the poll cursor");
                "busy"
            }
            Err(e) if e.is_lease_lost() => {
                tracing::info!(connection, error = %e, "the poll cursor was taken over by another replica");
                "lease_lost"
            }
            Err(e) if e.is_retryable() => {
                tracing::warn!(connection, error = %crate::http::error_chain(e), "poll failed; trying again at the next interval");
                "error"
            }
            Err(e) => {
                tracing::error!(connection, error = %crate::http::error_chain(e),
                    "poll failed and will fail again until the cause is fixed");
                "error"
            }
        };
        metrics::counter!("deskpilot_poll_cycles_total", "connection" => connection.to_owned(), "result" => result)
            .increment(1);
    }
}

/// `ticket.created` for a ticket created since `created_since` (the start of the poll's window,
/// or of a walk cut short that this one resumes) and not reported in the overlap, or never
/// changed since it was created; `ticket.updated` otherwise. Counting creation from the start of
/// the overlap rather than the cursor's position means a ticket that the helpdesk listed late is
/// still triaged; a created event reported twice is one ledger key, so the worker drops the
/// second.
fn classify(change: &Change, created_since: OffsetDateTime, seen: &Seen) -> EventKind {
    let created = change.created_at.is_some_and(|created| {
        created == change.updated_at || (created >= created_since && !seen.has_ticket(&change.ticket_id))
    });
    if created { EventKind::TicketCreated } else { EventKind::TicketUpdated }
}

/// A name for this process's claims on cursors: host, process id and a random suffix.
pub fn replica_id() -> String {
    let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "deskpilot".into());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &suffix[..8])
}
