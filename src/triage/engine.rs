//! The triage engine: gathered ticket → prompt within budget → LLM (one repair round trip) →
//! validated [`Decision`], or the rules fallback. Reads only; writes nothing anywhere.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use serde::Serialize;

use super::{
    context::{self, Gathered, TicketContext, TokenBreakdown},
    decision::{self, Decision, DecisionError, Limits, TagPolicy, Validated},
    llm::{ChatAnswer, ChatMessage, ChatModel, ChatRequest, LlmError, OutputMode, Price, Usage},
    privacy::{Privacy, PrivacyReport, Pseudonyms},
    prompt::{PromptError, PromptLimits, Prompts},
    route::{Escalation, Route},
    rules::Rules,
    system::SystemMessages,
    tokens::{self, Tokenizer, TokenizerChoice},
};
use crate::ticketing::{TicketReader, TicketingError};

/// Tickets whose texts (subject, description, notes) exceed this many bytes have their prompt
/// built on the blocking pool ([`Engine::decide_shared`]); smaller ones take well under a
/// millisecond and stay on the runtime.
const OFFLOAD_BYTES: usize = 64 * 1024;

/// Fewest tokens left for the ticket itself below which a prompt is refused, not cut: a
/// ticket cut to less tells the model nothing.
const MIN_USER_TOKENS: usize = 64;

/// How much below the server's ratio a refitted prompt aims: token counts of two tokenizers
/// scale only roughly with each other, and there is one refit only.
const REFIT_MARGIN: f64 = 0.05;

/// Token budget of one triage call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Budget {
    /// Most tokens the whole prompt (system + user messages) may take.
    pub prompt_tokens: usize,
    /// Tokens reserved for the answer (`max_completion_tokens`).
    pub answer_tokens: u32,
}

impl Default for Budget {
    fn default() -> Self {
        Self { prompt_tokens: 6000, answer_tokens: 1200 }
    }
}

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Token budget.
    pub budget: Budget,
    /// Clean HTML, quotes and signatures before counting (off only to measure).
    pub clean: bool,
    /// Answer limits.
    pub limits: Limits,
    /// How the JSON shape is requested.
    pub output_mode: OutputMode,
    /// Prices by model name, for cost estimates (a model not listed has no cost figure).
    pub prices: BTreeMap<String, Price>,
    /// Which prompts are counted token by token.
    pub counting: TokenCounting,
    /// Most notes read per ticket, newest first.
    pub max_notes: usize,
    /// The model's context window (prompt and answer together) in the server's tokens, when
    /// known: a raised answer reserve stays within it.
    pub context_tokens: Option<usize>,
    /// The encoding prompts are counted with; `None`: the one the model name implies.
    pub tokenizer: Option<TokenizerChoice>,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            budget: Budget::default(),
            clean: true,
            limits: Limits::default(),
            output_mode: OutputMode::JsonSchema,
            prices: BTreeMap::new(),
            counting: TokenCounting::default(),
            max_notes: context::DEFAULT_MAX_NOTES,
            context_tokens: None,
            tokenizer: None,
        }
    }
}

/// Which prompts are counted token by token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenCounting {
    /// Only a prompt whose size does not already prove it within budget: every token of the
    /// byte-level encodings is at least one byte, so a prompt of no more bytes than the budget
    /// has left fits and is sent uncounted (the server's usage then gives its tokens).
    #[default]
    WhenNeeded,
    /// Every prompt, for the exact figures of each part (`deskpilot triage` shows them).
    Always,
}

/// What a connection allows.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Connection id (for logs and connection-scoped rules).
    pub connection: String,
    /// Which tags may be proposed.
    pub tags: TagPolicy,
    /// Use the rules when the LLM fails past its retry budget (otherwise the error is returned so
    /// the worker can retry later).
    pub rules_fallback: bool,
    /// What personal data is kept from the LLM.
    pub privacy: Arc<Privacy>,
}

impl Policy {
    /// A policy with free tags, no fallback and personal data pseudonymised.
    pub fn new(connection: impl Into<String>) -> Self {
        Self {
            connection: connection.into(),
            tags: TagPolicy::Free,
            rules_fallback: false,
            privacy: Arc::new(Privacy::default()),
        }
    }
}

