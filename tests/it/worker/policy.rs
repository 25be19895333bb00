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

/// A decision recorded hours ago (a crashed attempt, a replayed dead letter) whose category the
/// helpdesk has since removed is not applied: it is decided again against today's categories.
/// (Before, the recorded decision was applied as it was.)
pub(super) async fn a_recorded_decision_that_no_longer_fits_is_decided_again(mut p: Pipeline) {
    let t = p.untriaged(1).remove(0);
    let k = key(&t);
    let crashed = "crashed-worker";
    p.store.claim(&k, &created(&t).event_id, crashed, Duration::from_millis(1)).await.unwrap();
    let retired = decision("cat-retired");
    p.store.record_decision(&k, crashed, &act::record_of(&retired, &Report::default())).await.unwrap();

    p.spawn_worker(apply(true), settings(Duration::from_secs(30))).await;
    let entry = p.publish_and_wait(&t).await;

    assert_eq!(p.answers.asked(), std::slice::from_ref(&t), "decided again by the LLM");
    let now = decided(&entry).expect("a decision");
    assert_eq!(now.category_id.as_deref(), Some(DEFAULT_CATEGORY), "the new decision is recorded");
    let after = p.snapshot().await;
    assert_eq!(after.tickets[&t].category_id.as_deref(), Some(DEFAULT_CATEGORY));
    assert_one_note_each(&after, &[entry]);
}

/// `[connections.automation]`: each category is applied from its own threshold. At the same
/// confidence, 0.86, an outage (automated from 0.9) is shadowed and a billing question (from 0.8)
/// is applied; the global threshold, higher than both, plays no part for them.
pub(super) async fn each_automated_category_is_applied_from_its_own_threshold(mut p: Pipeline) {
    let t = p.untriaged(2);
    p.answers.set(&t[0], decision_json("cat-outage", 0.86));
    p.answers.set(&t[1], decision_json("cat-billing", 0.86));
    let policy = ActPolicy {
        mode: Mode::ApplyIfConfident,
        confidence_threshold: 0.95,
        category_thresholds: BTreeMap::from([
            ("cat-outage".to_owned(), 0.9),
            ("cat-billing".to_owned(), 0.8),
        ]),
        ..apply(true)
    };
    p.spawn_worker(policy, settings(Duration::from_secs(30))).await;
    p.publish(&t).await;
    let entries = p.wait_done(&t, WAIT).await;
    p.stop_workers().await;

    let after = p.snapshot().await;
    let proposals = p.proposals().await;
    assert_eq!(proposals.len(), 1, "{proposals:#?}");
    assert_eq!(proposals[0].ticket_id, t[0]);
    assert_eq!(
        proposals[0].why_shadowed,
        "confidence 0.86 is below the threshold 0.90 of category `cat-outage`"
    );
    assert_eq!(after.tickets[&t[0]], p.before.tickets[&t[0]], "the outage is shadowed");
    assert!(marked_notes(&after, &t[0]).is_empty());
    let applied: Vec<Entry> = entries.into_iter().filter(|e| e.key.ticket_id == t[1]).collect();
    assert_one_note_each(&after, &applied);
    assert_eq!(after.tickets[&t[1]].category_id.as_deref(), Some("cat-billing"));
}
