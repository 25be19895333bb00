//! `PUT /api/v2/tickets/{id}`: the ticket's fields and, in `comment`, a new comment.

use axum::{
    Json,
    extract::{RawPathParams, State},
    http::StatusCode,
};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::{Answer, Kind, Shared, ZError, base, path, shape, ticket_of, zid};
use crate::{
    sandbox::resource::{TicketChange, TicketEvent, bump},
    ticketing::{AuthorKind, Note, NoteVisibility, TicketStatus, model::format_timestamp},
};

/// Applies `{"ticket": {...}}`; answers `{"ticket", "audit"}` with a `Comment` event for a comment.
pub(super) async fn update_ticket(
    State(app): State<Shared>,
    raw: RawPathParams,
    Json(body): Json<Value>,
) -> Answer {
    let (account, id) = path(&raw);
    let Some(input) = body.get("ticket").and_then(Value::as_object) else {
        return Err(ZError::bad("the body must be {\"ticket\": {...}}"));
    };
    let mut desks = app.desks.write().await;
    let desk = desks.get_mut(&account).ok_or_else(ZError::not_found)?;
    let (key, before) = ticket_of(desk, id.as_deref()).map(|(k, t)| (k.clone(), t.clone()))?;
    let mut ticket = before.clone();
    let mut events = Vec::new();
    for (field, value) in input {
        match field.as_str() {
            "priority" => {
                ticket.priority = match value.as_str() {
                    None => None,
                    Some(p @ ("low" | "normal" | "high" | "urgent")) => Some(p.to_owned()),
                    Some(p) => {
                        return Err(ZError::invalid("priority", format!("Priority: {p} is not valid")));
                    }
                }
            }
            "status" => {
                ticket.status = Some(match value.as_str() {
                    Some("new" | "open" | "hold") => TicketStatus::Active,
                    Some("pending") => TicketStatus::Unknown("PENDING".into()),
                    Some("solved" | "closed") => TicketStatus::Closed,
                    _ => return Err(ZError::invalid("status", format!("Status: {value} is not valid"))),
                })
            }
            "assignee_id" => {
                ticket.user_id = match value.as_i64() {
                    None => None,
                    Some(z) => Some(shape::sample_id(desk, Kind::Agent, z).ok_or_else(|| {
                        ZError::invalid("assignee_id", format!("Assignee: {z} is not an agent"))
                    })?),
                }
            }
            "tags" => {
                ticket.tags =
                    serde_json::from_value(value.clone()).map_err(|_| ZError::bad("tags must be strings"))?
            }
            "custom_fields" => {
                let entries = value.as_array().cloned().unwrap_or_default();
                for entry in entries.iter().filter(|e| e["id"].as_i64() == Some(shape::CATEGORY_FIELD_ID)) {
                    ticket.category_id = match entry["value"].as_str() {
                        None | Some("") => None,
                        Some(c) if desk.categories.contains_key(c) => Some(c.to_owned()),
                        Some(c) => {
                            return Err(ZError::invalid(
                                "custom_fields",
                                format!("Category: {c} is not an option"),
                            ));
                        }
                    }
                }
            }
            // Read, so a comment is always explicit about its visibility.
            "comment" | "safe_update" | "updated_stamp" => {}
            _ => {}
        }
    }
    let now = OffsetDateTime::now_utc();
    let mut changed = ticket != before;
    if let Some(comment) = input.get("comment") {
        let body = comment["body"].as_str().or(comment["html_body"].as_str()).unwrap_or_default();
        if body.trim().is_empty() {
            return Err(ZError::invalid("comment", "Comment: body can't be blank".into()));
        }
        // Zendesk's default for a comment on an existing ticket is public.
        let public = comment["public"].as_bool().unwrap_or(true);
        let author = comment["author_id"].as_i64().and_then(|z| shape::sample_id(desk, Kind::Agent, z));
        let note_id = desk.next_id::<Note>();
        let note = Note {
            id: Some(note_id.clone()),
            created_at: Some(now),
            updated_at: Some(now),
            ticket_id: Some(key.clone()),
            user_id: author.clone(),
            description: Some(body.to_owned()),
            visibility: Some(if public { NoteVisibility::Public } else { NoteVisibility::Internal }),
            author_kind: Some(AuthorKind::Agent),
            ..Note::default()
        };
        events.push(json!({
            "id": zid(Kind::Comment, &note_id), "type": "Comment", "body": body,
            "html_body": format!("<p>{body}</p>"), "plain_body": body, "public": public,
            "author_id": shape::author_id(&note), "attachments": [],
        }));
        desk.notes.insert(note_id, note);
        changed = true;
    }
    if changed {
        ticket.updated_at = Some(bump(before.updated_at, now));
        desk.tickets.insert(key.clone(), ticket.clone());
        app.save(&desks)
            .await
            .map_err(|_| ZError(StatusCode::INTERNAL_SERVER_ERROR, json!({"error": "could not save"})))?;
        drop(desks);
        app.announce(&account, Some(TicketChange { event: TicketEvent::Updated, ticket: ticket.clone() }));
    }
    Ok(Json(json!({
        "ticket": shape::ticket(&ticket, &base(&account)),
        "audit": {"id": now.unix_timestamp(), "ticket_id": zid(Kind::Ticket, &key),
                  "created_at": format_timestamp(now), "author_id": -1, "metadata": {}, "events": events},
    })))
}
