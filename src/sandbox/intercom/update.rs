//! The flavour's writes: `PUT /tickets/{id}`, `POST /tickets/{id}/reply`, `POST
//! /tickets/{id}/tags` and `POST /tags`.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::{Answer, IcError, Shared, desk_name, shape, ticket_not_found};
use crate::{
    sandbox::{
        data::{Connections, Helpdesk},
        markup,
        resource::{TicketChange, TicketEvent, add_note, bump, replace_ticket},
    },
    ticketing::{AuthorKind, Note, NoteVisibility, TicketStatus},
};

/// The state categories `ticket_state_id` names in the sandbox.
const STATES: [&str; 4] = ["submitted", "in_progress", "waiting_on_customer", "resolved"];

fn admin_not_found() -> IcError {
    IcError::not_found("admin_not_found", "Admin not found")
}

/// `admin_id` of a body: required, and one of the sample's admins.
fn admin_of(desk: &Helpdesk, body: &Value) -> Result<String, IcError> {
    let admin = match &body["admin_id"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err(IcError::bad("admin_id is required")),
    };
    desk.agents().into_iter().find(|a| *a == admin).ok_or_else(admin_not_found)
}

/// The helpdesk holding ticket `id` and the admin a write's body names (`admin_id`).
fn ticket_and_admin<'a>(
    desks: &'a mut Connections,
    id: &str,
    body: &Value,
) -> Result<(String, &'a mut Helpdesk, String), IcError> {
    let name = desk_name(desks)?;
    let desk = desks.get_mut(&name).ok_or_else(ticket_not_found)?;
    if !desk.tickets.contains_key(id) {
        return Err(ticket_not_found());
    }
    let admin = admin_of(desk, body)?;
    Ok((name, desk, admin))
}

async fn save(app: &Shared, desks: &Connections) -> Result<(), IcError> {
    app.save(desks).await.map_err(|_| {
        IcError(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "the sandbox state was not saved".into())
    })
}

pub(super) async fn update_ticket(
    State(app): State<Shared>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Answer {
    let fields = body.as_object().ok_or_else(|| IcError::bad("the body must be an object"))?;
    let mut desks = app.desks.write().await;
    let name = desk_name(&desks)?;
    let desk = desks.get_mut(&name).ok_or_else(ticket_not_found)?;
    let before = desk.tickets.get(&id).ok_or_else(ticket_not_found)?.clone();
    let mut t = before.clone();
    for (field, v) in fields {
        match field.as_str() {
            "open" => {
                let open = v.as_bool().ok_or_else(|| IcError::bad("open must be a boolean"))?;
                t.status = Some(if open { TicketStatus::Active } else { TicketStatus::Closed });
            }
            "ticket_state_id" => {
                t.status = Some(match v.as_str().filter(|s| STATES.contains(s)) {
                    Some("resolved") => TicketStatus::Closed,
                    Some("waiting_on_customer") => TicketStatus::Unknown("PENDING".into()),
                    Some(_) => TicketStatus::Active,
                    None => return Err(IcError::bad("Ticket state id is not valid")),
                });
            }
            "assignee_id" => {
                let assignee = v.as_str().ok_or_else(|| IcError::bad("assignee_id must be a string"))?;
                t.user_id = match assignee {
                    "0" => None,
                    a => Some(
                        desk.agents()
                            .into_iter()
                            .find(|x| x == a)
                            .ok_or_else(|| IcError::not_found("assignee_not_found", "Assignee not found"))?,
                    ),
                };
            }
            "ticket_attributes" => {
                if let Some(title) = v["_default_title_"].as_str() {
                    t.subject = Some(title.to_owned());
                }
                if let Some(text) = v["_default_description_"].as_str() {
                    t.description = Some(text.to_owned());
                }
            }
            _ => {}
        }
    }
    if t != before {
        let t = replace_ticket(desk, &id, &before, t)
            .map_err(|_| IcError::bad("the change could not be applied"))?;
        save(&app, &desks).await?;
        let out = shape::ticket(&desks[&name], &t, true);
        drop(desks);
        app.announce(&name, Some(TicketChange { event: TicketEvent::Updated, ticket: t }));
        return Ok(Json(out));
    }
    Ok(Json(shape::ticket(desk, &before, true)))
}

/// A `note` is stored internal, a `comment` (or quick reply) public; the answer is the part.
pub(super) async fn reply(
    State(app): State<Shared>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Answer {
    let visibility = match body["message_type"].as_str() {
        Some("note") => NoteVisibility::Internal,
        Some("comment" | "quick_reply") => NoteVisibility::Public,
        _ => return Err(IcError::bad("message_type must be one of comment, note, quick_reply")),
    };
    if body["type"].as_str() != Some("admin") {
        return Err(IcError::bad("type must be admin"));
    }
    let html = body["body"].as_str().filter(|b| !b.trim().is_empty());
    let html = html.ok_or_else(|| IcError::bad("body is required for comment and note replies"))?;
    let mut desks = app.desks.write().await;
    let (name, desk, admin) = ticket_and_admin(&mut desks, &id, &body)?;
    let note = Note {
        ticket_id: Some(id),
        user_id: Some(admin),
        // A paragraph per line: the last one closes without a line after it.
        description: Some(markup::text(html).trim_end_matches('\n').to_owned()),
        visibility: Some(visibility),
        author_kind: Some(AuthorKind::Agent),
        ..Note::default()
    };
    let (note, change) = add_note(desk, note);
    save(&app, &desks).await?;
    drop(desks);
    app.announce(&name, change);
    Ok(Json(shape::part(&note)))
}

/// Adds the tag `id` (a tag's id is its name here) to the ticket; never removes one.
pub(super) async fn tag_ticket(
    State(app): State<Shared>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Answer {
    let tag = body["id"].as_str().filter(|t| !t.trim().is_empty()).map(str::to_owned);
    let tag = tag.ok_or_else(|| IcError::bad("id (the tag's id) is required"))?;
    let mut desks = app.desks.write().await;
    let (name, desk, admin) = ticket_and_admin(&mut desks, &id, &body)?;
    let now = OffsetDateTime::now_utc();
    let changed = desk
        .tickets
        .modify(&id, |t| {
            if t.tags.iter().any(|x| x.eq_ignore_ascii_case(&tag)) {
                return None;
            }
            t.tags.push(tag.clone());
            t.updated_at = Some(bump(t.updated_at, now));
            Some(t.clone())
        })
        .flatten();
    if let Some(ticket) = changed {
        save(&app, &desks).await?;
        drop(desks);
        app.announce(&name, Some(TicketChange { event: TicketEvent::Updated, ticket }));
    }
    let mut out = shape::tag(&tag);
    out["applied_at"] = now.unix_timestamp().into();
    out["applied_by"] = json!({"type": "admin", "id": admin});
    Ok(Json(out))
}

/// `POST /tags`: the tag of that name (case-insensitive), made when there is none. A tag lives
/// on the tickets and customers that carry it, so a new one shows in `GET /tags` once attached.
pub(super) async fn make_tag(State(app): State<Shared>, Json(body): Json<Value>) -> Answer {
    let name = body["name"].as_str().map(str::trim).filter(|n| !n.is_empty());
    let name = name.ok_or_else(|| IcError::bad("name is required"))?;
    let desks = app.desks.read().await;
    let existing = shape::tags(desks.get(&desk_name(&desks)?).ok_or_else(ticket_not_found)?);
    let tag = existing.into_iter().find(|t| t.eq_ignore_ascii_case(name)).unwrap_or_else(|| name.to_owned());
    Ok(Json(shape::tag(&tag)))
}
