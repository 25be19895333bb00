//! The Intercom client against a wiremock server answering as Intercom's API 2.14 documents:
//! bearer auth and the version pin, the ticket search paged by cursor to the end (and an offset
//! walked from the start), tickets, contacts, parts as notes, ticket types, updates, tags, the
//! note reply, 429 with `X-RateLimit-Reset`.

use std::time::{Duration, SystemTime};

use crate::helpers::fast_settings;
use deskpilot::ticketing::{
    AuthorKind, ListQuery, NewNote, NoteVisibility, PageToken, TicketField, TicketPatch, TicketReader,
    TicketStatus, Ticketing, TicketingError, all_tickets, collect_all, intercom::IntercomClient,
};
use serde_json::{Value, json};
use wiremock::{
    Mock, MockServer, Request, ResponseTemplate,
    matchers::{body_json, header, method, path},
};

fn client(server: &MockServer) -> IntercomClient {
    IntercomClient::new(&server.uri(), "tok3n".into(), &fast_settings()).unwrap()
}

/// A ticket as `GET /tickets/{id}` shows it (2.14).
fn ticket(id: &str, updated_at: i64) -> Value {
    json!({
        "type": "ticket", "id": id, "ticket_id": "40", "category": "Customer",
        "ticket_attributes": {"_default_title_": "Refund please", "_default_description_": "Order A-1 charged twice"},
        "ticket_state": {"type": "ticket_state", "id": "8577", "category": "submitted",
                         "internal_label": "Submitted", "external_label": "Submitted"},
        "ticket_type": {"type": "ticket_type", "id": "100", "name": "Billing", "description": "Money matters",
                        "icon": "💰", "workspace_id": "abc", "archived": false, "created_at": 1714521600,
                        "updated_at": 1714521600, "is_internal": false, "category": "Customer"},
        "contacts": {"type": "contact.list", "contacts": [{"type": "contact", "id": "6762f0d0", "external_id": "70"}]},
        "admin_assignee_id": "991267", "team_assignee_id": "5017691",
        "created_at": 1714521600, "updated_at": updated_at, "open": true, "is_shared": true,
        "linked_objects": {"type": "list", "data": [], "total_count": 0, "has_more": false},
        "ticket_parts": {"type": "ticket_part.list", "total_count": 3, "ticket_parts": [
            {"type": "ticket_part", "id": "155", "part_type": "comment", "body": "<p>Any news?</p>",
             "author": {"type": "user", "id": "6762f0d0", "name": "Ann", "email": "ann@example.com"},
             "created_at": 1714522000, "updated_at": 1714522000, "attachments": [], "redacted": false},
            {"type": "ticket_part", "id": "156", "part_type": "ticket_state_updated_by_admin",
             "ticket_state": "in_progress", "previous_ticket_state": "submitted",
             "author": {"type": "admin", "id": "991267", "name": "Bo", "email": "bo@example.com"},
             "created_at": 1714523000, "updated_at": 1714523000, "attachments": [], "redacted": false},
            {"type": "ticket_part", "id": "157", "part_type": "note", "body": "<p>Refund issued</p>",
             "author": {"type": "admin", "id": "991267", "name": "Bo", "email": "bo@example.com"},
             "created_at": 1714525200, "updated_at": 1714525200, "attachments": [], "redacted": false}
        ]}
    })
}

/// The search answer: `ticket_list` with `cursor_pages`.
fn ticket_list(tickets: Vec<Value>, next: Option<&str>) -> Value {
    let mut pages = json!({"type": "pages", "page": 1, "per_page": 2, "total_pages": 3});
    if let Some(n) = next {
        pages["next"] = json!({"per_page": 2, "starting_after": n});
    }
    json!({"type": "ticket.list", "tickets": tickets, "total_count": 5, "pages": pages})
}

