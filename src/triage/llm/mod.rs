//! The LLM as triage sees it: a [`ChatModel`] that answers a [`ChatRequest`] with JSON, what it
//! costs ([`Usage`], [`Price`]) and how it fails ([`LlmError`]). [`OpenAiCompatible`] is the one
//! implementation, for OpenAI, Azure, vLLM, Ollama and llama.cpp alike; tests use doubles.

mod limit;
mod openai;
mod schema_order;

pub use limit::{CallLimits, Limiter, LimiterMode, Outcome, Permit, parse_reset};
pub use openai::OpenAiCompatible;
pub use schema_order::InRequiredOrder;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::http::{RetryPolicy, RetryableError, redact_url};

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: &'static str,
    /// Text.
    pub content: String,
}

impl ChatMessage {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self { role: "system", content: content.into() }
    }
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self { role: "user", content: content.into() }
    }
    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self { role: "assistant", content: content.into() }
    }
}

/// How the answer's JSON shape is requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputMode {
    /// `response_format: json_schema` with `strict: true` (OpenAI, vLLM, Ollama ≥ 0.5, llama.cpp).
    #[default]
    JsonSchema,
    /// `response_format: json_object`, the schema only described in the prompt (older servers).
    JsonObject,
}

/// A chat request asking for JSON matching `schema`.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// Messages, stable prefix first.
    pub messages: Vec<ChatMessage>,
    /// Schema name (`response_format.json_schema.name`).
    pub schema_name: &'static str,
    /// JSON schema of the answer (shared: the same for every ticket of a category list).
    pub schema: Arc<Value>,
    /// Cap on the answer's tokens.
    pub max_completion_tokens: u32,
    /// The messages' tokens as counted; `None`: estimated from their length. With the answer
    /// cap, what the call takes from a tokens-per-minute limit.
    pub prompt_tokens: Option<u32>,
}

impl ChatRequest {
    /// Tokens this request takes from a tokens-per-minute limit: the prompt and the answer cap,
    /// as OpenAI counts them against the limit.
    pub fn rate_limit_tokens(&self) -> u32 {
        // About four bytes a token, as the prompt fitting estimates.
        let prompt = self.prompt_tokens.unwrap_or_else(|| {
            let bytes: usize = self.messages.iter().map(|m| m.content.len()).sum();
            u32::try_from(bytes.div_ceil(4)).unwrap_or(u32::MAX)
        });
        prompt.saturating_add(self.max_completion_tokens)
    }
}

/// Token usage reported by the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Completion tokens.
    pub completion_tokens: u32,
    /// Prompt tokens served from the provider's prompt cache.
    pub cached_tokens: u32,
}

/// The answer to a chat request.
#[derive(Debug, Clone)]
pub struct ChatAnswer {
    /// The message content (should be JSON).
    pub content: String,
    /// The model that answered, as the server says.
    pub model: String,
    /// Usage, when reported.
    pub usage: Usage,
    /// Wall time including retries.
    pub latency: Duration,
    /// Attempts made (1 = no retry).
    pub attempts: u32,
}

/// Why a chat call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LlmError {
    /// 429: the server asks us to slow down.
    #[error("LLM rate limited (HTTP 429){}: {detail}", retry_after.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default())]
    RateLimited {
        /// Requested wait.
        retry_after: Option<Duration>,
        /// The server's message.
        detail: String,
    },
    /// 5xx, timeout, connection failure: may pass.
    #[error("LLM unavailable: {detail}")]
    Unavailable {
        /// What happened.
        detail: String,
    },
    /// A 500 answered twice in a row with the same body: the server fails the same way on the
    /// same request (llama.cpp at temperature 0: "does not match the expected ... format"), so
    /// the call stops retrying. A later delivery may still pass (a fixed template, a restart).
    #[error(
        "LLM server answered HTTP {status} twice with the same error, so this call stops retrying: {detail}; \
         check the model and its chat template on the server (llama-server --jinja), or try \
         [llm] output_mode = \"json_object\""
    )]
    Repeating {
        /// HTTP status.
        status: u16,
        /// The server's message.
        detail: String,
    },
    /// A 4xx the request cannot recover from (bad key, unknown model, quota, bad schema).
    #[error("LLM rejected the request (HTTP {status}): {detail}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The server's message.
        detail: String,
    },
    /// The answer was cut off (`finish_reason: length`) or otherwise incomplete.
    #[error(
        "the answer was cut off at {max_tokens} tokens (finish_reason `{finish_reason}`); raise [triage] \
         answer_reserve_tokens (and the server's context size) or lower prompt_budget_tokens"
    )]
    Incomplete {
        /// The server's finish reason.
        finish_reason: String,
        /// The answer's token cap it ran into (`max_completion_tokens` of the request).
        max_tokens: u32,
        /// What arrived, for the repair round trip.
        partial: String,
    },
    /// The server counted more prompt tokens than its context holds (llama.cpp
    /// `exceed_context_size_error`; vLLM's and OpenAI's "maximum context length is N tokens").
    #[error(
        "the prompt is {server_prompt_tokens} tokens to the server, over its context of {context_tokens} \
         tokens{}; set [llm] context_tokens to the server's context size, raise the context on the \
         server (llama-server -c, Ollama num_ctx, vLLM --max-model-len) or lower [triage] \
         prompt_budget_tokens",
        if *answer_included { " with the answer's reserve" } else { "" }
    )]
    ContextExceeded {
        /// The model's context window, as the server reports it.
        context_tokens: u32,
        /// What the server counted: the prompt, or prompt and answer reserve (`answer_included`).
        server_prompt_tokens: u32,
        /// Whether `server_prompt_tokens` includes the requested answer tokens (OpenAI and vLLM
        /// report "you requested M tokens" for both together, llama.cpp the prompt alone).
        answer_included: bool,
    },
    /// The model refused or the content filter stopped it.
    #[error("LLM refused: {detail}")]
    Refused {
        /// The refusal text or filter reason.
        detail: String,
    },
    /// The response was not a chat completion at all.
    #[error("LLM response could not be read: {detail}")]
    Malformed {
        /// What was wrong.
        detail: String,
    },
}

