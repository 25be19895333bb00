//! A backtest: a connection's closed tickets replayed through the engine as they were when they
//! were opened, scored against the category and priority people left on them at close. No
//! labelling work, and nothing is written: the helpdesk is only read.
//!
//! What the engine sees of a closed ticket is what existed when it was created: its id, when and
//! by which channel it came in, its subject and its first message (the description, or the
//! customer's first note when the description is empty). Not the agents' replies, not the
//! customer's later notes, not the customer record, and none of the triage fields people set
//! since (category, priority, tags, assignee, status): those are the answer.

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use time::OffsetDateTime;

use super::{
    dataset::Expected,
    run::{EvalReport, Input},
};
use crate::ticketing::{
    AuthorKind, Category, ListQuery, SortField, SortOrder, Ticket, TicketReader, TicketStatus,
    TicketingError, all_notes, all_tickets, model::format_timestamp,
};
use crate::triage::context::Gathered;

/// Which closed tickets to replay.
#[derive(Debug, Clone, Copy, Default)]
pub struct Selection {
    /// Only tickets closed at or after this instant (their `closed_at`, or their last update when
    /// the helpdesk does not say when they closed); `None` = every closed ticket.
    pub closed_since: Option<OffsetDateTime>,
    /// At most this many, the first closed in the helpdesk's oldest-first listing.
    pub limit: Option<usize>,
}

/// Tickets per list request.
const PAGE_SIZE: u32 = 100;

/// The closed tickets of `selection`, in the order the helpdesk lists them (oldest change first).
///
/// Listed with the helpdesk's `updated_gte` filter from `closed_since` (a ticket's last update is
/// never before its closing, so nothing is missed); whether each is closed, and when, is checked
/// here, since no connector filters by status.
pub async fn closed_tickets(
    helpdesk: &dyn TicketReader,
    selection: Selection,
) -> Result<Vec<Ticket>, TicketingError> {
    let since = selection.closed_since;
    let query = ListQuery {
        limit: Some(PAGE_SIZE),
        // From the start of time when no bound is given: some helpdesks list only recent tickets
        // without one (Freshdesk: 30 days).
        ..ListQuery::updated_since(since.unwrap_or(OffsetDateTime::UNIX_EPOCH))
    };
    let closed = all_tickets(helpdesk, query).try_filter(move |t| {
        let closed_at = t.closed_at.or(t.updated_at);
        let keep = t.status == Some(TicketStatus::Closed)
            && since.is_none_or(|since| closed_at.is_some_and(|at| at >= since));
        std::future::ready(keep)
    });
    match selection.limit {
        Some(n) => closed.take(n).try_collect().await,
        None => closed.try_collect().await,
    }
}

/// The ticket's first message: its description, or when that is empty (helpdesks whose tickets
/// start with a note) the oldest note its customer wrote; `None` when it has neither.
pub async fn first_message(
    helpdesk: &dyn TicketReader,
    ticket: &Ticket,
) -> Result<Option<String>, TicketingError> {
    if let Some(d) = ticket.description.as_deref().filter(|d| !d.trim().is_empty()) {
        return Ok(Some(d.to_owned()));
    }
    let Some(id) = ticket.id.as_deref() else {
        return Ok(None);
    };
    let oldest = ListQuery {
        sort: Some(SortField::CreatedAt),
        order: Some(SortOrder::Asc),
        ..ListQuery::notes_of(id)
    };
    let first = all_notes(helpdesk, oldest)
        .try_filter(|n| {
            std::future::ready(
                n.author() == AuthorKind::Customer
                    && n.description.as_deref().is_some_and(|d| !d.trim().is_empty()),
            )
        })
        .boxed()
        .try_next()
        .await?;
    Ok(first.and_then(|n| n.description))
}

