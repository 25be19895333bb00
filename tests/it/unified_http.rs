//! The Unified.to client's HTTP behaviour against a wiremock server: wire shapes, auth, error
//! classes, paging, retries and `Retry-After`.

use crate::helpers::fast_settings;
use std::time::Duration;

use deskpilot::{
    http::HttpSettings,
    ticketing::{
        ListQuery, NewNote, PageToken, TicketPatch, TicketReader, Ticketing, TicketingError, all_tickets,
        collect_all, unified::UnifiedClient,
    },
};
use serde_json::{Value, json};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{body_json, header, method, path, query_param, query_param_is_missing},
};

fn client(server: &MockServer) -> UnifiedClient {
    UnifiedClient::new(&server.uri(), "conn_1", "k3y".into(), &fast_settings()).unwrap()
}

fn ticket_json(id: &str) -> Value {
    json!({"id": id, "subject": "s", "status": "ACTIVE", "priority": "high", "tags": ["a"],
           "created_at": "2026-11-02T09:14:00.000Z", "updated_at": "2026-11-02T09:14:00Z"})
}

async fn requests_to(server: &MockServer, p: &str) -> usize {
    server.received_requests().await.unwrap().iter().filter(|r| r.url.path() == p).count()
}

#[tokio::test]
async fn list_sends_bearer_and_snake_case_params() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/ticketing/conn_1/ticket"))
        .and(header("authorization", "Bearer k3y"))
        .and(header("accept", "application/json"))
        .and(query_param("updated_gte", "2026-11-01T00:00:00Z"))
        .and(query_param("limit", "50"))
        .and(query_param("sort", "updated_at"))
        .and(query_param("order", "asc"))
        .and(query_param("fields", "id"))
        .and(query_param("fields", "subject"))
        .and(query_param("fields", "raw"))
        .and(query_param("customer_id", "c-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([ticket_json("1"), ticket_json("2")])))
        .expect(1)
        .mount(&server)
        .await;
    let q = ListQuery {
        limit: Some(50),
        customer_id: Some("c-1".into()),
        fields: vec!["id".into(), "subject".into(), "raw".into()],
        ..ListQuery::updated_since(time::macros::datetime!(2026-11-01 00:00 UTC))
    };
    let tickets = client(&server).list_tickets(&q).await.unwrap().items;
    assert_eq!(tickets.len(), 2);
    assert_eq!(tickets[1].id.as_deref(), Some("2"));
}

#[tokio::test]
async fn pages_are_read_by_offset_until_a_short_one() {
    let server = MockServer::start().await;
    for (offset, ids) in [(None, vec!["1", "2"]), (Some("2"), vec!["3"])] {
        let page =
            Mock::given(method("GET")).and(path("/ticketing/conn_1/ticket")).and(query_param("limit", "2"));
        let page = match offset {
            Some(o) => page.and(query_param("offset", o)),
            None => page.and(query_param_is_missing("offset")),
        };
        let body: Vec<Value> = ids.into_iter().map(ticket_json).collect();
        page.respond_with(ResponseTemplate::new(200).set_body_json(body)).expect(1).mount(&server).await;
    }
    let c = client(&server);
    let q = ListQuery { limit: Some(2), ..ListQuery::default() };
    let first = c.list_tickets(&q).await.unwrap();
    assert_eq!(first.next, Some(PageToken::Offset(2)), "a full page may have more after it");
    let second = c.list_tickets(&ListQuery { page: first.next, ..q.clone() }).await.unwrap();
    assert_eq!((second.items.len(), second.next), (1, None), "a short page is the last");
    server.reset().await;
    Mock::given(method("GET"))
        .and(query_param("limit", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([ticket_json("9")])))
        .expect(1)
        .mount(&server)
        .await;
    let all = collect_all(all_tickets(&c, q)).await.unwrap();
    assert_eq!(all.len(), 1);
}

#[tokio::test]
async fn ids_are_percent_encoded_path_segments() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/ticketing/conn%201/ticket/a%2Fb"))
        .respond_with(ResponseTemplate::new(200).set_body_json(ticket_json("a/b")))
        .expect(1)
        .mount(&server)
        .await;
    let c = UnifiedClient::new(&server.uri(), "conn 1", "k".into(), &fast_settings()).unwrap();
    assert_eq!(c.get_ticket("a/b").await.unwrap().id.as_deref(), Some("a/b"));
}

#[tokio::test]
async fn patch_and_note_bodies_have_no_nulls() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path("/ticketing/conn_1/ticket/7"))
        .and(body_json(json!({"priority": "urgent", "tags": ["vip", "outage"]})))
        .respond_with(ResponseTemplate::new(200).set_body_json(ticket_json("7")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/ticketing/conn_1/note"))
        .and(body_json(json!({"ticket_id": "7", "description": "draft"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "n1", "ticket_id": "7"})))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server);
    let patch = TicketPatch {
        priority: Some("urgent".into()),
        tags: Some(vec!["vip".into(), "outage".into()]),
        ..TicketPatch::default()
    };
    c.update_ticket("7", &patch).await.unwrap();
    let note = NewNote { ticket_id: "7".into(), description: "draft".into(), user_id: None, raw: None };
    assert_eq!(c.create_note(&note).await.unwrap().id.as_deref(), Some("n1"));
}

