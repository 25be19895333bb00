//! The normalized ticketing model.
//!
//! Field names and wire shapes are exactly Unified.to's (snake_case, RFC 3339 dates, absent fields
//! omitted and never `null`, `priority` a free string, `tags` a string array, unknown fields
//! ignored), so the same types serve the Unified client, the sandbox and every native connector.
//! Where the native connectors know more than Unified exposes (a note's visibility, who wrote it),
//! the extra fields are optional and serialise away when absent.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use time::OffsetDateTime;

/// An RFC 3339 timestamp that is omitted when absent.
pub type Timestamp = Option<OffsetDateTime>;

/// Serde adapter for optional RFC 3339 timestamps that accepts `null` on input but never emits it.
pub mod rfc3339_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::{OffsetDateTime, format_description::well_known::Rfc3339};

    /// Writes the timestamp in UTC with a `Z` suffix.
    pub fn serialize<S: Serializer>(v: &Option<OffsetDateTime>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(t) => {
                let text =
                    t.to_offset(time::UtcOffset::UTC).format(&Rfc3339).map_err(serde::ser::Error::custom)?;
                s.serialize_str(&text)
            }
            None => s.serialize_none(),
        }
    }

    /// Reads an RFC 3339 timestamp; `null` and an empty string read as absent.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OffsetDateTime>, D::Error> {
        let raw: Option<String> = Option::deserialize(d)?;
        match raw.as_deref() {
            None | Some("") => Ok(None),
            Some(text) => OffsetDateTime::parse(text, &Rfc3339)
                .map(Some)
                .map_err(|e| serde::de::Error::custom(format!("`{text}` is not an RFC 3339 date-time: {e}"))),
        }
    }
}

/// Formats a timestamp the way the wire does (RFC 3339, UTC, `Z`).
pub fn format_timestamp(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .expect("every OffsetDateTime in range formats as RFC 3339")
}

/// An RFC 3339 time, or a date at midnight UTC, as people type them (`--since`, `?since=`).
pub fn parse_time_or_date(s: &str) -> Result<OffsetDateTime, String> {
    use time::{Date, format_description::well_known::Rfc3339, macros::format_description};
    OffsetDateTime::parse(s, &Rfc3339)
        .or_else(|_| {
            Date::parse(s, format_description!("[year]-[month]-[day]")).map(|d| d.midnight().assume_utc())
        })
        .map_err(|_| {
            format!("`{s}` is neither an RFC 3339 time (2026-11-01T08:00:00Z) nor a date (2026-11-01)")
        })
}

/// An instant rounded up to whole seconds. Helpdesks whose timestamps have no fraction list a
/// ticket updated at or after `t` exactly when it is at or after the rounded instant.
pub fn whole_second_ceil(t: OffsetDateTime) -> OffsetDateTime {
    match t.replace_nanosecond(0) {
        Ok(floor) if floor < t => floor + time::Duration::SECOND,
        Ok(floor) => floor,
        Err(_) => t,
    }
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Declares an open string enum: known values get variants, anything else is kept verbatim.
macro_rules! open_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A value this version does not know, kept as the backend sent it.
            Unknown(String),
        }

        impl $name {
            /// The wire value.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $wire,)+
                    Self::Unknown(s) => s,
                }
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s {
                    $($wire => Self::$variant,)+
                    other => Self::Unknown(other.to_owned()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Ok(Self::from(s.as_str()))
            }
        }
    };
}

open_enum! {
    /// Ticket status: Unified knows `ACTIVE` and `CLOSED`; backends may send others (e.g. `PENDING`).
    TicketStatus {
        /// Open, in progress or waiting.
        Active = "ACTIVE",
        /// Solved or closed.
        Closed = "CLOSED",
    }
}

open_enum! {
    /// Kind of an email address.
    EmailType { Work = "WORK", Home = "HOME", Other = "OTHER" }
}

open_enum! {
    /// Kind of a telephone number.
    TelephoneType { Work = "WORK", Home = "HOME", Other = "OTHER", Fax = "FAX", Mobile = "MOBILE" }
}

/// The normalized priority scale deskpilot reasons with; backends keep their own strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum PriorityLevel {
    /// No priority set.
    None,
    /// Low.
    Low,
    /// Normal / medium.
    Normal,
    /// High.
    High,
    /// Urgent / critical.
    Urgent,
}

impl PriorityLevel {
    /// Every level, lowest first.
    pub const ALL: [PriorityLevel; 5] = [Self::None, Self::Low, Self::Normal, Self::High, Self::Urgent];

