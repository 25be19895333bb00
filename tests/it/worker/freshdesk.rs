//! The pipeline over a `freshdesk` connection: the worker reads and writes the sandbox through
//! its Freshdesk flavour.

use deskpilot::{
    config::FreshdeskConfig,
    http::HttpSettings,
    ticketing::{NoteVisibility, freshdesk::FreshdeskClient},
};

use super::*;

/// Apply mode on a Freshdesk connection without `notes_internal_verified`: the ticket gets the
/// decision's type, priority and routed agent, its tags are merged with the ones a person set,
/// and the draft is posted once, stored private.
pub(super) async fn freshdesk_apply_mode_posts_a_private_note_and_merges_tags(mut p: Pipeline) {
    let base_url = format!("{}/freshdesk", p.sandbox.base_url);
    let freshdesk = FreshdeskClient::new(&base_url, KEY.into(), &HttpSettings::default()).unwrap();
    let (t, base) = p.tagged_by_a_person(&freshdesk, "Billing").await;
    let policy = apply_routed("Billing", "4");
    let backend = BackendConfig::Freshdesk(FreshdeskConfig {
        domain: String::new(),
        base_url: Some(base_url),
        api_key: Some(KEY.into()),
        api_key_env: None,
        category_cache_secs: 300,
    });
    p.start_worker_over(backend, &policy).await;

    let entry = p.publish_and_wait(&t).await;
    let after = p.snapshot().await;
    let notes = new_notes(&base, &after);
    assert_eq!(notes.len(), 1, "one note: {notes:#?}");
    assert_eq!(notes[0].visibility, Some(NoteVisibility::Internal), "the draft is stored private");
    assert_eq!(marked_notes(&after, &t).len(), 1, "it carries the marker");
    let note_number = notes[0].id.as_deref().unwrap().trim_start_matches(|c: char| !c.is_ascii_digit());
    assert_eq!(
        entry.note_id.as_deref().map(|n| n.trim_start_matches('0')),
        Some(note_number.trim_start_matches('0'))
    );

    let ticket = &after.tickets[&t];
    assert_eq!(ticket.tags, ["vip", "billing", "double-charge"], "merged with the person's tag");
    assert_eq!(ticket.category_id.as_deref(), Some("cat-billing"));
    assert_eq!(ticket.priority.as_deref(), Some("high"));
    assert_eq!(ticket.user_id.as_deref(), Some("u-04"), "routed by type");
    assert!(p.proposals().await.is_empty(), "nothing kept back for review");
}
