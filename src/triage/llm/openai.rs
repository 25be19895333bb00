//! OpenAI-compatible chat completions with structured (JSON) output, for OpenAI, Azure, vLLM,
//! Ollama and llama.cpp alike.
//!
//! async-openai builds and sends the request; its own error parsing and retry layer are bypassed:
//! a small tower service turns every non-2xx answer into [`HttpFailure`] (status, `Retry-After`,
//! raw body), because compatible servers send error bodies async-openai cannot parse (numeric
//! `code`) and its retry honours `Retry-After` without a cap. Responses are read leniently (the
//! `byot` route), so unknown `finish_reason` values or a missing `object` field do not fail a
//! ticket. Retries (429, 5xx, timeouts) run on the [`crate::http`] toolkit's loop, under a total
//! time cap. Every attempt goes through the endpoint's [`Limiter`] (unless it is off), which sees
//! every response's rate-limit headers; with it, a 429 is waited out as the server says rather
//! than spending one of the call's retries.

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use async_openai::{
    Client,
    config::OpenAIConfig,
    error::OpenAIError,
    middleware::{HttpRequestFactory, ReqwestService},
};
use async_trait::async_trait;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    ChatAnswer, ChatMessage, ChatModel, ChatRequest, InRequiredOrder, Limiter, LlmError, LlmSettings,
    Outcome, OutputMode, Usage,
};
use crate::http::{
    StatusClass, client_builder, clip, describe_transport_error, parse_retry_after, redact_secrets,
    redact_url,
};

/// An OpenAI-compatible chat endpoint.
#[derive(Clone)]
pub struct OpenAiCompatible {
    client: Client<OpenAIConfig>,
    settings: Arc<LlmSettings>,
    limiter: Option<Arc<Limiter>>,
    /// For the server's `/tokenize`, which async-openai does not know.
    http: reqwest::Client,
    /// Set once the server showed it has no usable `/tokenize`: it is not asked again.
    no_tokenize: Arc<AtomicBool>,
}

impl std::fmt::Debug for OpenAiCompatible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiCompatible").field("settings", &self.settings).finish()
    }
}

/// A non-2xx answer, kept whole so we classify it ourselves.
#[derive(Debug, thiserror::Error)]
#[error("HTTP {status}: {body}")]
struct HttpFailure {
    status: StatusCode,
    retry_after: Option<Duration>,
    body: String,
}

/// Wraps async-openai's transport so that non-2xx responses become [`HttpFailure`]s, and shows
/// every response's rate-limit headers to the limiter.
#[derive(Clone)]
struct ClassifyingService {
    inner: ReqwestService,
    limiter: Option<Arc<Limiter>>,
}

impl tower::Service<HttpRequestFactory> for ClassifyingService {
    type Response = reqwest::Response;
    type Error = OpenAIError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<reqwest::Response, OpenAIError>> + Send + 'static>,
    >;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), OpenAIError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequestFactory) -> Self::Future {
        let fut = self.inner.call(request);
        let limiter = self.limiter.clone();
        Box::pin(async move {
            let response = fut.await?;
            if let Some(limiter) = &limiter {
                limiter.observe(response.status(), response.headers());
            }
            if response.status().is_success() {
                return Ok(response);
            }
            let status = response.status();
            let retry_after = parse_retry_after(response.headers());
            let body = response.text().await.unwrap_or_default();
            Err(OpenAIError::Boxed(Box::new(HttpFailure { status, retry_after, body })))
        })
    }
}

