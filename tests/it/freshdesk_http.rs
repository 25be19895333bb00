//! The Freshdesk client against a wiremock server answering as Freshdesk API v2 documents:
//! auth, list parameters, paging to the end, the mappings, updates, private notes, 429.

use crate::helpers::fast_settings;
use std::time::Duration;

use deskpilot::{
    http::{HttpSettings, RetryPolicy},
    ticketing::{
        AuthorKind, ListQuery, NewNote, NoteVisibility, PageToken, PriorityLevel, TicketPatch, TicketReader,
        TicketStatus, Ticketing, TicketingError, all_notes, all_tickets, collect_all,
        freshdesk::FreshdeskClient,
    },
};
use serde_json::{Value, json};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{body_json, header, method, path, query_param},
};

fn client(server: &MockServer) -> FreshdeskClient {
    FreshdeskClient::new(&server.uri(), "k3y".into(), &fast_settings()).unwrap()
}

/// A ticket as `GET /api/v2/tickets/{id}` shows it.
fn ticket(id: u64, updated: &str) -> Value {
    json!({
        "id": id, "subject": "Refund please", "description": "<div>Charged twice</div>",
        "description_text": "Charged twice", "status": 2, "priority": 3, "source": 1, "type": "Refund",
        "requester_id": 1001, "responder_id": null, "group_id": 3003, "company_id": null, "product_id": null,
        "tags": ["billing"], "custom_fields": {"cf_order_number": "A-1"},
        "cc_emails": [], "fwd_emails": [], "reply_cc_emails": [], "to_emails": null,
        "fr_escalated": false, "is_escalated": false, "spam": false,
        "due_by": "2026-11-05T10:00:00Z", "fr_due_by": "2026-11-04T10:00:00Z",
        "created_at": "2026-11-01T09:00:00Z", "updated_at": updated
    })
}

fn conversation(id: u64, private: bool, incoming: bool, user: u64) -> Value {
    json!({
        "id": id, "body": "<div>Please reply as soon as possible.</div>",
        "body_text": "Please reply as soon as possible.", "incoming": incoming, "private": private,
        "user_id": user, "support_email": null, "source": if private { 2 } else { 0 }, "ticket_id": 20,
        "to_emails": [], "from_email": null, "cc_emails": [], "bcc_emails": [], "attachments": [],
        "created_at": "2026-11-01T11:59:05Z", "updated_at": "2026-11-01T11:59:05Z"
    })
}

#[tokio::test]
async fn tickets_updated_since_are_read_oldest_first_to_the_end() {
    let server = MockServer::start().await;
    for (page, ids) in [("1", vec![1, 2]), ("2", vec![3, 4]), ("3", vec![5])] {
        let body: Vec<Value> = ids.iter().map(|i| ticket(*i, &format!("2026-11-02T0{i}:00:00Z"))).collect();
        Mock::given(method("GET"))
            .and(path("/api/v2/tickets"))
            .and(header("authorization", "Basic azN5Olg="))
            .and(query_param("updated_since", "2026-11-01T00:00:01Z"))
            .and(query_param("order_by", "updated_at"))
            .and(query_param("order_type", "asc"))
            .and(query_param("per_page", "2"))
            .and(query_param("page", page))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .expect(if page == "1" { 1 } else { 2 })
            .mount(&server)
            .await;
    }
    let c = client(&server);
    let q = ListQuery {
        limit: Some(2),
        ..ListQuery::updated_since(time::macros::datetime!(2026-11-01 00:00:00.250 UTC))
    };
    let tickets = collect_all(all_tickets(&c, q.clone())).await.unwrap();
    let ids: Vec<_> = tickets.iter().map(|t| t.id.clone().unwrap()).collect();
    assert_eq!(ids, ["1", "2", "3", "4", "5"]);
    // An offset inside a page (as the poller asks, re-anchored on a shared instant) is honoured.
    let q = ListQuery { page: Some(PageToken::Offset(3)), ..q };
    let page = c.list_tickets(&q).await.unwrap();
    let ids: Vec<_> = page.items.iter().map(|t| t.id.clone().unwrap()).collect();
    assert_eq!(ids, ["4", "5"], "page 2 without its first ticket, filled up from page 3");
    assert_eq!(page.next, None, "page 3 was the last");
    let t = &tickets[0];
    assert_eq!(t.status, Some(TicketStatus::Active));
    assert_eq!(t.priority_level(), PriorityLevel::High);
    assert_eq!(t.category_id.as_deref(), Some("Refund"));
    assert_eq!(t.customer_id.as_deref(), Some("1001"));
    assert_eq!(t.user_id, None);
    assert_eq!(t.description.as_deref(), Some("Charged twice"));
    assert_eq!(t.source.as_deref(), Some("email"));
    assert_eq!(t.url.as_deref(), Some(format!("{}/a/tickets/1", server.uri()).as_str()));
}