    /// Maps a backend's priority string onto the scale (case-insensitive; ServiceNow-style numbers
    /// `1`–`5` read 1 = most urgent). Unknown words map to `None`.
    pub fn from_backend(value: &str) -> Self {
        let v = value.trim().to_ascii_lowercase();
        match v.as_str() {
            "" | "none" | "not set" | "unset" => Self::None,
            "low" | "lowest" | "minor" | "trivial" | "4" | "5" | "4 - low" | "5 - planning" => Self::Low,
            "normal" | "medium" | "moderate" | "standard" | "3" | "3 - moderate" => Self::Normal,
            "high" | "major" | "important" | "2" | "2 - high" => Self::High,
            "urgent" | "critical" | "highest" | "blocker" | "emergency" | "1" | "1 - critical" => {
                Self::Urgent
            }
            _ => Self::None,
        }
    }

    /// The canonical wire word (`LOW`, `NORMAL`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Low => "LOW",
            Self::Normal => "NORMAL",
            Self::High => "HIGH",
            Self::Urgent => "URGENT",
        }
    }
}

impl fmt::Display for PriorityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A support ticket (Unified `TicketingTicket`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    /// Backend id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// When the ticket was created.
    #[serde(default, with = "rfc3339_opt", skip_serializing_if = "Option::is_none")]
    pub created_at: Timestamp,
    /// When the ticket last changed.
    #[serde(default, with = "rfc3339_opt", skip_serializing_if = "Option::is_none")]
    pub updated_at: Timestamp,
    /// The customer who opened it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// Short description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Full description (plain text or HTML, backend-dependent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TicketStatus>,
    /// When it was closed.
    #[serde(default, with = "rfc3339_opt", skip_serializing_if = "Option::is_none")]
    pub closed_at: Timestamp,
    /// Priority as the backend spells it; see [`Ticket::priority_level`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    /// The helpdesk category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category_id: Option<String>,
    /// Channel the ticket came in by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Reference to the source object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ref: Option<String>,
    /// Tags.
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Assigned agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Link to the ticket in the helpdesk's UI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Due date.
    #[serde(default, with = "rfc3339_opt", skip_serializing_if = "Option::is_none")]
    pub due_at: Timestamp,
    /// Attachment ids.
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub attachment_ids: Vec<String>,
    /// The vendor's original object, when requested.
    #[serde(default, skip_serializing_if = "is_absent")]
    pub raw: Option<Value>,
}

impl Ticket {
    /// The ticket's priority on the normalized scale.
    pub fn priority_level(&self) -> PriorityLevel {
        self.priority.as_deref().map_or(PriorityLevel::None, PriorityLevel::from_backend)
    }
}

/// An email address of a customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Email {
    /// The address.
    pub email: String,
    /// Its kind.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<EmailType>,
}

/// A telephone number of a customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Telephone {
    /// The number.
    pub telephone: String,
    /// Its kind.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<TelephoneType>,
}

/// A customer (Unified `TicketingCustomer`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    /// Backend id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// When the customer was created.
    #[serde(default, with = "rfc3339_opt", skip_serializing_if = "Option::is_none")]
    pub created_at: Timestamp,
    /// When the customer last changed.
    #[serde(default, with = "rfc3339_opt", skip_serializing_if = "Option::is_none")]
    pub updated_at: Timestamp,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Email addresses.
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<Email>,
    /// Telephone numbers.
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub telephones: Vec<Telephone>,
    /// Tags (e.g. `vip`).
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The vendor's original object, when requested.
    #[serde(default, skip_serializing_if = "is_absent")]
    pub raw: Option<Value>,
}

/// Who can see a note. Unified.to does not say; native connectors do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoteVisibility {
    /// Only agents see it.
    Internal,
    /// The customer sees it.
    Public,
    /// The backend does not tell.
    Unknown,
}

/// Who wrote a note.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthorKind {
    /// The customer.
    Customer,
    /// An agent.
    Agent,
    /// An automation or integration.
    System,
    /// The backend does not tell.
    Unknown,
}

/// A comment on a ticket (Unified `TicketingNote`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Note {
    /// Backend id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// When the note was written.
    #[serde(default, with = "rfc3339_opt", skip_serializing_if = "Option::is_none")]
    pub created_at: Timestamp,
    /// When it last changed.
    #[serde(default, with = "rfc3339_opt", skip_serializing_if = "Option::is_none")]
    pub updated_at: Timestamp,
    /// The ticket it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<String>,
    /// Set when a customer wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// Set when an agent wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The body (plain text or HTML, backend-dependent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Visibility, where the backend reports it (native connectors only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<NoteVisibility>,
    /// Author kind, where the backend reports it (native connectors only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_kind: Option<AuthorKind>,
    /// The vendor's original object, when requested.
    #[serde(default, skip_serializing_if = "is_absent")]
    pub raw: Option<Value>,
}

