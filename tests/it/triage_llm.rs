//! The triage engine against a fake OpenAI-compatible server (wiremock) and the sandbox helpdesk,
//! with the real client, prompts, rules and tokenizer: what is sent, how answers are validated
//! and repaired, and how every kind of server failure is classified and retried.

use std::time::{Duration, Instant};

use crate::helpers::*;
use deskpilot::{
    ticketing::{AuthorKind, NewNote, PriorityLevel, TicketReader, Ticketing},
    triage::{
        Budget, Engine, EngineSettings, Policy, TokenCounting, TriageError,
        clean::clean_message,
        context,
        decision::{self, Decision, DecisionError, Limits, Origin, Sentiment},
        llm::{CallLimits, LimiterMode, LlmError, LlmSettings, OutputMode, Price, Usage},
        tokens::{TOKENS_PER_MESSAGE, TOKENS_REPLY_PRIMING},
    },
};
use regex::Regex;
use serde_json::{Value, json};
use wiremock::{MockServer, ResponseTemplate};

fn limiter_off() -> CallLimits {
    CallLimits { mode: LimiterMode::Off, ..CallLimits::default() }
}

fn policy() -> Policy {
    Policy::new("demo")
}

/// The active category ids the sandbox lists, in its order.
async fn active_ids(hd: &dyn Ticketing) -> Vec<String> {
    hd.list_categories().await.unwrap().into_iter().filter(|c| c.active()).filter_map(|c| c.id).collect()
}

fn llm_error(result: Result<deskpilot::triage::Triage, TriageError>) -> (LlmError, TriageError) {
    match result {
        Err(TriageError::Llm(e)) => {
            let copy = e.clone();
            (copy, TriageError::Llm(e))
        }
        other => panic!("expected TriageError::Llm, got {other:?}"),
    }
}

// 1. The request.
#[tokio::test]
async fn request_has_model_strict_schema_fenced_ticket_and_counted_tokens() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let llm = mock_llm(ok(&valid_answer(Some("cat-billing"))), Some(2)).await;
    let budget = Budget { prompt_tokens: 5000, answer_tokens: 777 };
    let engine = engine_with(
        llm_settings(&llm),
        EngineSettings { budget, counting: TokenCounting::Always, ..EngineSettings::default() },
    );

    let first = engine.triage(&hd, "1001", &policy()).await.unwrap();
    let second = engine.triage(&hd, "1002", &policy()).await.unwrap();
    let requests = chat_requests(&llm).await;
    assert_eq!(requests.len(), 2);
    let ids = active_ids(&hd).await;
    assert_eq!(ids, DEMO_CATEGORIES, "the demo's categories are all active");

    for (body, ticket, report) in
        [(&requests[0], "1001", &first.report), (&requests[1], "1002", &second.report)]
    {
        assert_eq!(body["model"], json!(MODEL));
        assert_eq!(body["stream"], json!(false));
        assert_eq!(body["temperature"], json!(0.0));
        assert_eq!(body["max_completion_tokens"], json!(777), "the budget's answer tokens");
        let format = &body["response_format"];
        assert_eq!(format["type"], json!("json_schema"));
        assert_eq!(format["json_schema"]["strict"], json!(true));
        assert_eq!(format["json_schema"]["name"], json!("triage_decision"));
        let any_of = &format["json_schema"]["schema"]["properties"]["category_id"]["anyOf"];
        assert_eq!(any_of[0]["type"], json!("string"));
        assert_eq!(any_of[0]["enum"], json!(ids), "exactly the active category ids");
        assert_eq!(any_of[1], json!({"type": "null"}));
        assert_eq!(any_of.as_array().unwrap().len(), 2);

        let msgs = messages(body);
        let roles: Vec<&str> = msgs.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(roles, ["system", "user"]);
        let (system, user) = (&msgs[0].1, &msgs[1].1);
        let raw_subject = hd.get_ticket(ticket).await.unwrap().subject.unwrap();
        let subject = clean_message(&raw_subject).text;
        assert!(!subject.is_empty());
        for id in &ids {
            assert!(system.contains(id.as_str()), "system lists {id}");
        }
        assert!(!system.contains(&subject), "the ticket stays out of the system message");
        assert!(!system.contains("must match this JSON schema"), "json_schema mode: no schema in prompt");
        let open = user.find("<ticket_data>").expect("opening fence");
        let close = user.find("</ticket_data>").expect("closing fence");
        let at = user.find(&subject).expect("subject in the user message");
        assert!(open < at && at < close, "the subject is inside the fence");

        let bpe = tiktoken_rs::o200k_base_singleton();
        let counted = bpe.encode_ordinary(system).len()
            + bpe.encode_ordinary(user).len()
            + 2 * TOKENS_PER_MESSAGE
            + TOKENS_REPLY_PRIMING;
        assert_eq!(report.prompt_tokens, Some(counted), "ticket {ticket}");
        assert!(counted <= 5000);
        assert_eq!(report.prompt_budget, 5000);
        assert_eq!(report.encoding, "o200k_base");
        assert_eq!(report.prompt_version, deskpilot::triage::prompt::Prompts::embedded().unwrap().version());
    }
    let (sys1, sys2) = (&messages(&requests[0])[0].1, &messages(&requests[1])[0].1);
    assert_eq!(sys1.as_bytes(), sys2.as_bytes(), "the system message is the cacheable prefix");
    assert_ne!(messages(&requests[0])[1].1, messages(&requests[1])[1].1);
}

