//! The four Unified objects as one generic resource, plus the rules specific to tickets and notes.

use serde::{Serialize, de::DeserializeOwned};
use time::OffsetDateTime;

use super::{data::Helpdesk, error::ApiError, table::Table};
use crate::ticketing::{Category, Customer, Note, Ticket, TicketStatus, model::Timestamp};

/// A ticket event for the webhook simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TicketEvent {
    /// The ticket was created through the API.
    Created,
    /// The ticket, or its conversation, changed.
    Updated,
}

impl TicketEvent {
    /// Unified's `webhook.event` value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
        }
    }
}

/// A ticket that changed, and how.
#[derive(Debug, Clone)]
pub(crate) struct TicketChange {
    /// What happened.
    pub(crate) event: TicketEvent,
    /// The ticket as it is now.
    pub(crate) ticket: Ticket,
}

/// One Unified object type served under `/ticketing/{connection_id}/<KIND>`.
pub(crate) trait Resource:
    Serialize + DeserializeOwned + Clone + PartialEq + Send + Sync + 'static
{
    /// The path segment and the word used in messages (`ticket`).
    const KIND: &'static str;
    /// Unified's field names for the object (unified-ticketing.md §3, the `fields` enums).
    /// Anything else the model carries (e.g. a note's `visibility`) is never accepted or emitted.
    const FIELDS: &'static [&'static str];
    /// The list filters of §2; each filters on the field of the same name.
    const FILTERS: &'static [&'static str];

    /// This object's table in a helpdesk.
    fn table(desk: &Helpdesk) -> &Table<Self>;
    /// This object's table in a helpdesk, for writing.
    fn table_mut(desk: &mut Helpdesk) -> &mut Table<Self>;
    /// The id.
    fn id(&self) -> Option<&str>;
    /// Sets the server-assigned id and timestamps.
    fn stamp(&mut self, id: String, created_at: Timestamp, updated_at: Timestamp);
    /// When it was created.
    fn created_at(&self) -> Timestamp;
    /// When it last changed.
    fn updated_at(&self) -> Timestamp;
    /// The value `sort=name` orders by.
    fn name(&self) -> Option<&str>;
    /// The texts `query=` searches.
    fn texts(&self) -> Vec<&str>;
    /// The value of one of [`Self::FILTERS`].
    fn filter_value(&self, key: &str) -> Option<&str>;

    /// Validates and completes an object about to be written; `before` is `None` on create.
    fn prepare(
        &mut self,
        _before: Option<&Self>,
        _desk: &Helpdesk,
        _now: OffsetDateTime,
    ) -> Result<(), ApiError> {
        Ok(())
    }

    /// Side effects of a write on the rest of the helpdesk; returns the ticket event to announce.
    fn after_write(
        &self,
        _created: bool,
        _desk: &mut Helpdesk,
        _now: OffsetDateTime,
    ) -> Option<TicketChange> {
        None
    }

    /// Side effects of deleting the object with `id`.
    fn after_delete(_id: &str, _desk: &mut Helpdesk) {}
}

/// `updated_at` after a write: now, but never earlier than (or equal to) what it was, so a poller
/// using `updated_gte` with its last cursor always sees the change, even over sample data dated
/// in the future.
pub(crate) fn bump(previous: Timestamp, now: OffsetDateTime) -> OffsetDateTime {
    match previous {
        Some(p) if p >= now => p + time::Duration::milliseconds(1),
        _ => now,
    }
}

/// Stores `ticket` as the new state of ticket `id` (changed through a vendor flavour from
/// `before`): checked and completed as a Unified write is, `updated_at` bumped.
pub(crate) fn replace_ticket(
    desk: &mut Helpdesk,
    id: &str,
    before: &Ticket,
    mut ticket: Ticket,
) -> Result<Ticket, ApiError> {
    let now = OffsetDateTime::now_utc();
    ticket.prepare(Some(before), desk, now)?;
    ticket.stamp(id.to_owned(), before.created_at, Some(bump(before.updated_at, now)));
    desk.tickets.insert(id.to_owned(), ticket.clone());
    Ok(ticket)
}

