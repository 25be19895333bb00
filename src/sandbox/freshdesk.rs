//! The sandbox's Freshdesk flavour: Freshdesk API v2 under `/freshdesk/api/v2/...`, over the
//! `demo` sample helpdesk (the first one when there is no `demo`).
//!
//! - **Auth.** HTTP basic with the sandbox's API key as the user (any password), as Freshdesk
//!   takes an agent's key; otherwise 401 `{"code": "invalid_credentials", "message": ...}`.
//! - **Lists.** Bare arrays, `page` (from 1) and `per_page` (default 30, at most 100, else a 400
//!   validation error), a `Link: <...>; rel="next"` header while more pages follow. Tickets take
//!   `updated_since`, `order_by` (`created_at`, `updated_at`, `due_by`, `status`; default
//!   `created_at`), `order_type` (default `desc`), `requester_id` and `include=description`.
//!   As on Freshdesk, a ticket list without `updated_since` holds only the tickets created in
//!   the last 30 days, and pages past the 300th are refused.
//! - **Errors.** 400 `{"description": "Validation failed", "errors": [{field, message, code}]}`;
//!   404 with an empty body.
//! - **Writes.** `PUT /tickets/{id}` takes `priority`, `status`, `type` (a choice of the
//!   `ticket_type` field), `tags` (replaced), `responder_id`; `POST /tickets/{id}/notes` stores a
//!   note with its visibility (`private`, default true) and answers 201. Both bump the ticket's
//!   `updated_at` and post the sandbox's webhooks.
//! - **Computed fields.** `due_by`/`fr_due_by` follow a sandbox SLA (three days and one from creation)
//!   unless the sample sets a due date; a note sent without `user_id` is the first sample agent's.

mod shape;

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    data::{Helpdesk, flavour_desk},
    resource::{Resource, TicketChange, TicketEvent, add_note, replace_ticket},
    server::AppState,
};
use crate::ticketing::{Note, NoteVisibility, Ticket};

type Shared = Arc<AppState>;

/// The routes, to be nested under `/freshdesk`.
pub(crate) fn routes(app: Shared) -> Router<Shared> {
    Router::new()
        .route("/api/v2/tickets", get(list_tickets))
        .route("/api/v2/tickets/{id}", get(get_ticket).put(update_ticket))
        .route("/api/v2/tickets/{id}/conversations", get(list_conversations))
        .route("/api/v2/tickets/{id}/notes", axum::routing::post(create_note))
        .route("/api/v2/contacts/{id}", get(get_contact))
        .route("/api/v2/ticket_fields", get(ticket_fields))
        .route_layer(middleware::from_fn_with_state(app, require_api_key))
}

/// A Freshdesk error answer.
struct FdError(StatusCode, Value);

impl IntoResponse for FdError {
    fn into_response(self) -> Response {
        if self.1.is_null() {
            return self.0.into_response();
        }
        (self.0, Json(self.1)).into_response()
    }
}

fn invalid(field: &str, message: &str) -> FdError {
    FdError(
        StatusCode::BAD_REQUEST,
        json!({"description": "Validation failed",
               "errors": [{"field": field, "message": message, "code": "invalid_value"}]}),
    )
}

fn not_found() -> FdError {
    FdError(StatusCode::NOT_FOUND, Value::Null)
}