// 2. A valid answer.
#[tokio::test]
async fn valid_answer_becomes_an_llm_decision_with_usage_and_cost() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let usage = Tokens { prompt: 1234, completion: 87, cached: 1024 };
    let body = completion_full(Some(&valid_answer(Some("cat-billing"))), "stop", usage);
    let llm = mock_llm(ResponseTemplate::new(200).set_body_json(body), Some(1)).await;
    let price = Price { input_per_mtok: 0.15, cached_input_per_mtok: Some(0.075), output_per_mtok: 0.6 };
    let engine = engine_with(
        llm_settings(&llm),
        EngineSettings { prices: [(MODEL.to_owned(), price)].into(), ..EngineSettings::default() },
    );

    let triage = engine.triage(&hd, "1001", &policy()).await.unwrap();
    assert_eq!(
        triage.decision,
        Decision {
            category_id: Some("cat-billing".into()),
            priority: PriorityLevel::High,
            tags: vec!["billing".into(), "double-charge".into()],
            language: "en".into(),
            sentiment: Sentiment::Negative,
            summary: "The customer was charged twice this month and wants one charge reversed.".into(),
            draft_reply: Some("Hi Tom, thanks for reaching out. I'm checking the two charges with our billing team and will get back to you shortly.".into()),
            confidence: 0.86,
            needs_human: false,
            reason: "A duplicate charge is a billing problem with money charged wrongly, so HIGH.".into(),
            origin: Origin::Llm { model: MODEL.into() },
        }
    );
    assert!(triage.notes.is_empty(), "{:?}", triage.notes);
    let r = &triage.report;
    assert_eq!(r.usage, Usage { prompt_tokens: 1234, completion_tokens: 87, cached_tokens: 1024 });
    let expected = (210.0 * 0.15 + 1024.0 * 0.075 + 87.0 * 0.6) / 1_000_000.0;
    let cost = r.cost_usd.expect("a cost when a price is set");
    assert!((cost - expected).abs() < 1e-12, "{cost} vs {expected}");
    assert_eq!((r.llm_calls, r.llm_attempts, r.repaired), (1, 1, false));
    assert!(r.fallback.is_none());

    // Without a price there is no cost.
    let llm = mock_llm(ok(&valid_answer(None)), Some(1)).await;
    let triage = crate::helpers::engine(&llm).triage(&hd, "1001", &policy()).await.unwrap();
    assert_eq!(triage.report.cost_usd, None);
    assert_eq!(triage.decision.category_id, None, "null is a valid category");
}

// 3. An invented category is repaired.
#[tokio::test]
async fn invented_category_is_repaired_in_a_second_request() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let bad = valid_answer(Some("cat-ceo"));
    let llm = mock_llm(Script::new(vec![ok(&bad), ok(&valid_answer(Some("cat-refunds")))]), Some(2)).await;

    let triage = engine(&llm).triage(&hd, "1001", &policy()).await.unwrap();
    assert_eq!(triage.decision.category_id.as_deref(), Some("cat-refunds"));
    assert!(triage.report.repaired);
    assert_eq!((triage.report.llm_calls, triage.report.llm_attempts), (2, 2));
    assert_eq!(triage.report.usage.prompt_tokens, 2 * USAGE.prompt, "usage is summed over calls");

    let requests = chat_requests(&llm).await;
    let (first, second) = (messages(&requests[0]), messages(&requests[1]));
    let roles: Vec<&str> = second.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    assert_eq!(second[..2], first[..], "the repair continues the same conversation");
    assert_eq!(second[2].1, bad, "the bad answer is echoed as the assistant's turn");
    let repair = &second[3].1;
    assert!(repair.contains("cat-ceo"), "{repair}");
    for id in DEMO_CATEGORIES {
        assert!(repair.contains(id), "repair lists {id}: {repair}");
    }
    assert_eq!(requests[1]["response_format"], requests[0]["response_format"]);
}

