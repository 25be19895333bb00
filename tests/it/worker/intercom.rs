//! The pipeline over an `intercom` connection: the worker reads and writes the sandbox through
//! its Intercom flavour.

use deskpilot::{
    config::IntercomConfig,
    http::HttpSettings,
    ticketing::{NoteVisibility, intercom::IntercomClient},
};

use super::*;

/// Apply mode on an Intercom connection without `notes_internal_verified`: the ticket gets the
/// routed admin and the decision's tags added beside the one a person set, the draft is posted
/// once as a `note` reply (stored internal), and what Intercom cannot take (a priority, a change
/// of ticket type) is left out with the reason in the ledger's outcome.
pub(super) async fn intercom_apply_mode_posts_an_internal_note_and_adds_tags(mut p: Pipeline) {
    let base_url = format!("{}/intercom", p.sandbox.base_url);
    let intercom = IntercomClient::new(&base_url, KEY.into(), &HttpSettings::default()).unwrap();
    let (t, base) = p.tagged_by_a_person(&intercom, "cat-billing").await;
    let policy = apply_routed("cat-billing", "u-04");
    let backend = BackendConfig::Intercom(IntercomConfig {
        access_token: Some(KEY.into()),
        access_token_env: None,
        region: None,
        base_url: Some(base_url),
        admin_id: None,
        category_cache_secs: 300,
    });
    p.start_worker_over(backend, &policy).await;

    let entry = p.publish_and_wait(&t).await;
    let after = p.snapshot().await;
    let notes = new_notes(&base, &after);
    assert_eq!(notes.len(), 1, "one note: {notes:#?}");
    assert_eq!(notes[0].visibility, Some(NoteVisibility::Internal), "the draft is stored internal");
    assert_eq!(marked_notes(&after, &t).len(), 1, "it carries the marker");
    assert_eq!(entry.note_id, notes[0].id, "the ledger names the note");

    let ticket = &after.tickets[&t];
    assert_eq!(ticket.tags, ["vip", "billing", "double-charge"], "added beside the person's tag");
    assert_eq!(ticket.user_id.as_deref(), Some("u-04"), "routed by category");
    assert_eq!(ticket.priority, base.tickets[&t].priority, "no priority written");
    assert_eq!(ticket.category_id, None, "the ticket type is not changed");
    let outcome = entry.outcome.unwrap_or_default();
    assert!(outcome.contains("priority `high` not written: Intercom tickets have no priority"), "{outcome}");
    assert!(outcome.contains("category `cat-billing` not written: an Intercom ticket's type"), "{outcome}");
    assert!(p.proposals().await.is_empty(), "nothing kept back for review");
}