#[tokio::test]
async fn unauthorized_is_not_retried_and_hides_the_key() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"message": "bad token"})))
        .expect(1)
        .mount(&server)
        .await;
    let err = client(&server).get_ticket("1").await.unwrap_err();
    assert!(matches!(err, TicketingError::Unauthorized { .. }), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(text.contains("bad token") && !text.contains("k3y"), "{text}");
}

#[tokio::test]
async fn not_found_names_the_resource() {
    let server = MockServer::start().await;
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(404)).expect(1).mount(&server).await;
    let err = client(&server).get_customer("c-9").await.unwrap_err();
    assert!(matches!(&err, TicketingError::NotFound { resource } if resource == "customer c-9"), "{err:?}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn rate_limit_with_retry_after_waits_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(ticket_json("1")))
        .mount(&server)
        .await;
    let started = std::time::Instant::now();
    client(&server).get_ticket("1").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(950), "Retry-After was not honoured");
    assert_eq!(requests_to(&server, "/ticketing/conn_1/ticket/1").await, 2);
}

#[tokio::test]
async fn rate_limit_without_retry_after_backs_off_and_gives_up() {
    let server = MockServer::start().await;
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(429)).mount(&server).await;
    let err = client(&server).get_ticket("1").await.unwrap_err();
    assert!(matches!(err, TicketingError::RateLimited { retry_after: None }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(requests_to(&server, "/ticketing/conn_1/ticket/1").await, 4, "1 attempt + 3 retries");
}

/// A 429 that keeps coming with a short `Retry-After` must still stop after `max_retries`.
#[tokio::test]
async fn persistent_rate_limit_with_short_retry_after_stops_after_max_retries() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "0"))
        .mount(&server)
        .await;
    let err = client(&server).get_ticket("1").await.unwrap_err();
    assert!(matches!(err, TicketingError::RateLimited { retry_after: Some(d) } if d.is_zero()), "{err:?}");
    assert_eq!(requests_to(&server, "/ticketing/conn_1/ticket/1").await, 4, "1 attempt + 3 retries");
}

#[tokio::test]
async fn retry_after_beyond_the_cap_is_returned_not_slept() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "3600"))
        .mount(&server)
        .await;
    let err = client(&server).get_ticket("1").await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3600)));
    assert_eq!(requests_to(&server, "/ticketing/conn_1/ticket/1").await, 1);
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503).set_body_string("upstream down"))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&server)
        .await;
    let notes = client(&server).list_notes(&ListQuery::notes_of("1")).await.unwrap().items;
    assert!(notes.is_empty());
    assert_eq!(requests_to(&server, "/ticketing/conn_1/note").await, 3);
}

#[tokio::test]
async fn persistent_server_errors_end_transient() {
    let server = MockServer::start().await;
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(502)).mount(&server).await;
    let err = client(&server).get_ticket("1").await.unwrap_err();
    assert!(matches!(err, TicketingError::Transient { .. }), "{err:?}");
    assert_eq!(requests_to(&server, "/ticketing/conn_1/ticket/1").await, 4);
}

#[tokio::test]
async fn note_creation_is_not_resent_after_an_ambiguous_failure() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(500)).mount(&server).await;
    let note = NewNote { ticket_id: "1".into(), description: "d".into(), user_id: None, raw: None };
    let err = client(&server).create_note(&note).await.unwrap_err();
    assert!(err.is_retryable(), "the caller decides, with its ledger");
    assert_eq!(requests_to(&server, "/ticketing/conn_1/note").await, 1, "a 500 may have created the note");
}

#[tokio::test]
async fn note_creation_is_resent_after_a_rate_limit() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "n1"})))
        .mount(&server)
        .await;
    let note = NewNote { ticket_id: "1".into(), description: "d".into(), user_id: None, raw: None };
    client(&server).create_note(&note).await.unwrap();
    assert_eq!(requests_to(&server, "/ticketing/conn_1/note").await, 2);
}

#[tokio::test]
async fn timeouts_are_transient_and_retried_for_reads() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])).set_delay(Duration::from_secs(3)))
        .mount(&server)
        .await;
    let err = client(&server).list_tickets(&ListQuery::default()).await.unwrap_err();
    assert!(matches!(&err, TicketingError::Transient { detail } if detail.contains("timed out")), "{err:?}");
    assert_eq!(requests_to(&server, "/ticketing/conn_1/ticket").await, 4);
}