impl Note {
    /// Who wrote the note: the backend's word if it has one, else inferred from the author ids.
    pub fn author(&self) -> AuthorKind {
        match (self.author_kind, &self.customer_id, &self.user_id) {
            (Some(kind), _, _) => kind,
            (None, Some(_), None) => AuthorKind::Customer,
            (None, None, Some(_)) => AuthorKind::Agent,
            _ => AuthorKind::Unknown,
        }
    }
}

/// A helpdesk category (Unified `TicketingCategory`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Category {
    /// Backend id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// When it was created.
    #[serde(default, with = "rfc3339_opt", skip_serializing_if = "Option::is_none")]
    pub created_at: Timestamp,
    /// When it last changed.
    #[serde(default, with = "rfc3339_opt", skip_serializing_if = "Option::is_none")]
    pub updated_at: Timestamp,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What belongs in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Whether tickets may still be filed under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_active: Option<bool>,
    /// Parent category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// The vendor's original object, when requested.
    #[serde(default, skip_serializing_if = "is_absent")]
    pub raw: Option<Value>,
}

impl Category {
    /// Active unless the backend says otherwise.
    pub fn active(&self) -> bool {
        self.is_active.unwrap_or(true)
    }
}

/// A partial update of a ticket: only the fields set are sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TicketPatch {
    /// New priority, in the backend's vocabulary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    /// New category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category_id: Option<String>,
    /// The full new tag list (callers merge with the existing tags first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// New assignee.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// New status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TicketStatus>,
    /// When it was closed.
    #[serde(default, with = "rfc3339_opt", skip_serializing_if = "Option::is_none")]
    pub closed_at: Timestamp,
    /// Vendor fields passed through untouched.
    #[serde(default, skip_serializing_if = "is_absent")]
    pub raw: Option<Value>,
}

impl TicketPatch {
    /// True when the patch would change nothing.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A note to create on a ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewNote {
    /// The ticket to comment on.
    pub ticket_id: String,
    /// The body.
    pub description: String,
    /// The agent to post as, if the backend needs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Vendor fields passed through untouched (e.g. a native "internal" flag).
    #[serde(default, skip_serializing_if = "is_absent")]
    pub raw: Option<Value>,
}

/// Sort key for list calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortField {
    /// By name.
    Name,
    /// By last update.
    UpdatedAt,
    /// By creation.
    CreatedAt,
}

/// Sort direction for list calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    /// Ascending.
    Asc,
    /// Descending.
    Desc,
}

/// Where a page of a list starts. Backends that page by position (Unified.to) take an offset;
/// those that page by cursor (Zendesk, Intercom) hand out an opaque cursor with each page.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PageToken {
    /// Zero-based position of the page's first item.
    Offset(u32),
    /// The backend's cursor, exactly as it gave it.
    Cursor(String),
}

/// One page of a list, and where the next one starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The page's items, in the list's order.
    pub items: Vec<T>,
    /// The token of the next page; `None` when this page is the last.
    pub next: Option<PageToken>,
}

impl<T> Page<T> {
    /// A page of an offset-paged list read from `start` with page size `limit`: a full page may
    /// have more after it (so a list of an exact multiple of `limit` asks once more, for an empty
    /// page), a short one is the last.
    pub fn by_offset(items: Vec<T>, start: u32, limit: u32) -> Self {
        let len = u32::try_from(items.len()).unwrap_or(u32::MAX);
        let next = (len >= limit.max(1)).then(|| PageToken::Offset(start.saturating_add(len)));
        Self { items, next }
    }
}

/// What to list, in the normalized vocabulary; each backend maps it onto its own wire parameters.
/// Unset fields are not sent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListQuery {
    /// Page size (backends may cap it; Unified.to at 100).
    pub limit: Option<u32>,
    /// Where the page starts: a previous page's [`Page::next`] (`None` = the first page).
    pub page: Option<PageToken>,
    /// Only items updated at or after this instant.
    pub updated_gte: Timestamp,
    /// Sort key.
    pub sort: Option<SortField>,
    /// Sort direction.
    pub order: Option<SortOrder>,
    /// Free-text search.
    pub query: Option<String>,
    /// Notes of this ticket.
    pub ticket_id: Option<String>,
    /// Items of this customer.
    pub customer_id: Option<String>,
    /// Tickets assigned to this agent.
    pub user_id: Option<String>,
    /// Categories under this parent.
    pub parent_id: Option<String>,
    /// Fields to return (empty = all normalized fields).
    pub fields: Vec<String>,
    /// Raw parameters passed through to the vendor (`foo=bar&zoo=bar`).
    pub raw: Option<String>,
}

