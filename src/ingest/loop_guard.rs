//! The loop guard: a ticket change that deskpilot's own write explains is not new work.
//!
//! When deskpilot applies a decision it patches the ticket and posts its marker note, and the
//! helpdesk moves the ticket's `updated_at` for each. A poller (or a webhook) then reports that
//! change like any other; re-emitting it would feed deskpilot its own writes. The ledger knows what
//! deskpilot wrote to which ticket and when ([`Store::own_write_near`]), so a change whose
//! `updated_at` falls within a write's span (widened by a small tolerance for the helpdesk's
//! clock) is skipped and counted in `deskpilot_ingest_own_writes_skipped_total`. A later change,
//! by a person or another tool, moves `updated_at` past the span and is reported as usual.

use std::time::Duration;

use time::OffsetDateTime;

use crate::{
    events::EventSource,
    store::{Store, StoreError},
};

/// How far a helpdesk's `updated_at` may lie from the store's record of deskpilot's write and
/// still be taken for it: clock skew between the helpdesk and the database, plus helpdesks that
/// keep `updated_at` to the second.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5);

/// Recognises changes caused by deskpilot's own writes.
#[derive(Debug, Clone)]
pub struct LoopGuard {
    store: Store,
    tolerance: Duration,
}

impl LoopGuard {
    /// A guard reading the ledger in `store`, with [`DEFAULT_TOLERANCE`].
    pub fn new(store: Store) -> Self {
        Self { store, tolerance: DEFAULT_TOLERANCE }
    }

    /// The same guard with another tolerance.
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// Whether the change of `ticket_id` on `connection_id` at `updated_at` is deskpilot's own
    /// write. Counts each one found under the reporting `source`.
    pub async fn is_own_write(
        &self,
        connection_id: &str,
        ticket_id: &str,
        updated_at: OffsetDateTime,
        source: EventSource,
    ) -> Result<bool, StoreError> {
        let Some(wrote_until) =
            self.store.own_write_near(connection_id, ticket_id, updated_at, self.tolerance).await?
        else {
            return Ok(false);
        };
        metrics::counter!(
            "deskpilot_ingest_own_writes_skipped_total",
            "connection" => connection_id.to_owned(),
            "source" => source.as_str(),
        )
        .increment(1);
        tracing::debug!(
            connection = connection_id,
            ticket = ticket_id,
            %updated_at,
            %wrote_until,
            "change explained by deskpilot's own write; not reported as work"
        );
        Ok(true)
    }
}