/// Adds `note` (made through a vendor flavour) under a fresh id, written now; returns it and the
/// change of its ticket to announce.
pub(crate) fn add_note(desk: &mut Helpdesk, mut note: Note) -> (Note, Option<TicketChange>) {
    let now = OffsetDateTime::now_utc();
    let id = desk.next_id::<Note>();
    note.stamp(id.clone(), Some(now), Some(now));
    desk.notes.insert(id, note.clone());
    let change = note.after_write(true, desk, now);
    (note, change)
}

macro_rules! common {
    ($table:ident) => {
        fn table(desk: &Helpdesk) -> &Table<Self> {
            &desk.$table
        }
        fn table_mut(desk: &mut Helpdesk) -> &mut Table<Self> {
            &mut desk.$table
        }
        fn id(&self) -> Option<&str> {
            self.id.as_deref()
        }
        fn stamp(&mut self, id: String, created_at: Timestamp, updated_at: Timestamp) {
            self.id = Some(id);
            self.created_at = created_at;
            self.updated_at = updated_at;
        }
        fn created_at(&self) -> Timestamp {
            self.created_at
        }
        fn updated_at(&self) -> Timestamp {
            self.updated_at
        }
    };
}

impl Resource for Ticket {
    const KIND: &'static str = "ticket";
    const FIELDS: &'static [&'static str] = &[
        "id",
        "created_at",
        "updated_at",
        "customer_id",
        "subject",
        "description",
        "status",
        "closed_at",
        "priority",
        "category_id",
        "source",
        "source_ref",
        "tags",
        "user_id",
        "url",
        "attachment_ids",
        "due_at",
        "raw",
    ];
    const FILTERS: &'static [&'static str] = &["customer_id", "user_id"];

    common!(tickets);

    fn name(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    fn texts(&self) -> Vec<&str> {
        [&self.subject, &self.description].into_iter().flatten().map(String::as_str).collect()
    }

    fn filter_value(&self, key: &str) -> Option<&str> {
        match key {
            "customer_id" => self.customer_id.as_deref(),
            "user_id" => self.user_id.as_deref(),
            _ => None,
        }
    }

    /// New tickets are `ACTIVE` unless told otherwise; closing stamps `closed_at` (unless given);
    /// reopening drops the old `closed_at` (unless the body set one).
    fn prepare(
        &mut self,
        before: Option<&Self>,
        _desk: &Helpdesk,
        now: OffsetDateTime,
    ) -> Result<(), ApiError> {
        if before.is_none() && self.status.is_none() {
            self.status = Some(TicketStatus::Active);
        }
        match &self.status {
            Some(TicketStatus::Closed) if self.closed_at.is_none() => self.closed_at = Some(now),
            Some(TicketStatus::Active)
                if before.is_some_and(|b| {
                    b.status == Some(TicketStatus::Closed) && b.closed_at == self.closed_at
                }) =>
            {
                self.closed_at = None;
            }
            _ => {}
        }
        Ok(())
    }

    fn after_write(&self, created: bool, _desk: &mut Helpdesk, _now: OffsetDateTime) -> Option<TicketChange> {
        let event = if created { TicketEvent::Created } else { TicketEvent::Updated };
        Some(TicketChange { event, ticket: self.clone() })
    }

    /// A ticket's conversation goes with it.
    fn after_delete(id: &str, desk: &mut Helpdesk) {
        desk.notes.retain(|n| n.ticket_id.as_deref() != Some(id));
    }
}

impl Resource for Customer {
    const KIND: &'static str = "customer";
    const FIELDS: &'static [&'static str] =
        &["id", "created_at", "updated_at", "name", "emails", "telephones", "tags", "raw"];
    const FILTERS: &'static [&'static str] = &[];

    common!(customers);

    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    fn texts(&self) -> Vec<&str> {
        let mut texts: Vec<&str> = self.name.as_deref().into_iter().collect();
        texts.extend(self.emails.iter().map(|e| e.email.as_str()));
        texts.extend(self.telephones.iter().map(|t| t.telephone.as_str()));
        texts
    }

    fn filter_value(&self, _key: &str) -> Option<&str> {
        None
    }
}

