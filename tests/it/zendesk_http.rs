//! The Zendesk connector against a wiremock server with payloads shaped as Zendesk documents
//! them: auth, every operation, cursor paging to the end, 429 with `Retry-After`, and the status,
//! priority and visibility mappings both ways.

use std::time::Duration;

use deskpilot::{
    http::{HttpSettings, RetryPolicy},
    ticketing::{
        AuthorKind, ListQuery, NewNote, NoteVisibility, PageToken, PriorityLevel, TicketPatch, TicketReader,
        TicketStatus, Ticketing, TicketingError, all_notes, all_tickets, collect_all,
        zendesk::{TicketExport, ZendeskAuth, ZendeskClient, wire::CategorySource},
    },
};
use serde_json::{Value, json};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{body_json, header, method, path, query_param, query_param_is_missing},
};

const FIELD: u64 = 360001234567;

fn settings(max_retries: usize) -> HttpSettings {
    HttpSettings {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(2),
        retry: RetryPolicy {
            max_retries,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            max_retry_after: Duration::from_secs(2),
        },
        max_concurrent_requests: 16,
        max_response_bytes: 1 << 20,
    }
}

fn token() -> ZendeskAuth {
    ZendeskAuth::ApiToken { email: "agent@acme.com".into(), token: "t0k".into() }
}

fn client_with(server: &MockServer, export: TicketExport, category: CategorySource) -> ZendeskClient {
    ZendeskClient::new(&server.uri(), token(), export, category, &settings(3)).unwrap()
}

fn client(server: &MockServer) -> ZendeskClient {
    client_with(server, TicketExport::Search, CategorySource::Field(FIELD))
}

/// `Basic base64("agent@acme.com/token:t0k")`.
fn basic() -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("agent@acme.com/token:t0k"))
}

/// A ticket as `TicketObject` shows it.
fn ticket(id: i64, status: &str, priority: Value) -> Value {
    json!({
        "url": format!("https://acme.zendesk.com/api/v2/tickets/{id}.json"),
        "id": id, "external_id": null, "type": "incident", "subject": "Help, my printer is on fire!",
        "raw_subject": "Help, my printer is on fire!", "description": "The fire is very colorful.",
        "priority": priority, "status": status, "recipient": null, "requester_id": 20978392,
        "submitter_id": 20978392, "assignee_id": 235323, "organization_id": null, "group_id": 98738,
        "collaborator_ids": [], "has_incidents": false, "is_public": true, "due_at": null,
        "tags": ["enterprise", "other_tag"], "custom_status_id": 1,
        "custom_fields": [{"id": 27642, "value": "745"}, {"id": FIELD, "value": "billing_refund"}],
        "ticket_form_id": 360000123, "brand_id": 1, "via": {"channel": "web"},
        "created_at": "2009-07-20T22:55:29Z", "updated_at": "2011-05-05T10:38:52Z"
    })
}

/// Tickets updated since `t` in the export's own order.
fn unsorted_since(t: time::OffsetDateTime) -> ListQuery {
    ListQuery { updated_gte: Some(t), ..ListQuery::default() }
}

/// A page of `GET /api/v2/search` as `SearchResponse` shows it; ticket `i` changed `i` s after 10:00.
fn search_page(ids: std::ops::RangeInclusive<i64>, next_page: Option<&str>, count: usize) -> Value {
    let results: Vec<Value> = ids
        .map(|i| {
            let mut t = ticket(i, "open", json!("normal"));
            t["updated_at"] = format!("2026-11-01T10:{:02}:{:02}Z", i / 60, i % 60).into();
            t["result_type"] = "ticket".into();
            t
        })
        .collect();
    json!({"results": results, "facets": null, "next_page": next_page, "previous_page": null, "count": count})
}

