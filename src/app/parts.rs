//! Each part of the service as the configuration describes it: helpdesk clients, the triage
//! engine, the bus, the worker's settings and every connection's policies.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use anyhow::Context;

use crate::{
    act::ActPolicy,
    bus::{Bus, BusSettings, memory::MemoryBus},
    config::{BackendConfig, Config, ConnectionConfig, LlmConfig},
    http::{HttpSettings, RetryPolicy},
    ingest::{
        poll::PollSettings,
        webhook::{Scheme, WebhookConnection, WebhookSettings},
    },
    store::Store,
    ticketing::{
        DynTicketing,
        freshdesk::FreshdeskClient,
        intercom::IntercomClient,
        servicenow::{ServiceNowAuth, ServiceNowClient},
        unified::UnifiedClient,
        zendesk::ZendeskClient,
    },
    triage::{
        Budget, Engine, EngineSettings, Escalation, Policy,
        budget::{Budgets, SpendSource, Spent},
        decision::TagPolicy,
        llm::{ChatModel, LlmSettings, OpenAiCompatible},
        privacy::Privacy,
        prompt::Prompts,
        rules::Rules,
    },
    worker::{Connection, WorkerSettings},
};

/// The settings every helpdesk client is built with (`[http]`).
pub fn http_settings(config: &Config) -> HttpSettings {
    let http = &config.http;
    HttpSettings {
        connect_timeout: Duration::from_secs(http.connect_timeout_secs),
        request_timeout: Duration::from_secs(http.request_timeout_secs),
        retry: RetryPolicy {
            max_retries: http.max_retries,
            max_retry_after: Duration::from_secs(http.max_retry_after_secs),
            ..RetryPolicy::default()
        },
        max_concurrent_requests: http.max_concurrent_requests,
        max_response_bytes: usize::try_from(http.max_response_mb << 20).unwrap_or(usize::MAX),
    }
}

/// The client of one connection's helpdesk. Adding a backend is one arm here.
pub fn helpdesk(config: &Config, conn: &ConnectionConfig) -> anyhow::Result<DynTicketing> {
    let http = http_settings(config);
    let credential = config.credential(conn)?;
    let client: DynTicketing = match &conn.backend {
        BackendConfig::Unified(u) => Arc::new(
            UnifiedClient::new(u.base_url(), &conn.id, credential, &http)
                .with_context(|| format!("connection `{}`", conn.id))?
                .with_category_ttl(u.category_cache()),
        ),
        BackendConfig::Freshdesk(f) => Arc::new(
            FreshdeskClient::new(&f.base_url(), credential, &http)
                .with_context(|| format!("connection `{}`", conn.id))?
                .with_category_ttl(f.category_cache()),
        ),
        BackendConfig::Intercom(i) => Arc::new(
            IntercomClient::new(&i.base_url(), credential, &http)
                .with_context(|| format!("connection `{}`", conn.id))?
                .with_admin(i.admin_id.clone())
                .with_category_ttl(i.category_cache()),
        ),
        BackendConfig::Zendesk(z) => {
            Arc::new(zendesk(z, credential, &http).with_context(|| format!("connection `{}`", conn.id))?)
        }
        BackendConfig::ServiceNow(s) => {
            let auth = match s.uses_oauth() {
                true => ServiceNowAuth::OAuth(credential),
                false => ServiceNowAuth::Basic {
                    username: s.username.clone().unwrap_or_default(),
                    password: credential,
                },
            };
            Arc::new(
                ServiceNowClient::new(&s.base_url(), auth, &http)
                    .with_context(|| format!("connection `{}`", conn.id))?
                    .with_category_ttl(s.category_cache()),
            )
        }
    };
    Ok(client)
}

/// A Zendesk connection's client.
fn zendesk(
    z: &crate::config::ZendeskConfig,
    credential: secrecy::SecretString,
    http: &HttpSettings,
) -> crate::ticketing::Result<ZendeskClient> {
    use crate::{
        config::{ZendeskCategorySource as Source, ZendeskTicketExport as Export},
        ticketing::zendesk::{TicketExport, ZendeskAuth, wire::CategorySource},
    };
    let auth = match z.uses_oauth() {
        true => ZendeskAuth::OAuth(credential),
        false => ZendeskAuth::ApiToken { email: z.email.clone().unwrap_or_default(), token: credential },
    };
    let export = match z.ticket_export {
        Export::Search => TicketExport::Search,
        Export::Incremental => TicketExport::Incremental,
    };
    let category = match (z.category_source(), z.category_field_id) {
        (Source::Field, Some(id)) => CategorySource::Field(id),
        (Source::Forms, _) => CategorySource::Forms,
        // A field source without a field id is refused when the configuration is loaded.
        (Source::Groups | Source::Field, _) => CategorySource::Groups,
    };
    Ok(ZendeskClient::new(&z.base_url(), auth, export, category, http)?.with_category_ttl(z.category_cache()))
}