/// The closed `ticket` as the engine is to see it (see the module's doc) with `first_message`,
/// scored against its category (unless it was closed without one) and priority at close.
/// `rank` is its 1-based position in the listing.
pub fn input(rank: usize, ticket: &Ticket, first_message: Option<String>, categories: &[Category]) -> Input {
    let id = ticket.id.clone().unwrap_or_else(|| format!("ticket {rank}"));
    let as_opened = Ticket {
        id: Some(id.clone()),
        created_at: ticket.created_at,
        subject: ticket.subject.clone(),
        description: first_message,
        source: ticket.source.clone(),
        ..Ticket::default()
    };
    Input {
        line: rank,
        id,
        expected: Expected {
            category: ticket.category_id.clone(),
            priority: ticket.priority_level(),
            language: None,
            tags: None,
        },
        category_scored: ticket.category_id.is_some(),
        gathered: Gathered {
            ticket: as_opened,
            customer: None,
            notes: Vec::new(),
            categories: categories.to_vec(),
        },
    }
}

/// The report of a backtest: the evaluation report's figures, under what was replayed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BacktestReport {
    /// Always `backtest`, to tell the report from an evaluation's.
    pub kind: &'static str,
    /// Closed tickets replayed.
    pub closed_tickets: usize,
    /// The lower bound on their closing time (RFC 3339), if one was given.
    pub closed_since: Option<String>,
    /// How many were closed without a category (scored on priority only).
    pub closed_without_category: usize,
    /// The figures, as `deskpilot eval` reports them.
    #[serde(flatten)]
    pub figures: EvalReport,
}

impl BacktestReport {
    /// The report of `figures` over the tickets closed since `closed_since`.
    pub fn new(closed_since: Option<OffsetDateTime>, figures: EvalReport) -> Self {
        Self {
            kind: "backtest",
            closed_tickets: figures.cases,
            closed_since: closed_since.map(format_timestamp),
            closed_without_category: figures.category.unscored,
            figures,
        }
    }

    /// `backtest of N closed tickets since T on connection C`.
    pub fn title(&self) -> String {
        let since = self
            .closed_since
            .as_deref()
            .map_or_else(|| "(every closed ticket)".to_owned(), |t| format!("since {t}"));
        format!(
            "backtest of {} closed tickets {since} on connection {}",
            self.closed_tickets, self.figures.connection
        )
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::ticketing::PriorityLevel;

    fn closed(id: &str, category: Option<&str>) -> Ticket {
        Ticket {
            id: Some(id.into()),
            created_at: Some(datetime!(2026-09-01 08:00 UTC)),
            closed_at: Some(datetime!(2026-09-03 08:00 UTC)),
            customer_id: Some("c-1".into()),
            subject: Some("Charged twice".into()),
            description: Some("Please refund one.".into()),
            status: Some(TicketStatus::Closed),
            priority: Some("high".into()),
            category_id: category.map(str::to_owned),
            source: Some("email".into()),
            tags: vec!["billing".into(), "refund".into()],
            user_id: Some("u-1".into()),
            ..Ticket::default()
        }
    }

    #[test]
    fn the_engine_sees_the_ticket_as_opened_and_is_scored_against_it_as_closed() {
        let t = closed("1001", Some("cat-billing"));
        let i = input(3, &t, Some("The first message.".into()), &[]);
        let seen = &i.gathered.ticket;
        assert_eq!(seen.id.as_deref(), Some("1001"));
        assert_eq!(
            (seen.subject.as_deref(), seen.description.as_deref()),
            (Some("Charged twice"), Some("The first message."))
        );
        assert_eq!((seen.created_at, seen.source.as_deref()), (t.created_at, Some("email")));
        // Nothing people set after it was opened.
        assert_eq!(
            (&seen.category_id, &seen.priority, &seen.status, &seen.user_id),
            (&None, &None, &None, &None)
        );
        assert!(seen.tags.is_empty());
        assert_eq!((&seen.closed_at, &seen.customer_id), (&None, &None));
        assert!(i.gathered.notes.is_empty() && i.gathered.customer.is_none());

        assert_eq!((i.line, i.id.as_str()), (3, "1001"));
        assert_eq!(i.expected.category.as_deref(), Some("cat-billing"));
        assert_eq!(i.expected.priority, PriorityLevel::High);
        assert!(i.category_scored);
    }

    #[test]
    fn a_ticket_closed_without_a_category_is_not_scored_on_category() {
        let i = input(1, &closed("1002", None), None, &[]);
        assert!(!i.category_scored);
        assert_eq!(i.expected.category, None);
        assert_eq!(i.gathered.ticket.description, None);
    }
}
