//! Typed configuration: embedded defaults, then an optional file, then environment overrides.
//!
//! Layers, later wins (merged with figment):
//! 1. `config/default.toml`, compiled into the binary;
//! 2. the file given with `--config FILE` or `DESKPILOT_CONFIG` (an error if it does not exist);
//! 3. `DESKPILOT__SECTION__KEY` environment variables, `__` nesting one level:
//!    `DESKPILOT__LLM__MODEL=gpt-4o`, `DESKPILOT__WORKER__CONCURRENCY=8`. Values are read like TOML
//!    scalars (`8`, `true`, `"quoted"`), so quote a string that would otherwise read as a number.
//!    `[[connections]]` come from files only; their secrets can come from the environment (`*_env`).
//!
//! Then [`Config::validate`] checks ranges and cross-field rules. Unknown keys are rejected at every
//! level, so a typo fails at start with the key, where it was set and what is expected.
//!
//! Other environment variables read here:
//! - `OPENAI_API_KEY`: the LLM key, through the default `llm.api_key_env`, unless `llm.api_key` is set.
//! - `OPENAI_BASE_URL`: the LLM base URL, only when neither a file nor `DESKPILOT__LLM__BASE_URL` set
//!   `llm.base_url` (so an explicit setting always wins over it).
//! - every variable named by a `*_env` key, e.g. `api_key_env = "UNIFIED_API_KEY"`.
//!
//! Secrets are [`SecretString`]s and URLs that may carry a password print redacted, so `{:?}` of a
//! [`Config`] is safe to log.

mod backend;
mod connection;
mod ingest;
mod load;
mod privacy;
mod report;
mod secrets;
mod spend;
mod validate;

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use anyhow::anyhow;
use secrecy::SecretString;
use serde::Deserialize;

pub use backend::{
    BACKENDS, BUILT_BACKENDS, BackendConfig, FreshdeskConfig, IntercomConfig, ServiceNowConfig,
    UnifiedConfig, ZendeskCategorySource, ZendeskConfig, ZendeskTicketExport,
};
pub use connection::{
    ConnectionConfig, DEFAULT_CONFIDENCE_THRESHOLD, DEFAULT_POLL_INTERVAL, DEFAULT_POLL_OVERLAP, Mode,
};
pub use ingest::IngestConfig;
pub use privacy::{PatternConfig, PrivacyConfig};
pub use secrets::{Dsn, redact_url};
pub use spend::{EscalationConfig, OnBudgetExhausted};

use secrets::EnvVars;

use crate::triage::{
    TokenCounting,
    decision::Limits,
    llm::{CallLimits, LimiterMode, OutputMode, Price},
};

/// The embedded defaults, `config/default.toml`.
pub const DEFAULTS: &str = include_str!("../config/default.toml");

/// Prefix of the environment overrides (`DESKPILOT__LLM__MODEL`).
pub const ENV_PREFIX: &str = "DESKPILOT__";

/// OpenAI's API, the default `llm.base_url`.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

/// How the embedded defaults are named in errors and provenance checks.
const DEFAULTS_SOURCE: &str = "the embedded defaults";

/// How an environment override is named in errors: this, a space, the variable's name.
const ENV_SOURCE: &str = "environment variable";

/// The whole configuration. Build it with [`Config::load`] or [`Config::load_from`], which also
/// resolve the LLM key and validate; deserializing it by other means does neither.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The OpenAI-compatible chat model used for triage.
    pub llm: LlmConfig,
    /// The event bus.
    pub bus: BusConfig,
    /// The database.
    pub store: StoreConfig,
    /// The triage worker.
    pub worker: WorkerConfig,
    /// Timeouts and retries of every helpdesk client.
    pub http: HttpConfig,
    /// The HTTP server: metrics, health and readiness.
    #[serde(default)]
    pub server: ServerConfig,
    /// Prompt budget, templates, rules and answer limits.
    pub triage: TriageConfig,
    /// What personal data is kept from the LLM (each connection may override it).
    #[serde(default)]
    pub privacy: PrivacyConfig,
    /// How helpdesk changes come in: webhooks and polling.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// Who may use the review page on `[server] addr`.
    #[serde(default)]
    pub review: ReviewConfig,
    /// The helpdesks deskpilot works on.
    #[serde(default)]
    pub connections: Vec<ConnectionConfig>,
    #[serde(skip)]
    env: EnvVars,
    #[serde(skip)]
    sources: Vec<String>,
}