fn search_body(starting_after: Option<&str>) -> Value {
    let mut pagination = json!({"per_page": 2});
    if let Some(c) = starting_after {
        pagination["starting_after"] = c.into();
    }
    // 2026-11-01T00:00:00.250Z asks for `> 2026-11-01T00:00:00Z` (whole seconds, strict).
    json!({
        "query": {"field": "updated_at", "operator": ">", "value": 1_793_491_200},
        "pagination": pagination,
        "sort": {"field": "updated_at", "order": "ascending"},
    })
}

#[tokio::test]
async fn tickets_updated_since_are_searched_oldest_first_by_cursor_to_the_end() {
    let server = MockServer::start().await;
    let at = |i: i64| 1_793_491_200 + i * 60;
    for (cursor, ids, next) in [
        (None, ["1", "2"].as_slice(), Some("c2")),
        (Some("c2"), &["3", "4"], Some("c3")),
        (Some("c3"), &["5"], None),
    ] {
        let tickets = ids.iter().map(|i| ticket(i, at(i.parse().unwrap()))).collect();
        Mock::given(method("POST"))
            .and(path("/tickets/search"))
            .and(header("authorization", "Bearer tok3n"))
            .and(header("intercom-version", "2.14"))
            .and(body_json(search_body(cursor)))
            .respond_with(ResponseTemplate::new(200).set_body_json(ticket_list(tickets, next)))
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
    let t = &tickets[0];
    assert_eq!(t.subject.as_deref(), Some("Refund please"));
    assert_eq!(t.description.as_deref(), Some("Order A-1 charged twice"));
    assert_eq!(t.customer_id.as_deref(), Some("6762f0d0"));
    assert_eq!(t.user_id.as_deref(), Some("991267"));
    assert_eq!(t.category_id.as_deref(), Some("100"));
    assert_eq!(t.status, Some(TicketStatus::Active));
    assert_eq!(t.priority, None, "Intercom tickets have no priority");
    assert_eq!(t.source_ref.as_deref(), Some("40"), "the inbox number");
    assert_eq!(t.updated_at.unwrap().unix_timestamp(), at(1), "epoch seconds");

    // An offset (the poller's step over tickets sharing its anchor) is walked from the start.
    let page = c.list_tickets(&ListQuery { page: Some(PageToken::Offset(3)), ..q }).await.unwrap();
    let ids: Vec<_> = page.items.iter().map(|t| t.id.clone().unwrap()).collect();
    assert_eq!(ids, ["4", "5"], "the second page without its first ticket, filled up from the third");
    assert_eq!(page.next, None, "the third page was the last");
}

#[tokio::test]
async fn a_ticket_its_contact_its_parts_and_the_ticket_types_map_to_the_model() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/tickets/633"))
        .respond_with(ResponseTemplate::new(200).set_body_json(ticket("633", 1_714_525_200)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/contacts/6762f0d0"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "type": "contact", "id": "6762f0d0", "workspace_id": "abc", "external_id": "70", "role": "user",
            "email": "ann@example.com", "phone": "+353871234567", "name": "Ann Lee",
            "created_at": 1714000000, "updated_at": 1714500000,
            "tags": {"type": "list", "data": [{"type": "tag", "id": "81", "url": "/tags/81"}],
                     "url": "/contacts/6762f0d0/tags", "total_count": 1, "has_more": false}
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/contacts/6762f0d0/tags"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "type": "list", "data": [{"type": "tag", "id": "81", "name": "vip"}]
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/ticket_types"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"type": "list", "data": [
            {"type": "ticket_type", "id": "100", "name": "Billing", "description": "Money matters",
             "category": "Customer", "archived": false, "created_at": 1714521600, "updated_at": 1714521600},
            {"type": "ticket_type", "id": "101", "name": "Old", "description": "",
             "category": "Back-office", "archived": true, "created_at": 1714521600, "updated_at": 1714521600}
        ]})))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server);
    let t = c.get_ticket("633").await.unwrap();
    assert_eq!(t.id.as_deref(), Some("633"));

    let customer = c.get_customer("6762f0d0").await.unwrap();
    assert_eq!(customer.name.as_deref(), Some("Ann Lee"));
    assert_eq!(customer.emails[0].email, "ann@example.com");
    assert_eq!(customer.telephones[0].telephone, "+353871234567");
    assert_eq!(customer.tags, ["vip"], "names read through the contact's tags");

    let notes = c.list_notes(&ListQuery::notes_of("633")).await.unwrap();
    assert_eq!(notes.next, None);
    let notes = notes.items;
    assert_eq!(notes.len(), 2, "the state change is not a note: {notes:?}");
    assert_eq!(notes[0].visibility, Some(NoteVisibility::Public));
    assert_eq!(
        (notes[0].author(), notes[0].customer_id.as_deref()),
        (AuthorKind::Customer, Some("6762f0d0"))
    );
    assert_eq!(notes[1].visibility, Some(NoteVisibility::Internal));
    assert_eq!((notes[1].author(), notes[1].user_id.as_deref()), (AuthorKind::Agent, Some("991267")));
    assert_eq!(notes[1].description.as_deref(), Some("<p>Refund issued</p>"));
    let second = c.list_notes(&ListQuery { limit: Some(1), ..ListQuery::notes_of("633") }).await.unwrap();
    assert_eq!(second.next, Some(PageToken::Offset(1)));

    let categories = c.list_categories().await.unwrap();
    assert_eq!(categories.len(), 2);
    assert_eq!((categories[0].id.as_deref(), categories[0].name.as_deref()), (Some("100"), Some("Billing")));
    assert!(categories[0].active() && !categories[1].active(), "archived types are inactive");
    c.list_categories().await.unwrap();
}

