//! Intercom API (version 2.14) objects as the vendor documents them, and their mapping to and
//! from the normalized model: epoch-second dates, string ids, the ticket's open flag and state
//! category as status, ticket types as categories, ticket parts as notes (`note` internal,
//! `comment` public; author `admin`/`team` an agent, `user`/`lead` the customer, `bot` a system).

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::ticketing::{
    AuthorKind, Category, Customer, Email, Note, NoteVisibility, Result, Telephone, Ticket, TicketStatus,
    TicketingError, model::Timestamp,
};

/// The ticket attribute holding the title.
pub const TITLE: &str = "_default_title_";
/// The ticket attribute holding the description.
pub const DESCRIPTION: &str = "_default_description_";

/// An id Intercom documents as a string but some objects still send as a number.
fn id_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::String(s)) if !s.is_empty() => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

/// Epoch seconds as an instant; `null`, zero and out-of-range values read as absent.
pub fn from_epoch(secs: Option<i64>) -> Timestamp {
    secs.filter(|s| *s > 0).and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
}

/// A reference to an object: `{type, id}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IcRef {
    /// The id.
    #[serde(default, deserialize_with = "id_text")]
    pub id: Option<String>,
}

/// `ticket_state`: the workspace's state and its category.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IcTicketState {
    /// State id.
    #[serde(default, deserialize_with = "id_text")]
    pub id: Option<String>,
    /// `submitted`, `in_progress`, `waiting_on_customer` or `resolved`.
    #[serde(default)]
    pub category: Option<String>,
}

/// `ticket_type`: the categories of a workspace (`GET /ticket_types`, and on each ticket).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IcTicketType {
    /// Type id.
    #[serde(default, deserialize_with = "id_text")]
    pub id: Option<String>,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// What it is for.
    #[serde(default)]
    pub description: Option<String>,
    /// `Customer`, `Back-office` or `Tracker`.
    #[serde(default)]
    pub category: Option<String>,
    /// Archived types take no new tickets.
    #[serde(default)]
    pub archived: Option<bool>,
    /// Creation time (epoch seconds).
    #[serde(default)]
    pub created_at: Option<i64>,
    /// Last change (epoch seconds).
    #[serde(default)]
    pub updated_at: Option<i64>,
}

/// `ticket_contacts`: the contacts a ticket is about.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IcContacts {
    /// The contacts.
    #[serde(default)]
    pub contacts: Vec<IcRef>,
}

/// `ticket_part_author`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IcAuthor {
    /// `admin`, `bot`, `team`, `user` (and `lead` for a lead's part).
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Author id.
    #[serde(default, deserialize_with = "id_text")]
    pub id: Option<String>,
}

/// `ticket_part` (and `ticket_reply`, the answer to a reply).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IcPart {
    /// Part id.
    #[serde(default, deserialize_with = "id_text")]
    pub id: Option<String>,
    /// `note`, `comment`, `quick_reply`, or an event (`assignment`, `ticket_state_updated_by_admin`, ...).
    #[serde(default)]
    pub part_type: Option<String>,
    /// HTML body; absent for events.
    #[serde(default)]
    pub body: Option<String>,
    /// Who wrote it.
    #[serde(default)]
    pub author: Option<IcAuthor>,
    /// Creation time (epoch seconds).
    #[serde(default)]
    pub created_at: Option<i64>,
    /// Last change (epoch seconds).
    #[serde(default)]
    pub updated_at: Option<i64>,
}

/// `ticket_parts`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IcParts {
    /// The parts, oldest first (at most 500).
    #[serde(default)]
    pub ticket_parts: Vec<IcPart>,
}

/// A ticket (`GET /tickets/{id}`, `PUT /tickets/{id}`, `POST /tickets/search`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IcTicket {
    /// The API id (not `ticket_id`, the inbox number).
    #[serde(deserialize_with = "id_text")]
    pub id: Option<String>,
    /// The inbox number.
    #[serde(default, deserialize_with = "id_text")]
    pub ticket_id: Option<String>,
    /// Title, description and the type's own attributes.
    #[serde(default)]
    pub ticket_attributes: Map<String, Value>,
    /// State.
    #[serde(default)]
    pub ticket_state: Option<IcTicketState>,
    /// Type: the category.
    #[serde(default)]
    pub ticket_type: Option<IcTicketType>,
    /// Contacts.
    #[serde(default)]
    pub contacts: Option<IcContacts>,
    /// Assigned admin.
    #[serde(default, deserialize_with = "id_text")]
    pub admin_assignee_id: Option<String>,
    /// Creation time (epoch seconds).
    #[serde(default)]
    pub created_at: Option<i64>,
    /// Last change (epoch seconds).
    #[serde(default)]
    pub updated_at: Option<i64>,
    /// False once closed.
    #[serde(default)]
    pub open: Option<bool>,
    /// Parts.
    #[serde(default)]
    pub ticket_parts: Option<IcParts>,
}

