//! The HTTP surface: Unified's ticketing paths (unified-ticketing.md §2), auth and request logs.

use std::{sync::Arc, time::Instant};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, RawQuery, Request, State},
    http::{Method, StatusCode, Uri, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::{Map, Value, json};

use super::{
    data::{Connections, Helpdesk},
    error::ApiError,
    query::{Fields, ListParams},
    resource::{Resource, bump},
    server::AppState,
};
use crate::ticketing::{Category, Customer, Note, Ticket};

type Shared = Arc<AppState>;

/// Fields the server assigns; ignored in request bodies.
const SERVER_ASSIGNED: [&str; 3] = ["id", "created_at", "updated_at"];

/// Every route of the sandbox.
pub(crate) fn router(app: Shared) -> Router {
    let api = [resource::<Ticket>, resource::<Customer>, resource::<Note>, resource::<Category>]
        .into_iter()
        .fold(Router::new(), |router, add| add(router))
        .merge(super::subscription::routes())
        .route_layer(middleware::from_fn_with_state(app.clone(), require_api_key));
    Router::new()
        .route("/health", get(health))
        .merge(api)
        .nest("/freshdesk", super::freshdesk::routes(app.clone()))
        .nest("/intercom", super::intercom::routes(app.clone()))
        .nest("/servicenow", super::servicenow::routes(app.clone()))
        .merge(super::zendesk::routes(app.clone()))
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(log_request))
        .with_state(app)
}

fn resource<R: Resource>(router: Router<Shared>) -> Router<Shared> {
    let collection = format!("/ticketing/{{connection_id}}/{}", R::KIND);
    let item = format!("{collection}/{{id}}");
    router
        .route(&collection, get(list::<R>).post(create::<R>))
        .route(&item, get(fetch::<R>).put(update::<R>).patch(update::<R>).delete(remove::<R>))
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn unknown_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed on {}", uri.path()))
}

/// `Authorization: Bearer <api key>`; the scheme is case-insensitive (Unified's CLI sends
/// `bearer`). A bare token is refused: the docs ask for `Bearer`, and the double should catch a
/// client that forgets it (whether the real server accepts one is UNCONFIRMED, §1).
async fn require_api_key(State(app): State<Shared>, request: Request, next: Next) -> Response {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return ApiError::unauthorized("missing `Authorization: Bearer <api key>` header").into_response();
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match token {
        None => {
            ApiError::unauthorized("the `Authorization` header must be `Bearer <api key>`").into_response()
        }
        Some(token) if !app.accepts(token) => ApiError::unauthorized("invalid API key").into_response(),
        Some(_) => next.run(request).await,
    }
}

/// One log line per request.
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    tracing::debug!(%method, path, status, latency = ?started.elapsed(), "sandbox request");
    response
}

async fn list<R: Resource>(
    State(app): State<Shared>,
    Path(connection): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Vec<Value>>, ApiError> {
    let desks = app.desks.read().await;
    let desk = desk(&desks, &connection)?;
    let params = ListParams::parse(query.as_deref())?;
    Ok(Json(params.apply(R::table(desk))?))
}

async fn fetch<R: Resource>(
    State(app): State<Shared>,
    Path((connection, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let desks = app.desks.read().await;
    let item = R::table(desk(&desks, &connection)?).get(&id).ok_or_else(|| missing::<R>(&id))?;
    Ok(Json(Fields::parse(query.as_deref()).render(item)?))
}

/// POST: 200 (not 201, §2) with the created object.
async fn create<R: Resource>(
    State(app): State<Shared>,
    Path(connection): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let mut desks = app.desks.write().await;
    let desk = desk_mut(&mut desks, &connection)?;
    let mut item: R = decode(writable_body::<R>(&body)?)?;
    let now = now();
    item.prepare(None, desk, now)?;
    let id = desk.next_id::<R>();
    item.stamp(id.clone(), Some(now), Some(now));
    R::table_mut(desk).insert(id, item.clone());
    let change = item.after_write(true, desk, now);
    app.save(&desks).await?;
    drop(desks);
    app.announce(&connection, change);
    Ok(Json(Fields::parse(query.as_deref()).render(&item)?))
}

/// PUT and PATCH alike (the SDK sends partial bodies to both, §2): the body's fields are merged
/// into the object, a `null` clears a field, and the whole object comes back. A write that changes
/// nothing leaves `updated_at` alone and announces nothing.
async fn update<R: Resource>(
    State(app): State<Shared>,
    Path((connection, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let fields = Fields::parse(query.as_deref());
    let mut desks = app.desks.write().await;
    let desk = desk_mut(&mut desks, &connection)?;
    let before = R::table(desk).get(&id).ok_or_else(|| missing::<R>(&id))?.clone();
    let changes = writable_body::<R>(&body)?;
    let mut merged = match serde_json::to_value(&before) {
        Ok(Value::Object(map)) => map,
        _ => return Err(ApiError::internal(format!("{} {id} could not be serialised", R::KIND))),
    };
    merged.extend(changes);
    let mut item: R = decode(merged)?;
    if item == before {
        return Ok(Json(fields.render(&before)?));
    }
    let now = now();
    item.prepare(Some(&before), desk, now)?;
    item.stamp(id.clone(), before.created_at(), Some(bump(before.updated_at(), now)));
    R::table_mut(desk).insert(id, item.clone());
    let change = item.after_write(false, desk, now);
    app.save(&desks).await?;
    drop(desks);
    app.announce(&connection, change);
    Ok(Json(fields.render(&item)?))
}

/// DELETE: 200 with an empty body (§2).
async fn remove<R: Resource>(
    State(app): State<Shared>,
    Path((connection, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let mut desks = app.desks.write().await;
    let desk = desk_mut(&mut desks, &connection)?;
    R::table_mut(desk).remove(&id).ok_or_else(|| missing::<R>(&id))?;
    R::after_delete(&id, desk);
    app.save(&desks).await?;
    Ok(StatusCode::OK)
}

fn desk<'a>(desks: &'a Connections, connection: &str) -> Result<&'a Helpdesk, ApiError> {
    desks.get(connection).ok_or_else(|| unknown_connection(connection))
}

fn desk_mut<'a>(desks: &'a mut Connections, connection: &str) -> Result<&'a mut Helpdesk, ApiError> {
    desks.get_mut(connection).ok_or_else(|| unknown_connection(connection))
}

fn unknown_connection(connection: &str) -> ApiError {
    ApiError::not_found(format!("connection {connection} not found"))
}

fn missing<R: Resource>(id: &str) -> ApiError {
    ApiError::not_found(format!("{} {id} not found", R::KIND))
}

/// The request body as an object of Unified fields the client may set; other keys are dropped.
fn writable_body<R: Resource>(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    let Value::Object(mut map) = value else {
        return Err(ApiError::bad_request(format!("the body must be a JSON object (a {})", R::KIND)));
    };
    map.retain(|k, _| R::FIELDS.contains(&k.as_str()) && !SERVER_ASSIGNED.contains(&k.as_str()));
    Ok(map)
}

fn decode<R: Resource>(map: Map<String, Value>) -> Result<R, ApiError> {
    serde_json::from_value(Value::Object(map))
        .map_err(|e| ApiError::bad_request(format!("invalid {}: {e}", R::KIND)))
}

/// Now, to the millisecond (as Unified's JavaScript clocks write it).
fn now() -> time::OffsetDateTime {
    let now = time::OffsetDateTime::now_utc();
    now.replace_nanosecond(u32::from(now.millisecond()) * 1_000_000).unwrap_or(now)
}
