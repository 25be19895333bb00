//! Reviewing shadow proposals the worker stored: approving applies them exactly once through the
//! same guarded writes as apply mode, edits are applied as edited, a rejection writes nothing, and
//! a ticket a person triaged first supersedes its proposal.

use deskpilot::{
    review::{Approval, Edits, ReviewError},
    store::ProposalStatus,
    ticketing::NoteVisibility,
};

use super::*;

/// Notes carrying a proposal's draft (the note body ends with deskpilot's footer).
fn drafts_on(h: &Helpdesk, ticket: &str) -> Vec<Note> {
    h.notes
        .values()
        .filter(|n| n.ticket_id.as_deref() == Some(ticket))
        .filter(|n| n.description.as_deref().is_some_and(|d| d.contains("deskpilot-ref:")))
        .cloned()
        .collect()
}

/// Triages `tickets` in shadow mode (approved drafts may be posted as internal notes); returns that
/// policy and each ticket's proposal id.
pub(super) async fn shadowed(p: &mut Pipeline, tickets: &[String]) -> (ActPolicy, HashMap<String, i64>) {
    let policy = ActPolicy { notes_internal_verified: true, ..shadow() };
    p.spawn_worker(policy.clone(), settings(Duration::from_secs(30))).await;
    p.publish(tickets).await;
    p.wait_done(tickets, WAIT).await;
    p.stop_workers().await;
    let ids = p.proposals().await.into_iter().map(|x| (x.ticket_id.clone(), x.id)).collect();
    (policy, ids)
}

pub(super) async fn shadow_proposals_are_approved_once_edited_rejected_or_superseded(mut p: Pipeline) {
    let tickets = p.untriaged(5);
    let (policy, ids) = shadowed(&mut p, &tickets).await;
    let id_of = |t: &str| ids[t];
    let app = p.app(&policy, settings(Duration::from_secs(30))).await;
    let reviews = app.reviews();

    // Approved as proposed: applied, one internal note; approving again changes nothing.
    let (t0, p0) = (&tickets[0], id_of(&tickets[0]));
    let Approval::Applied { note_id: Some(note), .. } =
        reviews.approve(p0, "ana", &Edits::default()).await.unwrap()
    else {
        panic!("applied with a note")
    };
    let again = reviews.approve(p0, "ben", &Edits::default()).await.unwrap();
    assert!(matches!(&again, Approval::AlreadyApplied { by: Some(by), .. } if by == "ana"), "{again:?}");
    let after = p.snapshot().await;
    let drafts = drafts_on(&after, t0);
    assert_eq!(drafts.len(), 1, "one note, once: {drafts:#?}");
    assert_eq!(drafts[0].id.as_deref(), Some(note.as_str()));
    assert_ne!(drafts[0].visibility, Some(NoteVisibility::Public), "never public");
    assert_eq!(after.tickets[t0].category_id.as_deref(), Some(DEFAULT_CATEGORY));
    let stored = p.store.proposal(p0).await.unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.applied_note_id.as_deref()),
        (ProposalStatus::Applied, Some(note.as_str()))
    );
    let steps: Vec<_> =
        p.store.review_actions(p0).await.unwrap().into_iter().map(|a| (a.action, a.actor)).collect();
    assert_eq!(steps, [("approved".to_owned(), "ana".to_owned()), ("applied".into(), "ana".into())]);

    // Edited, then approved: the edits are what is written.
    let (t1, p1) = (&tickets[1], id_of(&tickets[1]));
    let other = p.before.categories.keys().find(|c| c.as_str() != DEFAULT_CATEGORY).unwrap().clone();
    // Without allowed_tags only tags the helpdesk already uses are written: edit to one of those.
    let in_use = p.before.tickets.values().flat_map(|t| t.tags.clone()).next().expect("a tag in use");
    let edits = Edits {
        category_id: Some(other.clone()),
        priority: Some(PriorityLevel::Low),
        tags: Some(vec![in_use.to_uppercase()]),
        draft: Some("Hello, an edited draft.".into()),
    };
    assert!(matches!(reviews.approve(p1, "ana", &edits).await.unwrap(), Approval::Applied { .. }));
    let after = p.snapshot().await;
    let ticket = &after.tickets[t1];
    assert_eq!(ticket.category_id.as_deref(), Some(other.as_str()));
    assert_eq!(ticket.priority.as_deref(), Some("low"));
    assert!(ticket.tags.contains(&in_use), "normalized as the helpdesk has it: {:?}", ticket.tags);
    let drafts = drafts_on(&after, t1);
    assert_eq!(drafts.len(), 1);
    assert!(drafts[0].description.as_deref().unwrap().starts_with("Hello, an edited draft."));
    let approved = p.store.proposal(p1).await.unwrap().unwrap().approved_decision.expect("the edit is kept");
    assert_eq!(approved["category_id"], json!(other));

    // Rejected: nothing written, and it stays rejected.
    let (t2, p2) = (&tickets[2], id_of(&tickets[2]));
    reviews.reject(p2, "ana", "wrong_category", "it is a bug report").await.unwrap();
    let rejected = p.store.proposal(p2).await.unwrap().unwrap();
    assert_eq!(rejected.review_reason.as_deref(), Some("wrong_category: it is a bug report"));
    let e = reviews.approve(p2, "ben", &Edits::default()).await.unwrap_err();
    assert!(matches!(e, ReviewError::Settled { .. }) && e.to_string().contains("was rejected by ana"), "{e}");
    assert!(reviews.reject(p2, "ben", "spam", "").await.is_err());
    assert!(drafts_on(&p.snapshot().await, t2).is_empty());

    // A person triaged the ticket first: opening the proposal supersedes it.
    let (t3, p3) = (&tickets[3], id_of(&tickets[3]));
    let person = TicketPatch { category_id: Some(other.clone()), ..TicketPatch::default() };
    p.helpdesk.update_ticket(t3, &person).await.unwrap();
    let opened = reviews.open(p3).await.unwrap();
    assert_eq!(opened.proposal.status, ProposalStatus::Superseded);
    assert!(opened.changed.iter().any(|c| c.starts_with("category changed")), "{:?}", opened.changed);
    assert!(opened.ticket.is_some() && !opened.notes.is_empty(), "the conversation is shown");
    assert!(reviews.approve(p3, "ana", &Edits::default()).await.is_err());

    // A bad edit changes nothing; two reviewers approving at once post one note.
    let (t4, p4) = (&tickets[4], id_of(&tickets[4]));
    let bad = Edits { category_id: Some("no-such-category".into()), ..Edits::default() };
    let e = reviews.approve(p4, "ana", &bad).await.unwrap_err();
    assert!(e.to_string().contains("not an active category"), "{e}");
    assert_eq!(p.store.proposal(p4).await.unwrap().unwrap().status, ProposalStatus::Pending);
    let none = Edits::default();
    let (a, b) = tokio::join!(reviews.approve(p4, "ana", &none), reviews.approve(p4, "ben", &none));
    let applied = [&a, &b].iter().filter(|r| matches!(r, Ok(Approval::Applied { .. }))).count();
    assert_eq!(applied, 1, "one approval applies: {a:?} {b:?}");
    assert_eq!(drafts_on(&p.snapshot().await, t4).len(), 1);
}

