//! The sandbox's Intercom flavour: Intercom's API (version 2.14) under `/intercom/...`, over the
//! `demo` sample helpdesk (the first one when there is no `demo`).
//!
//! - **Auth.** `Authorization: Bearer <api key>`; otherwise 401 with an `error.list`
//!   (`unauthorized`, "Access Token Invalid"). `Intercom-Version` is read but not required.
//! - **Ids.** The sample's own ids, which are strings as Intercom's are: tickets `1001`, contacts
//!   `c-011`, admins `u-01`, ticket types the category ids, parts the note ids; a tag's id is its
//!   name. Dates are epoch seconds (the sample's fractions dropped).
//! - **Search.** `POST /tickets/search` takes one filter or an `AND` group over `updated_at`,
//!   `created_at` (`>`, `<`, `=` on whole seconds, `>` strict), `id`, `contact_ids`,
//!   `admin_assignee_id` (`=`) and `open`; `sort` (`updated_at` or `created_at`, `ascending` or
//!   `descending`; ties by id; default `updated_at` descending) and `pagination` (`per_page`
//!   default 20, at most 150, else 400; `starting_after` the `pages.next` cursor). Lists leave
//!   the parts out; `GET`/`PUT /tickets/{id}` carry them.
//! - **Writes.** `PUT /tickets/{id}` takes `open`, `assignee_id` (an admin; `"0"` unassigns),
//!   `ticket_state_id` (a state category) and the title/description attributes; `POST
//!   /tickets/{id}/reply` stores a `note` as an internal note and a `comment` as a public one
//!   (the admin as author); `POST /tickets/{id}/tags` adds a tag (never removes one), `POST
//!   /tags` makes one. Each bumps the ticket's `updated_at` and posts the sandbox's webhooks.
//! - **Errors.** `{"type": "error.list", "request_id", "errors": [{"code", "message"}]}`.

mod shape;
mod update;

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, Request, State},
    http::{StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::Engine;
use serde_json::{Value, json};

use super::{
    data::{Connections, Helpdesk, cmp_ids},
    server::AppState,
};
use crate::ticketing::Ticket;

type Shared = Arc<AppState>;
type Answer = Result<Json<Value>, IcError>;

/// Largest `per_page` of a search.
const MAX_PER_PAGE: u64 = 150;

/// The routes, to be nested under `/intercom`.
pub(crate) fn routes(app: Shared) -> Router<Shared> {
    Router::new()
        .route("/tickets/search", post(search))
        .route("/tickets/{id}", get(show_ticket).put(update::update_ticket))
        .route("/tickets/{id}/reply", post(update::reply))
        .route("/tickets/{id}/tags", post(update::tag_ticket))
        .route("/tags", get(list_tags).post(update::make_tag))
        .route("/contacts/{id}", get(show_contact))
        .route("/contacts/{id}/tags", get(contact_tags))
        .route("/ticket_types", get(ticket_types))
        .route("/me", get(me))
        .route_layer(middleware::from_fn_with_state(app, require_token))
}

/// An Intercom error answer.
pub(super) struct IcError(StatusCode, &'static str, String);

impl IcError {
    fn bad(message: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, "parameter_invalid", message.into())
    }
    fn not_found(code: &'static str, message: &str) -> Self {
        Self(StatusCode::NOT_FOUND, code, message.to_owned())
    }
}

impl IntoResponse for IcError {
    fn into_response(self) -> Response {
        let body = json!({"type": "error.list", "request_id": uuid::Uuid::new_v4().to_string(),
                          "errors": [{"code": self.1, "message": self.2}]});
        (self.0, Json(body)).into_response()
    }
}

async fn require_token(State(app): State<Shared>, request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_owned());
    match token {
        Some(t) if app.accepts(&t) => next.run(request).await,
        _ => IcError(StatusCode::UNAUTHORIZED, "unauthorized", "Access Token Invalid".into()).into_response(),
    }
}

/// The helpdesk the flavour serves: `demo`, else the first.
pub(super) fn desk_name(desks: &Connections) -> Result<String, IcError> {
    let name =
        if desks.contains_key("demo") { Some("demo".to_owned()) } else { desks.keys().next().cloned() };
    name.ok_or_else(|| IcError::not_found("not_found", "Resource Not Found"))
}

