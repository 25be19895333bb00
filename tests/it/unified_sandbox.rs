//! The Unified.to client against the sandbox helpdesk over real HTTP: every operation the
//! normalized layer offers, paging past 100 items, and `updated_gte`.

use std::collections::HashSet;

use deskpilot::{
    http::HttpSettings,
    sandbox::RunningSandbox,
    ticketing::{
        ListQuery, NewNote, PriorityLevel, SortField, SortOrder, TicketPatch, TicketReader, TicketStatus,
        Ticketing, TicketingError, all_notes, all_tickets, collect_all, count_all, unified::UnifiedClient,
    },
};

use crate::helpers::{KEY, start_sandbox as start};

fn client(sb: &RunningSandbox, connection: &str) -> UnifiedClient {
    UnifiedClient::new(&sb.base_url, connection, KEY.into(), &HttpSettings::default()).unwrap()
}

#[tokio::test]
async fn reads_tickets_customers_notes_and_categories() {
    let sb = start().await;
    let c = client(&sb, "demo");

    let categories = c.list_categories().await.unwrap();
    let ids: HashSet<_> = categories.iter().filter_map(|c| c.id.as_deref()).collect();
    for id in ["cat-billing", "cat-refunds", "cat-bug", "cat-outage", "cat-account-access", "cat-shipping"] {
        assert!(ids.contains(id), "missing category {id}");
    }
    assert!(categories.iter().all(|c| c.description.as_deref().is_some_and(|d| !d.is_empty())));

    let tickets = collect_all(all_tickets(&c, ListQuery::default())).await.unwrap();
    assert!(tickets.len() >= 80, "only {} tickets", tickets.len());
    let ticket = tickets.iter().find(|t| t.customer_id.is_some()).expect("a ticket with a customer");
    let id = ticket.id.as_deref().unwrap();

    let fetched = c.get_ticket(id).await.unwrap();
    assert_eq!(&fetched, ticket, "get and list return the same ticket");

    let customer = c.get_customer(ticket.customer_id.as_deref().unwrap()).await.unwrap();
    assert_eq!(customer.id, ticket.customer_id);
    assert!(!customer.emails.is_empty());

    let notes = c.list_notes(&ListQuery::notes_of(id)).await.unwrap().items;
    assert!(!notes.is_empty(), "every sample ticket has at least one note");
    assert!(notes.iter().all(|n| n.ticket_id.as_deref() == Some(id)));
}

#[tokio::test]
async fn updates_a_ticket_and_posts_a_note() {
    let sb = start().await;
    let c = client(&sb, "demo");
    let ticket =
        c.list_tickets(&ListQuery { limit: Some(1), ..ListQuery::default() }).await.unwrap().items.remove(0);
    let id = ticket.id.clone().unwrap();
    let mut tags = ticket.tags.clone();
    tags.push("deskpilot-test".into());

    let patch = TicketPatch {
        priority: Some("urgent".into()),
        category_id: Some("cat-outage".into()),
        tags: Some(tags.clone()),
        ..TicketPatch::default()
    };
    let updated = c.update_ticket(&id, &patch).await.unwrap();
    assert_eq!(updated.priority_level(), PriorityLevel::Urgent);
    assert_eq!(updated.category_id.as_deref(), Some("cat-outage"));
    assert_eq!(updated.tags, tags);
    assert_eq!(updated.subject, ticket.subject, "a patch leaves other fields alone");
    assert!(updated.updated_at >= ticket.updated_at);
    assert_eq!(c.get_ticket(&id).await.unwrap(), updated);

    let before = c.list_notes(&ListQuery::notes_of(&id)).await.unwrap().items.len();
    let note = NewNote {
        ticket_id: id.clone(),
        description: "Internal draft".into(),
        user_id: Some("u-01".into()),
        raw: None,
    };
    let created = c.create_note(&note).await.unwrap();
    assert!(created.id.is_some() && created.created_at.is_some());
    assert_eq!(created.description.as_deref(), Some("Internal draft"));
    let after = c.list_notes(&ListQuery::notes_of(&id)).await.unwrap().items;
    assert_eq!(after.len(), before + 1);
    assert!(after.iter().any(|n| n.id == created.id));

    let closed = c
        .update_ticket(&id, &TicketPatch { status: Some(TicketStatus::Closed), ..TicketPatch::default() })
        .await
        .unwrap();
    assert_eq!(closed.status, Some(TicketStatus::Closed));
    assert!(closed.closed_at.is_some(), "closing sets closed_at");
}