/// `cursor_pages`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct IcPages {
    /// Where the next page starts; absent on the last page.
    #[serde(default)]
    pub next: Option<IcNext>,
}

/// `starting_after_paging` of a next page.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct IcNext {
    /// The cursor.
    #[serde(default)]
    pub starting_after: Option<String>,
}

/// `ticket_list`, the answer of `POST /tickets/search`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct IcTicketList {
    /// The page's tickets.
    #[serde(default)]
    pub tickets: Vec<IcTicket>,
    /// Paging.
    #[serde(default)]
    pub pages: Option<IcPages>,
}

impl IcTicketList {
    /// The cursor of the next page, if there is one.
    pub fn next_cursor(&self) -> Option<String> {
        let next = self.pages.as_ref()?.next.as_ref()?.starting_after.clone()?;
        (!next.is_empty()).then_some(next)
    }
}

/// `{type: "list", data: [...]}` (`GET /ticket_types`, `GET /tags`, `GET /contacts/{id}/tags`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct IcList<T> {
    /// The items.
    #[serde(default = "Vec::new")]
    pub data: Vec<T>,
}

/// A tag (`GET /tags`, `POST /tags`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct IcTag {
    /// Tag id.
    #[serde(default, deserialize_with = "id_text")]
    pub id: Option<String>,
    /// Name (case-insensitive in Intercom).
    #[serde(default)]
    pub name: Option<String>,
}

/// `contact_tags`: references only (names need `GET /contacts/{id}/tags`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct IcContactTags {
    /// Up to ten references.
    #[serde(default)]
    pub data: Vec<IcRef>,
}

/// A contact (`GET /contacts/{id}`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct IcContact {
    /// Contact id.
    #[serde(default, deserialize_with = "id_text")]
    pub id: Option<String>,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Email.
    #[serde(default)]
    pub email: Option<String>,
    /// Phone.
    #[serde(default)]
    pub phone: Option<String>,
    /// Tag references.
    #[serde(default)]
    pub tags: Option<IcContactTags>,
    /// Creation time (epoch seconds).
    #[serde(default)]
    pub created_at: Option<i64>,
    /// Last change (epoch seconds).
    #[serde(default)]
    pub updated_at: Option<i64>,
}

/// `admin_with_app` (`GET /me`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct IcAdmin {
    /// Admin id.
    #[serde(default, deserialize_with = "id_text")]
    pub id: Option<String>,
}

/// A ticket's status: closed when `open` is false or its state is `resolved`; waiting on the
/// customer reads as `PENDING`; open otherwise.
pub fn status_of(open: Option<bool>, state: Option<&str>) -> TicketStatus {
    match (open, state) {
        (Some(false), _) | (_, Some("resolved")) => TicketStatus::Closed,
        (_, Some("waiting_on_customer")) => TicketStatus::Unknown("PENDING".into()),
        _ => TicketStatus::Active,
    }
}

/// The `open` flag a normalized status writes (Intercom's states are the workspace's own ids,
/// so only open and closed are written).
pub fn open_of(status: &TicketStatus) -> Result<bool> {
    match status {
        TicketStatus::Active => Ok(true),
        TicketStatus::Closed => Ok(false),
        TicketStatus::Unknown(other) => Err(TicketingError::Invalid {
            detail: format!(
                "status `{other}` cannot be written to Intercom: only ACTIVE (open) and CLOSED are \
                 (its ticket states are the workspace's own)"
            ),
        }),
    }
}

/// Who wrote a part: the author's kind and, for the normalized ids, whether it is the customer.
pub fn author_of(kind: Option<&str>) -> AuthorKind {
    match kind {
        Some("admin" | "team") => AuthorKind::Agent,
        Some("user" | "lead" | "contact") => AuthorKind::Customer,
        Some("bot") => AuthorKind::System,
        _ => AuthorKind::Unknown,
    }
}

/// Whether a part type is a message (a note or a reply) rather than an event.
pub fn visibility_of(part_type: &str) -> Option<NoteVisibility> {
    match part_type {
        "note" => Some(NoteVisibility::Internal),
        "comment" | "quick_reply" => Some(NoteVisibility::Public),
        _ => None,
    }
}

fn text_attribute(attrs: &Map<String, Value>, key: &str) -> Option<String> {
    attrs.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned)
}

impl IcTicket {
    /// The ticket in the normalized model. Intercom tickets carry no priority and no tags.
    pub fn into_ticket(self) -> Ticket {
        let state = self.ticket_state.as_ref().and_then(|s| s.category.as_deref());
        let status = status_of(self.open, state);
        let customer_id = self.contacts.and_then(|c| c.contacts.into_iter().find_map(|r| r.id));
        Ticket {
            subject: text_attribute(&self.ticket_attributes, TITLE),
            description: text_attribute(&self.ticket_attributes, DESCRIPTION),
            status: Some(status),
            customer_id,
            category_id: self.ticket_type.and_then(|t| t.id),
            user_id: self.admin_assignee_id.filter(|a| a != "0"),
            created_at: from_epoch(self.created_at),
            updated_at: from_epoch(self.updated_at),
            source_ref: self.ticket_id,
            id: self.id,
            ..Ticket::default()
        }
    }
}

