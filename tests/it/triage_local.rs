//! The triage engine against the servers teams run on their own hardware (llama.cpp
//! `llama-server`, vLLM, Ollama, LM Studio), faked with wiremock with bodies shaped as those
//! servers send them: the schema's field order, numbers a grammar let through, cut-off answers,
//! context overflows and repeated server errors.

use crate::helpers::*;
use deskpilot::triage::{
    Budget, EngineSettings, TokenCounting, TriageError, decision::FIELDS, llm::LlmError,
};
use serde_json::{Value, json};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path},
};

/// A chat completion as llama.cpp's `llama-server` sends it (no `refusal`, `logprobs` or
/// `service_tier`; its own `timings`; the prompt cache in `prompt_tokens_details`).
fn llama_completion(content: &str, finish_reason: &str, completion_tokens: u32) -> Value {
    json!({
        "choices": [{
            "finish_reason": finish_reason,
            "index": 0,
            "message": {"role": "assistant", "content": content}
        }],
        "created": 1_764_853_200,
        "model": "tiny-llm",
        "system_fingerprint": "b7120-5c9a8b2e",
        "object": "chat.completion",
        "usage": {
            "completion_tokens": completion_tokens,
            "prompt_tokens": 4534,
            "total_tokens": 4534 + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 4261}
        },
        "id": "chatcmpl-Qx1b7mFf0cZ8yDkq2vW3nH6tRj9sLp4a",
        "timings": {
            "prompt_n": 273, "prompt_ms": 88.1, "prompt_per_token_ms": 0.32, "prompt_per_second": 3098.7,
            "predicted_n": completion_tokens, "predicted_ms": 412.9,
            "predicted_per_token_ms": 3.44, "predicted_per_second": 290.6
        }
    })
}

/// 200 with [`llama_completion`], `finish_reason: "stop"`.
fn llama_ok(content: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(llama_completion(content, "stop", 120))
}

/// [`valid_answer`] with the raw JSON text `number` as its confidence, as a grammar that ignores
/// `maximum` lets a weak model write it.
fn answer_with_confidence(number: &str) -> String {
    valid_answer(Some("cat-billing")).replace("\"confidence\":0.86", &format!("\"confidence\":{number}"))
}

/// The number llama.cpp let a weak model write (quoted in the issue).
const HUGE: &str = "5555555555555555e4255555555555555";

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

// 2. Numbers: a grammar ignores `minimum`/`maximum`, so an f64 overflow is valid JSON with a
//    confidence out of range, repaired once like any other invalid decision.
#[tokio::test]
async fn a_confidence_too_large_for_a_float_is_out_of_range_not_invalid_json() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let huge = answer_with_confidence(HUGE);
    assert!(huge.contains(HUGE));
    let llm =
        mock_llm(Script::new(vec![llama_ok(&huge), llama_ok(&valid_answer(Some("cat-billing")))]), Some(2))
            .await;

    let triage = engine(&llm).triage(&hd, "1001", &policy()).await.unwrap();
    assert!(triage.report.repaired);
    assert_eq!(triage.decision.confidence, 0.86_f32);
    assert_eq!(triage.report.usage.cached_tokens, 2 * 4261, "llama.cpp's prompt cache is read");
    let repair = &messages(&chat_requests(&llm).await[1])[3].1;
    assert!(repair.contains(&format!("confidence {HUGE} is outside 0..=1")), "{repair}");
    assert!(!repair.contains("not valid JSON"), "{repair}");
}

#[tokio::test]
async fn a_confidence_still_out_of_range_after_the_repair_names_the_field_and_the_range() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let llm = mock_llm(
        Script::new(vec![
            llama_ok(&answer_with_confidence(HUGE)),
            llama_ok(&answer_with_confidence("-1e400")),
        ]),
        Some(2),
    )
    .await;

    let err = engine(&llm).triage(&hd, "1001", &policy()).await.unwrap_err();
    assert!(matches!(err, TriageError::InvalidDecision { .. }), "{err:?}");
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(text.contains("confidence -1e400 is outside 0..=1"), "{text}");
    assert!(!text.contains("not valid JSON"), "{text}");
}

// 3. Cut-off answers: asked again once with a larger reserve, within the context; when that is
//    cut off too, the error says so with the token count, and /metrics counts it.