impl LlmError {
    /// Whether trying again later may succeed (a later delivery, not this call's own retries).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Unavailable { .. } | Self::Repeating { .. })
    }

    /// The wait the server asked for.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl RetryableError for LlmError {
    /// Within one call: a repeating error is not retried again.
    fn is_retryable(&self) -> bool {
        !matches!(self, Self::Repeating { .. }) && LlmError::is_retryable(self)
    }

    fn retry_after(&self) -> Option<Duration> {
        LlmError::retry_after(self)
    }
}

/// A chat model that answers with JSON. Behind a trait so triage tests can use a double.
#[async_trait]
pub trait ChatModel: Send + Sync {
    /// The configured model name.
    fn model(&self) -> &str;
    /// Sends the request, retrying transient failures within the client's budget.
    async fn complete(&self, request: &ChatRequest) -> Result<ChatAnswer, LlmError>;
    /// The limiter its calls go through, if any: the worker takes events at its pace.
    fn limiter(&self) -> Option<Arc<Limiter>> {
        None
    }
    /// How many tokens the server's own tokenizer makes of `text`, when it can say
    /// (`[llm] tokenizer = "server"` asks); `None` otherwise.
    async fn server_tokens(&self, _text: &str) -> Option<usize> {
        None
    }
}

/// Settings of the OpenAI-compatible client.
#[derive(Clone)]
pub struct LlmSettings {
    /// Base URL ending in `/v1` (e.g. `http://127.0.0.1:11434/v1`).
    pub base_url: String,
    /// API key; local servers often need none.
    pub api_key: Option<SecretString>,
    /// Model name.
    pub model: String,
    /// Structured-output mode.
    pub output_mode: OutputMode,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Timeout of one attempt.
    pub request_timeout: Duration,
    /// Retries after the first attempt.
    pub max_retries: usize,
    /// Cap on the whole call including retries and waits.
    pub total_timeout: Duration,
    /// Longest `Retry-After` honoured in-process; longer ones end the call as `RateLimited`.
    pub max_retry_after: Duration,
    /// Sampling temperature.
    pub temperature: f32,
    /// Extra headers sent with every request (e.g. a gateway tenant).
    pub headers: Vec<(String, String)>,
    /// Concurrency and rate limits of the endpoint.
    pub limits: CallLimits,
}

impl std::fmt::Debug for LlmSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmSettings")
            .field("base_url", &redact_url(&self.base_url))
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("model", &self.model)
            .field("output_mode", &self.output_mode)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl LlmSettings {
    /// Defaults for `model` at `base_url`.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: None,
            model: model.into(),
            output_mode: OutputMode::JsonSchema,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            max_retries: 4,
            total_timeout: Duration::from_secs(180),
            max_retry_after: Duration::from_secs(60),
            temperature: 0.0,
            headers: Vec::new(),
            limits: CallLimits::default(),
        }
    }

    /// How a call is retried: backoff from 0.5 s to 20 s, within `max_retries` and
    /// `max_retry_after` (the whole call is also held to `total_timeout`).
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_retries: self.max_retries,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            max_retry_after: self.max_retry_after,
        }
    }
}

/// Prices of one model, in US dollars per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Input (prompt) tokens.
    pub input_per_mtok: f64,
    /// Cached input tokens (defaults to the input price when unknown).
    #[serde(default)]
    pub cached_input_per_mtok: Option<f64>,
    /// Output (completion) tokens.
    pub output_per_mtok: f64,
}

impl Price {
    /// Estimated cost of `usage` in US dollars.
    pub fn cost(&self, usage: Usage) -> f64 {
        let cached = f64::from(usage.cached_tokens.min(usage.prompt_tokens));
        let fresh = f64::from(usage.prompt_tokens) - cached;
        let cached_price = self.cached_input_per_mtok.unwrap_or(self.input_per_mtok);
        (fresh * self.input_per_mtok
            + cached * cached_price
            + f64::from(usage.completion_tokens) * self.output_per_mtok)
            / 1_000_000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_counts_cached_tokens_at_their_price() {
        let p = Price { input_per_mtok: 0.15, cached_input_per_mtok: Some(0.075), output_per_mtok: 0.6 };
        let u = Usage { prompt_tokens: 1_000_000, completion_tokens: 100_000, cached_tokens: 500_000 };
        assert!((p.cost(u) - (0.075 + 0.0375 + 0.06)).abs() < 1e-9);
    }

    #[test]
    fn debug_hides_the_key() {
        let mut s = LlmSettings::new("http://x/v1", "m");
        s.api_key = Some("sk-secret".into());
        assert!(!format!("{s:?}").contains("sk-secret"));
        let s = LlmSettings::new("https://gateway:pw@llm.example/v1", "m");
        assert!(!format!("{s:?}").contains("pw@"), "{s:?}");
    }
}