// 4. Still invalid after the repair.
#[tokio::test]
async fn still_invalid_after_repair_is_a_permanent_invalid_decision() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let llm = mock_llm(ok(&valid_answer(Some("cat-ceo"))), Some(2)).await;

    let err = engine(&llm).triage(&hd, "1001", &policy()).await.unwrap_err();
    let TriageError::InvalidDecision { error: DecisionError::Schema { problems } } = &err else {
        panic!("expected InvalidDecision(Schema), got {err:?}");
    };
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].field, "category_id");
    assert!(problems[0].message.contains("`cat-ceo`"));
    assert!(!err.is_retryable());
    assert_eq!(err.retry_after(), None);
    assert_eq!(chat_requests(&llm).await.len(), 2);
}

// 5. Truncated answers.
#[tokio::test]
async fn truncated_json_is_repaired() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let full = valid_answer(Some("cat-billing"));
    let cut = &full[..full.len() / 2];
    let llm = mock_llm(Script::new(vec![ok(cut), ok(&full)]), Some(2)).await;

    let triage = engine(&llm).triage(&hd, "1001", &policy()).await.unwrap();
    assert!(triage.report.repaired);
    assert_eq!(triage.decision.category_id.as_deref(), Some("cat-billing"));
    let second = messages(&chat_requests(&llm).await[1]);
    assert_eq!(second[2], ("assistant".to_owned(), cut.to_owned()));
    assert!(second[3].1.contains("not valid JSON") && second[3].1.contains("EOF"), "{}", second[3].1);
}

#[tokio::test]
async fn finish_reason_length_asks_again_with_a_larger_answer_reserve() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let full = valid_answer(Some("cat-billing"));
    let partial = &full[..full.len() - 40];
    let cut_off = ResponseTemplate::new(200).set_body_json(completion_full(Some(partial), "length", USAGE));
    let llm = mock_llm(Script::new(vec![cut_off, ok(&full)]), Some(2)).await;

    let triage = engine(&llm).triage(&hd, "1001", &policy()).await.unwrap();
    assert!(!triage.report.repaired, "a cut-off answer is asked again, not repaired");
    assert_eq!(triage.report.llm_calls, 2);
    assert_eq!(triage.report.answer_tokens_raised, Some(2400));
    let requests = chat_requests(&llm).await;
    assert_eq!(requests[0]["max_completion_tokens"], json!(1200));
    assert_eq!(requests[1]["max_completion_tokens"], json!(2400), "twice the reserve");
    assert_eq!(messages(&requests[1]), messages(&requests[0]), "the same prompt");
}

// 6. Rate limits.
#[tokio::test]
async fn rate_limit_with_short_retry_after_is_waited_out() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let limited = openai_error(
        429,
        "Rate limit reached for gpt-4o-mini on requests per min (RPM): Limit 500, Used 500, Requested 1.",
        "requests",
        Some("rate_limit_exceeded"),
    )
    .insert_header("retry-after", "1");
    let llm = mock_llm(Script::new(vec![limited, ok(&valid_answer(Some("cat-billing")))]), Some(2)).await;

    let started = Instant::now();
    let triage = engine(&llm).triage(&hd, "1001", &policy()).await.unwrap();
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_secs(1), "Retry-After: 1 was honoured ({elapsed:?})");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!((triage.report.llm_calls, triage.report.llm_attempts), (1, 2));
}

#[tokio::test]
async fn rate_limit_with_long_retry_after_returns_at_once() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let limited =
        openai_error(429, "Rate limit reached for gpt-4o-mini", "requests", Some("rate_limit_exceeded"))
            .insert_header("retry-after", "3600");
    let llm = mock_llm(limited, Some(1)).await;

    let started = Instant::now();
    let (e, err) = llm_error(engine(&llm).triage(&hd, "1001", &policy()).await);
    assert!(started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());
    let LlmError::RateLimited { retry_after, detail } = &e else { panic!("{e:?}") };
    assert_eq!(*retry_after, Some(Duration::from_secs(3600)));
    assert_eq!(detail, "Rate limit reached for gpt-4o-mini");
    assert!(err.is_retryable());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3600)), "the worker can delay the redelivery");
}

