//! The ServiceNow connector against a wiremock server with records shaped as ServiceNow's Table
//! API documents them (every value a string, `YYYY-MM-DD HH:MM:SS` UTC dates, `{"result": ...}`):
//! basic and OAuth auth, every operation, offset paging to the end, 429 with the vendor's reset
//! headers, and the priority (impact × urgency), state and visibility mappings both ways.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deskpilot::{
    http::{HttpSettings, RetryPolicy},
    ticketing::{
        AuthorKind, ListQuery, NewNote, NoteVisibility, PageToken, PriorityLevel, TicketPatch, TicketReader,
        TicketStatus, Ticketing, TicketingError, all_notes, all_tickets, collect_all,
        servicenow::{ServiceNowAuth, ServiceNowClient},
    },
};
use serde_json::{Value, json};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{body_json, header, method, path, query_param},
};

use crate::helpers::fast_settings;

const INC: &str = "ef43c6d40a0a0b5700c77f9bf387afe3";
const CALLER: &str = "681ccaf9c0a8016400b98a06818d57c7";
const AGENT: &str = "681b365ec0a80164000fb0b05854a0cd";
const FIELDS: &str = "sys_id,number,short_description,description,state,active,priority,category,caller_id,\
assigned_to,contact_type,sys_created_on,sys_updated_on,closed_at,due_date";

fn basic() -> ServiceNowAuth {
    ServiceNowAuth::Basic { username: "deskpilot.integration".into(), password: "pa55".into() }
}

fn client(server: &MockServer) -> ServiceNowClient {
    ServiceNowClient::new(&server.uri(), basic(), &fast_settings()).unwrap()
}

/// `Basic base64("deskpilot.integration:pa55")`.
fn basic_header() -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("deskpilot.integration:pa55"))
}

/// An incident as the Table API answers with actual values and references excluded.
fn incident(sys_id: &str, state: &str, priority: &str, updated: &str) -> Value {
    json!({
        "sys_id": sys_id, "number": "INC0010001", "short_description": "VPN drops every hour",
        "description": "Since Monday the VPN disconnects hourly.", "state": state,
        "active": if state == "7" || state == "8" { "false" } else { "true" },
        "priority": priority, "category": "network", "caller_id": CALLER, "assigned_to": "",
        "contact_type": "email", "sys_created_on": "2024-05-01 09:00:00", "sys_updated_on": updated,
        "closed_at": if state == "7" { "2024-05-02 10:00:00" } else { "" }, "due_date": ""
    })
}

fn result(v: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({ "result": v }))
}