fn desk(desks: &Connections) -> Result<&Helpdesk, IcError> {
    desks.get(&desk_name(desks)?).ok_or_else(|| IcError::not_found("not_found", "Resource Not Found"))
}

pub(super) fn ticket_not_found() -> IcError {
    IcError::not_found("ticket_not_found", "Ticket not found")
}

/// One filter of a search on one ticket.
fn matches(t: &Ticket, filter: &Value) -> Result<bool, IcError> {
    let op = filter["operator"].as_str().ok_or_else(|| IcError::bad("each filter needs an operator"))?;
    if let Some(group) = filter["value"].as_array().filter(|_| matches!(op, "AND" | "OR")) {
        let results = group.iter().map(|f| matches(t, f)).collect::<Result<Vec<_>, _>>()?;
        return Ok(if op == "AND" { results.iter().all(|r| *r) } else { results.iter().any(|r| *r) });
    }
    let field = filter["field"].as_str().ok_or_else(|| IcError::bad("each filter needs a field"))?;
    let value = &filter["value"];
    let date = |ours: Option<time::OffsetDateTime>| -> Result<bool, IcError> {
        let theirs = value.as_i64().ok_or_else(|| IcError::bad(format!("{field} takes a UNIX timestamp")))?;
        let ours = ours.map_or(i64::MIN, |t| t.unix_timestamp());
        match op {
            ">" => Ok(ours > theirs),
            "<" => Ok(ours < theirs),
            "=" => Ok(ours == theirs),
            _ => Err(IcError::bad(format!("operator {op} is not supported on the date field {field}"))),
        }
    };
    let text = |ours: Option<&str>| -> Result<bool, IcError> {
        let theirs = value.as_str().ok_or_else(|| IcError::bad(format!("{field} takes a string")))?;
        match op {
            "=" => Ok(ours == Some(theirs)),
            "!=" => Ok(ours != Some(theirs)),
            _ => Err(IcError::bad(format!("operator {op} is not supported on {field} here"))),
        }
    };
    match field {
        "updated_at" => date(t.updated_at),
        "created_at" => date(t.created_at),
        "id" => text(t.id.as_deref()),
        "contact_ids" => text(t.customer_id.as_deref()),
        "admin_assignee_id" => text(t.user_id.as_deref()),
        "open" => Ok(value.as_bool() == Some(t.status != Some(crate::ticketing::TicketStatus::Closed))),
        other => Err(IcError::bad(format!("{other} is not a searchable field in this sandbox"))),
    }
}

/// The cursor after a ticket: its sort key and id, and the page number that follows.
fn encode_cursor(key: i64, id: &str, page: u64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{key}:{page}:{id}"))
}

fn decode_cursor(cursor: &str) -> Result<(i64, u64, String), IcError> {
    let bad = || IcError::bad("starting_after is not a cursor this search returned");
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(text).map_err(|_| bad())?;
    let mut parts = text.splitn(3, ':');
    let key = parts.next().and_then(|k| k.parse().ok()).ok_or_else(bad)?;
    let page = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    Ok((key, page, parts.next().ok_or_else(bad)?.to_owned()))
}

