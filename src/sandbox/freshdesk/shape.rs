//! The sample helpdesk's objects in Freshdesk API v2's shapes, and the way back for writes.
//!
//! Freshdesk ids are numbers: a sample id's trailing digits are its Freshdesk id (`c-011` is
//! contact 11, `u-01` agent 1, `n-00042` conversation 42). A ticket's `type` is its category's
//! name.

use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::{
    sandbox::data::Helpdesk,
    ticketing::{Customer, Note, NoteVisibility, Ticket, TicketStatus, model::TelephoneType},
};

/// The Freshdesk number of a sample id: its trailing digits.
pub(super) fn number(id: &str) -> Option<u64> {
    let digits = id.len() - id.trim_start_matches(|c: char| !c.is_ascii_digit()).len();
    id[digits..].parse().ok().filter(|_| id[digits..].chars().all(|c| c.is_ascii_digit()))
}

/// `null` or the id's number.
fn id_value(id: Option<&str>) -> Value {
    id.and_then(number).map_or(Value::Null, Value::from)
}

/// Freshdesk's timestamp format: UTC to the second, `Z`.
pub(super) fn date(t: Option<OffsetDateTime>) -> Value {
    let Some(t) = t else { return Value::Null };
    let t = t.to_offset(time::UtcOffset::UTC);
    Value::from(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    ))
}

/// Text as the HTML Freshdesk keeps in `body` and `description`.
pub(super) fn html(text: &str) -> String {
    let escaped = text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    format!("<div>{}</div>", escaped.replace('\n', "<br>"))
}

pub(super) use crate::sandbox::markup::text;

/// The Freshdesk priority of a sample priority word.
pub(super) fn priority(word: Option<&str>) -> Value {
    match word.map(str::to_ascii_lowercase).as_deref() {
        Some("low") => 1.into(),
        Some("normal" | "medium") => 2.into(),
        Some("high") => 3.into(),
        Some("urgent") => 4.into(),
        _ => Value::Null,
    }
}

/// The sample priority word of a Freshdesk priority.
pub(super) fn priority_word(n: i64) -> Option<&'static str> {
    ["low", "normal", "high", "urgent"].get(usize::try_from(n - 1).ok()?).copied()
}

/// The Freshdesk status of a sample status (a `PENDING` one is 3; a closed one 5).
fn status(s: Option<&TicketStatus>) -> i64 {
    match s {
        Some(TicketStatus::Closed) => 5,
        Some(TicketStatus::Unknown(v)) if v.eq_ignore_ascii_case("pending") => 3,
        Some(TicketStatus::Unknown(v)) if v.eq_ignore_ascii_case("resolved") => 4,
        _ => 2,
    }
}

/// The sample status of a Freshdesk status.
pub(super) fn status_of(n: i64) -> Option<TicketStatus> {
    match n {
        2 => Some(TicketStatus::Active),
        3 => Some(TicketStatus::Unknown("PENDING".into())),
        4 => Some(TicketStatus::Unknown("RESOLVED".into())),
        5 => Some(TicketStatus::Closed),
        _ => None,
    }
}

fn source(channel: Option<&str>) -> i64 {
    match channel.map(str::to_ascii_lowercase).as_deref() {
        Some("portal" | "web") => 2,
        Some("phone") => 3,
        Some("chat") => 7,
        _ => 1,
    }
}

/// The category name of a ticket's `type`.
pub(super) fn type_of(desk: &Helpdesk, category_id: Option<&str>) -> Value {
    let Some(id) = category_id else { return Value::Null };
    desk.categories.get(id).and_then(|c| c.name.clone()).map_or_else(|| id.into(), Value::from)
}

/// Freshdesk always computes `due_by` and `fr_due_by` from an SLA policy; the sandbox's policy
/// gives a first response within a day and a resolution within three of creation.
fn sla(t: &Ticket, days: i64) -> Option<OffsetDateTime> {
    t.created_at.map(|c| c + time::Duration::days(days))
}

/// A ticket as `GET /api/v2/tickets/{id}` shows it; lists leave the description out unless
/// `include=description`.
pub(super) fn ticket(desk: &Helpdesk, t: &Ticket, with_description: bool) -> Value {
    let mut v = json!({
        "id": id_value(t.id.as_deref()),
        "subject": t.subject,
        "status": status(t.status.as_ref()),
        "priority": priority(t.priority.as_deref()),
        "source": source(t.source.as_deref()),
        "type": type_of(desk, t.category_id.as_deref()),
        "requester_id": id_value(t.customer_id.as_deref()),
        "responder_id": id_value(t.user_id.as_deref()),
        "group_id": null, "company_id": null, "product_id": null, "email_config_id": null,
        "tags": t.tags,
        "custom_fields": {},
        "cc_emails": [], "fwd_emails": [], "reply_cc_emails": [], "to_emails": null,
        "fr_escalated": false, "is_escalated": false, "spam": false,
        "due_by": date(t.due_at.or(sla(t, 3))), "fr_due_by": date(sla(t, 1)),
        "created_at": date(t.created_at),
        "updated_at": date(t.updated_at),
    });
    if with_description {
        let d = t.description.clone().unwrap_or_default();
        v["description"] = html(&d).into();
        v["description_text"] = d.into();
    }
    v
}