async fn require_api_key(State(app): State<Shared>, request: Request, next: Next) -> Response {
    let user = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .and_then(|(_, b64)| base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .map(|pair| pair.split_once(':').map_or(pair.clone(), |(u, _)| u.to_owned()));
    match user {
        Some(key) if app.accepts(&key) => next.run(request).await,
        _ => FdError(
            StatusCode::UNAUTHORIZED,
            json!({"code": "invalid_credentials", "message": "You have to be logged in to perform this action."}),
        )
        .into_response(),
    }
}

/// The sample id whose Freshdesk number is `n`.
fn find<R: Resource>(desk: &Helpdesk, n: &str) -> Option<String> {
    let n: u64 = n.parse().ok()?;
    R::table(desk).keys().find(|id| shape::number(id) == Some(n)).cloned()
}

#[derive(Debug, Deserialize)]
struct ListParams {
    page: Option<String>,
    per_page: Option<String>,
    updated_since: Option<String>,
    order_by: Option<String>,
    order_type: Option<String>,
    requester_id: Option<String>,
    include: Option<String>,
}

/// Freshdesk serves at most this many pages of a ticket list.
const MAX_TICKET_PAGES: usize = 300;

/// `page` and `per_page` as Freshdesk checks them.
fn paging(p: &ListParams) -> Result<(usize, usize), FdError> {
    paging_up_to(p, usize::MAX)
}

/// `page` (at most `max_page`) and `per_page`.
fn paging_up_to(p: &ListParams, max_page: usize) -> Result<(usize, usize), FdError> {
    let positive = |v: &Option<String>, field: &str, default: usize, max: usize| match v {
        None => Ok(default),
        Some(v) => v.parse::<usize>().ok().filter(|n| (1..=max).contains(n)).ok_or_else(|| {
            invalid(field, &format!("It should be a Positive Number less than or equal to {max}"))
        }),
    };
    Ok((positive(&p.page, "page", 1, max_page)?, positive(&p.per_page, "per_page", 30, 100)?))
}

/// One page of `items` and its `Link` header.
fn paged(headers: &HeaderMap, path: &str, p: &ListParams, items: Vec<Value>) -> Result<Response, FdError> {
    let (page, per_page) = paging(p)?;
    let more = items.len() > page * per_page;
    let items: Vec<Value> = items.into_iter().skip((page - 1) * per_page).take(per_page).collect();
    let mut response = Json(items).into_response();
    if more {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
        let mut query = format!("page={}&per_page={per_page}", page + 1);
        for (k, v) in [
            ("updated_since", &p.updated_since),
            ("order_by", &p.order_by),
            ("order_type", &p.order_type),
            ("requester_id", &p.requester_id),
            ("include", &p.include),
        ] {
            if let Some(v) = v {
                query.push_str(&format!("&{k}={}", urlencoding(v)));
            }
        }
        let link = format!("<http://{host}/freshdesk/api/v2/{path}?{query}>; rel=\"next\"");
        if let Ok(v) = HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, v);
        }
    }
    Ok(response)
}

