//! The sandbox's ServiceNow flavour: the Table API under `/servicenow/api/now/table/{table}`
//! over the `demo` sample helpdesk (the first one when there is no `demo`), for the tables the
//! connector reads: `incident`, `sys_user`, `sys_journal_field` and `sys_choice`.
//!
//! - **Auth.** Basic with the sandbox's API key as the password (any user name; it becomes the
//!   author of the journal entries the request writes), or `Bearer <api key>` as an OAuth token.
//!   Otherwise 401 with ServiceNow's error envelope `{"error": {"message", "detail"}, "status":
//!   "failure"}`, which every error uses.
//! - **Lists.** `{"result": [...]}`, `sysparm_query` (see [`query`]), `sysparm_fields`,
//!   `sysparm_offset`, `sysparm_limit` (default 10,000), `X-Total-Count` and a `Link` header with
//!   `first`, `next` (while more follow) and `last`. Values are actual values only: a
//!   `sysparm_display_value` other than `false` is a 400 here. References carry a `link` unless
//!   `sysparm_exclude_reference_link=true`.
//! - **Writes.** `PATCH` (or `PUT`) `/table/incident/{sys_id}` takes `impact` and `urgency` (the
//!   priority follows from them by ServiceNow's default lookup; a written `priority` is ignored,
//!   as the lookup overwrites it), `state`, `category` (a choice value), `assigned_to` (a user's
//!   `sys_id`, `""` clears) and `work_notes` / `comments`, each stored as a note with its
//!   visibility (internal / public). Unknown fields are ignored, as ServiceNow does. A change
//!   moves `sys_updated_on` and posts the sandbox's webhooks.

mod query;
mod shape;

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json, Router,
    extract::{Path, Query, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use base64::Engine;
use serde_json::{Value, json};

use self::query::{EncodedQuery, Row, project};
use super::{
    data::{Helpdesk, flavour_desk},
    server::AppState,
};
use crate::ticketing::{Customer, Note, Ticket};

pub use shape::sys_id;

type Shared = Arc<AppState>;
type Params = Query<HashMap<String, String>>;

/// The routes, to be nested under `/servicenow`.
pub(crate) fn routes(app: Shared) -> Router<Shared> {
    Router::new()
        .route("/api/now/table/{table}", get(list))
        .route("/api/now/table/{table}/{sys_id}", get(show).patch(update).put(update))
        .route_layer(middleware::from_fn_with_state(app, authenticate))
}

/// A ServiceNow error answer.
struct SnError(StatusCode, String, String);

impl SnError {
    fn bad(message: impl Into<String>, detail: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, message.into(), detail.into())
    }
    fn not_found() -> Self {
        Self(
            StatusCode::NOT_FOUND,
            "No Record found".into(),
            "Record doesn't exist or ACL restricts the record retrieval".into(),
        )
    }
}

impl IntoResponse for SnError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": {"message": self.1, "detail": self.2}, "status": "failure"})))
            .into_response()
    }
}

/// The `user_name` a request is made as.
#[derive(Debug, Clone)]
struct ApiUser(String);

async fn authenticate(State(app): State<Shared>, mut request: Request, next: Next) -> Response {
    let header = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    let user = match header.trim().split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && app.accepts(token.trim()) => {
            Some("oauth.integration".to_owned())
        }
        Some((scheme, b64)) if scheme.eq_ignore_ascii_case("basic") => {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|pair| pair.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())))
                .filter(|(_, password)| app.accepts(password))
                .map(|(user, _)| user)
        }
        _ => None,
    };
    match user {
        Some(user) => {
            request.extensions_mut().insert(ApiUser(user));
            next.run(request).await
        }
        None => SnError(
            StatusCode::UNAUTHORIZED,
            "User Not Authenticated".into(),
            "Required to provide Auth information".into(),
        )
        .into_response(),
    }
}

/// Every record of `table`, rendered; `link` is the instance address for reference links.
fn rows(desk: &Helpdesk, table: &str, link: Option<&str>) -> Result<Vec<Row>, SnError> {
    Ok(match table {
        "incident" => desk.tickets.values().map(|t| shape::incident(t, link)).collect(),
        "sys_user" => desk
            .customers
            .values()
            .map(shape::customer)
            .chain(desk.agents().iter().map(|a| shape::agent(a)))
            .collect(),
        "sys_journal_field" => desk.notes.values().map(|n| shape::journal(desk, n)).collect(),
        "sys_choice" => shape::choices(desk),
        other => return Err(SnError::bad(format!("Invalid table {other}"), "")),
    })
}