impl ListQuery {
    /// A query for the notes of one ticket.
    pub fn notes_of(ticket_id: impl Into<String>) -> Self {
        Self { ticket_id: Some(ticket_id.into()), ..Self::default() }
    }

    /// A query for items updated at or after `t`, oldest first.
    pub fn updated_since(t: OffsetDateTime) -> Self {
        Self {
            updated_gte: Some(t),
            sort: Some(SortField::UpdatedAt),
            order: Some(SortOrder::Asc),
            ..Self::default()
        }
    }
}

fn is_absent(v: &Option<Value>) -> bool {
    matches!(v, None | Some(Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn instants_round_up_to_whole_seconds() {
        let t = time::macros::datetime!(2026-11-01 10:00:00.250 UTC);
        assert_eq!(whole_second_ceil(t), time::macros::datetime!(2026-11-01 10:00:01 UTC));
        let whole = time::macros::datetime!(2026-11-01 10:00:00 UTC);
        assert_eq!(whole_second_ceil(whole), whole);
    }

    #[test]
    fn ticket_round_trips_without_nulls_and_keeps_unknown_status() {
        let wire = json!({
            "id": "1", "created_at": "2026-11-02T09:14:00.000Z", "updated_at": "2026-11-02T10:00:00+01:00",
            "status": "PENDING", "priority": "high", "tags": ["a"], "description": null,
            "future_field": {"x": 1}
        });
        let t: Ticket = serde_json::from_value(wire).unwrap();
        assert_eq!(t.status, Some(TicketStatus::Unknown("PENDING".into())));
        assert_eq!(t.priority_level(), PriorityLevel::High);
        assert_eq!(t.description, None);
        let out = serde_json::to_value(&t).unwrap();
        assert_eq!(
            out,
            json!({"id": "1", "created_at": "2026-11-02T09:14:00Z", "updated_at": "2026-11-02T09:00:00Z",
                   "status": "PENDING", "priority": "high", "tags": ["a"]})
        );
    }

    #[test]
    fn date_only_is_rejected_with_the_value() {
        let err = serde_json::from_value::<Ticket>(json!({"created_at": "2024-01-02"})).unwrap_err();
        assert!(err.to_string().contains("`2024-01-02` is not an RFC 3339"), "{err}");
    }

    #[test]
    fn priority_words_map_onto_the_scale() {
        for (word, level) in [
            ("Urgent", PriorityLevel::Urgent),
            ("1 - Critical", PriorityLevel::Urgent),
            ("Medium", PriorityLevel::Normal),
            ("low", PriorityLevel::Low),
            ("2", PriorityLevel::High),
            ("whatever", PriorityLevel::None),
        ] {
            assert_eq!(PriorityLevel::from_backend(word), level, "{word}");
        }
    }

    #[test]
    fn note_author_is_inferred_from_ids() {
        let n = Note { customer_id: Some("c".into()), ..Note::default() };
        assert_eq!(n.author(), AuthorKind::Customer);
        let n = Note { user_id: Some("u".into()), ..Note::default() };
        assert_eq!(n.author(), AuthorKind::Agent);
        let n = Note { user_id: Some("u".into()), author_kind: Some(AuthorKind::System), ..Note::default() };
        assert_eq!(n.author(), AuthorKind::System);
    }

    #[test]
    fn customer_contact_types_are_open() {
        let c: Customer = serde_json::from_value(json!({
            "emails": [{"email": "a@b.c", "type": "WORK"}, {"email": "d@e.f", "type": "PAGER"}],
            "telephones": [{"telephone": "+1", "type": "MOBILE"}]
        }))
        .unwrap();
        assert_eq!(c.emails[0].kind, Some(EmailType::Work));
        assert_eq!(c.emails[1].kind, Some(EmailType::Unknown("PAGER".into())));
        assert_eq!(serde_json::to_value(&c).unwrap()["emails"][1]["type"], "PAGER");
    }

    #[test]
    fn an_offset_page_is_the_last_when_short() {
        assert_eq!(Page::by_offset(vec![1, 2, 3], 20, 3).next, Some(PageToken::Offset(23)));
        assert_eq!(Page::by_offset(vec![1, 2], 20, 3).next, None);
        assert_eq!(Page::<u8>::by_offset(vec![], 20, 3).next, None);
        assert_eq!(
            Page::by_offset(vec![1], 0, 0).next,
            Some(PageToken::Offset(1)),
            "a zero limit reads as 1"
        );
    }

    #[test]
    fn empty_patch_serialises_to_empty_object() {
        assert!(TicketPatch::default().is_empty());
        assert_eq!(serde_json::to_string(&TicketPatch::default()).unwrap(), "{}");
    }
}
