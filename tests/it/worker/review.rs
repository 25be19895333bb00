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

pub(super) async fn shadow_proposals_are_approved_once_edited_rejected_or_superseded(mut p: Pipeline) {
    let tickets = p.untriaged(5);
    let policy = ActPolicy { notes_internal_verified: true, ..shadow() };
    p.spawn_worker(policy.clone(), settings(Duration::from_secs(30))).await;
    p.publish(&tickets).await;
    p.wait_done(&tickets, WAIT).await;
    p.stop_workers().await;
    let proposals = p.proposals().await;
    let id_of = |t: &str| proposals.iter().find(|x| x.ticket_id == t).expect("a proposal per ticket").id;
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