impl OpenAiCompatible {
    /// Builds the client. Never reads `OPENAI_*` variables itself: config does that explicitly.
    pub fn new(settings: LlmSettings) -> Result<Self, LlmError> {
        let http = client_builder(settings.connect_timeout, settings.request_timeout)
            .build()
            .map_err(|e| LlmError::Malformed { detail: format!("could not build HTTP client: {e}") })?;
        let key = settings.api_key.as_ref().map(|k| k.expose_secret().to_owned()).unwrap_or_default();
        let mut config =
            OpenAIConfig::new().with_api_base(settings.base_url.trim_end_matches('/')).with_api_key(key);
        for (name, value) in &settings.headers {
            let invalid = |e: &dyn std::fmt::Display| LlmError::Rejected {
                status: 0,
                detail: format!("extra header `{name}` is not a valid HTTP header: {e}"),
            };
            let header = reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|e| invalid(&e))?;
            config = config.with_header(header, value.as_str()).map_err(|e| invalid(&e))?;
        }
        let endpoint = format!("{} {}", redact_url(&settings.base_url), settings.model);
        let limiter = Limiter::new(endpoint, &settings.limits, settings.max_retry_after).map(Arc::new);
        let client = Client::build(http.clone(), config).with_http_service(ClassifyingService {
            inner: ReqwestService::new(http.clone()),
            limiter: limiter.clone(),
        });
        let no_tokenize = Arc::new(AtomicBool::new(false));
        Ok(Self { client, settings: Arc::new(settings), limiter, http, no_tokenize })
    }

    /// The server's count of `text`: `POST /tokenize` at the server's root (llama.cpp answers
    /// `{"tokens": [...]}`, vLLM `{"count": N, ...}`; the body carries the fields of both).
    async fn tokenize(&self, text: &str) -> Result<usize, String> {
        let root = self.settings.base_url.trim_end_matches('/');
        let root = root.strip_suffix("/v1").unwrap_or(root);
        let mut request = self.http.post(format!("{root}/tokenize")).json(&serde_json::json!({
            "model": self.settings.model,
            "content": text,
            "prompt": text,
            "add_special": true,
        }));
        if let Some(key) = &self.settings.api_key {
            request = request.bearer_auth(key.expose_secret());
        }
        let response = request.send().await.map_err(describe_transport_error)?;
        let status = response.status();
        let body = response.text().await.map_err(describe_transport_error)?;
        if !status.is_success() {
            return Err(format!("HTTP {status}: {}", clip(&body, 200)));
        }
        let answer: Value =
            serde_json::from_str(&body).map_err(|e| format!("not JSON ({e}): {}", clip(&body, 200)))?;
        answer["count"]
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .or_else(|| answer["tokens"].as_array().map(Vec::len))
            .ok_or_else(|| format!("neither `count` nor `tokens` in {}", clip(&body, 200)))
    }

    /// One attempt within the limiter: a 429 whose wait is within `max_retry_after` is sent again
    /// once the limiter lets it, without spending a retry (the whole call stays within
    /// `total_timeout`); `last_limited` keeps it for a call whose budget runs out meanwhile.
    async fn limited_attempt(
        &self,
        body: &Body<'_>,
        tokens: u32,
        sent: &AtomicU32,
        last_limited: &Mutex<Option<LlmError>>,
    ) -> Result<(LenientResponse, String), LlmError> {
        loop {
            let permit = match &self.limiter {
                Some(limiter) => Some(limiter.acquire(tokens).await?),
                None => None,
            };
            sent.fetch_add(1, Ordering::Relaxed);
            let result = self.attempt(body).await;
            if let Some(permit) = permit {
                permit.finish(Outcome::of(&result));
            }
            if let Err(e @ LlmError::RateLimited { retry_after, .. }) = &result {
                metrics::counter!("deskpilot_llm_rate_limited_total", "model" => self.settings.model.clone())
                    .increment(1);
                if self.limiter.is_some()
                    && retry_after.is_none_or(|wait| wait <= self.settings.max_retry_after)
                {
                    *last_limited.lock().unwrap_or_else(PoisonError::into_inner) = Some(e.clone());
                    continue;
                }
            }
            return result;
        }
    }

    /// The request body as sent (exposed for tests and `--dry-run`).
    pub fn request_body(&self, request: &ChatRequest) -> Value {
        serde_json::to_value(self.body(request)).unwrap_or(Value::Null)
    }

    /// The request body, borrowing the request: serialized straight into the HTTP body, without
    /// copying the messages and schema into a JSON tree first.
    fn body<'a>(&'a self, request: &'a ChatRequest) -> Body<'a> {
        let response_format = match self.settings.output_mode {
            OutputMode::JsonSchema => ResponseFormat::JsonSchema {
                json_schema: JsonSchema {
                    name: request.schema_name,
                    schema: InRequiredOrder(&request.schema),
                    strict: true,
                },
            },
            OutputMode::JsonObject => ResponseFormat::JsonObject,
        };
        Body {
            model: &self.settings.model,
            messages: &request.messages,
            temperature: self.settings.temperature,
            max_completion_tokens: request.max_completion_tokens,
            response_format,
            stream: false,
        }
    }

    async fn attempt(&self, body: &Body<'_>) -> Result<(LenientResponse, String), LlmError> {
        let key = self.settings.api_key.as_ref().map(|k| k.expose_secret());
        let response: LenientResponse = self
            .client
            .chat()
            .create_byot(body)
            .await
            .map_err(|e| classify_openai_error(e, key.as_slice()))?;
        let choice = response
            .choices
            .first()
            .ok_or_else(|| LlmError::Malformed { detail: "no choices in the response".into() })?;
        let content = choice.message.content.clone().unwrap_or_default();
        if let Some(refusal) = choice.message.refusal.as_deref().filter(|r| !r.is_empty()) {
            return Err(LlmError::Refused { detail: refusal.to_owned() });
        }
        match choice.finish_reason.as_deref() {
            None | Some("stop") | Some("") => {}
            Some("content_filter") => {
                return Err(LlmError::Refused { detail: "stopped by the provider's content filter".into() });
            }
            Some(other @ ("length" | "max_tokens")) => {
                return Err(LlmError::Incomplete {
                    finish_reason: other.to_owned(),
                    max_tokens: body.max_completion_tokens,
                    partial: content,
                });
            }
            // Unknown reasons (vLLM `abort`, proxies' own words): judge by the content instead.
            Some(other) => {
                tracing::debug!(
                    finish_reason = other,
                    "unusual finish_reason; validating the content anyway"
                );
            }
        }
        if content.trim().is_empty() {
            return Err(LlmError::Malformed { detail: "the answer has no content".into() });
        }
        Ok((response, content))
    }
}

