//! Zendesk Support's JSON shapes (only the fields deskpilot reads or writes) and their mapping to
//! and from the normalized model (platforms.md §6).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ticketing::{
    AuthorKind, Category, Customer, Email, Note, NoteVisibility, PriorityLevel, Telephone, Ticket,
    TicketStatus, TicketingError, model::Timestamp, model::rfc3339_opt,
};

/// Where a connection's categories come from (platforms.md §1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CategorySource {
    /// The options of a dropdown (`tagger`) custom ticket field; a category id is an option's value.
    Field(u64),
    /// The account's groups; a category id is a group id.
    Groups,
    /// The ticket forms; a category id is a form id.
    Forms,
}

/// A Zendesk id: a JSON integer, kept as the string the normalized model uses.
pub type Id = Option<i64>;

fn id_string(id: Id) -> Option<String> {
    id.map(|i| i.to_string())
}

/// A ticket (`TicketObject`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ZTicket {
    /// Ticket id.
    pub id: Id,
    /// Subject.
    #[serde(default)]
    pub subject: Option<String>,
    /// The first comment, plain text.
    #[serde(default)]
    pub description: Option<String>,
    /// `new|open|pending|hold|solved|closed` (`deleted` in exports).
    #[serde(default)]
    pub status: Option<String>,
    /// `urgent|high|normal|low` or null.
    #[serde(default)]
    pub priority: Option<String>,
    /// The customer.
    #[serde(default)]
    pub requester_id: Id,
    /// The agent.
    #[serde(default)]
    pub assignee_id: Id,
    /// The group.
    #[serde(default)]
    pub group_id: Id,
    /// The ticket form.
    #[serde(default)]
    pub ticket_form_id: Id,
    /// Tags.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Custom field values.
    #[serde(default)]
    pub custom_fields: Option<Vec<CustomFieldValue>>,
    /// Created (ISO 8601 UTC).
    #[serde(default, with = "rfc3339_opt")]
    pub created_at: Timestamp,
    /// Last changed.
    #[serde(default, with = "rfc3339_opt")]
    pub updated_at: Timestamp,
}

/// One `custom_fields` entry.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct CustomFieldValue {
    /// The field id.
    pub id: i64,
    /// Its value (a string for dropdowns; other types for other fields).
    pub value: Value,
}

/// The normalized status of a Zendesk status (ACTIVE: new, open, pending, hold; CLOSED: solved,
/// closed, deleted); an unknown word is kept as it came.
pub fn status_from_zendesk(status: &str) -> TicketStatus {
    match status.to_ascii_lowercase().as_str() {
        "new" | "open" | "pending" | "hold" => TicketStatus::Active,
        "solved" | "closed" | "deleted" => TicketStatus::Closed,
        _ => TicketStatus::Unknown(status.to_owned()),
    }
}

/// The Zendesk status to write for a normalized one: ACTIVE reopens (`open`), CLOSED solves
/// (`solved`; Zendesk closes solved tickets itself). Zendesk's own words pass through.
pub fn status_to_zendesk(status: &TicketStatus) -> Result<&'static str, TicketingError> {
    const WORDS: [&str; 6] = ["new", "open", "pending", "hold", "solved", "closed"];
    match status {
        TicketStatus::Active => Ok("open"),
        TicketStatus::Closed => Ok("solved"),
        TicketStatus::Unknown(s) => {
            WORDS.into_iter().find(|w| w.eq_ignore_ascii_case(s)).ok_or_else(|| TicketingError::Invalid {
                detail: format!("status `{s}` is not a Zendesk status; use one of {}", WORDS.join(", ")),
            })
        }
    }
}

/// The Zendesk priority to write for a priority word of either vocabulary (`high`, `HIGH`,
/// `urgent`, ...); `None` clears it.
pub fn priority_to_zendesk(value: &str) -> Result<Option<&'static str>, TicketingError> {
    match PriorityLevel::from_backend(value) {
        PriorityLevel::Low => Ok(Some("low")),
        PriorityLevel::Normal => Ok(Some("normal")),
        PriorityLevel::High => Ok(Some("high")),
        PriorityLevel::Urgent => Ok(Some("urgent")),
        PriorityLevel::None if value.eq_ignore_ascii_case("none") => Ok(None),
        PriorityLevel::None => Err(TicketingError::Invalid {
            detail: format!(
                "priority `{value}` has no Zendesk equivalent; use low, normal, high or urgent \
                 (check the connection's priority_values)"
            ),
        }),
    }
}

