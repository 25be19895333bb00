//! The webhook simulator: Unified.to-style deliveries of ticket events (unified-ticketing.md §6.3).
//!
//! Each delivery is `{"data": [<ticket>], "webhook": {..}, "nonce", "sig", "type": "VIRTUAL"}`,
//! signed with [`sign_delivery`]. A change goes to the sandbox's own hook URL (`--webhook-url`),
//! if any, and to every matching subscription (`POST /unified/webhook`), each delivery carrying
//! its subscription as `webhook`. Deliveries go through a bounded queue to one background task,
//! so an API response never waits for, or fails because of, the hook URL. A failed delivery is
//! retried a few times with growing delays (Unified itself retries up to 20 times over hours;
//! that would only slow a sandbox down). When the queue is full the delivery is dropped and logged.

use std::time::Duration;

use base64::{Engine as _, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha1::Sha1;
use tokio::{
    sync::mpsc::{self, error::TrySendError},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

use super::resource::TicketEvent;
use crate::ticketing::model::format_timestamp;

/// How many deliveries may wait for the delivery task.
const QUEUE_CAPACITY: usize = 256;
/// Pauses before the 2nd, 3rd and 4th attempt of one delivery.
const RETRY_DELAYS: [Duration; 3] =
    [Duration::from_millis(250), Duration::from_secs(1), Duration::from_secs(4)];
/// Objects per page of an initial sync (`include_all`).
const INITIAL_PAGE: usize = 100;
/// Time limit of one POST to the hook URL.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The delivery signature: base64(HMAC-SHA1(secret, compact JSON of `data` + nonce)).
///
/// Unified documents `sig` as `HMAC-SHA1(workspace.secret, data + nonce)`; the serialisation of
/// `data` (compact JSON, as `JSON.stringify` writes it) and the digest encoding (base64) are
/// UNCONFIRMED (unified-ticketing.md §6.3), so the sandbox and deskpilot's receiver share this
/// function rather than each guessing. Verify by recomputing over the *parsed* `data`.
pub fn sign_delivery(secret: &str, data: &Value, nonce: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    // `Value`'s Display is compact JSON, byte for byte what `serde_json::to_string` writes.
    mac.update(data.to_string().as_bytes());
    mac.update(nonce.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The sender side: builds, signs and queues deliveries.
pub(crate) struct Webhooks {
    tx: mpsc::Sender<(String, Value)>,
    hook_url: Option<String>,
    secret: Option<String>,
    created_at: String,
}

impl Webhooks {
    /// Starts the delivery task (changes go to `hook_url`, if any, and to subscriptions); it
    /// stops when `shutdown` fires (after one last attempt for each queued delivery).
    pub(crate) fn start(
        hook_url: Option<String>,
        secret: Option<String>,
        started_at: time::OffsetDateTime,
        shutdown: CancellationToken,
    ) -> anyhow::Result<(Self, JoinHandle<()>)> {
        let client = crate::http::client_builder(ATTEMPT_TIMEOUT, ATTEMPT_TIMEOUT)
            .user_agent(concat!("deskpilot-sandbox/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let task = tokio::spawn(run(rx, client, shutdown));
        let created_at = format_timestamp(started_at);
        Ok((Self { tx, hook_url, secret, created_at }, task))
    }

    /// Queues the deliveries of one ticket event, to the own hook URL and to each `(hook_url,
    /// subscription)` given; never waits.
    pub(crate) fn ticket_event(
        &self,
        connection: &str,
        event: TicketEvent,
        ticket: &Value,
        subscriptions: Vec<(String, Value)>,
    ) {
        let own =
            self.hook_url.as_ref().map(|url| (url.clone(), self.own_subscription(connection, event, url)));
        for (url, webhook) in own.into_iter().chain(subscriptions) {
            let payload = self.delivery(webhook, ticket.clone(), &random_nonce());
            match self.tx.try_send((url, payload)) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    tracing::warn!(
                        connection,
                        event = event.as_str(),
                        "webhook queue full; delivery dropped"
                    );
                }
                Err(TrySendError::Closed(_)) => {
                    tracing::warn!(
                        connection,
                        event = event.as_str(),
                        "webhook task stopped; delivery dropped"
                    );
                }
            }
        }
    }

    /// Queues the initial sync of a new subscription made with `include_all=true`: `objects` in
    /// pages of [`INITIAL_PAGE`], `INITIAL-PARTIAL` each but the last, `INITIAL-COMPLETE`.
    pub(crate) fn initial(&self, hook_url: &str, webhook: &Value, objects: Vec<Value>) {
        let pages: Vec<&[Value]> =
            if objects.is_empty() { vec![&[]] } else { objects.chunks(INITIAL_PAGE).collect() };
        let last = pages.len() - 1;
        for (i, page) in pages.into_iter().enumerate() {
            let kind = if i == last { "INITIAL-COMPLETE" } else { "INITIAL-PARTIAL" };
            let payload = self.signed(json!(page), webhook.clone(), kind, &random_nonce());
            if self.tx.try_send((hook_url.to_owned(), payload)).is_err() {
                tracing::warn!(hook_url, "webhook queue full or stopped; initial page dropped");
            }
        }
    }

    /// The delivery body of one ticket change; `sig` is empty without a secret.
    fn delivery(&self, webhook: Value, ticket: Value, nonce: &str) -> Value {
        self.signed(json!([ticket]), webhook, "VIRTUAL", nonce)
    }

    fn signed(&self, data: Value, webhook: Value, kind: &str, nonce: &str) -> Value {
        let sig = self.secret.as_deref().map(|s| sign_delivery(s, &data, nonce)).unwrap_or_default();
        json!({"data": data, "webhook": webhook, "nonce": nonce, "sig": sig, "type": kind})
    }

    /// The subscription object a delivery to `--webhook-url` carries.
    fn own_subscription(&self, connection: &str, event: TicketEvent, hook_url: &str) -> Value {
        let event = event.as_str();
        json!({
            "id": format!("sandbox-{connection}-ticketing_ticket-{event}"),
            "connection_id": connection,
            "hook_url": hook_url,
            "object_type": "ticketing_ticket",
            "event": event,
            "webhook_type": "virtual",
            "interval": 1,
            "integration_type": "sandbox",
            "environment": "Production",
            "is_healthy": true,
            "is_paused": false,
            "created_at": self.created_at,
            "updated_at": self.created_at,
            "checked_at": format_timestamp(time::OffsetDateTime::now_utc()),
        })
    }
}

fn random_nonce() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

async fn run(mut rx: mpsc::Receiver<(String, Value)>, client: reqwest::Client, shutdown: CancellationToken) {
    loop {
        let (url, payload) = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            next = rx.recv() => match next {
                Some(next) => next,
                None => return,
            },
        };
        deliver(&client, &url, &payload, &shutdown).await;
    }
    rx.close();
    while let Ok((url, payload)) = rx.try_recv() {
        deliver(&client, &url, &payload, &shutdown).await;
    }
}

/// Delivers one payload, retrying until it succeeds, the attempts run out, or shutdown.
async fn deliver(client: &reqwest::Client, url: &str, payload: &Value, shutdown: &CancellationToken) {
    let webhook_id = payload["webhook"]["id"].as_str().unwrap_or_default();
    let ticket_id = payload["data"][0]["id"].as_str().unwrap_or_default();
    for attempt in 1..=RETRY_DELAYS.len() + 1 {
        let outcome = match client.post(url).json(payload).send().await {
            Ok(r) if r.status().is_success() => Ok(r.status()),
            Ok(r) => Err(format!("hook answered {}", r.status())),
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(status) => {
                tracing::info!(webhook_id, ticket_id, attempt, status = status.as_u16(), "webhook delivered");
                return;
            }
            Err(error) => tracing::warn!(webhook_id, ticket_id, attempt, error, "webhook delivery failed"),
        }
        let Some(delay) = RETRY_DELAYS.get(attempt - 1) else { break };
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(*delay) => {}
        }
    }
    tracing::error!(webhook_id, ticket_id, "webhook delivery abandoned");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_base64_hmac_sha1_of_compact_data_and_nonce() {
        // Independently: printf '[{"id":"1"}]abc' | openssl dgst -sha1 -hmac s3cret -binary | base64
        let data = json!([{"id": "1"}]);
        assert_eq!(sign_delivery("s3cret", &data, "abc"), "swLmZjOooaGJ1u7sD363WSpXQFM=");
    }

    #[tokio::test]
    async fn delivery_has_unified_shape_and_empty_sig_without_secret() {
        let token = CancellationToken::new();
        let now = time::macros::datetime!(2026-11-24 10:00 UTC);
        let (hooks, _task) =
            Webhooks::start(Some("http://127.0.0.1:9/hook".into()), None, now, token.clone()).unwrap();
        let webhook = hooks.own_subscription("demo", TicketEvent::Created, "http://127.0.0.1:9/hook");
        let body = hooks.delivery(webhook, json!({"id": "7"}), "n1");
        assert_eq!(body["sig"], "");
        assert_eq!(body["type"], "VIRTUAL");
        assert_eq!(body["webhook"]["id"], "sandbox-demo-ticketing_ticket-created");
        assert_eq!(body["webhook"]["created_at"], "2026-11-24T10:00:00Z");
        assert_eq!(body["data"], json!([{"id": "7"}]));
        token.cancel();
    }
}
