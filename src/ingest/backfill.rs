//! Backfill: the initial sync. Walks a connection's history from `since` (to `until`) in
//! `updated_at` order and publishes an event per ticket, like the poller, under a cursor of its
//! own (`backfill/<connection>/<since>/<until>/<kind>`) so a stopped or failed run resumes where
//! it stood when started again with the same arguments.
//!
//! **Which events.** By default every change in the window: `ticket.created` for a ticket created
//! in it, `ticket.updated` for one created before. With [`BackfillKind::Created`], only tickets
//! created in the window, as `ticket.created` (a ticket created in the window and changed since
//! is included). Changes explained by deskpilot's own writes are skipped ([`LoopGuard`]).
//!
//! **Rate limits.** The helpdesk client already waits out a 429's `Retry-After` and retries; a
//! page that still fails with a rate limit or a transient error is asked for again after a pause
//! that grows each time (the `Retry-After` when the helpdesk gave one), up to
//! [`MAX_PAGE_FAILURES`] times in a row. `max_requests_per_sec` spaces the list requests out.

use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{
    loop_guard::{self, LoopGuard},
    pages::{Change, Pages},
    walk::{CursorWalk, Tally, WalkError},
};
use crate::{
    bus::Publisher,
    events::{EventKind, EventSource},
    store::{CursorClaim, IngestCursor, Store, StoreError},
    ticketing::{DynTicketReader, PAGE_SIZE},
};

/// Pages that may fail in a row (rate limited or transient) before the run stops, resumable.
pub const MAX_PAGE_FAILURES: u32 = 8;
/// The longest pause before asking for a failed page again.
const MAX_PAUSE: Duration = Duration::from_secs(300);
/// How long the run's claim on its cursor lasts without a renewal (each page renews it).
const LEASE: Duration = Duration::from_secs(600);

/// Which events a backfill publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackfillKind {
    /// Every change in the window: created or updated.
    #[default]
    All,
    /// Tickets created in the window, as `ticket.created`.
    Created,
}

impl BackfillKind {
    /// `all` or `created`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Created => "created",
        }
    }
}

/// What to backfill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillSpec {
    /// The connection.
    pub connection_id: String,
    /// Start of the window.
    pub since: OffsetDateTime,
    /// End of the window; `None` = as far as the helpdesk's list goes.
    pub until: Option<OffsetDateTime>,
    /// Which events.
    pub kind: BackfillKind,
}

impl BackfillSpec {
    /// The name of this backfill's cursor: the same arguments resume the same run.
    pub fn cursor_name(&self) -> String {
        let until = self.until.map_or_else(|| "open".to_owned(), |u| unix_ms(u).to_string());
        format!("backfill/{}/{}/{until}/{}", self.connection_id, unix_ms(self.since), self.kind.as_str())
    }

    fn classify(&self, change: &Change) -> Option<EventKind> {
        let in_window = |t: OffsetDateTime| t >= self.since && self.until.is_none_or(|until| t <= until);
        let created_in_window = change.created_at.is_some_and(in_window);
        match (self.kind, created_in_window) {
            (_, true) => Some(EventKind::TicketCreated),
            (BackfillKind::All, false) => Some(EventKind::TicketUpdated),
            (BackfillKind::Created, false) => None,
        }
    }
}

/// How a backfill runs.
#[derive(Debug, Clone, PartialEq)]
pub struct BackfillSettings {
    /// Tickets asked for per page.
    pub page_size: u32,
    /// Most list requests per second; `None` = as fast as the helpdesk answers.
    pub max_requests_per_sec: Option<f64>,
    /// The first pause after a failed page (doubled each time).
    pub first_pause: Duration,
    /// How far a change may lie from deskpilot's own write and still be taken for it.
    pub own_write_tolerance: Duration,
}

impl Default for BackfillSettings {
    fn default() -> Self {
        Self {
            page_size: PAGE_SIZE,
            max_requests_per_sec: None,
            first_pause: Duration::from_secs(2),
            own_write_tolerance: loop_guard::DEFAULT_TOLERANCE,
        }
    }
}

