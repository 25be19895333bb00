//! The webhook receiver on the real RabbitMQ: each backend's documented delivery publishes the
//! right events once confirmed; forged, unsigned, stale, tampered and oversized requests publish
//! nothing; `serve` takes the sandbox's signed webhooks through to the worker.

use std::{collections::HashMap, time::Duration};

use axum::http::HeaderMap;
use base64::{Engine as _, engine::general_purpose::STANDARD};
use deskpilot::{
    bus::{self, BusSettings, Consumer, Publisher},
    events::{EventKind, EventSource, TicketEvent},
    ingest::webhook::{Scheme, WebhookConnection, WebhookReceiver, WebhookSettings},
    sandbox::sign_delivery,
};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use time::{OffsetDateTime, format_description::well_known::Rfc3339, macros::datetime};

use crate::helpers::{
    Proxy, amqp_test_url, delete_bus_topology, http_client, random_bus_settings, require_broker,
};

/// The secret of every test connection.
pub const SECRET: &str = "whsec-test";

/// A receiver over the real broker with random names, served on a free port; the broker's names
/// are deleted when it is dropped.
pub struct Hook {
    pub url: String,
    pub consumer: Consumer,
    pub publisher: Publisher,
    settings: BusSettings,
}

impl Hook {
    /// A receiver for `connections` (id → scheme), each with [`SECRET`].
    pub async fn start(connections: &[(&str, Scheme)], settings: WebhookSettings) -> Hook {
        let url = amqp_test_url();
        require_broker(&url);
        let bus_settings = random_bus_settings(&[Duration::from_secs(1)]);
        let (publisher, consumer) = bus::connect(&url, &bus_settings).await.expect("the broker is up");
        let hook = Hook::serve(connections, settings, publisher.clone(), "127.0.0.1:0").await;
        Hook { url: hook, consumer, publisher, settings: bus_settings }
    }

    /// Serves a receiver publishing with `publisher` on `addr`; returns its base URL.
    pub async fn serve(
        connections: &[(&str, Scheme)],
        settings: WebhookSettings,
        publisher: Publisher,
        addr: &str,
    ) -> String {
        let connections: HashMap<String, WebhookConnection> = connections
            .iter()
            .map(|(id, scheme)| {
                ((*id).to_owned(), WebhookConnection { scheme: *scheme, secret: Some(SECRET.into()) })
            })
            .collect();
        let receiver = WebhookReceiver::new(connections, publisher, settings);
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router = receiver.router();
        tokio::spawn(async move { axum::serve(listener, router).await });
        url
    }

    /// POSTs `body` with `headers` to `/webhooks/{connection}`; the status and the JSON answer.
    pub async fn post(&self, connection: &str, headers: HeaderMap, body: Vec<u8>) -> (u16, Value) {
        post(&self.url, connection, headers, body).await
    }

    /// The next event on the work queue.
    pub async fn next_event(&mut self) -> TicketEvent {
        let delivery = tokio::time::timeout(Duration::from_secs(10), self.consumer.next())
            .await
            .expect("an event arrives")
            .expect("the consumer runs")
            .expect("a delivery");
        let event = delivery.event.clone().expect("a ticket event");
        delivery.ack().await.unwrap();
        event
    }

    /// Publishes a marker event and returns the events that arrive before it: what the requests
    /// made so far published (the queue keeps order).
    pub async fn published_so_far(&mut self) -> Vec<TicketEvent> {
        let marker = TicketEvent::new(EventKind::TicketCreated, "marker", "0", EventSource::Manual);
        self.publisher.publish(&marker).await.unwrap();
        let mut before = Vec::new();
        loop {
            let event = self.next_event().await;
            if event == marker {
                return before;
            }
            before.push(event);
        }
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        delete_bus_topology(&amqp_test_url(), &self.settings);
    }
}

