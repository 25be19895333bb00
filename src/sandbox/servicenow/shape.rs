//! The bundled helpdesks as ServiceNow records: every value a string, `""` for unset, dates
//! `YYYY-MM-DD HH:MM:SS` UTC, references as `sys_id`s (with a `link` unless excluded).
//!
//! A sample id's `sys_id` is the first 32 hex digits of SHA-1 over `<table>:<id>`, so it has
//! ServiceNow's shape and maps back by looking it up. Customers and agents (the `user_id`s of
//! tickets and notes) are both `sys_user` records; a customer's `user_name` is their first email,
//! an agent's their sample id. Categories are the choices of `incident.category`, valued by id.

use serde_json::{Map, Value, json};
use sha1::{Digest, Sha1};

use crate::{
    sandbox::Helpdesk,
    ticketing::{
        Customer, Note, NoteVisibility, PriorityLevel, Ticket, TicketStatus, model::TelephoneType,
        servicenow::format_glide_time,
    },
};

/// The `user_name` of journal entries the API user wrote (a PATCH of `work_notes` or `comments`).
pub(super) const API_USER_FIELD: &str = "sys_created_by";

/// The `sys_id` the ServiceNow flavour gives the sample object `id` of `table` (`incident`,
/// `sys_user`, `sys_journal_field`, `sys_choice`).
pub fn sys_id(table: &str, id: &str) -> String {
    let digest = Sha1::digest(format!("{table}:{id}").as_bytes());
    hex::encode(digest)[..32].to_owned()
}

/// The sample ticket whose incident `sys_id` this is.
pub(super) fn ticket_key(desk: &Helpdesk, sys: &str) -> Option<String> {
    desk.tickets.keys().find(|id| sys_id("incident", id) == sys).cloned()
}

/// The sample agent whose `sys_user` `sys_id` this is.
pub(super) fn agent_key(desk: &Helpdesk, sys: &str) -> Option<String> {
    desk.agents().into_iter().find(|id| sys_id("sys_user", id) == sys)
}

fn time(t: Option<time::OffsetDateTime>) -> Value {
    t.map_or_else(|| "".into(), |t| format_glide_time(t).into())
}

fn text(v: Option<&str>) -> Value {
    v.unwrap_or_default().into()
}

/// A reference to a `sys_user`: its `sys_id`, or `{link, value}` when links are wanted.
fn user_ref(sample: Option<&str>, link: Option<&str>) -> Value {
    let Some(id) = sample else { return "".into() };
    let sys = sys_id("sys_user", id);
    match link {
        Some(base) => json!({"link": format!("{base}/api/now/table/sys_user/{sys}"), "value": sys}),
        None => sys.into(),
    }
}

/// The (impact, urgency, priority) of a sample priority word: the impact × urgency pair whose
/// lookup gives that priority.
pub(super) fn priority_triple(t: &Ticket) -> (u8, u8, u8) {
    match t.priority_level() {
        PriorityLevel::Urgent => (1, 1, 1),
        PriorityLevel::High => (1, 2, 2),
        PriorityLevel::Normal => (2, 2, 3),
        PriorityLevel::Low => (2, 3, 4),
        PriorityLevel::None => (3, 3, 5),
    }
}

/// ServiceNow's default priority lookup (platforms.md §4.3): (1,1) 1, (1,2)/(2,1) 2,
/// (1,3)/(2,2)/(3,1) 3, (2,3)/(3,2) 4, (3,3) 5.
pub(super) fn priority_of(impact: u8, urgency: u8) -> u8 {
    (impact + urgency - 1).clamp(1, 5)
}

/// The sample priority word of a ServiceNow priority.
pub(super) fn priority_word(priority: u8) -> &'static str {
    match priority {
        1 => "urgent",
        2 => "high",
        3 => "normal",
        _ => "low",
    }
}

/// The `state` of a sample ticket: New until assigned, then In Progress; `PENDING` On Hold;
/// `RESOLVED` Resolved; closed ones Closed; `CANCELED` Canceled.
pub(super) fn state(t: &Ticket) -> u8 {
    match &t.status {
        Some(TicketStatus::Closed) => 7,
        Some(TicketStatus::Unknown(s)) => match s.to_ascii_uppercase().as_str() {
            "PENDING" | "ON_HOLD" => 3,
            "RESOLVED" => 6,
            "CANCELED" => 8,
            _ => 2,
        },
        _ if t.user_id.is_none() => 1,
        _ => 2,
    }
}

/// The sample status of a `state` written by a client.
pub(super) fn status_of(state: i64) -> Option<TicketStatus> {
    match state {
        1 | 2 => Some(TicketStatus::Active),
        3 => Some(TicketStatus::Unknown("PENDING".into())),
        6 => Some(TicketStatus::Unknown("RESOLVED".into())),
        7 => Some(TicketStatus::Closed),
        8 => Some(TicketStatus::Unknown("CANCELED".into())),
        _ => None,
    }
}

