//! The bundled helpdesks in Zendesk's shapes: integer ids, Zendesk's words, its envelopes.
//!
//! Sample ids are strings (`1001`, `c-011`, `u-01`, `n-00001`); Zendesk's are integers. A sample
//! id's trailing number, offset per kind, is its Zendesk id, so end-users and agents (one `users`
//! table in Zendesk) never collide and an id maps back by looking it up.

use serde_json::{Value, json};

use crate::{
    sandbox::Helpdesk,
    ticketing::{AuthorKind, Customer, Note, NoteVisibility, PriorityLevel, Ticket, TicketStatus, model},
};

/// The id of the dropdown ticket field whose options are the helpdesk's categories.
pub const CATEGORY_FIELD_ID: i64 = 360_000_000_001;
/// Zendesk ids of end-users (sample customers) start here.
const END_USERS: i64 = 1_000_000;
/// Zendesk ids of agents (sample `user_id`s) start here.
const AGENTS: i64 = 2_000_000;

/// Which sample table an id belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Tickets: the number itself.
    Ticket,
    /// Customers, as end-users.
    EndUser,
    /// Agents (the `user_id`s of tickets and notes).
    Agent,
    /// Notes, as comments.
    Comment,
}

/// The Zendesk id of a sample id.
pub fn zid(kind: Kind, id: &str) -> i64 {
    let digits: String = id.chars().rev().take_while(char::is_ascii_digit).collect();
    let n: i64 = digits.chars().rev().collect::<String>().parse().unwrap_or(0);
    match kind {
        Kind::Ticket | Kind::Comment => n,
        Kind::EndUser => END_USERS + n,
        Kind::Agent => AGENTS + n,
    }
}

fn zid_opt(kind: Kind, id: Option<&str>) -> Value {
    id.map_or(Value::Null, |id| zid(kind, id).into())
}

/// Every agent id the helpdesk mentions.
pub fn agents(desk: &Helpdesk) -> Vec<String> {
    let mut ids: Vec<String> = desk
        .tickets
        .values()
        .filter_map(|t| t.user_id.clone())
        .chain(desk.notes.values().filter_map(|n| n.user_id.clone()))
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// The sample id of a Zendesk ticket, end-user or agent id.
pub fn sample_id(desk: &Helpdesk, kind: Kind, zendesk_id: i64) -> Option<String> {
    let ids: Vec<String> = match kind {
        Kind::Ticket => desk.tickets.keys().cloned().collect(),
        Kind::EndUser => desk.customers.keys().cloned().collect(),
        Kind::Agent => agents(desk),
        Kind::Comment => desk.notes.keys().cloned().collect(),
    };
    ids.into_iter().find(|id| zid(kind, id) == zendesk_id)
}

/// A timestamp as Zendesk writes it: to the second.
fn time(t: model::Timestamp) -> Value {
    t.map_or(Value::Null, |t| model::format_timestamp(t.replace_nanosecond(0).unwrap_or(t)).into())
}

/// Zendesk's status word for a sample status.
fn status(t: &Ticket) -> &'static str {
    match &t.status {
        Some(TicketStatus::Closed) => "closed",
        Some(TicketStatus::Unknown(s)) if s.eq_ignore_ascii_case("pending") => "pending",
        _ => "open",
    }
}

/// Zendesk's priority word for a sample priority, `null` for none.
fn priority(t: &Ticket) -> Value {
    match t.priority_level() {
        PriorityLevel::None => Value::Null,
        level => level.as_str().to_ascii_lowercase().into(),
    }
}

/// `value` without its `null` fields: the OAS types them non-nullable, so an unset field is left
/// out rather than sent as `null`.
fn present(mut value: Value) -> Value {
    if let Value::Object(map) = &mut value {
        map.retain(|_, v| !v.is_null());
    }
    value
}