/// POSTs `body` with `headers` to `{base}/webhooks/{connection}`.
pub async fn post(base: &str, connection: &str, headers: HeaderMap, body: Vec<u8>) -> (u16, Value) {
    let response = http_client()
        .post(format!("{base}/webhooks/{connection}"))
        .headers(headers)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A Unified delivery of `tickets` for subscription `event`, signed as the sandbox signs.
pub fn unified_delivery(event: &str, tickets: Value) -> Vec<u8> {
    let sig = sign_delivery(SECRET, &tickets, "nonce-1");
    json!({"data": tickets, "nonce": "nonce-1", "sig": sig, "type": "VIRTUAL",
           "webhook": {"id": "wh-1", "connection_id": "demo", "object_type": "ticketing_ticket", "event": event,
                       "hook_url": "http://127.0.0.1/webhooks/demo", "webhook_type": "virtual"}})
    .to_string()
    .into_bytes()
}

fn ticket(id: &str, created: &str, updated: &str) -> Value {
    json!({"id": id, "subject": "Charged twice", "status": "ACTIVE", "created_at": created, "updated_at": updated})
}

fn at(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap()
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    pairs.iter().map(|(k, v)| (axum::http::HeaderName::from_static(k), v.parse().unwrap())).collect()
}

fn hmac_sha256_b64(parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    parts.iter().for_each(|p| mac.update(p));
    STANDARD.encode(mac.finalize().into_bytes())
}

fn hmac_sha1_hex(body: &[u8]) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[tokio::test]
async fn a_signed_unified_delivery_publishes_each_ticket_and_a_duplicate_has_the_same_ids() {
    let mut hook = Hook::start(&[("demo", Scheme::Unified)], WebhookSettings::default()).await;
    let tickets = json!([
        ticket("2001", "2026-03-01T10:00:00Z", "2026-03-01T10:00:00Z"),
        ticket("2002", "2026-03-01T10:05:00Z", "2026-03-01T10:05:00.250Z")
    ]);
    let body = unified_delivery("created", tickets);

    let (status, answer) = hook.post("demo", HeaderMap::new(), body.clone()).await;
    assert_eq!(
        (status, &answer),
        (200, &json!({"published": 2, "unrouted": 0, "ignored": 0, "own_writes": 0}))
    );
    let expected: Vec<TicketEvent> = [("2001", "2026-03-01T10:00:00Z"), ("2002", "2026-03-01T10:05:00.250Z")]
        .iter()
        .map(|(id, t)| {
            TicketEvent::observed(EventKind::TicketCreated, "demo", *id, at(t), EventSource::Webhook)
        })
        .collect();
    let mut first = vec![hook.next_event().await, hook.next_event().await];
    first.sort_by(|a, b| a.ticket_id.cmp(&b.ticket_id));
    assert_eq!(first, expected);

    // The sender retries a delivery it thinks failed: the same events, which the ledger drops.
    assert_eq!(hook.post("demo", HeaderMap::new(), body).await.0, 200);
    let mut again = vec![hook.next_event().await, hook.next_event().await];
    again.sort_by(|a, b| a.ticket_id.cmp(&b.ticket_id));
    assert_eq!(again, expected);
}

#[tokio::test]
async fn updates_go_to_the_outcomes_queue_and_other_objects_are_accepted_without_work() {
    let mut hook = Hook::start(&[("demo", Scheme::Unified)], WebhookSettings::default()).await;
    let body =
        unified_delivery("updated", json!([ticket("2001", "2026-03-01T10:00:00Z", "2026-03-02T09:00:00Z")]));
    let (status, answer) = hook.post("demo", HeaderMap::new(), body).await;
    // ticket.updated is bound to the outcomes queue (what people set is recorded there).
    assert_eq!(
        (status, answer),
        (200, json!({"published": 1, "unrouted": 0, "ignored": 0, "own_writes": 0}))
    );
    let notes = json!([{"id": "n1", "ticket_id": "2001", "description": "hi"}]);
    let sig = sign_delivery(SECRET, &notes, "n");
    let body = json!({"data": notes, "nonce": "n", "sig": sig, "type": "NATIVE",
                      "webhook": {"object_type": "ticketing_note", "event": "created"}});
    let (status, answer) = hook.post("demo", HeaderMap::new(), body.to_string().into_bytes()).await;
    assert_eq!(
        (status, answer),
        (200, json!({"published": 0, "unrouted": 0, "ignored": 1, "own_writes": 0}))
    );
    assert_eq!(hook.published_so_far().await, []);
}

#[tokio::test]
async fn each_backends_documented_delivery_publishes_its_event() {
    let mut hook = Hook::start(
        &[
            ("zd", Scheme::Zendesk),
            ("ic", Scheme::Intercom),
            ("fd", Scheme::Freshdesk),
            ("sn", Scheme::ServiceNow),
        ],
        WebhookSettings::default(),
    )
    .await;
    let now = OffsetDateTime::now_utc().format(&Rfc3339).unwrap();

    let zendesk = json!({"type": "zen:event-type:ticket.created", "account_id": 88888888, "id": "01HN",
                         "time": "2026-03-01T10:00:01Z", "zendesk_event_version": "2022-11-06",
                         "subject": "zen:ticket:35436",
                         "detail": {"id": "35436", "status": "Open", "created_at": "2026-03-01T10:00:00Z",
                                    "updated_at": "2026-03-01T10:00:00Z"}})
    .to_string()
    .into_bytes();
    let signature = hmac_sha256_b64(&[now.as_bytes(), &zendesk]);
    let zd_headers = headers(&[
        ("x-zendesk-webhook-signature", &signature),
        ("x-zendesk-webhook-signature-timestamp", &now),
    ]);
    assert_eq!(hook.post("zd", zd_headers, zendesk).await.0, 200);

    let intercom = json!({"type": "notification_event", "id": "notif_1", "topic": "ticket.created", "app_id": "a86dr8yl",
                          "created_at": 1_772_359_200, "delivery_attempts": 1, "first_sent_at": 1_772_359_200,
                          "data": {"type": "notification_event_data",
                                   "item": {"type": "ticket", "id": "633", "created_at": 1_772_359_200,
                                            "updated_at": 1_772_359_200}}})
    .to_string()
    .into_bytes();
    let ic_headers = headers(&[("x-hub-signature", &format!("sha1={}", hmac_sha1_hex(&intercom)))]);
    assert_eq!(hook.post("ic", ic_headers, intercom).await.0, 200);

    let freshdesk =
        br#"{"event":"ticket.created","ticket_id":"1001","updated_at":"2026-03-01T10:00:00Z"}"#.to_vec();
    assert_eq!(hook.post("fd", headers(&[("x-webhook-secret", SECRET)]), freshdesk).await.0, 200);

    let servicenow = br#"{"event":"incident.created","sys_id":"ef43c6d4","number":"INC0010001",
                          "sys_updated_on":"2026-03-01 10:00:00","operation":"insert"}"#
        .to_vec();
    let basic = format!("Basic {}", STANDARD.encode(format!("deskpilot:{SECRET}")));
    assert_eq!(hook.post("sn", headers(&[("authorization", &basic)]), servicenow).await.0, 200);

    let mut got: Vec<(String, String, OffsetDateTime)> = Vec::new();
    for _ in 0..4 {
        let e = hook.next_event().await;
        assert_eq!((e.kind, e.source), (EventKind::TicketCreated, EventSource::Webhook));
        got.push((e.connection_id, e.ticket_id, e.occurred_at));
    }
    got.sort();
    let t = datetime!(2026-03-01 10:00:00 UTC);
    assert_eq!(
        got,
        [
            ("fd".into(), "1001".into(), t),
            ("ic".into(), "633".into(), t),
            ("sn".into(), "ef43c6d4".into(), t),
            ("zd".into(), "35436".into(), t),
        ]
    );
}

