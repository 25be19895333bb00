//! Freshdesk API v2 objects as the vendor documents them, and their mapping to and from the
//! normalized model (priority, status, visibility and author kind, both ways).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ticketing::{
    AuthorKind, Category, Customer, Email, Note, NoteVisibility, Result, Telephone, Ticket, TicketPatch,
    TicketStatus, TicketingError,
    model::{TelephoneType, Timestamp, rfc3339_opt},
};

/// Freshdesk's priorities, 1 Low to 4 Urgent, as the normalized words.
const PRIORITIES: [(i64, &str); 4] = [(1, "low"), (2, "normal"), (3, "high"), (4, "urgent")];

/// A ticket (`GET /tickets`, `GET /tickets/{id}`, `PUT /tickets/{id}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FdTicket {
    /// Ticket number.
    pub id: u64,
    /// Subject.
    #[serde(default)]
    pub subject: Option<String>,
    /// HTML description (absent from lists unless `include=description`).
    #[serde(default)]
    pub description: Option<String>,
    /// Plain-text description.
    #[serde(default)]
    pub description_text: Option<String>,
    /// 2 Open, 3 Pending, 4 Resolved, 5 Closed, or an account's custom status.
    #[serde(default)]
    pub status: Option<i64>,
    /// 1 Low, 2 Medium, 3 High, 4 Urgent.
    #[serde(default)]
    pub priority: Option<i64>,
    /// Channel: 1 Email, 2 Portal, 3 Phone, 7 Chat, 9 Feedback widget, 10 Outbound email.
    #[serde(default)]
    pub source: Option<i64>,
    /// The ticket type: the account's categories.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// The contact who asked.
    #[serde(default)]
    pub requester_id: Option<u64>,
    /// The assigned agent.
    #[serde(default)]
    pub responder_id: Option<u64>,
    /// Tags.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Resolution due date.
    #[serde(default, with = "rfc3339_opt", skip_serializing_if = "Option::is_none")]
    pub due_by: Timestamp,
    /// Creation time.
    #[serde(default, with = "rfc3339_opt", skip_serializing_if = "Option::is_none")]
    pub created_at: Timestamp,
    /// Last change.
    #[serde(default, with = "rfc3339_opt", skip_serializing_if = "Option::is_none")]
    pub updated_at: Timestamp,
}

/// A conversation: a reply or a note (`GET /tickets/{id}/conversations`, `POST .../notes`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FdConversation {
    /// Conversation id.
    pub id: u64,
    /// HTML body.
    #[serde(default)]
    pub body: Option<String>,
    /// Plain-text body.
    #[serde(default)]
    pub body_text: Option<String>,
    /// True when the contact wrote it (an incoming email or portal reply).
    #[serde(default)]
    pub incoming: bool,
    /// True for a note only agents see.
    #[serde(default)]
    pub private: bool,
    /// The author: a contact when `incoming`, else an agent.
    #[serde(default)]
    pub user_id: Option<u64>,
    /// 0 Reply, 2 Note, ...
    #[serde(default)]
    pub source: Option<i64>,
    /// The ticket it belongs to.
    #[serde(default)]
    pub ticket_id: Option<u64>,
    /// Creation time.
    #[serde(default, with = "rfc3339_opt", skip_serializing_if = "Option::is_none")]
    pub created_at: Timestamp,
    /// Last change.
    #[serde(default, with = "rfc3339_opt", skip_serializing_if = "Option::is_none")]
    pub updated_at: Timestamp,
}

/// A contact (`GET /contacts/{id}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FdContact {
    /// Contact id.
    pub id: u64,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Primary email.
    #[serde(default)]
    pub email: Option<String>,
    /// Further emails.
    #[serde(default)]
    pub other_emails: Option<Vec<String>>,
    /// Telephone.
    #[serde(default)]
    pub phone: Option<String>,
    /// Mobile.
    #[serde(default)]
    pub mobile: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Creation time.
    #[serde(default, with = "rfc3339_opt", skip_serializing_if = "Option::is_none")]
    pub created_at: Timestamp,
    /// Last change.
    #[serde(default, with = "rfc3339_opt", skip_serializing_if = "Option::is_none")]
    pub updated_at: Timestamp,
}

