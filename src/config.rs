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

mod connection;
mod report;
mod secrets;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, anyhow, bail};
use figment::{
    Figment, Metadata, Profile, Provider,
    providers::{Format, Serialized, Toml},
    value::{Dict, Map, Value},
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

pub use connection::{
    BackendConfig, ConnectionConfig, FreshdeskConfig, IntercomConfig, Mode, ServiceNowConfig, UnifiedConfig,
    ZendeskConfig,
};
pub use secrets::{Dsn, redact_url};

use secrets::EnvVars;

use crate::{
    bus::BusSettings,
    ticketing::{
        DynTicketing,
        http::{HttpSettings, RetryPolicy},
    },
    triage::{
        Budget, Engine, EngineSettings, TokenCounting,
        decision::Limits,
        llm::{ChatModel, LlmSettings, OpenAiCompatible, OutputMode, Price},
        prompt::Prompts,
        rules::Rules,
    },
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
    /// Prompt budget, templates, rules and answer limits.
    pub triage: TriageConfig,
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
    /// Prices per model name, US dollars per million tokens, for cost estimates.
    #[serde(default)]
    pub prices: BTreeMap<String, Price>,
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

    /// The price of the configured model, when listed in `prices`.
    pub fn price(&self) -> Option<Price> {
        self.prices.get(&self.model).copied()
    }

    /// The client settings of the configured endpoint.
    pub fn settings(&self) -> LlmSettings {
        LlmSettings {
            api_key: self.api_key().cloned(),
            output_mode: self.output_mode,
            connect_timeout: self.connect_timeout(),
            request_timeout: self.request_timeout(),
            max_retries: self.max_retries as usize,
            total_timeout: Duration::from_secs(self.total_timeout_secs),
            max_retry_after: Duration::from_secs(self.max_retry_after_secs),
            temperature: self.temperature,
            ..LlmSettings::new(&self.base_url, &self.model)
        }
    }

    /// Connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }

    /// Request timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    fn resolve(&mut self, base_url_from_defaults: bool, env: &EnvVars) {
        if base_url_from_defaults && let Some(url) = env.non_empty("OPENAI_BASE_URL") {
            self.base_url = url.to_owned();
            self.resolved.base_url_from_env = true;
        }
        let explicit = self.api_key.as_ref().filter(|k| !k.expose_secret().is_empty());
        let named = self.api_key_env.as_deref().filter(|n| !n.is_empty());
        (self.resolved.key, self.resolved.origin) = match (explicit, named) {
            (Some(key), _) => (Some(key.clone()), "llm.api_key".to_owned()),
            (None, Some(name)) => match env.non_empty(name) {
                Some(key) => (Some(key.into()), format!("environment variable {name}")),
                None => (None, format!("environment variable {name} is not set")),
            },
            (None, None) => (None, "neither llm.api_key nor llm.api_key_env is set".to_owned()),
        };
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
    /// Where `/metrics` (Prometheus) and `/health` are served; empty = not served.
    #[serde(default = "default_metrics_addr")]
    pub metrics_addr: String,
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
fn default_metrics_addr() -> String {
    "127.0.0.1:9464".to_owned()
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
}

fn default_max_concurrent_requests() -> usize {
    16
}

impl HttpConfig {
    /// The settings every backend client is built with.
    pub fn settings(&self) -> HttpSettings {
        HttpSettings {
            connect_timeout: Duration::from_secs(self.connect_timeout_secs),
            request_timeout: Duration::from_secs(self.request_timeout_secs),
            retry: RetryPolicy {
                max_retries: self.max_retries,
                max_retry_after: Duration::from_secs(self.max_retry_after_secs),
                ..RetryPolicy::default()
            },
            max_concurrent_requests: self.max_concurrent_requests,
        }
    }
}

/// A provider under another name, so errors say "in the embedded defaults" or name the variable.
struct Named<P> {
    inner: P,
    name: String,
}

impl<P: Provider> Provider for Named<P> {
    fn metadata(&self) -> Metadata {
        let mut md = self.inner.metadata();
        md.name = self.name.clone().into();
        md.source = None;
        md
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        self.inner.data()
    }
}

impl Config {
    /// Loads from the defaults, `file` and the process environment, then validates.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        // `vars()` panics on a non-UTF-8 variable; such a variable cannot be one of ours anyway.
        let env =
            std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
        Self::load_from(file, env)
    }

    /// Loads from the defaults, `file` and the given environment (not the process's), then
    /// validates. The seam tests use.
    pub fn load_from<I, K, V>(file: Option<&Path>, env: I) -> anyhow::Result<Self>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let env: EnvVars = env.into_iter().collect();
        let mut figment =
            Figment::new().merge(Named { inner: Toml::string(DEFAULTS), name: DEFAULTS_SOURCE.to_owned() });
        let mut sources = vec!["embedded defaults".to_owned()];
        if let Some(path) = file {
            let meta = std::fs::metadata(path)
                .with_context(|| format!("cannot read config file `{}`", path.display()))?;
            if !meta.is_file() {
                bail!("config file `{}` is not a file", path.display());
            }
            figment = figment.merge(Toml::file_exact(path));
            sources.push(path.display().to_string());
        }
        for (name, value) in env.with_prefix(ENV_PREFIX) {
            let key = name[ENV_PREFIX.len()..].to_ascii_lowercase().replace("__", ".");
            let value: Value = value.parse().unwrap_or_else(|never| match never {});
            figment = figment.merge(Named {
                inner: Serialized::default(&key, value),
                name: format!("{ENV_SOURCE} {name}"),
            });
            sources.push(name.clone());
        }

        let mut config: Config =
            figment.extract().map_err(|e| anyhow!(report::describe(e))).context("invalid configuration")?;
        let base_url_from_defaults =
            figment.find_metadata("llm.base_url").is_some_and(|md| md.name == DEFAULTS_SOURCE);
        config.llm.resolve(base_url_from_defaults, &env);
        config.env = env;
        config.sources = sources;
        config.validate()?;
        Ok(config)
    }

    /// The layers this config was built from: `embedded defaults`, the file, then the names (never
    /// the values) of the environment overrides.
    pub fn sources(&self) -> &[String] {
        &self.sources
    }

    /// Checks ranges and cross-field rules, reporting every problem at once.
    pub fn validate(&self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, problem: String| {
            if !ok {
                problems.push(problem);
            }
        };

        let llm = &self.llm;
        check(
            is_http_url(&llm.base_url),
            format!("llm.base_url = {:?} must be an http:// or https:// URL", llm.base_url),
        );
        check(!llm.model.trim().is_empty(), "llm.model must not be empty".into());
        check(llm.connect_timeout_secs > 0, "llm.connect_timeout_secs must be at least 1".into());
        check(llm.request_timeout_secs > 0, "llm.request_timeout_secs must be at least 1".into());

        if let Some(url) = self.bus.amqp_url() {
            check(
                Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "amqp" | "amqps")),
                format!(
                    "bus.url = {:?} must be empty (in-process bus) or an amqp:// or amqps:// URL, \
                     e.g. amqp://guest:guest@127.0.0.1:5672/%2f",
                    self.bus.url.redacted()
                ),
            );
        }
        check(!self.bus.exchange.trim().is_empty(), "bus.exchange must not be empty".into());
        check(!self.bus.queue.trim().is_empty(), "bus.queue must not be empty".into());

        let store = self.store.url.expose();
        check(
            ["sqlite:", "postgres://", "postgresql://"].iter().any(|p| store.starts_with(p)),
            format!(
                "store.url = {:?} must start with sqlite: (e.g. sqlite://data/deskpilot.db) or postgres://",
                self.store.url.redacted()
            ),
        );

        check(
            (1..=4096).contains(&self.worker.concurrency),
            format!("worker.concurrency = {} must be between 1 and 4096", self.worker.concurrency),
        );
        check(
            (1..=256).contains(&self.worker.threads),
            format!("worker.threads = {} must be between 1 and 256", self.worker.threads),
        );
        check(
            (1..=1024).contains(&self.http.max_concurrent_requests),
            format!(
                "http.max_concurrent_requests = {} must be between 1 and 1024 (requests in flight to one helpdesk)",
                self.http.max_concurrent_requests
            ),
        );
        check(llm.total_timeout_secs > 0, "llm.total_timeout_secs must be at least 1".into());
        check(
            (0.0..=2.0).contains(&llm.temperature),
            format!("llm.temperature = {} must be between 0 and 2", llm.temperature),
        );
        let t = &self.triage;
        check(
            (500..=1_000_000).contains(&t.prompt_budget_tokens),
            format!(
                "triage.prompt_budget_tokens = {} must be between 500 and 1000000",
                t.prompt_budget_tokens
            ),
        );
        check(
            (100..=100_000).contains(&t.answer_reserve_tokens),
            format!(
                "triage.answer_reserve_tokens = {} must be between 100 and 100000",
                t.answer_reserve_tokens
            ),
        );
        check(t.limits.max_tags > 0, "triage.limits.max_tags must be at least 1".into());
        check(t.limits.max_draft_chars >= 100, "triage.limits.max_draft_chars must be at least 100".into());
        let w = &self.worker;
        check(w.lease_secs >= 30, format!("worker.lease_secs = {} must be at least 30", w.lease_secs));
        check(
            !w.retry_delays_secs.is_empty() && w.retry_delays_secs.iter().all(|d| (1..=86_400).contains(d)),
            "worker.retry_delays_secs must list at least one delay of 1 to 86400 seconds".into(),
        );
        check(
            (2..=1000).contains(&w.delivery_limit),
            format!("worker.delivery_limit = {} must be between 2 and 1000", w.delivery_limit),
        );
        check(
            w.metrics_addr.is_empty() || w.metrics_addr.parse::<std::net::SocketAddr>().is_ok(),
            format!(
                "worker.metrics_addr = {:?} must be empty or an address such as 127.0.0.1:9464",
                w.metrics_addr
            ),
        );
        check(self.http.connect_timeout_secs > 0, "http.connect_timeout_secs must be at least 1".into());
        check(self.http.request_timeout_secs > 0, "http.request_timeout_secs must be at least 1".into());

        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, conn) in self.connections.iter().enumerate() {
            let at = format!("connections[{i}] (id = {:?})", conn.id);
            if let Some(first) = seen.insert(conn.id.as_str(), i) {
                problems.push(format!("{at}: duplicate id, connections[{first}] already uses it"));
            }
            for problem in conn.problems() {
                problems.push(format!("{at}: {problem}"));
            }
        }

        match problems.len() {
            0 => Ok(()),
            1 => Err(anyhow!("{}", problems[0])).context("invalid configuration"),
            n => Err(anyhow!("{n} problems:\n- {}", problems.join("\n- "))).context("invalid configuration"),
        }
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

    /// Builds the helpdesk client of `conn`, resolving its credentials from this config's
    /// environment. The one place that knows which backends this build has.
    pub fn ticketing(&self, conn: &ConnectionConfig) -> anyhow::Result<DynTicketing> {
        conn.connect(&self.http.settings(), &self.env).with_context(|| format!("connection `{}`", conn.id))
    }

    /// The triage engine this config describes: the LLM when one is configured (otherwise rules
    /// only), the prompt templates and the fallback rules, all checked now.
    pub fn triage_engine(&self) -> anyhow::Result<Engine> {
        let llm: Option<Arc<dyn ChatModel>> = if self.llm.is_configured() {
            Some(Arc::new(OpenAiCompatible::new(self.llm.settings()).context("llm")?))
        } else {
            None
        };
        let t = &self.triage;
        let prompts = match &t.prompts_dir {
            Some(dir) => Prompts::from_dir(dir).context("triage.prompts_dir")?,
            None => Prompts::embedded().context("embedded prompts")?,
        };
        let rules = match &t.rules_file {
            Some(file) => Rules::from_file(file).context("triage.rules_file")?,
            None => Rules::embedded().context("embedded rules")?,
        };
        let settings = EngineSettings {
            budget: Budget { prompt_tokens: t.prompt_budget_tokens, answer_tokens: t.answer_reserve_tokens },
            clean: t.clean,
            limits: t.limits.clone(),
            output_mode: self.llm.output_mode,
            price: self.llm.price(),
            counting: t.count_tokens,
        };
        Ok(Engine::new(llm, prompts, rules, &self.llm.model, settings))
    }

    /// Bus names and tunables: `[bus]` names, `[worker]` retry tiers, delivery limit and prefetch.
    pub fn bus_settings(&self) -> BusSettings {
        BusSettings {
            retry_delays: self.worker.retry_delays_secs.iter().map(|s| Duration::from_secs(*s)).collect(),
            delivery_limit: self.worker.delivery_limit,
            prefetch: u16::try_from(self.worker.concurrency).unwrap_or(u16::MAX),
            ..BusSettings::new(&self.bus.exchange, &self.bus.queue)
        }
    }

    /// The worker's view of every connection: client, triage policy, act policy.
    pub fn worker_connections(
        &self,
    ) -> anyhow::Result<std::collections::HashMap<String, crate::worker::Connection>> {
        self.connections
            .iter()
            .map(|c| {
                let conn = crate::worker::Connection {
                    helpdesk: self.ticketing(c)?,
                    triage: c.triage_policy(),
                    act: c.act_policy(),
                };
                Ok((c.id.clone(), conn))
            })
            .collect()
    }

    /// Worker settings from `[worker]`.
    pub fn worker_settings(&self) -> crate::worker::WorkerSettings {
        crate::worker::WorkerSettings {
            max_in_flight: self.worker.concurrency as usize,
            lease: Duration::from_secs(self.worker.lease_secs),
            drain_deadline: Duration::from_secs(self.worker.drain_deadline_secs),
            max_attempts: self.worker.max_attempts.max(1),
            ..crate::worker::WorkerSettings::default()
        }
    }

    /// [`Config::ticketing`] for the connection with this id.
    pub fn ticketing_for(&self, id: &str) -> anyhow::Result<DynTicketing> {
        self.ticketing(self.connection(id)?)
    }
}

fn is_http_url(s: &str) -> bool {
    Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}
