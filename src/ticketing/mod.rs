//! The normalized ticketing layer: one trait over every helpdesk backend, and a read-only view of it.
//!
//! `ticketing` knows nothing of LLMs, queues or modes. Each backend file maps its wire format (and
//! the normalized [`ListQuery`]) to and from [`model`]; auth and error classes live once in
//! [`client`], on the [`crate::http`] toolkit; paging lives once in [`paginate`]; the category
//! cache once in [`categories`].

pub mod capabilities;
pub mod categories;
pub mod client;
pub mod freshdesk;
pub mod intercom;
pub mod model;
mod paging;
pub mod servicenow;
pub mod unified;
pub mod zendesk;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;

pub use capabilities::{Capabilities, TicketField};
pub use model::{
    AuthorKind, Category, Customer, Email, ListQuery, NewNote, Note, NoteVisibility, Page, PageToken,
    PriorityLevel, SortField, SortOrder, Telephone, Ticket, TicketPatch, TicketStatus,
};
pub use paging::{PAGE_SIZE, PageStream, all_notes, all_tickets, collect_all, count_all, paginate};

/// What went wrong talking to a helpdesk, classified by what the caller should do next.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TicketingError {
    /// The object does not exist (deleted, wrong id, wrong connection).
    #[error("{resource} not found")]
    NotFound {
        /// What was asked for, e.g. `ticket 1001`.
        resource: String,
    },
    /// The credentials were refused; retrying will not help until they are fixed.
    #[error("the helpdesk refused the credentials ({detail}); check the connection's api key or token")]
    Unauthorized {
        /// What the backend said.
        detail: String,
    },
    /// The backend is rate limiting us; try again after `retry_after` if it said.
    #[error("rate limited by the helpdesk{}", retry_after.map(|d| format!(" (retry after {}s)", d.as_secs())).unwrap_or_default())]
    RateLimited {
        /// How long the backend asked us to wait.
        retry_after: Option<Duration>,
    },
    /// A failure that may pass: 5xx, timeout, connection reset.
    #[error("helpdesk temporarily unavailable: {detail}")]
    Transient {
        /// What happened.
        detail: String,
    },
    /// The request or the response is wrong in a way a retry cannot fix (4xx, undecodable body).
    #[error("invalid request or response: {detail}")]
    Invalid {
        /// What was wrong.
        detail: String,
    },
}

impl TicketingError {
    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Transient { .. })
    }

    /// The delay the backend asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }
}

/// Result of a ticketing call.
pub type Result<T, E = TicketingError> = std::result::Result<T, E>;

/// A helpdesk seen through the normalized model, read only. One value serves one connection.
///
/// Triage takes this view, so the type system says it never writes to a helpdesk.
#[async_trait]
pub trait TicketReader: Send + Sync {
    /// The backend's name, for logs (`unified`, `zendesk`, ...).
    fn backend(&self) -> &'static str;

    /// The fields this backend can write; by default all of them.
    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }

    /// One page of tickets.
    async fn list_tickets(&self, query: &ListQuery) -> Result<Page<Ticket>>;
    /// One ticket.
    async fn get_ticket(&self, id: &str) -> Result<Ticket>;
    /// One customer.
    async fn get_customer(&self, id: &str) -> Result<Customer>;
    /// One page of notes (set `ticket_id` in the query for one ticket's notes).
    async fn list_notes(&self, query: &ListQuery) -> Result<Page<Note>>;
    /// All categories of the helpdesk (backends may cache them).
    async fn list_categories(&self) -> Result<Vec<Category>>;

    /// The helpdesk's own list of the tags in use, where it keeps one apart from its tickets
    /// (Intercom's tickets do not show theirs); `None` = learn them from the tickets.
    async fn tags_in_use(&self) -> Result<Option<Vec<String>>> {
        Ok(None)
    }
}

/// A helpdesk seen through the normalized model: the reads of [`TicketReader`] and the writes.
#[async_trait]
pub trait Ticketing: TicketReader {
    /// Applies a partial update and returns the updated ticket.
    async fn update_ticket(&self, id: &str, patch: &TicketPatch) -> Result<Ticket>;
    /// Creates a note and returns it. Not retried on ambiguous failures: the caller owns idempotency.
    async fn create_note(&self, note: &NewNote) -> Result<Note>;
}

/// Shared handle to a backend, read only.
pub type DynTicketReader = Arc<dyn TicketReader>;

/// Shared handle to a backend.
pub type DynTicketing = Arc<dyn Ticketing>;

#[allow(dead_code)]
fn _assert_object_safe(_: &dyn Ticketing, _: &dyn TicketReader) {}