#[tokio::test]
async fn rate_limit_with_a_plain_text_body_is_still_a_rate_limit() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let plain = || ResponseTemplate::new(429).set_body_raw("Too Many Requests", "text/plain");

    let llm = mock_llm(Script::new(vec![plain(), ok(&valid_answer(None))]), Some(2)).await;
    let triage = engine(&llm).triage(&hd, "1001", &policy()).await.unwrap();
    assert_eq!(triage.report.llm_attempts, 2, "retried");

    // Without the limiter a 429 spends one of the call's retries (with it, see llm_limits).
    let llm = mock_llm(plain(), Some(2)).await;
    let settings = LlmSettings { max_retries: 1, limits: limiter_off(), ..llm_settings(&llm) };
    let engine = engine_with(settings, EngineSettings::default());
    let (e, err) = llm_error(engine.triage(&hd, "1001", &policy()).await);
    assert!(
        matches!(&e, LlmError::RateLimited { retry_after: None, detail } if detail == "Too Many Requests"),
        "{e:?}"
    );
    assert!(err.is_retryable());
}

/// Without the limiter, a 429 that keeps coming with a short `Retry-After` must still stop after
/// `max_retries`.
#[tokio::test]
async fn persistent_rate_limit_with_short_retry_after_stops_after_max_retries() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let limited = openai_error(429, "Rate limit reached", "requests", Some("rate_limit_exceeded"))
        .insert_header("retry-after", "1");
    let llm = mock_llm(limited, None).await;
    let settings = LlmSettings {
        max_retries: 1,
        total_timeout: Duration::from_secs(4),
        limits: limiter_off(),
        ..llm_settings(&llm)
    };
    let (e, _) =
        llm_error(engine_with(settings, EngineSettings::default()).triage(&hd, "1001", &policy()).await);
    assert_eq!(chat_requests(&llm).await.len(), 2, "1 + max_retries requests; got {e:?}");
    assert!(
        matches!(e, LlmError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(1)),
        "{e:?}"
    );
}

// 7. Server errors.
#[tokio::test]
async fn server_errors_are_retried_until_an_answer() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let llm = mock_llm(
        Script::new(vec![
            openai_error(
                500,
                "The server had an error while processing your request. Sorry about that!",
                "server_error",
                None,
            ),
            ResponseTemplate::new(503)
                .set_body_raw("<html><body><h1>503 Service Unavailable</h1></body></html>", "text/html"),
            ok(&valid_answer(Some("cat-billing"))),
        ]),
        Some(3),
    )
    .await;
    let triage = engine(&llm).triage(&hd, "1001", &policy()).await.unwrap();
    assert_eq!((triage.report.llm_calls, triage.report.llm_attempts), (1, 3));
    assert!(!triage.report.repaired);
}

#[tokio::test]
async fn persistent_server_error_is_unavailable_after_every_retry() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let llm = mock_llm(
        Script::new(vec![
            openai_error(500, "The server had an error", "server_error", None),
            openai_error(502, "Bad gateway", "server_error", None),
            openai_error(500, "The server had an error", "server_error", None),
        ]),
        Some(3),
    )
    .await;
    // Two retries keep the test short (the backoff starts at 0.5 s and is not configurable).
    let settings = LlmSettings { max_retries: 2, ..llm_settings(&llm) };
    let (e, err) =
        llm_error(engine_with(settings, EngineSettings::default()).triage(&hd, "1001", &policy()).await);
    assert!(
        matches!(&e, LlmError::Unavailable { detail } if detail == "HTTP 500: The server had an error"),
        "{e:?}"
    );
    assert!(err.is_retryable());
}

// 8. Timeouts.
#[tokio::test]
async fn a_slow_server_times_out_as_unavailable_and_is_retried() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let slow = ok(&valid_answer(None)).set_delay(Duration::from_secs(3));
    let llm = mock_llm(slow, Some(2)).await;
    let settings =
        LlmSettings { max_retries: 1, request_timeout: Duration::from_millis(250), ..llm_settings(&llm) };
    let started = Instant::now();
    let (e, err) =
        llm_error(engine_with(settings, EngineSettings::default()).triage(&hd, "1001", &policy()).await);
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert!(matches!(&e, LlmError::Unavailable { detail } if detail.contains("timed out")), "{e:?}");
    assert!(err.is_retryable());
}

