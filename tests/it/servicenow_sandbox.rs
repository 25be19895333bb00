//! The ServiceNow connector against the sandbox's ServiceNow flavour over real HTTP: every
//! operation, offset paging to the end, journal entries with their visibility and author, work
//! notes stored internal, priority written as impact × urgency, auth refused; `deskpilot demo
//! --backend servicenow`; the poller over a ServiceNow connection.

use std::collections::HashSet;

use deskpilot::{
    http::HttpSettings,
    sandbox::{RunningSandbox, servicenow_sys_id as sys_id},
    ticketing::{
        AuthorKind, ListQuery, NoteVisibility, PriorityLevel, TicketPatch, TicketReader, TicketStatus,
        Ticketing, TicketingError, all_notes, all_tickets, collect_all,
        servicenow::{ServiceNowAuth, ServiceNowClient},
    },
};

use crate::helpers::{KEY, a_note_is_stored_and_listed_internal, start_sandbox as start};

fn client(sb: &RunningSandbox, password: &str) -> ServiceNowClient {
    let auth = ServiceNowAuth::Basic { username: "deskpilot.integration".into(), password: password.into() };
    ServiceNowClient::new(&format!("{}/servicenow", sb.base_url), auth, &HttpSettings::default()).unwrap()
}

#[tokio::test]
async fn reads_every_incident_caller_journal_entry_and_category() {
    let sb = start().await;
    let c = client(&sb, KEY);
    let demo = sb.snapshot("demo").await.unwrap();

    let ids: HashSet<_> = c.list_categories().await.unwrap().into_iter().filter_map(|c| c.id).collect();
    let want: HashSet<_> = demo.categories.keys().cloned().collect();
    assert_eq!(ids, want, "the category choices are valued by category id");

    let since = time::macros::datetime!(2026-01-01 00:00 UTC);
    let q = ListQuery { limit: Some(30), ..ListQuery::updated_since(since) };
    let tickets = collect_all(all_tickets(&c, q)).await.unwrap();
    assert_eq!(tickets.len(), demo.tickets.len(), "paged to the end, 30 at a time");
    assert!(tickets.windows(2).all(|w| w[0].updated_at <= w[1].updated_at), "oldest first");

    let (key, sample) =
        demo.tickets.iter().find(|(_, t)| t.category_id.is_some() && t.user_id.is_some()).unwrap();
    let id = sys_id("incident", key);
    let t = c.get_ticket(&id).await.unwrap();
    assert_eq!((&t.subject, &t.description), (&sample.subject, &sample.description));
    assert_eq!(t.priority_level(), sample.priority_level());
    assert_eq!(t.status == Some(TicketStatus::Closed), sample.status == Some(TicketStatus::Closed));
    assert_eq!(t.category_id, sample.category_id);
    assert_eq!(t.user_id, sample.user_id.as_deref().map(|u| sys_id("sys_user", u)));

    let customer = c.get_customer(t.customer_id.as_deref().unwrap()).await.unwrap();
    let want = &demo.customers[sample.customer_id.as_deref().unwrap()];
    assert_eq!(
        (customer.name.as_ref(), customer.emails[0].email.as_str()),
        (want.name.as_ref(), want.emails[0].email.as_str())
    );

    let notes =
        collect_all(all_notes(&c, ListQuery { limit: Some(1), ..ListQuery::notes_of(&id) })).await.unwrap();
    let sample_notes: Vec<_> = demo.notes.values().filter(|n| n.ticket_id.as_deref() == Some(key)).collect();
    assert_eq!(notes.len(), sample_notes.len(), "one entry a page, to the end");
    assert!(
        notes.iter().all(|n| n.visibility == Some(NoteVisibility::Public)),
        "sample replies are comments"
    );
    for n in &notes {
        let sample = sample_notes.iter().find(|s| s.description == n.description).unwrap();
        match (&sample.user_id, &sample.customer_id) {
            (Some(agent), _) => assert_eq!(
                (n.author(), n.user_id.clone()),
                (AuthorKind::Agent, Some(sys_id("sys_user", agent)))
            ),
            (None, Some(_)) => assert_eq!(
                (n.author(), n.customer_id.as_ref()),
                (AuthorKind::Customer, t.customer_id.as_ref())
            ),
            _ => {}
        }
    }
    assert!(matches!(c.get_ticket(&sys_id("incident", "nope")).await, Err(TicketingError::NotFound { .. })));
    assert!(matches!(client(&sb, "wrong").get_ticket(&id).await, Err(TicketingError::Unauthorized { .. })));
}

