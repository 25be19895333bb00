//! Bounded work on bad or huge input: each such ticket ends in a clear outcome while the others
//! in flight finish normally.

use axum::http::{Method, StatusCode};
use futures::{StreamExt, TryStreamExt};

use super::{
    proxy::{Fault, Proxy},
    *,
};

/// Creates a ticket in the sandbox (the Unified.to create call) and returns its id.
async fn create_ticket(p: &Pipeline, subject: &str, description: &str) -> String {
    let url = format!("{}/ticketing/{CONN}/ticket", p.sandbox.base_url);
    let body = json!({"subject": subject, "description": description, "status": "ACTIVE"});
    let created: Value = http_client()
        .post(url)
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("the sandbox creates the ticket")
        .json()
        .await
        .expect("the created ticket");
    created["id"].as_str().expect("an id").to_owned()
}

/// The ledger's report says the prompt sent was within its budget: counted so, or (a small one)
/// proved so by its size and not counted.
fn within_budget(e: &Entry) {
    let report = &e.decision.as_ref().expect("a decision").report;
    let (tokens, budget) = (report["prompt_tokens"].as_u64(), report["prompt_budget"].as_u64().unwrap());
    assert!(tokens.is_none_or(|t| t > 0 && t <= budget), "{}: prompt {tokens:?} of {budget} tokens", e.key);
}

/// A 1.5 MB description and a thread of 5 000 notes are triaged within the prompt budget (only
/// the newest notes are read); a helpdesk answering 200 with HTML, a body that is not UTF-8 and
/// a 10 MB ticket are dead-lettered with what was wrong; four ordinary tickets in flight with them
/// finish normally. (Before, every note of the thread was read, and the three bad answers were
/// either read whole or dead-lettered as a bare JSON error.)
pub(super) async fn bad_or_huge_input_ends_clearly_while_others_finish(mut p: Pipeline) {
    let ordinary = p.untriaged(4);
    let big =
        create_ticket(&p, "Export fails", &"The export fails with a timeout again. ".repeat(40_000)).await;
    let long = create_ticket(&p, "Sync issue", "The calendar sync stopped.").await;
    futures::stream::iter(0..5_000)
        .map(|i| {
            let note = NewNote {
                ticket_id: long.clone(),
                description: format!("Follow-up {i}: still not syncing after the reconnect."),
                user_id: None,
                raw: None,
            };
            let helpdesk = p.helpdesk.clone();
            async move { helpdesk.create_note(&note).await }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .expect("5 000 notes");

    let (html, not_utf8, huge) = ("9001".to_owned(), "9002".to_owned(), "9003".to_owned());
    let mut huge_body = json!({"id": huge, "subject": "Huge", "status": "ACTIVE"});
    huge_body["description"] = json!("x".repeat(10 << 20));
    let huge_body = huge_body.to_string().into_bytes();
    let rule = {
        let ticket = |id: &str| format!("/ticketing/{CONN}/ticket/{id}");
        let (html, not_utf8, huge) = (ticket(&html), ticket(&not_utf8), ticket(&huge));
        move |m: &Method, path: &str| {
            let answer = |content_type, body: &[u8]| {
                Some(Fault::Answer { status: StatusCode::OK, content_type, body: body.to_vec() })
            };
            match path {
                _ if m != Method::GET => None,
                p if p == html => answer("text/html", b"<!DOCTYPE html><html><body>Sign in</body></html>"),
                p if p == not_utf8 => {
                    answer("application/json", b"{\"id\": \"9002\", \"subject\": \"caf\xe9\"}")
                }
                p if p == huge => answer("application/json", &huge_body),
                _ => None,
            }
        }
    };
    let proxy = Proxy::start(&p.sandbox.base_url, rule).await;
    p.spawn_worker_at(&proxy.url, shadow(), settings(Duration::from_secs(30))).await;

    let mut good = ordinary.clone();
    good.extend([big.clone(), long.clone()]);
    let mut all = good.clone();
    all.extend([html.clone(), not_utf8.clone(), huge.clone()]);
    p.publish(&all).await;
    let entries = p.wait_done(&good, WAIT).await;
    wait_until("three events are dead-lettered", WAIT, || async { p.bus.counts().await.dead == 3 }).await;
    p.stop_workers().await;

    for e in &entries {
        within_budget(e);
    }
    for t in [&big, &long] {
        let e = entries.iter().find(|e| &e.key.ticket_id == t).unwrap();
        let report = &e.decision.as_ref().unwrap().report;
        assert!(report["prompt_tokens"].as_u64().is_some(), "{t}: fitted, so counted: {report}");
        if t == &long {
            let dropped = report["context"]["notes_dropped"].as_u64().unwrap();
            assert!(dropped < 200, "only the newest notes are read, {dropped} dropped of them");
        }
    }

    let letters = p.bus.dead_letters().await;
    let reason = |id: &str| {
        letters
            .iter()
            .find(|l| l.event_or_body.as_ref().is_ok_and(|e| e.ticket_id == id))
            .map(|l| l.reason.clone())
            .unwrap_or_else(|| panic!("{id} is dead-lettered: {letters:#?}"))
    };
    let html_reason = reason(&html);
    assert!(html_reason.contains("not JSON") && html_reason.contains("base_url"), "{html_reason}");
    let utf8_reason = reason(&not_utf8);
    assert!(utf8_reason.contains("not valid UTF-8"), "{utf8_reason}");
    let huge_reason = reason(&huge);
    assert!(
        huge_reason.contains("more than 8 MiB") && huge_reason.contains("max_response_mb"),
        "{huge_reason}"
    );
}