/// `[llm]`: an OpenAI-compatible chat endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    /// Base URL of the OpenAI-compatible API (`OPENAI_BASE_URL` fills it when nothing else did).
    pub base_url: String,
    /// The API key itself; wins over `api_key_env`.
    #[serde(default)]
    pub api_key: Option<SecretString>,
    /// The environment variable holding the API key (default `OPENAI_API_KEY`).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Model name.
    pub model: String,
    /// TCP + TLS connect timeout, seconds.
    pub connect_timeout_secs: u64,
    /// Whole-request timeout, seconds.
    pub request_timeout_secs: u64,
    /// Retries of a failed call after the first attempt.
    pub max_retries: u32,
    /// Cap on one triage call including retries and waits, seconds.
    #[serde(default = "default_llm_total_timeout_secs")]
    pub total_timeout_secs: u64,
    /// Longest `Retry-After` waited in-process, seconds; longer ones return the event for later.
    #[serde(default = "default_llm_max_retry_after_secs")]
    pub max_retry_after_secs: u64,
    /// `json_schema` (strict structured output) or `json_object` (older servers; the schema is
    /// then described in the prompt).
    #[serde(default)]
    pub output_mode: OutputMode,
    /// Sampling temperature.
    #[serde(default)]
    pub temperature: f32,
    /// The model's context window on this server, in its tokens (llama-server `-c`, Ollama
    /// `num_ctx`, vLLM `--max-model-len`): the prompt budget then stays within it after the
    /// answer reserve. Unset: `triage.prompt_budget_tokens` alone.
    #[serde(default)]
    pub context_tokens: Option<usize>,
    /// `o200k` or `cl100k`: the encoding prompts are counted with, for a model whose name
    /// implies none (unset: the name's encoding, else o200k); `server`: also asked of the
    /// server's `/tokenize` before each call.
    #[serde(default)]
    pub tokenizer: Option<crate::triage::tokens::TokenizerChoice>,
    /// Prices per model name, US dollars per million tokens, for cost estimates and budgets.
    #[serde(default)]
    pub prices: BTreeMap<String, Price>,
    /// Most US dollars the LLM may cost per UTC day, over every connection; unset = no limit.
    #[serde(default)]
    pub daily_budget_usd: Option<f64>,
    /// Most US dollars the LLM may cost per UTC calendar month, over every connection.
    #[serde(default)]
    pub monthly_budget_usd: Option<f64>,
    /// What the worker does once a budget is spent.
    #[serde(default)]
    pub on_budget_exhausted: OnBudgetExhausted,
    /// The cheaper model asked once a budget is spent (`switch_to_fallback_model`), on the same
    /// server as `model`.
    #[serde(default)]
    pub fallback_model: Option<String>,
    /// `[llm.escalation]`: a stronger model for the answers `model` is unsure of or gets wrong.
    #[serde(default)]
    pub escalation: Option<EscalationConfig>,
    /// `adaptive` (calls follow an adaptive concurrency limit, the server's rate-limit headers
    /// and the rates below) or `off`.
    #[serde(default)]
    pub limiter: LimiterMode,
    /// Requests per minute the account allows this model; unset: only what the server says.
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    /// Tokens per minute the account allows this model, counted as the prompt plus the answer
    /// reserve of each request; unset: only what the server says.
    #[serde(default)]
    pub tokens_per_minute: Option<u32>,
    #[serde(skip)]
    resolved: ResolvedKey,
}

/// The LLM key after looking at `api_key`, `api_key_env` and the environment.
#[derive(Debug, Clone, Default)]
struct ResolvedKey {
    key: Option<SecretString>,
    /// Where the key came from, or why there is none.
    origin: String,
    /// Whether `base_url` came from `OPENAI_BASE_URL`.
    base_url_from_env: bool,
}

impl LlmConfig {
    /// The API key, if one resolved (a local server may need none).
    pub fn api_key(&self) -> Option<&SecretString> {
        self.resolved.key.as_ref()
    }