/// The value of a counter series in the process's exposition (0 when absent).
fn counter(series: &str) -> f64 {
    let exposition = deskpilot::telemetry::metrics().expect("the recorder is ours").render();
    exposition.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok()).unwrap_or(0.0)
}

#[tokio::test]
async fn forged_unsigned_stale_tampered_and_oversized_requests_publish_nothing() {
    let settings = WebhookSettings { max_body_bytes: 4096, ..WebhookSettings::default() };
    let mut hook = Hook::start(&[("demo", Scheme::Unified), ("zd", Scheme::Zendesk)], settings).await;
    let reason = |r: &str, backend: &str| {
        format!("deskpilot_webhook_rejected_total{{backend=\"{backend}\",reason=\"{r}\"}}")
    };
    let series = [
        reason("bad_signature", "unified"),
        reason("missing_signature", "unified"),
        reason("missing_signature", "zendesk"),
        reason("stale", "zendesk"),
        reason("too_large", "unified"),
        reason("unknown_connection", "-"),
    ];
    let before: Vec<f64> = series.iter().map(|s| counter(s)).collect();

    let good =
        unified_delivery("created", json!([ticket("3001", "2026-03-01T10:00:00Z", "2026-03-01T10:00:00Z")]));
    let mut wrong: Value = serde_json::from_slice(&good).unwrap();
    wrong["sig"] = json!(sign_delivery("not-the-secret", &wrong["data"], "nonce-1"));
    let mut unsigned: Value = serde_json::from_slice(&good).unwrap();
    unsigned["sig"] = json!("");
    let tampered = String::from_utf8(good.clone()).unwrap().replace("3001", "3002").into_bytes();
    let mut oversized: Value = serde_json::from_slice(&good).unwrap();
    oversized["data"][0]["description"] = json!("x".repeat(5000));
    oversized["sig"] = json!(sign_delivery(SECRET, &oversized["data"], "nonce-1"));

    let zendesk = br#"{"type":"zen:event-type:ticket.created","detail":{"id":"1","updated_at":"2026-03-01T10:00:00Z"}}"#;
    let old = (OffsetDateTime::now_utc() - time::Duration::minutes(10)).format(&Rfc3339).unwrap();
    let stale = headers(&[
        ("x-zendesk-webhook-signature", &hmac_sha256_b64(&[old.as_bytes(), zendesk])),
        ("x-zendesk-webhook-signature-timestamp", &old),
    ]);

    let cases: Vec<(&str, &str, HeaderMap, Vec<u8>, u16)> = vec![
        ("wrong secret", "demo", HeaderMap::new(), wrong.to_string().into_bytes(), 401),
        ("unsigned", "demo", HeaderMap::new(), unsigned.to_string().into_bytes(), 401),
        ("tampered", "demo", HeaderMap::new(), tampered, 401),
        ("oversized", "demo", HeaderMap::new(), oversized.to_string().into_bytes(), 413),
        ("missing header", "zd", HeaderMap::new(), zendesk.to_vec(), 401),
        ("stale timestamp", "zd", stale, zendesk.to_vec(), 401),
        ("unknown connection", "nope", HeaderMap::new(), good.clone(), 404),
    ];
    for (what, connection, headers, body, want) in cases {
        let (status, answer) = hook.post(connection, headers, body).await;
        assert_eq!(status, want, "{what}: {answer}");
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()), "{what} says why: {answer}");
    }
    assert_eq!(hook.published_so_far().await, [], "a refused request publishes nothing");
    for (series, before) in series.iter().zip(before) {
        assert!(counter(series) >= before + 1.0, "{series} counts the refusal");
    }
    // The untouched delivery still goes through.
    assert_eq!(hook.post("demo", HeaderMap::new(), good).await.0, 200);
    assert_eq!(hook.next_event().await.ticket_id, "3001");
}