impl IcPart {
    /// The part as a note of `ticket`, or `None` for an event (a state change, an assignment).
    pub fn into_note(self, ticket: &str) -> Option<Note> {
        let visibility = visibility_of(self.part_type.as_deref()?)?;
        let author = self.author.unwrap_or_default();
        let kind = author_of(author.kind.as_deref());
        let (customer_id, user_id) = match kind {
            AuthorKind::Customer => (author.id, None),
            AuthorKind::Agent => (None, author.id),
            _ => (None, None),
        };
        Some(Note {
            id: self.id,
            created_at: from_epoch(self.created_at),
            updated_at: from_epoch(self.updated_at.or(self.created_at)),
            ticket_id: Some(ticket.to_owned()),
            customer_id,
            user_id,
            description: self.body,
            visibility: Some(visibility),
            author_kind: Some(kind),
            raw: None,
        })
    }
}

impl IcTicketType {
    /// The type as a category.
    pub fn into_category(self) -> Category {
        Category {
            id: self.id,
            name: self.name,
            description: self.description.filter(|d| !d.is_empty()),
            is_active: Some(!self.archived.unwrap_or(false)),
            created_at: from_epoch(self.created_at),
            updated_at: from_epoch(self.updated_at),
            ..Category::default()
        }
    }
}

impl IcContact {
    /// The contact as a customer, with its tags' names.
    pub fn into_customer(self, tags: Vec<String>) -> Customer {
        Customer {
            id: self.id,
            name: self.name,
            emails: self.email.into_iter().map(|email| Email { email, kind: None }).collect(),
            telephones: self.phone.into_iter().map(|telephone| Telephone { telephone, kind: None }).collect(),
            tags,
            created_at: from_epoch(self.created_at),
            updated_at: from_epoch(self.updated_at),
            raw: None,
        }
    }
}

/// A plain-text note as the HTML Intercom keeps: escaped, a paragraph per line.
pub fn note_html(text: &str) -> String {
    let escaped = text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    escaped.lines().map(|l| format!("<p>{l}</p>")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn statuses_map_both_ways() {
        assert_eq!(status_of(Some(true), Some("submitted")), TicketStatus::Active);
        assert_eq!(status_of(Some(true), Some("in_progress")), TicketStatus::Active);
        assert_eq!(
            status_of(Some(true), Some("waiting_on_customer")),
            TicketStatus::Unknown("PENDING".into())
        );
        assert_eq!(status_of(Some(true), Some("resolved")), TicketStatus::Closed);
        assert_eq!(status_of(Some(false), Some("in_progress")), TicketStatus::Closed);
        assert_eq!(status_of(None, None), TicketStatus::Active);
        assert!(open_of(&TicketStatus::Active).unwrap());
        assert!(!open_of(&TicketStatus::Closed).unwrap());
        assert!(
            open_of(&TicketStatus::Unknown("PENDING".into())).unwrap_err().to_string().contains("PENDING")
        );
    }

    #[test]
    fn parts_are_notes_with_visibility_and_author() {
        let part = |kind: &str, author: &str| -> IcPart {
            serde_json::from_value(
                json!({"type": "ticket_part", "id": "156", "part_type": kind, "body": "<p>x</p>",
                "author": {"type": author, "id": "991267943", "name": "A", "email": "a@b.c"},
                "created_at": 1714525200, "updated_at": 1714525200, "attachments": [], "redacted": false}),
            )
            .unwrap()
        };
        let n = part("note", "admin").into_note("633").unwrap();
        assert_eq!(n.visibility, Some(NoteVisibility::Internal));
        assert_eq!((n.author(), n.user_id.as_deref()), (AuthorKind::Agent, Some("991267943")));
        let n = part("comment", "user").into_note("633").unwrap();
        assert_eq!(n.visibility, Some(NoteVisibility::Public));
        assert_eq!((n.author(), n.customer_id.as_deref()), (AuthorKind::Customer, Some("991267943")));
        assert_eq!(part("comment", "lead").into_note("1").unwrap().author(), AuthorKind::Customer);
        assert_eq!(part("note", "team").into_note("1").unwrap().author(), AuthorKind::Agent);
        assert_eq!(part("comment", "bot").into_note("1").unwrap().author(), AuthorKind::System);
        assert_eq!(part("assignment", "admin").into_note("1"), None, "events are not notes");
    }

    #[test]
    fn html_keeps_lines_and_escapes() {
        assert_eq!(note_html("a < b\nc & d"), "<p>a &lt; b</p><p>c &amp; d</p>");
    }
}
