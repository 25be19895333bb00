//! The triage engine against the servers teams run on their own hardware (llama.cpp
//! `llama-server`, vLLM, Ollama, LM Studio), faked with wiremock with bodies shaped as those
//! servers send them: the schema's field order, numbers a grammar let through, cut-off answers,
//! context overflows and repeated server errors.

use crate::helpers::*;
use deskpilot::triage::decision::FIELDS;
use wiremock::MockServer;

fn policy() -> deskpilot::triage::Policy {
    deskpilot::triage::Policy::new("demo")
}

/// The raw text of each chat request body, as it went over the wire.
async fn raw_requests(server: &MockServer) -> Vec<String> {
    let requests = server.received_requests().await.expect("request recording is on");
    requests
        .iter()
        .filter(|r| r.url.path() == COMPLETIONS)
        .map(|r| String::from_utf8(r.body.clone()).expect("a UTF-8 body"))
        .collect()
}

// 1. Field order: a grammar makes the model write the fields in schema order, so the reasoning
//    goes out first and the category, priority and confidence after it.
#[tokio::test]
async fn the_schema_sends_reason_and_summary_before_the_category_and_confidence() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let llm = mock_llm(ok(&valid_answer(Some("cat-billing"))), Some(1)).await;
    engine(&llm).triage(&hd, "1001", &policy()).await.unwrap();

    let body = &raw_requests(&llm).await[0];
    let props = &body[body.find(r#""properties":{"#).expect("the schema's properties")..];
    let at =
        |field: &str| props.find(&format!(r#""{field}":{{"#)).unwrap_or_else(|| panic!("{field} in {props}"));
    let order: Vec<usize> = FIELDS.iter().map(|f| at(f)).collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "properties in FIELDS order: {props}");
    assert!(at("reason") < at("category_id") && at("summary") < at("category_id"));
    assert!(at("category_id") < at("confidence") && at("confidence") < at("draft_reply"));
    assert_eq!(FIELDS[..2], ["reason", "summary"]);
}