#[tokio::test]
async fn a_list_sorted_by_change_pages_the_offset_search_and_reanchors_before_its_bound() {
    let server = MockServer::start().await;
    let next = "https://acme.zendesk.com/api/v2/search.json?page=11&per_page=100&query=type%3Aticket";
    Mock::given(method("GET"))
        .and(path("/api/v2/search"))
        .and(header("authorization", basic().as_str()))
        .and(query_param("query", "type:ticket updated>=2026-11-01T10:00:01Z"))
        .and(query_param("sort_by", "updated_at"))
        .and(query_param("sort_order", "asc"))
        .and(query_param("page", "10"))
        .and(query_param("per_page", "100"))
        .respond_with(ResponseTemplate::new(200).set_body_json(search_page(1..=100, Some(next), 4200)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/search"))
        .and(query_param("query", "type:ticket updated>=2026-11-01T10:01:40Z"))
        .and(query_param("page", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(search_page(100..=101, None, 2)))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server);
    // Zendesk's seconds: a fraction rounds up, so no ticket before the instant is listed.
    let since = time::macros::datetime!(2026-11-01 10:00:00.250 UTC);
    let q =
        ListQuery { limit: Some(100), page: Some(PageToken::Offset(950)), ..ListQuery::updated_since(since) };
    let page = c.list_tickets(&q).await.unwrap();
    let ids: Vec<_> = page.items.iter().map(|t| t.id.clone().unwrap()).collect();
    assert_eq!(ids.first().map(String::as_str), Some("51"), "offset 950 skips the first 50 of page 10");
    assert_eq!(ids.len(), 50);
    let Some(PageToken::Cursor(anchor)) = page.next.clone() else {
        panic!("past 1000 results: {:?}", page.next)
    };
    assert_eq!(anchor, "2026-11-01T10:01:40Z", "a new query from the newest change seen");
    let rest = c.list_tickets(&ListQuery { page: page.next, ..q.clone() }).await.unwrap();
    assert_eq!(rest.items.len(), 2);
    assert_eq!(rest.next, None);
    let past = ListQuery { page: Some(PageToken::Offset(1000)), ..q };
    let e = c.list_tickets(&past).await.unwrap_err().to_string();
    assert!(e.contains("at most 1000 tickets a query"), "{e}");
}

#[tokio::test]
async fn search_export_pages_to_the_end_with_basic_token_auth() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/search/export"))
        .and(header("authorization", basic().as_str()))
        .and(query_param("query", "updated>=2026-11-01T00:00:00Z"))
        .and(query_param("filter[type]", "ticket"))
        .and(query_param("page[size]", "100"))
        .and(query_param_is_missing("page[after]"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "results": [ticket(1, "new", json!("high")), ticket(2, "open", json!(null))],
            "facets": null,
            "meta": {"has_more": true, "after_cursor": "xXx", "before_cursor": null},
            "links": {"next": "https://acme.zendesk.com/api/v2/search/export.json?page%5Bafter%5D=xXx", "prev": null}
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/search/export"))
        .and(query_param("page[after]", "xXx"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "results": [ticket(3, "solved", json!("urgent"))],
            "facets": null,
            "meta": {"has_more": false, "after_cursor": null, "before_cursor": null},
            "links": {"next": null, "prev": null}
        })))
        .mount(&server)
        .await;
    let c = client(&server);
    let since = time::macros::datetime!(2026-11-01 00:00 UTC);
    let all = collect_all(all_tickets(&c, unsorted_since(since))).await.unwrap();
    let ids: Vec<_> = all.iter().map(|t| t.id.clone().unwrap()).collect();
    assert_eq!(ids, ["1", "2", "3"]);
    let t = &all[0];
    assert_eq!(t.status, Some(TicketStatus::Active));
    assert_eq!((t.priority.as_deref(), t.priority_level()), (Some("high"), PriorityLevel::High));
    assert_eq!(all[1].priority_level(), PriorityLevel::None);
    assert_eq!(all[2].status, Some(TicketStatus::Closed));
    assert_eq!(t.category_id.as_deref(), Some("billing_refund"));
    assert_eq!(t.customer_id.as_deref(), Some("20978392"));
    assert_eq!(t.user_id.as_deref(), Some("235323"));
    assert_eq!(t.tags, ["enterprise", "other_tag"]);
    assert_eq!(t.updated_at, Some(time::macros::datetime!(2011-05-05 10:38:52 UTC)));
}

#[tokio::test]
async fn incremental_export_follows_the_cursor_until_end_of_stream_with_oauth() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/incremental/tickets/cursor"))
        .and(header("authorization", "Bearer oauth-t"))
        .and(query_param("start_time", "1762041600"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "tickets": [ticket(35436, "hold", json!("low"))],
            "after_cursor": "MTU3NjYxMzUzOS4wfHw0Njd8",
            "after_url": "https://acme.zendesk.com/api/v2/incremental/tickets/cursor.json?cursor=MTU3NjYxMzUzOS4wfHw0Njd8",
            "before_cursor": null, "before_url": null, "end_of_stream": false
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/incremental/tickets/cursor"))
        .and(query_param("cursor", "MTU3NjYxMzUzOS4wfHw0Njd8"))
        .and(query_param_is_missing("start_time"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "tickets": [ticket(35437, "deleted", json!(null))],
            "after_cursor": "end", "after_url": null, "before_cursor": null, "before_url": null,
            "end_of_stream": true
        })))
        .mount(&server)
        .await;
    let c = ZendeskClient::new(
        &server.uri(),
        ZendeskAuth::OAuth("oauth-t".into()),
        TicketExport::Incremental,
        CategorySource::Groups,
        &settings(0),
    )
    .unwrap();
    let since = time::macros::datetime!(2025-11-02 00:00 UTC);
    let all = collect_all(all_tickets(&c, unsorted_since(since))).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].category_id.as_deref(), Some("98738"), "groups play category");
    assert_eq!(all[1].status, Some(TicketStatus::Closed));
}