#[tokio::test]
async fn an_update_sets_impact_and_urgency_and_a_draft_is_stored_as_a_work_note() {
    let sb = start().await;
    let c = client(&sb, KEY);
    let before = sb.snapshot("demo").await.unwrap();
    let (key, sample) = before
        .tickets
        .iter()
        .find(|(_, t)| t.priority_level() != PriorityLevel::Urgent && t.status != Some(TicketStatus::Closed))
        .unwrap();
    let id = sys_id("incident", key);

    let patch = TicketPatch {
        priority: Some("urgent".into()),
        category_id: Some("cat-refunds".into()),
        user_id: Some(sys_id("sys_user", "u-04")),
        ..TicketPatch::default()
    };
    let t = c.update_ticket(&id, &patch).await.unwrap();
    assert_eq!(t.priority_level(), PriorityLevel::Urgent, "impact 1 × urgency 1 is priority 1");
    let stored = &sb.snapshot("demo").await.unwrap().tickets[key];
    assert_eq!(stored.priority.as_deref(), Some("urgent"));
    assert_eq!(stored.category_id.as_deref(), Some("cat-refunds"));
    assert_eq!(stored.user_id.as_deref(), Some("u-04"));
    assert!(stored.updated_at > sample.updated_at);
    for (level, word) in [("high", "high"), ("normal", "normal"), ("low", "low")] {
        let t = c
            .update_ticket(&id, &TicketPatch { priority: Some(level.into()), ..TicketPatch::default() })
            .await
            .unwrap();
        assert_eq!(t.priority.as_deref(), Some(word), "{level} round-trips through impact × urgency");
    }

    let bad = TicketPatch { category_id: Some("Refunds".into()), ..TicketPatch::default() };
    let err = c.update_ticket(&id, &bad).await.unwrap_err();
    assert!(err.to_string().contains("Invalid value for category"), "a label is not a choice value: {err}");

    let stored = a_note_is_stored_and_listed_internal(&sb, &c, &id).await;
    assert_eq!(stored.author_kind, Some(AuthorKind::Agent), "the integration user wrote it");
    let listed = collect_all(all_notes(&c, ListQuery::notes_of(&id))).await.unwrap();
    assert_eq!(listed.last().unwrap().author(), AuthorKind::Agent);

    let closed = c
        .update_ticket(&id, &TicketPatch { status: Some(TicketStatus::Closed), ..TicketPatch::default() })
        .await
        .unwrap();
    assert_eq!(closed.status, Some(TicketStatus::Closed), "resolved (6) reads as closed");
    assert!(closed.closed_at.is_some());
}

/// `deskpilot demo --backend servicenow` triages the sandbox's incidents through the ServiceNow
/// connector.
#[tokio::test(flavor = "multi_thread")]
async fn the_demo_runs_through_the_servicenow_connector() {
    crate::helpers::demo_runs_through("servicenow").await;
}

/// The poller walks a ServiceNow connection (offsets are `sysparm_offset`, `sys_updated_on>=` in
/// whole seconds) and publishes each incident changed since its start once.
#[tokio::test(flavor = "multi_thread")]
async fn the_poller_publishes_every_change_of_a_servicenow_connection_once() {
    let rig = crate::ingest_poll::Rig::new(crate::helpers::TestStoreKind::Sqlite).await;
    let reader = std::sync::Arc::new(client(&rig.sandbox, KEY));
    rig.polls_every_change_once_as(reader, |id| sys_id("incident", id)).await;
}

/// Incidents sharing one second (ServiceNow's dates have no fraction) are stepped through by
/// `sysparm_offset`.
#[tokio::test(flavor = "multi_thread")]
async fn the_poller_steps_through_incidents_sharing_a_second() {
    crate::ingest_poll::steps_through_tickets_sharing_a_second_as(
        |sb| std::sync::Arc::new(client(sb, KEY)),
        |id| sys_id("incident", id),
    )
    .await;
}
