//! The Zendesk connector against the sandbox's Zendesk flavour: every operation over the bundled
//! data, paging to the end through both exports, a draft stored as an internal comment, tags
//! added without removing any, and one event through the whole service in apply mode.

use std::{io::Write, time::Duration};

use crate::helpers::*;
use deskpilot::{
    App,
    events::{EventKind, EventSource, TicketEvent},
    http::HttpSettings,
    sandbox::RunningSandbox,
    store::{LedgerKey, Step},
    ticketing::{
        AuthorKind, ListQuery, NewNote, NoteVisibility, TicketPatch, TicketReader, TicketStatus, Ticketing,
        TicketingError, all_notes, all_tickets, collect_all,
        zendesk::{TicketExport, ZendeskAuth, ZendeskClient, wire::CategorySource},
    },
};
use tokio_util::sync::CancellationToken;

/// The sandbox's category field (`deskpilot::sandbox` serves one dropdown with this id).
const FIELD: u64 = 360_000_000_001;

fn zendesk(sb: &RunningSandbox, export: TicketExport) -> ZendeskClient {
    let auth = ZendeskAuth::ApiToken { email: "agent@acme.com".into(), token: KEY.into() };
    ZendeskClient::new(
        &format!("{}/zendesk", sb.base_url),
        auth,
        export,
        CategorySource::Field(FIELD),
        &HttpSettings::default(),
    )
    .unwrap()
}

