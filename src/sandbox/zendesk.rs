//! The sandbox's Zendesk flavour: the bundled helpdesks served as Zendesk Support's API under
//! `/zendesk/api/v2/...` (the `demo` helpdesk) and `/zendesk/{connection}/api/v2/...`.
//!
//! Shapes follow the Zendesk reference (platforms.md §1 and its OAS): integer ids, `{"ticket":
//! ...}` envelopes, cursor paging with `meta`/`links` (`page[size]`, `page[after]`), the ticket
//! lists of [`list`], comments with `public`, `{"error", "description"}` error bodies. Auth is basic
//! `{email}/token:{api key}` or `Bearer {api key}`. A comment PUT on a ticket is stored as a note
//! with its visibility, so a test sees whether a draft would be public; the tags PUT adds.

mod list;
mod shape;

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json, Router,
    extract::{Query, RawPathParams, Request, State},
    http::{StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use base64::Engine;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::{
    data::Helpdesk, resource::TicketChange, resource::TicketEvent, resource::bump, server::AppState,
};
use crate::ticketing::{Note, Ticket};
pub use shape::CATEGORY_FIELD_ID;
use shape::{Kind, zid};

type Shared = Arc<AppState>;
type Params = Query<HashMap<String, String>>;

/// The Zendesk routes, for the sandbox router.
pub(crate) fn routes(app: Shared) -> Router<Shared> {
    let api = Router::new()
        .route("/api/v2/search", get(list::search))
        .route("/api/v2/search/export", get(list::search_export))
        .route("/api/v2/incremental/tickets/cursor", get(list::incremental))
        .route("/api/v2/tickets/{id}", get(show_ticket).put(update_ticket))
        .route("/api/v2/tickets/{id}/comments", get(comments))
        .route("/api/v2/tickets/{id}/tags", get(tags).put(add_tags))
        .route("/api/v2/users/{id}", get(show_user))
        .route("/api/v2/ticket_fields", get(ticket_fields))
        .route("/api/v2/ticket_fields/{id}", get(ticket_field))
        .route_layer(middleware::from_fn_with_state(app, authenticate));
    Router::new().nest("/zendesk", api.clone()).nest("/zendesk/{account}", api)
}

/// A Zendesk error answer: `{"error": <title>, "description": <what>}`.
#[derive(Debug)]
struct ZError(StatusCode, Value);

impl ZError {
    fn not_found() -> Self {
        Self(StatusCode::NOT_FOUND, json!({"error": "RecordNotFound", "description": "Not found"}))
    }
    fn bad(what: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, json!({"error": "InvalidValue", "description": what.into()}))
    }
    fn invalid(field: &str, what: String) -> Self {
        Self(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"error": "RecordInvalid", "description": "Record validation errors",
                   "details": {field: [{"description": what}]}}),
        )
    }
}

impl IntoResponse for ZError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

type Answer = Result<Json<Value>, ZError>;

/// Basic `{email}/token:{key}` or `Bearer {key}`; anything else is Zendesk's 401.
async fn authenticate(State(app): State<Shared>, request: Request, next: Next) -> Response {
    let header = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    let key = match header.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => Some(rest.trim().to_owned()),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("basic") => {
            base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|pair| pair.split_once("/token:").map(|(_, key)| key.to_owned()))
        }
        _ => None,
    };
    match key {
        Some(key) if app.accepts(&key) => next.run(request).await,
        _ => (StatusCode::UNAUTHORIZED, Json(json!({"error": "Couldn't authenticate you"}))).into_response(),
    }
}

/// The helpdesk (`demo` under the bare prefix) and the item id of the path.
fn path(params: &RawPathParams) -> (String, Option<String>) {
    let get = |name: &str| params.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_owned());
    (get("account").unwrap_or_else(|| "demo".to_owned()), get("id"))
}

/// The URL prefix of the account, for `url` and `links`.
fn base(account: &str) -> String {
    format!("/zendesk/{account}")
}