impl ZTicket {
    /// The ticket in the normalized model; `category` picks the field that plays category.
    pub fn into_ticket(self, category: CategorySource) -> Ticket {
        let category_id = match category {
            CategorySource::Field(field) => self
                .custom_fields
                .iter()
                .flatten()
                .find(|f| f.id as u64 == field)
                .and_then(|f| f.value.as_str().filter(|v| !v.is_empty()).map(str::to_owned)),
            CategorySource::Groups => id_string(self.group_id),
            CategorySource::Forms => id_string(self.ticket_form_id),
        };
        Ticket {
            id: id_string(self.id),
            created_at: self.created_at,
            updated_at: self.updated_at,
            subject: self.subject,
            description: self.description,
            status: self.status.as_deref().map(status_from_zendesk),
            // Zendesk's words are the default `priority_values`, so they are kept as sent.
            priority: self.priority.filter(|p| !p.is_empty()),
            customer_id: id_string(self.requester_id),
            user_id: id_string(self.assignee_id),
            category_id,
            tags: self.tags.unwrap_or_default(),
            ..Ticket::default()
        }
    }
}

/// A user (`UserObject`): a requester or a comment's author.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ZUser {
    /// User id.
    pub id: Id,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Primary email.
    #[serde(default)]
    pub email: Option<String>,
    /// Primary phone.
    #[serde(default)]
    pub phone: Option<String>,
    /// `end-user|agent|admin`.
    #[serde(default)]
    pub role: Option<String>,
    /// Tags (when user tagging is on).
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Created.
    #[serde(default, with = "rfc3339_opt")]
    pub created_at: Timestamp,
    /// Last changed.
    #[serde(default, with = "rfc3339_opt")]
    pub updated_at: Timestamp,
}

impl ZUser {
    /// The user as a customer.
    pub fn into_customer(self) -> Customer {
        Customer {
            id: id_string(self.id),
            created_at: self.created_at,
            updated_at: self.updated_at,
            name: self.name,
            emails: self.email.into_iter().map(|email| Email { email, kind: None }).collect(),
            telephones: self.phone.into_iter().map(|telephone| Telephone { telephone, kind: None }).collect(),
            tags: self.tags.unwrap_or_default(),
            raw: None,
        }
    }
}

/// A ticket comment (`TicketCommentObject`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ZComment {
    /// Comment id.
    pub id: Id,
    /// Who wrote it (`-1` is Zendesk itself).
    #[serde(default)]
    pub author_id: Id,
    /// The body as entered.
    #[serde(default)]
    pub body: Option<String>,
    /// The body as plain text.
    #[serde(default)]
    pub plain_body: Option<String>,
    /// True for a public reply, false for an internal note.
    #[serde(default)]
    pub public: Option<bool>,
    /// Written at.
    #[serde(default, with = "rfc3339_opt")]
    pub created_at: Timestamp,
}

impl ZComment {
    /// The comment as a note of `ticket_id`; `role` is its author's role when the page sideloaded it.
    pub fn into_note(self, ticket_id: &str, role: Option<&str>) -> Note {
        let author = id_string(self.author_id);
        let kind = match (self.author_id, role) {
            (Some(-1), _) => AuthorKind::System,
            (_, Some("end-user")) => AuthorKind::Customer,
            (_, Some("agent" | "admin")) => AuthorKind::Agent,
            _ => AuthorKind::Unknown,
        };
        let (customer_id, user_id) = match kind {
            AuthorKind::Customer => (author, None),
            AuthorKind::Agent => (None, author),
            _ => (None, None),
        };
        Note {
            id: id_string(self.id),
            created_at: self.created_at,
            ticket_id: Some(ticket_id.to_owned()),
            customer_id,
            user_id,
            description: self.plain_body.or(self.body),
            visibility: Some(match self.public {
                Some(true) => NoteVisibility::Public,
                Some(false) => NoteVisibility::Internal,
                None => NoteVisibility::Unknown,
            }),
            author_kind: Some(kind),
            ..Note::default()
        }
    }
}

/// Cursor paging's `meta` (`page[size]` lists).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Meta {
    /// More pages follow.
    #[serde(default)]
    pub has_more: bool,
    /// The next page's `page[after]`.
    #[serde(default)]
    pub after_cursor: Option<String>,
}

/// `GET /api/v2/search/export`.
#[derive(Debug, Deserialize)]
pub struct SearchExport {
    /// Matching tickets.
    #[serde(default)]
    pub results: Vec<ZTicket>,
    /// Paging.
    #[serde(default)]
    pub meta: Meta,
}

/// `GET /api/v2/search`: one offset page.
#[derive(Debug, Deserialize)]
pub struct SearchPage {
    /// Matching tickets (the query asks for `type:ticket` only).
    #[serde(default)]
    pub results: Vec<ZTicket>,
    /// The next page's URL; absent on the last page.
    #[serde(default)]
    pub next_page: Option<String>,
}