#[tokio::test]
async fn a_body_of_the_wrong_shape_is_invalid() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": []})))
        .mount(&server)
        .await;
    let err = client(&server).list_tickets(&ListQuery::default()).await.unwrap_err();
    assert!(
        matches!(&err, TicketingError::Invalid { detail } if detail.contains("/ticketing/conn_1/ticket")),
        "{err:?}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn categories_are_cached_until_invalidated() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/ticketing/conn_1/category"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{"id": "cat-1", "name": "Billing"}])))
        .mount(&server)
        .await;
    let c = client(&server);
    assert_eq!(c.list_categories().await.unwrap().len(), 1);
    assert_eq!(c.list_categories().await.unwrap().len(), 1);
    assert_eq!(requests_to(&server, "/ticketing/conn_1/category").await, 1);
    c.invalidate_categories().await;
    c.list_categories().await.unwrap();
    assert_eq!(requests_to(&server, "/ticketing/conn_1/category").await, 2);
}

#[tokio::test]
async fn a_bad_base_url_is_a_clear_error() {
    let err = UnifiedClient::new("api.unified.to", "c", "k".into(), &HttpSettings::default()).unwrap_err();
    assert!(err.to_string().contains("`api.unified.to` is not a valid URL"), "{err}");
}

#[tokio::test]
async fn requests_in_flight_are_capped_per_client() {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    // A server that counts the requests it is answering at once.
    #[derive(Clone, Default)]
    struct Gauge {
        now: Arc<AtomicUsize>,
        max: Arc<AtomicUsize>,
    }
    async fn slow_ticket(
        axum::extract::State(g): axum::extract::State<Gauge>,
        axum::extract::Path((_, id)): axum::extract::Path<(String, String)>,
    ) -> axum::Json<Value> {
        let now = g.now.fetch_add(1, Ordering::SeqCst) + 1;
        g.max.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        g.now.fetch_sub(1, Ordering::SeqCst);
        axum::Json(ticket_json(&id))
    }
    let gauge = Gauge::default();
    let app = axum::Router::new()
        .route("/ticketing/{connection}/ticket/{id}", axum::routing::get(slow_ticket))
        .with_state(gauge.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let settings = HttpSettings { max_concurrent_requests: 2, ..fast_settings() };
    let client = UnifiedClient::new(&format!("http://{addr}"), "conn_1", "k3y".into(), &settings).unwrap();
    let ids: Vec<String> = (0..8).map(|i| format!("t{i}")).collect();
    let tickets = futures::future::join_all(ids.iter().map(|id| client.get_ticket(id))).await;
    for (id, t) in ids.iter().zip(tickets) {
        assert_eq!(t.unwrap().id.as_deref(), Some(id.as_str()));
    }
    assert_eq!(gauge.max.load(Ordering::SeqCst), 2, "at most 2 requests reach the server at once");
}

/// An answer larger than `[http] max_response_mb` fails the call with what to raise, instead of
/// being read into memory, and is not sent again.
#[tokio::test]
async fn an_answer_over_the_size_cap_is_refused() {
    let server = MockServer::start().await;
    let mut huge = ticket_json("1");
    huge["description"] = json!("x".repeat(2 << 20));
    Mock::given(method("GET"))
        .and(path("/ticketing/conn_1/ticket/1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(&huge))
        .mount(&server)
        .await;
    let err = client(&server).get_ticket("1").await.unwrap_err();
    assert!(
        matches!(&err, TicketingError::Invalid { detail } if detail.contains("max_response_mb")),
        "{err}"
    );
    assert!(!err.is_retryable());
    assert_eq!(requests_to(&server, "/ticketing/conn_1/ticket/1").await, 1);
}

/// A 200 with HTML (a proxy's or a login page) says the URL is not the API, not a parse error.
#[tokio::test]
async fn html_instead_of_json_says_the_base_url_is_not_the_api() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/ticketing/conn_1/ticket/1"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw("<!DOCTYPE html><html><body>Sign in</body></html>", "text/html"),
        )
        .mount(&server)
        .await;
    let err = client(&server).get_ticket("1").await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("not JSON") && text.contains("<!DOCTYPE html>") && text.contains("base_url"),
        "{text}"
    );
    assert!(!err.is_retryable());
}

/// A backend that ignores `offset` (the first page again and again) ends the listing with an
/// error after the second page instead of walking forever.
#[tokio::test]
async fn a_backend_that_ignores_the_offset_ends_the_listing() {
    let server = MockServer::start().await;
    let page: Vec<Value> = (0..100).map(|i| ticket_json(&i.to_string())).collect();
    Mock::given(method("GET"))
        .and(path("/ticketing/conn_1/ticket"))
        .respond_with(ResponseTemplate::new(200).set_body_json(&page))
        .mount(&server)
        .await;
    let c = client(&server);
    let err = collect_all(all_tickets(&c, ListQuery::default())).await.unwrap_err();
    assert!(matches!(&err, TicketingError::Invalid { detail } if detail.contains("ignores")), "{err}");
    assert_eq!(requests_to(&server, "/ticketing/conn_1/ticket").await, 2);
}