/// The helpdesk client of the connection with this id.
pub fn helpdesk_for(config: &Config, id: &str) -> anyhow::Result<DynTicketing> {
    helpdesk(config, config.connection(id)?)
}

/// The LLM client settings of `[llm]`.
pub fn llm_settings(llm: &LlmConfig) -> LlmSettings {
    LlmSettings {
        api_key: llm.api_key().cloned(),
        output_mode: llm.output_mode,
        connect_timeout: llm.connect_timeout(),
        request_timeout: llm.request_timeout(),
        max_retries: llm.max_retries as usize,
        total_timeout: Duration::from_secs(llm.total_timeout_secs),
        max_retry_after: Duration::from_secs(llm.max_retry_after_secs),
        temperature: llm.temperature,
        limits: llm.call_limits(),
        ..LlmSettings::new(&llm.base_url, &llm.model)
    }
}

/// The triage engine: the LLM when one is configured (otherwise the rules alone), the prompt
/// templates and the fallback rules, all checked now.
pub fn engine(config: &Config) -> anyhow::Result<Engine> {
    let llm: Option<Arc<dyn ChatModel>> = if config.llm.is_configured() {
        Some(Arc::new(OpenAiCompatible::new(llm_settings(&config.llm)).context("llm")?))
    } else {
        None
    };
    let t = &config.triage;
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
        output_mode: config.llm.output_mode,
        prices: config.llm.prices.clone(),
        counting: t.count_tokens,
        max_notes: t.max_notes,
        context_tokens: config.llm.context_tokens,
        tokenizer: config.llm.tokenizer,
    };
    let mut engine = Engine::new(llm.clone(), prompts, rules, &config.llm.model, settings);
    if let Some(model) = &config.llm.fallback_model
        && llm.is_some()
    {
        let settings = LlmSettings { model: model.clone(), ..llm_settings(&config.llm) };
        engine =
            engine.with_fallback(Arc::new(OpenAiCompatible::new(settings).context("llm.fallback_model")?));
    }
    if let (Some(e), Some((base_url, api_key))) = (&config.llm.escalation, config.escalation_endpoint()?) {
        let settings = LlmSettings { base_url, api_key, model: e.model.clone(), ..llm_settings(&config.llm) };
        let model = Arc::new(OpenAiCompatible::new(settings).context("llm.escalation")?);
        engine = engine.with_escalation(Escalation { model, below_confidence: e.below_confidence as f32 });
    }
    Ok(engine)
}

/// How long the LLM spend read from the store is trusted before it is read again: two workers
/// see each other's spend within this.
const SPEND_REFRESH: Duration = Duration::from_secs(5);

/// The LLM budgets of `[llm]` and every connection, over the spend recorded in `store`; `None`
/// when no budget is set.
pub fn budgets(config: &Config, store: &Store) -> Option<Arc<Budgets>> {
    let settings = config.budget_settings(SPEND_REFRESH);
    settings.any().then(|| Arc::new(Budgets::new(settings, Arc::new(LedgerSpend(store.clone())))))
}

/// The spend every worker recorded: the cost of the decisions in the store's ledger.
struct LedgerSpend(Store);

#[async_trait::async_trait]
impl SpendSource for LedgerSpend {
    async fn spent_since(
        &self,
        day_start: time::OffsetDateTime,
        month_start: time::OffsetDateTime,
    ) -> Result<BTreeMap<String, Spent>, Box<dyn std::error::Error + Send + Sync>> {
        let spend = self.0.llm_spend(day_start, month_start).await?;
        Ok(spend
            .into_iter()
            .map(|(c, s)| (c, Spent { day_usd: s.day_usd, month_usd: s.month_usd }))
            .collect())
    }
}

/// Bus names and tunables: `[bus]` names, `[worker]` retry tiers, delivery limit and prefetch.
pub fn bus_settings(config: &Config) -> BusSettings {
    BusSettings {
        retry_delays: config.worker.retry_delays_secs.iter().map(|s| Duration::from_secs(*s)).collect(),
        delivery_limit: config.worker.delivery_limit,
        prefetch: u16::try_from(config.worker.concurrency).unwrap_or(u16::MAX),
        ..BusSettings::new(&config.bus.exchange, &config.bus.queue)
    }
}