/// `GET /api/v2/incremental/tickets/cursor`.
#[derive(Debug, Deserialize)]
pub struct IncrementalExport {
    /// Changed tickets, oldest change first.
    #[serde(default)]
    pub tickets: Vec<ZTicket>,
    /// The next request's `cursor`.
    #[serde(default)]
    pub after_cursor: Option<String>,
    /// No more changes for now.
    #[serde(default)]
    pub end_of_stream: bool,
}

/// `GET /api/v2/tickets/{id}/comments`.
#[derive(Debug, Deserialize)]
pub struct Comments {
    /// The page's comments, oldest first.
    #[serde(default)]
    pub comments: Vec<ZComment>,
    /// Sideloaded authors (`include=users`).
    #[serde(default)]
    pub users: Vec<ZUser>,
    /// Paging.
    #[serde(default)]
    pub meta: Meta,
}

/// `{"ticket": ...}`, the answer of show and update.
#[derive(Debug, Deserialize)]
pub struct TicketEnvelope {
    /// The ticket.
    pub ticket: ZTicket,
    /// The update's audit (update only): its events hold the new comment.
    #[serde(default)]
    pub audit: Option<Audit>,
}

/// A ticket update's audit.
#[derive(Debug, Default, Deserialize)]
pub struct Audit {
    /// What changed, one event per change.
    #[serde(default)]
    pub events: Vec<AuditEvent>,
}

/// One audit event; a `Comment` event carries the new comment's id and visibility.
#[derive(Debug, Deserialize)]
pub struct AuditEvent {
    /// Event id (the comment id for `Comment` events).
    #[serde(default)]
    pub id: Id,
    /// `Comment`, `Change`, `Create`, ...
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// For comments: public or not.
    #[serde(default)]
    pub public: Option<bool>,
    /// For comments: who wrote it.
    #[serde(default)]
    pub author_id: Id,
}

/// `{"user": ...}`.
#[derive(Debug, Deserialize)]
pub struct UserEnvelope {
    /// The user.
    pub user: ZUser,
}

/// `{"tags": [...]}`, the tags sub-resource's body and answer.
#[derive(Debug, Deserialize, Serialize)]
pub struct Tags {
    /// The ticket's tags.
    pub tags: Vec<String>,
}

/// `GET /api/v2/ticket_fields/{id}`.
#[derive(Debug, Deserialize)]
pub struct TicketFieldEnvelope {
    /// The field.
    pub ticket_field: TicketField,
}

/// A ticket field with its dropdown options.
#[derive(Debug, Deserialize)]
pub struct TicketField {
    /// `tagger`, `multiselect`, `text`, ...
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Whether agents may set it.
    #[serde(default)]
    pub active: Option<bool>,
    /// The dropdown's options.
    #[serde(default)]
    pub custom_field_options: Vec<FieldOption>,
}

/// A dropdown option: `value` is what the ticket stores (and tags it with).
#[derive(Debug, Deserialize)]
pub struct FieldOption {
    /// Option id.
    #[serde(default)]
    pub id: Id,
    /// Display name.
    pub name: String,
    /// Stored value.
    pub value: String,
}

/// `GET /api/v2/groups`.
#[derive(Debug, Deserialize)]
pub struct Groups {
    /// The page's groups.
    #[serde(default)]
    pub groups: Vec<Group>,
    /// Paging.
    #[serde(default)]
    pub meta: Meta,
}

/// A group.
#[derive(Debug, Deserialize)]
pub struct Group {
    /// Group id.
    pub id: Id,
    /// Name.
    pub name: String,
    /// What it handles.
    #[serde(default)]
    pub description: Option<String>,
    /// Deleted groups are listed too.
    #[serde(default)]
    pub deleted: bool,
}

/// `GET /api/v2/ticket_forms`.
#[derive(Debug, Deserialize)]
pub struct Forms {
    /// The account's forms.
    #[serde(default)]
    pub ticket_forms: Vec<Form>,
}

/// A ticket form.
#[derive(Debug, Deserialize)]
pub struct Form {
    /// Form id.
    pub id: Id,
    /// Name.
    pub name: String,
    /// Whether agents may pick it.
    #[serde(default)]
    pub active: Option<bool>,
}

impl FieldOption {
    /// The option as a category (id = the stored value).
    pub fn into_category(self, field_active: bool) -> Category {
        Category {
            id: Some(self.value),
            name: Some(self.name),
            is_active: Some(field_active),
            ..Category::default()
        }
    }
}

impl Group {
    /// The group as a category.
    pub fn into_category(self) -> Category {
        Category {
            id: id_string(self.id),
            name: Some(self.name),
            description: self.description.filter(|d| !d.is_empty()),
            is_active: Some(!self.deleted),
            ..Category::default()
        }
    }
}

impl Form {
    /// The form as a category.
    pub fn into_category(self) -> Category {
        Category {
            id: id_string(self.id),
            name: Some(self.name),
            is_active: self.active,
            ..Category::default()
        }
    }
}