    /// Where the key came from (`llm.api_key`, `environment variable OPENAI_API_KEY`), or why there
    /// is none. Never the key itself.
    pub fn key_origin(&self) -> &str {
        &self.resolved.origin
    }

    /// Whether `base_url` was taken from `OPENAI_BASE_URL`.
    pub fn base_url_from_env(&self) -> bool {
        self.resolved.base_url_from_env
    }

    /// Whether an LLM is usable: a key resolved, or `base_url` points somewhere other than OpenAI
    /// (local servers such as Ollama or vLLM need no key). Without one, triage uses its rules.
    pub fn is_configured(&self) -> bool {
        self.api_key().is_some() || self.base_url.trim_end_matches('/') != OPENAI_BASE_URL
    }

    /// Connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }

    /// Request timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    /// The limits calls to this endpoint are kept within.
    pub fn call_limits(&self) -> CallLimits {
        CallLimits {
            mode: self.limiter,
            requests_per_minute: self.requests_per_minute,
            tokens_per_minute: self.tokens_per_minute,
        }
    }
}

fn default_llm_total_timeout_secs() -> u64 {
    180
}

fn default_llm_max_retry_after_secs() -> u64 {
    60
}

/// `[triage]`: what the model sees and may answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriageConfig {
    /// Most tokens a prompt may take (system + ticket); older notes are dropped to fit.
    pub prompt_budget_tokens: usize,
    /// Tokens reserved for the answer (`max_completion_tokens`).
    pub answer_reserve_tokens: u32,
    /// Strip HTML, quoted history and signatures before counting.
    #[serde(default = "default_true")]
    pub clean: bool,
    /// Most notes read per ticket, newest first: a thread of thousands costs no more to read
    /// than its newest ones (the budget would drop the older ones anyway).
    #[serde(default = "default_max_notes")]
    pub max_notes: usize,
    /// `when_needed` (count only a prompt whose size does not prove it within budget) or
    /// `always` (count every prompt, for the per-part figures).
    #[serde(default)]
    pub count_tokens: TokenCounting,
    /// A directory with edited copies of `prompts/` (`triage/system.j2`, ...); unset = the
    /// templates compiled into the binary.
    #[serde(default)]
    pub prompts_dir: Option<PathBuf>,
    /// A fallback rules file like `config/rules.toml`; unset = the rules compiled into the binary.
    #[serde(default)]
    pub rules_file: Option<PathBuf>,
    /// Limits on the answer.
    #[serde(default)]
    pub limits: Limits,
}

fn default_true() -> bool {
    true
}

/// `[bus]`: where ticket events travel.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusConfig {
    /// `amqp://` or `amqps://` URL of RabbitMQ; empty = the in-process bus.
    pub url: Dsn,
    /// Topic exchange the events are published to.
    pub exchange: String,
    /// Work queue the worker consumes (bound to `ticket.created`).
    pub queue: String,
}

impl BusConfig {
    /// The broker URL, or `None` for the in-process bus.
    pub fn amqp_url(&self) -> Option<&str> {
        Some(self.url.expose()).filter(|u| !u.is_empty())
    }
}

/// `[store]`: the database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://PATH` (one process) or `postgres://...` (many replicas).
    pub url: Dsn,
}

/// `[worker]`: the triage loop.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// Events handled at once (also the broker prefetch).
    pub concurrency: u32,
    /// How long a claim on a ticket is held before another replica may take over, seconds.
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u64,
    /// How long shutdown waits for in-flight events before handing them back, seconds.
    #[serde(default = "default_drain_secs")]
    pub drain_deadline_secs: u64,
    /// Delay tiers for retries, seconds (one RabbitMQ TTL queue each).
    #[serde(default = "default_retry_delays")]
    pub retry_delays_secs: Vec<u64>,
    /// Tries of one event before a transient failure is given up and dead-lettered.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Deliveries of one message before the broker dead-letters it (`x-delivery-limit`).
    #[serde(default = "default_delivery_limit")]
    pub delivery_limit: u32,
    /// Threads running the process's tasks (1 = everything on one thread; see [`crate::runtime`]).
    #[serde(default = "default_threads")]
    pub threads: usize,
}

