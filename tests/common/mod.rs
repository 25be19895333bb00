//! Shared by `triage_llm` and `triage_injection`: a sandbox helpdesk, a triage engine whose LLM is
//! a wiremock OpenAI-compatible server, and chat-completion bodies shaped like the real ones.
#![allow(dead_code)] // each test binary uses a different subset

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use deskpilot::{
    sandbox::{self, RunningSandbox, SandboxOptions},
    ticketing::{http::HttpSettings, unified::UnifiedClient},
    triage::{
        Engine, EngineSettings,
        llm::{LlmSettings, OpenAiCompatible},
        prompt::Prompts,
        rules::Rules,
    },
};
use serde_json::{Value, json};
use wiremock::{
    Mock, MockServer, Request, Respond, ResponseTemplate,
    matchers::{method, path},
};

/// The sandbox's API key.
pub const KEY: &str = "test-key";
/// The configured model.
pub const MODEL: &str = "gpt-4o-mini";
/// The chat completions route under the mock's `/v1`.
pub const COMPLETIONS: &str = "/v1/chat/completions";
/// The demo connection's categories, all active in the bundled data, in the order the sandbox
/// lists them (by id).
pub const DEMO_CATEGORIES: [&str; 8] = [
    "cat-account-access",
    "cat-billing",
    "cat-bug",
    "cat-feature-request",
    "cat-outage",
    "cat-refunds",
    "cat-security",
    "cat-shipping",
];

/// A sandbox serving the bundled data (connections `demo` and `acme-retail`).
pub async fn start_sandbox() -> RunningSandbox {
    sandbox::spawn(SandboxOptions {
        data_dir: None,
        api_key: KEY.into(),
        webhook_url: None,
        webhook_secret: None,
        state: None,
    })
    .await
    .expect("sandbox starts")
}

/// A Unified client for one connection of the sandbox.
pub fn helpdesk(sb: &RunningSandbox, connection: &str) -> UnifiedClient {
    UnifiedClient::new(&sb.base_url, connection, KEY.into(), &HttpSettings::default()).unwrap()
}

/// LLM settings against the mock: 3 retries, short timeouts, `Retry-After` honoured up to 2 s.
pub fn llm_settings(mock: &MockServer) -> LlmSettings {
    LlmSettings {
        base_url: format!("{}/v1", mock.uri()),
        max_retries: 3,
        // Long enough for the retries' jittered backoff (0.5–1 s, 1–2 s, 2–4 s), short otherwise.
        total_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(2),
        max_retry_after: Duration::from_secs(2),
        ..LlmSettings::new("unused", MODEL)
    }
}

/// An engine with the real client, embedded prompts and rules.
pub fn engine_with(llm: LlmSettings, settings: EngineSettings) -> Engine {
    let client = OpenAiCompatible::new(llm).expect("client builds");
    Engine::new(
        Some(Arc::new(client)),
        Prompts::embedded().expect("embedded prompts"),
        Rules::embedded().expect("embedded rules"),
        MODEL,
        settings,
    )
}

/// An engine with [`llm_settings`] and default engine settings.
pub fn engine(mock: &MockServer) -> Engine {
    engine_with(llm_settings(mock), EngineSettings::default())
}

/// Token usage for a completion body.
#[derive(Debug, Clone, Copy)]
pub struct Tokens {
    pub prompt: u32,
    pub completion: u32,
    pub cached: u32,
}

pub const USAGE: Tokens = Tokens { prompt: 1500, completion: 120, cached: 0 };

/// A chat completion exactly as OpenAI sends it.
pub fn completion_full(content: Option<&str>, finish_reason: &str, usage: Tokens) -> Value {
    json!({
        "id": "chatcmpl-BXoGq4Yk9v2LmZpQ7rTn3cWd",
        "object": "chat.completion",
        "created": 1_767_225_600,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": finish_reason
        }],
        "usage": {
            "prompt_tokens": usage.prompt,
            "completion_tokens": usage.completion,
            "total_tokens": usage.prompt + usage.completion,
            "prompt_tokens_details": {"cached_tokens": usage.cached, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0
            }
        },
        "service_tier": "default",
        "system_fingerprint": "fp_560af6e559"
    })
}

/// A chat completion with `content`, `finish_reason: "stop"` and [`USAGE`].
pub fn completion(content: &str) -> Value {
    completion_full(Some(content), "stop", USAGE)
}

/// 200 with [`completion`].
pub fn ok(content: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(completion(content))
}

/// An OpenAI error response.
pub fn openai_error(status: u16, message: &str, kind: &str, code: Option<&str>) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .set_body_json(json!({"error": {"message": message, "type": kind, "param": null, "code": code}}))
}

/// A decision that passes validation, as the model would write it.
pub fn valid_decision(category: Option<&str>) -> Value {
    json!({
        "category_id": category,
        "priority": "HIGH",
        "tags": ["billing", "double-charge"],
        "language": "en",
        "sentiment": "negative",
        "summary": "The customer was charged twice this month and wants one charge reversed.",
        "draft_reply": "Hi Tom, thanks for reaching out. I'm checking the two charges with our billing team and will get back to you shortly.",
        "confidence": 0.86,
        "needs_human": false,
        "reason": "A duplicate charge is a billing problem with money charged wrongly, so HIGH."
    })
}

/// [`valid_decision`] as the answer text.
pub fn valid_answer(category: Option<&str>) -> String {
    valid_decision(category).to_string()
}

/// Answers with the given responses in order, repeating the last one.
pub struct Script {
    responses: Vec<ResponseTemplate>,
    next: AtomicUsize,
}

impl Script {
    pub fn new(responses: Vec<ResponseTemplate>) -> Self {
        assert!(!responses.is_empty());
        Self { responses, next: AtomicUsize::new(0) }
    }
}

impl Respond for Script {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let i = self.next.fetch_add(1, Ordering::SeqCst).min(self.responses.len() - 1);
        self.responses[i].clone()
    }
}

/// A mock LLM answering `POST /v1/chat/completions` with `responder`, expecting `expect` calls
/// when given (checked on drop).
pub async fn mock_llm(responder: impl Respond + 'static, expect: Option<u64>) -> MockServer {
    let server = MockServer::start().await;
    let mut mock = Mock::given(method("POST")).and(path(COMPLETIONS)).respond_with(responder);
    if let Some(n) = expect {
        mock = mock.expect(n);
    }
    mock.mount(&server).await;
    server
}

/// The JSON bodies of the chat requests received so far.
pub async fn chat_requests(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .expect("request recording is on")
        .iter()
        .filter(|r| r.url.path() == COMPLETIONS)
        .map(|r| r.body_json::<Value>().expect("a JSON request body"))
        .collect()
}

/// `(role, content)` of every message of a request body.
pub fn messages(body: &Value) -> Vec<(String, String)> {
    body["messages"]
        .as_array()
        .expect("messages array")
        .iter()
        .map(|m| {
            (
                m["role"].as_str().expect("role").to_owned(),
                m["content"].as_str().expect("string content").to_owned(),
            )
        })
        .collect()
}