/// A prompt ready to send: the fitted context, the messages, their exact token count (`None`
/// when its size proved it within budget), the answer's schema, and the placeholders put in for
/// personal data (kept for this attempt only, to restore the draft).
struct Prompt {
    ctx: TicketContext,
    messages: Vec<ChatMessage>,
    tokens: Option<usize>,
    schema: Arc<serde_json::Value>,
    pseudonyms: Pseudonyms,
}

/// Figures about one triage, for the CLI, logs, metrics and the store.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Hash of the prompt templates used.
    pub prompt_version: String,
    /// Tokenizer encoding.
    pub encoding: &'static str,
    /// Prompt tokens as counted here (exact for OpenAI models); `None` when the prompt was not
    /// counted because its size proved it within budget ([`TokenCounting::WhenNeeded`]).
    pub prompt_tokens: Option<usize>,
    /// The prompt budget.
    pub prompt_budget: usize,
    /// Where the context's tokens went (token figures are 0 when the prompt was not counted).
    pub context: TokenBreakdown,
    /// Usage reported by the server, summed over calls.
    pub usage: Usage,
    /// Estimated cost in US dollars, when the price of every model asked is configured.
    pub cost_usd: Option<f64>,
    /// Each model asked, in the order asked, with its calls, usage and cost.
    pub models: Vec<ModelUsage>,
    /// Why the stronger model was asked too, when it was.
    pub escalated: Option<String>,
    /// LLM calls made (2 when the answer needed a repair).
    pub llm_calls: u32,
    /// HTTP attempts including retries.
    pub llm_attempts: u32,
    /// Time spent waiting for the LLM.
    pub llm_latency_ms: u64,
    /// Whether the first answer was invalid and a repair was asked for.
    pub repaired: bool,
    /// The answer reserve of the second try, when the first answer was cut off at its cap.
    pub answer_tokens_raised: Option<u32>,
    /// Whether the prompt was fitted again, smaller, because the server found it over its
    /// context (the figures above are then the second prompt's).
    pub refitted: bool,
    /// The prompt's tokens as the server's own tokenizer counts them, when it was asked
    /// (`tokenizer = "server"`).
    pub server_prompt_tokens: Option<usize>,
    /// Why the rules decided instead of the LLM, when they did.
    pub fallback: Option<String>,
    /// Which kinds of personal data were replaced and how many (never the values), and what
    /// became of the placeholders in the draft.
    pub privacy: PrivacyReport,
}

/// What one model was asked for one ticket and what it cost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct ModelUsage {
    /// The model's configured name.
    pub model: String,
    /// Calls made to it.
    pub calls: u32,
    /// Usage reported by the server, summed over its calls.
    pub usage: Usage,
    /// Estimated cost in US dollars, when its price is configured.
    pub cost_usd: Option<f64>,
}

/// The outcome of triage.
#[derive(Debug, Clone, Serialize)]
pub struct Triage {
    /// The validated decision.
    pub decision: Decision,
    /// Non-fatal adjustments made during validation.
    pub notes: Vec<String>,
    /// Figures.
    pub report: Report,
}

/// Why no decision was produced.
#[derive(Debug, thiserror::Error)]
pub enum TriageError {
    /// Reading the helpdesk failed.
    #[error(transparent)]
    Helpdesk(#[from] TicketingError),
    /// The LLM failed and the connection does not allow the rules fallback.
    #[error(transparent)]
    Llm(LlmError),
    /// The answer was still invalid after the repair round trip.
    #[error("the LLM's answer was invalid after one repair: {error}")]
    InvalidDecision {
        /// What was wrong.
        error: DecisionError,
    },
    /// A prompt template failed to render.
    #[error(transparent)]
    Prompt(#[from] PromptError),
}

impl TriageError {
    /// Whether the same ticket may succeed later (the worker's retry vs dead-letter choice).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Helpdesk(e) => e.is_retryable(),
            Self::Llm(e) => e.is_retryable(),
            Self::InvalidDecision { .. } | Self::Prompt(_) => false,
        }
    }

