//! Ingest: what helpdesks say, turned into ticket events on the bus.
//!
//! - [`poll`]: the `updated_gte` poller with its stored, leased cursor (`deskpilot ingest`);
//! - [`backfill`]: the initial sync of a connection's history (`deskpilot backfill`);
//! - [`loop_guard`]: changes caused by deskpilot's own writes are not reported as work.
//!
//! Every event is [`TicketEvent::observed`](crate::events::TicketEvent::observed): its id derives
//! from the connection, the ticket, the kind and the ticket's `updated_at`, so the same change
//! reported twice (a poll overlapping a webhook, a resumed backfill) is dropped by the worker's
//! ledger.

pub mod backfill;
pub mod loop_guard;
pub mod poll;
mod walk;

pub use walk::{Tally, WalkError};