#[tokio::test]
async fn ticket_and_requester_map_to_the_model() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/tickets/35436"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"ticket": ticket(35436, "pending", json!("normal"))})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/users/20978392"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"user": {
            "id": 20978392, "name": "Roger Wilco", "email": "roge@example.org", "phone": "+15551234567",
            "role": "end-user", "tags": ["vip"], "active": true, "verified": true,
            "created_at": "2009-07-20T22:55:29Z", "updated_at": "2011-05-05T10:38:52Z"
        }})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/tickets/404"))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_json(json!({"error": "RecordNotFound", "description": "Not found"})),
        )
        .mount(&server)
        .await;
    let c = client(&server);
    let t = c.get_ticket("35436").await.unwrap();
    assert_eq!((t.status, t.priority.as_deref()), (Some(TicketStatus::Active), Some("normal")));
    assert_eq!(t.description.as_deref(), Some("The fire is very colorful."));
    let cust = c.get_customer("20978392").await.unwrap();
    assert_eq!(cust.name.as_deref(), Some("Roger Wilco"));
    assert_eq!(cust.emails[0].email, "roge@example.org");
    assert_eq!(cust.telephones[0].telephone, "+15551234567");
    assert_eq!(cust.tags, ["vip"]);
    assert!(matches!(c.get_ticket("404").await, Err(TicketingError::NotFound { .. })));
}