/// A note as a conversation: the customer's are incoming replies, private ones notes (source 2).
pub(super) fn conversation(n: &Note) -> Value {
    let private = n.visibility == Some(NoteVisibility::Internal);
    let incoming = n.user_id.is_none() && n.customer_id.is_some();
    let author = n.user_id.as_deref().or(n.customer_id.as_deref());
    let body = n.description.clone().unwrap_or_default();
    json!({
        "id": id_value(n.id.as_deref()),
        "body": html(&body),
        "body_text": body,
        "incoming": incoming,
        "private": private,
        "user_id": id_value(author),
        "support_email": null,
        "source": if private { 2 } else { 0 },
        "ticket_id": id_value(n.ticket_id.as_deref()),
        "to_emails": [], "from_email": null, "cc_emails": [], "bcc_emails": [], "attachments": [],
        "created_at": date(n.created_at),
        "updated_at": date(n.updated_at),
    })
}

/// A customer as a contact.
pub(super) fn contact(c: &Customer) -> Value {
    let mut emails = c.emails.iter().map(|e| e.email.clone());
    let phone = |kind: TelephoneType| {
        c.telephones.iter().find(|t| t.kind.as_ref() == Some(&kind)).map(|t| t.telephone.clone())
    };
    let any_phone = c.telephones.first().map(|t| t.telephone.clone());
    json!({
        "id": id_value(c.id.as_deref()),
        "name": c.name,
        "email": emails.next(),
        "other_emails": emails.collect::<Vec<_>>(),
        "phone": phone(TelephoneType::Work).or(any_phone),
        "mobile": phone(TelephoneType::Mobile),
        "tags": c.tags,
        "active": true,
        "address": null, "description": null, "job_title": null, "company_id": null,
        "language": "en", "time_zone": "Eastern Time (US & Canada)", "twitter_id": null,
        "unique_external_id": null,
        "created_at": date(c.created_at),
        "updated_at": date(c.updated_at),
    })
}

/// `GET /api/v2/ticket_fields`: the default fields, the ticket type's choices being the
/// active categories' names.
pub(super) fn ticket_fields(desk: &Helpdesk) -> Value {
    let types: Vec<&str> =
        desk.categories.values().filter(|c| c.active()).filter_map(|c| c.name.as_deref()).collect();
    let field = |id: u64, name: &str, label: &str, kind: &str, position: u64| {
        json!({
            "id": id, "name": name, "label": label, "description": null, "label_for_customers": label,
            "type": kind, "default": true, "position": position,
            "required_for_closure": false, "required_for_agents": false, "required_for_customers": false,
            "customers_can_edit": kind != "default_status",
            "created_at": "2026-09-01T08:00:00Z", "updated_at": "2026-09-01T08:00:00Z"
        })
    };
    let mut kind = field(3, "ticket_type", "Type", "default_ticket_type", 3);
    kind["choices"] = json!(types);
    let mut status = field(4, "status", "Status", "default_status", 4);
    status["choices"] = json!({
        "2": ["Open", "Being Processed"], "3": ["Pending", "Awaiting your Reply"],
        "4": ["Resolved", "This ticket has been Resolved"], "5": ["Closed", "This ticket has been Closed"]
    });
    let mut priority = field(5, "priority", "Priority", "default_priority", 5);
    priority["choices"] = json!({"Low": 1, "Medium": 2, "High": 3, "Urgent": 4});
    json!([
        field(1, "requester", "Search a requester", "default_requester", 1),
        field(2, "subject", "Subject", "default_subject", 2),
        kind,
        status,
        priority,
        field(6, "description", "Description", "default_description", 6),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_their_trailing_digits() {
        assert_eq!(number("c-011"), Some(11));
        assert_eq!(number("1001"), Some(1001));
        assert_eq!(number("n-00042"), Some(42));
        assert_eq!(number("abc"), None);
    }

    #[test]
    fn html_round_trips_text() {
        let t = "Hi <Tom> & co\n\nSecond line";
        assert_eq!(text(&html(t)), t);
        assert_eq!(text("Try a refund &lt;b&gt;now&lt;/b&gt;<br>Thanks"), "Try a refund <b>now</b>\nThanks");
        assert_eq!(text("<p>One</p><p>Two</p>"), "One\nTwo\n");
    }

    #[test]
    fn dates_are_to_the_second() {
        let t = time::macros::datetime!(2026-11-02 09:14:07.250 UTC);
        assert_eq!(date(Some(t)), json!("2026-11-02T09:14:07Z"));
    }
}