#[tokio::test]
async fn a_ticket_a_contact_and_the_categories_are_read() {
    let server = MockServer::start().await;
    let mut closed = ticket(20, "2026-11-02T09:30:00Z");
    closed["status"] = json!(4);
    closed["priority"] = json!(1);
    closed["responder_id"] = json!(2002);
    Mock::given(method("GET"))
        .and(path("/api/v2/tickets/20"))
        .respond_with(ResponseTemplate::new(200).set_body_json(closed))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/contacts/1001"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": 1001, "name": "Ada Lovelace", "email": "ada@example.com", "other_emails": ["ada@home.example"],
            "phone": "+44 20 1234", "mobile": null, "tags": ["vip"], "company_id": null, "active": true,
            "unique_external_id": null, "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/ticket_fields"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"id": 1, "name": "requester", "label": "Search a requester", "type": "default_requester",
             "default": true, "position": 1},
            {"id": 2, "name": "status", "label": "Status", "type": "default_status", "default": true,
             "choices": {"2": ["Open", "Being Processed"], "3": ["Pending", "Awaiting your Reply"]}},
            {"id": 3, "name": "ticket_type", "label": "Type", "type": "default_ticket_type", "default": true,
             "choices": ["Question", "Incident", "Problem", "Feature Request", "Refund"]}
        ])))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server);
    let t = c.get_ticket("20").await.unwrap();
    assert_eq!(t.status, Some(TicketStatus::Closed));
    assert_eq!(t.priority.as_deref(), Some("low"));
    assert_eq!(t.user_id.as_deref(), Some("2002"));
    let customer = c.get_customer("1001").await.unwrap();
    assert_eq!(customer.name.as_deref(), Some("Ada Lovelace"));
    let emails: Vec<_> = customer.emails.iter().map(|e| e.email.as_str()).collect();
    assert_eq!(emails, ["ada@example.com", "ada@home.example"]);
    assert_eq!(customer.telephones.len(), 1);
    assert_eq!(customer.tags, ["vip"]);
    let names: Vec<_> = c.list_categories().await.unwrap().into_iter().map(|c| c.id.unwrap()).collect();
    assert_eq!(names, ["Question", "Incident", "Problem", "Feature Request", "Refund"]);
    c.list_categories().await.unwrap(); // cached: the mock expects one call
}

#[tokio::test]
async fn conversations_page_to_the_end_with_visibility_and_author() {
    let server = MockServer::start().await;
    let first: Vec<Value> = (1..=30).map(|i| conversation(i, i % 2 == 0, i == 1, 500 + i)).collect();
    for (page, body) in [("1", json!(first)), ("2", json!([conversation(31, true, false, 7)]))] {
        Mock::given(method("GET"))
            .and(path("/api/v2/tickets/20/conversations"))
            .and(query_param("page", page))
            .and(query_param("per_page", "30"))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .expect(1)
            .mount(&server)
            .await;
    }
    let c = client(&server);
    let q = ListQuery { limit: Some(30), ..ListQuery::notes_of("20") };
    let notes = collect_all(all_notes(&c, q)).await.unwrap();
    assert_eq!(notes.len(), 31);
    assert_eq!(notes[0].author(), AuthorKind::Customer);
    assert_eq!(notes[0].customer_id.as_deref(), Some("501"));
    assert_eq!(notes[0].visibility, Some(NoteVisibility::Public));
    assert_eq!(notes[1].visibility, Some(NoteVisibility::Internal));
    assert_eq!(notes[1].author(), AuthorKind::Agent);
    assert_eq!(notes[30].id.as_deref(), Some("31"));
    assert_eq!(notes[30].ticket_id.as_deref(), Some("20"));
    assert!(matches!(c.list_notes(&ListQuery::default()).await, Err(TicketingError::Invalid { .. })));
}