    /// The wait a backend asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Helpdesk(e) => e.retry_after(),
            Self::Llm(e) => e.retry_after(),
            _ => None,
        }
    }
}

/// The triage engine. Cheap to share behind an `Arc`.
pub struct Engine {
    llm: Option<Arc<dyn ChatModel>>,
    /// The stronger model for the hard cases, if configured.
    escalation: Option<Escalation>,
    /// The model [`Route::Fallback`] asks, if configured.
    fallback: Option<Arc<dyn ChatModel>>,
    prompts: Prompts,
    rules: Rules,
    tokenizer: Tokenizer,
    settings: EngineSettings,
    system: SystemMessages,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("model", &self.llm.as_ref().map(|m| m.model().to_owned()))
            .field("escalation", &self.escalation)
            .field("fallback", &self.fallback.as_ref().map(|m| m.model().to_owned()))
            .field("prompt_version", &self.prompts.version())
            .field("rules", &self.rules.len())
            .field("tokenizer", &self.tokenizer)
            .finish()
    }
}

impl Engine {
    /// An engine; `llm = None` decides with the rules only. `tokenizer_model` chooses the
    /// encoding (the LLM's model name) unless `settings.tokenizer` names one.
    pub fn new(
        llm: Option<Arc<dyn ChatModel>>,
        prompts: Prompts,
        rules: Rules,
        tokenizer_model: &str,
        settings: EngineSettings,
    ) -> Self {
        let tokenizer = settings
            .tokenizer
            .map_or_else(|| Tokenizer::for_model(tokenizer_model), TokenizerChoice::tokenizer);
        tokenizer.warm();
        Self {
            llm,
            escalation: None,
            fallback: None,
            prompts,
            rules,
            tokenizer,
            settings,
            system: SystemMessages::default(),
        }
    }

    /// This engine, asking `escalation`'s stronger model when the configured one is unsure or
    /// its answer invalid.
    pub fn with_escalation(mut self, escalation: Escalation) -> Self {
        self.escalation = Some(escalation);
        self
    }

    /// This engine, with `model` for [`Route::Fallback`].
    pub fn with_fallback(mut self, model: Arc<dyn ChatModel>) -> Self {
        self.fallback = Some(model);
        self
    }

    /// The configured model, if any.
    pub fn model(&self) -> Option<&str> {
        self.llm.as_deref().map(|m| m.model())
    }

    /// The limiter the LLM's calls go through, if any.
    pub fn limiter(&self) -> Option<Arc<super::llm::Limiter>> {
        self.llm.as_ref()?.limiter()
    }

    /// The tokenizer in use.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Reads the ticket through `helpdesk` and decides.
    pub async fn triage(
        &self,
        helpdesk: &dyn TicketReader,
        ticket_id: &str,
        policy: &Policy,
    ) -> Result<Triage, TriageError> {
        let gathered = self.gather(helpdesk, ticket_id).await?;
        self.decide(&gathered, policy).await
    }

    /// Reads what triage needs of a ticket: the ticket, its customer, its newest notes (at most
    /// `max_notes`) and the helpdesk's categories.
    pub async fn gather(
        &self,
        helpdesk: &dyn TicketReader,
        ticket_id: &str,
    ) -> Result<Gathered, TicketingError> {
        context::gather(helpdesk, ticket_id, self.settings.max_notes).await
    }

    /// Builds the prompt for a gathered ticket, fitted to the budget, with personal data
    /// pseudonymised as by default: the context and its messages.
    pub fn prompt(&self, g: &Gathered) -> Result<(TicketContext, Vec<ChatMessage>), PromptError> {
        self.prompt_with(g, &Privacy::default())
    }

    /// [`Engine::prompt`] with these privacy settings.
    pub fn prompt_with(
        &self,
        g: &Gathered,
        privacy: &Privacy,
    ) -> Result<(TicketContext, Vec<ChatMessage>), PromptError> {
        self.counted_prompt(g, privacy, self.prompt_budget()).map(|p| (p.ctx, p.messages))
    }