// 9. Rejections.
#[tokio::test]
async fn compatible_servers_bad_request_with_numeric_code_is_rejected() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let message = "'response_format.json_schema' is not supported by this model";
    for body in [
        json!({"error": {"code": 400, "message": message, "type": "BadRequestError"}}),
        json!({"code": 400, "message": message}),
        json!({"object": "error", "message": message, "type": "BadRequestError", "param": null, "code": 400}),
    ] {
        let llm = mock_llm(ResponseTemplate::new(400).set_body_json(&body), Some(1)).await;
        let (e, err) = llm_error(engine(&llm).triage(&hd, "1001", &policy()).await);
        assert!(
            matches!(&e, LlmError::Rejected { status: 400, detail } if detail.contains(message)),
            "{body}: {e:?}"
        );
        assert!(!err.is_retryable());
        assert_eq!(chat_requests(&llm).await.len(), 1);
    }
}

#[tokio::test]
async fn insufficient_quota_is_rejected_not_retried() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let quota = openai_error(
        429,
        "You exceeded your current quota, please check your plan and billing details.",
        "insufficient_quota",
        Some("insufficient_quota"),
    );
    let llm = mock_llm(quota, Some(1)).await;
    let (e, err) = llm_error(engine(&llm).triage(&hd, "1001", &policy()).await);
    assert!(
        matches!(&e, LlmError::Rejected { status: 429, detail } if detail.starts_with("You exceeded your current quota")),
        "{e:?}"
    );
    assert!(!err.is_retryable());
}

/// Some servers echo the key they were sent in their error answer, and proxies echo the
/// `Authorization` header: neither may reach an error (logs, dead-letter reasons, proposals).
#[tokio::test]
async fn an_error_answer_that_echoes_the_key_is_redacted() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let key = "sk-proj-Zx81kLmQ0aVb72TqP";
    for body in [
        json!({"error": {"message": format!("Incorrect API key provided: {key}."), "type": "invalid_request_error"}}),
        json!({"detail": format!("upstream rejected headers: Authorization: Bearer {key}")}),
        json!({"message": "token sk-live-9b8c7d6e5f4a3b2c1d0e is revoked"}),
    ] {
        let llm = mock_llm(ResponseTemplate::new(401).set_body_json(&body), Some(1)).await;
        let settings =
            deskpilot::triage::llm::LlmSettings { api_key: Some(key.into()), ..llm_settings(&llm) };
        let (e, err) =
            llm_error(engine_with(settings, Default::default()).triage(&hd, "1001", &policy()).await);
        let text = format!("{e} / {err} / {e:?}");
        assert!(!text.contains(key) && !text.contains("9b8c7d6e5f4a3b2c1d0e"), "{text}");
        assert!(text.contains("***"), "what was redacted is marked: {text}");
        assert!(matches!(e, LlmError::Rejected { status: 401, .. }), "{e:?}");
    }
}

// 10. Lenient reading.
#[tokio::test]
async fn unknown_finish_reasons_are_judged_by_the_content() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    for reason in ["abort", "", "eos"] {
        let body = completion_full(Some(&valid_answer(Some("cat-bug"))), reason, USAGE);
        let llm = mock_llm(ResponseTemplate::new(200).set_body_json(body), Some(1)).await;
        let triage =
            engine(&llm).triage(&hd, "1002", &policy()).await.unwrap_or_else(|e| panic!("{reason:?}: {e}"));
        assert_eq!(triage.decision.category_id.as_deref(), Some("cat-bug"), "{reason:?}");
        assert!(!triage.report.repaired);
    }
}

#[tokio::test]
async fn missing_object_field_and_vendor_extras_are_accepted() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let mut body = completion(&valid_answer(Some("cat-bug")));
    let map = body.as_object_mut().unwrap();
    map.remove("object");
    map.insert("service_tier".into(), json!("on_demand"));
    map.insert("x_groq".into(), json!({"id": "req_01jz"}));
    map.insert("prompt_logprobs".into(), Value::Null);
    map.insert("kv_transfer_params".into(), Value::Null);
    body["choices"][0]["stop_reason"] = Value::Null;
    body["choices"][0]["message"]["reasoning_content"] = json!("thinking…");
    body["choices"][0]["message"]["tool_calls"] = json!([]);
    let llm = mock_llm(ResponseTemplate::new(200).set_body_json(body), Some(1)).await;
    let triage = engine(&llm).triage(&hd, "1002", &policy()).await.unwrap();
    assert_eq!(triage.decision.category_id.as_deref(), Some("cat-bug"));
    assert_eq!(triage.report.usage.prompt_tokens, USAGE.prompt);
}