#[tokio::test]
async fn an_update_sends_freshdesk_numbers_and_the_merged_tags() {
    let server = MockServer::start().await;
    let mut updated = ticket(20, "2026-11-02T10:00:00Z");
    updated["priority"] = json!(4);
    updated["tags"] = json!(["billing", "refund"]);
    Mock::given(method("PUT"))
        .and(path("/api/v2/tickets/20"))
        .and(body_json(json!({
            "priority": 4, "status": 3, "type": "Refund", "tags": ["billing", "refund"], "responder_id": 2002
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(updated))
        .expect(1)
        .mount(&server)
        .await;
    let patch = TicketPatch {
        priority: Some("urgent".into()),
        status: Some(TicketStatus::Unknown("PENDING".into())),
        category_id: Some("Refund".into()),
        tags: Some(vec!["billing".into(), "refund".into()]),
        user_id: Some("2002".into()),
        ..TicketPatch::default()
    };
    let c = client(&server);
    let t = c.update_ticket("20", &patch).await.unwrap();
    assert_eq!(t.priority_level(), PriorityLevel::Urgent);
    assert_eq!(t.tags, ["billing", "refund"]);
    let bad = TicketPatch { user_id: Some("u-01".into()), ..TicketPatch::default() };
    let err = c.update_ticket("20", &bad).await.unwrap_err();
    assert!(err.to_string().contains("Freshdesk ids are numbers"), "{err}");
}

#[tokio::test]
async fn notes_are_posted_private_as_html() {
    let server = MockServer::start().await;
    let mut created = conversation(77, true, false, 2002);
    created["body_text"] = json!("Try a refund <b>now</b>\nThanks");
    Mock::given(method("POST"))
        .and(path("/api/v2/tickets/20/notes"))
        .and(body_json(json!({"body": "Try a refund &lt;b&gt;now&lt;/b&gt;<br>Thanks", "private": true})))
        .respond_with(ResponseTemplate::new(201).set_body_json(created))
        .expect(1)
        .mount(&server)
        .await;
    let note = NewNote {
        ticket_id: "20".into(),
        description: "Try a refund <b>now</b>\nThanks".into(),
        user_id: None,
        raw: Some(json!({"private": false})),
    };
    let n = client(&server).create_note(&note).await.unwrap();
    assert_eq!(n.id.as_deref(), Some("77"));
    assert_eq!(n.visibility, Some(NoteVisibility::Internal));
}

#[tokio::test]
async fn rate_limits_wait_for_retry_after_and_errors_are_classified() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/tickets/20"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "1")
                .insert_header("X-RateLimit-Total", "200")
                .insert_header("X-RateLimit-Remaining", "0"),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/tickets/20"))
        .respond_with(ResponseTemplate::new(200).set_body_json(ticket(20, "2026-11-02T09:30:00Z")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/tickets/404"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/contacts/1"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "code": "invalid_credentials", "message": "You have to be logged in to perform this action."
        })))
        .mount(&server)
        .await;
    let c = client(&server);
    assert_eq!(c.get_ticket("20").await.unwrap().id.as_deref(), Some("20"));
    let retried = server.received_requests().await.unwrap();
    assert_eq!(retried.len(), 2, "one 429, then the retry after Retry-After");
    assert!(matches!(c.get_ticket("404").await, Err(TicketingError::NotFound { .. })));
    assert!(matches!(c.get_customer("1").await, Err(TicketingError::Unauthorized { .. })));

    let always = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .mount(&always)
        .await;
    let settings =
        HttpSettings { retry: RetryPolicy { max_retries: 0, ..fast_settings().retry }, ..fast_settings() };
    let c = FreshdeskClient::new(&always.uri(), "k3y".into(), &settings).unwrap();
    let err = c.get_ticket("20").await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
}
