//! Property: whatever body and headers arrive at any webhook route, the receiver answers (no
//! panic, no hang), refuses with a 4xx, and publishes nothing.

use std::collections::HashMap;

use deskpilot::{
    bus::{BusSettings, memory::MemoryBus},
    ingest::webhook::{Scheme, WebhookConnection, WebhookReceiver, WebhookSettings},
};
use proptest::{prelude::*, test_runner::TestRunner};
use serde_json::{Map, Value};

/// Every route: one connection per backend, and one that does not exist.
const ROUTES: [&str; 6] = ["unified", "zendesk", "intercom", "freshdesk", "servicenow", "unknown"];

/// The headers the schemes read, plus a few others.
const HEADER_NAMES: [&str; 8] = [
    "x-zendesk-webhook-signature",
    "x-zendesk-webhook-signature-timestamp",
    "x-hub-signature",
    "x-webhook-secret",
    "authorization",
    "content-length",
    "content-type",
    "x-anything",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[ -~]{0,24}".prop_map(Value::String),
        Just(Value::String("2026-03-01T10:00:00Z".into())),
        Just(Value::String("ticketing_ticket".into())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "data",
                        "sig",
                        "nonce",
                        "webhook",
                        "type",
                        "id",
                        "topic",
                        "detail",
                        "event",
                        "ticket_id",
                        "updated_at",
                        "object_type",
                        "item",
                        "sys_id"
                    ]),
                    inner
                ),
                0..6
            )
            .prop_map(|pairs| Value::Object(
                pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<Map<_, _>>()
            )),
        ]
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        // Larger than the cap.
        prop::collection::vec(any::<u8>(), 4097..6000),
    ]
}

fn headers() -> impl Strategy<Value = Vec<(&'static str, String)>> {
    let value = prop_oneof![
        "[ -~]{0,64}",
        "sha1=[0-9a-f]{40}",
        "Basic [A-Za-z0-9+/=]{4,40}",
        "Bearer [ -~]{0,20}",
        "[0-9]{1,7}"
    ];
    prop::collection::vec((prop::sample::select(HEADER_NAMES.to_vec()), value), 0..5)
}

#[test]
fn random_bodies_and_headers_at_every_route_publish_nothing_and_never_panic() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let bus = MemoryBus::new(BusSettings::default());
    let connections: HashMap<String, WebhookConnection> = ROUTES[..5]
        .iter()
        .map(|b| {
            (
                (*b).to_owned(),
                WebhookConnection { scheme: Scheme::for_backend(b).unwrap(), secret: Some("s3cret".into()) },
            )
        })
        .collect();
    let settings = WebhookSettings { max_body_bytes: 4096, ..WebhookSettings::default() };
    let receiver = WebhookReceiver::new(connections, bus.publisher(), settings);
    let url = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router = receiver.router();
        tokio::spawn(async move { axum::serve(listener, router).await });
        url
    });
    let client = crate::helpers::http_client();

    let mut runner = TestRunner::new(ProptestConfig { cases: 512, ..ProptestConfig::default() });
    let cases = (prop::sample::select(ROUTES.to_vec()), headers(), body());
    runner
        .run(&cases, |(route, headers, body)| {
            let status = rt.block_on(async {
                let mut request = client.post(format!("{url}/webhooks/{route}")).body(body.clone());
                for (name, value) in &headers {
                    // A value the HTTP client itself refuses never reaches the server.
                    if let Ok(value) = reqwest::header::HeaderValue::from_str(value)
                        && *name != "content-length"
                    {
                        request = request.header(*name, value);
                    }
                }
                request.send().await.map(|r| r.status().as_u16())
            });
            let status = status.map_err(|e| TestCaseError::fail(format!("no answer: {e}")))?;
            prop_assert!([400, 401, 404, 413].contains(&status), "status {status} for {route} {headers:?}");
            prop_assert_eq!(bus.ready(), 0, "published from a random request to {}", route);
            Ok(())
        })
        .unwrap();
}
