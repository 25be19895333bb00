//! Hostile or inventive output stays inside the connection's policy.

use super::*;

/// In apply mode a connection without `allowed_tags` gets only tags its helpdesk already uses;
/// the others are named in the outcome, not written. (Before, an empty list meant any tag.)
pub(super) async fn without_allowed_tags_only_tags_in_use_are_written(mut p: Pipeline) {
    let t = p.untriaged(1).remove(0);
    let mut answer = decision_json(DEFAULT_CATEGORY, 0.9);
    answer["tags"] = json!(["billing", "free-money-now"]);
    p.answers.set(&t, answer);
    p.spawn_worker(apply(true), settings(Duration::from_secs(30))).await;
    let entry = p.publish_and_wait(&t).await;

    let after = p.snapshot().await;
    let tags = &after.tickets[&t].tags;
    assert!(tags.iter().any(|x| x == "billing"), "a tag in use is written: {tags:?}");
    assert!(!tags.iter().any(|x| x == "free-money-now"), "an invented tag is not: {tags:?}");
    let outcome = entry.outcome.unwrap();
    assert!(outcome.contains("tag `free-money-now` not written: not used on this helpdesk yet"), "{outcome}");
}