#[tokio::test]
async fn incidents_updated_since_page_by_offset_to_the_end_with_basic_auth() {
    let server = MockServer::start().await;
    let list = |offset: &str| {
        Mock::given(method("GET"))
            .and(path("/api/now/table/incident"))
            .and(header("authorization", basic_header().as_str()))
            .and(query_param(
                "sysparm_query",
                "sys_updated_on>=2024-05-01 00:00:01^ORDERBYsys_updated_on^ORDERBYsys_id",
            ))
            .and(query_param("sysparm_fields", FIELDS))
            .and(query_param("sysparm_limit", "2"))
            .and(query_param("sysparm_offset", offset.to_owned()))
            .and(query_param("sysparm_display_value", "false"))
            .and(query_param("sysparm_exclude_reference_link", "true"))
    };
    list("0")
        .respond_with(result(json!([
            incident("a1", "2", "1", "2024-05-01 09:30:00"),
            incident("a2", "6", "4", "2024-05-01 09:30:00")
        ])))
        .expect(1)
        .mount(&server)
        .await;
    list("2")
        .respond_with(result(json!([incident("a3", "7", "5", "2024-05-02 10:00:00")])))
        .expect(2)
        .mount(&server)
        .await;
    let c = client(&server);
    // The poller's anchor has a fraction: ServiceNow's whole seconds start at the next one.
    let since = time::macros::datetime!(2024-05-01 00:00:00.5 UTC);
    let q = ListQuery { limit: Some(2), ..ListQuery::updated_since(since) };
    let all = collect_all(all_tickets(&c, q)).await.unwrap();
    let ids: Vec<_> = all.iter().map(|t| t.id.clone().unwrap()).collect();
    assert_eq!(ids, ["a1", "a2", "a3"], "a short page is the last");
    let t = &all[0];
    assert_eq!((t.status.clone(), t.priority_level()), (Some(TicketStatus::Active), PriorityLevel::Urgent));
    assert_eq!(
        (all[1].status.clone(), all[1].priority_level()),
        (Some(TicketStatus::Closed), PriorityLevel::Low)
    );
    assert_eq!(all[2].closed_at, Some(time::macros::datetime!(2024-05-02 10:00:00 UTC)));
    assert_eq!(t.customer_id.as_deref(), Some(CALLER));
    assert_eq!((t.user_id.as_deref(), t.category_id.as_deref()), (None, Some("network")));
    assert_eq!(t.source_ref.as_deref(), Some("INC0010001"));
    assert_eq!(t.url.as_deref(), Some(format!("{}/incident.do?sys_id=a1", server.uri()).as_str()));
    assert_eq!(t.updated_at, Some(time::macros::datetime!(2024-05-01 09:30:00 UTC)));

    // The poller steps over incidents sharing its anchor by offset: the offset is sysparm_offset.
    let q = ListQuery { page: Some(PageToken::Offset(2)), limit: Some(2), ..ListQuery::updated_since(since) };
    let page = c.list_tickets(&q);
    assert_eq!(page.await.unwrap().next, None);
}