#[tokio::test]
async fn a_refusal_is_refused_without_a_repair() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let mut body = completion_full(None, "stop", USAGE);
    body["choices"][0]["message"]["refusal"] = json!("I'm sorry, I can't assist with that request.");
    let llm = mock_llm(ResponseTemplate::new(200).set_body_json(body), Some(1)).await;
    let (e, err) = llm_error(engine(&llm).triage(&hd, "1001", &policy()).await);
    assert!(
        matches!(&e, LlmError::Refused { detail } if detail == "I'm sorry, I can't assist with that request."),
        "{e:?}"
    );
    assert!(!err.is_retryable());
}

// 11. The rules fallback.
#[tokio::test]
async fn rules_decide_when_the_llm_is_down_and_the_policy_allows_it() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let down = || {
        ResponseTemplate::new(503).set_body_json(json!({"error": {"message": "Service Unavailable", "type": "server_error", "param": null, "code": null}}))
    };
    let llm = mock_llm(down(), Some(2)).await;
    let settings = LlmSettings { max_retries: 1, ..llm_settings(&llm) };
    let engine = engine_with(settings, EngineSettings::default());

    let fallback = Policy { rules_fallback: true, ..policy() };
    let triage = engine.triage(&hd, "1025", &fallback).await.unwrap();
    assert_eq!(triage.decision.origin, Origin::Rules { rule: "security-incident".into() });
    assert_eq!(triage.decision.category_id.as_deref(), Some("cat-security"));
    assert_eq!(triage.decision.priority, PriorityLevel::Urgent);
    assert_eq!(triage.decision.draft_reply, None);
    let why = triage.report.fallback.as_deref().expect("the fallback is explained");
    assert!(why.starts_with("the LLM failed: LLM unavailable: HTTP 503"), "{why}");
    assert_eq!(triage.report.llm_calls, 1);

    llm.verify().await;
    llm.reset().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::path(COMPLETIONS))
        .respond_with(down())
        .expect(2)
        .mount(&llm)
        .await;
    let (e, err) = llm_error(engine.triage(&hd, "1025", &policy()).await);
    assert!(matches!(e, LlmError::Unavailable { .. }), "{e:?}");
    assert!(err.is_retryable());
}

// 12. json_object mode.
#[tokio::test]
async fn json_object_mode_puts_the_schema_in_the_system_message() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let llm = mock_llm(ok(&valid_answer(Some("cat-billing"))), Some(1)).await;
    let settings = LlmSettings { output_mode: OutputMode::JsonObject, ..llm_settings(&llm) };
    let engine = engine_with(
        settings,
        EngineSettings {
            output_mode: OutputMode::JsonObject,
            counting: TokenCounting::Always,
            ..EngineSettings::default()
        },
    );
    let triage = engine.triage(&hd, "1001", &policy()).await.unwrap();
    assert_eq!(triage.decision.category_id.as_deref(), Some("cat-billing"));

    let body = &chat_requests(&llm).await[0];
    assert_eq!(body["response_format"], json!({"type": "json_object"}));
    let categories = hd.list_categories().await.unwrap();
    let schema = decision::response_schema(&categories, &Limits::default());
    let system = &messages(body)[0].1;
    assert!(system.contains("must match this JSON schema"), "{system}");
    assert!(
        system.contains(
            &serde_json::to_string_pretty(&deskpilot::triage::llm::InRequiredOrder(&schema)).unwrap()
        ),
        "{system}"
    );
    let bpe = tiktoken_rs::o200k_base_singleton();
    let counted: usize =
        messages(body).iter().map(|(_, c)| bpe.encode_ordinary(c).len() + TOKENS_PER_MESSAGE).sum();
    assert_eq!(
        triage.report.prompt_tokens,
        Some(counted + TOKENS_REPLY_PRIMING),
        "the schema is counted too"
    );
}