fn default_threads() -> usize {
    1
}

fn default_lease_secs() -> u64 {
    600
}
fn default_drain_secs() -> u64 {
    30
}
fn default_retry_delays() -> Vec<u64> {
    vec![5, 30, 120, 600]
}
fn default_max_attempts() -> u32 {
    12
}
fn default_delivery_limit() -> u32 {
    10
}

/// `[http]`: timeouts and retries of the helpdesk clients.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// TCP + TLS connect timeout, seconds.
    pub connect_timeout_secs: u64,
    /// Whole-request timeout per attempt, seconds.
    pub request_timeout_secs: u64,
    /// Retries of a transient failure (429, 5xx, timeout) after the first attempt.
    pub max_retries: usize,
    /// Longest `Retry-After` waited in-process; longer ones go back to the caller.
    pub max_retry_after_secs: u64,
    /// Requests in flight to one helpdesk connection at once (and connections kept open to it).
    #[serde(default = "default_max_concurrent_requests")]
    pub max_concurrent_requests: usize,
    /// Largest helpdesk answer read, in MiB; a larger one fails the call (it is not a ticket).
    #[serde(default = "default_max_response_mb")]
    pub max_response_mb: u64,
}

fn default_max_concurrent_requests() -> usize {
    16
}
fn default_max_notes() -> usize {
    crate::triage::context::DEFAULT_MAX_NOTES
}
fn default_max_response_mb() -> u64 {
    8
}

/// `[server]`: the one HTTP listener of the service (metrics, health, readiness).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// `host:port` to listen on; empty = no HTTP server.
    #[serde(default = "default_server_addr")]
    pub addr: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self { addr: default_server_addr() }
    }
}

fn default_server_addr() -> String {
    "127.0.0.1:8080".to_owned()
}

impl ServerConfig {
    /// The address to listen on, or `None` when the server is off.
    pub fn addr(&self) -> Option<&str> {
        Some(self.addr.trim()).filter(|a| !a.is_empty())
    }
}

/// `[review]`: access to the review page at `/review`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewConfig {
    /// The token reviewers and scripts present (`Authorization: Bearer`); wins over `token_env`.
    #[serde(default)]
    pub token: Option<SecretString>,
    /// The environment variable holding the token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// Without a token, let anyone who can reach a loopback-bound server in (the demo's setting).
    #[serde(default)]
    pub allow_anonymous_loopback: bool,
}

impl Config {
    /// The review page's token, if one is configured (`[review] token` or `token_env`).
    pub fn review_token(&self) -> anyhow::Result<Option<SecretString>> {
        let r = &self.review;
        if r.token.is_none() && r.token_env.as_deref().is_none_or(str::is_empty) {
            return Ok(None);
        }
        secrets::resolve_secret("review.token", r.token.as_ref(), r.token_env.as_deref(), &self.env).map(Some)
    }
}

impl Config {
    /// The layers this config was built from: `embedded defaults`, the file, then the names (never
    /// the values) of the environment overrides.
    pub fn sources(&self) -> &[String] {
        &self.sources
    }

    /// The connection with this id, or an error listing the configured ids.
    pub fn connection(&self, id: &str) -> anyhow::Result<&ConnectionConfig> {
        self.connections.iter().find(|c| c.id == id).ok_or_else(|| {
            anyhow!("unknown connection `{id}`; configured connections: {}", self.connection_ids())
        })
    }

    /// The configured ids, comma-separated, for messages.
    pub fn connection_ids(&self) -> String {
        if self.connections.is_empty() {
            return "(none)".to_owned();
        }
        self.connections.iter().map(|c| c.id.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// The credential of `conn` (its key, token or password), resolved from the value in the config
    /// or from the environment variable it names.
    pub fn credential(&self, conn: &ConnectionConfig) -> anyhow::Result<SecretString> {
        conn.credential(&self.env)
    }

    /// The webhook secret of `conn`, from the value in the config or the variable it names;
    /// `None` when the connection takes no webhooks.
    pub fn webhook_secret(&self, conn: &ConnectionConfig) -> anyhow::Result<Option<SecretString>> {
        conn.webhook_secret(&self.env)
    }
}
