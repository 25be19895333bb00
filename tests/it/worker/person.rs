//! Never overwrite a person: what a person changes while deskpilot decides stays theirs.

use deskpilot::ticketing::TicketStatus;

use super::*;

/// Starts an apply-mode worker whose LLM answers after a pause, publishes `ticket`, and runs
/// `person` while the LLM is thinking; returns the ledger entry once the event is done.
async fn edit_during_triage(p: &mut Pipeline, ticket: &str, person: TicketPatch) -> Entry {
    p.answers.set_delay(Duration::from_millis(1200));
    p.spawn_worker(apply(true), settings(Duration::from_secs(30))).await;
    let tickets = vec![ticket.to_owned()];
    p.publish(&tickets).await;
    wait_until("the LLM is deciding", WAIT, || async { !p.answers.asked().is_empty() }).await;
    p.helpdesk.update_ticket(ticket, &person).await.expect("the person's edit");
    let entry = p.wait_done(&tickets, WAIT).await.remove(0);
    p.stop_workers().await;
    p.assert_bus_drained().await;
    entry
}

/// A person lowers the priority, removes a tag the model proposes and picks a category and an
/// assignee while the LLM is thinking: all four stay, and the ledger says what was kept and why.
/// (Before the snapshot, deskpilot wrote its own priority and added the removed tag back.)
pub(super) async fn a_person_s_edits_during_triage_are_kept(mut p: Pipeline) {
    let t = p.untriaged(1).remove(0);
    let start = TicketPatch {
        priority: Some("normal".into()),
        tags: Some(vec!["vip".into(), "billing".into()]),
        ..TicketPatch::default()
    };
    p.helpdesk.update_ticket(&t, &start).await.unwrap();
    let person = TicketPatch {
        priority: Some("low".into()),
        tags: Some(vec!["vip".into()]),
        category_id: Some("cat-bug".into()),
        user_id: Some("u-09".into()),
        ..TicketPatch::default()
    };
    let entry = edit_during_triage(&mut p, &t, person).await;

    let after = p.snapshot().await;
    let ticket = &after.tickets[&t];
    assert_eq!(ticket.priority.as_deref(), Some("low"), "the person's priority (the model said high)");
    assert_eq!(ticket.tags, ["vip", "double-charge"], "`billing` is not added back");
    assert_eq!(ticket.category_id.as_deref(), Some("cat-bug"));
    assert_eq!(ticket.user_id.as_deref(), Some("u-09"));
    let outcome = entry.outcome.clone().unwrap();
    for kept in [
        "priority `low` set by a person during triage kept (proposed `high`)",
        "tag `billing` removed by a person during triage not added back",
        "category `cat-bug` set by a person kept (proposed `cat-billing`)",
        "assignee `u-09` kept (routing says `u-04`)",
    ] {
        assert!(outcome.contains(kept), "{kept:?} in {outcome}");
    }
    // The draft is still an internal note for the person to use.
    assert_one_note_each(&after, &[entry]);
}

/// A ticket a person closes while the LLM is thinking gets no patch and no note; the decision is
/// kept as a proposal that says why. (Before, it was triaged and noted like an open one.)
pub(super) async fn a_ticket_closed_during_triage_is_left_alone(mut p: Pipeline) {
    let t = p.untriaged(1).remove(0);
    let person = TicketPatch { status: Some(TicketStatus::Closed), ..TicketPatch::default() };
    let entry = edit_during_triage(&mut p, &t, person).await;

    let after = p.snapshot().await;
    let (before, ticket) = (&p.before.tickets[&t], &after.tickets[&t]);
    assert_eq!(ticket.status, Some(TicketStatus::Closed));
    assert_eq!(
        (&ticket.priority, &ticket.category_id, &ticket.tags, &ticket.user_id),
        (&before.priority, &before.category_id, &before.tags, &before.user_id),
        "nothing written"
    );
    assert!(new_notes(&p.before, &after).is_empty(), "no note");
    assert!(entry.outcome.as_deref().is_some_and(|o| o.contains("closed")), "{:?}", entry.outcome);
    let proposals = p.proposals().await;
    assert_eq!(proposals.len(), 1, "{proposals:#?}");
    assert!(proposals[0].why_shadowed.contains("the ticket is closed"), "{}", proposals[0].why_shadowed);
}