/// An incident record; `link` is the instance address when reference links are wanted.
pub(super) fn incident(t: &Ticket, link: Option<&str>) -> Map<String, Value> {
    let id = t.id.as_deref().unwrap_or_default();
    let digits: String = id.chars().filter(char::is_ascii_digit).collect();
    let number: u64 = digits.parse().unwrap_or(0);
    let (impact, urgency, priority) = priority_triple(t);
    let state = state(t);
    let record = json!({
        "sys_id": sys_id("incident", id),
        "number": format!("INC{number:07}"),
        "short_description": text(t.subject.as_deref()),
        "description": text(t.description.as_deref()),
        "state": state.to_string(), "incident_state": state.to_string(),
        "active": (state < 7).to_string(),
        "impact": impact.to_string(), "urgency": urgency.to_string(), "priority": priority.to_string(),
        "category": text(t.category_id.as_deref()), "subcategory": "",
        "caller_id": user_ref(t.customer_id.as_deref(), link),
        "assigned_to": user_ref(t.user_id.as_deref(), link),
        "contact_type": text(t.source.as_deref()),
        "work_notes": "", "comments": "", "sys_tags": "",
        "opened_at": time(t.created_at), "sys_created_on": time(t.created_at),
        "sys_updated_on": time(t.updated_at),
        "closed_at": if state >= 6 { time(t.closed_at.or(t.updated_at)) } else { "".into() },
        "due_date": time(t.due_at),
        "sys_class_name": "incident",
    });
    record.as_object().cloned().unwrap_or_default()
}

/// A customer as a `sys_user`.
pub(super) fn customer(c: &Customer) -> Map<String, Value> {
    let id = c.id.as_deref().unwrap_or_default();
    let email = c.emails.first().map(|e| e.email.clone());
    let phone = |kind: TelephoneType| {
        c.telephones.iter().find(|t| t.kind.as_ref() == Some(&kind)).map(|t| t.telephone.clone())
    };
    let name = c.name.clone().unwrap_or_default();
    let (first, last) = name.split_once(' ').unwrap_or((name.as_str(), ""));
    let record = json!({
        "sys_id": sys_id("sys_user", id),
        "user_name": email.clone().unwrap_or_else(|| id.to_owned()),
        "name": name, "first_name": first, "last_name": last,
        "email": email.unwrap_or_default(),
        "phone": phone(TelephoneType::Work).unwrap_or_default(),
        "mobile_phone": phone(TelephoneType::Mobile).unwrap_or_default(),
        "active": "true", "sys_class_name": "sys_user",
        "sys_created_on": time(c.created_at), "sys_updated_on": time(c.updated_at),
    });
    record.as_object().cloned().unwrap_or_default()
}

/// An agent as a `sys_user`.
pub(super) fn agent(id: &str) -> Map<String, Value> {
    let record = json!({
        "sys_id": sys_id("sys_user", id), "user_name": id, "name": format!("Agent {id}"),
        "first_name": "Agent", "last_name": id, "email": format!("{id}@agents.sandbox.example"),
        "phone": "", "mobile_phone": "", "active": "true", "sys_class_name": "sys_user",
        "sys_created_on": "2026-09-01 08:00:00", "sys_updated_on": "2026-09-01 08:00:00",
    });
    record.as_object().cloned().unwrap_or_default()
}

/// The journal element of a note: internal ones are work notes, others comments.
pub(super) fn element(n: &Note) -> &'static str {
    if n.visibility == Some(NoteVisibility::Internal) { "work_notes" } else { "comments" }
}

/// A note as a `sys_journal_field` entry, by the `user_name` of its author.
pub(super) fn journal(desk: &Helpdesk, n: &Note) -> Map<String, Value> {
    let author = match (&n.user_id, &n.customer_id) {
        (Some(agent), _) => agent.clone(),
        (None, Some(c)) => desk
            .customers
            .get(c)
            .and_then(|c| c.emails.first().map(|e| e.email.clone()))
            .unwrap_or_else(|| c.clone()),
        _ => n.raw.as_ref().and_then(|r| r[API_USER_FIELD].as_str()).unwrap_or("system").to_owned(),
    };
    let record = json!({
        "sys_id": sys_id("sys_journal_field", n.id.as_deref().unwrap_or_default()),
        "element": element(n),
        "element_id": sys_id("incident", n.ticket_id.as_deref().unwrap_or_default()),
        "name": "incident",
        "value": text(n.description.as_deref()),
        "sys_created_on": time(n.created_at),
        "sys_created_by": author,
    });
    record.as_object().cloned().unwrap_or_default()
}

/// The fields of a `sys_choice` record.
pub(super) const CHOICE_FIELDS: [&str; 9] =
    ["sys_id", "name", "element", "language", "value", "label", "sequence", "inactive", "dependent_value"];

/// The choices of `incident.category`: one per sample category, in id order.
pub(super) fn choices(desk: &Helpdesk) -> Vec<Map<String, Value>> {
    desk.categories
        .values()
        .enumerate()
        .map(|(i, c)| {
            let id = c.id.as_deref().unwrap_or_default();
            let record = json!({
                "sys_id": sys_id("sys_choice", id),
                "name": "incident", "element": "category", "language": "en",
                "value": id, "label": text(c.name.as_deref()),
                "sequence": ((i + 1) * 10).to_string(),
                "inactive": (!c.active()).to_string(),
                "dependent_value": "",
            });
            record.as_object().cloned().unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sys_ids_have_servicenow_s_shape_and_differ_per_table() {
        let id = sys_id("incident", "1001");
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(id, sys_id("sys_user", "1001"));
    }

    #[test]
    fn the_priority_lookup_matches_the_documented_matrix() {
        for (impact, urgency, priority) in [
            (1, 1, 1),
            (1, 2, 2),
            (2, 1, 2),
            (1, 3, 3),
            (2, 2, 3),
            (3, 1, 3),
            (2, 3, 4),
            (3, 2, 4),
            (3, 3, 5),
        ] {
            assert_eq!(priority_of(impact, urgency), priority, "({impact},{urgency})");
        }
    }
}