/// A ticket field (`GET /ticket_fields`); `choices` is a list for `ticket_type`, a map for others.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FdField {
    /// Field id.
    #[serde(default)]
    pub id: Option<u64>,
    /// Internal name (`ticket_type`, `status`, `cf_...`).
    #[serde(default)]
    pub name: Option<String>,
    /// Label.
    #[serde(default)]
    pub label: Option<String>,
    /// Data type (`default_ticket_type`, ...).
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// The choices.
    #[serde(default)]
    pub choices: Option<Value>,
}

impl FdField {
    /// Whether this is the ticket type, whose choices are the categories.
    pub fn is_ticket_type(&self) -> bool {
        self.name.as_deref() == Some("ticket_type") || self.kind.as_deref() == Some("default_ticket_type")
    }

    /// The ticket type's choices as categories (id and name are the type's text).
    pub fn categories(&self) -> Vec<Category> {
        let names: Vec<String> = match &self.choices {
            Some(Value::Array(items)) => items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
            Some(Value::Object(map)) => map.keys().cloned().collect(),
            _ => Vec::new(),
        };
        names
            .into_iter()
            .map(|name| Category { id: Some(name.clone()), name: Some(name), ..Category::default() })
            .collect()
    }
}

/// The normalized priority word of a Freshdesk priority.
pub fn priority_word(priority: i64) -> Option<&'static str> {
    PRIORITIES.iter().find(|(n, _)| *n == priority).map(|(_, w)| *w)
}

/// Freshdesk's priority number for a word (`low`, `medium`/`normal`, `high`, `urgent`, any case)
/// or one of its own numbers `1`–`4`.
pub fn priority_number(value: &str) -> Result<i64> {
    let v = value.trim().to_ascii_lowercase();
    let n = match v.as_str() {
        "1" | "low" => 1,
        "2" | "medium" | "normal" => 2,
        "3" | "high" => 3,
        "4" | "urgent" => 4,
        _ => {
            return Err(TicketingError::Invalid {
                detail: format!(
                    "priority `{value}` has no Freshdesk value; use low, medium, high or urgent \
                     (or 1-4) in priority_values"
                ),
            });
        }
    };
    Ok(n)
}

/// The normalized status of a Freshdesk status: 4 Resolved and 5 Closed are closed; 2 Open,
/// 3 Pending and custom statuses (which Freshdesk treats as open) are active.
pub fn status_of(status: i64) -> TicketStatus {
    match status {
        4 | 5 => TicketStatus::Closed,
        _ => TicketStatus::Active,
    }
}

/// Freshdesk's status number for a normalized status: `ACTIVE` 2 Open, `CLOSED` 5 Closed, and the
/// Freshdesk words `PENDING` 3 and `RESOLVED` 4, or a status number as is.
pub fn status_number(status: &TicketStatus) -> Result<i64> {
    match status {
        TicketStatus::Active => Ok(2),
        TicketStatus::Closed => Ok(5),
        TicketStatus::Unknown(s) => match s.trim().to_ascii_uppercase().as_str() {
            "OPEN" => Ok(2),
            "PENDING" => Ok(3),
            "RESOLVED" => Ok(4),
            other => other.parse().map_err(|_| TicketingError::Invalid {
                detail: format!(
                    "status `{s}` has no Freshdesk value; use ACTIVE, PENDING, RESOLVED, CLOSED or a status number"
                ),
            }),
        },
    }
}

fn channel(source: i64) -> String {
    match source {
        1 => "email".into(),
        2 => "portal".into(),
        3 => "phone".into(),
        7 => "chat".into(),
        9 => "feedback_widget".into(),
        10 => "outbound_email".into(),
        n => n.to_string(),
    }
}

