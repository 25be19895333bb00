//! `POST /webhooks/{connection_id}`: authenticate, read, publish, and answer 2xx only once the
//! broker has confirmed every event of the delivery.
//!
//! A delivery that cannot be published (the broker is away) is answered 503 with `Retry-After`,
//! so the helpdesk sends it again; nothing is dropped silently. An event whose kind no queue is
//! bound to (`ticket.updated` today) is returned by the broker, not lost: the delivery is still
//! accepted, since sending it again could not help, and the event is counted as `unrouted`.

use std::{
    collections::HashMap,
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use futures::{StreamExt as _, future::join_all};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use time::OffsetDateTime;

use super::{Rejection, Report, Scheme};
use crate::{
    bus::{BusError, Publisher},
    events::{EventKind, EventSource, TicketEvent},
    ingest::loop_guard::LoopGuard,
};

/// How long the sender is asked to wait before trying again after a 503, seconds.
const RETRY_AFTER_SECS: u64 = 5;

/// One connection as the receiver sees it.
#[derive(Clone)]
pub struct WebhookConnection {
    /// How its deliveries are authenticated and read.
    pub scheme: Scheme,
    /// Its webhook secret; `None` refuses every delivery (the connection is polled instead).
    pub secret: Option<SecretString>,
}

impl fmt::Debug for WebhookConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConnection")
            .field("scheme", &self.scheme)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The receiver's limits.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Largest body read; a larger one is refused with 413.
    pub max_body_bytes: usize,
    /// How far a signed timestamp may be from now.
    pub timestamp_tolerance: Duration,
    /// Longest wait for the broker's confirms before answering 503.
    pub publish_timeout: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: crate::config::IngestConfig::default().webhook_max_body_bytes,
            timestamp_tolerance: crate::config::IngestConfig::default().webhook_timestamp_tolerance(),
            publish_timeout: Duration::from_secs(10),
        }
    }
}

/// The webhook receiver of every connection; cheap to clone.
#[derive(Clone)]
pub struct WebhookReceiver {
    inner: Arc<Inner>,
}

struct Inner {
    connections: HashMap<String, WebhookConnection>,
    publisher: Publisher,
    settings: WebhookSettings,
    guard: Option<LoopGuard>,
}

/// What became of an accepted delivery's objects.
#[derive(Debug, Default, serde::Serialize)]
struct Accepted {
    published: usize,
    unrouted: usize,
    ignored: usize,
    own_writes: usize,
}

impl WebhookReceiver {
    /// A receiver for `connections` (by id) that publishes with `publisher`.
    pub fn new(
        connections: HashMap<String, WebhookConnection>,
        publisher: Publisher,
        settings: WebhookSettings,
    ) -> Self {
        Self { inner: Arc::new(Inner { connections, publisher, settings, guard: None }) }
    }

    /// The same receiver, leaving out updates that deskpilot's own writes explain (its patch, its
    /// note), so they do not come back as work.
    pub fn with_loop_guard(self, guard: LoopGuard) -> Self {
        let inner = Arc::try_unwrap(self.inner).unwrap_or_else(|shared| Inner {
            connections: shared.connections.clone(),
            publisher: shared.publisher.clone(),
            settings: shared.settings.clone(),
            guard: None,
        });
        Self { inner: Arc::new(Inner { guard: Some(guard), ..inner }) }
    }

    /// `POST /webhooks/{connection_id}`.
    pub fn router(&self) -> Router {
        Router::new().route("/webhooks/{connection_id}", post(receive)).with_state(self.clone())
    }

    /// The ids of the connections that take webhooks.
    pub fn connections(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self
            .inner
            .connections
            .iter()
            .filter(|(_, c)| c.secret.is_some())
            .map(|(id, _)| id.as_str())
            .collect();
        ids.sort_unstable();
        ids
    }

    async fn handle(&self, id: &str, headers: &HeaderMap, body: Body) -> Result<Accepted, Refusal> {
        let connection =
            self.inner.connections.get(id).ok_or_else(|| Rejection::UnknownConnection(id.into()))?;
        let secret = connection.secret.as_ref().ok_or_else(|| Rejection::NotConfigured(id.into()))?;
        let settings = &self.inner.settings;
        let body = read_body(headers, body, settings.max_body_bytes).await?;
        let now = OffsetDateTime::now_utc();
        let report = connection
            .scheme
            .read(secret.expose_secret().as_bytes(), headers, &body, now, settings.timestamp_tolerance)
            .map_err(|rejection| {
                tracing::warn!(connection = id, reason = rejection.reason(), error = %rejection, "webhook refused");
                rejection
            })?;
        self.publish(id, report).await
    }

