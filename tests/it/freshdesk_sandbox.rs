//! The Freshdesk client against the sandbox's Freshdesk flavour over real HTTP: every operation,
//! paging to the end, notes stored with their visibility, tags merged, basic auth refused.

use std::collections::HashSet;

use deskpilot::{
    http::HttpSettings,
    sandbox::RunningSandbox,
    ticketing::{
        ListQuery, NoteVisibility, PriorityLevel, TicketPatch, TicketReader, TicketStatus, Ticketing,
        TicketingError, all_notes, all_tickets, collect_all, freshdesk::FreshdeskClient,
    },
};

use crate::helpers::{KEY, start_sandbox as start};

fn client(sb: &RunningSandbox, key: &str) -> FreshdeskClient {
    FreshdeskClient::new(&format!("{}/freshdesk", sb.base_url), key.into(), &HttpSettings::default()).unwrap()
}

/// As on Freshdesk, a bare ticket list holds only the last 30 days' new tickets, and the
/// connector asks with `updated_since` so that none is left out.
#[tokio::test]
async fn a_bare_ticket_list_covers_thirty_days_and_the_connector_lists_them_all() {
    let sb = start().await;
    let demo = sb.snapshot("demo").await.unwrap();
    let recent = time::OffsetDateTime::now_utc() - time::Duration::days(30);
    let url = format!("{}/freshdesk/api/v2/tickets?per_page=100", sb.base_url);
    let mut listed = 0;
    for page in 1.. {
        let page: Vec<serde_json::Value> = reqwest::Client::new()
            .get(format!("{url}&page={page}"))
            .basic_auth(KEY, Some("X"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        listed += page.len();
    }
    let want = demo.tickets.values().filter(|t| t.created_at.is_some_and(|c| c >= recent)).count();
    assert_eq!(listed, want, "tickets created in the last 30 days");
    let all = collect_all(all_tickets(&client(&sb, KEY), ListQuery::default())).await.unwrap();
    assert_eq!(all.len(), demo.tickets.len(), "the connector lists every ticket");
    let refused = reqwest::Client::new()
        .get(format!("{url}&page=301"))
        .basic_auth(KEY, Some("X"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400, "pages past the 300th are refused");
}

#[tokio::test]
async fn reads_every_ticket_contact_conversation_and_category() {
    let sb = start().await;
    let c = client(&sb, KEY);
    let demo = sb.snapshot("demo").await.unwrap();

    let names: HashSet<_> = c.list_categories().await.unwrap().into_iter().filter_map(|c| c.id).collect();
    for name in ["Billing", "Refunds", "Bug report"] {
        assert!(names.contains(name), "missing type {name}: {names:?}");
    }

    let since = time::macros::datetime!(2026-01-01 00:00 UTC);
    let q = ListQuery { limit: Some(30), ..ListQuery::updated_since(since) };
    let tickets = collect_all(all_tickets(&c, q)).await.unwrap();
    assert_eq!(tickets.len(), demo.tickets.len(), "paged to the end, 30 at a time");
    assert!(tickets.windows(2).all(|w| w[0].updated_at <= w[1].updated_at), "oldest first");

    let sample = demo.tickets.values().find(|t| t.category_id.is_some() && t.user_id.is_some()).unwrap();
    let id = sample.id.as_deref().unwrap();
    let t = c.get_ticket(id).await.unwrap();
    assert_eq!(t.subject, sample.subject);
    assert_eq!(t.description, sample.description);
    assert_eq!(t.priority_level(), sample.priority_level());
    assert_eq!(
        t.status.as_ref().map(|s| s == &TicketStatus::Closed),
        sample.status.as_ref().map(|s| s == &TicketStatus::Closed)
    );
    let category = &demo.categories[sample.category_id.as_deref().unwrap()];
    assert_eq!(t.category_id, category.name);

    let customer = c.get_customer(t.customer_id.as_deref().unwrap()).await.unwrap();
    let want = &demo.customers[sample.customer_id.as_deref().unwrap()];
    assert_eq!(customer.name, want.name);
    assert_eq!(customer.emails.len(), want.emails.len());

    let notes =
        collect_all(all_notes(&c, ListQuery { limit: Some(1), ..ListQuery::notes_of(id) })).await.unwrap();
    let want = demo.notes.values().filter(|n| n.ticket_id.as_deref() == Some(id)).count();
    assert_eq!(notes.len(), want, "one conversation a page, to the end");
    assert!(notes.iter().all(|n| n.visibility == Some(NoteVisibility::Public)), "sample replies are public");
    assert!(matches!(c.get_ticket("999999").await, Err(TicketingError::NotFound { .. })));
    assert!(matches!(client(&sb, "wrong").get_ticket(id).await, Err(TicketingError::Unauthorized { .. })));
}

#[tokio::test]
async fn an_update_keeps_existing_tags_and_a_note_is_stored_private() {
    let sb = start().await;
    let c = client(&sb, KEY);
    let before = sb.snapshot("demo").await.unwrap();
    let (key, sample) = before.tickets.iter().find(|(_, t)| !t.tags.is_empty()).unwrap();

    let mut tags = sample.tags.clone();
    tags.push("deskpilot-test".into());
    let patch = TicketPatch {
        priority: Some("urgent".into()),
        category_id: Some("Refunds".into()),
        tags: Some(tags.clone()),
        user_id: Some("4".into()),
        ..TicketPatch::default()
    };
    let t = c.update_ticket(key, &patch).await.unwrap();
    assert_eq!(t.priority_level(), PriorityLevel::Urgent);
    assert_eq!(t.tags, tags);
    let stored = &sb.snapshot("demo").await.unwrap().tickets[key];
    assert_eq!(stored.tags, tags, "the merged list replaced the old one");
    assert_eq!(stored.category_id.as_deref(), Some("cat-refunds"));
    assert_eq!(stored.user_id.as_deref(), Some("u-04"));
    assert!(stored.updated_at > sample.updated_at);

    let bad = TicketPatch { category_id: Some("Nonsense".into()), ..TicketPatch::default() };
    let err = c.update_ticket(key, &bad).await.unwrap_err();
    assert!(err.to_string().contains("Validation failed"), "{err}");

    crate::helpers::a_note_is_stored_and_listed_internal(&sb, &c, key).await;
}

/// `deskpilot sandbox --print-config` prints connections that `deskpilot check` reaches, each
/// listing its categories.
#[tokio::test(flavor = "multi_thread")]
async fn the_printed_sandbox_config_checks_out_on_every_connection() {
    let sb = start().await;
    let addr = sb.base_url.trim_start_matches("http://").to_owned();
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_deskpilot"))
                .env_clear()
                .env("DESKPILOT_LOG", "warn")
                .args(args)
                .output()
                .expect("the binary runs")
        })
    };
    let printed =
        run(["sandbox", "--print-config", "--addr", &addr, "--api-key", KEY].map(String::from).to_vec())
            .await
            .unwrap();
    assert!(printed.status.success(), "{}", String::from_utf8_lossy(&printed.stderr));
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::io::Write::write_all(&mut file, &printed.stdout).unwrap();
    let path = file.path().display().to_string();
    let o = run(vec!["--config".into(), path, "check".into()]).await.unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "stdout: {out}\nstderr: {}", String::from_utf8_lossy(&o.stderr));
    for line in [
        format!("  demo: unified at {}", sb.base_url),
        format!("  acme-retail: unified at {}", sb.base_url),
        format!("  demo-freshdesk: freshdesk at {}/freshdesk", sb.base_url),
        format!("  demo-zendesk: zendesk at {}/zendesk", sb.base_url),
        format!("  demo-intercom: intercom at {}/intercom", sb.base_url),
        format!("  demo-servicenow: servicenow at {}/servicenow", sb.base_url),
    ] {
        assert!(out.contains(&line), "`{line}` missing from:\n{out}");
    }
    assert_eq!(out.matches("    OK: ").count(), 6, "{out}");
    assert!(out.contains("categories: Account access, Billing"), "{out}");
}

/// `deskpilot demo --backend freshdesk` triages the sandbox's tickets through the Freshdesk
/// connector (decided by the fallback rules: no LLM is configured).
#[tokio::test(flavor = "multi_thread")]
async fn the_demo_runs_through_the_freshdesk_connector() {
    crate::helpers::demo_runs_through("freshdesk").await;
}

/// The poller walks a Freshdesk connection (pages by number, offsets inside a page when several
/// tickets share an instant) and publishes each ticket changed since its start once.
#[tokio::test(flavor = "multi_thread")]
async fn the_poller_publishes_every_change_of_a_freshdesk_connection_once() {
    let rig = crate::ingest_poll::Rig::new(crate::helpers::TestStoreKind::Sqlite).await;
    rig.polls_every_change_once_through(std::sync::Arc::new(client(&rig.sandbox, KEY))).await;
}

/// Tickets sharing one second (Freshdesk's dates have no fraction) are stepped through by offset.
#[tokio::test(flavor = "multi_thread")]
async fn the_poller_steps_through_tickets_sharing_a_second() {
    crate::ingest_poll::steps_through_tickets_sharing_a_second(|sb| std::sync::Arc::new(client(sb, KEY)))
        .await;
}