#[tokio::test]
async fn updates_write_open_and_assignee_and_add_tags_and_the_draft_is_a_note_reply() {
    let server = MockServer::start().await;
    let mut closed = ticket("633", 1_714_530_000);
    closed["open"] = false.into();
    closed["ticket_state"]["category"] = "resolved".into();
    Mock::given(method("PUT"))
        .and(path("/tickets/633"))
        .and(body_json(json!({"open": false, "assignee_id": "991268"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(closed))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/me"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "type": "admin", "id": "991267", "email": "bo@example.com", "name": "Bo", "email_verified": true,
            "app": {"type": "app", "id_code": "xyz", "name": "Acme", "created_at": 1714000000, "secure": false,
                    "identity_verification": false, "timezone": "Europe/Dublin", "region": "US"}
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/tags"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "type": "list", "data": [{"type": "tag", "id": "81", "name": "Billing"}]
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/tags"))
        .and(body_json(json!({"name": "refund"})))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"type": "tag", "id": "82", "name": "refund"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    for (id, name) in [("81", "Billing"), ("82", "refund")] {
        Mock::given(method("POST"))
            .and(path("/tickets/633/tags"))
            .and(body_json(json!({"id": id, "admin_id": "991267"})))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "type": "tag", "id": id, "name": name, "applied_at": 1714530000,
                "applied_by": {"type": "admin", "id": "991267"}
            })))
            .expect(1)
            .mount(&server)
            .await;
    }
    Mock::given(method("POST"))
        .and(path("/tickets/633/reply"))
        .and(body_json(json!({
            "message_type": "note", "type": "admin", "admin_id": "991267",
            "body": "<p>Draft &lt;reply&gt;</p><p>[deskpilot-ref:1]</p>"
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "type": "ticket_part", "id": "158", "part_type": "note",
            "body": "<p>Draft &lt;reply&gt;</p><p>[deskpilot-ref:1]</p>",
            "created_at": 1714530100, "updated_at": 1714530100,
            "author": {"type": "admin", "id": "991267", "name": "Bo", "email": "bo@example.com"},
            "attachments": [], "redacted": false
        })))
        .expect(1)
        .mount(&server)
        .await;

    let c = client(&server);
    assert!(!c.capabilities().supports(TicketField::Priority));
    assert!(!c.capabilities().supports(TicketField::Category));
    assert!(c.capabilities().supports(TicketField::Tags) && c.capabilities().supports(TicketField::Assignee));
    let patch = TicketPatch {
        status: Some(TicketStatus::Closed),
        user_id: Some("991268".into()),
        tags: Some(vec!["billing".into(), "refund".into()]),
        ..TicketPatch::default()
    };
    assert_eq!(c.tags_in_use().await.unwrap(), Some(vec!["Billing".to_owned()]), "the workspace's tags");
    let t = c.update_ticket("633", &patch).await.unwrap();
    assert_eq!(t.status, Some(TicketStatus::Closed));

    let note = NewNote {
        ticket_id: "633".into(),
        description: "Draft <reply>\n[deskpilot-ref:1]".into(),
        user_id: None,
        raw: None,
    };
    let n = c.create_note(&note).await.unwrap();
    assert_eq!(n.id.as_deref(), Some("158"));
    assert_eq!(n.visibility, Some(NoteVisibility::Internal));
    assert!(n.description.unwrap().contains("deskpilot-ref:1"));

    // What the capabilities say is refused, with the reason, before anything is sent.
    let refused = [
        (
            TicketPatch { priority: Some("urgent".into()), ..TicketPatch::default() },
            "Intercom tickets have no priority",
        ),
        (TicketPatch { category_id: Some("101".into()), ..TicketPatch::default() }, "cannot change it"),
        (
            TicketPatch { status: Some(TicketStatus::Unknown("PENDING".into())), ..TicketPatch::default() },
            "only ACTIVE (open) and CLOSED",
        ),
    ];
    for (patch, why) in refused {
        let e = c.update_ticket("633", &patch).await.unwrap_err().to_string();
        assert!(e.contains(why), "{e}");
    }
}