impl FdTicket {
    /// The ticket in the normalized model; `ui_base` is the helpdesk's address for the link.
    pub fn into_ticket(self, ui_base: &str) -> Ticket {
        let description = self.description_text.filter(|d| !d.is_empty()).or(self.description);
        Ticket {
            id: Some(self.id.to_string()),
            created_at: self.created_at,
            updated_at: self.updated_at,
            customer_id: self.requester_id.map(|v| v.to_string()),
            subject: self.subject,
            description,
            status: self.status.map(status_of),
            priority: self.priority.map(|p| priority_word(p).map_or_else(|| p.to_string(), str::to_owned)),
            category_id: self.kind,
            source: self.source.map(channel),
            tags: self.tags.unwrap_or_default(),
            user_id: self.responder_id.map(|v| v.to_string()),
            url: Some(format!("{}/a/tickets/{}", ui_base.trim_end_matches('/'), self.id)),
            due_at: self.due_by,
            ..Ticket::default()
        }
    }
}

impl FdConversation {
    /// The conversation as a note: private ones are internal; incoming ones are the contact's.
    pub fn into_note(self) -> Note {
        let author = self.user_id.map(|v| v.to_string());
        let (customer_id, user_id, kind) = if self.incoming {
            (author, None, AuthorKind::Customer)
        } else {
            (None, author, AuthorKind::Agent)
        };
        Note {
            id: Some(self.id.to_string()),
            created_at: self.created_at,
            updated_at: self.updated_at,
            ticket_id: self.ticket_id.map(|v| v.to_string()),
            customer_id,
            user_id,
            description: self.body_text.filter(|b| !b.is_empty()).or(self.body),
            visibility: Some(if self.private { NoteVisibility::Internal } else { NoteVisibility::Public }),
            author_kind: Some(kind),
            raw: None,
        }
    }
}

impl FdContact {
    /// The contact as a customer.
    pub fn into_customer(self) -> Customer {
        let emails = self
            .email
            .into_iter()
            .chain(self.other_emails.unwrap_or_default())
            .filter(|e| !e.is_empty())
            .map(|email| Email { email, kind: None })
            .collect();
        let telephones = [(self.phone, TelephoneType::Work), (self.mobile, TelephoneType::Mobile)]
            .into_iter()
            .filter_map(|(n, kind)| {
                n.filter(|n| !n.is_empty()).map(|telephone| Telephone { telephone, kind: Some(kind) })
            })
            .collect();
        Customer {
            id: Some(self.id.to_string()),
            created_at: self.created_at,
            updated_at: self.updated_at,
            name: self.name,
            emails,
            telephones,
            tags: self.tags.unwrap_or_default(),
            raw: None,
        }
    }
}

/// The body of `PUT /tickets/{id}` for a patch: priority and status as Freshdesk's numbers, the
/// category as `type`, the assignee as `responder_id`, the (already merged) tag list, and any
/// vendor fields from `raw`.
pub fn update_body(patch: &TicketPatch) -> Result<Map<String, Value>> {
    let mut body = match &patch.raw {
        Some(Value::Object(raw)) => raw.clone(),
        _ => Map::new(),
    };
    if let Some(p) = &patch.priority {
        body.insert("priority".into(), priority_number(p)?.into());
    }
    if let Some(s) = &patch.status {
        body.insert("status".into(), status_number(s)?.into());
    }
    if let Some(c) = &patch.category_id {
        body.insert("type".into(), c.clone().into());
    }
    if let Some(tags) = &patch.tags {
        body.insert("tags".into(), tags.clone().into());
    }
    if let Some(user) = &patch.user_id {
        body.insert("responder_id".into(), numeric_id(user, "assignee")?.into());
    }
    Ok(body)
}

/// A Freshdesk id from its string form; Freshdesk ids are numbers.
pub fn numeric_id(id: &str, what: &str) -> Result<u64> {
    id.trim().parse().map_err(|_| TicketingError::Invalid {
        detail: format!("{what} id `{id}` is not a Freshdesk id (Freshdesk ids are numbers)"),
    })
}

/// A plain-text note as the HTML Freshdesk stores: escaped, line breaks kept.
pub fn note_html(text: &str) -> String {
    let escaped = text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    escaped.replace('\n', "<br>")
}