#[tokio::test]
async fn comments_page_to_the_end_with_visibility_and_author_kind() {
    let server = MockServer::start().await;
    let comment = |id: i64, author: i64, public: bool| {
        json!({"id": id, "type": "Comment", "author_id": author, "public": public,
               "body": format!("body {id}"), "html_body": format!("<p>body {id}</p>"),
               "plain_body": format!("body {id}"), "attachments": [], "audit_id": 1,
               "via": {"channel": "web"}, "metadata": {}, "created_at": "2009-07-20T22:55:29Z"})
    };
    let users =
        json!([{"id": 11, "name": "Roger", "role": "end-user"}, {"id": 22, "name": "Ann", "role": "agent"}]);
    Mock::given(method("GET"))
        .and(path("/api/v2/tickets/7/comments"))
        .and(query_param("page[size]", "100"))
        .and(query_param("include", "users"))
        .and(query_param_is_missing("page[after]"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "comments": [comment(1, 11, true), comment(2, 22, false)], "users": users,
            "meta": {"has_more": true, "after_cursor": "c2", "before_cursor": "c0"},
            "links": {"next": "https://acme.zendesk.com/api/v2/tickets/7/comments.json?page%5Bafter%5D=c2&page%5Bsize%5D=100", "prev": null}
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/tickets/7/comments"))
        .and(query_param("page[after]", "c2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "comments": [comment(3, -1, false)], "users": [],
            "meta": {"has_more": false, "after_cursor": null, "before_cursor": "c2"},
            "links": {"next": null, "prev": null}
        })))
        .mount(&server)
        .await;
    let c = client(&server);
    let notes = collect_all(all_notes(&c, ListQuery::notes_of("7"))).await.unwrap();
    let seen: Vec<_> = notes.iter().map(|n| (n.visibility.unwrap(), n.author())).collect();
    assert_eq!(
        seen,
        [
            (NoteVisibility::Public, AuthorKind::Customer),
            (NoteVisibility::Internal, AuthorKind::Agent),
            (NoteVisibility::Internal, AuthorKind::System),
        ]
    );
    assert_eq!(notes[0].customer_id.as_deref(), Some("11"));
    assert_eq!(notes[1].user_id.as_deref(), Some("22"));
    assert_eq!(notes[2].description.as_deref(), Some("body 3"));
    let e = c.list_notes(&ListQuery::default()).await.unwrap_err();
    assert!(e.to_string().contains("set the query's ticket_id"), "{e}");
    let offset = ListQuery { page: Some(PageToken::Offset(100)), ..ListQuery::notes_of("7") };
    assert!(matches!(c.list_notes(&offset).await, Err(TicketingError::Invalid { .. })));
}

#[tokio::test]
async fn categories_come_from_a_dropdown_field_groups_or_forms() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/api/v2/ticket_fields/{FIELD}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ticket_field": {
            "id": FIELD, "type": "tagger", "title": "Category", "active": true,
            "custom_field_options": [
                {"id": 1, "name": "Billing / Refund", "raw_name": "Billing / Refund", "value": "billing_refund", "default": false},
                {"id": 2, "name": "Bug", "raw_name": "Bug", "value": "bug", "default": false}
            ]
        }})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/groups"))
        .and(query_param_is_missing("page[after]"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "groups": [{"id": 1, "name": "Billing", "description": "Money", "deleted": false, "default": true}],
            "meta": {"has_more": true, "after_cursor": "g1"}, "links": {"next": "x", "prev": null}
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/groups"))
        .and(query_param("page[after]", "g1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "groups": [{"id": 2, "name": "Old", "description": "", "deleted": true, "default": false}],
            "meta": {"has_more": false, "after_cursor": null}, "links": {"next": null, "prev": null}
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/ticket_forms"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ticket_forms": [{"id": 47, "name": "Snowboard Problem", "active": true, "default": false}],
            "next_page": null, "previous_page": null, "count": 1
        })))
        .mount(&server)
        .await;
    let field = client(&server).list_categories().await.unwrap();
    let names: Vec<_> = field.iter().map(|c| (c.id.clone().unwrap(), c.name.clone().unwrap())).collect();
    assert_eq!(names, [("billing_refund".into(), "Billing / Refund".into()), ("bug".into(), "Bug".into())]);
    let groups =
        client_with(&server, TicketExport::Search, CategorySource::Groups).list_categories().await.unwrap();
    assert_eq!(groups.len(), 2);
    assert!(groups[0].active() && !groups[1].active());
    let forms =
        client_with(&server, TicketExport::Search, CategorySource::Forms).list_categories().await.unwrap();
    assert_eq!(forms[0].id.as_deref(), Some("47"));
}

