//! What the LLM may cost and which models answer: `[llm] daily_budget_usd`, `monthly_budget_usd`,
//! `on_budget_exhausted` and `fallback_model`, each connection's own budgets, and
//! `[llm.escalation]`, the stronger model for the hard cases.

use secrecy::SecretString;
use serde::Deserialize;

use std::time::Duration;

use super::{Config, secrets::resolve_secret, validate::is_http_url};
pub use crate::triage::budget::OnBudgetExhausted;
use crate::triage::budget::{BudgetSettings, Limits};

/// `[llm.escalation]`: a stronger model asked when the configured model's confidence is below
/// `below_confidence` or its answer is still invalid after its repair.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationConfig {
    /// The stronger model's name.
    pub model: String,
    /// Answers less confident than this (0–1) go to the stronger model.
    pub below_confidence: f64,
    /// Its OpenAI-compatible base URL; unset = `[llm] base_url`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Its API key; unset (with `api_key_env`) = `[llm]`'s key when `base_url` is unset, none
    /// otherwise.
    #[serde(default)]
    pub api_key: Option<SecretString>,
    /// The environment variable holding its API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
}

impl Config {
    /// The budgets of `[llm]` and of each connection, the spend read again after `refresh`.
    pub fn budget_settings(&self, refresh: Duration) -> BudgetSettings {
        let limits = |daily_usd, monthly_usd| Limits { daily_usd, monthly_usd };
        BudgetSettings {
            overall: limits(self.llm.daily_budget_usd, self.llm.monthly_budget_usd),
            connections: self
                .connections
                .iter()
                .map(|c| (c.id.clone(), limits(c.daily_budget_usd, c.monthly_budget_usd)))
                .collect(),
            on_exhausted: self.llm.on_budget_exhausted,
            refresh,
        }
    }

    /// The stronger model's base URL and key: its own when set, else `[llm]`'s.
    pub fn escalation_endpoint(&self) -> anyhow::Result<Option<(String, Option<SecretString>)>> {
        let Some(e) = &self.llm.escalation else { return Ok(None) };
        let own_key = e.api_key.is_some() || e.api_key_env.as_deref().is_some_and(|n| !n.is_empty());
        let key = match (&e.base_url, own_key) {
            (_, true) => Some(resolve_secret(
                "llm.escalation.api_key",
                e.api_key.as_ref(),
                e.api_key_env.as_deref(),
                &self.env,
            )?),
            (None, false) => self.llm.api_key().cloned(),
            (Some(_), false) => None,
        };
        Ok(Some((e.base_url.clone().unwrap_or_else(|| self.llm.base_url.clone()), key)))
    }

    /// What is wrong with the budgets, the fallback model and the escalation.
    pub(super) fn spend_problems(&self) -> Vec<String> {
        let llm = &self.llm;
        let mut out = Vec::new();
        let mut budget = |at: &str, key: &str, value: Option<f64>| {
            if let Some(v) = value.filter(|v| !(v.is_finite() && *v > 0.0)) {
                out.push(format!(
                    "{at}{key} = {v} must be a positive amount of US dollars (leave it out for no budget)"
                ));
            }
        };
        budget("llm.", "daily_budget_usd", llm.daily_budget_usd);
        budget("llm.", "monthly_budget_usd", llm.monthly_budget_usd);
        for (i, c) in self.connections.iter().enumerate() {
            let at = format!("connections[{i}] (id = {:?}): ", c.id);
            budget(&at, "daily_budget_usd", c.daily_budget_usd);
            budget(&at, "monthly_budget_usd", c.monthly_budget_usd);
        }

        let switching = llm.on_budget_exhausted == OnBudgetExhausted::SwitchToFallbackModel;
        match llm.fallback_model.as_deref().map(str::trim) {
            Some("") => out.push("llm.fallback_model must not be empty (leave it out for none)".into()),
            None if switching => out.push(
                "llm.on_budget_exhausted = \"switch_to_fallback_model\" needs llm.fallback_model, the cheaper \
                 model to ask once a budget is spent (e.g. fallback_model = \"gpt-4o-mini\")"
                    .into(),
            ),
            Some(model) if !switching => out.push(format!(
                "llm.fallback_model = {model:?} is only used with llm.on_budget_exhausted = \
                 \"switch_to_fallback_model\" (it is {:?}); set that or remove fallback_model",
                llm.on_budget_exhausted.as_str()
            )),
            _ => {}
        }

        if let Some(e) = &llm.escalation {
            if e.model.trim().is_empty() {
                out.push("llm.escalation.model must name the stronger model (e.g. \"gpt-4o\")".into());
            }
            if !(e.below_confidence > 0.0 && e.below_confidence <= 1.0) {
                out.push(format!(
                    "llm.escalation.below_confidence = {} must be above 0 and at most 1 (answers less \
                     confident than this go to the stronger model)",
                    e.below_confidence
                ));
            }
            if let Some(url) = e.base_url.as_deref().filter(|u| !is_http_url(u)) {
                out.push(format!("llm.escalation.base_url = {url:?} must be an http:// or https:// URL"));
            }
            if e.api_key.is_some() && e.api_key_env.as_deref().is_some_and(|n| !n.is_empty()) {
                out.push("set only one of llm.escalation.api_key and llm.escalation.api_key_env".into());
            }
        }

        // A budget counts what the models cost: every model that may answer needs its price.
        if self.budget_settings(Duration::ZERO).any() {
            let models = std::iter::once(("llm.model", llm.model.as_str()))
                .chain(llm.fallback_model.as_deref().map(|m| ("llm.fallback_model", m)))
                .chain(llm.escalation.as_ref().map(|e| ("llm.escalation.model", e.model.as_str())));
            for (key, model) in models.filter(|(_, m)| !m.trim().is_empty()) {
                if !llm.prices.contains_key(model) {
                    out.push(format!(
                        "a budget is set, but {key} = {model:?} has no price: add [llm.prices.\"{model}\"] \
                         with input_per_mtok and output_per_mtok (US dollars per million tokens)"
                    ));
                }
            }
        }
        out
    }
}
