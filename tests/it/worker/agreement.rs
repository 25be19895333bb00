//! Outcomes and the agreement report over a scripted sequence of people's edits in the sandbox,
//! checked against figures computed by hand; deskpilot's own writes never count as a person's.

use deskpilot::{
    review::{Edits, report::Bar},
    ticketing::TicketStatus,
};
use time::OffsetDateTime;

use super::*;

/// What a person does to a ticket in the helpdesk.
fn edit(category: Option<&str>, priority: Option<&str>, close: bool) -> TicketPatch {
    TicketPatch {
        category_id: category.map(str::to_owned),
        priority: priority.map(str::to_owned),
        status: close.then_some(TicketStatus::Closed),
        ..TicketPatch::default()
    }
}

pub(super) async fn agreement_is_scored_on_what_people_left_at_close(mut p: Pipeline) {
    let t = p.untriaged(6);
    let other = p.before.categories.keys().find(|c| c.as_str() != DEFAULT_CATEGORY).unwrap().clone();
    // Proposed: five of DEFAULT_CATEGORY at these confidences, one of `other`; all HIGH.
    for (ticket, category, confidence) in [
        (&t[0], DEFAULT_CATEGORY, 0.95),
        (&t[1], DEFAULT_CATEGORY, 0.9),
        (&t[2], DEFAULT_CATEGORY, 0.8),
        (&t[3], DEFAULT_CATEGORY, 0.6),
        (&t[4], other.as_str(), 0.9),
        (&t[5], DEFAULT_CATEGORY, 0.7),
    ] {
        p.answers.set(ticket, decision_json(category, confidence));
    }
    let (policy, ids) = super::review::shadowed(&mut p, &t).await;
    let app = p.app(&policy, settings(Duration::from_secs(30))).await;
    let reviews = app.reviews();

    // deskpilot's own write: t5 approved and applied. Observed while open, it is nobody's answer.
    let p5 = ids[&t[5]];
    reviews.approve(p5, "ana", &Edits::default()).await.unwrap();
    let own = reviews.observe_outcome(CONN, &t[5]).await.unwrap().expect("a proposal for it");
    assert_eq!((own.category_id.as_deref(), own.priority.as_deref(), own.closed), (None, None, false));

    // People: t0 agrees and closes; t1 files it elsewhere at LOW and closes; t2 agrees but stays
    // open (not scored); t3 closes at NORMAL with no category (scored on priority only); t4 agrees
    // and closes; t5 closes as deskpilot left it (kept: agrees).
    let edits = [
        (&t[0], edit(Some(DEFAULT_CATEGORY), Some("high"), true)),
        (&t[1], edit(Some(&other), Some("low"), true)),
        (&t[2], edit(Some(DEFAULT_CATEGORY), Some("low"), false)),
        (&t[3], edit(None, Some("normal"), true)),
        (&t[4], edit(Some(&other), Some("high"), true)),
        (&t[5], edit(None, None, true)),
    ];
    for (ticket, patch) in &edits {
        p.helpdesk.update_ticket(ticket, patch).await.unwrap();
        reviews.observe_outcome(CONN, ticket).await.unwrap().expect("a proposal for it");
    }
    // A final outcome does not change: t0 reopened and refiled after close.
    p.helpdesk.update_ticket(&t[0], &edit(Some(&other), None, false)).await.unwrap();
    let late = reviews.observe_outcome(CONN, &t[0]).await.unwrap().unwrap();
    assert!(!late.changed, "{late:?}");
    assert_eq!(reviews.observe_outcome(CONN, "no-such-ticket").await.unwrap(), None);

    let bar = Bar { min_closed: 2, min_precision: 0.9 };
    let report = reviews.report(Some(CONN), OffsetDateTime::UNIX_EPOCH, bar).await.unwrap();
    assert_eq!((report.proposals, report.closed), (6, 4));
    assert_eq!(report.category_agreement.accuracy.correct, 3);
    // Who answered, from the stored proposals: the one model, once per proposal, at its price.
    let [model] = report.models.as_slice() else { panic!("one model: {:?}", report.models) };
    assert_eq!((model.model.as_str(), model.answered, model.share, model.asked), (MODEL, 6, 1.0, 6));
    let ticket_usd = (1500.0 * 0.15 + 120.0 * 0.60) / 1e6;
    assert!((model.cost_usd - 6.0 * ticket_usd).abs() < 1e-9, "{model:?}");
    assert_eq!(report.escalated, 0);
    let main = report.categories.iter().find(|c| c.category_id == DEFAULT_CATEGORY).unwrap();
    assert_eq!((main.proposals, main.observed, main.closed), (5, 5, 3));
    // 2 of 3: Wilson 95 % = [0.2077, 0.9385], by hand.
    let a = main.category_agreement;
    assert_eq!((a.accuracy.correct, a.accuracy.total), (2, 3));
    assert!((a.low - 0.2077).abs() < 1e-3 && (a.high - 0.9385).abs() < 1e-3, "{a:?}");
    let pa = main.priority_agreement.accuracy;
    assert_eq!((pa.correct, pa.total), (2, 4), "t0 and t5 HIGH as proposed, t1 LOW, t3 NORMAL");
    let at = |x: f64| *main.thresholds.iter().find(|p| (p.threshold - x).abs() < 1e-9).unwrap();
    assert_eq!((at(0.7).closed, at(0.7).precision), (3, Some(2.0 / 3.0)));
    assert_eq!((at(0.9).closed, at(0.9).precision), (2, Some(0.5)));
    assert_eq!((at(0.95).closed, at(0.95).precision), (1, Some(1.0)));
    assert!((at(0.9).coverage - 0.4).abs() < 1e-9, "t0 and t1 of five");
    assert_eq!(main.confusions, [(other.clone(), 1)]);
    assert!(!main.recommendation.ready);
    assert!(
        main.recommendation.text.contains("at most 67 % agreement (at ≥ 0.50)"),
        "{}",
        main.recommendation.text
    );
    let second = report.categories.iter().find(|c| c.category_id == other).unwrap();
    assert_eq!((second.closed, second.category_agreement.accuracy.correct), (1, 1));

    // With a lower bar, the report says what to write to promote it.
    let lenient = Bar { min_closed: 2, min_precision: 0.6 };
    let report = reviews.report(Some(CONN), OffsetDateTime::UNIX_EPOCH, lenient).await.unwrap();
    let main = report.categories.iter().find(|c| c.category_id == DEFAULT_CATEGORY).unwrap();
    assert_eq!(
        main.recommendation.config_line.as_deref(),
        Some(format!("[connections.automation] {DEFAULT_CATEGORY} = 0.50").as_str())
    );
    assert!(
        report
            .to_text()
            .contains("ready for apply_if_confident at ≥ 0.50: 67 % agreement over 3 closed tickets")
    );
}
