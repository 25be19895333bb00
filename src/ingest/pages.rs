//! The pages of a helpdesk's tickets in `updated_at` order, from a position.
//!
//! Each page is asked for afresh from the newest `updated_at` seen so far (`updated_gte =
//! anchor`, `sort=updated_at`, `order=asc`), with an `offset` only to step over the tickets that
//! share the anchor's timestamp. A ticket that changes during the walk moves to the end of the
//! order and so cannot shift unseen tickets past a plain offset; a page whose tickets all share
//! one `updated_at` is stepped through by offset. One ticket of each page is asked for again on
//! the next, and the cursor's list of changes already handled drops it, so a ticket at the anchor
//! that moved away between two pages still cannot make its neighbour skipped.
//!
//! A helpdesk that ignores `updated_gte`, `sort` or `offset` would make the walk lose tickets or
//! loop: a ticket before the anchor, a page out of order, or the same page again for a later
//! offset stop the walk with [`WalkError::Unwalkable`].

use time::OffsetDateTime;

use super::walk::{WalkError, epoch_ms};
use crate::{
    store::SeenChange,
    ticketing::{ListQuery, PageToken, TicketReader},
};

/// A ticket change as a page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    pub(crate) ticket_id: String,
    pub(crate) created_at: Option<OffsetDateTime>,
    pub(crate) updated_at: OffsetDateTime,
}

impl Change {
    /// The change as a cursor remembers it.
    pub(crate) fn key(&self) -> SeenChange {
        (self.ticket_id.clone(), epoch_ms(self.updated_at))
    }
}

/// The pages of a helpdesk's tickets from a position, oldest change first.
pub(crate) struct Pages<'a> {
    reader: &'a dyn TicketReader,
    limit: u32,
    anchor: OffsetDateTime,
    offset: u32,
    /// Changes after this are not part of the walk.
    until: Option<OffsetDateTime>,
    previous: Option<Vec<(String, OffsetDateTime)>>,
    ended: bool,
}

impl<'a> Pages<'a> {
    /// Pages of tickets updated at or after `from`, `limit` (at least 2) a page.
    pub(crate) fn new(reader: &'a dyn TicketReader, from: OffsetDateTime, limit: u32) -> Self {
        Self {
            reader,
            limit: limit.max(2),
            anchor: from,
            offset: 0,
            until: None,
            previous: None,
            ended: false,
        }
    }

    /// Whether the list has ended: the last page was handed out.
    pub(crate) fn ended(&self) -> bool {
        self.ended
    }

    /// Ends the walk at the last change at or before `until`.
    pub(crate) fn until(mut self, until: Option<OffsetDateTime>) -> Self {
        self.until = until;
        self
    }

    /// The next page, or `None` once the list has ended.
    pub(crate) async fn next(&mut self) -> Result<Option<Vec<Change>>, WalkError> {
        if self.ended {
            return Ok(None);
        }
        let query = ListQuery {
            limit: Some(self.limit),
            page: (self.offset > 0).then_some(PageToken::Offset(self.offset)),
            ..ListQuery::updated_since(self.anchor)
        };
        let page = self.reader.list_tickets(&query).await?;
        self.ended = page.next.is_none();
        let listed = page.items.len();
        let mut changes: Vec<Change> = page
            .items
            .into_iter()
            .filter_map(|t| match (t.id, t.updated_at) {
                (Some(id), Some(updated_at)) if !id.is_empty() => {
                    Some(Change { ticket_id: id, created_at: t.created_at, updated_at })
                }
                _ => None,
            })
            .collect();
        if changes.len() < listed {
            tracing::warn!(skipped = listed - changes.len(), "listed tickets without an id or updated_at");
        }
        self.check(&changes)?;
        if let Some(until) = self.until
            && let Some(end) = changes.iter().position(|c| c.updated_at > until)
        {
            changes.truncate(end);
            self.ended = true;
        }
        Ok(Some(changes))
    }