impl Resource for Note {
    const KIND: &'static str = "note";
    const FIELDS: &'static [&'static str] =
        &["id", "created_at", "updated_at", "customer_id", "description", "ticket_id", "user_id", "raw"];
    const FILTERS: &'static [&'static str] = &["ticket_id", "customer_id"];

    common!(notes);

    fn name(&self) -> Option<&str> {
        self.description.as_deref()
    }

    fn texts(&self) -> Vec<&str> {
        self.description.as_deref().into_iter().collect()
    }

    fn filter_value(&self, key: &str) -> Option<&str> {
        match key {
            "ticket_id" => self.ticket_id.as_deref(),
            "customer_id" => self.customer_id.as_deref(),
            _ => None,
        }
    }

    /// A note belongs to an existing ticket.
    fn prepare(
        &mut self,
        _before: Option<&Self>,
        desk: &Helpdesk,
        _now: OffsetDateTime,
    ) -> Result<(), ApiError> {
        match self.ticket_id.as_deref() {
            None | Some("") => Err(ApiError::bad_request("a note needs a `ticket_id`")),
            Some(id) if !desk.tickets.contains_key(id) => {
                Err(ApiError::not_found(format!("ticket {id} (the note's `ticket_id`) not found")))
            }
            Some(_) => Ok(()),
        }
    }

    /// A new note is activity on its ticket: bump the ticket and announce it as updated.
    fn after_write(&self, created: bool, desk: &mut Helpdesk, now: OffsetDateTime) -> Option<TicketChange> {
        if !created {
            return None;
        }
        let ticket = desk.tickets.modify(self.ticket_id.as_deref()?, |ticket| {
            ticket.updated_at = Some(bump(ticket.updated_at, now));
            ticket.clone()
        })?;
        Some(TicketChange { event: TicketEvent::Updated, ticket })
    }
}

impl Resource for Category {
    const KIND: &'static str = "category";
    const FIELDS: &'static [&'static str] =
        &["id", "created_at", "updated_at", "name", "description", "is_active", "parent_id", "raw"];
    const FILTERS: &'static [&'static str] = &["parent_id"];

    common!(categories);

    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    fn texts(&self) -> Vec<&str> {
        [&self.name, &self.description].into_iter().flatten().map(String::as_str).collect()
    }

    fn filter_value(&self, key: &str) -> Option<&str> {
        match key {
            "parent_id" => self.parent_id.as_deref(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn bump_never_goes_backwards() {
        let now = datetime!(2026-11-24 10:00 UTC);
        assert_eq!(bump(None, now), now);
        assert_eq!(bump(Some(datetime!(2026-11-01 00:00 UTC)), now), now);
        let future = datetime!(2026-12-01 00:00 UTC);
        assert_eq!(bump(Some(future), now), future + time::Duration::milliseconds(1));
    }

    #[test]
    fn closing_stamps_closed_at_and_reopening_clears_it() {
        let desk = Helpdesk::default();
        let now = datetime!(2026-11-24 10:00 UTC);
        let mut t = Ticket::default();
        t.prepare(None, &desk, now).unwrap();
        assert_eq!(t.status, Some(TicketStatus::Active));
        let open = t.clone();
        t.status = Some(TicketStatus::Closed);
        t.prepare(Some(&open), &desk, now).unwrap();
        assert_eq!(t.closed_at, Some(now));
        let closed = t.clone();
        t.status = Some(TicketStatus::Active);
        t.prepare(Some(&closed), &desk, now).unwrap();
        assert_eq!(t.closed_at, None);
    }

    #[test]
    fn a_note_needs_an_existing_ticket() {
        let mut desk = Helpdesk::default();
        let now = datetime!(2026-11-24 10:00 UTC);
        let err = Note::default().prepare(None, &desk, now).unwrap_err();
        assert_eq!(err.status(), axum::http::StatusCode::BAD_REQUEST);
        let mut note = Note { ticket_id: Some("7".into()), ..Note::default() };
        assert_eq!(note.prepare(None, &desk, now).unwrap_err().status(), axum::http::StatusCode::NOT_FOUND);
        desk.tickets.insert("7".into(), Ticket { id: Some("7".into()), ..Ticket::default() });
        note.prepare(None, &desk, now).unwrap();
        let change = note.after_write(true, &mut desk, now).unwrap();
        assert_eq!(change.event, TicketEvent::Updated);
        assert_eq!(desk.tickets["7"].updated_at, Some(now));
    }
}