    /// [`Engine::prompt`] and the prompt's token count (as `count_chat` would give it), unless
    /// its size alone proved it within budget.
    ///
    /// A prompt that fits the budget as it is needs no fitting: its rendered message is encoded
    /// once, for the exact total and the breakdown alike (or not at all when its bytes already
    /// fit). Only a prompt over budget is fitted note by note.
    ///
    /// Personal data is replaced before anything is counted, so the budget is spent on the text
    /// the model gets; the system message is built from the categories alone and stays the same.
    fn counted_prompt(&self, g: &Gathered, privacy: &Privacy, budget: usize) -> Result<Prompt, PromptError> {
        let limits = self.prompt_limits();
        let mut pseudonymiser = privacy.pseudonymiser(g.customer.as_ref());
        let mut skeleton = context::skeleton(g);
        skeleton.pseudonymise(&mut pseudonymiser);
        let schema = || decision::response_schema(&g.categories, &self.settings.limits);
        let in_prompt = self.settings.output_mode == OutputMode::JsonObject;
        let system = self.system.get(
            &self.prompts,
            &self.tokenizer,
            (&skeleton.categories, pseudonymiser.is_active()),
            limits,
            (schema, in_prompt),
        )?;
        let framing = 2 * tokens::TOKENS_PER_MESSAGE + tokens::TOKENS_REPLY_PRIMING;
        let chat_tokens = |user: &str| system.tokens + self.tokenizer.count(user) + framing;
        let mut whole = context::unfitted(g, self.settings.clean);
        whole.pseudonymise(&mut pseudonymiser);
        let pseudonyms = pseudonymiser.finish();
        let prompt = |ctx, user: String, tokens| Prompt {
            ctx,
            messages: vec![ChatMessage::system(system.text.to_string()), ChatMessage::user(user)],
            tokens,
            schema: system.schema.clone(),
            pseudonyms,
        };

        let user = self.prompts.user(&whole)?;
        if self.settings.counting == TokenCounting::WhenNeeded
            && system.tokens + framing + user.len() <= budget
        {
            return Ok(prompt(whole, user, None));
        }
        // Text runs at about four bytes a token: a prompt within four times the budget in bytes
        // is counted whole first, and most fit as they are; a longer one goes straight to fitting.
        let counted = (user.len() <= 4 * budget)
            .then(|| system.tokens + whole.count_in_prompt(&user, &self.tokenizer) + framing);
        if let Some(tokens) = counted.filter(|t| *t <= budget) {
            return Ok(prompt(whole, user, Some(tokens)));
        }

        let fixed = chat_tokens(&self.prompts.user(&skeleton)?);
        let room = budget.saturating_sub(fixed);
        // The conversation cleaned above is fitted as it is, not cleaned again note by note.
        let mut ctx = context::fitted(whole, &self.tokenizer, Some(room));
        // Per-message framing is estimated while fitting; the exact count of the rendered prompt
        // decides, dropping more of the oldest notes while it is over.
        loop {
            let user = self.prompts.user(&ctx)?;
            let tokens = system.tokens + ctx.count_in_prompt(&user, &self.tokenizer) + framing;
            if tokens <= budget {
                return Ok(prompt(ctx, user, Some(tokens)));
            }
            if !ctx.drop_oldest() {
                break;
            }
        }
        // Every note is dropped and the pinned texts are cut, yet the fixed parts (the system
        // prompt with its categories, the ticket's metadata) leave too little room: the request
        // is cut to the budget rather than sent over it (a server would refuse it, or bill it).
        let room = budget.saturating_sub(system.tokens + framing);
        if room < MIN_USER_TOKENS {
            return Err(PromptError::OverBudget { fixed: system.tokens + framing, budget });
        }
        let user = self.tokenizer.truncate_middle(&self.prompts.user(&ctx)?, room);
        let tokens = chat_tokens(&user);
        tracing::warn!(tokens, budget, "prompt cut from the middle to fit the budget");
        Ok(prompt(ctx, user, Some(tokens)))
    }

    /// Decides for an already gathered ticket.
    pub async fn decide(&self, g: &Gathered, policy: &Policy) -> Result<Triage, TriageError> {
        let prompt = self.counted_prompt(g, &policy.privacy, self.prompt_budget())?;
        self.decide_with(g, prompt, policy, &Route::Configured).await
    }