#[tokio::test]
async fn pages_past_one_hundred_items() {
    let sb = start().await;
    let c = client(&sb, "demo");
    let ticket_id =
        c.list_tickets(&ListQuery { limit: Some(1), ..ListQuery::default() }).await.unwrap().items[0]
            .id
            .clone()
            .unwrap();
    let existing = count_all(all_notes(&c, ListQuery::notes_of(&ticket_id))).await.unwrap();
    for i in 0..(130 - existing) {
        let note =
            NewNote { ticket_id: ticket_id.clone(), description: format!("n{i}"), user_id: None, raw: None };
        c.create_note(&note).await.unwrap();
    }

    let page =
        c.list_notes(&ListQuery { limit: Some(500), ..ListQuery::notes_of(&ticket_id) }).await.unwrap();
    assert_eq!(page.items.len(), 100, "the server caps a page at 100");

    let all = collect_all(all_notes(&c, ListQuery::notes_of(&ticket_id))).await.unwrap();
    assert_eq!(all.len(), 130);
    let distinct: HashSet<_> = all.iter().map(|n| n.id.clone().unwrap()).collect();
    assert_eq!(distinct.len(), 130, "no note is returned twice across pages");

    let small_pages = ListQuery { limit: Some(7), ..ListQuery::notes_of(&ticket_id) };
    assert_eq!(count_all(all_notes(&c, small_pages)).await.unwrap(), 130);

    let tickets =
        count_all(all_tickets(&c, ListQuery { limit: Some(10), ..ListQuery::default() })).await.unwrap();
    let at_once = count_all(all_tickets(&c, ListQuery::default())).await.unwrap();
    assert_eq!(tickets, at_once);
}

#[tokio::test]
async fn updated_gte_returns_only_newer_items_in_order() {
    let sb = start().await;
    let c = client(&sb, "demo");
    let all = collect_all(all_tickets(&c, ListQuery::default())).await.unwrap();
    let mut stamps: Vec<_> = all.iter().map(|t| t.updated_at.unwrap()).collect();
    stamps.sort();
    let cut = stamps[stamps.len() / 2];
    let expected = stamps.iter().filter(|s| **s >= cut).count();

    let newer = collect_all(all_tickets(&c, ListQuery::updated_since(cut))).await.unwrap();
    assert_eq!(newer.len(), expected);
    assert!(newer.iter().all(|t| t.updated_at.unwrap() >= cut));
    assert!(newer.windows(2).all(|w| w[0].updated_at <= w[1].updated_at), "sorted by updated_at asc");

    let newest_first =
        ListQuery { order: Some(SortOrder::Desc), sort: Some(SortField::UpdatedAt), ..ListQuery::default() };
    let desc = c.list_tickets(&newest_first).await.unwrap().items;
    assert_eq!(desc[0].updated_at, stamps.last().copied());

    let id = all[0].id.clone().unwrap();
    let touched = c
        .update_ticket(&id, &TicketPatch { priority: Some("high".into()), ..TicketPatch::default() })
        .await
        .unwrap();
    let since_touch =
        c.list_tickets(&ListQuery::updated_since(touched.updated_at.unwrap())).await.unwrap().items;
    assert!(
        since_touch.iter().any(|t| t.id.as_deref() == Some(id.as_str())),
        "an update moves a ticket past the cursor"
    );
}

#[tokio::test]
async fn fields_limit_what_comes_back() {
    let sb = start().await;
    let c = client(&sb, "demo");
    let q = ListQuery { fields: vec!["id".into(), "subject".into()], limit: Some(5), ..ListQuery::default() };
    for t in c.list_tickets(&q).await.unwrap().items {
        assert!(t.id.is_some() && t.subject.is_some());
        assert!(t.description.is_none() && t.created_at.is_none() && t.raw.is_none());
    }
    let with_raw = c.get_ticket_with("1001", &["id".into(), "raw".into()], None).await;
    assert!(with_raw.is_ok(), "{with_raw:?}");
}

#[tokio::test]
async fn errors_are_classified() {
    let sb = start().await;
    let c = client(&sb, "demo");
    assert!(matches!(c.get_ticket("no-such-ticket").await, Err(TicketingError::NotFound { .. })));
    assert!(matches!(c.get_customer("no-such-customer").await, Err(TicketingError::NotFound { .. })));

    let wrong_key =
        UnifiedClient::new(&sb.base_url, "demo", "nope".into(), &HttpSettings::default()).unwrap();
    assert!(matches!(wrong_key.list_categories().await, Err(TicketingError::Unauthorized { .. })));

    let unknown = client(&sb, "no-such-connection");
    assert!(matches!(unknown.get_ticket("1001").await, Err(TicketingError::NotFound { .. })));
}

#[tokio::test]
async fn connections_are_isolated() {
    let sb = start().await;
    let demo = collect_all(all_tickets(&client(&sb, "demo"), ListQuery::default())).await.unwrap();
    let acme = collect_all(all_tickets(&client(&sb, "acme-retail"), ListQuery::default())).await.unwrap();
    assert!(!acme.is_empty());
    let demo_ids: HashSet<_> = demo.iter().map(|t| (t.id.clone(), t.subject.clone())).collect();
    assert!(acme.iter().all(|t| !demo_ids.contains(&(t.id.clone(), t.subject.clone()))));
}