/// The value of `deskpilot_llm_answers_cut_off_total{call="<call>"}` in the exposition.
fn cut_offs(call: &str) -> f64 {
    let handle = deskpilot::telemetry::metrics().expect("the recorder of this binary");
    let line = format!("deskpilot_llm_answers_cut_off_total{{call=\"{call}\"}} ");
    handle.render().lines().find_map(|l| l.strip_prefix(&line)?.parse().ok()).unwrap_or(0.0)
}

fn cut_off(partial: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(llama_completion(partial, "length", 1200))
}

/// Counting every prompt, with this context window.
fn context_settings(context_tokens: Option<usize>) -> EngineSettings {
    EngineSettings {
        budget: Budget { prompt_tokens: 6000, answer_tokens: 1200 },
        counting: TokenCounting::Always,
        context_tokens,
        ..EngineSettings::default()
    }
}

/// The counted prompt tokens of ticket 1001.
async fn prompt_tokens_of_1001(hd: &dyn deskpilot::ticketing::TicketReader) -> usize {
    let llm = mock_llm(llama_ok(&valid_answer(Some("cat-billing"))), Some(1)).await;
    let triage = engine_with(llm_settings(&llm), context_settings(None)).triage(hd, "1001", &policy()).await;
    triage.unwrap().report.prompt_tokens.expect("counted")
}

#[tokio::test]
async fn an_answer_cut_off_twice_says_at_how_many_tokens_and_is_counted() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let full = valid_answer(Some("cat-billing"));
    let llm = mock_llm(Script::new(vec![cut_off(&full[..80]), cut_off(&full[..160])]), Some(2)).await;
    let (first, raised) = (cut_offs("first"), cut_offs("raised"));

    let err = engine(&llm).triage(&hd, "1001", &policy()).await.unwrap_err();
    let TriageError::Llm(LlmError::Incomplete { max_tokens, .. }) = &err else { panic!("{err:?}") };
    assert_eq!(*max_tokens, 2400);
    let text = err.to_string();
    assert!(text.contains("the answer was cut off at 2400 tokens"), "{text}");
    assert!(text.contains("answer_reserve_tokens"), "says what to raise: {text}");
    assert!(!text.contains("not valid JSON"), "{text}");
    assert!(!err.is_retryable());
    let requests = chat_requests(&llm).await;
    assert_eq!(requests.len(), 2, "no repair of a cut-off answer");
    assert_eq!(requests[1]["max_completion_tokens"], json!(2400));
    assert!(cut_offs("first") > first && cut_offs("raised") > raised, "counted in /metrics");
}

#[tokio::test]
async fn the_raised_reserve_stays_within_the_context_window() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let prompt = prompt_tokens_of_1001(&hd).await;
    let full = valid_answer(Some("cat-billing"));

    // 1500 tokens of room after the prompt: the reserve goes from 1200 to 1500, not 2400.
    let llm = mock_llm(Script::new(vec![cut_off(&full[..80]), llama_ok(&full)]), Some(2)).await;
    let engine = engine_with(llm_settings(&llm), context_settings(Some(prompt + 1500)));
    let triage = engine.triage(&hd, "1001", &policy()).await.unwrap();
    assert_eq!(triage.report.prompt_tokens, Some(prompt));
    assert_eq!(triage.report.answer_tokens_raised, Some(1500));
    assert_eq!(chat_requests(&llm).await[1]["max_completion_tokens"], json!(1500));

    // No room beyond the reserve: no second try, the error gives the reserve it ran into.
    let llm = mock_llm(cut_off(&full[..80]), Some(1)).await;
    let engine = engine_with(llm_settings(&llm), context_settings(Some(prompt + 1200)));
    let err = engine.triage(&hd, "1001", &policy()).await.unwrap_err();
    assert!(err.to_string().contains("the answer was cut off at 1200 tokens"), "{err}");
}

// 4. Context overflow: the server counts with its own tokenizer. The prompt is fitted again
//    once to the ratio the server reports, and sent again.