    /// As [`Engine::decide`], but a large ticket's prompt is built (cleaned, counted, fitted) on
    /// the blocking pool: that work grows with the text, and on the async runtime it would stall
    /// the other tickets' timers and lease renewals.
    pub async fn decide_shared(
        self: &Arc<Self>,
        g: Arc<Gathered>,
        policy: &Policy,
        route: &Route,
    ) -> Result<Triage, TriageError> {
        let prompt = if g.text_bytes() > OFFLOAD_BYTES {
            let (engine, gathered, privacy) = (self.clone(), g.clone(), policy.privacy.clone());
            let budget = self.prompt_budget();
            match tokio::task::spawn_blocking(move || engine.counted_prompt(&gathered, &privacy, budget))
                .await
            {
                Ok(prompt) => prompt?,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => panic!("building a prompt was cancelled: {e}"),
            }
        } else {
            self.counted_prompt(&g, &policy.privacy, self.prompt_budget())?
        };
        self.decide_with(&g, prompt, policy, route).await
    }

    async fn decide_with(
        &self,
        g: &Gathered,
        prompt: Prompt,
        policy: &Policy,
        route: &Route,
    ) -> Result<Triage, TriageError> {
        // The count made while fitting, not a second tokenization of the whole prompt.
        let Prompt { mut ctx, messages, tokens: prompt_tokens, schema, mut pseudonyms } = prompt;
        let mut report = Report {
            prompt_version: self.prompts.version().to_owned(),
            encoding: self.tokenizer.name(),
            prompt_tokens,
            prompt_budget: self.prompt_budget(),
            context: ctx.breakdown.clone(),
            privacy: pseudonyms.report(),
            ..Report::default()
        };
        let (llm, escalation) = match route {
            Route::Rules(why) => return self.by_rules(g, &ctx, policy, report, why.clone()),
            Route::Fallback => (self.fallback.as_ref().or(self.llm.as_ref()), None),
            Route::Configured => (self.llm.as_ref(), self.escalation.as_ref()),
        };
        let Some(llm) = llm else {
            return self.by_rules(g, &ctx, policy, report, "no LLM is configured".into());
        };
        let mut ours = prompt_tokens.unwrap_or_else(|| self.count_messages(&messages));
        let mut messages = messages;
        let mut schema = schema;
        // Asked before the call, the server's own count fits the prompt to its context at once.
        if let Some(budget) = self.server_fit(llm.as_ref(), &messages, ours, &mut report).await {
            tracing::info!(
                connection = %policy.connection, from = ours, budget,
                server_tokens = report.server_prompt_tokens, "prompt over the server's context by its count; fitting it again"
            );
            let refit = self.refit(g, policy, budget, &mut report)?;
            ours = refit.tokens.unwrap_or_else(|| self.count_messages(&refit.messages));
            (ctx, pseudonyms, schema, messages) = (refit.ctx, refit.pseudonyms, refit.schema, refit.messages);
        }
        // The stronger model gets the same conversation the first one got.
        let mut asked = escalation.map(|_| (messages.clone(), ours));
        let mut result = self.ask(llm.as_ref(), g, (messages, &schema, ours), policy, &mut report).await;
        // The server counts with its own tokenizer: a prompt within our budget may be over its
        // context. Refit once to the ratio it reports, rather than failing the ticket for good.
        if let Err(TriageError::Llm(exceeded @ LlmError::ContextExceeded { .. })) = &result
            && !report.refitted
            && let Some(budget) = self.refit_budget(exceeded, ours)
        {
            tracing::warn!(
                connection = %policy.connection, error = %exceeded, from = ours, budget,
                "prompt over the server's context; fitting it again to the server's count"
            );
            let refit = self.refit(g, policy, budget, &mut report)?;
            (ctx, pseudonyms, schema) = (refit.ctx, refit.pseudonyms, refit.schema);
            let tokens = refit.tokens.unwrap_or_else(|| self.count_messages(&refit.messages));
            asked = asked.map(|_| (refit.messages.clone(), tokens));
            result = self.ask(llm.as_ref(), g, (refit.messages, &schema, tokens), policy, &mut report).await;
        }
        if let (Some(escalation), Some((messages, tokens))) = (escalation, asked)
            && let Some((cause, why)) = escalation.cause(&result)
        {
            let strong = escalation.model.as_ref();
            tracing::info!(
                connection = %policy.connection, from = llm.model(), to = strong.model(), %why,
                "asking the stronger model"
            );
            metrics::counter!("deskpilot_llm_escalations_total", "cause" => cause.as_str()).increment(1);
            report.escalated = Some(why);
            let second = self.ask(strong, g, (messages, &schema, tokens), policy, &mut report).await;
            result = match (result, second) {
                (_, Ok(v)) => Ok(v),
                // The first answer was valid, only unsure: it stands when the stronger model fails.
                (Ok(first), Err(e)) => {
                    tracing::warn!(connection = %policy.connection, error = %e, "the stronger model failed; keeping the first answer");
                    Ok(first)
                }
                (Err(_), Err(e)) => Err(e),
            };
        }
        match result {
            Ok(validated) => {
                let Validated { decision, notes } = restore(validated, &pseudonyms, &mut report);
                Ok(Triage { decision, notes, report })
            }
            Err(TriageError::Llm(e)) if policy.rules_fallback => {
                tracing::warn!(connection = %policy.connection, error = %e, "LLM failed; deciding with the rules");
                self.by_rules(g, &ctx, policy, report, format!("the LLM failed: {e}"))
            }
            Err(e) => Err(e),
        }
    }