#[tokio::test]
async fn a_429_waits_until_x_ratelimit_reset_and_errors_are_classified() {
    let server = MockServer::start().await;
    let reset = |_: &Request| {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        ResponseTemplate::new(429)
            .insert_header("X-RateLimit-Limit", "10000")
            .insert_header("X-RateLimit-Remaining", "0")
            .insert_header("X-RateLimit-Reset", (now + 2).to_string().as_str())
            .set_body_json(json!({"type": "error.list", "request_id": null,
                                  "errors": [{"code": "rate_limit_exceeded", "message": "Exceeded rate limit of 10000 in 10_seconds"}]}))
    };
    Mock::given(method("GET"))
        .and(path("/tickets/633"))
        .respond_with(reset)
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/tickets/633"))
        .respond_with(ResponseTemplate::new(200).set_body_json(ticket("633", 1_714_525_200)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/tickets/404"))
        .respond_with(
            ResponseTemplate::new(404).set_body_json(json!({"type": "error.list", "request_id": null,
            "errors": [{"code": "ticket_not_found", "message": "Ticket not found"}]})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/contacts/1"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(json!({"type": "error.list", "request_id": null,
            "errors": [{"code": "unauthorized", "message": "Access Token Invalid"}]})),
        )
        .mount(&server)
        .await;
    let c = client(&server);
    let started = std::time::Instant::now();
    assert_eq!(c.get_ticket("633").await.unwrap().id.as_deref(), Some("633"));
    assert_eq!(server.received_requests().await.unwrap().len(), 2, "one 429, then the retry");
    assert!(started.elapsed() >= Duration::from_millis(900), "waited for the reset: {:?}", started.elapsed());
    assert!(matches!(c.get_ticket("404").await, Err(TicketingError::NotFound { .. })));
    assert!(matches!(c.get_customer("1").await, Err(TicketingError::Unauthorized { .. })));

    // A reset further off than the client waits in-process hands the wait to the caller.
    let far = MockServer::start().await;
    let later = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() + 600;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(429).insert_header("X-RateLimit-Reset", later.to_string().as_str()),
        )
        .mount(&far)
        .await;
    match client(&far).get_ticket("633").await {
        Err(TicketingError::RateLimited { retry_after: Some(wait) }) => {
            assert!(wait > Duration::from_secs(590), "{wait:?}")
        }
        other => panic!("expected the reset as the wait, got {other:?}"),
    }
}
