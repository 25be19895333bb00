//! The sandbox helpdesk over real HTTP, checked against unified-ticketing.md §2, §3 and §7.
//!
//! Most tests run on the small fixture `tests/fixtures/sandbox/mini.json` (connection `mini`);
//! paging runs on 150 generated tickets. Every JSON body that comes back is checked for `null`s
//! and for dates that are not RFC 3339 UTC with `Z` (see [`assert_wire_clean`]).

use std::{path::PathBuf, time::Duration};

use deskpilot::sandbox::{self, RunningSandbox, SandboxOptions, sign_delivery};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

const KEY: &str = "test-key";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sandbox")
}

fn options(data_dir: PathBuf) -> SandboxOptions {
    SandboxOptions { data_dir: Some(data_dir), api_key: KEY.into(), ..SandboxOptions::default() }
}

struct TestApp {
    sb: RunningSandbox,
    http: reqwest::Client,
}

impl TestApp {
    async fn start(opts: SandboxOptions) -> Self {
        Self { sb: sandbox::spawn(opts).await.expect("sandbox starts"), http: crate::helpers::http_client() }
    }

    async fn mini() -> Self {
        Self::start(options(fixtures())).await
    }

    /// Sends an authorised request; returns the status and the body (`Value::Null` when empty).
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.sb.base_url)).bearer_auth(KEY);
        if let Some(body) = body {
            req = req.json(&body);
        }
        read(req.send().await.unwrap()).await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self.call(method, path, body).await;
        assert_eq!(status, StatusCode::OK, "{path}: {value}");
        value
    }

    async fn ids(&self, path: &str) -> Vec<String> {
        let list = self.ok(Method::GET, path, None).await;
        list.as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_owned()).collect()
    }
}

async fn read(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.unwrap();
    if text.is_empty() {
        return (status, Value::Null);
    }
    let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert_wire_clean(&value, "$");
    (status, value)
}

/// No `null` anywhere; every `*_at` outside `raw` is RFC 3339 ending in `Z`.
fn assert_wire_clean(v: &Value, path: &str) {
    match v {
        Value::Null => panic!("null at {path}"),
        Value::Array(items) => {
            items.iter().enumerate().for_each(|(i, x)| assert_wire_clean(x, &format!("{path}[{i}]")))
        }
        Value::Object(map) => {
            for (k, x) in map {
                if k.ends_with("_at") && !path.contains(".raw") {
                    let s = x.as_str().unwrap_or_else(|| panic!("{path}.{k} is not a string"));
                    assert!(s.ends_with('Z'), "{path}.{k} = {s}");
                    OffsetDateTime::parse(s, &Rfc3339).unwrap_or_else(|e| panic!("{path}.{k} = {s}: {e}"));
                }
                assert_wire_clean(x, &format!("{path}.{k}"));
            }
        }
        _ => {}
    }
}

fn at(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().unwrap(), &Rfc3339).unwrap()
}

#[tokio::test]
async fn lists_are_bare_arrays_in_id_order() {
    let app = TestApp::mini().await;
    let list = app.ok(Method::GET, "/ticketing/mini/ticket", None).await;
    assert!(list.is_array(), "{list}");
    assert_eq!(app.ids("/ticketing/mini/ticket").await, ["99", "101", "102", "103", "104", "105"]);
    assert_eq!(app.ids("/ticketing/mini/note").await, ["n-1", "n-2", "n-3", "n-10"]);
    assert_eq!(app.ids("/ticketing/mini/category?parent_id=cat-billing").await, ["cat-refunds"]);
    assert_eq!(app.ids("/ticketing/mini/ticket?customer_id=c-2&user_id=u-1").await, ["105"]);
    assert_eq!(app.ids("/ticketing/mini/note?customer_id=c-1").await, ["n-1"]);
    assert_eq!(app.ids("/ticketing/mini/customer?query=NAVY.example").await, ["c-2"]);
    assert_eq!(app.ids("/ticketing/mini/ticket?query=card&unknown=1").await, ["101"]);
}