    /// Publishes every change of `report` at once and waits for all the confirms.
    async fn publish(&self, connection: &str, report: Report) -> Result<Accepted, Refusal> {
        let mut own_writes = 0;
        let mut events = Vec::with_capacity(report.changes.len());
        for c in report.changes {
            if c.kind == EventKind::TicketUpdated
                && let Some(guard) = &self.inner.guard
            {
                let own = guard
                    .is_own_write(connection, &c.ticket_id, c.updated_at, EventSource::Webhook)
                    .await
                    .map_err(|e| {
                        Refusal::Unavailable(format!("the store could not tell deskpilot's own writes: {e}"))
                    })?;
                if own {
                    own_writes += 1;
                    continue;
                }
            }
            events.push(TicketEvent::observed(
                c.kind,
                connection,
                c.ticket_id,
                c.updated_at,
                EventSource::Webhook,
            ));
        }
        // A delivery that names one change twice is one event.
        events.sort_by(|a, b| a.event_id.cmp(&b.event_id));
        events.dedup_by(|a, b| a.event_id == b.event_id);
        let publisher = &self.inner.publisher;
        let sent = tokio::time::timeout(
            self.inner.settings.publish_timeout,
            join_all(events.iter().map(|e| publisher.publish(e))),
        )
        .await
        .map_err(|_| Refusal::Unavailable("the event bus did not confirm in time".into()))?;

        let mut accepted = Accepted { ignored: report.ignored, own_writes, ..Accepted::default() };
        let mut failure: Option<BusError> = None;
        for (event, result) in events.iter().zip(sent) {
            let outcome = match result {
                Ok(()) => {
                    accepted.published += 1;
                    "published"
                }
                Err(BusError::Unroutable { .. }) => {
                    accepted.unrouted += 1;
                    "unrouted"
                }
                Err(e) => {
                    failure.get_or_insert(e);
                    "failed"
                }
            };
            metrics::counter!("deskpilot_webhook_events_total", "connection" => connection.to_owned(),
                              "kind" => event.kind.as_str(), "outcome" => outcome)
            .increment(1);
        }
        if report.ignored > 0 {
            metrics::counter!("deskpilot_webhook_events_total", "connection" => connection.to_owned(),
                              "kind" => "-", "outcome" => "ignored")
            .increment(report.ignored as u64);
        }
        match failure {
            None => Ok(accepted),
            Some(e) => {
                tracing::warn!(connection, error = %e, "webhook events could not be published; the sender will retry");
                Err(if matches!(e, BusError::Topology { .. }) {
                    Refusal::Broken(e.to_string())
                } else {
                    Refusal::Unavailable(e.to_string())
                })
            }
        }
    }
}

/// Why a request got no 2xx.
enum Refusal {
    /// The request itself is refused (401, 404, 413, 400).
    Rejected(Rejection),
    /// The bus cannot take the events now (503: the sender retries).
    Unavailable(String),
    /// The bus is misconfigured (500).
    Broken(String),
}

impl From<Rejection> for Refusal {
    fn from(r: Rejection) -> Self {
        Self::Rejected(r)
    }
}

/// Reads the body up to `limit` bytes; a declared or actual length above it is refused unread.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Vec<u8>, Rejection> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Rejection::TooLarge { limit });
    }
    let mut out = Vec::with_capacity(declared.map_or(0, |n| n as usize));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Rejection::Malformed {
            backend: "http",
            detail: format!("the body broke off: {e}"),
        })?;
        if out.len() + chunk.len() > limit {
            return Err(Rejection::TooLarge { limit });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

async fn receive(
    State(receiver): State<WebhookReceiver>,
    Path(connection): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let backend = receiver.inner.connections.get(&connection).map_or("-", |c| c.scheme.backend());
    let (outcome, response) = match receiver.handle(&connection, &headers, body).await {
        Ok(accepted) => ("accepted", (StatusCode::OK, Json(json!(accepted))).into_response()),
        Err(Refusal::Rejected(rejection)) => {
            metrics::counter!("deskpilot_webhook_rejected_total", "backend" => backend, "reason" => rejection.reason())
                .increment(1);
            ("rejected", (rejection.status(), Json(json!({"error": rejection.to_string()}))).into_response())
        }
        Err(Refusal::Unavailable(error)) => {
            let mut response = (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": format!("the event bus is unavailable ({error}); send the delivery again later")})),
            )
                .into_response();
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            ("unavailable", response)
        }
        Err(Refusal::Broken(error)) => (
            "failed",
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"error": format!("the event bus refused the events: {error}")})),
            )
                .into_response(),
        ),
    };
    metrics::counter!("deskpilot_webhook_requests_total", "backend" => backend, "outcome" => outcome)
        .increment(1);
    metrics::histogram!("deskpilot_webhook_seconds", "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    response
}
