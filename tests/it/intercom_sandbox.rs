//! The Intercom client against the sandbox's Intercom flavour over real HTTP: every operation,
//! the search paged by cursor to the end, notes stored with their visibility, tags added, the
//! bearer token refused, and the poller walking it.

use std::collections::HashSet;

use deskpilot::{
    http::HttpSettings,
    sandbox::RunningSandbox,
    ticketing::{
        ListQuery, NoteVisibility, PageToken, TicketPatch, TicketReader, TicketStatus, Ticketing,
        TicketingError, all_notes, all_tickets, collect_all, intercom::IntercomClient,
    },
};

use crate::helpers::{KEY, start_sandbox as start};

fn client(sb: &RunningSandbox, key: &str) -> IntercomClient {
    IntercomClient::new(&format!("{}/intercom", sb.base_url), key.into(), &HttpSettings::default()).unwrap()
}

#[tokio::test]
async fn reads_every_ticket_contact_part_and_ticket_type() {
    let sb = start().await;
    let c = client(&sb, KEY);
    let demo = sb.snapshot("demo").await.unwrap();

    let ids: HashSet<_> = c.list_categories().await.unwrap().into_iter().filter_map(|c| c.id).collect();
    assert_eq!(ids, demo.categories.keys().cloned().collect(), "the ticket types are the categories");

    let since = time::macros::datetime!(2026-01-01 00:00 UTC);
    let q = ListQuery { limit: Some(30), ..ListQuery::updated_since(since) };
    let tickets = collect_all(all_tickets(&c, q.clone())).await.unwrap();
    assert_eq!(tickets.len(), demo.tickets.len(), "searched to the end by cursor, 30 at a time");
    assert!(tickets.windows(2).all(|w| w[0].updated_at <= w[1].updated_at), "oldest first");
    // An offset is walked from the start of the search: the 35th ticket on.
    let page = c.list_tickets(&ListQuery { page: Some(PageToken::Offset(34)), ..q }).await.unwrap();
    assert_eq!(page.items.first().and_then(|t| t.id.clone()), tickets[34].id);

    let sample = demo.tickets.values().find(|t| t.category_id.is_some() && t.user_id.is_some()).unwrap();
    let id = sample.id.as_deref().unwrap();
    let t = c.get_ticket(id).await.unwrap();
    assert_eq!((&t.subject, &t.description), (&sample.subject, &sample.description));
    assert_eq!(
        (&t.category_id, &t.user_id, &t.customer_id),
        (&sample.category_id, &sample.user_id, &sample.customer_id)
    );
    assert_eq!(t.priority, None, "Intercom tickets have no priority");
    assert_eq!(t.updated_at.unwrap().unix_timestamp(), sample.updated_at.unwrap().unix_timestamp());
    assert_eq!(
        t.status == Some(TicketStatus::Closed),
        sample.status == Some(TicketStatus::Closed),
        "closed ones read closed"
    );

    let tagged = demo.customers.values().find(|c| !c.tags.is_empty()).unwrap();
    let customer = c.get_customer(tagged.id.as_deref().unwrap()).await.unwrap();
    assert_eq!((&customer.name, &customer.tags), (&tagged.name, &tagged.tags), "tag names read by reference");
    assert_eq!(customer.emails.first().map(|e| &e.email), tagged.emails.first().map(|e| &e.email));

    let notes =
        collect_all(all_notes(&c, ListQuery { limit: Some(1), ..ListQuery::notes_of(id) })).await.unwrap();
    let want = demo.notes.values().filter(|n| n.ticket_id.as_deref() == Some(id)).count();
    assert_eq!(notes.len(), want, "one part a page, to the end");
    assert!(
        notes.iter().all(|n| n.visibility == Some(NoteVisibility::Public)),
        "sample replies are comments"
    );
    assert!(matches!(c.get_ticket("999999").await, Err(TicketingError::NotFound { .. })));
    assert!(matches!(client(&sb, "wrong").get_ticket(id).await, Err(TicketingError::Unauthorized { .. })));
}

#[tokio::test]
async fn an_update_adds_tags_and_a_note_reply_is_stored_internal() {
    let sb = start().await;
    let c = client(&sb, KEY);
    let before = sb.snapshot("demo").await.unwrap();
    let (key, sample) =
        before.tickets.iter().find(|(_, t)| !t.tags.is_empty() && t.user_id.is_some()).unwrap();
    let known = c.tags_in_use().await.unwrap().unwrap();
    assert!(sample.tags.iter().all(|t| known.contains(t)), "the workspace's tags: {known:?}");

    let patch = TicketPatch {
        tags: Some(vec!["deskpilot-test".into(), sample.tags[0].to_uppercase()]),
        user_id: Some("u-04".into()),
        status: Some(TicketStatus::Closed),
        ..TicketPatch::default()
    };
    let t = c.update_ticket(key, &patch).await.unwrap();
    assert_eq!(t.status, Some(TicketStatus::Closed));
    let stored = &sb.snapshot("demo").await.unwrap().tickets[key];
    let mut want = sample.tags.clone();
    want.push("deskpilot-test".into());
    assert_eq!(stored.tags, want, "added, none removed, none twice");
    assert_eq!((stored.user_id.as_deref(), &stored.status), (Some("u-04"), &Some(TicketStatus::Closed)));
    assert!(stored.updated_at > sample.updated_at);
    let reopen = TicketPatch { status: Some(TicketStatus::Active), ..TicketPatch::default() };
    assert_eq!(c.update_ticket(key, &reopen).await.unwrap().status, Some(TicketStatus::Active));

    let wrong = TicketPatch { user_id: Some("nobody".into()), ..TicketPatch::default() };
    assert!(matches!(c.update_ticket(key, &wrong).await, Err(TicketingError::NotFound { .. })));

    let stored = crate::helpers::a_note_is_stored_and_listed_internal(&sb, &c, key).await;
    assert!(stored.user_id.is_some(), "written as the token's admin (GET /me)");
}

/// The poller walks an Intercom connection (cursor paging, whole seconds, offsets
/// walked from the start when tickets share a second) and publish each change since their
/// start once.
#[tokio::test(flavor = "multi_thread")]
async fn the_poller_publishes_every_change_of_an_intercom_connection_once() {
    let rig = crate::ingest_poll::Rig::new(crate::helpers::TestStoreKind::Sqlite).await;
    rig.polls_every_change_once_through(std::sync::Arc::new(client(&rig.sandbox, KEY))).await;
}

/// Tickets sharing one second (Intercom's dates have no fraction) are stepped through by offset,
/// which the connector walks from the start of the search and fills the page up after.
#[tokio::test(flavor = "multi_thread")]
async fn the_poller_steps_through_tickets_sharing_a_second() {
    crate::ingest_poll::steps_through_tickets_sharing_a_second(|sb| std::sync::Arc::new(client(sb, KEY)))
        .await;
}

/// `deskpilot demo --backend intercom` triages the sandbox's tickets through the Intercom
/// connector (decided by the fallback rules: no LLM is configured).
#[tokio::test(flavor = "multi_thread")]
async fn the_demo_runs_through_the_intercom_connector() {
    crate::helpers::demo_runs_through("intercom").await;
}