/// A context overflow as each server answers it, for a prompt of `prompt` server tokens (the
/// answer reserve is 1200) and a context of `context`.
fn overflow(server: &str, prompt: u32, context: u32) -> ResponseTemplate {
    let requested = prompt + 1200;
    let body = match server {
        "llama.cpp" => json!({"error": {
            "code": 400,
            "message": format!("request ({prompt} tokens) exceeds the available context size ({context} tokens), try increasing it"),
            "type": "exceed_context_size_error",
            "n_prompt_tokens": prompt,
            "n_ctx": context
        }}),
        "vllm" => json!({
            "object": "error",
            "message": format!("This model's maximum context length is {context} tokens. However, you requested {requested} tokens ({prompt} in the messages, 1200 in the completion). Please reduce the length of the messages or completion."),
            "type": "BadRequestError",
            "param": null,
            "code": 400
        }),
        "vllm-short" => json!({
            "object": "error",
            "message": format!("This model's maximum context length is {context} tokens. However, you requested {requested} tokens. Please reduce the length of the messages or completion."),
            "type": "BadRequestError",
            "param": null,
            "code": 400
        }),
        "openai" => json!({"error": {
            "message": format!("This model's maximum context length is {context} tokens. However, you requested {requested} tokens ({prompt} in the messages, 1200 in the completion). Please reduce the length of the messages or completion."),
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded"
        }}),
        other => panic!("no such server {other}"),
    };
    ResponseTemplate::new(400).set_body_json(body)
}

#[tokio::test]
async fn a_prompt_over_the_servers_context_is_fitted_again_to_its_count_and_sent_again() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let ours = prompt_tokens_of_1001(&hd).await;
    // The server counts 10% more tokens than we do; its context holds our count plus the reserve.
    let server_prompt = (ours as f64 * 1.1) as u32;
    let context = ours as u32 + 1200;
    for server in ["llama.cpp", "vllm", "vllm-short", "openai"] {
        let answer = valid_answer(Some("cat-billing"));
        let llm =
            mock_llm(Script::new(vec![overflow(server, server_prompt, context), llama_ok(&answer)]), Some(2))
                .await;
        let triage =
            engine_with(llm_settings(&llm), context_settings(None)).triage(&hd, "1001", &policy()).await;
        let triage = triage.unwrap_or_else(|e| panic!("{server}: {e}"));
        assert!(triage.report.refitted, "{server}");
        let refit = triage.report.prompt_tokens.expect("counted");
        let limit = (ours as f64 * ours as f64 / f64::from(server_prompt) * 0.95) as usize;
        assert!(
            refit <= limit && refit + 200 > limit,
            "{server}: {ours} tokens refitted to {refit}, limit {limit}"
        );
        assert_eq!(triage.report.prompt_budget, refit.max(triage.report.prompt_budget));
        let requests = chat_requests(&llm).await;
        assert!(
            messages(&requests[1])[1].1.len() < messages(&requests[0])[1].1.len(),
            "{server}: the second prompt is shorter"
        );
        assert_eq!(triage.decision.category_id.as_deref(), Some("cat-billing"));
    }
}

#[tokio::test]
async fn a_prompt_still_over_the_context_after_one_refit_fails_saying_what_to_set() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let llm = mock_llm(overflow("llama.cpp", 8300, 8192), Some(2)).await;

    let err = engine(&llm).triage(&hd, "1001", &policy()).await.unwrap_err();
    let TriageError::Llm(LlmError::ContextExceeded {
        context_tokens: 8192, server_prompt_tokens: 8300, ..
    }) = &err
    else {
        panic!("{err:?}")
    };
    assert!(!err.is_retryable(), "the same prompt will not fit later");
    let text = err.to_string();
    assert!(text.contains("8300 tokens to the server, over its context of 8192 tokens"), "{text}");
    assert!(text.contains("context_tokens"), "{text}");
}

#[tokio::test]
async fn context_tokens_keeps_the_first_prompt_within_the_context_after_the_reserve() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let ours = prompt_tokens_of_1001(&hd).await;
    let llm = mock_llm(llama_ok(&valid_answer(Some("cat-billing"))), Some(1)).await;
    let context = ours + 1200 - 100;
    let engine = engine_with(llm_settings(&llm), context_settings(Some(context)));
    let triage = engine.triage(&hd, "1001", &policy()).await.unwrap();
    assert_eq!(triage.report.prompt_budget, ours - 100);
    assert!(triage.report.prompt_tokens.unwrap() <= ours - 100);
    assert!(!triage.report.refitted);
}