fn urlencoding(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

async fn list_tickets(
    State(app): State<Shared>,
    headers: HeaderMap,
    Query(p): Query<ListParams>,
) -> Result<Response, FdError> {
    paging_up_to(&p, MAX_TICKET_PAGES)?;
    let since = match &p.updated_since {
        None => None,
        Some(v) => Some(
            time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
                .map_err(|_| invalid("updated_since", "It should be in the 'YYYY-MM-DDTHH:MM:SSZ' format"))?,
        ),
    };
    let created_since = since.is_none().then(|| time::OffsetDateTime::now_utc() - time::Duration::days(30));
    let order_by = p.order_by.as_deref().unwrap_or("created_at");
    if !["created_at", "updated_at", "due_by", "status"].contains(&order_by) {
        return Err(invalid(
            "order_by",
            "It should be one of these values: 'created_at,due_by,updated_at,status'",
        ));
    }
    let desc = match p.order_type.as_deref() {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(_) => return Err(invalid("order_type", "It should be one of these values: 'asc,desc'")),
    };
    let desks = app.desks.read().await;
    let desk = flavour_desk(&desks).and_then(|n| desks.get(&n)).ok_or_else(not_found)?;
    let requester = p.requester_id.as_deref().map(|r| find::<crate::ticketing::Customer>(desk, r));
    let mut tickets: Vec<&Ticket> = desk
        .tickets
        .values()
        .filter(|t| since.is_none_or(|s| t.updated_at.is_some_and(|u| u >= s)))
        .filter(|t| created_since.is_none_or(|s| t.created_at.is_some_and(|c| c >= s)))
        .filter(|t| requester.as_ref().is_none_or(|r| r.is_some() && t.customer_id == *r))
        .collect();
    tickets.sort_by(|a, b| {
        let key = |t: &Ticket| match order_by {
            "updated_at" => t.updated_at,
            "due_by" => t.due_at,
            _ => t.created_at,
        };
        let by = if order_by == "status" {
            shape::ticket(desk, a, false)["status"]
                .as_i64()
                .cmp(&shape::ticket(desk, b, false)["status"].as_i64())
        } else {
            key(a).cmp(&key(b))
        };
        let by = by.then_with(|| {
            shape::number(a.id.as_deref().unwrap_or("")).cmp(&shape::number(b.id.as_deref().unwrap_or("")))
        });
        if desc { by.reverse() } else { by }
    });
    let with_description = p.include.as_deref() == Some("description");
    let items = tickets.into_iter().map(|t| shape::ticket(desk, t, with_description)).collect();
    paged(&headers, "tickets", &p, items)
}

async fn get_ticket(State(app): State<Shared>, Path(id): Path<String>) -> Result<Json<Value>, FdError> {
    let desks = app.desks.read().await;
    let desk = flavour_desk(&desks).and_then(|n| desks.get(&n)).ok_or_else(not_found)?;
    let key = find::<Ticket>(desk, &id).ok_or_else(not_found)?;
    Ok(Json(shape::ticket(desk, &desk.tickets[&key], true)))
}

async fn get_contact(State(app): State<Shared>, Path(id): Path<String>) -> Result<Json<Value>, FdError> {
    let desks = app.desks.read().await;
    let desk = flavour_desk(&desks).and_then(|n| desks.get(&n)).ok_or_else(not_found)?;
    let key = find::<crate::ticketing::Customer>(desk, &id).ok_or_else(not_found)?;
    Ok(Json(shape::contact(&desk.customers[&key])))
}

async fn ticket_fields(State(app): State<Shared>) -> Result<Json<Value>, FdError> {
    let desks = app.desks.read().await;
    let desk = flavour_desk(&desks).and_then(|n| desks.get(&n)).ok_or_else(not_found)?;
    Ok(Json(shape::ticket_fields(desk)))
}

async fn list_conversations(
    State(app): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(p): Query<ListParams>,
) -> Result<Response, FdError> {
    paging(&p)?;
    let desks = app.desks.read().await;
    let desk = flavour_desk(&desks).and_then(|n| desks.get(&n)).ok_or_else(not_found)?;
    let key = find::<Ticket>(desk, &id).ok_or_else(not_found)?;
    let mut notes: Vec<&Note> =
        desk.notes.values().filter(|n| n.ticket_id.as_deref() == Some(&key)).collect();
    notes.sort_by_key(|n| (n.created_at, n.id.as_deref().and_then(shape::number)));
    let items = notes.into_iter().map(shape::conversation).collect();
    paged(&headers, &format!("tickets/{id}/conversations"), &p, items)
}

fn body_object(body: &[u8]) -> Result<Map<String, Value>, FdError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(FdError(
            StatusCode::BAD_REQUEST,
            json!({"code": "invalid_json", "message": "Request body has invalid json format"}),
        )),
    }
}

/// The agent a `responder_id` or `user_id` names, among the sample data's agents.
fn agent(desk: &Helpdesk, field: &str, v: &Value) -> Result<String, FdError> {
    let n = v.as_u64().ok_or_else(|| invalid(field, "It should be a/an Positive Integer"))?;
    desk.agents()
        .into_iter()
        .find(|a| shape::number(a) == Some(n))
        .ok_or_else(|| invalid(field, &format!("There is no agent matching the given {field}")))
}

/// The sample data's agent with the lowest number.
fn first_agent(desk: &Helpdesk) -> Option<String> {
    desk.agents().into_iter().min_by_key(|a| shape::number(a))
}