#[tokio::test]
async fn an_update_maps_priority_status_category_and_adds_tags_without_replacing() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/api/v2/tickets/35436"))
        .and(body_json(json!({"ticket": {
            "priority": "urgent", "status": "solved", "assignee_id": 235323,
            "custom_fields": [{"id": FIELD, "value": "bug"}]
        }})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ticket": ticket(35436, "solved", json!("urgent")),
            "audit": {"id": 9, "ticket_id": 35436, "events": [{"id": 1, "type": "Change", "field_name": "priority", "value": "urgent"}]}
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/api/v2/tickets/35436/tags"))
        .and(body_json(json!({"tags": ["enterprise", "vip"]})))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"tags": ["enterprise", "other_tag", "vip"]})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let patch = TicketPatch {
        priority: Some("URGENT".into()),
        status: Some(TicketStatus::Closed),
        user_id: Some("235323".into()),
        category_id: Some("bug".into()),
        tags: Some(vec!["enterprise".into(), "vip".into()]),
        ..TicketPatch::default()
    };
    let t = client(&server).update_ticket("35436", &patch).await.unwrap();
    assert_eq!(t.tags, ["enterprise", "other_tag", "vip"], "a tag set by someone else stays");
    assert_eq!(t.status, Some(TicketStatus::Closed));
    let bad = TicketPatch { priority: Some("p1".into()), ..TicketPatch::default() };
    let e = client(&server).update_ticket("35436", &bad).await.unwrap_err();
    assert!(e.to_string().contains("priority `p1` has no Zendesk equivalent"), "{e}");
}

#[tokio::test]
async fn a_note_is_an_internal_comment_and_is_never_sent_twice() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/api/v2/tickets/35436"))
        .and(body_json(
            json!({"ticket": {"comment": {"body": "Draft", "public": false, "author_id": 235323}}}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ticket": ticket(35436, "open", json!("high")),
            "audit": {"id": 9, "ticket_id": 35436, "author_id": 235323, "created_at": "2011-05-05T10:38:52Z",
                      "events": [{"id": 1274, "type": "Comment", "author_id": 235323, "body": "Draft",
                                  "html_body": "<p>Draft</p>", "public": false, "attachments": []}]}
        })))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/api/v2/tickets/500"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let c = client(&server);
    let new = NewNote {
        ticket_id: "35436".into(),
        description: "Draft".into(),
        user_id: Some("235323".into()),
        raw: None,
    };
    let note = c.create_note(&new).await.unwrap();
    assert_eq!(note.id.as_deref(), Some("1274"));
    assert_eq!(note.visibility, Some(NoteVisibility::Internal));
    let failing = NewNote { ticket_id: "500".into(), ..new };
    assert!(c.create_note(&failing).await.unwrap_err().is_retryable());
    let sent = server.received_requests().await.unwrap();
    assert_eq!(sent.iter().filter(|r| r.url.path() == "/api/v2/tickets/500").count(), 1, "not resent");
}

#[tokio::test]
async fn a_429_is_retried_after_retry_after_and_reported_when_it_persists() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/tickets/1"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .insert_header("content-type", "text/plain")
                .set_body_string(
                    "Rate limit for ticket updates exceeded, please wait before updating this ticket again",
                ),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/tickets/1"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"ticket": ticket(1, "open", json!("low"))})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/tickets/2"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "7"))
        .mount(&server)
        .await;
    let c = client(&server);
    assert_eq!(c.get_ticket("1").await.unwrap().id.as_deref(), Some("1"));
    let once = ZendeskClient::new(
        &server.uri(),
        token(),
        TicketExport::Search,
        CategorySource::Groups,
        &settings(0),
    )
    .unwrap();
    let e = once.get_ticket("2").await.unwrap_err();
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    let sent = server.received_requests().await.unwrap();
    assert_eq!(sent.iter().filter(|r| r.url.path() == "/api/v2/tickets/1").count(), 2);
}