#[test]
fn context_tokens_is_read_from_llm_and_refused_when_it_leaves_no_room_for_a_prompt() {
    let config = load_config("[llm]\ncontext_tokens = 8192\n", ("DESKPILOT_UNUSED", "")).unwrap();
    assert_eq!(config.llm.context_tokens, Some(8192));
    let err = load_config("[llm]\ncontext_tokens = 1500\n", ("DESKPILOT_UNUSED", "")).unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("llm.context_tokens = 1500 leaves less than 500 tokens for the prompt")
            && text.contains("at least 1700"),
        "{text}"
    );
}

// 5. A 500 that repeats with the same body (llama.cpp at temperature 0 fails the same way on
//    the same request) stops the call's retries, and the rules decide where that is allowed.

/// llama.cpp's 500 when the model's output breaks its own grammar or template.
fn llama_500() -> ResponseTemplate {
    ResponseTemplate::new(500).set_body_json(json!({"error": {
        "code": 500,
        "message": "Value does not match the expected JSON schema format: missing field `reason` at line 1 column 2",
        "type": "server_error"
    }}))
}

#[tokio::test]
async fn a_500_repeating_with_the_same_body_stops_retrying_and_falls_back_to_the_rules() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let llm = mock_llm(llama_500(), Some(2)).await;
    let (e, err) = match engine(&llm).triage(&hd, "1001", &policy()).await {
        Err(TriageError::Llm(e)) => (e.clone(), TriageError::Llm(e)),
        other => panic!("{other:?}"),
    };
    assert!(
        matches!(&e, LlmError::Repeating { status: 500, detail } if detail.contains("does not match the expected")),
        "{e:?}"
    );
    assert!(err.to_string().contains("twice with the same error"), "{err}");
    assert!(err.is_retryable(), "a later delivery may pass");

    let llm = mock_llm(llama_500(), Some(2)).await;
    let mut with_rules = policy();
    with_rules.rules_fallback = true;
    let triage = engine(&llm).triage(&hd, "1001", &with_rules).await.unwrap();
    let fallback = triage.report.fallback.expect("the rules decided");
    assert!(fallback.contains("twice with the same error"), "{fallback}");
}

#[tokio::test]
async fn the_tokenizer_can_be_chosen_for_a_local_model() {
    let config = load_config("[llm]\ntokenizer = \"cl100k\"\n", ("DESKPILOT_UNUSED", "")).unwrap();
    assert_eq!(config.llm.tokenizer, Some(deskpilot::triage::tokens::TokenizerChoice::Cl100k));
    let err = load_config("[llm]\ntokenizer = \"sentencepiece\"\n", ("DESKPILOT_UNUSED", "")).unwrap_err();
    assert!(format!("{err:#}").contains("o200k"), "{err:#}");

    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let llm = mock_llm(llama_ok(&valid_answer(Some("cat-billing"))), Some(1)).await;
    let settings = EngineSettings { tokenizer: config.llm.tokenizer, ..context_settings(None) };
    let triage = engine_with(llm_settings(&llm), settings).triage(&hd, "1001", &policy()).await.unwrap();
    assert_eq!(triage.report.encoding, "cl100k_base");
    let body = &chat_requests(&llm).await[0];
    let bpe = tiktoken_rs::cl100k_base_singleton();
    let counted: usize =
        messages(body).iter().map(|(_, c)| bpe.encode_ordinary(c).len() + 3).sum::<usize>() + 3;
    assert_eq!(triage.report.prompt_tokens, Some(counted));
}

// The server's own tokenizer: llama.cpp and vLLM count a text at `POST /tokenize`.

/// `/tokenize` as llama.cpp answers it (`{"tokens": [...]}`) or as vLLM does (`count` beside
/// the tokens and the model's length), for a text of `n` tokens.
fn tokenized(server: &str, n: usize) -> ResponseTemplate {
    let tokens: Vec<u32> = (0..n as u32).map(|i| 1000 + i % 5000).collect();
    let body = match server {
        "llama.cpp" => json!({"tokens": tokens}),
        "vllm" => json!({"count": n, "max_model_len": 8192, "tokens": tokens, "token_strs": null}),
        other => panic!("no such server {other}"),
    };
    ResponseTemplate::new(200).set_body_json(body)
}

/// The JSON bodies `/tokenize` received.
async fn tokenize_requests(server: &MockServer) -> Vec<Value> {
    let requests = server.received_requests().await.expect("request recording is on");
    requests.iter().filter(|r| r.url.path() == "/tokenize").map(|r| r.body_json().unwrap()).collect()
}