/// The field names of `table`, for checking queries.
fn fields_of(table: &str) -> Result<Vec<String>, SnError> {
    let row = match table {
        "incident" => shape::incident(&Ticket::default(), None),
        "sys_user" => shape::customer(&Customer::default()),
        "sys_journal_field" => shape::journal(&Helpdesk::default(), &Note::default()),
        "sys_choice" => return Ok(shape::CHOICE_FIELDS.iter().map(|f| (*f).to_owned()).collect()),
        other => return Err(SnError::bad(format!("Invalid table {other}"), "")),
    };
    Ok(row.keys().cloned().collect())
}

/// The instance address for reference links, unless the request excluded them.
fn link(headers: &HeaderMap, q: &HashMap<String, String>) -> Option<String> {
    if q.get("sysparm_exclude_reference_link").map(String::as_str) == Some("true") {
        return None;
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    Some(format!("http://{host}/servicenow"))
}

/// Refuses display values: the sandbox serves actual values only.
fn actual_values(q: &HashMap<String, String>) -> Result<(), SnError> {
    match q.get("sysparm_display_value").map(String::as_str) {
        None | Some("false") => Ok(()),
        Some(other) => Err(SnError::bad(
            "Invalid sysparm_display_value",
            format!("`{other}`: this sandbox serves actual values only (sysparm_display_value=false)"),
        )),
    }
}

fn number(q: &HashMap<String, String>, key: &str, default: usize) -> Result<usize, SnError> {
    q.get(key).map_or(Ok(default), |v| {
        v.parse().map_err(|_| SnError::bad(format!("Invalid {key}"), format!("`{v}` is not a number")))
    })
}

async fn list(
    State(app): State<Shared>,
    headers: HeaderMap,
    Path(table): Path<String>,
    Query(q): Params,
) -> Result<Response, SnError> {
    actual_values(&q)?;
    let fields = fields_of(&table)?;
    let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
    let query = EncodedQuery::parse(q.get("sysparm_query").map_or("", String::as_str), &fields)
        .map_err(|e| SnError::bad("Invalid query", e))?;
    let offset = number(&q, "sysparm_offset", 0)?;
    let limit = number(&q, "sysparm_limit", 10_000)?.max(1);
    let link = link(&headers, &q);
    let desks = app.desks.read().await;
    let desk = flavour_desk(&desks).and_then(|n| desks.get(&n)).ok_or_else(SnError::not_found)?;
    let matching = query.apply(rows(desk, &table, link.as_deref())?);
    drop(desks);
    let total = matching.len();
    let page: Vec<Row> = matching
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|r| project(r, q.get("sysparm_fields").map(String::as_str)))
        .collect();
    let mut response = Json(json!({"result": page})).into_response();
    let h = response.headers_mut();
    if q.get("sysparm_no_count").map(String::as_str) != Some("true") {
        h.insert("x-total-count", HeaderValue::from(total));
    }
    if q.get("sysparm_suppress_pagination_header").map(String::as_str) != Some("true")
        && let Ok(v) = HeaderValue::from_str(&link_header(&headers, &table, &q, offset, limit, total))
    {
        h.insert(header::LINK, v);
    }
    Ok(response)
}

/// `Link: <...>;rel="first", <...>;rel="next", <...>;rel="last"` for a page at `offset`.
fn link_header(
    headers: &HeaderMap,
    table: &str,
    q: &HashMap<String, String>,
    offset: usize,
    limit: usize,
    total: usize,
) -> String {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    let url = |at: usize| {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        let mut keys: Vec<&String> = q.keys().filter(|k| !k.starts_with("sysparm_offset")).collect();
        keys.sort();
        for k in keys {
            query.append_pair(k, &q[k]);
        }
        query.append_pair("sysparm_offset", &at.to_string());
        format!("<http://{host}/servicenow/api/now/table/{table}?{}>", query.finish())
    };
    let last = total.saturating_sub(1) / limit * limit;
    let mut links = vec![format!("{};rel=\"first\"", url(0))];
    if offset + limit < total {
        links.push(format!("{};rel=\"next\"", url(offset + limit)));
    }
    links.push(format!("{};rel=\"last\"", url(last)));
    links.join(",")
}

async fn show(
    State(app): State<Shared>,
    headers: HeaderMap,
    Path((table, sys_id)): Path<(String, String)>,
    Query(q): Params,
) -> Result<Json<Value>, SnError> {
    actual_values(&q)?;
    let link = link(&headers, &q);
    let desks = app.desks.read().await;
    let desk = flavour_desk(&desks).and_then(|n| desks.get(&n)).ok_or_else(SnError::not_found)?;
    let row = rows(desk, &table, link.as_deref())?
        .into_iter()
        .find(|r| r.get("sys_id").and_then(Value::as_str) == Some(sys_id.as_str()))
        .ok_or_else(SnError::not_found)?;
    Ok(Json(json!({"result": project(row, q.get("sysparm_fields").map(String::as_str))})))
}

mod update;
use update::update;