/// A ticket as `TicketObject`.
pub fn ticket(t: &Ticket, base: &str) -> Value {
    let id = zid(Kind::Ticket, t.id.as_deref().unwrap_or_default());
    present(json!({
        "url": format!("{base}/api/v2/tickets/{id}.json"),
        "id": id,
        "external_id": null,
        "type": null,
        "subject": t.subject,
        "raw_subject": t.subject,
        "description": t.description,
        "priority": priority(t),
        "status": status(t),
        "requester_id": zid_opt(Kind::EndUser, t.customer_id.as_deref()),
        "submitter_id": zid_opt(Kind::EndUser, t.customer_id.as_deref()),
        "assignee_id": zid_opt(Kind::Agent, t.user_id.as_deref()),
        "organization_id": null,
        "group_id": null,
        "tags": t.tags,
        // The OAS types a value as a string: an unset category is left out rather than `null`.
        "custom_fields": t.category_id.iter().map(|c| json!({"id": CATEGORY_FIELD_ID, "value": c})).collect::<Vec<_>>(),
        "via": {"channel": "web"},
        "is_public": true,
        "created_at": time(t.created_at),
        "updated_at": time(t.updated_at),
    }))
}

/// A customer as an end-user (`UserObject`).
pub fn end_user(c: &Customer) -> Value {
    present(json!({
        "id": zid(Kind::EndUser, c.id.as_deref().unwrap_or_default()),
        "name": c.name,
        "email": c.emails.first().map(|e| e.email.clone()),
        "phone": c.telephones.first().map(|t| t.telephone.clone()),
        "role": "end-user",
        "tags": c.tags,
        "active": true,
        "verified": true,
        "created_at": time(c.created_at),
        "updated_at": time(c.updated_at),
    }))
}

/// An agent the sample data only knows by id.
pub fn agent(id: &str) -> Value {
    json!({
        "id": zid(Kind::Agent, id),
        "name": format!("Agent {id}"),
        "email": format!("{id}@agents.sandbox.example"),
        "role": "agent",
        "active": true,
        "verified": true,
    })
}

/// Whether a note is public: the sample's own notes carry no visibility and are replies.
pub fn is_public(n: &Note) -> bool {
    n.visibility != Some(NoteVisibility::Internal)
}

/// The Zendesk id of a note's author, `-1` (Zendesk itself) for a system note.
pub fn author_id(n: &Note) -> i64 {
    match (n.author_kind, &n.customer_id, &n.user_id) {
        (Some(AuthorKind::System), _, _) => -1,
        (_, _, Some(agent)) => zid(Kind::Agent, agent),
        (_, Some(customer), _) => zid(Kind::EndUser, customer),
        _ => -1,
    }
}

/// A note as `TicketCommentObject`.
pub fn comment(n: &Note) -> Value {
    let body = n.description.clone().unwrap_or_default();
    present(json!({
        "id": zid(Kind::Comment, n.id.as_deref().unwrap_or_default()),
        "type": "Comment",
        "author_id": author_id(n),
        "body": body,
        "html_body": format!("<p>{}</p>", html_escape(&body)),
        "plain_body": body,
        "public": is_public(n),
        "attachments": [],
        "via": {"channel": if n.user_id.is_some() { "api" } else { "web" }},
        "metadata": {},
        "created_at": time(n.created_at),
    }))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The category dropdown (`TicketFieldObject` of type `tagger`), its options the categories.
pub fn category_field(desk: &Helpdesk) -> Value {
    let options: Vec<Value> = desk
        .categories
        .values()
        .enumerate()
        .map(|(i, c)| {
            json!({"id": i + 1, "name": c.name, "raw_name": c.name, "value": c.id, "default": false})
        })
        .collect();
    json!({
        "id": CATEGORY_FIELD_ID,
        "type": "tagger",
        "title": "Category",
        "raw_title": "Category",
        "description": "What the ticket is about",
        "active": true,
        "required": false,
        "removable": true,
        "custom_field_options": options,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_keep_their_number_and_kinds_do_not_collide() {
        assert_eq!(zid(Kind::Ticket, "1001"), 1001);
        assert_eq!(zid(Kind::EndUser, "c-011"), 1_000_011);
        assert_eq!(zid(Kind::Agent, "u-01"), 2_000_001);
        assert_eq!(zid(Kind::Comment, "n-00267"), 267);
    }
}