/// The bus `[bus]` describes: RabbitMQ when `url` is set, a new in-process bus otherwise.
pub fn bus(config: &Config) -> Bus {
    let settings = bus_settings(config);
    match config.bus.amqp_url() {
        Some(url) => Bus::Amqp { url: url.to_owned(), settings },
        None => Bus::Memory(MemoryBus::new(settings)),
    }
}

/// Worker settings from `[worker]`.
pub fn worker_settings(config: &Config) -> WorkerSettings {
    WorkerSettings {
        max_in_flight: config.worker.concurrency as usize,
        lease: Duration::from_secs(config.worker.lease_secs),
        drain_deadline: Duration::from_secs(config.worker.drain_deadline_secs),
        max_attempts: config.worker.max_attempts.max(1),
        ..WorkerSettings::default()
    }
}

/// What triage may propose on this connection: its tags, whether the rules may stand in for a
/// failing LLM, and what personal data is kept from the LLM (`[privacy]` and the connection's own).
pub fn triage_policy(config: &Config, conn: &ConnectionConfig) -> anyhow::Result<Policy> {
    let tags = if conn.allowed_tags.is_empty() {
        TagPolicy::Free
    } else {
        TagPolicy::allow_list(conn.allowed_tags.iter().map(String::as_str))
    };
    let settings = config.privacy.with(conn.privacy.as_ref());
    let patterns = settings.compiled_patterns().map_err(|problems| {
        anyhow::anyhow!("connection `{}`: {}; fix [privacy] patterns", conn.id, problems.join("; "))
    })?;
    let privacy = Privacy { mode: settings.mode(), kinds: settings.kinds().into_iter().collect(), patterns };
    Ok(Policy {
        tags,
        rules_fallback: conn.rules_fallback,
        privacy: Arc::new(privacy),
        ..Policy::new(conn.id.clone())
    })
}

/// How decisions are acted on for this connection.
pub fn act_policy(conn: &ConnectionConfig) -> ActPolicy {
    ActPolicy {
        mode: conn.mode,
        confidence_threshold: conn.confidence_threshold,
        automated_categories: conn.automated_categories.iter().cloned().collect(),
        category_thresholds: conn.automation.clone(),
        notes_internal_verified: conn.notes_internal_verified || conn.backend.notes_always_internal(),
        routing: conn.routing.clone(),
        priority_values: conn.priority_values.clone(),
        note_user_id: conn.note_user_id.clone(),
        tag_vocabulary: conn.allowed_tags.is_empty().then(Default::default),
    }
}

/// Every connection as the worker sees it: client, triage policy, act policy.
pub fn connections(config: &Config) -> anyhow::Result<HashMap<String, Connection>> {
    config
        .connections
        .iter()
        .map(|c| {
            let conn = Connection {
                helpdesk: helpdesk(config, c)?,
                triage: triage_policy(config, c)?,
                act: act_policy(c),
            };
            Ok((c.id.clone(), conn))
        })
        .collect()
}

/// How each connection with a poll interval is polled, by connection id.
pub fn poll_settings(config: &Config) -> Vec<(String, PollSettings)> {
    config
        .connections
        .iter()
        .filter_map(|c| {
            let settings = PollSettings {
                own_write_tolerance: config.ingest.own_write_tolerance(),
                ..PollSettings::new(c.poll_interval()?, c.poll_overlap())
            };
            Some((c.id.clone(), settings))
        })
        .collect()
}

/// The webhook receiver's limits (`[ingest]`).
pub fn webhook_settings(config: &Config) -> WebhookSettings {
    WebhookSettings {
        max_body_bytes: config.ingest.webhook_max_body_bytes,
        timestamp_tolerance: config.ingest.webhook_timestamp_tolerance(),
        ..WebhookSettings::default()
    }
}

/// Every connection as the webhook receiver sees it: its backend's scheme and its secret.
pub fn webhook_connections(config: &Config) -> anyhow::Result<HashMap<String, WebhookConnection>> {
    config
        .connections
        .iter()
        .map(|c| {
            let scheme = Scheme::for_backend(c.backend.name())
                .with_context(|| format!("connection `{}`: no webhook scheme for its backend", c.id))?;
            Ok((c.id.clone(), WebhookConnection { scheme, secret: config.webhook_secret(c)? }))
        })
        .collect()
}