async fn update_ticket(
    State(app): State<Shared>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, FdError> {
    let changes = body_object(&body)?;
    let mut desks = app.desks.write().await;
    let name = flavour_desk(&desks).ok_or_else(not_found)?;
    let desk = desks.get_mut(&name).ok_or_else(not_found)?;
    let key = find::<Ticket>(desk, &id).ok_or_else(not_found)?;
    let before = desk.tickets[&key].clone();
    let mut item = before.clone();
    for (field, v) in &changes {
        match field.as_str() {
            "priority" => {
                let word = v.as_i64().and_then(shape::priority_word);
                item.priority = Some(
                    word.ok_or_else(|| invalid("priority", "It should be one of these values: '1,2,3,4'"))?
                        .into(),
                );
            }
            "status" => {
                item.status = Some(
                    v.as_i64()
                        .and_then(shape::status_of)
                        .ok_or_else(|| invalid("status", "It should be one of these values: '2,3,4,5'"))?,
                );
            }
            "type" => {
                let name = v.as_str().unwrap_or_default();
                let category = desk.categories.values().find(|c| c.name.as_deref() == Some(name));
                let category = category.and_then(|c| c.id.clone()).ok_or_else(|| {
                    invalid("type", "It should be one of these values: the choices of the ticket_type field")
                })?;
                item.category_id = Some(category);
            }
            "tags" => {
                let tags: Option<Vec<String>> =
                    v.as_array().map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect());
                item.tags = tags.ok_or_else(|| invalid("tags", "It should be a/an Array"))?;
            }
            "responder_id" if v.is_null() => item.user_id = None,
            "responder_id" => item.user_id = Some(agent(desk, "responder_id", v)?),
            _ => {}
        }
    }
    if item != before {
        let item = replace_ticket(desk, &key, &before, item)
            .map_err(|_| invalid("status", "could not be applied"))?;
        save(&app, &desks).await?;
        let out = shape::ticket(&desks[&name], &item, true);
        drop(desks);
        app.announce(&name, Some(TicketChange { event: TicketEvent::Updated, ticket: item }));
        return Ok(Json(out));
    }
    Ok(Json(shape::ticket(desk, &before, true)))
}

async fn create_note(
    State(app): State<Shared>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), FdError> {
    let fields = body_object(&body)?;
    let html = fields.get("body").and_then(Value::as_str).filter(|b| !b.trim().is_empty());
    let html = html.ok_or_else(|| invalid("body", "It should be a/an String"))?;
    let private = match fields.get("private") {
        None => true,
        Some(v) => v.as_bool().ok_or_else(|| invalid("private", "It should be a/an Boolean"))?,
    };
    let mut desks = app.desks.write().await;
    let name = flavour_desk(&desks).ok_or_else(not_found)?;
    let desk = desks.get_mut(&name).ok_or_else(not_found)?;
    let ticket = find::<Ticket>(desk, &id).ok_or_else(not_found)?;
    // Freshdesk attributes a note sent without `user_id` to the agent whose key sent it: here the
    // sample data's first agent.
    let user_id = match fields.get("user_id") {
        Some(v) => Some(agent(desk, "user_id", v)?),
        None => first_agent(desk),
    };
    let note = Note {
        ticket_id: Some(ticket),
        user_id,
        description: Some(shape::text(html)),
        visibility: Some(if private { NoteVisibility::Internal } else { NoteVisibility::Public }),
        ..Note::default()
    };
    let (note, change) = add_note(desk, note);
    save(&app, &desks).await?;
    drop(desks);
    app.announce(&name, change);
    Ok((StatusCode::CREATED, Json(shape::conversation(&note))))
}

async fn save(app: &AppState, desks: &super::data::Connections) -> Result<(), FdError> {
    app.save(desks).await.map_err(|_| {
        FdError(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"code": "internal_error", "message": "state not saved"}),
        )
    })
}
