//! The bundled helpdesks in Intercom's shapes (API 2.14): string ids (the sample's own), epoch
//! seconds, ticket attributes for title and description, the ticket state's category, ticket
//! types for categories, ticket parts for notes, `{type: "list", data}` lists.

use serde_json::{Value, json};

use crate::{
    sandbox::Helpdesk,
    ticketing::{
        AuthorKind, Category, Customer, Note, NoteVisibility, Ticket, TicketStatus, model::Timestamp,
    },
};

/// The workspace id every object names.
pub const WORKSPACE: &str = "sandbox";

/// Epoch seconds of a sample instant (Intercom's dates have no fraction).
pub fn epoch(t: Timestamp) -> Value {
    t.map_or(Value::Null, |t| t.unix_timestamp().into())
}

/// `value` without its `null` fields: the description types them non-nullable, so an unset
/// field is left out rather than sent as `null`.
fn present(mut value: Value) -> Value {
    if let Value::Object(map) = &mut value {
        map.retain(|_, v| !v.is_null());
    }
    value
}

/// The state category of a sample status: closed ones are `resolved`, pending ones wait on the
/// customer.
fn state(t: &Ticket) -> &'static str {
    match &t.status {
        Some(TicketStatus::Closed) => "resolved",
        Some(TicketStatus::Unknown(s)) if s.eq_ignore_ascii_case("pending") => "waiting_on_customer",
        _ => "submitted",
    }
}

/// A category as `ticket_type`.
pub fn ticket_type(c: &Category) -> Value {
    present(json!({
        "type": "ticket_type",
        "id": c.id,
        "name": c.name,
        "description": c.description.clone().unwrap_or_default(),
        "icon": "🎟️",
        "workspace_id": WORKSPACE,
        "archived": !c.active(),
        "created_at": epoch(c.created_at),
        "updated_at": epoch(c.updated_at),
        "is_internal": false,
        "category": "Customer",
    }))
}

/// A note as `ticket_part`: internal ones are `note`, the rest `comment`.
pub fn part(n: &Note) -> Value {
    let (kind, id) = match (n.author(), &n.customer_id, &n.user_id) {
        (AuthorKind::System, _, _) => ("bot", Some("bot")),
        (_, _, Some(agent)) => ("admin", Some(agent.as_str())),
        (_, Some(customer), _) => ("user", Some(customer.as_str())),
        _ => ("bot", Some("bot")),
    };
    let part_type = if n.visibility == Some(NoteVisibility::Internal) { "note" } else { "comment" };
    json!({
        "type": "ticket_part",
        "id": n.id,
        "part_type": part_type,
        "body": html(n.description.as_deref().unwrap_or_default()),
        "created_at": epoch(n.created_at),
        "updated_at": epoch(n.updated_at.or(n.created_at)),
        "author": author(kind, id.unwrap_or("bot")),
        "attachments": [],
        "redacted": false,
    })
}

/// `ticket_part_author`.
pub fn author(kind: &str, id: &str) -> Value {
    json!({"type": kind, "id": id, "name": format!("Sandbox {kind} {id}"), "email": format!("{id}@sandbox.example")})
}

/// A ticket as `ticket`, its parts included when `parts` is set (`GET`, `PUT`; not the search).
pub fn ticket(desk: &Helpdesk, t: &Ticket, parts: bool) -> Value {
    let id = t.id.clone().unwrap_or_default();
    let kind = t.category_id.as_ref().and_then(|c| desk.categories.get(c)).map(ticket_type);
    let mut value = present(json!({
        "type": "ticket",
        "id": id,
        "ticket_id": id,
        "category": "Customer",
        "ticket_attributes": {
            "_default_title_": t.subject.clone().unwrap_or_default(),
            "_default_description_": t.description.clone().unwrap_or_default(),
        },
        "ticket_state": {"type": "ticket_state", "id": state(t), "category": state(t),
                         "internal_label": state(t), "external_label": state(t)},
        "ticket_type": kind,
        "contacts": {"type": "contact.list", "contacts": t.customer_id.iter()
            .map(|c| json!({"type": "contact", "id": c, "external_id": c})).collect::<Vec<_>>()},
        "admin_assignee_id": t.user_id.clone().unwrap_or_else(|| "0".to_owned()),
        "team_assignee_id": "0",
        "created_at": epoch(t.created_at),
        "updated_at": epoch(t.updated_at),
        "open": t.status != Some(TicketStatus::Closed),
        "linked_objects": {"type": "list", "data": [], "total_count": 0, "has_more": false},
        "is_shared": true,
    }));
    if parts {
        let mut notes: Vec<&Note> = desk.notes.with("ticket_id", &id).collect();
        notes.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        let parts: Vec<Value> = notes.into_iter().map(part).collect();
        value["ticket_parts"] =
            json!({"type": "ticket_part.list", "total_count": parts.len(), "ticket_parts": parts});
    }
    value
}

/// A customer as `contact`, its tags by reference.
pub fn contact(c: &Customer) -> Value {
    let id = c.id.clone().unwrap_or_default();
    present(json!({
        "type": "contact",
        "id": id,
        "workspace_id": WORKSPACE,
        "external_id": id,
        "role": "user",
        "email": c.emails.first().map(|e| e.email.clone()),
        "phone": c.telephones.first().map(|t| t.telephone.clone()),
        "name": c.name,
        "has_hard_bounced": false,
        "marked_email_as_spam": false,
        "unsubscribed_from_emails": false,
        "created_at": epoch(c.created_at),
        "updated_at": epoch(c.updated_at),
        "custom_attributes": {},
        "tags": {
            "data": c.tags.iter().map(|t| json!({"type": "tag", "id": t, "url": format!("/tags/{t}")})).collect::<Vec<_>>(),
            "url": format!("/contacts/{id}/tags"),
            "total_count": c.tags.len(),
            "has_more": false,
        },
    }))
}

/// A tag; the sandbox's tag ids are their names.
pub fn tag(name: &str) -> Value {
    json!({"type": "tag", "id": name, "name": name})
}

/// Every tag the helpdesk's tickets and customers carry, sorted, without repeats.
pub fn tags(desk: &Helpdesk) -> Vec<String> {
    let mut all: Vec<String> = desk
        .tickets
        .values()
        .flat_map(|t| t.tags.iter())
        .chain(desk.customers.values().flat_map(|c| c.tags.iter()))
        .cloned()
        .collect();
    all.sort();
    all.dedup();
    all
}

/// Text as the HTML Intercom keeps in a part's `body`: escaped, a paragraph per line.
pub fn html(text: &str) -> String {
    crate::ticketing::intercom::wire::note_html(text)
}