    /// The prompt fitted again to `budget`, with the report saying so.
    fn refit(
        &self,
        g: &Gathered,
        policy: &Policy,
        budget: usize,
        report: &mut Report,
    ) -> Result<Prompt, TriageError> {
        count_refit();
        let refit = self.counted_prompt(g, &policy.privacy, budget)?;
        report.prompt_tokens = refit.tokens;
        report.prompt_budget = budget;
        report.context = refit.ctx.breakdown.clone();
        report.privacy = refit.pseudonyms.report();
        report.refitted = true;
        Ok(refit)
    }

    /// With `tokenizer = "server"`: asks the server to count the prompt (recorded in the report)
    /// and returns the budget to fit it to when, by that count, the answer reserve no longer fits
    /// the context.
    async fn server_fit(
        &self,
        llm: &dyn ChatModel,
        messages: &[ChatMessage],
        ours: usize,
        report: &mut Report,
    ) -> Option<usize> {
        if self.settings.tokenizer != Some(TokenizerChoice::Server) {
            return None;
        }
        let text = messages.iter().map(|m| m.content.as_str()).collect::<Vec<_>>().join("\n");
        let content = llm.server_tokens(&text).await?;
        let theirs = content + messages.len() * tokens::TOKENS_PER_MESSAGE + tokens::TOKENS_REPLY_PRIMING;
        report.server_prompt_tokens = Some(theirs);
        let context = self.settings.context_tokens?;
        if theirs + self.settings.budget.answer_tokens as usize <= context {
            return None;
        }
        self.scaled_budget(context, theirs, ours)
    }