#[tokio::test]
async fn while_the_broker_is_away_deliveries_get_503_and_the_retry_is_published() {
    let mut hook = Hook::start(&[("demo", Scheme::Unified)], WebhookSettings::default()).await;
    // A second receiver whose publisher reaches the broker through a proxy that can cut it off.
    let proxy = Proxy::start(&amqp_test_url()).await;
    let (cut_off, mut unused) = bus::connect(&proxy.url, &hook.settings).await.unwrap();
    unused.close().await;
    let url =
        Hook::serve(&[("demo", Scheme::Unified)], WebhookSettings::default(), cut_off, "127.0.0.1:0").await;
    let body =
        unified_delivery("created", json!([ticket("4001", "2026-03-01T10:00:00Z", "2026-03-01T10:00:00Z")]));

    proxy.set_up(false);
    let cut = std::time::Instant::now();
    let response =
        http_client().post(format!("{url}/webhooks/demo")).body(body.clone()).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 503, "the sender is told to try again");
    assert_eq!(response.headers()["retry-after"], "5");
    // Away long enough for lapin's own reconnection to give up (5 tries, at most 2 s apart): its
    // connection then still reads as reconnecting, and only the bus's repair brings it back.
    tokio::time::sleep(Duration::from_secs(20).saturating_sub(cut.elapsed())).await;

    // The helpdesk sends the delivery again (Unified retries for hours) until it is taken.
    proxy.set_up(true);
    let started = std::time::Instant::now();
    loop {
        let (status, answer) = post(&url, "demo", HeaderMap::new(), body.clone()).await;
        if status == 200 {
            assert_eq!(answer["published"], 1);
            break;
        }
        assert_eq!(status, 503, "{answer}");
        // Reconnecting backs off up to 10 s per try; a loaded machine adds to that.
        assert!(started.elapsed() < Duration::from_secs(90), "the receiver never recovered: {answer}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let event = hook.next_event().await;
    assert_eq!((event.ticket_id.as_str(), event.kind), ("4001", EventKind::TicketCreated));
    // At least once: a retry whose confirm was lost meanwhile is a copy with the same id.
    let copies = hook.published_so_far().await;
    assert!(copies.iter().all(|e| e.event_id == event.event_id), "{copies:?}");
}