fn page_size(params: &HashMap<String, String>, default: usize, max: usize) -> Result<usize, ZError> {
    match params.get("page[size]").or_else(|| params.get("per_page")) {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ZError::bad(format!("page[size] must be a number from 1 to {max}"))),
        },
    }
}

/// An opaque cursor over (time in ms, id): the page after it starts strictly past that key.
fn encode_cursor(key: (i128, i64)) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}:{}", key.0, key.1))
}

fn decode_cursor(cursor: &str) -> Result<(i128, i64), ZError> {
    let bad = || ZError::bad("the cursor is invalid or expired");
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(text).map_err(|_| bad())?;
    let (t, id) = text.split_once(':').ok_or_else(bad)?;
    Ok((t.parse().map_err(|_| bad())?, id.parse().map_err(|_| bad())?))
}

fn ms(t: Option<OffsetDateTime>) -> i128 {
    t.map_or(0, |t| t.unix_timestamp_nanos() / 1_000_000)
}

fn ticket_of<'a>(desk: &'a Helpdesk, id: Option<&str>) -> Result<(&'a String, &'a Ticket), ZError> {
    let id: i64 = id.and_then(|i| i.parse().ok()).ok_or_else(ZError::not_found)?;
    let key = shape::sample_id(desk, Kind::Ticket, id).ok_or_else(ZError::not_found)?;
    desk.tickets.get_key_value(&key).ok_or_else(ZError::not_found)
}

async fn show_ticket(State(app): State<Shared>, raw: RawPathParams) -> Answer {
    let (account, id) = path(&raw);
    let desks = app.desks.read().await;
    let desk = desks.get(&account).ok_or_else(ZError::not_found)?;
    let (_, t) = ticket_of(desk, id.as_deref())?;
    Ok(Json(json!({"ticket": shape::ticket(t, &base(&account))})))
}

mod update;
use update::update_ticket;

async fn comments(State(app): State<Shared>, raw: RawPathParams, Query(q): Params) -> Answer {
    let (account, id) = path(&raw);
    let desks = app.desks.read().await;
    let desk = desks.get(&account).ok_or_else(ZError::not_found)?;
    let (key, _) = ticket_of(desk, id.as_deref())?;
    let mut notes: Vec<&Note> = desk.notes.with("ticket_id", key).collect();
    notes.sort_by_key(|n| (ms(n.created_at), zid(Kind::Comment, n.id.as_deref().unwrap_or_default())));
    let users = |notes: &[&Note]| -> Vec<Value> {
        let mut out: Vec<Value> = Vec::new();
        for n in notes {
            let user = match (&n.user_id, &n.customer_id) {
                (Some(agent), _) => Some(shape::agent(agent)),
                (None, Some(c)) => desk.customers.get(c).map(shape::end_user),
                _ => None,
            };
            if let Some(u) = user.filter(|u| !out.iter().any(|o| o["id"] == u["id"])) {
                out.push(u);
            }
        }
        out
    };
    let include_users = q.get("include").is_some_and(|i| i.split(',').any(|x| x == "users"));
    if !q.contains_key("page[size]") && !q.contains_key("page[after]") {
        // Without cursor parameters Zendesk answers with offset paging; all comments fit one page here.
        let mut body = json!({"comments": notes.iter().map(|n| shape::comment(n)).collect::<Vec<_>>(),
                              "next_page": null, "previous_page": null, "count": notes.len()});
        if include_users {
            body["users"] = users(&notes).into();
        }
        return Ok(Json(body));
    }
    let size = page_size(&q, 100, 100)?;
    let after = q.get("page[after]").map(|c| decode_cursor(c)).transpose()?;
    let rest: Vec<&Note> = notes
        .into_iter()
        .filter(|n| {
            after.is_none_or(|a| {
                (ms(n.created_at), zid(Kind::Comment, n.id.as_deref().unwrap_or_default())) > a
            })
        })
        .collect();
    let more = rest.len() > size;
    let page: Vec<&Note> = rest.into_iter().take(size).collect();
    let key_of =
        |n: &Note| encode_cursor((ms(n.created_at), zid(Kind::Comment, n.id.as_deref().unwrap_or_default())));
    let after_cursor = page.last().map(|n| key_of(n));
    let next = after_cursor.as_ref().filter(|_| more).map(|c| {
        format!(
            "{}/api/v2/tickets/{}/comments.json?page%5Bafter%5D={c}&page%5Bsize%5D={size}",
            base(&account),
            id.as_deref().unwrap_or_default()
        )
    });
    let mut body = json!({
        "comments": page.iter().map(|n| shape::comment(n)).collect::<Vec<_>>(),
        "meta": {"has_more": more, "after_cursor": after_cursor, "before_cursor": page.first().map(|n| key_of(n))},
        "links": {"next": next, "prev": null},
    });
    if include_users {
        body["users"] = users(&page).into();
    }
    Ok(Json(body))
}