#[tokio::test]
async fn limit_and_offset_page_over_more_than_100_tickets() {
    let dir = tempfile::tempdir().unwrap();
    let tickets: Vec<Value> = (1..=150)
        .map(|i| {
            json!({"id": i.to_string(), "subject": format!("Ticket {i}"),
                        "updated_at": format!("2026-10-01T00:00:{:02}Z", i % 60)})
        })
        .collect();
    std::fs::write(dir.path().join("big.json"), json!({ "tickets": tickets }).to_string()).unwrap();
    let app = TestApp::start(options(dir.path().to_owned())).await;

    assert_eq!(app.ids("/ticketing/big/ticket").await.len(), 100, "default page is 100");
    assert_eq!(app.ids("/ticketing/big/ticket?limit=500").await.len(), 100, "limit is capped at 100");
    let tail = app.ids("/ticketing/big/ticket?offset=100").await;
    assert_eq!((tail.len(), tail[0].as_str()), (50, "101"));
    assert!(app.ids("/ticketing/big/ticket?offset=150").await.is_empty());

    let mut seen = Vec::new();
    loop {
        let page = app.ids(&format!("/ticketing/big/ticket?limit=40&offset={}", seen.len())).await;
        let short = page.len() < 40;
        seen.extend(page);
        if short {
            break;
        }
    }
    assert_eq!(seen, (1..=150).map(|i| i.to_string()).collect::<Vec<_>>(), "pages tile the list");

    let (status, err) = app.get("/ticketing/big/ticket?limit=ten").await;
    assert_eq!((status, err["status"].as_u64()), (StatusCode::BAD_REQUEST, Some(400)));
}

#[tokio::test]
async fn updated_gte_is_inclusive_and_rejects_bad_dates() {
    let app = TestApp::mini().await;
    assert_eq!(
        app.ids("/ticketing/mini/ticket?updated_gte=2026-11-04T12:00:00Z").await,
        ["103", "104", "105"]
    );
    // 09:00:00.250Z written with an offset; `+` encoded as %2B.
    let ids = app.ids("/ticketing/mini/ticket?updated_gte=2026-11-03T10:00:00.250%2B01:00").await;
    assert_eq!(ids, ["102", "103", "104", "105"]);

    let (status, err) = app.get("/ticketing/mini/ticket?updated_gte=2026-11-04").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = err["error"].as_str().unwrap();
    assert!(message.contains("updated_gte") && message.contains("RFC 3339"), "{message}");
    assert_eq!(err["status"], 400);
}

