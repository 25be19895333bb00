//! The sandbox's Zendesk flavour: the bundled helpdesks served as Zendesk Support's API under
//! `/zendesk/api/v2/...` (the `demo` helpdesk) and `/zendesk/{connection}/api/v2/...`.
//!
//! Shapes follow the Zendesk reference (platforms.md §1 and its OAS): integer ids, `{"ticket":
//! ...}` envelopes, cursor paging with `meta`/`links` (`page[size]`, `page[after]`), the search
//! export (ordered by creation) and the incremental cursor export (ordered by change, ending with
//! `end_of_stream`), comments with `public`, `{"error", "description"}` error bodies. Auth is basic
//! `{email}/token:{api key}` or `Bearer {api key}`. A comment PUT on a ticket is stored as a note
//! with its visibility, so a test sees whether a draft would be public; the tags PUT adds.

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
        .route("/api/v2/search/export", get(search_export))
        .route("/api/v2/incremental/tickets/cursor", get(incremental))
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

/// Tickets changed at or after `since`, sorted by `key`, the page after `after`.
fn ticket_page(
    desk: &Helpdesk,
    since: OffsetDateTime,
    key: fn(&Ticket) -> Option<OffsetDateTime>,
    after: Option<(i128, i64)>,
    size: usize,
) -> (Vec<&Ticket>, bool) {
    let mut all: Vec<(i128, i64, &Ticket)> = desk
        .tickets
        .values()
        .filter(|t| t.updated_at.is_some_and(|u| u >= since))
        .map(|t| (ms(key(t)), zid(Kind::Ticket, t.id.as_deref().unwrap_or_default()), t))
        .filter(|(k, id, _)| after.is_none_or(|a| (*k, *id) > a))
        .collect();
    all.sort_by_key(|(k, id, _)| (*k, *id));
    let more = all.len() > size;
    (all.into_iter().take(size).map(|(_, _, t)| t).collect(), more)
}

fn cursor_of(t: &Ticket, key: fn(&Ticket) -> Option<OffsetDateTime>) -> String {
    encode_cursor((ms(key(t)), zid(Kind::Ticket, t.id.as_deref().unwrap_or_default())))
}

/// `updated>=T` / `updated>T` of a search query (RFC 3339 or a date); other terms match all.
fn updated_since(query: &str) -> Result<OffsetDateTime, ZError> {
    for term in query.split_whitespace() {
        let Some(value) = term.strip_prefix("updated>=").or_else(|| term.strip_prefix("updated>")) else {
            continue;
        };
        let full = if value.len() == 10 { format!("{value}T00:00:00Z") } else { value.to_owned() };
        return OffsetDateTime::parse(&full, &time::format_description::well_known::Rfc3339)
            .map_err(|_| ZError::bad(format!("`{value}` in the query is not a date or an ISO 8601 time")));
    }
    Ok(OffsetDateTime::UNIX_EPOCH)
}

async fn search_export(State(app): State<Shared>, raw: RawPathParams, Query(q): Params) -> Answer {
    let (account, _) = path(&raw);
    let query = q.get("query").ok_or_else(|| ZError::bad("query is required"))?;
    if q.get("filter[type]").map(String::as_str) != Some("ticket") {
        return Err(ZError::bad("filter[type] must be given; this sandbox exports `ticket`"));
    }
    let size = page_size(&q, 100, 1000)?;
    let after = q.get("page[after]").map(|c| decode_cursor(c)).transpose()?;
    let desks = app.desks.read().await;
    let desk = desks.get(&account).ok_or_else(ZError::not_found)?;
    let (page, more) = ticket_page(desk, updated_since(query)?, |t| t.created_at, after, size);
    let after_cursor = page.last().filter(|_| more).map(|t| cursor_of(t, |t| t.created_at));
    let next =
        after_cursor.as_ref().map(|c| format!("{}/api/v2/search/export?page%5Bafter%5D={c}", base(&account)));
    Ok(Json(json!({
        "results": page.iter().map(|t| { let mut v = shape::ticket(t, &base(&account)); v["result_type"] = "ticket".into(); v }).collect::<Vec<_>>(),
        "facets": null,
        "meta": {"has_more": more, "after_cursor": after_cursor, "before_cursor": null},
        "links": {"next": next, "prev": null},
    })))
}

async fn incremental(State(app): State<Shared>, raw: RawPathParams, Query(q): Params) -> Answer {
    let (account, _) = path(&raw);
    let (since, after) = match (q.get("cursor"), q.get("start_time")) {
        (Some(c), _) => (OffsetDateTime::UNIX_EPOCH, Some(decode_cursor(c)?)),
        (None, Some(s)) => {
            let secs: i64 = s.parse().map_err(|_| ZError::bad("start_time must be a Unix epoch time"))?;
            let t = OffsetDateTime::from_unix_timestamp(secs)
                .map_err(|_| ZError::bad("start_time is out of range"))?;
            (t, None)
        }
        (None, None) => return Err(ZError::bad("start_time or cursor is required")),
    };
    let size = page_size(&q, 1000, 1000)?;
    let desks = app.desks.read().await;
    let desk = desks.get(&account).ok_or_else(ZError::not_found)?;
    let (page, more) = ticket_page(desk, since, |t| t.updated_at, after, size);
    let after_cursor = page
        .last()
        .map(|t| cursor_of(t, |t| t.updated_at))
        .or_else(|| q.get("cursor").cloned())
        .unwrap_or_else(|| encode_cursor((ms(Some(since)) - 1, 0)));
    let url = format!("{}/api/v2/incremental/tickets/cursor.json?cursor={after_cursor}", base(&account));
    Ok(Json(json!({
        "tickets": page.iter().map(|t| shape::ticket(t, &base(&account))).collect::<Vec<_>>(),
        "after_cursor": after_cursor, "after_url": url,
        "before_cursor": null, "before_url": null,
        "end_of_stream": !more,
    })))
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