// 13. The budget.
#[tokio::test]
async fn a_long_thread_is_fitted_to_a_small_budget() {
    const BUDGET: usize = 1500;
    const TICKET: &str = "1025";
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let llm = mock_llm(ok(&valid_answer(Some("cat-security"))), Some(1)).await;

    // The longest sample thread, made longer: 40 long agent notes after the customer's last word.
    for i in 0..40 {
        let description = format!(
            "Internal note {i}: checked the audit log export, the SSO configuration and the API token \
             list again; {} No further action until the customer confirms.",
            "Nothing new since the previous note, the token remains revoked and the session list is clean. "
                .repeat(4)
        );
        let note = NewNote { ticket_id: TICKET.into(), description, user_id: Some("u-01".into()), raw: None };
        hd.create_note(&note).await.unwrap();
    }
    let gathered = context::gather(&hd, TICKET, context::DEFAULT_MAX_NOTES).await.unwrap();
    let roomy = engine_with(
        llm_settings(&llm),
        EngineSettings {
            budget: Budget { prompt_tokens: 1_000_000, answer_tokens: 1200 },
            ..EngineSettings::default()
        },
    );
    let (_, whole) = roomy.prompt(&gathered).unwrap();
    let whole_tokens = roomy.tokenizer().count_chat(whole.iter().map(|m| m.content.as_str()));
    assert!(whole_tokens > 4 * BUDGET, "far over the budget when nothing is dropped: {whole_tokens} tokens");

    let engine = engine_with(
        llm_settings(&llm),
        EngineSettings {
            budget: Budget { prompt_tokens: BUDGET, answer_tokens: 1200 },
            ..EngineSettings::default()
        },
    );
    let triage = engine.triage(&hd, TICKET, &policy()).await.unwrap();
    let counted = triage.report.prompt_tokens.expect("a fitted prompt is counted");
    assert!(counted <= BUDGET, "{counted} tokens");
    assert!(triage.report.context.notes_dropped >= 40, "{:?}", triage.report.context);

    let user = messages(&chat_requests(&llm).await[0])[1].1.clone();
    let omitted = Regex::new(r"\[(\d+) earlier notes omitted\]").unwrap();
    let count: usize = omitted.captures(&user).expect("the omission is marked")[1].parse().unwrap();
    assert_eq!(count, triage.report.context.notes_dropped);
    let newest = gathered
        .notes
        .iter()
        .rev()
        .find(|n| n.author() == AuthorKind::Customer)
        .expect("the thread has customer messages");
    let cleaned = clean_message(newest.description.as_deref().unwrap()).text;
    assert!(cleaned.len() > 100, "{cleaned}");
    assert!(user.contains(&cleaned), "the newest customer message is kept verbatim:\n{cleaned}\n---\n{user}");
    assert!(!user.contains("(shortened)"), "{user}");
    let subject = clean_message(gathered.ticket.subject.as_deref().unwrap()).text;
    assert!(user.contains(&subject));
}

/// An engine on `llm` with a prompt budget of `prompt_tokens` that counts every prompt.
fn counting_engine(llm: &MockServer, prompt_tokens: usize) -> Engine {
    engine_with(
        llm_settings(llm),
        EngineSettings {
            budget: Budget { prompt_tokens, answer_tokens: 1200 },
            counting: TokenCounting::Always,
            ..EngineSettings::default()
        },
    )
}

/// Single fields outside the conversation (a subject, a customer's name, the tags) that a broken
/// or hostile ticket makes huge are cut, and a prompt is never sent over the budget; when the
/// fixed parts alone leave no room for the ticket, triage says so instead of sending it anyway.
/// (Before, such a prompt was sent over budget and the server's 400 dead-lettered the event.)
#[tokio::test]
async fn huge_single_fields_never_send_a_prompt_over_budget() {
    const BUDGET: usize = 3000;
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let llm = mock_llm(ok(&valid_answer(Some("cat-billing"))), None).await;
    let mut g = context::gather(&hd, "1006", context::DEFAULT_MAX_NOTES).await.unwrap();
    g.ticket.subject = Some("refund now ".repeat(3_000));
    g.ticket.tags = (0..400).map(|i| format!("tag-{i}-{}", "x".repeat(200))).collect();
    if let Some(c) = g.customer.as_mut() {
        c.name = Some("Name ".repeat(2_000));
    }
    let with_budget = |prompt_tokens| counting_engine(&llm, prompt_tokens);
    let engine = with_budget(BUDGET);
    let (_, prompt) = engine.prompt(&g).unwrap();
    let tokens = engine.tokenizer().count_chat(prompt.iter().map(|m| m.content.as_str()));
    assert!(tokens <= BUDGET, "{tokens} tokens sent with a budget of {BUDGET}");
    let user = &prompt[1].content;
    assert!(user.contains("refund now"), "the subject is cut, not dropped");

    let err = with_budget(500).prompt(&g).unwrap_err().to_string();
    assert!(err.contains("leaving no room for the ticket") && err.contains("prompt_budget_tokens"), "{err}");
}