/// The chat completion request as sent.
#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    temperature: f32,
    max_completion_tokens: u32,
    response_format: ResponseFormat<'a>,
    stream: bool,
}

/// `response_format`: a strict JSON schema, or any JSON object (for servers without schemas).
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ResponseFormat<'a> {
    JsonSchema { json_schema: JsonSchema<'a> },
    JsonObject,
}

#[derive(Serialize)]
struct JsonSchema<'a> {
    name: &'a str,
    /// Properties in field order: a grammar follows the schema's order.
    schema: InRequiredOrder<'a>,
    strict: bool,
}

#[async_trait]
impl ChatModel for OpenAiCompatible {
    fn model(&self) -> &str {
        &self.settings.model
    }

    fn limiter(&self) -> Option<Arc<Limiter>> {
        self.limiter.clone()
    }

    async fn server_tokens(&self, text: &str) -> Option<usize> {
        if self.no_tokenize.load(Ordering::Relaxed) {
            return None;
        }
        match self.tokenize(text).await {
            Ok(n) => Some(n),
            Err(error) => {
                // Said once: every later prompt is fitted with the local count alone.
                if !self.no_tokenize.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        base_url = %redact_url(&self.settings.base_url), %error,
                        "llm.tokenizer = \"server\", but the server's /tokenize did not answer with a count; prompts are counted with o200k_base alone"
                    );
                }
                None
            }
        }
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatAnswer, LlmError> {
        let s = &self.settings;
        let body = self.body(request);
        let tokens = request.rate_limit_tokens();
        let started = Instant::now();
        let sent = AtomicU32::new(0);
        let last_limited = Mutex::new(None::<LlmError>);
        // The previous attempt's message if it was a 500: the same one twice in a row means the
        // server fails deterministically on this request.
        let last_500 = Mutex::new(None::<String>);
        let attempt = |_number| {
            let (sent, last_500) = (self.limited_attempt(&body, tokens, &sent, &last_limited), &last_500);
            async move {
                let result = sent.await;
                let message = match &result {
                    Err(LlmError::Unavailable { detail }) => detail.strip_prefix("HTTP 500: "),
                    _ => None,
                };
                let mut last = last_500.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some(message) = message
                    && last.as_deref() == Some(message)
                {
                    return Err(LlmError::Repeating { status: 500, detail: message.to_owned() });
                }
                *last = message.map(str::to_owned);
                result
            }
        };
        let retrying = |e: &LlmError, delay: Duration| {
            tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "LLM call failed, retrying");
        };
        let result =
            s.retry_policy().run_within(s.total_timeout, attempt, retrying).await.unwrap_or_else(|_| {
                // Still rate limited when the budget ran out: the worker delays the event for it.
                let limited = last_limited.lock().unwrap_or_else(PoisonError::into_inner).take();
                Err(limited.unwrap_or_else(|| LlmError::Unavailable {
                    detail: format!("no answer within the total budget of {}s", s.total_timeout.as_secs()),
                }))
            });
        let (response, content) = result?;
        let usage = response.usage.map(Usage::from).unwrap_or_default();
        Ok(ChatAnswer {
            content,
            model: response.model.unwrap_or_else(|| s.model.clone()),
            usage,
            latency: started.elapsed(),
            attempts: sent.load(Ordering::Relaxed),
        })
    }
}

