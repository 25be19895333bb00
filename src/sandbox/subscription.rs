//! Unified's webhook subscriptions (unified-ticketing.md §6.1–§6.2): `POST /unified/webhook`
//! creates one, `GET /unified/webhook[/{id}]` lists or reads them, `DELETE /unified/webhook/{id}`
//! removes one. A ticket change is delivered to every subscription of its connection with
//! `object_type = ticketing_ticket` and the change's `event`, carrying that subscription as
//! `webhook`, signed like every delivery.
//!
//! `POST /unified/webhook?include_all=true` on `ticketing_ticket` also sends every existing ticket
//! of the connection, in pages typed `INITIAL-PARTIAL`, the last one `INITIAL-COMPLETE` (§6.2–6.3).
//! Kept in memory (not in the state file); `fields` and `filters` are accepted and ignored.

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
    routing::get,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{error::ApiError, query::Fields, server::AppState};
use crate::ticketing::model::format_timestamp;

type Shared = Arc<AppState>;

/// The object types of the ticketing category a subscription may name.
const OBJECT_TYPES: [&str; 4] =
    ["ticketing_ticket", "ticketing_note", "ticketing_customer", "ticketing_category"];
/// The events a subscription may name.
const EVENTS: [&str; 3] = ["created", "updated", "deleted"];

/// A subscription, in Unified's `Webhook` shape.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Subscription {
    id: String,
    created_at: String,
    updated_at: String,
    workspace_id: &'static str,
    connection_id: String,
    hook_url: String,
    object_type: String,
    event: String,
    webhook_type: String,
    interval: u32,
    integration_type: &'static str,
    environment: &'static str,
    is_healthy: bool,
    is_paused: bool,
}

/// What a client may set.
#[derive(Deserialize)]
struct NewSubscription {
    connection_id: Option<String>,
    hook_url: Option<String>,
    object_type: Option<String>,
    event: Option<String>,
    webhook_type: Option<String>,
    interval: Option<u32>,
    is_paused: Option<bool>,
}

/// Every subscription, by id.
#[derive(Debug, Default)]
pub(crate) struct Subscriptions {
    by_id: BTreeMap<String, Subscription>,
    issued: u64,
}

impl Subscriptions {
    /// The `(hook_url, webhook object)` of each active subscription to `event` on tickets of
    /// `connection`.
    pub(crate) fn ticket_hooks(&self, connection: &str, event: &str) -> Vec<(String, Value)> {
        self.by_id
            .values()
            .filter(|s| {
                s.connection_id == connection
                    && s.object_type == "ticketing_ticket"
                    && s.event == event
                    && !s.is_paused
            })
            .map(|s| (s.hook_url.clone(), serde_json::to_value(s).unwrap_or_default()))
            .collect()
    }
}

/// The subscription routes (behind the API key, like the ticketing ones).
pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/unified/webhook", get(list).post(create))
        .route("/unified/webhook/{id}", get(fetch).delete(remove))
}

#[derive(Deserialize)]
struct ListParams {
    connection_id: Option<String>,
    object: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

async fn list(State(app): State<Shared>, Query(p): Query<ListParams>) -> Json<Vec<Subscription>> {
    let subs = app.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
    let limit = p.limit.filter(|l| *l > 0).unwrap_or(100).min(100);
    Json(
        subs.by_id
            .values()
            .filter(|s| p.connection_id.as_ref().is_none_or(|c| *c == s.connection_id))
            .filter(|s| p.object.as_ref().is_none_or(|o| *o == s.object_type))
            .skip(p.offset.unwrap_or(0))
            .take(limit)
            .cloned()
            .collect(),
    )
}

async fn fetch(State(app): State<Shared>, Path(id): Path<String>) -> Result<Json<Subscription>, ApiError> {
    let subs = app.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
    subs.by_id.get(&id).cloned().map(Json).ok_or_else(|| missing(&id))
}

async fn remove(State(app): State<Shared>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let mut subs = app.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
    subs.by_id.remove(&id).map(|_| StatusCode::OK).ok_or_else(|| missing(&id))
}

#[derive(Deserialize)]
struct CreateParams {
    include_all: Option<bool>,
}

/// POST: 200 with the created subscription (as the ticketing objects, §2).
async fn create(
    State(app): State<Shared>,
    Query(params): Query<CreateParams>,
    body: Bytes,
) -> Result<Json<Subscription>, ApiError> {
    let new: NewSubscription =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid webhook: {e}")))?;
    let required = |value: Option<String>, field: &str| {
        value
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| ApiError::bad_request(format!("`{field}` is required")))
    };
    let connection_id = required(new.connection_id, "connection_id")?;
    let hook_url = required(new.hook_url, "hook_url")?;
    let object_type = required(new.object_type, "object_type")?;
    let event = required(new.event, "event")?;
    if !url::Url::parse(&hook_url).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
        return Err(ApiError::bad_request(format!("`hook_url` {hook_url:?} is not an http(s) URL")));
    }
    if !OBJECT_TYPES.contains(&object_type.as_str()) {
        return Err(ApiError::bad_request(format!(
            "`object_type` {object_type:?} is not one of {}",
            OBJECT_TYPES.join(", ")
        )));
    }
    if !EVENTS.contains(&event.as_str()) {
        return Err(ApiError::bad_request(format!("`event` {event:?} is not one of {}", EVENTS.join(", "))));
    }
    let webhook_type = new.webhook_type.unwrap_or_else(|| "virtual".to_owned());
    if !matches!(webhook_type.as_str(), "virtual" | "native") {
        return Err(ApiError::bad_request(format!(
            "`webhook_type` {webhook_type:?} is not virtual or native"
        )));
    }
    let existing = {
        let desks = app.desks.read().await;
        let desk = desks
            .get(&connection_id)
            .ok_or_else(|| ApiError::not_found(format!("connection {connection_id} not found")))?;
        let wanted = params.include_all == Some(true) && object_type == "ticketing_ticket";
        let fields = Fields::default();
        let render = desk.tickets.values().map(|t| fields.render(t));
        if wanted { Some(render.collect::<Result<Vec<_>, _>>()?) } else { None }
    };
    let now = format_timestamp(time::OffsetDateTime::now_utc());
    let mut subs = app.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
    subs.issued += 1;
    let subscription = Subscription {
        id: format!("wh-{:05}", subs.issued),
        created_at: now.clone(),
        updated_at: now,
        workspace_id: "sandbox",
        connection_id,
        hook_url,
        object_type,
        event,
        webhook_type,
        interval: new.interval.unwrap_or(1),
        integration_type: "sandbox",
        environment: "Production",
        is_healthy: true,
        is_paused: new.is_paused.unwrap_or(false),
    };
    subs.by_id.insert(subscription.id.clone(), subscription.clone());
    drop(subs);
    if let Some(tickets) = existing {
        let webhook = serde_json::to_value(&subscription).unwrap_or_default();
        app.announce_existing(&subscription.hook_url, &webhook, tickets);
    }
    Ok(Json(subscription))
}

fn missing(id: &str) -> ApiError {
    ApiError::not_found(format!("webhook {id} not found"))
}