    /// The LLM conversation: ask, validate, and on an invalid answer one repair round trip.
    async fn ask(
        &self,
        llm: &dyn ChatModel,
        g: &Gathered,
        (messages, schema, prompt_tokens): (Vec<ChatMessage>, &Arc<serde_json::Value>, usize),
        policy: &Policy,
        report: &mut Report,
    ) -> Result<Validated, TriageError> {
        let origin = decision::Origin::Llm { model: llm.model().to_owned() };
        let check = |content: &str| {
            decision::validate(content, &g.categories, &policy.tags, &self.settings.limits, origin.clone())
        };
        let mut request = ChatRequest {
            messages,
            schema_name: decision::schema_name(),
            schema: schema.clone(),
            max_completion_tokens: self.settings.budget.answer_tokens,
            prompt_tokens: u32::try_from(prompt_tokens).ok(),
        };
        let first = match self.call(llm, &request, report).await {
            // A cut-off answer is not a bad answer: asked again with more room, it usually fits,
            // where a repair request would be cut off too (and lose the length from its error).
            Err(e @ LlmError::Incomplete { .. }) => {
                count_cut_off("first");
                match self.raised_reserve(request.max_completion_tokens, report.prompt_tokens) {
                    Some(raised) => {
                        tracing::info!(
                            connection = %policy.connection,
                            from = request.max_completion_tokens,
                            to = raised,
                            "LLM answer cut off; asking again with a larger answer reserve"
                        );
                        report.answer_tokens_raised = Some(raised);
                        request.max_completion_tokens = raised;
                        self.call(llm, &request, report).await.inspect_err(|e| {
                            if matches!(e, LlmError::Incomplete { .. }) {
                                count_cut_off("raised");
                            }
                        })
                    }
                    None => Err(e),
                }
            }
            other => other,
        };
        let (answer, problems) = match first {
            Ok(answer) => match check(&answer.content) {
                Ok(v) => return Ok(v),
                Err(e) => (answer.content, problem_lines(&e)),
            },
            Err(e) => return Err(TriageError::Llm(e)),
        };
        report.repaired = true;
        tracing::info!(connection = %policy.connection, problems = problems.len(), "LLM answer invalid; asking for a repair");
        request.messages.push(ChatMessage::assistant(answer));
        request.messages.push(ChatMessage::user(self.prompts.repair(&problems)?));
        request.prompt_tokens = u32::try_from(self.count_messages(&request.messages)).ok();
        let answer = match self.call(llm, &request, report).await {
            Ok(answer) => answer.content,
            Err(e) => {
                if matches!(e, LlmError::Incomplete { .. }) {
                    count_cut_off("repair");
                }
                return Err(TriageError::Llm(e));
            }
        };
        check(&answer).map_err(|error| TriageError::InvalidDecision { error })
    }

    /// The prompt budget: `prompt_budget_tokens`, within what the context leaves after the
    /// answer reserve when the context is known.
    fn prompt_budget(&self) -> usize {
        let Budget { prompt_tokens, answer_tokens } = self.settings.budget;
        match self.settings.context_tokens {
            Some(context) => prompt_tokens.min(context.saturating_sub(answer_tokens as usize)),
            None => prompt_tokens,
        }
    }

    /// Our token count of `messages`, as the fitting counts it.
    fn count_messages(&self, messages: &[ChatMessage]) -> usize {
        let content: usize = messages.iter().map(|m| self.tokenizer.count(&m.content)).sum();
        content + messages.len() * tokens::TOKENS_PER_MESSAGE + tokens::TOKENS_REPLY_PRIMING
    }

    /// The budget (in our tokens) for a second prompt after the server refused `ours` tokens as
    /// over its context: scaled by how much of the server's count fits its context once the
    /// answer reserve is set aside, less [`REFIT_MARGIN`] because the two tokenizers do not
    /// scale exactly. `None` when nothing would fit.
    fn refit_budget(&self, exceeded: &LlmError, ours: usize) -> Option<usize> {
        let LlmError::ContextExceeded { context_tokens, server_prompt_tokens, answer_included } = *exceeded
        else {
            return None;
        };
        let answer = self.settings.budget.answer_tokens;
        let server_prompt =
            if answer_included { server_prompt_tokens.saturating_sub(answer) } else { server_prompt_tokens };
        self.scaled_budget(context_tokens as usize, server_prompt as usize, ours)
    }

    /// The budget (in our tokens) for a prompt of `ours` tokens that the server counts as
    /// `server_prompt`, in a context of `context_tokens` with the answer reserve set aside.
    fn scaled_budget(&self, context_tokens: usize, server_prompt: usize, ours: usize) -> Option<usize> {
        let room = context_tokens.saturating_sub(self.settings.budget.answer_tokens as usize);
        if server_prompt == 0 || room == 0 {
            return None;
        }
        let scaled = ours as f64 * room as f64 / server_prompt as f64 * (1.0 - REFIT_MARGIN);
        let budget = (scaled.floor() as usize).min(ours.saturating_sub(1));
        (budget >= MIN_USER_TOKENS).then_some(budget)
    }