async fn tags(State(app): State<Shared>, raw: RawPathParams) -> Answer {
    let (account, id) = path(&raw);
    let desks = app.desks.read().await;
    let desk = desks.get(&account).ok_or_else(ZError::not_found)?;
    let (_, t) = ticket_of(desk, id.as_deref())?;
    Ok(Json(json!({"tags": t.tags})))
}

async fn add_tags(State(app): State<Shared>, raw: RawPathParams, Json(body): Json<Value>) -> Answer {
    let (account, id) = path(&raw);
    let new: Vec<String> = serde_json::from_value(body["tags"].clone())
        .map_err(|_| ZError::bad("the body must be {\"tags\": [\"tag\", ...]}"))?;
    let mut desks = app.desks.write().await;
    let desk = desks.get_mut(&account).ok_or_else(ZError::not_found)?;
    let key = ticket_of(desk, id.as_deref())?.0.clone();
    let now = OffsetDateTime::now_utc();
    let ticket = desk
        .tickets
        .modify(&key, |t| {
            let before = t.tags.len();
            for tag in new {
                if !t.tags.contains(&tag) {
                    t.tags.push(tag);
                }
            }
            if t.tags.len() != before {
                t.updated_at = Some(bump(t.updated_at, now));
            }
            t.clone()
        })
        .ok_or_else(ZError::not_found)?;
    app.save(&desks)
        .await
        .map_err(|_| ZError(StatusCode::INTERNAL_SERVER_ERROR, json!({"error": "could not save"})))?;
    drop(desks);
    app.announce(&account, Some(TicketChange { event: TicketEvent::Updated, ticket: ticket.clone() }));
    Ok(Json(json!({"tags": ticket.tags})))
}

async fn show_user(State(app): State<Shared>, raw: RawPathParams) -> Answer {
    let (account, id) = path(&raw);
    let desks = app.desks.read().await;
    let desk = desks.get(&account).ok_or_else(ZError::not_found)?;
    let id: i64 = id.and_then(|i| i.parse().ok()).ok_or_else(ZError::not_found)?;
    if let Some(c) = shape::sample_id(desk, Kind::EndUser, id).and_then(|k| desk.customers.get(&k)) {
        return Ok(Json(json!({"user": shape::end_user(c)})));
    }
    let agent = shape::sample_id(desk, Kind::Agent, id).ok_or_else(ZError::not_found)?;
    Ok(Json(json!({"user": shape::agent(&agent)})))
}

async fn ticket_fields(State(app): State<Shared>, raw: RawPathParams) -> Answer {
    let (account, _) = path(&raw);
    let desks = app.desks.read().await;
    let desk = desks.get(&account).ok_or_else(ZError::not_found)?;
    Ok(Json(
        json!({"ticket_fields": [shape::category_field(desk)], "next_page": null, "previous_page": null, "count": 1}),
    ))
}

async fn ticket_field(State(app): State<Shared>, raw: RawPathParams) -> Answer {
    let (account, id) = path(&raw);
    if id.as_deref() != Some(&CATEGORY_FIELD_ID.to_string()) {
        return Err(ZError::not_found());
    }
    let desks = app.desks.read().await;
    let desk = desks.get(&account).ok_or_else(ZError::not_found)?;
    Ok(Json(json!({"ticket_field": shape::category_field(desk)})))
}