/// Where a run stands, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackfillProgress {
    /// The newest `updated_at` handled, if any.
    pub position: Option<OffsetDateTime>,
    /// Tickets looked at, this run and before it (a resumed run counts what it resumed).
    pub tickets_seen: u64,
    /// Events confirmed, this run and before it.
    pub published: u64,
}

/// Told about a run as it goes (the CLI draws a progress bar).
pub trait ProgressSink: Send {
    /// The run holds its cursor and starts from `progress` (a resumed run from where it stood).
    fn started(&mut self, progress: BackfillProgress);
    /// A page was handled.
    fn advanced(&mut self, progress: BackfillProgress);
    /// A page failed and is asked for again after `pause`.
    fn pausing(&mut self, why: &str, pause: Duration);
}

/// A sink that ignores everything.
impl ProgressSink for () {
    fn started(&mut self, _: BackfillProgress) {}
    fn advanced(&mut self, _: BackfillProgress) {}
    fn pausing(&mut self, _: &str, _: Duration) {}
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum BackfillOutcome {
    /// The window was walked to its end.
    Finished {
        /// This run's pages.
        tally: Tally,
        /// Totals, including earlier runs it resumed.
        progress: BackfillProgress,
    },
    /// Stopped on request; the next run with the same arguments resumes.
    Stopped {
        /// This run's pages.
        tally: Tally,
        /// Totals so far.
        progress: BackfillProgress,
    },
    /// An earlier run already walked the whole window.
    AlreadyFinished(IngestCursor),
    /// Another run of the same backfill is in progress.
    Busy {
        /// Its holder.
        holder: String,
        /// When its lease ends unless renewed.
        until: OffsetDateTime,
    },
}

/// Runs backfills of one connection.
pub struct Backfill {
    reader: DynTicketReader,
    store: Store,
    publisher: Publisher,
    guard: LoopGuard,
    settings: BackfillSettings,
    holder: String,
}

impl Backfill {
    /// A backfill reading through `reader`, publishing on `publisher`, its cursor and the loop
    /// guard's ledger in `store`; `holder` names this process.
    pub fn new(
        reader: DynTicketReader,
        store: Store,
        publisher: Publisher,
        settings: BackfillSettings,
        holder: impl Into<String>,
    ) -> Self {
        let guard = LoopGuard::new(store.clone()).with_tolerance(settings.own_write_tolerance);
        Self { reader, store, publisher, guard, settings, holder: holder.into() }
    }

    /// Walks `spec`'s window from where an earlier run stopped (or its start) to its end, or
    /// until `stop`; the cursor is released either way, and on error too.
    pub async fn run(
        &self,
        spec: &BackfillSpec,
        progress: &mut dyn ProgressSink,
        stop: &CancellationToken,
    ) -> Result<BackfillOutcome, WalkError> {
        let name = spec.cursor_name();
        let cursor = match self.store.claim_cursor(&name, &spec.connection_id, &self.holder, LEASE).await? {
            CursorClaim::Held(cursor) => cursor,
            CursorClaim::Busy { holder, until } => return Ok(BackfillOutcome::Busy { holder, until }),
            CursorClaim::Finished(cursor) => return Ok(BackfillOutcome::AlreadyFinished(cursor)),
        };
        let walked = self.walk(spec, &name, &cursor, progress, stop).await;
        if !matches!(walked, Ok(BackfillOutcome::Finished { .. }))
            && let Err(e) = self.store.release_cursor(&name, &self.holder).await
        {
            tracing::warn!(cursor = name, error = %e, "could not release the backfill cursor");
        }
        walked
    }