fn server_counted(context_tokens: usize) -> EngineSettings {
    EngineSettings {
        tokenizer: Some(deskpilot::triage::tokens::TokenizerChoice::Server),
        ..context_settings(Some(context_tokens))
    }
}

#[tokio::test]
async fn with_the_servers_tokenizer_a_prompt_is_fitted_to_its_count_before_it_is_sent() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let ours = prompt_tokens_of_1001(&hd).await;
    for server in ["llama.cpp", "vllm"] {
        let llm = mock_llm(llama_ok(&valid_answer(Some("cat-billing"))), Some(1)).await;
        // The server's tokenizer makes 10 % more tokens of the text; the context holds our count.
        let theirs = ours * 11 / 10;
        Mock::given(method("POST"))
            .and(path("/tokenize"))
            .respond_with(tokenized(server, theirs))
            .mount(&llm)
            .await;
        let engine = engine_with(llm_settings(&llm), server_counted(ours + 1200));
        let triage = engine.triage(&hd, "1001", &policy()).await.unwrap_or_else(|e| panic!("{server}: {e}"));

        assert!(triage.report.refitted, "{server}: fitted again before the only call");
        assert!(
            triage.report.server_prompt_tokens.is_some_and(|n| n > theirs),
            "{server}: {:?}",
            triage.report
        );
        let refit = triage.report.prompt_tokens.expect("counted");
        assert!(refit < ours * 10 / 11, "{server}: {ours} tokens refitted to {refit}");
        let asked = tokenize_requests(&llm).await;
        assert_eq!(asked.len(), 1, "{server}");
        let chat = &chat_requests(&llm).await[0];
        let sent: Vec<String> = messages(chat).into_iter().map(|(_, c)| c).collect();
        assert_ne!(
            asked[0]["content"].as_str(),
            Some(sent.join("\n").as_str()),
            "{server}: the first prompt was counted"
        );
        assert_eq!(asked[0]["model"], MODEL, "{server}");
        assert_eq!(triage.decision.category_id.as_deref(), Some("cat-billing"));
    }
}

#[tokio::test]
async fn a_prompt_the_server_counts_within_its_context_is_sent_as_it_is() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let ours = prompt_tokens_of_1001(&hd).await;
    let llm = mock_llm(llama_ok(&valid_answer(Some("cat-billing"))), Some(1)).await;
    Mock::given(method("POST"))
        .and(path("/tokenize"))
        .respond_with(tokenized("llama.cpp", ours))
        .mount(&llm)
        .await;
    let triage =
        engine_with(llm_settings(&llm), server_counted(ours * 2 + 1200)).triage(&hd, "1001", &policy()).await;
    let report = triage.unwrap().report;
    assert!(!report.refitted);
    assert_eq!(report.prompt_tokens, Some(ours));
    let framing = 2 * 3 + 3;
    assert_eq!(report.server_prompt_tokens, Some(ours + framing));
}

#[tokio::test]
async fn a_server_without_tokenize_is_asked_once_and_prompts_are_counted_here() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let llm = mock_llm(llama_ok(&valid_answer(Some("cat-billing"))), Some(2)).await;
    // Ollama's OpenAI endpoint has no /tokenize.
    Mock::given(method("POST"))
        .and(path("/tokenize"))
        .respond_with(ResponseTemplate::new(404).set_body_string("404 page not found"))
        .mount(&llm)
        .await;
    let engine = engine_with(llm_settings(&llm), server_counted(32_000));
    for ticket in ["1001", "1002"] {
        let triage = engine.triage(&hd, ticket, &policy()).await.unwrap();
        assert_eq!(triage.report.server_prompt_tokens, None);
        assert!(!triage.report.refitted);
    }
    assert_eq!(tokenize_requests(&llm).await.len(), 1, "not asked again after the 404");
}

#[test]
fn the_servers_tokenizer_needs_the_servers_context_size() {
    let err = load_config("[llm]\ntokenizer = \"server\"\n", ("DESKPILOT_UNUSED", "")).unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("context_tokens") && text.contains("llama-server -c"), "{text}");
    let config =
        load_config("[llm]\ntokenizer = \"server\"\ncontext_tokens = 8192\n", ("DESKPILOT_UNUSED", ""))
            .unwrap();
    assert_eq!(config.llm.tokenizer, Some(deskpilot::triage::tokens::TokenizerChoice::Server));
}