#[tokio::test]
async fn every_operation_reads_the_bundled_helpdesk_in_zendesk_shapes() {
    let sb = start_sandbox().await;
    let demo = sb.snapshot("demo").await.unwrap();
    let since = time::macros::datetime!(2000-01-01 00:00 UTC);
    let mut want: Vec<_> = demo.tickets.keys().cloned().collect();
    want.sort();
    for export in [TicketExport::Search, TicketExport::Incremental] {
        let z = zendesk(&sb, export);
        let q = ListQuery { limit: Some(7), updated_gte: Some(since), ..ListQuery::default() };
        let all = collect_all(all_tickets(&z, q)).await.unwrap();
        let mut ids: Vec<_> = all.iter().map(|t| t.id.clone().unwrap()).collect();
        ids.sort();
        assert_eq!(ids, want, "{export:?} pages to the end, each ticket once");
    }
    // Sorted by change, the offset search pages to the end in that order.
    let z = zendesk(&sb, TicketExport::Incremental);
    let sorted =
        collect_all(all_tickets(&z, ListQuery { limit: Some(7), ..ListQuery::updated_since(since) }))
            .await
            .unwrap();
    let times: Vec<_> = sorted.iter().map(|t| t.updated_at.unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest change first: {times:?}");
    let mut ids: Vec<_> = sorted.iter().map(|t| t.id.clone().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, want, "the sorted search pages to the end, each ticket once");
    let z = zendesk(&sb, TicketExport::Search);
    let (id, sample) = demo.tickets.iter().find(|(_, t)| t.category_id.is_some()).unwrap();
    let t = z.get_ticket(id).await.unwrap();
    assert_eq!(t.category_id, sample.category_id);
    assert_eq!(t.subject, sample.subject);
    assert_eq!(t.priority_level(), sample.priority_level());
    assert_eq!(
        t.status.as_ref().map(|s| *s == TicketStatus::Closed),
        sample.status.as_ref().map(|s| *s == TicketStatus::Closed)
    );
    let customer = z.get_customer(t.customer_id.as_deref().unwrap()).await.unwrap();
    let sample_customer = &demo.customers[sample.customer_id.as_deref().unwrap()];
    assert_eq!(customer.name, sample_customer.name);
    let notes = collect_all(all_notes(&z, ListQuery { limit: Some(2), ..ListQuery::notes_of(id.clone()) }))
        .await
        .unwrap();
    assert_eq!(notes.len(), demo.notes.values().filter(|n| n.ticket_id.as_deref() == Some(id)).count());
    assert!(notes.iter().all(|n| n.visibility == Some(NoteVisibility::Public)));
    assert!(notes.iter().all(|n| n.author() != AuthorKind::Unknown), "{notes:#?}");
    let categories = z.list_categories().await.unwrap();
    let mut names: Vec<_> = categories.iter().map(|c| c.id.clone().unwrap()).collect();
    names.sort();
    assert_eq!(names, DEMO_CATEGORIES);
    assert!(matches!(z.get_ticket("999999").await, Err(TicketingError::NotFound { .. })));
    let wrong = ZendeskClient::new(
        &format!("{}/zendesk", sb.base_url),
        ZendeskAuth::OAuth("nope".into()),
        TicketExport::Search,
        CategorySource::Field(FIELD),
        &HttpSettings::default(),
    )
    .unwrap();
    assert!(matches!(wrong.get_ticket(id).await, Err(TicketingError::Unauthorized { .. })));
}

#[tokio::test]
async fn a_draft_is_stored_internal_and_tags_are_added_never_replaced() {
    let sb = start_sandbox().await;
    let z = zendesk(&sb, TicketExport::Search);
    let before = sb.snapshot("acme-retail").await.unwrap();
    let z_acme = ZendeskClient::new(
        &format!("{}/zendesk/acme-retail", sb.base_url),
        ZendeskAuth::OAuth(KEY.into()),
        TicketExport::Search,
        CategorySource::Field(FIELD),
        &HttpSettings::default(),
    )
    .unwrap();
    let acme_ticket = before.tickets.keys().next().unwrap();
    assert_eq!(z_acme.get_ticket(acme_ticket).await.unwrap().id.as_deref(), Some(acme_ticket.as_str()));

    let note = z
        .create_note(&NewNote {
            ticket_id: "1001".into(),
            description: "Draft".into(),
            user_id: None,
            raw: None,
        })
        .await
        .unwrap();
    let stored = sb.snapshot("demo").await.unwrap();
    let kept = stored
        .notes
        .values()
        .find(|n| n.description.as_deref() == Some("Draft"))
        .expect("the note is stored");
    assert_eq!(kept.visibility, Some(NoteVisibility::Internal), "a draft must never be public");
    assert_eq!(note.visibility, Some(NoteVisibility::Internal));
    let listed = collect_all(all_notes(&z, ListQuery::notes_of("1001"))).await.unwrap();
    assert_eq!(listed.last().unwrap().visibility, Some(NoteVisibility::Internal));

    let old_tags = stored.tickets["1001"].tags.clone();
    let patch = TicketPatch {
        tags: Some(vec!["zz-new".into()]),
        priority: Some("URGENT".into()),
        ..TicketPatch::default()
    };
    let t = z.update_ticket("1001", &patch).await.unwrap();
    let mut want = old_tags.clone();
    want.push("zz-new".into());
    assert_eq!(t.tags, want, "existing tags stay");
    assert_eq!(t.priority.as_deref(), Some("urgent"));
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_mode_posts_an_internal_note_and_merges_tags_through_the_service() {
    let sb = start_sandbox().await;
    let sample = sb.snapshot("demo").await.unwrap();
    let (ticket, _) = sample
        .tickets
        .iter()
        .find(|(_, t)| t.category_id.is_none() && t.status != Some(TicketStatus::Closed))
        .expect("an untriaged open ticket");
    // A tag a person set: the merge must keep it.
    let person = TicketPatch { tags: Some(vec!["set-by-a-person".into()]), ..TicketPatch::default() };
    zendesk(&sb, TicketExport::Search).update_ticket(ticket, &person).await.unwrap();
    let before = sb.snapshot("demo").await.unwrap();
    let sample = &before.tickets[ticket];
    assert!(sample.tags.contains(&"set-by-a-person".to_owned()));
    let llm = mock_llm(ok(&valid_answer(Some("cat-billing"))), None).await;
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[llm]\nbase_url = \"{}/v1\"\nmodel = \"{MODEL}\"\nmax_retries = 0\n\
         [store]\nurl = \"sqlite://{}\"\n\
         [[connections]]\nid = \"demo\"\nbackend = \"zendesk\"\nsubdomain = \"sandbox\"\n\
         base_url = \"{}/zendesk\"\nemail = \"agent@acme.com\"\napi_token = \"{KEY}\"\n\
         category_field_id = {FIELD}\nmode = \"apply\"\nallowed_tags = [\"billing\", \"double-charge\"]\n\
         routing = {{ \"cat-billing\" = \"2000004\" }}\n",
        llm.uri(),
        dir.path().join("z.db").display(),
        sb.base_url,
    );
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    file.write_all(toml.as_bytes()).unwrap();
    let config = deskpilot::config::Config::load_from(Some(file.path()), Vec::<(String, String)>::new())
        .expect("config");
    let app = App::build(&config).await.expect("the service builds");
    let event = TicketEvent::new(EventKind::TicketCreated, "demo", ticket, EventSource::Manual);
    app.publisher().await.unwrap().publish(&event).await.unwrap();
    let store = app.store().clone();
    let shutdown = CancellationToken::new();
    let serving = tokio::spawn(app.serve(None, shutdown.clone()));
    let key = LedgerKey::from(&event);
    let started = std::time::Instant::now();
    while store.entry(&key).await.unwrap().is_none_or(|e| e.step != Step::Done) {
        assert!(started.elapsed() < Duration::from_secs(30), "the event was not handled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let entry = store.entry(&key).await.unwrap().unwrap();
    shutdown.cancel();
    serving.await.unwrap().unwrap();

    let after = sb.snapshot("demo").await.unwrap();
    let t = &after.tickets[ticket];
    assert_eq!(t.category_id.as_deref(), Some("cat-billing"));
    assert_eq!(t.user_id.as_deref(), Some("u-04"), "routed to the agent with Zendesk id 2000004");
    assert_eq!(t.priority.as_deref(), Some("high"));
    for tag in sample.tags.iter().chain(["billing".to_owned(), "double-charge".to_owned()].iter()) {
        assert!(t.tags.contains(tag), "tag `{tag}` missing from {:?}", t.tags);
    }
    let new: Vec<_> =
        after.notes.iter().filter(|(id, _)| !before.notes.contains_key(*id)).map(|(_, n)| n).collect();
    assert_eq!(new.len(), 1, "one note: {new:#?}");
    assert_eq!(new[0].visibility, Some(NoteVisibility::Internal), "the draft is stored private");
    assert!(new[0].description.as_deref().unwrap().contains("deskpilot-ref:"));
    assert_eq!(entry.note_id.as_deref(), Some("268"), "the ledger names the comment by its Zendesk id");
}

/// `deskpilot demo --backend zendesk` triages the sandbox's tickets through the Zendesk connector
/// (decided by the fallback rules: no LLM is configured).
#[tokio::test(flavor = "multi_thread")]
async fn the_demo_runs_through_the_zendesk_connector() {
    crate::helpers::demo_runs_through("zendesk").await;
}

/// The poller walks a Zendesk connection through the sorted offset search (offsets inside a page
/// when several tickets share a second) and publishes each ticket changed since its start once.
#[tokio::test(flavor = "multi_thread")]
async fn the_poller_publishes_every_change_of_a_zendesk_connection_once() {
    let rig = crate::ingest_poll::Rig::new(crate::helpers::TestStoreKind::Sqlite).await;
    rig.polls_every_change_once_through(std::sync::Arc::new(zendesk(&rig.sandbox, TicketExport::Search)))
        .await;
}

/// Tickets sharing one second (Zendesk's dates have no fraction) are stepped through by offset.
#[tokio::test(flavor = "multi_thread")]
async fn the_poller_steps_through_tickets_sharing_a_second() {
    crate::ingest_poll::steps_through_tickets_sharing_a_second(|sb| {
        std::sync::Arc::new(zendesk(sb, TicketExport::Search))
    })
    .await;
}
