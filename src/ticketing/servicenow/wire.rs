//! ServiceNow Table API records as the vendor documents them (platforms.md §4), and each as the
//! normalized object it is (the values are mapped in [`super::mapping`]).
//!
//! Every value is a string (`"2"`, `"true"`, `""` for unset); a reference is its `sys_id`, or
//! `{"value", "link"}` when the request did not exclude reference links.

use serde::{Deserialize, Deserializer};
use serde_json::Value;
use time::OffsetDateTime;

use super::mapping::{parse_glide_time, priority_word, status_of, visibility_of};
use crate::ticketing::{
    AuthorKind, Category, Customer, Email, Note, Telephone, Ticket, TicketStatus, model::TelephoneType,
};

/// A string field: `""` and `null` read as absent; a reference object reads as its `value`.
fn text<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    let s = match v {
        Some(Value::String(s)) => s,
        Some(Value::Object(mut o)) => match o.remove("value") {
            Some(Value::String(s)) => s,
            _ => String::new(),
        },
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    };
    Ok(Some(s).filter(|s| !s.is_empty()))
}

fn time_field<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<OffsetDateTime>, D::Error> {
    match text(d)? {
        None => Ok(None),
        Some(s) => parse_glide_time(&s).map(Some).ok_or_else(|| {
            serde::de::Error::custom(format!("`{s}` is not a ServiceNow date-time (YYYY-MM-DD HH:MM:SS)"))
        }),
    }
}

/// `{"result": ...}`, the envelope of every Table API answer.
#[derive(Debug, Deserialize)]
pub struct Envelope<T> {
    /// The record or the list of records.
    pub result: T,
}

/// An `incident` record, trimmed to what the connector asks for in `sysparm_fields`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SnIncident {
    /// The record's 32-hex id.
    pub sys_id: String,
    /// The display number (`INC0010001`); not the key.
    #[serde(default, deserialize_with = "text")]
    pub number: Option<String>,
    /// Subject.
    #[serde(default, deserialize_with = "text")]
    pub short_description: Option<String>,
    /// Full description (plain text).
    #[serde(default, deserialize_with = "text")]
    pub description: Option<String>,
    /// 1 New, 2 In Progress, 3 On Hold, 6 Resolved, 7 Closed, 8 Canceled, or an instance's own.
    #[serde(default, deserialize_with = "text")]
    pub state: Option<String>,
    /// `"true"` while the incident is open.
    #[serde(default, deserialize_with = "text")]
    pub active: Option<String>,
    /// 1 Critical to 5 Planning, computed from impact and urgency.
    #[serde(default, deserialize_with = "text")]
    pub priority: Option<String>,
    /// The category choice value.
    #[serde(default, deserialize_with = "text")]
    pub category: Option<String>,
    /// The caller's `sys_user`.
    #[serde(default, deserialize_with = "text")]
    pub caller_id: Option<String>,
    /// The assigned agent's `sys_user`.
    #[serde(default, deserialize_with = "text")]
    pub assigned_to: Option<String>,
    /// Channel (`email`, `phone`, `self-service`, ...).
    #[serde(default, deserialize_with = "text")]
    pub contact_type: Option<String>,
    /// Creation time.
    #[serde(default, deserialize_with = "time_field")]
    pub sys_created_on: Option<OffsetDateTime>,
    /// Last change.
    #[serde(default, deserialize_with = "time_field")]
    pub sys_updated_on: Option<OffsetDateTime>,
    /// When it was closed.
    #[serde(default, deserialize_with = "time_field")]
    pub closed_at: Option<OffsetDateTime>,
    /// Due date.
    #[serde(default, deserialize_with = "time_field")]
    pub due_date: Option<OffsetDateTime>,
}

/// The incident fields the connector reads (`sysparm_fields`), to keep answers small.
pub const INCIDENT_FIELDS: &str = "sys_id,number,short_description,description,state,active,priority,\
category,caller_id,assigned_to,contact_type,sys_created_on,sys_updated_on,closed_at,due_date";