    /// The answer reserve for a second try after a cut-off answer: twice `current`, bounded by
    /// what the model's context leaves after the prompt (its counted tokens, else the whole
    /// prompt budget); `None` when that leaves no more than `current`.
    fn raised_reserve(&self, current: u32, prompt_tokens: Option<usize>) -> Option<u32> {
        let doubled = current.saturating_mul(2);
        let raised = match self.settings.context_tokens {
            Some(context) => {
                let prompt = prompt_tokens.unwrap_or(self.settings.budget.prompt_tokens);
                let room = u32::try_from(context.saturating_sub(prompt)).unwrap_or(u32::MAX);
                doubled.min(room)
            }
            None => doubled,
        };
        (raised > current).then_some(raised)
    }

    async fn call(
        &self,
        llm: &dyn ChatModel,
        request: &ChatRequest,
        report: &mut Report,
    ) -> Result<ChatAnswer, LlmError> {
        let started = Instant::now();
        let result = llm.complete(request).await;
        report.llm_calls += 1;
        report.llm_latency_ms += started.elapsed().as_millis() as u64;
        let name = llm.model();
        let at = match report.models.iter().position(|m| m.model == name) {
            Some(at) => at,
            None => {
                let cost_usd = self.settings.prices.get(name).map(|p| p.cost(Usage::default()));
                report.models.push(ModelUsage { model: name.to_owned(), cost_usd, ..ModelUsage::default() });
                report.models.len() - 1
            }
        };
        report.models[at].calls += 1;
        if let Ok(answer) = &result {
            report.llm_attempts += answer.attempts;
            add_usage(&mut report.usage, answer.usage);
            let model = &mut report.models[at];
            add_usage(&mut model.usage, answer.usage);
            model.cost_usd = self.settings.prices.get(name).map(|p| p.cost(model.usage));
            report.cost_usd = report.models.iter().map(|m| m.cost_usd).sum();
        }
        result
    }

    fn by_rules(
        &self,
        g: &Gathered,
        ctx: &TicketContext,
        policy: &Policy,
        mut report: Report,
        why: String,
    ) -> Result<Triage, TriageError> {
        let decision = self.rules.decide(&policy.connection, ctx);
        let validated = decision
            .recheck(&g.categories, &policy.tags, &self.settings.limits)
            .map_err(|error| TriageError::InvalidDecision { error })?;
        report.fallback = Some(why);
        Ok(Triage { decision: validated.decision, notes: validated.notes, report })
    }

    fn prompt_limits(&self) -> PromptLimits {
        PromptLimits {
            max_tags: self.settings.limits.max_tags,
            max_draft_chars: self.settings.limits.max_draft_chars,
        }
    }
}

/// Puts the values back into the draft, which goes to a person (an internal note or the review
/// page); the summary, reason and tags keep their placeholders. A placeholder that stands for
/// nothing in the ticket stays visible, is noted, and asks for a person.
///
/// The draft's length limit applies to what the model wrote; restored values may lengthen it.
fn restore(mut v: Validated, pseudonyms: &Pseudonyms, report: &mut Report) -> Validated {
    let Some(draft) = v.decision.draft_reply.as_mut() else { return v };
    let restored = pseudonyms.restore(draft);
    *draft = restored.text;
    report.privacy.restored = restored.restored;
    if !restored.invented.is_empty() {
        v.notes.push(format!(
            "the draft names {}, which stands for nothing in this ticket; left as written for a person to fill in",
            restored.invented.join(", ")
        ));
        v.decision.needs_human = true;
        report.privacy.invented = restored.invented;
    }
    v
}

fn add_usage(sum: &mut Usage, u: Usage) {
    sum.prompt_tokens += u.prompt_tokens;
    sum.completion_tokens += u.completion_tokens;
    sum.cached_tokens += u.cached_tokens;
}

/// Counts a prompt fitted again because the server found it over its context.
fn count_refit() {
    metrics::counter!("deskpilot_llm_prompts_refitted_total").increment(1);
}

/// Counts an answer cut off at its token cap, by which call (`first`, `raised` after the
/// reserve was raised, or `repair`).
fn count_cut_off(call: &'static str) {
    metrics::counter!("deskpilot_llm_answers_cut_off_total", "call" => call).increment(1);
}

fn problem_lines(e: &DecisionError) -> Vec<String> {
    e.problems().into_iter().map(|p| p.to_string()).collect()
}