/// `secrets` (the key) are masked wherever the server's answer is quoted.
fn classify_openai_error(e: OpenAIError, secrets: &[&str]) -> LlmError {
    match e {
        OpenAIError::Boxed(inner) => match inner.downcast::<HttpFailure>() {
            Ok(f) => classify_status(f.status, f.retry_after, &redact_secrets(&f.body, secrets)),
            Err(other) => LlmError::Unavailable { detail: other.to_string() },
        },
        OpenAIError::Reqwest(e) => LlmError::Unavailable { detail: describe_transport_error(e) },
        OpenAIError::JSONDeserialize(e, body) => {
            let body = redact_secrets(&body, secrets);
            LlmError::Malformed { detail: format!("{e}; body starts with: {}", clip(&body, 200)) }
        }
        other => LlmError::Malformed { detail: other.to_string() },
    }
}

/// Maps an error status and body (OpenAI, vLLM, llama.cpp or a proxy's) to an error class.
fn classify_status(status: StatusCode, retry_after: Option<Duration>, body: &str) -> LlmError {
    if status.is_client_error()
        && let Some(exceeded) = context_exceeded(body)
    {
        return exceeded;
    }
    let detail = error_message(body);
    let code = status.as_u16();
    let unavailable = |detail| LlmError::Unavailable { detail: format!("HTTP {code}: {detail}") };
    match StatusClass::of(status) {
        // A spent quota does not come back by waiting.
        StatusClass::RateLimited if body.contains("insufficient_quota") => {
            LlmError::Rejected { status: code, detail }
        }
        StatusClass::RateLimited => LlmError::RateLimited { retry_after, detail },
        StatusClass::Transient => unavailable(detail),
        // A conflict or "too early" from a proxy or inference server passes on a retry, and so may
        // a status past the 5xx range.
        _ if matches!(code, 409 | 425) || code >= 600 => unavailable(detail),
        _ => LlmError::Rejected { status: code, detail },
    }
}

/// A context overflow, from llama.cpp's `exceed_context_size_error` (`n_prompt_tokens`, `n_ctx`)
/// or from the message vLLM and OpenAI send: "maximum context length is N tokens. However, you
/// requested M tokens (X in the messages, Y in the completion)".
fn context_exceeded(body: &str) -> Option<LlmError> {
    let parsed: Value = serde_json::from_str(body).ok()?;
    let error = parsed.get("error").filter(|e| e.is_object()).unwrap_or(&parsed);
    let number = |key: &str| error.get(key).and_then(Value::as_u64).and_then(|n| u32::try_from(n).ok());
    if error.get("type").and_then(Value::as_str) == Some("exceed_context_size_error") {
        return Some(LlmError::ContextExceeded {
            context_tokens: number("n_ctx")?,
            server_prompt_tokens: number("n_prompt_tokens")?,
            answer_included: false,
        });
    }
    let message = error.get("message").and_then(Value::as_str)?;
    let context_tokens = number_after(message, "maximum context length is ")?;
    let in_messages = number_after(message, "(");
    let in_messages = in_messages.filter(|_| message.contains(" in the messages"));
    let (server_prompt_tokens, answer_included) = match in_messages {
        Some(prompt) => (prompt, false),
        None => (number_after(message, "requested ")?, true),
    };
    Some(LlmError::ContextExceeded { context_tokens, server_prompt_tokens, answer_included })
}