#[tokio::test]
async fn a_prompt_that_fits_exactly_is_sent_whole_and_one_token_less_is_fitted() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let llm = mock_llm(ok(&valid_answer(Some("cat-security"))), None).await;
    let with_budget = |prompt_tokens| counting_engine(&llm, prompt_tokens);
    let roomy = with_budget(1_000_000);
    for ticket in ["1006", "1025"] {
        let gathered = context::gather(&hd, ticket, context::DEFAULT_MAX_NOTES).await.unwrap();
        let (ctx, whole) = roomy.prompt(&gathered).unwrap();
        assert_eq!(ctx.breakdown.notes_dropped, 0);
        let tokens = roomy.tokenizer().count_chat(whole.iter().map(|m| m.content.as_str()));

        let (exact_ctx, exact) = with_budget(tokens).prompt(&gathered).unwrap();
        assert_eq!(exact, whole, "ticket {ticket}: a prompt of exactly the budget is sent whole");
        assert_eq!(exact_ctx.breakdown, ctx.breakdown);

        let (fitted_ctx, fitted) = with_budget(tokens - 1).prompt(&gathered).unwrap();
        let fitted_tokens = roomy.tokenizer().count_chat(fitted.iter().map(|m| m.content.as_str()));
        assert!(fitted_tokens < tokens, "ticket {ticket}: {fitted_tokens} tokens");
        assert!(fitted_ctx.breakdown.notes_dropped >= 1, "ticket {ticket}: {:?}", fitted_ctx.breakdown);
    }
}

#[tokio::test]
async fn a_prompt_whose_size_proves_it_fits_is_sent_uncounted_and_unchanged() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let llm = mock_llm(ok(&valid_answer(Some("cat-billing"))), None).await;
    let engine = |prompt_tokens, counting| {
        engine_with(
            llm_settings(&llm),
            EngineSettings {
                budget: Budget { prompt_tokens, answer_tokens: 1200 },
                counting,
                ..EngineSettings::default()
            },
        )
    };
    let gathered = context::gather(&hd, "1001", context::DEFAULT_MAX_NOTES).await.unwrap();
    let (_, exact) = engine(1_000_000, TokenCounting::Always).prompt(&gathered).unwrap();
    let bytes: usize = exact.iter().map(|m| m.content.len()).sum();
    let framing = 2 * TOKENS_PER_MESSAGE + TOKENS_REPLY_PRIMING;
    let exact_engine = engine(1_000_000, TokenCounting::Always);
    let tokens = exact_engine.tokenizer().count_chat(exact.iter().map(|m| m.content.as_str()));
    let system_tokens = exact_engine.tokenizer().count(&exact[0].content);
    assert!(tokens < bytes, "text runs at several bytes a token: {tokens} tokens, {bytes} bytes");

    // Room for every byte of the user message: sent as it is, not counted.
    let roomy = system_tokens + framing + exact[1].content.len();
    let (ctx, sent) = engine(roomy, TokenCounting::WhenNeeded).prompt(&gathered).unwrap();
    assert_eq!(sent, exact, "the same prompt, counted or not");
    assert_eq!((ctx.breakdown.ticket, ctx.breakdown.notes_kept, ctx.breakdown.notes_dropped), (0, 0, 0));
    let triage = engine(roomy, TokenCounting::WhenNeeded).triage(&hd, "1001", &policy()).await.unwrap();
    assert_eq!(triage.report.prompt_tokens, None, "not counted");
    assert!(triage.report.usage.prompt_tokens > 0, "the server's usage still gives its tokens");

    // One byte less: the size proves nothing, so it is counted, and still fits whole.
    let triage = engine(roomy - 1, TokenCounting::WhenNeeded).triage(&hd, "1001", &policy()).await.unwrap();
    assert_eq!(triage.report.prompt_tokens, Some(tokens));
    assert_eq!(triage.report.context.notes_dropped, 0);
    assert!(triage.report.context.ticket > 0);
}