    async fn walk(
        &self,
        spec: &BackfillSpec,
        name: &str,
        cursor: &IngestCursor,
        progress: &mut dyn ProgressSink,
        stop: &CancellationToken,
    ) -> Result<BackfillOutcome, WalkError> {
        let parts = (&self.store, &self.publisher, &self.guard);
        let mut walk =
            CursorWalk::resume(parts, cursor, &self.holder, EventSource::Backfill, time::Duration::ZERO);
        let from = cursor.position.unwrap_or(spec.since).max(spec.since);
        // A backfill of created tickets cannot stop at `until`: a ticket created in the window may
        // have changed since, which puts it later in `updated_at` order.
        let until = (spec.kind == BackfillKind::All).then_some(spec.until).flatten();
        let mut pages = Pages::new(self.reader.as_ref(), from, self.settings.page_size).until(until);
        let mut totals = BackfillProgress {
            position: cursor.position,
            tickets_seen: cursor.tickets_seen,
            published: cursor.published,
        };
        progress.started(totals);
        let mut tally = Tally::default();
        let mut last_request: Option<Instant> = None;
        loop {
            if stop.is_cancelled() {
                return Ok(BackfillOutcome::Stopped { tally, progress: totals });
            }
            self.pace(&mut last_request).await;
            let page = match self.next_page(&mut pages, name, &spec.connection_id, progress, stop).await? {
                Next::Page(page) => page,
                Next::End => break,
                Next::Stopped => return Ok(BackfillOutcome::Stopped { tally, progress: totals }),
            };
            let done = walk.report(&page, pages.ended(), |change, _| spec.classify(change)).await?;
            tally += done;
            totals.position = walk.position;
            totals.tickets_seen += done.tickets;
            totals.published += done.published;
            progress.advanced(totals);
        }
        self.store.finish_cursor(name, &self.holder).await?;
        Ok(BackfillOutcome::Finished { tally, progress: totals })
    }

    /// The next page, asked for again after a pause when the helpdesk is rate limiting or
    /// briefly failing.
    async fn next_page(
        &self,
        pages: &mut Pages<'_>,
        name: &str,
        connection_id: &str,
        progress: &mut dyn ProgressSink,
        stop: &CancellationToken,
    ) -> Result<Next, WalkError> {
        let mut failures = 0;
        loop {
            let error = match pages.next().await {
                Ok(Some(page)) => return Ok(Next::Page(page)),
                Ok(None) => return Ok(Next::End),
                Err(WalkError::Helpdesk(e)) if e.is_retryable() && failures + 1 < MAX_PAGE_FAILURES => e,
                Err(e) => return Err(e),
            };
            failures += 1;
            let backoff = self.settings.first_pause.saturating_mul(1 << (failures - 1).min(16));
            let pause = error.retry_after().unwrap_or(backoff).min(MAX_PAUSE);
            progress.pausing(&error.to_string(), pause);
            tokio::select! {
                () = stop.cancelled() => return Ok(Next::Stopped),
                () = tokio::time::sleep(pause) => {}
            }
            // Renew the claim: the pause may be longer than what is left of the lease.
            match self.store.claim_cursor(name, connection_id, &self.holder, LEASE).await? {
                CursorClaim::Held(_) => {}
                CursorClaim::Busy { holder, .. } => {
                    let (key, worker) = (name.to_owned(), self.holder.clone());
                    return Err(StoreError::LeaseLost { key, worker, holder: Some(holder) }.into());
                }
                CursorClaim::Finished(_) => return Ok(Next::End),
            }
        }
    }

    /// Waits so list requests stay under `max_requests_per_sec`.
    async fn pace(&self, last: &mut Option<Instant>) {
        let Some(rate) = self.settings.max_requests_per_sec.filter(|r| *r > 0.0) else { return };
        let gap = Duration::from_secs_f64(1.0 / rate);
        if let Some(at) = *last {
            tokio::time::sleep_until(at + gap).await;
        }
        *last = Some(Instant::now());
    }
}

/// What asking for the next page came to.
enum Next {
    Page(Vec<Change>),
    End,
    Stopped,
}

fn unix_ms(t: OffsetDateTime) -> i128 {
    t.unix_timestamp_nanos() / 1_000_000
}