/// A draft carrying markup and template syntax, as a model could echo from a customer's message.
const HOSTILE_DRAFT: &str = "Hello <script>document.title='pwned'</script> {{ 7*7 }} <b>not bold</b>";

/// The review page as a reviewer uses it, in headless Chromium: sign in, filter the list, open a
/// proposal and approve it, edit and approve a second, reject a third. The sandbox then holds one
/// internal note on each approved ticket and none on the rejected one; approving again changes
/// nothing. Screenshots of the list and a proposal are kept in `target/tmp/review-screenshots/`.
pub(super) async fn the_review_page_in_a_browser_approves_edits_and_rejects(mut p: Pipeline) {
    let Some(browser) = crate::helpers::browser::Browser::start().await else { return };
    let tickets = p.untriaged(4);
    let other = p.before.categories.keys().find(|c| c.as_str() != DEFAULT_CATEGORY).unwrap().clone();
    let mut hostile = decision_json(DEFAULT_CATEGORY, 0.9);
    hostile["draft_reply"] = json!(HOSTILE_DRAFT);
    p.answers.set(&tickets[0], hostile);
    p.answers.set(&tickets[3], decision_json(&other, 0.7));
    let (policy, ids) = shadowed(&mut p, &tickets).await;
    let id_of = |t: &str| ids[t];

    let mut config = p.config.clone();
    config.connections = vec![demo_connection(&p.sandbox.base_url, &policy)];
    config.review.token = Some("review-secret".into());
    let app = App::builder(&config).bus(p.bus.service_bus()).store(p.store.clone()).build().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = app.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("review-screenshots");

    // Signing in: the page sends a browser without a session to the form.
    browser.goto(&format!("{url}/review")).await;
    browser.wait_url("/review/sign-in?next=").await;
    browser.find("#name").await.type_text("Ana Reviewer").await;
    browser.find("#token").await.type_text("wrong").await;
    browser.find("#sign-in").await.click().await;
    assert!(browser.wait_for(".error").await.text().await.contains("not the review token"));
    browser.find("#name").await.type_text("Ana Reviewer").await;
    browser.find("#token").await.type_text("review-secret").await;
    browser.find("#sign-in").await.click().await;
    assert!(browser.wait_for("header .who").await.text().await.contains("Ana Reviewer"));
    assert!(browser.url().await.ends_with("/review"), "{}", browser.url().await);

    // Filtering by category leaves out the proposal of another category.
    browser.find("input[name=category]").await.type_text(DEFAULT_CATEGORY).await;
    browser.find("form.filters button").await.click().await;
    browser.wait_url(&format!("category={DEFAULT_CATEGORY}")).await;
    for t in &tickets[..3] {
        assert_eq!(browser.count(&format!("a[href='/review/{}']", id_of(t))).await, 2, "ticket {t} listed");
    }
    assert_eq!(browser.count(&format!("a[href='/review/{}']", id_of(&tickets[3]))).await, 0);
    browser.screenshot(&shots.join("list.png")).await;

    // Approved as proposed, from the list; the hostile draft is shown as text, never run.
    let p0 = id_of(&tickets[0]);
    browser.find(&format!("a[href='/review/{p0}']")).await.click().await;
    assert_eq!(browser.wait_for("#draft").await.text().await, HOSTILE_DRAFT);
    assert_eq!(browser.count("#draft b").await, 0, "markup in a draft stays text");
    assert!(!browser.source().await.contains("<title>pwned"), "no script ran");
    browser.screenshot(&shots.join("detail.png")).await;
    browser.find("#approve").await.click().await;
    assert!(browser.wait_for("#notice").await.text().await.contains("Approved and applied"));
    assert_eq!(browser.find("#status").await.text().await, "applied");
    assert_eq!(browser.count("#approve").await, 0, "nothing left to approve");

    // Edited, then approved.
    let p1 = id_of(&tickets[1]);
    let in_use = p.before.tickets.values().flat_map(|t| t.tags.clone()).next().expect("a tag in use");
    browser.goto(&format!("{url}/review/{p1}")).await;
    browser.find("#edit-section summary").await.click().await;
    browser.find(&format!("#edit-category option[value='{other}']")).await.click().await;
    browser.find("#edit-priority option[value='low']").await.click().await;
    let tags = browser.find("#edit-tags").await;
    tags.clear().await;
    tags.type_text(&in_use).await;
    let draft = browser.find("#edit-draft").await;
    draft.clear().await;
    draft.type_text("Hello, an edited draft.").await;
    browser.find("#edit-approve").await.click().await;
    assert!(browser.wait_for("#notice").await.text().await.contains("Approved and applied"));

    // Rejected with a reason.
    let p2 = id_of(&tickets[2]);
    browser.goto(&format!("{url}/review/{p2}")).await;
    browser.find("#reject-section summary").await.click().await;
    browser.find("#reject-reason option[value='wrong_category']").await.click().await;
    browser.find("#reject-text").await.type_text("it is a bug report").await;
    browser.find("#reject").await.click().await;
    assert!(browser.wait_for("#notice").await.text().await.contains("Rejected"));
    assert_eq!(browser.find("#status").await.text().await, "rejected");

    // Approving again, as a script would, changes nothing and says so.
    let again: Value = crate::helpers::http_client()
        .post(format!("{url}/review/{p0}/approve"))
        .bearer_auth("review-secret")
        .header("accept", "application/json")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["outcome"], "already_applied", "{again}");
    assert_eq!(again["by"], "Ana Reviewer");

    let after = p.snapshot().await;
    for (t, draft) in [(&tickets[0], HOSTILE_DRAFT), (&tickets[1], "Hello, an edited draft.")] {
        let notes = drafts_on(&after, t);
        assert_eq!(notes.len(), 1, "one internal note on {t}: {notes:#?}");
        assert_ne!(notes[0].visibility, Some(NoteVisibility::Public), "never public");
        assert!(notes[0].description.as_deref().unwrap().starts_with(draft));
    }
    assert!(drafts_on(&after, &tickets[2]).is_empty(), "nothing on the rejected ticket");
    let edited = &after.tickets[&tickets[1]];
    assert_eq!(
        (edited.category_id.as_deref(), edited.priority.as_deref()),
        (Some(other.as_str()), Some("low"))
    );
    assert_eq!(after.tickets[&tickets[2]], p.before.tickets[&tickets[2]], "the rejected ticket is untouched");
    let steps: Vec<_> = p
        .store
        .review_actions(p2)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.action, a.actor, a.reason))
        .collect();
    assert_eq!(
        steps,
        [(
            "rejected".to_owned(),
            "Ana Reviewer".to_owned(),
            Some("wrong_category: it is a bug report".to_owned())
        )]
    );
    // The agreement page draws each category's curve (no outcome is closed yet here).
    browser.goto(&format!("{url}/review/report")).await;
    assert!(browser.wait_for(".category h2").await.text().await.contains(DEFAULT_CATEGORY));
    browser.screenshot(&shots.join("report.png")).await;
    drop(browser);
}