async fn search(State(app): State<Shared>, Json(body): Json<Value>) -> Answer {
    let query =
        body.get("query").filter(|q| q.is_object()).ok_or_else(|| IcError::bad("query is required"))?;
    let per_page = match body["pagination"]["per_page"].as_u64() {
        None => 20,
        Some(n) if (1..=MAX_PER_PAGE).contains(&n) => n,
        Some(_) => return Err(IcError::bad(format!("per_page must be between 1 and {MAX_PER_PAGE}"))),
    } as usize;
    let after = body["pagination"]["starting_after"].as_str().map(decode_cursor).transpose()?;
    let field = body["sort"]["field"].as_str().unwrap_or("updated_at");
    let key_of: fn(&Ticket) -> i64 = match field {
        "updated_at" => |t| t.updated_at.map_or(0, |u| u.unix_timestamp()),
        "created_at" => |t| t.created_at.map_or(0, |u| u.unix_timestamp()),
        other => return Err(IcError::bad(format!("cannot sort by {other}"))),
    };
    let descending = match body["sort"]["order"].as_str() {
        None => body.get("sort").is_none(),
        Some("descending") => true,
        Some("ascending") => false,
        Some(other) => {
            return Err(IcError::bad(format!("order must be ascending or descending, not {other}")));
        }
    };
    let desks = app.desks.read().await;
    let desk = desk(&desks)?;
    let mut found = Vec::new();
    for t in desk.tickets.values() {
        if matches(t, query)? {
            found.push(t);
        }
    }
    let order = |a: &&Ticket, b: &&Ticket| {
        let by = key_of(a).cmp(&key_of(b));
        let by = if descending { by.reverse() } else { by };
        by.then_with(|| cmp_ids(a.id.as_deref().unwrap_or(""), b.id.as_deref().unwrap_or("")))
    };
    found.sort_by(order);
    let total = found.len();
    let page = after.as_ref().map_or(1, |(_, p, _)| *p);
    if let Some((key, _, id)) = &after {
        // The page after a cursor starts strictly past the ticket it names, in the same order.
        found.retain(|t| {
            let by = key_of(t).cmp(key);
            let by = if descending { by.reverse() } else { by };
            by.then_with(|| cmp_ids(t.id.as_deref().unwrap_or(""), id)).is_gt()
        });
    }
    let more = found.len() > per_page;
    let items: Vec<&Ticket> = found.into_iter().take(per_page).collect();
    let mut pages = json!({"type": "pages", "page": page, "per_page": per_page,
                           "total_pages": total.div_ceil(per_page).max(1)});
    if let Some(last) = items.last().filter(|_| more) {
        let cursor = encode_cursor(key_of(last), last.id.as_deref().unwrap_or(""), page + 1);
        pages["next"] = json!({"per_page": per_page, "starting_after": cursor});
    }
    Ok(Json(json!({
        "type": "ticket.list",
        "tickets": items.iter().map(|t| shape::ticket(desk, t, false)).collect::<Vec<_>>(),
        "total_count": total,
        "pages": pages,
    })))
}

async fn show_ticket(State(app): State<Shared>, Path(id): Path<String>) -> Answer {
    let desks = app.desks.read().await;
    let desk = desk(&desks)?;
    let t = desk.tickets.get(&id).ok_or_else(ticket_not_found)?;
    Ok(Json(shape::ticket(desk, t, true)))
}

async fn show_contact(State(app): State<Shared>, Path(id): Path<String>) -> Answer {
    let desks = app.desks.read().await;
    let c =
        desk(&desks)?.customers.get(&id).ok_or_else(|| IcError::not_found("not_found", "User Not Found"))?;
    Ok(Json(shape::contact(c)))
}

async fn contact_tags(State(app): State<Shared>, Path(id): Path<String>) -> Answer {
    let desks = app.desks.read().await;
    let c =
        desk(&desks)?.customers.get(&id).ok_or_else(|| IcError::not_found("not_found", "User Not Found"))?;
    Ok(Json(json!({"type": "list", "data": c.tags.iter().map(|t| shape::tag(t)).collect::<Vec<_>>()})))
}

async fn ticket_types(State(app): State<Shared>) -> Answer {
    let desks = app.desks.read().await;
    let types: Vec<Value> = desk(&desks)?.categories.values().map(shape::ticket_type).collect();
    Ok(Json(json!({"type": "list", "data": types})))
}

async fn list_tags(State(app): State<Shared>) -> Answer {
    let desks = app.desks.read().await;
    let tags: Vec<Value> = shape::tags(desk(&desks)?).iter().map(|t| shape::tag(t)).collect();
    Ok(Json(json!({"type": "list", "data": tags})))
}

/// The token's admin: the sample's first agent.
async fn me(State(app): State<Shared>) -> Answer {
    let desks = app.desks.read().await;
    let admin = desk(&desks)?.agents().into_iter().next().unwrap_or_else(|| "u-01".to_owned());
    Ok(Json(json!({
        "type": "admin", "id": admin, "name": format!("Sandbox admin {admin}"),
        "email": format!("{admin}@sandbox.example"), "email_verified": true,
        "app": {"type": "app", "id_code": shape::WORKSPACE, "name": "deskpilot sandbox",
                "created_at": 1_700_000_000, "secure": false, "identity_verification": false,
                "timezone": "UTC", "region": "US"},
    })))
}