#[tokio::test]
async fn sort_and_order() {
    let app = TestApp::mini().await;
    let by_update = app.ids("/ticketing/mini/ticket?sort=updated_at&order=desc").await;
    assert_eq!(by_update, ["105", "104", "103", "102", "101", "99"]);
    assert_eq!(app.ids("/ticketing/mini/ticket?sort=created_at").await[0], "99");
    assert_eq!(app.ids("/ticketing/mini/customer?sort=name").await, ["c-1", "c-3", "c-2"]);
    assert_eq!(
        app.ids("/ticketing/mini/category?sort=name&order=DESC").await,
        ["cat-refunds", "cat-bug", "cat-billing"]
    );
    assert_eq!(app.get("/ticketing/mini/ticket?sort=priority").await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn fields_repeated_comma_and_mixed() {
    let app = TestApp::mini().await;
    for q in [
        "fields=id&fields=subject&fields=status",
        "fields=id,subject,status",
        "fields=id&fields=subject,status",
    ] {
        let list = app.ok(Method::GET, &format!("/ticketing/mini/ticket?{q}"), None).await;
        for t in list.as_array().unwrap() {
            let mut keys: Vec<_> = t.as_object().unwrap().keys().cloned().collect();
            keys.sort();
            assert_eq!(keys, ["id", "status", "subject"], "{q}: {t}");
        }
    }
    let one = app.ok(Method::GET, "/ticketing/mini/customer/c-1?fields=name", None).await;
    assert_eq!(one, json!({"name": "Ada Lovelace"}));
    let patched = app
        .ok(Method::PATCH, "/ticketing/mini/ticket/104?fields=priority", Some(json!({"priority": "low"})))
        .await;
    assert_eq!(patched, json!({"priority": "low"}));
}

#[tokio::test]
async fn raw_only_on_request() {
    let app = TestApp::mini().await;
    let plain = app.ok(Method::GET, "/ticketing/mini/ticket/101?raw=foo%3Dbar%26zoo%3Dbar", None).await;
    assert!(plain.get("raw").is_none() && plain["subject"] == "Charged twice for March", "{plain}");
    let list = app.ok(Method::GET, "/ticketing/mini/ticket", None).await;
    assert!(list.as_array().unwrap().iter().all(|t| t.get("raw").is_none()));

    let with_raw = app.ok(Method::GET, "/ticketing/mini/ticket/101?fields=id,raw", None).await;
    // The fixture's `"region": null` is dropped: nothing the sandbox sends contains null.
    assert_eq!(with_raw, json!({"id": "101", "raw": {"via": "email", "custom_fields": {"plan": "pro"}}}));
}

#[tokio::test]
async fn auth_is_required() {
    let app = TestApp::mini().await;
    let url = format!("{}/ticketing/mini/ticket", app.sb.base_url);
    for auth in [None, Some("Bearer wrong"), Some(KEY), Some("Basic dGVzdC1rZXk=")] {
        let mut req = app.http.get(&url);
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        let (status, err) = read(resp).await;
        assert_eq!((status, err["status"].as_u64()), (StatusCode::UNAUTHORIZED, Some(401)), "{auth:?}");
        assert!(!err["error"].as_str().unwrap().is_empty());
    }
    let lower = app.http.get(&url).header("authorization", format!("bearer {KEY}")).send().await.unwrap();
    assert_eq!(lower.status(), StatusCode::OK);
    // Auth comes before the connection check, and /health needs none.
    let other = app.http.get(format!("{}/ticketing/nope/ticket", app.sb.base_url)).send().await.unwrap();
    assert_eq!(other.status(), StatusCode::UNAUTHORIZED);
    let health = app.http.get(format!("{}/health", app.sb.base_url)).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test]
async fn unknown_connections_ids_and_routes_are_404() {
    let app = TestApp::mini().await;
    let cases = [
        (Method::GET, "/ticketing/nope/ticket"),
        (Method::POST, "/ticketing/nope/note"),
        (Method::GET, "/ticketing/mini/ticket/404"),
        (Method::GET, "/ticketing/mini/customer/c-404"),
        (Method::GET, "/ticketing/mini/note/n-404"),
        (Method::GET, "/ticketing/mini/category/cat-404"),
        (Method::PATCH, "/ticketing/mini/ticket/404"),
        (Method::DELETE, "/ticketing/mini/note/n-404"),
        (Method::GET, "/ticketing/mini/widget"),
    ];
    for (method, path) in cases {
        let (status, err) = app.call(method.clone(), path, Some(json!({"ticket_id": "101"}))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(err["status"], 404, "{method} {path}: {err}");
    }
    let (status, err) = app.get("/ticketing/nope/ticket/101").await;
    assert_eq!((status, err["error"].as_str()), (StatusCode::NOT_FOUND, Some("connection nope not found")));
}

#[tokio::test]
async fn creating_a_note_lists_it_and_bumps_its_ticket() {
    let app = TestApp::mini().await;
    let before = app.ok(Method::GET, "/ticketing/mini/ticket/102", None).await;
    let body = json!({"ticket_id": "102", "description": "Draft reply", "user_id": "u-9", "id": "mine"});
    let note = app.ok(Method::POST, "/ticketing/mini/note", Some(body)).await;
    assert_eq!(note["id"], "n-11", "ids continue the n-<number> sequence; a client id is ignored");
    assert_eq!((&note["ticket_id"], &note["description"]), (&json!("102"), &json!("Draft reply")));
    assert_eq!(note["created_at"], note["updated_at"]);

    assert_eq!(app.ids("/ticketing/mini/note?ticket_id=102").await, ["n-3", "n-11"]);
    let after = app.ok(Method::GET, "/ticketing/mini/ticket/102", None).await;
    assert!(at(&after["updated_at"]) > at(&before["updated_at"]));
    assert_eq!(at(&after["updated_at"]), at(&note["created_at"]));
    let desk = app.sb.snapshot("mini").await.unwrap();
    assert_eq!(desk.notes["n-11"].user_id.as_deref(), Some("u-9"));

    let (status, err) =
        app.call(Method::POST, "/ticketing/mini/note", Some(json!({"description": "x"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(err["error"].as_str().unwrap().contains("ticket_id"), "{err}");
    let (status, _) = app.call(Method::POST, "/ticketing/mini/note", Some(json!({"ticket_id": "7"}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let resp = app
        .http
        .post(format!("{}/ticketing/mini/note", app.sb.base_url))
        .bearer_auth(KEY)
        .body("{oops")
        .send();
    let (status, err) = read(resp.await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(err["error"].as_str().unwrap().contains("key must be a string at line 1 column 2"), "{err}");
}

#[tokio::test]
async fn put_and_patch_merge_and_close() {
    let app = TestApp::mini().await;
    let before = app.ok(Method::GET, "/ticketing/mini/ticket/101", None).await;
    let patch =
        json!({"priority": "urgent", "tags": ["billing", "deskpilot"], "created_at": "2000-01-01T00:00:00Z"});
    let after = app.ok(Method::PATCH, "/ticketing/mini/ticket/101", Some(patch)).await;
    assert_eq!((&after["priority"], &after["tags"]), (&json!("urgent"), &json!(["billing", "deskpilot"])));
    for kept in ["subject", "description", "customer_id", "status", "created_at"] {
        assert_eq!(after[kept], before[kept], "{kept} survives a partial update");
    }
    assert!(at(&after["updated_at"]) > at(&before["updated_at"]));
    let unchanged =
        app.ok(Method::PATCH, "/ticketing/mini/ticket/101", Some(json!({"priority": "urgent"}))).await;
    assert_eq!(unchanged, after, "a write that changes nothing is a no-op");

    let closed = app.ok(Method::PUT, "/ticketing/mini/ticket/101", Some(json!({"status": "CLOSED"}))).await;
    assert_eq!((&closed["status"], &closed["priority"]), (&json!("CLOSED"), &json!("urgent")));
    assert!(closed["closed_at"].is_string(), "closing sets closed_at");
    let cleared = app.ok(Method::PATCH, "/ticketing/mini/ticket/101", Some(json!({"user_id": null}))).await;
    assert!(cleared.get("user_id").is_none(), "null clears a field: {cleared}");

    let (status, err) =
        app.call(Method::PATCH, "/ticketing/mini/ticket/101", Some(json!({"priority": 3}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(err["error"].as_str().unwrap().contains("invalid type: integer `3`, expected a string"), "{err}");
    assert_eq!(
        app.ok(Method::GET, "/ticketing/mini/ticket/101", None).await,
        cleared,
        "a bad write changes nothing"
    );
}

#[tokio::test]
async fn created_tickets_get_ids_and_deleted_ones_go_with_their_notes() {
    let app = TestApp::mini().await;
    let body = json!({"subject": "New one", "customer_id": "c-3", "raw": {"channel": "chat"}});
    let t = app
        .ok(Method::POST, "/ticketing/mini/ticket?fields=id,status,created_at,updated_at", Some(body))
        .await;
    assert_eq!((&t["id"], &t["status"]), (&json!("106"), &json!("ACTIVE")));
    assert_eq!(t["created_at"], t["updated_at"]);
    assert!(t["created_at"].as_str().unwrap().ends_with('Z'));

    assert_eq!(app.ok(Method::DELETE, "/ticketing/mini/ticket/101", None).await, Value::Null, "empty body");
    assert_eq!(app.get("/ticketing/mini/ticket/101").await.0, StatusCode::NOT_FOUND);
    assert!(app.ids("/ticketing/mini/note?ticket_id=101").await.is_empty());
    let c = app.ok(Method::POST, "/ticketing/mini/category", Some(json!({"name": "Shipping"}))).await;
    assert_eq!(c["id"], "category-1");
}

#[tokio::test]
async fn no_response_contains_null_and_dates_are_rfc3339_utc() {
    let app = TestApp::mini().await;
    let mut checked = 0;
    for kind in ["ticket", "customer", "note", "category"] {
        for q in ["", "?fields=raw,id,created_at,updated_at,closed_at"] {
            // `read` walks every body (panicking on a null or a bad date); count what it saw.
            let list = app.ok(Method::GET, &format!("/ticketing/mini/{kind}{q}"), None).await;
            checked += list.as_array().unwrap().len();
        }
    }
    assert_eq!(checked, 2 * (6 + 3 + 4 + 3));
    let t = app.ok(Method::GET, "/ticketing/mini/ticket/102", None).await;
    assert_eq!(t["updated_at"], "2026-11-03T09:00:00.25Z", "offsets are normalised to UTC");
}

async fn received_bodies(server: &MockServer, n: usize) -> Vec<Value> {
    for _ in 0..100 {
        let requests = server.received_requests().await.unwrap();
        if requests.len() >= n {
            return requests.iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} webhook deliveries arrived");
}

#[tokio::test]
async fn webhooks_are_delivered_signed() {
    let hook = MockServer::start().await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path("/hook"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&hook)
        .await;
    let opts = SandboxOptions {
        webhook_url: Some(format!("{}/hook", hook.uri())),
        webhook_secret: Some("s3cret".into()),
        ..options(fixtures())
    };
    let app = TestApp::start(opts).await;
    app.ok(Method::POST, "/ticketing/mini/ticket", Some(json!({"subject": "Hook me"}))).await;
    app.ok(Method::PATCH, "/ticketing/mini/ticket/101", Some(json!({"priority": "low"}))).await;
    app.ok(Method::POST, "/ticketing/mini/note", Some(json!({"ticket_id": "102", "description": "hi"})))
        .await;

    let bodies = received_bodies(&hook, 3).await;
    let seen: Vec<(&str, &str)> = bodies
        .iter()
        .map(|b| (b["webhook"]["event"].as_str().unwrap(), b["data"][0]["id"].as_str().unwrap()))
        .collect();
    assert_eq!(seen, [("created", "106"), ("updated", "101"), ("updated", "102")]);
    for body in &bodies {
        assert_wire_clean(body, "$");
        let nonce = body["nonce"].as_str().unwrap();
        assert!(!nonce.is_empty());
        assert_eq!(body["sig"].as_str().unwrap(), sign_delivery("s3cret", &body["data"], nonce));
        assert_eq!(body["type"], "VIRTUAL");
        let w = &body["webhook"];
        assert_eq!(
            (&w["object_type"], &w["webhook_type"], &w["connection_id"]),
            (&json!("ticketing_ticket"), &json!("virtual"), &json!("mini"))
        );
        assert!(body["data"][0].get("raw").is_none());
    }
    assert_eq!(bodies[0]["webhook"]["id"], "sandbox-mini-ticketing_ticket-created");
}

#[tokio::test]
async fn failed_webhook_deliveries_are_retried_and_unsigned_without_a_secret() {
    let hook = MockServer::start().await;
    Mock::given(matchers::method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&hook)
        .await;
    Mock::given(matchers::method("POST")).respond_with(ResponseTemplate::new(200)).mount(&hook).await;
    let opts = SandboxOptions { webhook_url: Some(hook.uri()), ..options(fixtures()) };
    let app = TestApp::start(opts).await;
    app.ok(Method::PATCH, "/ticketing/mini/ticket/103", Some(json!({"status": "ACTIVE"}))).await;
    let bodies = received_bodies(&hook, 2).await;
    assert_eq!(bodies[0], bodies[1], "the retry resends the same delivery");
    assert_eq!(bodies[0]["sig"], "");
}

#[tokio::test]
async fn state_persists_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let opts = SandboxOptions { state: Some(state.clone()), ..options(fixtures()) };
    let first = TestApp::start(opts.clone()).await;
    first.ok(Method::POST, "/ticketing/mini/ticket", Some(json!({"subject": "Persist me"}))).await;
    first.ok(Method::PATCH, "/ticketing/mini/ticket/101", Some(json!({"priority": "low"}))).await;
    first.ok(Method::DELETE, "/ticketing/mini/ticket/106", None).await;
    first.sb.stop().await.unwrap();
    assert!(state.exists());

    let second = TestApp::start(opts).await;
    assert_eq!(second.ok(Method::GET, "/ticketing/mini/ticket/101", None).await["priority"], "low");
    assert_eq!(second.get("/ticketing/mini/ticket/106").await.0, StatusCode::NOT_FOUND);
    let t = second.ok(Method::POST, "/ticketing/mini/ticket", Some(json!({"subject": "Next"}))).await;
    assert_eq!(t["id"], "107", "a deleted id is not handed out again, even after a restart");
}

#[tokio::test]
async fn a_bad_data_file_fails_at_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.json"), r#"{"tickets": [{"id": "1", "tags": "urgent"}]}"#)
        .unwrap();
    let err = sandbox::spawn(options(dir.path().to_owned())).await.unwrap_err().to_string();
    assert!(
        err.contains("broken.json") && err.contains("invalid type: string \"urgent\", expected a sequence"),
        "{err}"
    );
}

#[tokio::test]
async fn bundled_data_is_served_clean() {
    let app = TestApp::start(SandboxOptions { api_key: KEY.into(), ..SandboxOptions::default() }).await;
    assert_eq!(app.sb.connections().await, ["acme-retail", "demo"]);
    for connection in ["demo", "acme-retail"] {
        for kind in ["ticket", "customer", "note", "category"] {
            let mut offset = 0;
            loop {
                // `read` rejects any null or non-UTC date, raw included.
                let path =
                    format!("/ticketing/{connection}/{kind}?fields=raw&fields=id,updated_at&offset={offset}");
                let n = app.ok(Method::GET, &path, None).await.as_array().unwrap().len();
                offset += n;
                if n < 100 {
                    break;
                }
            }
            assert!(offset > 0, "{connection} has no {kind}");
        }
    }
    let ticket = app.ids("/ticketing/demo/ticket?limit=1").await.remove(0);
    let note = app
        .ok(Method::POST, "/ticketing/demo/note", Some(json!({"ticket_id": ticket, "description": "x"})))
        .await;
    assert_eq!(note["id"], "n-00268", "new ids keep the sample data's zero-padded sequence");
}

#[tokio::test]
async fn webhook_subscriptions_are_managed_and_receive_their_events_signed() {
    let hook = MockServer::start().await;
    Mock::given(matchers::method("POST")).respond_with(ResponseTemplate::new(200)).mount(&hook).await;
    let opts = SandboxOptions { webhook_secret: Some("workspace".into()), ..options(fixtures()) };
    let app = TestApp::start(opts).await;
    let hook_url = format!("{}/webhooks/mini", hook.uri());
    let new = |connection: &str, object_type: &str, event: &str| json!({"connection_id": connection, "hook_url": hook_url, "object_type": object_type, "event": event});
    for (body, status) in [
        (new("mini", "crm_contact", "updated"), StatusCode::BAD_REQUEST),
        (new("mini", "ticketing_ticket", "touched"), StatusCode::BAD_REQUEST),
        (
            json!({"connection_id": "mini", "object_type": "ticketing_ticket", "event": "updated"}),
            StatusCode::BAD_REQUEST,
        ),
        (new("nope", "ticketing_ticket", "updated"), StatusCode::NOT_FOUND),
    ] {
        let (got, answer) = app.call(Method::POST, "/unified/webhook", Some(body)).await;
        assert_eq!(got, status, "{answer}");
    }
    let sub =
        app.ok(Method::POST, "/unified/webhook", Some(new("mini", "ticketing_ticket", "updated"))).await;
    let id = sub["id"].as_str().unwrap().to_owned();
    assert_eq!((sub["webhook_type"].as_str(), sub["is_paused"].as_bool()), (Some("virtual"), Some(false)));
    assert_eq!(app.ok(Method::GET, "/unified/webhook?connection_id=mini", None).await, json!([sub]));
    assert_eq!(app.ok(Method::GET, &format!("/unified/webhook/{id}"), None).await, sub);
    assert_eq!(app.ok(Method::GET, "/unified/webhook?connection_id=other", None).await, json!([]));

    app.ok(Method::PATCH, "/ticketing/mini/ticket/103", Some(json!({"priority": "high"}))).await;
    let body = received_bodies(&hook, 1).await.remove(0);
    assert_eq!(body["webhook"], sub, "the delivery carries its subscription");
    assert_eq!(body["data"][0]["id"], "103");
    let nonce = body["nonce"].as_str().unwrap();
    assert_eq!(body["sig"], sign_delivery("workspace", &body["data"], nonce));

    assert_eq!(app.call(Method::DELETE, &format!("/unified/webhook/{id}"), None).await.0, StatusCode::OK);
    assert_eq!(app.get(&format!("/unified/webhook/{id}")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.call(Method::GET, "/unified/webhook", None).await.1, json!([]));
}