    /// Refuses a page that shows the helpdesk ignores a parameter, and moves the anchor.
    fn check(&mut self, changes: &[Change]) -> Result<(), WalkError> {
        let unwalkable = |why: &str| Err(WalkError::Unwalkable(why.to_owned()));
        if changes.first().is_some_and(|c| c.updated_at < self.anchor) {
            return unwalkable("it listed a ticket updated before `updated_gte`");
        }
        if changes.windows(2).any(|w| w[1].updated_at < w[0].updated_at) {
            return unwalkable(
                "a page was not in ascending `updated_at` order (`sort=updated_at&order=asc`)",
            );
        }
        let identity: Vec<_> = changes.iter().map(|c| (c.ticket_id.clone(), c.updated_at)).collect();
        if !self.ended && self.previous.as_ref() == Some(&identity) {
            return unwalkable("it listed the same page again for a later `offset`");
        }
        let Some(last) = changes.last() else {
            return if self.ended {
                Ok(())
            } else {
                unwalkable("a full page held no ticket with an id and updated_at")
            };
        };
        let at_last = changes.iter().rev().take_while(|c| c.updated_at == last.updated_at).count();
        let at_last = u32::try_from(at_last).unwrap_or(u32::MAX);
        // One ticket is asked for again (see the module docs); pages hold at least two.
        if last.updated_at == self.anchor {
            self.offset = self.offset.saturating_add(at_last - 1);
        } else {
            self.anchor = last.updated_at;
            self.offset = at_last - 1;
        }
        self.previous = Some(identity);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use time::macros::datetime;

    use super::*;
    use crate::ticketing::{Category, Customer, Note, Page, Result as TResult, Ticket};

    /// A helpdesk over a list of `(id, updated_at)`, honouring `updated_gte`, `sort=updated_at`
    /// (ties by id) and `offset` unless told to ignore one; `moves` are applied after each list
    /// call, as changes made by people while the walk runs.
    #[derive(Default)]
    struct Desk {
        tickets: Mutex<Vec<(String, OffsetDateTime)>>,
        moves: Mutex<Vec<(usize, String, OffsetDateTime)>>,
        calls: Mutex<usize>,
        ignore_offset: bool,
        ignore_sort: bool,
    }

    impl Desk {
        fn new(tickets: &[(&str, OffsetDateTime)]) -> Self {
            let tickets = tickets.iter().map(|(id, at)| ((*id).to_owned(), *at)).collect();
            Self { tickets: Mutex::new(tickets), ..Self::default() }
        }
    }

    #[async_trait]
    impl TicketReader for Desk {
        fn backend(&self) -> &'static str {
            "fake"
        }

        async fn list_tickets(&self, q: &ListQuery) -> TResult<Page<Ticket>> {
            let mut list: Vec<_> = self
                .tickets
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, at)| q.updated_gte.is_none_or(|gte| *at >= gte))
                .cloned()
                .collect();
            if !self.ignore_sort {
                list.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
            }
            let offset = match (&q.page, self.ignore_offset) {
                (Some(PageToken::Offset(n)), false) => *n as usize,
                _ => 0,
            };
            let limit = q.limit.unwrap() as usize;
            let items: Vec<Ticket> = list
                .into_iter()
                .skip(offset)
                .take(limit)
                .map(|(id, at)| Ticket { id: Some(id), updated_at: Some(at), ..Ticket::default() })
                .collect();
            let call = {
                let mut calls = self.calls.lock().unwrap();
                *calls += 1;
                *calls
            };
            for (_, id, at) in self.moves.lock().unwrap().iter().filter(|(after, ..)| *after == call) {
                let mut tickets = self.tickets.lock().unwrap();
                tickets.iter_mut().filter(|(t, _)| t == id).for_each(|t| t.1 = *at);
            }
            Ok(Page::by_offset(items, offset as u32, limit as u32))
        }
        async fn get_ticket(&self, _: &str) -> TResult<Ticket> {
            unimplemented!()
        }
        async fn get_customer(&self, _: &str) -> TResult<Customer> {
            unimplemented!()
        }
        async fn list_notes(&self, _: &ListQuery) -> TResult<Page<Note>> {
            unimplemented!()
        }
        async fn list_categories(&self) -> TResult<Vec<Category>> {
            unimplemented!()
        }
    }

    const T0: OffsetDateTime = datetime!(2026-11-01 00:00 UTC);

    fn at(minutes: i64) -> OffsetDateTime {
        T0 + time::Duration::minutes(minutes)
    }

    /// Every ticket id the walk lists, deduplicated as a cursor's seen list would.
    async fn walk_all(desk: &Desk, limit: u32) -> Result<Vec<String>, WalkError> {
        let mut pages = Pages::new(desk, T0, limit);
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await? {
            for c in page {
                if seen.insert(c.key()) {
                    out.push(c.ticket_id.clone());
                }
            }
        }
        Ok(out)
    }

    #[tokio::test]
    async fn tickets_sharing_one_updated_at_across_pages_are_each_listed_once() {
        let mut tickets: Vec<(String, OffsetDateTime)> =
            (0..12).map(|i| (format!("s{i:02}"), at(5))).collect();
        tickets.extend([("a".to_owned(), at(1)), ("z".to_owned(), at(9))]);
        let borrowed: Vec<(&str, OffsetDateTime)> = tickets.iter().map(|(id, t)| (id.as_str(), *t)).collect();
        let desk = Desk::new(&borrowed);
        let ids = walk_all(&desk, 4).await.unwrap();
        let mut expected = vec!["a".to_owned()];
        expected.extend((0..12).map(|i| format!("s{i:02}")));
        expected.push("z".to_owned());
        assert_eq!(ids, expected);
    }

    #[tokio::test]
    async fn a_ticket_that_changes_during_the_walk_shifts_nothing_past_it() {
        // b1..b4 share one updated_at; b2 changes after the first page: a plain offset would then
        // step over b3.
        let desk = Desk::new(&[("a", at(1)), ("b1", at(2)), ("b2", at(2)), ("b3", at(2)), ("b4", at(2))]);
        desk.moves.lock().unwrap().push((1, "b2".into(), at(30)));
        let ids = walk_all(&desk, 3).await.unwrap();
        for id in ["a", "b1", "b2", "b3", "b4"] {
            assert!(ids.contains(&id.to_owned()), "{id} missing from {ids:?}");
        }
        assert_eq!(ids.iter().filter(|id| *id == "b2").count(), 2, "b2 listed at both of its times: {ids:?}");
    }

    #[tokio::test]
    async fn a_helpdesk_that_ignores_offset_is_refused_instead_of_looped_over() {
        let same: Vec<(String, OffsetDateTime)> = (0..6).map(|i| (format!("t{i}"), at(1))).collect();
        let borrowed: Vec<(&str, OffsetDateTime)> = same.iter().map(|(id, t)| (id.as_str(), *t)).collect();
        let desk = Desk { ignore_offset: true, ..Desk::new(&borrowed) };
        let err = walk_all(&desk, 3).await.unwrap_err();
        assert!(err.to_string().contains("same page again"), "{err}");
        assert!(!err.is_retryable());
    }

    #[tokio::test]
    async fn a_helpdesk_that_ignores_sort_is_refused() {
        let desk = Desk { ignore_sort: true, ..Desk::new(&[("a", at(3)), ("b", at(1)), ("c", at(2))]) };
        let err = walk_all(&desk, 5).await.unwrap_err();
        assert!(err.to_string().contains("ascending `updated_at` order"), "{err}");
    }

    #[tokio::test]
    async fn until_ends_the_walk() {
        let desk = Desk::new(&[("a", at(1)), ("b", at(2)), ("c", at(3)), ("d", at(4))]);
        let mut pages = Pages::new(&desk, T0, 2).until(Some(at(3)));
        let mut ids = Vec::new();
        while let Some(page) = pages.next().await.unwrap() {
            ids.extend(page.into_iter().map(|c| c.ticket_id));
        }
        assert_eq!(
            ids,
            ["a", "b", "b", "c", "c"],
            "one ticket of each page asked for again, none after `until`"
        );
    }
}