/// A `sys_user` record.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SnUser {
    /// The record's 32-hex id.
    pub sys_id: String,
    /// Login name; journal entries name their author by it.
    #[serde(default, deserialize_with = "text")]
    pub user_name: Option<String>,
    /// Full name.
    #[serde(default, deserialize_with = "text")]
    pub name: Option<String>,
    /// First name.
    #[serde(default, deserialize_with = "text")]
    pub first_name: Option<String>,
    /// Last name.
    #[serde(default, deserialize_with = "text")]
    pub last_name: Option<String>,
    /// Email address.
    #[serde(default, deserialize_with = "text")]
    pub email: Option<String>,
    /// Business phone.
    #[serde(default, deserialize_with = "text")]
    pub phone: Option<String>,
    /// Mobile phone.
    #[serde(default, deserialize_with = "text")]
    pub mobile_phone: Option<String>,
    /// Creation time.
    #[serde(default, deserialize_with = "time_field")]
    pub sys_created_on: Option<OffsetDateTime>,
    /// Last change.
    #[serde(default, deserialize_with = "time_field")]
    pub sys_updated_on: Option<OffsetDateTime>,
}

/// The `sys_user` fields the connector reads.
pub const USER_FIELDS: &str =
    "sys_id,user_name,name,first_name,last_name,email,phone,mobile_phone,sys_created_on,sys_updated_on";

/// A `sys_journal_field` record: one work note or comment of an incident.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SnJournal {
    /// The record's 32-hex id.
    pub sys_id: String,
    /// `work_notes` or `comments`.
    #[serde(default, deserialize_with = "text")]
    pub element: Option<String>,
    /// The incident's `sys_id`.
    #[serde(default, deserialize_with = "text")]
    pub element_id: Option<String>,
    /// The entry's text.
    #[serde(default, deserialize_with = "text")]
    pub value: Option<String>,
    /// The author's `user_name` (not a `sys_id`).
    #[serde(default, deserialize_with = "text")]
    pub sys_created_by: Option<String>,
    /// Creation time.
    #[serde(default, deserialize_with = "time_field")]
    pub sys_created_on: Option<OffsetDateTime>,
}

/// The `sys_journal_field` fields the connector reads.
pub const JOURNAL_FIELDS: &str = "sys_id,element,element_id,value,sys_created_by,sys_created_on";

/// A `sys_choice` record: one choice of a choice field.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SnChoice {
    /// The choice's value: the category id.
    #[serde(default, deserialize_with = "text")]
    pub value: Option<String>,
    /// The choice's label.
    #[serde(default, deserialize_with = "text")]
    pub label: Option<String>,
    /// `"true"` for a retired choice.
    #[serde(default, deserialize_with = "text")]
    pub inactive: Option<String>,
}

/// The `sys_choice` fields the connector reads.
pub const CHOICE_FIELDS: &str = "value,label,sequence,inactive";

impl SnIncident {
    /// The incident as a ticket; `ui_base` is the instance's address for the link.
    pub fn into_ticket(self, ui_base: &str) -> Ticket {
        let status = status_of(self.state.as_deref(), self.active.as_deref());
        Ticket {
            url: Some(format!("{}/incident.do?sys_id={}", ui_base.trim_end_matches('/'), self.sys_id)),
            id: Some(self.sys_id),
            created_at: self.sys_created_on,
            updated_at: self.sys_updated_on,
            customer_id: self.caller_id,
            subject: self.short_description,
            description: self.description,
            closed_at: self.closed_at.filter(|_| status == TicketStatus::Closed),
            status: Some(status),
            priority: self.priority.map(|p| priority_word(&p).map_or(p, str::to_owned)),
            category_id: self.category,
            source: self.contact_type,
            source_ref: self.number,
            user_id: self.assigned_to,
            due_at: self.due_date,
            ..Ticket::default()
        }
    }
}

