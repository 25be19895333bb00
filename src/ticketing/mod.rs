//! The normalized ticketing layer: one trait over every helpdesk backend.
//!
//! `ticketing` knows nothing of LLMs, queues or modes. Each backend file maps its wire format to and
//! from [`model`]; auth and error classes live once in [`client`], on the [`crate::http`] toolkit; paging lives once here.

pub mod client;
pub mod model;
pub mod unified;

use std::{pin::Pin, sync::Arc, time::Duration};

use async_trait::async_trait;
use futures::{Stream, TryStreamExt, stream};

pub use model::{
    AuthorKind, Category, Customer, Email, ListQuery, NewNote, Note, NoteVisibility, PriorityLevel,
    SortField, SortOrder, Telephone, Ticket, TicketPatch, TicketStatus,
};

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

/// A boxed stream of items from a paged list.
pub type PageStream<'a, T> = Pin<Box<dyn Stream<Item = Result<T>> + Send + 'a>>;

/// Page size used by the paging helpers; Unified.to caps lists at 100.
pub const PAGE_SIZE: u32 = 100;

/// A helpdesk seen through the normalized model, read only. One value serves one connection.
///
/// Triage takes this view, so the type system says it never writes to a helpdesk.
#[async_trait]
pub trait TicketReader: Send + Sync {
    /// The backend's name, for logs (`unified`, `zendesk`, ...).
    fn backend(&self) -> &'static str;

    /// One page of tickets.
    async fn list_tickets(&self, query: &ListQuery) -> Result<Vec<Ticket>>;
    /// One ticket.
    async fn get_ticket(&self, id: &str) -> Result<Ticket>;
    /// One customer.
    async fn get_customer(&self, id: &str) -> Result<Customer>;
    /// One page of notes (set `ticket_id` in the query for one ticket's notes).
    async fn list_notes(&self, query: &ListQuery) -> Result<Vec<Note>>;
    /// All categories of the helpdesk (backends may cache them).
    async fn list_categories(&self) -> Result<Vec<Category>>;
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

/// Walks every page of an offset/limit list as a stream; a short page ends it.
///
/// `query.limit` sets the page size ([`PAGE_SIZE`] when unset) and `query.offset` the start.
pub fn paginate<'a, T, F, Fut>(query: ListQuery, fetch: F) -> PageStream<'a, T>
where
    T: Send + 'a,
    F: Fn(ListQuery) -> Fut + Send + Sync + 'a,
    Fut: std::future::Future<Output = Result<Vec<T>>> + Send + 'a,
{
    let limit = query.limit.unwrap_or(PAGE_SIZE).max(1);
    let start = query.offset.unwrap_or(0);
    let pages = stream::try_unfold(Some(start), move |offset| {
        let page = offset.map(|offset| {
            (offset, fetch(ListQuery { limit: Some(limit), offset: Some(offset), ..query.clone() }))
        });
        async move {
            let Some((offset, fut)) = page else { return Ok(None) };
            let items = fut.await?;
            let len = u32::try_from(items.len()).unwrap_or(u32::MAX);
            let next = (len >= limit).then(|| offset.saturating_add(len));
            Ok(Some((stream::iter(items.into_iter().map(Ok)), next)))
        }
    });
    Box::pin(pages.try_flatten())
}

/// Every ticket matching `query`, across pages.
pub fn all_tickets<'a>(t: &'a dyn TicketReader, query: ListQuery) -> PageStream<'a, Ticket> {
    paginate(query, move |q| async move { t.list_tickets(&q).await })
}

/// Every note matching `query`, across pages.
pub fn all_notes<'a>(t: &'a dyn TicketReader, query: ListQuery) -> PageStream<'a, Note> {
    paginate(query, move |q| async move { t.list_notes(&q).await })
}

/// Collects a paged stream, stopping at the first error.
pub async fn collect_all<T>(s: PageStream<'_, T>) -> Result<Vec<T>> {
    s.try_collect().await
}

/// Counts a stream's items without keeping them.
pub async fn count_all<T>(s: PageStream<'_, T>) -> Result<usize> {
    s.try_fold(0usize, |n, _| async move { Ok(n + 1) }).await
}

#[allow(dead_code)]
fn _assert_object_safe(_: &dyn Ticketing, _: &dyn TicketReader) {}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[tokio::test]
    async fn paginate_walks_pages_until_a_short_one() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let seen = calls.clone();
        let s = paginate(ListQuery { limit: Some(10), ..ListQuery::default() }, move |q| {
            seen.lock().unwrap().push((q.offset, q.limit));
            async move {
                let off = q.offset.unwrap();
                Ok((off..(off + 10).min(25)).collect::<Vec<u32>>())
            }
        });
        let items = collect_all(s).await.unwrap();
        assert_eq!(items, (0..25).collect::<Vec<_>>());
        assert_eq!(
            *calls.lock().unwrap(),
            vec![(Some(0), Some(10)), (Some(10), Some(10)), (Some(20), Some(10))]
        );
    }

    #[tokio::test]
    async fn paginate_stops_on_first_error() {
        let s = paginate::<u32, _, _>(ListQuery::default(), |_| async {
            Err(TicketingError::Transient { detail: "boom".into() })
        });
        assert!(matches!(collect_all(s).await, Err(TicketingError::Transient { .. })));
    }

    #[tokio::test]
    async fn exact_multiple_of_page_size_asks_once_more_then_stops() {
        let s = paginate(ListQuery { limit: Some(5), ..ListQuery::default() }, |q| async move {
            let off = q.offset.unwrap();
            Ok(if off < 10 { (off..off + 5).collect::<Vec<u32>>() } else { Vec::new() })
        });
        assert_eq!(count_all(s).await.unwrap(), 10);
    }
}