#[tokio::test]
async fn an_incident_its_caller_and_the_category_choices_read_with_oauth() {
    let server = MockServer::start().await;
    let bearer = || header("authorization", "Bearer oauth-t0k");
    Mock::given(method("GET"))
        .and(path(format!("/api/now/table/incident/{INC}")))
        .and(bearer())
        .and(query_param("sysparm_fields", FIELDS))
        .respond_with(result(incident(INC, "3", "3", "2024-05-01 09:30:00")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/api/now/table/sys_user/{CALLER}")))
        .and(bearer())
        .respond_with(result(json!({
            "sys_id": CALLER, "user_name": "abel.tuter", "name": "Abel Tuter", "first_name": "Abel",
            "last_name": "Tuter", "email": "abel.tuter@example.com", "phone": "", "mobile_phone": "+1 555 0100",
            "sys_created_on": "2012-02-18 03:04:49", "sys_updated_on": "2024-04-01 12:00:00"
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/now/table/sys_choice"))
        .and(bearer())
        .and(query_param(
            "sysparm_query",
            "name=incident^element=category^inactive=false^language=en^ORDERBYsequence^ORDERBYsys_id",
        ))
        .and(query_param("sysparm_fields", "value,label,sequence,inactive"))
        .respond_with(result(json!([
            {"value": "inquiry", "label": "Inquiry / Help", "sequence": "1", "inactive": "false"},
            {"value": "software", "label": "Software", "sequence": "2", "inactive": "false"},
            {"value": "network", "label": "Network", "sequence": "4", "inactive": "false"}
        ])))
        .expect(1)
        .mount(&server)
        .await;
    let c = ServiceNowClient::new(&server.uri(), ServiceNowAuth::OAuth("oauth-t0k".into()), &fast_settings())
        .unwrap();
    let t = c.get_ticket(INC).await.unwrap();
    assert_eq!(
        (t.status, t.priority.as_deref()),
        (Some(TicketStatus::Active), Some("normal")),
        "On Hold is open"
    );
    let customer = c.get_customer(t.customer_id.as_deref().unwrap()).await.unwrap();
    assert_eq!(customer.name.as_deref(), Some("Abel Tuter"));
    assert_eq!(customer.emails[0].email, "abel.tuter@example.com");
    assert_eq!(customer.telephones.len(), 1, "an empty phone is no phone");
    let categories = c.list_categories().await.unwrap();
    let names: Vec<_> = categories.iter().map(|c| (c.id.clone().unwrap(), c.name.clone().unwrap())).collect();
    assert_eq!(names[0], ("inquiry".to_owned(), "Inquiry / Help".to_owned()));
    assert_eq!(names.len(), 3);
    c.list_categories().await.unwrap();
}

#[tokio::test]
async fn journal_entries_are_notes_with_their_visibility_and_author() {
    let server = MockServer::start().await;
    let entry = |sys_id: &str, element: &str, by: &str, at: &str| {
        json!({"sys_id": sys_id, "element": element, "element_id": INC, "value": format!("{element} by {by}"),
               "sys_created_by": by, "sys_created_on": at})
    };
    Mock::given(method("GET"))
        .and(path("/api/now/table/sys_journal_field"))
        .and(query_param(
            "sysparm_query",
            format!("element_id={INC}^elementINcomments,work_notes^ORDERBYsys_created_on^ORDERBYsys_id"),
        ))
        .and(query_param("sysparm_offset", "0"))
        .respond_with(result(json!([
            entry("j1", "comments", "abel.tuter", "2024-05-01 09:01:00"),
            entry("j2", "work_notes", "beth.anglin", "2024-05-01 09:05:00")
        ])))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/now/table/sys_journal_field"))
        .and(query_param("sysparm_offset", "2"))
        .respond_with(result(json!([entry("j3", "work_notes", "system", "2024-05-01 09:06:00")])))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/api/now/table/incident/{INC}")))
        .and(query_param("sysparm_fields", "sys_id,caller_id"))
        .respond_with(result(json!({"sys_id": INC, "caller_id": CALLER})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/now/table/sys_user"))
        .and(query_param("sysparm_query", "user_nameINabel.tuter,beth.anglin"))
        .respond_with(result(json!([
            {"sys_id": CALLER, "user_name": "abel.tuter"},
            {"sys_id": AGENT, "user_name": "beth.anglin"}
        ])))
        .mount(&server)
        .await;
    let c = client(&server);
    let notes =
        collect_all(all_notes(&c, ListQuery { limit: Some(2), ..ListQuery::notes_of(INC) })).await.unwrap();
    assert_eq!(notes.len(), 3);
    assert_eq!(notes[0].visibility, Some(NoteVisibility::Public), "comments are customer-visible");
    assert_eq!((notes[0].author(), notes[0].customer_id.as_deref()), (AuthorKind::Customer, Some(CALLER)));
    assert_eq!(notes[1].visibility, Some(NoteVisibility::Internal), "work notes are internal");
    assert_eq!((notes[1].author(), notes[1].user_id.as_deref()), (AuthorKind::Agent, Some(AGENT)));
    assert_eq!(notes[2].author(), AuthorKind::System);
    assert_eq!(notes[1].ticket_id.as_deref(), Some(INC));
    assert_eq!(notes[0].created_at, Some(time::macros::datetime!(2024-05-01 09:01:00 UTC)));
}

#[tokio::test]
async fn updates_write_impact_urgency_and_state_and_drafts_are_work_notes() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path(format!("/api/now/table/incident/{INC}")))
        .and(body_json(json!({"impact": "1", "urgency": "2", "state": "6", "category": "software", "assigned_to": AGENT})))
        .respond_with(result(incident(INC, "6", "2", "2024-05-01 10:00:00")))
        .expect(1)
        .mount(&server)
        .await;
    let draft = "Draft: please reconnect.\n\n[deskpilot-ref:0123]";
    Mock::given(method("PATCH"))
        .and(path(format!("/api/now/table/incident/{INC}")))
        .and(body_json(json!({"work_notes": draft})))
        .respond_with(result(json!({"sys_id": INC, "sys_updated_on": "2024-05-01 10:01:00"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/now/table/sys_journal_field"))
        .and(query_param(
            "sysparm_query",
            format!("element_id={INC}^element=work_notes^ORDERBYDESCsys_created_on^ORDERBYDESCsys_id"),
        ))
        .respond_with(result(json!([
            {"sys_id": "j9", "element": "work_notes", "element_id": INC, "value": draft,
             "sys_created_by": "deskpilot.integration", "sys_created_on": "2024-05-01 10:01:00"}
        ])))
        .mount(&server)
        .await;
    let c = client(&server);
    let patch = TicketPatch {
        priority: Some("high".into()),
        status: Some(TicketStatus::Closed),
        category_id: Some("software".into()),
        user_id: Some(AGENT.into()),
        ..TicketPatch::default()
    };
    let t = c.update_ticket(INC, &patch).await.unwrap();
    assert_eq!((t.priority_level(), t.status), (PriorityLevel::High, Some(TicketStatus::Closed)));

    let note = NewNote { ticket_id: INC.into(), description: draft.into(), user_id: None, raw: None };
    let created = c.create_note(&note).await.unwrap();
    assert_eq!(created.id.as_deref(), Some("j9"), "the journal entry's own id");
    assert_eq!(created.visibility, Some(NoteVisibility::Internal));

    let tags = TicketPatch { tags: Some(vec!["vip".into()]), ..TicketPatch::default() };
    let e = c.update_ticket(INC, &tags).await.unwrap_err();
    assert!(e.to_string().contains("ServiceNow incidents have no tags"), "{e}");
}

#[tokio::test]
async fn a_429_waits_for_retry_after_or_the_rate_limit_reset() {
    let server = MockServer::start().await;
    let limited = || {
        ResponseTemplate::new(429).set_body_json(json!({
            "error": {"message": "Rate limit exceeded", "detail": "Rate limit of 100 requests per hour for Table API exceeded"},
            "status": "failure"
        }))
    };
    let started = std::time::Instant::now();
    let reset = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 3;
    Mock::given(method("GET"))
        .and(path("/api/now/table/incident/a1"))
        .respond_with(
            limited().insert_header("Retry-After", "1").insert_header("X-RateLimit-Reset", reset.to_string()),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/now/table/incident/a2"))
        .respond_with(
            limited()
                .insert_header("X-RateLimit-Limit", "100")
                .insert_header("X-RateLimit-Reset", reset.to_string()),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    for id in ["a1", "a2"] {
        Mock::given(method("GET"))
            .and(path(format!("/api/now/table/incident/{id}")))
            .respond_with(result(incident(id, "2", "3", "2024-05-01 09:30:00")))
            .mount(&server)
            .await;
    }
    let c = client(&server);
    assert_eq!(c.get_ticket("a1").await.unwrap().id.as_deref(), Some("a1"));
    assert!(started.elapsed() >= Duration::from_secs(1), "waited for Retry-After");
    assert_eq!(c.get_ticket("a2").await.unwrap().id.as_deref(), Some("a2"));
    // The reset is more than 2 s after the start, whole seconds.
    assert!(
        started.elapsed() >= Duration::from_millis(1950),
        "waited for the reset: {:?}",
        started.elapsed()
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 4, "each 429 retried once");

    let once =
        HttpSettings { retry: RetryPolicy { max_retries: 0, ..fast_settings().retry }, ..fast_settings() };
    let always = MockServer::start().await;
    Mock::given(method("GET")).respond_with(limited().insert_header("Retry-After", "2")).mount(&always).await;
    let c = ServiceNowClient::new(&always.uri(), basic(), &once).unwrap();
    let e = c.get_ticket("a1").await.unwrap_err();
    assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
}

#[tokio::test]
async fn unknown_records_and_refused_credentials_are_classified() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/now/table/incident/nope"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({
            "error": {"message": "No Record found", "detail": "Record doesn't exist or ACL restricts the record retrieval"},
            "status": "failure"
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/now/table/sys_user/x"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"},
            "status": "failure"
        })))
        .mount(&server)
        .await;
    let c = client(&server);
    assert!(matches!(c.get_ticket("nope").await, Err(TicketingError::NotFound { .. })));
    assert!(matches!(c.get_customer("x").await, Err(TicketingError::Unauthorized { .. })));
    assert!(matches!(c.list_notes(&ListQuery::default()).await, Err(TicketingError::Invalid { .. })));
}