impl SnUser {
    /// The user as a customer.
    pub fn into_customer(self) -> Customer {
        let joined = [self.first_name.as_deref(), self.last_name.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        let name = self.name.or_else(|| Some(joined).filter(|n| !n.is_empty()));
        let telephones = [(self.phone, TelephoneType::Work), (self.mobile_phone, TelephoneType::Mobile)]
            .into_iter()
            .filter_map(|(n, kind)| n.map(|telephone| Telephone { telephone, kind: Some(kind) }))
            .collect();
        Customer {
            id: Some(self.sys_id),
            created_at: self.sys_created_on,
            updated_at: self.sys_updated_on,
            name,
            emails: self.email.into_iter().map(|email| Email { email, kind: None }).collect(),
            telephones,
            ..Customer::default()
        }
    }
}

/// Who wrote a journal entry, from its author's `user_name` resolved to a `sys_user`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalAuthor {
    /// The incident's caller.
    Caller(String),
    /// Another user: an agent.
    Agent(String),
    /// ServiceNow itself (`system`: business rules, workflows).
    System,
    /// A user name that resolves to no readable user.
    Unresolved,
}

impl SnJournal {
    /// The entry as a note, by `author`.
    pub fn into_note(self, author: JournalAuthor) -> Note {
        let (customer_id, user_id, kind) = match author {
            JournalAuthor::Caller(id) => (Some(id), None, AuthorKind::Customer),
            JournalAuthor::Agent(id) => (None, Some(id), AuthorKind::Agent),
            JournalAuthor::System => (None, None, AuthorKind::System),
            JournalAuthor::Unresolved => (None, None, AuthorKind::Agent),
        };
        Note {
            id: Some(self.sys_id),
            created_at: self.sys_created_on,
            updated_at: self.sys_created_on,
            ticket_id: self.element_id,
            customer_id,
            user_id,
            description: self.value,
            visibility: Some(visibility_of(self.element.as_deref())),
            author_kind: Some(kind),
            raw: None,
        }
    }
}

impl SnChoice {
    /// The choice as a category: its value is the id, its label the name.
    pub fn into_category(self) -> Option<Category> {
        let value = self.value?;
        Some(Category {
            name: self.label.or_else(|| Some(value.clone())),
            id: Some(value),
            is_active: Some(self.inactive.as_deref() != Some("true")),
            ..Category::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn records_read_blank_strings_as_absent_and_references_as_their_value() {
        let i: SnIncident = serde_json::from_value(json!({
            "sys_id": "ef43c6d40a0a0b5700c77f9bf387afe3", "number": "INC0010001", "state": "7",
            "active": "false", "priority": "3", "category": "network", "description": "",
            "caller_id": {"link": "https://x/api/now/table/sys_user/681c", "value": "681c"},
            "assigned_to": "", "sys_updated_on": "2024-05-01 09:30:00", "closed_at": ""
        }))
        .unwrap();
        let t = i.into_ticket("https://acme.service-now.com");
        assert_eq!(t.description, None);
        assert_eq!(t.customer_id.as_deref(), Some("681c"));
        assert_eq!(t.user_id, None);
        assert_eq!(t.status, Some(TicketStatus::Closed));
        assert_eq!(t.priority.as_deref(), Some("normal"));
        assert_eq!(t.source_ref.as_deref(), Some("INC0010001"));
        assert_eq!(t.updated_at, Some(time::macros::datetime!(2024-05-01 09:30:00 UTC)));
        let bad = serde_json::from_value::<SnIncident>(
            json!({"sys_id": "x", "sys_updated_on": "2024-05-01T09:30:00Z"}),
        );
        assert!(bad.unwrap_err().to_string().contains("YYYY-MM-DD HH:MM:SS"));
    }
}
