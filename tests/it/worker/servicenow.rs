//! The pipeline over a `servicenow` connection: the worker reads and writes the sandbox through
//! its ServiceNow flavour.

use deskpilot::{config::ServiceNowConfig, sandbox::servicenow_sys_id as sys_id, ticketing::NoteVisibility};

use super::*;

/// Apply mode on a ServiceNow connection without `notes_internal_verified`: the incident gets the
/// decision's category, its priority as impact × urgency and the routed agent, the draft is
/// posted once, as a work note (internal), and the allowed tags are left out with the reason
/// (incidents have none).
pub(super) async fn servicenow_apply_mode_posts_a_work_note(mut p: Pipeline) {
    let t = p.untriaged(1).remove(0);
    let incident = sys_id("incident", &t);
    p.answers.set(&incident, decision_json("cat-billing", 0.9));
    let base = p.snapshot().await;
    let policy = apply_routed("cat-billing", &sys_id("sys_user", "u-04"));
    let backend = BackendConfig::ServiceNow(ServiceNowConfig {
        instance: String::new(),
        base_url: Some(format!("{}/servicenow", p.sandbox.base_url)),
        username: Some("deskpilot.integration".into()),
        password: Some(KEY.into()),
        password_env: None,
        access_token: None,
        access_token_env: None,
        category_cache_secs: 300,
    });
    p.start_worker_on(ConnectionConfig {
        mode: policy.mode,
        routing: policy.routing.clone(),
        allowed_tags: vec!["billing".into(), "double-charge".into()],
        ..ConnectionConfig::new(CONN, backend)
    })
    .await;

    let entry = p.publish_and_wait(&incident).await;
    let after = p.snapshot().await;
    let notes = new_notes(&base, &after);
    assert_eq!(notes.len(), 1, "one note: {notes:#?}");
    assert_eq!(notes[0].visibility, Some(NoteVisibility::Internal), "the draft is a work note");
    let marker = act::note_marker(&key(&incident));
    assert!(notes[0].description.as_deref().is_some_and(|d| d.contains(&marker)), "it carries the marker");
    assert_eq!(entry.note_id, Some(sys_id("sys_journal_field", notes[0].id.as_deref().unwrap())));

    let ticket = &after.tickets[&t];
    assert_eq!(ticket.category_id.as_deref(), Some("cat-billing"));
    assert_eq!(ticket.priority.as_deref(), Some("high"), "impact 1 × urgency 2");
    assert_eq!(ticket.user_id.as_deref(), Some("u-04"), "routed by category");
    assert_eq!(ticket.tags, base.tickets[&t].tags, "incidents have no tags: none written");
    let outcome = entry.outcome.clone().unwrap_or_default();
    assert!(
        outcome.contains("tags `billing, double-charge` not written: ServiceNow incidents have no tags"),
        "{outcome}"
    );
    assert!(p.proposals().await.is_empty(), "nothing kept back for review");
}
