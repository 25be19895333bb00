//! Personal data kept from the LLM: what the fake OpenAI server (wiremock) receives for sandbox
//! tickets, what comes back in the draft, and what the report says.

use std::sync::Arc;

use crate::helpers::*;
use deskpilot::triage::{
    Policy,
    privacy::{Mode, Privacy},
};
use serde_json::json;

/// Ticket 1001 of the demo helpdesk: Tom Harris (c-011) writes from tom@harrisplumbing.example.
const TICKET: &str = "1001";

fn answer_with_draft(draft: &str) -> String {
    let mut d = valid_decision(Some("cat-billing"));
    d["draft_reply"] = json!(draft);
    d["summary"] = json!("[NAME_1] was charged twice.");
    d.to_string()
}

#[tokio::test]
async fn the_llm_gets_placeholders_and_the_draft_gets_the_values_back() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let draft = "Hi [NAME_2], we will write to [EMAIL_1] about it.";
    let llm = mock_llm(ok(&answer_with_draft(draft)), Some(1)).await;
    let engine = engine(&llm);

    let triage = engine.triage(&hd, TICKET, &Policy::new("demo")).await.unwrap();

    let requests = chat_requests(&llm).await;
    let sent = requests[0].to_string();
    for value in ["tom@harrisplumbing.example", "Tom Harris", "Tom"] {
        assert!(!sent.contains(value), "`{value}` reached the LLM");
    }
    let user = &messages(&requests[0])[1].1;
    assert!(user.contains("Customer: [NAME_1]"), "{user}");
    assert!(user.contains("[EMAIL_1]"), "{user}");
    let d = &triage.decision;
    assert_eq!(
        d.draft_reply.as_deref(),
        Some("Hi Tom, we will write to tom@harrisplumbing.example about it.")
    );
    assert_eq!(d.summary, "[NAME_1] was charged twice.", "the summary keeps its placeholders");
    assert!(!d.needs_human);
    let p = &triage.report.privacy;
    assert_eq!(p.mode, Mode::Pseudonymise);
    assert_eq!(p.replaced.get("email"), Some(&1));
    assert_eq!(p.replaced.get("name"), Some(&2), "the whole name and the first name");
    assert_eq!(p.restored, 2);
    assert!(p.invented.is_empty());
    let report = serde_json::to_string(&triage.report).unwrap();
    assert!(!report.contains("harrisplumbing"), "the report names kinds, not values: {report}");
}

#[tokio::test]
async fn an_invented_placeholder_stays_visible_and_asks_for_a_person() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let llm = mock_llm(ok(&answer_with_draft("Hi [NAME_2], call us from [PHONE_3].")), Some(1)).await;

    let triage = engine(&llm).triage(&hd, TICKET, &Policy::new("demo")).await.unwrap();

    assert_eq!(triage.decision.draft_reply.as_deref(), Some("Hi Tom, call us from [PHONE_3]."));
    assert!(triage.decision.needs_human);
    assert_eq!(triage.report.privacy.invented, vec!["[PHONE_3]".to_owned()]);
    assert!(triage.notes.iter().any(|n| n.contains("[PHONE_3]")), "{:?}", triage.notes);
}

#[tokio::test]
async fn the_system_message_is_the_same_with_and_without_pseudonymisation() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let llm = mock_llm(ok(&valid_answer(Some("cat-billing"))), Some(2)).await;
    let engine = engine(&llm);
    let off = Policy { privacy: Arc::new(Privacy::off()), ..Policy::new("demo") };

    let on = engine.triage(&hd, TICKET, &Policy::new("demo")).await.unwrap();
    let plain = engine.triage(&hd, TICKET, &off).await.unwrap();

    let requests = chat_requests(&llm).await;
    let (a, b) = (messages(&requests[0]), messages(&requests[1]));
    assert_eq!(a[0].1.as_bytes(), b[0].1.as_bytes(), "the cacheable prefix does not change");
    assert!(b[1].1.contains("tom@harrisplumbing.example"), "privacy off sends the ticket as it is");
    assert!(!a[1].1.contains("tom@harrisplumbing.example"));
    assert_eq!(plain.report.privacy.mode, Mode::Off);
    assert!(plain.report.privacy.replaced.is_empty());
    assert!(!on.report.privacy.replaced.is_empty());
}