/// The decimal number right after the first `prefix` in `text`.
fn number_after(text: &str, prefix: &str) -> Option<u32> {
    let rest = &text[text.find(prefix)? + prefix.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The human message of an error body: `error.message`, `message`, `detail`, or the raw text.
fn error_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let found = parsed.as_ref().and_then(|v| {
        v.pointer("/error/message")
            .or_else(|| v.get("message"))
            .or_else(|| v.get("detail"))
            .or_else(|| v.get("error").filter(|e| e.is_string()))
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let text = found.unwrap_or_else(|| body.trim().to_owned());
    match clip(&text, 300) {
        "" => "(empty body)".to_owned(),
        short => short.to_owned(),
    }
}

/// A chat completion read leniently: only what we use, any extra or unusual value tolerated.
#[derive(Debug, Deserialize)]
struct LenientResponse {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<LenientChoice>,
    #[serde(default)]
    usage: Option<LenientUsage>,
}

#[derive(Debug, Deserialize)]
struct LenientChoice {
    #[serde(default)]
    message: LenientMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct LenientMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LenientUsage {
    #[serde(default)]
    prompt_tokens: u32,
    #[serde(default)]
    completion_tokens: u32,
    #[serde(default)]
    prompt_tokens_details: Option<PromptTokensDetails>,
}

#[derive(Debug, Deserialize)]
struct PromptTokensDetails {
    #[serde(default)]
    cached_tokens: u32,
}

impl From<LenientUsage> for Usage {
    fn from(u: LenientUsage) -> Self {
        Self {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            cached_tokens: u.prompt_tokens_details.map_or(0, |d| d.cached_tokens),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_of_compatible_servers_are_read() {
        assert_eq!(error_message(r#"{"error":{"message":"model not found","code":404}}"#), "model not found");
        assert_eq!(error_message(r#"{"code":400,"message":"bad grammar"}"#), "bad grammar");
        assert_eq!(error_message(r#"{"detail":"Not Found"}"#), "Not Found");
        assert_eq!(error_message("<html>Bad Gateway</html>"), "<html>Bad Gateway</html>");
        assert_eq!(error_message(""), "(empty body)");
    }

    #[test]
    fn context_overflows_of_each_server_are_read() {
        let exceeded = |body: &str| match classify_status(StatusCode::BAD_REQUEST, None, body) {
            LlmError::ContextExceeded { context_tokens, server_prompt_tokens, answer_included } => {
                (context_tokens, server_prompt_tokens, answer_included)
            }
            other => panic!("{other:?}"),
        };
        let llama = r#"{"error":{"code":400,"message":"request (8745 tokens) exceeds the available context size (8192 tokens), try increasing it","type":"exceed_context_size_error","n_prompt_tokens":8745,"n_ctx":8192}}"#;
        assert_eq!(exceeded(llama), (8192, 8745, false));
        let openai = r#"{"error":{"message":"This model's maximum context length is 8192 tokens. However, you requested 8745 tokens (7545 in the messages, 1200 in the completion). Please reduce the length of the messages or completion.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
        assert_eq!(exceeded(openai), (8192, 7545, false));
        let vllm = r#"{"object":"error","message":"This model's maximum context length is 8192 tokens. However, you requested 8745 tokens. Please reduce the length of the messages or completion.","type":"BadRequestError","param":null,"code":400}"#;
        assert_eq!(exceeded(vllm), (8192, 8745, true));
        let other = r#"{"error":{"message":"maximum context length is unknown","type":"x"}}"#;
        assert!(matches!(classify_status(StatusCode::BAD_REQUEST, None, other), LlmError::Rejected { .. }));
    }

    #[test]
    fn statuses_map_to_classes() {
        let classify = |s: u16, body| classify_status(StatusCode::from_u16(s).unwrap(), None, body);
        assert!(matches!(classify(429, "{}"), LlmError::RateLimited { .. }));
        let quota = r#"{"error":{"type":"insufficient_quota","message":"You exceeded your current quota"}}"#;
        assert!(matches!(classify(429, quota), LlmError::Rejected { status: 429, .. }));
        for transient in [408, 409, 425, 500, 503, 599, 600] {
            assert!(classify(transient, "").is_retryable(), "{transient}");
        }
        assert!(!classify(401, "").is_retryable());
        assert!(!classify(404, "").is_retryable());
        assert!(!classify(400, r#"{"code":400,"message":"x"}"#).is_retryable());
    }
}
