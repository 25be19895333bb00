//! `PATCH /api/now/table/incident/{sys_id}`: the incident's fields and, in `work_notes` or
//! `comments`, a journal entry.

use std::collections::HashMap;

use axum::{
    Extension, Json,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
};
use serde_json::{Map, Value, json};

use super::{ApiUser, Shared, SnError, actual_values, link, query::project, shape};
use crate::{
    sandbox::{
        data::flavour_desk,
        resource::{TicketChange, TicketEvent, add_note, replace_ticket},
    },
    ticketing::{AuthorKind, Note, NoteVisibility},
};

/// A field value as text: ServiceNow takes numbers and strings alike.
fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn invalid(field: &str, v: &Value) -> SnError {
    SnError::bad(format!("Invalid value for {field}"), format!("{v} is not a valid {field}"))
}

/// Impact or urgency: 1 High, 2 Medium, 3 Low.
fn level(field: &str, v: &Value) -> Result<u8, SnError> {
    text_of(v)
        .and_then(|s| s.trim().parse().ok())
        .filter(|n| (1..=3).contains(n))
        .ok_or_else(|| invalid(field, v))
}

pub(super) async fn update(
    State(app): State<Shared>,
    Extension(ApiUser(user)): Extension<ApiUser>,
    headers: HeaderMap,
    Path((table, sys_id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Json<Value>, SnError> {
    actual_values(&q)?;
    if table != "incident" {
        return Err(SnError(
            StatusCode::FORBIDDEN,
            "Operation Failed".into(),
            format!("this sandbox writes only incidents, not {table}"),
        ));
    }
    let input: Map<String, Value> = match serde_json::from_slice(&body) {
        Ok(Value::Object(map)) => map,
        _ => return Err(SnError::bad("Exception while reading request", "The payload is not valid JSON.")),
    };
    let link = link(&headers, &q);
    let mut desks = app.desks.write().await;
    let name = flavour_desk(&desks).ok_or_else(SnError::not_found)?;
    let desk = desks.get_mut(&name).ok_or_else(SnError::not_found)?;
    let key = shape::ticket_key(desk, &sys_id).ok_or_else(SnError::not_found)?;
    let before = desk.tickets[&key].clone();
    let mut ticket = before.clone();
    let (mut impact, mut urgency, _) = shape::priority_triple(&before);
    let mut entries = Vec::new();
    for (field, v) in &input {
        match field.as_str() {
            "impact" => impact = level("impact", v)?,
            "urgency" => urgency = level("urgency", v)?,
            "state" => {
                let state = text_of(v).and_then(|s| s.trim().parse().ok()).and_then(shape::status_of);
                ticket.status = Some(state.ok_or_else(|| invalid("state", v))?);
            }
            "category" => {
                let value = text_of(v).unwrap_or_default();
                ticket.category_id = match value.as_str() {
                    "" => None,
                    c if desk.categories.contains_key(c) => Some(c.to_owned()),
                    _ => return Err(invalid("category", v)),
                };
            }
            "assigned_to" => {
                let value = text_of(v).unwrap_or_default();
                ticket.user_id = match value.as_str() {
                    "" => None,
                    sys => Some(shape::agent_key(desk, sys).ok_or_else(|| invalid("assigned_to", v))?),
                };
            }
            "work_notes" | "comments" => {
                let text = text_of(v).unwrap_or_default();
                if !text.trim().is_empty() {
                    let internal = field == "work_notes";
                    entries.push((text, internal));
                }
            }
            // Priority follows from impact × urgency; anything else is not the sandbox's.
            _ => {}
        }
    }
    if input.contains_key("impact") || input.contains_key("urgency") {
        ticket.priority = Some(shape::priority_word(shape::priority_of(impact, urgency)).to_owned());
    }
    let mut change = None;
    if ticket != before {
        let stored = replace_ticket(desk, &key, &before, ticket)
            .map_err(|_| SnError::bad("Invalid value for state", "the state could not be applied"))?;
        change = Some(TicketChange { event: TicketEvent::Updated, ticket: stored });
    }
    for (text, internal) in entries {
        let note = Note {
            ticket_id: Some(key.clone()),
            description: Some(text),
            visibility: Some(if internal { NoteVisibility::Internal } else { NoteVisibility::Public }),
            author_kind: Some(AuthorKind::Agent),
            raw: Some(json!({ shape::API_USER_FIELD: user })),
            ..Note::default()
        };
        change = add_note(desk, note).1.or(change);
    }
    let ticket = desk.tickets[&key].clone();
    if let Some(change) = change {
        app.save(&desks).await.map_err(|_| {
            SnError(StatusCode::INTERNAL_SERVER_ERROR, "Operation Failed".into(), "state not saved".into())
        })?;
        drop(desks);
        app.announce(&name, Some(change));
    }
    let row = shape::incident(&ticket, link.as_deref());
    Ok(Json(json!({"result": project(row, q.get("sysparm_fields").map(String::as_str))})))
}
